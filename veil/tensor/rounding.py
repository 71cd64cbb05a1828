"""Exact rounding and integer division on fixed point: floor, ceil, trunc, round, frac,
floor_divide, remainder, fmod, div(rounding_mode=...), ``//`` and ``%``.

One mechanism: the exact floor of X / Y for ring integers X (secret) and Y (public,
positive). A fixed-point value x is the integer X = x * 2^f, and floor(x) = floor(X / 2^f);
x // y is floor(X / Y) with Y = y * 2^f. Steps:

1. estimate Q0 = trunc(X * (1/Y)) with a truncation (error of a few units at most), refine
   it once with the exact remainder R0 = X - Q0 Y (a local product: Q0 is an integer
   share and Y public) so Q1 is within +-2 of the true quotient;
2. correct it exactly: with R = X - Q1 Y in [-2Y, 3Y), floor(R / Y) =
   [R >= Y] + [R >= 2Y] - [R < 0] - [R < -Y] (four comparisons in one batch, one b2a);
   Q = Q1 + that, and the remainder X - Q Y is exact.

Cost per element (semi2k): 2 truncations (more if a divisor tensor spans a wide range), 4 comparisons in one msb call (1 + log2 of
compare_bits rounds) and one b2a round; round() adds a second pass for the parity and one
equality test. The divisor must be public (a secret divisor is refused) and 4 |Y| must stay
in the comparison range: |y| < 2^(compare_bits - 4 - frac_bits) (8192 with the defaults).
The two truncations are the framework's (Config.truncation): exact by default, local at 2
parties only on request, with its stated failure probability.
"""

from __future__ import annotations

import math

import torch

from ..autograd.graph import differentiable
from ..errors import ProtocolUsageError
from ..functions.grad_rules import register_grad
from ..ring import is_float
from .core import as_public, current, frac_bits, is_secret, proto


def _refuse_secret(other, what):
    if is_secret(other):
        raise ProtocolUsageError(f"{what} by a secret divisor is not supported (the exact "
                                 f"correction needs a public divisor); divide with / and "
                                 f"round the result, or make the divisor public")


def _ring_divisor(y: torch.Tensor, frac: int, what: str) -> torch.Tensor:
    """The public divisor as ring integers at ``frac`` fractional bits, checked."""
    if y.is_floating_point() and not torch.isfinite(y).all():
        raise ProtocolUsageError(f"{what}: the divisor must be finite")
    big = torch.round(y.double() * 2.0 ** frac).to(torch.int64) if frac else y.long()
    if y.numel() and (big == 0).any():
        raise ProtocolUsageError(f"{what}: division by zero (or by a divisor below the "
                                 f"fixed-point resolution 2^-{frac})")
    limit = 2 ** (current().config.compare_bits - 4)
    if big.numel() and big.abs().max() >= limit:
        raise ProtocolUsageError(f"{what}: |divisor| must stay below 2^"
                                 f"{current().config.compare_bits - 4 - frac} for an exact "
                                 f"result; raise compare_bits in veil.Config for larger ones")
    return big


def _estimate(x_share: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Ring shares of about X / Y (a few units off) via one truncated public product.

    1/Y is encoded with 17 significant bits whatever its size (public_frac would cap the
    scale at 2F and keep only a few bits of 1/Y for a large Y); the product then carries
    |X| 2^17, inside the ring for every X in the comparison range.
    """
    inv = 1.0 / y.double()
    top = inv.abs().max().item() if inv.numel() else 1.0
    pf = 17 - math.floor(math.log2(top))
    return proto().trunc(x_share * torch.round(inv * 2.0 ** pf).to(torch.int64), pf)


def _refinements(y: torch.Tensor) -> int:
    """Refinement steps that bring the estimate within +-2 of the quotient.

    The first estimate is off by at most |X| 2^-18 Y_max / Y_min (+1 for the truncation),
    |X| < 2^31; each refinement multiplies that by (Y_max / Y_min) 2^-18.
    """
    a = y.abs()
    ratio = (a.max() / a.min()).item() if a.numel() else 1.0
    if ratio >= 2 ** 15:
        raise ProtocolUsageError("the divisors span more than 2^15 in magnitude; split the "
                                 "operation by divisor size for an exact result")
    err, steps = 2.0 ** 13 * ratio, 0
    while err > 0.5:
        err, steps = err * ratio * 2.0 ** -18, steps + 1
    return steps


def floor_div_ring(x_share: torch.Tensor, y: torch.Tensor, *, coarse=None):
    """(Q, R) shares with Q = floor(X / Y), R = X - Q Y exactly, for public Y > 0.

    ``coarse=(x_small, shift)`` with X = x_small * 2^shift makes the first estimate from
    the smaller x_small (keeps the truncated product small when X was scaled up).
    """
    p = proto()
    x_share, y = torch.broadcast_tensors(x_share, y)
    x_share = x_share.contiguous()
    if coarse is None:
        q = _estimate(x_share, y)
    else:
        small, shift = coarse
        q = _estimate(small.expand(x_share.shape).contiguous(), y.double() / 2.0 ** shift)
    for _ in range(_refinements(y)):                # refine: the remainder is small now
        q = q + _estimate(x_share - q * y, y)
    r = x_share - q * y
    # public offsets go to one share only (add_public), never to every party's
    tests = torch.stack([r, p.add_public(r, y), p.add_public(r, -y), p.add_public(r, -2 * y)])
    bits = p.b2a(p.msb(tests.contiguous()))          # [r<0], [r<-y], [r<y], [r<2y]
    d = -bits[0] - bits[1] - bits[2] - bits[3]
    d = p.add_public(d, torch.full(d.shape, 2, dtype=torch.int64))   # 2 - sum
    return q + d, r - d * y


def _divide(x, other, what):
    """x, other -> (Q shares, R shares, sign of other, result dtype, frac) for public other."""
    _refuse_secret(other, what)
    y = as_public(other)
    dtype = torch.result_type(torch.empty(0, dtype=x.dtype), y)
    frac = frac_bits() if is_float(dtype) else 0
    big = _ring_divisor(y.to(dtype) if is_float(dtype) else y, frac, what)
    sign = torch.where(big < 0, -1, 1).to(torch.int64)
    q, r = floor_div_ring(x.share_at(frac) * sign, big.abs())
    return q, r, sign, dtype, frac


def _as_value(x, q, dtype, frac):
    """An integer share Q as a tensor of ``dtype`` (Q * 2^frac for float)."""
    return x._wrap(q << frac if frac else q, dtype)


# -- rounding to integers (the divisor is 2^f: one exact floor) -------------------------------
def _floor_int(x):
    """Ring shares of floor(x) as an integer, plus the exact remainder."""
    return floor_div_ring(x.share, torch.tensor(1 << x.frac))


@differentiable("floor")
def floor(x):
    """torch.floor, exact (see the module docstring for the cost)."""
    if not x.is_floating_point():
        return x.clone()
    q, _ = _floor_int(x)
    return _as_value(x, q, x.dtype, x.frac)


@differentiable("ceil")
def ceil(x):
    """torch.ceil = -floor(-x), exact."""
    return floor(-x).neg() if x.is_floating_point() else x.clone()


@differentiable("trunc")
def trunc(x):
    """torch.trunc (round toward zero), exact: floor for x >= 0, ceil below."""
    if not x.is_floating_point():
        return x.clone()
    from .arith import where
    return where(x.lt(0), ceil(x), floor(x))


def frac(x):
    """torch.frac = x - trunc(x)."""
    return x - trunc(x)


@differentiable("round")
def round_(x, decimals: int = 0):
    """torch.round: to the nearest integer, ties to even (as torch), exact."""
    if decimals:
        raise ProtocolUsageError("round(decimals=...) is not supported on secret values; "
                                 "scale, round and scale back explicitly")
    if not x.is_floating_point():
        return x.clone()
    p = proto()
    half = 1 << (x.frac - 1)
    y = p.add_public(x.share, torch.full(x.shape, half, dtype=torch.int64))
    q, r = floor_div_ring(y, torch.tensor(1 << x.frac))       # q = floor(x + 1/2)
    tie = p.eqz(r.contiguous())                                 # x + 1/2 was an integer
    _, odd = floor_div_ring(q, torch.tensor(2))                 # q mod 2 as 0/1
    fix = p.select(tie, odd.contiguous())                       # tie AND odd
    return _as_value(x, q - fix, x.dtype, x.frac)


def _zero_grad(g, out, x, *rest):
    # piecewise constant: zero almost everywhere, as torch's gradient is
    return (g._wrap(torch.zeros_like(g.share), g.dtype),) + (None,) * len(rest)


for _n in ("floor", "ceil", "trunc", "round", "floor_divide"):
    register_grad(_n)(_zero_grad)


# -- division with rounding, remainders ---------------------------------------------------------
@differentiable("floor_divide")
def floor_divide(x, other):
    """torch.floor_divide / ``x // y`` for a public divisor: exact floor(x / y)."""
    q, _, _, dtype, frac = _divide(x, other, "floor_divide")
    return _as_value(x, q, dtype, frac)


@differentiable("remainder")
def remainder(x, other):
    """torch.remainder / ``x % y`` (sign of the divisor) for a public divisor, exact."""
    _, r, sign, dtype, frac = _divide(x, other, "remainder")
    return x._wrap(r * sign, dtype)


@register_grad("remainder")
def _remainder_grad(g, out, x, other):
    return g, None                       # d/dx (x - y floor(x / y)) = 1 almost everywhere


@differentiable("fmod")
def fmod(x, other):
    """torch.fmod (sign of the dividend) for a public divisor, exact:
    sign(x) * (|x| mod |y|)."""
    from .arith import where
    neg = x.lt(0)
    absx = where(neg, -x, x)
    _, r, _, dtype, frac = _divide(absx, as_public(other).abs() if not is_secret(other)
                                   else other, "fmod")
    rem = x._wrap(r, dtype)
    return where(neg, -rem, rem)


@register_grad("fmod")
def _fmod_grad(g, out, x, other):
    return g, None


def div_rounding(x, other, rounding_mode):
    """x / y with rounding_mode 'floor' or 'trunc' (public divisor), exact."""
    if rounding_mode == "floor":
        return floor_divide(x, other)
    if rounding_mode != "trunc":
        raise ProtocolUsageError(f"div: rounding_mode must be None, 'trunc' or 'floor', got "
                                 f"{rounding_mode!r}")
    from .arith import where
    _refuse_secret(other, "div(rounding_mode='trunc')")
    y = as_public(other)
    neg = x.lt(0)
    absx = where(neg, -x, x)
    q = floor_divide(absx, y.abs())                   # floor(|x| / |y|) = |trunc(x / y)|
    q = where(neg, -q, q)
    return q * torch.where(y < 0, -1, 1) if (y < 0).any() else q


class RoundingMixin:
    """floor/ceil/trunc/round/frac, floor_divide/remainder/fmod, div(rounding_mode=)."""

    def floor(self):
        return floor(self)

    def ceil(self):
        return ceil(self)

    def trunc(self):
        return trunc(self)

    fix = trunc
    # No ``frac`` method: SecretTensor.frac is the fixed-point scale; use torch.frac(x).

    def round(self, decimals: int = 0):
        return round_(self, decimals)

    def floor_divide(self, other):
        return floor_divide(self, other)

    __floordiv__ = floor_divide

    def remainder(self, other):
        return remainder(self, other)

    __mod__ = remainder

    def fmod(self, other):
        return fmod(self, other)

    def div(self, other, rounding_mode=None):
        if rounding_mode is None:
            return super().div(other)
        return div_rounding(self, other, rounding_mode)

    def __rfloordiv__(self, other):
        _refuse_secret(self, "floor_divide")

    def __rmod__(self, other):
        _refuse_secret(self, "remainder")


__all__ = ["RoundingMixin", "floor", "ceil", "trunc", "round_", "frac", "floor_divide",
           "remainder", "fmod", "div_rounding", "floor_div_ring"]
