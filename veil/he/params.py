"""CKKS parameter sets, all at >= 128-bit security per the HE standard.

The HE security standard (Albrecht et al., homomorphicencryption.org, 2018; SEAL's
``CoeffModulus::MaxBitCount`` at ``sec_level_type::tc128``) bounds the total modulus for
128-bit classical security with ternary secrets: 218 bits at ring size 8192, 438 at 16384.
SEAL itself refuses any set above the bound (``Backend`` builds contexts with TC128).

A set is ``[first] + [scale] * levels + [special]`` bits: each multiplication consumes one
``scale``-bit prime (one *level*); the result must fit the ``first`` prime at the end, so
values must stay below ``2 ** (first - scale - 1)`` in magnitude; the special prime is for
key switching only.
"""

from __future__ import annotations

from dataclasses import dataclass

from .backend import HEError

MAX_BITS_128 = {4096: 109, 8192: 218, 16384: 438, 32768: 881}


@dataclass(frozen=True)
class Params:
    name: str
    poly_degree: int
    first_bits: int
    scale_bits: int
    levels: int
    special_bits: int

    @property
    def coeff_bits(self) -> list[int]:
        return [self.first_bits] + [self.scale_bits] * self.levels + [self.special_bits]

    @property
    def total_bits(self) -> int:
        return sum(self.coeff_bits)

    @property
    def slots(self) -> int:
        return self.poly_degree // 2

    @property
    def scale(self) -> float:
        return float(2 ** self.scale_bits)

    @property
    def max_abs(self) -> float:
        """Largest magnitude a value may reach (at the last level) without wrapping."""
        return float(2 ** (self.first_bits - self.scale_bits - 1))

    def __post_init__(self) -> None:
        bound = MAX_BITS_128.get(self.poly_degree)
        if bound is None or self.total_bits > bound:
            raise HEError(f"parameter set {self.name}: {self.total_bits} modulus bits at ring "
                          f"size {self.poly_degree} is below 128-bit security (max {bound})")

    def describe(self) -> str:
        return (f"{self.name}: N={self.poly_degree}, modulus {self.total_bits} bits "
                f"{self.coeff_bits}, {self.levels} levels, scale 2^{self.scale_bits}, "
                f"|values| < {self.max_abs:g}, {self.slots} slots, 128-bit security")


PARAMS: dict[str, Params] = {}


def register_params(p: Params) -> Params:
    if p.name in PARAMS:
        raise ValueError(f"parameter set {p.name!r} is already registered")
    PARAMS[p.name] = p
    return p


# Fast: ring 8192, 5 levels of 27 bits. Measured: a 784x128 product of values in [-1, 1]
# is off by <= 2e-4, a cubic by 3e-4. The special (key-switching) prime must be well
# above the first: [36, 25 x 6, 32] gave errors of 3 on the same product, [40, 28 x 5, 38]
# 1.4e-3 (key-switching noise ~ q0 / P per rotation).
register_params(Params("n8192", 8192, 37, 27, 5, 46))
# Precise / deep: ring 16384, 8 levels of 40 bits (the same product off by 6e-6), ~4x
# slower per operation.
register_params(Params("n16384", 16384, 60, 40, 8, 58))


def get_params(name: str | Params) -> Params:
    if isinstance(name, Params):
        return name
    if name not in PARAMS:
        raise HEError(f"unknown parameter set {name!r}; choose one of {sorted(PARAMS)}")
    return PARAMS[name]


def choose_params(depth: int, max_abs: float) -> Params:
    """The fastest registered set with ``depth`` levels whose value bound exceeds
    ``max_abs`` with a 4x margin."""
    for p in sorted(PARAMS.values(), key=lambda p: p.poly_degree):
        if p.levels >= depth and p.max_abs >= 4 * max_abs:
            return p
    raise HEError(f"no parameter set has {depth} levels and room for values up to "
                  f"{max_abs:.3g}: use lower-degree activations or normalise the inputs")
