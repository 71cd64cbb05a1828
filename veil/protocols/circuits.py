"""Boolean circuits on XOR-shared bit rows, written once over the ``and_bits`` kernel.

Rows are uint8 0/1 tensors stacked on dim 0. Each layer of a circuit is one batched
``and_bits`` call (one round), so the depth of the tree is the round count.
"""

from __future__ import annotations

import torch


def carry_plan(rows: int) -> list[int]:
    """AND gates per layer of the carry tree over ``rows`` (G, P) rows.

    Pairs (lo, hi) combine as G = G_hi ^ (P_hi & G_lo), P = P_hi & P_lo; the group that
    holds row 0 never needs its P (the carry-in is folded into G_0), so it saves one AND.
    """
    plan = []
    while rows > 1:
        pairs = rows // 2
        plan.append(2 * pairs - 1)
        rows = (rows + 1) // 2
    return plan


# A carry layer with at least this many pairs ANDs P_hi with [G_lo; P_lo] in one
# broadcast and_bits (P_hi opened once: 3 rows per pair instead of 4 - 2/pairs).
BROADCAST_PAIRS = 3


def carry_rows_opened(rows: int, broadcast: bool) -> list[int]:
    """Bit rows each carry layer opens (per operand row of ``numel`` elements).

    Without broadcasting every AND gate opens its two input rows (2 per gate, as
    `carry_plan`); with it, a layer of ``pairs >= BROADCAST_PAIRS`` opens P_hi once for
    both of its gates, plus G_lo and P_lo (and one unused P_lo row for group 0).
    """
    out = []
    while rows > 1:
        pairs = rows // 2
        out.append(3 * pairs if broadcast and pairs >= BROADCAST_PAIRS else 2 * (2 * pairs - 1))
        rows = (rows + 1) // 2
    return out


def and_tree_plan(rows: int) -> list[int]:
    """AND gates per layer when AND-reducing ``rows`` rows to one."""
    plan = []
    while rows > 1:
        plan.append(rows // 2)
        rows = (rows + 1) // 2
    return plan


def carry_out(proto, g: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Carry out of the top row, from generate/propagate rows (row 0 lowest).

    Kogge-Stone-style reduction in ceil(log2(rows)) layers (Kogge & Stone 1973), keeping
    only the groups needed for the single output carry, as in SPU's and CrypTen's MSB.
    Rows are taken as strided slices of the stacked (rows, n) tensors, not one tensor
    per row: a layer costs a handful of torch calls whatever the width (the row-by-row
    statement of the same circuit lives in tests/test_fastpaths.py, which checks they agree).
    """
    broadcast = getattr(proto, "and_broadcasts", False)
    while g.shape[0] > 1:
        rows = g.shape[0]
        pairs = rows // 2
        top = 2 * pairs
        if broadcast and pairs >= BROADCAST_PAIRS:
            # P_hi & [G_lo; P_lo] as one broadcast AND: each P_hi row is opened once.
            # Group 0's P_lo slot carries its own P row, whose product goes unused.
            both = torch.stack([g[0:top:2], p[0:top:2]])
            prod = proto.and_bits(p[1:top:2].unsqueeze(0), both)
            g_and, p_and = prod[0], prod[1, 1:]
        else:                                   # [P_hi & G_lo; P_hi & P_lo], group 0 no P
            prod = proto.and_bits(torch.cat([p[1:top:2], p[3:top:2]]),
                                  torch.cat([g[0:top:2], p[2:top:2]]))
            g_and, p_and = prod[:pairs], prod[pairs:]
        new_g = g[1:top:2] ^ g_and
        new_p = torch.cat([p[1:2], p_and])      # group 0's P: P_1 (its P is never used)
        if rows % 2:
            new_g = torch.cat([new_g, g[-1:]])
            new_p = torch.cat([new_p, p[-1:]])
        g, p = new_g, new_p
    return g[0]


def and_all(proto, rows: torch.Tensor) -> torch.Tensor:
    """AND of all rows, in ceil(log2(rows)) layers."""
    rs = list(rows)
    while len(rs) > 1:
        pairs = len(rs) // 2
        prod = proto.and_bits(torch.stack(rs[0:2 * pairs:2]), torch.stack(rs[1:2 * pairs:2]))
        rs = list(prod) + ([rs[-1]] if len(rs) % 2 else [])
    return rs[0]
