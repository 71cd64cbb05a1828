"""Private set intersection: align two parties' rows on a (multi-column) key.

One function, `psi`, used by SQL joins (veil.sql) and for aligning vertically split
training data. SPMD: the two key holders pass their keys, every other party passes
``None`` and gets ``None`` back.

>>> import veil
>>> def job():
...     keys = {0: ["ann", "bob", "cy", "bob"], 1: ["dan", "bob", "ann"]}.get(veil.rank())
...     return veil.psi(keys, parties=(0, 1))
>>> [r.tolist() for r in veil.run(job, parties=2)][0] in ([0, 1, 3], [1, 3, 0])
True

What it discloses (see veil/psi/ecdh.py for the protocol and threat model): to both key
holders, the number of distinct keys of the other, which of their own keys are in the
intersection, and — only when a side has duplicated keys — how many rows the other side
has for each common key (needed to lay out the many-to-many join). Nothing reaches the
other parties.
"""

from __future__ import annotations

import datetime
import decimal

import numpy as np

from ..comm.limits import check_count
from ..context import current
from ..errors import PartyError, ProtocolUsageError
from .ecdh import ecdh_intersect


def _atom(v) -> bytes:
    """One key value as canonical bytes: equal SQL values give equal bytes at both sides."""
    if v is None or (isinstance(v, float) and v != v):
        raise ProtocolUsageError("a join key has NULLs: NULL never matches in SQL; filter "
                                 "them out (WHERE key IS NOT NULL) before joining")
    if isinstance(v, (bool, np.bool_)):
        return b"i" + str(int(v)).encode()
    if isinstance(v, (int, np.integer)):
        return b"i" + str(int(v)).encode()
    if isinstance(v, (float, np.floating, decimal.Decimal)):
        d = decimal.Decimal(str(v)) if not isinstance(v, decimal.Decimal) else v
        if d == d.to_integral_value():
            return b"i" + str(int(d)).encode()
        return b"d" + str(d.normalize()).encode()
    if isinstance(v, str):
        return b"s" + v.encode()
    if isinstance(v, (datetime.date, datetime.datetime)):
        return b"t" + v.isoformat().encode()
    if isinstance(v, bytes):
        return b"b" + v
    raise ProtocolUsageError(f"join keys of type {type(v).__name__} are not supported")


def canonical_keys(keys) -> list[bytes]:
    """Rows of a key (sequence of scalars, of tuples, or a 2-D array/DataFrame) as bytes."""
    if hasattr(keys, "itertuples"):                          # pandas DataFrame
        rows = list(keys.itertuples(index=False, name=None))
    else:
        rows = list(keys.tolist() if isinstance(keys, np.ndarray) else keys)
    out = []
    for r in rows:
        parts = [_atom(x) for x in (r if isinstance(r, (tuple, list)) else (r,))]
        # Length-prefixed, so ("a", "bc") and ("ab", "c") differ.
        out.append(b"".join(len(p).to_bytes(4, "little") + p for p in parts))
    return out


def psi(keys, parties: tuple[int, int] = (0, 1)) -> np.ndarray | None:
    """This party's row positions of the inner equi-join on ``keys``, in a common order.

    Both key holders get arrays of equal length: row i of the join pairs the first
    party's row ``out0[i]`` with the second's ``out1[i]``. Duplicated keys give the
    many-to-many join (all pairs), empty intersections an empty array. Multi-column keys:
    pass tuples or a DataFrame. Other parties pass ``None`` and get ``None``.
    """
    ctx = current()
    a, b = parties
    if a == b or not all(0 <= p < ctx.world_size for p in parties):
        raise ProtocolUsageError(f"psi needs two distinct parties of 0..{ctx.world_size - 1}, "
                                 f"got {parties}")
    if ctx.rank not in parties:
        return None
    if keys is None:
        raise ProtocolUsageError(f"party {ctx.rank} takes part in this PSI: pass its keys")
    comm, peer = ctx.comm, b if ctx.rank == a else a
    rows = canonical_keys(keys)
    groups: dict[bytes, list[int]] = {}
    for i, k in enumerate(rows):
        groups.setdefault(k, []).append(i)
    distinct = list(groups)
    common = ecdh_intersect(comm, peer, distinct)
    mine = [len(groups[distinct[j]]) for j in common]
    # One round: do the multiplicities matter (a duplicated common key on either side)?
    comm.count_round()
    dup = any(m > 1 for m in mine)
    comm.send_obj(peer, dup)
    peer_dup = comm.recv_obj(peer)
    if not isinstance(peer_dup, bool):
        raise PartyError(comm.peer_name(peer), "sent a malformed PSI message")
    theirs = [1] * len(common)
    if dup or peer_dup:
        # Discloses, per common key, this side's row count to the peer (join layout).
        comm.count_round()
        comm.send_obj(peer, mine)
        theirs = comm.recv_obj(peer)
        if not (isinstance(theirs, list) and len(theirs) == len(common) and
                all(isinstance(t, int) and not isinstance(t, bool) and t > 0 for t in theirs)):
            raise PartyError(comm.peer_name(peer), "sent malformed PSI multiplicities")
        # the joined layout has sum(mine[k] * theirs[k]) rows: bound it before building it
        check_count(sum(m * t for m, t in zip(mine, theirs)), ctx.config.max_elements,
                    "a join size (rows)", comm.peer_name(peer))
    out = []
    first = ctx.rank == a
    for j, m_other in zip(common, theirs):
        rows_j = groups[distinct[j]]
        # Pairs (first-party row, second-party row) in row-major order at both sides.
        if first:
            out.extend(r for r in rows_j for _ in range(m_other))
        else:
            out.extend(rows_j * m_other)
    return np.asarray(out, dtype=np.int64)


__all__ = ["psi", "canonical_keys"]
