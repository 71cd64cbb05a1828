"""Gradient clipping for secret gradients."""

from __future__ import annotations

from ..autograd import no_grad
from ..errors import ProtocolUsageError
from ..tensor import cat


def clip_grad_value_(parameters, clip_value: float) -> None:
    """Clip every gradient element to [-clip_value, clip_value], in place (torch's name).

    All gradients go through one comparison and one select together: both bounds are
    tested in the same comparison call, on the concatenation [g - c, -c - g].

    >>> import torch, veil
    >>> def f():
    ...     w = veil.tensor(torch.tensor([0.5, 3.0, -4.0]) if veil.rank() == 0 else None, owner=0)
    ...     w.requires_grad_()
    ...     (w * w).sum().backward()                     # grad 2w = [1, 6, -8]
    ...     veil.nn.utils.clip_grad_value_([w], 2.0)
    ...     return w.grad.reveal()                       # discloses the clipped gradient
    >>> veil.run(f, parties=2, seed=0)[0].tolist()
    [1.0, 2.0, -2.0]
    """
    c = float(clip_value)
    if c <= 0:
        raise ProtocolUsageError(f"clip_value must be positive, got {clip_value}")
    params = [p for p in parameters if p.grad is not None]
    if not params:
        return
    with no_grad():
        g = cat([p.grad.reshape(-1) for p in params])
        n = g.numel()
        over = cat([g - c, -g - c]).gt(0)               # [g > c, g < -c] as bit shares
        fix = over * cat([c - g, -c - g])                # move the offenders onto the bound
        g = g + fix[:n] + fix[n:]
        at = 0
        for p in params:
            k = p.numel()
            p.grad = g[at:at + k].reshape(p.shape)
            at += k
