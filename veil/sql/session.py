"""`veil.sql.Session`: register tables at their owners, query them together.

>>> import pandas as pd, veil
>>> def job():
...     db = veil.sql.Session()
...     orders = pd.DataFrame({"id": [1, 2, 3, 4, 5], "a": [5, 1, 9, 7, 3]})
...     ads = pd.DataFrame({"id": [1, 2, 3, 4, 6], "b": [2, 2, 8, 1, 0]})
...     db.register("orders", orders if veil.rank() == 0 else None, owner=0)
...     db.register("ads", ads if veil.rank() == 1 else None, owner=1)
...     return db.query("SELECT SUM(o.a * d.b) AS s, COUNT(*) AS n FROM orders o "
...                     "JOIN ads d ON o.id = d.id WHERE o.a > d.b", reveal_to=1)
>>> out = veil.run(job, parties=2)
>>> out[0] is None, out[1].to_dict("records")
(True, [{'s': 89, 'n': 3}])
"""

from __future__ import annotations

from ..context import current
from ..errors import ProtocolUsageError
from .catalog import LocalEngine, TableInfo, check_name, parse_info, public_info
from .execute import Executor
from .plan import parse
from .policy import Policy
from .join import SECRET_JOIN_MAX_PAIRS
from .split import Splitter

DEFAULT_CHUNK = 1 << 18


class Session:
    """One party's handle on a shared SQL catalog (SPMD: every party makes one).

    Public at registration, to every party: table name, owner, column names and types,
    row count, the policy and declared bounds. Everything else stays with the owner
    until a query's secret part shares it.
    """

    def __init__(self, chunk_rows: int = DEFAULT_CHUNK, *,
                 secret_join_max_pairs: int = SECRET_JOIN_MAX_PAIRS) -> None:
        ctx = current()
        if not isinstance(chunk_rows, int) or chunk_rows < 1:
            raise ProtocolUsageError("chunk_rows must be a positive int")
        self.rank, self.world = ctx.rank, ctx.world_size
        self.engine = LocalEngine()
        self.tables: dict[str, TableInfo] = {}
        self.chunk_rows = chunk_rows
        if not isinstance(secret_join_max_pairs, int) or secret_join_max_pairs < 0:
            raise ProtocolUsageError("secret_join_max_pairs must be a non-negative int")
        self.secret_join_max_pairs = secret_join_max_pairs

    def __repr__(self) -> str:
        return f"Session(party={self.rank}, tables={sorted(self.tables)})"

    def register(self, name: str, table=None, *, owner: int, policy: Policy | None = None,
                 bounds: dict | str = "measured", prealigned: bool = False) -> None:
        """Register ``table`` (at ``owner``; ``None`` elsewhere) under ``name``. Collective.

        ``table``: a pandas / polars / pyarrow table, a DuckDB relation, or a .parquet /
        .csv path (scanned in place). ``policy``: a `Policy` (default: every column may
        appear in results revealed to the query's receiver; groups under 4 rows dropped).
        ``bounds``: the public bound on each numeric column's magnitude, which the
        overflow checks use (the owner checks every value against it). ``"measured"``
        (default): the next power of two above the column's largest |value| — this
        discloses its bit length; a dict ``{column: max |value|}`` declares them (e.g.
        money in cents below 10^12); ``"type"``: the type's range only (BIGINT: 2^62;
        products of two such columns are then refused). ``prealigned``:
        the owner asserts its rows are already aligned with the other party's
        prealigned table (e.g. by `veil.psi`); joins between two prealigned tables are
        positional (no PSI; the keys are checked equal, row by row, by a hash), and local
        filters become secret masks instead of being pushed down.
        """
        comm = current().comm
        name = check_name(name, "table name")
        if not isinstance(owner, int) or not 0 <= owner < self.world:
            raise ProtocolUsageError(f"owner must be a party rank 0..{self.world - 1}, "
                                     f"got {owner!r}")
        if name in self.tables:
            raise ProtocolUsageError(f"table {name!r} is already registered")
        policy = policy or Policy()
        if not isinstance(policy, Policy):
            raise ProtocolUsageError("policy must be a veil.sql.Policy")
        msg = None
        if self.rank == owner:
            if table is None:
                raise ProtocolUsageError(f"party {owner} owns {name!r}: pass its table")
            self.engine.add(name, table)
            msg = public_info(self.engine, name, owner, policy, bounds,
                              bool(prealigned))
        elif table is not None:
            raise ProtocolUsageError(f"{name!r} belongs to party {owner}: party {self.rank} "
                                     f"must pass None (its data would be ignored)")
        # Discloses the table's schema, row count, policy and bounds to every party.
        obj = comm.broadcast_obj(msg, owner)
        info = parse_info(obj, name, owner, comm.peer_name(owner))
        if self.rank != owner:
            self.engine.shadow(name, info.columns)
        self.tables[name] = info

    def query(self, sql: str, reveal_to: int | None = None, *, progress: bool = False,
              join: str = "auto", psi: str = "auto", dp=None):
        """Run ``sql`` over the registered tables; a pandas DataFrame at the receiver.

        ``reveal_to``: the party that gets the result (``None``: every party); the
        others get ``None``. Refused before any data moves if the SQL is unsupported or
        breaks a column policy. See docs/sql.md for what each step discloses.
        ``join`` (two parties' tables): ``"psi"`` aligns rows by private set
        intersection (the key owners learn which keys match); ``"secret"`` keeps that
        secret (a secret match flag over all n·m row pairs; refused above
        ``secret_join_max_pairs``); ``"auto"``: PSI unless a table's policy forbids
        revealing join keys. ``psi``: `veil.psi`'s protocol ("auto", "rr22", "ecdh").
        ``dp``: a `veil.dp.sql.SQLPrivacy`: the aggregates are revealed with noise
        generated inside MPC, (ε, δ)-DP (ungrouped SUM / COUNT / AVG).
        """
        if reveal_to is not None and (not isinstance(reveal_to, int)
                                      or not 0 <= reveal_to < self.world):
            raise ProtocolUsageError(f"reveal_to must be a party rank 0..{self.world - 1} "
                                     f"or None, got {reveal_to!r}")
        receivers = list(range(self.world)) if reveal_to is None else [reveal_to]
        ast = parse(sql, self.tables)
        plan = Splitter(ast, self.tables, self.engine, receivers, join=join, psi=psi,
                        secret_join_max_pairs=self.secret_join_max_pairs).split()
        release = dp.hook(plan) if dp is not None else None   # DP noise (veil.dp.sql)
        return Executor(plan, self.engine, reveal_to, self.chunk_rows, progress,
                        before_release=release).run()
