"""Fixed-point encoding of float updates into Z_2^64, with the overflow bound checked.

A client's update ``x`` (float) is encoded as ``round(x * 2^f) mod 2^64`` in int64 with
wrap-around. Summing the encodings of ``n`` clients and decoding gives the plain sum to
within ``n * 2^-(f+1)`` per coordinate (each client rounds once), provided the true sum
stays inside the signed range: ``|sum| * 2^f < 2^63``. :func:`encode` refuses any value
with ``|x| > bound`` (the per-client bound the aggregate was sized for), so with at most
``max_clients`` contributions the aggregate can never wrap:
``max_clients * bound * 2^f < 2^63`` is checked by :class:`FixedPoint` itself.

>>> fp = FixedPoint(frac_bits=24, bound=100.0, max_clients=1000)
>>> import torch
>>> s = fp.encode(torch.tensor([1.5, -2.25])) + fp.encode(torch.tensor([0.5, 0.25]))
>>> fp.decode(s).tolist()
[2.0, -2.0]
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ...errors import RangeError

RING_BITS = 64


@dataclass(frozen=True)
class FixedPoint:
    """Scale ``2^frac_bits``; every client value must satisfy ``|x| <= bound``."""

    frac_bits: int = 24
    bound: float = 1e4
    max_clients: int = 10_000

    def __post_init__(self):
        if not 0 <= self.frac_bits <= 52:
            raise ValueError("frac_bits must be in [0, 52] (float64 holds 53 bits exactly)")
        if not (self.bound > 0 and self.max_clients >= 1):
            raise ValueError("bound must be > 0 and max_clients >= 1")
        if self.max_clients * self.bound * 2.0 ** self.frac_bits >= 2.0 ** (RING_BITS - 1):
            raise RangeError(
                f"max_clients * bound * 2^frac_bits = {self.max_clients} * {self.bound} * "
                f"2^{self.frac_bits} reaches 2^63: the aggregate could wrap. Lower frac_bits, "
                "the bound (e.g. clip updates harder) or max_clients.")

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Float tensor -> int64 ring elements; refuses non-finite or out-of-bound values."""
        x = torch.as_tensor(x, dtype=torch.float64)
        if not bool(torch.isfinite(x).all()):
            raise RangeError("update contains NaN or inf: refusing to encode it "
                             "(check the client's training: learning rate, loss scaling)")
        big = float(x.abs().max()) if x.numel() else 0.0
        if big > self.bound:
            raise RangeError(f"update has |value| {big:.3g} > bound {self.bound:.3g}: the "
                             "aggregate could overflow. Clip updates (veil.dp.clip_update) "
                             "or raise FixedPoint.bound.")
        return torch.round(x * 2.0 ** self.frac_bits).to(torch.int64)

    def decode(self, s: torch.Tensor) -> torch.Tensor:
        """int64 ring elements (a sum of encodings) -> float64, read as signed."""
        return s.to(torch.float64) / 2.0 ** self.frac_bits

    def precision(self, n_clients: int) -> float:
        """Worst-case |decoded sum - true sum| per coordinate for ``n_clients`` inputs."""
        return n_clients * 2.0 ** -(self.frac_bits + 1)
