"""Secure inference workloads (issue: secure inference of unmodified PyTorch models).

Two parties: the model at party 0, the input at party 1. Capture, graph broadcast and
weight sharing happen before the timer; the timer covers the secure forward only.
Anchors (from the issue): CrypTen LeNet-5 b16 1.45 s, 113 rounds, 176 MB/party;
ResNet-18 2.8 s, 554 rounds, 235 MB; d128 encoder layer 0.41 s, 160 rounds; BERT-base
layer 2.81 s, 171 rounds, 310 MB (ReLU instead of GELU). SPU: ResNet-18 8.46 s; BERT-base
layer with GELU 7.8 s.
"""

from __future__ import annotations

import torch

import veil
from ..compile import zoo
from .registry import Workload, register_workload


def _make(build, shape, seed):
    def make():
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            model = build().eval()
        x = torch.randn(*shape, generator=torch.Generator().manual_seed(seed))
        return {"model": model, "x": x}
    return make


def _plain(inp):
    with torch.no_grad():
        return inp["model"](inp["x"])


def _secure(inp, timer):
    r = veil.rank()
    m = veil.secure(inp["model"] if r == 0 else None, owner=0,
                    example_input=inp["x"] if r == 0 else None)
    x = veil.tensor(inp["x"] if r == 1 else None, owner=1)
    with timer():
        out = m(x)
    return out


def _register(name, build, shape, note, seed=0):
    register_workload(Workload(name, "inference", _make(build, shape, seed), _plain, _secure,
                               parties=(2,), note=note))


_register("lenet5 b16 28x28", zoo.lenet5, (16, 1, 28, 28),
          "CrypTen: 1.45 s, 113 rounds, 176 MB/party")
_register("resnet18 b1 3x32x32", zoo.ResNet18, (1, 3, 32, 32),
          "CrypTen: 2.8 s, 554 rounds, 235 MB; SPU: 8.46 s")
_register("encoder layer d128 h4 ffn512 s32",
          lambda: zoo.transformer_encoder_layer(128, 4, 512, "relu"), (1, 32, 128),
          "CrypTen: 0.41 s, 160 rounds")
_register("bert-base layer relu d768 s128",
          lambda: zoo.transformer_encoder_layer(768, 12, 3072, "relu"), (1, 128, 768),
          "CrypTen (ReLU): 2.81 s, 171 rounds, 310 MB")
_register("bert-base layer gelu d768 s128",
          lambda: zoo.transformer_encoder_layer(768, 12, 3072, "gelu"), (1, 128, 768),
          "SPU (GELU): 7.8 s")
