"""The executable spec: every kernel computed on plaintext — INSECURE by design.

Party 0 holds each value in the clear and the others hold zero, so the share layout is
additive like semi2k's and all local linear kernels are shared. Each non-linear kernel
gathers the value (one round, cleartext on the wire), applies the textbook definition,
and hands the result back to party 0. Conformance tests check every real protocol against
it; it must never hold real data.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import Cost, Kernel, Protocol


def _all(n, numel, item=8):
    return Cost(1, item * numel * (n - 1))


KERNELS = {k.name: k for k in [
    Kernel("share", lambda n, rank, cfg, numel: Cost(0, 0)),
    Kernel("reveal", lambda n, rank, cfg, numel, to=None: _all(n, numel)),
    Kernel("mul", lambda n, rank, cfg, numel_x, numel_y: _all(n, numel_x + numel_y)),
    Kernel("matmul", lambda n, rank, cfg, numel_x, numel_y: _all(n, numel_x + numel_y)),
    Kernel("conv2d", lambda n, rank, cfg, numel_x, numel_y: _all(n, numel_x + numel_y)),
    Kernel("trunc", lambda n, rank, cfg, numel: _all(n, numel)),
    # Opens the plaintext whatever the width (width= only selects the low bits read).
    Kernel("msb", lambda n, rank, cfg, numel, width=None: _all(n, numel)),
    Kernel("eqz", lambda n, rank, cfg, numel, width=None: _all(n, numel)),
    Kernel("and_bits", lambda n, rank, cfg, numel: _all(n, 2 * numel, 1)),
    Kernel("b2a", lambda n, rank, cfg, numel: _all(n, numel, 1)),
    Kernel("select", lambda n, rank, cfg, numel: _all(n, numel, 9)),
    Kernel("reveal_bits", lambda n, rank, cfg, numel, to=None: _all(n, numel, 1)),
]}


class InsecureReference(Protocol):
    name = "insecure_reference"
    kernels = KERNELS

    def _plain(self, *xs):
        """Gather the cleartext of each tensor at every party (one round)."""
        return self.comm.all_reduce(xs, xor=tuple(x.dtype == torch.uint8 for x in xs))

    def _mine(self, v):
        return v if self.rank == 0 else torch.zeros_like(v)

    def share(self, value, owner, shape):
        # The owner is the only holder; party 0 gets it on first use via _plain.
        return value.clone() if self.rank == owner else torch.zeros(shape, dtype=torch.int64)

    def reveal(self, x, to=None):
        v = self._plain(x)[0]
        return v if to is None or to == self.rank else None

    def mul(self, x, y):
        a, b = self._plain(x, y)
        return self._mine(a * b)

    def matmul(self, x, y):
        a, b = self._plain(x, y)
        return self._mine(torch.matmul(a, b))

    def conv2d(self, x, w, **params):
        a, b = self._plain(x, w)
        return self._mine(F.conv2d(a, b, **params))

    def trunc(self, x, bits):
        return self._mine(self._plain(x)[0] >> bits)

    def _low_signed(self, v, w):
        """v mod 2^w read as a signed w-bit number (sign-extended by shifts)."""
        return (v << (64 - w)) >> (64 - w) if w < 64 else v

    def msb(self, x, width=None):
        low = self._low_signed(self._plain(x)[0], self.check_width(width))
        return self._mine((low < 0).to(torch.uint8))

    def eqz(self, x, width=None):
        low = self._low_signed(self._plain(x)[0], self.check_width(width) - 1)  # as semi2k
        return self._mine((low == 0).to(torch.uint8))

    def and_bits(self, a, b):
        u, v = self._plain(a, b)
        return self._mine(u & v)

    def b2a(self, bits):
        return self._mine(self._plain(bits)[0].to(torch.int64))

    def select(self, bits, x):
        b, v = self._plain(bits, x)
        return self._mine(b.to(torch.int64) * v)

    def reveal_bits(self, bits, to=None):
        v = self._plain(bits)[0]
        return v if to is None or to == self.rank else None
