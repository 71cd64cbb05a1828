"""Core engine workloads (issue: core engine): mul, matmul, relu, x > y, MLP."""

from __future__ import annotations

import torch

import veil
from .registry import Workload, register_workload


def _gen(seed: int):
    return torch.Generator().manual_seed(seed)


def _two_inputs(shape_a, shape_b, lo=-1.0, hi=1.0):
    def make():
        g = _gen(0)
        return {"x": torch.empty(shape_a).uniform_(lo, hi, generator=g),
                "y": torch.empty(shape_b).uniform_(lo, hi, generator=g)}
    return make


def _share_xy(inp):
    r = veil.rank()
    x = veil.tensor(inp["x"] if r == 0 else None, owner=0)
    y = veil.tensor(inp["y"] if r == 1 else None, owner=1)
    return x, y


def _secure_binary(op):
    def run(inp, timer):
        x, y = _share_xy(inp)
        with timer():
            out = op(x, y)
        return out
    return run


register_workload(Workload(
    "mul 1M", "core", _two_inputs((1_000_000,), (1_000_000,)),
    lambda i: i["x"] * i["y"], _secure_binary(lambda x, y: x * y)))
register_workload(Workload(
    "matmul 256x256", "core", _two_inputs((256, 256), (256, 256)),
    lambda i: i["x"] @ i["y"], _secure_binary(lambda x, y: x @ y)))
register_workload(Workload(
    "relu 100k", "core", _two_inputs((100_000,), (1,)),
    lambda i: torch.relu(i["x"]), _secure_binary(lambda x, y: x.relu())))
register_workload(Workload(
    "x > y 100k", "core", _two_inputs((100_000,), (100_000,)),
    lambda i: (i["x"] > i["y"]).float(), _secure_binary(lambda x, y: x > y)))


def _mlp_make():
    g = _gen(1)
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(784, 512), torch.nn.ReLU(),
                                torch.nn.Linear(512, 512), torch.nn.ReLU(),
                                torch.nn.Linear(512, 10))
    return {"params": [p.detach().clone() for p in model.parameters()],
            "x": torch.empty(64, 784).uniform_(0, 1, generator=g)}


def _mlp_plain(inp):
    w1, b1, w2, b2, w3, b3 = inp["params"]
    h = torch.relu(inp["x"] @ w1.T + b1)
    h = torch.relu(h @ w2.T + b2)
    return h @ w3.T + b3


def _mlp_secure(inp, timer):
    r = veil.rank()
    params = [veil.tensor(p if r == 0 else None, owner=0) for p in inp["params"]]
    x = veil.tensor(inp["x"] if r == 1 else None, owner=1)
    w1, b1, w2, b2, w3, b3 = params
    with timer():
        h = (x @ w1.T + b1).relu()
        h = (h @ w2.T + b2).relu()
        out = h @ w3.T + b3
    return out


register_workload(Workload("mlp 784-512-512-10 b64", "core", _mlp_make, _mlp_plain, _mlp_secure,
                           note="weights at party 0, input at party 1"))

# What the settings of docs/numerics.md cost. Truncation is exact by default at every
# party count (1 round + 8 bytes per element and peer per truncation, never fails inside
# the range); these rows price the 2-party opt-in truncation="local" (0 rounds, but fails
# silently with probability ~|x*y|*2^-32 per product), so they are 2-party only.
_LOCAL = veil.Config(truncation="local")
register_workload(Workload(
    "mul 1M truncation=local", "core", _two_inputs((1_000_000,), (1_000_000,)),
    lambda i: i["x"] * i["y"], _secure_binary(lambda x, y: x * y), parties=(2,),
    extra={"config": _LOCAL}))
register_workload(Workload(
    "mlp 784-512-512-10 b64 truncation=local", "core", _mlp_make, _mlp_plain, _mlp_secure,
    parties=(2,), note="weights at party 0, input at party 1", extra={"config": _LOCAL}))
# compare_bits=32 (the default before issue 9): 4 bytes less per compared element, but
# exact only for |x - y| < 32768, so the safe range is |x| < 16384.
register_workload(Workload(
    "x > y 100k compare_bits=32", "core", _two_inputs((100_000,), (100_000,)),
    lambda i: (i["x"] > i["y"]).float(), _secure_binary(lambda x, y: x > y),
    extra={"config": veil.Config(compare_bits=32)}))
