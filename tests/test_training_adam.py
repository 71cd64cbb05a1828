"""veil.optim.Adam (rescaled fixed-point state) against torch.optim.Adam."""

from __future__ import annotations

import pytest
import torch

import veil
from test_training_sgd import _data, _max_diff, _mlp, _torch_train, _veil_train


@pytest.mark.parametrize("parties, kw, steps", [(2, dict(lr=0.01), 40),
                                                (3, dict(lr=0.01, weight_decay=0.01), 15)])
def test_adam_matches_torch(parties, kw, steps):
    x, y = _data()
    net = _mlp()
    got = _veil_train(net, lambda p, lr: veil.optim.Adam(p, **kw), x, y, steps, 16, 3,
                      parties=parties)
    want = _torch_train(net, torch.optim.Adam(net.parameters(), **kw), x, y, steps, 16, 3)
    assert _max_diff(got, want) < 5e-3


def test_a_parameter_that_skips_a_step_keeps_its_own_step_count():
    def party():
        r = veil.rank()
        a = veil.tensor(torch.tensor([1.0]) if r == 0 else None, owner=0).requires_grad_()
        b = veil.tensor(torch.tensor([1.0]) if r == 0 else None, owner=0).requires_grad_()
        opt = veil.optim.Adam([a, b], lr=0.1)
        (a * a).sum().backward()                 # b gets no gradient this step
        opt.step()
        opt.zero_grad()
        (a * a + b * b).sum().backward()
        opt.step()
        return a.reveal(), b.reveal()
    a, b = veil.run(party, parties=2, seed=0)[0]
    ta, tb = torch.tensor([1.0], requires_grad=True), torch.tensor([1.0], requires_grad=True)
    opt = torch.optim.Adam([ta, tb], lr=0.1)
    (ta * ta).sum().backward()
    opt.step()
    opt.zero_grad()
    (ta * ta + tb * tb).sum().backward()
    opt.step()
    assert abs(a.item() - ta.item()) < 2e-3 and abs(b.item() - tb.item()) < 2e-3


def test_grad_scale_must_be_a_power_of_two():
    def party():
        w = veil.tensor(torch.ones(2) if veil.rank() == 0 else None, owner=0).requires_grad_()
        veil.optim.Adam([w], grad_scale=3)
    with pytest.raises(veil.PartyError, match="power of two"):
        veil.run(party, parties=2, seed=0)
