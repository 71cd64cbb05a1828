"""Each owner's local part: its DuckDB query, row alignment (none / PSI / prealigned), and
the rows cut into equal chunks at every party.

The number of rows of the secret part is public (every party needs the vector length):
after local filters for one owner, the join size after PSI, the table length when
prealigned. Owners stream their rows in chunks; only a PSI join materialises the keys
(PSI needs them all at once).
"""

from __future__ import annotations

import hashlib
import os

import numpy as np
import pyarrow as pa

from ..context import current
from ..errors import PartyError, ProtocolUsageError
from ..psi import canonical_keys
from .catalog import LocalEngine
from .plan import Plan
from .types import encode_sql


def local_sql(plan: Plan, owner: int) -> str:
    cols = []
    for item in plan.items.values():
        if item.owner != owner:
            continue
        if item.name.startswith("__c"):
            cols.append(f"{encode_sql(item.sql, item.enc, item.sql)} AS {item.name}")
        else:
            cols.append(f"{item.sql} AS {item.name}")
    where = plan.local_where.get(owner)
    sql = f"SELECT {', '.join(cols) or '1 AS __one'} FROM {plan.from_sql[owner]}"
    return sql + (f" WHERE {' AND '.join(f'({w})' for w in where)}" if where else "")


def _run(engine: LocalEngine, sql: str, fn):
    import duckdb
    try:
        return fn(sql)
    except duckdb.Error as exc:
        msg = str(exc).splitlines()[0]
        # DuckDB's messages name columns and types; conversion errors may quote a value,
        # so those are reported without the message.
        if "Conversion" in msg or "out of range" in msg.lower():
            raise ProtocolUsageError("a value does not fit the 64-bit ring encoding of its "
                                     "type (check column bounds and types)") from None
        raise ProtocolUsageError(f"local query failed: {msg}") from None


def check_nulls(batch: pa.RecordBatch | pa.Table, plan: Plan) -> None:
    for name in batch.schema.names:
        if name.startswith(("__c", "__j")) and batch.column(name).null_count:
            what = plan.items[name].sql
            raise ProtocolUsageError(
                f"{what} has NULLs, which a secret value cannot hold: filter them "
                f"(WHERE {what} IS NOT NULL) or replace them (COALESCE({what}, 0))"
                if name.startswith("__c") else
                f"join key {what} has NULLs (NULL never matches): add WHERE {what} IS NOT NULL")


class Rows:
    """This party's view of the secret part's rows: their count and, at owners, chunks."""

    def __init__(self, plan: Plan, engine: LocalEngine, chunk: int) -> None:
        self.plan, self.engine, self.chunk = plan, engine, chunk
        ctx = current()
        self.rank, self.comm = ctx.rank, ctx.comm
        self.table: pa.Table | None = None          # PSI mode: this owner's joined rows
        self.sql = local_sql(plan, self.rank) if self.rank in plan.owners else None
        self.key_hash = hashlib.sha256()
        if len(plan.owners) == 1:
            self.n = self._count_single(plan.owners[0])
        elif plan.prealigned:
            self.n = self._count_prealigned()
        else:
            self.n = self._psi_join()

    def _count_single(self, owner: int) -> int:
        n = None
        if self.rank == owner:
            n = int(_run(self.engine, f"SELECT count(*) FROM ({self.sql})", self.engine.scalar))
        # Discloses the number of rows passing the owner's local filters (public length).
        n = self.comm.broadcast_obj(n, owner)
        return _count(n, self.comm.peer_name(owner))

    def _count_prealigned(self) -> int:
        counts = []
        for p in self.plan.owners:
            n = int(_run(self.engine, f"SELECT count(*) FROM ({self.sql})",
                         self.engine.scalar)) if self.rank == p else None
            counts.append(_count(self.comm.broadcast_obj(n, p), self.comm.peer_name(p)))
        if counts[0] != counts[1]:
            raise ProtocolUsageError(f"prealigned tables have {counts[0]} and {counts[1]} "
                                     f"rows; register them without prealigned=True to join "
                                     f"by PSI")
        return counts[0]

    def _psi_join(self) -> int:
        # PSI or secret join, INNER or LEFT (veil/sql/join.py); sets self.table and the
        # per-row join flags (self.join_flags) that execute.py adds to each chunk.
        from .join import align
        return align(self, _run, check_nulls, _count)

    def chunks(self):
        """Yield (rows in chunk, this owner's arrow batch or None) with equal sizes everywhere."""
        if self.rank not in self.plan.owners:
            for start in range(0, self.n, self.chunk):
                yield min(self.chunk, self.n - start), None
            return
        if self.table is not None:
            for start in range(0, self.n, self.chunk):
                yield min(self.chunk, self.n - start), self.table.slice(start, self.chunk)
            return
        reader = _run(self.engine, self.sql, lambda s: self.engine.batches(s, self.chunk))
        buf, have, sent = [], 0, 0
        for batch in reader:
            buf.append(batch)
            have += batch.num_rows
            while have >= self.chunk or (have and sent + have == self.n):
                if len(buf) == 1 and have == self.chunk:         # already one chunk: no copy
                    out = pa.Table.from_batches(buf)
                    buf, have, sent = [], 0, sent + self.chunk
                    self._hash_keys(out)
                    yield self.chunk, out
                    continue
                t = pa.Table.from_batches(buf).combine_chunks()
                take = min(self.chunk, have)
                out, rest = t.slice(0, take), t.slice(take)
                buf, have = rest.to_batches(), have - take
                sent += take
                self._hash_keys(out)
                yield take, out
        if sent != self.n:
            raise ProtocolUsageError("a table changed while the query ran (row count differs)")

    def _hash_keys(self, t: pa.Table) -> None:
        if not self.plan.prealigned:
            return
        for name in self.plan.join_keys[self.rank]:
            col = t.column(name)
            if pa.types.is_integer(col.type):
                # Integers hash as int64 bytes (vectorised; same at both sides for any
                # integer width); other types row by row in canonical form.
                self.key_hash.update(b"i")
                for part in col.cast(pa.int64()).chunks:     # hashed in place, no copy
                    self.key_hash.update(part.to_numpy(zero_copy_only=False).data)
            else:
                for k in canonical_keys(col.to_pylist()):
                    self.key_hash.update(len(k).to_bytes(4, "little") + k)

    def check_alignment(self) -> None:
        """Prealigned tables: both owners confirm equal keys row by row, before any reveal.

        Each owner sends SHA-256(nonce_a || nonce_b || keys): equal digests iff equal key
        sequences (the joint nonces keep the digest from being looked up offline).
        Discloses to the two owners only whether their key sequences are equal.
        """
        if not self.plan.prealigned or self.rank not in self.plan.owners:
            return
        a, b = self.plan.owners
        peer = b if self.rank == a else a
        mine_nonce = os.urandom(16)
        self.comm.count_round()
        self.comm.send_bytes(peer, mine_nonce)
        theirs = bytes(self.comm.recv_bytes(peer))
        nonces = mine_nonce + theirs if self.rank == a else theirs + mine_nonce
        digest = hashlib.sha256(nonces + self.key_hash.digest()).digest()
        self.comm.count_round()
        self.comm.send_bytes(peer, digest)
        if bytes(self.comm.recv_bytes(peer)) != digest:
            raise ProtocolUsageError("tables registered prealigned=True do not have equal join "
                                     "keys row by row; align them (veil.psi) or register them "
                                     "without prealigned to join by PSI")


def _count(n, sender: str) -> int:
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise PartyError(sender, "sent a malformed row count")
    return n


def column(batch, name: str) -> np.ndarray:
    return batch.column(name).to_numpy(zero_copy_only=False).astype(np.int64, copy=True)
