"""normalize and cosine_similarity: vectors scaled by 1/||x||.

||x||^2 comes from products summed before their one truncation, then rsqrt (16 rounds,
see roots.py) of one value per vector and one product: 20 rounds for normalize at 2
parties (15 under the opt-in local truncation). The sum of squares must stay below 32768 (the fixed-point range).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import ProtocolUsageError
from ..tensor.core import as_public, is_secret
from ..tensor.dispatch import register_torch
from . import _kern as K
from .grad_rules import register_grad
from .normalization import _needs
from .roots import reciprocal_shares, root_shares


def _rsqrt_shares(v: torch.Tensor) -> torch.Tensor:
    return root_shares(v, "rsqrt")


def _sum_sq(share: torch.Tensor, dim: int) -> torch.Tensor:
    (sq,) = K.products([(share, share)])
    return K.trunc([sq.sum(dim, keepdim=True)], K.F())[0]


def normalize(x, p: float = 2.0, dim: int = 1, eps: float = 1e-12):
    """F.normalize: x / ||x||_p along ``dim`` (p = 2 or 1). 20 rounds for p = 2 (15 with local truncation).

    ``eps`` only matters once it reaches the fixed-point resolution; an all-zero slice
    gives meaningless values instead of zeros.

    >>> import torch, veil
    >>> def f():
    ...     x = veil.tensor(torch.tensor([[3.0, 4.0]]) if veil.rank() == 0 else None, owner=0)
    ...     return x.normalize(dim=1).reveal()
    >>> [round(v, 3) for v in veil.run(f, parties=2, seed=0)[0][0].tolist()]
    [0.6, 0.8]
    """
    x = K.float_input(x, "normalize")
    if p == 2:
        inv = _rsqrt_shares(K.add_const(_sum_sq(x.share, dim), eps * eps))
    elif p == 1:
        norm = x.abs().share.sum(dim, keepdim=True)
        inv = reciprocal_shares(K.add_const(norm, eps), positive=True)
    else:
        raise ProtocolUsageError(f"normalize: p={p} is not supported; use p=2 or p=1")
    (out,) = K.mul([(x.share, inv)])
    return K.wrap(x, out)


@register_grad("normalize")
def _normalize_grad(grad_out, out, x, p=2.0, dim=1, eps=1e-12):
    inner = (grad_out * out).sum(dim, keepdim=True)
    if p == 2:
        inv = K.wrap(x, _rsqrt_shares(K.add_const(_sum_sq(x.share, dim), eps * eps)))
        return ((grad_out - out * inner) * inv,)
    inv = x.abs().sum(dim, keepdim=True).reciprocal(positive=True)
    return ((grad_out - x.sign() * inner) * inv,)


def _cosine_parts(x1, x2, dim, eps):
    b = x2.share if is_secret(x2) else K.lift(as_public(x2), x1.share)
    a, b = torch.broadcast_tensors(x1.share, b)
    dot_p, sq_a, sq_b = K.products([(a, b), (a, a), (b, b)])
    dot, na, nb = K.trunc([dot_p.sum(dim), sq_a.sum(dim), sq_b.sum(dim)], K.F())
    inv = _rsqrt_shares(K.add_const(torch.stack([na, nb]), eps * eps))
    return dot, inv[0], inv[1]


def cosine_similarity(x1, x2, dim: int = 1, eps: float = 1e-8):
    """F.cosine_similarity: <x1, x2> / (||x1|| ||x2||) along ``dim``. 22 rounds (16 with local truncation).

    >>> import torch, veil
    >>> def f():
    ...     a = veil.tensor(torch.tensor([[1.0, 0.0], [1.0, 1.0]]) if veil.rank() == 0 else None,
    ...                     owner=0)
    ...     return a.cosine_similarity(torch.tensor([[1.0, 1.0], [1.0, 1.0]])).reveal()
    >>> [round(v, 3) for v in veil.run(f, parties=2, seed=0)[0].tolist()]
    [0.707, 1.0]
    """
    if not is_secret(x1):
        x1, x2 = x2, x1
    x1 = K.float_input(x1, "cosine_similarity")
    dot, r1, r2 = _cosine_parts(x1, x2, dim, eps)
    (r,) = K.mul([(r1, r2)])
    (out,) = K.mul([(dot, r)])
    return K.wrap(x1, out)


@register_grad("cosine_similarity")
def _cosine_similarity_grad(grad_out, out, x1, x2, dim=1, eps=1e-8):
    dot, r1, r2 = _cosine_parts(x1, x2, dim, eps)
    r1, r2 = K.wrap(x1, r1).unsqueeze(dim), K.wrap(x1, r2).unsqueeze(dim)
    g, c = grad_out.unsqueeze(dim), out.unsqueeze(dim)
    grads = []
    for a, b, ra, rb in ((x1, x2, r1, r2), (x2, x1, r2, r1)):
        if _needs(a):
            # d c / d a = b ra rb - c a ra^2
            grads.append(g * (b * (ra * rb) - a * (c * ra * ra)))
        else:
            grads.append(None)
    return grads[0], grads[1], None, None


register_torch([F.normalize], lambda x, p=2.0, dim=1, eps=1e-12, out=None:
               x.normalize(p, dim, eps))
register_torch([torch.cosine_similarity],            # F.cosine_similarity is the same
               lambda x1, x2, dim=1, eps=1e-8: (x1 if is_secret(x1) else x2).cosine_similarity(
                   x2 if is_secret(x1) else x1, dim, eps))


__all__ = ["normalize", "cosine_similarity"]
