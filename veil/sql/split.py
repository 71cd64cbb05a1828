"""Cut a qualified SELECT into owners' local parts, the secret part and the final part.

See veil/sql/plan.py for the shape of a plan. Deterministic: every party runs this on
the same SQL and public schemas and gets the same plan, names included.
"""

from __future__ import annotations

from sqlglot import exp

from ..errors import ProtocolUsageError
from .catalog import LocalEngine, TableInfo
from .plan import (AGGS, COMPARE, SECRET_NODES, Agg, Item, Plan, UnsupportedSQL, conjuncts,
                   owners_of, policy_uses)
from .policy import PolicyError
from .types import Encoding, encode_sql, encoding_of, literal_encoding

# Secret-part nodes that are not NULL-strict (NULL in does not always give NULL out).
NON_STRICT = (exp.And, exp.Or, exp.Case, exp.If, exp.Coalesce, exp.Is)


class Splitter:
    def __init__(self, ast: exp.Select, tables: dict[str, TableInfo], engine: LocalEngine,
                 receivers: list[int], join: str = "auto", psi: str = "auto",
                 secret_join_max_pairs: int = 1 << 20) -> None:
        self.ast, self.engine, self.receivers = ast, engine, receivers
        self.join_request = join
        self.aliases: dict[str, TableInfo] = {}
        for t in ast.find_all(exp.Table):
            self.aliases[t.alias_or_name] = tables[t.name.lower()]
        self.plan = Plan(tables=self.aliases,
                         owners=sorted({i.owner for i in self.aliases.values()}))
        self._sql_to_item: dict[tuple[int, str, str], str] = {}
        self._key_pairs: list[tuple[exp.Expression, exp.Expression]] = []
        self.plan.psi_protocol = psi
        self.plan.secret_join_max_pairs = secret_join_max_pairs
        self._nullable_cache: dict[str, bool] = {}
        self.nullable_owner: int | None = None
        self._left_join_setup()

    # -- items: values an owner computes locally --------------------------------------------
    def _item(self, owner: int, e: exp.Expression, prefix: str) -> str:
        sql = e.sql("duckdb")
        key = (owner, sql, prefix)
        if key in self._sql_to_item:
            return self._sql_to_item[key]
        name = f"{prefix}{len(self._sql_to_item)}"
        self._sql_to_item[key] = name
        self.plan.items[name] = Item(name, owner, sql)
        return name

    def _owner_sql_type(self, owner: int, sql: str) -> str:
        from_sql = self._from(owner)
        return self.engine.describe(f"SELECT {sql} FROM {from_sql}")[0][1]

    def _from(self, owner: int) -> str:
        parts = [f"{info.name} AS {alias}" for alias, info in self.aliases.items()
                 if info.owner == owner]
        return ", ".join(parts)

    def _encode_items(self) -> None:
        for item in self.plan.items.values():
            t = self._owner_sql_type(item.owner, item.sql)
            if item.name.startswith("__c"):
                declared = self._declared_bound(item)
                item.enc = encoding_of(t, declared)
                encode_sql(item.sql, item.enc, item.sql)       # refuses text early
            else:
                item.enc = encoding_of(t)

    def _declared_bound(self, item: Item):
        """|value| bound of a local item, in its own units, from the columns' bounds.

        Propagated through + - * NEG, COALESCE and CASE over bounded columns and
        literals; anything else falls back to the type's range (``None``).
        """
        import sqlglot
        return self._bound_of(sqlglot.parse_one(item.sql, read="duckdb"))

    def _bound_of(self, e):
        if isinstance(e, exp.Paren):
            return self._bound_of(e.this)
        if isinstance(e, exp.Column):
            info = self.aliases.get(e.table)
            return None if info is None else info.bounds.get(e.name)
        if isinstance(e, exp.Literal) and not e.is_string:
            try:
                return abs(float(e.this))
            except ValueError:
                return None
        if isinstance(e, exp.Neg):
            return self._bound_of(e.this)
        parts = None
        if isinstance(e, (exp.Add, exp.Sub, exp.Mul)):
            a, b = self._bound_of(e.this), self._bound_of(e.expression)
            if a is None or b is None:
                return None
            return a * b if isinstance(e, exp.Mul) else a + b
        if isinstance(e, exp.Coalesce):
            parts = [e.this, *e.expressions]
        elif isinstance(e, exp.Case) and e.args.get("default") is not None:
            parts = [e.args["default"], *[i.args["true"] for i in e.args["ifs"]]]
        if parts:
            bs = [self._bound_of(p) for p in parts]
            return None if any(b is None for b in bs) else max(bs)
        return None

    # -- lowering: maximal single-owner sub-trees become item references ---------------------
    def lower(self, e: exp.Expression) -> exp.Expression:
        owners = owners_of(e, self.aliases)
        if len(owners) == 1 and not e.find(exp.AggFunc) and not isinstance(e, exp.Literal):
            (owner,) = owners
            return exp.column(self._item(owner, e, "__c"))
        if not owners:
            return self._constant(e)
        if isinstance(e, exp.Coalesce) and self._is_key_coalesce(e):
            return self.lower(e.this)                       # from JOIN … USING: keys agree
        if not isinstance(e, SECRET_NODES):
            name = e.sql_name() if hasattr(e, "sql_name") else type(e).__name__
            if isinstance(e, exp.Div):
                raise UnsupportedSQL("division of values from different parties is not "
                                     "supported inside the secret part; divide aggregates "
                                     "(SUM(x) / COUNT(*)) instead")
            raise UnsupportedSQL(f"{name} over columns of different parties is not supported "
                                 f"(supported: + - *, comparisons, AND/OR/NOT, CASE WHEN, "
                                 f"BETWEEN, IN)")
        out = e.copy()
        for key, val in list(out.args.items()):
            if isinstance(val, exp.Expression):
                out.set(key, self.lower(val))
            elif isinstance(val, list):
                out.set(key, [self.lower(v) if isinstance(v, exp.Expression) else v
                              for v in val])
        return out

    def _is_key_coalesce(self, e) -> bool:
        args = [e.this, *e.expressions]
        flat = {a.sql() for pair in self._key_pairs for a in pair}
        return all(a.sql() in flat for a in args)

    def _constant(self, e: exp.Expression) -> exp.Expression:
        if isinstance(e, (exp.Boolean, exp.Null)):
            return e
        if isinstance(e, exp.Literal):
            if e.is_string:
                raise UnsupportedSQL("string literals are not supported in cross-party "
                                     "expressions (compare strings within one party)")
            literal_encoding(e.this)                         # refuses odd numerics now
            return e
        if isinstance(e, exp.Neg) and isinstance(e.this, exp.Literal):
            return e
        sql = e.sql("duckdb")
        t = self.engine.describe(f"SELECT {sql}")[0][1]
        enc = encoding_of(t)
        v = self.engine.scalar(f"SELECT {encode_sql(sql, enc, sql)}")
        name = f"__k{len(self.plan.constants)}"
        self.plan.constants[name] = (int(v), enc)
        return exp.column(name)

    # -- LEFT JOIN: the nullable side ------------------------------------------------------------
    def _left_join_setup(self) -> None:
        joins = self.ast.args.get("joins") or []
        lefts = [j for j in joins if (j.side or "").upper() == "LEFT"]
        if not lefts:
            return
        if len(lefts) > 1 or len(joins) > 1:
            raise UnsupportedSQL("a LEFT JOIN must be the query's only join (two tables)")
        j = lefts[0]
        alias = j.this.alias_or_name
        info = self.aliases.get(alias)
        others = {i.owner for a, i in self.aliases.items() if a != alias}
        if info is None or info.owner in others or len(others) != 1:
            raise UnsupportedSQL("LEFT JOIN is supported between tables of two different "
                                 "parties")
        for c in conjuncts(j.args.get("on")):
            if not (isinstance(c, exp.EQ) and len(owners_of(c, self.aliases)) == 2 and
                    len(owners_of(c.this, self.aliases)) == 1 and
                    len(owners_of(c.expression, self.aliases)) == 1):
                raise UnsupportedSQL(f"LEFT JOIN … ON takes only key equalities between the "
                                     f"two parties' columns, not {c.sql()}; move other "
                                     f"conditions to WHERE (which filters after the join)")
        self.nullable_owner = info.owner
        (self.plan.left_owner,) = others

    def _item_null(self, item: Item) -> bool:
        """Whether the item is NULL when its owner's row is missing (SQL, run by DuckDB on
        the public schema: e.g. ``d.b`` is, ``COALESCE(d.b, 0)`` and ``d.b IS NULL`` not)."""
        if item.name not in self._nullable_cache:
            from .join import null_row_sql
            select = f"SELECT ({item.sql}) IS NULL AS n"
            self._nullable_cache[item.name] = bool(self.engine.scalar(
                null_row_sql(self.plan, item.owner, select)))
        return self._nullable_cache[item.name]

    def _nullable(self, e: exp.Expression | None) -> bool:
        """Whether a lowered tree is NULL on a LEFT JOIN row without a right-side match.

        Strict operators (arithmetic, comparisons, BETWEEN, IN, NOT) pass NULL through;
        AND / OR / CASE over a nullable value are refused rather than guessed."""
        if e is None or self.nullable_owner is None:
            return False
        if isinstance(e, exp.Column):
            item = self.plan.items.get(e.name)
            return item is not None and item.owner == self.nullable_owner and \
                self._item_null(item)
        if not any(self._nullable(k) for k in e.iter_expressions()):
            return False
        if isinstance(e, NON_STRICT):
            raise UnsupportedSQL(
                f"{type(e).__name__.upper()} over a LEFT JOIN's right-side columns across "
                f"parties (NULL where a row has no match) is not supported; wrap those "
                f"columns in COALESCE(col, value) or split the condition with AND in WHERE")
        return True

    def _null_guard(self, tree: exp.Expression) -> exp.Expression:
        """A WHERE condition that is NULL on unmatched rows filters them (NULL ≠ true)."""
        if self._nullable(tree):
            return exp.And(this=tree, expression=exp.column("__p"))
        return tree

    def _counter(self, agg_node: exp.Expression) -> exp.Expression:
        """The row count that decides whether an aggregate is NULL (no non-NULL input)."""
        arg = agg_node.this
        if self.nullable_owner is None or arg is None or isinstance(arg, exp.Star):
            return exp.column("__n")
        if self._nullable(self.lower(arg.copy())):
            return self._agg("sum", exp.column("__p"))
        return exp.column("__n")

    # -- the whole query ------------------------------------------------------------------
    def split(self) -> Plan:
        ast, plan = self.ast, self.plan
        conds = conjuncts(ast.args["where"].this) if ast.args.get("where") else []
        for j in ast.args.get("joins") or []:
            conds += conjuncts(j.args.get("on"))
        if len(plan.owners) > 2:
            raise UnsupportedSQL("a query over tables of more than two parties is not "
                                 "supported yet (join two parties' tables at a time)")
        secret_conds, join_eqs = [], []
        for c in conds:
            owners = owners_of(c, self.aliases)
            if (isinstance(c, exp.EQ) and len(owners) == 2 and
                    len(owners_of(c.this, self.aliases)) == 1 and
                    len(owners_of(c.expression, self.aliases)) == 1):
                join_eqs.append(c)
            elif len(owners) <= 1 and not self._prealigned() and not (
                    self.nullable_owner is not None and self.nullable_owner in owners):
                # (a LEFT JOIN filters the nullable side after the join: not pushed down)
                for p in (owners or plan.owners):
                    plan.local_where.setdefault(p, []).append(c.sql("duckdb"))
            else:
                secret_conds.append(c)
        policy_uses(ast, self.aliases, join_eqs, self.receivers)
        self._join(join_eqs)
        for p in plan.owners:
            plan.from_sql[p] = self._from(p)
        mask = None
        for c in secret_conds:
            lc = self._null_guard(self.lower(c))
            mask = lc if mask is None else exp.And(this=mask, expression=lc)
        if plan.join_mode == "secret":           # only pairs with equal keys count
            w = exp.column("__w")
            mask = w if mask is None else exp.And(this=mask, expression=w)
        plan.mask = mask
        has_agg = any(s.find(exp.AggFunc) for s in ast.expressions) or ast.args.get("group") \
            or ast.args.get("having")
        if has_agg:
            self._aggregate()
        else:
            self._rows()
            for _, tree in plan.rows_out:
                if self._nullable(tree):
                    raise UnsupportedSQL(
                        f"a row-level LEFT JOIN result with the right side's {tree.sql()} "
                        f"(NULL on unmatched rows) is not supported; aggregate it, or wrap "
                        f"it in COALESCE(col, value)")
        self._encode_items()
        for flag in ("__p", "__w"):              # join flags (veil/sql/join.py), bool rows
            plan.items[flag] = Item(flag, -1, "", Encoding("bool", 2, 0, "BOOLEAN"))
        for tree in self._secret_trees():
            self._check_units(tree)
        return plan

    def _secret_trees(self):
        plan = self.plan
        trees = [plan.mask, plan.having] + [a.arg for a in plan.aggs] + \
            [t for _, t in plan.rows_out]
        return [t for t in trees if t is not None]

    def _unit(self, e) -> str:
        """'date' (days), 'timestamp' (µs) or 'number': ring integers of different units."""
        if isinstance(e, exp.Paren):
            return self._unit(e.this)
        if isinstance(e, exp.Column):
            enc = self.plan.constants[e.name][1] if e.name in self.plan.constants else \
                self.plan.items[e.name].enc if e.name in self.plan.items else None
            if enc is not None and enc.kind in ("date", "timestamp"):
                return enc.kind
        if isinstance(e, (exp.Add, exp.Sub)):
            units = {self._unit(e.this), self._unit(e.expression)} - {"number"}
            return units.pop() if len(units) == 1 else "number"
        return "number"

    def _check_units(self, tree) -> None:
        """Refuse mixing days, microseconds and plain numbers, which would compare wrongly."""
        for node in tree.walk():
            pairs = []
            if isinstance(node, COMPARE):
                pairs.append((node.this, node.expression))
            elif isinstance(node, exp.Between):
                pairs += [(node.this, node.args["low"]), (node.this, node.args["high"])]
            elif isinstance(node, exp.Sub):
                pairs.append((node.this, node.expression))
            for a, b in pairs:
                ua, ub = self._unit(a), self._unit(b)
                if ua != ub and not (isinstance(node, exp.Sub) and ub == "number"):
                    raise ProtocolUsageError(
                        f"cannot combine a {ua} with a {ub} across parties "
                        f"({node.sql()}); CAST both sides to the same type")
            if isinstance(node, exp.Add):
                units = {self._unit(node.this), self._unit(node.expression)}
                if {"date", "timestamp"} <= units:
                    raise ProtocolUsageError(f"cannot add a date and a timestamp ({node.sql()})")

    def _prealigned(self) -> bool:
        return len(self.plan.owners) == 2 and all(i.prealigned for i in self.aliases.values())

    def _join(self, eqs) -> None:
        plan = self.plan
        if len(plan.owners) < 2:
            return
        if not eqs:
            raise UnsupportedSQL("tables of two parties need an equality join condition "
                                 "(JOIN … ON a.key = b.key); cross joins are not supported")
        plan.prealigned = self._prealigned()
        if self.join_request not in ("auto", "psi", "secret"):
            raise ProtocolUsageError(f"join must be 'auto', 'psi' or 'secret', got "
                                     f"{self.join_request!r}")
        forbid = [i.name for i in self.aliases.values() if not i.policy.reveal_key_after_join]
        if plan.prealigned:
            if plan.left_owner is not None:
                raise UnsupportedSQL("LEFT JOIN of prealigned tables is not supported: "
                                     "their rows all match by construction; use JOIN")
            plan.join_mode = "psi"
        elif self.join_request == "auto":
            # The PSI join reveals membership: only where every policy allows it.
            plan.join_mode = "secret" if forbid else "psi"
        else:
            plan.join_mode = self.join_request
        if plan.join_mode == "psi" and forbid and not plan.prealigned:
            raise PolicyError(f"policy of {forbid[0]} forbids revealing join keys "
                              f"(reveal_key_after_join=False), and a PSI join reveals "
                              f"intersection membership to both parties; use "
                              f"join='secret' (membership stays secret, O(n·m))")
        for eq in eqs:
            sides = sorted([eq.this, eq.expression],
                           key=lambda s: next(iter(owners_of(s, self.aliases))))
            self._key_pairs.append(tuple(sides))
            for s in sides:
                (p,) = owners_of(s, self.aliases)
                plan.join_keys.setdefault(p, []).append(self._item(p, s, "__j"))
        types = [[self._owner_sql_type(p, plan.items[n].sql) for n in plan.join_keys[p]]
                 for p in plan.owners]
        for (a, b), ta, tb in zip(self._key_pairs, *types):
            num = ("INT", "DECIMAL", "DOUBLE", "FLOAT", "REAL")
            same = ta == tb or (any(k in ta for k in num) and any(k in tb for k in num))
            if not same:
                raise ProtocolUsageError(f"join key type mismatch: {a.sql()} is {ta} but "
                                         f"{b.sql()} is {tb}; CAST one side")

    # -- aggregate queries -----------------------------------------------------------------
    def _aggregate(self) -> None:
        ast, plan = self.ast, self.plan
        group = ast.args["group"].expressions if ast.args.get("group") else []
        gowners = set()
        for g in group:
            o = owners_of(g, self.aliases)
            if len(o) != 1:
                raise UnsupportedSQL(f"GROUP BY {g.sql()}: group keys must be columns of one "
                                     f"party")
            gowners |= o
        if len(gowners) > 1:
            raise UnsupportedSQL("GROUP BY on columns of more than one party is not supported")
        plan.grouped = bool(group)
        if group and gowners == {self.nullable_owner}:
            raise UnsupportedSQL("GROUP BY a LEFT JOIN's right-side columns is not "
                                 "supported (unmatched rows would form a NULL group); "
                                 "group by the left table's columns")
        if group:
            (plan.group_owner,) = gowners
            plan.group_keys = [self._item(plan.group_owner, g, "__g") for g in group]
            mine = {plan.items[n].sql: i for i, n in
                    enumerate(plan.join_keys.get(plan.group_owner, []))}
            if len(plan.owners) == 2 and all(plan.items[g].sql in mine for g in plan.group_keys) \
                    and plan.join_mode == "psi" and plan.left_owner is None:
                peer = next(p for p in plan.owners if p != plan.group_owner)
                plan.group_peer_keys = [plan.join_keys[peer][mine[plan.items[g].sql]]
                                        for g in plan.group_keys]
            plan.threshold = max(i.policy.group_threshold for i in self.aliases.values())
        plan.aggs.append(Agg("count", None, "__n"))        # masked row count: NULLs, threshold

        def atom(agg_node: exp.Expression) -> exp.Expression:
            kind = AGGS[type(agg_node)]
            arg = agg_node.this if not isinstance(agg_node.this, exp.Star) else None
            if kind == "count":
                if arg is not None and len(owners_of(arg, self.aliases)) == 1:
                    arg = self.lower(exp.Not(this=exp.Is(this=arg.copy(), expression=exp.Null())))
                    return self._agg("sum", arg)
                if arg is not None and self._nullable(self.lower(arg.copy())):
                    return self._agg("sum", exp.column("__p"))    # LEFT JOIN: matched rows
                return exp.column("__n")                       # secret columns are not NULL
            larg = self.lower(arg.copy())
            if self._nullable(larg):
                # LEFT JOIN: NULL on unmatched rows, which SUM / AVG skip.
                if kind in ("min", "max"):
                    raise UnsupportedSQL(f"{kind.upper()} over a LEFT JOIN's right-side "
                                         f"columns is not supported; use COALESCE(col, "
                                         f"value) or an INNER JOIN")
                guarded = exp.Mul(this=exp.Paren(this=larg), expression=exp.column("__p"))
                s = self._agg("sum", guarded)
                if kind == "avg":
                    return exp.Div(this=exp.Cast(this=s, to=exp.DataType.build("DOUBLE")),
                                   expression=self._agg("sum", exp.column("__p")))
                return s
            if kind == "avg":
                s = self._agg("sum", larg)
                return exp.Div(this=exp.Cast(this=s, to=exp.DataType.build("DOUBLE")),
                               expression=exp.column("__n"))
            return self._agg(kind, larg)

        def rewrite(e: exp.Expression) -> exp.Expression:
            def fn(node):
                if type(node) in AGGS:
                    a = atom(node)
                    if a.name == "__n" or isinstance(a, exp.Column) and \
                            self._agg_kind(a.name) == "count":
                        return a
                    # SQL: SUM/AVG/MIN/MAX over no rows is NULL.
                    return exp.Case(ifs=[exp.If(this=exp.EQ(this=self._counter(node),
                                                            expression=exp.Literal.number(0)),
                                                true=exp.Null())], default=a)
                for i, g in enumerate(group):
                    if node == g:
                        return exp.Cast(this=exp.column(f"__key{i}"),
                                        to=exp.DataType.build(self._group_type(i)))
                if isinstance(node, exp.Column) and node.table in self.aliases:
                    raise ProtocolUsageError(f"column {node.sql()} must appear in GROUP BY or "
                                             f"inside an aggregate")
                return node
            return e.copy().transform(fn)

        selects = [rewrite(s) for s in ast.expressions]
        if ast.args.get("having"):
            plan.having = self._having(ast.args["having"].this, atom)
        if any(a.kind == "count" or a.name == "__n" for a in plan.aggs) and group:
            for i in self.aliases.values():
                if i.owner == plan.group_owner and not i.policy.reveal_group_count \
                        and any(s.find(exp.Count) for s in ast.expressions):
                    raise PolicyError(f"policy of {i.name} forbids revealing group counts "
                                      f"(reveal_group_count=False); remove COUNT from the "
                                      f"SELECT list")
        plan.final_sql = self._final(selects, rewrite)

    def _group_type(self, i: int) -> str:
        item = self.plan.items[self.plan.group_keys[i]]
        return self._owner_sql_type(item.owner, item.sql)

    def _agg(self, kind: str, arg: exp.Expression) -> exp.Expression:
        key = (kind, arg.sql())
        for a in self.plan.aggs:
            if a.arg is not None and (a.kind, a.arg.sql()) == key:
                return exp.column(a.name)
        name = f"__a{len(self.plan.aggs)}"
        self.plan.aggs.append(Agg(kind, arg, name))
        return exp.column(name)

    def _agg_kind(self, name: str) -> str:
        return next(a.kind for a in self.plan.aggs if a.name == name)

    def _having(self, h: exp.Expression, atom) -> exp.Expression:
        def fn(node):
            if type(node) in AGGS:
                if isinstance(node, exp.Avg):
                    raise UnsupportedSQL("AVG in HAVING is not supported; write "
                                         "SUM(x) > c * COUNT(*) instead")
                return atom(node)
            if isinstance(node, exp.Column) and node.table in self.aliases:
                raise UnsupportedSQL(f"HAVING on {node.sql()} outside an aggregate: move "
                                     f"conditions on group keys to WHERE")
            return node
        out = h.copy().transform(fn)
        for node in out.walk():
            if not isinstance(node, SECRET_NODES + (exp.Null, exp.Identifier)):
                raise UnsupportedSQL(f"{type(node).__name__.upper()} in HAVING is not "
                                     f"supported")
        return out

    # -- row-level queries ------------------------------------------------------------------
    def _rows(self) -> None:
        plan = self.plan
        selects = []
        for i, s in enumerate(self.ast.expressions):
            name = f"__v{i}"
            inner = s.this if isinstance(s, exp.Alias) else s
            plan.rows_out.append((name, self._row_value(inner)))
            selects.append(exp.alias_(exp.column(name), s.alias_or_name))

        def rewrite(e):
            for name, s in zip((n for n, _ in plan.rows_out), self.ast.expressions):
                inner = s.this if isinstance(s, exp.Alias) else s
                if e == inner:
                    return exp.column(name)
            name = f"__v{len(plan.rows_out)}"
            plan.rows_out.append((name, self._row_value(e)))
            return exp.column(name)
        plan.final_sql = self._final(selects, rewrite)

    def _row_value(self, e: exp.Expression) -> exp.Expression:
        """One output column of a row-level query.

        Without a secret filter every joined row is in the result, so a single party's
        value goes to the receiver as it is (``__r``: any type, strings included).
        With one, values pass through the secret part and rows failing the filter open
        as 0 — which strings cannot do.
        """
        owners = owners_of(e, self.aliases)
        if len(owners) == 1 and not e.find(exp.AggFunc):
            (owner,) = owners
            if self.plan.mask is None:
                return exp.column(self._item(owner, e, "__r"))
            if encoding_of(self._owner_sql_type(owner, e.sql("duckdb"))).kind == "text":
                raise UnsupportedSQL(
                    f"{e.sql()} is a string in a row-level result filtered by a cross-party "
                    f"condition; aggregate it (GROUP BY {e.sql()}) or filter on one party")
        return self.lower(e.copy())

    def _final(self, selects, rewrite) -> str:
        out = exp.select(*selects).from_("__result")
        aliases = {s.alias_or_name for s in selects}
        order = self.ast.args.get("order")
        if order:
            keys = []
            for o in order.expressions:
                e = o.this
                if isinstance(e, exp.Column) and not e.table and e.name in aliases:
                    keys.append(o.copy())
                else:
                    o2 = o.copy()
                    o2.set("this", rewrite(e))
                    keys.append(o2)
            out = out.order_by(*keys)
        if self.ast.args.get("limit"):
            out.set("limit", self.ast.args["limit"].copy())
        if self.ast.args.get("offset"):
            out.set("offset", self.ast.args["offset"].copy())
        return out.sql("duckdb")
