"""Distributed discrete Gaussian (veil.dp.discrete) and its use in SecureFedAvg."""

import math

import pytest
import torch

from veil.dp import discrete


@pytest.mark.parametrize("sigma", [0.6, 2.5])
def test_discrete_gaussian_matches_its_pmf(sigma):
    n = 100_000
    x = discrete.discrete_gaussian(n, sigma, seed=bytes(16))
    assert bool((x == x.round()).all())
    ks = range(-int(4 * sigma) - 1, int(4 * sigma) + 2)
    w = {k: math.exp(-k * k / (2 * sigma ** 2)) for k in range(-60, 61)}
    z = sum(w.values())
    chi2 = 0.0
    for k in ks:
        e = n * w[k] / z
        if e >= 20:
            chi2 += (float((x == k).sum()) - e) ** 2 / e
    # < 30 bins: chi-square mean ~ bins, sd ~ sqrt(2 bins); 80 is > 8 sd out.
    assert chi2 < 80, chi2
    assert abs(float(x.mean())) < 5 * sigma / math.sqrt(n)


def test_conditional_rounding_is_unbiased_and_bounded():
    g = torch.Generator().manual_seed(0)
    v = torch.randn(650, generator=g, dtype=torch.float64)
    v = v / v.norm()                                   # clipped to C = 1
    gamma = 2.0 ** -6
    bound = discrete.l2_bound(1.0, gamma, 650)
    rs = torch.stack([discrete.conditional_round(v, gamma, bound) for _ in range(400)])
    assert bool((rs.norm(dim=1) <= bound).all()) and bool((rs == rs.round()).all())
    assert float((rs.mean(0) * gamma - v).abs().max()) < 5 * gamma / (2 * math.sqrt(400))
    with pytest.raises(ValueError, match="clipped to the stated norm"):
        discrete.conditional_round(v * 2, gamma, bound, max_tries=5)


def test_noise_multiplier_and_sigma_guard():
    bound = discrete.l2_bound(1.0, 2.0 ** -12, 650)
    assert 1 < bound / 4096 < 1.0002                   # the rounding slack, measured
    s = discrete.client_sigma(1.5, 10, bound)
    assert discrete.ddg_noise_multiplier(s, 10, bound, 650) == pytest.approx(1.5, rel=1e-12)
    with pytest.raises(ValueError, match="refine the grid"):
        discrete.client_sigma(1e-4, 10, discrete.l2_bound(1.0, 2.0 ** -4, 650))


def test_secure_fedavg_with_ddg_equals_unweighted_mean_within_noise():
    pytest.importorskip("flwr")
    from flwr.app import ArrayRecord

    from veil.fl import tasks
    from veil.fl.flower import DPConfig, LocalGrid, SecureFedAvg, secagg_mod
    n = 6
    parts, _ = tasks.partition("digits", n, alpha=0.5, seed=0)
    init = ArrayRecord(tasks.model(64, 10).state_dict())
    dp = DPConfig(clip_norm=1e3, sample_rate=1.0, min_clients=3, noise_multiplier=1e-6,
                  mechanism="ddg", granularity_bits=20)
    s = SecureFedAvg(threshold=3, dp=dp)
    r = s.start(grid=LocalGrid(tasks.client_app(parts, 64, 10, mods=[secagg_mod]), n),
                initial_arrays=init, num_rounds=1)
    sd0 = init.to_torch_state_dict()
    w0 = torch.cat([sd0["weight"].flatten(), sd0["bias"]]).double()
    deltas = []
    for k in range(n):
        net = tasks.model(64, 10)
        tasks.local_train(net, parts[k], 1, 0.1, 16, seed=1000 + k)
        deltas.append(torch.cat([net.weight.detach().flatten(), net.bias.detach()]).double() - w0)
    sd = r.arrays.to_torch_state_dict()
    got = torch.cat([sd["weight"].flatten(), sd["bias"]]).double()
    # noise: z Δ₂ γ sqrt(n/m) / n ~ 1e-6 * 1e3 * 1.4 / 6 = 2.4e-4 sd; rounding γ = 1e-6.
    err = float((got - (w0 + sum(deltas) / n)).abs().max())
    assert err < 2e-3
    assert s.history[0]["ddg_z"] == pytest.approx(1e-6, rel=1e-9)
    with pytest.raises(ValueError, match="pairwise masking"):
        from veil.fl.flower import LocalAggregators
        SecureFedAvg(dp=dp, aggregators=LocalAggregators(2))
