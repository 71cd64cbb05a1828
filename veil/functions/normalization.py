"""layer_norm, group_norm and batch_norm (inference).

layer_norm: mean (local), centred c = x - mean, variance = sum(c^2)/n with the products
summed *before* their one truncation (one per row, not per element: fewer truncation
failures and no rounding build-up over 768 features), then rsqrt(var + eps) on one value
per row (see roots.py) and one product c * rsqrt: 22 rounds (15 with 2-party local
truncation).
The variance must stay below 32768 (the fixed-point range); a row of 768 values of
N(0, 3^2) has 9.

batch_norm in inference mode with public running statistics (the usual case: the model
owner shares a trained model whose statistics travel with it, or folds them into the
preceding layer) is one public affine map: 0 rounds. Secret statistics cost one rsqrt per
channel. normalize and cosine_similarity live in vectors.py.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import ProtocolUsageError
from ..tensor.core import as_public, is_secret
from ..tensor.dispatch import register_torch
from . import _kern as K
from .grad_rules import register_grad
from .roots import root_shares


def _rsqrt_shares(v: torch.Tensor) -> torch.Tensor:
    return root_shares(v, "rsqrt")


def _affine(out, weight, bias, shape):
    if weight is not None:
        # a weight of the right shape is used as it is: a fixed one (a model weight,
        # SecretTensor.fixed_) then reuses its opening instead of opening a fresh copy
        same = tuple(weight.shape) == tuple(shape)
        out = out * (weight if same and is_secret(weight) else
                     weight.reshape(shape) if is_secret(weight) else
                     as_public(weight).reshape(shape))
    if bias is not None:
        out = out + (bias.reshape(shape) if is_secret(bias) else as_public(bias).reshape(shape))
    return out


def normalise_last(share: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """((x - mean) / sqrt(var + eps), 1 / sqrt(var + eps)) over the last dim of shares."""
    f = K.F()
    n = share.shape[-1]
    centred = share - K.scale(share.sum(-1, keepdim=True), 1.0 / n)
    # centred is opened once for its square and for centred * inv (where the protocol
    # reuses openings; see _kern.products_once), and inv once per row, not per element.
    opened: dict | None = {} if K.reuses_openings() else None
    (sq,) = K.products_once([(centred, centred)], opened) if opened is not None else \
        K.products([(centred, centred)])
    var = K.scale(K.trunc([sq.sum(-1, keepdim=True)], f)[0], 1.0 / n, const=eps)
    inv = _rsqrt_shares(var)
    (out,) = K.mul_once([(centred, inv)], opened)
    return out, inv


def _stash(saved, x, xhat, inv):
    if saved is not None:
        saved["xhat"], saved["inv"] = K.wrap(x, xhat), K.wrap(x, inv)


def layer_norm(x, normalized_shape, weight=None, bias=None, eps: float = 1e-5, *,
               saved: dict | None = None):
    """F.layer_norm: normalise over the trailing ``normalized_shape`` dims. 22 rounds (15
    with 2-party local truncation).

    >>> import torch, veil
    >>> def f():
    ...     x = veil.tensor(torch.tensor([[1.0, 2.0, 3.0, 6.0]]) if veil.rank() == 0 else None,
    ...                     owner=0)
    ...     return x.layer_norm((4,)).reveal()
    >>> [round(v, 2) for v in veil.run(f, parties=2, seed=0)[0][0].tolist()]
    [-1.07, -0.53, 0.0, 1.6]
    """
    x = K.float_input(x, "layer_norm")
    shape = _norm_shape(x, normalized_shape)
    flat = x.share.reshape(*x.shape[:x.dim() - len(shape)], -1)
    xhat, inv = normalise_last(flat, eps)
    xhat = K.reshaped(xhat, x.shape)       # keeps its opening for the weight's product
    _stash(saved, x, xhat, inv)
    return _affine(K.wrap(x, xhat), weight, bias, shape)


def _norm_shape(x, normalized_shape) -> tuple:
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else \
        tuple(int(d) for d in normalized_shape)
    if tuple(x.shape[x.dim() - len(shape):]) != shape:
        raise ProtocolUsageError(f"layer_norm: normalized_shape {shape} does not match the "
                                 f"input's trailing dims {tuple(x.shape)}")
    return shape


def _norm_grad(g, xhat, inv, dims):
    """d/dx of (x - mean) * inv over ``dims``: inv (g - mean g - xhat mean(g xhat))."""
    mg = g.mean(dims, keepdim=True)
    mgx = (g * xhat).mean(dims, keepdim=True)
    return (g - mg - xhat * mgx) * inv


def _affine_grads(grad_out, xhat, weight, bias, shape, keep):
    """(d weight, d bias) of out = xhat * weight + bias, summed over the dims not in keep."""
    def reduce(t):
        dims = [d for d in range(t.dim()) if d not in keep]
        return t.sum(dims, keepdim=True).reshape(tuple(weight.shape if weight is not None
                                                          else bias.shape))
    dw = reduce(grad_out * xhat) if _needs(weight) else None
    db = reduce(grad_out) if _needs(bias) else None
    return dw, db


def _needs(t) -> bool:
    return is_secret(t) and getattr(t, "requires_grad", False)


def _weighted(grad_out, weight, shape):
    if weight is None:
        return grad_out
    return grad_out * (weight.reshape(shape) if is_secret(weight) else
                       as_public(weight).reshape(shape))


@register_grad("layer_norm")
def _layer_norm_grad(grad_out, out, x, normalized_shape, weight=None, bias=None, eps=1e-5,
                     *, saved=None):
    shape = _norm_shape(x, normalized_shape)
    if saved and "xhat" in saved:
        xhat, inv = saved["xhat"], saved["inv"]
    else:
        flat = x.share.reshape(*x.shape[:x.dim() - len(shape)], -1)
        xh, iv = normalise_last(flat, eps)
        xhat, inv = K.wrap(x, xh.reshape(x.shape)), K.wrap(x, iv)
    k = len(shape)
    lead = x.shape[:x.dim() - k]
    g = _weighted(grad_out, weight, shape)
    dx = _norm_grad(g.reshape(*lead, -1), xhat.reshape(*lead, -1), inv, [-1]).reshape(x.shape)
    dw, db = _affine_grads(grad_out, xhat, weight, bias, shape,
                           keep=set(range(x.dim() - k, x.dim())))
    return dx, None, dw, db, None


def group_norm(x, num_groups: int, weight=None, bias=None, eps: float = 1e-5, *,
               saved: dict | None = None):
    """F.group_norm on (N, C, *) inputs: statistics per sample and group of channels.

    >>> import torch, veil
    >>> def f():
    ...     x = veil.tensor(torch.arange(8.0).reshape(1, 4, 2) if veil.rank() == 0 else None,
    ...                     owner=0)
    ...     return x.group_norm(2).reveal()
    >>> [round(v, 2) for v in veil.run(f, parties=2, seed=0)[0][0, 0].tolist()]
    [-1.34, -0.45]
    """
    x = K.float_input(x, "group_norm")
    if x.dim() < 2 or x.shape[1] % num_groups:
        raise ProtocolUsageError(f"group_norm: {num_groups} groups do not divide the "
                                 f"channels of a {tuple(x.shape)} input")
    xhat, inv = normalise_last(x.share.reshape(x.shape[0], num_groups, -1), eps)
    _stash(saved, x, xhat.reshape(x.shape), inv)
    return _affine(K.wrap(x, xhat.reshape(x.shape)), weight, bias,
                   (1, -1) + (1,) * (x.dim() - 2))


@register_grad("group_norm")
def _group_norm_grad(grad_out, out, x, num_groups, weight=None, bias=None, eps=1e-5, *,
                     saved=None):
    if saved and "xhat" in saved:
        xhat, inv = saved["xhat"], saved["inv"]
    else:
        xh, iv = normalise_last(x.share.reshape(x.shape[0], num_groups, -1), eps)
        xhat, inv = K.wrap(x, xh.reshape(x.shape)), K.wrap(x, iv)
    shape = (1, -1) + (1,) * (x.dim() - 2)
    g = _weighted(grad_out, weight, shape)
    n = x.shape[0]
    dx = _norm_grad(g.reshape(n, num_groups, -1), xhat.reshape(n, num_groups, -1), inv,
                    [-1]).reshape(x.shape)
    dw, db = _affine_grads(grad_out, xhat, weight, bias, shape, keep={1})
    return dx, None, dw, db, None


def batch_norm(x, running_mean, running_var, weight=None, bias=None, training: bool = False,
               momentum: float = 0.1, eps: float = 1e-5):
    """F.batch_norm in inference mode: (x - mean) / sqrt(var + eps) * weight + bias.

    Public statistics make it a local affine map (0 rounds); secret ones cost one rsqrt
    per channel. Training mode (batch statistics, running-stat updates) is not supported:
    call ``model.eval()`` first.
    """
    if training:
        raise ProtocolUsageError("batch_norm: training mode is not supported on secret "
                                 "tensors; call model.eval() (inference uses the running "
                                 "statistics)")
    if running_mean is None or running_var is None:
        raise ProtocolUsageError("batch_norm: inference needs running_mean and running_var")
    x = K.float_input(x, "batch_norm")
    shape = (1, -1) + (1,) * (x.dim() - 2)
    if is_secret(running_var):
        inv = K.wrap(running_var, _rsqrt_shares(K.add_const(running_var.share, eps)))
    else:
        inv = torch.rsqrt(as_public(running_var).double() + eps)
    mean = running_mean.reshape(shape) if is_secret(running_mean) else \
        as_public(running_mean).reshape(shape)
    out = (x - mean) * inv.reshape(shape)
    return _affine(out, weight, bias, shape)


@register_grad("batch_norm")
def _batch_norm_grad(grad_out, out, x, running_mean, running_var, weight=None, bias=None,
                     training=False, momentum=0.1, eps=1e-5):
    shape = (1, -1) + (1,) * (x.dim() - 2)
    if is_secret(running_var):
        inv = running_var.share
        inv = K.wrap(running_var, _rsqrt_shares(K.add_const(inv, eps))).reshape(shape)
    else:
        inv = torch.rsqrt(as_public(running_var).double() + eps).reshape(shape)
    g = _weighted(grad_out, weight, shape)
    dx = g * inv if _needs(x) else None
    xhat = None
    if _needs(weight):
        mean = running_mean.reshape(shape) if is_secret(running_mean) else \
            as_public(running_mean).reshape(shape)
        xhat = (x - mean) * inv
    dw, db = _affine_grads(grad_out, xhat, weight, bias, shape, keep={1})
    return dx, None, None, dw, db, None, None, None


register_torch([F.layer_norm], lambda x, normalized_shape, weight=None, bias=None, eps=1e-5:
               x.layer_norm(normalized_shape, weight, bias, eps))
register_torch([F.group_norm], lambda x, num_groups, weight=None, bias=None, eps=1e-5:
               x.group_norm(num_groups, weight, bias, eps))
register_torch([F.batch_norm], lambda x, running_mean, running_var, weight=None, bias=None,
               training=False, momentum=0.1, eps=1e-5:
               x.batch_norm(running_mean, running_var, weight, bias, training, momentum, eps))

__all__ = ["layer_norm", "group_norm", "batch_norm", "normalise_last"]
