"""Reductions and small linear algebra built from the core ops: prod, norm, std, trace,
dot, outer/ger, kron, diagonal.

Every op here is a composition of differentiable core ops (products, sums, comparisons,
sqrt), so gradients come from their rules. Costs (semi2k):

* ``prod`` over n elements: a product tree, ceil(log2 n) rounds of secret products;
* ``norm``: p=2/'fro' one product round + sum + sqrt (veil.functions); p=1 one
  comparison (abs); p=inf an abs then a max tree; other p: abs, integer power by
  squaring, and ``pow_float(1/p)``;
* ``std`` = sqrt(var); ``trace`` is local; ``dot``/``outer``/``kron`` are one product
  round (``dot`` and ``outer`` use the matmul kernel: one truncation per output).

Fixed point holds |v| < 2^(63 - 2 frac_bits) ≈ 2^31 between products (32768 at the
default 16 bits after a product): a long ``prod`` of values above 1 overflows it like
float16 would; keep such products in log space (``x.log().sum().exp()``).
"""

from __future__ import annotations

import torch

from ..errors import ProtocolUsageError
from .core import as_public, is_secret
from .reduce import _dims


def _prod_last(x):
    """Product over the last dim by a tree of pairwise products."""
    while x.shape[-1] > 1:
        n = x.shape[-1]
        h = n // 2
        y = x[..., 0:2 * h:2] * x[..., 1:2 * h:2]
        x = y if n % 2 == 0 else _cat_last(y, x[..., n - 1:n])
    return x.squeeze(-1)


def _cat_last(a, b):
    from .shape import cat
    return cat([a, b], -1)


def prod(x, dim=None, keepdim=False, *, dtype=None):
    """torch.prod: product tree (ceil(log2 n) product rounds)."""
    if dtype is not None:
        x = x.to(dtype)
    if x.dtype == torch.bool:
        x = x.to(torch.int64)
    if dim is None:
        if x.numel() == 0:
            return x._lift_like_shape((), 1)
        return _prod_last(x.reshape(-1)) if x.numel() > 1 else x.reshape(())
    d = dim % max(x.dim(), 1)
    if x.shape[d] == 0:
        shape = list(x.shape)
        shape[d] = 1
        out = x._lift_like_shape(tuple(shape), 1)
        return out if keepdim else out.squeeze(d)
    order = [i for i in range(x.dim()) if i != d] + [d]
    out = _prod_last(x.permute(*order))
    return out.unsqueeze(d) if keepdim else out


def norm(x, p="fro", dim=None, keepdim=False, dtype=None):
    """torch.norm / torch.linalg.vector_norm for p in {1, 2, 'fro', inf, -inf, 0, other
    p > 0}; the matrix norms 'nuc' and 2-over-two-dims (spectral) are refused."""
    if not x.is_floating_point():
        raise ProtocolUsageError(f"norm needs a floating tensor, got {x.dtype}")
    if dtype is not None:
        x = x.to(dtype)
    if p is None or p == "fro":
        p = 2
    if isinstance(p, str):
        raise ProtocolUsageError(f"norm(p={p!r}) is not supported on secret values (the nuclear "
                                 f"norm needs an SVD); use p=1, 2, 'fro' or inf")
    dims = _dims(dim, x.dim())
    if p == float("inf"):
        return x.abs().amax(dims, keepdim) if dims else x.abs()
    if p == float("-inf"):
        return x.abs().amin(dims, keepdim) if dims else x.abs()
    if p == 0:
        return x.ne(0).to(x.dtype).sum(dims, keepdim)
    if p == 2:
        return (x * x).sum(dims, keepdim).sqrt()
    if p == 1:
        return x.abs().sum(dims, keepdim)
    if p < 0:
        raise ProtocolUsageError(f"norm(p={p}) with negative p is not supported")
    a = x.abs()
    powed = a.pow(int(p)) if float(p).is_integer() else a.pow_float(float(p))
    return powed.sum(dims, keepdim).pow_float(1.0 / p)


def vector_norm(x, ord=2, dim=None, keepdim=False, *, dtype=None):
    """torch.linalg.vector_norm (see `norm`)."""
    return norm(x, ord, dim, keepdim, dtype)


def std(x, dim=None, unbiased=None, keepdim=False, *, correction=None):
    """torch.std = sqrt(var) (veil.functions sqrt)."""
    if isinstance(dim, bool) and unbiased is None:          # torch.std(x, False)
        dim, unbiased = None, dim
    return x.var(dim, unbiased, keepdim, correction=correction).sqrt()


def trace(x):
    """torch.trace of a 2-D tensor: the diagonal's sum (local)."""
    if x.dim() != 2:
        raise ProtocolUsageError(f"trace expects a 2-D tensor, got {x.dim()}-D")
    return x.diagonal().sum()


def _rows(v, shape):
    return v.reshape(tuple(shape)) if is_secret(v) else as_public(v).reshape(tuple(shape))


def _mm(a, b):
    return a.matmul(b) if is_secret(a) else b.__rmatmul__(a)


def dot(a, b):
    """torch.dot of two 1-D tensors (one matmul: one product round, one truncation)."""
    if a.dim() != 1 or b.dim() != 1 or a.shape[0] != b.shape[0]:
        raise ProtocolUsageError(f"dot expects two 1-D tensors of equal length, got shapes "
                                 f"{tuple(a.shape)} and {tuple(b.shape)}")
    return _mm(_rows(a, (1, -1)), _rows(b, (-1, 1))).reshape(())


def outer(a, b):
    """torch.outer / torch.ger: a[:, None] * b[None, :] (one product round)."""
    if a.dim() != 1 or b.dim() != 1:
        raise ProtocolUsageError("outer expects two 1-D tensors")
    return _mm(_rows(a, (-1, 1)), _rows(b, (1, -1)))


def kron(a, b):
    """torch.kron: every product a[i] * b[j], laid out block by block (one product round)."""
    n = max(a.dim(), b.dim())
    sa = [1] * (n - a.dim()) + list(a.shape)
    sb = [1] * (n - b.dim()) + list(b.shape)
    ai = _rows(a, [s for d in sa for s in (d, 1)])
    bi = _rows(b, [s for d in sb for s in (1, d)])
    out = ai * bi if is_secret(ai) else bi * ai
    return out.reshape(tuple(x * y for x, y in zip(sa, sb)))


class LinalgMixin:
    """prod / norm / std / trace / dot / outer / kron / diagonal as methods."""

    def prod(self, dim=None, keepdim=False, *, dtype=None):
        return prod(self, dim, keepdim, dtype=dtype)

    def norm(self, p="fro", dim=None, keepdim=False, dtype=None):
        return norm(self, p, dim, keepdim, dtype)

    def std(self, dim=None, unbiased=None, keepdim=False, *, correction=None):
        return std(self, dim, unbiased, keepdim, correction=correction)

    def trace(self):
        return trace(self)

    def dot(self, other):
        return dot(self, other)

    def outer(self, other):
        return outer(self, other)

    ger = outer

    def kron(self, other):
        return kron(self, other)

    def diagonal(self, offset=0, dim1=0, dim2=1):
        return self._map(lambda t: t.diagonal(offset, dim1, dim2))

    def _lift_like_shape(self, shape, value):
        return self._wrap(self._lift(torch.full(shape, value), self.frac), self.dtype)


__all__ = ["LinalgMixin", "prod", "norm", "vector_norm", "std", "trace", "dot", "outer",
           "kron"]
