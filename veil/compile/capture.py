"""Capture a torch.nn.Module as a public ATen graph plus the owner's (plaintext) weights.

torch.export traces the model with its example inputs, then `run_decompositions` lowers it
to the Core ATen op set. When export refuses a model (data-dependent Python control
flow on tensor values, unsupported Python constructs), capture falls back to
`make_fx` on *fake* tensors (shapes without values), and warns. Code whose control flow
depends on tensor values is refused rather than traced on real values: that would bake
values derived from the secret weights (or the example input) into the public graph.

What is secret: parameters and persistent floating-point buffers (what a checkpoint
holds, e.g. BatchNorm statistics). What is public: the graph with its shapes, integer
and bool buffers (position ids, masks), non-persistent buffers and tensor constants.

>>> import torch
>>> g, w = capture(torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.ReLU()),
...                (torch.zeros(4, 3),))
>>> [n.op for n in g.nodes], sorted(w)
(['aten.permute.default', 'aten.addmm.default', 'aten.relu.default'], ['p_0_bias', 'p_0_weight'])
"""

from __future__ import annotations

import contextlib
import io
import linecache
import logging
import os
import warnings

import torch
import torch.utils._pytree as pytree

from ..errors import ProtocolUsageError
from .graph import Graph, Input, Node, Param, Ref, dtype_name, op_name
from .outspec import from_pytree
from .passes import run_passes
from .rules_attention import KEPT_OPS
from .support import check_supported


def capture(model: torch.nn.Module, args=(), kwargs=None, *, public_inputs=(),
            check: bool = True) -> tuple[Graph, dict]:
    """Return (graph, weights): the public graph and the name -> tensor weights it reads.

    Runs in plaintext, outside any party; `veil.secure` calls it at the owner.
    """
    if not isinstance(model, torch.nn.Module):
        raise ProtocolUsageError(f"secure() takes a torch.nn.Module, got {type(model).__name__}")
    args = args if isinstance(args, tuple) else (args,)
    kwargs = dict(kwargs or {})
    was_training = model.training
    model.eval()                          # inference: dropout off, BatchNorm running stats
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # torch's own pytree deprecation noise from inside export, not the user's concern
            warnings.filterwarnings("ignore", category=FutureWarning, message=".*LeafSpec.*")
            try:
                with _quiet_torch_logs():
                    graph, weights = _from_export(model, args, kwargs)
            except ProtocolUsageError:
                raise
            except Exception as exc:  # noqa: BLE001 - any export failure → fallback
                _check_runs(model, args, kwargs)
                warnings.warn(f"torch.export could not capture {type(model).__name__} "
                              f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); "
                              f"tracing with make_fx on fake tensors instead", stacklevel=3)
                with _quiet_torch_logs():
                    graph, weights = _from_make_fx(model, args, kwargs)
    finally:
        model.train(was_training)
    _mark_public(graph, public_inputs)
    run_passes(graph, weights)
    if check:
        check_supported(graph)
    return graph, weights


def _check_runs(model, args, kwargs) -> None:
    """A model that fails in plain torch on its example gets that error, not a fallback."""
    try:
        model(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - re-raised with context
        raise ProtocolUsageError(f"{type(model).__name__} raises on its example input in "
                                 f"plain torch ({type(exc).__name__}: {exc}); fix the model or "
                                 f"the example first") from exc


@contextlib.contextmanager
def _quiet_torch_logs():
    """torch logs the whole traced graph when export fails; the warning below suffices."""
    names = ["torch.fx.experimental.symbolic_shapes", "torch.export", "torch._export",
             "torch._dynamo", "torch.export._trace"]
    loggers = [logging.getLogger(n) for n in names]
    old = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        # failed traces print the whole graph
        with contextlib.redirect_stdout(io.StringIO()), \
                contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        for lg, lvl in zip(loggers, old):
            lg.setLevel(lvl)


def _mark_public(graph: Graph, public_inputs) -> None:
    names = {i.name for i in graph.inputs}
    for p in public_inputs:
        if p not in names:
            raise ProtocolUsageError(f"public_inputs names {p!r}, which is not an input of the "
                                     f"captured model; its inputs are {sorted(names)}")
    for i in graph.inputs:
        i.public = i.name in public_inputs


# -- torch.export -----------------------------------------------------------------------------
def _from_export(model, args, kwargs):
    ep = torch.export.export(model, args, kwargs).run_decompositions(_decompositions())
    from torch.export.graph_signature import InputKind
    keys = _input_keys(args, kwargs)
    kinds, values = {}, {}
    user = 0
    for spec in ep.graph_signature.input_specs:
        name = spec.arg.name
        if spec.kind == InputKind.USER_INPUT:
            kinds[name] = ("input", keys[user])
            user += 1
        elif spec.kind == InputKind.PARAMETER:
            kinds[name], values[name] = "secret", ep.state_dict[spec.target]
        elif spec.kind == InputKind.BUFFER:
            persistent = spec.persistent is not False and spec.target in ep.state_dict
            t = ep.state_dict[spec.target] if persistent else ep.constants[spec.target]
            kinds[name] = "secret" if persistent and t.is_floating_point() else "public"
            values[name] = t
        elif spec.kind == InputKind.CONSTANT_TENSOR:
            kinds[name], values[name] = "public", ep.constants[spec.target]
        else:
            raise ProtocolUsageError(f"captured model has a {spec.kind.name} input, which "
                                     f"veil does not support")
    spec = from_pytree(ep.call_spec.out_spec)
    return _convert(ep.graph_module.graph, kinds, values, spec)


def _decompositions(table=None):
    """Core ATen, except attention, which the lowering table takes whole (see
    rules_attention: the mask is then visible and the decomposed form does not re-trace)."""
    table = dict(torch.export.default_decompositions() if table is None else table)
    for name in KEPT_OPS:
        table.pop(getattr(torch.ops.aten, name).default, None)
    return table


def _input_keys(args, kwargs):
    keys = []
    for i, a in enumerate(args):
        _check_leaf(a, f"positional input {i}")
        keys.append(i)
    for k, v in kwargs.items():
        _check_leaf(v, f"input {k!r}")
        keys.append(k)
    return keys


def _check_leaf(v, what):
    if not (isinstance(v, (torch.Tensor, bool, int, float, str)) or v is None):
        raise ProtocolUsageError(f"{what} is a {type(v).__name__}; secure models take tensors "
                                 f"(or fixed Python values) as inputs, not nested structures")


# -- make_fx fallback -------------------------------------------------------------------------
def _from_make_fx(model, args, kwargs):
    from torch._decomp import core_aten_decompositions
    from torch.fx.experimental.proxy_tensor import make_fx
    state = {**dict(model.named_parameters()), **dict(model.named_buffers())}
    pnames = {n for n, _ in model.named_parameters()}
    persistent = set(model.state_dict())
    keys = _input_keys(args, kwargs)
    leaves = list(args) + list(kwargs.values())
    tensor_pos = [i for i, v in enumerate(leaves) if isinstance(v, torch.Tensor)]

    def fn(state_vals, inputs):
        full = list(leaves)
        for i, t in zip(tensor_pos, inputs):
            full[i] = t
        a, k = full[:len(args)], dict(zip(kwargs, full[len(args):]))
        return pytree.tree_leaves(torch.func.functional_call(
            model, dict(zip(state, state_vals)), tuple(a), k))

    out_spec = from_pytree(pytree.tree_flatten(model(*args, **kwargs))[1])
    try:
        # Fake tensors: weights and the example input carry shapes only, so no value
        # computed from them can be baked into the public graph as a constant.
        gm = make_fx(torch.func.functionalize(fn, remove="mutations_and_views"),
                     decomposition_table=_decompositions(core_aten_decompositions()),
                     tracing_mode="fake", record_stack_traces=True,
                     record_module_stack=True)(
            list(state.values()), [leaves[i] for i in tensor_pos])
    except Exception as exc:  # noqa: BLE001 - re-raised with what to change
        raise ProtocolUsageError(
            f"{type(model).__name__} cannot be captured: its Python code depends on the "
            f"values of its tensors ({type(exc).__name__}), e.g. `if x.sum() > 0:` or "
            f"`.item()` on a weight. Tracing it on real values would put values derived from "
            f"the secret weights or input into the public graph, so veil refuses. Write the "
            f"branch with torch.where, or compute such values outside the model") from None
    kinds, values = {}, {}
    phs = [n for n in gm.graph.nodes if n.op == "placeholder"]
    for ph, (sname, t) in zip(phs, state.items()):
        secret = sname in pnames or (sname in persistent and t.is_floating_point())
        kinds[ph.name], values[ph.name] = ("secret" if secret else "public"), t
    for ph, i in zip(phs[len(state):], tensor_pos):
        kinds[ph.name] = ("input", keys[i])
    graph, _ = _convert(gm.graph, kinds, values, out_spec)
    for i, v in enumerate(leaves):       # fixed Python inputs, as export records them
        if i not in tensor_pos:
            graph.inputs.append(Input(str(keys[i]), None, None, key=keys[i], value=v))
    return graph, {k: v for k, v in values.items() if kinds[k] == "secret"}


# -- fx graph -> veil Graph -----------------------------------------------------------------
def _meta(val):
    if isinstance(val, torch.Tensor):
        return list(val.shape), dtype_name(val.dtype)
    if isinstance(val, (tuple, list)):
        pairs = [_meta(v) for v in val]
        return [p[0] for p in pairs], [p[1] for p in pairs]
    return None, None


def _convert(fx_graph, kinds, values, out_spec):
    g = Graph(out_spec=out_spec)
    weights = {}

    def arg(v):
        if isinstance(v, torch.fx.Node):
            return Ref(v.name)
        if isinstance(v, (list, tuple)):
            return [arg(x) for x in v]
        if isinstance(v, dict):
            return {k: arg(x) for k, x in v.items()}
        if isinstance(v, torch.SymInt):
            raise ProtocolUsageError("dynamic shapes are not supported: capture with static "
                                     "example inputs")
        return v

    for n in fx_graph.nodes:
        if n.op == "placeholder":
            kind = kinds[n.name]
            val = n.meta.get("val")
            if isinstance(kind, tuple):
                shape, dt = _meta(val)
                g.inputs.append(Input(n.name, shape, dt, key=kind[1],
                                      value=None if shape is not None else val))
            elif kind == "secret":
                t = values[n.name]
                g.params.append(Param(n.name, list(t.shape), dtype_name(t.dtype)))
                weights[n.name] = t.detach().clone()
            else:
                g.constants[n.name] = values[n.name].detach().clone()
        elif n.op == "call_function":
            shape, dt = _meta(n.meta.get("val"))
            g.nodes.append(Node(n.name, op_name(n.target), arg(list(n.args)), arg(dict(n.kwargs)),
                                shape, dt, _source(n)))
        elif n.op == "output":
            g.outputs = arg(list(n.args[0]) if isinstance(n.args[0], (list, tuple))
                            else [n.args[0]])
        else:
            raise ProtocolUsageError(f"unexpected fx node kind {n.op} ({n.name})")
    return g, weights


_TORCH_DIR = os.path.dirname(torch.__file__)


def _source(node) -> str:
    """'module.path (Type): file.py:LINE: code' for the user's frame (not torch's)."""
    where = ""
    stack = node.meta.get("nn_module_stack") or {}
    if stack:
        path, typ = list(stack.values())[-1]
        tname = typ.__name__ if isinstance(typ, type) else str(typ).rsplit(".", 1)[-1]
        where = f"{path or 'model'} ({tname})"
    frames = []
    for line in (node.meta.get("stack_trace") or "").splitlines():
        line = line.strip()
        if line.startswith("File "):
            try:
                fname = line.split('"')[1]
                lineno = int(line.split("line ")[1].split(",")[0])
            except (IndexError, ValueError):
                continue
            frames.append((fname, lineno))
    user = [f for f in frames if not f[0].startswith(_TORCH_DIR)]
    if user:
        fname, lineno = user[-1]
        code = linecache.getline(fname, lineno).strip()
        # the file's base name only: full paths would tell the other parties about the
        # owner's file system
        loc = f"{os.path.basename(fname)}:{lineno}" + (f": {code}" if code else "")
        where = f"{where}, {loc}" if where else loc
    return where
