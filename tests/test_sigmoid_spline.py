"""sigmoid approx="spline" (veil.functions.activations): the training sigmoid.

Against torch: error within 3e-4 on the whole fixed-point range (asymptotes beyond the
knots, however far), 7 rounds at 2 parties (exact: 13), the exact variant's gradient
rule, and at 3 parties too.
"""

import pytest
import torch

import veil
from veil.functions import approximations

X = torch.cat([torch.linspace(-12, 12, 4001), torch.tensor([-3.2e4, -500.0, 500.0, 3.2e4])])


def _spline(x, parties):
    def party():
        v = veil.tensor(x if veil.rank() == 0 else None, owner=0)
        s0 = veil.stats()
        with approximations(sigmoid="spline"):
            y = v.sigmoid()
        rounds = veil.stats()["rounds"] - s0["rounds"]
        return y.reveal(), rounds
    return veil.run(party, parties=parties, seed=0)[0]


@pytest.mark.parametrize("parties", [2, 3])
def test_spline_sigmoid_matches_torch_everywhere(parties):
    y, rounds = _spline(X, parties)
    err = (y.double() - torch.sigmoid(X.double())).abs().max().item()
    assert err < 3e-4, err
    if parties == 2:
        assert rounds == 8        # msb 6, select 1, its one (exact) truncation 1


def test_spline_sigmoid_keeps_shapes_and_has_the_sigmoid_gradient():
    x = torch.linspace(-6, 6, 24).reshape(2, 3, 4)
    g = torch.linspace(-1, 1, 24).reshape(2, 3, 4)

    def party():
        xs = veil.tensor(x if veil.rank() == 0 else None, owner=0).requires_grad_()
        with approximations(sigmoid="spline"):
            y = xs.sigmoid()
        y.backward(g)
        return y.reveal(), xs.grad.reveal()
    y, grad = veil.run(party, parties=2, seed=0)[0]
    assert y.shape == x.shape
    xt = x.clone().requires_grad_()
    torch.sigmoid(xt).backward(g)
    assert (grad - xt.grad).abs().max().item() < 1e-3
