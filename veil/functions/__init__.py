"""Smooth functions on secret tensors (exp, log, reciprocal, sigmoid, softmax, gelu, ...).

Written on SecretTensor's core arithmetic (veil.tensor.arith/reduce), one layer above the
kernels; the assembled SecretTensor class (veil.tensor.secret) takes them as methods.
"""

from .mixin import FunctionsMixin

__all__ = ["FunctionsMixin"]
