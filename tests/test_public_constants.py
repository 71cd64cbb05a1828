"""Small public constants keep their relative precision; caller context reaches parties."""

from __future__ import annotations

import contextvars

import torch
import torch.nn.functional as F

import veil
from helpers import share_from


def test_mean_over_768_features_is_not_biased_by_encoding_one_over_768():
    x = torch.full((4, 768), 100.0)
    got = veil.run(lambda: share_from(x, 0).mean(dim=-1).reveal(), parties=2, seed=0)[0]
    # 1/768 at 16 bits would be 0.6 % off (0.6 absolute here); extra bits make it ~1e-4.
    assert (got - 100.0).abs().max().item() < 2e-3


def test_tiny_public_factors_and_matrices_stay_accurate():
    x = torch.linspace(-50, 50, 64)
    def job():
        s = share_from(x, 1)
        return (s * 1e-3).reveal(), (s.reshape(1, 1, 8, 8).avg_pool2d(8)).reveal()
    small, pooled = veil.run(job, parties=3, seed=0)[0]
    assert ((small - x * 1e-3).abs() / 1e-3).max().item() < 5e-2        # < 0.05 ulp-of-x
    assert (pooled - F.avg_pool2d(x.reshape(1, 1, 8, 8), 8)).abs().max().item() < 1e-4


_SETTING = contextvars.ContextVar("test_setting", default="unset")


def test_parties_inherit_the_callers_context():
    token = _SETTING.set("from caller")
    try:
        assert veil.run(_SETTING.get, parties=3) == ["from caller"] * 3
    finally:
        _SETTING.reset(token)
