"""Smooth-function workloads (issue: smooth functions on secret tensors).

Elementwise functions on 100,000 values, softmax over 1000 rows of 100, layer_norm over
128 rows of 768, and one transformer encoder layer (d_model 128, 4 heads, FFN 512, seq
32, post-norm, GELU) written with these ops: weights at party 0, input at party 1.
Anchors from the issue (CrypTen / SPU): exp 8 / 17 rounds; reciprocal 38 / 36 rounds,
0.445 / 0.61 s; sigmoid 23 / 53 rounds, 0.285 / 0.72 s; sqrt 18 / 35 rounds; softmax
1000x100 116 / 127 rounds, 0.777 / 0.96 s; encoder layer 0.41 s and 160 rounds (CrypTen),
0.57 s (SPU).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

import veil
from .registry import Workload, register_workload

N = 100_000


def _gen(seed: int):
    return torch.Generator().manual_seed(seed)


def _uniform(shape, lo, hi, seed=0, log=False):
    def make():
        g = _gen(seed)
        if log:
            u = torch.empty(shape).uniform_(math.log(lo), math.log(hi), generator=g)
            return {"x": u.exp()}
        return {"x": torch.empty(shape).uniform_(lo, hi, generator=g)}
    return make


def _unary(fn):
    def run(inp, timer):
        x = veil.tensor(inp["x"] if veil.rank() == 0 else None, owner=0)
        with timer():
            out = fn(x)
        return out
    return run


def _register(name, make, plain, secure, note=""):
    register_workload(Workload(name, "functions", make, lambda i: plain(i["x"]),
                               _unary(secure), note=note))


_register("exp 100k", _uniform((N,), -16, 10), torch.exp, lambda x: x.exp(),
          "x in [-16, 10]; error is absolute (outputs up to 2.2e4)")
_register("exp square 100k", _uniform((N,), -16, 10), torch.exp,
          lambda x: x.exp(approx="square"), "approx='square': no saturation")
_register("reciprocal 100k", _uniform((N,), 1e-2, 1e4, log=True), torch.reciprocal,
          lambda x: x.reciprocal(), "x log-uniform in [1e-2, 1e4]; any sign supported")
_register("reciprocal positive 100k", _uniform((N,), 1e-2, 1e4, log=True), torch.reciprocal,
          lambda x: x.reciprocal(positive=True), "positive=True: half the comparisons")
_register("sigmoid 100k", _uniform((N,), -30, 30), torch.sigmoid, lambda x: x.sigmoid())
_register("sqrt 100k", _uniform((N,), 1e-3, 3e4, log=True), torch.sqrt, lambda x: x.sqrt(),
          "x log-uniform in [1e-3, 3e4]")
_register("gelu 100k", _uniform((N,), -30, 30), F.gelu, lambda x: x.gelu())
_register("softmax 1000x100", _uniform((1000, 100), -20, 20), lambda x: torch.softmax(x, -1),
          lambda x: x.softmax(-1))


def _ln_make():
    return {"x": torch.randn(128, 768, generator=_gen(3)) * 3}


_register("layer_norm 128x768", _ln_make, lambda x: F.layer_norm(x, (768,)),
          lambda x: x.layer_norm((768,)))


# -- one transformer encoder layer ------------------------------------------------------------
D, HEADS, FFN, SEQ = 128, 4, 512, 32


def _linear_init(g, fan_in, fan_out):
    bound = 1 / math.sqrt(fan_in)
    w = torch.empty(fan_in, fan_out).uniform_(-bound, bound, generator=g)
    b = torch.empty(fan_out).uniform_(-bound, bound, generator=g)
    return w, b


def _encoder_make():
    g = _gen(7)
    p = {}
    p["w_qkv"], p["b_qkv"] = _linear_init(g, D, 3 * D)
    p["w_o"], p["b_o"] = _linear_init(g, D, D)
    p["w_1"], p["b_1"] = _linear_init(g, D, FFN)
    p["w_2"], p["b_2"] = _linear_init(g, FFN, D)
    p["ln1_w"], p["ln1_b"] = 1 + 0.1 * torch.randn(D, generator=g), 0.1 * torch.randn(D, generator=g)
    p["ln2_w"], p["ln2_b"] = 1 + 0.1 * torch.randn(D, generator=g), 0.1 * torch.randn(D, generator=g)
    return {"params": p, "x": torch.randn(SEQ, D, generator=g)}


def encoder_layer(x, p, softmax=lambda s: s.softmax(-1), gelu=lambda h: F.gelu(h)):
    """Post-norm encoder layer; runs on torch tensors and on SecretTensors alike."""
    dh = D // HEADS
    qkv = x @ p["w_qkv"] + p["b_qkv"]                                  # (SEQ, 3D)
    q, k, v = (qkv[:, i * D:(i + 1) * D].reshape(SEQ, HEADS, dh).transpose(0, 1)
               for i in range(3))                                       # (HEADS, SEQ, dh)
    scores = (q @ k.transpose(-1, -2)) * (1 / math.sqrt(dh))
    att = softmax(scores) @ v                                           # (HEADS, SEQ, dh)
    h = att.transpose(0, 1).reshape(SEQ, D) @ p["w_o"] + p["b_o"]
    h = F.layer_norm(x + h, (D,), p["ln1_w"], p["ln1_b"])
    f = gelu(h @ p["w_1"] + p["b_1"]) @ p["w_2"] + p["b_2"]
    return F.layer_norm(h + f, (D,), p["ln2_w"], p["ln2_b"])


def _encoder_secure(inp, timer):
    r = veil.rank()
    p = {k: veil.tensor(v if r == 0 else None, owner=0) for k, v in inp["params"].items()}
    x = veil.tensor(inp["x"] if r == 1 else None, owner=1)
    with timer():
        out = encoder_layer(x, p)
    return out


register_workload(Workload(
    "encoder layer d128 h4 ffn512 seq32", "functions", _encoder_make,
    lambda i: encoder_layer(i["x"], i["params"]), _encoder_secure,
    note="weights at party 0, input at party 1; softmax, GELU, layer_norm exact"))
