"""Parameters one secure-aggregation round shares between the server and its clients."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ...errors import VeilError
from .encoding import FixedPoint


class InsufficientClientsError(VeilError, RuntimeError):
    """Fewer clients than the Shamir threshold reached a stage: the round cannot finish.

    Nothing about any client's update is revealed when this is raised: the server holds
    at most masked vectors whose masks it cannot remove.
    """

    def __init__(self, stage: str, have: int, need: int):
        self.stage, self.have, self.need = stage, have, need
        super().__init__(f"secure aggregation stage '{stage}': {have} client(s) took part, "
                         f"the threshold needs {need}. The round is skipped; lower the "
                         "threshold, sample more clients or reduce dropouts.")


@dataclass(frozen=True)
class SecAggConfig:
    """``threshold``: Shamir threshold t, an int (clients) or a fraction of the clients
    that advertised keys (rounded up). Any t surviving clients can recover a dropped
    client's masks; fewer than t learn nothing, and the round is skipped if fewer than t
    clients reach any stage. ``vector_len``: length of every client's flat update.

    ``neighbours``: SecAgg+ (Bell et al. 2020) — each client masks with and shares to
    only ``k`` neighbours of a pseudorandom Harary graph (:mod:`.graph`), and the
    threshold is counted in its neighbourhood of ``k + 1`` (itself included); ``None``
    (default) is the complete graph of SecAgg. :func:`.graph.choose_parameters` picks k
    and t for a dropout rate and a fraction of colluding clients.
    """

    vector_len: int
    threshold: int | float = 2 / 3
    fixed_point: FixedPoint = field(default_factory=FixedPoint)
    min_survivors: int = 0        # also refuse to unmask a sum of fewer inputs (DP noise)
    neighbours: int | None = None

    def __post_init__(self):
        if not (isinstance(self.vector_len, int) and self.vector_len > 0):
            raise ValueError("vector_len must be a positive int")
        t = self.threshold
        if isinstance(t, bool) or not isinstance(t, (int, float)):
            raise ValueError("threshold must be an int >= 2 or a fraction in (0, 1]")
        if isinstance(t, int) and t < 2:
            raise ValueError("threshold must be >= 2 (a threshold of 1 lets any single "
                             "client's share unmask a peer)")
        if isinstance(t, float) and not 0 < t <= 1:
            raise ValueError("a fractional threshold must be in (0, 1]")
        k = self.neighbours
        if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 2 or k % 2):
            raise ValueError(f"neighbours={k!r}: the SecAgg+ degree must be an even int >= 2, "
                             "or None for the complete graph")
        if k is not None and isinstance(t, int) and t > k + 1:
            raise ValueError(f"threshold {t} exceeds a neighbourhood of k + 1 = {k + 1} "
                             "clients: no round could finish. Lower it or raise neighbours.")

    def t_for(self, n_clients: int) -> int:
        """The Shamir threshold for a neighbourhood of ``n_clients`` (the whole roster in
        the complete graph, ``k + 1`` under SecAgg+)."""
        if isinstance(self.threshold, int):
            return self.threshold
        return max(2, math.ceil(self.threshold * n_clients))

    def need_inputs(self, t: int) -> int:
        """How many masked inputs the sum must contain before anyone unmasks it."""
        return max(t, self.min_survivors)
