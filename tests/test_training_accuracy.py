"""Accuracy on real data (sklearn, no download) against the same training in plaintext.

Same initial weights, same batches in the same order, same hyperparameters; the only
difference is fixed point on secret shares. Small scale here (the full runs are in the
benchmark: python -m veil.bench.training_workloads).
"""

from __future__ import annotations

import math

import pytest
import torch

import veil

pytest.importorskip("sklearn")

from veil.bench import training_workloads as T  # noqa: E402


def test_logistic_regression_vertical_two_banks_matches_plaintext():
    """breast_cancer, columns 15/15, labels at party 1, SGD: 14 epochs = 210 steps."""
    acc, plain, _, hist = T.run_logreg(epochs=14)
    losses = hist.column("loss")
    assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0]   # no divergence
    assert abs(acc - plain) <= 0.01, (acc, plain)
    assert acc > 0.95


@pytest.mark.parametrize("protocol", ["semi2k", "rep3"])
def test_mlp_horizontal_three_parties_adam_matches_plaintext(protocol):
    """digits, 64-32-10, rows split 3 ways, Adam; 480 training rows, 3 epochs (45 steps)."""
    parts = T.digits_parts(3, seed=0)
    parts["train"] = [(x[:160], y[:160]) for x, y in parts["train"]]
    acc, plain, _, hist = T.run_mlp(parts, epochs=3, protocol=protocol)
    assert abs(acc - plain) <= 0.015, (acc, plain)
    assert acc > 0.85


def test_fit_prints_progress_only_at_the_metrics_party(capsys):
    x = torch.randn(40, 3, generator=torch.Generator().manual_seed(0))
    y = (x[:, :1] > 0).float()

    def party():
        r = veil.rank()
        ds = veil.data.vertical(x if r == 0 else None, y if r == 1 else None, label_owner=1)
        model = veil.nn.Linear(3, 1, owner=1)
        opt = veil.optim.SGD(model.parameters(), lr=0.5)
        hist = veil.nn.fit(model, veil.data.DataLoader(ds, batch_size=20, seed=0),
                           veil.nn.BCEWithLogitsLoss(), opt, epochs=2)
        return hist.column("loss"), hist.column("train_acc")
    out = veil.run(party, parties=2, seed=0)
    err = capsys.readouterr().err
    assert err.count("epoch ") == 2 and "loss" in err and "train acc" in err
    assert out[0] == ([None, None], [None, None])                # nothing revealed to party 0
    assert all(v is not None for v in out[1][0])
