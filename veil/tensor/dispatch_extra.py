"""More rows of the torch dispatch table: tensor indexing, in-place ops, prod/norm/...

Kept apart from `veil.tensor.dispatch` (the core table) so each area registers its own
callables; `register_torch` refuses duplicates, so a callable has exactly one entry.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import ProtocolUsageError
from . import indexing as ix
from . import linalg as la
from . import rounding as rd
from .core import is_secret
from .dispatch import register_torch

T = torch.Tensor


def _first_secret(name):
    def op(x, *args, **kw):
        if not is_secret(x):
            raise ProtocolUsageError(f"torch.{name}: only the first argument may be secret "
                                     f"here; got a public {type(x).__name__} first")
        return getattr(x, name)(*args, **kw)
    op.__name__ = name
    return op


def _two(fn):
    def op(a, b, *args, **kw):
        return fn(a, b, *args, **kw)
    op.__name__ = fn.__name__
    return op


register_torch([torch.gather], lambda x, dim, index, *, sparse_grad=False, out=None:
               ix.gather(x, dim, index))
register_torch([torch.index_select], lambda x, dim, index, *, out=None:
               ix.index_select(x, dim, index))
register_torch([torch.take], lambda x, index: ix.take(x, index))
register_torch([torch.scatter], _first_secret("scatter"))
register_torch([torch.scatter_add], _first_secret("scatter_add"))
register_torch([torch.index_add], _first_secret("index_add"))
register_torch([torch.masked_fill], _first_secret("masked_fill"))
register_torch([torch.all], _first_secret("all"))
register_torch([torch.any], _first_secret("any"))
register_torch([F.one_hot], lambda x, num_classes=-1: ix.one_hot(x, num_classes))
register_torch([torch.prod], _first_secret("prod"))
register_torch([torch.norm], lambda x, p="fro", dim=None, keepdim=False, out=None, dtype=None:
               la.norm(x, p, dim, keepdim, dtype))
register_torch([torch.linalg.vector_norm], la.vector_norm)
register_torch([torch.std], _first_secret("std"))
register_torch([torch.trace], _first_secret("trace"))
register_torch([torch.diagonal], _first_secret("diagonal"))
register_torch([torch.dot, torch.vdot, T.dot], _two(la.dot))
register_torch([torch.outer, torch.ger, T.outer, T.ger], _two(la.outer))
register_torch([torch.kron, T.kron], _two(la.kron))


def _int_div(name):
    """Binary floor_divide/remainder/fmod: the dividend must be the secret one."""
    def op(a, b, *args, **kw):
        if not is_secret(a):
            raise ProtocolUsageError(f"torch.{name} by a secret divisor is not supported (the "
                                     f"exact correction needs a public divisor)")
        return getattr(a, name)(b, *args, **kw)
    op.__name__ = name
    return op


for _n in ["floor", "ceil", "trunc", "fix"]:
    register_torch([getattr(torch, _n)], _first_secret(_n))
register_torch([torch.frac], lambda x, *, out=None: rd.frac(x))
register_torch([torch.round], lambda x, *, decimals=0, out=None: x.round(decimals))
register_torch([torch.floor_divide, T.__floordiv__, T.floor_divide], _int_div("floor_divide"))
register_torch([torch.remainder, T.__mod__, T.remainder], _int_div("remainder"))
register_torch([torch.fmod, T.fmod], _int_div("fmod"))
register_torch([T.__rfloordiv__], lambda a, b: _int_div("floor_divide")(b, a))
register_torch([T.__rmod__], lambda a, b: _int_div("remainder")(b, a))

for _n in ["sort", "argsort", "msort", "topk", "kthvalue", "median"]:
    register_torch([getattr(torch, _n)], _first_secret(_n))

# pooling with every option, conv3d (veil.tensor.pooling); F.max_pool2d with return_indices
# reaches F.max_pool2d_with_indices
from . import pooling as pl  # noqa: E402

def _with_indices(fn):
    """torch's *_with_indices functions always return (values, indices)."""
    def run(*args, **kwargs):
        kwargs["return_indices"] = True
        return fn(*args, **kwargs)
    return run


register_torch([F.max_pool1d], pl.max_pool1d)
register_torch([F.max_pool3d], pl.max_pool3d)
register_torch([F.adaptive_max_pool1d], pl.adaptive_max_pool1d)
register_torch([F.adaptive_max_pool2d], pl.adaptive_max_pool2d)
for _plain, _fn in [(F.max_pool1d_with_indices, pl.max_pool1d),
                    (F.max_pool2d_with_indices, pl.max_pool2d),
                    (F.max_pool3d_with_indices, pl.max_pool3d),
                    (F.adaptive_max_pool1d_with_indices, pl.adaptive_max_pool1d),
                    (F.adaptive_max_pool2d_with_indices, pl.adaptive_max_pool2d)]:
    register_torch([_plain], _with_indices(_fn))
register_torch([F.avg_pool1d], pl.avg_pool1d)
register_torch([F.avg_pool3d], pl.avg_pool3d)
register_torch([F.conv3d], pl.conv3d)
