"""sort, argsort, topk, kthvalue, median, msort: an oblivious sorting network on shares.

Batcher's odd-even merge sort: a fixed sequence of compare-exchange stages that does not
depend on the data, so running it on secret shares reveals nothing. A length n that is
not a power of two is sorted as if padded with +inf at the end; every comparator that
touches a pad would leave it in place, so those comparators are dropped (no sentinel
value, no range issue). Each stage is ONE batched comparison (the msb kernel) and ONE
select that swaps values and their indices together.

Cost for a row of n (N = n rounded up to a power of two, m = log2 N):
m (m + 1) / 2 stages, each 1 comparison round trip (1 + ceil(log2(compare_bits - 1))
rounds at 2 parties) + 1 select round; comparators: at most (m^2 - m + 4) N / 4 - 1
(`network_size` gives the exact count). Bytes are proportional to the comparators:
measured 38.5 bytes per comparator per party at 2 parties (the comparison, then the select
moving value and index together), 68 at 3 (semi2k, compare_bits = 32). A row of 64:
21 stages, 543 comparators, 147 rounds at 2 parties.

Gradient: the forward records each stage's swap bits; backward applies the same swaps
in reverse order to the gradient (one select per stage, no comparison), which is exactly
the transposed permutation.

Ties keep the lower index first (a swap happens only on a strict >), so ``sort`` is
stable in ascending order; descending sorts the negation (ties keep the lower index).
"""

from __future__ import annotations

from collections import namedtuple
from functools import lru_cache

import torch

from ..autograd.graph import differentiable
from ..errors import ProtocolUsageError
from ..functions.grad_rules import register_grad
from .core import proto

SortResult = namedtuple("SortResult", ["values", "indices"])


@lru_cache(maxsize=None)
def network(n: int) -> tuple:
    """Stages of (lo, hi) index tensors of Batcher's odd-even merge sort for length n."""
    N = 1
    while N < n:
        N *= 2
    stages = []
    p = 1
    while p < N:
        k = p
        while k >= 1:
            lo, hi = [], []
            for j in range(k % p, N - k, 2 * k):
                for i in range(min(k - 1, N - j - k - 1) + 1):
                    a, b = i + j, i + j + k
                    if a // (2 * p) == b // (2 * p) and b < n:
                        lo.append(a)
                        hi.append(b)
            if lo:
                stages.append((torch.tensor(lo), torch.tensor(hi)))
            k //= 2
        p *= 2
    return tuple(stages)


def network_size(n: int) -> tuple[int, int]:
    """(stages, comparators) of the network for a row of n."""
    st = network(n)
    return len(st), sum(len(lo) for lo, _ in st)


def _sort_shares(v: torch.Tensor, idx: torch.Tensor | None, record: list | None):
    """Sort ring shares ``v`` ascending along the last dim (carrying ``idx``)."""
    p = proto()
    v = v.clone()
    idx = idx.clone() if idx is not None else None
    for lo, hi in network(v.shape[-1]):
        a, b = v[..., lo], v[..., hi]
        swap = p.msb((b - a).contiguous())               # [a > b]: b must go first
        diffs = [b - a] + ([idx[..., hi] - idx[..., lo]] if idx is not None else [])
        d = p.select(torch.cat([swap] * len(diffs), -1).contiguous(),
                     torch.cat(diffs, -1).contiguous())
        m = len(lo)
        v[..., lo], v[..., hi] = a + d[..., :m], b - d[..., :m]
        if idx is not None:
            i_a, i_b = idx[..., lo], idx[..., hi]
            idx[..., lo], idx[..., hi] = i_a + d[..., m:], i_b - d[..., m:]
        if record is not None:
            record.append(swap)
    return v, idx


@differentiable("sort_network")
def _sort(x, dim: int, descending: bool, *, saved: dict | None = None):
    d = dim % max(x.dim(), 1)
    share = x.share if not descending else -x.share
    moved = share.movedim(d, -1) if x.dim() else share.reshape(1)
    n = moved.shape[-1]
    idx0 = proto().add_public(torch.zeros(n, dtype=torch.int64), torch.arange(n))
    record = [] if saved is not None else None
    v, idx = _sort_shares(moved, idx0.expand(moved.shape).contiguous(), record)
    if saved is not None:
        saved["swaps"] = record
    v = -v if descending else v
    if x.dim():
        v, idx = v.movedim(-1, d), idx.movedim(-1, d)
    else:
        v, idx = v.reshape(()), idx.reshape(())
    return SortResult(x._wrap(v, x.dtype), x._wrap(idx, torch.int64, 0))


@register_grad("sort_network")
def _sort_grad(g, out, x, dim, descending, *, saved=None):
    p = proto()
    d = dim % max(x.dim(), 1)
    gs = g.share.movedim(d, -1).clone() if x.dim() else g.share.reshape(1).clone()
    for (lo, hi), swap in zip(reversed(network(gs.shape[-1])), reversed(saved["swaps"])):
        a, b = gs[..., lo], gs[..., hi]
        dd = p.select(swap.contiguous(), (b - a).contiguous())
        gs[..., lo], gs[..., hi] = a + dd, b - dd
    gs = gs.movedim(-1, d) if x.dim() else gs.reshape(())
    return g._wrap(gs, g.dtype), None, None


def _check(x, what):
    if x._share is None and x._bits is not None and x.dtype == torch.bool:
        x = x._to_dtype(torch.int64)
    return x


def sort(x, dim: int = -1, descending: bool = False, stable: bool = False):
    """torch.sort: (values, indices), both secret. See the module note for the cost.

    >>> import torch, veil
    >>> def f():
    ...     x = veil.tensor(torch.tensor([3., -1., 2., 0.5]) if veil.rank() == 0 else None,
    ...                     owner=0)
    ...     v, i = torch.sort(x, descending=True)
    ...     return v.reveal(), i.reveal()
    >>> [t.tolist() for t in veil.run(f, parties=2, seed=0)[0]]
    [[3.0, 2.0, 0.5, -1.0], [0, 2, 3, 1]]
    """
    x = _check(x, "sort")
    if x.dim() and x.shape[dim] == 0:
        return SortResult(x, x._wrap(torch.zeros(x.shape, dtype=torch.int64), torch.int64, 0))
    return _sort(x, dim, bool(descending))


def argsort(x, dim: int = -1, descending: bool = False, stable: bool = False):
    return sort(x, dim, descending).indices


def msort(x):
    return sort(x, 0).values


def topk(x, k: int, dim: int = -1, largest: bool = True, sorted: bool = True):
    """torch.topk: the full sorting network, then the first k (values, indices)."""
    n = x.shape[dim] if x.dim() else 1
    if not 0 <= k <= n:
        raise ProtocolUsageError(f"topk: k={k} is out of range for a dimension of size {n}")
    v, i = sort(x, dim, descending=largest)
    d = dim % max(x.dim(), 1)
    return SortResult(v.narrow(d, 0, k), i.narrow(d, 0, k)) if x.dim() else SortResult(v, i)


def kthvalue(x, k: int, dim: int = -1, keepdim: bool = False):
    """torch.kthvalue: the k-th smallest (1-based) and its index."""
    n = x.shape[dim] if x.dim() else 1
    if not 1 <= k <= n:
        raise ProtocolUsageError(f"kthvalue: k={k} is out of range for a dimension of size {n}")
    v, i = sort(x, dim)
    if not x.dim():
        return SortResult(v, i)
    d = dim % x.dim()
    v, i = v.narrow(d, k - 1, 1), i.narrow(d, k - 1, 1)
    return SortResult(v, i) if keepdim else SortResult(v.squeeze(d), i.squeeze(d))


def median(x, dim=None, keepdim: bool = False):
    """torch.median: the lower median; without ``dim`` over all elements (value only)."""
    if dim is None:
        flat = x.reshape(-1)
        return kthvalue(flat, (flat.numel() + 1) // 2, 0).values
    n = x.shape[dim]
    return kthvalue(x, (n + 1) // 2, dim, keepdim)


class SortMixin:
    def sort(self, dim: int = -1, descending: bool = False, stable: bool = False):
        return sort(self, dim, descending, stable)

    def argsort(self, dim: int = -1, descending: bool = False, stable: bool = False):
        return argsort(self, dim, descending, stable)

    def msort(self):
        return msort(self)

    def topk(self, k: int, dim: int = -1, largest: bool = True, sorted: bool = True):
        return topk(self, k, dim, largest, sorted)

    def kthvalue(self, k: int, dim: int = -1, keepdim: bool = False):
        return kthvalue(self, k, dim, keepdim)

    def median(self, dim=None, keepdim: bool = False):
        return median(self, dim, keepdim)


__all__ = ["SortMixin", "sort", "argsort", "msort", "topk", "kthvalue", "median",
           "network", "network_size", "SortResult"]
