"""Group labels: the group owner's key values reach the receiver only for kept groups.

The owner encrypts each group's label under its own fresh AES-128-GCM key and sends all
ciphertexts (padded to one length) to the receiver; the keys are secret-shared, and the
secret keep bit (count ≥ threshold, HAVING) multiplies them before they are opened. A
dropped group's key opens as 0, so its label stays unreadable. The receiver learns the
number of groups G (public anyway: the one-hot has G rows) and the labels of kept groups.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import torch
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..comm.limits import check_count
from ..context import current
from ..errors import PartyError, ProtocolUsageError
from .exact import SBool, SInt
from .plan import Plan
from .source import _run

NONCE = bytes(12)                  # each key encrypts exactly one message
_SCALARS = (str, int, float, bool, type(None))


def key_columns(plan: Plan, rank: int) -> list[str] | None:
    """The columns that hold the group keys at this party, if it holds them."""
    if rank == plan.group_owner:
        return plan.group_keys
    if plan.group_peer_keys and rank in plan.owners:
        return plan.group_peer_keys
    return None


def public_groups(plan: Plan) -> bool:
    """Grouped by the join key with two parties: both know every row's group already."""
    return bool(plan.group_peer_keys) and current().world_size == 2


def group_labels(plan: Plan, engine, rows):
    """(sorted distinct group keys where this party holds them, else None; G everywhere)."""
    ctx = current()
    owner = plan.group_owner
    cols = key_columns(plan, ctx.rank) if public_groups(plan) or ctx.rank == owner else None
    labels = None
    if cols is not None:
        names = ", ".join(cols)
        if rows.table is not None:
            engine.con.register("__joined", rows.table.select(cols))
            sql = f"SELECT DISTINCT {names} FROM __joined ORDER BY ALL"
        else:
            sql = f"SELECT DISTINCT {names} FROM ({rows.sql}) ORDER BY ALL"
        labels = [tuple(r) for r in _run(engine, sql, lambda s: engine.con.execute(s).fetchall())]
    # Discloses the number of distinct group keys in the owner's rows to every party.
    g = ctx.comm.broadcast_obj(None if ctx.rank != owner else len(labels), owner)
    # bounded like any announced size: the others allocate shares per group
    check_count(g, ctx.config.max_elements, "a group count", ctx.comm.peer_name(owner))
    if labels is not None and len(labels) != g:
        raise ProtocolUsageError("the join keys group differently at the two parties "
                                 "(CAST both join keys to the same type)")
    return labels, g


def group_codes(plan: Plan, batch, labels) -> np.ndarray:
    """Each row's group number (position in the sorted labels), where the keys are held."""
    keys = key_columns(plan, current().rank)
    cols = [batch.column(k).to_pylist() for k in keys]
    index = pd.MultiIndex.from_tuples(labels) if len(cols) > 1 else \
        pd.Index([lab[0] for lab in labels], dtype=object)
    keys = pd.MultiIndex.from_arrays(cols) if len(cols) > 1 else pd.Index(cols[0], dtype=object)
    codes = index.get_indexer(keys)
    if (codes < 0).any():
        raise ProtocolUsageError("the join keys group differently at the two parties "
                                 "(CAST both join keys to the same type)")
    return codes


def _text(v):
    return v if isinstance(v, _SCALARS) else str(v)


def send_labels(plan: Plan, labels, keep: SBool, groups: int, to: int | None):
    ctx = current()
    owner, rank = plan.group_owner, ctx.rank
    receivers = list(range(ctx.world_size)) if to is None else [to]
    if receivers == [owner] or public_groups(plan):
        # The receiver holds the labels itself (its own group or join key values).
        return labels if rank in receivers else None
    keys_ring, blobs = None, None
    if rank == owner:
        texts = [json.dumps([_text(v) for v in lab]).encode() for lab in labels]
        width = max((len(t) for t in texts), default=0)
        raw = os.urandom(16 * groups)
        blobs = b"".join(AESGCM(raw[16 * g:16 * g + 16]).encrypt(NONCE, t.ljust(width), None)
                         for g, t in enumerate(texts))
        keys_ring = torch.frombuffer(bytearray(raw), dtype=torch.int64).reshape(groups, 2) \
            if groups else torch.zeros((0, 2), dtype=torch.int64)
        ctx.comm.count_round()
        for r in receivers:
            if r != owner:
                ctx.comm.send_obj(r, len(blobs))
                ctx.comm.send_bytes(r, blobs)
    elif rank in receivers:
        ctx.comm.count_round()
        size = ctx.comm.recv_obj(owner)
        if not isinstance(size, int) or size < 0 or (groups and size % groups):
            raise PartyError(ctx.comm.peer_name(owner), "sent malformed group labels")
        blobs = bytes(ctx.comm.recv_bytes(owner))
        if len(blobs) != size:
            raise PartyError(ctx.comm.peer_name(owner), "sent malformed group labels")
    shared = SInt(ctx.protocol.share(keys_ring, owner, (groups, 2)), 1 << 63)
    wide = _widen(keep, groups)
    # Discloses the label keys of kept groups to the receiver(s); dropped groups open 0.
    opened = wide.apply(shared).reveal(to)
    if rank not in receivers:
        return None
    if rank == owner:
        return labels
    clen = len(blobs) // groups if groups else 0
    out = []
    for g in range(groups):
        k = opened[g].contiguous().numpy().tobytes()
        if k == bytes(16):
            out.append(None)                               # a dropped group
            continue
        try:
            text = AESGCM(k).decrypt(NONCE, blobs[g * clen:(g + 1) * clen], None)
            lab = json.loads(text.decode().rstrip())
        except Exception:                                   # noqa: BLE001 - peer input
            raise PartyError(ctx.comm.peer_name(owner), "sent a group label that does not "
                             "decrypt") from None
        if not (isinstance(lab, list) and len(lab) == len(plan.group_keys)
                and all(isinstance(v, _SCALARS) for v in lab)):
            raise PartyError(ctx.comm.peer_name(owner), "sent a malformed group label")
        out.append(tuple(lab))
    return out


def _widen(keep: SBool, groups: int) -> SBool:
    if keep.xor is not None:
        return SBool(xor=keep.xor.reshape(groups, 1).expand(groups, 2).contiguous())
    a = keep.arith
    return SBool(arith=SInt(a.sh.reshape(groups, 1).expand(groups, 2).contiguous(), 2))


def send_json(vals, owner: int, to: int | None, n: int):
    """An owner's plaintext column (already part of the result) to the receiver(s)."""
    ctx = current()
    receivers = list(range(ctx.world_size)) if to is None else [to]
    if ctx.rank == owner:
        vals = [_text(v) for v in vals]
        ctx.comm.count_round()
        for r in receivers:
            if r != owner:
                ctx.comm.send_obj(r, vals)
        return vals if owner in receivers else None
    if ctx.rank not in receivers:
        return None
    ctx.comm.count_round()
    got = ctx.comm.recv_obj(owner)
    if not (isinstance(got, list) and len(got) == n and all(isinstance(v, _SCALARS)
                                                            for v in got)):
        raise PartyError(ctx.comm.peer_name(owner), "sent a malformed result column")
    return got
