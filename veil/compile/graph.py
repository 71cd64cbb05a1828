"""The captured program: a flat list of ATen calls, as JSON every party can read.

The owner captures the model (veil.compile.capture) and sends this graph to the other
parties, who need neither the model's Python code nor pickle: arguments are JSON values,
with small tagged objects for what JSON lacks (node references, dtypes, public constant
tensors, infinities). Weights appear only as named placeholders with shapes.

>>> g = Graph(inputs=[Input("x", [2, 3], "float32")], params=[Param("w", [4, 3], "float32")],
...           nodes=[Node("y", "aten.mm.default", [Ref("x"), Ref("w")], {}, [2, 4], "float32")],
...           outputs=[Ref("y")])
>>> Graph.from_json(g.to_json()).nodes[0].args
[Ref(name='x'), Ref(name='w')]
"""

from __future__ import annotations

import base64
import json
import math
import operator
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..errors import ProtocolUsageError

FORMAT_VERSION = 2

_DTYPES = {str(d).removeprefix("torch."): d for d in (
    torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.bool, torch.uint8,
    torch.int8, torch.int16, torch.int32, torch.int64, torch.complex64)}
_LAYOUTS = {"strided": torch.strided}
_FORMATS = {"contiguous_format": torch.contiguous_format,
            "preserve_format": torch.preserve_format, "channels_last": torch.channels_last}


def dtype_name(dt: torch.dtype) -> str:
    return str(dt).removeprefix("torch.")


def dtype_of(name: str) -> torch.dtype:
    try:
        return _DTYPES[name]
    except (KeyError, TypeError):
        raise ProtocolUsageError(f"graph names an unknown dtype {str(name)[:40]!r}") from None


@dataclass(frozen=True)
class Ref:
    """A reference to a graph value: an input, a weight, a constant or a node's result."""
    name: str


@dataclass
class Input:
    name: str
    shape: list | None          # None: a non-tensor input, fixed to ``value`` at capture
    dtype: str | None
    public: bool = False        # declared public at capture (every party passes it)
    key: int | str | None = None  # positional index or keyword name in forward()
    value: Any = None


@dataclass
class Param:
    name: str
    shape: list
    dtype: str


@dataclass
class Node:
    name: str
    op: str                     # "aten.<name>.<overload>" or "getitem"
    args: list
    kwargs: dict
    shape: Any = None           # list for one tensor, list of lists for a tuple
    dtype: Any = None
    src: str = ""               # the user's source line (for errors), public like the graph

    def refs(self):
        return list(iter_refs(self.args)) + list(iter_refs(self.kwargs))


@dataclass
class Graph:
    inputs: list[Input] = field(default_factory=list)
    params: list[Param] = field(default_factory=list)
    constants: dict[str, torch.Tensor] = field(default_factory=dict)
    nodes: list[Node] = field(default_factory=list)
    outputs: list = field(default_factory=list)
    out_spec: dict | None = None  # nesting of the outputs (veil.compile.outspec)
    owner: int = 0

    def users(self) -> dict[str, list[Node]]:
        out: dict[str, list[Node]] = {}
        for n in self.nodes:
            for r in n.refs():
                out.setdefault(r.name, []).append(n)
        return out

    def meta(self) -> dict[str, tuple]:
        """name -> (shape, dtype name) of every value (shape None for non-tensors)."""
        m = {i.name: (i.shape, i.dtype) for i in self.inputs}
        m.update({p.name: (p.shape, p.dtype) for p in self.params})
        m.update({k: (list(v.shape), dtype_name(v.dtype)) if isinstance(v, torch.Tensor)
                  else (None, None) for k, v in self.constants.items()})
        m.update({n.name: (n.shape, n.dtype) for n in self.nodes})
        return m

    def output_names(self) -> set[str]:
        return {r.name for r in iter_refs(self.outputs)}

    # -- JSON --------------------------------------------------------------------------------
    def to_json(self) -> str:
        return json.dumps({
            "version": FORMAT_VERSION, "owner": self.owner, "out_spec": self.out_spec,
            "inputs": [dict(name=i.name, shape=i.shape, dtype=i.dtype, public=i.public,
                            key=i.key, value=encode_value(i.value)) for i in self.inputs],
            "params": [dict(name=p.name, shape=p.shape, dtype=p.dtype) for p in self.params],
            "constants": {k: encode_value(v) for k, v in self.constants.items()},
            "nodes": [dict(name=n.name, op=n.op, args=encode_value(n.args),
                           kwargs=encode_value(n.kwargs), shape=n.shape, dtype=n.dtype,
                           src=n.src) for n in self.nodes],
            "outputs": encode_value(self.outputs),
        }, allow_nan=False)

    @classmethod
    def from_json(cls, text: str) -> "Graph":
        """Parse a graph from JSON; anything malformed is refused with a clear error.

        The text may come from another party: only the fields below are read, every value
        is checked for its kind, and tagged values decode through fixed tables. What the
        graph *does* is checked separately (veil.compile.validate).
        """
        try:
            d = json.loads(text)
            if not isinstance(d, dict) or d.get("version") != FORMAT_VERSION:
                version = d.get("version") if isinstance(d, dict) else None
                raise ProtocolUsageError(f"graph format {str(version)[:20]} != "
                                         f"{FORMAT_VERSION}: every party must run the same "
                                         f"veil version")
            owner = d["owner"]
            if not isinstance(owner, int) or isinstance(owner, bool):
                raise TypeError("owner")
            return cls(
                inputs=[Input(_str(i["name"]), _opt_list(i["shape"]), _opt_str(i["dtype"]),
                              bool(i["public"]), _key(i["key"]), decode_value(i["value"]))
                        for i in _list(d["inputs"])],
                params=[Param(_str(p["name"]), _list(p["shape"]), _str(p["dtype"]))
                        for p in _list(d["params"])],
                constants={_str(k): decode_value(v) for k, v in _dict(d["constants"]).items()},
                nodes=[Node(_str(n["name"]), _str(n["op"]), _list(decode_value(n["args"])),
                            _dict(decode_value(n["kwargs"])), n["shape"], n["dtype"],
                            printable(_str(n["src"])))
                       for n in _list(d["nodes"])],
                outputs=_list(decode_value(d["outputs"])), out_spec=d["out_spec"],
                owner=owner)
        except ProtocolUsageError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            raise ProtocolUsageError(f"malformed graph from the model owner "
                                     f"({type(exc).__name__}: {printable(str(exc))[:80]})"
                                     ) from None


def printable(text: str, limit: int = 300) -> str:
    """``text`` cut to ``limit`` characters of printable ASCII (peer text in our errors)."""
    return "".join(c if " " <= c <= "~" else "?" for c in text[:limit])


def _str(v) -> str:
    if not isinstance(v, str):
        raise TypeError(f"expected a string, got {type(v).__name__}")
    return v


def _opt_str(v):
    return None if v is None else _str(v)


def _list(v) -> list:
    if not isinstance(v, list):
        raise TypeError(f"expected a list, got {type(v).__name__}")
    return v


def _opt_list(v):
    return None if v is None else _list(v)


def _dict(v) -> dict:
    if not isinstance(v, dict):
        raise TypeError(f"expected an object, got {type(v).__name__}")
    return v


def _key(v):
    if v is None or isinstance(v, str) or (isinstance(v, int) and not isinstance(v, bool)):
        return v
    raise TypeError("an input key must be a position or a name")


def iter_refs(v):
    if isinstance(v, Ref):
        yield v
    elif isinstance(v, (list, tuple)):
        for x in v:
            yield from iter_refs(x)
    elif isinstance(v, dict):
        for x in v.values():
            yield from iter_refs(x)


def map_refs(v, fn):
    """``v`` with every Ref replaced by ``fn(ref)`` (lists stay lists, tuples tuples)."""
    if isinstance(v, Ref):
        return fn(v)
    if isinstance(v, list):
        return [map_refs(x, fn) for x in v]
    if isinstance(v, tuple):
        return tuple(map_refs(x, fn) for x in v)
    if isinstance(v, dict):
        return {k: map_refs(x, fn) for k, x in v.items()}
    return v


# -- values <-> JSON -----------------------------------------------------------------------
def encode_value(v):
    if v is None or isinstance(v, (bool, int, str)):
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else {"$float": repr(v)}
    if isinstance(v, Ref):
        return {"$ref": v.name}
    if isinstance(v, (list, tuple)):
        return [encode_value(x) for x in v]
    if isinstance(v, dict):
        return {"$dict": {k: encode_value(x) for k, x in v.items()}}
    if isinstance(v, torch.dtype):
        return {"$dtype": dtype_name(v)}
    if isinstance(v, torch.device):
        return {"$device": "cpu"}            # veil computes on the host; devices are not kept
    if isinstance(v, torch.layout):
        return {"$layout": str(v).removeprefix("torch.")}
    if isinstance(v, torch.memory_format):
        return {"$memory_format": str(v).removeprefix("torch.")}
    if isinstance(v, torch.Tensor):
        # Public constants only (shapes, masks, index tables): never weights.
        t = v.detach().cpu().contiguous()
        raw = t.view(torch.uint8) if t.dtype == torch.bfloat16 else t
        return {"$tensor": base64.b64encode(raw.numpy().tobytes()).decode(),
                "dtype": dtype_name(t.dtype), "shape": list(t.shape)}
    raise ProtocolUsageError(f"cannot put a {type(v).__name__} into the public graph")


def decode_value(v):
    if isinstance(v, list):
        return [decode_value(x) for x in v]
    if not isinstance(v, dict):
        return v
    if "$ref" in v:
        return Ref(v["$ref"])
    if "$float" in v:
        return float(v["$float"])
    if "$dict" in v:
        return {k: decode_value(x) for k, x in v["$dict"].items()}
    if "$dtype" in v:
        return dtype_of(v["$dtype"])
    if "$device" in v:
        return torch.device("cpu")
    if "$layout" in v:
        return _tagged(_LAYOUTS, v["$layout"], "layout")
    if "$memory_format" in v:
        return _tagged(_FORMATS, v["$memory_format"], "memory format")
    if "$tensor" in v:
        dt = dtype_of(v["dtype"])
        shape = _list(v["shape"])
        if not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape):
            raise ProtocolUsageError("graph constant has an invalid shape")
        raw = base64.b64decode(_str(v["$tensor"]), validate=True)
        np_dt = np.uint8 if dt == torch.bfloat16 else torch.empty(0, dtype=dt).numpy().dtype
        n = 1
        for s in shape:
            n *= s
        if n * torch.empty(0, dtype=dt).element_size() != len(raw):
            raise ProtocolUsageError("graph constant's data does not match its shape")
        t = torch.from_numpy(np.frombuffer(raw, dtype=np_dt).copy())
        t = t.view(torch.bfloat16) if dt == torch.bfloat16 else t
        return t.reshape(shape)
    keys = printable(", ".join(str(k) for k in list(v)[:5]), 80)
    raise ProtocolUsageError(f"unknown tagged value in graph: {keys}")


def _tagged(table: dict, name, what: str):
    try:
        return table[name]
    except (KeyError, TypeError):
        raise ProtocolUsageError(f"graph names an unknown {what} {str(name)[:40]!r}") from None


# -- ops by name ---------------------------------------------------------------------------
def op_name(target) -> str:
    """The table key of an fx target: 'aten.convolution.default', or 'getitem'."""
    if target is operator.getitem:
        return "getitem"
    name = str(target)
    if not name.startswith("aten."):
        raise ProtocolUsageError(f"op {name} is outside the ATen op set")
    return name


_OP_PART = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def resolve_op(name: str):
    """The torch callable for a table key (only ATen ops and getitem: no other lookups)."""
    if name == "getitem":
        return operator.getitem
    parts = name.split(".") if isinstance(name, str) else []
    if len(parts) != 3 or parts[0] != "aten" or not all(
            _OP_PART.match(p) and not p.startswith("__") for p in parts[1:]):
        raise ProtocolUsageError(f"graph op {printable(str(name), 80)!r} is not an ATen op")
    try:
        return getattr(getattr(torch.ops.aten, parts[1]), parts[2])
    except AttributeError:
        raise ProtocolUsageError(f"ATen op {name} is unknown to this torch version "
                                 f"({torch.__version__})") from None
