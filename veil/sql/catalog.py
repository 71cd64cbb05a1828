"""Registered tables: the owner's data in its local engine, public schemas everywhere.

Registration is collective (every party calls ``register`` in the same order). The owner
loads its table into its local engine and broadcasts the *public* part: column names
and types, the row count, the column policy, declared bounds and whether it is
prealigned. Every other party creates an empty table with that schema in its own
engine, so each party can type-check and plan a query alone, with the same result.

The local engine is DuckDB behind a small interface (`LocalEngine`): a party with other
infrastructure can plug in another engine that offers the same four methods.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass

from ..errors import PartyError, ProtocolUsageError
from .policy import Policy

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_TYPE = re.compile(r"[A-Z0-9_(), ]+")


@dataclass
class TableInfo:
    name: str
    owner: int
    columns: dict[str, str]              # column → SQL type (public)
    rows: int                            # public
    policy: Policy
    bounds: dict[str, float]
    prealigned: bool


class LocalEngine:
    """DuckDB, one in-memory database per party and session."""

    def __init__(self) -> None:
        import duckdb
        self.con = duckdb.connect()

    def add(self, name: str, source) -> None:
        """Make the owner's table queryable as ``name`` (no copy where DuckDB can scan)."""
        if isinstance(source, (str, os.PathLike)):
            path = os.fspath(source)
            if not os.path.exists(path):
                raise ProtocolUsageError(f"table {name!r}: file {path!r} not found")
            reader = "read_parquet" if path.lower().endswith((".parquet", ".pq")) else \
                "read_csv_auto" if path.lower().endswith((".csv", ".tsv")) else None
            if reader is None:
                raise ProtocolUsageError(f"table {name!r}: give a .parquet or .csv path")
            # A view: the file is scanned (streamed) at query time, never loaded whole.
            self.con.execute(f"CREATE VIEW {name} AS SELECT * FROM {reader}('{_quote(path)}')")
            return
        if type(source).__module__.startswith("duckdb"):
            source = source.to_arrow_table()             # a relation of another connection
        if type(source).__module__.startswith("polars"):
            source = source.to_arrow()
        ok = type(source).__module__.split(".")[0] in ("pandas", "pyarrow")
        if not ok:
            raise ProtocolUsageError(
                f"table {name!r}: register a pandas/polars/pyarrow table, a DuckDB relation, "
                f"or a .parquet/.csv path (got {type(source).__name__})")
        self.con.register(f"__src_{name}", source)
        self.con.execute(f"CREATE VIEW {name} AS SELECT * FROM __src_{name}")

    def shadow(self, name: str, columns: dict[str, str]) -> None:
        """An empty table with another party's public schema, for planning here."""
        cols = ", ".join(f'"{c}" {t}' for c, t in columns.items())
        self.con.execute(f"CREATE TABLE {name} ({cols})")

    def describe(self, sql: str) -> list[tuple[str, str]]:
        return [(r[0], r[1]) for r in self.con.execute(f"DESCRIBE {sql}").fetchall()]

    def scalar(self, sql: str):
        return self.con.execute(sql).fetchall()[0][0]

    def arrow(self, sql: str):
        return self.con.sql(sql).to_arrow_table()

    def batches(self, sql: str, rows: int):
        return self.con.sql(sql).to_arrow_reader(rows)


def _quote(path: str) -> str:
    return path.replace("'", "''")


def check_name(name: str, what: str) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ProtocolUsageError(f"{what} {name!r} must be a plain SQL identifier "
                                 f"(letters, digits, _)")
    return name.lower()


def public_info(engine: LocalEngine, name: str, owner: int, policy: Policy, bounds: dict,
                prealigned: bool) -> dict:
    cols = engine.describe(f"SELECT * FROM {name}")
    rows = int(engine.scalar(f"SELECT count(*) FROM {name}"))
    for c, _ in cols:
        check_name(c, f"table {name!r}: column")
    if bounds == "measured":
        bounds = measured_bounds(engine, name, cols)
    elif bounds == "type":
        bounds = {}
    elif not isinstance(bounds, dict):
        raise ProtocolUsageError(f"table {name!r}: bounds must be 'measured', 'type' or a "
                                 f"dict {{column: max_abs}}")
    for c in bounds:
        if c.lower() not in {k.lower() for k, _ in cols}:
            raise ProtocolUsageError(f"table {name!r}: bounds name unknown column {c!r}")
    return {"columns": [[c.lower(), t] for c, t in cols], "rows": rows,
            "policy": policy.to_obj(), "prealigned": prealigned,
            "bounds": {k.lower(): float(v) for k, v in bounds.items()}}


_MEASURED = ("INT", "DECIMAL", "DOUBLE", "FLOAT", "REAL")


def measured_bounds(engine: LocalEngine, name: str, cols) -> dict[str, float]:
    """Each numeric column's bound as the next power of two above its largest |value|.

    Discloses, at registration, the bit length of each numeric column's largest
    magnitude (e.g. "amounts stay below 2^40"); pass explicit ``bounds`` or
    ``bounds="type"`` to disclose nothing beyond the type.
    """
    out = {}
    for c, t in cols:
        if any(k in t.upper() for k in _MEASURED):
            m = engine.scalar(f'SELECT max(abs("{c}")) FROM {name}')
            if m is not None:
                out[c.lower()] = float((1 << int(math.ceil(float(m))).bit_length()) - 1)
    return out


def parse_info(obj, name: str, owner: int, sender: str) -> TableInfo:
    """Validate a peer's registration message (untrusted input) into a TableInfo."""
    try:
        cols = {}
        for c, t in obj["columns"]:
            if not (isinstance(c, str) and _NAME.fullmatch(c) and isinstance(t, str)
                    and _TYPE.fullmatch(t)):
                raise ValueError(f"bad column {c!r}")
            cols[c] = t
        rows = obj["rows"]
        if not isinstance(rows, int) or isinstance(rows, bool) or rows < 0:
            raise ValueError("bad row count")
        bounds = {str(k): float(v) for k, v in dict(obj["bounds"]).items()}
        policy = Policy.from_obj(obj["policy"], sender)
        return TableInfo(name, owner, cols, rows, policy, bounds, bool(obj["prealigned"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise PartyError(sender, f"sent a malformed schema for table {name!r}: {exc}") from None
