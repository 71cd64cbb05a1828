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


_WITH_WEIGHTS = ("Conv1d", "BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "Embedding",
                 "LSTMCell", "GRUCell")


def _build(spec: dict, m, owner: int):
    """veil.nn layer for ``spec``; ``m`` is the torch layer at the owner, None elsewhere."""
    kind, args = spec["type"], spec.get("args", [])
    if kind == "Sequential":
        kids = list(m) if m is not None else [None] * len(spec["children"])
        return Sequential(*[_build(s, k, owner) for s, k in zip(spec["children"], kids)])
    if kind == "Linear":
        return L.Linear(*args, owner=owner, init_from=m)
    if kind == "Conv2d":
        i, o, k, s, p, d, g, b = args
        return L.Conv2d(i, o, tuple(k), tuple(s), p if isinstance(p, str) else tuple(p),
                        tuple(d), g, b, owner=owner, init_from=m)
    if kind == "LayerNorm":
        shape, eps, affine, bias = args
        return L.LayerNorm(shape, eps, affine, bias, owner=owner, init_from=m)
    if kind == "Dropout":
        return L.Dropout(*args)
    from . import layers_more as LM
    if kind in _WITH_WEIGHTS:
        return getattr(LM, kind)(*args, owner=owner, init_from=m)
    if hasattr(LM, kind):
        return getattr(LM, kind)(*args)
    return getattr(L, kind)(*args)


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
    return _build(spec, module, owner)
