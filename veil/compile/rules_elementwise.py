"""Lowering rules: elementwise arithmetic, comparisons, activations and smooth functions.

Costs are those of the SecretTensor ops they call (2 parties, semi2k): + - and products
with public values are local (a product adds one truncation); secret x secret is one
round; a comparison is 6 rounds and returns bit shares; relu/where on it add one round.
Smooth functions (exp, gelu, ...) come from veil.functions and are called by name.
"""

from __future__ import annotations

import math

import torch

from ..tensor import where as veil_where
from ..tensor.core import as_public
from .lowering import mask_safe, register_lowering, secret


def _pub(v):
    return mask_safe(v) if not secret(v) else v


# -- + - * / ----------------------------------------------------------------------------------
@register_lowering("aten.add.Tensor", "aten.add.Scalar", note="local")
def _add(a, b, alpha=1):
    a, b = _pub(a), _pub(b)
    if alpha != 1:
        b = b * alpha
    return a.add(b) if secret(a) else b.add(a)


@register_lowering("aten.sub.Tensor", "aten.sub.Scalar", note="local")
def _sub(a, b, alpha=1):
    a, b = _pub(a), _pub(b)
    if alpha != 1:
        b = b * alpha
    return a.sub(b) if secret(a) else (-b).add(a)


@register_lowering("aten.rsub.Scalar", "aten.rsub.Tensor", note="local")
def _rsub(a, b, alpha=1):
    return _sub(b, a * alpha if alpha != 1 else a)


@register_lowering("aten.mul.Tensor", "aten.mul.Scalar",
                   note="public factor: local + truncation; secret x secret: 1 round + 1 "
                        "truncation round")
def _mul(a, b):
    if secret(a) and secret(b) and a is b:
        return a.square()
    return a.mul(b) if secret(a) else b.mul(a)


@register_lowering("aten.div.Tensor", "aten.div.Scalar",
                   note="by a public value: local; by a secret: x * reciprocal(y)",
                   needs=())
def _div(a, b):
    if secret(a):
        return a.div(b) if not secret(b) else a.mul(b.reciprocal())
    return b.reciprocal().mul(a)


@register_lowering("aten.neg.default", note="local")
def _neg(x):
    return x.neg()


@register_lowering("aten.square.default", note="1 round")
def _square(x):
    return x.square()


def _pow_method(e) -> str | None:
    e = float(e)
    if e.is_integer() and e >= 0:
        return None
    return {0.5: "sqrt", -0.5: "rsqrt"}.get(e, "reciprocal" if e.is_integer() else "pow_float")


def _pow_check(node, shape_of):
    from ..tensor import SecretTensor
    method = _pow_method(node.args[1]) if isinstance(node.args[1], (int, float)) else None
    if method and not hasattr(SecretTensor, method):
        return f"x ** {node.args[1]} needs SecretTensor.{method} (veil.functions)"
    return None


@register_lowering("aten.pow.Tensor_Scalar", check=_pow_check,
                   note="integer powers by squaring; 0.5 / -0.5 / -1 via sqrt / rsqrt / "
                        "reciprocal")
def _pow(x, e):
    method = _pow_method(e)
    if method is None:
        return x.pow(int(e))
    if method == "reciprocal":
        return x.reciprocal().pow(-int(e))
    return getattr(x, method)() if method != "pow_float" else x.pow_float(e)


# -- comparisons and logic (bit shares) ----------------------------------------------------
_MIRROR = {"lt": "gt", "gt": "lt", "le": "ge", "ge": "le", "eq": "eq", "ne": "ne"}


def _is_inf(v) -> bool:
    return isinstance(v, float) and math.isinf(v)


def _cmp_rule(name):
    def rule(a, b):
        if secret(a) and _is_inf(b) or secret(b) and _is_inf(a):
            # Fixed-point secrets are finite: comparing with +-inf is public.
            sec, inf = (a, b) if secret(a) else (b, a)
            const = {"eq": False, "ne": True}.get(name)
            if const is None:
                less = (inf > 0) == secret(a)          # is the secret side the smaller one
                const = less if name in ("lt", "le") else not less
            return torch.full(tuple(sec.shape), bool(const))
        if secret(a):
            return getattr(a, name)(mask_safe(b))
        return getattr(b, _MIRROR[name])(mask_safe(a))
    rule.__name__ = f"_{name}"
    return rule


def _inf_operand(node, shape_of) -> bool:
    return any(_is_inf(a) for a in node.args[:2])


for _n in _MIRROR:
    register_lowering(f"aten.{_n}.Tensor", f"aten.{_n}.Scalar",
                      note="6 rounds (2 parties), returns bit shares; vs +-inf: public",
                      public_if=_inf_operand)(_cmp_rule(_n))


@register_lowering("aten.logical_not.default", note="local")
def _not(x):
    return x.logical_not()


@register_lowering("aten.logical_and.default", note="1 round")
def _and(a, b):
    return a.logical_and(b) if secret(a) else b.logical_and(a)


@register_lowering("aten.logical_or.default", note="1 round")
def _or(a, b):
    return a.logical_or(b) if secret(a) else b.logical_or(a)


@register_lowering("aten.logical_xor.default", note="local")
def _xor(a, b):
    return a.logical_xor(b) if secret(a) else b.logical_xor(a)


# Bitwise ops keep torch's meaning: on bool data they are the logical ops; on integers
# SecretTensor's operators decide (~ is exact on integers; & | ^ on integers are refused)
# — never a logical result for integer data.
@register_lowering("aten.bitwise_not.default", note="bool: local; int: -x - 1 (local)")
def _bitwise_not(x):
    return ~x


@register_lowering("aten.bitwise_and.Tensor", note="bool: 1 round; int: refused")
def _bitwise_and(a, b):
    return a & b if secret(a) else b & a


@register_lowering("aten.bitwise_or.Tensor", note="bool: 1 round; int: refused")
def _bitwise_or(a, b):
    return a | b if secret(a) else b | a


@register_lowering("aten.bitwise_xor.Tensor", note="bool: local; int: refused")
def _bitwise_xor(a, b):
    return a ^ b if secret(a) else b ^ a


@register_lowering("aten.where.self", note="public condition: local; secret: 1 round")
def _where(cond, a, b):
    return veil_where(cond, _pub(a), _pub(b))


@register_lowering("aten.maximum.default", note="comparison + select")
def _maximum(a, b):
    return a.maximum(b) if secret(a) else b.maximum(a)


@register_lowering("aten.minimum.default", note="comparison + select")
def _minimum(a, b):
    return a.minimum(b) if secret(a) else b.minimum(a)


# -- piecewise-linear activations --------------------------------------------------------
@register_lowering("aten.relu.default", note="1 comparison + 1 select (7 rounds)")
def _relu(x):
    return x.relu()


@register_lowering("aten.clamp.default", "aten.clamp.Tensor", "aten.hardtanh.default",
                   note="one comparison + select per bound (ReLU6 = hardtanh(0, 6))")
def _clamp(x, min=None, max=None):
    if min == 0 and max == 6 and hasattr(x, "relu6"):
        return x.relu6()
    if min == 0 and max is None:
        return x.relu()
    return x.clamp(min=min, max=max)


@register_lowering("aten.leaky_relu.default", note="1 comparison + 1 select")
def _leaky_relu(x, negative_slope=0.01):
    if hasattr(x, "leaky_relu"):
        return x.leaky_relu(negative_slope)
    return veil_where(x.ge(0), x, x * negative_slope)


@register_lowering("aten.abs.default", note="comparison + select")
def _abs(x):
    return x.abs()


@register_lowering("aten.sign.default", note="two comparisons")
def _sign(x):
    return x.sign()


# -- smooth functions: veil.functions methods, called by their torch names --------------------
def _method_rule(op, method, note):
    def rule(x, *args, **kwargs):
        return getattr(x, method)(*args, **kwargs)
    rule.__name__ = f"_{method}"
    register_lowering(op, note=note, needs=(method,))(rule)


for _op, _m in [("exp", "exp"), ("log", "log"), ("sqrt", "sqrt"), ("rsqrt", "rsqrt"),
                ("reciprocal", "reciprocal"), ("sigmoid", "sigmoid"), ("tanh", "tanh"),
                ("erf", "erf"), ("silu", "silu"), ("softplus", "softplus"),
                ("hardswish", "hardswish"), ("hardsigmoid", "hardsigmoid")]:
    _method_rule(f"aten.{_op}.default", _m, note=f"x.{_m}() (veil.functions)")


@register_lowering("aten.log1p.default", note="log(1 + x) (veil.functions log)",
                   needs=("log",))
def _log1p(x):
    return x.log1p() if hasattr(x, "log1p") else (x + 1.0).log()


@register_lowering("aten.expm1.default", note="exp(x) - 1 (veil.functions exp)",
                   needs=("exp",))
def _expm1(x):
    return x.expm1() if hasattr(x, "expm1") else x.exp() - 1.0


@register_lowering("aten.elu.default",
                   note="x > 0 ? x : alpha * (exp(x) - 1); exp sees min(x, 0) only",
                   needs=("exp",))
def _elu(x, alpha=1.0, scale=1.0, input_scale=1.0):
    pos = x.gt(0)
    neg = veil_where(pos, 0.0, x)          # exp never sees large positive inputs
    out = veil_where(pos, x, (neg * input_scale).exp().sub(1.0) * alpha)
    return out * scale if scale != 1 else out


@register_lowering("aten.gelu.default", note="x.gelu(approximate=...) (veil.functions)",
                   needs=("gelu",))
def _gelu(x, approximate="none"):
    return x.gelu(approximate=approximate)


# -- dtype ------------------------------------------------------------------------------------
@register_lowering("aten._to_copy.default", note="float<->float and int->float: local")
def _to_copy(x, dtype=None, **_ignored):
    if dtype is None or dtype == x.dtype:
        return x
    if x.is_floating_point() and dtype.is_floating_point:
        return x._to_dtype(dtype)
    return x.to(dtype)


def _like_rule(default):
    def rule(x, fill=None, *, dtype=None, **_ignored):
        value = default if fill is None else fill
        return torch.full(tuple(x.shape), as_public(value).item(), dtype=dtype or x.dtype)
    return rule


for _op, _default in [("full_like", None), ("zeros_like", 0), ("ones_like", 1),
                      ("empty_like", 0)]:
    register_lowering(f"aten.{_op}.default", note="public: depends on the shape only",
                      public_if=lambda node, shape_of: True)(_like_rule(_default))
