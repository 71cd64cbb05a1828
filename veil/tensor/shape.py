"""Shape operations: local on every party's share (and bit share), torch semantics."""

from __future__ import annotations

import torch

from ..autograd.graph import differentiable
from ..errors import ProtocolUsageError
from ..protocols.base import carry_reshaped
from .core import is_secret


def _check_public_index(idx) -> None:
    items = idx if isinstance(idx, tuple) else (idx,)
    for it in items:
        if is_secret(it):
            raise ProtocolUsageError("indexing with a secret index is not supported; use a "
                                     "one-hot mask (x * onehot).sum() or veil.where instead")


def _is_basic_index(idx) -> bool:
    """True if torch returns a view for ``x[idx]`` (ints, slices, None, Ellipsis only)."""
    items = idx if isinstance(idx, tuple) else (idx,)
    return all(it is None or it is Ellipsis or isinstance(it, (int, slice))
               and not isinstance(it, bool) for it in items)


class ShapeMixin:
    @differentiable("index_map")
    def _map(self, fn):
        """Apply the same local reshaping ``fn`` to whichever share forms exist."""
        share = fn(self._share) if self._share is not None else None
        bits = fn(self._bits) if self._bits is not None else None
        return type(self)(share, dtype=self.dtype, frac=self.frac, bits=bits)

    def _view(self, fn, keeps_order: bool = False):
        """A shape op torch defines as a view: same as `_map`, recorded as an alias.
        ``keeps_order``: a row-major reshape, which keeps a fused truncation's mask."""
        out = self._map(fn)._as_view_of(self)
        if keeps_order:
            carry_reshaped(self._share, out._share)
        return out

    def reshape(self, *shape):
        return self._view(lambda t: t.reshape(*shape), True)

    def view(self, *shape):
        return self._view(lambda t: t.reshape(*shape), True)

    def view_as(self, other):
        return self.view(other.shape)

    def flatten(self, start_dim=0, end_dim=-1):
        return self._view(lambda t: t.flatten(start_dim, end_dim), True)

    def transpose(self, dim0, dim1):
        return self._view(lambda t: t.transpose(dim0, dim1))

    def permute(self, *dims):
        return self._view(lambda t: t.permute(*dims))

    @property
    def T(self):
        return self._view(lambda t: t.permute(*range(t.dim() - 1, -1, -1)))

    @property
    def mT(self):
        return self.transpose(-2, -1)

    def t(self):
        return self.transpose(0, 1) if self.dim() == 2 else self

    def unsqueeze(self, dim):
        return self._view(lambda t: t.unsqueeze(dim), True)

    def squeeze(self, dim=None):
        return self._view(lambda t: t.squeeze() if dim is None else t.squeeze(dim), True)

    def expand(self, *sizes):
        return self._view(lambda t: t.expand(*sizes))

    def expand_as(self, other):
        return self.expand(other.shape)

    def broadcast_to(self, shape):
        return self.expand(shape)

    def repeat(self, *sizes):
        return self._map(lambda t: t.repeat(*sizes))

    def contiguous(self):
        return self._view(lambda t: t.contiguous())

    def clone(self):
        return self._map(lambda t: t.clone())

    def detach(self):
        return self

    def flip(self, dims):
        return self._map(lambda t: t.flip(dims))

    def roll(self, shifts, dims=None):
        return self._map(lambda t: t.roll(shifts, dims))

    def __getitem__(self, idx):
        _check_public_index(idx)
        if _is_basic_index(idx):
            return self._view(lambda t: t[idx])
        return self._map(lambda t: t[idx])         # advanced indexing copies, as in torch

    def __setitem__(self, idx, value):
        _check_public_index(idx)
        self._check_writable("x[...] = value")
        from .core import as_public
        frac = max(self.frac, value.frac) if is_secret(value) else self.frac
        if frac != self.frac:
            raise ProtocolUsageError("cannot store a float secret into an integer SecretTensor")
        share = self.share.clone()
        share[idx] = value.share_at(frac) if is_secret(value) else \
            self._lift(torch.broadcast_to(as_public(value), share[idx].shape), frac)
        self._share, self._bits = share, None

    def split(self, split_size_or_sections, dim=0):
        n = len(torch.empty(self.shape, device="meta").split(split_size_or_sections, dim))
        return tuple(self._view(lambda t, i=i: t.split(split_size_or_sections, dim)[i])
                     for i in range(n))

    def chunk(self, chunks, dim=0):
        n = len(torch.empty(self.shape, device="meta").chunk(chunks, dim))
        return tuple(self._view(lambda t, i=i: t.chunk(chunks, dim)[i]) for i in range(n))

    def unbind(self, dim=0):
        return tuple(self.select_index(dim, i) for i in range(self.shape[dim]))

    def select_index(self, dim, index):
        return self._view(lambda t: t.select(dim, index))

    def narrow(self, dim, start, length):
        return self._view(lambda t: t.narrow(dim, start, length))

    def unfold(self, dimension, size, step):
        return self._view(lambda t: t.unfold(dimension, size, step))

    def tril(self, diagonal=0):
        return self._map(lambda t: t.tril(diagonal))

    def triu(self, diagonal=0):
        return self._map(lambda t: t.triu(diagonal))


def _aligned(tensors):
    """Secret and public tensors brought to one dtype and scale, all as share tensors."""
    from .core import frac_of, result_dtype
    secrets = [t for t in tensors if is_secret(t)]
    dtype = secrets[0].dtype
    for t in tensors[1:]:
        dtype = result_dtype(torch.empty(1, dtype=dtype), t if not is_secret(t)
                             else torch.empty(1, dtype=t.dtype))
    frac = frac_of(dtype)
    shares = [t.share_at(frac) if is_secret(t) else secrets[0]._lift(t, frac) for t in tensors]
    return secrets[0], shares, dtype


def _join(tensors, dim, join):
    """cat/stack: bit shares stay bits when every input is one; else align and join shares."""
    tensors = list(tensors)
    if all(is_secret(t) and t._bits is not None and t._share is None for t in tensors):
        return type(tensors[0])._wrap_bits(join([t._bits for t in tensors], dim))
    first, shares, dtype = _aligned(tensors)
    return first._wrap(join(shares, dim), dtype)


@differentiable("cat")
def cat(tensors, dim=0):
    """torch.cat over SecretTensors (public tensors in the list are lifted to shares)."""
    return _join(tensors, dim, torch.cat)


@differentiable("stack")
def stack(tensors, dim=0):
    """torch.stack over SecretTensors (public tensors in the list are lifted to shares)."""
    return _join(tensors, dim, torch.stack)
