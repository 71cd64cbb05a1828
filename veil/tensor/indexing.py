"""Indexing with tensors: gather, scatter, scatter_add, index_select, index_add, take.

With *public* indices every op is the torch op applied to each party's share: only
positions move, so it is local and exact (no rounds, no bytes). Their gradients are local
too (a gather's transpose is a scatter-add and vice versa).

With a *secret* index (``gather``, ``index_select``, ``take``) the selection is
oblivious: the index becomes a one-hot over the n candidates (n equality tests,
1 + ceil(log2 64) rounds for all of them at once, then one b2a round) and the
result is sum_k x_k * onehot_k (one product round). Cost per selected element:
n equality tests + n products; see `one_hot`. torch raises on an index out of range;
a secret index cannot be checked without revealing it, so an out-of-range secret index
selects nothing (the result is 0 there): keep secret indices in range.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..autograd.graph import differentiable
from ..errors import ProtocolUsageError
from ..functions.grad_rules import register_grad
from .core import as_public, is_secret


def _index(index, what: str) -> torch.Tensor:
    """A public index as an int64 tensor (refusing floats, as torch does)."""
    t = as_public(index)
    if t.is_floating_point() or t.dtype == torch.bool:
        raise ProtocolUsageError(f"{what}: the index must be an integer tensor, got {t.dtype}")
    return t.long()


def _src_share(x, src, what: str) -> torch.Tensor:
    """``src`` as shares at ``x``'s scale (a public value or tensor is lifted, not mixed)."""
    if is_secret(src):
        if src.dtype != x.dtype:
            raise ProtocolUsageError(f"{what}: src dtype {src.dtype} must equal the "
                                     f"tensor's {x.dtype} (as torch requires)")
        return src.share
    pub = as_public(src)
    return x._lift(pub, x.frac)


# -- one-hot of a secret index ---------------------------------------------------------------
def one_hot(index, num_classes: int = -1):
    """torch.nn.functional.one_hot of a *secret* integer index (int64 shares of 0/1).

    Cost: ``num_classes`` equality tests per element, all in one batch (the eqz kernel:
    1 + ceil(log2 compare_bits) rounds), then one b2a round. ``num_classes`` must be
    given: the largest index is secret.

    >>> import torch, veil
    >>> def f():
    ...     i = veil.tensor(torch.tensor([2, 0]) if veil.rank() == 0 else None, owner=0)
    ...     return torch.nn.functional.one_hot(i, 3).reveal()
    >>> veil.run(f, parties=2, seed=0)[0].tolist()
    [[0, 0, 1], [1, 0, 0]]
    """
    if not is_secret(index):
        return F.one_hot(_index(index, "one_hot"), num_classes)
    if index.dtype.is_floating_point or index.dtype == torch.bool:
        raise ProtocolUsageError(f"one_hot needs an integer index, got {index.dtype}")
    if not isinstance(num_classes, int) or num_classes <= 0:
        raise ProtocolUsageError("one_hot of a secret index needs num_classes > 0: the "
                                 "largest index is secret, so it cannot be inferred")
    eq = index.unsqueeze(-1).eq(torch.arange(num_classes))     # bit shares
    return type(index)._wrap(eq.share, torch.int64, 0)


def _last(t, dim: int):
    """Move ``dim`` of a secret or public tensor to the end (a local permute)."""
    order = [d for d in range(t.dim()) if d != dim] + [dim]
    return t.permute(*order)


def _select_secret(x, index, dim: int):
    """out[..., j, ...] = x[..., index[..., j, ...], ...] along ``dim`` with a secret index
    of x's rank (gather semantics: the index may be smaller than x off ``dim``)."""
    n = x.shape[dim]
    xs = x
    for d in range(x.dim()):
        if d != dim and index.shape[d] != x.shape[d]:
            xs = xs.narrow(d, 0, index.shape[d])
    oh = one_hot(_last(index, dim), n)                         # (..., k, n) int64 0/1
    picked = oh.mul(_last(xs, dim).unsqueeze(-2)).sum(-1)      # (..., k)
    order = list(range(x.dim() - 1))
    order.insert(dim, x.dim() - 1)
    return picked.permute(*order)


# -- gather / index_select / take ---------------------------------------------------------
def gather(x, dim, index, *, sparse_grad=False):
    """torch.gather; a public index is local, a secret one costs a one-hot (see module).

    >>> import torch, veil
    >>> def f():
    ...     x = veil.tensor(torch.tensor([[1., 2.], [3., 4.]]) if veil.rank() == 0 else None,
    ...                     owner=0)
    ...     return torch.gather(x, 1, torch.tensor([[1], [0]])).reveal()
    >>> veil.run(f, parties=2, seed=0)[0].tolist()
    [[2.0], [3.0]]
    """
    dim = dim % max(x.dim(), 1)
    if is_secret(index):
        return _select_secret(x, index, dim)
    idx = _index(index, "gather")
    return x._map(lambda t: t.gather(dim, idx))


def index_select(x, dim, index):
    """torch.index_select (public index: local; secret: one-hot selection)."""
    dim = dim % max(x.dim(), 1)
    if is_secret(index):
        if index.dim() != 1:
            raise ProtocolUsageError("index_select: the index must be 1-D")
        shape = [1] * x.dim()
        shape[dim] = index.shape[0]
        full = list(x.shape)
        full[dim] = index.shape[0]
        return _select_secret(x, index.reshape(shape).expand(full), dim)
    idx = _index(index, "index_select")
    if idx.dim() > 1:
        raise ProtocolUsageError("index_select: the index must be 0-D or 1-D")
    return x._map(lambda t: t.index_select(dim, idx.reshape(-1)))


def take(x, index):
    """torch.take: elements of the flattened tensor."""
    if is_secret(index):
        flat = x.reshape(1, -1).expand(index.numel(), x.numel())
        return _select_secret(flat, index.reshape(-1, 1), 1).reshape(index.shape)
    idx = _index(index, "take")
    return x._map(lambda t: t.take(idx))


# -- scatter / scatter_add / index_add (public index) -----------------------------------------
def _public_only(index, what):
    if is_secret(index):
        raise ProtocolUsageError(f"{what} with a secret index is not supported: write "
                                 f"x + (one_hot(index, n) * src).sum(...) instead")
    return _index(index, what)


@differentiable("scatter")
def scatter(x, dim, index, src, *, reduce=None):
    """torch.scatter (``src`` a tensor or a number); local with a public index.

    Where the index repeats a position, torch leaves the winner unspecified; veil keeps
    what the share-wise torch op keeps on every party (the same element at every party).
    """
    if reduce is not None:
        raise ProtocolUsageError("scatter(reduce=...) is not supported; use scatter_add")
    idx = _public_only(index, "scatter")
    if not is_secret(src) and (isinstance(src, (int, float)) or as_public(src).dim() == 0):
        src = torch.full(idx.shape, as_public(src).item())
    share = x.share.scatter(dim, idx, _src_share(x, src, "scatter"))
    return x._wrap(share, x.dtype)


def _src_grad(g, dim, idx, src):
    """d/d src of a scatter: g gathered at the index, in the index-shaped corner of src
    (torch reads only that corner of a larger src)."""
    picked = g.share.gather(dim, idx)
    if tuple(src.shape) == tuple(idx.shape):
        return g._wrap(picked, g.dtype)
    full = torch.zeros(tuple(src.shape), dtype=torch.int64)
    full[tuple(slice(0, n) for n in idx.shape)] = picked
    return g._wrap(full, g.dtype)


@register_grad("scatter")
def _scatter_grad(g, out, x, dim, index, src, *, reduce=None):
    idx = _index(index, "scatter")
    gx = g._wrap(g.share.scatter(dim, idx, 0), g.dtype) if _needs(x) else None
    gs = _src_grad(g, dim, idx, src) if _needs(src) else None
    return gx, None, None, gs


@differentiable("scatter_add")
def scatter_add(x, dim, index, src):
    """torch.scatter_add: local with a public index (shares add)."""
    idx = _public_only(index, "scatter_add")
    return x._wrap(x.share.scatter_add(dim, idx, _src_share(x, src, "scatter_add")), x.dtype)


@register_grad("scatter_add")
def _scatter_add_grad(g, out, x, dim, index, src):
    idx = _index(index, "scatter_add")
    return (g if _needs(x) else None, None, None,
            _src_grad(g, dim, idx, src) if _needs(src) else None)


@differentiable("index_add")
def _index_add(x, dim, index, source):
    idx = _public_only(index, "index_add")
    return x._wrap(x.share.index_add(dim, idx, _src_share(x, source, "index_add")), x.dtype)


@register_grad("index_add")
def _index_add_grad(g, out, x, dim, index, source):
    idx = _index(index, "index_add")
    gs = g._map(lambda t: t.index_select(dim, idx)) if _needs(source) else None
    return g if _needs(x) else None, None, None, gs


def index_add(x, dim, index, source, *, alpha=1):
    """torch.index_add: local with a public index (``alpha`` scales ``source`` first)."""
    return _index_add(x, dim, index, source * alpha if alpha != 1 else source)


def _needs(v) -> bool:
    return is_secret(v) and v.requires_grad


# -- all / any ----------------------------------------------------------------------------------
def _nonzero_bits(x):
    return x.ne(0) if x._bits is None else x


def all_(x, dim=None, keepdim=False):
    """torch.all: a secret bool. Counts the zero entries (a local sum of the bits after one
    b2a round) and tests the count for zero (one eqz); non-bool input is first compared
    with 0 (one more eqz)."""
    b = _nonzero_bits(x)
    out = b.logical_not().sum(dim=dim, keepdim=keepdim) if dim is not None else \
        b.logical_not().sum()
    return out.eq(0)


def any_(x, dim=None, keepdim=False):
    """torch.any: secret bool result (a sum of the bits compared with zero: one eqz)."""
    b = _nonzero_bits(x)
    out = b.sum(dim=dim, keepdim=keepdim) if dim is not None else b.sum()
    return out.ne(0)


class IndexMixin:
    """Tensor-indexing methods and all/any (torch names)."""

    def gather(self, dim, index, *, sparse_grad=False):
        return gather(self, dim, index)

    def index_select(self, dim, index):
        return index_select(self, dim, index)

    def take(self, index):
        return take(self, index)

    def scatter(self, dim, index, src=None, *, value=None, reduce=None):
        return scatter(self, dim, index, value if src is None else src, reduce=reduce)

    def scatter_add(self, dim, index, src):
        return scatter_add(self, dim, index, src)

    def index_add(self, dim, index, source, *, alpha=1):
        return index_add(self, dim, index, source, alpha=alpha)

    def all(self, dim=None, keepdim=False):
        return all_(self, dim, keepdim)

    def any(self, dim=None, keepdim=False):
        return any_(self, dim, keepdim)


__all__ = ["IndexMixin", "gather", "index_select", "take", "scatter", "scatter_add",
           "index_add", "one_hot", "all_", "any_"]
