"""Method table of the smooth functions: SecretTensor gets them through this mixin.

Each method is a thin call into the module that implements (and documents) it; torch's
callables (torch.exp, F.softmax, ...) reach the same methods through veil.tensor.dispatch.
``@differentiable(name)`` records the call for veil.autograd, whose backward pass calls
``GRAD_RULES[name]`` (registered next to each forward); a ``saved`` dict lets a forward
hand its rule what it already computed (comparison bits, the chosen approximation).
"""

from __future__ import annotations

from ..autograd.graph import differentiable
from ..tensor.core import is_secret as _is_secret
from . import activations, exp_log, normalization, piecewise, roots, softmax, vectors


class FunctionsMixin:
    """Smooth functions as SecretTensor methods (torch names and semantics)."""

    # exp / log / powers --------------------------------------------------------------
    @differentiable("exp")
    def exp(self, *, approx: str | None = None):
        return exp_log.exp(self, approx=approx)

    @differentiable("log")
    def log(self):
        return exp_log.log(self)

    @differentiable("pow_float")
    def pow_float(self, exponent):
        return exp_log.pow_float(self, exponent)

    @differentiable("reciprocal")
    def reciprocal(self, *, positive: bool = False):
        return roots.reciprocal(self, positive=positive)

    # Division by a secret is fused (see roots.div_shares); by a public value it stays the
    # tensor layer's local multiply by 1/c.
    @differentiable("div")
    def div(self, other, rounding_mode=None):
        if rounding_mode is None and _is_secret(other):
            return roots.div(self, other)
        return super().div(other, rounding_mode)

    __truediv__ = div

    @differentiable("rdiv")
    def __rtruediv__(self, other):
        return roots.div(other, self)

    @differentiable("sqrt")
    def sqrt(self):
        return roots.sqrt(self)

    @differentiable("rsqrt")
    def rsqrt(self):
        return roots.rsqrt(self)

    # activations --------------------------------------------------------------------------
    @differentiable("sigmoid")
    def sigmoid(self, *, approx: str | None = None, saved: dict | None = None):
        return activations.sigmoid(self, approx=approx, saved=saved)

    @differentiable("tanh")
    def tanh(self):
        return activations.tanh(self)

    @differentiable("erf")
    def erf(self):
        return activations.erf(self)

    @differentiable("gelu")
    def gelu(self, approximate: str = "none", *, approx: str | None = None,
             saved: dict | None = None):
        return activations.gelu(self, approximate, approx=approx, saved=saved)

    @differentiable("silu")
    def silu(self):
        return activations.silu(self)

    @differentiable("softplus")
    def softplus(self, beta: float = 1.0, threshold: float = 20.0):
        return activations.softplus(self, beta, threshold)

    @differentiable("hardswish")
    def hardswish(self, *, saved: dict | None = None):
        return piecewise.hardswish(self, saved=saved)

    @differentiable("hardsigmoid")
    def hardsigmoid(self, *, saved: dict | None = None):
        return piecewise.hardsigmoid(self, saved=saved)

    @differentiable("relu6")
    def relu6(self, *, saved: dict | None = None):
        return piecewise.relu6(self, saved=saved)

    @differentiable("leaky_relu")
    def leaky_relu(self, negative_slope: float = 0.01, *, saved: dict | None = None):
        return piecewise.leaky_relu(self, negative_slope, saved=saved)

    # softmax ---------------------------------------------------------------------------
    @differentiable("softmax")
    def softmax(self, dim: int, *, approx: str | None = None, saved: dict | None = None):
        return softmax.softmax(self, dim, approx=approx, saved=saved)

    @differentiable("log_softmax")
    def log_softmax(self, dim: int):
        return softmax.log_softmax(self, dim)

    # normalisation ---------------------------------------------------------------------
    @differentiable("layer_norm")
    def layer_norm(self, normalized_shape, weight=None, bias=None, eps: float = 1e-5, *,
                   saved: dict | None = None):
        return normalization.layer_norm(self, normalized_shape, weight, bias, eps, saved=saved)

    @differentiable("group_norm")
    def group_norm(self, num_groups: int, weight=None, bias=None, eps: float = 1e-5, *,
                   saved: dict | None = None):
        return normalization.group_norm(self, num_groups, weight, bias, eps, saved=saved)

    @differentiable("batch_norm")
    def batch_norm(self, running_mean, running_var, weight=None, bias=None,
                   training: bool = False, momentum: float = 0.1, eps: float = 1e-5):
        return normalization.batch_norm(self, running_mean, running_var, weight, bias,
                                        training, momentum, eps)

    @differentiable("normalize")
    def normalize(self, p: float = 2.0, dim: int = 1, eps: float = 1e-12):
        return vectors.normalize(self, p, dim, eps)

    @differentiable("cosine_similarity")
    def cosine_similarity(self, other, dim: int = 1, eps: float = 1e-8):
        return vectors.cosine_similarity(self, other, dim, eps)
