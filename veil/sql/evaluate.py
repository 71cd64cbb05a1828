"""The secret part of a plan, one chunk of rows at a time, on exact ring integers.

``Evaluator.value(tree)`` turns a lowered sqlglot tree (item references, constants,
operators) into `SInt` / `SBool` shares; aggregates reduce them. Nothing is revealed here.
"""

from __future__ import annotations

import torch
from sqlglot import exp

from ..context import current
from .exact import Product, SBool, SInt
from .plan import UnsupportedSQL
from .types import Encoding, literal_encoding


class Const:
    """A public value (from a literal or folded constant) and its encoding."""

    def __init__(self, v: int, enc: Encoding) -> None:
        self.v, self.enc = v, enc

    def sint(self, n: int) -> SInt:
        return SInt.public(self.v, (n,), self.enc.scale)


class Evaluator:
    def __init__(self, env: dict, constants: dict, n: int) -> None:
        self.env, self.constants, self.n = env, constants, n

    def as_int(self, v) -> SInt:
        if isinstance(v, Const):
            return v.sint(self.n)
        if isinstance(v, Product):
            return v.value()
        if isinstance(v, SBool):
            return v.to_int()
        return v

    def summand(self, e: exp.Expression, dot: bool):
        """An aggregate's argument as an `SInt`; with ``dot`` (an ungrouped SUM) a product
        stays a deferred `Product`, which the SUM takes as one dot product."""
        v = self.value(e)
        return v if dot and isinstance(v, Product) else self.as_int(v)

    def as_bool(self, v, e) -> SBool:
        if isinstance(v, SBool):
            return v
        if isinstance(v, Const) and v.enc.kind == "bool":
            return SBool.public(bool(v.v), (self.n,))
        raise UnsupportedSQL(f"{e.sql()} is used as a condition but is not boolean")

    def value(self, e: exp.Expression):
        if isinstance(e, exp.Paren):
            return self.value(e.this)
        if isinstance(e, exp.Column):
            name = e.name
            if name in self.constants:
                return Const(*self.constants[name])
            return self.env[name]
        if isinstance(e, exp.Boolean):
            return Const(int(e.this), Encoding("bool", 2))
        if isinstance(e, exp.Literal):
            return Const(*literal_encoding(e.this))
        if isinstance(e, exp.Null):
            raise UnsupportedSQL("NULL in a cross-party expression is not supported "
                                 "(CASE WHEN needs an ELSE)")
        if isinstance(e, exp.Neg):
            v = self.value(e.this)
            return Const(-v.v, v.enc) if isinstance(v, Const) else -self.as_int(v)
        if isinstance(e, (exp.Add, exp.Sub)):
            a, b = self.as_int(self.value(e.this)), self.as_int(self.value(e.expression))
            return a + b if isinstance(e, exp.Add) else a - b
        if isinstance(e, exp.Mul):
            a, b = self.value(e.this), self.value(e.expression)
            if isinstance(b, Const) and not isinstance(a, Const):
                a, b = b, a
            if isinstance(a, Const):
                out = self.as_int(b).mul_public(a.v)
                return SInt(out.sh, out.bound, out.scale + a.enc.scale)
            # Deferred: a SUM of it is one dot product (`Product`); other uses multiply.
            return Product(self.as_int(a), self.as_int(b))
        if isinstance(e, (exp.GT, exp.GTE, exp.LT, exp.LTE)):
            a, b = self.as_int(self.value(e.this)), self.as_int(self.value(e.expression))
            return {exp.GT: a.__gt__, exp.GTE: a.__ge__, exp.LT: a.__lt__,
                    exp.LTE: a.__le__}[type(e)](b)
        if isinstance(e, (exp.EQ, exp.NEQ)):
            a, b = self.as_int(self.value(e.this)), self.as_int(self.value(e.expression))
            r = a.eq(b)
            return r if isinstance(e, exp.EQ) else r.not_()
        if isinstance(e, (exp.And, exp.Or)):
            a = self.as_bool(self.value(e.this), e.this)
            b = self.as_bool(self.value(e.expression), e.expression)
            return a.and_(b) if isinstance(e, exp.And) else a.or_(b)
        if isinstance(e, exp.Not):
            return self.as_bool(self.value(e.this), e.this).not_()
        if isinstance(e, exp.Between):
            x = self.as_int(self.value(e.this))
            return (x >= self.as_int(self.value(e.args["low"]))).and_(
                x <= self.as_int(self.value(e.args["high"])))
        if isinstance(e, exp.In):
            if e.args.get("query") or not e.expressions:
                raise UnsupportedSQL("IN needs a list of values (no subqueries)")
            x = self.as_int(self.value(e.this))
            out = None
            for opt in e.expressions:
                hit = x.eq(self.as_int(self.value(opt)))
                out = hit if out is None else out.or_(hit)
            return out
        if isinstance(e, exp.Case):
            if e.this is not None:
                raise UnsupportedSQL("CASE x WHEN … is not supported; write CASE WHEN x = …")
            if e.args.get("default") is None:
                raise UnsupportedSQL("CASE WHEN without ELSE gives NULL, which secret "
                                     "values cannot hold; add an ELSE")
            default = self.value(e.args["default"])
            # ELSE 0 (the usual masked-sum idiom): the last branch is one select, with no
            # public zero vector to subtract and add back.
            out = None if isinstance(default, Const) and default.v == 0 \
                else self.as_int(default)
            for branch in reversed(e.args["ifs"]):
                cond = self.as_bool(self.value(branch.this), branch.this)
                val = self.value(branch.args["true"])
                if out is None:
                    val = self.as_int(val) if not isinstance(val, Product) else val
                    val = val.rescale(max(val.scale, default.enc.scale))
                    out = val.masked(cond) if isinstance(val, Product) else cond.apply(val)
                else:
                    out = cond.where(self.as_int(val), self.as_int(out))
            return out
        raise UnsupportedSQL(f"{type(e).__name__.upper()} is not supported in the secret part")


def extreme(v: SInt, kind: str) -> SInt:
    """MIN or MAX of a 1-D secret vector: a tournament of ceil(log2 n) comparison rounds."""
    sh = v.sh
    while sh.shape[0] > 1:
        half = sh.shape[0] // 2
        a, b = SInt(sh[:half], v.bound, v.scale), SInt(sh[half:2 * half], v.bound, v.scale)
        pick_b = (b < a) if kind == "min" else (b > a)
        best = pick_b.where(b, a)
        sh = torch.cat([best.sh, sh[2 * half:]]) if sh.shape[0] % 2 else best.sh
    return SInt(sh, v.bound, v.scale)


def masked(v: SInt, mask: SBool | None, kind: str) -> SInt:
    """Rows outside the mask: 0 for sums; the far end of the range for MIN / MAX."""
    if mask is None:
        return v
    if kind in ("sum", "count"):
        return v.masked(mask) if isinstance(v, Product) else mask.apply(v)
    far = (v.bound - 1) if kind == "min" else -(v.bound - 1)
    return mask.where(v, SInt.public(far, tuple(v.sh.shape), v.scale))


def onehot_share(codes, groups: int, owner: int, n: int) -> SInt:
    """The group owner's (G, n) 0/1 membership matrix as shares (no traffic)."""
    p = current().protocol
    m = None
    if p.rank == owner:
        m = torch.zeros((groups, n), dtype=torch.int64)
        if n:
            m[torch.as_tensor(codes, dtype=torch.int64), torch.arange(n)] = 1
    return SInt(p.share(m, owner, (groups, n)), 2)


def onehot_public(codes, groups: int, n: int) -> SInt:
    """A (G, n) 0/1 membership matrix every party knows, as (trivial) shares."""
    p = current().protocol
    m = torch.zeros((groups, n), dtype=torch.int64)
    if n:
        m[torch.as_tensor(codes, dtype=torch.int64), torch.arange(n)] = 1
    return SInt(p.add_public(p.zeros((groups, n)), m), 2)
