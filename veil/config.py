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
* ``truncation = "auto"``: exact at every party count: the dealer-assisted method (1 round
  and 8 bytes per element and peer, result in {floor, floor + 1}, never fails while the
  untruncated value is below 2**62 in magnitude). "auto" is the name of the default so
  that it can become adaptive later; today it means ``"exact"``. ``"local"`` is an
  explicit opt-in for 2 parties only (SecureML share-wise shifts: 0 rounds, 0 bytes) that
  can FAIL SILENTLY: a truncated element is off by 2**(64 - f) ring units (~4.3e9 after
  decoding at f = 16) with probability about |x*y| * 2**(2f - 64): 2.3e-10 for |x*y| <= 1,
  2.3e-7 for |x*y| <= 1000 at f = 16, up to 1/4 for products near the 2**30 limit; a
  12-layer BERT-base truncates ~10**8 elements per forward, and one such run returned
  logits off by 0.75. semi2k at 3+ parties has no local method and stays exact; rep3's
  "local" is ABY3's share truncation, with the same kind of failure. The repr of a Config
  names the method, so a log says which one a run had.
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
* ``plan_dir = None``: no plan store. A directory (each party its own; ``veil run
  --plan-dir``) keeps the dealer's request plan of every compiled graph
  (veil.offline.planstore: public request kinds and shapes, nothing secret), so a new
  process follows it from the graph's first run once all parties hold the same plan
  (one round to agree). Whether it is set must be the same at every party; the path is
  each party's own.
"""

from __future__ import annotations

import os
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
    plan_dir: str | None = None

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
        if self.plan_dir is not None:
            if not isinstance(self.plan_dir, (str, os.PathLike)) or not os.fspath(self.plan_dir):
                raise ProtocolUsageError(f"plan_dir must be a directory path or None, got "
                                         f"{self.plan_dir!r}")
            object.__setattr__(self, "plan_dir", os.fspath(self.plan_dir))
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
        """The truncation a semi2k run at ``parties`` parties uses: "local" or "exact".

        Exact by default at every party count; "local" only when asked for, at 2 parties
        (rep3 has its own opt-in local method at 3).

        >>> Config().truncation_method(2), Config(truncation="local").truncation_method(2)
        ('exact', 'local')
        """
        return "local" if parties == 2 and self.truncation == "local" else "exact"

    def __repr__(self) -> str:
        # Spells out the method: a reader of a log sees whether a run could fail silently.
        trunc = self.truncation
        if trunc == "auto":
            trunc = "auto (exact)"
        elif trunc == "local":
            trunc = "local (2 parties: UNCHECKED, p(fail) ~ |x*y|*2^(2f-64) per element)"
        return (f"Config(frac_bits={self.frac_bits}, compare_bits={self.compare_bits}, "
                f"safe_bound={self.safe_bound:g}, truncation={trunc!r}, "
                f"timeout={self.timeout:g})")
