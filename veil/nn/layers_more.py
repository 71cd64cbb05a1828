"""More torch.nn layers with torch's names: Hardtanh, ReLU6, Softmax, LogSoftmax,
CosineSimilarity, BatchNorm1d/2d/3d (training and eval), Embedding (public indices).

Each forwards to a SecretTensor method (costs in veil.functions / docs/functions.md).
"""

from __future__ import annotations

import torch

from . import more_functional as MF
from .layers import _ConvNd, _shared_params
from .module import Module


class Hardtanh(Module):
    """clamp(x, min_val, max_val): one comparison and select per bound."""

    def __init__(self, min_val: float = -1.0, max_val: float = 1.0, inplace: bool = False):
        super().__init__()
        self.min_val, self.max_val = min_val, max_val

    def forward(self, x):
        return MF.hardtanh(x, self.min_val, self.max_val)

    def extra_repr(self) -> str:
        return f"min_val={self.min_val}, max_val={self.max_val}"


class ReLU6(Hardtanh):
    def __init__(self, inplace: bool = False):
        super().__init__(0.0, 6.0)


class Softmax(Module):
    def __init__(self, dim: int | None = None):
        super().__init__()
        self.dim = -1 if dim is None else dim

    def forward(self, x):
        return x.softmax(self.dim)


class LogSoftmax(Softmax):
    def forward(self, x):
        return x.log_softmax(self.dim)


class CosineSimilarity(Module):
    """torch.nn.CosineSimilarity (veil.functions cosine_similarity: 16 rounds)."""

    def __init__(self, dim: int = 1, eps: float = 1e-8):
        super().__init__()
        self.dim, self.eps = dim, eps

    def forward(self, x1, x2):
        return torch.cosine_similarity(x1, x2, self.dim, self.eps)   # either may be public


__all__ = ["Hardtanh", "ReLU6", "Softmax", "LogSoftmax", "CosineSimilarity"]


# -- layers with parameters ---------------------------------------------------------------------
def _share_tensor(value, owner):
    """``value`` (at the owner; None elsewhere) as a secret tensor; shape public."""
    from ..tensor import tensor
    return tensor(value.detach().float() if value is not None else None, owner=owner)


class _BatchNorm(Module):
    """torch.nn.BatchNorm{1,2,3}d: batch statistics on shares in training mode (running
    statistics updated, secret), the running statistics in eval mode."""

    _dims: tuple = ()

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1,
                 affine: bool = True, track_running_stats: bool = True, *, owner: int = 0,
                 init_from=None):
        from ..context import current
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        make = lambda: torch.nn.BatchNorm1d(num_features, eps, momentum, affine,  # noqa: E731
                                            track_running_stats)
        if affine:
            self.weight, self.bias = _shared_params(owner, make, ["weight", "bias"], init_from)
        else:
            self.weight = self.bias = None
        if track_running_stats:
            src = init_from if current().rank == owner and init_from is not None else \
                (make() if current().rank == owner else None)
            self.running_mean = _share_tensor(src.running_mean if src is not None else None,
                                              owner)
            self.running_var = _share_tensor(src.running_var if src is not None else None,
                                             owner)
        else:
            self.running_mean = self.running_var = None

    def forward(self, x):
        from ..errors import ProtocolUsageError
        if x.dim() not in self._dims:
            raise ProtocolUsageError(f"{type(self).__name__} expects a {self._dims}-d input, "
                                     f"got {x.dim()}-d")
        use_batch = self.training or not self.track_running_stats
        return x.batch_norm(self.running_mean, self.running_var, self.weight, self.bias,
                            use_batch, self.momentum, self.eps)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, " \
               f"affine={self.affine}"


class BatchNorm1d(_BatchNorm):
    _dims = (2, 3)


class BatchNorm2d(_BatchNorm):
    _dims = (4,)


class BatchNorm3d(_BatchNorm):
    _dims = (5,)


class Conv1d(_ConvNd):
    """torch.nn.Conv1d with secret weight and bias (zero padding mode only)."""
    torch_cls = torch.nn.Conv1d
    conv = staticmethod(torch.nn.functional.conv1d)


class Embedding(Module):
    """torch.nn.Embedding: a secret table; public indices select rows locally, secret
    indices through a one-hot (one batch of equality tests + one product)."""

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx=None, *,
                 owner: int = 0, init_from=None):
        super().__init__()
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        (self.weight,) = _shared_params(owner, lambda: torch.nn.Embedding(
            num_embeddings, embedding_dim, padding_idx), ["weight"], init_from)

    def forward(self, idx):
        from ..tensor.core import is_secret
        if is_secret(idx):
            oh = torch.nn.functional.one_hot(idx, self.num_embeddings)
            return oh.to(self.weight.dtype) @ self.weight
        return self.weight[torch.as_tensor(idx).long()]


class AdaptiveMaxPool2d(Module):
    def __init__(self, output_size, return_indices: bool = False):
        super().__init__()
        self.output_size, self.return_indices = output_size, return_indices

    def forward(self, x):
        return torch.nn.functional.adaptive_max_pool2d(x, self.output_size, self.return_indices)


__all__ += ["BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "Conv1d", "Embedding",
            "AdaptiveMaxPool2d"]


# -- recurrent cells ----------------------------------------------------------------------------
class _Cell(Module):
    _gates = 1
    _torch = None

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, *,
                 owner: int = 0, init_from=None):
        super().__init__()
        self.input_size, self.hidden_size, self.bias_ = input_size, hidden_size, bias
        names = ["weight_ih", "weight_hh"] + (["bias_ih", "bias_hh"] if bias else [])
        params = _shared_params(owner, lambda: type(self)._torch(input_size, hidden_size, bias),
                                names, init_from)
        self.weight_ih, self.weight_hh = params[0], params[1]
        self.bias_ih, self.bias_hh = (params[2], params[3]) if bias else (None, None)

    def _zeros(self, x):
        return torch.zeros(*x.shape[:-1], self.hidden_size)

    def _proj(self, x, h):
        F_ = torch.nn.functional
        return F_.linear(x, self.weight_ih, self.bias_ih), F_.linear(h, self.weight_hh,
                                                                      self.bias_hh)


class LSTMCell(_Cell):
    """torch.nn.LSTMCell: two linear maps, 3 sigmoids and 2 tanh per step (veil.functions).

    ``forward(x, (h, c))`` returns ``(h', c')``; state defaults to zeros (public)."""
    _torch = torch.nn.LSTMCell

    def forward(self, x, hx=None):
        h, c = hx if hx is not None else (self._zeros(x), self._zeros(x))
        gi, gh = self._proj(x, h)
        i, f, g, o = (gi + gh).chunk(4, -1)
        c2 = f.sigmoid() * c + i.sigmoid() * g.tanh()
        return o.sigmoid() * c2.tanh(), c2


class GRUCell(_Cell):
    """torch.nn.GRUCell: ``forward(x, h)`` returns ``h'`` (h defaults to zeros)."""
    _torch = torch.nn.GRUCell

    def forward(self, x, hx=None):
        h = hx if hx is not None else self._zeros(x)
        F_ = torch.nn.functional
        gi = F_.linear(x, self.weight_ih, self.bias_ih)
        gh = F_.linear(h, self.weight_hh, self.bias_hh)
        ir, iz, inn = gi.chunk(3, -1)
        hr, hz, hn = gh.chunk(3, -1)
        r, z = (ir + hr).sigmoid(), (iz + hz).sigmoid()
        n = (inn + r * hn).tanh()
        return (1 - z) * n + z * h


__all__ += ["LSTMCell", "GRUCell"]
