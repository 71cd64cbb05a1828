"""Layers with torch.nn's constructors and semantics, on SecretTensors.

Trainable layers take ``owner=`` (default 0): the party that draws torch's default
initialisation (torch's global RNG at that party, so ``torch.manual_seed(s)`` there
reproduces ``torch.nn.Linear(...)``'s weights exactly) and secret-shares it. Pass
``init_from=`` a torch layer of the same kind (at the owner; None elsewhere) to share its
current weights instead (what `veil.nn.from_torch` does).
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F

from ..context import current
from ..comm.limits import check_count
from ..errors import ProtocolUsageError
from ..tensor import tensor
from .module import Module


def _shared_params(owner: int, build, names, init_from=None):
    """Build a torch layer at ``owner`` only (or take ``init_from``) and share the named
    tensors (shapes public)."""
    if current().rank != owner:
        if init_from is not None:
            raise ProtocolUsageError(f"init_from is the owner's (party {owner}) torch layer; "
                                     f"the other parties pass None")
        layer = None
    else:
        layer = init_from if init_from is not None else build()
    out = []
    for n in names:
        v = getattr(layer, n).detach().float() if layer is not None else None
        # Discloses the parameter's shape (the layer's size) to every party.
        out.append(tensor(v, owner=owner).requires_grad_())
    return out


class Linear(Module):
    """torch.nn.Linear: y = x W^T + b; W (out, in) and b (out,) secret.

    >>> import torch, veil
    >>> def f():
    ...     if veil.rank() == 0:              # the owner's RNG draws the init
    ...         torch.manual_seed(0)
    ...     layer = veil.nn.Linear(3, 2)
    ...     x = veil.tensor(torch.ones(4, 3) if veil.rank() == 1 else None, owner=1)
    ...     return layer(x).shape
    >>> veil.run(f, parties=2, seed=0)[0]
    torch.Size([4, 2])
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *,
                 owner: int = 0, init_from=None) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        names = ["weight", "bias"] if bias else ["weight"]
        params = _shared_params(owner, lambda: torch.nn.Linear(in_features, out_features, bias),
                                names, init_from)
        self.weight = params[0]
        self.bias = params[1] if bias else None

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, " \
               f"bias={self.bias is not None}"


class _ConvNd(Module):
    """Shared constructor of the convolution layers: secret weight and bias made like
    ``torch_cls`` makes them (zero padding mode only), applied with ``conv``."""
    torch_cls = conv = None

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, groups: int = 1, bias: bool = True, padding_mode: str = "zeros",
                 *, owner: int = 0, init_from=None) -> None:
        super().__init__()
        name = type(self).__name__
        if padding_mode != "zeros":
            raise ProtocolUsageError(f"{name} supports padding_mode='zeros' only")
        self.args = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
        self.shape = (in_channels, out_channels, kernel_size)
        names = ["weight", "bias"] if bias else ["weight"]
        params = _shared_params(owner, lambda: type(self).torch_cls(
            in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias),
            names, init_from)
        self.weight = params[0]
        self.bias = params[1] if bias else None

    def forward(self, x):
        return type(self).conv(x, self.weight, self.bias, **self.args)

    def extra_repr(self) -> str:
        i, o, k = self.shape
        return f"{i}, {o}, kernel_size={k}, " + ", ".join(f"{k}={v}" for k, v in self.args.items())


class Conv2d(_ConvNd):
    """torch.nn.Conv2d with secret weight and bias (zero padding mode only)."""
    torch_cls = torch.nn.Conv2d
    conv = staticmethod(F.conv2d)


class _Elementwise(Module):
    fn = None

    def forward(self, x):
        return type(self).fn(x)


class ReLU(_Elementwise):
    """max(x, 0): one comparison and one select forward, one select backward."""
    fn = staticmethod(lambda x: x.relu())

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()


class Sigmoid(_Elementwise):
    fn = staticmethod(lambda x: x.sigmoid())


class Tanh(_Elementwise):
    fn = staticmethod(lambda x: x.tanh())


class GELU(Module):
    def __init__(self, approximate: str = "none") -> None:
        super().__init__()
        self.approximate = approximate

    def forward(self, x):
        return F.gelu(x, approximate=self.approximate)


class Identity(Module):
    def forward(self, x):
        return x


class Flatten(Module):
    def __init__(self, start_dim: int = 1, end_dim: int = -1) -> None:
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, x):
        return x.flatten(self.start_dim, self.end_dim)


class MaxPool2d(Module):
    """Max pooling: a max tree per window forward; backward re-runs it with a one-hot."""

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1) -> None:
        super().__init__()
        self.args = (kernel_size, stride, padding, dilation)

    def forward(self, x):
        return F.max_pool2d(x, *self.args)


class AvgPool2d(Module):
    """Average pooling: local sums and one truncation, both ways."""

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False,
                 count_include_pad=True, divisor_override=None) -> None:
        super().__init__()
        self.args = (kernel_size, stride, padding, ceil_mode, count_include_pad,
                     divisor_override)

    def forward(self, x):
        return F.avg_pool2d(x, *self.args)


class AdaptiveAvgPool2d(Module):
    def __init__(self, output_size) -> None:
        super().__init__()
        self.output_size = output_size

    def forward(self, x):
        return F.adaptive_avg_pool2d(x, self.output_size)


class LayerNorm(Module):
    """torch.nn.LayerNorm; the normalisation itself comes from veil.functions."""

    def __init__(self, normalized_shape, eps: float = 1e-5, elementwise_affine: bool = True,
                 bias: bool = True, *, owner: int = 0, init_from=None) -> None:
        super().__init__()
        shape = (normalized_shape,) if isinstance(normalized_shape, int) else \
            tuple(normalized_shape)
        self.normalized_shape, self.eps = shape, eps
        self.weight = self.bias = None
        if elementwise_affine:
            names = ["weight", "bias"] if bias else ["weight"]
            params = _shared_params(owner, lambda: torch.nn.LayerNorm(shape, eps, True, bias),
                                    names, init_from)
            self.weight = params[0]
            self.bias = params[1] if bias else None

    def forward(self, x):
        return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)


class Dropout(Module):
    """torch.nn.Dropout with a *public* random mask (free: a local product).

    The mask is data-independent noise, so every party knowing it discloses nothing
    about the data; what stays secret is the activations it multiplies. The parties
    agree on the mask's seed once (party 0 draws it from the OS unless ``seed`` is
    given, and sends it: one round at construction).
    """

    def __init__(self, p: float = 0.5, *, seed: int | None = None) -> None:
        super().__init__()
        if not 0 <= p < 1:
            raise ProtocolUsageError(f"dropout probability must be in [0, 1), got {p}")
        self.p = p
        ctx = current()
        mine = seed if seed is not None else int.from_bytes(os.urandom(8), "little") >> 1
        # Discloses party 0's random seed (public randomness, independent of any data).
        agreed = ctx.comm.broadcast_obj(mine if ctx.rank == 0 else None, 0)
        check_count(agreed, (1 << 63) - 1, "a dropout seed", ctx.comm.peer_name(0))
        self._gen = torch.Generator().manual_seed(agreed)

    def forward(self, x):
        if not self.training or self.p == 0:
            return x
        keep = (torch.rand(x.shape, generator=self._gen) >= self.p).to(torch.float64)
        return x * (keep / (1 - self.p))

    def extra_repr(self) -> str:
        return f"p={self.p}"
