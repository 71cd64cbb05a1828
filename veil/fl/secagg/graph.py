"""SecAgg+ communication graphs (Bell et al., CCS 2020): who masks with and shares to whom.

In the full graph every client agrees a pairwise mask with, and sends Shamir shares to,
every other client: O(n) keys, shares and work per client, O(n^2) in all. SecAgg+ keeps
the protocol and replaces the complete graph by a sparse one of degree ``k = O(log n)``:
masks only between neighbours, shares only to neighbours, threshold ``t`` counted in
each client's neighbourhood. Per-client cost becomes O(k) (plus the model vector).

The graph here is the one Bell et al. propose for the semi-honest setting: a Harary graph
``H(k, n)`` — clients on a ring, each linked to the ``k/2`` nearest on either side — over a
pseudorandom ordering of the clients derived from the round id (public randomness, so
the server cannot place chosen clients next to a victim after seeing the keys; a
malicious server that picks the round id *after* seeing the roster could, which is why
this is a semi-honest construction).

>>> g = harary([3, 7, 11, 20, 42], k=2, seed=b"\\0" * 16)
>>> sorted(len(v) for v in g.values())
[2, 2, 2, 2, 2]
>>> all(u in g[v] for u in g for v in g[u])       # symmetric
True
"""

from __future__ import annotations

import hashlib
import hmac
import math

# What the security parameters below are computed against: a failure probability of at
# most 2^-SIGMA for each of the three failure events.
SIGMA = 20


def harary(ids, k: int | None, seed: bytes) -> dict[int, frozenset[int]]:
    """Node id -> its neighbours (not itself). ``k=None`` or ``k >= n-1``: complete graph.

    ``k`` must be even (k/2 neighbours each side of the ring); an odd k is refused rather
    than silently changed.
    """
    ids = sorted(int(v) for v in ids)
    n = len(ids)
    if k is None or k >= n - 1:
        return {v: frozenset(ids) - {v} for v in ids}
    if not isinstance(k, int) or k < 2 or k % 2:
        raise ValueError(f"SecAgg+ degree k={k!r} must be an even int >= 2 (k/2 neighbours "
                         "on each side of the ring)")
    # Pseudorandom ring order: sort by HMAC(seed, id). Both the server and (if it wants
    # to check) a client compute the same order from public values.
    ring = sorted(ids, key=lambda v: hmac.new(seed, str(v).encode(), hashlib.sha256).digest())
    pos = {v: i for i, v in enumerate(ring)}
    half = k // 2
    return {v: frozenset(ring[(pos[v] + d) % n] for d in range(-half, half + 1) if d)
            for v in ids}


def _binom_tail_ge(k: int, p: float, t: int) -> float:
    """P[Binomial(k, p) >= t]."""
    return sum(math.comb(k, i) * p ** i * (1 - p) ** (k - i) for i in range(max(t, 0), k + 1))


def failure_bounds(n: int, k: int, t: int, dropout: float, corrupt: float) -> dict:
    """Union bounds on the three ways a SecAgg+ round over a random Harary graph fails.

    ``dropout``: fraction of clients that drop during a round (each independently);
    ``corrupt``: fraction of clients colluding with the server (semi-honest).

    * ``correctness``: some client's ``k`` neighbours leave fewer than ``t`` answering
      the unmask request, so its mask cannot be removed and the round is lost:
      ``n * P[Bin(k, 1 - dropout) < t]``.
    * ``privacy_shares``: some honest client has ``>= t`` corrupt neighbours, who with the
      server can rebuild both its self-mask and its mask key: ``n * P[Bin(k, corrupt) >= t]``.
    * ``privacy_split``: the graph of honest survivors falls apart, so the server learns
      the partial sums of its components (each still a sum over several clients unless a
      component is a single node). On a ring lattice a cut needs two runs of ``k/2``
      removed (dropped or corrupt) clients: ``<= C(n, 2) * r^k`` with
      ``r = dropout + corrupt``.

    The complete graph (``k = n - 1``) is bounded the same way.
    """
    k = min(k, n - 1)
    r = min(1.0, dropout + corrupt)
    return {"correctness": min(1.0, n * (1 - _binom_tail_ge(k, 1 - dropout, t))),
            "privacy_shares": min(1.0, n * _binom_tail_ge(k, corrupt, t)),
            "privacy_split": 0.0 if k >= n - 1 else min(1.0, math.comb(n, 2) * r ** k)}


def choose_parameters(n: int, dropout: float = 0.3, corrupt: float = 0.1,
                      sigma: int = SIGMA) -> tuple[int, int]:
    """The smallest even degree ``k`` and a threshold ``t`` for which every bound of
    :func:`failure_bounds` is at most ``2^-sigma``; ``(n - 1, t)`` if none below n - 1.

    >>> choose_parameters(100), choose_parameters(10_000)      # 30 % dropout, 10 % corrupt
    ((66, 24), (84, 31))
    """
    target = 2.0 ** -sigma
    for k in range(2, n - 1, 2):
        for t in range(2, k + 1):
            b = failure_bounds(n, k, t, dropout, corrupt)
            if b["privacy_shares"] <= target:       # smallest private t for this k
                if b["correctness"] <= target and b["privacy_split"] <= target:
                    return k, t
                break
    k = n - 1
    for t in range(2, k + 1):
        if failure_bounds(n, k, t, dropout, corrupt)["privacy_shares"] <= target:
            return k, t
    return k, k
