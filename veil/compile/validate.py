"""Check a graph that arrived from the model owner before anything of it runs.

The owner's graph is untrusted input at every other party: it must never make a party
read or write files, load code, or allocate without bound. So a received graph is run
only if

* every op is on the allowlist — the ops of the lowering table (what veil knows how to
  run on secrets) plus a named list of pure ops (tensor creation, plain math) that may
  run on public values — and no allowed op has a mutable schema, an ``out=`` overload,
  an in-place name or a random generator;
* every node's arguments match the op's schema: arity, keyword names, and the kind of
  every value (tensor reference, int, float, bool, dtype, list of those); strings only
  from a fixed set of enum values (``approximate="tanh"``, ``rounding_mode="floor"``);
* every tensor is bounded: declared shapes, constants, weights and each node's *real*
  output shape, found by running the whole graph once on the ``meta`` device (shapes
  only, no memory), are within `GraphLimits`, and match what the owner declared.

A refused graph names the node and the op. The owner runs the same check on its own
graph, so a model the owner can send is one every party accepts.

>>> import torch
>>> from veil.compile.graph import Graph, Input, Node, Ref
>>> bad = Graph(inputs=[Input("x", [2], "float32")],
...             nodes=[Node("f", "aten.from_file.default", ["/etc/passwd"], {}, [4], "uint8")],
...             outputs=[Ref("f")])
>>> validate_graph(bad)
Traceback (most recent call last):
...
veil.compile.validate.GraphRefusedError: graph node 'f' uses aten.from_file.default, which veil does not run: only the ops of the lowering table and a named list of pure ops are allowed
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from ..comm.limits import MAX_ELEMENTS
from ..errors import ProtocolUsageError
from .graph import Graph, Ref, dtype_of, iter_refs, map_refs, resolve_op
from .lowering import LOWERINGS


class GraphRefusedError(ProtocolUsageError):
    """A received graph breaks the rules of what veil will run; names node and op."""


@dataclass(frozen=True)
class GraphLimits:
    """Bounds on a received graph (each party may pass its own to `veil.secure`).

    The defaults admit a BERT-base or GPT-2 small model with room to spare.
    """
    max_nodes: int = 200_000
    max_elements: int = MAX_ELEMENTS     # per tensor (2 GiB of int64 shares)
    max_weight_elements: int = 1 << 30   # all weights together
    max_constant_bytes: int = 256 << 20  # all public constants together
    max_list: int = 4096                 # entries of one list argument
    max_name: int = 200                  # characters of a value's name


DEFAULT_LIMITS = GraphLimits()

# Pure ops that may run on public values (inputs declared public, constants): tensor
# creation and plain math, each with every overload that passes `_pure`. Nothing outside
# this list and the lowering table runs, whatever its arguments. No `empty`: its
# uninitialised memory (this host's) could flow into a value revealed to a peer.
_PUBLIC_BASES = (
    "arange full zeros ones scalar_tensor "
    "sort argsort topk kthvalue median cumprod prod "
    "cos sin tan acos asin atan atan2 cosh sinh exp exp2 expm1 log log2 log10 log1p sqrt "
    "rsqrt reciprocal sigmoid tanh erf erfinv floor ceil round trunc frac remainder fmod "
    "floor_divide pow eq ne lt le gt ge isnan isinf isfinite any all logical_and logical_or "
    "logical_xor logical_not bitwise_and bitwise_or bitwise_xor bitwise_not masked_fill "
    "clone alias lift_fresh_copy detach fill one_hot nonzero"
).split()


def _public_ops() -> frozenset:
    names = set()
    for base in _PUBLIC_BASES:
        packet = getattr(torch.ops.aten, base, None)
        for over in (packet.overloads() if packet is not None else ()):
            if _pure(getattr(packet, over)) is None:
                names.add(f"aten.{base}.{over}")
    return frozenset(names)


# The only strings an argument may hold: enum values of the ops veil runs.
STRING_ENUMS = frozenset({
    "none", "tanh",                                   # gelu approximate
    "floor", "trunc",                                 # div rounding_mode
    "sum", "mean", "prod", "amax", "amin",            # reductions, scatter_reduce
    "nearest", "linear", "bilinear", "bicubic", "trilinear", "nearest-exact",
    "zeros", "reflect", "replicate", "circular", "constant",
    "same", "valid",                                  # conv padding
})

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")


def allowed_op(name: str) -> bool:
    """True if the interpreter may run ``name`` (see the module docstring)."""
    return name == "getitem" or name in LOWERINGS or name in PUBLIC_ONLY_OPS


def _pure(op) -> str | None:
    """Why ``op`` must not run even if listed (None when it is pure)."""
    s = op._schema
    if s.is_mutable or any(a.alias_info is not None and a.alias_info.is_write
                           for a in s.arguments):
        return "it writes to one of its arguments"
    if s.overload_name == "out" or "out" in s.overload_name.split("_") or \
            s.name.endswith("_") or any(a.kwarg_only and a.name == "out" for a in s.arguments):
        return "it is an in-place or out= variant"
    if torch.Tag.nondeterministic_seeded in op.tags and not any(
            a.name == "dropout_p" for a in s.arguments):
        return "it draws random numbers, which parties would not agree on"
    if any(a.type.kind() in ("GeneratorType",) or "Generator" in str(a.type)
           for a in s.arguments):
        return "it takes a random generator"
    return None


PUBLIC_ONLY_OPS = _public_ops()


def validate_graph(graph: Graph, limits: GraphLimits = DEFAULT_LIMITS) -> None:
    """Raise `GraphRefusedError` unless ``graph`` may run (see the module docstring)."""
    if len(graph.nodes) > limits.max_nodes:
        raise GraphRefusedError(f"graph has {len(graph.nodes)} nodes; the limit is "
                                f"{limits.max_nodes} (GraphLimits.max_nodes)")
    known: set[str] = set()

    def define(name, what):
        if not isinstance(name, str) or not _NAME.match(name) or len(name) > limits.max_name:
            raise GraphRefusedError(f"graph {what} has an invalid name {str(name)[:40]!r}")
        if name in known:
            raise GraphRefusedError(f"graph defines {name!r} twice")
        known.add(name)

    weights = 0
    for i in graph.inputs:
        define(i.name, "input")
        if i.shape is not None:
            _shape(i.shape, f"input {i.name!r}", limits)
            dtype_of(i.dtype)
        elif not _plain_value(i.value, limits):
            raise GraphRefusedError(f"graph input {i.name!r} has a fixed value of an "
                                    f"unsupported kind")
    for p in graph.params:
        define(p.name, "weight")
        weights += _shape(p.shape, f"weight {p.name!r}", limits)
        dtype_of(p.dtype)
    if weights > limits.max_weight_elements:
        raise GraphRefusedError(f"graph announces {weights} weight values; the limit is "
                                f"{limits.max_weight_elements} (GraphLimits.max_weight_elements)")
    const_bytes = 0
    for name, v in graph.constants.items():
        define(name, "constant")
        if isinstance(v, torch.Tensor):
            _shape(list(v.shape), f"constant {name!r}", limits)
            const_bytes += v.numel() * v.element_size()
        elif not _plain_value(v, limits):
            raise GraphRefusedError(f"graph constant {name!r} has an unsupported kind")
    if const_bytes > limits.max_constant_bytes:
        raise GraphRefusedError(f"graph constants hold {const_bytes} bytes; the limit is "
                                f"{limits.max_constant_bytes} (GraphLimits.max_constant_bytes)")
    for node in graph.nodes:
        for r in node.refs():
            if r.name not in known:
                raise GraphRefusedError(f"graph node {node.name!r} reads {r.name[:40]!r} "
                                        f"before it is defined")
        _check_node(node, limits)
        define(node.name, "node")
    for r in iter_refs(graph.outputs):
        if r.name not in known:
            raise GraphRefusedError(f"graph output {r.name[:40]!r} is not defined")
    _check_shapes(graph, limits)


def _plain_value(v, limits) -> bool:
    if v is None or isinstance(v, (bool, int, float, str)):
        return not isinstance(v, str) or len(v) <= limits.max_name
    if isinstance(v, (list, tuple)):
        return len(v) <= limits.max_list and all(_plain_value(x, limits) for x in v)
    return isinstance(v, (torch.dtype, torch.device, torch.layout, torch.memory_format))


def _shape(shape, what, limits) -> int:
    if not isinstance(shape, list) or len(shape) > 16 or not all(
            isinstance(s, int) and not isinstance(s, bool) and 0 <= s for s in shape):
        raise GraphRefusedError(f"graph {what} has an invalid shape")
    n = 1
    for s in shape:
        n *= s
    if n > limits.max_elements:
        raise GraphRefusedError(f"graph {what} has {n} elements; the limit is "
                                f"{limits.max_elements} (GraphLimits.max_elements)")
    return n


# -- one node against its op's schema ---------------------------------------------------------
def _check_node(node, limits) -> None:
    where = f"graph node {node.name!r} ({str(node.op)[:80]})"
    if not isinstance(node.op, str) or not allowed_op(node.op):
        raise GraphRefusedError(f"graph node {node.name!r} uses {str(node.op)[:80]}, which "
                                f"veil does not run: only the ops of the lowering table and "
                                f"a named list of pure ops are allowed")
    if not isinstance(node.args, list) or not isinstance(node.kwargs, dict):
        raise GraphRefusedError(f"{where} has malformed arguments")
    if node.op == "getitem":
        if len(node.args) != 2 or not isinstance(node.args[0], Ref) or \
                not isinstance(node.args[1], int) or node.kwargs:
            raise GraphRefusedError(f"{where} must be getitem(ref, int)")
        return
    op = resolve_op(node.op)
    why = _pure(op)
    if why is not None:
        raise GraphRefusedError(f"{where} is refused: {why}")
    schema = op._schema
    positional = [a for a in schema.arguments if not a.kwarg_only]
    p = dict(zip([a.name for a in positional], node.args)).get("dropout_p",
                                                              node.kwargs.get("dropout_p", 0))
    if p not in (0, 0.0):     # attention's dropout is random: inference graphs have none
        raise GraphRefusedError(f"{where} is refused: dropout_p must be 0")
    if len(node.args) > len(positional):
        raise GraphRefusedError(f"{where} has {len(node.args)} positional arguments; the op "
                                f"takes at most {len(positional)}")
    by_name = {a.name: a for a in schema.arguments}
    for i, v in enumerate(node.args):
        _check_value(v, positional[i].type, f"{where} argument {positional[i].name!r}", limits)
    for k, v in node.kwargs.items():
        a = by_name.get(k)
        if a is None or (not a.kwarg_only and positional.index(a) < len(node.args)):
            raise GraphRefusedError(f"{where} has an unexpected keyword argument {str(k)[:40]!r}")
        _check_value(v, a.type, f"{where} argument {k!r}", limits)


_ENUM_OBJECTS = (torch.dtype, torch.layout, torch.memory_format, torch.device)


def _check_value(v, typ, where, limits) -> None:
    kind = typ.kind()
    if kind == "OptionalType":
        if v is not None:
            _check_value(v, typ.getElementType(), where, limits)
        return
    if kind == "ListType":
        if not isinstance(v, (list, tuple)) or len(v) > limits.max_list:
            raise GraphRefusedError(f"{where} must be a list of at most {limits.max_list}")
        for x in v:
            _check_value(x, typ.getElementType(), where, limits)
        return
    ok = {
        # a Python number stands for a 0-d tensor (torch's wrapped numbers)
        "TensorType": lambda: isinstance(v, (Ref, int, float)) or (
            isinstance(v, torch.Tensor) and v.numel() <= limits.max_list),
        "IntType": lambda: isinstance(v, (int, *_ENUM_OBJECTS)),
        "SymIntType": lambda: isinstance(v, int),
        "FloatType": lambda: isinstance(v, (int, float)),
        "SymFloatType": lambda: isinstance(v, (int, float)),
        "BoolType": lambda: isinstance(v, bool),
        "SymBoolType": lambda: isinstance(v, bool),
        "NumberType": lambda: isinstance(v, (int, float, bool)),
        "StringType": lambda: isinstance(v, str) and v in STRING_ENUMS,
        "DeviceObjType": lambda: isinstance(v, torch.device),
        "ScalarTypeType": lambda: isinstance(v, torch.dtype),
        "LayoutType": lambda: isinstance(v, torch.layout),
        "MemoryFormatType": lambda: isinstance(v, torch.memory_format),
    }.get(kind)
    if ok is None or not ok():
        got = type(v).__name__ if not isinstance(v, str) else "a string not in STRING_ENUMS"
        raise GraphRefusedError(f"{where} must be {typ}, got {got}")


# -- real shapes, on the meta device ----------------------------------------------------------
def _meta_tensor(shape, dtype):
    return torch.empty(shape, dtype=dtype_of(dtype), device="meta")


def _check_shapes(graph: Graph, limits: GraphLimits) -> None:
    """Run every node on meta tensors; each result must be bounded and as declared."""
    env = {i.name: _meta_tensor(i.shape, i.dtype) if i.shape is not None else i.value
           for i in graph.inputs}
    env.update({p.name: _meta_tensor(p.shape, p.dtype) for p in graph.params})
    env.update({k: v.to("meta") if isinstance(v, torch.Tensor) else v
                for k, v in graph.constants.items()})
    for node in graph.nodes:
        args = map_refs(node.args, lambda r: env[r.name])
        kwargs = map_refs(node.kwargs, lambda r: env[r.name])
        try:
            if node.op == "getitem":
                out = args[0][args[1]]
            else:
                if node.op in PUBLIC_ONLY_OPS:
                    kwargs = {**kwargs, "device": torch.device("meta")}
                out = resolve_op(node.op)(*args, **kwargs)
        except (IndexError, TypeError) as exc:
            raise GraphRefusedError(f"graph node {node.name!r} ({node.op}) does not fit its "
                                    f"inputs: {type(exc).__name__}") from None
        except Exception:  # noqa: BLE001 - ops with data-dependent shapes have no meta form
            out = _declared(node)
        _check_result(node, out, limits)
        env[node.name] = out


def _declared(node):
    """A meta stand-in with the owner's declared shape (bounded by `_check_result`)."""
    if node.shape is None:
        return None
    if node.shape and isinstance(node.shape[0], list):
        return tuple(_meta_tensor(s, d) if s is not None else None
                     for s, d in zip(node.shape, node.dtype))
    return _meta_tensor(node.shape, node.dtype)


def _check_result(node, out, limits) -> None:
    outs = out if isinstance(out, (tuple, list)) else (out,)
    for t in outs:
        if isinstance(t, torch.Tensor) and t.numel() > limits.max_elements:
            raise GraphRefusedError(f"graph node {node.name!r} ({node.op}) makes a tensor of "
                                    f"{t.numel()} elements; the limit is {limits.max_elements}"
                                    f" (GraphLimits.max_elements)")
    if isinstance(out, torch.Tensor) and node.shape is not None and \
            list(out.shape) != node.shape:
        raise GraphRefusedError(f"graph node {node.name!r} ({node.op}) declares shape "
                                f"{node.shape}, but its inputs give {list(out.shape)}")


__all__ = ["GraphLimits", "GraphRefusedError", "DEFAULT_LIMITS", "PUBLIC_ONLY_OPS",
           "STRING_ENUMS", "allowed_op", "validate_graph"]
