"""The server side of one secure-aggregation round (see :mod:`.client` for the stages).

The server routes keys and encrypted shares, collects masked vectors ``y_u`` and, from
at least t surviving clients' shares, removes the masks from ``sum y_u``. What it learns:
the sum of the surviving clients' encoded updates and who survived each stage — not any
single update (each ``y_u`` is uniform in Z_2^64 given the server's view).

>>> import torch
>>> from veil.fl.secagg import SecAggConfig, simulate_round
>>> cfg = SecAggConfig(vector_len=3, threshold=2)
>>> xs = {1: torch.tensor([1., 2., 3.]), 2: torch.tensor([.5, .5, .5]), 3: torch.zeros(3)}
>>> simulate_round(cfg, xs).sum.tolist()
[1.5, 2.5, 3.5]
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch

from . import graph, keys, shamir
from .client import MASK_KEY
from .config import InsufficientClientsError, SecAggConfig


@dataclass
class AggregateResult:
    sum: torch.Tensor                 # float64 sum of the surviving clients' updates
    survivors: list[int]              # whose updates are in the sum
    dropped_before_input: list[int]   # shared keys, never sent y: masks cancelled via s shares
    dropped_after_input: list[int]    # sent y, did not answer unmask: still in the sum
    bytes_up: dict[int, int] = field(default_factory=dict)    # per client, to the server
    bytes_down: dict[int, int] = field(default_factory=dict)  # per client, from the server


class SecAggServer:
    """One round's server state; call the stages in order with what the clients sent."""

    def __init__(self, config: SecAggConfig, round_id: bytes | None = None):
        self.config = config
        self.round_id = round_id if round_id is not None else os.urandom(16)
        self.bytes_up: dict[int, int] = {}
        self.bytes_down: dict[int, int] = {}

    def _count(self, book: dict, node: int, n: int) -> None:
        book[node] = book.get(node, 0) + n

    # stage 1 -> 2: each client gets its neighbours' public keys
    def collect_keys(self, adverts: dict[int, dict]) -> dict[int, tuple[bytes, bytes]]:
        """The roster of well-formed adverts; each client's part is :meth:`roster_for`."""
        roster = {}
        for u, a in adverts.items():
            c_pk, s_pk = a.get("c_pk"), a.get("s_pk")
            if not all(isinstance(k, bytes) and len(k) == keys.PUBLIC_KEY_BYTES
                       for k in (c_pk, s_pk)):
                raise ValueError(f"client {u} advertised malformed public keys")
            roster[int(u)] = (c_pk, s_pk)
            self._count(self.bytes_up, int(u), 64)
        self.roster = roster
        self.ids = sorted(roster)
        # The graph is public: it follows from the roster and the round id.
        self.graph = graph.harary(self.ids, self.config.neighbours, self.round_id)
        self.closed = {u: sorted(self.graph[u] | {u}) for u in self.ids}
        self.t = self.config.t_for(min((len(c) for c in self.closed.values()), default=0))
        if len(roster) < self.t or len(roster) < 2:
            raise InsufficientClientsError("collect_keys", len(roster), max(2, self.t))
        for u in roster:
            self._count(self.bytes_down, u, 64 * len(self.closed[u]))
        return roster

    def roster_for(self, u: int) -> dict[int, tuple[bytes, bytes]]:
        """What client ``u`` receives: the public keys of itself and its neighbours."""
        return {v: self.roster[v] for v in self.closed[u]}

    # stage 2 -> 3: encrypted shares, routed to their addressees
    def route_shares(self, outboxes: dict[int, dict[int, bytes]]) -> dict[int, dict[int, bytes]]:
        """A client whose outbox is malformed is left out of the round (in ``rejected``)."""
        self.rejected: dict[int, str] = {}
        u2 = set()
        for u in {int(u) for u in outboxes} & set(self.roster):
            box = outboxes[u]
            if not (isinstance(box, dict) and set(box) == self.graph[u]
                    and all(isinstance(b, bytes) for b in box.values())):
                self.rejected[u] = "did not send one share to each of its neighbours"
                continue
            u2.add(u)
        if len(u2) < self.t:
            raise InsufficientClientsError("share_keys", len(u2), self.t)
        inboxes: dict[int, dict[int, bytes]] = {v: {} for v in u2}
        for u in u2:
            for v, blob in outboxes[u].items():
                self._count(self.bytes_up, u, len(blob))
                if v in u2:
                    inboxes[v][u] = blob
                    self._count(self.bytes_down, v, len(blob))
        self.u2 = u2
        return inboxes

    # stage 3 -> 4: masked vectors; each client gets the survivors among its neighbours
    def collect_masked(self, ys: dict[int, torch.Tensor]) -> list[int]:
        n = self.config.vector_len
        u3 = {int(u) for u in ys} & self.u2
        for u in u3:
            y = ys[u]
            if not (isinstance(y, torch.Tensor) and y.dtype == torch.int64
                    and y.dim() == 1 and y.numel() == n):
                raise ValueError(f"client {u} sent a masked vector that is not {n} int64 "
                                 "ring elements: the round cannot include it")
            self._count(self.bytes_up, u, 8 * n)
        need = self.config.need_inputs(self.t)
        if len(u3) < need:
            raise InsufficientClientsError("masked_input", len(u3), need)
        self.u3 = sorted(u3)
        self._ysum = torch.zeros(n, dtype=torch.int64)
        for u in self.u3:
            self._ysum += ys[u]                         # wraps mod 2^64, as intended
        for u in self.u3:
            self._count(self.bytes_down, u, 8 * len(self.survivors_for(u)) + 8)
        return self.u3

    def survivors_for(self, v: int) -> list[int]:
        """The unmask request to ``v``: the survivors in its closed neighbourhood (it also
        gets the total count, to refuse a sum of too few inputs)."""
        s = set(self.u3)
        return [u for u in self.closed[v] if u in s]

    def _dropped_for(self, v: int) -> set[int]:
        # Neighbours of v that sent v a share but no masked input: v reveals their key share.
        return (self.graph[v] & self.u2) - set(self.u3)

    # stage 4: shares -> the unmasked sum
    def unmask(self, responses: dict[int, dict[str, dict[int, bytes]]]) -> AggregateResult:
        dropped = sorted(self.u2 - set(self.u3))
        # A response with the wrong set of shares counts as that client dropping out.
        u5 = sorted(v for v in {int(v) for v in responses} & set(self.u3)
                    if _shape_ok(responses[v], self.survivors_for(v), self._dropped_for(v)))
        if len(u5) < self.t:
            raise InsufficientClientsError("unmask", len(u5), self.t)
        n = self.config.vector_len
        b_sh = {u: [] for u in self.u3}
        s_sh = {u: [] for u in dropped}
        for v in u5:
            r = responses[v]
            # A share's x is v's position in the owner's closed neighbourhood (1-based).
            for u, y in r["b"].items():
                b_sh[u].append((self.closed[u].index(v) + 1, y))
            for u, y in r["s"].items():
                s_sh[u].append((self.closed[u].index(v) + 1, y))
            self._count(self.bytes_up, v, shamir.SHARE_BYTES * (len(r["b"]) + len(r["s"])))
        for u, sh in [*b_sh.items(), *s_sh.items()]:
            if len(sh) < self.t:
                # Too few of u's neighbours answered: its mask cannot be removed.
                raise InsufficientClientsError(f"unmask (neighbours of client {u})",
                                               len(sh), self.t)
        total = self._ysum.clone()
        for u in self.u3:
            # Reveals b_u, which only removes u's self-mask from a y_u that is in the sum.
            total -= keys.mask(shamir.combine(b_sh[u], self.t), n)
        for u in dropped:
            # Reveals u's mask key: u sent no y, so its pairwise masks in others' y cancel.
            sk = keys.KeyPair(shamir.combine(s_sh[u], self.t))
            if sk.public != self.roster[u][1]:
                raise ValueError(f"recovered mask key of client {u} does not match its "
                                 "public key (a client sent a wrong share)")
            for v in self.graph[u] & set(self.u3):
                seed = sk.agree(self.roster[v][1],
                                keys.pair_label(MASK_KEY, self.round_id, u, v), 16)
                m = keys.mask(seed, n)
                total = total + m if u < v else total - m   # undo v's -/+ mask with u
        return AggregateResult(
            sum=self.config.fixed_point.decode(total), survivors=list(self.u3),
            dropped_before_input=dropped,
            dropped_after_input=sorted(set(self.u3) - set(u5)),
            bytes_up=dict(self.bytes_up), bytes_down=dict(self.bytes_down))


def _shape_ok(r, u3, dropped) -> bool:
    try:
        return (set(r["b"]) == set(u3) and set(r["s"]) == set(dropped)
                and all(isinstance(y, bytes) and len(y) == shamir.SHARE_BYTES
                        for part in (r["b"], r["s"]) for y in part.values()))
    except (KeyError, TypeError):
        return False
