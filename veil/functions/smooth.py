"""Saturating smooth functions: one polynomial piece between two linear asymptotes.

The recipe behind sigmoid, tanh, erf, gelu, silu, softplus and their derivatives:

    f(x) = c0 + a0 x + P(x)         for -T <= x <= T  (P even or odd, Chebyshev fit)
    f(x) = a x + b                  beyond +-T        (the asymptote)

Both edges are compared in ONE msb call (6 rounds at 2 parties); P is evaluated through
v = 2 (x/T)^2 - 1, which halves its degree (see cheb.py); one select round (two selects
per element, on the thermometer bits) keeps the right piece (exact on the untruncated
pieces, which are then truncated once together). Cost at 2 parties: 6 + depth(P) + 1
rounds under local truncation; exact truncation adds one per polynomial layer and one at
the end. Two comparisons and about degree(P) + 2 products per element. The asymptote's constant b
is moved by half the residual at T (minimax: beyond T the error is at most half of
|f(T) - (a T + b_inf)|). This is the piecewise-polynomial design of SIRNN (Rathee et al.
2021) and of SecretFlow-SPU's and Bolt's GELU, with a single polynomial piece: the
Chebyshev basis makes a high degree numerically harmless, and a piece costs comparisons
(3 products' worth each) while degree costs one product.

Parameters (T, degree of P in v) and float error of P plus saturation, measured:

========== ======== ====== =========
function   T        degree error
========== ======== ====== =========
sigmoid    8        11     2e-4
tanh       4        11     3.5e-4
erf        3        8      4e-5
gelu       4        8      1e-4
gelu tanh  4        8      1e-4
silu       10       16     3e-4
softplus   8        10     2e-4
gelu'      5        10     1e-4
erf'       4        12     4e-5
========== ======== ====== =========
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from . import _kern as K
from . import cheb

SQRT_2_OVER_PI = float(np.sqrt(2.0 / np.pi))


def erf_np(x):
    return torch.special.erf(torch.as_tensor(x, dtype=torch.float64)).numpy()


def sigmoid_np(x):
    return 1.0 / (1.0 + np.exp(-x))


def gelu_np(x):
    return 0.5 * x * (1 + erf_np(x / np.sqrt(2)))


def gelu_tanh_np(x):
    return 0.5 * x * (1 + np.tanh(SQRT_2_OVER_PI * (x + 0.044715 * x ** 3)))


def gelu_grad_np(x):
    return 0.5 * (1 + erf_np(x / np.sqrt(2))) + x * np.exp(-x * x / 2) / np.sqrt(2 * np.pi)


def gelu_tanh_grad_np(x):
    t = np.tanh(SQRT_2_OVER_PI * (x + 0.044715 * x ** 3))
    return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * SQRT_2_OVER_PI * (1 + 3 * 0.044715 * x * x)


@dataclass(frozen=True)
class Saturating:
    """f = c0 + a0 x + P(x) on [-T, T] (P of the given parity), asymptotes outside."""
    name: str
    f: Callable[[np.ndarray], np.ndarray]
    T: float
    degree: int
    parity: str
    c0: float = 0.0
    a0: float = 0.0
    hi: tuple[float, float] = (0.0, 1.0)     # (slope, intercept) as x -> +inf
    lo: tuple[float, float] = (0.0, 0.0)     # as x -> -inf

    def part(self, x):
        return self.f(x) - self.c0 - self.a0 * x

    def edge(self, side: int) -> tuple[float, float]:
        a, b = self.hi if side > 0 else self.lo
        t = side * self.T
        resid = float(self.f(np.array([t]))[0]) - (a * t + b)
        return a, b + resid / 2

    def rounds(self) -> int:
        """Rounds at 2 parties: msb, polynomial, select."""
        return 6 + cheb.rounds(cheb.Poly((0.0,) * (self.degree + 1), 1.0, 0.0,
                                         self.parity)) + 1


SIGMOID = Saturating("sigmoid", sigmoid_np, 8.0, 11, "odd", c0=0.5)
TANH = Saturating("tanh", np.tanh, 4.0, 11, "odd", lo=(0.0, -1.0))
ERF = Saturating("erf", erf_np, 3.0, 8, "odd", lo=(0.0, -1.0))
GELU = Saturating("gelu", gelu_np, 4.0, 8, "even", a0=0.5, hi=(1.0, 0.0))
GELU_TANH = Saturating("gelu_tanh", gelu_tanh_np, 4.0, 8, "even", a0=0.5, hi=(1.0, 0.0))
SILU = Saturating("silu", lambda x: x * sigmoid_np(x), 10.0, 16, "even", a0=0.5,
                  hi=(1.0, 0.0))
SOFTPLUS = Saturating("softplus", lambda x: np.logaddexp(0.0, x), 8.0, 10, "even", a0=0.5,
                      hi=(1.0, 0.0))
# Derivatives, for the backward rules.
GELU_GRAD = Saturating("gelu_grad", gelu_grad_np, 5.0, 10, "odd", c0=0.5)
GELU_TANH_GRAD = Saturating("gelu_tanh_grad", gelu_tanh_grad_np, 4.0, 9, "odd", c0=0.5)
ERF_GRAD = Saturating("erf_grad", lambda x: 2 / np.sqrt(np.pi) * np.exp(-x * x), 4.0, 12,
                      "even", hi=(0.0, 0.0))


def _affine_pieces(x: torch.Tensor, terms: list[tuple[float, float]], e: int) -> tuple:
    """(untruncated values to truncate by F + e, finish) for the pieces a x + b: one
    value per distinct non-integer |a| (scale 2F + e); ``finish(truncated)`` returns the
    pieces at scale F."""
    f = K.F()
    mags = sorted({abs(a) for a, _ in terms if a and not float(a).is_integer()})
    raw = [x * K.enc(m, f + e) for m in mags]

    def finish(done, opened=None):
        # with ``opened`` (x and ``done`` registered there) the pieces stay registered
        by = dict(zip(mags, done))
        out = []
        for a, b in terms:
            if not a:
                out.append(K.add_const(torch.zeros_like(x), b) if b else torch.zeros_like(x))
                continue
            c, t = (int(a), x) if float(a).is_integer() else (1 if a > 0 else -1, by[abs(a)])
            out.append(K.combine_once([(c, t)], opened, b))
        return out
    return raw, finish


def _saturating_even(x: torch.Tensor, spec: Saturating, poly) -> torch.Tensor | None:
    """The even case with u = x / 2^k, where openings are reused and truncation is exact,
    in one round less than `saturating`'s general path: the linear pieces are truncated
    in x*x's truncation call, P's last Chebyshev layer is not truncated term by term but
    summed at scale 3F and truncated once, and the selects then work at scale F. None
    where that does not apply (or would not fit the ring)."""
    f = K.F()
    k = cheb._pow2_shift(poly.a, f)
    if (spec.parity != "even" or k is None or K.local_truncation() or not K.reuses_openings()
            or not K.fits(2 * K.range_bits() + 2 * f)
            or not K.fits(3 * f + cheb.coeff_bits(poly) + 1)):
        return None
    (a_lo, b_lo), (a_hi, b_hi) = spec.edge(-1), spec.edge(1)
    pieces, finish = _affine_pieces(x, [(a_lo - spec.a0, b_lo - spec.c0),
                                        (a_hi - spec.a0, b_hi - spec.c0),
                                        (spec.a0, spec.c0)], 2 * k)
    opened: dict = {}
    (sq_raw,) = K.products_once([(x, x)], opened)           # x^2 = 2^2k u^2, scale 2F
    sq, *done = K.trunc_once([sq_raw, *pieces], f + 2 * k, opened)   # sq stays opened
    lo, hi, common = finish(done, opened)
    T = cheb.basis(K.affine_once(sq, 2, -1.0, None, opened), poly.degree, opened, raw_top=True)
    (p,) = K.trunc_once([cheb.combine_top(T, poly.coeffs)], 2 * f, opened)
    ge_lo, ge_hi = K.ge_many(x, [-spec.T, spec.T])
    # out = lo + [x >= -T] (p - lo) + [x >= T] (hi - p); beyond T p cancels exactly.
    # p, lo and hi come masked from their truncations: the selects open only the bits.
    s_lo, s_hi = K.select_once([(ge_lo, K.combine_once([(1, p), (-1, lo)], opened)),
                                (ge_hi, K.combine_once([(1, hi), (-1, p)], opened))], opened)
    return lo + s_lo + s_hi + common


def saturating(x: torch.Tensor, spec: Saturating) -> torch.Tensor:
    """Evaluate ``spec`` on shares x (scale F)."""
    poly = cheb.fit_parity(spec.part, spec.T, spec.degree, K.F(), spec.parity)
    fused = _saturating_even(x, spec, poly)
    if fused is not None:
        return fused
    # P untruncated (scale s = 2F, or 2F + k for an odd P with u = x / 2^k): the pieces
    # below are built at the same scale and the whole sum is truncated ONCE, after the
    # selects (select is exact on any ring value), instead of once for P and once for
    # each linear piece.
    ((p, s),) = cheb.evaluate(x, [poly], raw=True)
    ge_lo, ge_hi = K.ge_many(x, [-spec.T, spec.T])
    (a_lo, b_lo), (a_hi, b_hi) = spec.edge(-1), spec.edge(1)
    e = s - 2 * K.F()
    # Pieces minus the common part c0 + a0 x. With the thermometer bits,
    #   out = lo + [x >= -T] (p - lo) + [x >= T] (hi - p),
    # two selects instead of three; beyond T the (meaningless) p cancels exactly.
    lo = K.lincomb([(a_lo - spec.a0, x)], const=b_lo - spec.c0, like=x, raw=e)
    hi = K.lincomb([(a_hi - spec.a0, x)], const=b_hi - spec.c0, like=x, raw=e)
    s_lo, s_hi = K.select_many([(ge_lo, p - lo), (ge_hi, hi - p)])
    common = K.lincomb([(spec.a0, x)], const=spec.c0, like=x, raw=e)
    return K.trunc([lo + s_lo + s_hi + common], s - K.F())[0]


__all__ = ["Saturating", "saturating", "SIGMOID", "TANH", "ERF", "GELU", "GELU_TANH", "SILU",
           "SOFTPLUS", "GELU_GRAD", "GELU_TANH_GRAD", "ERF_GRAD"]
