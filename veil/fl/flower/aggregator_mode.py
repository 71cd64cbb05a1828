"""Aggregator-MPC mode on Flower: clients seal additive shares of their update to 2–5
aggregation servers; the Flower server only relays the sealed shares and receives the
noisy sum the aggregators reveal (:mod:`veil.fl.aggregator`).

``LocalAggregators(k)`` runs the k aggregators as veil parties in this process (threads)
— a simulation of the deployment. ``SpoolAggregators(folder, k)`` is the deployment:
each aggregator is its own OS process (own host) under ``veil run`` running
:mod:`veil.fl.aggregator.serve`, the aggregators talk over veil's TLS, and the Flower
server, which holds none of their keys, hands them sealed shares through a spool folder
(:mod:`veil.fl.aggregator.spool`) and reads back the noisy sum. One round is a
single message exchange (no key agreement among clients, no dropout recovery needed: a
client that does not answer is simply not in the sum).
"""

from __future__ import annotations

import os
import pathlib
import time

import torch

from ...errors import VeilError
from ..aggregator import AggregatorKeys, aggregate, spool


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


class AggregatorUnavailableError(VeilError, RuntimeError):
    """The aggregator processes did not answer a round (down, or refused the request);
    the strategy skips the round with this message."""


class SpoolAggregators:
    """``k`` aggregators running as separate ``veil run`` processes that serve ``folder``.

    >>> SpoolAggregators("/nonexistent", 2)
    Traceback (most recent call last):
    ...
    ValueError: spool folder /nonexistent does not exist (start the aggregators first: veil run -n 2 -m veil.fl.aggregator.serve --spool /nonexistent)
    """

    def __init__(self, folder, k: int = 2, *, timeout: float = 300.0, poll: float = 0.05):
        if not 2 <= k <= 5:
            raise ValueError("aggregator MPC needs 2 to 5 aggregation servers")
        self.folder, self.k, self.timeout, self.poll = pathlib.Path(folder), k, timeout, poll
        if not self.folder.is_dir():
            raise ValueError(f"spool folder {self.folder} does not exist (start the "
                             f"aggregators first: veil run -n {k} -m veil.fl.aggregator."
                             f"serve --spool {self.folder})")
        self._seq = 0
        self._publics: list[bytes] | None = None

    def __repr__(self) -> str:
        return f"SpoolAggregators({str(self.folder)!r}, k={self.k})"

    def _wait(self, paths, what: str) -> None:
        deadline = time.monotonic() + self.timeout
        while not all(p.exists() for p in paths):
            for j in range(self.k):
                err = spool.error_path(self.folder, self._seq, j)
                if self._seq and err.exists():
                    raise AggregatorUnavailableError(
                        f"aggregator {j} refused round {self._seq}: {err.read_text()[:200]}")
            if time.monotonic() > deadline:
                missing = [p.name for p in paths if not p.exists()]
                raise AggregatorUnavailableError(
                    f"no {what} from the aggregators within {self.timeout:g} s (missing "
                    f"{', '.join(missing)} in {self.folder}): are all {self.k} `veil run` "
                    "aggregator processes up?")
            time.sleep(self.poll)

    @property
    def publics(self) -> list[bytes]:
        if self._publics is None:
            paths = [spool.public_path(self.folder, j) for j in range(self.k)]
            self._wait(paths, "public keys")
            pubs = [p.read_bytes() for p in paths]
            if not all(len(p) == 32 for p in pubs) or len(set(pubs)) != self.k:
                raise ValueError("aggregator public keys in the spool are malformed")
            self._publics = pubs
        return self._publics

    def aggregate(self, sealed: list[dict], noise_std: float, round_id: bytes):
        """Hand each aggregator its shares; wait for the noisy sum (float64)."""
        self._seq += 1
        n = (len(sealed[0]["shares"][0]) - 12 - 16) // 8
        for j in range(self.k):
            spool.write_atomic(spool.request_path(self.folder, self._seq, j),
                               spool.encode_request(round_id, n, noise_std, sealed, j))
        out = spool.result_path(self.folder, self._seq)
        self._wait([out], f"result for round {self._seq}")
        raw = out.read_bytes()
        if len(raw) != 8 * n:
            raise AggregatorUnavailableError(f"aggregators returned {len(raw)} bytes for a "
                                             f"{n}-value sum")
        out.unlink()
        return torch.frombuffer(bytearray(raw), dtype=torch.float64).clone()

    def stop(self) -> None:
        """Tell the aggregator processes to exit after the rounds they have."""
        spool.write_atomic(self.folder / "stop", b"")


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
