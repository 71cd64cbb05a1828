"""SecAgg+ (sparse Harary graph, veil.fl.secagg.graph): the sum equals the plain sum with
dropouts, each client talks to its k neighbours only, per-client bytes stay flat as n
grows, and the security parameters are what failure_bounds says."""

import pytest
import torch

from veil.fl.secagg import (
    InsufficientClientsError,
    SecAggConfig,
    SecAggServer,
    graph,
    simulate_round,
)

N = 33


def _updates(ids, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {u: 3 * torch.randn(N, generator=g, dtype=torch.float64) for u in ids}


def test_harary_graph_is_regular_symmetric_and_seeded():
    ids = list(range(100, 130))
    g = graph.harary(ids, 6, b"a" * 16)
    assert all(len(g[v]) == 6 and v not in g[v] for v in ids)
    assert all(u in g[v] for v in ids for u in g[v])
    assert g == graph.harary(reversed(ids), 6, b"a" * 16)       # order-independent
    assert g != graph.harary(ids, 6, b"b" * 16)                 # the round id reshuffles
    assert graph.harary(ids, None, b"") == graph.harary(ids, 40, b"")   # complete
    with pytest.raises(ValueError, match="even int"):
        graph.harary(ids, 5, b"")
    with pytest.raises(ValueError, match="even int"):
        SecAggConfig(vector_len=1, neighbours=3)


@pytest.mark.parametrize("n, k, t", [(12, 4, 3), (15, 6, 4)])
def test_sparse_sum_matches_plain_with_dropouts(n, k, t):
    ids = list(range(1, n + 1))
    xs = _updates(ids, seed=n)
    cfg = SecAggConfig(vector_len=N, threshold=t, neighbours=k)
    seen = {}
    r = simulate_round(cfg, xs, drop_after_shares=[3], drop_after_input=[7],
                       observe=lambda name, v: seen.setdefault(name, v))
    assert r.dropped_before_input == [3] and r.dropped_after_input == [7]
    plain = sum(xs[u] for u in r.survivors)
    assert 3 not in r.survivors and 7 in r.survivors
    assert float((r.sum - plain).abs().max()) <= cfg.fixed_point.precision(len(r.survivors))
    # Every client sent shares to exactly its k neighbours, and revealed shares only for
    # members of its neighbourhood.
    assert all(len(box) == k for box in seen["outboxes"].values())
    for resp in seen["unmask"].values():
        assert len(resp["b"]) + len(resp["s"]) <= k + 1


def test_per_client_bytes_grow_with_k_not_n():
    def per_client(n, k):
        ids = list(range(1, n + 1))
        cfg = SecAggConfig(vector_len=8, threshold=3, neighbours=k)
        r = simulate_round(cfg, {u: torch.zeros(8) for u in ids})
        return max(r.bytes_up[u] + r.bytes_down[u] for u in ids)
    # With k fixed, doubling n leaves a client's traffic unchanged (same k neighbours).
    assert per_client(16, 4) == per_client(32, 4)
    assert per_client(32, None) > 3 * per_client(32, 4)


def test_isolated_neighbourhood_fails_loudly():
    # Both neighbours of one client (k=2) vanish after sending shares: its neighbourhood
    # cannot reach t=2, so it cannot mask and the round is refused — never a wrong sum.
    ids = list(range(1, 11))
    rid = b"r" * 16
    g = graph.harary(ids, 2, rid)
    victim = 5
    with pytest.raises(InsufficientClientsError, match="threshold needs 2"):
        simulate_round(SecAggConfig(vector_len=N, threshold=2, neighbours=2), _updates(ids),
                       drop_after_input=sorted(g[victim]), round_id=rid)


def test_server_drops_a_client_with_a_malformed_outbox():
    cfg = SecAggConfig(vector_len=4, threshold=2, neighbours=2)
    from veil.fl.secagg import SecAggClient
    s = SecAggServer(cfg, b"q" * 16)
    cs = {u: SecAggClient(u, cfg, s.round_id) for u in range(1, 7)}
    s.collect_keys({u: c.advertise() for u, c in cs.items()})
    out = {u: c.share_keys(s.roster_for(u)) for u, c in cs.items()}
    out[4] = dict(list(out[4].items())[:1])          # shares to one neighbour of two
    inbox = s.route_shares(out)
    assert 4 not in inbox and "neighbours" in s.rejected[4]


def test_failure_bounds_and_chosen_parameters():
    b = graph.failure_bounds(1000, 76, 28, dropout=0.3, corrupt=0.1)
    assert max(b.values()) <= 2.0 ** -20
    k, t = graph.choose_parameters(1000)
    assert (k, t) == (76, 28) and k < 1000 // 10
    # Fewer neighbours than that break one of the bounds.
    assert max(graph.failure_bounds(1000, k - 2, t, 0.3, 0.1).values()) > 2.0 ** -20 or \
        max(graph.failure_bounds(1000, k - 2, t - 1, 0.3, 0.1).values()) > 2.0 ** -20
