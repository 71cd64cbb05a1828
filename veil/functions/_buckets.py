"""Range reduction by powers of two: which octave bucket a secret holds, in one msb call.

reciprocal, sqrt, rsqrt and log need relative accuracy over ~30 octaves (2^-14 .. 2^15 at
16 fractional bits), which no single low-degree polynomial gives. Like SIRNN (Rathee et
al. 2021) and SecretFlow-SPU we normalise x = x_n 2^(s j) with x_n in [2^(-s/2), 2^(s/2))
and evaluate the function on x_n only. SPU finds the leading bit with a bit decomposition;
here every bucket edge is one comparison and all of them go in ONE batched msb call
(6 rounds at 2 parties), so the reduction costs one comparison per edge and no extra
depth. Buckets of s = 4 octaves (x_n in [1/4, 4)) balance the edge count (7 at default
settings) against the polynomial degree needed on [1/4, 4).

Moving between x and x_n multiplies by public powers of two chosen by a secret one-hot,
in one of two ways:

* ``normalise`` / ``rescale``: one ``select`` per bucket (exact: a bit times a share), in
  one round; costs k selects per element for k buckets.
* ``arith`` then ``scale_mul``: one b2a round turns the one-hot into 0/1 integers
  (cheap: bits on the wire), after which the factor sum_j a_j 2^(e_j) is a local linear
  combination and applying it is ONE product round with two products per element: the
  factors >= 1 as integers (exact, no truncation, so large outputs cannot hit the
  truncation failure zone) and the factors < 1 at a fixed-point scale (results < 4 * 2^F).
  One round more than ``normalise`` the first time, same rounds after, far fewer bytes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..context import current
from . import _kern as K
from . import cheb


@dataclass(frozen=True)
class Buckets:
    onehot: torch.Tensor          # (k, *shape) XOR-shared indicator bits
    js: tuple[int, ...]           # octave index j of each bucket: x = sign * x_n * 2^(s j)
    signs: tuple[int, ...]        # +1 / -1
    s: int


def octave_range(s: int) -> tuple[int, int]:
    """Bucket indices (j_lo, j_hi) covering 4 ulp .. the comparison-safe bound."""
    cfg = current().config
    top = cfg.compare_bits - 2 - cfg.frac_bits          # log2 of the safe bound
    j_lo = math.floor((-cfg.frac_bits + 2 + s / 2) / s)
    j_hi = math.ceil((top - s / 2) / s)
    return j_lo, j_hi


def edges(s: int) -> list[float]:
    j_lo, j_hi = octave_range(s)
    return [2.0 ** (s * j + s / 2) for j in range(j_lo, j_hi)]


def find(x: torch.Tensor, s: int = 4, signed: bool = False) -> Buckets:
    """The bucket of every element of x (scale F). ``signed`` adds the mirrored buckets."""
    j_lo, j_hi = octave_range(s)
    pos = edges(s)
    js = list(range(j_lo, j_hi + 1))
    if not signed:
        return Buckets(K.onehot(K.ge_many(x, pos)), tuple(js), (1,) * len(js), s)
    ths = [-t for t in reversed(pos)] + [0.0] + pos
    return Buckets(K.onehot(K.ge_many(x, ths)), tuple(js[::-1] + js),
                   (-1,) * len(js) + (1,) * len(js), s)


def scale_sum(bk: Buckets, sels: list[torch.Tensor], power: float,
              with_sign: bool = True) -> torch.Tensor:
    """sum_j sign_j^[with_sign] * sels[j] * 2^(power * s * j), exactly where possible.

    ``sels[j]`` is bucket j's selected share (zero outside bucket j). Up-scaling is an
    exact shift; all down-scaled terms are summed at a common scale and truncated once
    (magnitudes stay below 2^(2 + F + shift), far from the truncation failure zone).
    """
    exps = [power * bk.s * j for j in bk.js]
    if any(not float(e).is_integer() for e in exps):
        raise ValueError("internal: bucket scaling needs integer exponents")
    exps = [int(e) for e in exps]
    low = min(min(exps), 0)
    up = None
    down = None
    for sel, e, sg in zip(sels, exps, bk.signs):
        term = -sel if (with_sign and sg < 0) else sel
        if e >= 0:
            up = term << e if up is None else up + (term << e)
        else:
            t = term << (e - low)
            down = t if down is None else down + t
    if down is not None:
        down = K.trunc([down], -low)[0]
        up = down if up is None else up + down
    return up


def select_each(bk: Buckets, values: list[torch.Tensor]) -> list[list[torch.Tensor]]:
    """For each value, its per-bucket selections onehot_j * value, all in ONE select call."""
    k = len(bk.js)
    pairs = [(bk.onehot[j], v) for v in values for j in range(k)]
    flat = K.select_many(pairs)
    return [flat[i * k:(i + 1) * k] for i in range(len(values))]


def normalise(bk: Buckets, x: torch.Tensor, extra: list[torch.Tensor] = ()) -> tuple:
    """x_n = |x| 2^(-s j) in [2^(-s/2), 2^(s/2)), plus selections of ``extra`` values.

    One select round. Returns (x_n, [per-bucket selections of each extra value]).
    """
    sel = select_each(bk, [x, *extra])
    return scale_sum(bk, sel[0], -1.0), sel[1:]


def rescale(bk: Buckets, y: torch.Tensor, power: float, with_sign: bool) -> torch.Tensor:
    """y * sign * 2^(power s j) for each element's bucket j: one select round."""
    return scale_sum(bk, select_each(bk, [y])[0], power, with_sign)


def arith(bk: Buckets) -> torch.Tensor:
    """The one-hot as additive 0/1 integers (scale 0): one b2a round."""
    return K.b2a(bk.onehot)


def _exponents(bk: Buckets, power: float) -> list[int]:
    exps = [power * bk.s * j for j in bk.js]
    if any(not float(e).is_integer() for e in exps):
        raise ValueError("internal: bucket scaling needs integer exponents")
    return [int(e) for e in exps]


def factors(bk: Buckets, a: torch.Tensor, power: float, with_sign: bool = True):
    """(integer factor, fractional factor at scale fs, fs) for y * sign * 2^(power s j)."""
    exps = _exponents(bk, power)
    fs = max([K.F()] + [-e for e in exps])
    big, small = None, None
    for row, e, sg in zip(a, exps, bk.signs):
        sign = -1 if (with_sign and sg < 0) else 1
        if e >= 0:
            t = row * (sign << e) if e else row * sign
            big = t if big is None else big + t
        else:
            t = row * (sign << (fs + e))
            small = t if small is None else small + t
    return big, small, fs


def scale_mul(bk: Buckets, a: torch.Tensor, ys: list[torch.Tensor], power: float,
              with_sign: bool = True, untruncated: bool = False) -> list:
    """y * sign_j * 2^(power s j) for each y, in ONE product round (two products per y).

    With ``untruncated`` returns (exact part, part at scale F + fs, fs) per y instead, so
    a caller can sum the second part before its one truncation (softmax row sums).
    """
    big, small, fs = factors(bk, a, power, with_sign)
    fs_list = [f for f in (big, small) if f is not None]
    if K.reuses_openings():             # each y and factor opened once (a y from a fused
        prods = iter(K.products_once(    # truncation is not opened again)
            [(y, f) for y in ys for f in fs_list], {}))
    elif len(ys) == 1:                  # y is the shared factor: opened once
        prods = iter(K.products_common(ys[0], fs_list))
    else:
        prods = iter(K.products([(y, f) for y in ys for f in fs_list]))
    out = []
    for _ in ys:
        exact = next(prods) if big is not None else None
        pending = next(prods) if small is not None else None
        if untruncated:
            out.append((exact, pending, fs))
            continue
        if pending is not None:
            pending = K.trunc([pending], fs)[0]
            exact = pending if exact is None else exact + pending
        out.append(exact)
    return out


def normalise_for(bk: Buckets, a: torch.Tensor, x: torch.Tensor, poly: "cheb.Poly",
                  with_sign: bool = True, keep: bool = False) -> tuple:
    """(x_n or None, u): x_n = |x| 2^(-s j) by `scale_mul` and the argument u = a x_n + b
    of ``poly``, truncated together in ONE call (one round instead of x_n's and then
    u's); x_n is returned when ``keep``. u is None where truncation is the opt-in local
    one (it would truncate a 2^F larger value; `cheb.evaluate` computes u then)."""
    f = K.F()
    fs = max([f] + [-e for e in _exponents(bk, -1.0)])     # as factors() computes it
    # |x_n| < 8 and |u| <= 1 at scale 2F + fs: fits at 16 fractional bits (2^51), not at 24
    if K.local_truncation() or not K.fits(3 + 2 * f + fs):
        (x_n,) = scale_mul(bk, a, [x], -1.0, with_sign)
        return x_n, None
    ((exact, pending, fs),) = scale_mul(bk, a, [x], -1.0, with_sign, untruncated=True)
    z = pending if exact is None else (exact << fs) + (0 if pending is None else pending)
    u = cheb.argument(poly, z, fs)
    if keep:
        x_n, u = K.trunc([z << f, u], f + fs)
        return x_n, u
    return None, K.trunc([u], f + fs)[0]


def scale_mul_raw(bk: Buckets, a: torch.Tensor, y_raw: torch.Tensor, power: float,
                  y_bits: int, with_sign: bool = True) -> torch.Tensor | None:
    """`scale_mul` of a value y still untruncated at scale 2F (``y_raw``, |y| < 2^y_bits),
    truncated once at the end: the truncation y_raw would have had is saved (one round).
    None where the products would not fit exact truncation's range (then truncate y_raw
    and call `scale_mul`) or under the opt-in local truncation."""
    f = K.F()
    exps = _exponents(bk, power)
    fs = max([f] + [-e for e in exps])
    if K.local_truncation() or not K.fits(y_bits + max([0] + exps) + 2 * f + fs):
        return None
    ((exact, pending, fs),) = scale_mul(bk, a, [y_raw], power, with_sign, untruncated=True)
    z = pending if exact is None else (exact << fs) + (0 if pending is None else pending)
    return K.trunc([z], f + fs)[0]


__all__ = ["Buckets", "arith", "factors", "scale_mul", "octave_range", "edges", "find", "scale_sum", "select_each",
           "normalise", "rescale", "normalise_for", "scale_mul_raw"]
