"""Column policies, SCQL-style: what may leave a table's owner, checked before data moves.

A column's *level* says how it may be used in a query whose result goes to a party:

===========  ==================================================================  ==========
level        allows                                                              SCQL CCL
===========  ==================================================================  ==========
plain        in results as it is (SELECT, GROUP BY key, ORDER BY), and below     PLAINTEXT
aggregate    only inside SUM / COUNT / AVG / MIN / MAX, and below                …AFTER_AGGREGATE
compare      only in conditions (WHERE, HAVING, CASE WHEN, JOIN ON)              …AFTER_COMPARE
join         only as a join key                                                  …AFTER_JOIN
none         not at all                                                          (no CCL)
===========  ==================================================================  ==========

A level may name the parties it applies to — ``("aggregate", [1])``: party 1 may get
aggregates of the column, every other receiver gets ``none``. Table-wide relaxations:
``reveal_key_after_join`` (a PSI join discloses intersection membership to both key
holders; ``False`` refuses PSI joins on this table), ``reveal_group_count`` (``False``
refuses COUNT in results grouped by this table's columns) and ``group_threshold``
(groups with fewer rows are dropped from results, secretly; default 4, as SCQL).

With no policy every column is ``plain`` for every party: anything may appear in results
revealed to the query's receiver — only the other parties' *inputs* stay hidden.

>>> from veil.sql import Policy
>>> Policy(columns={"revenue": "aggregate", "user_id": ("join", [0, 1])}).level("revenue", 1)
'aggregate'
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import ProtocolUsageError

LEVELS = ("none", "join", "compare", "aggregate", "plain")
_RANK = {name: i for i, name in enumerate(LEVELS)}


class PolicyError(ProtocolUsageError):
    """A query would break a column policy; raised before any data moves."""


def _check_level(level: str, where: str) -> str:
    if level not in _RANK:
        raise ProtocolUsageError(f"{where}: policy level must be one of {LEVELS}, got {level!r}")
    return level


@dataclass(frozen=True)
class Policy:
    columns: dict = field(default_factory=dict)
    default: str = "plain"
    reveal_key_after_join: bool = True
    reveal_group_count: bool = True
    group_threshold: int = 4

    def __post_init__(self) -> None:
        _check_level(self.default, "default")
        for col, rule in self.columns.items():
            level, parties = (rule, None) if isinstance(rule, str) else rule
            _check_level(level, f"column {col!r}")
            if parties is not None and not all(isinstance(p, int) for p in parties):
                raise ProtocolUsageError(f"column {col!r}: parties must be a list of ranks")
        if not isinstance(self.group_threshold, int) or self.group_threshold < 0:
            raise ProtocolUsageError("group_threshold must be a non-negative int")

    def level(self, column: str, receiver: int) -> str:
        rule = self.columns.get(column, self.default)
        level, parties = (rule, None) if isinstance(rule, str) else rule
        return level if parties is None or receiver in parties else "none"

    # -- public metadata: sent at registration so every party checks the same rules ----------
    def to_obj(self) -> dict:
        cols = {c: (r if isinstance(r, str) else [r[0], None if r[1] is None else list(r[1])])
                for c, r in self.columns.items()}
        return {"columns": cols, "default": self.default,
                "reveal_key_after_join": self.reveal_key_after_join,
                "reveal_group_count": self.reveal_group_count,
                "group_threshold": self.group_threshold}

    @staticmethod
    def from_obj(obj, sender: str) -> "Policy":
        try:
            cols = {str(c): (r if isinstance(r, str) else (str(r[0]), None if r[1] is None
                                                            else tuple(int(p) for p in r[1])))
                    for c, r in dict(obj["columns"]).items()}
            return Policy(cols, str(obj["default"]), bool(obj["reveal_key_after_join"]),
                          bool(obj["reveal_group_count"]), int(obj["group_threshold"]))
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise ProtocolUsageError(f"{sender} sent a malformed policy: {exc}") from None


def require(policy: Policy, table: str, column: str, use: str, receivers) -> None:
    """Refuse (naming column and rule) unless every receiver may see ``column`` at ``use``."""
    for r in receivers:
        level = policy.level(column, r)
        if _RANK[level] < _RANK[use]:
            raise PolicyError(
                f"policy of {table}.{column} allows {level!r} for party {r}, but the query "
                f"uses it as {use!r}; change the query or the owner's policy")
