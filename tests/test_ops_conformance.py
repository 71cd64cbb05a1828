"""Every core op against torch, for every protocol at 2, 3 and 5 parties.

One veil.run per (protocol, parties) computes every case; each case is its own test.
Tolerances: fixed point has 16 fractional bits (ulp 1.5e-5); values here are at most ~3,
so a product is within a few ulp and a length-8 dot product within ~1e-4. We use 1e-3
for arithmetic, exact equality for comparisons, indices and integer ops.
"""

from __future__ import annotations

import functools

import pytest
import torch
import torch.nn.functional as F

import veil
from helpers import PROTOCOL_GRID, assert_close, share_from, uniform

X = uniform((4, 6), seed=1)
Y = uniform((4, 6), seed=2)
W = uniform((6, 3), seed=3)
B3 = uniform((2, 4, 6), seed=4)
IMG = uniform((2, 4, 9, 9), -1, 1, seed=5)
KER = uniform((6, 2, 3, 3), -1, 1, seed=6)
SEQ = uniform((2, 4, 11), -1, 1, seed=7)
KER1 = uniform((3, 4, 3), -1, 1, seed=8)
I1 = torch.randint(-50, 50, (4, 6), generator=torch.Generator().manual_seed(9))
I2 = torch.randint(-50, 50, (4, 6), generator=torch.Generator().manual_seed(10))
EQ_Y = torch.where(torch.arange(24).reshape(4, 6) % 3 == 0, X, Y)   # some equal entries

A = 1e-3
# name -> (veil op on dict of secrets, torch op on dict of plaintexts, atol)
CASES = {
    "add": (lambda s: s["x"] + s["y"], lambda p: p["x"] + p["y"], A),
    "sub": (lambda s: s["x"] - s["y"], lambda p: p["x"] - p["y"], A),
    "mul": (lambda s: s["x"] * s["y"], lambda p: p["x"] * p["y"], A),
    "mul_broadcast": (lambda s: s["x"] * s["y"][0], lambda p: p["x"] * p["y"][0], A),
    "neg": (lambda s: -s["x"], lambda p: -p["x"], A),
    "add_public_tensor": (lambda s: s["x"] + p_y(), lambda p: p["x"] + p["y"], A),
    "rsub_public": (lambda s: 2.5 - s["x"], lambda p: 2.5 - p["x"], A),
    "mul_public_float": (lambda s: s["x"] * 0.37, lambda p: p["x"] * 0.37, A),
    "mul_public_int": (lambda s: 3 * s["x"], lambda p: 3 * p["x"], A),
    "div_public": (lambda s: s["x"] / 7.0, lambda p: p["x"] / 7.0, A),
    "div_public_tensor": (lambda s: s["x"] / torch.tensor([1., 2., 4., 8., 3., 5.]),
                          lambda p: p["x"] / torch.tensor([1., 2., 4., 8., 3., 5.]), A),
    "square": (lambda s: s["x"].square(), lambda p: p["x"].square(), A),
    "pow3": (lambda s: s["x"] ** 3, lambda p: p["x"] ** 3, 5e-3),
    "matmul": (lambda s: s["x"] @ s["w"], lambda p: p["x"] @ p["w"], A),
    "matmul_public": (lambda s: s["x"] @ p_w(), lambda p: p["x"] @ p["w"], A),
    "rmatmul_public": (lambda s: p_w().T @ s["x"].T, lambda p: p["w"].T @ p["x"].T, A),
    "matmul_batched": (lambda s: s["b3"] @ s["w"], lambda p: p["b3"] @ p["w"], A),
    "abs": (lambda s: s["x"].abs(), lambda p: p["x"].abs(), A),
    "sign": (lambda s: s["x"].sign(), lambda p: p["x"].sign(), A),
    "relu": (lambda s: s["x"].relu(), lambda p: p["x"].relu(), A),
    "F.relu": (lambda s: F.relu(s["x"]), lambda p: F.relu(p["x"]), A),
    "lt": (lambda s: s["x"] < s["y"], lambda p: p["x"] < p["y"], 0),
    "le": (lambda s: s["x"] <= s["eq_y"], lambda p: p["x"] <= p["eq_y"], 0),
    "gt": (lambda s: s["x"] > s["y"], lambda p: p["x"] > p["y"], 0),
    "ge": (lambda s: s["x"] >= s["eq_y"], lambda p: p["x"] >= p["eq_y"], 0),
    "eq": (lambda s: s["x"] == s["eq_y"], lambda p: p["x"] == p["eq_y"], 0),
    "ne": (lambda s: s["x"] != s["eq_y"], lambda p: p["x"] != p["eq_y"], 0),
    "gt_public": (lambda s: s["x"] > 0.5, lambda p: p["x"] > 0.5, 0),
    "where": (lambda s: torch.where(s["x"] > s["y"], s["x"], s["y"] * 2),
              lambda p: torch.where(p["x"] > p["y"], p["x"], p["y"] * 2), A),
    "where_public_cond": (lambda s: torch.where(p_x() > 0, s["x"], 1.0),
                          lambda p: torch.where(p["x"] > 0, p["x"], 1.0), A),
    "clamp": (lambda s: s["x"].clamp(-1.0, 1.5), lambda p: p["x"].clamp(-1.0, 1.5), A),
    "max_all": (lambda s: s["x"].max(), lambda p: p["x"].max(), A),
    "max_dim": (lambda s: s["x"].max(dim=1).values, lambda p: p["x"].max(dim=1).values, A),
    "max_dim_keepdim": (lambda s: s["x"].max(0, keepdim=True)[0],
                        lambda p: p["x"].max(0, keepdim=True)[0], A),
    "min_dim": (lambda s: s["x"].min(dim=-1).values, lambda p: p["x"].min(dim=-1).values, A),
    "argmax": (lambda s: s["x"].argmax(dim=1), lambda p: p["x"].argmax(dim=1), 0),
    "argmax_all": (lambda s: s["x"].argmax(), lambda p: p["x"].argmax(), 0),
    "argmin": (lambda s: s["x"].argmin(dim=0), lambda p: p["x"].argmin(dim=0), 0),
    "maximum": (lambda s: torch.maximum(s["x"], s["y"]), lambda p: torch.maximum(p["x"], p["y"]), A),
    "sum": (lambda s: s["x"].sum(), lambda p: p["x"].sum(), A),
    "sum_dim": (lambda s: s["x"].sum(dim=-1, keepdim=True), lambda p: p["x"].sum(-1, keepdim=True), A),
    "mean": (lambda s: s["x"].mean(dim=0), lambda p: p["x"].mean(dim=0), A),
    "var": (lambda s: s["x"].var(dim=1), lambda p: p["x"].var(dim=1), 5e-3),
    "var_biased": (lambda s: s["x"].var(dim=1, unbiased=False), lambda p: p["x"].var(dim=1, unbiased=False), 5e-3),
    "reshape": (lambda s: s["x"].reshape(3, 8), lambda p: p["x"].reshape(3, 8), A),
    "view_flatten": (lambda s: s["b3"].flatten(1), lambda p: p["b3"].flatten(1), A),
    "transpose": (lambda s: s["b3"].transpose(0, 2), lambda p: p["b3"].transpose(0, 2), A),
    "permute": (lambda s: s["b3"].permute(2, 0, 1), lambda p: p["b3"].permute(2, 0, 1), A),
    "unsqueeze_squeeze": (lambda s: s["x"].unsqueeze(1).squeeze(1), lambda p: p["x"], A),
    "expand": (lambda s: s["x"][:1].expand(3, 6), lambda p: p["x"][:1].expand(3, 6), A),
    "cat": (lambda s: torch.cat([s["x"], s["y"]], dim=1), lambda p: torch.cat([p["x"], p["y"]], 1), A),
    "cat_public": (lambda s: torch.cat([s["x"], p_y()], dim=0), lambda p: torch.cat([p["x"], p["y"]]), A),
    "stack": (lambda s: torch.stack([s["x"], s["y"]], dim=-1), lambda p: torch.stack([p["x"], p["y"]], -1), A),
    "split": (lambda s: s["x"].split([2, 4], dim=1)[1], lambda p: p["x"].split([2, 4], dim=1)[1], A),
    "chunk": (lambda s: s["x"].chunk(2, dim=0)[0], lambda p: p["x"].chunk(2, dim=0)[0], A),
    "index": (lambda s: s["x"][1:3, ::2], lambda p: p["x"][1:3, ::2], A),
    "index_list": (lambda s: s["x"][[0, 3]], lambda p: p["x"][[0, 3]], A),
    "pad": (lambda s: F.pad(s["x"], (1, 2), value=0.5), lambda p: F.pad(p["x"], (1, 2), value=0.5), A),
    "clone": (lambda s: s["x"].clone(), lambda p: p["x"].clone(), A),
    "conv2d": (lambda s: F.conv2d(s["img"], s["ker"][:, :2].repeat(1, 2, 1, 1)[:, :4], stride=2, padding=1),
               lambda p: F.conv2d(p["img"], p["ker"][:, :2].repeat(1, 2, 1, 1)[:, :4], stride=2, padding=1), A),
    "conv2d_groups_dilation": (lambda s: F.conv2d(s["img"], s["ker"], padding=2, dilation=2, groups=2),
                               lambda p: F.conv2d(p["img"], p["ker"], padding=2, dilation=2, groups=2), A),
    "conv2d_public_weight": (lambda s: F.conv2d(s["img"], p_ker(), groups=2),
                             lambda p: F.conv2d(p["img"], p["ker"], groups=2), A),
    "conv1d": (lambda s: F.conv1d(s["seq"], s["ker1"], padding=1, stride=2),
               lambda p: F.conv1d(p["seq"], p["ker1"], padding=1, stride=2), A),
    "max_pool2d": (lambda s: F.max_pool2d(s["img"], 2), lambda p: F.max_pool2d(p["img"], 2), A),
    "max_pool2d_pad": (lambda s: F.max_pool2d(s["img"], 3, stride=2, padding=1),
                       lambda p: F.max_pool2d(p["img"], 3, stride=2, padding=1), A),
    "avg_pool2d": (lambda s: F.avg_pool2d(s["img"], 3, stride=2), lambda p: F.avg_pool2d(p["img"], 3, stride=2), A),
    "adaptive_avg_pool2d": (lambda s: F.adaptive_avg_pool2d(s["img"], (2, 3)),
                            lambda p: F.adaptive_avg_pool2d(p["img"], (2, 3)), A),
    "linear": (lambda s: F.linear(s["x"], s["w"].T, s["y"][0, :3]),
               lambda p: F.linear(p["x"], p["w"].T, p["y"][0, :3]), A),
    "int_add_mul": (lambda s: s["i1"] * s["i2"] + s["i1"], lambda p: p["i1"] * p["i2"] + p["i1"], 0),
    "int_lt": (lambda s: s["i1"] < s["i2"], lambda p: p["i1"] < p["i2"], 0),
    "int_float_mix": (lambda s: s["i1"] * s["x"], lambda p: p["i1"] * p["x"], A),
    "logical": (lambda s: (s["x"] > 0) & (s["y"] > 0) | ~(s["x"] > s["y"]),
                lambda p: (p["x"] > 0) & (p["y"] > 0) | ~(p["x"] > p["y"]), 0),
    "bool_sum": (lambda s: (s["x"] > 0).sum(), lambda p: (p["x"] > 0).sum(), 0),
}

PLAIN = {"x": X, "y": Y, "w": W, "b3": B3, "img": IMG, "ker": KER, "seq": SEQ, "ker1": KER1,
         "i1": I1, "i2": I2, "eq_y": EQ_Y}
OWNERS = {"x": 0, "y": 1, "w": 1, "b3": 0, "img": 0, "ker": 1, "seq": 0, "ker1": -1, "i1": 0,
          "i2": -1, "eq_y": -1}


def p_x():
    return X


def p_y():
    return Y


def p_w():
    return W


def p_ker():
    return KER


def _all_cases():
    n = veil.world_size()
    secrets = {k: share_from(v, OWNERS[k] % n) for k, v in PLAIN.items()}
    return {name: veil_fn(secrets).reveal() for name, (veil_fn, _, _) in CASES.items()}


@functools.lru_cache(maxsize=None)
def results(protocol: str, parties: int) -> dict:
    return veil.run(_all_cases, parties=parties, protocol=protocol, seed=11)


@pytest.mark.parametrize("protocol,parties", PROTOCOL_GRID)
@pytest.mark.parametrize("case", sorted(CASES))
def test_op_matches_torch(case, protocol, parties):
    per_party = results(protocol, parties)
    _, torch_fn, atol = CASES[case]
    want = torch_fn(PLAIN)
    for r in range(parties):
        got = per_party[r][case]
        assert_close(got, want, atol, f"{case} at party {r}")
        if isinstance(want, torch.Tensor):
            assert got.dtype == want.dtype, f"{case}: dtype {got.dtype} != torch's {want.dtype}"


CONFIG_CASES = ["mul", "matmul", "relu", "lt", "eq", "max_dim", "var", "abs"]


@pytest.mark.parametrize("config", [veil.Config(truncation="exact"), veil.Config(compare_bits=64),
                                    veil.Config(frac_bits=12, compare_bits=24),
                                    veil.Config(truncation="local")],
                         ids=["exact_trunc", "compare64", "frac12_cmp24", "local_trunc"])
@pytest.mark.parametrize("protocol,parties", [("semi2k", 2), ("semi2k", 3), ("rep3", 3)])
def test_non_default_configs_match_torch(config, protocol, parties):
    def job():
        n = veil.world_size()
        secrets = {k: share_from(v, OWNERS[k] % n) for k, v in PLAIN.items()}
        return {name: CASES[name][0](secrets).reveal() for name in CONFIG_CASES}
    got = veil.run(job, parties=parties, protocol=protocol, seed=5, config=config)[0]
    ulp_scale = 2.0 ** (16 - config.frac_bits)           # fewer bits: coarser results
    for name in CONFIG_CASES:
        _, torch_fn, atol = CASES[name]
        assert_close(got[name], torch_fn(PLAIN), atol * ulp_scale, f"{name} with {config}")
