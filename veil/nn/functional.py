"""Losses as single differentiable ops, each with its backward rule right below it.

Why fused: the gradient of a loss with respect to its input is cheaper and better
behaved than the chain rule through its pieces: BCE-with-logits gives
``sigmoid(z) - y``, softmax cross-entropy ``softmax(z) - y``, both bounded by 1 in
magnitude whatever the logits, so no gradient clipping is needed at the output. The
forward stashes the sigmoid / softmax it computes (``saved``) so backward costs no
extra smooth function at all.

Ranges (fixed point: |v| < 32768, 16 fractional bits by default): the smooth pieces
come from veil.functions and are range-safe by construction: ``softplus`` and
``sigmoid`` saturate to their asymptotes beyond |x| = 8, ``softmax`` / ``log_softmax``
subtract the row maximum (exp only sees non-positive numbers, 1/sum only [1, classes]).
So a loss value stays accurate however large the logits get.

The ``*_input_grad`` functions compute d loss / d input without the loss value: what
`veil.nn.fit` uses every step (the value costs an ``exp`` and a ``log`` more and is
computed once per epoch, over all of the epoch's logits at once).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..autograd import differentiable, is_unit_grad
from ..errors import ProtocolUsageError, RangeError
from ..functions.grad_rules import register_grad
from ..tensor.core import as_public, is_secret
from ..tensor.dispatch import register_torch


def _scale(reduction: str, n: int) -> float:
    if reduction == "mean":
        if not n:                             # torch: NaN, which fixed point cannot hold
            raise RangeError("a mean-reduced loss over zero elements is NaN in torch; "
                             "check the batch is not empty")
        return 1.0 / n
    if reduction == "sum":
        return 1.0
    raise ProtocolUsageError(f"reduction={reduction!r} is not supported by veil's losses; use "
                             f"'mean' or 'sum' (per-element losses: compute the formula)")


def _reduce(terms, reduction: str, n: int | None = None):
    total = terms.sum()
    return total if reduction == "sum" else total * _scale(reduction, n or terms.numel())


def _upstream(d, g):
    """d * grad_out; free when grad_out is loss.backward()'s implicit 1."""
    return d if is_unit_grad(g) else d * g


def _needs(x) -> bool:
    return is_secret(x) and x.requires_grad


def _check_shapes(input, target, what: str) -> None:
    ts = tuple(target.shape) if hasattr(target, "shape") else tuple(as_public(target).shape)
    if ts != tuple(input.shape):
        raise ProtocolUsageError(f"{what}: target shape {ts} must equal input shape "
                                 f"{tuple(input.shape)} (veil does not broadcast targets)")


# -- mean squared error --------------------------------------------------------------------
@differentiable("mse_loss")
def mse_loss(input, target, reduction: str = "mean"):
    """torch.nn.functional.mse_loss (one secret product)."""
    _check_shapes(input, target, "mse_loss")
    diff = input - target
    return _reduce(diff * diff, reduction)


def mse_input_grad(input, target, reduction: str = "mean"):
    return (input - target) * (2 * _scale(reduction, input.numel()))


@register_grad("mse_loss")
def _mse_loss_grad(g, out, input, target, reduction="mean"):
    d = _upstream(mse_input_grad(input, target, reduction), g)
    return (d if _needs(input) else None, -d if _needs(target) else None, None)


# -- binary cross-entropy with logits --------------------------------------------------------
def bce_with_logits_terms(z, y):
    """softplus(z) - y z elementwise (torch's formula; softplus saturates: any z is safe)."""
    return z.softplus() - y * z


@differentiable("binary_cross_entropy_with_logits")
def binary_cross_entropy_with_logits(input, target, reduction: str = "mean", *, saved=None):
    """torch.nn.functional.binary_cross_entropy_with_logits (mean/sum; no weights)."""
    _check_shapes(input, target, "binary_cross_entropy_with_logits")
    if saved is not None:
        saved["sigmoid"] = input.sigmoid()
    return _reduce(bce_with_logits_terms(input, target), reduction)


def bce_with_logits_input_grad(input, target, reduction: str = "mean", sigmoid=None):
    s = input.sigmoid() if sigmoid is None else sigmoid
    return (s - target) * _scale(reduction, input.numel())


@register_grad("binary_cross_entropy_with_logits")
def _bce_with_logits_grad(g, out, input, target, reduction="mean", *, saved=None):
    d = bce_with_logits_input_grad(input, target, reduction, saved and saved.get("sigmoid"))
    return (_upstream(d, g) if _needs(input) else None, None, None)


# -- softmax cross-entropy -------------------------------------------------------------------
def _class_dim(x) -> int:
    return 1 if x.dim() >= 2 else 0


def one_hot_target(input, target):
    """Targets as probabilities of input's shape: float targets pass through; public
    class indices become a public one-hot; secret indices cost one equality test."""
    c = input.shape[_class_dim(input)]
    if is_secret(target):
        if target.dtype.is_floating_point:
            return target
        classes = torch.arange(c).reshape([-1] + [1] * (target.dim() - _class_dim(input)))
        return target.unsqueeze(_class_dim(input)).eq(classes).to(input.dtype)
    t = as_public(target)
    if t.is_floating_point():
        return t
    oh = F.one_hot(t.long(), c).to(input.dtype)
    return oh.movedim(-1, 1) if oh.dim() > 2 else oh


@differentiable("cross_entropy")
def cross_entropy(input, target, reduction: str = "mean", *, saved=None):
    """torch.nn.functional.cross_entropy over dim 1 (class indices or probabilities)."""
    dim = _class_dim(input)
    y = one_hot_target(input, target)
    logp = input.log_softmax(dim)
    if saved is not None:
        saved["softmax"] = logp.exp()                     # exp of values <= 0: 6 rounds
    nll = -(logp * y)
    rows = input.numel() // input.shape[dim]
    return _reduce(nll, reduction, rows)


def cross_entropy_input_grad(input, target, reduction: str = "mean", softmax=None):
    dim = _class_dim(input)
    p = input.softmax(dim) if softmax is None else softmax
    rows = input.numel() // input.shape[dim]
    return (p - one_hot_target(input, target)) * _scale(reduction, rows)


@register_grad("cross_entropy")
def _cross_entropy_grad(g, out, input, target, reduction="mean", *, saved=None):
    d = cross_entropy_input_grad(input, target, reduction, saved and saved.get("softmax"))
    return (_upstream(d, g) if _needs(input) else None, None, None)


# -- torch.nn.functional entry points (so F.cross_entropy(secret, y) works) --------------------
_DEFAULTS = {"size_average": None, "reduce": None, "weight": None, "pos_weight": None,
             "ignore_index": -100, "label_smoothing": 0.0}


def _entry(name: str, fn):
    """F.<name>(input, target, ..., reduction=...) on secret tensors; other options must
    keep their defaults (they are not supported), and are refused by name otherwise."""
    def entry(input, target, *args, reduction: str = "mean", **kwargs):
        bad = sorted(k for k, v in kwargs.items() if k not in _DEFAULTS or v != _DEFAULTS[k])
        if args or bad:
            raise ProtocolUsageError(
                f"F.{name} on secret tensors supports reduction='mean'/'sum' only (by "
                f"keyword); got {bad or f'{len(args)} positional option(s)'}")
        return fn(input, target, reduction)
    entry.__name__ = name
    return entry


register_torch([F.mse_loss], _entry("mse_loss", mse_loss))
register_torch([F.binary_cross_entropy_with_logits],
               _entry("binary_cross_entropy_with_logits", binary_cross_entropy_with_logits))
register_torch([F.cross_entropy], _entry("cross_entropy", cross_entropy))
