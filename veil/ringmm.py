"""Ring products on any device: matmul and conv2d over Z_2^64, exact.

On the CPU torch multiplies int64 tensors directly (wrap-around is the ring). CUDA has no
int64 GEMM or convolution, so there each operand is split into four 16-bit limbs held
exactly in float64, and the product is the sum of limb products shifted into place:

    a·b mod 2^64 = Σ_{i+j<4} (A_i·B_j) · 2^{16(i+j)}  (mod 2^64)

A limb product sums K terms below 2^32, and each shift gathers at most four of them, so
every float64 partial stays below 2^53 — exact — while the reduction length K is at
most `MAX_LIMB_K` (2^19). Ten float64 products replace one int64 product: on a GPU that
is still far faster than anything int64 (and it is the method Piranha and CryptGPU use).
The limb method is selected by device, and tested on the CPU for bit-equality with
torch's int64 products.

>>> import torch
>>> a = torch.tensor([[2**40 + 3, -7]]); b = torch.tensor([[5], [2**50]])
>>> bool(torch.equal(limb_matmul(a, b), torch.matmul(a, b)))
True
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .errors import ProtocolUsageError

LIMB_BITS = 16
LIMBS = 4
MAX_LIMB_K = 1 << 19      # 4 partials of K terms < 2^32 each stay below 2^53


def matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``torch.matmul`` over Z_2^64 on ``a``'s device."""
    if a.is_cuda:
        return limb_matmul(a, b)
    return torch.matmul(a, b)


def conv2d(a: torch.Tensor, w: torch.Tensor, **params) -> torch.Tensor:
    """``F.conv2d`` over Z_2^64 on ``a``'s device (params as F.conv2d takes them)."""
    if a.is_cuda:
        return limb_conv2d(a, w, **params)
    return F.conv2d(a, w, **params)


def _limbs(x: torch.Tensor) -> list[torch.Tensor]:
    mask = (1 << LIMB_BITS) - 1
    return [((x >> (LIMB_BITS * i)) & mask).to(torch.float64) for i in range(LIMBS)]


def _combine(partial) -> torch.Tensor:
    """Σ_s partial(s) · 2^{16 s} mod 2^64, where partial(s) = Σ_{i+j=s} A_i ⊗ B_j."""
    out = None
    for s in range(LIMBS):
        term = partial(s).to(torch.int64) << (LIMB_BITS * s)
        out = term if out is None else out.add_(term)
    return out


def _check_k(k: int, what: str) -> None:
    if k > MAX_LIMB_K:
        raise ProtocolUsageError(f"{what} sums {k} products per output; the exact limb method "
                                 f"allows at most {MAX_LIMB_K}: split the reduction")


def limb_matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Exact int64 ``matmul`` from float64 limb products (any device)."""
    _check_k(a.shape[-1], "matmul")
    A, B = _limbs(a), _limbs(b)
    return _combine(lambda s: sum(torch.matmul(A[i], B[s - i]) for i in range(s + 1)))


def limb_conv2d(a: torch.Tensor, w: torch.Tensor, **params) -> torch.Tensor:
    """Exact int64 ``conv2d`` from float64 limb convolutions (any device)."""
    _check_k(w[0].numel(), "conv2d")
    A, W = _limbs(a), _limbs(w)
    return _combine(lambda s: sum(F.conv2d(A[i], W[s - i], **params) for i in range(s + 1)))


__all__ = ["matmul", "conv2d", "limb_matmul", "limb_conv2d", "MAX_LIMB_K"]
