"""Poisson sampling that no party sees: secret 0/1 masks drawn inside MPC.

Privacy amplification by sampling (the reason DP-SGD's ε is small) holds only if whoever
sees the output does not know which examples each step used. With the batch known to
the parties, the party that receives the model would know it too. So every step runs on
*all* rows, and a secret mask ``m_i ~ Bernoulli(q)`` (independent per row and step)
zeroes the rows that were not drawn: nobody learns the batch, not even its size. The
price: each step costs a pass over the whole training set, 1/q times a batch's.

The coin: every party shares a uniform ring element of its own (semi2k: no traffic); the
sum is uniform unless all parties collude (rep3: unless two do). ``BITS`` of its bits are
extracted by one batched ``msb`` of ``r * 2^j`` (the comparison circuit reads one fixed
bit of its input, so shifting the input selects a different bit of r) and combined, on
shares, into an integer u uniform on [0, 2^BITS). Then ``m = [u < Q]`` with
``Q = ceil(q 2^BITS)``: exactly Bernoulli(Q / 2^BITS). The accountant uses that rate.

>>> import veil
>>> def f():
...     m, rate = poisson_masks(steps=2, n=1000, q=0.25)
...     return rate, m.shape, m.reveal().float().mean().item()   # test only: reveals masks
>>> rate, shape, mean = veil.run(f, parties=2)[0]
>>> rate, shape, 0.2 < mean < 0.3
(0.25, torch.Size([2, 1000]), True)
"""

from __future__ import annotations

import math
import os

import torch

from ..context import current
from ..errors import ProtocolUsageError
from ..offline.prg import PRG, SEED_BYTES
from ..tensor import SecretTensor

BITS = 16


def sampling_rate(q: float) -> float:
    """The rate `poisson_masks` really samples at: q rounded up to a multiple of 2^-16."""
    if not 0 < q <= 1:
        raise ProtocolUsageError(f"the sampling rate must be in (0, 1], got {q!r}")
    return math.ceil(q * 2 ** BITS) / 2 ** BITS


def poisson_masks(steps: int, n: int, q: float) -> tuple[SecretTensor, float]:
    """Secret int64 0/1 masks of shape (steps, n), each entry Bernoulli(rate), and rate."""
    rate = sampling_rate(q)
    ctx = current()
    proto = ctx.protocol
    shape = (steps, n)
    if rate == 1.0:
        return SecretTensor(proto.add_public(proto.zeros(shape), torch.ones(shape,
                            dtype=torch.int64)), dtype=torch.int64, frac=0), rate
    mine = PRG(os.urandom(SEED_BYTES)).ring(shape)
    r = None
    for p in range(ctx.world_size):
        # Party p's uniform ring element, secret-shared (shape public).
        share = proto.share(mine if ctx.rank == p else None, p, shape)
        r = share if r is None else r + share
    shifted = torch.stack([r * (1 << j) for j in range(BITS)])   # local: multiply by 2^j
    bits = proto.b2a(proto.msb(shifted))                           # BITS uniform bits each
    weights = torch.tensor([1 << (BITS - 1 - j) for j in range(BITS)],
                           dtype=torch.int64).reshape(BITS, 1, 1)
    u = (bits * weights).sum(0)                                    # uniform on [0, 2^BITS)
    q_int = round(rate * 2 ** BITS)
    drawn = proto.msb(proto.add_public(u, torch.tensor(-q_int)))   # u - Q < 0
    return SecretTensor(proto.b2a(drawn), dtype=torch.int64, frac=0), rate
