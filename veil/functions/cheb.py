"""Polynomials on secret shares: fitted in the Chebyshev basis, evaluated in log depth.

Why Chebyshev and not monomials: a degree-23 fit of the sigmoid on [-8, 8] has monomial
coefficients near 10^4, so 16-bit fixed-point noise in x^k is multiplied by 10^4 (error
0.7); the same fit in the Chebyshev basis has coefficients below 1 and |T_k| <= 1, so the
noise stays at a few ulp (measured: 1e-4). This is the classic argument for Chebyshev
expansions (Trefethen, *Approximation Theory and Approximation Practice*, ch. 3 and 18);
SIRNN and SecretFlow-SPU likewise keep fixed-point polynomials on small normalised ranges.

Evaluation: T_{a+b} = 2 T_a T_b - T_{|a-b|}, so every T_k with 2^(r-1) < k <= 2^r comes from
one product of T_h (the highest known power of two) with a lower term; they all go in ONE
multiplication that opens T_h once, and a degree-d polynomial costs ceil(log2 d) rounds
and d - 1 products. Even and odd functions on [-T, T]
are evaluated through v = T_2(x/T) = 2 (x/T)^2 - 1 (g(v), or (x/T) g(v)), which halves the
degree and the products.

The argument map u = a x + b uses an ``a`` that is exactly representable at the run's
scale and the fit is made for that exact map, so quantising public constants adds no
systematic error (a 1/T rounded to 16 bits is off by up to 3e-5 relative, which a
relative-accuracy function like exp would carry into its output). Fits are computed on
first use for each ``frac_bits`` (numpy least squares at Chebyshev nodes, milliseconds,
deterministic) and cached.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

import numpy as np
import torch
from numpy.polynomial import chebyshev as C   # at import: its first import takes ~0.3 s

from ..ring import wrap
from . import _kern as K


@dataclass(frozen=True)
class Poly:
    """sum_k c_k T_k(u) with u = a x + b (or, with a parity, u = a x and v = 2u^2 - 1)."""
    coeffs: tuple[float, ...]
    a: float
    b: float = 0.0
    parity: str | None = None     # None, "even" (g(v)) or "odd" (u g(v))

    @property
    def degree(self) -> int:
        return len(self.coeffs) - 1

    def plain(self, x: np.ndarray) -> np.ndarray:
        """The polynomial in float64 (what the secret evaluation approximates)."""
        u = self.a * x + self.b
        if self.parity is None:
            return C.chebval(u, self.coeffs)
        g = C.chebval(2 * u * u - 1, self.coeffs)
        return g * u if self.parity == "odd" else g


def _nodes(n: int) -> np.ndarray:
    return np.cos(np.pi * (np.arange(n) + 0.5) / n)


def _exact(c: float, frac: int) -> float:
    return round(c * 2 ** frac) / 2 ** frac


@lru_cache(maxsize=None)
def fit(f: Callable[[np.ndarray], np.ndarray], lo: float, hi: float, degree: int, frac: int,
        *, half: float | None = None, relative: bool = False) -> Poly:
    """Fit ``f`` on [lo, hi] by a degree-``degree`` polynomial of u = a x + b.

    ``half`` (default (hi - lo) / 2) sets a = 1/half; a and b are rounded to what scale
    ``frac`` holds exactly, and the fit is made for the rounded map. ``relative``
    minimises relative instead of absolute error.

    >>> import numpy as np
    >>> p = fit(np.exp, -1.0, 1.0, 8, 16)
    >>> bool(abs(p.plain(np.array([0.5]))[0] - np.exp(0.5)) < 1e-7)
    True
    """
    half = (hi - lo) / 2 if half is None else half
    a = _exact(1.0 / half, frac)
    b = _exact(-a * (lo + hi) / 2, 2 * frac)
    u_lo, u_hi = a * lo + b, a * hi + b
    u = u_lo + (_nodes(max(8 * degree, 256)) + 1) * (u_hi - u_lo) / 2
    x = (u - b) / a
    y = f(x)
    w = 1.0 / np.abs(y) if relative else None
    c = C.chebfit(u, y, degree, w=w)
    return Poly(tuple(float(v) for v in c), a, b)


@lru_cache(maxsize=None)
def fit_parity(f: Callable[[np.ndarray], np.ndarray], T: float, degree: int, frac: int,
               parity: str) -> Poly:
    """Fit an even or odd ``f`` on [-T, T] as g(v) or u g(v), v = 2u^2 - 1, u = a x."""
    if parity not in ("even", "odd"):
        raise ValueError(f"parity must be 'even' or 'odd', got {parity!r}")
    a = _exact(1.0 / T, frac)
    v = _nodes(max(8 * degree, 256))
    u = np.sqrt((v + 1) / 2)
    y = f(u / a)
    if parity == "odd":
        y = y / u
    c = C.chebfit(v, y, degree)
    return Poly(tuple(float(x) for x in c), a, 0.0, parity)


# -- secret evaluation ------------------------------------------------------------------
def basis(u: torch.Tensor, degree: int, opened: dict | None = None,
          raw_top: bool = False) -> list:
    """Shares of T_0 (None: the constant 1), T_1 = u, ..., T_degree of u (scale F).

    ``raw_top``: the last layer's terms stay untruncated (scale 2F), for `combine_top`,
    which truncates their weighted sum once instead of each term.

    Where the protocol reuses openings (semi2k) each T_k is opened once for all the
    products it takes part in (``opened``: see _kern.products_once): degree 8 opens
    T_1..T_4 once each, 4 values per element instead of 10.
    """
    f = K.F()
    T: list = [None, u]
    h = 1
    reuse = K.reuses_openings()
    opened = {} if opened is None else opened
    while len(T) <= degree:
        ks = list(range(h + 1, min(2 * h, degree) + 1))
        prods = K.products_once([(T[h], T[k - h]) for k in ks], opened) if reuse else \
            K.products_common(T[h], [T[k - h] for k in ks])
        fresh = []
        for k, z in zip(ks, prods):
            low = T[2 * h - k]
            # 2 T_h T_{k-h} - T_{2h-k}, still at scale 2F: one truncation for the layer
            # (2z - 2^f low in two passes over the elements, one new tensor).
            fresh.append(K.add_const(2 * z, -1.0, 2 * f) if low is None
                         else (z << 1).sub_(low, alpha=1 << f))
        T.extend(fresh if raw_top and 2 * h >= degree else
                 K.trunc_once(fresh, f, opened if reuse else None))
        h *= 2
    return T[:degree + 1]


def top_start(degree: int) -> int:
    """Index of the first term of `basis`'s last layer (what ``raw_top`` leaves raw)."""
    h = 1
    while 2 * h < degree:
        h *= 2
    return h + 1


def combine_top(T: list, coeffs) -> torch.Tensor:
    """sum_k c_k T_k at scale 3F for a `basis(..., raw_top=True)`: the lower terms (scale
    F) are shifted up, the last layer's (2F) are used as they are; one truncation by 2F
    then brings the sum to F. For values with |sum| * 2^(3F) inside the ring."""
    f = K.F()
    top = top_start(len(T) - 1)
    acc = None
    for k in range(1, len(coeffs)):
        if coeffs[k]:
            # c_k T_k, shifted up by f below the top layer: (T c) << f is T (c << f) in the
            # ring, so each term is one multiply-add pass into one accumulator
            c = K.enc(coeffs[k])
            c = wrap(c << f) if k < top else wrap(c)
            acc = T[k] * c if acc is None else acc.add_(T[k], alpha=c)
    return K.add_const(torch.zeros_like(T[1]) if acc is None else acc, coeffs[0], 3 * f)


def combine(T: list, coeffs, raw: bool = False) -> torch.Tensor:
    """sum_k c_k T_k with public coefficients, one truncation (``raw``: none, the sum is
    returned at scale 2F)."""
    return K.lincomb(list(zip(coeffs[1:], T[1:])), const=coeffs[0], like=T[1],
                     raw=0 if raw else None)


def coeff_bits(p: Poly) -> int:
    """Bits of sum |c_k|, a bound on |P| where every |T_k| <= 1 (the fitted domain)."""
    return math.ceil(math.log2(sum(abs(c) for c in p.coeffs) + 1))


def _top_fits(polys: list[Poly]) -> bool:
    """Whether `combine_top` may be used: exact truncation, and the weighted sum at scale
    3F fits the ring (at 16 fractional bits; not at 24)."""
    f = K.F()
    return not K.local_truncation() and all(K.fits(3 * f + coeff_bits(p) + 1) for p in polys)


def _combined(T: list, polys: list[Poly], raw: list[bool], top: bool,
              opened: dict | None = None) -> list:
    """Each polynomial's sum at scale F, or untruncated at 2F where ``raw``. With ``top``
    (a `basis(..., raw_top=True)`) the sums go through `combine_top` and one truncation
    call per target scale replaces the last layer's truncation and the sum's. Sums
    truncated to scale F are registered in ``opened`` (`K.trunc_once`)."""
    if not top:
        if opened is None:
            return [combine(T, p.coeffs, raw=r) for p, r in zip(polys, raw)]
        # integer coefficients need no truncation (lincomb): those stay as combine makes them
        whole = [all(float(c).is_integer() for c in p.coeffs[1:]) for p in polys]
        out = [combine(T, p.coeffs, raw=r or not w) for p, r, w in zip(polys, raw, whole)]
        idx = [i for i, (r, w) in enumerate(zip(raw, whole)) if not r and not w]
        for i, d in zip(idx, K.trunc_once([out[i] for i in idx], K.F(), opened)):
            out[i] = d
        return out
    f, out = K.F(), [None] * len(polys)
    for shift, want_raw in ((2 * f, False), (f, True)):
        idx = [i for i, r in enumerate(raw) if r == want_raw]
        if idx:
            done = K.trunc_once([combine_top(T, polys[i].coeffs) for i in idx], shift,
                                None if want_raw else opened)
            for i, d in zip(idx, done):
                out[i] = d
    return out


def _pow2_shift(a: float, frac: int) -> int | None:
    """k when a == 2^-k (0 <= k <= frac): then u = a x needs no truncation of its own."""
    k = -math.log2(a) if a > 0 else -1.0
    return int(k) if k.is_integer() and 0 <= k <= frac else None


def argument(p: Poly, z: torch.Tensor, e: int) -> torch.Tensor:
    """u = a x + b, untruncated, for x held untruncated at scale F + e (``z``): the result
    is at scale 2F + e, for a caller that truncates it together with other values (one
    round for x's own truncation and u's). ``a`` is exact at scale F (see `fit`)."""
    f = K.F()
    return K.add_const(z * K.enc(p.a, f), p.b, 2 * f + e)


def evaluate(x: torch.Tensor, polys: list[Poly], raw: bool = False,
             u: torch.Tensor | None = None, opened: dict | None = None) -> list:
    """Evaluate polynomials that share one argument map at the shares x (scale F).

    ``u`` (no parity): the argument a x + b already computed (see `argument`).

    ``opened`` (see `K.products_once`): openings to reuse and to add the results to, for
    a caller that multiplies the results further (a truncated result is then opened by
    its own truncation, `K.trunc_once`). Only where the protocol reuses openings.

    ``raw``: skip the last truncation and return (share, frac) pairs at the scale each
    result has (2F, or 2F + k for an odd parity): a caller that adds more untruncated
    terms, or multiplies by factors with room to spare, truncates once for all of it.

    With a parity and a = 2^-k (T a power of two), u = a x is never computed: the
    products that need u take x and truncate k bits more (x is opened for x*x and
    x * g(v) alike), which saves the truncation round of u. Only where truncation is
    exact (the default): x*x is 2^2k times larger than u*u, which would raise the
    opt-in local truncation's failure rate as much.
    """
    p0 = polys[0]
    if any((p.a, p.b, p.parity is None) != (p0.a, p0.b, p0.parity is None) for p in polys):
        raise ValueError("internal: evaluate() needs polynomials with one argument map")
    reuse = K.reuses_openings()
    if not reuse:
        opened = None
    elif opened is None:
        opened = {}
    if p0.parity is None:
        if u is None:   # opened by its truncation for T_1's products
            u = K.lincomb([(p0.a, x)], const=p0.b, opened=opened)
        top = _top_fits(polys)
        T = basis(u, max(p.degree for p in polys), opened, raw_top=top)
        outs = _combined(T, polys, [raw] * len(polys), top, opened)
        return [(o, 2 * K.F()) for o in outs] if raw else outs
    f = K.F()
    # x*x at scale 2F must fit for every encodable x: 2^(2 range + 2F) <= 2^62 holds at the
    # default 16 fractional bits (exactly), not at 24.
    fold = not K.local_truncation() and K.fits(2 * K.range_bits() + 2 * f)
    k = _pow2_shift(p0.a, f) if fold else None
    base, k = (K.lincomb([(p0.a, x)]), 0) if k is None else (x, k)
    # base is opened once for base*base and base*g(v)
    (sq,) = K.mul_once([(base, base)], opened, f + 2 * k)
    v = K.affine_once(sq, 2, -1.0, None, opened)        # opened with sq: no new opening
    top = _top_fits(polys)
    T = basis(v, max(p.degree for p in polys), opened, raw_top=top)
    outs: list = _combined(T, polys, [raw and p.parity == "even" for p in polys], top,
                           opened)
    odd = [i for i, p in enumerate(polys) if p.parity == "odd"]
    pairs = [(base, outs[i]) for i in odd]
    prods = K.products_reusing(pairs, opened) if raw else K.mul_once(pairs, opened, f + k)
    for i, o in zip(odd, prods):
        outs[i] = o
    if raw:
        return [(o, 2 * f + (k if p.parity == "odd" else 0)) for o, p in zip(outs, polys)]
    return outs


def rounds(p: Poly) -> int:
    """Multiplication rounds of one evaluation (for cost notes and tests)."""
    r = max(p.degree - 1, 0).bit_length()
    return r + (0 if p.parity is None else 1) + (1 if p.parity == "odd" else 0)


__all__ = ["Poly", "fit", "fit_parity", "basis", "top_start", "combine", "combine_top",
           "coeff_bits", "argument",
           "evaluate", "rounds"]
