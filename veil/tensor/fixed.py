"""Fixed operands: tensors that do not change (model weights at inference), opened once.

A secret product x * w (or x @ w, conv2d(x, w)) opens both operands under masks. When w
is a model weight used by every inference, its masked form w - B can be opened once and
reused by every product with w, as long as w does not change: each inference then opens
only x - A. `SecretTensor.fixed_` marks a tensor so; `veil.secure` marks every weight of
a captured model.

The protocol decides whether anything is gained (``Protocol.mask``: semi2k opens under
a keyed mask; rep3 and the reference protocol keep their ordinary products). Staleness
is detected, not trusted: the masked form remembers the share object and its torch
version counter, and any change (an in-place update, a new share) makes the next product
mask the tensor again under a *fresh* key, so a mask never hides two different values.
"""

from __future__ import annotations

from ..protocols.base import Masked, carried, carried_key
from .core import proto


class FixedState:
    """The opened form of a fixed tensor and the share it was opened from."""

    __slots__ = ("masked", "src", "version", "moved")

    def __init__(self) -> None:
        self.masked: Masked | None = None
        self.src = None
        self.version = -1
        self.moved: dict = {}     # name -> (share it was made from, version, fixed tensor)

    def current(self, share) -> Masked | None:
        if self.masked is not None and self.src is share \
                and getattr(share, "_version", 0) == self.version:
            return self.masked
        return None

    def remember(self, share, masked: Masked) -> None:
        masked.a = None        # this party's mask share is not needed again: the other
        self.masked, self.src = masked, share        # operand brings its own
        self.version = getattr(share, "_version", 0)


def reuses_openings() -> bool:
    """Whether the current protocol opens masked forms once (it overrides ``mask``)."""
    return proto().reuses_openings


def masked_pair(x, y, elementwise: bool = False) -> tuple[Masked, Masked] | None:
    """Masked forms of the operands of a product, or None when neither is fixed (nor,
    for an ``elementwise`` product, carries the masked form a fused truncation left:
    `veil.protocols.base.carried`).

    The fixed operand's stored form is reused; everything else (the other operand, or a
    fixed one that changed) is masked now, all in one ``mask`` call (one round).
    """
    if not reuses_openings():
        return None
    fx, fy = getattr(x, "_fixed", None), getattr(y, "_fixed", None)
    sx, sy = x.share, y.share
    cx = carried(sx) if elementwise and fx is None else None
    cy = carried(sy) if elementwise and fy is None else None
    if fx is None and fy is None and cx is None and cy is None:
        return None
    have = [fx.current(sx) if fx is not None else cx,
            fy.current(sy) if fy is not None else cy]
    todo = [i for i, m in enumerate(have) if m is None]
    opened = proto().mask(*[(sx, sy)[i] for i in todo])
    for i, m in zip(todo, opened):
        state = (fx, fy)[i]
        if state is not None:
            state.remember((sx, sy)[i], m)
        have[i] = m
    return have[0], have[1]


# values per ``mask`` call in `open_fixed`: bounds the transient memory of an opening
# (mask, masked value, received shares: ~4 x 8 B per value) at the cost of a round each
OPEN_BATCH = 1 << 22


def open_fixed(tensors) -> None:
    """Open the masked forms of fixed tensors now, so later products find them ready
    (`veil.secure` does this once per model): one ``mask`` call (one round) per batch of
    up to OPEN_BATCH values."""
    if not reuses_openings():
        return
    todo = [t for t in tensors if t._fixed is not None and t._fixed.current(t.share) is None]
    while todo:
        batch, size = [], 0
        while todo and (not batch or size + todo[0].numel() <= OPEN_BATCH):
            size += todo[0].numel()
            batch.append(todo.pop(0))
        for t, m in zip(batch, proto().mask(*[t.share for t in batch])):
            t._fixed.remember(t.share, m)


def fixed_move(t, name: str, make):
    """``make(t)`` (a data move such as a transpose) for a tensor ``t``; when ``t`` is fixed
    the result is made once, marked fixed and kept, so its opening is reused too (a
    Linear layer's ``W.T``). Remade when ``t`` changes."""
    state = getattr(t, "_fixed", None)
    if state is None:
        return make(t)
    share = t.share
    got = state.moved.get(name)
    if got is not None and got[0] is share and got[1] == getattr(share, "_version", 0):
        return got[2]
    out = make(t).fixed_()
    state.moved[name] = (share, getattr(share, "_version", 0), out)
    return out


def mark_fixed(t):
    """Mark the SecretTensor ``t`` as a fixed operand (see the module docstring)."""
    if t._fixed is None:
        t._fixed = FixedState()
    return t




def mask_keys(t) -> tuple[int, ...]:
    """The keys of the masked forms a secret tensor holds (its fixed opening, the moved
    copies made from it, the form a fused truncation left on its share), in an order
    every party shares; () for anything else. Key numbers are public (every party
    allocates the same ones): the compiled graph's repeat hints rename them
    (veil.compile.repeats). Never triggers protocol work."""
    share = getattr(t, "_share", None)
    if share is None:                    # not a SecretTensor, or bit shares only
        return ()
    keys = []
    state = getattr(t, "_fixed", None)
    if state is not None:
        m = state.current(share)
        if m is not None and m.key is not None:
            keys.append(m.key)
        for _src, _version, moved in state.moved.values():
            keys.extend(mask_keys(moved))
    key = carried_key(share)
    if key is not None:
        keys.append(key)
    return tuple(keys)


__all__ = ["FixedState", "fixed_move", "mask_keys", "masked_pair", "mark_fixed", "open_fixed",
           "reuses_openings"]
