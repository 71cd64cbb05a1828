"""Tensor API: SecretTensor with torch-like methods and __torch_function__ dispatch."""

from .arith import where
from .create import share_public, tensor
from .secret import SecretTensor
from .shape import cat, stack

__all__ = ["SecretTensor", "tensor", "share_public", "where", "cat", "stack"]
