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

On the CPU, torch's int64 product (fbgemm's kernel, one thread per party) is slow for one
layout that every linear layer has: ``x @ W.t()``, the weight a transposed view of a
contiguous (out, in) matrix. There the same product is computed in a layout torch runs
faster (`_weight_matmul`); ring products do not depend on the order of the sums, so the
result is bit-identical, only the time differs (BERT-base layer: 1.6x on its projections; one token's rows: up to 9x).

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


# `_weight_matmul`'s choices, timed on the benchmark host (AMD EPYC, torch 2.13, one
# thread) for K, N in {256, 768, 3072}. torch hands a transposed operand to fbgemm's int64
# kernel, which first transposes it element by element: costly for a K x N weight. Up to
# MV_ROWS rows, one matrix-vector product per row (1 x 768 x 2304: 1.0 ms instead of
# 9.4 ms); below SWAP_MIN_ROWS, the weight copied contiguous first (16 x 768 x 3072:
# 0.5x the time); from SWAP_MIN_ROWS rows while at most a quarter of the outputs' width,
# (W @ x.t()).t(), which transposes the small operand instead (128 x 768 x 3072: 20 ms
# instead of 36 ms). For more rows, torch's own choice was as fast or faster.
MV_ROWS = 4
SWAP_MIN_ROWS = 64


def matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``torch.matmul`` over Z_2^64 on ``a``'s device."""
    if a.is_cuda:
        return limb_matmul(a, b)
    if (b.dim() == 2 and a.dim() >= 2 and a.shape[-1] == b.shape[0] > 1
            and b.stride() == (1, b.shape[0])):
        return _weight_matmul(a, b)
    return torch.matmul(a, b)


def _weight_matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a @ b`` where ``b`` is ``W.t()``, W a contiguous (N, K) matrix (x @ W.t(), the
    layout of nn.Linear): the same ring product in the layout torch computes fastest for
    its number of rows (see MV_ROWS), or torch's matmul where that is fastest."""
    k, n = b.shape
    w, rows = b.t(), a.reshape(-1, k)
    m = rows.shape[0]
    if 1 <= m <= MV_ROWS:
        out = torch.stack([torch.mv(w, row) for row in rows])
    elif MV_ROWS < m < SWAP_MIN_ROWS:
        out = torch.mm(rows, b.contiguous())
    elif SWAP_MIN_ROWS <= m <= n // 4:
        out = torch.mm(w, rows.t()).t().contiguous()
    else:
        return torch.matmul(a, b)
    return out.reshape(*a.shape[:-1], n)


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
