"""DP on shares: per-example clipping (bound under adversarial inputs, against torch),
jointly generated noise (measured std), hidden Poisson masks, DP-SGD steps (σ = 0 equals
non-private secure training; nothing revealed during a step), DP releases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import veil
from veil.dp.clipping import bounds, clip_error, clipped_vectors
from veil.dp.noise import gaussian_sigma, joint_gaussian, joint_laplace
from veil.dp.private import make_private
from veil.dp.release import release
from veil.dp.sampling import poisson_masks, sampling_rate
from helpers import share_from

pytest.importorskip("dp_accounting")


def _adversarial(n_in: int, n_out: int, rows: int = 48, seed: int = 0):
    """Inputs and signals from tiny to huge (within the fixed-point range), zeros too."""
    g = torch.Generator().manual_seed(seed)
    scale = torch.logspace(-5, 4.3, rows).reshape(-1, 1)                    # up to 2e4
    a = torch.randn(rows, n_in, generator=g) * scale
    s = torch.randn(rows, n_out, generator=g) * scale[torch.randperm(rows, generator=g)]
    a[0], s[1] = 0.0, 0.0
    a[2], s[2] = 30000.0, -30000.0                     # both near the 32768 range limit
    return a.clamp(-32000, 32000), s.clamp(-32000, 32000)


@pytest.mark.parametrize("parties, bias", [(2, True), (2, False), (3, True)])
def test_clip_bound_holds_for_adversarially_large_gradients(parties, bias):
    n_in, n_out, clip = 7, 3, 0.75
    a, s = _adversarial(n_in, n_out)

    def job():
        layer = veil.nn.Linear(n_in, n_out, bias=bias)
        ah, sh = clipped_vectors(share_from(a, 0), share_from(s, 1), layer, clip)
        return ah.reveal(), sh.reveal()

    ah, sh = veil.run(job, parties=parties, seed=1)[0]
    norms = clip * sh.double().norm(dim=1) * ah.double().norm(dim=1)
    bound = clip * (1 + clip_error(n_in, n_out, 16, clip))
    assert float(norms.max()) <= bound, f"clip bound broken: {float(norms.max())} > {bound}"
    # Examples far above the bound are clipped to (almost exactly) the bound; "above" is
    # measured after the documented clamp of coordinates beyond ±A (inputs), ±D C (signals).
    A, D = bounds(n_in, n_out, bias)
    a_c, s_c = a.clamp(-A, A), s.clamp(-D * clip, D * clip)
    a_aug = torch.cat([a_c, torch.ones(len(a), 1)], 1) if bias else a_c
    true = s_c.double().norm(dim=1) * a_aug.double().norm(dim=1)
    big = true > 2 * clip
    # (the norm margins that make the bound safe over-clip tiny signals a little: <= 2 %)
    rel = norms[big] / clip - 1
    assert big.sum() > 10 and float(rel.min()) > -0.02 and float(rel.abs().median()) < 1e-3
    # ... and small ones are untouched (up to fixed-point rounding of the inputs).
    small = true < 0.5 * clip
    assert small.sum() > 5
    assert torch.allclose(sh[small].double(), s_c[small].double() / clip, atol=1e-4)


def _torch_private_step(layers, x, y, mask, clip, lr, expected_batch):
    """Plaintext reference: per-example gradients, per-layer clipping to clip/sqrt(L)."""
    model = torch.nn.Sequential(*layers)
    params = [list(m.parameters()) for m in layers if isinstance(m, torch.nn.Linear)]
    c_l = clip / math.sqrt(len(params))
    total = [torch.zeros_like(p) for ps in params for p in ps]
    for i in range(len(x)):
        if not mask[i]:
            continue
        model.zero_grad()
        torch.nn.functional.binary_cross_entropy_with_logits(
            model(x[i:i + 1]), y[i:i + 1], reduction="sum").backward()
        k = 0
        for ps in params:
            norm = torch.sqrt(sum((p.grad ** 2).sum() for p in ps))
            f = min(1.0, c_l / float(norm))
            for p in ps:
                total[k] += f * p.grad
                k += 1
    with torch.no_grad():
        for p, g in zip([p for ps in params for p in ps], total):
            p -= lr * g / expected_batch
    return [p.detach().clone() for ps in params for p in ps]


def _mlp(seed):
    torch.manual_seed(seed)
    return [torch.nn.Linear(5, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1)]


def _veil_model(layers):
    out = []
    for m in layers:
        if isinstance(m, torch.nn.Linear):
            out.append(veil.nn.Linear(m.in_features, m.out_features,
                                      init_from=m if veil.rank() == 0 else None))
        else:
            out.append(veil.nn.ReLU())
    return veil.nn.Sequential(*out)


@pytest.mark.parametrize("parties, hidden", [(2, False), (3, True)])
def test_private_step_at_zero_noise_matches_torch_per_example_clipping(parties, hidden):
    g = torch.Generator().manual_seed(3)
    n = 32
    x = torch.randn(n, 5, generator=g) * 2
    y = (torch.rand(n, 1, generator=g) < 0.5).float()
    mask = (torch.rand(n, generator=g) < 0.4).long()
    torch.manual_seed(0)
    layers = _mlp(0) if hidden else [torch.nn.Linear(5, 1)]
    clip, lr, batch = 0.5, 0.5, 8

    def job():
        model = _veil_model(layers)
        opt = veil.optim.SGD(model.parameters(), lr=lr)
        private = make_private(model, opt, veil.nn.BCEWithLogitsLoss(),
                               (share_from(x, 0), share_from(y, 1)), batch_size=batch,
                               noise_multiplier=0.0, max_grad_norm=clip)
        private.step(mask=share_from(mask, 0))          # the test fixes the batch
        return [p.reveal() for p in model.parameters()], private.expected_batch

    got, expected_batch = veil.run(job, parties=parties, seed=2)[0]
    want = _torch_private_step(layers, x, y, mask, clip, lr, expected_batch)
    for gp, wp in zip(got, want):
        assert torch.allclose(gp.double(), wp.double(), atol=5e-4), (gp, wp)


@pytest.mark.parametrize("parties", [2, 3])
def test_zero_noise_without_clipping_equals_non_private_secure_training(parties):
    g = torch.Generator().manual_seed(4)
    x, y = torch.randn(24, 6, generator=g), (torch.rand(24, 1, generator=g) < 0.5).float()
    torch.manual_seed(1)
    init = torch.nn.Linear(6, 1)

    def job():
        X, Y = share_from(x, 0), share_from(y, 1)
        crit = veil.nn.BCEWithLogitsLoss()
        dp_model = veil.nn.Linear(6, 1, init_from=init if veil.rank() == 0 else None)
        plain = veil.nn.Linear(6, 1, init_from=init if veil.rank() == 0 else None)
        private = make_private(dp_model, veil.optim.SGD(dp_model.parameters(), lr=0.3),
                               crit, (X, Y), batch_size=24, noise_multiplier=0.0,
                               max_grad_norm=60.0)       # full batch (q = 1), never clips
        opt = veil.optim.SGD(plain.parameters(), lr=0.3)
        for _ in range(3):
            private.step()
            out = plain(X)
            out.backward(crit.input_grad(out, Y))
            opt.step()
            opt.zero_grad()
        return [p.reveal() for p in dp_model.parameters()], \
            [p.reveal() for p in plain.parameters()]

    dp, plain = veil.run(job, parties=parties, seed=3)[0]
    for a, b in zip(dp, plain):
        assert torch.allclose(a, b, atol=2e-4), (a, b)


@pytest.mark.parametrize("protocol, parties, colluders, t",
                         [("semi2k", 2, None, 1), ("semi2k", 3, None, 2), ("semi2k", 3, 1, 1),
                          ("rep3", 3, None, 1)])
def test_joint_gaussian_noise_has_the_stated_std(protocol, parties, colluders, t):
    """50k draws: the std estimate's standard error is 0.32 %; we allow 2 %. The default
    collusion threshold is the protocol's: n - 1 for semi2k, 1 for rep3."""
    std = 1.5

    def job():
        return joint_gaussian((50_000,), std, colluders=colluders).reveal()

    z = veil.run(job, parties=parties, protocol=protocol)[0].double()
    want = std * math.sqrt(parties / (parties - t))     # n / (n - t) times the variance
    assert float(z.std()) == pytest.approx(want, rel=0.02)
    assert abs(float(z.mean())) < 5 * want / math.sqrt(len(z))
    assert float(((z / z.std()) ** 4).mean()) == pytest.approx(3.0, abs=0.1)   # Gaussian


def test_joint_laplace_and_integer_noise():
    def job():
        lap = joint_laplace((40_000,), 2.0).reveal()
        ints = joint_gaussian((1000,), 3.0, integer=True)
        return lap, ints.dtype, ints.reveal()

    lap, dtype, ints = veil.run(job, parties=2)[0]
    # each of 2 parties adds Laplace(2): variance 2 * 2 b^2 = 16
    assert float(lap.double().std()) == pytest.approx(4.0, rel=0.03)
    assert dtype == torch.int64 and ints.dtype == torch.int64 and ints.abs().max() > 0


def test_release_is_calibrated_and_refuses_bad_parameters():
    sigma = gaussian_sigma(1.0, 1e-5)
    assert sigma == pytest.approx(3.73, abs=0.01)

    def job():
        x = share_from(torch.full((20_000,), 100.0), 0)
        out = release(x, sensitivity=1.0, epsilon=1.0, delta=1e-5, to=1)
        errors = []
        for kw in (dict(epsilon=1.0), dict(epsilon=1.0, delta=1e-5, mechanism="laplace"),
                   dict(epsilon=0.0, delta=1e-5), dict(epsilon=1.0, mechanism="bogus")):
            try:
                release(x, sensitivity=1.0, **kw)
            except veil.ProtocolUsageError as e:
                errors.append(str(e))
        return out, errors

    res = veil.run(job, parties=2)
    assert res[0][0] is None                            # revealed to party 1 only
    out, errors = res[1]
    assert float((out.double() - 100).std()) == pytest.approx(sigma * math.sqrt(2), rel=0.03)
    assert len(errors) == 4 and "delta" in errors[0]


@pytest.mark.parametrize("protocol, parties", [("semi2k", 2), ("semi2k", 3), ("rep3", 3)])
def test_poisson_masks_have_the_exact_rate_and_are_independent(protocol, parties):
    q = 0.1

    def job():
        m, rate = poisson_masks(steps=4, n=6000, q=q)
        return m.reveal(), rate                          # test only: masks stay secret

    m, rate = veil.run(job, parties=parties, protocol=protocol)[0]
    assert rate == sampling_rate(q) and rate >= q and rate - q < 2 ** -16
    f = m.double()
    assert set(f.unique().tolist()) <= {0.0, 1.0}
    sd = math.sqrt(rate * (1 - rate) / f.numel())
    assert abs(float(f.mean()) - rate) < 5 * sd
    # rows and steps independent: correlation of consecutive steps ~ N(0, 1/6000)
    c = np.corrcoef(f.numpy())
    assert np.abs(c[np.triu_indices(4, 1)]).max() < 5 / math.sqrt(6000)


def test_a_private_step_reveals_nothing_and_its_noise_shows_in_the_update(monkeypatch):
    g = torch.Generator().manual_seed(5)
    n, d, k = 40, 20, 5
    x, y = torch.randn(n, d, generator=g), (torch.rand(n, k, generator=g) < 0.5).float()
    mask = (torch.rand(n, generator=g) < 0.5).long()
    torch.manual_seed(2)
    init = torch.nn.Linear(d, k)
    reveals = []
    real_reveal = veil.protocols.Semi2k.reveal

    def spy(self, *a, **kw):
        reveals.append(self.rank)
        return real_reveal(self, *a, **kw)

    def job(sigma):
        model = veil.nn.Linear(d, k, init_from=init if veil.rank() == 0 else None)
        private = make_private(model, veil.optim.SGD(model.parameters(), lr=1.0),
                               veil.nn.BCEWithLogitsLoss(), (share_from(x, 0), share_from(y, 1)),
                               batch_size=20, noise_multiplier=sigma, max_grad_norm=1.0)
        m = share_from(mask, 0)
        monkeypatch.setattr(veil.protocols.Semi2k, "reveal", spy)
        private.step(mask=m)
        monkeypatch.setattr(veil.protocols.Semi2k, "reveal", real_reveal)
        return model.weight.reveal(), private.noise_std, private.expected_batch

    quiet, _, _ = veil.run(job, 0.0, parties=2, seed=4)[0]
    assert reveals == [], "a DP-SGD step opened a value"
    noisy, std, batch = veil.run(job, 2.0, parties=2, seed=4)[0]
    assert reveals == []
    diff = (noisy - quiet).double()
    # each party adds the full std (semi2k, colluders n - 1): total std sqrt(2) std / batch
    want = math.sqrt(2) * std / batch
    assert float(diff.std()) == pytest.approx(want, rel=0.3)
    assert float(diff.abs().min()) > 0


def test_fit_reports_epsilon_each_epoch_and_stops_at_the_budget():
    g = torch.Generator().manual_seed(6)
    x, y = torch.randn(30, 3, generator=g), (torch.rand(30, 1, generator=g) < 0.5).float()

    def job():
        model = veil.nn.Linear(3, 1)
        private = make_private(model, veil.optim.SGD(model.parameters(), lr=0.5),
                               veil.nn.BCEWithLogitsLoss(), (share_from(x, 0), share_from(y, 1)),
                               batch_size=10, noise_multiplier=1.5, max_grad_norm=1.0,
                               budget=2.0)
        h = private.fit(10, progress=False)
        return h.column("epsilon"), private.steps, private.can_step()

    eps, steps, can = veil.run(job, parties=2, seed=5)[0]
    assert eps == sorted(eps) and eps[-1] <= 2.0 and len(eps) < 10 and not can
    assert steps < 30


def test_make_private_refuses_what_it_cannot_bound():
    def job():
        X, Y = share_from(torch.randn(8, 2), 0), share_from(torch.ones(8, 1), 1)
        errs = []
        conv = veil.nn.Sequential(veil.nn.Conv2d(1, 1, 1), veil.nn.Linear(2, 1))
        lin = veil.nn.Linear(2, 1)
        for model, kw in ((conv, {}), (lin, dict(max_grad_norm=1000.0)),
                          (lin, dict(batch_size=0)), (lin, dict(budget=1.0))):
            args = dict(batch_size=4, noise_multiplier=0.0, max_grad_norm=1.0)
            args.update(kw)
            try:
                make_private(model, veil.optim.SGD(model.parameters(), lr=0.1),
                             veil.nn.BCEWithLogitsLoss(), (X, Y), **args)
            except veil.ProtocolUsageError as e:
                errs.append(str(e))
        return errs

    errs = veil.run(job, parties=2)[0]
    assert len(errs) == 4
    assert "Linear" in errs[0] and "0.weight" in errs[0]
    assert "max_grad_norm" in errs[1] and "batch_size" in errs[2] and "budget" in errs[3]


def _sql_job(dp, sql="SELECT SUM(o.a * d.b) AS s, COUNT(*) AS n, AVG(o.a) AS m FROM orders o "
                     "JOIN ads d ON o.id = d.id"):
    import pandas as pd
    db = veil.sql.Session()
    orders = pd.DataFrame({"id": list(range(200)), "a": [i % 7 for i in range(200)]})
    ads = pd.DataFrame({"id": list(range(0, 400, 2)), "b": [i % 3 for i in range(200)]})
    db.register("orders", orders if veil.rank() == 0 else None, owner=0, bounds={"a": 8})
    db.register("ads", ads if veil.rank() == 1 else None, owner=1, bounds={"b": 4})
    try:
        return db.query(sql, reveal_to=1, dp=dp)
    except veil.ProtocolUsageError as e:
        return str(e)


def test_sql_aggregates_are_released_with_noise_added_inside_mpc():
    pytest.importorskip("duckdb")
    from veil.dp.sql import SQLPrivacy
    exact = veil.run(_sql_job, None, parties=2)[1].iloc[0]
    assert exact["n"] == 100
    # ε = 0.2 over 3 aggregates: count noise std = 2 parties' full σ ≈ 45, SUM's ≈ 2000
    dp = SQLPrivacy(epsilon=0.2, delta=1e-5, sensitivity={"s": 44, "m": 8})
    res = veil.run(_sql_job, dp, parties=2)
    assert res[0] is None
    noisy = res[1].iloc[0]
    unit = gaussian_sigma(0.2, 1e-5, math.sqrt(3)) * math.sqrt(2)
    assert noisy["n"] != exact["n"] and abs(noisy["n"] - exact["n"]) < 6 * unit
    assert noisy["s"] != exact["s"] and abs(noisy["s"] - exact["s"]) < 6 * 44 * unit
    refusals = [
        veil.run(_sql_job, SQLPrivacy(epsilon=1.0, delta=1e-5), parties=2)[1],
        veil.run(_sql_job, SQLPrivacy(epsilon=1.0, delta=1e-5, sensitivity={"s": 10, "m": 8}),
                 parties=2)[1],
        veil.run(_sql_job, SQLPrivacy(epsilon=1.0, delta=1e-5), "SELECT MAX(o.a) AS x FROM "
                 "orders o JOIN ads d ON o.id = d.id", parties=2)[1],
        veil.run(_sql_job, SQLPrivacy(epsilon=1.0, delta=1e-5), "SELECT d.b, COUNT(*) AS c "
                 "FROM orders o JOIN ads d ON o.id = d.id GROUP BY d.b", parties=2)[1]]
    assert "state the sensitivity of 's'" in refusals[0]
    assert "below the per-row bound" in refusals[1] and "44" in refusals[1]
    assert "MIN/MAX" in refusals[2] and "ungrouped" in refusals[3]


@pytest.mark.parametrize("name", ["veil.dp.noise", "veil.dp.release", "veil.dp.sampling",
                                  "veil.dp.private", "veil.dp.sql"])
def test_docstring_examples_run(name):
    import doctest
    import importlib
    if name == "veil.dp.sql":
        pytest.importorskip("duckdb")
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_opened_values_during_a_private_step_look_uniform(monkeypatch):
    """Everything party 1 sees opened inside a DP-SGD step is masked: the low 32 bits of
    every opened ring value (full-width product masks and the comparisons' 33-bit masked
    values alike) are uniform, even for an all-zero training set."""
    seen = []
    real = veil.protocols.Semi2k._open

    def spy(self, *xs):
        outs = real(self, *xs)
        if self.rank == 1:
            seen.extend(o.reshape(-1).clone() for o in outs)
        return outs

    def job():
        X, y = share_from(torch.zeros(400, 4), 0), share_from(torch.zeros(400, 1), 1)
        model = veil.nn.Linear(4, 1)
        private = make_private(model, veil.optim.SGD(model.parameters(), lr=0.1),
                               veil.nn.BCEWithLogitsLoss(), (X, y), batch_size=100,
                               noise_multiplier=1.0, max_grad_norm=1.0)
        monkeypatch.setattr(veil.protocols.Semi2k, "_open", spy)
        private.step()
        monkeypatch.setattr(veil.protocols.Semi2k, "_open", real)

    veil.run(job, parties=2)
    low = torch.cat(seen).numpy().view(np.uint8).reshape(-1, 8)[:, :4]
    assert len(low) > 20_000
    for lane in range(4):
        counts = np.bincount(low[:, lane], minlength=256)
        expected = len(low) / 256
        # chi2, 255 dof: mean 255, sd 22.6; 400 is > 6 sd
        assert float(((counts - expected) ** 2 / expected).sum()) < 400


def test_credit_scoring_example_with_dp(tmp_path, capsys):
    import runpy
    import sys
    root = __import__("pathlib").Path(__file__).resolve().parents[1]
    argv = sys.argv
    sys.argv = ["credit_scoring.py", "--dp-epsilon", "3", "--epochs", "1", "--out",
                str(tmp_path)]
    try:
        runpy.run_path(str(root / "examples" / "credit_scoring.py"), run_name="__main__")
    finally:
        sys.argv = argv
    out = capsys.readouterr().out
    assert "(3.00, 1e-05)-DP" in out and (tmp_path / "credit_model.pt").exists()
