"""The exact limb method for ring products (the CUDA path), checked bit for bit on the CPU."""

from __future__ import annotations

import doctest

import pytest
import torch
import torch.nn.functional as F

from veil import ringmm
from veil.errors import ProtocolUsageError

I64 = dict(dtype=torch.int64)


def _ring(shape, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(-2**63, 2**63 - 1, shape, generator=g, **I64)


@pytest.mark.parametrize("sa, sb", [((5, 7), (7, 3)), ((2, 4, 64), (64, 9)), ((16,), (16,)),
                                    ((3, 1, 6, 8), (2, 8, 5)), ((8,), (8, 4)), ((0, 4), (4, 2))])
def test_limb_matmul_equals_int64_matmul_on_full_range_values(sa, sb):
    a, b = _ring(sa, 1), _ring(sb, 2)
    assert torch.equal(ringmm.limb_matmul(a, b), torch.matmul(a, b))


def test_limb_matmul_is_exact_at_the_extremes():
    a = torch.full((3, 512), -2**63, **I64)
    b = torch.full((512, 2), 2**63 - 1, **I64)
    assert torch.equal(ringmm.limb_matmul(a, b), torch.matmul(a, b))
    a = torch.full((2, 4096), (1 << 16) - 1, **I64)           # every limb at its maximum
    b = torch.full((4096, 2), -1, **I64)
    assert torch.equal(ringmm.limb_matmul(a, b), torch.matmul(a, b))


@pytest.mark.parametrize("params", [{}, {"stride": 2, "padding": 1}, {"groups": 2},
                                    {"dilation": 2, "padding": "same"}])
def test_limb_conv2d_equals_int64_conv2d(params):
    x, w = _ring((2, 4, 9, 9), 3), _ring((6, 4 // params.get("groups", 1), 3, 3), 4)
    assert torch.equal(ringmm.limb_conv2d(x, w, **params), F.conv2d(x, w, **params))


def test_reductions_beyond_the_exact_bound_are_refused():
    a = torch.zeros(1, ringmm.MAX_LIMB_K + 1, **I64)
    with pytest.raises(ProtocolUsageError, match="split the reduction"):
        ringmm.limb_matmul(a, a.T)


def test_cpu_tensors_take_torchs_int64_path():
    a, b = _ring((4, 5), 5), _ring((5, 6), 6)
    assert torch.equal(ringmm.matmul(a, b), torch.matmul(a, b))


def test_docstring_example_runs():
    assert doctest.testmod(ringmm).failed == 0


@pytest.mark.parametrize("rows", [(0,), (1,), (2,), (1, 4), (5,), (2, 8), (63,), (64,),
                                  (2, 100), (300,)])
@pytest.mark.parametrize("k, n", [(16, 256), (48, 32), (2, 1)])
def test_weight_layout_products_equal_torchs(rows, k, n):
    # x @ W.t() (a linear layer's layout) takes other, faster layouts: the same ring values
    x, w = _ring((*rows, k), 7), _ring((n, k), 8)
    got = ringmm.matmul(x, w.t())
    assert got.shape == (*rows, n) and got.is_contiguous()
    assert torch.equal(got, torch.matmul(x, w.t()))
    strided = x.transpose(-1, -2).contiguous().transpose(-1, -2)      # same values
    assert torch.equal(ringmm.matmul(strided, w.t()), torch.matmul(x, w.t()))
