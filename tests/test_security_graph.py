"""A model owner is untrusted by the parties that run its graph (issue 9, items 1-3, 9).

Each test plays a hostile owner: the owner's side is patched to send what an attacker
would, and the receiving party must refuse it, naming the node and op, before anything
of it runs. Also: omitted schema defaults reach every lowering (issue 10).
"""

from __future__ import annotations

import importlib
import json
import warnings

import pytest
import torch
from torch import nn

import veil
from veil.comm.communicator import Communicator
from veil.compile import zoo
from veil.compile.capture import capture
from veil.compile.evaluate import compare
from veil.compile.graph import Graph, Node, Ref
from veil.compile.interpreter import Interpreter
from veil.compile.validate import GraphLimits, GraphRefusedError, validate_graph
from veil.errors import PartyError, ProtocolUsageError
from helpers import share_from

# the modules (veil.compile re-exports functions of the same names)
secure_mod = importlib.import_module("veil.compile.secure")
convert_mod = importlib.import_module("veil.nn.convert")


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 3), nn.ReLU())


def _run_hostile(monkeypatch, mutate, parties=2):
    """veil.secure where the graph that reaches party 1 was rewritten by ``mutate``, as a
    hostile owner would send it; returns the error the run raises."""
    real = Communicator.broadcast_obj

    def tampered(self, obj, src):
        got = real(self, obj, src)
        if self.rank == 1 and isinstance(got, dict) and "nodes" in got:
            g = Graph.from_json(json.dumps(got))
            mutate(g)
            got = json.loads(g.to_json())
        return got

    monkeypatch.setattr(Communicator, "broadcast_obj", tampered)
    net, x = _net(), torch.randn(2, 4)

    def job():
        m = veil.secure(net if veil.rank() == 0 else None, owner=0,
                        example_input=x if veil.rank() == 0 else None)
        return m(share_from(x, 1)).reveal(to=1)

    with pytest.raises(PartyError) as info:
        veil.run(job, parties=parties, seed=0)
    return info.value


def _append(g, name, op, args, shape, dtype="float32"):
    g.nodes.append(Node(name, op, args, {}, shape, dtype))


def test_hostile_graph_cannot_write_a_file_at_the_receiver(monkeypatch, tmp_path):
    target = tmp_path / "victim.bin"
    target.write_bytes(b"\x00" * 16)

    def mutate(g):
        _append(g, "evil_map", "aten.from_file.default", [str(target), True, 16], [16], "uint8")
        g.constants["evil_bytes"] = torch.full((16,), 65, dtype=torch.uint8)
        _append(g, "evil_copy", "aten.copy_.default", [Ref("evil_map"), Ref("evil_bytes")],
                [16], "uint8")

    err = _run_hostile(monkeypatch, mutate)
    assert err.party == "party 1" and "GraphRefusedError" in str(err)
    assert "'evil_map'" in str(err) and "aten.from_file.default" in str(err)
    assert target.read_bytes() == b"\x00" * 16


@pytest.mark.parametrize("op, args", [
    ("aten.from_file.default", ["/etc/hostname", False, 4]),        # reads any file
    ("aten.add_.Tensor", [Ref("input"), 1.0]),                        # in place
    ("aten.add.out", [Ref("input"), 1.0]),                            # out= overload
    ("aten.rand.default", [[4]]),                                     # random: parties differ
    ("aten.__class__.default", []),                                   # attribute escape
    ("builtins.eval", ["1"]),                                         # not ATen at all
])
def test_ops_outside_the_allowlist_are_refused_by_name(monkeypatch, op, args):
    err = _run_hostile(monkeypatch, lambda g: _append(g, "bad", op, args, [4]))
    assert err.party == "party 1" and "'bad'" in str(err)


@pytest.mark.parametrize("mutate, words", [
    # a string argument that is not one of the ops' enum values
    (lambda g: _append(g, "s", "aten.gelu.default", [Ref("input")], [2, 4]) or
     g.nodes[-1].kwargs.update(approximate="/etc/passwd"), "STRING_ENUMS"),
    # too many positional arguments for the schema
    (lambda g: _append(g, "a", "aten.relu.default", [Ref("input"), 1, 2], [2, 4]), "at most"),
    # a creation op sized to exhaust memory
    (lambda g: _append(g, "big", "aten.zeros.default", [[1 << 20, 1 << 20]], [1, 1]),
     "elements"),
    # a shape that lies about what the op computes
    (lambda g: _append(g, "lie", "aten.relu.default", [Ref("input")], [7]), "declares shape"),
    # a weight announced at 2^40 values
    (lambda g: g.params[0].__setattr__("shape", [1 << 20, 1 << 20]), "elements"),
    # a reference to a value defined later (or never)
    (lambda g: _append(g, "r", "aten.relu.default", [Ref("nowhere")], [2, 4]),
     "before it is defined"),
])
def test_malformed_or_oversized_nodes_are_refused(monkeypatch, mutate, words):
    err = _run_hostile(monkeypatch, mutate)
    assert err.party == "party 1" and words in str(err)


def test_interpreter_itself_refuses_ops_off_the_allowlist():
    g = Graph(nodes=[Node("f", "aten.from_file.default", ["/etc/hostname"], {}, [4], "uint8")],
              outputs=[Ref("f")])
    with pytest.raises(GraphRefusedError, match="from_file"):
        Interpreter(g)


@pytest.mark.parametrize("text", [
    "[]", '{"version": 2}', '{"version": 2, "owner": "0", "inputs": [], "params": [], '
    '"constants": {}, "nodes": [], "outputs": []}',
    json.dumps({"version": 2, "owner": 0, "inputs": [], "params": [], "constants": {
        "c": {"$tensor": "AAAA", "dtype": "float32", "shape": [1 << 30]}}, "nodes": [],
        "outputs": [], "out_spec": None}),
    json.dumps({"version": 2, "owner": 0, "inputs": [], "params": [], "constants": {
        "c": {"$layout": "__import__"}}, "nodes": [], "outputs": [], "out_spec": None}),
])
def test_malformed_graph_json_gives_a_clear_error(text):
    with pytest.raises(ProtocolUsageError, match="graph"):
        Graph.from_json(text)


def test_graph_limits_are_the_receivers_choice():
    g, _ = capture(_net(), (torch.randn(2, 4),))
    validate_graph(g)
    with pytest.raises(GraphRefusedError, match="max_weight_elements"):
        validate_graph(g, GraphLimits(max_weight_elements=10))


# -- output structure -------------------------------------------------------------------------
@pytest.mark.parametrize("spec", [
    # torch's treespec JSON, whose loader imports modules and indexes attributes
    [1, {"type": "builtins.tuple", "context": "null", "children_spec": []}],
    {"type": "ctypes:cdll", "context": {"fqn": "ctypes:cdll", "name": "/tmp/x.so"}},
    {"dict": [[1, {"leaf": True}]]},                                     # non-string key
    {"tuple": [{"leaf": True}] * 5},                                     # wrong leaf count
])
def test_hostile_output_structure_is_refused(monkeypatch, spec):
    calls = []
    monkeypatch.setattr(torch.utils._pytree, "treespec_loads",
                        lambda *a: calls.append(a))
    err = _run_hostile(monkeypatch, lambda g: setattr(g, "out_spec", spec))
    assert err.party == "party 1" and "output structure" in str(err)
    assert calls == []


def test_model_outputs_keep_their_names_at_every_party():
    class Named(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 2)

        def forward(self, x):
            return {"logits": self.lin(x), "pair": (x.sum(-1), x)}

    torch.manual_seed(1)
    net, x = Named(), torch.randn(3, 4)

    def job():
        m = veil.secure(net if veil.rank() == 0 else None, owner=0,
                        example_input=x if veil.rank() == 0 else None)
        out = m(share_from(x, 1))
        return sorted(out), out.logits.reveal(), out["pair"][1].reveal()

    for keys, logits, xs in veil.run(job, parties=2, seed=0):
        assert keys == ["logits", "pair"]
        assert (logits - net(x)["logits"]).abs().max() < 1e-3
        assert (xs - x).abs().max() < 1e-4


# -- nn.from_torch ----------------------------------------------------------------------------
@pytest.mark.parametrize("spec, words", [
    ({"type": "__class__", "args": []}, "does not build"),
    ({"type": "Module", "args": []}, "does not build"),
    ({"type": "Linear", "args": [1 << 40, 1 << 40, True]}, "out of range"),
    ({"type": "Linear", "args": ["4", 2, True]}, "out of range"),
    ({"type": "Dropout", "args": [0.5, "extra"]}, "takes 1 arguments"),
    ({"type": "Sequential", "children": [{"type": "ReLU"}] * 5000}, "malformed"),
])
def test_from_torch_refuses_a_hostile_architecture(monkeypatch, spec, words):
    monkeypatch.setattr(convert_mod, "_describe", lambda m, path="model": spec)

    def job():
        veil.nn.from_torch(_net() if veil.rank() == 0 else None, owner=0)

    with pytest.raises(PartyError) as info:
        veil.run(job, parties=2, seed=0)
    assert words in str(info.value)


# -- nothing derived from weights in the public graph -----------------------------------------
def test_value_dependent_control_flow_is_refused_not_traced_on_real_values():
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 4)

        def forward(self, x):
            h = self.lin(x)
            if h.sum() > 0:                    # data-dependent: export refuses
                return torch.relu(h)
            return -h

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ProtocolUsageError, match="depends on the values"):
            capture(Branchy(), (torch.randn(2, 4),))


def _weight_leaks(model, args) -> list[str]:
    """Weight values found anywhere in the captured public graph (floats or raw bytes)."""
    g, weights = capture(model, args)
    text = g.to_json()
    blobs = b"".join(v.numpy().tobytes() for v in g.constants.values()
                     if isinstance(v, torch.Tensor))
    found = []
    for name, w in weights.items():
        for v in w.detach().reshape(-1)[:2000].tolist():
            if v in (0.0, 1.0, -1.0):
                continue
            if repr(v) in text or torch.tensor(v, dtype=w.dtype).numpy().tobytes() in blobs:
                found.append(f"{name}={v}")
    return found


@pytest.mark.parametrize("build, shape", [
    (lambda: zoo.mlp((16, 8, 4)), (2, 16)),
    (lambda: zoo.lenet5(size=16), (1, 1, 16, 16)),
    (lambda: nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU()), (2, 1, 6, 6)),
    (lambda: zoo.transformer_encoder_layer(d=16, heads=2, ffn=32), (1, 5, 16)),
])
def test_no_weight_value_appears_in_the_broadcast_graph(build, shape):
    torch.manual_seed(0)
    model = build().eval()
    for m in model.modules():                # give BatchNorm non-trivial statistics
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    assert _weight_leaks(model, (torch.randn(*shape),)) == []


# -- omitted arguments take the schema's default (issue 10) ----------------------------------
@pytest.mark.parametrize("layer", [nn.Hardtanh(-3, 1), nn.Hardtanh(-1, 1), nn.Hardtanh(0, 6),
                                   nn.LeakyReLU(0.01), nn.ELU(1.0)])
def test_arguments_export_omits_take_the_schema_default(layer):
    x = torch.linspace(-5, 5, 24).reshape(2, 12)
    r = compare(nn.Sequential(nn.Identity(), layer), (x,))
    assert r.max_abs_error < 2e-3, (layer, r.max_abs_error)


# -- other announcements a peer makes ---------------------------------------------------------
@pytest.mark.parametrize("meta, words", [
    ([0, 1 << 20, 1 << 20], "max_elements"),                # 2^40 elements
    ([99, 4], "dtype code"), ([-1, 4], "dtype code"), (["float32", 4], "dtype code"),
    ([0, -3], "dimension size"), ({"a": 1}, "malformed"),
])
def test_an_announced_tensor_shape_is_checked_before_allocating(monkeypatch, meta, words):
    real = Communicator.broadcast_obj

    def tampered(self, obj, src):
        got = real(self, obj, src)
        return meta if self.rank == 1 else got

    monkeypatch.setattr(Communicator, "broadcast_obj", tampered)

    def job():
        return share_from(torch.ones(4), 0).reveal()

    with pytest.raises(PartyError) as info:
        veil.run(job, parties=2, seed=0)
    assert info.value.party == "party 1" and words in str(info.value)


def test_bitwise_ops_in_a_captured_model_keep_torch_semantics():
    class Masks(nn.Module):
        def forward(self, a, b):
            return (a > 0) & (b > 0), (a > 0) | (b > 0), (a > 0) ^ (b > 0), ~(a > 0)

    a, b = torch.linspace(-2, 2, 8), torch.linspace(2, -2, 8)

    def job():
        m = veil.secure(Masks() if veil.rank() == 0 else None, owner=0,
                        example_input=(a, b) if veil.rank() == 0 else None)
        return [o.reveal() for o in m(share_from(a, 1), share_from(b, 1))]

    want = Masks()(a, b)
    for got in veil.run(job, parties=2, seed=0):
        for g, w in zip(got, want):
            assert torch.equal(g.bool(), w)


def test_uninitialised_memory_never_enters_a_graph_value():
    g = Graph(inputs=[], nodes=[
        Node("e", "aten.empty_like.default", [Ref("c")], {}, [64], "float32")],
        constants={"c": torch.ones(64)}, outputs=[Ref("e")])
    assert torch.equal(Interpreter(g).run({})[0], torch.zeros(64))   # run as zeros_like
    g = Graph(nodes=[Node("e", "aten.empty.memory_format", [[64]], {}, [64], "float32")],
              outputs=[Ref("e")])
    with pytest.raises(GraphRefusedError, match="empty"):
        validate_graph(g)
