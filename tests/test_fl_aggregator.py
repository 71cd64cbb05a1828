"""Aggregator-MPC mode: clients' additive shares sealed to 2–3 veil servers; the servers
sum and add noise inside MPC (semi2k) and reveal only the noisy sum."""

import pytest
import torch

from veil.fl.aggregator import AggregatorKeys, ClientSharer, aggregate

N = 2000


def _setup(k, clients=5, seed=0):
    servers = [AggregatorKeys() for _ in range(k)]
    g = torch.Generator().manual_seed(seed)
    xs = [torch.randn(N, generator=g, dtype=torch.float64) for _ in range(clients)]
    sharer = ClientSharer([s.public for s in servers])
    return servers, xs, [sharer.seal(x, client_id=c) for c, x in enumerate(xs)]


@pytest.mark.parametrize("k", [2, 3])
def test_sum_without_noise_matches_plain(k):
    servers, xs, sealed = _setup(k)
    out = aggregate(servers, sealed, noise_std=0.0, seed=0)
    # 5 clients x 2^-17 fixed-point rounding, then float32 reveal (|sum| < ~10: 1e-6)
    assert float((out - sum(xs)).abs().max()) < 5 * 2 ** -17 + 2e-6


def test_noise_added_inside_mpc_has_the_stated_std():
    servers, xs, sealed = _setup(3)
    out = aggregate(servers, sealed, noise_std=0.5, seed=0)
    err = out - sum(xs)
    # each of 3 aggregators adds std 0.5: total sqrt(3)*0.5; 2000 samples: se ~1.6 %
    assert float(err.std()) == pytest.approx(3 ** 0.5 * 0.5, rel=0.08)


def test_each_aggregator_sees_a_uniform_share_and_only_its_own():
    servers, xs, sealed = _setup(2, clients=1)
    s0 = servers[0].open(sealed[0], 0, b"\0" * 16, N)
    assert abs(float((s0 < 0).double().mean()) - 0.5) < 0.05        # sd 0.011
    with pytest.raises(ValueError, match="failed authentication"):
        servers[1].open(sealed[0], 0, b"\0" * 16, N)                 # not its share


def test_bad_update_refused():
    sharer = ClientSharer([AggregatorKeys().public, AggregatorKeys().public])
    with pytest.raises(ValueError, match="NaN"):
        sharer.seal(torch.tensor([float("nan")]), 0)
    with pytest.raises(ValueError, match="clip it first"):
        sharer.seal(torch.tensor([1e9]), 0)
    with pytest.raises(ValueError, match="2 to 5"):
        ClientSharer([AggregatorKeys().public])
