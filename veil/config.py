"""Per-run settings. One object per run, held by each party's context; no globals.

Defaults and why:

* ``frac_bits = 16``: fixed point with 16 fractional bits (resolution 1.5e-5). With a
  64-bit ring, a product before truncation carries 32 fractional bits, leaving 30 bits of
  integer part; with 16 bits every pair of values inside the safe range (below) can be
  multiplied without overflow. 18 bits (SPU's default) would shrink that range 4x.
* ``compare_bits = 33``: comparisons work on the low 33 bits of the ring (a carry tree
  of 5 AND layers). A comparison ``x < y`` is exact while
  ``|x - y| < 2**(compare_bits - 1)`` ring units. The *safe range* that encoding enforces
  is half that, ``|x| < 2**(compare_bits - 2 - frac_bits)`` = 32768 for fixed point
  (2**31 for ints), so that the difference of *any two* in-range values compares exactly
  (with 32 bits, ``20000 < -20000`` wrapped). ``compare_bits=32`` halves the range to
  16384 and saves 4 bytes per compared element (docs/numerics.md has the costs).
* ``truncation = "auto"``: 2 parties truncate locally (SecureML; 0 extra rounds, error at
  most 1 ulp, fails with probability about |x*y| * 2**(2f - 64) per element: 2.3e-10 for
  |x*y| <= 1, 2.3e-7 for |x*y| <= 1000 at f = 16); more than 2 parties use the
  dealer-assisted exact method (1 extra round and 8 bytes per element and peer, never
  fails inside the ring range). ``"exact"`` forces the latter for 2 parties too; the repr
  of a Config names the method in use so a log says which one a run had.
* ``timeout = 60``: seconds a party waits for a peer before it names the peer and stops.
* ``max_elements = 2**28``: the largest tensor (in elements) a party accepts from a peer's
  announcement or request, and so the largest message it will buffer (8 bytes each); a
  local safety bound against a peer that would exhaust memory, not compared across parties.
* ``network = None``: no emulation. ``"lan"`` (0.5 ms / 1 Gbit/s), ``"wan"`` (40 ms /
  100 Mbit/s) or ``"10ms/200mbit"`` delay every message as such links would
  (veil.comm.netem), in-process and under ``veil run`` alike (``veil run --network``).
* ``profile = False``: ``True`` times every protocol kernel and splits it into compute,
  waiting on peers, waiting on the dealer and sending (`veil.profile()`,
  veil.comm.profile); local to each party, not compared.
"""

from __future__ import annotations

from dataclasses import dataclass

from .comm.netem import Network
from .errors import ProtocolUsageError

TRUNCATIONS = ("auto", "local", "exact")


def min_compare_bits(frac_bits: int) -> int:
    """Narrowest comparison width a run may use: the safe range must hold at least +-1."""
    return frac_bits + 3


@dataclass(frozen=True)
class Config:
    frac_bits: int = 16
    compare_bits: int = 33
    truncation: str = "auto"
    timeout: float = 60.0
    max_elements: int = 1 << 28
    network: str | None = None
    profile: bool = False

    def __post_init__(self) -> None:
        if not 0 < self.frac_bits < 31:
            raise ProtocolUsageError(f"frac_bits must be in 1..30, got {self.frac_bits}")
        if not min_compare_bits(self.frac_bits) <= self.compare_bits <= 64:
            raise ProtocolUsageError(
                f"compare_bits must be in {min_compare_bits(self.frac_bits)}..64, got "
                f"{self.compare_bits}")
        if self.truncation not in TRUNCATIONS:
            raise ProtocolUsageError(
                f"truncation must be one of {TRUNCATIONS}, got {self.truncation!r}")
        if self.timeout <= 0:
            raise ProtocolUsageError(f"timeout must be positive seconds, got {self.timeout}")
        self.network_model()                    # a bad spec fails here, clearly
        if isinstance(self.max_elements, bool) or not isinstance(self.max_elements, int) \
                or self.max_elements < 1:
            raise ProtocolUsageError(
                f"max_elements must be a positive int, got {self.max_elements!r}")

    def network_model(self):
        """The emulated `veil.comm.netem.Network`, or None (no emulation)."""
        return None if self.network is None else Network.parse(self.network)

    @property
    def safe_bound(self) -> float:
        """Largest magnitude (exclusive) that fixed-point encoding accepts.

        Half the comparison range, so that x - y of two in-range values still compares
        exactly (|x - y| < 2 * safe_bound = 2**(compare_bits - 1 - frac_bits)).
        """
        return float(2 ** (self.compare_bits - 2 - self.frac_bits))

    def truncation_method(self, parties: int) -> str:
        """The truncation a run at ``parties`` parties uses: "local" or "exact".

        >>> Config().truncation_method(2), Config().truncation_method(3)
        ('local', 'exact')
        """
        return "local" if parties == 2 and self.truncation in ("auto", "local") else "exact"

    def __repr__(self) -> str:
        # Spells out what "auto" means: a reader of a log sees the failure mode in use.
        trunc = self.truncation
        if trunc == "auto":
            trunc = "auto (local at 2 parties, p(fail) ~ |x*y|*2^(2f-64) per product; " \
                    "exact at 3+)"
        return (f"Config(frac_bits={self.frac_bits}, compare_bits={self.compare_bits}, "
                f"safe_bound={self.safe_bound:g}, truncation={trunc!r}, "
                f"timeout={self.timeout:g})")
