"""Piecewise-linear activations: hardsigmoid, relu6, hardswish, leaky_relu.

One batched comparison of the edges (6 rounds at 2 parties) and one select round: 7
rounds (hardswish 8: its middle piece x (x + 3) / 6 needs a product). Exact up to the
rounding of public slopes. The forward stores the edge bits in ``saved`` for autograd,
so the backward rules cost one select, not another comparison.

Edges sit where torch's gradient changes, one ulp (2^-f) inside where torch uses a
strict inequality: x > 0 is x >= 1 ulp on the fixed-point grid. The values are the same
(the function is continuous there) and the gradients at the kinks are torch's: relu6 and
leaky_relu get torch's gradient at exactly 0, hardsigmoid and hardswish at -3 and 3.
"""

from __future__ import annotations

import torch.nn.functional as F

from ..tensor.dispatch import register_torch
from . import _kern as K
from .grad_rules import register_grad


def _ulp() -> float:
    return 2.0 ** -K.F()


def _pieces(x, lo: float, hi: float):
    """Bits of x < lo, lo <= x < hi, x >= hi."""
    return K.onehot(K.ge_many(x, [lo, hi]))


def _hardsigmoid_pieces(s):
    # torch: gradient 1/6 on -3 < x < 3 (strict), so the middle piece is [-3 + ulp, 3).
    return _pieces(s, -3.0 + _ulp(), 3.0)


def _relu6_pieces(s):
    # torch (hardtanh): gradient 1 on 0 < x < 6, so the middle piece is [ulp, 6).
    return _pieces(s, _ulp(), 6.0)


def _hardswish_pieces(s):
    # torch: gradient 0 at x <= -3, x/3 + 1/2 on -3 < x < 3, 1 from 3 on (measured on
    # torch 2.13), so the middle piece is [-3 + ulp, 3).
    return _pieces(s, -3.0 + _ulp(), 3.0)


def _bits(x, saved, key, make):
    """Bit-share SecretTensor from the forward's ``saved`` dict, or recomputed."""
    if saved and key in saved:
        return saved[key]
    return x._wrap_bits(make())


def _store(saved, x, **bits):
    if saved is not None:
        saved.update({k: x._wrap_bits(b) for k, b in bits.items()})


def hardsigmoid(x, *, saved: dict | None = None):
    """clamp(x/6 + 1/2, 0, 1) (F.hardsigmoid). 7 rounds.

    >>> import torch, veil
    >>> def f():
    ...     x = veil.tensor(torch.tensor([-4.0, 0.0, 1.5, 4.0]) if veil.rank() == 0 else None,
    ...                     owner=0)
    ...     return x.hardsigmoid().reveal()
    >>> [round(v, 3) for v in veil.run(f, parties=2, seed=0)[0].tolist()]
    [0.0, 0.5, 0.75, 1.0]
    """
    x = K.float_input(x, "hardsigmoid")
    _, inside, above = _hardsigmoid_pieces(x.share)
    _store(saved, x, inside=inside)
    mid, top = K.select_many([(inside, K.lincomb([(1 / 6, x.share)], const=0.5)),
                              (above, K.lift(1.0, x.share))])
    return K.wrap(x, mid + top)


@register_grad("hardsigmoid")
def _hardsigmoid_grad(grad_out, out, x, *, saved=None):
    inside = _bits(x, saved, "inside", lambda: _hardsigmoid_pieces(x.share)[1])
    return (grad_out * inside * (1 / 6),)


def relu6(x, *, saved: dict | None = None):
    """clamp(x, 0, 6) (F.relu6). 7 rounds.

    >>> import torch, veil
    >>> def f():
    ...     x = veil.tensor(torch.tensor([-1.0, 2.5, 9.0]) if veil.rank() == 0 else None,
    ...                     owner=0)
    ...     return x.relu6().reveal()
    >>> veil.run(f, parties=2, seed=0)[0].tolist()
    [0.0, 2.5, 6.0]
    """
    x = K.float_input(x, "relu6")
    _, inside, above = _relu6_pieces(x.share)
    _store(saved, x, inside=inside)
    mid, top = K.select_many([(inside, x.share), (above, K.lift(6.0, x.share))])
    return K.wrap(x, mid + top)


@register_grad("relu6")
def _relu6_grad(grad_out, out, x, *, saved=None):
    inside = _bits(x, saved, "inside", lambda: _relu6_pieces(x.share)[1])
    return (grad_out * inside,)


def hardswish(x, *, saved: dict | None = None):
    """x * hardsigmoid(x) (F.hardswish): 0, x (x + 3) / 6, x. 8 rounds.

    >>> import torch, veil
    >>> def f():
    ...     x = veil.tensor(torch.tensor([-4.0, 1.0, 4.0]) if veil.rank() == 0 else None,
    ...                     owner=0)
    ...     return x.hardswish().reveal()
    >>> [round(v, 3) for v in veil.run(f, parties=2, seed=0)[0].tolist()]
    [0.0, 0.667, 4.0]
    """
    x = K.float_input(x, "hardswish")
    s = x.share
    _, inside, above = _hardswish_pieces(s)
    _store(saved, x, inside=inside, above=above)
    (sq,) = K.mul([(s, s)])
    mid, top = K.select_many([(inside, K.lincomb([(1 / 6, sq), (0.5, s)])), (above, s)])
    return K.wrap(x, mid + top)


@register_grad("hardswish")
def _hardswish_grad(grad_out, out, x, *, saved=None):
    inside = _bits(x, saved, "inside", lambda: _hardswish_pieces(x.share)[1])
    above = _bits(x, saved, "above", lambda: _hardswish_pieces(x.share)[2])
    slope = x * (1 / 3) + 0.5                               # d/dx x (x + 3) / 6
    return (grad_out * (slope * inside + above),)


def leaky_relu(x, negative_slope: float = 0.01, *, saved: dict | None = None):
    """x if x >= 0 else negative_slope * x (F.leaky_relu). 7 rounds.

    >>> import torch, veil
    >>> def f():
    ...     x = veil.tensor(torch.tensor([-2.0, 3.0]) if veil.rank() == 0 else None, owner=0)
    ...     return x.leaky_relu(0.1).reveal()
    >>> [round(v, 3) for v in veil.run(f, parties=2, seed=0)[0].tolist()]
    [-0.2, 3.0]
    """
    x = K.float_input(x, "leaky_relu")
    s = x.share
    (pos,) = K.ge_many(s, [_ulp()])                  # x > 0: torch's slope at 0 is the small one
    _store(saved, x, pos=pos)
    (kept,) = K.select_many([(pos, s)])
    return K.wrap(x, K.lincomb([(negative_slope, s), (1.0 - negative_slope, kept)]))


@register_grad("leaky_relu")
def _leaky_relu_grad(grad_out, out, x, negative_slope=0.01, *, saved=None):
    pos = _bits(x, saved, "pos", lambda: K.ge_many(x.share, [_ulp()])[0])
    return (grad_out * negative_slope + (grad_out * pos) * (1.0 - negative_slope),)


register_torch([F.hardsigmoid], lambda x, inplace=False: x.hardsigmoid())
register_torch([F.relu6], lambda x, inplace=False: x.relu6())
register_torch([F.hardswish], lambda x, inplace=False: x.hardswish())
register_torch([F.leaky_relu], lambda x, negative_slope=0.01, inplace=False:
               x.leaky_relu(negative_slope))

__all__ = ["hardsigmoid", "relu6", "hardswish", "leaky_relu"]
