"""Round counts of the smooth functions against the issue's targets (2 parties, online).

Round counts do not depend on the data or the size, so small inputs suffice. The
targets: exp <= 10, reciprocal <= 20, sigmoid <= 15, sqrt <= 12, softmax over rows of
100 <= 50. They were set for two-party *local* truncation (free, 0 rounds), which is no
longer the default: it can fail silently (docs/numerics.md), so since session 4 every
run truncates exactly (1 round per truncation) unless it asks for
``Config(truncation="local")``. The targets are therefore checked under that opt-in, and
the default's counts (higher: exact truncation costs a round) are pinned next to them.
The default exp takes 11 under local truncation: one round over, knowingly — its range
reduction turns the bucket one-hot into arithmetic form (one b2a round) so that inputs
below -12.5 give exactly 0 and large inputs saturate instead of returning garbage; the
comparison-free ``approx="square"`` variant takes 6 but is meaningless below about -37.
This test pins the numbers so a change to any shows up here and in docs/functions.md.
"""

from __future__ import annotations

import pytest
import torch

import veil

from helpers import share_from

TARGETS = {"exp": 10, "reciprocal": 20, "sigmoid": 15, "sqrt": 12, "softmax": 50}

CALLS = {
    "exp": (lambda x: x.exp(), (64,)),
    "exp_square": (lambda x: x.exp(approx="square"), (64,)),
    "reciprocal": (lambda x: x.reciprocal(), (64,)),
    "reciprocal_positive": (lambda x: x.reciprocal(positive=True), (64,)),
    "sigmoid": (lambda x: x.sigmoid(), (64,)),
    "sqrt": (lambda x: x.sqrt(), (64,)),
    "rsqrt": (lambda x: x.rsqrt(), (64,)),
    "log": (lambda x: x.log(), (64,)),
    "tanh": (lambda x: x.tanh(), (64,)),
    "erf": (lambda x: x.erf(), (64,)),
    "gelu": (lambda x: x.gelu(), (64,)),
    "silu": (lambda x: x.silu(), (64,)),
    "softmax": (lambda x: x.softmax(-1), (4, 100)),
    "softmax_2quad": (lambda x: x.softmax(-1, approx="2quad"), (4, 100)),
    "layer_norm": (lambda x: x.layer_norm((128,)), (4, 128)),
}

# What the docs state: 2 parties with truncation="local" / 2 parties by default (exact) /
# 3 parties (always exact: the same as the 2-party default).
EXPECTED = {
    "exp": (11, 13, 13), "exp_square": (6, 7, 7), "reciprocal": (19, 25, 25),
    "reciprocal_positive": (19, 25, 25), "sigmoid": (13, 14, 14), "sqrt": (12, 15, 15),
    "rsqrt": (13, 16, 16), "log": (12, 14, 14), "tanh": (13, 14, 14), "erf": (12, 14, 14),
    "gelu": (11, 12, 12), "silu": (12, 15, 15), "softmax": (43, 45, 45),
    "softmax_2quad": (21, 29, 29), "layer_norm": (15, 22, 22),
}
LOCAL = veil.Config(truncation="local")


def _rounds(fn, shape, parties, config=None):
    def party():
        x = share_from(torch.rand(shape) + 0.5, 0)
        before = veil.stats()["rounds"]
        fn(x)
        return veil.stats()["rounds"] - before
    counts = veil.run(party, parties=parties, seed=0, config=config)
    assert len(set(counts)) == 1, f"parties disagree on rounds: {counts}"
    return counts[0]


@pytest.fixture(scope="module")
def local_rounds():
    return {name: _rounds(fn, shape, 2, LOCAL) for name, (fn, shape) in CALLS.items()}


@pytest.fixture(scope="module")
def default_rounds():
    return {name: _rounds(fn, shape, 2) for name, (fn, shape) in CALLS.items()}


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_round_targets_under_local_truncation(name, local_rounds):
    got = local_rounds[name]
    if name == "exp":
        assert got == TARGETS["exp"] + 1              # see the module docstring
        assert local_rounds["exp_square"] <= TARGETS["exp"]
    else:
        assert got <= TARGETS[name], f"{name}: {got} rounds > target {TARGETS[name]}"


@pytest.mark.parametrize("name", sorted(CALLS))
def test_round_counts_match_the_docs(name, local_rounds, default_rounds):
    assert (local_rounds[name], default_rounds[name]) == EXPECTED[name][:2]


@pytest.mark.parametrize("name", ["exp", "reciprocal", "sigmoid", "sqrt", "softmax"])
def test_round_counts_at_three_parties(name):
    fn, shape = CALLS[name]
    assert _rounds(fn, shape, 3) == EXPECTED[name][2]
