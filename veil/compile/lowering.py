"""The lowering table: one rule per ATen op, saying how to run it on secret values.

The interpreter calls a rule only when some argument is secret; an op whose arguments
are all public runs in plaintext torch (shape arithmetic, masks, constants). A rule takes
the op's arguments exactly as ATen passes them, any of which may be a `SecretTensor`, a
public tensor or a Python value, and returns what the ATen op returns.

Rules live in ``rules_*.py`` next to each other by area; this module holds the table and
the helpers they share. The table also generates the support matrix (docs/inference.md).

>>> from veil.compile.lowering import LOWERINGS
>>> LOWERINGS["aten.convolution.default"].note
'conv1d / conv2d / conv3d (groups, dilation) and transposed conv as zero insertion + conv'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ..errors import ProtocolUsageError
from ..protocols.base import carry_reshaped
from ..tensor import SecretTensor
from ..tensor.core import is_secret

# Public additive masks use -inf (or float32's lowest value); fixed point cannot hold
# them, so entries at or below MASK_LIMIT become MASK_FILL. Softmax subtracts the row max
# first, so a masked entry stays at least |MASK_FILL| below every kept one and its
# exponential vanishes; MASK_FILL stays far inside the comparison range (2^15 at the
# default 16 fractional bits) so the max tree still orders it correctly.
MASK_LIMIT = -1.0e4
MASK_FILL = -1.0e4


@dataclass(frozen=True)
class Rule:
    op: str
    fn: Callable
    note: str = ""
    # SecretTensor methods the rule calls that other modules provide (veil.functions);
    # an op whose method is missing is reported as unsupported at capture time.
    needs: tuple = ()
    # Static check at capture time: ``check(node) -> str | None`` (the reason it cannot run).
    check: Callable | None = None
    # ``public_if(node) -> bool``: the result is public whatever the inputs (e.g. ones_like).
    public_if: Callable | None = None

    def missing(self) -> list[str]:
        return [m for m in self.needs if not hasattr(SecretTensor, m)]


LOWERINGS: dict[str, Rule] = {}


def register_lowering(*ops: str, note: str = "", needs: tuple = (), check=None,
                      public_if=None):
    """Decorator: register ``fn`` as the lowering of each ATen op in ``ops`` (no duplicates).

    >>> @register_lowering("aten.example_identity.default", note="doc example")
    ... def _identity(x):
    ...     return x
    >>> LOWERINGS["aten.example_identity.default"].fn is _identity
    True
    >>> del LOWERINGS["aten.example_identity.default"]
    """
    def deco(fn):
        for op in ops:
            if op in LOWERINGS:
                raise ValueError(f"a lowering for {op} is already registered "
                                 f"({LOWERINGS[op].fn.__module__}.{LOWERINGS[op].fn.__name__})")
            if not (op.startswith("aten.") or op == "getitem"):
                raise ValueError(f"lowering keys are ATen op names like 'aten.mm.default', "
                                 f"got {op!r}")
        for op in ops:
            LOWERINGS[op] = Rule(op, fn, note, tuple(needs), check, public_if)
        return fn
    return deco


# -- helpers shared by the rules ------------------------------------------------------------
def secret(v) -> bool:
    return is_secret(v) or getattr(v, "is_veil_token_ids", False)


def any_secret(v) -> bool:
    if secret(v):
        return True
    if isinstance(v, (list, tuple)):
        return any(any_secret(x) for x in v)
    if isinstance(v, dict):
        return any(any_secret(x) for x in v.values())
    return False


def mask_safe(v):
    """A public operand with -inf (or huge negative) mask entries clamped to MASK_FILL.

    Positive infinities and NaN have no fixed-point meaning: refuse them clearly.
    """
    if isinstance(v, float):
        if v != v or v == float("inf"):
            raise ProtocolUsageError(f"a public constant {v} meets a secret value; fixed "
                                     f"point cannot represent it")
        return MASK_FILL if v <= MASK_LIMIT else v
    if isinstance(v, torch.Tensor) and v.is_floating_point() and v.numel():
        if torch.isnan(v).any() or torch.isposinf(v).any():
            raise ProtocolUsageError("a public tensor with NaN or +inf meets a secret value; "
                                     "fixed point cannot represent it")
        if (v <= MASK_LIMIT).any():
            return v.masked_fill(v <= MASK_LIMIT, MASK_FILL)
    return v


def local(x, fn, keeps_order: bool = False):
    """Apply a data-movement op ``fn`` to every share form of ``x`` (no communication).

    Exact for any op that only moves, copies or drops elements (view, permute, slice,
    index with public indices, ...): share-wise application commutes with reconstruction.
    ``keeps_order``: ``fn`` is a row-major reshape, so the result keeps the masked form a
    fused truncation left on x (veil.protocols.base.carry_reshaped).
    """
    out = x._map(fn)
    if keeps_order:
        carry_reshaped(x._share, out._share)
    return out


__all__ = ["LOWERINGS", "Rule", "register_lowering", "secret", "any_secret", "mask_safe",
           "local", "MASK_FILL", "MASK_LIMIT"]
