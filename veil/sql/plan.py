"""SQL text → a plan split by owner. Every party plans alone, from public schemas only.

The query is parsed and qualified with sqlglot, checked against what the engine
supports (anything else is refused by name) and against the column policies, then cut:

* each *owner's local part*: one DuckDB query over its own tables, with every
  condition that names only its columns pushed into its WHERE (the number of rows that
  pass becomes public — the vector length of the secret part), and every maximal
  sub-expression over only its columns computed there, row by row, in plaintext;
* the *join*: equalities between two owners' columns become the PSI key;
* the *secret part*: what is left, over references ``__cN`` to those local values —
  cross-party conditions (a secret 0/1 mask: rows are never dropped by it), arithmetic,
  CASE, aggregates, group sums, HAVING;
* the *final part*: the receiver's DuckDB query over the revealed aggregates (or rows)
  that applies the remaining expressions, ORDER BY and LIMIT.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sqlglot
from sqlglot import exp
from sqlglot.errors import OptimizeError, ParseError
from sqlglot.optimizer.qualify import qualify

from ..errors import ProtocolUsageError
from .catalog import TableInfo
from .policy import PolicyError, require
from .types import Encoding

AGGS = {exp.Sum: "sum", exp.Count: "count", exp.Avg: "avg", exp.Min: "min", exp.Max: "max"}
COMPARE = (exp.GT, exp.GTE, exp.LT, exp.LTE, exp.EQ, exp.NEQ)
SECRET_NODES = (exp.Column, exp.Literal, exp.Boolean, exp.Paren, exp.Add, exp.Sub, exp.Mul,
                exp.Neg, exp.And, exp.Or, exp.Not, exp.Case, exp.If, exp.Between, exp.In,
                *COMPARE)


class UnsupportedSQL(ProtocolUsageError):
    """The query uses SQL this engine does not run; the message names the construct."""


@dataclass
class Item:
    name: str                 # __cN (encoded number), __jN (raw join key), __gN (raw group key)
    owner: int
    sql: str                  # DuckDB expression over the owner's qualified columns
    enc: Encoding | None = None


@dataclass
class Agg:
    kind: str                 # sum | count | min | max
    arg: exp.Expression | None   # secret tree over item refs; None: COUNT(*)
    name: str = ""


@dataclass
class Plan:
    tables: dict[str, TableInfo]                 # alias → table
    owners: list[int]                            # owners whose rows take part, sorted
    local_where: dict[int, list[str]] = field(default_factory=dict)
    from_sql: dict[int, str] = field(default_factory=dict)
    items: dict[str, Item] = field(default_factory=dict)
    join_keys: dict[int, list[str]] = field(default_factory=dict)   # owner → __j names
    prealigned: bool = False
    join_mode: str = "psi"                    # psi | secret (veil/sql/join.py)
    psi_protocol: str = "auto"                # veil.psi's protocol= for a PSI join
    left_owner: int | None = None             # LEFT JOIN: the owner whose rows all stay
    secret_join_max_pairs: int = 1 << 20
    mask: exp.Expression | None = None
    grouped: bool = False
    group_owner: int | None = None
    group_keys: list[str] = field(default_factory=list)             # __g names
    # When every group key is a join key, the other key owner holds the same values
    # (its __j names here): with two parties the group of each row is known to both.
    group_peer_keys: list[str] = field(default_factory=list)
    group_types: list[str] = field(default_factory=list)
    aggs: list[Agg] = field(default_factory=list)
    having: exp.Expression | None = None
    threshold: int = 0
    rows_out: list[tuple[str, exp.Expression]] = field(default_factory=list)  # row-level
    final_sql: str = ""
    constants: dict[str, tuple[int, Encoding]] = field(default_factory=dict)

    @property
    def aggregate(self) -> bool:
        return bool(self.aggs)


def _refuse_unsupported(ast: exp.Expression) -> None:
    if not isinstance(ast, exp.Select):
        kind = type(ast).__name__.upper()
        raise UnsupportedSQL(f"{kind} statements are not supported: veil.sql runs SELECT queries")
    checks = [(exp.Window, "window functions are not supported"),
              (exp.With, "WITH (common table expressions) is not supported"),
              (exp.Subquery, "subqueries are not supported"),
              (exp.Union, "UNION is not supported"), (exp.Intersect, "INTERSECT is not supported"),
              (exp.Except, "EXCEPT is not supported"), (exp.Lateral, "LATERAL is not supported"),
              (exp.Unnest, "UNNEST is not supported")]
    for node_type, msg in checks:
        if ast.find(node_type):
            raise UnsupportedSQL(msg)
    for sel in ast.find_all(exp.Select):
        if sel is not ast:
            raise UnsupportedSQL("subqueries are not supported")
    if ast.args.get("distinct"):
        raise UnsupportedSQL("SELECT DISTINCT is not supported (use GROUP BY)")
    for j in ast.args.get("joins") or []:
        side, kind = (j.side or "").upper(), (j.kind or "").upper()
        if side == "RIGHT" and kind in ("", "OUTER"):
            raise UnsupportedSQL("RIGHT JOIN is not supported: write it as a LEFT JOIN "
                                 "with the two tables swapped")
        if (side and side != "LEFT") or kind not in ("", "INNER", "OUTER"):
            raise UnsupportedSQL(f"{(side + ' ' + kind).strip()} JOIN is not supported "
                                 f"(INNER JOIN and LEFT JOIN only)")
        if j.args.get("using") and side:
            raise UnsupportedSQL("LEFT JOIN … USING is not supported: write "
                                 "LEFT JOIN … ON a.key = b.key")
    for agg in ast.find_all(exp.AggFunc):
        if type(agg) not in AGGS:
            raise UnsupportedSQL(f"aggregate {agg.sql_name()} is not supported "
                                 f"(SUM, COUNT, AVG, MIN, MAX are)")
        if agg.find(exp.Distinct):
            raise UnsupportedSQL(f"{agg.sql_name()}(DISTINCT …) is not supported")
    for node in ast.find_all(exp.Rollup, exp.Cube, exp.GroupingSets):
        raise UnsupportedSQL(f"{type(node).__name__.upper()} is not supported")


def parse(sql: str, tables: dict[str, TableInfo]) -> exp.Select:
    if not isinstance(sql, str) or not sql.strip():
        raise ProtocolUsageError("query(sql) needs SQL text")
    try:
        asts = sqlglot.parse(sql, read="duckdb")
    except ParseError as exc:
        raise ProtocolUsageError(f"could not parse the SQL: {exc.errors[0]['description'] if exc.errors else exc}") from None
    if len(asts) != 1 or asts[0] is None:
        raise ProtocolUsageError("give exactly one SQL statement")
    ast = asts[0]
    _refuse_unsupported(ast)
    for t in ast.find_all(exp.Table):
        if t.name.lower() not in tables:
            known = ", ".join(sorted(tables)) or "none"
            raise ProtocolUsageError(f"unknown table {t.name!r} (registered: {known})")
        if t.args.get("db") or t.args.get("catalog"):
            raise UnsupportedSQL("qualified table names (db.table) are not supported")
    # Name unaliased results by their text, as DuckDB does ("SUM(o.a)"), not "_col_0".
    for i, s in enumerate(ast.expressions):
        if not isinstance(s, (exp.Alias, exp.Column, exp.Star)):
            name = "count_star()" if isinstance(s, exp.Count) and isinstance(s.this, exp.Star) \
                else s.sql("duckdb")
            ast.expressions[i] = exp.alias_(s, name, quoted=True)
    schema = {name: dict(info.columns) for name, info in tables.items()}
    try:
        return qualify(ast, schema=schema, dialect="duckdb", identify=False,
                       validate_qualify_columns=True)
    except OptimizeError as exc:
        raise ProtocolUsageError(f"{exc} (check the column names against the registered "
                                 f"tables)") from None


def conjuncts(e: exp.Expression | None) -> list[exp.Expression]:
    if e is None:
        return []
    e = e.unnest() if isinstance(e, exp.Paren) else e
    if isinstance(e, exp.And):
        return conjuncts(e.this) + conjuncts(e.expression)
    return [e]


def owners_of(e: exp.Expression, aliases: dict[str, TableInfo]) -> set[int]:
    return {aliases[c.table].owner for c in e.find_all(exp.Column) if c.table in aliases}


def policy_uses(ast: exp.Select, aliases: dict[str, TableInfo], join_eqs: list,
                receivers) -> None:
    """Refuse, before any data moves, a column used beyond its policy level."""
    uses: list[tuple[exp.Column, str]] = []

    def walk(node, use):
        if isinstance(node, exp.Column):
            uses.append((node, use))
            return
        if isinstance(node, exp.AggFunc):
            use = "aggregate" if use == "plain" else use
        if isinstance(node, exp.If):          # CASE branches: the condition is a comparison
            walk(node.this, "compare")
            walk(node.args.get("true"), use)
            return
        for child in node.iter_expressions():
            walk(child, use)

    for s in ast.expressions:
        walk(s, "plain")
    for g in (ast.args.get("group").expressions if ast.args.get("group") else []):
        walk(g, "plain")
    for o in (ast.args.get("order").expressions if ast.args.get("order") else []):
        walk(o, "plain")
    for eq in join_eqs:
        walk(eq.this, "join")
        walk(eq.expression, "join")
    conds = [c for c in conjuncts((ast.args.get("where") or exp.Where()).this)
             if c not in join_eqs]
    for j in ast.args.get("joins") or []:
        conds += [c for c in conjuncts(j.args.get("on")) if c not in join_eqs]
    for c in conds:
        walk(c, "compare")
    if ast.args.get("having"):
        walk(ast.args["having"].this, "compare")
    for col, use in uses:
        info = aliases.get(col.table)
        if info is not None:
            require(info.policy, info.name, col.name, use, receivers)


__all__ = ["Plan", "Item", "Agg", "UnsupportedSQL", "PolicyError", "parse", "conjuncts",
           "owners_of", "policy_uses", "AGGS", "COMPARE", "SECRET_NODES"]
