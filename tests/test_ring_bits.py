"""veil.ring's bit packing: packed_bit_rows against a plain one-bit-at-a-time reference."""

import numpy as np
import pytest
import torch

from veil.ring import RING_BITS, packed_bit_rows, packed_len, unpack_row


def _reference(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Row j = np.packbits of bit j of every element (x flattened), one bit at a time."""
    flat = x.reshape(-1)
    rows = [np.packbits(((flat >> j) & 1).to(torch.uint8).numpy()) for j in range(bits)]
    return torch.from_numpy(np.stack(rows)) if rows else torch.empty(0)


@pytest.mark.parametrize("shape", [(1,), (7,), (8,), (9,), (3, 5), (2, 8, 65), (1003,)])
def test_packed_bit_rows_matches_reference_at_every_width(shape):
    g = torch.Generator().manual_seed(sum(shape))
    x = torch.randint(-2**63, 2**63 - 1, shape, dtype=torch.int64, generator=g)
    x.view(-1)[0] = -1                      # all ones, and the extremes of the ring
    x.view(-1)[-1] = -2**63
    for bits in range(1, RING_BITS + 1):
        got = packed_bit_rows(x, bits)
        assert got.dtype == torch.uint8 and got.is_contiguous()
        assert got.shape == (bits, packed_len(x.numel()))
        assert torch.equal(got, _reference(x, bits)), bits


def test_packed_bit_rows_round_trips_through_unpack_row():
    x = torch.tensor([5, -1, 0, 2**62 + 3, -2**63, 9, 1, 2, 3, 4, 77])
    rows = packed_bit_rows(x, 64)
    back = sum(unpack_row(rows[j], x.numel()).to(torch.int64) << j for j in range(64))
    assert torch.equal(back, x)


def test_packed_bit_rows_takes_other_integer_dtypes_and_empty_tensors():
    x = torch.tensor([[3, -2], [127, 0]], dtype=torch.int8)
    assert torch.equal(packed_bit_rows(x, 9), _reference(x.to(torch.int64), 9))
    assert packed_bit_rows(torch.zeros((2, 0), dtype=torch.int64), 5).shape == (5, 0)


@pytest.mark.parametrize("bits", [0, 65])
def test_packed_bit_rows_refuses_widths_outside_the_ring(bits):
    with pytest.raises(ValueError, match="bits must be in 1..64"):
        packed_bit_rows(torch.zeros(4, dtype=torch.int64), bits)
