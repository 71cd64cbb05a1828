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

A fixed tensor may also be *held* (`mark_held`): its owner's share is the whole value and
every other share is zero (`Protocol.share_held`; `veil.secure` shares a model's weights
so). A product with a held tensor is then owner-aware: the other operand is opened to
the owner alone (`Protocol.mask_to`) and each party computes one local product instead
of two. Held-ness is a fact about one share object: like the opening, it is forgotten as
soon as the share changes.
"""

from __future__ import annotations

from ..protocols.base import Masked, carried, carried_key
from .core import proto


class FixedState:
    """The opened form of a fixed tensor and the share it was opened from."""

    __slots__ = ("masked", "src", "version", "moved", "held")

    def __init__(self) -> None:
        self.masked: Masked | None = None
        self.src = None
        self.version = -1
        self.moved: dict = {}     # name -> (share it was made from, version, fixed tensor)
        self.held: tuple | None = None      # (holder, share, version): `mark_held`

    def holder(self, share) -> int | None:
        """The party whose share of ``share``'s value is the whole value, if known."""
        h = self.held
        if h is not None and h[1] is share and getattr(share, "_version", 0) == h[2]:
            return h[0]
        return None

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
    held = [fx.holder(sx) if fx is not None else None,
            fy.holder(sy) if fy is not None else None]
    todo = [i for i, m in enumerate(have) if m is None]
    if len(todo) == 1 and (fx, fy)[todo[0]] is None and held[1 - todo[0]] is not None \
            and have[1 - todo[0]].e is not None:
        # the other operand is a held weight, opened: open this one to its holder alone
        have[todo[0]] = proto().mask_to(held[1 - todo[0]], (sx, sy)[todo[0]])[0]
        todo = []
    opened = proto().mask(*[(sx, sy)[i] for i in todo])
    for i, m in zip(todo, opened):
        state = (fx, fy)[i]
        if state is not None:
            state.remember((sx, sy)[i], m)
        have[i] = m
    for m, h in zip(have, held):
        if h is not None:      # (its share elsewhere is zero: a product skips it)
            m.held = h
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
    holder = state.holder(share)
    if holder is not None:                 # a data move keeps the zero shares zero
        mark_held(out, holder)
    state.moved[name] = (share, getattr(share, "_version", 0), out)
    return out


def mark_fixed(t):
    """Mark the SecretTensor ``t`` as a fixed operand (see the module docstring)."""
    if t._fixed is None:
        t._fixed = FixedState()
    return t


def mark_held(t, holder: int):
    """Mark the SecretTensor ``t`` fixed and held by party ``holder``: every other
    party's share of it is zero (made by `Protocol.share_held`, or a data move of such a
    tensor). Only the code that made the shares knows this; a wrong mark gives wrong
    products, so it is never set from anything a peer sends."""
    state = mark_fixed(t)._fixed
    share = t.share
    state.held = (int(holder), share, getattr(share, "_version", 0))
    return t


def held_by(t) -> int | None:
    """The party holding ``t`` whole (`mark_held`), or None."""
    state = getattr(t, "_fixed", None)
    return None if state is None else state.holder(t.share)




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


__all__ = ["FixedState", "fixed_move", "held_by", "mask_keys", "mark_fixed", "mark_held",
           "masked_pair", "open_fixed", "reuses_openings"]
