"""Gradients of the smooth functions (veil.functions' rules) and of the losses
(veil.nn.functional's fused rules) against torch, through the same autograd engine.

Tolerance 2e-3 absolute: the functions' own errors are below 4e-4 (docs/functions.md),
their derivatives inherit a few times that.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from veil.autograd.check import compare_grads

ATOL = 2e-3


def _r(*shape, seed=0, lo=-2.0, hi=2.0):
    return torch.empty(shape).uniform_(lo, hi, generator=torch.Generator().manual_seed(seed))


_LABELS = torch.tensor([0, 3, 2, 1])

CASES = {
    "sigmoid": (lambda a: a.sigmoid(), [_r(4, 5)], None),
    "tanh": (lambda a: a.tanh(), [_r(4, 5)], None),
    "exp": (lambda a: a.exp(), [_r(4, 5)], None),
    "log": (lambda a: a.log(), [_r(4, 5, lo=0.5, hi=4)], None),
    "sqrt_rsqrt": (lambda a: a.sqrt() + a.rsqrt(), [_r(4, 5, lo=0.5, hi=4)], None),
    "divide_secret": (lambda a, b: a / b, [_r(4, 5), _r(4, 5, seed=1, lo=0.5, hi=4)], None),
    "softmax": (lambda a: a.softmax(1), [_r(4, 5)], None),
    "log_softmax": (lambda a: a.log_softmax(-1), [_r(4, 5)], None),
    "gelu": (lambda a: F.gelu(a), [_r(4, 5)], None),
    "softplus": (lambda a: F.softplus(a), [_r(4, 5)], None),
    "layer_norm": (lambda a, w, b: F.layer_norm(a, (5,), w, b),
                   [_r(4, 5), _r(5, seed=1), _r(5, seed=2)], None),
    "mlp_tanh_softmax": (lambda x, w: (x @ w).tanh().softmax(-1), [_r(3, 4), _r(4, 5, seed=1)],
                         [False, True]),
    "mse_loss": (lambda a, b: F.mse_loss(a, b), [_r(4, 5), _r(4, 5, seed=1)], [True, False]),
    "mse_loss_sum": (lambda a, b: F.mse_loss(a, b, reduction="sum"), [_r(4, 5), _r(4, 5, seed=1)],
                     [True, False]),
    "bce_with_logits": (lambda a, b: F.binary_cross_entropy_with_logits(a, b),
                        [_r(6, 1, lo=-9, hi=9), (_r(6, 1, seed=1) > 0).float()], [True, False]),
    "cross_entropy_indices": (lambda a: F.cross_entropy(a, _LABELS), [_r(4, 5)], None),
    "cross_entropy_one_hot": (lambda a, b: F.cross_entropy(a, b),
                              [_r(4, 5), F.one_hot(_LABELS, 5).float()], [True, False]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_function_gradient_matches_torch(name):
    fn, inputs, rg = CASES[name]
    errs = compare_grads(fn, inputs, requires_grad=rg)
    assert errs["out"] <= ATOL, f"{name}: forward error {errs['out']:.3g}"
    assert max(e for e in errs["grads"] if e is not None) <= ATOL, (name, errs)


@pytest.mark.parametrize("name", ["cross_entropy_one_hot", "bce_with_logits", "layer_norm"])
def test_function_gradient_matches_torch_3_parties(name):
    fn, inputs, rg = CASES[name]
    errs = compare_grads(fn, inputs, requires_grad=rg, parties=3, seed=1)
    assert errs["out"] <= ATOL and max(e for e in errs["grads"] if e is not None) <= ATOL, errs


def test_loss_options_that_are_not_supported_are_refused_by_name():
    import veil

    def f():
        x = veil.tensor(torch.zeros(2, 3) if veil.rank() == 0 else None, owner=0)
        F.cross_entropy(x, torch.tensor([0, 1]), label_smoothing=0.1)
    with pytest.raises(veil.PartyError, match="label_smoothing"):
        veil.run(f, parties=2, seed=0)
