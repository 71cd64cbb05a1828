"""Cross-party joins: lay out the secret part's rows at the two key owners.

Two modes (``Session.query(..., join=)``; docs/sql.md has the full disclosure table):

* ``"psi"`` — rows aligned by private set intersection (`veil.psi`: RR22 or ECDH). Both
  key owners learn which of their keys match (SCQL's ``reveal_key_after_join``); every
  party learns the join size. Cost: the PSI, then only the joined rows.
* ``"secret"`` — membership stays secret. Every (left row, right row) pair is a row of
  the secret part, and a secret 0/1 flag ``__w`` (the keys are equal) joins the filter
  mask, so the aggregates count only matching pairs. Discloses the two row counts (after
  local filters) and nothing about which rows match. Cost: O(n·m) — one secret equality
  per pair and the whole secret part over n·m rows — so it is refused above
  `SECRET_JOIN_MAX_PAIRS`. Keys are compared as 61-bit BLAKE2b hashes of their canonical
  bytes: two different keys collide with probability 2^-61 per pair.

LEFT JOIN (the left table's owner keeps all its rows): in ``"psi"`` mode the unmatched
left rows follow the matched ones, and the right side's values are SQL's NULL there —
a public flag ``__p`` (1: a right row is present) carries that into the secret part
(the number of unmatched left rows becomes public: it is the join size minus the inner
join size). In ``"secret"`` mode each left row gets one more row whose ``__w`` is 1 iff
it matched nothing (a secret test on its number of matches).
"""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa
import torch

from ..context import current
from ..errors import ProtocolUsageError
from ..psi import canonical_keys, psi
from .exact import SBool, SInt

SECRET_JOIN_MAX_PAIRS = 1 << 20
KEY_BITS = 61


class JoinFlags:
    """Per-row join flags of the secret part (full length), handed out chunk by chunk."""

    def __init__(self, present: np.ndarray | None, weight: SInt | None) -> None:
        self.present, self.weight, self.offset = present, weight, 0

    def env(self, m: int) -> dict:
        lo, hi = self.offset, self.offset + m
        self.offset = hi
        out = {}
        if self.present is not None:
            p = current().protocol
            bits = torch.from_numpy(self.present[lo:hi].astype(np.int64))
            out["__p"] = SBool(arith=SInt(p.add_public(p.zeros((m,)), bits), 2))
        if self.weight is not None:
            out["__w"] = SBool(arith=SInt(self.weight.sh[lo:hi], 2))
        return out


def join_env(rows, m: int) -> dict:
    """The join flags of the next ``m`` rows (``{}`` when the plan has none)."""
    flags = getattr(rows, "join_flags", None)
    return flags.env(m) if flags is not None else {}


def align(rows, run, check_nulls, count) -> int:
    """Lay out the two owners' joined rows (``rows.table``); the secret part's length."""
    plan = rows.plan
    if plan.join_mode == "secret":
        return _secret(rows, run, check_nulls, count)
    return _psi(rows, run, check_nulls, count)


def _local(rows, run, check_nulls):
    table = run(rows.engine, rows.sql, rows.engine.arrow)
    check_nulls(table, rows.plan)
    return table


def _psi(rows, run, check_nulls, count) -> int:
    plan, comm, rank = rows.plan, rows.comm, rows.rank
    a, b = plan.owners
    left = plan.left_owner
    idx, pad = None, None
    if rank in (a, b):
        table = _local(rows, run, check_nulls)
        idx = psi(_psi_keys(table, plan.join_keys[rank]), parties=(a, b),
                  protocol=plan.psi_protocol)
        rows.table = table.take(pa.array(idx, type=pa.int64()))
        if rank == left:
            unmatched = np.setdiff1d(np.arange(table.num_rows), idx)
            rows.table = pa.concat_tables([rows.table, table.take(pa.array(unmatched))])
            pad = len(unmatched)
    # Discloses the join size to every party (the secret part's length).
    n = count(comm.broadcast_obj(None if idx is None else len(idx), a), comm.peer_name(a))
    if left is None:
        return n
    # LEFT JOIN: discloses the number of left rows without a match to every party.
    pad = count(comm.broadcast_obj(pad, left), comm.peer_name(left))
    if rank in (a, b) and rank != left:
        rows.table = pa.concat_tables([rows.table, null_rows(rows, pad)])
    rows.join_flags = JoinFlags(np.r_[np.ones(n, bool), np.zeros(pad, bool)], None)
    return n + pad


def _psi_keys(table: pa.Table, cols: list[str]):
    """One integer key column as a numpy array (veil.psi's fast path), else row tuples."""
    if len(cols) == 1 and pa.types.is_integer(table.schema.field(cols[0]).type):
        return table.column(cols[0]).to_numpy()
    return [tuple(r.values()) for r in table.select(cols).to_pylist()]


def null_rows(rows, k: int) -> pa.Table:
    """``k`` rows of the nullable side's local columns as SQL computes them when the
    side's row is missing (every column NULL); NULLs become 0 (``__p`` hides them)."""
    plan = rows.plan
    select = rows.sql.rsplit(f" FROM {plan.from_sql[rows.rank]}", 1)[0]
    sql = null_row_sql(plan, rows.rank, select)
    one = rows.engine.arrow(sql)
    cols = []
    for name, col in zip(one.column_names, one.columns):
        v = col[0]
        if v.is_valid:
            cols.append(pa.array([v.as_py()] * k, type=col.type))
        else:
            cols.append(_zeros(col.type, k))
    return pa.table(cols, names=one.column_names)


def null_row_sql(plan, owner: int, select: str) -> str:
    """``select`` (``SELECT …`` over the owner's columns) on one row where every column
    of the owner's tables is NULL."""
    joins = " ".join(f"LEFT JOIN {info.name} AS {alias} ON FALSE"
                     for alias, info in plan.tables.items() if info.owner == owner)
    return f"{select} FROM (SELECT 1 AS __one) AS __null {joins}"


def _zeros(t: pa.DataType, k: int) -> pa.Array:
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return pa.array([""] * k, type=t)
    if pa.types.is_boolean(t):
        return pa.array([False] * k, type=t)
    if pa.types.is_date(t):
        return pa.array(np.zeros(k, np.int32)).cast(t)
    return pa.array(np.zeros(k, np.int64)).cast(t, safe=False)


# -- the secret (membership-hiding) join ------------------------------------------------------
def key_codes(table: pa.Table, cols: list[str]) -> np.ndarray:
    """Each row's join key as a 61-bit hash of its canonical bytes (equal keys, equal
    codes at both owners, across integer widths and decimal/float spellings)."""
    keys = [tuple(r.values()) for r in table.select(cols).to_pylist()]
    out = np.empty(len(keys), np.int64)
    for i, k in enumerate(canonical_keys(keys)):
        d = hashlib.blake2b(k, digest_size=8, person=b"veil-sql-join").digest()
        out[i] = int.from_bytes(d, "little") >> (64 - KEY_BITS)
    return out


def _secret(rows, run, check_nulls, count) -> int:
    plan, comm, rank = rows.plan, rows.comm, rows.rank
    left = plan.left_owner
    a = left if left is not None else plan.owners[0]
    b = next(p for p in plan.owners if p != a)
    table = _local(rows, run, check_nulls) if rank in (a, b) else None
    sizes = []
    for p in (a, b):
        # Discloses each owner's row count (after its local filters) to every party.
        n = table.num_rows if rank == p else None
        sizes.append(count(comm.broadcast_obj(n, p), comm.peer_name(p)))
    na, nb = sizes
    pairs = na * nb
    if pairs > plan.secret_join_max_pairs:
        raise ProtocolUsageError(
            f"join='secret' compares every pair of rows: {na} x {nb} = {pairs} pairs is "
            f"over the bound of {plan.secret_join_max_pairs}; filter the tables first "
            f"(WHERE on one party's columns is applied before the join), raise "
            f"Session(secret_join_max_pairs=...), or use join='psi' (reveals which keys "
            f"match to the two key owners)")
    # a-major layout: pair (i, j) is row i * nb + j; then (LEFT JOIN) one row per left row
    if rank == a:
        t = table.take(pa.array(np.repeat(np.arange(na), nb)))
        rows.table = pa.concat_tables([t, table]) if left is not None else t
    elif rank == b:
        t = table.take(pa.array(np.tile(np.arange(nb), na)))
        rows.table = pa.concat_tables([t, null_rows(rows, na)]) if left is not None else t
    rows.join_flags = JoinFlags(None, None)
    if pairs == 0:
        if left is not None:             # no pairs: every left row is unmatched (public)
            rows.join_flags = JoinFlags(np.zeros(na, bool), SInt.public(1, (na,)))
        return na if left is not None else 0
    codes = {p: torch.from_numpy(key_codes(table, plan.join_keys[p])) if rank == p else None
             for p in (a, b)}
    ka = SInt.share(codes[a], a, (na,), 1 << KEY_BITS)
    kb = SInt.share(codes[b], b, (nb,), 1 << KEY_BITS)
    eq = SInt(ka.sh.repeat_interleave(nb), ka.bound).eq(SInt(kb.sh.repeat(na), kb.bound))
    w = eq.to_int()
    present = None
    if left is not None:
        matches = SInt(w.sh.reshape(na, nb).sum(1), nb + 1)
        none = matches.eq(SInt.public(0, (na,))).to_int()
        w = SInt(torch.cat([w.sh, none.sh]), 2)
        present = np.r_[np.ones(pairs, bool), np.zeros(na, bool)]
    rows.join_flags = JoinFlags(present, w)
    return pairs + (na if left is not None else 0)


__all__ = ["align", "join_env", "JoinFlags", "SECRET_JOIN_MAX_PAIRS", "key_codes",
           "null_row_sql"]
