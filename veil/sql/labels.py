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

from ..context import current
from ..errors import PartyError
from .exact import SBool, SInt
from .plan import Plan
from .source import _run

NONCE = bytes(12)                  # each key encrypts exactly one message
_SCALARS = (str, int, float, bool, type(None))


def group_labels(plan: Plan, engine, rows):
    """(sorted distinct group keys at the group owner, else None; G everywhere)."""
    ctx = current()
    owner = plan.group_owner
    labels = None
    if ctx.rank == owner:
        cols = ", ".join(plan.group_keys)
        if rows.table is not None:
            engine.con.register("__joined", rows.table.select(plan.group_keys))
            sql = f"SELECT DISTINCT {cols} FROM __joined ORDER BY ALL"
        else:
            sql = f"SELECT DISTINCT {cols} FROM ({rows.sql}) ORDER BY ALL"
        labels = [tuple(r) for r in _run(engine, sql, lambda s: engine.con.execute(s).fetchall())]
    # Discloses the number of distinct group keys in the owner's rows to every party.
    g = ctx.comm.broadcast_obj(None if labels is None else len(labels), owner)
    if not isinstance(g, int) or isinstance(g, bool) or g < 0:
        raise PartyError(ctx.comm.peer_name(owner), "sent a malformed group count")
    return labels, g


def group_codes(plan: Plan, batch, labels) -> np.ndarray:
    """Each row's group number (position in the sorted labels), at the group owner."""
    cols = [batch.column(k).to_pylist() for k in plan.group_keys]
    index = pd.MultiIndex.from_tuples(labels) if len(cols) > 1 else \
        pd.Index([lab[0] for lab in labels], dtype=object)
    keys = pd.MultiIndex.from_arrays(cols) if len(cols) > 1 else pd.Index(cols[0], dtype=object)
    codes = index.get_indexer(keys)
    if (codes < 0).any():
        raise RuntimeError("a group key is missing from the group list")   # cannot happen
    return codes


def _text(v):
    return v if isinstance(v, _SCALARS) else str(v)


def send_labels(plan: Plan, labels, keep: SBool, groups: int, to: int | None):
    ctx = current()
    owner, rank = plan.group_owner, ctx.rank
    receivers = list(range(ctx.world_size)) if to is None else [to]
    if receivers == [owner]:
        return labels if rank == owner else None
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
