"""Smooth activations: sigmoid, tanh, erf, gelu, silu, softplus (and their gradients).

Each is a saturating polynomial (smooth.py): two comparisons in one msb call, one
Chebyshev polynomial through v = 2 (x/T)^2 - 1, one select round. Rounds at 2 parties
(default exact truncation / opt-in local): sigmoid and tanh 14 / 13, erf 14 / 12, gelu
12 / 11, silu 15 / 12, softplus 13 / 12. The cheap variants (opt-in,
see approx.py): sigmoid ``"linear"`` and ``"spline"`` (8 rounds, 7 under local
truncation) and MPCFormer's gelu ``"quad"`` (2 rounds, 1).
Backward rules sit below each forward; derivatives that are themselves saturating
(gelu', erf') use the same recipe instead of composing exp and erf.
"""

from __future__ import annotations

import functools
import itertools

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ProtocolUsageError
from ..tensor.dispatch import register_torch
from . import _kern as K
from . import smooth as S
from .approx import choose
from .grad_rules import register_grad


def _apply(x, spec: S.Saturating, name: str):
    x = K.float_input(x, name)
    return K.wrap(x, S.saturating(x.share, spec))


def _spec_of(x, spec: S.Saturating):
    return K.wrap(x, S.saturating(x.share, spec))


def _linear_sigmoid(x):
    """clamp(x/4 + 1/2, 0, 1) and the bits of -2 <= x < 2 (for the gradient)."""
    below, inside, above = K.onehot(K.ge_many(x, [-2.0, 2.0]))
    mid, top = K.select_many([(inside, K.lincomb([(0.25, x)], const=0.5)),
                              (above, K.lift(1.0, x))])
    return mid + top, inside


SPLINE_T, SPLINE_SIDE = 10.0, 32     # knots on [-T, T]: 0 and 32 on each side


@functools.cache
def _spline(frac: int) -> tuple[tuple[float, ...], float, tuple[int, ...]]:
    """Knots t_j, the value left of them, and the slope change at each (scale frac).

    Knot density follows sqrt|sigmoid''| (equal interpolation error per piece); the
    values at the knots are the least-squares fit on [-14, 14] (error of mean 0 within
    each piece, so a gradient built on it has no bias): float error 1.7e-4 on the real
    line. The slopes are
    rounded, not their changes, so rounding adds at most 2^-frac-1 * 20 (the slopes'
    error over the knots' span), and the changes sum to exactly 0: beyond the last knot
    x cancels in the ring and the value is the constant it should be, however large x.
    The sum stays at scale 2 frac, the magnitude of an ordinary product's, so its local
    truncation fails no more often than a product's.
    """
    g = np.linspace(0.0, SPLINE_T, 20001)
    s = 1.0 / (1.0 + np.exp(-g))
    dens = np.cumsum(np.sqrt(np.abs(s * (1 - s) * (1 - 2 * s))) + 1e-3)
    pos = np.interp(np.linspace(0, 1, SPLINE_SIDE + 1)[1:], dens / dens[-1], g)
    t = np.concatenate([-pos[::-1], [0.0], pos])
    xs = np.linspace(-SPLINE_T - 4, SPLINE_T + 4, 20001)
    hats = np.stack([np.interp(xs, t, row) for row in np.eye(len(t))], 1)
    y = np.linalg.lstsq(hats, 1.0 / (1.0 + np.exp(-xs)), rcond=None)[0]
    slopes = [0] + [round(v * 2.0 ** frac) for v in np.diff(y) / np.diff(t)] + [0]
    d = tuple(int(b - a) for a, b in itertools.pairwise(slopes))
    return tuple(float(v) for v in t), float(y[0]), d


def _spline_sigmoid(x):
    """y_0 + sum_j [x >= t_j] dslope_j (x - t_j): one msb call (all knots), one select."""
    f = K.F()
    t, y0, d = _spline(f)
    ge = K.ge_many(x, t)                                   # (knots, *x.shape)
    enc_t = torch.tensor([K.enc(v) for v in t], dtype=torch.int64).view(-1, *[1] * x.dim())
    (sel,) = K.select_many([(ge, K.proto().add_public(x.unsqueeze(0), -enc_t))])
    coef = torch.tensor(d, dtype=torch.int64).view(-1, *[1] * x.dim())
    acc = K.add_const((sel * coef).sum(0), y0, 2 * f)     # exact ring sums, scale 2F
    return K.trunc([acc], f)[0]


def sigmoid(x, *, approx: str | None = None, saved: dict | None = None):
    """Logistic sigmoid 1 / (1 + e^-x) (torch.sigmoid). 14 rounds (13 under the opt-in
    ``Config(truncation="local")``), error < 3e-4.

    ``approx="linear"``: clamp(0.5 + x/4, 0, 1), 8 rounds; ``approx="spline"``: 65-knot
    linear interpolation, 8 rounds, error < 3e-4, 33x the comparison bytes (see
    veil.functions.approx).

    >>> import torch, veil
    >>> def f():
    ...     x = veil.tensor(torch.tensor([-20.0, 0.0, 1.0]) if veil.rank() == 0 else None,
    ...                     owner=0)
    ...     return x.sigmoid().reveal()
    >>> [round(v, 3) for v in veil.run(f, parties=2, seed=0)[0].tolist()]
    [0.0, 0.5, 0.731]
    """
    x = K.float_input(x, "sigmoid")
    mode = choose("sigmoid", approx)
    if saved is not None:
        saved["mode"] = mode
    if mode == "linear":
        out, inside = _linear_sigmoid(x.share)
        if saved is not None:
            saved["inside"] = x._wrap_bits(inside)
        return K.wrap(x, out)
    if mode == "spline":
        return K.wrap(x, _spline_sigmoid(x.share))
    return K.wrap(x, S.saturating(x.share, S.SIGMOID))


@register_grad("sigmoid")
def _sigmoid_grad(grad_out, out, x, *, approx=None, saved=None):
    mode = (saved or {}).get("mode") or choose("sigmoid", approx)
    if mode == "linear":
        inside = (saved or {}).get("inside")
        if inside is None:
            inside = x._wrap_bits(_linear_sigmoid(x.share)[1])
        return (grad_out * inside * 0.25,)
    return (grad_out * out * (1 - out),)


def tanh(x):
    """Hyperbolic tangent (torch.tanh). 14 rounds (13 with local truncation), error < 4e-4.

    >>> import torch, veil
    >>> def f():
    ...     x = veil.tensor(torch.tensor([-9.0, 0.5]) if veil.rank() == 0 else None, owner=0)
    ...     return x.tanh().reveal()
    >>> [round(v, 3) for v in veil.run(f, parties=2, seed=0)[0].tolist()]
    [-1.0, 0.462]
    """
    return _apply(x, S.TANH, "tanh")


@register_grad("tanh")
def _tanh_grad(grad_out, out, x):
    return (grad_out * (1 - out * out),)


def erf(x):
    """Error function (torch.erf). 14 rounds (12 with local truncation), error < 1e-4.

    >>> import torch, veil
    >>> def f():
    ...     x = veil.tensor(torch.tensor([-5.0, 0.5]) if veil.rank() == 0 else None, owner=0)
    ...     return x.erf().reveal()
    >>> [round(v, 2) for v in veil.run(f, parties=2, seed=0)[0].tolist()]
    [-1.0, 0.52]
    """
    return _apply(x, S.ERF, "erf")


@register_grad("erf")
def _erf_grad(grad_out, out, x):
    return (grad_out * _spec_of(x, S.ERF_GRAD),)


def gelu(x, approximate: str = "none", *, approx: str | None = None,
         saved: dict | None = None):
    """GELU x Phi(x) (F.gelu), exact or ``approximate="tanh"``. 12 rounds (11 with local
    truncation), error < 2e-4.

    ``approx="quad"``: MPCFormer's 0.125 x^2 + 0.25 x + 0.5 (2 rounds, 1 with local).

    >>> import torch, veil
    >>> def f():
    ...     x = veil.tensor(torch.tensor([-1.0, 0.5, 2.0]) if veil.rank() == 0 else None,
    ...                     owner=0)
    ...     return x.gelu().reveal()
    >>> [round(v, 2) for v in veil.run(f, parties=2, seed=0)[0].tolist()]
    [-0.16, 0.35, 1.95]
    """
    if approximate not in ("none", "tanh"):
        raise ProtocolUsageError(f"gelu: approximate must be 'none' or 'tanh', "
                                 f"got {approximate!r}")
    x = K.float_input(x, "gelu")
    mode = choose("gelu", approx)
    if saved is not None:
        saved["mode"] = mode
    if mode == "quad":
        # At scale 2F + 3: 0.125 x^2 is the raw square, 0.25 x is x << (F + 1), 0.5 is
        # 2^(2F + 2): one truncation for the whole polynomial.
        f = K.F()
        (sq,) = K.products([(x.share, x.share)])
        return K.wrap(x, K.trunc([K.add_const(sq + (x.share << (f + 1)), 0.5, 2 * f + 3)],
                                 f + 3)[0])
    return K.wrap(x, S.saturating(x.share, S.GELU if approximate == "none" else S.GELU_TANH))


@register_grad("gelu")
def _gelu_grad(grad_out, out, x, approximate="none", *, approx=None, saved=None):
    mode = (saved or {}).get("mode") or choose("gelu", approx)
    if mode == "quad":
        return (grad_out * (x * 0.25 + 0.25),)
    spec = S.GELU_GRAD if approximate == "none" else S.GELU_TANH_GRAD
    return (grad_out * _spec_of(x, spec),)


def silu(x):
    """SiLU / swish x sigmoid(x) (F.silu). 15 rounds (12 with local truncation), error < 5e-4.

    >>> import torch, veil
    >>> def f():
    ...     x = veil.tensor(torch.tensor([-20.0, 1.0]) if veil.rank() == 0 else None, owner=0)
    ...     return x.silu().reveal()
    >>> [round(v, 3) for v in veil.run(f, parties=2, seed=0)[0].tolist()]
    [-0.0, 0.731]
    """
    return _apply(x, S.SILU, "silu")


@register_grad("silu")
def _silu_grad(grad_out, out, x):
    s = _spec_of(x, S.SIGMOID)                       # silu' = s (1 + x (1 - s))
    return (grad_out * (s + s * (x - out)),)


def softplus(x, beta: float = 1.0, threshold: float = 20.0):
    """log(1 + e^(beta x)) / beta (F.softplus). 13 rounds (12 with local truncation), error < 3e-4 /
    beta.

    Beyond ``threshold`` torch switches to the identity; here the switch is at beta x = 8
    (where the two differ by less than 2e-4), whatever ``threshold`` says.

    >>> import torch, veil
    >>> def f():
    ...     x = veil.tensor(torch.tensor([-20.0, 0.0, 30.0]) if veil.rank() == 0 else None,
    ...                     owner=0)
    ...     return x.softplus().reveal()
    >>> [round(v, 3) for v in veil.run(f, parties=2, seed=0)[0].tolist()]
    [0.0, 0.693, 30.0]
    """
    x = K.float_input(x, "softplus")
    if not beta > 0:
        raise ProtocolUsageError(f"softplus: beta must be positive, got {beta}")
    share = x.share if beta == 1 else K.scale(x.share, beta)
    out = S.saturating(share, S.SOFTPLUS)
    return K.wrap(x, out if beta == 1 else K.scale(out, 1.0 / beta))


@register_grad("softplus")
def _softplus_grad(grad_out, out, x, beta=1.0, threshold=20.0):
    bx = x if beta == 1 else x * beta
    return (grad_out * _spec_of(bx, S.SIGMOID),)


T = torch.Tensor
register_torch([torch.sigmoid, T.sigmoid, F.sigmoid, torch.special.expit],
               lambda x, **kw: x.sigmoid(**kw))
register_torch([torch.tanh, T.tanh, F.tanh], lambda x: x.tanh())
register_torch([torch.erf, T.erf, torch.special.erf], lambda x: x.erf())
register_torch([F.gelu], lambda x, approximate="none", **kw: x.gelu(approximate, **kw))
register_torch([F.silu], lambda x, inplace=False: x.silu())
register_torch([F.softplus], lambda x, beta=1.0, threshold=20.0: x.softplus(beta, threshold))

__all__ = ["sigmoid", "tanh", "erf", "gelu", "silu", "softplus"]
