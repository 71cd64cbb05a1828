"""Lowering rules: data movement, indexing with public indices, reductions, matmul.

Data movement (view, permute, slice, index with public indices, ...) is the ATen op itself
applied to each party's share: local and exact. Sums are local; means add a truncation;
max/argmax are comparison trees (ceil(log2 n) layers).
"""

from __future__ import annotations

import torch

from ..errors import ProtocolUsageError
from ..tensor import cat as veil_cat
from .lowering import local, register_lowering, secret

aten = torch.ops.aten


def _movement(op_name, fn):
    def rule(x, *args, **kwargs):
        if not secret(x):
            raise ProtocolUsageError(f"{op_name}: a secret value appears in an index or "
                                     f"shape argument; indices must be public")
        if any(secret(a) for a in args) or any(isinstance(a, (list, tuple)) and
                                               any(secret(b) for b in a) for a in args):
            raise ProtocolUsageError(f"{op_name}: indexing with secret indices is not "
                                     f"supported; use a one-hot product instead")
        if getattr(x, "is_veil_token_ids", False):
            return x.movement(op_name, fn, args)
        return local(x, lambda t: fn(t, *args, **kwargs), op_name in _ORDER_KEEPING)
    rule.__name__ = "_" + op_name.split(".")[1]
    return rule


# row-major reshapes: a fused truncation's masked form survives them (lowering.local)
_ORDER_KEEPING = {"aten." + n for n in (
    "view.default", "_unsafe_view.default", "reshape.default", "unsqueeze.default",
    "squeeze.dim", "squeeze.dims", "squeeze.default", "alias.default", "detach.default")}


_MOVEMENT = [
    "view.default", "_unsafe_view.default", "reshape.default", "permute.default",
    "expand.default", "unsqueeze.default", "squeeze.dim", "squeeze.dims", "squeeze.default",
    "select.int", "slice.Tensor", "transpose.int", "t.default", "flip.default",
    "roll.default", "repeat.default", "alias.default", "clone.default", "detach.default",
    "lift_fresh_copy.default", "index.Tensor", "index_select.default", "gather.default",
    "unfold.default", "tril.default", "triu.default", "narrow.default",
    "diagonal.default", "movedim.int", "pixel_shuffle.default",
    "pixel_unshuffle.default",
]

# Shares do not keep the strides torch had at capture (and capture drops the clones that
# made tensors contiguous), so views are taken as reshapes, which copy when they must.
_AS = {"view.default": aten.reshape.default, "_unsafe_view.default": aten.reshape.default}

for _name in _MOVEMENT:
    _op = "aten." + _name
    _base, _over = _name.split(".")
    register_lowering(_op, note="local (each party moves its share)")(
        _movement(_op, _AS.get(_name) or getattr(getattr(aten, _base), _over)))


@register_lowering("aten.constant_pad_nd.default", note="local")
def _pad(x, pad, value=0):
    from ..tensor.nn_ops import pad as veil_pad
    return veil_pad(x, list(pad), value=value)


@register_lowering("aten.cat.default", note="local (public parts become shares)")
def _cat(tensors, dim=0):
    return veil_cat(list(tensors), dim)


@register_lowering("aten.split_with_sizes.default", "aten.split.Tensor", note="local")
def _split(x, split, dim=0):
    return list(x.split(split, dim))


@register_lowering("aten.unbind.int", note="local")
def _unbind(x, dim=0):
    return list(x.unbind(dim))


@register_lowering("aten.cumsum.default", note="local")
def _cumsum(x, dim, dtype=None):
    return x.cumsum(dim)


# -- reductions -------------------------------------------------------------------------------
def _all_dims(dim, x):
    return list(range(x.dim())) if dim is None or list(dim) == [] else list(dim)


@register_lowering("aten.sum.dim_IntList", "aten.sum.default", note="local")
def _sum(x, dim=None, keepdim=False, dtype=None):
    return x.sum(_all_dims(dim, x), keepdim, dtype=dtype)


@register_lowering("aten.mean.dim", "aten.mean.default", note="local + 1 truncation")
def _mean(x, dim=None, keepdim=False, dtype=None):
    return x.mean(_all_dims(dim, x), keepdim, dtype=dtype)


@register_lowering("aten.var.correction", "aten.var.dim", note="1 round (square)")
def _var(x, dim=None, unbiased=None, keepdim=False, *, correction=None):
    if isinstance(unbiased, bool) and correction is None:
        correction = int(unbiased)
    return x.var(_all_dims(dim, x), correction=1 if correction is None else correction,
                 keepdim=keepdim)


@register_lowering("aten.amax.default", note="comparison tree, ceil(log2 n) layers")
def _amax(x, dim=(), keepdim=False):
    return x.amax(_all_dims(dim, x), keepdim)


@register_lowering("aten.amin.default", note="comparison tree")
def _amin(x, dim=(), keepdim=False):
    return x.amin(_all_dims(dim, x), keepdim)


@register_lowering("aten.max.dim", note="comparison tree (values and indices)")
def _max_dim(x, dim, keepdim=False):
    return tuple(x.max(dim, keepdim))


@register_lowering("aten.min.dim", note="comparison tree (values and indices)")
def _min_dim(x, dim, keepdim=False):
    return tuple(x.min(dim, keepdim))


@register_lowering("aten.argmax.default", note="comparison tree")
def _argmax(x, dim=None, keepdim=False):
    return x.argmax(dim, keepdim)


@register_lowering("aten.argmin.default", note="comparison tree")
def _argmin(x, dim=None, keepdim=False):
    return x.argmin(dim, keepdim)


# -- matmul family --------------------------------------------------------------------------
def _matmul(a, b):
    return a.matmul(b) if secret(a) else b.__rmatmul__(a)


@register_lowering("aten.mm.default", "aten.bmm.default", "aten.matmul.default",
                   note="secret x secret: 1 round (Beaver) + 1 truncation round; public "
                        "operand: local + truncation")
def _mm(a, b):
    return _matmul(a, b)


@register_lowering("aten.addmm.default", note="matmul + local add")
def _addmm(bias, a, b, *, beta=1, alpha=1):
    if alpha == 1 and beta == 1 and secret(a) and secret(b) and secret(bias):
        return a._matmul_add(b, bias)          # one truncation, after the bias
    out = _matmul(a, b) if secret(a) or secret(b) else torch.matmul(a, b)
    if alpha != 1:
        out = out * alpha
    if beta != 1:
        bias = bias * beta
    return out.add(bias) if secret(out) else bias.add(out)


@register_lowering("aten.baddbmm.default", note="bmm + local add")
def _baddbmm(inp, a, b, *, beta=1, alpha=1):
    return _addmm(inp, a, b, beta=beta, alpha=alpha)
