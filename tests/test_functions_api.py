"""The smooth functions as torch users reach them: torch.* / F.* dispatch, methods,
approximation modes, dtypes, protocols, and clear errors for bad input."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import veil
from veil.functions import approximations, current_approximations

from helpers import assert_close, share_from, uniform

X = uniform((3, 8), -2.0, 2.0, seed=0)
POS = uniform((3, 8), 0.5, 4.0, seed=1)

DISPATCH = [
    ("torch.exp", lambda t: torch.exp(t), X, 2e-3),
    ("torch.log", lambda t: torch.log(t), POS, 1e-3),
    ("torch.reciprocal", lambda t: torch.reciprocal(t), POS, 1e-3),
    ("torch.sqrt", lambda t: torch.sqrt(t), POS, 1e-3),
    ("torch.rsqrt", lambda t: torch.rsqrt(t), POS, 1e-3),
    ("pow 0.5", lambda t: t ** 0.5, POS, 1e-3),
    ("pow 1.5", lambda t: torch.pow(t, 1.5), POS, 2e-3),
    ("pow -2.5", lambda t: t ** -2.5, POS, 2e-3),
    ("torch.sigmoid", lambda t: torch.sigmoid(t), X, 1e-3),
    ("F.sigmoid", lambda t: F.sigmoid(t), X, 1e-3),
    ("torch.tanh", lambda t: torch.tanh(t), X, 1e-3),
    ("torch.erf", lambda t: torch.erf(t), X, 1e-3),
    ("F.gelu", lambda t: F.gelu(t), X, 1e-3),
    ("F.gelu tanh", lambda t: F.gelu(t, approximate="tanh"), X, 1e-3),
    ("F.silu", lambda t: F.silu(t), X, 1e-3),
    ("F.softplus", lambda t: F.softplus(t, beta=2.0), X, 1e-3),
    ("F.hardswish", lambda t: F.hardswish(t), X * 3, 1e-3),
    ("F.hardsigmoid", lambda t: F.hardsigmoid(t), X * 3, 1e-3),
    ("F.relu6", lambda t: F.relu6(t), X * 4, 1e-3),
    ("F.leaky_relu", lambda t: F.leaky_relu(t, 0.2), X, 1e-3),
    ("F.softmax", lambda t: F.softmax(t, dim=0), X, 1e-3),
    ("torch.softmax", lambda t: torch.softmax(t, -1), X, 1e-3),
    ("Tensor.softmax", lambda t: t.softmax(dim=1), X, 1e-3),
    ("F.log_softmax", lambda t: F.log_softmax(t, dim=-1), X, 1e-3),
    ("F.layer_norm", lambda t: F.layer_norm(t, (8,)), X, 2e-3),
    ("nn.LayerNorm", lambda t: torch.nn.LayerNorm(8).double()(t), X, 2e-3),
    ("F.group_norm", lambda t: F.group_norm(t.reshape(3, 4, 2), 2).reshape(3, 8), X, 2e-3),
    ("F.batch_norm", lambda t: F.batch_norm(t, torch.zeros(8).double(), torch.ones(8).double() * 2,
                                            torch.ones(8).double() * 3, torch.ones(8).double()),
     X, 2e-3),
    ("F.normalize", lambda t: F.normalize(t, dim=-1), X, 1e-3),
    ("F.normalize p=1", lambda t: F.normalize(t, p=1.0, dim=-1), X, 1e-3),
    ("F.cosine_similarity", lambda t: F.cosine_similarity(t, torch.ones(3, 8).double()), X,
     1e-3),
    ("division", lambda t: t / (t * t + 1), X, 2e-3),
]


@pytest.mark.parametrize("name,fn,data,tol", DISPATCH, ids=[d[0] for d in DISPATCH])
def test_torch_names_reach_veil(name, fn, data, tol):
    x = data.double()

    def party():
        return fn(share_from(x, 0)).reveal()
    assert_close(veil.run(party, parties=2, seed=0)[0], fn(x), tol, name)


def test_reference_protocol_and_semi2k_agree():
    def party():
        x = share_from(X, 0)
        return torch.stack([x.exp(), x.sigmoid(), x.softmax(-1), x.gelu()]).reveal()
    sec = veil.run(party, parties=3, seed=0)[0]
    ref = veil.run(party, parties=3, seed=0, protocol="insecure_reference")[0]
    assert_close(sec, ref, 1e-3, "semi2k vs insecure_reference")


def test_integer_inputs_become_float_and_dtype_is_kept():
    def party():
        i = share_from(torch.tensor([1, 2, 3]), 0)
        d = share_from(torch.tensor([0.5], dtype=torch.float64), 0)
        return i.exp().dtype, d.sigmoid().dtype, i.exp().reveal()
    dt_int, dt_double, val = veil.run(party, parties=2, seed=0)[0]
    assert dt_int == torch.get_default_dtype() and dt_double == torch.float64
    assert_close(val, torch.exp(torch.tensor([1.0, 2.0, 3.0])), 0.02, "exp of ints")


def test_approximation_modes_per_call_and_per_block():
    def party():
        x = share_from(X, 0)
        per_call = x.softmax(-1, approx="2quad").reveal()
        with approximations(softmax="2quad", gelu="quad"):
            inside = current_approximations()
            block = x.softmax(-1).reveal()
            quad = x.gelu().reveal()
            with approximations(softmax=None):
                nested = x.softmax(-1).reveal()
        return per_call, inside, block, quad, nested, current_approximations()
    per_call, inside, block, quad, nested, after = veil.run(party, parties=2, seed=0)[0]
    want_2quad = (X + 5) ** 2 / ((X + 5) ** 2).sum(-1, keepdim=True)
    assert_close(per_call, want_2quad, 1e-3, "2quad per call")
    assert_close(block, want_2quad, 1e-3, "2quad in a block")
    assert_close(quad, 0.125 * X * X + 0.25 * X + 0.5, 1e-3, "quad gelu")
    assert_close(nested, torch.softmax(X, -1), 1e-3, "exact restored in a nested block")
    assert inside == {"softmax": "2quad", "gelu": "quad"} and after == {}


def test_approximation_setting_is_per_party_context():
    def party():
        if veil.rank() == 0:
            with approximations(sigmoid="linear"):
                return current_approximations()
        return current_approximations()
    assert veil.run(party, parties=2, seed=0) == [{"sigmoid": "linear"}, {}]


@pytest.mark.parametrize("call,match", [
    (lambda x: x.softmax(5), "out of range"),
    (lambda x: x.softmax(None), "dim must be an int"),
    (lambda x: x.gelu("fast"), "approximate must be"),
    (lambda x: x.softmax(-1, approx="relu"), "unknown approximation"),
    (lambda x: x.layer_norm((5,)), "does not match"),
    (lambda x: x.reshape(3, 8, 1).group_norm(3), "do not divide"),
    (lambda x: x.batch_norm(torch.zeros(8), torch.ones(8), training=True), "model.eval"),
    (lambda x: x.normalize(p=3.0), "p=3"),
    (lambda x: x.pow_float(torch.ones(2)), "exponent"),
    (lambda x: x.softplus(beta=0.0), "beta"),
])
def test_bad_input_gives_a_clear_error(call, match):
    def party():
        call(share_from(X, 0))
    with pytest.raises(veil.PartyError, match=match):
        veil.run(party, parties=2, seed=0)


def test_unknown_approximation_name_is_refused():
    with pytest.raises(veil.ProtocolUsageError, match="no approximations"):
        with approximations(layer_norm="cheap"):
            pass


def test_module_functions_need_a_secret_tensor():
    from veil.functions import exp_log
    with pytest.raises(veil.ProtocolUsageError, match="expected a SecretTensor"):
        exp_log.exp(torch.ones(2))


FUNCTION_MODULES = ["accuracy", "activations", "approx", "cheb", "exp_log", "grad_rules",
                    "normalization", "piecewise", "roots", "softmax", "vectors"]


@pytest.mark.parametrize("module", FUNCTION_MODULES)
def test_docstring_examples_run(module):
    import doctest
    import importlib
    mod = importlib.import_module(f"veil.functions.{module}")
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


def test_docs_tables_are_generated_with_every_case():
    import pathlib
    from veil.functions import accuracy as A
    doc = (pathlib.Path(__file__).resolve().parents[1] / "docs" / "functions.md").read_text()
    for begin, end in A.MARKERS.values():
        assert begin in doc and end in doc
        assert doc.index(end) - doc.index(begin) > 200, "run: python -m veil.functions.accuracy --docs"
    for case in A.CASES + A.APPROX_CASES + A.OUT_OF_RANGE:
        assert f"| {case.name} |" in doc, f"{case.name} missing: regenerate docs/functions.md"
