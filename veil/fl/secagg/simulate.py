"""Run one secure-aggregation round in-process, with optional dropouts at each stage.

The executable spec of the protocol, used by tests and by the benchmark; the Flower
integration (:mod:`veil.fl.flower`) calls the same client and server objects over
Flower messages.
"""

from __future__ import annotations

import os

import torch

from .client import SecAggClient
from .config import SecAggConfig
from .server import AggregateResult, SecAggServer


def simulate_round(config: SecAggConfig, updates: dict[int, torch.Tensor], *,
                   drop_after_keys=(), drop_after_shares=(), drop_after_input=(),
                   round_id: bytes | None = None, observe=None) -> AggregateResult:
    """Sum ``updates`` (node id -> flat float tensor) under secure aggregation.

    ``drop_after_keys``: clients that advertise keys, then vanish; ``drop_after_shares``:
    vanish after sending shares, before their masked input; ``drop_after_input``: send
    their masked input, then never answer the unmask request. ``observe(name, value)``
    sees every message the server receives (tests use it to inspect the server's view).
    """
    rid = round_id if round_id is not None else os.urandom(16)
    server = SecAggServer(config, rid)
    clients = {u: SecAggClient(u, config, rid) for u in updates}
    obs = observe or (lambda name, value: None)
    adverts = {u: c.advertise() for u, c in clients.items()}
    obs("adverts", adverts)
    server.collect_keys(adverts)
    alive = set(clients) - set(drop_after_keys)
    outboxes = {u: clients[u].share_keys(server.roster_for(u)) for u in alive}
    obs("outboxes", outboxes)
    inboxes = server.route_shares(outboxes)
    alive -= set(drop_after_shares)
    ys = {u: clients[u].masked_input(updates[u], inboxes[u]) for u in alive & set(inboxes)}
    obs("masked", ys)
    survivors = server.collect_masked(ys)
    alive -= set(drop_after_input)
    responses = {u: clients[u].unmask(server.survivors_for(u), len(survivors))
                 for u in alive}
    obs("unmask", responses)
    return server.unmask(responses)
