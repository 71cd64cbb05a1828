"""Aggregator-MPC mode on Flower: clients seal additive shares of their update to 2–5
aggregation servers; the Flower server only relays the sealed shares and receives the
noisy sum the aggregators reveal (:mod:`veil.fl.aggregator`).

``LocalAggregators(k)`` runs the k aggregators as veil parties in this process (threads)
— a simulation of the deployment, where each aggregator is its own host under
``veil run`` and the Flower server operator holds none of their keys. One round is a
single message exchange (no key agreement among clients, no dropout recovery needed: a
client that does not answer is simply not in the sum).
"""

from __future__ import annotations

import os

from ..aggregator import AggregatorKeys, aggregate


class LocalAggregators:
    """``k`` aggregation servers run in-process (simulation; see the module docstring)."""

    def __init__(self, k: int = 2):
        if not 2 <= k <= 5:
            raise ValueError("aggregator MPC needs 2 to 5 aggregation servers")
        self._servers = [AggregatorKeys() for _ in range(k)]

    def __repr__(self) -> str:
        return f"LocalAggregators(k={len(self._servers)})"

    @property
    def publics(self) -> list[bytes]:
        return [s.public for s in self._servers]

    def aggregate(self, sealed: list[dict], noise_std: float, round_id: bytes):
        """Open, sum, add noise (std ``noise_std`` from each aggregator) in MPC, reveal."""
        return aggregate(self._servers, sealed, noise_std=noise_std, round_id=round_id)


def new_round_id() -> bytes:
    return os.urandom(16)


def parse_sealed(rec, node: int, k: int, vector_len: int) -> dict:
    """A client's sealed shares from its reply, checked for types, count and length."""
    eph, shares = rec.get("ephemeral"), rec.get("shares")
    if not (isinstance(eph, bytes) and len(eph) == 32 and isinstance(shares, list)
            and len(shares) == k and all(isinstance(s, bytes) for s in shares)
            and all(len(s) == 12 + 8 * vector_len + 16 for s in shares)):
        raise ValueError(f"client {node} sent malformed sealed shares")
    # The client id comes from Flower's metadata, not from the client's claim: it is
    # bound into each share's associated data, so a mislabelled share fails to open.
    return {"client": int(node), "ephemeral": eph, "shares": shares}
