"""Run a plan: share each chunk, evaluate the secret part, aggregate, reveal, finish.

What is revealed, and to whom, is decided here and nowhere else:

* aggregate queries: per group, a keep bit (row count ≥ the group threshold, and
  HAVING) and the aggregate values of kept groups (dropped groups open as 0), to the
  receiver(s); group labels reach the receiver encrypted (`labels`), and only kept
  groups' keys are opened;
* row-level queries: the secret filter mask and the masked values (rows that fail the
  filter open as 0), to the receiver(s).

Nothing is revealed before every chunk has been processed and checked, so a failure
leaves no partial result anywhere.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from sqlglot import exp

from ..context import current
from ..errors import ProtocolUsageError
from .evaluate import Evaluator, extreme, masked, onehot_public, onehot_share
from .exact import SBool, SInt, check_bound
from .join import join_env
from .labels import group_codes, group_labels, public_groups, send_labels
from .plan import Plan
from .source import Rows, check_nulls, column
from .types import literal_encoding


def _share_chunk(plan: Plan, m: int, batch, rank: int) -> dict:
    env = {}
    for item in plan.items.values():
        if not item.name.startswith("__c"):
            continue
        vals = torch.from_numpy(column(batch, item.name)) if rank == item.owner else None
        v = SInt.share(vals, item.owner, (m,), item.enc.bound, item.enc.scale)
        env[item.name] = SBool(arith=v) if item.enc.kind == "bool" else v
    return env


class Executor:
    def __init__(self, plan: Plan, engine, to: int | None, chunk: int, progress: bool,
                 before_release=None) -> None:
        """``before_release(acc, n_rows)``, if given, may change the secret aggregates
        (e.g. add DP noise, `veil.dp.sql`) after the last chunk, before anything opens."""
        self.plan, self.engine, self.to = plan, engine, to
        self.before_release = before_release
        ctx = current()
        self.rank, self.comm, self.n_parties = ctx.rank, ctx.comm, ctx.world_size
        self.rows = Rows(plan, engine, chunk)
        self.progress = progress

    def receives(self) -> bool:
        return self.to is None or self.rank == self.to

    def run(self):
        plan = self.plan
        labels, groups = None, 1
        if plan.grouped:
            labels, groups = group_labels(plan, self.engine, self.rows)
            if groups == 0:
                # No group at all (public: G = 0): nothing to compute. Also keeps empty
                # tensors away from the transport, which cannot send them.
                self.rows.check_alignment()
                return _final(plan, _empty_frame(plan)) if self.receives() else None
        acc: dict[str, SInt] = {}
        rows_out: dict[str, list] = {name: [] for name, _ in plan.rows_out}
        mask_parts, raw_parts = [], {}
        bar = _bar(self.rows.n) if self.progress and self.rank == 0 else None
        self._chunks(labels, groups, acc, rows_out, mask_parts, raw_parts, bar)
        if bar is not None:
            bar.close()
        self.rows.check_alignment()
        if plan.aggregate:
            return self._finish_aggregate(acc, groups, labels)
        return self._finish_rows(rows_out, mask_parts, raw_parts)

    def _chunks(self, labels, groups, acc, rows_out, mask_parts, raw_parts, bar):
        plan = self.plan
        for m, batch in self.rows.chunks():
            if batch is not None:
                check_nulls(batch, plan)
            env = _share_chunk(plan, m, batch, self.rank)
            env.update(join_env(self.rows, m))        # join flags __p / __w (join.py)
            ev = Evaluator(env, plan.constants, m)
            mask = ev.as_bool(ev.value(plan.mask), plan.mask) if plan.mask is not None else None
            if plan.aggregate:
                codes = group_codes(plan, batch, labels) if plan.grouped and labels is not None \
                    and batch is not None else None
                self._aggregate_chunk(ev, mask, m, groups, codes, acc)
            else:
                for name, tree in plan.rows_out:
                    if _is_raw(tree):
                        if batch is not None and self.rank == plan.items[tree.name].owner:
                            raw_parts.setdefault(name, []).append(batch.column(tree.name))
                        continue
                    v = ev.as_int(ev.value(tree))
                    rows_out[name].append((mask.apply(v) if mask is not None else v))
                if mask is not None:
                    mask_parts.append(mask)
            if bar is not None:
                bar.update(m)

    # -- aggregates ----------------------------------------------------------------------
    def _aggregate_chunk(self, ev, mask, m, groups, codes, acc) -> None:
        plan, n_total = self.plan, max(1, self.rows.n)
        sums, sum_names, extremes, pending = [], [], [], []
        for agg in plan.aggs:
            if agg.arg is None:
                v = mask.to_int() if mask is not None else SInt.public(1, (m,))
                v = SInt(v.sh, 2)
            else:
                # An ungrouped SUM of a product stays a dot product (exact.Product).
                v = ev.summand(agg.arg, dot=agg.kind == "sum" and not plan.grouped)
            if agg.kind in ("sum", "count"):
                if mask is not None and agg.arg is not None and isinstance(v, SInt):
                    pending.append((len(sums), v))             # masked below, together
                elif agg.arg is not None:
                    v = masked(v, mask, "sum")
                sums.append(v)                                 # COUNT(*) is the mask itself
                sum_names.append(agg.name)
                check_bound(v.bound * n_total, f"SUM over {n_total} rows")
            else:
                extremes.append((agg, v))
        if pending:
            for (i, _), out in zip(pending, _mask_all(mask, [v for _, v in pending])):
                sums[i] = out
        if plan.grouped:
            public = public_groups(plan)
            oh = onehot_public(codes, groups, m) if public else \
                onehot_share(codes, groups, plan.group_owner, m)
            if sums:
                stacked = SInt(torch.stack([s.sh for s in sums], 1),
                               max(s.bound for s in sums))
                if public:
                    # Both parties know each row's group: per-group sums are local adds.
                    out = SInt(torch.zeros((groups, len(sums)), dtype=torch.int64)
                               .index_add_(0, torch.as_tensor(codes), stacked.sh), 0)
                else:
                    out = stacked.matmul_onehot(oh)                   # (G, K), one round
                for k, (name, s) in enumerate(zip(sum_names, sums)):
                    self._add(acc, name, SInt(out.sh[:, k], s.bound * n_total, s.scale))
            for agg, v in extremes:
                best = []
                for g in range(groups):
                    member = SBool(arith=SInt(oh.sh[g], 2))
                    sel = member if mask is None else member.and_(mask)
                    best.append(extreme(masked(v, sel, agg.kind), agg.kind))
                self._extreme(acc, agg, SInt(torch.cat([b.sh for b in best]), v.bound, v.scale))
        else:
            for name, s in zip(sum_names, sums):
                t = s.sum()
                self._add(acc, name, SInt(t.sh.reshape(1), s.bound * n_total, s.scale))
            for agg, v in extremes:
                self._extreme(acc, agg, extreme(masked(v, mask, agg.kind), agg.kind))

    @staticmethod
    def _add(acc, name, v: SInt) -> None:
        acc[name] = v if name not in acc else SInt(acc[name].sh + v.sh, v.bound, v.scale)

    @staticmethod
    def _extreme(acc, agg, v: SInt) -> None:
        if v.sh.numel() == 0:
            return
        if agg.name in acc:
            a = acc[agg.name]
            pick = (v < a) if agg.kind == "min" else (v > a)
            v = pick.where(v, a)
        acc[agg.name] = v

    def _finish_aggregate(self, acc, groups, labels):
        plan = self.plan
        for agg in plan.aggs:                       # an empty input: sums are 0, MIN/MAX NULL
            if agg.name not in acc:
                acc[agg.name] = SInt.public(0, (groups,))
        if self.before_release is not None:
            self.before_release(acc, max(1, self.rows.n))
        count = acc["__n"]
        ev = Evaluator(acc, plan.constants, groups)
        keep = None
        if plan.grouped:
            keep = count >= SInt.public(max(1, plan.threshold), (groups,))
        if plan.having is not None:
            h = ev.as_bool(ev.value(plan.having), plan.having)
            keep = h if keep is None else keep.and_(h)
        to = self.to
        vals = [acc[agg.name] for agg in plan.aggs]
        if keep is not None:
            vals = _mask_all(keep, vals)                  # one select round for all
        # Discloses each kept group's aggregates to the receiver(s); dropped groups open 0.
        # One opening for all aggregates.
        both = SInt(torch.stack([v.sh for v in vals]), max(v.bound for v in vals)).reveal(to)
        opened = {agg.name: None if both is None else both[k]
                  for k, agg in enumerate(plan.aggs)}
        # Discloses which groups are kept (threshold, HAVING) to the receiver(s).
        kept = keep.reveal(to) if keep is not None else None
        keys = send_labels(plan, labels, keep, groups, to) if plan.grouped else None
        if not self.receives():
            return None
        frame = {}
        sel = np.ones(groups, dtype=bool) if kept is None else kept.numpy().astype(bool)
        for agg in plan.aggs:
            frame[agg.name] = _decode(opened[agg.name].numpy()[sel], agg, plan)
        if keys is not None:
            for i, col in enumerate(zip(*[k for k, s in zip(keys, sel) if s]) if sel.any()
                                    else [[] for _ in plan.group_keys]):
                frame[f"__key{i}"] = list(col)
        return _final(plan, frame)

    # -- row-level ---------------------------------------------------------------------------
    def _finish_rows(self, rows_out, mask_parts, raw_parts):
        plan, to = self.plan, self.to
        opened = {}
        for name, parts in rows_out.items():
            if parts:
                sh = torch.cat([p.sh for p in parts])
                # Discloses the filtered rows' values to the receiver(s); others open 0.
                opened[name] = SInt(sh, parts[0].bound, parts[0].scale).reveal(to)
                opened[name + "/scale"] = parts[0].scale
        keep = None
        if mask_parts:
            bits = torch.cat([p.to_int().sh for p in mask_parts])
            # Discloses which joined rows pass the cross-party filter to the receiver(s).
            keep = SInt(bits, 2).reveal(to)
        raw = _send_raw(plan, raw_parts, self.rows.n, to)
        if not self.receives():
            return None
        sel = np.ones(self.rows.n, dtype=bool) if keep is None else keep.numpy().astype(bool)
        frame = {}
        for name, tree in plan.rows_out:
            if name in raw:
                frame[name] = [v for v, s in zip(raw[name], sel) if s]
            elif name in opened:
                frame[name] = _decode_values(opened[name].numpy()[sel], opened[name + "/scale"],
                                             _tree_kind(tree, plan))
            else:
                frame[name] = []
        return _final(plan, frame)


def _mask_all(mask: SBool, vals: list) -> list:
    """Each value masked (0 where the mask is 0), all in one select round."""
    if len(vals) == 1:
        return [mask.apply(vals[0])]
    out = mask.apply(SInt(torch.stack([v.sh for v in vals]), max(v.bound for v in vals)))
    return [SInt(out.sh[k], v.bound, v.scale) for k, v in enumerate(vals)]


def _is_raw(tree) -> bool:
    """An owner's plaintext result column (row-level, no secret filter)."""
    return isinstance(tree, exp.Column) and tree.name.startswith("__r")


def _tree_kind(tree, plan) -> str:
    name = getattr(tree, "name", "")
    item = plan.items.get(name)
    return item.enc.kind if item is not None and item.enc is not None else "int"


def _decode(v: np.ndarray, agg, plan):
    kind = _tree_kind(agg.arg, plan) if agg.kind in ("min", "max") else "int"
    return _decode_values(v, _agg_scale(agg, plan), kind)


def _agg_scale(agg, plan) -> int:
    if agg.arg is None:
        return 0
    return _scale_of(agg.arg, plan)


def _scale_of(tree, plan) -> int:
    """Decimal scale of a lowered tree (same rules as SInt: + aligns, * adds)."""
    if isinstance(tree, exp.Paren):
        return _scale_of(tree.this, plan)
    if isinstance(tree, exp.Column):
        if tree.name in plan.constants:
            return plan.constants[tree.name][1].scale
        return plan.items[tree.name].enc.scale
    if isinstance(tree, exp.Literal):
        return literal_encoding(tree.this)[1].scale
    if isinstance(tree, exp.Mul):
        return _scale_of(tree.this, plan) + _scale_of(tree.expression, plan)
    if isinstance(tree, (exp.Add, exp.Sub)):
        return max(_scale_of(tree.this, plan), _scale_of(tree.expression, plan))
    if isinstance(tree, exp.Neg):
        return _scale_of(tree.this, plan)
    if isinstance(tree, exp.Case):
        parts = [tree.args["default"]] + [i.args["true"] for i in tree.args["ifs"]]
        return max(_scale_of(p, plan) for p in parts)
    return 0                                         # booleans and comparisons


def _decode_values(v: np.ndarray, scale: int, kind: str):
    if kind == "date":
        return pd.to_datetime(v, unit="D").date if len(v) else []
    if kind == "timestamp":
        return pd.to_datetime(v, unit="us") if len(v) else []
    if kind == "bool":
        return v.astype(bool)
    if scale:
        return v.astype(np.float64) / 10 ** scale
    return v.astype(np.int64)


def _send_raw(plan, raw_parts, n, to) -> dict:
    """Row-level values an owner holds in plaintext (no secret filter): straight to receivers."""
    from .labels import send_json
    out = {}
    for name, tree in plan.rows_out:
        if not _is_raw(tree):
            continue
        tname = tree.name
        owner = plan.items[tname].owner
        vals = None
        if owner == current().rank:
            vals = [v for part in raw_parts.get(name, []) for v in part.to_pylist()]
        got = send_json(vals, owner, to, n)
        if got is not None:
            out[name] = got
    return out


def _empty_frame(plan: Plan) -> dict:
    frame = {agg.name: [] for agg in plan.aggs}
    frame.update({f"__key{i}": [] for i in range(len(plan.group_keys))})
    return frame


def _final(plan: Plan, frame: dict):
    import duckdb
    # An empty result still needs typed columns: labels and raw values as objects (cast
    # below), revealed integers as int64.
    df = pd.DataFrame({k: pd.Series(list(v), dtype=None if len(v) else
                                    "object" if k.startswith(("__key", "__v")) else "int64")
                       for k, v in frame.items()})
    con = duckdb.connect()
    con.register("__frame", df)
    casts = []
    for name in df.columns:
        t = _column_type(plan, name)
        casts.append(f"CAST({name} AS {t}) AS {name}" if t else name)
    con.execute(f"CREATE VIEW __result AS SELECT {', '.join(casts)} FROM __frame")
    try:
        return con.execute(plan.final_sql).df()
    except duckdb.Error as exc:
        raise ProtocolUsageError(f"could not finish the result: {str(exc).splitlines()[0]}") \
            from None


def _column_type(plan: Plan, name: str) -> str | None:
    if name.startswith("__key"):
        item = plan.items[plan.group_keys[int(name[5:])]]
        return item.enc.sql_type
    if name.startswith("__v"):
        tree = dict(plan.rows_out)[name]
        item = plan.items.get(getattr(tree, "name", ""))
        if item is not None and item.name.startswith("__r"):
            return item.enc.sql_type
    return None


def _bar(total: int):
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, unit="row", unit_scale=True, desc="veil.sql")
