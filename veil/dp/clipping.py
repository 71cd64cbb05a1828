"""Per-example gradients and per-example clipping on secret shares (veil.nn.Linear).

For a Linear layer ``z = a W^T + b`` the gradient of example i's loss is the outer product
``s_i ⊗ [a_i, 1]`` of its backprop signal ``s_i = d loss_i / d z_i`` and its input (the
1 is the bias). Its norm is ``||s_i|| * ||[a_i, 1]||`` and the sum of clipped gradients
is one matmul ``ŝ^T â`` of per-example *rescaled* signals and inputs (Goodfellow 2015;
"ghost clipping", Li et al. 2022): no (batch × parameters) tensor is ever formed.

Clipping is per layer (McMahan et al. 2018; Opacus's ``clipping="per_layer"``): layer l
is clipped to ``C_l = C / sqrt(L)`` so that the whole per-example gradient has norm at
most ``C``. For one Linear layer (logistic regression) this *is* Opacus's flat clipping.

On shares, for each layer and example (s in units of C_l):

1. ``ã = clamp(a, ±A)``, ``s̃ = clamp(s, ±D C_l) / C_l``, with A, D chosen so that
   ``na = ||ã||² + 1`` and ``nd = ||s̃||²`` stay below ``CAP = 2^12`` (fixed point holds
   values up to 2^15). A coordinate beyond the clamp (an input more than A ≈ 11 standard
   deviations out for 30 standardised features) is clamped: that example's gradient
   direction changes, and it would be clipped by a factor > 10 anyway. The clamp is what
   makes the bound hold for adversarially large inputs: the norm is computed of exactly
   the vectors that are used.
2. ``na, nd`` by one batched dot product each, plus a 2-ulp margin that covers the
   truncation error, so they are upper bounds of the true squared norms; floored at
   2^-14 (rsqrt's range). The margin over-clips vectors whose squared norm is within a
   few ulps of zero (measured: by <= 1 % in the adversarial test); never under-clips.
3. ``ra = rsqrt(na)``, ``rd = rsqrt(nd)``; clip where ``ra * rd < 1`` (one product, one
   comparison).
4. ``â = where(clip, ra, 1) ã``, ``ŝ = where(clip, rd, 1) s̃``: a clipped example's
   vectors are unit vectors, computed to ~1 ulp per coordinate.

Bound: every example's used gradient has norm <= ``C_l (1 + eps)`` with ``eps`` from
`clip_error`: rsqrt's relative error (measured max 1.5e-4 of the fit over 2^-14..2^14;
2.5e-4 assumed) plus its output rounding (2^-16 sqrt(CAP) = 1e-3) plus the per-coordinate
roundings; about 2.5e-3 for the credit-scoring model. The noise is scaled to the bound
``C (1 + eps)``, so the noise multiplier is exact against the sensitivity really enforced.
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import torch

from ..autograd import no_grad
from ..context import current
from ..errors import ProtocolUsageError
from ..nn.layers import Linear
from ..tensor import SecretTensor, cat, share_public, where

CAP = 2.0 ** 12              # each per-example squared norm factor stays below this
RSQRT_FLOOR = 2.0 ** -14     # rsqrt is accurate from here up
RSQRT_FIT = 2.5e-4           # rsqrt's relative error before output rounding (measured 1.5e-4)
MIN_CLIP, MAX_CLIP = 2.0 ** -6, 2.0 ** 6


def linear_layers(model) -> list:
    """(name, layer) of every veil.nn.Linear; refuses a model with other trainable layers."""
    found, owned = [], set()

    def walk(m, prefix):
        if isinstance(m, Linear):
            found.append((prefix.rstrip(".") or "(model)", m))
            owned.update(id(p) for p in m.parameters())
        for name, child in m._modules.items():
            walk(child, prefix + name + ".")
    walk(model, "")
    if len({id(layer) for _, layer in found}) != len(found):
        raise ProtocolUsageError("DP-SGD: a Linear layer is used at two places in the model "
                                 "(shared weights); per-example clipping needs each once")
    for name, p in model.named_parameters():
        if id(p) not in owned:
            raise ProtocolUsageError(
                f"DP-SGD computes per-example gradients of veil.nn.Linear layers only; "
                f"parameter {name!r} belongs to another layer. Freeze it "
                f"(requires_grad_(False)) or build the model from Linear and "
                f"parameter-free layers (ReLU, Sigmoid, ...)")
    if not found:
        raise ProtocolUsageError("the model has no veil.nn.Linear layer to train privately")
    return found


def clip_error(in_features: int, out_features: int, frac_bits: int, clip: float) -> float:
    """Relative excess over ``clip`` (C_l) that a used per-example gradient can have."""
    u = 2.0 ** -frac_bits
    rho = RSQRT_FIT + u * math.sqrt(2 * CAP)     # fit + output rounding, inputs <= 2 CAP
    clipped = (1 + rho + 2 * u * math.sqrt(out_features)) * \
        (1 + rho + 2 * u * math.sqrt(in_features + 1)) - 1
    unclipped = (1 + rho) ** 2 / (1 - 2 * u) - 1
    # the sum's own roundings (matmul, scale by C_l): <= 4 ulps per coordinate, which one
    # example can flip; counted against the sensitivity like the rest
    sum_rounding = 4 * u * math.sqrt(out_features * (in_features + 1)) / clip
    return max(clipped, unclipped) + sum_rounding


class LayerTap:
    """One Linear layer during a private step: its input and a zero 'tap' added to its
    output, whose gradient is the per-example backprop signal."""

    def __init__(self, name: str, layer: Linear) -> None:
        self.name, self.layer = name, layer
        self.input: SecretTensor | None = None
        self.source = None                  # the tensor the layer was called with
        self.tap: SecretTensor | None = None

    def forward(self, x):
        if x.dim() != 2:
            raise ProtocolUsageError(f"DP-SGD: layer {self.name!r} got a {x.dim()}-D input; "
                                     f"per-example clipping supports (batch, features) inputs")
        w, b = self.layer.weight, self.layer.bias
        # Parameters detached: autograd then skips the (unused) summed weight gradient.
        z = torch.nn.functional.linear(x, w.detach(), None if b is None else b.detach())
        self.input, self.source = x.detach(), x
        self.tap = share_public(torch.zeros(tuple(z.shape))).requires_grad_()
        return z + self.tap

    def signal(self) -> SecretTensor:
        if self.tap is None or self.tap.grad is None:
            raise ProtocolUsageError(f"DP-SGD: layer {self.name!r} was not used by the loss "
                                     f"in this step")
        return self.tap.grad


@contextmanager
def tapped(layers):
    """Route each layer's forward through a `LayerTap` for the duration of one step."""
    taps = [LayerTap(name, layer) for name, layer in layers]
    for t in taps:
        object.__setattr__(t.layer, "forward", t.forward)
    try:
        yield taps
    finally:
        for t in taps:
            t.layer.__dict__.pop("forward", None)


def bounds(in_features: int, out_features: int, bias: bool) -> tuple[float, float]:
    """Clamp bounds (A for inputs, D for signals in units of C_l) keeping na, nd < CAP."""
    return math.sqrt((CAP - 2 * bias) / in_features), math.sqrt((CAP - 1) / out_features)


def _sq_norms(x: SecretTensor) -> SecretTensor:
    return (x.unsqueeze(1) @ x.unsqueeze(2)).reshape(-1)


def prepared_inputs(a: SecretTensor, layer: Linear) -> tuple[SecretTensor, SecretTensor]:
    """(ã with the bias coordinate, its squared norms + margin): the input side of
    clipping. Depends on the input only, so a private trainer computes it once for the
    training data (the first layer's input) instead of every step."""
    A, _ = bounds(layer.in_features, layer.out_features, layer.bias is not None)
    u = 2.0 ** -current().config.frac_bits
    with no_grad():
        a = a.clamp(-A, A)                                  # 2 comparisons per coordinate
        if layer.bias is not None:
            a = cat([a, share_public(torch.ones(a.shape[0], 1))], 1)
        # Squared norms as batched dot products (one truncation after the sum, so the
        # error is <= 1 ulp), plus a 2-ulp margin: upper bounds of the true norms.
        return a, _sq_norms(a) + 2 * u


def clipped_vectors(a: SecretTensor, s: SecretTensor, layer: Linear, clip: float,
                    mask: SecretTensor | None = None, prepared=None
                    ) -> tuple[SecretTensor, SecretTensor]:
    """Per-example (â, ŝ) with ``clip * ŝ_i ⊗ â_i`` example i's clipped gradient of
    ``layer`` (â carries the bias coordinate last); ``mask`` zeroes unsampled examples.
    ``prepared``: `prepared_inputs` of ``a``, if already computed."""
    _, D = bounds(layer.in_features, layer.out_features, layer.bias is not None)
    u = 2.0 ** -current().config.frac_bits
    a, na = prepared if prepared is not None else prepared_inputs(a, layer)
    with no_grad():
        s = s.clamp(-D * clip, D * clip) * (1.0 / clip)     # in units of C_l
        if mask is not None:
            s = s * mask.reshape(-1, 1)                     # unsampled: zero signal
        nd = _sq_norms(s) + 2 * u
        r = cat([na, nd]).clamp(min=RSQRT_FLOOR).rsqrt()
        ra, rd = r[:a.shape[0]], r[a.shape[0]:]
        shrink = (ra * rd).lt(1.0)                          # ||g|| > C_l, up to rsqrt's error
        # Factors selected first (2 x batch selects), then applied: a clipped example's
        # vectors become unit vectors, the others stay as they are (factor exactly 1).
        f = where(shrink.reshape(1, -1).expand(2, -1), cat([ra, rd]).reshape(2, -1), 1.0)
        return a * f[0].reshape(-1, 1), s * f[1].reshape(-1, 1)


def clipped_sum(tap: LayerTap, clip: float, mask: SecretTensor | None = None, prepared=None):
    """Sum over examples of the layer's clipped per-example gradients (weight, bias),
    computed on shares: one matmul of the rescaled signals and inputs."""
    layer = tap.layer
    a, s = clipped_vectors(tap.input, tap.signal(), layer, clip, mask, prepared)
    with no_grad():
        g = s.transpose(0, 1).matmul(a) * clip             # (out, in [+ 1])
    if layer.bias is not None:
        return g[:, :layer.in_features], g[:, layer.in_features]
    return g, None
