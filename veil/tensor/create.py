"""`veil.tensor`: secret-share the tensor one party holds."""

from __future__ import annotations

import numpy as np
import torch

from ..context import current
from ..comm.limits import check_count, check_shape
from ..errors import PartyError, ProtocolUsageError
from ..ring import check_dtype, encode, is_float
from .secret import SecretTensor

# dtype codes for the shape/dtype announcement (public metadata)
_DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.bool,
           torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64]


def announced(meta, owner: int) -> tuple[torch.dtype, tuple]:
    """(dtype, shape) from an owner's announcement, which is untrusted at the receivers:
    a malformed or oversized one (beyond ``Config.max_elements``) names the owner."""
    ctx = current()
    sender = ctx.comm.peer_name(owner)
    if not isinstance(meta, list) or not meta:
        raise PartyError(sender, "sent a malformed tensor announcement")
    code = check_count(meta[0], len(_DTYPES) - 1, "a dtype code", sender)
    return _DTYPES[code], check_shape(meta[1:], ctx.config.max_elements, sender)


def tensor(data, owner: int, *, dtype: torch.dtype | None = None) -> SecretTensor:
    """Secret-share ``data``, which party ``owner`` holds; every other party passes ``None``.

    The other parties learn the shape and dtype only. Float data becomes fixed point;
    bool and integer data become ring integers. Costs one round (the shape announcement)
    and no share traffic: the shares come from pairwise PRGs.

    >>> import torch, veil
    >>> def f():
    ...     x = veil.tensor(torch.tensor([1., 2.]) if veil.rank() == 1 else None, owner=1)
    ...     return x.shape, (x + 1).reveal(to=1)
    >>> veil.run(f, parties=2, seed=0)
    [(torch.Size([2]), None), (torch.Size([2]), tensor([2., 3.]))]
    """
    return _shared(data, owner, dtype, held=False)


def held_tensor(data, owner: int, *, dtype: torch.dtype | None = None) -> SecretTensor:
    """Like `tensor`, for a value its owner keeps in the clear anyway (its model's
    weights): where the protocol can (semi2k), the owner's share is the whole value and
    every other party's share is zero (`Protocol.share_held`), and the result is a fixed
    operand held by the owner, so products with it are owner-aware (veil.tensor.fixed):
    one local product per party, the other operand opened to the owner alone.

    >>> import torch, veil
    >>> from veil.tensor.create import held_tensor
    >>> def f():
    ...     w = held_tensor(torch.eye(3) if veil.rank() == 0 else None, owner=0)
    ...     x = veil.tensor(torch.ones(2, 3) if veil.rank() == 1 else None, owner=1)
    ...     (x @ w).reveal()                       # opens w - B once (and x to party 0)
    ...     before = veil.stats()["bytes_sent"]
    ...     y = (x @ w).reveal()
    ...     return veil.stats()["bytes_sent"] - before, y.tolist()
    >>> [r[0] for r in veil.run(f, parties=2, seed=0)]   # party 0 sends no x - A
    [96, 144]
    """
    return _shared(data, owner, dtype, held=True)


def _shared(data, owner: int, dtype, held: bool) -> SecretTensor:
    ctx = current()
    n = ctx.world_size
    if not isinstance(owner, int) or isinstance(owner, bool) or not 0 <= owner < n:
        raise ProtocolUsageError(f"owner must be a party index in 0..{n - 1}, got {owner!r}")
    meta = None
    value = None
    if ctx.rank == owner:
        if data is None:
            raise ProtocolUsageError(f"party {owner} is the owner but passed None; pass the data")
        t = data if isinstance(data, torch.Tensor) else torch.as_tensor(
            np.asarray(data) if not isinstance(data, (int, float, bool)) else data)
        if dtype is not None:
            t = t.to(dtype)
        check_dtype(t.dtype)
        value = encode(t, ctx.config.frac_bits, ctx.config.safe_bound)
        meta = [_DTYPES.index(t.dtype), *t.shape]
    elif data is not None:
        raise ProtocolUsageError(
            f"party {ctx.rank} passed data for a tensor owned by party {owner}; non-owners "
            f"must pass None (only the owner's data is shared)")
    # Discloses shape and dtype (public by contract) to every party.
    meta = ctx.comm.broadcast_obj(meta, owner)
    dt, shape = announced(meta, owner)
    holder = None
    if held:
        share, holder = ctx.protocol.share_held(value, owner, shape)
    else:
        share = ctx.protocol.share(value, owner, shape)
    out = SecretTensor(share, dtype=dt, frac=ctx.config.frac_bits if is_float(dt) else 0)
    if holder is not None:
        from .fixed import mark_held
        mark_held(out, holder)
    return out


def share_public(value, *, dtype: torch.dtype | None = None) -> SecretTensor:
    """A public tensor every party knows, as a SecretTensor (party 0 holds it, no traffic)."""
    ctx = current()
    t = torch.as_tensor(value)
    if dtype is not None:
        t = t.to(dtype)
    enc = encode(t, ctx.config.frac_bits, ctx.config.safe_bound)
    share = ctx.protocol.add_public(torch.zeros_like(enc), enc)
    return SecretTensor(share, dtype=t.dtype, frac=ctx.config.frac_bits if is_float(t.dtype) else 0)
