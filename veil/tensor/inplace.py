"""In-place variants (``add_``, ``mul_``, ``clamp_``, ``copy_``, ...) with torch's rules.

Each computes the out-of-place op and then makes ``self`` hold the result: the same
cost as the out-of-place op, no saving of memory (shares are fresh tensors anyway).
torch's rules are kept: the result keeps ``self``'s shape and dtype (a float result
into an integer tensor is refused), and a leaf that requires grad cannot be changed in
place while grad mode is on. Inside a graph the op is recorded on a snapshot of the old
value, so gradients flow to whatever made it, as in torch.

Views: veil's shape ops return copies, so an in-place change to ``x`` is not seen
through ``y = x[0]`` taken before it (torch would show it). Take views after the
in-place op.
"""

from __future__ import annotations

import torch

from ..autograd.graph import is_grad_enabled
from ..errors import ProtocolUsageError
from ..ring import is_float
from .core import as_public, is_secret


def _snapshot(x):
    """The current value of ``x`` as its own tensor object (keeps its graph node)."""
    old = type(x)(x._share, dtype=x.dtype, frac=x.frac, bits=x._bits)
    old._node, old.requires_grad = x._node, x.requires_grad
    return old


def _assign(self, out, what: str):
    if tuple(out.shape) != tuple(self.shape):
        raise ProtocolUsageError(f"{what}: the result has shape {tuple(out.shape)}, which "
                                 f"cannot be written into a tensor of shape "
                                 f"{tuple(self.shape)} in place (as torch refuses)")
    if out.dtype != self.dtype:
        if is_float(out.dtype) and not is_float(self.dtype):
            raise ProtocolUsageError(f"{what}: result type {out.dtype} can't be cast to the "
                                     f"desired output type {self.dtype} (as torch refuses)")
        out = out._to_dtype(self.dtype)
    self._share, self._bits, self.frac = out._share, out._bits, out.frac
    self._node, self.requires_grad = out._node, out.requires_grad or self.requires_grad
    return self


def _inplace(name: str, fn):
    def method(self, *args, **kwargs):
        if is_grad_enabled() and self.requires_grad and self._node is None:
            raise ProtocolUsageError(
                f"{name}: a leaf tensor that requires grad is used in an in-place operation "
                f"(as torch refuses); do it under veil.autograd.no_grad(), or on a copy")
        return _assign(self, fn(_snapshot(self), *args, **kwargs), name)
    method.__name__ = name
    method.__doc__ = f"In-place {name[:-1]} (torch semantics; see veil.tensor.inplace)."
    return method


def _copy(x, src, non_blocking=False):
    if is_secret(src):
        return src.expand(x.shape) if tuple(src.shape) != tuple(x.shape) else src + 0
    pub = torch.broadcast_to(as_public(src), x.shape).to(x.dtype)
    return x._wrap(x._lift(pub, x.frac), x.dtype)


def _zero(x):
    return _copy(x, torch.zeros(x.shape, dtype=x.dtype))


def _fill(x, value):
    if is_secret(value):
        return _copy(x, value)
    return _copy(x, torch.full(x.shape, as_public(value).item(), dtype=x.dtype))


class InplaceMixin:
    """In-place variants of the out-of-place ops (same cost as those)."""

    add_ = _inplace("add_", lambda x, other, alpha=1: x.add(other, alpha=alpha))
    sub_ = _inplace("sub_", lambda x, other, alpha=1: x.sub(other, alpha=alpha))
    mul_ = _inplace("mul_", lambda x, other: x.mul(other))
    div_ = _inplace("div_", lambda x, other, rounding_mode=None: x.div(other, rounding_mode))
    neg_ = _inplace("neg_", lambda x: x.neg())
    abs_ = _inplace("abs_", lambda x: x.abs())
    relu_ = _inplace("relu_", lambda x: x.relu())
    square_ = _inplace("square_", lambda x: x.square())
    pow_ = _inplace("pow_", lambda x, e: x.pow(e))
    clamp_ = _inplace("clamp_", lambda x, min=None, max=None: x.clamp(min, max))
    clip_ = clamp_
    copy_ = _inplace("copy_", _copy)
    zero_ = _inplace("zero_", _zero)
    fill_ = _inplace("fill_", _fill)
    masked_fill_ = _inplace("masked_fill_", lambda x, mask, value: x.masked_fill(mask, value))
    scatter_ = _inplace("scatter_", lambda x, dim, index, src=None, *, value=None,
                        reduce=None: x.scatter(dim, index, src, value=value, reduce=reduce))
    scatter_add_ = _inplace("scatter_add_", lambda x, dim, index, src:
                            x.scatter_add(dim, index, src))
    index_add_ = _inplace("index_add_", lambda x, dim, index, source, *, alpha=1:
                          x.index_add(dim, index, source, alpha=alpha))

    # ``x += y`` stays out of place (rebinds x), as before: veil code relies on it not
    # changing tensors other names still hold. Call ``x.add_(y)`` to change x itself.

    def masked_fill(self, mask, value):
        """torch.masked_fill: ``value`` where ``mask`` (public: local; secret: 1 select)."""
        from .arith import where
        if not is_secret(value):
            value = torch.tensor(as_public(value).item(),
                                 dtype=self.dtype if is_float(self.dtype) else torch.int64)
        return where(mask, value, self)


__all__ = ["InplaceMixin"]
