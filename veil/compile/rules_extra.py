"""Lowering rules for the ops issue 10 added: scatter / scatter_add / index_add with public
indices (local), prod (a product tree), vector norms, all / any.

Each calls the SecretTensor method of the same name (veil.tensor.indexing / linalg), so
`veil.secure` and eager code share one implementation and one cost.
"""

from __future__ import annotations

from ..errors import ProtocolUsageError
from .lowering import register_lowering, secret


def _public_index(op, index):
    if secret(index):
        raise ProtocolUsageError(f"{op}: a secret index (a value computed from secret data) "
                                 f"is not supported here; indices must be public")


@register_lowering("aten.scatter.src", "aten.scatter.value", note="local (public index)")
def _scatter(x, dim, index, src):
    _public_index("aten.scatter", index)
    if not secret(x):
        raise ProtocolUsageError("aten.scatter: a secret src into a public tensor; share the "
                                 "tensor first")
    return x.scatter(dim, index, src)


@register_lowering("aten.scatter_add.default", note="local (public index)")
def _scatter_add(x, dim, index, src):
    _public_index("aten.scatter_add", index)
    base = x if secret(x) else _lift_public(src, x)
    return base.scatter_add(dim, index, src)


@register_lowering("aten.index_add.default", note="local (public index)")
def _index_add(x, dim, index, source, alpha=1):
    _public_index("aten.index_add", index)
    base = x if secret(x) else _lift_public(source, x)
    return base.index_add(dim, index, source, alpha=alpha)


def _lift_public(sec, pub):
    """A public tensor as a SecretTensor at ``sec``'s scale (party 0 holds it)."""
    return sec._wrap(sec._lift(pub, sec.frac), sec.dtype)


@register_lowering("aten.prod.dim_int", "aten.prod.default",
                   note="product tree: ceil(log2 n) product rounds")
def _prod(x, dim=None, keepdim=False, *, dtype=None):
    return x.prod(dim, keepdim, dtype=dtype)


@register_lowering("aten.linalg_vector_norm.default",
                   note="p=2: products + sqrt; p=1: abs; p=inf: abs + max tree")
def _vector_norm(x, ord=2, dim=None, keepdim=False, *, dtype=None):
    return x.norm(ord, dim, keepdim, dtype)


@register_lowering("aten.any.default", "aten.any.dim", "aten.any.dims",
                   note="sum of the bits + one equality test")
def _any(x, dim=None, keepdim=False):
    return x.any(dim, keepdim)


@register_lowering("aten.all.default", "aten.all.dim", "aten.all.dims",
                   note="count of zero bits + one equality test")
def _all(x, dim=None, keepdim=False):
    return x.all(dim, keepdim)


@register_lowering("aten.index_put.default", note="local (public indices; index_add/ "
                   "masked writes decompose to it)")
def _index_put(x, indices, values, accumulate=False):
    if any(secret(i) for i in indices if i is not None):
        raise ProtocolUsageError("aten.index_put: secret indices are not supported; indices "
                                 "must be public")
    base = x if secret(x) else _lift_public(values, x)
    if secret(values):
        if values.dtype != base.dtype:
            values = values._to_dtype(base.dtype)
        vals = values.share
    else:
        vals = base._lift(values, base.frac)
    idx = tuple(i for i in indices)
    return base._wrap(base.share.index_put(idx, vals, accumulate), base.dtype)


# -- exact rounding (veil.tensor.rounding) --------------------------------------------------------
def _method(name):
    def rule(x, *args, **kwargs):
        if not secret(x):
            raise ProtocolUsageError(f"aten.{name}: the first argument must be the secret "
                                     f"one (a secret divisor/exponent is not supported)")
        return getattr(x, name)(*args, **kwargs)
    rule.__name__ = f"_{name}"
    return rule


for _name, _ops in [("floor", ["aten.floor.default"]), ("ceil", ["aten.ceil.default"]),
                    ("trunc", ["aten.trunc.default"]), ("round", ["aten.round.default"]),
                    ("floor_divide", ["aten.floor_divide.default", "aten.floor_divide.Scalar"]),
                    ("remainder", ["aten.remainder.Tensor", "aten.remainder.Scalar"]),
                    ("fmod", ["aten.fmod.Tensor", "aten.fmod.Scalar"])]:
    register_lowering(*_ops, note="exact: truncated estimate + 4 comparisons (one batch) "
                                  "+ b2a; public divisor")(_method(_name))


@register_lowering("aten.frac.default", note="x - trunc(x), exact")
def _frac(x):
    from ..tensor.rounding import frac
    return frac(x)


@register_lowering("aten.div.Tensor_mode", "aten.div.Scalar_mode",
                   note="rounding_mode floor/trunc: exact, public divisor")
def _div_mode(x, y, *, rounding_mode=None):
    if not secret(x) or secret(y):
        raise ProtocolUsageError("aten.div(rounding_mode=...): only the dividend may be secret")
    return x.div(y, rounding_mode=rounding_mode)


# -- trigonometric / hyperbolic / log-exp variants (veil.functions.trig) ----------------------
for _m in ["sin", "cos", "tan", "atan", "sinh", "cosh", "exp2", "log2", "log10"]:
    register_lowering(f"aten.{_m}.default", note=f"x.{_m}() (veil.functions.trig)",
                      needs=(_m,))(_method(_m))


@register_lowering("aten.atan2.default", note="min/max fold + atan polynomial + 3 selects",
                   needs=("atan2",))
def _atan2(y, x):
    from ..functions.trig import atan2
    return atan2(y, x)


@register_lowering("aten.pow.Tensor_Tensor", "aten.pow.Scalar",
                   note="exp(y log x) for x > 0 (public base: exp(y log b))")
def _pow_tensor(x, exponent):
    from ..functions.trig import pow_tensor
    return pow_tensor(x, exponent)


# -- sorting network (veil.tensor.sorting) ----------------------------------------------------
@register_lowering("aten.sort.default", "aten.sort.stable",
                   note="odd-even merge sorting network: m(m+1)/2 stages of 1 comparison + "
                        "1 select (m = ceil(log2 n))")
def _sort(x, *args, stable=None, dim=-1, descending=False):
    if args:                                  # sort.default(x, dim, descending)
        dim = args[0]
        descending = args[1] if len(args) > 1 else descending
    return tuple(x.sort(dim, descending))


@register_lowering("aten.topk.default", note="sorting network, first k")
def _topk(x, k, dim=-1, largest=True, sorted=True):
    return tuple(x.topk(k, dim, largest, sorted))


@register_lowering("aten.kthvalue.default", note="sorting network, k-th")
def _kthvalue(x, k, dim=-1, keepdim=False):
    return tuple(x.kthvalue(k, dim, keepdim))


@register_lowering("aten.median.default", note="sorting network, lower median")
def _median_all(x):
    return x.median()


@register_lowering("aten.median.dim", note="sorting network, lower median")
def _median_dim(x, dim, keepdim=False):
    return tuple(x.median(dim, keepdim))


# -- eager F.conv_transpose1d/2d: the lowering's zero insertion + conv, on SecretTensors ---------
def _ntuple(v, n):
    return list(v) if isinstance(v, (tuple, list)) else [v] * n


def _conv_transpose(nd):
    def conv_transpose(x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                       dilation=1):
        from .rules_nn import _convolution
        if isinstance(padding, str):
            raise ProtocolUsageError(f"conv_transpose{nd}d: string padding is not supported")
        unbatched = len(x.shape) == nd + 1
        if unbatched:
            x = x.unsqueeze(0)
        out = _convolution(x, weight, bias, _ntuple(stride, nd), _ntuple(padding, nd),
                           _ntuple(dilation, nd), True, _ntuple(output_padding, nd), groups)
        return out.squeeze(0) if unbatched else out
    conv_transpose.__name__ = f"conv_transpose{nd}d"
    conv_transpose.__doc__ = (f"F.conv_transpose{nd}d on secret input and/or weight: zero "
                              f"insertion + padding (local) and one conv (one product round).")
    return conv_transpose


def _register_eager():
    import torch.nn.functional as F
    from ..tensor.dispatch import register_torch
    register_torch([F.conv_transpose1d], _conv_transpose(1))
    register_torch([F.conv_transpose2d], _conv_transpose(2))


_register_eager()


# -- pooling beyond 2-d (veil.tensor.pooling) ------------------------------------------------------
@register_lowering("aten.max_pool3d_with_indices.default",
                   note="max tree over each window (all options); indices ride along")
def _max_pool3d(x, kernel_size, stride=(), padding=0, dilation=1, ceil_mode=False):
    from ..tensor.pooling import max_pool3d
    return max_pool3d(x, list(kernel_size), list(stride) or None, padding, dilation, ceil_mode,
                      return_indices=True)


@register_lowering("aten.avg_pool3d.default", note="local window sums + 1 truncation")
def _avg_pool3d(x, kernel_size, stride=(), padding=0, ceil_mode=False, count_include_pad=True,
                divisor_override=None):
    from ..tensor.pooling import avg_pool3d
    return avg_pool3d(x, list(kernel_size), list(stride) or None, padding, ceil_mode,
                      count_include_pad, divisor_override)


@register_lowering("aten.adaptive_max_pool2d.default", "aten.adaptive_max_pool1d.default",
                   note="max tree over torch's adaptive windows; indices ride along")
def _adaptive_max_pool(x, output_size):
    from ..tensor.pooling import adaptive_max_pool
    return adaptive_max_pool(x, len(output_size), list(output_size), return_indices=True)
