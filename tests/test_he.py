"""veil.he against plaintext torch, plus its security and bad-input behaviour.

Tolerances: ``n8192`` (scale 2^27) keeps outputs near 1 within 2e-3 after one product
and a rotation tree (measured ~2e-4; the bound leaves room for the CKKS noise tail).
"""

import pickle

import numpy as np
import pytest
import torch

he = pytest.importorskip("veil.he")
pytest.importorskip("tenseal")

import veil  # noqa: E402
from veil.he import party as he_party  # noqa: E402
from veil.he.backend import HEError  # noqa: E402
from veil.he.run import rotation_steps  # noqa: E402
from veil.he.wire import pack, unpack  # noqa: E402

TOL = 2e-3


@pytest.fixture(scope="module")
def keys():
    return he.keygen("n8192")


def test_vector_ops_match_torch(keys):
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(20, generator=g) * 2 - 1, torch.rand(20, generator=g) * 2 - 1
    ea, eb = keys.encrypt(a), keys.encrypt(b)
    a, b = a.double(), b.double()
    cases = {
        "add": ((ea + eb).decrypt(), a + b),
        "add_plain": ((ea + b).decrypt(), a + b),
        "mul_plain": ((ea * b).decrypt(), a * b),
        "mul": ((ea * eb).decrypt(), a * b),
        "square": (ea.square().decrypt(), a * a),
        "sum": (ea.sum().decrypt(), a.sum().reshape(1)),
        "poly": (ea.polyval([0.5, 0.25, 0.0, -0.02]).decrypt(), 0.5 + 0.25 * a - 0.02 * a ** 3),
        "square+x": ((ea.square() + ea).decrypt(), a * a + a),
    }
    for name, (got, want) in cases.items():
        assert (got - want).abs().max() < TOL, name


def test_linear_matches_torch_both_shapes(keys):
    g = torch.Generator().manual_seed(1)
    x = torch.rand(50, generator=g) * 2 - 1
    for n_out in (7, 100):                    # folded (p_out < p_in) and widened outputs
        w = torch.randn(n_out, 50, generator=g) * 0.1
        b = torch.randn(n_out, generator=g) * 0.1
        got = keys.encrypt(x).linear(w, b).decrypt()
        want = torch.nn.functional.linear(x.double(), w.double(), b.double())
        assert got.shape == want.shape
        assert (got - want).abs().max() < TOL


def test_level_exhaustion_names_the_operation(keys):
    x = keys.encrypt(torch.tensor([0.5, 0.25]))
    for _ in range(keys.params.levels):
        x = x.square()
    assert x.levels_left == 0
    with pytest.raises(HEError, match="square: needs 1 more multiplicative level"):
        x.square()


def test_compile_refuses_too_deep_model_naming_layers():
    layers = []
    for _ in range(4):
        layers += [torch.nn.Linear(4, 4), he.Square()]
    model = torch.nn.Sequential(*layers)
    with pytest.raises(HEError, match=r"needs 8 levels.*n8192 has 5.*0: 1"):
        he.compile(model, torch.rand(8, 4), params="n8192")


def test_compile_folds_batchnorm_and_conv_exactly():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3, stride=2), torch.nn.BatchNorm2d(2),
                                torch.nn.AvgPool2d(1), torch.nn.Flatten(), he.Square(),
                                torch.nn.Linear(18, 3))
    model[1].running_mean.uniform_(-1, 1)
    model[1].running_var.uniform_(0.5, 2)
    x = torch.rand(16, 1, 7, 7)
    plan = he.compile(model, x)
    assert any("BatchNorm2d" in c for c in plan.report.changes)
    assert (plan.simulate(x) - model.eval()(x).double()).abs().max() < 1e-6   # float32 model
    assert [s.kind for s in plan.steps] == ["affine", "square", "affine"]


def test_compile_rejects_unsupported_module():
    class Odd(torch.nn.Module):
        def forward(self, x):
            return x.max(1).values
    with pytest.raises(HEError, match="nn.Sequential"):
        he.compile(Odd(), torch.rand(2, 3))


def _logreg():
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Linear(12, 1), torch.nn.Sigmoid())
    with torch.no_grad():
        m[0].weight.mul_(3)
    return m, torch.randn(300, 12)


@pytest.mark.parametrize("layout", ["vector", "batch"])
def test_two_party_logreg_matches_torch(layout):
    model, x = _logreg()
    queries = x[:3] if layout == "vector" else x[:200]
    sent = {0: [], 1: []}
    real_send = he_party.send_bytes

    def spy(data, to):
        sent[veil.rank()].append(bytes(data))
        real_send(data, to)

    def job():
        if veil.rank() == 1:
            plan = he.compile(model, x)
            srv = he.Server(plan, client=0, layout=layout)
            srv.serve(queries=len(queries) if layout == "vector" else 1)
            return plan.report
        c = he.Client(server=1)
        if layout == "vector":
            return torch.cat([c.infer(q) for q in queries])
        return c.infer(queries)

    he_party.send_bytes = spy
    try:
        got, report = veil.run(job, parties=2)
    finally:
        he_party.send_bytes = real_send
    want = model(queries).detach().double()
    assert report.max_error < 1e-3                  # polynomial sigmoid vs torch.sigmoid
    assert (got - want).abs().max() < 1e-3          # probability error
    assert torch.equal(got > 0.5, want > 0.5)       # identical decisions
    # What crossed: client -> server: the key bundle, then one bundle per query; server ->
    # client: the plan header, then one bundle per query. Nothing else, no secret key.
    n_q = len(queries) if layout == "vector" else 1
    assert len(sent[0]) == 1 + n_q and len(sent[1]) == 1 + n_q
    relin, galois = unpack(sent[0][0], 2, 1 << 30, "keys")
    params = he.get_params(report.params.split(":")[0])
    be = he.keys.backend_for(params)
    steps = rotation_steps(he.compile(model, x), params.slots) if layout == "vector" else []
    be.load_eval_keys(relin, galois, he.keys._n_keys(steps, params))  # public keys only
    for msg in sent[0][1:]:
        for blob in unpack(msg, 1 if layout == "vector" else 12, be.max_ct_bytes, "q"):
            ct = be.ct_from_bytes(blob)
            assert be.level(ct) == params.levels    # fresh ciphertexts only


def test_secret_key_cannot_be_pickled_or_printed(keys):
    with pytest.raises(TypeError, match="never leaves"):
        pickle.dumps(keys)
    assert repr(keys) == "SecretKeys(n8192)"


def test_tampered_ciphertexts_are_refused(keys):
    be = keys.backend
    blob = keys.encrypt_slots(np.ones(8))
    with pytest.raises(HEError, match="truncated or padded"):
        be.ct_from_bytes(blob[:-10])
    with pytest.raises(HEError, match="truncated or padded"):
        be.ct_from_bytes(blob + b"\0" * 10)
    with pytest.raises(HEError, match="not a SEAL object"):
        be.ct_from_bytes(b"\0" * len(blob))
    huge = bytearray(blob)
    huge[8:16] = (be.max_ct_bytes + 1).to_bytes(8, "little")
    with pytest.raises(HEError):
        be.ct_from_bytes(bytes(huge) + b"\0" * (be.max_ct_bytes + 1 - len(blob)))
    bundle = pack([blob, blob])
    with pytest.raises(HEError, match="2 objects where 1"):
        unpack(bundle, 1, be.max_ct_bytes, "query")
    with pytest.raises(HEError, match="do not add up"):
        unpack(bundle[:-1], 2, be.max_ct_bytes, "query")


def test_wrong_shapes_are_refused(keys):
    x = keys.encrypt(torch.rand(5))
    with pytest.raises(HEError, match="does not take a vector of 5"):
        x.linear(torch.rand(3, 4))
    with pytest.raises(HEError, match="shape mismatch"):
        x + keys.encrypt(torch.rand(6))
    with pytest.raises(HEError, match="outside the encodable range"):
        keys.encrypt(torch.tensor([1e6]))


def test_flood_adds_noise_of_the_stated_size():
    y = he.flood(torch.zeros(4000), sigma=1e-2)
    assert 0.8e-2 < float(y.std()) < 1.2e-2
    assert abs(float(y.mean())) < 2e-3


@pytest.mark.parametrize("module", ["keys", "tensor", "compile", "release"])
def test_docstring_examples_run(module):
    import doctest
    import importlib
    mod = importlib.import_module(f"veil.he.{module}")
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_credit_score_example_runs_and_matches_plaintext():
    import pathlib
    import re
    import subprocess
    import sys
    root = pathlib.Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, str(root / "examples" / "encrypted_credit_score.py")],
                         capture_output=True, text=True, timeout=300, cwd=root)
    assert out.returncode == 0, out.stderr[-2000:]
    m = re.search(r"plaintext model: ([0-9.]+); encrypted: ([0-9.]+)", out.stdout)
    assert m, out.stdout
    assert abs(float(m.group(1)) - float(m.group(2))) <= 1e-3


def test_conv2d_matches_torch(keys):
    g = torch.Generator().manual_seed(2)
    img = torch.rand(2, 6, 6, generator=g)
    w = torch.randn(3, 2, 3, 3, generator=g) * 0.3
    b = torch.randn(3, generator=g) * 0.1
    got = keys.encrypt(img.reshape(-1)).conv2d(w, b, input_shape=(2, 6, 6), stride=1,
                                               padding=1).decrypt()
    want = torch.nn.functional.conv2d(img[None].double(), w.double(), b.double(), padding=1)
    assert (got - want.reshape(-1)).abs().max() < TOL


def test_send_bytes_is_metered_and_checks_the_peer():
    def job():
        if veil.rank() == 0:
            veil.send_bytes(b"abc", to=1)
            with pytest.raises(veil.VeilError, match="no party 0"):
                veil.send_bytes(b"x", to=0)
            return veil.stats()["bytes_sent"]
        return veil.recv_bytes(0)
    sent, got = veil.run(job, parties=2)
    assert sent == 3 and got == b"abc"


def test_products_by_zero_are_refused_not_transparent(keys):
    x = keys.encrypt(torch.tensor([1.0, 2.0]))
    with pytest.raises(HEError, match="transparent"):
        x * 0.0
    with pytest.raises(HEError, match="constant polynomial"):
        x.polyval([0.3])
