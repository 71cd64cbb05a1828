"""veil.secure runs the ops issue 10 added (captured by torch.export) like eager torch.

One model per op family, compared with plaintext torch by veil.compile.evaluate.compare at
2 and 3 parties. Tolerance 2e-3 (norms add a sqrt, relative error ~1e-4).
"""

from __future__ import annotations

import pytest
import torch

from veil.compile.evaluate import compare

I = torch.tensor([[1, 0], [2, 1], [3, 3]])


class _Fn(torch.nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn
        self.w = torch.nn.Parameter(torch.linspace(-1, 1, 4))     # makes every op secret

    def forward(self, x):
        return self.fn(x * self.w)


MODELS = {
    "scatter_src": lambda x: x.scatter(1, I, x[:, :2]),
    "scatter_value": lambda x: x.scatter(1, I, 0.5),
    "scatter_add": lambda x: x.scatter_add(1, I, x[:, 1:3]),
    "index_add": lambda x: x.index_add(0, torch.tensor([0, 0, 2]), x * 2),
    "take_gather_index_select": lambda x: x.take(I) + x.gather(1, I) + x.index_select(1, I[0]),
    "prod": lambda x: x.prod(1) + x[:2, :2].prod(),
    "norms": lambda x: torch.stack([x.norm(dim=1), x.norm(1, dim=1),
                                    torch.linalg.vector_norm(x, float("inf"), dim=1)]),
    "std_trace_dot_outer_kron": lambda x: x.std(1).sum() + x[:, :3].trace() +
        torch.dot(x[0], x[1]) + torch.outer(x[0], x[1]).sum() + torch.kron(x[:2, :2], x[1:, :2]).sum(),
    "all_any": lambda x: torch.stack([(x > -1).all(1), (x > 1).any(1)]).float() + (x > 0).any(),
    "rounding": lambda x: torch.stack([x.floor(), x.ceil(), x.trunc(), (x * 4).round(), x.frac(),
                                       x // 0.5, x % 0.75, torch.fmod(x, 0.5),
                                       torch.div(x, 3, rounding_mode="trunc")]),
    "trig": lambda x: torch.stack([x.sin(), torch.cos(x * 3), torch.tan(x * 0.5), x.atan(),
                                   torch.atan2(x, x.flip(0) + 0.1), x.sinh(), x.cosh(),
                                   torch.exp2(x), torch.log2(x.abs() + 0.5),
                                   torch.log10(x * x + 1), x.expm1(), x.abs().log1p(),
                                   torch.logaddexp(x, x.flip(1)),
                                   torch.pow(x.abs() + 0.5, x), torch.pow(2.0, x)]),
    "hardtanh": lambda x: torch.nn.functional.hardtanh(x, -0.5, 0.75),
    "losses": lambda x: torch.nn.functional.l1_loss(x, x.flip(0)) +
        torch.nn.functional.smooth_l1_loss(x, x.flip(1), beta=0.5) +
        torch.nn.functional.huber_loss(x, x * 0.5, delta=0.8),
}


@pytest.mark.parametrize("parties", [2, 3])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_secure_matches_torch(name, parties):
    x = torch.empty(3, 4).uniform_(-2, 2, generator=torch.Generator().manual_seed(7))
    r = compare(_Fn(MODELS[name]), (x,), parties=parties)
    assert r.max_abs_error <= 2e-3, f"{name}: max abs error {r.max_abs_error:.3g}"


@pytest.mark.parametrize("layer, shape", [
    (torch.nn.MaxPool2d(3, 2, ceil_mode=True), (1, 2, 8, 8)),
    (torch.nn.MaxPool2d(2, padding=1, dilation=2), (1, 2, 7, 7)),
    (torch.nn.AvgPool2d(3, 2, ceil_mode=True), (1, 2, 8, 8)),
    (torch.nn.Conv3d(2, 3, 2, stride=(1, 2, 2)), (1, 2, 4, 6, 6)),
])
def test_secure_runs_pool_options_and_conv3d(layer, shape):
    from veil.compile.evaluate import compare
    torch.manual_seed(0)
    x = torch.randn(*shape)
    r = compare(torch.nn.Sequential(layer, torch.nn.Flatten()), (x,))
    assert r.max_abs_error < 2e-3, r.max_abs_error
