"""Method table of the functions in veil.functions.trig (sin, cos, atan, ..., pow with a
tensor exponent); torch's callables reach them through veil.tensor.dispatch.

sin, cos and atan are recorded ops with their own gradient rules; the rest are
compositions of recorded ops, so their gradients come from the pieces.
"""

from __future__ import annotations

import torch

from ..autograd.graph import differentiable
from ..tensor.core import is_secret
from ..tensor.dispatch import register_torch
from . import trig


class MoreFunctionsMixin:
    """Trigonometric, hyperbolic and log/exp variants (torch names and semantics)."""

    @differentiable("sin")
    def sin(self):
        return trig.sin(self)

    @differentiable("cos")
    def cos(self):
        return trig.cos(self)

    @differentiable("atan")
    def atan(self):
        return trig.atan(self)

    arctan = atan

    def atan2(self, other):
        return trig.atan2(self, other)

    arctan2 = atan2

    @differentiable("tan")
    def tan(self):
        return trig.tan(self)

    def sinh(self):
        return trig.sinh(self)

    def cosh(self):
        return trig.cosh(self)

    def exp2(self):
        return trig.exp2(self)

    def log2(self):
        return trig.log2(self)

    def log10(self):
        return trig.log10(self)

    def expm1(self):
        return trig.expm1(self)

    def log1p(self):
        return trig.log1p(self)

    def logaddexp(self, other):
        return trig.logaddexp(self, other)

    def logaddexp2(self, other):
        return trig.logaddexp2(self, other)

    def batch_norm(self, running_mean, running_var, weight=None, bias=None,
                   training: bool = False, momentum: float = 0.1, eps: float = 1e-5):
        """Inference: veil.functions.normalization; training: batch statistics on shares
        (veil.functions.batchnorm_train)."""
        if training:
            from .batchnorm_train import batch_norm_train
            return batch_norm_train(self, running_mean, running_var, weight, bias, momentum,
                                    eps)
        return super().batch_norm(running_mean, running_var, weight, bias, training,
                                  momentum, eps)

    def pow(self, exponent):
        # a public tensor exponent broadcasts like torch's (empty and 1-element ones too);
        # only a 0-d one is a plain number
        if is_secret(exponent) or (isinstance(exponent, torch.Tensor) and exponent.dim() > 0):
            return trig.pow_tensor(self, exponent)
        if isinstance(exponent, torch.Tensor):
            exponent = exponent.item()
        return super().pow(exponent)

    __pow__ = pow

    def __rpow__(self, base):
        return trig.pow_tensor(base, self)


def _unary(name):
    def op(x, *, out=None):
        return getattr(x, name)()
    op.__name__ = name
    return op


T = torch.Tensor
for _n in ["sin", "cos", "tan", "sinh", "cosh", "atan", "exp2", "log2", "log10", "expm1",
           "log1p"]:
    _fns = [getattr(torch, _n)] + ([getattr(torch, "arctan")] if _n == "atan" else [])
    if _n in ("exp2", "expm1", "log1p"):
        _fns.append(getattr(torch.special, _n))
    register_torch(_fns, _unary(_n))


def _binary(fn):
    def op(a, b, *, out=None):
        return fn(a, b)
    op.__name__ = fn.__name__
    return op


register_torch([torch.atan2, torch.arctan2], _binary(trig.atan2))
register_torch([torch.logaddexp], _binary(trig.logaddexp))
register_torch([torch.logaddexp2], _binary(trig.logaddexp2))
# public_tensor ** secret reaches torch.Tensor.__pow__ first
register_torch([T.__pow__], lambda a, b: a.pow(b) if is_secret(a) else trig.pow_tensor(a, b))
