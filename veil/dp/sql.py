"""DP release of veil.sql aggregates: ``Session.query(sql, dp=SQLPrivacy(...))``.

Every aggregate the query reveals (each SUM, and the row count behind COUNT and AVG) gets
noise generated jointly inside MPC (`veil.dp.noise`) *before* it is opened; AVG = noisy
SUM / noisy COUNT is post-processing. The aggregates are released together as one
mechanism: aggregate j has sensitivity Δ_j (one joined row moves it by at most Δ_j) and
gets Gaussian noise of std ``Δ_j * σ`` with σ the analytic-Gaussian calibration of
(ε, δ) at L2 sensitivity √k for k aggregates (exact for the joint release), or Laplace
of scale ``Δ_j * k / ε``.

Δ_j is the per-row bound veil.sql itself enforces (the owners check every value against
the column bounds; products multiply them): 1 for COUNT; for SUM the expression's bound.
Declare the bounds at registration (``register(..., bounds={"amount": 10_000})``): the
default "measured" bounds come from the data, so a sensitivity derived from them is not
data-independent (the query is refused unless ``sensitivity`` states each SUM's bound,
which must then be at least the enforced one).

Scope: ungrouped aggregates (the set of groups a GROUP BY reveals is not noised); MIN and
MAX are refused (no useful sensitivity). Neighbouring = one *joined* row: with unique
join keys (one row per person and table), one person.

>>> import pandas as pd, veil
>>> def job():
...     db = veil.sql.Session()
...     pay = pd.DataFrame({"id": range(50), "amount": [i % 10 for i in range(50)]})
...     db.register("pay", pay if veil.rank() == 0 else None, owner=0, bounds={"amount": 9})
...     return db.query("SELECT SUM(amount) AS total, COUNT(*) AS n FROM pay", reveal_to=0,
...                     dp=SQLPrivacy(epsilon=1.0, delta=1e-5, sensitivity={"total": 9}))
>>> out = veil.run(job, parties=2)[0]            # exact: total 225, n 50
>>> bool(abs(out["n"][0] - 50) < 60 and abs(out["total"][0] - 225) < 600)
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..errors import ProtocolUsageError
from .noise import gaussian_sigma, joint_gaussian, joint_laplace, laplace_scale

GAUSS_TAIL = 40     # noise bound for the overflow checks: P(|N(0, 1)| > 40) < 1e-300


def _output_names(plan) -> dict:
    """{aggregate's internal name: the output column that shows it} from the final SQL."""
    import sqlglot
    from sqlglot import exp
    internal = {a.name for a in plan.aggs}
    names: dict = {}
    for e in sqlglot.parse_one(plan.final_sql).expressions:
        for col in e.find_all(exp.Column):
            if col.name in internal:
                names.setdefault(col.name, e.alias_or_name)
    return names


@dataclass
class SQLPrivacy:
    """(ε, δ) for one query's release; ``sensitivity``: {output column: Δ} for SUMs."""
    epsilon: float
    delta: float | None = None
    mechanism: str = "gaussian"
    sensitivity: dict = field(default_factory=dict)
    colluders: int | None = None

    def __post_init__(self):
        if self.mechanism not in ("gaussian", "laplace"):
            raise ProtocolUsageError(f"mechanism must be 'gaussian' or 'laplace', got "
                                     f"{self.mechanism!r}")
        if not self.epsilon > 0:
            raise ProtocolUsageError("epsilon must be > 0")
        if self.mechanism == "gaussian" and not (self.delta and 0 < self.delta < 1):
            raise ProtocolUsageError("the Gaussian mechanism needs 0 < delta < 1 (e.g. 1e-5)")

    def hook(self, plan):
        """The ``before_release`` hook of the query's executor: adds the noise to every
        aggregate before it is revealed. Refuses queries it cannot make DP."""
        if not plan.aggregate:
            raise ProtocolUsageError("dp= applies to aggregate queries (SUM, COUNT, AVG); "
                                     "a row-level result cannot be made DP by noise")
        if plan.grouped:
            raise ProtocolUsageError("dp= supports ungrouped aggregates only: the groups a "
                                     "GROUP BY reveals are not noised")
        bad = [a for a in plan.aggs if a.kind not in ("sum", "count")]
        if bad:
            raise ProtocolUsageError("dp= supports SUM, COUNT and AVG; MIN/MAX have no "
                                     "useful sensitivity")
        names = _output_names(plan)
        return lambda acc, n_rows: self._add_noise(acc, plan, n_rows, names)

    def _add_noise(self, acc, plan, n_rows: int, names: dict) -> None:
        from ..sql.exact import SInt
        k = len(plan.aggs)
        unit = gaussian_sigma(self.epsilon, self.delta, math.sqrt(k)) \
            if self.mechanism == "gaussian" else laplace_scale(self.epsilon, k)
        for agg in plan.aggs:
            v = acc.get(agg.name)
            if v is None:
                v = acc[agg.name] = SInt.public(0, (1,))
            row_bound = max(1, v.bound // n_rows - 1) / 10 ** v.scale   # per-row |value|
            delta_j = row_bound
            if agg.kind == "sum" and agg.arg is not None:
                out = names.get(agg.name, agg.name)
                if out not in self.sensitivity:
                    raise ProtocolUsageError(
                        f"dp=: state the sensitivity of {out!r} (its largest |value| per "
                        f"row), e.g. SQLPrivacy(..., sensitivity={{{out!r}: 100}}); the "
                        f"enforced per-row bound is {row_bound:g}")
                delta_j = float(self.sensitivity[out])
                if delta_j < row_bound:
                    raise ProtocolUsageError(
                        f"dp=: sensitivity {delta_j:g} of {out!r} is below the per-row bound "
                        f"veil.sql enforces ({row_bound:g}); declare smaller column bounds "
                        f"at registration or state {row_bound:g}")
            scale = unit * delta_j * 10 ** v.scale              # in the aggregate's units
            noise = joint_gaussian(tuple(v.sh.shape), scale, colluders=self.colluders,
                                   integer=True) if self.mechanism == "gaussian" else \
                joint_laplace(tuple(v.sh.shape), scale, integer=True)
            bound = v.bound + math.ceil(GAUSS_TAIL * scale * (1 + (self.mechanism != "gaussian")
                                                               * 20)) + 1
            # The noisy aggregate replaces the exact one: only it is ever opened.
            acc[agg.name] = SInt(v.sh + noise.share, bound, v.scale)
