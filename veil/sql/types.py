"""SQL types → exact ring encodings: which integer a value becomes, and its public bound.

Every value that enters secret computation is an int64 ``v`` standing for ``v / 10^scale``:

============================  ===============================  ==========================
SQL type                      ring integer                     bound (exclusive, public)
============================  ===============================  ==========================
BOOLEAN                       0 / 1                            2
TINYINT … INTEGER, unsigned   the value                        2^bits of the type
BIGINT, UBIGINT, HUGEINT      the value (checked)              2^62, or the declared bound
DATE                          days since 1970-01-01            2^31
TIMESTAMP                     microseconds since the epoch     2^62
DECIMAL(p, s)                 value · 10^s (exact)             10^p (capped at 2^62)
FLOAT, DOUBLE                 round(value · 10^6)              2^62, or the declared bound
============================  ===============================  ==========================

Floats are the only inexact type: each value is rounded to 6 decimals (error ≤ 5·10^-7
per value, so a SUM over N rows is off by at most N · 5·10^-7). The owner checks every
value against its bound before sharing; a declared bound (``register(bounds=…)``) is in
the column's own units.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import ProtocolUsageError

BIG = 1 << 62
FLOAT_SCALE = 6
_INTS = {"TINYINT": 1 << 7, "SMALLINT": 1 << 15, "INTEGER": 1 << 31, "BIGINT": BIG,
         "UTINYINT": 1 << 8, "USMALLINT": 1 << 16, "UINTEGER": 1 << 32, "UBIGINT": BIG,
         "HUGEINT": BIG, "UHUGEINT": BIG}
_DEC = re.compile(r"DECIMAL\((\d+),\s*(\d+)\)")


@dataclass(frozen=True)
class Encoding:
    """How one column or derived value is carried: kind, public bound, decimal scale."""
    kind: str                 # "int" | "bool" | "date" | "timestamp" | "decimal" | "float" | "text"
    bound: int = 0
    scale: int = 0
    sql_type: str = ""

    @property
    def numeric(self) -> bool:
        return self.kind != "text"


def encoding_of(sql_type: str, declared: float | int | None = None) -> Encoding:
    """The encoding of a DuckDB type name (``declared``: the owner's bound on |value|)."""
    t = sql_type.upper()
    if t == "BOOLEAN":
        enc = Encoding("bool", 2, 0, t)
    elif t in _INTS:
        enc = Encoding("int", _INTS[t], 0, t)
    elif t == "DATE":
        enc = Encoding("date", 1 << 31, 0, t)
    elif t.startswith("TIMESTAMP"):
        enc = Encoding("timestamp", BIG, 0, t)
    elif (m := _DEC.fullmatch(t)):
        p, s = int(m.group(1)), int(m.group(2))
        enc = Encoding("decimal", min(10 ** p, BIG), s, t)
    elif t in ("FLOAT", "DOUBLE", "REAL"):
        enc = Encoding("float", BIG, FLOAT_SCALE, t)
    elif t == "VARCHAR":
        return Encoding("text", 0, 0, t)
    else:
        enc = Encoding("other", 0, 0, t)
    if declared is not None and enc.numeric and enc.kind != "other":
        b = int(declared * 10 ** enc.scale) + 1
        enc = Encoding(enc.kind, min(enc.bound, b) if enc.kind != "bool" else 2, enc.scale, t)
    return enc


def encode_sql(expr_sql: str, enc: Encoding, name: str) -> str:
    """DuckDB SQL that turns a value of this encoding into its BIGINT ring integer."""
    if enc.kind in ("int", "bool"):
        return f"CAST({expr_sql} AS BIGINT)"
    if enc.kind == "date":
        return f"datediff('day', DATE '1970-01-01', {expr_sql})"
    if enc.kind == "timestamp":
        return f"epoch_us({expr_sql})"
    if enc.kind == "decimal":
        # Exact: a DECIMAL times 10^s is an integer-valued DECIMAL.
        return f"CAST(({expr_sql}) * {10 ** enc.scale} AS BIGINT)"
    if enc.kind == "float":
        return f"CAST(round(({expr_sql}) * {10 ** FLOAT_SCALE}) AS BIGINT)"
    raise ProtocolUsageError(f"{name} has type {enc.sql_type}, which cannot enter secret "
                             f"computation (numbers, booleans, dates and timestamps can)")


def literal_encoding(text: str) -> tuple[int, Encoding]:
    """A numeric literal as (ring integer, encoding): '12.50' → (1250, scale 2)."""
    if re.fullmatch(r"-?\d+", text):
        v = int(text)
        return v, Encoding("int", abs(v) + 1, 0, "INTEGER")
    m = re.fullmatch(r"(-?)(\d*)\.(\d+)", text)
    if not m:
        raise ProtocolUsageError(f"numeric literal {text!r} is not supported in secret "
                                 f"expressions (write it as an integer or a decimal)")
    s = len(m.group(3))
    v = int(m.group(1) + (m.group(2) or "0") + m.group(3))
    return v, Encoding("decimal", abs(v) + 1, s, f"DECIMAL(18,{s})")
