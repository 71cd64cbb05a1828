"""rep3: three-party replicated secret sharing over Z_2^64, honest majority, no dealer.

Threat model: semi-honest parties, honest majority: any single party learns nothing
beyond the outputs revealed to it; two colluding parties learn everything. There is no
dealer: all correlated randomness comes from the pairwise AES-CTR PRGs set up once at
the start (`veil.offline.prg`), so the offline phase is three 16-byte seeds.

Sharing (Araki-Furukawa-Lindell-Nof-Ohara 2016; ABY3, Mohassel-Rindal 2018):
x = x_0 + x_1 + x_2 mod 2^64 and party i holds (x_i, x_{i+1}) as one `RepShare`.
Component x_j is known to parties j and j-1, so a value drawn from the PRG that parties
j and j-1 share is a component nobody else knows. Bits are XOR-replicated the same way.

Kernels (per element, bytes sent by party 0 / 1 / 2; rounds):

* share: the owner o draws x_o from its PRG with o-1 and sends x_{o+1} = x - x_o to
  o+1 (x_{o+2} = 0): 8 B from the owner, 1 round.
* mul / matmul / conv2d: local cross products z_i = x_i y_i + x_i y_{i+1} + x_{i+1} y_i
  plus a PRF zero-sharing, then a reshare (party i sends z_i to i-1): 1 round, one ring
  element per *output* element per party (8/8/8).
* trunc: exact truncation (no failure probability) with a mask only party 2 knows
  (r = PRG_{0,2} + PRG_{1,2}); parties 0 and 1 open c = x + 2^62 + r to each other,
  party 2 hands them 2-out-of-2 shares of msb(r) and (r mod 2^63) >> d, and they finish
  the TruncPr-with-known-MSB formula (Dalskov-Escudero-Keller 2020, as semi2k) and
  reshare to replicated form. 2 rounds, 16/16/16 B. Result error in {-1, 0} ulp; never
  fails while |x| < 2^62.
  ``Config(truncation="local")`` opts into ABY3's share truncation instead: 1 round,
  8 B from party 0 only, error <= 1 ulp but wrong with probability ~|x|/2^63.
* mul_trunc (fixed-point product): the same, fed with the 3-out-of-3 product shares so
  the reshare round of ``mul`` is saved: 2 rounds, 16/16/32 B.
* msb / eqz: party 2 opens c = (x + r) mod 2^w to parties 0 and 1 (r's bits are the
  XOR of two pairwise PRG streams, so r is known to party 2 alone and its bits are
  replicated-shared for free); c is a replicated boolean value with c in the component
  parties 0 and 1 hold. msb then runs the carry circuit of c + ~r + 1 (one reshare for
  c AND ~r, then ceil(log2(w-1)) AND layers); eqz AND-reduces c XNOR r.
  w = 32: msb 7 rounds, eqz 6 rounds, <= 16 B per party.
* and_bits: replicated AND with a boolean zero-sharing and a reshare: 1 round, 1 byte
  per byte of operand.
* b2a: ABY3's bit injection by three-party OT: parties 0 and 1 both know component b_1
  and act as receiver/helper for each other; party 2 knows b_2 XOR b_0 and sends both
  masked messages. 1 round, 8/8/32 B.
* select: x * b by two three-party OTs in parallel (one with party 2 as sender, one
  with party 1): 1 round, 16/40/40 B.
* reveal / reveal_bits: each party sends its first component to the next party (or only
  party to-1 sends, to ``to``): 1 round.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import ProtocolUsageError
from ..ring import (low_bits, pack_bits, pack_rows, packed_bit_rows, packed_len, unpack_bits,
                    unpack_row)
from .base import Protocol
from .circuits import and_all, carry_out
from .rep3_costs import KERNELS, masked_dtype
from .rep3_share import RepShare

I64 = torch.int64
OFFSET = 1 << 62                 # x + 2^62 lies in [0, 2^63) for |x| < 2^62


class Rep3(Protocol):
    """Replicated three-party sharing; pick it with ``veil.run(..., protocol="rep3")``.

    >>> import torch, veil
    >>> def f():
    ...     x = veil.tensor(torch.tensor([1.5, -2.0]) if veil.rank() == 0 else None, owner=0)
    ...     w = veil.tensor(torch.tensor([2.0, 3.0]) if veil.rank() == 2 else None, owner=2)
    ...     return (x * w).relu().reveal(to=1)
    >>> out = veil.run(f, parties=3, protocol="rep3", seed=0)
    >>> out[0], out[1].tolist(), out[2]
    (None, [3.0, 0.0], None)
    """

    name = "rep3"
    kernels = KERNELS
    needs_dealer = False
    party_counts = (3,)

    def __init__(self, comm, provider, config, pair_prgs) -> None:
        if comm.world_size != 3:
            raise ProtocolUsageError(
                f"protocol 'rep3' runs with exactly 3 parties (replicated sharing, honest "
                f"majority), got {comm.world_size}; use protocol='semi2k' for other counts")
        super().__init__(comm, provider, config, pair_prgs)
        self.prev, self.next = (self.rank - 1) % 3, (self.rank + 1) % 3

    # -- plumbing -------------------------------------------------------------------------
    def _rep(self, x) -> RepShare:
        if isinstance(x, RepShare):
            return x
        if isinstance(x, torch.Tensor) and not torch.count_nonzero(x):
            return RepShare(x, torch.zeros_like(x))       # an all-zero public tensor
        raise ProtocolUsageError("internal: a rep3 kernel got a plain tensor, not a share; "
                                 "lift public values with add_public")

    def _send(self, peer: int, t: torch.Tensor) -> None:
        self.comm.send_tensor(peer, t.contiguous())

    def _recv(self, peer: int, shape, dtype=I64) -> torch.Tensor:
        return self.comm.recv_tensor(peer, tuple(shape), dtype)

    def _ring(self, peer: int, shape) -> torch.Tensor:
        return self.pair_prgs[peer].ring(tuple(shape))

    def _words(self, peer: int, shape) -> torch.Tensor:
        n = 1
        for d in shape:
            n *= int(d)
        return self.pair_prgs[peer].bytes(n).reshape(tuple(shape))

    def _reshare(self, z: torch.Tensor) -> RepShare:
        """3-out-of-3 shares (z must include a zero-sharing) to replicated: 1 round."""
        self.comm.count_round()
        # z_i is uniformly masked by the zero-sharing: discloses nothing to party i-1.
        self._send(self.prev, z)
        return RepShare(z, self._recv(self.next, z.shape, z.dtype))

    def _zero(self, shape) -> torch.Tensor:
        """This party's part of a PRF zero-sharing: F(k_i) - F(k_{i+1}) sums to 0."""
        return self._ring(self.prev, shape) - self._ring(self.next, shape)

    def _zero_words(self, shape) -> torch.Tensor:
        return self._words(self.prev, shape) ^ self._words(self.next, shape)

    # -- public operands ------------------------------------------------------------------
    def add_public(self, x, c):
        """A public value enters component 0 only (party 0's first, party 2's second)."""
        x = self._rep(x)
        zero = torch.zeros_like(c)
        a = x.a + (c if self.rank == 0 else zero)
        b = x.b + (c if self.rank == 2 else zero)
        return RepShare(a, b)

    def xor_public(self, b, c):
        b = self._rep(b)
        zero = torch.zeros_like(c)
        return RepShare(b.a ^ (c if self.rank == 0 else zero), b.b ^ (c if self.rank == 2 else zero))

    def zeros(self, shape):
        return RepShare(torch.zeros(shape, dtype=I64), torch.zeros(shape, dtype=I64))

    def and_bit_elements(self, a, b):
        a, b = torch.broadcast_tensors(self._rep(a), self._rep(b))
        n, shape = a.numel(), a.shape

        def packed(s):
            return RepShare(pack_rows(s.a.reshape(1, -1)), pack_rows(s.b.reshape(1, -1)))
        z = self.and_bits(packed(a), packed(b))
        return RepShare(unpack_row(z.a[0], n).reshape(shape), unpack_row(z.b[0], n).reshape(shape))

    # -- share / reveal -------------------------------------------------------------------
    def share(self, value, owner, shape):
        shape = tuple(shape)
        self.comm.count_round()
        if self.rank == owner:
            x_o = self._ring(self.prev, shape)
            x_next = value.to(I64) - x_o
            # x - x_o with x_o uniform and unknown to the receiver: discloses nothing.
            self._send(self.next, x_next)
            return RepShare(x_o, x_next)
        if self.rank == (owner + 1) % 3:
            return RepShare(self._recv(owner, shape), torch.zeros(shape, dtype=I64))
        return RepShare(torch.zeros(shape, dtype=I64), self._ring(owner, shape))

    def reveal(self, x, to=None):
        # Discloses x to the receiver(s): the intended output. Senders learn nothing.
        x = self._rep(x)
        self.comm.count_round()
        if to is None:
            self._send(self.next, x.a)
            return x.a + x.b + self._recv(self.prev, x.shape)
        if self.rank == (to - 1) % 3:
            self._send(to, x.a)
        if self.rank != to:
            return None
        return x.a + x.b + self._recv(self.prev, x.shape)

    def reveal_bits(self, bits, to=None):
        # Discloses the bits to the receiver(s): the intended output.
        bits = self._rep(bits)
        self.comm.count_round()
        own = bits.a ^ bits.b
        if to is None or self.rank == (to - 1) % 3:
            self._send(self.next if to is None else to, pack_bits(bits.a))
        if to is not None and self.rank != to:
            return None
        got = self._recv(self.prev, (packed_len(bits.numel()),), torch.uint8)
        return own ^ unpack_bits(got, bits.shape)

    # -- products -------------------------------------------------------------------------
    def _product(self, x, y, fn):
        """This party's 3-out-of-3 share of x*y (cross terms + zero-sharing), no traffic."""
        x, y = self._rep(x), self._rep(y)
        z = fn(x.a, y.a + y.b)
        z += fn(x.b, y.a)
        z += self._zero(z.shape)
        return z

    def mul(self, x, y):
        return self._reshare(self._product(x, y, torch.mul))

    def matmul(self, x, y):
        return self._reshare(self._product(x, y, torch.matmul))

    def conv2d(self, x, w, **params):
        return self._reshare(self._product(x, w, lambda a, b: F.conv2d(a, b, **params)))

    def mul_trunc(self, x, y, bits):
        if bits == 0 or self.config.truncation == "local":
            return self.trunc(self.mul(x, y), bits)
        z = self._product(x, y, torch.mul)
        return self._trunc_parts(z, bits, fused=True)

    def matmul_trunc(self, x, y, bits):
        if bits == 0 or self.config.truncation == "local":
            return self.trunc(self.matmul(x, y), bits)
        return self._trunc_parts(self._product(x, y, torch.matmul), bits, fused=True)

    # -- truncation -----------------------------------------------------------------------
    def trunc(self, x, bits):
        if bits == 0:
            return x
        if self.config.truncation == "local":
            return self._trunc_local(self._rep(x), bits)
        return self._trunc_parts(self._rep(x), bits, fused=False)

    def _trunc_local(self, x, bits):
        """Opt-in (Config(truncation="local")): ABY3's share truncation, 1 round.

        x = A + B with A = x_0 + x_1 (party 0) and B = x_2 (parties 1, 2); each side
        shifts its part (SecureML, Mohassel-Zhang 2017), so the result is off by at most
        1 ulp but is wrong (by ~2^(64-d)) with probability about |x| / 2^63 per element:
        only for values known to be small. Party 0 re-shares A >> d with a PRG_{0,2} mask.
        """
        shape = tuple(x.shape)
        self.comm.count_round()
        if self.rank == 0:
            mask = self._ring(2, shape)
            a = (x.a + x.b) >> bits
            # A >> d - R with R from PRG_{0,2}, unknown to party 1: uniform to it.
            self._send(1, a - mask)
            return RepShare(mask, a - mask)
        if self.rank == 1:
            return RepShare(self._recv(0, shape), -((-x.b) >> bits))
        return RepShare(-((-x.a) >> bits), self._ring(0, shape))

    def _trunc_parts(self, x, bits, fused):
        """Exact truncation of x (replicated, or 3-out-of-3 when ``fused``) by 2^bits.

        Round 1: parties 0 and 1 learn c = x + 2^62 + r, r = r_a + r_b with r_a from
        PRG_{0,2} and r_b from PRG_{1,2} (only party 2 knows r), and get from party 2 a
        2-out-of-2 sharing of msb(r) * 2^(63-d) and (r mod 2^63) >> d. Round 2: they
        evaluate x' >> d = (c_low >> d) - (r_low >> d) + 2^(63-d) (c_msb XOR r_msb)
        (error -1 or 0), re-randomise with PRG_{0,1} and send party 2 its components.
        """
        shape = tuple(x.shape)
        k = 1 << (63 - bits)
        self.comm.count_round()
        if self.rank == 2:
            r = self._ring(0, shape) + self._ring(1, shape)
            s1, s2 = self._ring(0, shape), self._ring(0, shape)
            r_msb, r_low = (r >> 63) & 1, low_bits(r, 63) >> bits
            if fused:
                # z_2 is masked by the zero-sharing (PRG_{1,2} part): discloses nothing.
                self._send(0, x)
                self._send(1, x)
            # u = secret - s with s from PRG_{0,2}, unknown to party 1: uniform to it.
            self._send(1, torch.stack([r_msb * k - s1, r_low - s2]))
            self.comm.count_round()
            return RepShare(self._recv(1, shape), self._recv(0, shape))
        other = 1 - self.rank
        r_own = self._ring(2, shape)
        if fused:
            mine, common = x, None               # party 2's z_2 arrives below
        else:
            # party 0 holds (x_0, x_1), party 1 holds (x_1, x_2): x_1 is common.
            mine, common = (x.a, x.b) if self.rank == 0 else (x.b, x.a)
        # mine + r_own: masked by r_own, which the receiver does not know.
        self._send(other, mine + r_own)
        got = self._recv(other, shape)
        if fused:
            common = self._recv(2, shape)
        c = mine + r_own + got + common + OFFSET
        if self.rank == 0:
            s1, s2 = self._ring(2, shape), self._ring(2, shape)
        else:
            s1, s2 = self._recv(2, (2,) + shape).unbind(0)
        c_msb = (c >> 63) & 1
        y = (1 - 2 * c_msb) * s1 - s2
        if self.rank == 0:
            y += c_msb * k + (low_bits(c, 63) >> bits) - (OFFSET >> bits)
        g, h = self._ring(other, shape), self._ring(other, shape)
        self.comm.count_round()
        if self.rank == 0:
            y0 = y + h - g                      # masked by h - g: uniform to party 2
            self._send(2, y0)
            return RepShare(y0, g)
        y2 = y - h                              # masked by h: uniform to party 2
        self._send(2, y2)
        return RepShare(g, y2)

    # -- comparisons ----------------------------------------------------------------------
    def _masked_rows(self, x, w):
        """Open c = (x + r) mod 2^w to parties 0 and 1; r known to party 2 only.

        Returns replicated boolean rows (w, ceil(n/8)) of c and of r (packed 8 per byte).
        """
        x = self._rep(x)
        shape, n = tuple(x.shape), x.numel()
        mask = -1 if w == 64 else (1 << w) - 1
        dt = masked_dtype(w)
        self.comm.count_round()

        def rows(v):
            return packed_bit_rows(v, w)
        zero = torch.zeros((w, packed_len(n)), dtype=torch.uint8)
        if self.rank == 2:
            b_a, b_b = self._ring(0, shape) & mask, self._ring(1, shape) & mask
            r = b_a ^ b_b
            # x_2 + r and x_0 + r: masked by r, uniform mod 2^w: disclose nothing.
            self._send(0, (x.a + r).to(dt))
            self._send(1, (x.b + r).to(dt))
            return RepShare(zero, zero), RepShare(rows(b_b), rows(b_a))
        b_own = self._ring(2, shape) & mask
        c = (x.a + x.b + self._recv(2, shape, dt).to(I64)) & mask
        if self.rank == 0:
            return RepShare(zero, rows(c)), RepShare(rows(b_own), zero)
        return RepShare(rows(c), zero), RepShare(zero, rows(b_own))

    def _unpack(self, packed, shape):
        n = 1
        for d in shape:
            n *= int(d)
        return RepShare(unpack_row(packed.a, n).reshape(shape), unpack_row(packed.b, n).reshape(shape))

    def msb(self, x, width=None):
        c, r = self._masked_rows(x, self.check_width(width))
        nr = self.xor_public(r, torch.full(r.shape, 0xFF, dtype=torch.uint8))   # ~r
        p = (nr ^ c)[:-1]
        g = self._reshare_and_public(c[:-1], nr[:-1])
        g[0] = g[0] ^ p[0]                                   # carry-in 1: G_0 | P_0
        carry = carry_out(self, g, p)
        return self._unpack(nr[-1] ^ carry ^ c[-1], tuple(x.shape))

    def _reshare_and_public(self, c, nr):
        """c AND ~r where parties 0, 1 know c: they hold c & (their part of ~r), then
        re-randomise with PRG_{0,1} and send party 2 its components. 1 round."""
        self.comm.count_round()
        if self.rank == 2:
            g2 = self._recv(1, c.shape, torch.uint8)
            return RepShare(g2, self._recv(0, c.shape, torch.uint8))
        other = 1 - self.rank
        m, h = self._words(other, c.shape), self._words(other, c.shape)
        if self.rank == 0:
            g0 = (c.b & nr.a) ^ m ^ h              # masked by m ^ h: uniform to party 2
            self._send(2, g0)
            return RepShare(g0, m)
        g2 = (c.a & nr.b) ^ h                      # masked by h: uniform to party 2
        self._send(2, g2)
        return RepShare(m, g2)

    def eqz(self, x, width=None):
        c, r = self._masked_rows(x, self.check_width(width))
        same = self.xor_public(c ^ r, torch.full(r.shape, 0xFF, dtype=torch.uint8))
        return self._unpack(and_all(self, same), tuple(x.shape))

    # -- boolean --------------------------------------------------------------------------
    def and_bits(self, a, b):
        a, b = self._rep(a), self._rep(b)
        z = (a.a & (b.a ^ b.b)) ^ (a.b & b.a)
        z ^= self._zero_words(z.shape)
        return self._reshare(z)

    def b2a(self, bits):
        """Bit injection by three-party OT (ABY3 section 5.4): 1 round."""
        bits = self._rep(bits)
        shape = tuple(bits.shape)
        self.comm.count_round()
        if self.rank == 2:
            t = (bits.a ^ bits.b).to(I64)                  # b_2 XOR b_0
            y0, v0, v1 = (self._ring(0, shape) for _ in range(3))
            y2, w0, w1 = (self._ring(1, shape) for _ in range(3))
            s = y0 + y2
            m0, m1 = t - s, (1 - t) - s                     # (k XOR t) - s for choice k
            # Each message is masked by a pad only the receiver's helper knows.
            self._send(0, torch.stack([m0 + w0, m1 + w1]))
            self._send(1, torch.stack([m0 + v0, m1 + v1]))
            return RepShare(y2, y0)
        if self.rank == 0:
            y0, v0, v1 = (self._ring(2, shape) for _ in range(3))
            choice = bits.b.bool()                          # b_1
            self._send(1, torch.where(choice, v1, v0))      # a uniform pad
            msgs, pad = self._recv(2, (2,) + shape), self._recv(1, shape)
            return RepShare(y0, torch.where(choice, msgs[1], msgs[0]) - pad)
        y2, w0, w1 = (self._ring(2, shape) for _ in range(3))
        choice = bits.a.bool()
        self._send(0, torch.where(choice, w1, w0))
        msgs, pad = self._recv(2, (2,) + shape), self._recv(0, shape)
        return RepShare(torch.where(choice, msgs[1], msgs[0]) - pad, y2)

    def select(self, bits, x):
        """x * b in one round: two three-party OTs in parallel (ABY3 section 5.4).

        x b = (x_0 + x_2) b + x_1 b. Party 2 knows x_0 + x_2 and t = b_2 ^ b_0, and
        b = b_1 ^ t with b_1 known to parties 0 and 1: OT 1 (sender 2) gives both of them
        (x_0 + x_2) b - s1. Party 1 knows x_1 and u = b_1 ^ b_2, and b = b_0 ^ u with b_0
        known to parties 0 and 2: OT 2 (sender 1) gives both of them x_1 b - s2. The masks
        s1 = y_0 + y_2 and s2 = z_1 + z_2 are the other replicated components.
        """
        bits, x = self._rep(bits), self._rep(x)
        shape = tuple(x.shape)
        self.comm.count_round()

        def ot_messages(k_bit, value, s):
            k = k_bit.to(I64)                 # (k XOR c) * value - s for choice c = 0, 1
            return k * value - s, (1 - k) * value - s

        def pick(choice, pair, pad):
            return torch.where(choice, pair[1], pair[0]) - pad

        if self.rank == 2:
            y0, v0, v1 = (self._ring(0, shape) for _ in range(3))
            y2, w0, w1, p0, p1, z2 = (self._ring(1, shape) for _ in range(6))
            m0, m1 = ot_messages(bits.a ^ bits.b, x.a + x.b, y0 + y2)
            # OT 1: each message masked by a pad its receiver lacks (w: PRG_{1,2}, v: _{0,2}).
            self._send(0, torch.stack([m0 + w0, m1 + w1]))
            self._send(1, torch.stack([m0 + v0, m1 + v1]))
            b0 = bits.b.bool()
            self._send(0, torch.where(b0, p1, p0))                 # OT 2 helper: a pad
            m2 = pick(b0, self._recv(1, (2,) + shape), self._recv(0, shape))
            return RepShare(y2 + z2, y0 + m2)
        if self.rank == 0:
            y0, v0, v1 = (self._ring(2, shape) for _ in range(3))
            q0, q1, z1 = (self._ring(1, shape) for _ in range(3))
            b0, b1 = bits.a.bool(), bits.b.bool()
            self._send(1, torch.where(b1, v1, v0))                 # OT 1 helper: a pad
            self._send(2, torch.where(b0, q1, q0))                 # OT 2 helper: a pad
            # Per channel in send order: party 2 sends OT 1's pair, then OT 2's pad;
            # party 1 sends OT 2's pair, then OT 1's pad.
            pair1, pad2 = self._recv(2, (2,) + shape), self._recv(2, shape)
            pair2, pad1 = self._recv(1, (2,) + shape), self._recv(1, shape)
            m1, m2 = pick(b1, pair1, pad1), pick(b0, pair2, pad2)
            return RepShare(y0 + m2, m1 + z1)
        y2, w0, w1, p0, p1, z2 = (self._ring(2, shape) for _ in range(6))
        q0, q1, z1 = (self._ring(0, shape) for _ in range(3))
        m0, m1 = ot_messages(bits.a ^ bits.b, x.a, z1 + z2)
        # OT 2: masked by p (PRG_{1,2}, unknown to party 0) and q (PRG_{0,1}, unknown to 2).
        self._send(0, torch.stack([m0 + p0, m1 + p1]))
        self._send(2, torch.stack([m0 + q0, m1 + q1]))
        b1 = bits.a.bool()
        self._send(0, torch.where(b1, w1, w0))                     # OT 1 helper: a pad
        m1_got = pick(b1, self._recv(2, (2,) + shape), self._recv(0, shape))
        return RepShare(m1_got + z1, y2 + z2)


__all__ = ["Rep3", "RepShare"]
