"""sin/cos/tan/atan/atan2, sinh/cosh, exp2/log2/log10/expm1/log1p, logaddexp and pow with a
tensor exponent: the cases docs/functions.md's "More functions" table is generated from,
with fewer points, at 2 and 3 parties and under the reference protocol; gradients against
torch autograd; the table is present and lists every case.
"""

from __future__ import annotations

import pathlib

import pytest
import torch

from veil.autograd.check import compare_grads
from veil.functions import accuracy as A

BY_NAME = {c.name: c for c in A.MORE_CASES}


@pytest.mark.parametrize("parties", [2, 3])
@pytest.mark.parametrize("name", sorted(BY_NAME))
def test_meets_the_documented_target(name, parties):
    case = BY_NAME[name]
    r = A.measure(case, parties=parties, n=600, seed=parties)
    if case.target is None:
        return
    if case.metric == "rel" and r.get("holds_above") is not None and r["holds_above"] > 0:
        # the documented exception: below ~0.015 the fixed-point ulp dominates relative error
        assert r["holds_above"] < 0.02, r
    else:
        assert r["meets"], f"{name}: error {r['error']:.3g} > target {case.target}"


@pytest.mark.parametrize("name", ["sin, large inputs", "atan2", "logaddexp"])
def test_reference_protocol_agrees(name):
    from veil.config import Config
    case = BY_NAME[name]
    import veil

    x = case.inputs(200, Config().frac_bits, 1)

    def party():
        t = veil.tensor(x if veil.rank() == 0 else None, owner=0)
        return case.secure(t).reveal()
    got = veil.run(party, parties=2, protocol="insecure_reference", seed=0)[0]
    assert (got.double() - case.ref(x)).abs().max() <= 1e-3


def _r(*shape, lo=-2.0, hi=2.0, seed=0):
    return torch.empty(shape).uniform_(lo, hi, generator=torch.Generator().manual_seed(seed))


GRADS = {
    "sin": (lambda a: a.sin(), [_r(3, 4, lo=-6, hi=6)]),
    "cos": (lambda a: torch.cos(a), [_r(3, 4, lo=-6, hi=6)]),
    "tan": (lambda a: a.tan(), [_r(3, 4, lo=-1, hi=1)]),
    "atan": (lambda a: torch.atan(a), [_r(3, 4, lo=-5, hi=5)]),
    "atan2": (lambda y, x: torch.atan2(y, x), [_r(3, 4), _r(3, 4, seed=1)]),
    "sinh_cosh": (lambda a: a.sinh() + a.cosh(), [_r(3, 4)]),
    "exp2_log2_log10": (lambda a: torch.exp2(a) + (a * a + 1).log2() + (a * a + 1).log10(),
                        [_r(3, 4)]),
    "expm1_log1p": (lambda a: a.expm1() + (a * a).log1p(), [_r(3, 4)]),
    "logaddexp": (lambda a, b: torch.logaddexp(a, b), [_r(3, 4), _r(3, 4, seed=1)]),
    "pow_tensor": (lambda a, b: (a * a + 0.5) ** b, [_r(3, 4), _r(3, 4, seed=1)]),
}


@pytest.mark.parametrize("name", sorted(GRADS))
def test_gradient_matches_torch(name):
    fn, inputs = GRADS[name]
    errs = compare_grads(fn, inputs, parties=2)
    assert errs["out"] <= 5e-3, f"{name}: forward error {errs['out']:.3g}"
    for i, e in enumerate(errs["grads"]):
        assert e is not None and e <= 5e-3, f"{name}: grad of input {i} error {e:.3g}"


def test_docs_table_lists_every_case():
    doc = (pathlib.Path(__file__).resolve().parents[1] / "docs" / "functions.md").read_text()
    begin, end = A.MARKERS["more"]
    table = doc[doc.index(begin):doc.index(end)]
    for case in A.MORE_CASES:
        assert f"| {case.name} |" in table, "run: python -m veil.functions.accuracy --only more --docs"


def test_sin_error_does_not_grow_with_the_input():
    """The range reduction is exact: sin at 30000 is as accurate as at 3."""
    small = A.measure(BY_NAME["sin"], n=400)["max_abs"]
    large = A.measure(BY_NAME["sin, large inputs"], n=400)["max_abs"]
    assert large <= 2 * small + 2e-5, (small, large)
