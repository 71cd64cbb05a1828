"""Opt-in MPC-friendly approximations: which variant each function uses.

The default is always the accurate variant. A cheaper one is chosen per call
(``x.softmax(-1, approx="2quad")``) or for a block of code (a model's forward pass):

>>> import torch, veil
>>> from veil.functions import approximations
>>> def f():
...     x = veil.tensor(torch.tensor([[1.0, 2.0, 3.0]]) if veil.rank() == 0 else None, owner=0)
...     with approximations(softmax="2quad", gelu="quad"):
...         p = x.softmax(-1)
...     return p.reveal()
>>> [round(v, 3) for v in veil.run(f, parties=2, seed=0)[0][0].tolist()]
[0.242, 0.329, 0.43]

The setting lives in a ``contextvars`` variable, not a global: each party thread (and
each asyncio task) has its own, so enter the block inside the function given to veil.run.

Variants (measured error and cost: docs/functions.md):

* exp ``"square"``: exp(x/8)^8 from a polynomial seed: 6 rounds instead of 11, relative
  error 4e-4 instead of 2e-4, and no saturation (meaningless below about -37).
* softmax ``"2quad"``: (x + c)^2 / sum (x + c)^2 with c = 5 (MPCFormer, Li et al. 2023).
  No max, no exp: one product, one reciprocal of the row sums, one product.
* gelu ``"quad"``: 0.125 x^2 + 0.25 x + 0.5 (MPCFormer's Quad). One product, no
  comparison. Only meaningful in a model distilled for it: it is not close to GELU.
* sigmoid ``"linear"``: the 3-piece linear sigmoid clamp(0.5 + x/4, 0, 1) (the SecureML
  variant, Mohassel & Zhang 2017, with the slope of the sigmoid at 0). One comparison
  layer and one select: 7 rounds.
* sigmoid ``"spline"``: linear interpolation between 65 knots on [-10, 10] (denser where
  the sigmoid bends): one comparison layer (all 65 thresholds in one msb call) and one
  select: 7 rounds instead of 13 at the exact variant's accuracy (2e-4), for 33x the
  comparison bytes. For small tensors where rounds dominate (a training step's logits).
"""

from __future__ import annotations

import contextvars
from contextlib import contextmanager
from types import MappingProxyType

from ..errors import ProtocolUsageError

VARIANTS: dict[str, tuple[str, ...]] = {
    "exp": ("exact", "square"),
    "softmax": ("exact", "2quad"),
    "gelu": ("exact", "quad"),
    "sigmoid": ("exact", "linear", "spline"),
}

_CURRENT: contextvars.ContextVar[MappingProxyType] = contextvars.ContextVar(
    "veil_approximations", default=MappingProxyType({}))


def _check(name: str, mode: str) -> None:
    if name not in VARIANTS:
        raise ProtocolUsageError(f"no approximations for {name!r}; functions with variants: "
                                 f"{sorted(VARIANTS)}")
    if mode not in VARIANTS[name]:
        raise ProtocolUsageError(f"unknown approximation {mode!r} for {name}; choose one of "
                                 f"{VARIANTS[name]}")


@contextmanager
def approximations(**modes: str):
    """Use the named variants inside the block (``None`` or "exact" restores the default)."""
    for name, mode in modes.items():
        _check(name, "exact" if mode is None else mode)
    merged = dict(_CURRENT.get())
    merged.update({k: ("exact" if v is None else v) for k, v in modes.items()})
    token = _CURRENT.set(MappingProxyType(merged))
    try:
        yield
    finally:
        _CURRENT.reset(token)


def current_approximations() -> dict[str, str]:
    """The variants in force here (functions not listed use "exact")."""
    return dict(_CURRENT.get())


def choose(name: str, per_call: str | None) -> str:
    """The variant for this call: the per-call argument, else the context's, else exact."""
    mode = per_call if per_call is not None else _CURRENT.get().get(name, "exact")
    _check(name, mode)
    return mode


__all__ = ["approximations", "current_approximations", "choose", "VARIANTS"]
