"""rep3's kernel table: the declared online cost of every kernel, per party.

Bytes are what *this* party sends (``rank``); the roles in trunc, msb and b2a are fixed
(party 2 holds the masks), so the bytes depend on the rank. Rounds are the same at every
party. ``tests/test_costs.py`` checks every entry against the counted traffic.
"""

from __future__ import annotations

import torch

from ..ring import packed_len
from .base import Cost, Kernel, compare_width
from .circuits import and_tree_plan, carry_plan


def masked_dtype(width: int) -> torch.dtype:
    """Smallest signed dtype that carries ``width`` bits on the wire."""
    return torch.int8 if width <= 8 else torch.int16 if width <= 16 else \
        torch.int32 if width <= 32 else torch.int64


def _c_bytes(width: int) -> int:
    return torch.empty((), dtype=masked_dtype(width)).element_size()


def _out(numel_x, numel_y, numel_z):
    # mul broadcasts; a matmul/conv declares its output size (default: the larger input).
    return numel_z if numel_z is not None else max(numel_x, numel_y)


def _open_cost(rank, w, numel):
    """Party 2 sends c = x + r (w bits) to parties 0 and 1; they send nothing."""
    return 2 * _c_bytes(w) * numel if rank == 2 else 0


def _msb_cost(n, rank, cfg, numel, width=None):
    w = compare_width(cfg, width)
    plan = carry_plan(w - 1)
    reshare = (w - 1) * packed_len(numel) if rank in (0, 1) else 0
    ands = sum(plan) * packed_len(numel)
    return Cost(2 + len(plan), _open_cost(rank, w, numel) + reshare + ands)


def _eqz_cost(n, rank, cfg, numel, width=None):
    w = compare_width(cfg, width)
    plan = and_tree_plan(w)
    return Cost(1 + len(plan), _open_cost(rank, w, numel) + sum(plan) * packed_len(numel))


def _trunc_cost(rank, cfg, numel):
    if cfg.truncation == "local":
        return Cost(1, 8 * numel if rank == 0 else 0)
    return Cost(2, 16 * numel)


def _fused_cost(rank, cfg, numel):
    if cfg.truncation == "local":                  # mul, then the 1-round local trunc
        return Cost(2, 8 * numel + (8 * numel if rank == 0 else 0))
    return Cost(2, (32 if rank == 2 else 16) * numel)


def _to_one(rank, to, size):
    return size if to is None or rank == (to - 1) % 3 else 0


def _b2a_bytes(rank, numel):
    return 32 * numel if rank == 2 else 8 * numel


KERNELS = {k.name: k for k in [
    Kernel("share", lambda n, rank, cfg, numel, owner=0:
           Cost(1, 8 * numel if rank == owner else 0),
           "owner sends x - x_o to the next party"),
    Kernel("reveal", lambda n, rank, cfg, numel, to=None: Cost(1, _to_one(rank, to, 8 * numel))),
    Kernel("mul", lambda n, rank, cfg, numel_x, numel_y, numel_z=None:
           Cost(1, 8 * _out(numel_x, numel_y, numel_z)), "reshare: 8 B per output element"),
    Kernel("matmul", lambda n, rank, cfg, numel_x, numel_y, numel_z=None:
           Cost(1, 8 * _out(numel_x, numel_y, numel_z)), "reshare: 8 B per output element"),
    Kernel("conv2d", lambda n, rank, cfg, numel_x, numel_y, numel_z=None:
           Cost(1, 8 * _out(numel_x, numel_y, numel_z)), "reshare: 8 B per output element"),
    Kernel("mul_trunc", lambda n, rank, cfg, numel_x, numel_y, numel_z=None:
           _fused_cost(rank, cfg, _out(numel_x, numel_y, numel_z)),
           "fixed-point product, truncation fused"),
    Kernel("matmul_trunc", lambda n, rank, cfg, numel_x, numel_y, numel_z=None:
           _fused_cost(rank, cfg, _out(numel_x, numel_y, numel_z)),
           "fixed-point matmul, truncation fused"),
    Kernel("trunc", lambda n, rank, cfg, numel: _trunc_cost(rank, cfg, numel),
           "exact, error {-1, 0} ulp (opt-in local: 1 round, may fail)"),
    Kernel("msb", _msb_cost),
    Kernel("eqz", _eqz_cost),
    Kernel("and_bits", lambda n, rank, cfg, numel: Cost(1, numel),
           "bitwise AND of replicated uint8 words (8 bits each); numel counts bytes"),
    Kernel("b2a", lambda n, rank, cfg, numel: Cost(1, _b2a_bytes(rank, numel)),
           "three-party OT bit injection"),
    Kernel("select", lambda n, rank, cfg, numel: Cost(1, (16 if rank == 0 else 40) * numel),
           "two parallel three-party OTs"),
    Kernel("reveal_bits", lambda n, rank, cfg, numel, to=None:
           Cost(1, _to_one(rank, to, packed_len(numel)))),
]}
