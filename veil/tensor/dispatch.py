"""The table from torch callables to veil implementations (what __torch_function__ uses).

Each entry takes the arguments exactly as torch passes them; any of them may be secret.
`supported()` lists the table for the docs' support matrix.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import ProtocolUsageError
from .arith import where
from .core import as_public, is_secret
from . import nn_ops, pooling
from .shape import cat, stack


def _sec_first(name, swap=None):
    """Binary op that may see a public left operand: call the secret's method."""
    def op(a, b, *args, **kw):
        if is_secret(a):
            return getattr(a, name)(b, *args, **kw)
        return getattr(b, swap or name)(a, *args, **kw)
    op.__name__ = name
    return op


def _rsub(a, b, alpha=1):
    return (b * alpha) - a if alpha != 1 else b - a


def _sub(a, b, alpha=1):
    if is_secret(a):
        return a.sub(b, alpha=alpha)
    return (-(b * alpha)).add(a)


def _div(a, b, rounding_mode=None):
    if is_secret(a):
        return a.div(b, rounding_mode=rounding_mode)
    return b.__rtruediv__(a)


def _matmul(a, b):
    return a.matmul(b) if is_secret(a) else b.__rmatmul__(a)


def _cmp(name, mirrored):
    def op(a, b):
        return getattr(a, name)(b) if is_secret(a) else getattr(b, mirrored)(a)
    op.__name__ = name
    return op


def _method(name):
    def op(x, *args, **kw):
        if not is_secret(x):
            raise ProtocolUsageError(f"torch.{name}: expected a SecretTensor first argument")
        return getattr(x, name)(*args, **kw)
    op.__name__ = name
    return op


def _max(x, dim=None, keepdim=False, *, other=None):
    if is_secret(dim) or isinstance(dim, torch.Tensor):
        return x.maximum(dim) if is_secret(x) else dim.maximum(x)
    return x.max(dim, keepdim) if dim is not None else x.max()


def _min(x, dim=None, keepdim=False):
    if is_secret(dim) or isinstance(dim, torch.Tensor):
        return x.minimum(dim) if is_secret(x) else dim.minimum(x)
    return x.min(dim, keepdim) if dim is not None else x.min()


def _relu(x, inplace=False):
    return x.relu()


_BIN = {
    "add": _sec_first("add", "__radd__"), "mul": _sec_first("mul", "__rmul__"),
}

TORCH_TABLE: dict = {}


def _register(fns, impl):
    for f in fns:
        if f in TORCH_TABLE:
            raise ValueError(f"{f} registered twice in the torch dispatch table")
        TORCH_TABLE[f] = impl


T = torch.Tensor
_register([torch.add, T.add, T.__add__, T.__radd__], _BIN["add"])
_register([torch.mul, torch.multiply, T.mul, T.__mul__, T.__rmul__], _BIN["mul"])
_register([torch.sub, torch.subtract, T.sub, T.__sub__], _sub)
_register([T.__rsub__, torch.rsub], _rsub)
_register([torch.div, torch.true_divide, T.div, T.__truediv__], _div)
_register([T.__rtruediv__], lambda a, b: _div(b, a))
_register([torch.matmul, T.matmul, T.__matmul__, torch.mm, torch.bmm], _matmul)
_register([T.__rmatmul__], lambda a, b: _matmul(b, a))
_register([torch.lt, T.lt, T.__lt__, torch.less], _cmp("lt", "gt"))
_register([torch.gt, T.gt, T.__gt__, torch.greater], _cmp("gt", "lt"))
_register([torch.le, T.le, T.__le__, torch.less_equal], _cmp("le", "ge"))
_register([torch.ge, T.ge, T.__ge__, torch.greater_equal], _cmp("ge", "le"))
_register([torch.eq, T.eq, T.__eq__], _cmp("eq", "eq"))
_register([torch.ne, T.ne, T.__ne__, torch.not_equal], _cmp("ne", "ne"))
_register([torch.where], lambda c, x=None, y=None: where(c, x, y))
_register([torch.cat, torch.concat, torch.concatenate], cat)
_register([torch.stack], stack)
_register([torch.relu, F.relu], _relu)
_register([torch.max], _max)
_register([torch.min], _min)
_register([torch.maximum], lambda a, b: a.maximum(b) if is_secret(a) else b.maximum(a))
_register([torch.minimum], lambda a, b: a.minimum(b) if is_secret(a) else b.minimum(a))
_register([F.conv2d], nn_ops.conv2d)
_register([F.conv1d], nn_ops.conv1d)
_register([F.linear], nn_ops.linear)
_register([F.max_pool2d], pooling.max_pool2d)      # every option (ceil_mode, indices, ...)
_register([F.avg_pool2d], pooling.avg_pool2d)      # ceil_mode too
_register([F.adaptive_avg_pool2d], nn_ops.adaptive_avg_pool2d)
_register([F.pad], nn_ops.pad)
for _name in ["neg", "abs", "sign", "square", "pow", "sum", "mean", "var", "argmax", "argmin",
              "amax", "amin", "reshape", "flatten", "transpose", "permute", "unsqueeze",
              "squeeze", "split", "chunk", "clone", "clamp", "clip", "logical_not",
              "logical_and", "logical_or", "logical_xor", "cumsum", "flip", "roll", "unbind",
              "narrow", "tril", "triu"]:
    _register([getattr(torch, _name)], _method(_name))
_register([T.__neg__], _method("neg"))
_register([T.__getitem__], lambda x, idx: x[idx])


def register_torch(fns, impl) -> None:
    """Route more torch callables to veil (used by veil.functions for exp, softmax, ...)."""
    _register(fns, impl)


def lookup(func):
    try:
        return TORCH_TABLE[func]
    except (KeyError, TypeError):
        name = getattr(func, "__qualname__", None) or getattr(func, "__name__", repr(func))
        raise ProtocolUsageError(
            f"{getattr(func, '__module__', 'torch') or 'torch'}.{name} is not supported on "
            f"SecretTensor; see docs/support.md for the supported operations, or reveal() "
            f"the value first if it may be public") from None


def supported() -> list[str]:
    names = set()
    for f in TORCH_TABLE:
        mod = getattr(f, "__module__", "") or ""
        names.add(f"{mod}.{getattr(f, '__qualname__', getattr(f, '__name__', '?'))}")
    return sorted(names)


__all__ = ["TORCH_TABLE", "lookup", "register_torch", "supported", "as_public"]
