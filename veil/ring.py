"""The ring Z_2^64 on torch.int64, and fixed-point encoding into it.

torch's int64 arithmetic wraps modulo 2^64 on overflow, which is exactly ring arithmetic.
Fixed point: a real v is stored as round(v * 2^f) in two's complement.
"""

from __future__ import annotations

import numpy as np
import torch

from .errors import ProtocolUsageError, RangeError

RING_DTYPE = torch.int64
RING_BITS = 64

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
INT_DTYPES = (torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


def is_float(dtype: torch.dtype) -> bool:
    return dtype in FLOAT_DTYPES


def check_dtype(dtype: torch.dtype) -> None:
    if dtype not in FLOAT_DTYPES + INT_DTYPES:
        raise ProtocolUsageError(
            f"unsupported dtype {dtype}: veil takes float16/32/64, bfloat16, bool and "
            f"integer tensors (convert complex data to real pairs first)")


def encode(x: torch.Tensor, frac_bits: int, bound: float) -> torch.Tensor:
    """Encode a float or integer tensor into the ring; raise if outside ``(-bound, bound)``.

    Floats use ``frac_bits`` fractional bits; integers and bools are stored as they are
    (scale 1), with the bound scaled accordingly.
    """
    check_dtype(x.dtype)
    if is_float(x.dtype):
        x64 = x.detach().to(torch.float64)
        if not torch.isfinite(x64).all():
            raise RangeError("cannot encode NaN or infinity into fixed point")
        if x64.numel() and x64.abs().max().item() >= bound:
            raise RangeError(
                f"value out of the fixed-point safe range (-{bound:g}, {bound:g}) for "
                f"frac_bits={frac_bits}; scale the data down or use fewer fractional bits")
        return torch.round(x64 * float(2 ** frac_bits)).to(RING_DTYPE)
    xi = x.detach().to(RING_DTYPE)
    int_bound = bound * 2 ** frac_bits
    # min/max, not abs(): abs(INT64_MIN) is INT64_MIN, which would pass an abs() check.
    if xi.numel() and (xi.max().item() >= int_bound or xi.min().item() <= -int_bound):
        raise RangeError(f"integer value out of the safe range (-{int_bound:g}, {int_bound:g})")
    return xi


def check_public(t: torch.Tensor, limit: float) -> None:
    """Refuse a public operand that is NaN/infinite or has an entry with |v| >= ``limit``.

    The same errors `encode` raises for secret data: a public NaN would encode as 0 and an
    infinity as -2^63, both silently wrong.
    """
    if t.dtype == torch.bool or not t.numel():
        return
    if t.is_floating_point() and not torch.isfinite(t).all():
        raise RangeError("public operand is NaN or infinity, which fixed point cannot hold "
                         "(x * nan would silently give 0); clean the public data first")
    if t.max().item() >= limit or t.min().item() <= -limit:
        raise RangeError(f"public operand out of the safe range (-{limit:g}, {limit:g}); "
                         f"scale the data down or use fewer fractional bits")


def encode_public(v, frac: int, like: torch.Tensor | None = None) -> torch.Tensor:
    """Encode a public operand (number or tensor) at scale ``frac`` without range checks.

    Public constants in intermediate steps (like 2^40 masks) may exceed the safe range.
    """
    t = v if isinstance(v, torch.Tensor) else torch.tensor(v)
    if t.is_floating_point():
        return torch.round(t.to(torch.float64) * float(2 ** frac)).to(RING_DTYPE)
    if t.dtype == torch.bool:
        t = t.to(RING_DTYPE)
    return t.to(RING_DTYPE) << frac if frac else t.to(RING_DTYPE)


def decode(x: torch.Tensor, frac_bits: int, dtype: torch.dtype) -> torch.Tensor:
    """Ring → torch. Signed, exact in float64, then cast (−1.99999 stays −1.99999)."""
    if is_float(dtype):
        return (x.to(torch.float64) / float(2 ** frac_bits)).to(dtype)
    if dtype == torch.bool:
        return x != 0
    return x.to(dtype)


def numel(shape) -> int:
    """Number of elements of a shape (a tuple of ints; () has one)."""
    n = 1
    for d in shape:
        n *= int(d)
    return n


def broadcast_shape(*shapes) -> tuple:
    """torch.broadcast_shapes without its first-call cost (it imports sympy: ~0.6 s)."""
    n = max((len(s) for s in shapes), default=0)
    out = [1] * n
    for s in shapes:
        for i, d in enumerate((1,) * (n - len(s)) + tuple(s)):
            if d != 1:
                if out[i] not in (1, d):
                    raise ValueError(f"shapes {[tuple(x) for x in shapes]} cannot be broadcast")
                out[i] = d
    return tuple(out)


def wrap(v: int) -> int:
    """A Python int reduced to a signed 64-bit value (so torch accepts it)."""
    v &= (1 << 64) - 1
    return v - (1 << 64) if v >= 1 << 63 else v


def low_bits(x: torch.Tensor, bits: int) -> torch.Tensor:
    """x mod 2^bits, as a non-negative int64 (bits < 64)."""
    return x & wrap((1 << bits) - 1)


# The 8x8 bit-matrix transpose of a 64-bit word, in three swaps of bit blocks (Hacker's
# Delight 7-3): bit c of byte r moves to bit r of byte c.
_TRANSPOSE8 = tuple((np.uint64(s), np.uint64(m)) for s, m in
                    ((7, 0x00AA00AA00AA00AA), (14, 0x0000CCCC0000CCCC), (28, 0x00000000F0F0F0F0)))


def packed_bit_rows(x: torch.Tensor, bits: int) -> torch.Tensor:
    """The low ``bits`` bits of each element as packed rows: a uint8 tensor of shape
    (bits, ceil(n/8)) whose row j is `pack_bits` of bit j of every element (n = x.numel(),
    flattened in order; the last byte padded with zeros as np.packbits pads).

    Eight elements' bytes of one bit position form one 64-bit word, and an 8x8 bit
    transpose of that word is the packed byte of each of the eight bits: a few passes
    over the needed bytes of x instead of one uint8 value per bit and a packing pass
    (2-10x faster on 393k elements).

    >>> packed_bit_rows(torch.tensor([1, 3, 2, 0, 0, 0, 0, 0, 1]), 2).tolist()
    [[192, 128], [96, 0]]
    """
    if not 1 <= bits <= RING_BITS:
        raise ValueError(f"bits must be in 1..{RING_BITS}, not {bits}")
    nbytes = (bits + 7) // 8
    flat = x.reshape(-1).to(RING_DTYPE).contiguous().numpy().view(np.uint8).reshape(-1, 8)
    n = flat.shape[0]
    groups = (n + 7) // 8
    if n % 8:                            # zero elements pad the last group (packbits' 0s)
        planes = np.zeros((nbytes, 8 * groups), dtype=np.uint8)
        planes[:, :n] = flat[:, :nbytes].T
    else:
        planes = np.ascontiguousarray(flat[:, :nbytes].T)   # (nbytes, n): byte i of each
    # Word k of plane i holds byte i of elements 8k..8k+7, the first one in the top byte
    # (packbits puts the first element in the top bit).
    w = planes.view(np.uint64)
    w.byteswap(inplace=True)
    for shift, keep in _TRANSPOSE8:
        t = w >> shift
        t ^= w
        t &= keep
        w ^= t
        t <<= shift
        w ^= t
    # Now byte j of word k of plane i is the packed byte k of bit 8i + j's row.
    rows = w.view(np.uint8).reshape(nbytes, groups, 8).transpose(0, 2, 1)
    return torch.from_numpy(np.ascontiguousarray(rows.reshape(8 * nbytes, groups)[:bits]))


def pack_bits(b: torch.Tensor) -> torch.Tensor:
    """0/1 uint8 tensor → packed uint8 (8 bits per byte), for the wire."""
    return torch.from_numpy(np.packbits(b.reshape(-1).numpy()))


def pack_rows(rows: torch.Tensor) -> torch.Tensor:
    """(k, n) 0/1 uint8 → (k, ceil(n/8)) packed bytes: each row packs n bits."""
    return torch.from_numpy(np.packbits(rows.numpy(), axis=-1))


def unpack_row(p: torch.Tensor, n: int) -> torch.Tensor:
    """One packed row → n 0/1 uint8 values."""
    return torch.from_numpy(np.unpackbits(p.numpy(), count=n))


def unpack_bits(p: torch.Tensor, shape) -> torch.Tensor:
    n = numel(shape)
    return torch.from_numpy(np.unpackbits(p.numpy(), count=n)).reshape(shape)


def packed_len(n_bits: int) -> int:
    return (n_bits + 7) // 8
