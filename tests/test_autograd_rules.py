"""Gradients of every core op against torch autograd (same inputs, same upstream grad).

Tolerance: 2e-3 absolute for outputs and gradients with inputs in [-2, 2] at 16
fractional bits (each product truncates with error <= 1 ulp = 1.5e-5, and a gradient
sums up to a few dozen such products).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from veil.autograd.check import compare_grads

ATOL = 2e-3


def _r(*shape, seed=0, lo=-2.0, hi=2.0):
    return torch.empty(shape).uniform_(lo, hi, generator=torch.Generator().manual_seed(seed))


CASES = {
    "add_broadcast": (lambda a, b: a + b, [_r(3, 4), _r(4, seed=1)]),
    "sub_alpha": (lambda a, b: torch.sub(a, b, alpha=2), [_r(3, 4), _r(3, 1, seed=1)]),
    "rsub_neg": (lambda a: 1.0 - (-a), [_r(3, 4)]),
    "mul_broadcast": (lambda a, b: a * b, [_r(3, 4), _r(1, 4, seed=1)]),
    "square": (lambda a: a * a, [_r(3, 4)]),
    "mul_public": (lambda a: a * torch.linspace(-1, 1, 4), [_r(3, 4)]),
    "div_public": (lambda a: a / 3.0, [_r(3, 4)]),
    "pow_int": (lambda a: a ** 3, [_r(5, lo=-1.5, hi=1.5)]),
    "matmul_batched": (lambda a, b: a @ b, [_r(2, 3, 4), _r(4, 5, seed=1)]),
    "matvec": (lambda a, b: a @ b, [_r(3, 4), _r(4, seed=1)]),
    "vecmat": (lambda a, b: a @ b, [_r(4), _r(4, 2, seed=1)]),
    "public_at_secret": (lambda b: _r(3, 4, seed=5).to(b.dtype) @ b, [_r(4, 2, seed=1)]),
    "linear": (lambda a, w, b: F.linear(a, w, b), [_r(5, 3), _r(2, 3, seed=1), _r(2, seed=2)]),
    "relu": (lambda a: a.relu(), [_r(5, 6)]),
    "abs": (lambda a: a.abs(), [_r(3, 4)]),
    "clamp": (lambda a: a.clamp(-0.5, 0.5), [_r(3, 4)]),
    "where_secret": (lambda a, b: torch.where(a > b, a, b), [_r(3, 4), _r(3, 4, seed=1)]),
    "where_public": (lambda a: torch.where(torch.arange(4) > 1, a, 2.0), [_r(3, 4)]),
    "maximum": (lambda a, b: torch.maximum(a, b), [_r(3, 4), _r(3, 4, seed=1)]),
    "sum_dim": (lambda a: a.sum(1), [_r(3, 4)]),
    "sum_all": (lambda a: a.sum(), [_r(3, 4)]),
    "mean_keepdim": (lambda a: a.mean(0, keepdim=True), [_r(3, 4)]),
    "var": (lambda a: a.var(1), [_r(3, 4)]),
    "cumsum": (lambda a: a.cumsum(1), [_r(2, 3)]),
    "shape_chain": (lambda a: a.T.reshape(2, 6)[1:, ::2].unsqueeze(0).expand(3, 1, 3),
                    [_r(3, 4)]),
    "permute_flip": (lambda a: a.permute(2, 0, 1).flip([0]).flatten(), [_r(2, 3, 2)]),
    "split_chunk": (lambda a: a.split([1, 3], 1)[1] * a.chunk(2, 1)[0].sum(), [_r(3, 4)]),
    "tril_narrow": (lambda a: a.tril().narrow(0, 1, 2), [_r(3, 3)]),
    "cat": (lambda a, b: torch.cat([a, b], 1), [_r(3, 4), _r(3, 2, seed=1)]),
    "stack": (lambda a, b: torch.stack([a, b], 1), [_r(3, 4), _r(3, 4, seed=1)]),
    "pad": (lambda a: F.pad(a, (1, 2, 0, 1)), [_r(2, 3, 3)]),
    "pad_replicate": (lambda a: F.pad(a, (1, 1, 2, 0), mode="replicate"), [_r(1, 2, 3, 3)]),
    "max_dim": (lambda a: a.max(1).values, [_r(3, 4)]),
    "min_dim_keep": (lambda a: a.min(0, keepdim=True).values, [_r(3, 4)]),
    "amax_all_many": (lambda a: a.amax(), [_r(3, 20)]),
    "max_pool": (lambda a: F.max_pool2d(a, 2), [_r(2, 3, 6, 6)]),
    "max_pool_pad": (lambda a: F.max_pool2d(a, 3, 2, 1), [_r(1, 2, 7, 7)]),
    "max_pool_after_relu_ties": (lambda a: F.max_pool2d(a.relu(), 2), [_r(1, 2, 4, 4, lo=-2, hi=0.5)]),
    "avg_pool": (lambda a: F.avg_pool2d(a, 2), [_r(2, 3, 6, 6)]),
    "avg_pool_pad": (lambda a: F.avg_pool2d(a, 3, 2, 1, count_include_pad=False),
                     [_r(1, 2, 7, 7)]),
    "adaptive_avg_pool": (lambda a: F.adaptive_avg_pool2d(a, 2), [_r(1, 2, 5, 5)]),
    "conv2d_bias": (lambda a, w, b: F.conv2d(a, w, b),
                    [_r(2, 3, 6, 6), _r(4, 3, 3, 3, seed=1), _r(4, seed=2)]),
    "conv2d_stride_pad": (lambda a, w: F.conv2d(a, w, None, 2, 1),
                          [_r(2, 3, 7, 7), _r(4, 3, 3, 3, seed=1)]),
    "conv2d_dilation_same": (lambda a, w: F.conv2d(a, w, None, 1, "same", 2),
                             [_r(1, 2, 6, 6), _r(3, 2, 2, 2, seed=1)]),
    "conv2d_groups": (lambda a, w: F.conv2d(a, w, None, 1, 1, 1, 2),
                      [_r(1, 4, 5, 5), _r(4, 2, 3, 3, seed=1)]),
    "conv2d_unbatched": (lambda a, w: F.conv2d(a, w), [_r(2, 4, 4), _r(3, 2, 2, 2, seed=1)]),
    "conv1d": (lambda a, w: F.conv1d(a, w, None, 1, 1), [_r(2, 3, 8), _r(4, 3, 3, seed=1)]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_gradient_matches_torch_2_parties(name):
    fn, inputs = CASES[name]
    errs = compare_grads(fn, inputs, parties=2)
    assert errs["out"] <= ATOL, f"{name}: forward error {errs['out']:.3g}"
    for i, e in enumerate(errs["grads"]):
        assert e is not None and e <= ATOL, f"{name}: grad of input {i} error {e:.3g}"


@pytest.mark.parametrize("name", ["linear", "relu", "max_pool", "conv2d_stride_pad", "cat",
                                  "where_secret", "mul_broadcast", "amax_all_many"])
def test_gradient_matches_torch_3_parties(name):
    fn, inputs = CASES[name]
    errs = compare_grads(fn, inputs, parties=3, seed=3)
    assert errs["out"] <= ATOL and max(errs["grads"]) <= ATOL, errs


@pytest.mark.parametrize("name", ["linear", "relu"])
def test_gradient_matches_torch_5_parties(name):
    fn, inputs = CASES[name]
    errs = compare_grads(fn, inputs, parties=5, seed=5)
    assert errs["out"] <= ATOL and max(errs["grads"]) <= ATOL, errs


@pytest.mark.parametrize("name", ["linear", "max_pool", "conv2d_bias"])
def test_gradient_under_reference_protocol(name):
    fn, inputs = CASES[name]
    errs = compare_grads(fn, inputs, parties=2, protocol="insecure_reference")
    assert errs["out"] <= ATOL and max(errs["grads"]) <= ATOL, errs


def test_public_operand_gets_no_gradient_and_secret_one_does():
    x, w = _r(4, 3), _r(3, 2, seed=1)
    errs = compare_grads(lambda a, b: (a @ b).relu(), [x, w], secret=[False, True])
    assert errs["grads"][0] is None and errs["grads"][1] <= ATOL


def test_only_inputs_that_require_grad_get_one():
    x, w = _r(4, 3), _r(3, 2, seed=1)
    errs = compare_grads(lambda a, b: a @ b, [x, w], requires_grad=[False, True])
    assert errs["grads"][0] is None and errs["grads"][1] <= ATOL
