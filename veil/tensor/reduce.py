"""Reductions: sum/mean/var are local (plus one truncation); max/min/argmax are trees.

A max over n elements takes ceil(log2 n) layers; each layer is one comparison
(1 + ceil(log2(compare_bits-1)) rounds) and one select round that moves values and
indices together.
"""

from __future__ import annotations

from collections import namedtuple

import torch

from ..autograd.graph import differentiable
from ..errors import ProtocolUsageError, RangeError
from ..ring import is_float
from .core import frac_of, proto

MaxResult = namedtuple("MaxResult", ["values", "indices"])


def _dims(dim, ndim):
    if dim is None:
        return list(range(ndim))
    dims = [dim] if isinstance(dim, int) else list(dim)
    return [d % ndim if ndim else 0 for d in dims]


def _count(shape, dims) -> int:
    """How many elements each reduction over ``dims`` combines (1 for a 0-d tensor)."""
    count = 1
    for d in dims:
        count *= shape[d] if shape else 1
    return count


def _no_nan(count: int, out_numel: int, what: str) -> None:
    # torch returns NaN here; fixed point has no NaN, so refuse rather than invent a value.
    if count <= 0 and out_numel:
        raise RangeError(f"{what} over zero elements is NaN in torch, which fixed point "
                         f"cannot hold; check the sizes before reducing")


def max_tree(values: torch.Tensor, indices: torch.Tensor | None):
    """Max (and its first index) over the last dim of ring shares; ties keep the lower index."""
    p = proto()
    while values.shape[-1] > 1:
        n = values.shape[-1]
        half = n // 2
        a, b = values[..., 0:2 * half:2], values[..., 1:2 * half:2]
        keep_a = p.xor_public(p.msb(a - b), torch.ones(a.shape, dtype=torch.uint8))  # a >= b
        diffs = [a - b]
        if indices is not None:
            ia, ib = indices[..., 0:2 * half:2], indices[..., 1:2 * half:2]
            diffs.append(ia - ib)
        sel = p.select(torch.cat([keep_a] * len(diffs), -1), torch.cat(diffs, -1))
        new_v = b + sel[..., :half]
        if indices is not None:
            new_i = ib + sel[..., half:]
        if n % 2:
            new_v = torch.cat([new_v, values[..., -1:]], -1)
            if indices is not None:
                new_i = torch.cat([new_i, indices[..., -1:]], -1)
        values = new_v
        if indices is not None:
            indices = new_i
    return values[..., 0], (indices[..., 0] if indices is not None else None)


class ReduceMixin:
    @differentiable("sum")
    def sum(self, dim=None, keepdim=False, dtype=None):
        dims = _dims(dim, self.dim())
        out_dtype = torch.int64 if self.dtype == torch.bool else self.dtype
        share = self.share.sum(dim=dims, keepdim=keepdim) if dims else self.share.clone()
        out = self._wrap(share, out_dtype)
        return out._to_dtype(dtype) if dtype is not None else out

    def mean(self, dim=None, keepdim=False, dtype=None):
        if not is_float(dtype or self.dtype):
            raise ProtocolUsageError(f"mean() needs a floating dtype, got {self.dtype}: "
                                     f"call .float() first (as torch requires)")
        dims = _dims(dim, self.dim())
        count = _count(self.shape, dims)
        total = self.sum(dim, keepdim)
        _no_nan(count, total.numel(), "mean()")
        if not count:                         # empty result: nothing to divide
            return total._to_dtype(dtype or self.dtype)
        return total._to_dtype(dtype or self.dtype) * (1.0 / count) if count != 1 else total

    def var(self, dim=None, unbiased=None, keepdim=False, *, correction=None):
        if correction is None:
            correction = 1 if unbiased is None or unbiased else 0
        dims = _dims(dim, self.dim())
        count = _count(self.shape, dims)
        out_numel = self.sum(dims, keepdim).numel()
        _no_nan(count - correction, out_numel, f"var(correction={correction})")
        if not out_numel:
            return self.sum(dims, keepdim)
        centred = self - self.mean(dims, keepdim=True)
        return (centred * centred).sum(dims, keepdim) * (1.0 / (count - correction))

    @differentiable("extreme")
    def _extreme(self, dim, keepdim, sign, with_index):
        if self.numel() == 0 or self.dim() == 0:
            return self._extreme_trivial(dim, keepdim, sign, with_index)
        x = self if sign > 0 else -self
        if dim is None:
            vals, idx = max_tree(x.share.reshape(1, -1),
                                 x._index_share(x.numel()).reshape(1, -1) if with_index else None)
            vals, idx = vals.reshape(()), (idx.reshape(()) if idx is not None else None)
        else:
            d = dim % self.dim()
            moved = x.share.movedim(d, -1)
            n = moved.shape[-1]
            idx0 = x._index_share(n).expand(moved.shape).contiguous() if with_index else None
            vals, idx = max_tree(moved, idx0)
            if keepdim:
                vals = vals.unsqueeze(d)
                idx = idx.unsqueeze(d) if idx is not None else None
        values = self._wrap(vals if sign > 0 else -vals, self.dtype)
        indices = self._wrap(idx, torch.int64, 0) if idx is not None else None
        return values, indices

    def _extreme_trivial(self, dim, keepdim, sign, with_index):
        """Max/min of an empty or 0-d tensor: no comparison, torch's shapes and errors.

        torch decides: max() of an empty tensor and max(d) over an empty dim raise its own
        error; other empty inputs give empty results; a 0-d tensor is its own max, index 0.
        """
        ref = torch.zeros(self.shape)         # 0 or 1 element: free
        name = "max" if sign > 0 else "min"
        if dim is None:
            idx = getattr(ref, f"arg{name}")() if with_index else None
            vals = getattr(ref, name)()
        elif with_index:
            vals, idx = getattr(ref, name)(dim, keepdim)
        else:
            vals, idx = getattr(ref, f"a{name}")(dim, keepdim), None
        share = self.share.reshape(vals.shape) if self.dim() == 0 else \
            torch.zeros(vals.shape, dtype=torch.int64)
        values = self._wrap(share, self.dtype)
        if idx is None:
            return values, None
        idx_share = proto().add_public(torch.zeros(idx.shape, dtype=torch.int64), idx)
        return values, self._wrap(idx_share, torch.int64, 0)

    def _index_share(self, n):
        return proto().add_public(torch.zeros(n, dtype=torch.int64), torch.arange(n))

    def max(self, dim=None, keepdim=False):
        """Like torch.max: no dim → the max value; with dim → (values, indices)."""
        if dim is not None and not isinstance(dim, int):
            return self.maximum(dim)
        if dim is None:
            return self._extreme(None, False, 1, False)[0]
        return MaxResult(*self._extreme(dim, keepdim, 1, True))

    def min(self, dim=None, keepdim=False):
        if dim is not None and not isinstance(dim, int):
            return self.minimum(dim)
        if dim is None:
            return self._extreme(None, False, -1, False)[0]
        return MaxResult(*self._extreme(dim, keepdim, -1, True))

    def amax(self, dim=None, keepdim=False):
        if dim is None:
            return self.max()
        out = self
        for d in sorted(_dims(dim, self.dim()), reverse=True):
            out = out._extreme(d, keepdim, 1, False)[0]
        return out

    def amin(self, dim=None, keepdim=False):
        return (-self).amax(dim, keepdim).neg()

    def argmax(self, dim=None, keepdim=False):
        return self._extreme(dim, keepdim, 1, True)[1]

    def argmin(self, dim=None, keepdim=False):
        return self._extreme(dim, keepdim, -1, True)[1]

    @differentiable("maximum")
    def maximum(self, other, *, saved=None):
        """Elementwise max; its gradient splits ties evenly, as torch's does."""
        from .arith import where
        pick = self.ge(other)
        if saved is not None:
            saved["pick"] = pick              # the backward reuses the comparison
        return where(pick, self, other)

    @differentiable("minimum")
    def minimum(self, other, *, saved=None):
        from .arith import where
        pick = self.le(other)
        if saved is not None:
            saved["pick"] = pick
        return where(pick, self, other)

    @differentiable("cumsum")
    def cumsum(self, dim):
        return self._wrap(self.share.cumsum(dim), self.dtype)


__all__ = ["ReduceMixin", "MaxResult", "max_tree", "frac_of"]
