"""Pooling with every torch option (max_pool1d/2d/3d with padding + dilation, ceil_mode,
return_indices; adaptive_max_pool1d/2d; avg_pool1d/2d/3d with ceil_mode, count_include_pad,
divisor_override), conv3d and conv_transpose1d/2d against torch, every protocol at 2 and 3
parties; gradients; veil.secure for the 3-d / adaptive ones.

Tolerances: max pooling moves values (exact up to the encoding, 2e-5); averages and
convolutions 1e-3 (16 fractional bits, values ~N(0, 1)).
"""

from __future__ import annotations

import functools

import pytest
import torch
import torch.nn.functional as F

import veil
from veil.autograd.check import compare_grads
from veil.compile.evaluate import compare
from helpers import PROTOCOLS, assert_close, share_from

G = torch.Generator().manual_seed(3)
I1 = torch.randn(2, 3, 9, generator=G)
I2 = torch.randn(2, 2, 7, 8, generator=G)
I3 = torch.randn(1, 2, 5, 6, 5, generator=G)
W3 = torch.randn(4, 1, 2, 3, 2, generator=G)
W2T = torch.randn(2, 3, 3, 3, generator=G)
W1T = torch.randn(3, 2, 3, generator=G)
E, A = 2e-5, 1e-3

CASES = {
    "max_pool2d_ceil_indices": (lambda a, w: F.max_pool2d(a["i2"], 3, 2, 1, ceil_mode=True,
                                                          return_indices=True), E),
    "max_pool2d_pad_dilation": (lambda a, w: F.max_pool2d(a["i2"], 3, 1, 1, dilation=2), E),
    "max_pool2d_plain": (lambda a, w: F.max_pool2d(a["i2"], 2), E),
    "max_pool1d": (lambda a, w: F.max_pool1d(a["i1"], 3, 2, 1, ceil_mode=True,
                                             return_indices=True), E),
    "max_pool3d": (lambda a, w: F.max_pool3d(a["i3"], 2, (1, 2, 2), (1, 0, 1),
                                             return_indices=True), E),
    "adaptive_max_pool2d": (lambda a, w: F.adaptive_max_pool2d(a["i2"], (3, 5),
                                                               return_indices=True), E),
    "adaptive_max_pool1d": (lambda a, w: F.adaptive_max_pool1d(a["i1"], 4), E),
    "avg_pool1d": (lambda a, w: F.avg_pool1d(a["i1"], 3, 2, 1, ceil_mode=True,
                                             count_include_pad=False), A),
    "avg_pool2d_ceil": (lambda a, w: F.avg_pool2d(a["i2"], 3, 2, 1, ceil_mode=True), A),
    "avg_pool3d_divisor": (lambda a, w: F.avg_pool3d(a["i3"], 2, 2, 1, ceil_mode=True,
                                                     divisor_override=3), A),
    "avg_pool3d": (lambda a, w: F.avg_pool3d(a["i3"], (3, 2, 3), 2, (1, 0, 1)), A),
    "conv3d": (lambda a, w: F.conv3d(a["i3"], w["w3"], None, (1, 2, 1), (1, 0, 1), (2, 1, 1),
                                     2), A),
    "conv_transpose2d": (lambda a, w: F.conv_transpose2d(a["i2"], w["w2t"], None, 2, 1, 1), A),
    "conv_transpose1d": (lambda a, w: F.conv_transpose1d(a["i1"], w["w1t"], None, 2, 1, 0, 1,
                                                         2), A),
}
PLAIN = {"i1": I1, "i2": I2, "i3": I3}
WEIGHTS = {"w3": W3, "w2t": W2T, "w1t": W1T}


def _torch(name):
    r = CASES[name][0](PLAIN, WEIGHTS)
    return list(r) if isinstance(r, tuple) else [r]


def _job():
    a = {k: share_from(v, 0) for k, v in PLAIN.items()}
    w = {k: share_from(v, 1) for k, v in WEIGHTS.items()}
    out = {}
    for name, (fn, _) in CASES.items():
        r = fn(a, w)
        out[name] = [t.reveal() for t in r] if isinstance(r, tuple) else [r.reveal()]
    return out


@functools.lru_cache(maxsize=None)
def results(protocol, parties):
    return veil.run(_job, parties=parties, protocol=protocol, seed=31)


@pytest.mark.parametrize("parties", [2, 3])
@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_torch(case, protocol, parties):
    want = _torch(case)
    for r, got in enumerate(results(protocol, parties)):
        for g, w in zip(got[case], want):
            assert_close(g, w, CASES[case][1], f"{case} at party {r}")
            assert g.dtype == w.dtype, f"{case}: dtype {g.dtype} != {w.dtype}"


GRADS = {
    "max_pool2d_ceil": (lambda a: F.max_pool2d(a, 3, 2, 1, ceil_mode=True), [I2]),
    "max_pool2d_pad_dilation": (lambda a: F.max_pool2d(a, 3, 1, 1, dilation=2), [I2]),
    "max_pool3d": (lambda a: F.max_pool3d(a, 2), [I3]),
    "adaptive_max_pool2d": (lambda a: F.adaptive_max_pool2d(a, (3, 5)), [I2]),
    "avg_pool1d": (lambda a: F.avg_pool1d(a, 3, 2, 1, ceil_mode=True,
                                          count_include_pad=False), [I1]),
    "avg_pool3d": (lambda a: F.avg_pool3d(a, 2, 2, 1, ceil_mode=True), [I3]),
    "conv3d": (lambda a, w: F.conv3d(a, w, None, 1, 1, 1, 2), [I3, W3]),
    "conv_transpose2d": (lambda a, w, b: F.conv_transpose2d(a, w, b, 2, 1, 1, 2),
                         [torch.randn(2, 4, 5, 5, generator=G), torch.randn(4, 3, 3, 3, generator=G),
                          torch.randn(6, generator=G)]),
    "conv_transpose1d": (lambda a, w: F.conv_transpose1d(a, w, None, 2, 1), [I1, W1T]),
}


@pytest.mark.parametrize("name", sorted(GRADS))
def test_gradient_matches_torch(name):
    fn, inputs = GRADS[name]
    errs = compare_grads(fn, inputs, parties=2)
    assert errs["out"] <= A and max(errs["grads"]) <= A, errs


class _Pools(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.linspace(0.5, 1.5, 5))

    def forward(self, x):
        y = x * self.w
        return F.max_pool3d(y, 2, 1).sum() + F.avg_pool3d(y, 2, 1, ceil_mode=True).sum() + \
            F.adaptive_max_pool2d(y[:, 0], (2, 3)).sum()


@pytest.mark.parametrize("parties", [2, 3])
def test_secure_3d_and_adaptive_pools(parties):
    r = compare(_Pools(), (I3,), parties=parties)
    assert r.max_abs_error <= 2e-3, r.max_abs_error
