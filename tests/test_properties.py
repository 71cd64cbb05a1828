"""Property tests (hypothesis): share/reveal round trips, linearity, broadcasting."""

from __future__ import annotations

import torch
from hypothesis import given, settings, strategies as st
from hypothesis.extra.numpy import array_shapes, arrays
import numpy as np

import veil
from helpers import share_from

ULP = 2.0 ** -16
finite = st.floats(-30000, 30000, allow_nan=False, width=64)


@settings(max_examples=25, deadline=None)
@given(arrays(np.float64, array_shapes(max_dims=3, max_side=5), elements=finite),
       st.integers(2, 5), st.integers(0, 4))
def test_share_reveal_round_trip(values, parties, owner):
    owner %= parties
    x = torch.from_numpy(values)
    out = veil.run(lambda: share_from(x, owner).reveal(), parties=parties, seed=1)
    for got in out:
        assert got.dtype == torch.float64 and got.shape == x.shape
        assert (got - x).abs().max().item() <= ULP / 2 + 1e-12 if x.numel() else True


@settings(max_examples=20, deadline=None)
@given(st.lists(st.floats(-100, 100, allow_nan=False), min_size=1, max_size=8),
       st.floats(-4, 4, allow_nan=False), st.integers(-5, 5))
def test_linear_combinations(vals, a, b):
    x = torch.tensor(vals, dtype=torch.float64)
    y = x.flip(0) * 0.5

    def job():
        sx, sy = share_from(x, 0), share_from(y, 1)
        return (sx * a + sy * b - sx).reveal()
    got = veil.run(job, parties=3, seed=2)[0]
    want = x * a + y * b - x
    # a is a non-integer public: one truncation (<= 1 ulp) plus encoding error of a.
    assert (got - want).abs().max().item() <= abs(x).max().item() * ULP + 4 * ULP


@settings(max_examples=15, deadline=None)
@given(array_shapes(min_dims=1, max_dims=3, max_side=4))
def test_broadcasting_matches_torch(shape):
    x = torch.randn(shape)
    y = torch.randn(shape[-1:])

    def job():
        return (share_from(x, 0) * share_from(y, 1) + share_from(y, 1)).reveal()
    got = veil.run(job, parties=2, seed=3)[0]
    assert got.shape == (x * y + y).shape
    assert torch.allclose(got, x * y + y, atol=1e-3)


def test_decoding_is_exact_near_negative_integers():
    """CrypTen turned -1.99999 into -3.0; the signed decode keeps it within one ulp."""
    vals = torch.tensor([-1.99999, -0.00001, -2.5, -32767.5], dtype=torch.float64)
    got = veil.run(lambda: share_from(vals, 1).reveal(), parties=2)[0]
    assert (got - vals).abs().max().item() <= ULP / 2


def test_bit_exact_with_fixed_seed():
    def job():
        x = share_from(torch.linspace(-3, 3, 50), 0)
        return ((x * x).relu() - x.abs()).reveal()
    a = veil.run(job, parties=3, seed=9)
    b = veil.run(job, parties=3, seed=9)
    assert all(torch.equal(p, q) for p, q in zip(a, b))
