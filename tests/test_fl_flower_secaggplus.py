"""Flower 1.42's own SecAgg+ (the benchmark's baseline, veil.fl.flower_secaggplus): it runs
on the same task, and the two weaknesses issue 13 names are real."""

import logging

import numpy as np
import pytest
import torch

pytest.importorskip("flwr")

from veil.fl import flower_secaggplus, tasks
from veil.fl.flower import LocalGrid


@pytest.fixture(scope="module")
def data():
    return tasks.partition("digits", 5, alpha=0.5, seed=0)


def _run(data, num_shares):
    parts, test = data
    acc = []

    def evaluate(rnd, state):
        net = tasks.model(64, 10)
        net.load_state_dict(state)
        acc.append(tasks.accuracy(net, test))
    grid = LocalGrid(flower_secaggplus.client_app(parts, 64, 10), 5)
    logging.getLogger("flwr").setLevel(logging.WARNING)
    out = flower_secaggplus.run(grid, tasks.model(64, 10).state_dict(), 2, evaluate,
                                num_shares=num_shares, threshold=2)
    return acc, out


def test_flower_secaggplus_trains_like_fedavg_odd_shares(data):
    acc, out = _run(data, num_shares=3)
    assert acc[-1] > 0.5 and acc[-1] > acc[0]
    # Same seeds as veil's client app: the model is FedAvg's up to Flower's quantisation
    # (parameters clipped to ±8 on 2^22 levels: 3.8e-6 per step, stochastic rounding).
    from flwr.app import ArrayRecord
    from flwr.serverapp.strategy import FedAvg
    plain = FedAvg(fraction_evaluate=0.0).start(
        grid=LocalGrid(tasks.client_app(data[0], 64, 10), 5),
        initial_arrays=ArrayRecord(tasks.model(64, 10).state_dict()), num_rounds=2)
    sd = plain.arrays.to_torch_state_dict()
    diff = max(float(np.abs(a - sd[k].numpy()).max()) for a, k in zip(out, ("weight", "bias")))
    assert 0 < diff < 1e-3


def test_flower_secaggplus_even_num_shares_never_aggregates(data):
    # 4 shares of 5 clients: the server tells clients 4 and uses 5 itself; every client
    # fails in share_keys and every round halts, leaving the model at its initial value.
    acc, out = _run(data, num_shares=4)
    init = tasks.model(64, 10).state_dict()
    assert np.array_equal(out[0], init["weight"].numpy())
    assert len(set(acc)) == 1


def test_flower_secaggplus_masks_have_a_32_bit_seed():
    # Two different 32-byte seeds whose 4-byte words XOR to the same value give identical
    # masks: the mask stream is one of only 2^32.
    from flwr.common.secure_aggregation.secaggplus_utils import pseudo_rand_gen
    a = bytes(range(32))
    b = bytearray(a)
    for i in (0, 4):
        b[i] ^= 0x5A                        # flips the same bit in two words: XOR unchanged
    assert bytes(b) != a
    ma = pseudo_rand_gen(a, 1 << 32, [(1000,)])[0]
    mb = pseudo_rand_gen(bytes(b), 1 << 32, [(1000,)])[0]
    assert np.array_equal(ma, mb)
    # veil's masks: AES-CTR under the full 16-byte key; one flipped bit changes them.
    from veil.fl.secagg import keys
    s = bytes(16)
    assert not torch.equal(keys.mask(s, 1000), keys.mask(b"\x01" + s[1:], 1000))
