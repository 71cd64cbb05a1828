"""Secure inference of convolutional and MLP models against plaintext torch.

Weights at party 0, inputs at party 1 (as `veil.secure` is meant to be used). Tolerance:
fixed point with 16 fractional bits and local truncation errs by a few 1e-5 per layer on
these small, well-scaled nets; 1e-3 leaves room for depth without hiding a wrong rule.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from veil.compile import zoo
from veil.compile.evaluate import compare

ATOL = 1e-3


def _randomise_bn(model):
    """Non-trivial running statistics, so that folding BatchNorm is really tested."""
    g = torch.Generator().manual_seed(3)
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            m.running_mean.uniform_(-0.5, 0.5, generator=g)
            m.running_var.uniform_(0.5, 2.0, generator=g)
            m.weight.data.uniform_(0.5, 1.5, generator=g)
            m.bias.data.uniform_(-0.2, 0.2, generator=g)
    return model


def _x(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("parties,protocol", [(2, "semi2k"), (3, "semi2k"), (5, "semi2k"), (3, "rep3")])
def test_mlp(parties, protocol):
    torch.manual_seed(0)
    r = compare(zoo.mlp((20, 16, 16, 4)), _x(3, 20), parties=parties, protocol=protocol)
    assert r.max_abs_error <= ATOL


@pytest.mark.parametrize("parties,protocol", [(2, "semi2k"), (3, "semi2k"), (3, "rep3")])
def test_lenet5(parties, protocol):
    torch.manual_seed(1)
    r = compare(zoo.lenet5(), _x(2, 1, 28, 28), parties=parties, protocol=protocol)
    assert r.max_abs_error <= ATOL


@pytest.mark.parametrize("parties,bn,protocol", [(2, "default", "semi2k"), (2, "random", "semi2k"),
                                                 (3, "random", "semi2k"), (3, "random", "rep3")])
def test_resnet18_cifar_small(parties, bn, protocol):
    torch.manual_seed(2)
    net = zoo.ResNet18(width=4)
    if bn == "random":
        _randomise_bn(net)
    r = compare(net, _x(1, 3, 16, 16), parties=parties, protocol=protocol)
    assert r.max_abs_error <= ATOL


@pytest.mark.parametrize("parties,protocol", [(2, "semi2k"), (3, "semi2k"), (3, "rep3")])
def test_mobilenet_v2_style(parties, protocol):
    torch.manual_seed(3)
    net = _randomise_bn(zoo.mobilenet_v2(width=4))
    r = compare(net, _x(2, 3, 16, 16), parties=parties, protocol=protocol)
    assert r.max_abs_error <= ATOL


LAYERS = {
    "conv2d_stride_pad_dilation": (nn.Conv2d(4, 6, 3, stride=2, padding=2, dilation=2),
                                   (2, 4, 9, 9)),
    "conv2d_groups": (nn.Conv2d(4, 6, (3, 1), padding=(1, 0), groups=2), (2, 4, 7, 7)),
    "conv2d_depthwise": (nn.Conv2d(4, 4, 3, padding=1, groups=4, bias=False), (2, 4, 7, 7)),
    "conv1d_bn": (nn.Sequential(nn.Conv1d(4, 6, 3, stride=2, padding=2, dilation=2, groups=2),
                                nn.BatchNorm1d(6)), (2, 4, 11)),
    "conv_transpose2d": (nn.Sequential(nn.ConvTranspose2d(4, 3, 3, stride=2, padding=1,
                                                          output_padding=1), nn.BatchNorm2d(3)),
                         (2, 4, 5, 5)),
    "conv_transpose2d_groups_dilation": (nn.ConvTranspose2d(4, 6, (3, 2), stride=(2, 1),
                                                            padding=(0, 1), dilation=(1, 2),
                                                            groups=2), (1, 4, 5, 5)),
    "linear_bn1d_twice": (nn.Sequential(nn.Linear(5, 4), nn.BatchNorm1d(4), nn.ReLU(),
                                        nn.BatchNorm1d(4)), (3, 5)),
    "pools_flatten_dropout": (nn.Sequential(nn.MaxPool2d(3, 2, 1),
                                            nn.AvgPool2d(2, padding=1, count_include_pad=False),
                                            nn.AdaptiveAvgPool2d((2, 3)), nn.Flatten(),
                                            nn.Dropout(0.5)), (2, 3, 13, 13)),
    "relu6_leaky_relu": (nn.Sequential(nn.Linear(6, 6), nn.ReLU6(), nn.Linear(6, 6),
                                       nn.LeakyReLU(0.1)), (4, 6)),
    "upsample_pixel_shuffle_reflect_pad_instance_norm": (nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1, padding_mode="reflect"), nn.Upsample(scale_factor=2),
        nn.Upsample(scale_factor=1.5, mode="bilinear"), nn.PixelShuffle(2),
        nn.InstanceNorm2d(1, affine=True)), (1, 3, 4, 4)),
    "elu_softplus_mish_prelu": (nn.Sequential(nn.Linear(6, 6), nn.ELU(), nn.Linear(6, 6),
                                              nn.Softplus(), nn.Mish(), nn.PReLU()), (4, 6)),
}


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_layer(name):
    torch.manual_seed(4)
    net, shape = LAYERS[name]
    r = compare(_randomise_bn(net), _x(*shape, seed=5) * 2, parties=2)
    assert r.max_abs_error <= ATOL


class _Residual(nn.Module):
    """Residual adds, cat/split/chunk, slicing and indexing with public indices, mean/sum."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(6, 6), nn.Linear(3, 3)

    def forward(self, x):
        h = self.a(x) + x
        left, right = h.split(3, dim=-1)
        c1, c2 = h.chunk(2, dim=0)
        z = torch.cat([self.b(right), left * 0.5], dim=-1)
        z = z.reshape(2, 2, 6).permute(1, 0, 2).transpose(0, 2)[:, 1:, :]
        picked = h[torch.tensor([3, 0]), 2:5]
        return (z.mean(dim=(0, 2)).sum() + picked.sum(dim=1) + c1.sum() - c2.mean(0)[:2],
                h.flatten()[::3])


@pytest.mark.parametrize("parties,protocol", [(2, "semi2k"), (3, "semi2k"), (3, "rep3")])
def test_residual_and_shape_ops(parties, protocol):
    torch.manual_seed(5)
    r = compare(_Residual(), _x(4, 6), parties=parties, protocol=protocol)
    assert r.max_abs_error <= ATOL
    assert isinstance(r.secure, tuple) and len(r.secure) == 2


def test_public_input_runs_first_layer_against_public_values():
    torch.manual_seed(6)
    net = zoo.mlp((5, 4, 2))
    x = _x(3, 5)
    r = compare(net, x, public_inputs=("input",))
    assert r.max_abs_error <= ATOL
