"""veil.dp: accountant figures against the issue's reference numbers, noise calibration,
budget stopping, clipping and the distributed Gaussian noise."""

import math

import pytest
import torch

pytest.importorskip("dp_accounting")

from veil.dp import Accountant, calibrate_noise, clip_update, epsilon, gaussian, noise_share_std


def test_issue_reference_epsilon():
    # noise 1.0, 10 of 100 clients per round (Poisson q = 0.1), 100 rounds, δ = 1e-5:
    # RDP 7.90 in Opacus, dp-accounting and Flower alike; PLD/PRV 7.05 (issue 13).
    assert epsilon(1.0, 0.1, 100, 1e-5, "rdp") == pytest.approx(7.90, abs=0.02)
    assert epsilon(1.0, 0.1, 100, 1e-5, "pld") == pytest.approx(7.05, abs=0.1)
    # without sampling amplification (q = 1) the same run costs an order of magnitude more
    assert epsilon(1.0, 1.0, 100, 1e-5) > 60


def test_calibrate_noise_hits_the_target():
    for target in (1.0, 8.0):
        z = calibrate_noise(target, 0.1, 100, 1e-5, tol=5e-3)
        assert epsilon(z, 0.1, 100, 1e-5) <= target < epsilon(z * 0.99, 0.1, 100, 1e-5)


def test_accountant_stops_at_budget():
    acc = Accountant(noise_multiplier=1.0, sample_rate=0.1, delta=1e-5, budget=3.0)
    eps = []
    while acc.can_step():
        eps.append(acc.step())
    assert eps == sorted(eps) and eps[-1] <= 3.0
    assert acc.epsilon_after(acc.steps + 1) > 3.0
    with pytest.raises(ValueError, match="noise_multiplier"):
        Accountant(noise_multiplier=0.0, sample_rate=0.1, delta=1e-5)


def test_clip_update():
    v, norm = clip_update(torch.tensor([6.0, 8.0]), 5.0)
    assert norm == 10.0 and torch.allclose(v, torch.tensor([3.0, 4.0], dtype=torch.float64))
    v, _ = clip_update(torch.tensor([0.3, 0.4]), 5.0)
    assert torch.allclose(v, torch.tensor([0.3, 0.4], dtype=torch.float64))
    with pytest.raises(ValueError, match="NaN"):
        clip_update(torch.tensor([float("nan")]), 1.0)


def test_distributed_noise_sums_to_target_std():
    """m clients each add a share; the sum has std z*C (measured on 50k samples: the
    standard error of the std estimate is ~0.32 %, we allow 1.5 %)."""
    z, c, m = 1.3, 0.7, 10
    s = noise_share_std(z, c, m)
    total = sum(gaussian(50_000, s) for _ in range(m))
    assert float(total.std()) == pytest.approx(z * c, rel=0.015)
    assert abs(float(total.mean())) < 0.02      # standard error 0.004
    # 4th moment of a Gaussian: kurtosis 3 (Box-Muller output is Gaussian, not uniform)
    k = float(((total / total.std()) ** 4).mean())
    assert k == pytest.approx(3.0, abs=0.1)
    assert gaussian(5, 1.0, seed=b"k" * 16).tolist() == gaussian(5, 1.0, seed=b"k" * 16).tolist()
    assert math.isclose(noise_share_std(1.0, 1.0, 4), 0.5)


def test_opacus_dp_sgd_client_accounting_and_learning():
    pytest.importorskip("opacus")
    from veil.dp.dpsgd import train_dp_sgd
    from veil.fl import tasks
    parts, test = tasks.partition("breast_cancer", 2, alpha=0.5, seed=0)
    net = tasks.model(30, 2)
    r = train_dp_sgd(net, parts[0], epochs=3, lr=0.5, batch=32, noise_multiplier=1.0,
                     max_grad_norm=1.0, delta=1e-5, seed=0)
    n = len(parts[0][1])
    assert r.sample_rate == pytest.approx(32 / n) and r.steps == 3 * math.ceil(n / 32)
    assert r.epsilon == pytest.approx(epsilon(1.0, 32 / n, r.steps, 1e-5))
    # Opacus's own RDP accountant uses more orders (down to 1.1): within 5 % of ours.
    assert r.opacus_epsilon == pytest.approx(r.epsilon, rel=0.05)
    # Noisy, clipped SGD still learns this easy task (majority class is 63 %).
    assert tasks.accuracy(net, test) > 0.85
    # Steps accumulate across rounds: ε grows with prior steps.
    net2 = tasks.model(30, 2)               # Opacus hooks a module once: a fresh round's model
    net2.load_state_dict(net.state_dict())
    r2 = train_dp_sgd(net2, parts[0], epochs=1, lr=0.5, batch=32, noise_multiplier=1.0,
                      max_grad_norm=1.0, delta=1e-5, seed=1, prior_steps=r.steps)
    assert r2.epsilon > r.epsilon
