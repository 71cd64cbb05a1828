"""`RepShare`: one party's replicated share (x_i, x_{i+1}) that still acts as one tensor.

Everything above the protocol holds "this party's share" as a torch tensor and applies
torch's local linear and shape ops to it (reshape, index, cat, sum, +, * public, <<).
Under replicated sharing every such op applies to both components alike, so the pair is a
`torch.Tensor` subclass whose ``__torch_function__`` runs each op once per component and
pairs the results. Nothing above the protocol changes.

Ops that would be *wrong* when applied to both components fail loudly instead of
returning a silent wrong share:

* adding or XOR-ing a public tensor/number (it must enter one component only: use the
  protocol's ``add_public`` / ``xor_public``);
* a product of two shares (needs the protocol's ``mul`` / ``and_bits``);
* reading values out (``numpy``, ``item``, ``tolist``): a share is not a value.

The wrapper tensor itself aliases component ``a`` (so dtype/shape/device metadata are
right); its values are never read directly.

>>> import torch
>>> s = RepShare(torch.arange(6), torch.ones(6, dtype=torch.int64))
>>> t = (s.reshape(2, 3) * 2).sum(0)
>>> t.a.tolist(), t.b.tolist()
([6, 10, 14], [4, 4, 4])
"""

from __future__ import annotations

import torch

_ADDITIVE = {"add", "add_", "__add__", "__radd__", "__iadd__", "sub", "sub_", "__sub__",
             "__rsub__", "__isub__", "rsub", "bitwise_xor", "bitwise_xor_", "__xor__",
             "__rxor__", "__ixor__", "bitwise_or", "bitwise_or_", "__or__", "__ror__",
             "__ior__", "ones_like", "full_like", "new_ones", "new_full", "fill_",
             "add_public"}
_INPLACE = {"__setitem__", "__iadd__", "__isub__", "__imul__", "__ixor__", "__iand__",
            "__ior__", "__ilshift__", "copy_"}
_FILL = {"ones_like", "full_like", "new_ones", "new_full", "fill_"}
_PRODUCT = {"mul", "mul_", "__mul__", "__rmul__", "__imul__", "matmul", "__matmul__",
            "__rmatmul__", "mm", "bmm", "einsum", "tensordot", "outer", "conv1d", "conv2d",
            "bitwise_and", "bitwise_and_", "__and__", "__rand__", "__iand__", "dot", "mv",
            "linear", "kron"}
_FORBIDDEN = {"numpy", "item", "tolist", "__array__", "__float__", "__int__", "__index__",
              "__bool__", "__reduce_ex__", "__getstate__", "__rshift__", "__irshift__",
              "bitwise_right_shift", "div", "__truediv__", "__floordiv__", "floor_divide",
              "remainder", "__mod__", "abs", "sign", "max", "min", "amax", "amin", "sort",
              "argmax", "argmin", "eq", "ne", "lt", "gt", "le", "ge", "__eq__", "__ne__",
              "__lt__", "__gt__", "__le__", "__ge__", "equal", "allclose", "resize_",
              "squeeze_", "unsqueeze_", "t_", "transpose_", "set_", "as_strided_", "relu",
              "clamp", "clamp_", "clip", "floor", "ceil", "round", "exp", "log", "sqrt",
              "sigmoid", "tanh", "float", "double", "half", "argsort", "topk", "unique",
              "nonzero", "any", "all", "mean", "prod", "cumprod", "square", "pow", "__pow__",
              "__rpow__"}
# Ops that write a constant into the share (correct only when the constant is 0), and
# where that constant sits among the arguments.
_VALUE_AT = {"where": (1, 2), "masked_fill": (2,), "masked_fill_": (2,), "index_fill": (3,),
             "index_fill_": (3,), "pad": (3,), "fill_diagonal_": (1,)}
# Methods whose result is metadata (shape, dtype, ...), the same for both components.
_META = {"shape", "dtype", "device", "size", "dim", "ndim", "numel", "nelement", "layout",
         "is_contiguous", "stride", "element_size", "__len__", "is_floating_point",
         "is_complex", "requires_grad", "is_sparse", "is_quantized", "is_meta", "is_cuda",
         "storage_offset", "names", "__get__", "is_signed", "itemsize", "nbytes", "_version",
         "grad", "grad_fn", "is_leaf", "data_ptr", "__hash__", "__format__", "__repr__"}


class RepShare(torch.Tensor):
    """Components ``a`` = x_i and ``b`` = x_{i+1} of party i's replicated share."""

    @staticmethod
    def __new__(cls, a: torch.Tensor, b: torch.Tensor):
        if a.shape != b.shape or a.dtype != b.dtype:
            raise ValueError("internal: replicated components differ in shape or dtype")
        r = torch.Tensor._make_subclass(cls, a)
        r.a, r.b = a, b
        return r

    def __repr__(self, *args, **kwargs) -> str:
        # Never prints component values: a share is harmless alone, but logs collect them.
        return f"RepShare(shape={tuple(self.a.shape)}, dtype={self.a.dtype}, <secret>)"

    def __deepcopy__(self, memo):
        return RepShare(self.a.clone(), self.b.clone())

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = _name(func)
        if name in _META:
            return func(*_pick(args, 0), **_pick(kwargs, 0))
        if name in _FILL and not name.endswith("_"):
            # ones_like(share) etc. ask for a *public* tensor of that shape and dtype.
            return func(*_pick(args, 0), **_pick(kwargs, 0))
        if name == "__iter__":
            s = args[0]
            return iter([RepShare(x, y) for x, y in zip(s.a.unbind(0), s.b.unbind(0))])
        if name in _FORBIDDEN:
            raise TypeError(f"{name} is not defined on a replicated share: a share is not a "
                            f"value; use the protocol kernels (reveal, msb, trunc, ...)")
        _check_operands(name, args, kwargs)
        if args and not isinstance(args[0], RepShare) and isinstance(args[0], torch.Tensor) \
                and (name.endswith("_") or name in _INPLACE):
            raise TypeError(f"{name} writes a replicated share into a plain tensor; create the "
                            f"destination with the protocol's zeros(shape)")
        r0 = func(*_pick(args, 0), **_pick(kwargs, 0))
        r1 = func(*_pick(args, 1), **_pick(kwargs, 1))
        if args and isinstance(args[0], RepShare) and r0 is args[0].a:
            return args[0]                                  # in-place op: same object
        if r0 is None and r1 is None:                      # __setitem__ and friends
            return None
        return _pair(r0, r1, name)


def _name(func) -> str:
    n = getattr(func, "__name__", None)
    if n is None and hasattr(func, "__get__"):            # property getters (.shape, .T)
        n = getattr(getattr(func, "__self__", None), "__name__", None) or "__get__"
    return n or str(func)


def _pick(x, k: int):
    if isinstance(x, RepShare):
        return x.a if k == 0 else x.b
    if isinstance(x, (list, tuple)):
        return type(x)(_pick(v, k) for v in x)
    if isinstance(x, dict):
        return {key: _pick(v, k) for key, v in x.items()}
    return x


def _flat(x, out):
    if isinstance(x, (list, tuple)):
        for v in x:
            _flat(v, out)
    elif isinstance(x, dict):
        for v in x.values():
            _flat(v, out)
    else:
        out.append(x)
    return out


def _check_operands(name: str, args, kwargs) -> None:
    items = _flat(list(args) + list(kwargs.values()), [])
    reps = sum(isinstance(v, RepShare) for v in items)
    plain = [v for v in items if isinstance(v, torch.Tensor) and not isinstance(v, RepShare)]
    if name in _ADDITIVE:
        numbers = [v for v in _flat(list(args), []) if isinstance(v, (bool, int, float))
                   and v != 0]
        if plain or numbers or name == "fill_":
            raise TypeError(f"{name} of a replicated share and a public operand would add it "
                            f"to both components; use the protocol's add_public/xor_public")
    elif name == "__setitem__" and len(args) > 2 and not isinstance(args[2], RepShare):
        v = args[2]
        if (isinstance(v, torch.Tensor) and torch.count_nonzero(v)) or \
                (isinstance(v, (bool, int, float)) and v != 0):
            raise TypeError("storing a public value into a replicated share would write it "
                            "into both components; lift it with add_public first")
    elif name in _VALUE_AT:
        values = [args[i] for i in _VALUE_AT[name] if i < len(args)] + \
            [kwargs[k] for k in ("value", "other", "input") if k in kwargs and name != "where"]
        if any(isinstance(v, (bool, int, float)) and v != 0 for v in values):
            raise TypeError(f"{name} with a non-zero constant would write it into both "
                            f"components of a replicated share; use add_public on a mask")
    elif name in _PRODUCT and reps > 1:
        raise TypeError(f"{name} of two replicated shares is not local; use the protocol's "
                        f"mul/matmul/and_bits kernels")
    elif name not in _PRODUCT and plain and name in ("cat", "stack", "concat", "hstack",
                                                     "vstack", "where"):
        data = [v for v in plain if v.dtype != torch.bool]
        if data:
            raise TypeError(f"{name} of replicated shares with a public tensor operand: lift "
                            f"the public value to a share first")


def _pair(r0, r1, name: str):
    if isinstance(r0, torch.Tensor):
        return RepShare(r0, r1)
    if isinstance(r0, (tuple, list)) and all(isinstance(v, torch.Tensor) for v in r0):
        vals = [RepShare(x, y) for x, y in zip(r0, r1)]
        if hasattr(r0, "_fields"):                          # named tuples (torch.return_types)
            return type(r0)(vals)
        return type(r0)(vals)
    raise TypeError(f"{name} on a replicated share returned {type(r0).__name__}, not a tensor")
