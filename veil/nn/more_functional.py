"""More torch.nn.functional on secret tensors: hardtanh, dropout, and the losses
binary_cross_entropy, l1_loss, smooth_l1_loss, huber_loss, kl_div, nll_loss.

Each is a composition of differentiable ops (comparisons + selects, products, log), so
``loss.backward()`` gives torch's gradients through their rules. Costs (semi2k, 2
parties): l1 one comparison (abs); smooth-l1/huber one comparison and one product;
nll with public targets is local (a public one-hot product), with secret targets one
batch of equality tests; binary_cross_entropy two clamps, two logs (veil.functions) and
two products; kl_div one log when the target is secret (public targets: plaintext log).

Where fixed point differs from float (stated, not hidden):

* binary_cross_entropy clamps p to [2^-10, 1 - 2^-10] before the log (veil's log is
  accurate to 1e-3 from 1e-3 up), so each term is at most -log(2^-10) = 6.93 where torch
  caps it at 100. Prefer ``binary_cross_entropy_with_logits``: it needs no clamp.
* kl_div with a secret, non-log target computes target * log(max(target, 2^-10)): a
  target entry below 2^-10 contributes its true sign but a capped log.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F

from ..context import current
from ..errors import ProtocolUsageError
from ..tensor.core import as_public, is_secret
from ..tensor.dispatch import register_torch
from ..tensor.indexing import one_hot

BCE_EPS = 2.0 ** -10


def _reduce(terms, reduction: str, what: str, count=None):
    if reduction == "none":
        return terms
    if reduction == "sum":
        return terms.sum()
    if reduction == "mean":
        n = terms.numel() if count is None else count
        return terms.sum() * (1.0 / n) if n else terms.sum()
    raise ProtocolUsageError(f"{what}: reduction={reduction!r}; use 'none', 'mean' or 'sum'")


def _legacy(size_average, reduce, reduction):
    if size_average is not None or reduce is not None:
        raise ProtocolUsageError("size_average/reduce are deprecated in torch; pass "
                                 "reduction='none'|'mean'|'sum' instead")
    return reduction


def _check_same_shape(input, target, what: str):
    ts = tuple(target.shape) if hasattr(target, "shape") else tuple(as_public(target).shape)
    if ts != tuple(input.shape):
        raise ProtocolUsageError(f"{what}: target shape {ts} must equal input shape "
                                 f"{tuple(input.shape)}")


# -- activations / regularisation ---------------------------------------------------------------
def hardtanh(x, min_val: float = -1.0, max_val: float = 1.0, inplace: bool = False):
    """F.hardtanh: clamp to [min_val, max_val] (one comparison + select per bound)."""
    if min_val > max_val:
        raise ProtocolUsageError("hardtanh: min_val must not exceed max_val")
    if min_val == 0 and max_val == 6 and hasattr(x, "relu6"):
        return x.relu6()
    return x.clamp(min_val, max_val)


def dropout(x, p: float = 0.5, training: bool = True, inplace: bool = False):
    """F.dropout with a *public* random mask: free (a local product), one round per call to
    agree on the mask's seed (party 0 draws it from the OS and sends it).

    The mask is data-independent noise, so every party knowing it discloses nothing about
    the data. In eval mode (``training=False``) or with p = 0 it is the identity.
    """
    if not 0 <= p <= 1:
        raise ProtocolUsageError(f"dropout probability has to be between 0 and 1, but got {p}")
    if not training or p == 0:
        return x
    if p == 1:
        return x * 0.0
    ctx = current()
    mine = int.from_bytes(os.urandom(8), "little") >> 1 if ctx.rank == 0 else None
    # Discloses party 0's fresh random seed (public randomness, independent of any data).
    seed = ctx.comm.broadcast_obj(mine, 0)
    keep = torch.rand(tuple(x.shape), generator=torch.Generator().manual_seed(seed)) >= p
    return x * (keep.to(torch.float64) / (1 - p))


# -- losses --------------------------------------------------------------------------------------
def l1_loss(input, target, size_average=None, reduce=None, reduction: str = "mean",
            weight=None):
    """F.l1_loss: |input - target| (one comparison), optionally times ``weight``."""
    reduction = _legacy(size_average, reduce, reduction)
    _check_same_shape(input, target, "l1_loss")
    terms = (input - target).abs()
    return _reduce(terms * weight if weight is not None else terms, reduction, "l1_loss")


def _quadratic_linear(d, delta: float, scale_quad: float, scale_lin: float):
    """0.5 d^2 * scale_quad where |d| < delta, else scale_lin * (|d| - 0.5 delta)."""
    from ..tensor import where
    a = d.abs()
    return where(a.lt(delta), (d * d) * (0.5 * scale_quad), (a - 0.5 * delta) * scale_lin)


def smooth_l1_loss(input, target, size_average=None, reduce=None, reduction: str = "mean",
                   beta: float = 1.0):
    """F.smooth_l1_loss (one comparison for |d|, one for the branch, one product)."""
    reduction = _legacy(size_average, reduce, reduction)
    _check_same_shape(input, target, "smooth_l1_loss")
    if beta < 0:
        raise ProtocolUsageError("smooth_l1_loss: beta must be non-negative")
    d = input - target
    if beta == 0:
        return _reduce(d.abs(), reduction, "smooth_l1_loss")
    return _reduce(_quadratic_linear(d, beta, 1.0 / beta, 1.0), reduction, "smooth_l1_loss")


def huber_loss(input, target, reduction: str = "mean", delta: float = 1.0, weight=None):
    """F.huber_loss = delta * smooth_l1_loss(beta=delta)."""
    if weight is not None:
        raise ProtocolUsageError("huber_loss(weight=...) is not supported; multiply the "
                                 "reduction='none' result by the weights")
    _check_same_shape(input, target, "huber_loss")
    if delta <= 0:
        raise ProtocolUsageError("huber_loss: delta must be positive")
    return _reduce(_quadratic_linear(input - target, delta, 1.0, delta), reduction,
                   "huber_loss")


def binary_cross_entropy(input, target, weight=None, size_average=None, reduce=None,
                         reduction: str = "mean"):
    """F.binary_cross_entropy on probabilities (see the module note on the clamp)."""
    reduction = _legacy(size_average, reduce, reduction)
    _check_same_shape(input, target, "binary_cross_entropy")
    if not is_secret(input):
        raise ProtocolUsageError("binary_cross_entropy: a secret target with a public input "
                                 "is not supported; share the input")
    p = input.clamp(BCE_EPS, 1 - BCE_EPS)
    log_p, log_q = p.log(), (1.0 - p).log()
    terms = -(log_q + target * (log_p - log_q))          # -(y log p + (1 - y) log(1 - p))
    if weight is not None:
        terms = terms * weight
    return _reduce(terms, reduction, "binary_cross_entropy")


def kl_div(input, target, size_average=None, reduce=None, reduction: str = "mean",
           log_target: bool = False):
    """F.kl_div(input=log q, target=p): p * (log p - input); 'batchmean' divides by the
    batch size as torch recommends ('mean' divides by every element, as torch does)."""
    reduction = _legacy(size_average, reduce, reduction)
    _check_same_shape(input, target, "kl_div")
    if log_target:
        t_log = target
        t = target.exp() if is_secret(target) else as_public(target).exp()
    elif is_secret(target):
        t, t_log = target, target.clamp(min=BCE_EPS).log()
    else:
        t = as_public(target).to(torch.float64)
        t_log = torch.where(t > 0, t.clamp_min(1e-300).log(), torch.zeros_like(t))
    terms = t * (t_log - input) if is_secret(t) else (t_log - input) * t
    if reduction == "batchmean":
        return terms.sum() * (1.0 / input.shape[0]) if input.dim() else terms.sum()
    return _reduce(terms, reduction, "kl_div")


def nll_loss(input, target, weight=None, size_average=None, ignore_index: int = -100,
             reduce=None, reduction: str = "mean"):
    """F.nll_loss: -input[n, target[n]] averaged (by the weights of the targets, as torch).

    Public targets: a public one-hot product (local). Secret targets: one batch of
    equality tests (`one_hot`); with secret targets the 'mean' divisor must be public,
    so class weights and ignore_index entries are refused there.
    """
    reduction = _legacy(size_average, reduce, reduction)
    c = input.shape[1] if input.dim() >= 2 else input.shape[0]
    if is_secret(target):
        if weight is not None:
            raise ProtocolUsageError("nll_loss: class weights with secret targets would need "
                                     "a secret divisor; pass reduction='sum' and divide")
        oh = one_hot(target, c)
        oh = oh.unsqueeze(0) if input.dim() == 1 else oh
        oh = oh.permute(0, -1, *range(1, oh.dim() - 1)) if oh.dim() > 2 else oh
        picked = (input if input.dim() >= 2 else input.unsqueeze(0)) * oh
        terms = -picked.sum(1)
        terms = terms.squeeze(0) if input.dim() == 1 else terms
        return _reduce(terms, reduction, "nll_loss")
    t = as_public(target).long()
    keep = t != ignore_index
    w = torch.ones(c, dtype=torch.float64) if weight is None else \
        as_public(weight).to(torch.float64)
    safe = torch.where(keep, t, torch.zeros_like(t))
    wt = w[safe] * keep                                      # per-element weight, public
    oh = F.one_hot(safe, c).to(torch.float64) * wt.unsqueeze(-1)
    oh = oh.movedim(-1, 1) if oh.dim() > 2 else oh
    terms = -(input * oh.reshape(input.shape)).sum(1 if input.dim() >= 2 else 0)
    if reduction == "mean":
        return terms.sum() * (1.0 / float(wt.sum())) if float(wt.sum()) else terms.sum() * 0.0
    return _reduce(terms, reduction, "nll_loss")


register_torch([F.hardtanh], hardtanh)
register_torch([F.dropout], dropout)
register_torch([F.l1_loss], l1_loss)
register_torch([F.smooth_l1_loss], smooth_l1_loss)
register_torch([F.huber_loss], huber_loss)
register_torch([F.binary_cross_entropy], binary_cross_entropy)
register_torch([F.kl_div], kl_div)
register_torch([F.nll_loss], nll_loss)

__all__ = ["hardtanh", "dropout", "l1_loss", "smooth_l1_loss", "huber_loss",
           "binary_cross_entropy", "kl_div", "nll_loss", "BCE_EPS"]

