"""Elementwise arithmetic, comparisons and selection on SecretTensor (torch semantics).

Cost notes (2 parties, semi2k): + - and public * are local; secret * secret is one
round; comparisons are 1 + ceil(log2(compare_bits - 1)) rounds and return *bit shares*;
relu / abs / where on a comparison add one round each (the ``select`` kernel).
"""

from __future__ import annotations

import torch

from ..autograd.graph import _requires_grad, differentiable
from ..context import current
from ..errors import ProtocolUsageError
from ..ring import is_float
from ..ring import check_public
from ..protocols.base import carry
from .fixed import masked_pair
from .core import (as_public, encode_operand, factor_limit, frac_of, is_secret, proto,
                   public_frac, public_is_integral, result_dtype)


def _encode_factor(other) -> tuple[torch.Tensor, int | None]:
    """A public factor as the ring operand a share is multiplied by, and the fractional
    bits it carries (None: an integer factor, multiplied as it is). Refuses NaN,
    infinity and factors beyond `factor_limit` (RangeError)."""
    pub = as_public(other)
    check_public(pub, factor_limit())
    if public_is_integral(pub):
        return pub.to(torch.int64), None
    pf = public_frac(pub)
    return encode_operand(pub, pf, factor_limit()), pf


# A training step multiplies by the same Python numbers every step (a learning rate, a
# loss's 1/batch): their checks and encoding (some 40 small torch calls) are done once.
# Keyed by everything the outcome depends on; only factors that passed are remembered
# (NaN never equals itself: it is checked, and refused, every time).
_FACTORS: dict = {}
_FACTORS_MAX = 1024


def _public_factor(other) -> tuple[torch.Tensor, int | None]:
    """`_encode_factor`, remembered for Python ints and floats (read-only 0-d results)."""
    kind = type(other)
    if kind is not float and kind is not int:
        return _encode_factor(other)
    cfg = current().config
    key = (kind, other, torch.get_default_dtype(), cfg.frac_bits, cfg.compare_bits)
    hit = _FACTORS.get(key)
    if hit is None:
        hit = _encode_factor(other)
        if len(_FACTORS) >= _FACTORS_MAX:
            _FACTORS.clear()
        _FACTORS[key] = hit
    return hit



# A tensor-layer truncation is fused (left masked for a later product, `_rescale`) from
# this many elements on. A fused truncation costs more Python and PRG set-up (a keyed
# mask per tensor: logistic regression's 32-element logits and gradients, which no
# product follows, trained 50 % slower in-process); where a product follows it saves
# 8 bytes per element and often a round (GPT-2's per-token activations, 768 and up: 36
# rounds per token). Below it, plain.
FUSE_MIN_ELEMENTS = 512

class ArithMixin:
    # -- scale alignment ----------------------------------------------------------------
    def _binary_setup(self, other):
        dtype = result_dtype(self, other)
        return dtype, frac_of(dtype)

    def _lift(self, value, frac: int) -> torch.Tensor:
        """A public value as a share: party 0 holds it, the others hold zeros."""
        enc = encode_operand(as_public(value), frac)
        return proto().add_public(torch.zeros_like(enc), enc)

    # -- + - ------------------------------------------------------------------------------
    @differentiable("add")
    def add(self, other, alpha=1):
        if alpha != 1:
            other = other * alpha
        dtype, frac = self._binary_setup(other)
        if is_secret(other):
            return self._wrap(self.share_at(frac) + other.share_at(frac), dtype)
        enc = encode_operand(as_public(other), frac)
        return self._wrap(proto().add_public(self.share_at(frac), enc), dtype)

    __add__ = add

    def __radd__(self, other):
        return self.add(other)

    @differentiable("neg")
    def neg(self):
        return self._like(-self.share)

    __neg__ = neg

    def sub(self, other, alpha=1):
        return self.add(-other if is_secret(other) else -as_public(other), alpha=alpha)

    __sub__ = sub

    def __rsub__(self, other):
        return (-self).add(other)

    # -- * / --------------------------------------------------------------------------------
    @differentiable("mul")
    def mul(self, other):
        dtype, frac = self._binary_setup(other)
        if is_secret(other):
            if self._bits is not None and other._bits is None and self.dtype == torch.bool:
                return other._select(self, dtype)
            if other._bits is not None and self._bits is None and other.dtype == torch.bool:
                return self._select(other, dtype)
            if self._bits is not None and other._bits is not None:
                return self._wrap_bits(proto().and_bit_elements(self._bits, other._bits))
            # a fixed operand, or one a fused truncation left masked: its opening is reused
            masked = masked_pair(self, other, elementwise=True)
            if masked is not None:
                return self._rescale(proto().mul_masked(*masked), self.frac + other.frac,
                                     dtype)
            x, y = torch.broadcast_tensors(self.share, other.share)
            return self._product(proto().mul, proto().mul_trunc, x, y, other, dtype)
        factor, pf = _public_factor(other)
        if pf is None:                                   # an integer: no truncation
            return self._rescale(self.share * factor, self.frac, dtype)
        return self._rescale(self.share * factor, self.frac + pf, dtype)

    __mul__ = mul

    def __rmul__(self, other):
        return self.mul(other)

    def _rescale(self, z: torch.Tensor, have: int, dtype: torch.dtype):
        """Bring a product with ``have`` fractional bits to the scale of ``dtype``."""
        want = frac_of(dtype)
        p = proto()
        if have > want and p.fuses_truncation and z.numel() >= FUSE_MIN_ELEMENTS:
            # left masked for the next elementwise product, in this op or a later one
            z = carry(p.trunc_masked([z], have - want)[0], p.rank == 0)
        elif have > want:
            z = p.trunc(z, have - want)
        elif have < want:
            z = z << (want - have)
        return self._wrap(z, dtype)

    def _product(self, kernel, fused, x, y, other, dtype):
        """A secret product, truncated in the same kernel when it needs truncating (the
        protocol may save a round: rep3 truncates inside the product's reshare)."""
        have, want = self.frac + other.frac, frac_of(dtype)
        if have > want and not proto().fuses_truncation:
            return self._wrap(fused(x, y, have - want), dtype)
        return self._rescale(kernel(x, y), have, dtype)

    def _select(self, cond, dtype):
        """self * cond where cond holds bit shares: one round, no b2a."""
        x, b = torch.broadcast_tensors(self.share, cond._bits)
        z = proto().select(b.contiguous(), x.contiguous())
        return self._rescale(z, self.frac, dtype)

    def div(self, other, rounding_mode=None):
        if rounding_mode is not None:
            raise ProtocolUsageError("div(rounding_mode=...) is not supported on secret values")
        if is_secret(other):
            return self.mul(other.reciprocal())   # reciprocal: veil.functions
        pub = as_public(other)
        check_public(pub, float("inf"))                      # NaN / infinity
        if (pub == 0).any():
            raise ProtocolUsageError("division of a secret by a public zero")
        dtype = torch.result_type(torch.empty(1, dtype=self.dtype), pub)
        if not is_float(dtype):
            dtype = torch.get_default_dtype()
        # The reciprocal is taken in float64 so it is exact to the encoding's precision.
        return self._to_float(dtype).mul(1.0 / pub.to(torch.float64))._to_dtype(dtype)

    __truediv__ = div

    def __rtruediv__(self, other):
        return self.reciprocal().mul(other)

    def _to_float(self, dtype):
        return self if is_float(self.dtype) else self._wrap(self.share_at(frac_of(dtype)), dtype)

    @differentiable("to_dtype")
    def _to_dtype(self, dtype):
        """Relabel/rescale to ``dtype`` (int -> float is exact; float -> int is refused)."""
        if dtype == self.dtype:
            return self
        if is_float(dtype) and is_float(self.dtype):
            return self._wrap(self.share, dtype)
        if is_float(dtype):
            return self._wrap(self.share_at(frac_of(dtype)), dtype)
        if is_float(self.dtype):
            raise ProtocolUsageError(f"cannot convert a secret {self.dtype} to {dtype} "
                                     f"implicitly; use .floor() first")
        return self._wrap(self.share, dtype)

    def to(self, dtype):
        """Convert to ``dtype``: int/bool -> float is free; float -> int floors (trunc)."""
        if isinstance(dtype, torch.dtype) and not is_float(dtype) and is_float(self.dtype):
            return self._wrap(proto().trunc(self.share, self.frac), dtype)
        return self._to_dtype(dtype)

    def float(self):
        return self.to(torch.float32)

    def double(self):
        return self.to(torch.float64)

    def long(self):
        return self.to(torch.int64)

    def square(self):
        return self.mul(self)

    def pow(self, exponent):
        if isinstance(exponent, int) or (isinstance(exponent, float) and exponent.is_integer()):
            k = int(exponent)
            if k < 0:
                return self.reciprocal().pow(-k)
            result, base = None, self
            while k:
                if k & 1:
                    result = base if result is None else result.mul(base)
                k >>= 1
                if k:
                    base = base.mul(base)
            return result if result is not None else self._lift_like(1.0)
        return self.pow_float(exponent)       # veil.functions

    __pow__ = pow

    def _lift_like(self, value):
        return self._wrap(self._lift(torch.full(self.shape, value), self.frac), self.dtype)

    # -- matmul ------------------------------------------------------------------------------
    def _matmul_add(self, other, bias):
        """self @ other + bias for secret operands, truncated once with the bias added at
        the product's scale: the result is what the truncation left (masked for a next
        elementwise product, `_rescale`), which an add after it would lose. Falls back to
        matmul then add where that does not apply (no fused truncation, autograd, mixed
        dtypes)."""
        if not (is_secret(other) and is_secret(bias) and proto().fuses_truncation) or any(
                _requires_grad(t) for t in (self, other, bias)) or bias._bits is not None:
            return self.matmul(other).add(bias)   # (rep3 truncates inside its product)
        dtype, _ = self._binary_setup(other)
        have = self.frac + other.frac
        if bias.dtype != dtype or bias.frac != frac_of(dtype) or have < bias.frac:
            return self.matmul(other).add(bias)
        _meta(torch.matmul, self, other)       # torch's shape error here, not at the dealer
        out = (self.shape[0], other.shape[1]) if self.dim() == 2 and other.dim() == 2 else None
        if out is None or tuple(torch.broadcast_shapes(out, bias.shape)) != out:
            return self.matmul(other).add(bias)      # not addmm's 2-D case, or a wider bias
        masked = masked_pair(self, other)
        z = proto().matmul_masked(*masked) if masked is not None else \
            proto().matmul(self.share, other.share)
        return self._rescale(z + (bias.share << (have - bias.frac)), have, dtype)

    @differentiable("matmul")
    def matmul(self, other):
        dtype, frac = self._binary_setup(other)
        if is_secret(other):
            _meta(torch.matmul, self, other)   # torch's shape error here, not at the dealer
            masked = masked_pair(self, other)    # a fixed operand: its opening is reused
            if masked is not None:
                return self._rescale(proto().matmul_masked(*masked), self.frac + other.frac,
                                     dtype)
            return self._product(proto().matmul, proto().matmul_trunc, self.share,
                                 other.share, other, dtype)
        pub = as_public(other)
        check_public(pub, factor_limit())
        if public_is_integral(pub):
            return self._rescale(torch.matmul(self.share, pub.to(torch.int64)), self.frac, dtype)
        pf = public_frac(pub)
        return self._rescale(torch.matmul(self.share, encode_operand(pub, pf, factor_limit())),
                             self.frac + pf, dtype)

    __matmul__ = matmul

    @differentiable("rmatmul")
    def __rmatmul__(self, other):
        if is_secret(other):                  # other @ self with both secret
            return other.matmul(self)
        dtype, frac = self._binary_setup(other)
        pub = as_public(other)
        check_public(pub, factor_limit())
        if public_is_integral(pub):
            return self._rescale(torch.matmul(pub.to(torch.int64), self.share), self.frac, dtype)
        pf = public_frac(pub)
        return self._rescale(torch.matmul(encode_operand(pub, pf, factor_limit()), self.share),
                             self.frac + pf, dtype)

    # -- comparisons: bit shares --------------------------------------------------------
    def _diff(self, other):
        dtype, frac = self._binary_setup(other)
        if is_secret(other):
            return self.share_at(frac) - other.share_at(frac)
        return proto().add_public(self.share_at(frac), -encode_operand(as_public(other), frac))

    def lt(self, other):
        return self._wrap_bits(proto().msb(self._diff(other)))

    def gt(self, other):
        return self._wrap_bits(proto().msb(-self._diff(other)))

    def le(self, other):
        return self.gt(other).logical_not()

    def ge(self, other):
        return self.lt(other).logical_not()

    def eq(self, other):
        return self._wrap_bits(proto().eqz(self._diff(other)))

    def ne(self, other):
        return self.eq(other).logical_not()

    __lt__, __gt__, __le__, __ge__ = lt, gt, le, ge
    __eq__, __ne__ = eq, ne
    __hash__ = object.__hash__

    # -- logic: torch's logical_* treat any non-zero value as True -------------------------
    def _as_bits(self):
        if self._bits is not None:
            return self._bits
        raise ProtocolUsageError("internal: bit form requested for an arithmetic tensor")

    def bool(self):
        """torch's ``.bool()``: x != 0 (one equality test unless x is already bool)."""
        return self if self.dtype == torch.bool else self.ne(0)

    def logical_not(self):
        if self.dtype != torch.bool:
            return self.eq(0)                 # not an unscaled 1 - x: float 1 is 2^f
        if self._bits is not None:
            return self._wrap_bits(proto().xor_public(self._bits, torch.ones_like(self._bits)))
        return self._wrap(self._lift(torch.ones(self.shape, dtype=torch.int64), 0) - self.share,
                          torch.bool)

    def logical_and(self, other):
        a, b = self.bool(), _truth(other)
        if not is_secret(b):
            if a._bits is not None:           # AND with a public bit is local on XOR shares
                bits, pub = torch.broadcast_tensors(a._bits, b.to(torch.uint8))
                return a._wrap_bits(bits & pub)
            return a.mul(b.to(torch.int64))._to_dtype(torch.bool)
        return a.mul(b)

    def logical_xor(self, other):
        a, b = self.bool(), _truth(other)
        if not is_secret(b):
            if a._bits is not None:
                bits, pub = torch.broadcast_tensors(a._bits, b.to(torch.uint8))
                return a._wrap_bits(proto().xor_public(bits, pub))
            b = b.to(torch.int64)
        elif a._bits is not None and b._bits is not None:
            return a._wrap_bits(a._bits ^ b._bits)
        prod = a.logical_and(b)
        return a._wrap((a + b).share - 2 * prod.share, torch.bool)

    def logical_or(self, other):
        return self.logical_xor(other).logical_xor(self.logical_and(other))

    # -- bitwise operators: logical on bool only; never a guess on integers -------------------
    def _bitwise(self, other, op: str):
        if self.dtype == torch.bool and _dtype_of(other) == torch.bool:
            return getattr(self, f"logical_{op}")(other)
        raise ProtocolUsageError(
            f"'{_SYMBOL[op]}' on a secret {self.dtype} (with {_dtype_of(other)}) is bitwise in "
            f"torch, and veil does not decompose secret integers into bits here. For 0/1 or "
            f"true/false data convert first: x.bool() {_SYMBOL[op]} y.bool(), or use "
            f"torch.logical_{op}(x, y) (non-zero is true)")

    def __and__(self, other):
        return self._bitwise(other, "and")

    def __or__(self, other):
        return self._bitwise(other, "or")

    def __xor__(self, other):
        return self._bitwise(other, "xor")

    __rand__, __ror__, __rxor__ = __and__, __or__, __xor__

    def __invert__(self):
        """torch's ``~``: logical not on bool, two's-complement -x - 1 on integers (local)."""
        if self.dtype == torch.bool:
            return self.logical_not()
        if is_float(self.dtype):
            raise ProtocolUsageError(f"'~' is not defined for {self.dtype} tensors (torch "
                                     f"refuses it too); use torch.logical_not(x) or 1 - x")
        return self._wrap(proto().add_public(-self.share, torch.tensor(-1)), self.dtype)

    # -- selections ---------------------------------------------------------------------------
    def relu(self):
        """max(x, 0): one comparison with zero, then one select round (7 rounds at 2 parties).

        Written as (x > 0) * x, not (x >= 0) * x: the same values, and the gradient at
        exactly 0 is 0, as in torch.
        """
        return self.gt(0).mul(self) if self._bits is None else self

    @differentiable("abs")
    def abs(self):
        neg = self.lt(0)
        return self - 2 * neg.mul(self)

    def sign(self):
        pos, neg = self.gt(0), self.lt(0)
        s = pos._like_arith() - neg._like_arith()
        return s if not is_float(self.dtype) else s._to_float(self.dtype)

    def _like_arith(self):
        return self._wrap(self.share, torch.int64)

    def where(self, condition, other):
        """torch.Tensor.where: self where condition else other."""
        return where(condition, self, other)

    def clamp(self, min=None, max=None):
        out = self
        if min is not None:
            out = where(out.lt(min), _full_like(out, min), out)
        if max is not None:
            out = where(out.gt(max), _full_like(out, max), out)
        return out

    clip = clamp


def matmul_shapes_ok(a: tuple, b: tuple) -> bool:
    """True when torch.matmul takes operands of shapes ``a`` and ``b`` (its rules: 1-D
    operands are a row / a column, the last two dims multiply, the others broadcast).
    False means "ask torch": shapes it refuses, and nothing else, come back False."""
    if not a or not b:
        return False
    inner_a = a[-1]
    inner_b = b[-2] if len(b) >= 2 else b[0]
    if inner_a != inner_b:
        return False
    batch_a, batch_b = a[:-2], b[:-2]
    for x, y in zip(reversed(batch_a), reversed(batch_b)):
        if x != y and x != 1 and y != 1:
            return False
    return True


def _meta(fn, a, b) -> None:
    """Run ``fn`` on shape-only tensors: raises torch's own error for shapes it refuses.

    Must happen before a protocol kernel asks the dealer for material of impossible
    shapes (which would fail at the dealer, far from the caller's mistake). Shapes
    torch.matmul certainly takes (`matmul_shapes_ok`) need no meta call: its first one
    imports sympy (torch._check does), 0.2-1.4 s of a training's first step in a fresh
    process.
    """
    if fn is torch.matmul and matmul_shapes_ok(tuple(a.shape), tuple(b.shape)):
        return
    fn(torch.empty(tuple(a.shape), device="meta"), torch.empty(tuple(b.shape), device="meta"))


_SYMBOL = {"and": "&", "or": "|", "xor": "^"}


def _dtype_of(x) -> torch.dtype:
    return x.dtype if is_secret(x) else as_public(x).dtype


def _truth(x):
    """An operand of logical_*: a secret as bool (x != 0), a public one as a bool tensor."""
    return x.bool() if is_secret(x) else as_public(x) != 0


def _full_like(x, value):
    if is_secret(value):
        return value
    return torch.full(x.shape, float(value)) if is_float(x.dtype) else \
        torch.full(x.shape, value, dtype=torch.int64)


@differentiable("where")
def where(condition, x, y):
    """Elementwise ``x if condition else y``; any argument may be secret or public.

    A secret condition from a comparison costs one round (select on its bit shares).
    """
    if not is_secret(condition):
        cond = as_public(condition).bool()
        sec = x if is_secret(x) else y
        dtype, frac = result_dtype(x, y), frac_of(result_dtype(x, y))
        xs = x.share_at(frac) if is_secret(x) else sec._lift(x, frac)
        ys = y.share_at(frac) if is_secret(y) else sec._lift(y, frac)
        return sec._wrap(torch.where(cond, xs, ys), dtype)
    if condition.dtype != torch.bool:
        raise ProtocolUsageError(f"where: the condition must be bool, got a secret "
                                 f"{condition.dtype} (torch requires bool too); use "
                                 f"cond.bool() or a comparison")
    dtype = result_dtype(x, y)
    diff = (x - y) if is_secret(x) else (-(y - x))
    return diff._to_dtype(dtype).mul(condition).add(y)
