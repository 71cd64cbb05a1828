"""`from_torch`: a trainable veil.nn model from a torch model one party holds.

Supported: ``torch.nn.Sequential`` (nested too) of Linear, Conv1d, Conv2d, ReLU, ReLU6,
Hardtanh, Sigmoid, Tanh, GELU, Softmax, LogSoftmax, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d,
AdaptiveMaxPool2d, Flatten, Dropout, LayerNorm, BatchNorm1d/2d/3d (trainable: batch
statistics in training mode), Embedding, Identity; and a bare LSTMCell or GRUCell (called
with its state, as in torch).
A model with its own ``forward`` (anything but those layers in sequence) is refused
with the layer's name: write it with veil.nn layers (same constructors), or use
`veil.secure` for inference only (its captured graph has fixed input shapes and folded
batch norm, so it is not trained).
"""

from __future__ import annotations

import torch

from ..context import current
from ..errors import ProtocolUsageError
from . import layers as L
from .module import Sequential

_SIMPLE = {torch.nn.ReLU: "ReLU", torch.nn.Sigmoid: "Sigmoid", torch.nn.Tanh: "Tanh",
           torch.nn.Identity: "Identity"}


def _describe(m, path: str = "model") -> dict:
    """The public architecture of ``m`` (types and sizes, no weights)."""
    t = type(m)
    if t is torch.nn.Sequential:
        return {"type": "Sequential",
                "children": [_describe(c, f"{path}[{i}]") for i, c in enumerate(m)]}
    if t in _SIMPLE:
        return {"type": _SIMPLE[t]}
    if t is torch.nn.Linear:
        return {"type": "Linear", "args": [m.in_features, m.out_features, m.bias is not None]}
    if t is torch.nn.Conv2d:
        if m.padding_mode != "zeros":
            raise ProtocolUsageError(f"{path}: Conv2d padding_mode={m.padding_mode!r}; only "
                                     f"'zeros' is supported")
        return {"type": "Conv2d", "args": [m.in_channels, m.out_channels, list(m.kernel_size),
                                           list(m.stride), m.padding if isinstance(m.padding, str)
                                           else list(m.padding), list(m.dilation), m.groups,
                                           m.bias is not None]}
    if t is torch.nn.GELU:
        return {"type": "GELU", "args": [m.approximate]}
    if t is torch.nn.MaxPool2d:
        if m.ceil_mode or m.return_indices:
            raise ProtocolUsageError(f"{path}: MaxPool2d ceil_mode/return_indices unsupported")
        return {"type": "MaxPool2d", "args": [m.kernel_size, m.stride, m.padding, m.dilation]}
    if t is torch.nn.AvgPool2d:
        return {"type": "AvgPool2d", "args": [m.kernel_size, m.stride, m.padding, m.ceil_mode,
                                              m.count_include_pad, m.divisor_override]}
    if t is torch.nn.AdaptiveAvgPool2d:
        return {"type": "AdaptiveAvgPool2d", "args": [m.output_size]}
    if t is torch.nn.Flatten:
        return {"type": "Flatten", "args": [m.start_dim, m.end_dim]}
    if t is torch.nn.Dropout:
        return {"type": "Dropout", "args": [m.p]}
    if t is torch.nn.LayerNorm:
        return {"type": "LayerNorm", "args": [list(m.normalized_shape), m.eps,
                                              m.elementwise_affine, m.bias is not None]}
    more = _describe_more(m, t, path)
    if more is not None:
        return more
    raise ProtocolUsageError(
        f"{path}: {t.__module__}.{t.__qualname__} is not supported by veil.nn.from_torch "
        f"(Sequential of Linear/Conv2d/activations/pooling/Flatten/Dropout/LayerNorm). "
        f"Write the model with veil.nn layers, or use veil.secure for inference")


def _describe_more(m, t, path):
    """Layers of veil.nn.layers_more (issue 10)."""
    nn = torch.nn
    if t is nn.Conv1d:
        if m.padding_mode != "zeros":
            raise ProtocolUsageError(f"{path}: Conv1d padding_mode={m.padding_mode!r}; only "
                                     f"'zeros' is supported")
        return {"type": "Conv1d", "args": [m.in_channels, m.out_channels, m.kernel_size[0],
                                           m.stride[0], m.padding if isinstance(m.padding, str)
                                           else m.padding[0], m.dilation[0], m.groups,
                                           m.bias is not None]}
    if t is nn.ReLU6:
        return {"type": "ReLU6"}
    if t is nn.Hardtanh:
        return {"type": "Hardtanh", "args": [m.min_val, m.max_val]}
    if t in (nn.Softmax, nn.LogSoftmax):
        return {"type": t.__name__, "args": [m.dim]}
    if t in (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d):
        return {"type": t.__name__, "args": [m.num_features, m.eps, m.momentum, m.affine,
                                             m.track_running_stats]}
    if t is nn.AdaptiveMaxPool2d:
        return {"type": "AdaptiveMaxPool2d", "args": [m.output_size, m.return_indices]}
    if t in (nn.LSTMCell, nn.GRUCell):
        return {"type": t.__name__, "args": [m.input_size, m.hidden_size, m.bias]}
    if t is nn.Embedding:
        if m.max_norm is not None or m.sparse:
            raise ProtocolUsageError(f"{path}: Embedding max_norm/sparse are not supported")
        return {"type": "Embedding", "args": [m.num_embeddings, m.embedding_dim,
                                              m.padding_idx]}
    return None


# -- the receiving side: a peer's description is untrusted input --------------------------
# Each layer kind the description may name, with a check per argument; nothing else is
# ever looked up (no getattr on a peer's string), and every size is bounded before any
# layer allocates its shares.
_MAX_SIZE = 1 << 20           # one dimension (features, channels, kernel side)
_MAX_WEIGHTS = 1 << 30        # the whole model
_MAX_DEPTH, _MAX_CHILDREN = 32, 4096


def _int(lo=0, hi=_MAX_SIZE):
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


def _is_bool(v):
    return isinstance(v, bool)


def _ints(n, lo=0):
    """an int, or a list of ``n`` ints (a kernel size, stride, padding ...)"""
    one = _int(lo)
    return lambda v: one(v) or (isinstance(v, (list, tuple)) and len(v) == n and
                                 all(map(one, v)))


def _opt(check):
    return lambda v: v is None or check(v)


def _float(lo, hi):
    return lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and lo <= v <= hi


def _out_size(v):
    """an adaptive pool's output size: an int, or two ints (None keeps that side)"""
    return _int(1)(v) or (isinstance(v, (list, tuple)) and len(v) == 2 and
                          all(_opt(_int(1))(x) for x in v))


_BN = (_int(1), _float(1e-12, 1.0), _opt(_float(0.0, 1.0)), _is_bool, _is_bool)

_ARGS = {
    "ReLU": (), "Sigmoid": (), "Tanh": (), "Identity": (),
    "Linear": (_int(1), _int(1), _is_bool),
    "Conv2d": (_int(1), _int(1), _ints(2, 1), _ints(2, 1),
               lambda v: v in ("same", "valid") or _ints(2)(v), _ints(2, 1), _int(1), _is_bool),
    "GELU": (lambda v: v in ("none", "tanh"),),
    "MaxPool2d": (_ints(2, 1), _opt(_ints(2, 1)), _ints(2), _ints(2, 1)),
    "AvgPool2d": (_ints(2, 1), _opt(_ints(2, 1)), _ints(2), _is_bool, _is_bool,
                  _opt(_int(1))),
    "AdaptiveAvgPool2d": (_out_size,),
    "Flatten": (_int(-16, 16), _int(-16, 16)),
    "Dropout": (_float(0.0, 1.0),),
    "LayerNorm": (lambda v: isinstance(v, (list, tuple)) and 0 < len(v) <= 8 and
                  all(map(_int(1), v)),
                  _float(1e-12, 1.0), _is_bool, _is_bool),
    # veil.nn.layers_more (issue 10)
    "Conv1d": (_int(1), _int(1), _int(1), _int(1), lambda v: v in ("same", "valid") or
               _int(0)(v), _int(1), _int(1), _is_bool),
    "ReLU6": (),
    "Hardtanh": (_float(-1e4, 1e4), _float(-1e4, 1e4)),
    "Softmax": (_opt(_int(-16, 16)),), "LogSoftmax": (_opt(_int(-16, 16)),),
    "BatchNorm1d": _BN, "BatchNorm2d": _BN, "BatchNorm3d": _BN,
    "AdaptiveMaxPool2d": (_out_size, _is_bool),
    "LSTMCell": (_int(1), _int(1), _is_bool), "GRUCell": (_int(1), _int(1), _is_bool),
    "Embedding": (_int(1), _int(1), _opt(_int(-_MAX_SIZE, _MAX_SIZE))),
}


def _weights(kind: str, args: list) -> int:
    if kind == "Linear":
        return args[0] * args[1] + args[1]
    if kind == "Conv2d":
        k = args[2] if isinstance(args[2], list) else [args[2]] * 2
        return args[1] * (args[0] // args[6] if args[6] else 0) * k[0] * k[1] + args[1]
    if kind == "LayerNorm":
        n = 1
        for d in args[0]:
            n *= d
        return 2 * n
    if kind == "Conv1d":
        return args[1] * (args[0] // args[6]) * args[2] + args[1]
    if kind.startswith("BatchNorm"):
        return 4 * args[0]
    if kind in ("LSTMCell", "GRUCell"):
        return (4 if kind == "LSTMCell" else 3) * args[1] * (args[0] + args[1] + 2)
    if kind == "Embedding":
        return args[0] * args[1]
    return 0


def _check_spec(spec, path="model", depth=0) -> int:
    """Number of weights ``spec`` describes; a clear error for anything malformed."""
    if depth > _MAX_DEPTH or not isinstance(spec, dict) or not isinstance(spec.get("type"),
                                                                          str):
        raise ProtocolUsageError(f"{path}: malformed layer description from the model owner")
    kind = spec["type"]
    if kind == "Sequential":
        kids = spec.get("children")
        if not isinstance(kids, list) or len(kids) > _MAX_CHILDREN or set(spec) != {
                "type", "children"}:
            raise ProtocolUsageError(f"{path}: malformed Sequential from the model owner")
        return sum(_check_spec(c, f"{path}[{i}]", depth + 1) for i, c in enumerate(kids))
    checks = _ARGS.get(kind)
    if checks is None:
        raise ProtocolUsageError(f"{path}: the model owner named a layer kind "
                                 f"{kind[:40]!r} that veil.nn.from_torch does not build")
    args = spec.get("args", [])
    if not isinstance(args, list) or len(args) != len(checks) or not set(spec) <= {
            "type", "args"}:
        raise ProtocolUsageError(f"{path}: {kind} takes {len(checks)} arguments from the model "
                                 f"owner")
    for i, (check, v) in enumerate(zip(checks, args)):
        if not check(v):
            raise ProtocolUsageError(f"{path}: {kind} argument {i} from the model owner is "
                                     f"out of range or of the wrong kind")
    return _weights(kind, args)


def _pairs(v):
    return tuple(v) if isinstance(v, list) else v


def _build(spec: dict, m, owner: int):
    """veil.nn layer for a checked ``spec``; ``m`` is the torch layer at the owner."""
    kind, args = spec["type"], spec.get("args", [])
    if kind == "Sequential":
        kids = list(m) if m is not None else [None] * len(spec["children"])
        return Sequential(*[_build(s, k, owner) for s, k in zip(spec["children"], kids)])
    if kind == "Linear":
        return L.Linear(*args, owner=owner, init_from=m)
    if kind == "Conv2d":
        i, o, k, s, p, d, g, b = args
        return L.Conv2d(i, o, _pairs(k), _pairs(s), p if isinstance(p, str) else _pairs(p),
                        _pairs(d), g, b, owner=owner, init_from=m)
    if kind == "LayerNorm":
        shape, eps, affine, bias = args
        return L.LayerNorm(shape, eps, affine, bias, owner=owner, init_from=m)
    from . import layers_more as LM
    builders = {"ReLU": L.ReLU, "Sigmoid": L.Sigmoid, "Tanh": L.Tanh, "Identity": L.Identity,
                "GELU": L.GELU, "MaxPool2d": L.MaxPool2d, "AvgPool2d": L.AvgPool2d,
                "AdaptiveAvgPool2d": L.AdaptiveAvgPool2d, "Flatten": L.Flatten,
                "Dropout": L.Dropout, "ReLU6": LM.ReLU6, "Hardtanh": LM.Hardtanh,
                "Softmax": LM.Softmax, "LogSoftmax": LM.LogSoftmax,
                "AdaptiveMaxPool2d": LM.AdaptiveMaxPool2d}
    with_weights = {"Conv1d": LM.Conv1d, "BatchNorm1d": LM.BatchNorm1d,
                    "BatchNorm2d": LM.BatchNorm2d, "BatchNorm3d": LM.BatchNorm3d,
                    "Embedding": LM.Embedding, "LSTMCell": LM.LSTMCell, "GRUCell": LM.GRUCell}
    if kind in with_weights:
        return with_weights[kind](*[_pairs(a) for a in args], owner=owner, init_from=m)
    return builders[kind](*[_pairs(a) for a in args])


def from_torch(module, owner: int):
    """A trainable veil.nn model with ``module``'s architecture and current weights.

    Party ``owner`` passes the torch module, every other party ``None``. Discloses the
    architecture (layer types and sizes) to every party; the weights are secret-shared.

    >>> import torch, veil
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1))
    >>> def f():
    ...     model = veil.nn.from_torch(net if veil.rank() == 0 else None, owner=0)
    ...     return model.reveal_state_dict(to=0)       # discloses the weights to party 0
    >>> got = veil.run(f, parties=2, seed=0)[0]
    >>> all((got[k] - v).abs().max() < 1e-4 for k, v in net.state_dict().items())
    True
    """
    ctx = current()
    if not isinstance(owner, int) or not 0 <= owner < ctx.world_size:
        raise ProtocolUsageError(f"owner must be a party in 0..{ctx.world_size - 1}")
    if (module is not None) != (ctx.rank == owner):
        raise ProtocolUsageError(f"party {ctx.rank}: the owner (party {owner}) passes the torch "
                                 f"module, every other party passes None")
    spec = _describe(module) if module is not None else None
    # Discloses the architecture (no weights) to every party: public by contract.
    spec = ctx.comm.broadcast_obj(spec, owner)
    if _check_spec(spec) > _MAX_WEIGHTS:     # untrusted at the receivers: checked first
        raise ProtocolUsageError(f"the model owner's architecture has more than "
                                 f"{_MAX_WEIGHTS} weights")
    return _build(spec, module, owner)
