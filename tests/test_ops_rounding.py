"""floor / ceil / trunc / round / frac and division with rounding are *exact* on fixed
point: compared with torch on values at and one ulp (2^-16) around integers and
half-integers, where an approximate method would flip; every protocol, 2 and 3 parties.
"""

from __future__ import annotations

import functools

import pytest
import torch

import veil
from veil.autograd.check import compare_grads
from helpers import PROTOCOLS, share_from

ULP = 2.0 ** -16
_base = torch.cat([torch.arange(-6, 6.5, 0.5), torch.tensor([0.0, 100.0, -100.0, 1234.5])])
X = torch.cat([_base, _base + ULP, _base - ULP,
               torch.empty(40).uniform_(-300, 300, generator=torch.Generator().manual_seed(3))])
X = (X * 2 ** 16).round() / 2 ** 16                     # exactly representable
I = torch.randint(-1000, 1000, (60,), generator=torch.Generator().manual_seed(4))
IY = torch.tensor([1, -3, 1000, 7, -20000, 2]).repeat(10)
YT = torch.tensor([0.5, -2.0, 3.0, 0.75]).repeat(X.numel() // 4 + 1)[:X.numel()]

CASES = {
    "floor": (lambda x, i: torch.floor(x), lambda x, i: torch.floor(x)),
    "ceil": (lambda x, i: x.ceil(), lambda x, i: x.ceil()),
    "trunc": (lambda x, i: torch.trunc(x), lambda x, i: torch.trunc(x)),
    "fix": (lambda x, i: torch.fix(x), lambda x, i: torch.fix(x)),
    "round_half_even": (lambda x, i: torch.round(x), lambda x, i: torch.round(x)),
    "frac": (lambda x, i: torch.frac(x), lambda x, i: torch.frac(x)),
    "floordiv_float": (lambda x, i: x // 0.75, lambda x, i: x // 0.75),
    "floordiv_neg": (lambda x, i: torch.floor_divide(x, -2.5), lambda x, i: torch.floor_divide(x, -2.5)),
    "floordiv_tensor": (lambda x, i: x // YT, lambda x, i: x // YT),
    "remainder": (lambda x, i: x % 1.5, lambda x, i: x % 1.5),
    "remainder_neg_tensor": (lambda x, i: torch.remainder(x, -YT), lambda x, i: torch.remainder(x, -YT)),
    "fmod": (lambda x, i: torch.fmod(x, 1.5), lambda x, i: torch.fmod(x, 1.5)),
    "fmod_neg": (lambda x, i: torch.fmod(x, -0.75), lambda x, i: torch.fmod(x, -0.75)),
    "div_floor": (lambda x, i: torch.div(x, 3, rounding_mode="floor"),
                  lambda x, i: torch.div(x, 3, rounding_mode="floor")),
    "div_trunc": (lambda x, i: x.div(-3, rounding_mode="trunc"),
                  lambda x, i: x.div(-3, rounding_mode="trunc")),
    "int_floordiv": (lambda x, i: i // 7, lambda x, i: i // 7),
    "int_floordiv_neg": (lambda x, i: i // -3, lambda x, i: i // -3),
    "int_remainder": (lambda x, i: i % 7, lambda x, i: i % 7),
    "int_fmod": (lambda x, i: torch.fmod(i, 6), lambda x, i: torch.fmod(i, 6)),
    "int_div_trunc": (lambda x, i: torch.div(i, 4, rounding_mode="trunc"),
                      lambda x, i: torch.div(i, 4, rounding_mode="trunc")),
    "int_floordiv_wide_divisors": (lambda x, i: i // IY, lambda x, i: i // IY),
    "int_by_float": (lambda x, i: i // 2.5, lambda x, i: i // 2.5),
    "int_floor_is_identity": (lambda x, i: torch.floor(i), lambda x, i: torch.floor(i)),
}


def _all():
    x, i = share_from(X, 0), share_from(I, 1 % veil.world_size())
    return {k: fn(x, i).reveal() for k, (fn, _) in CASES.items()}


@functools.lru_cache(maxsize=None)
def results(protocol, parties):
    return veil.run(_all, parties=parties, protocol=protocol, seed=23)


@pytest.mark.parametrize("parties", [2, 3])
@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("case", sorted(CASES))
def test_exact_like_torch(case, protocol, parties):
    want = CASES[case][1](X, I)
    for r, got in enumerate(results(protocol, parties)):
        got = got[case]
        assert got.dtype == want.dtype, f"{case}: dtype {got.dtype} != {want.dtype}"
        # exact: the fixed-point encoding of torch's result (X and divisors are representable)
        enc = (want.double() * 2 ** 16).round() / 2 ** 16 if want.is_floating_point() else want
        bad = (got.double() != enc.double())
        assert not bad.any(), f"{case} at party {r}: {int(bad.sum())} wrong, e.g. x=" \
                              f"{X[bad][:3].tolist() if X.numel() == bad.numel() else ''} " \
                              f"got {got[bad][:3].tolist()} want {enc[bad][:3].tolist()}"


def test_gradients_follow_torch():
    x = torch.tensor([[-2.3, -0.4, 0.6], [1.7, 2.2, -1.1]])
    errs = compare_grads(lambda a: (a % 0.75) + torch.fmod(a, 1.0) * 2 + a.floor() * a +
                         torch.round(a) + a.ceil() + a.trunc(), [x])
    assert errs["out"] <= 1e-3 and errs["grads"][0] <= 1e-3, errs


def test_secret_divisor_and_bad_options_are_refused():
    def job():
        x = share_from(X, 0)
        for call, match in [(lambda: x // x, "secret divisor"),
                            (lambda: 3.0 % x, "secret divisor"),
                            (lambda: torch.fmod(X, x), "secret divisor"),
                            (lambda: x // 0.0, "division by zero"),
                            (lambda: x // 9000.0, "below 2\\^"),   # 2^13 at compare_bits=33
                            (lambda: x.div(2, rounding_mode="ceil"), "rounding_mode"),
                            (lambda: torch.round(x, decimals=2), "decimals")]:
            with pytest.raises(veil.errors.ProtocolUsageError, match=match):
                call()
        return True
    assert veil.run(job, parties=2, seed=0) == [True, True]


def test_floor_cost_is_two_truncations_one_comparison_batch_one_b2a():
    def job():
        x = share_from(X, 0)
        s0 = veil.stats()["rounds"]
        torch.floor(x)
        s1 = veil.stats()["rounds"]
        x.lt(0)
        s2 = veil.stats()["rounds"]
        return s1 - s0, s2 - s1
    floor_rounds, cmp_rounds = veil.run(job, parties=3, seed=0)[0]
    # 3 parties: each truncation is one opening round; the comparison batch, then b2a
    assert floor_rounds == 2 + cmp_rounds + 1, (floor_rounds, cmp_rounds)
