"""semi2k: N-party additive secret sharing over Z_2^64 with a trusted dealer.

Threat model: semi-honest parties, any number of which may collude (dishonest
majority), plus a trusted dealer that colludes with no party. Values are additive shares
x = sum_i x_i mod 2^64; bits are XOR shares.

Kernels and the papers they follow:

* share: the owner's share is x - sum_j PRG_{owner,j}; every other party j draws its
  share from the PRG it shares with the owner. No traffic (pseudorandom secret sharing).
* mul / matmul / conv2d: Beaver triples (Beaver 1991); the two openings go out in one
  round. z_i = c_i + e (.) (b_i + [i=0] f) + a_i (.) f, so a matmul costs two local
  products, not three.
* trunc (default, every party count): ``exact`` (TruncPr with a known MSB,
  Dalskov-Escudero-Keller 2020, as SPU's TruncAPr): open c = x + 2^62 + r, recover the
  wrap bit from msb(c) and the dealer's [msb(r)]; result in {floor(x / 2^f),
  floor(x / 2^f) + 1}, never fails for |x| < 2^62. 1 round, 8 bytes per element and peer.
  Opt-in at 2 parties, ``Config(truncation="local")`` (SecureML, Mohassel & Zhang 2017):
  share-wise shifts, no traffic, but wrong by ~2^(64-f) with probability ~ |x| / 2^64 per
  element, unchecked: a silent wrong answer on large workloads (docs/numerics.md).
* trunc_masked (fused truncation, exact only): the same round, with r drawn from a keyed
  fork (one key per tensor). The result y = public + mask, where the mask is
  L - msb(c) 2^(64-f) M with L, M functions of r: the dealer can regenerate them from the
  key, so an elementwise product with y is a ``mul_masked`` that opens nothing new (the
  truncation's opening is the product's), with the dealer's products of mask pieces
  (materials.beaver_trunc) weighted by the public msb(c). A truncation followed by a
  product costs one round and 8 bytes instead of two rounds and 16. Security: as for
  ``mask``: one uniform keyed r per tensor, opened once; the piece products are fresh
  shares. Products that sum over elements (matmul, conv) cannot use it (msb(c) varies
  inside the sum) and open afresh.
* msb: open c = (x + r) mod 2^w with a dealer mask r whose w low bits are also
  XOR-shared; then x mod 2^w = c + ~r + 1, whose sign bit needs the carry into bit
  w-1: a carry tree of ceil(log2(w-1)) AND layers (w = compare_bits). Each share of c
  goes on the wire in exactly w bits (33 bits: an int32 and one packed bit row, 4.125
  B instead of 8), and the carry layers AND each P_hi row with [G_lo; P_lo] in one
  broadcast ``and_bits``, so a P row is opened once (circuits.carry_rows_opened).
* eqz: same mask on w - 1 bits; x == 0 mod 2^(w-1) iff every bit of c XNOR r is 1: an
  AND tree. Exact on msb's domain |x| < 2^(w-1).
* mask / *_masked: open once, multiply many times (SecureML's reuse of a masked matrix,
  Mohassel & Zhang 2017, sec. 4.2). ``mask`` opens x - A for a fresh *keyed* mask A
  (a new key per call; the dealer regenerates A from its key, materials.py); a product
  of two masked tensors then needs no opening at all: with c = op(A, B) from the dealer,
  z_i = op(e_x, y_i) + op(a_i, e_y) + c_i. A model weight W is masked once per model
  and reused by every inference, so each inference opens only its input-sized x - A.
  Security: every opened value is a tensor minus a uniform mask used for that tensor
  only (one key, one tensor, one opening), so the openings are uniform and independent,
  exactly as in a batch of ordinary Beaver products; see docs/security.md.
* share_held / mask_to (owner-aware products with a model's weights): a weight W its
  owner o keeps in the clear anyway is shared as (W at o, 0 elsewhere); its masked form
  W - B is opened once per model as any fixed operand's. A product x W then masks x
  under a keyed A whose share at o is zero, and only the other parties send x_i - A_i,
  to o alone (one direction, one round): o computes e_x W + c_o, every other party
  A_i e_W + c_i, with c = A B from the dealer (A summed over the parties but o). One
  local product per party instead of two, and o sends nothing. Security: o sees
  x_i - A_i, uniform (A_i is unknown to o); the others see only what they saw before
  (e_W, their own A_i); the zero shares are independent of W. The output shares are
  fresh (c_o, c_i uniform). See docs/security.md.
* b2a / select: daBits (Rotaru & Wood 2019). select multiplies x by a secret bit b in one
  round: open b ^ m and x - a together, use the dealer's [m], [m*a].
"""

from __future__ import annotations

import itertools

import torch

from .. import ringmm
from ..offline.materials import MAX_FUSED_FRAC, RING, fused_pairs
from ..ring import pack_bits, packed_bit_rows, packed_len, unpack_bits, unpack_row, wrap
from .base import Cost, Kernel, Masked, Protocol, at_width
from .circuits import and_all, and_tree_plan, carry_out, carry_rows_opened


def _open_bytes(n: int, per_peer: int) -> int:
    return per_peer * (n - 1)


def _masked_dtype(width: int) -> torch.dtype:
    """Smallest signed dtype that carries ``width`` bits on the wire."""
    return torch.int8 if width <= 8 else torch.int16 if width <= 16 else \
        torch.int32 if width <= 32 else torch.int64


def _c_bytes(width: int) -> int:
    return torch.empty((), dtype=_masked_dtype(width)).element_size()


def _split_wire(width: int) -> bool:
    """33..63-bit openings go as an int32 plus (width - 32) packed bit rows."""
    return 32 < width < 64


def _c_wire_bytes(width: int, numel: int) -> int:
    """Bytes per peer of one party's w-bit masked share: exactly w bits per element."""
    if _split_wire(width):
        return 4 * numel + (width - 32) * packed_len(numel)
    return _c_bytes(width) * numel


def _uses_local_trunc(n: int, cfg) -> bool:
    # Only on request (Config(truncation="local")): it can fail silently (config.py).
    return n == 2 and cfg.truncation == "local"


def _eqz_width(cfg) -> int:
    # x == 0 is decided on compare_bits - 1 bits: exact on the same domain as msb
    # (|x| < 2^(compare_bits-1)), and one AND layer fewer at the default 33 bits.
    return cfg.compare_bits - 1


def _tree_cost(n, cfg, numel, rows_per_layer, width):
    # Each AND layer opens packed rows of ceil(numel/8) bytes.
    by = _c_wire_bytes(width, numel) + sum(r * packed_len(numel) for r in rows_per_layer)
    return Cost(1 + len(rows_per_layer), _open_bytes(n, by))


def _msb_cost(n, rank, cfg, numel):
    return _tree_cost(n, cfg, numel, carry_rows_opened(cfg.compare_bits - 1, True),
                      cfg.compare_bits)


def _eqz_cost(n, rank, cfg, numel):
    w = _eqz_width(cfg)
    return _tree_cost(n, cfg, numel, [2 * a for a in and_tree_plan(w)], w)


def _reveal_cost(n, rank, cfg, numel, to=None, item=8):
    if to is None:
        return Cost(1, _open_bytes(n, item * numel))
    return Cost(1, 0 if rank == to else item * numel)


KERNELS = {k.name: k for k in [
    Kernel("share", lambda n, rank, cfg, numel: Cost(0, 0), "pseudorandom shares, no traffic"),
    Kernel("reveal", lambda n, rank, cfg, numel, to=None: _reveal_cost(n, rank, cfg, numel, to)),
    Kernel("mul", lambda n, rank, cfg, numel_x, numel_y:
           Cost(1, _open_bytes(n, 8 * (numel_x + numel_y)))),
    Kernel("matmul", lambda n, rank, cfg, numel_x, numel_y:
           Cost(1, _open_bytes(n, 8 * (numel_x + numel_y)))),
    Kernel("conv2d", lambda n, rank, cfg, numel_x, numel_y:
           Cost(1, _open_bytes(n, 8 * (numel_x + numel_y)))),
    Kernel("trunc", lambda n, rank, cfg, numel:
           Cost(0, 0) if _uses_local_trunc(n, cfg) else Cost(1, _open_bytes(n, 8 * numel))),
    Kernel("trunc_masked", lambda n, rank, cfg, numel:
           Cost(0, 0) if _uses_local_trunc(n, cfg) else Cost(1, _open_bytes(n, 8 * numel)),
           "trunc of several tensors, left masked for free elementwise products"),
    Kernel("msb", _msb_cost),
    Kernel("eqz", _eqz_cost),
    Kernel("and_bits", lambda n, rank, cfg, numel, numel_b=None:
           Cost(1, _open_bytes(n, numel + (numel if numel_b is None else numel_b))),
           "bitwise AND of XOR-shared uint8 words (8 bits each); numel (numel_b when the "
           "operands broadcast) counts bytes"),
    Kernel("mask", lambda n, rank, cfg, numel: Cost(1 if numel else 0, _open_bytes(n, 8 * numel)),
           "open x - A under a keyed mask, once per tensor; numel counts every tensor"),
    Kernel("mask_to", lambda n, rank, cfg, numel, to=0:
           Cost(1 if numel else 0, 0 if rank == to else 8 * numel),
           "open x - A to party ``to`` alone (owner-aware products); numel counts every "
           "tensor"),
    Kernel("share_held", lambda n, rank, cfg, numel: Cost(0, 0),
           "the owner's value as its share, zeros elsewhere: no traffic"),
    Kernel("mul_masked", lambda n, rank, cfg, **_: Cost(0, 0), "product of masked tensors"),
    Kernel("matmul_masked", lambda n, rank, cfg, **_: Cost(0, 0)),
    Kernel("conv2d_masked", lambda n, rank, cfg, **_: Cost(0, 0)),
    Kernel("b2a", lambda n, rank, cfg, numel: Cost(1, _open_bytes(n, packed_len(numel)))),
    Kernel("select", lambda n, rank, cfg, numel:
           Cost(1, _open_bytes(n, packed_len(numel) + 8 * numel))),
    Kernel("select_masked", lambda n, rank, cfg, numel:
           Cost(1, _open_bytes(n, packed_len(numel))),
           "bit * x for x masked by keyed or truncation masks: only the bits are opened; "
           "numel counts every pair's elements"),
    Kernel("reveal_bits", lambda n, rank, cfg, numel, to=None:
           Cost(1, _open_bytes(n, packed_len(numel))) if to is None
           else Cost(1, 0 if rank == to else packed_len(numel))),
]}
# msb/eqz take width= per call; their costs read it through the config (at_width).
KERNELS.update({k: Kernel(k, at_width(KERNELS[k].cost)) for k in ("msb", "eqz")})


def _is_fused(m: Masked) -> bool:
    return m.frac != 0 or m.mult != 1


def _piece_weights(m: Masked) -> dict:
    """Public weights of a mask's pieces (materials.fused_components) as (int k, tensor
    or None): the mask is sum k T piece. A keyed mask: mult A; a truncation's:
    mult (L - msb_w M)."""
    if m.frac == 0:
        return {"A": (m.mult, None)}
    return {"L": (m.mult, None), "M": (-m.mult, m.msb_w)}


def _add_weighted(z: torch.Tensor, k: int, w, t: torch.Tensor) -> None:
    """z += k w t in place (w: a public tensor or None for 1)."""
    if w is None:
        z.add_(t, alpha=k)
    else:
        z.addcmul_(w, t, value=k)


def _summed(parts: list) -> torch.Tensor:
    """The sum of every party's part (a gather's result), as a new tensor."""
    out = parts[0].clone()
    for part in parts[1:]:
        out += part
    return out


def _flip_select(c: torch.Tensor, x: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """c x + (1 - 2c) d for the public bits c (0/1, any integer dtype) and shares x, d,
    as d + c (x - 2d): three passes, two new tensors (``d`` is consumed)."""
    out = x - d - d
    out *= c
    return out.add_(d)


def _pair_weight(wa: tuple, wb: tuple) -> tuple:
    """The weight of a product of two pieces weighted wa and wb."""
    (ka, ta), (kb, tb) = wa, wb
    return ka * kb, ta if tb is None else tb if ta is None else ta * tb


class Semi2k(Protocol):
    name = "semi2k"
    kernels = KERNELS
    and_broadcasts = True             # and_bits takes operands that broadcast

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # Keyed masks are numbered in program order, the same at every party (SPMD); a
        # number is never used twice in a run, so no mask ever hides two tensors.
        self._mask_keys = itertools.count()

    # -- opening helpers ------------------------------------------------------------------
    def _open(self, *xs: torch.Tensor) -> list[torch.Tensor]:
        """Open several ring tensors in one round (all parties learn the sums)."""
        return self.comm.all_reduce(xs)

    def _open_words(self, *ws: torch.Tensor) -> list[torch.Tensor]:
        """Open XOR-shared uint8 words (already packed) in one round."""
        return self.comm.all_reduce(ws, xor=(True,) * len(ws))

    def _open_bits(self, *bs: torch.Tensor, ring: tuple[torch.Tensor, ...] = ()) -> tuple:
        """Open 0/1 bit tensors (packed into one message) and ring tensors, in one round."""
        flat = torch.cat([b.reshape(-1) for b in bs]) if bs else torch.zeros(0, dtype=torch.uint8)
        packed, *rings = self.comm.all_reduce([pack_bits(flat), *ring],
                                              xor=(True,) + (False,) * len(ring))
        bits = unpack_bits(packed, flat.shape)
        out, at = [], 0
        for b in bs:
            out.append(bits[at:at + b.numel()].reshape(b.shape))
            at += b.numel()
        return tuple(out), tuple(rings)

    # -- kernels ----------------------------------------------------------------------------
    def share(self, value, owner, shape):
        if self.rank != owner:
            return self.pair_prgs[owner].ring(shape)
        share = value.clone()
        for p in range(self.n):
            if p != owner:
                share -= self.pair_prgs[p].ring(shape)
        return share

    def share_held(self, value, owner, shape):
        # The owner keeps the value it already knows; every other share is zero, which
        # is independent of the value (and costs no PRG draws). The zeros are one
        # element expanded (no memory: a model's weight-sized share at every other
        # party); reads and views work as usual, an in-place write is refused by torch.
        if self.rank == owner:
            return value.clone(), owner
        return torch.zeros((), dtype=torch.int64).expand(tuple(shape)), owner

    def reveal(self, x, to=None):
        # Discloses x to the receiver(s): the intended output. Senders learn nothing.
        if to is None:
            return self._open(x)[0]
        parts = self.comm.gather(x, to)
        return None if parts is None else _summed(parts)

    def _bilinear(self, op, x, y, fn, params=None):
        t = self.provider.get("beaver", op=op, shape_a=list(x.shape), shape_b=list(y.shape),
                              params=params or {})
        # Opens x - a and y - b: uniformly masked, disclose nothing.
        e, f = self._open(x - t["a"], y - t["b"])
        b_plus = t["b"].add_(f) if self.rank == 0 else t["b"]      # b is ours to reuse
        z = fn(e, b_plus)
        z += fn(t["a"], f)
        z += t["c"]
        return z

    def mask(self, *xs):
        if not xs:
            return []
        keyed = []
        for x in xs:
            key = next(self._mask_keys)
            keyed.append((key, self.provider.get("mask", shape=list(x.shape), key=key)["a"]))
        # Opens x - A, A uniform and keyed for this tensor alone: discloses nothing.
        es = self._open(*(x - a for x, (_, a) in zip(xs, keyed)))
        return [Masked(x, e, a, key) for x, e, (key, a) in zip(xs, es, keyed)]

    def mask_to(self, to, *xs):
        if not xs:
            return []
        keys = [next(self._mask_keys) for _ in xs]
        if self.rank == to:                   # its share of each mask is zero: no draw
            self.provider.note_key(keys[-1])
            ms = [None] * len(xs)
        else:
            ms = [self.provider.get("mask", shape=list(x.shape), key=k)["a"]
                  for x, k in zip(xs, keys)]
        # Every party but ``to`` sends x_i - A_i to ``to`` alone, A_i uniform and keyed
        # for this tensor only (unknown to ``to``): discloses nothing. ``to`` sends nothing.
        flat = torch.cat([(x if a is None else x - a).reshape(-1) for x, a in zip(xs, ms)])
        parts = self.comm.gather(flat, to) if flat.numel() else \
            [flat] if self.rank == to else None           # nothing to send
        if parts is None:
            return [Masked(x, None, a, k, to=to) for x, a, k in zip(xs, ms, keys)]
        total = _summed(parts)
        out, at = [], 0
        for x, k in zip(xs, keys):
            out.append(Masked(x, total[at:at + x.numel()].reshape(x.shape), None, k, to=to))
            at += x.numel()
        return out

    def _bilinear_owned(self, op, mx, my, fn, params):
        """x y with one operand held by party o (`share_held`) and opened once, the other
        opened to o alone (`mask_to`). Left opened to o: x y = e_x y + A e_y + A B, and o
        holds y whole, A is zero at o; right: x y = x e_y + e_x A + B A."""
        left = mx.to is not None
        v, h = (mx, my) if left else (my, mx)
        if h.held != v.to or h.e is None or h.key is None or h.parts or _is_fused(h):
            raise RuntimeError("internal: an owner-aware product needs the other operand "
                               "held by the party the first was opened to")
        side = {"to_a": v.to} if left else {"to_b": v.to}
        t = self.provider.get("beaver_keyed", op=op, shape_a=list(mx.share.shape),
                              shape_b=list(my.share.shape), key_a=mx.key, key_b=my.key,
                              params=params or {}, **side)
        if self.rank == v.to:
            z = fn(v.e, h.share) if left else fn(h.share, v.e)
        else:
            z = fn(v.a, h.e) if left else fn(h.e, v.a)
        z += t["c"]
        return z

    def _zero_share(self, m: Masked) -> bool:
        """Whether this party's share of ``m`` is known to be zero (held elsewhere)."""
        return m.held is not None and m.held != self.rank

    def _bilinear_masked(self, op, mx, my, fn, params=None):
        if mx.to is not None or my.to is not None:
            return self._bilinear_owned(op, mx, my, fn, params)
        fused = _is_fused(mx) or _is_fused(my)
        # Open afresh where nothing can be reused: an operand not opened, a combination
        # (no dealer material for it), or a truncation's mask in a sum over products
        # (matmul, conv: msb(c) varies per element, the dealer cannot precompute it).
        if mx.e is None or my.e is None or (mx.a is None and my.a is None) \
                or mx.parts or my.parts or (fused and op != "mul"):
            return self._bilinear(op, mx.share, my.share, fn, params)
        if fused:
            return self._mul_fused(mx, my)
        t = self.provider.get("beaver_keyed", op=op, shape_a=list(mx.e.shape),
                              shape_b=list(my.e.shape), key_a=mx.key, key_b=my.key,
                              params=params or {})
        # (a product with a share known to be zero, a weight held elsewhere, is skipped)
        if mx.a is not None:              # x y = e_x y + A_x e_y + A_x A_y
            z = fn(mx.a, my.e)
            if not self._zero_share(my):
                z += fn(mx.e, my.share)
        else:                             # x y = x e_y + e_x A_y + A_x A_y
            z = fn(mx.e, my.a)
            if not self._zero_share(mx):
                z += fn(mx.share, my.e)
        z += t["c"]
        return z

    def mul_masked(self, mx, my):
        return self._bilinear_masked("mul", mx, my, lambda a, b: a * b)

    def matmul_masked(self, mx, my):
        return self._bilinear_masked("matmul", mx, my, ringmm.matmul)

    def conv2d_masked(self, mx, my, **params):
        return self._bilinear_masked("conv2d", mx, my,
                                     lambda a, b: ringmm.conv2d(a, b, **params), params)

    def mul(self, x, y):
        return self._bilinear("mul", x, y, lambda a, b: a * b)

    def matmul(self, x, y):
        return self._bilinear("matmul", x, y, ringmm.matmul)

    def conv2d(self, x, w, **params):
        return self._bilinear("conv2d", x, w, lambda a, b: ringmm.conv2d(a, b, **params),
                              params)

    def trunc(self, x, bits):
        if _uses_local_trunc(self.n, self.config):
            return x >> bits if self.rank == 0 else -((-x) >> bits)
        t = self.provider.get("trunc", shape=list(x.shape), frac=bits)
        ((local, public, _),) = self._trunc_open([x], [t], bits)
        return local.add_(public) if self.rank == 0 else local        # (local: ours)

    def _trunc_open(self, xs, ts, bits):
        """Exact truncation's one round for all of ``xs``: per tensor (this party's share
        of the mask part, the public part, msb(c) 2^(64-bits)); the result is the first
        two's sum."""
        offset = 1 << 62                                   # x' = x + 2^62 lies in [0, 2^63)
        # Opens x' + r with r uniform in Z_2^64 (one r per tensor): discloses nothing.
        # (party 0 adds the public offset in place: one new tensor per x, not two)
        cs = self._open(*((x + t["r"]).add_(offset) if self.rank == 0 else x + t["r"]
                          for x, t in zip(xs, ts)))
        out = []
        for c, t in zip(cs, ts):
            # x' >> bits = (c_low >> bits) - (r_low >> bits) + 2^(63-bits) (c_msb XOR r_msb)
            # (up to the one lost borrow); the XOR is c_msb + r_msb - 2 c_msb r_msb, and the
            # dealer's "low" holds r_msb 2^(63-bits) - (r_low >> bits), "m" holds r_msb for
            # the last term, which only counts times 2^(64-bits) (materials.trunc_pair).
            # c_msb 2^(63-bits) + (c_low >> bits) is c >> bits read unsigned.
            msb_w = (c >> 63) & wrap(1 << (64 - bits))         # c_msb 2^(64-bits)
            local = t["low"].addcmul_(msb_w, t["m"], value=-1)     # (material: used once)
            public = (c >> bits).bitwise_and_((1 << (64 - bits)) - 1).sub_(offset >> bits)
            out.append((local, public, msb_w))
        return out

    @property
    def fuses_truncation(self):
        return not _uses_local_trunc(self.n, self.config)

    def trunc_masked(self, xs, bits):
        if not self.fuses_truncation or bits > MAX_FUSED_FRAC:
            return super().trunc_masked(xs, bits)
        keys = [next(self._mask_keys) for _ in xs]
        ts = [self.provider.get("trunc_keyed", shape=list(x.shape), frac=bits, key=k)
              for x, k in zip(xs, keys)]
        out = []
        for (local, public, msb_w), k in zip(self._trunc_open(xs, ts, bits), keys):
            # y = public + local: ``local`` is this party's share of y's mask, whose pieces
            # the dealer regenerates from the key (materials.beaver_trunc); public is
            # y minus its mask, derived from the opening above: it discloses nothing more.
            out.append(Masked(self.add_public(local, public), public, local, k, bits, 1,
                              msb_w))
        return out

    def _mul_fused(self, mx, my):
        """x * y for masked forms with truncation masks or multipliers (`Masked`): the
        dealer sends each product of mask pieces, the parties weight them publicly."""
        t = self.provider.get("beaver_trunc", op="mul", shape_a=list(mx.e.shape),
                              shape_b=list(my.e.shape), key_a=mx.key, key_b=my.key,
                              frac_a=mx.frac, frac_b=my.frac)
        wa, wb = _piece_weights(mx), _piece_weights(my)
        if mx.a is not None:              # x y = e_x y + A_x e_y + A_x A_y
            z = mx.a * my.e
            if not self._zero_share(my):
                z.addcmul_(mx.e, my.share)
        else:
            z = mx.e * my.a
            if not self._zero_share(mx):
                z.addcmul_(mx.share, my.e)
        for name, _ in fused_pairs(mx.frac, my.frac):
            _add_weighted(z, *_pair_weight(wa[name[0]], wb[name[1]]), t[name])
        return z

    def _masked_low_bits(self, x, w):
        """Open c = (x + r) mod 2^w; return c's and r's bits as packed rows (w, ceil(n/8)).

        Packing 8 elements per byte makes the AND layers below 8x cheaper to compute and
        needs no packing for the wire.
        """
        m = self.provider.get("cmp", shape=list(x.shape), width=w)
        mask = wrap((1 << w) - 1) if w < 64 else -1
        dt = _masked_dtype(w)
        # Opens x + r mod 2^w, r uniform mod 2^w: discloses nothing about x.
        if _split_wire(w):
            c = self._open_split(x + m["r"], w) & mask
        else:
            (c,) = self._open((x + m["r"]).to(dt) if w < 64 else x + m["r"])
            c = c.to(torch.int64) & mask
        return packed_bit_rows(c, w), m["r_bits"]

    def _open_split(self, c, w):
        """Open ring shares mod 2^w (32 < w < 64) in one round, each share sent in w bits:
        its low 32 bits as an int32 and bits 32..w-1 as packed bit rows. Shares do not
        add up piecewise (the low halves carry), so each peer's share is reassembled
        before summing."""
        n, hi_rows = c.numel(), w - 32
        lo = c.to(torch.int32)                                   # wraps: the low 32 bits
        hi = packed_bit_rows(c >> 32, hi_rows)
        fused = self.comm.send_to_all([lo, hi])
        total = c.clone()
        for p in self.comm.parties():
            if p == self.rank:
                continue
            lo_p, hi_p = self.comm.recv_from(p, [lo, hi], fused)
            total += lo_p.to(torch.int64) & 0xFFFFFFFF
            for j in range(hi_rows):
                total += unpack_row(hi_p[j], n).to(torch.int64).reshape(c.shape) << (32 + j)
        return total

    def msb(self, x, width=None):
        c, r = self._masked_low_bits(x, self.check_width(width))
        nr = self.xor_public(r, torch.full_like(r, 0xFF))  # ~r
        g = c[:-1] & nr[:-1]                                 # c AND ~r (c public: local)
        p = self.xor_public(nr[:-1], c[:-1])
        g[0] = g[0] ^ p[0]                                   # carry-in 1: G_0 | P_0
        carry = carry_out(self, g, p)
        packed = self.xor_public(nr[-1] ^ carry, c[-1])
        return unpack_row(packed, x.numel()).reshape(x.shape)

    def eqz(self, x, width=None):
        c, r = self._masked_low_bits(x, _eqz_width(self.config_at(width)))
        same = self.xor_public(r, c ^ 0xFF)                  # c XNOR r, per bit
        return unpack_row(and_all(self, same), x.numel()).reshape(x.shape)

    def and_bits(self, a, b):
        if a.shape != b.shape:        # broadcast: each operand masked and opened once
            t = self.provider.get("and_bcast", shape_a=list(a.shape), shape_b=list(b.shape))
        else:
            t = self.provider.get("and", shape=list(a.shape))
        # Opens a ^ u and b ^ v with uniform u, v: discloses nothing.
        e, f = self._open_words(a ^ t["u"], b ^ t["v"])
        z = t["w"] ^ (e & t["v"]) ^ (f & t["u"])
        return self.xor_public(z, e & f)

    def b2a(self, bits):
        m = self.provider.get("bit", shape=list(bits.shape))
        # Opens bits ^ m with a uniform bit m: discloses nothing.
        (c,), _ = self._open_bits(bits ^ m["m"])
        c = c.to(torch.int64)
        return self.add_public((1 - 2 * c) * m["m_ring"], c)

    def select(self, bits, x):
        m = self.provider.get("select", shape=list(x.shape))
        # Opens bits ^ m and x - a (uniform masks): discloses nothing.
        (c,), (e,) = self._open_bits(bits ^ m["m"], ring=(x - m["a"],))
        # b x = c x + (1 - 2c) [m x] = d + c (x - 2d), d = [m x] = e [m] + [m a]
        return _flip_select(c, x, m["ma"].addcmul_(e, m["m_ring"]))   # (material: ours)

    def select_masked(self, pairs):
        if not pairs:
            return []
        if any(m.e is None or m.a is None or len(m.terms()) > 2
               or any(t.key is None or t.parts or t.e is None or t.e.shape != b.shape
                      for _, t in m.terms()) for b, m in pairs):
            return super().select_masked(pairs)
        ts = []
        for b, m in pairs:
            # one term: the request names it twice, and the dealer reads the first only
            (_, t1), (_, t2) = (m.terms() * 2)[:2]
            ts.append(self.provider.get(
                "select_keyed", shape=list(b.shape), terms=len(m.terms()), key_a=t1.key,
                frac_a=t1.frac, key_b=t2.key, frac_b=t2.frac))
        # Opens each bits ^ m with a uniform bit m: discloses nothing. x is not opened:
        # its mask is known to the dealer (keys), which sends [m * mask piece].
        cs, _ = self._open_bits(*(b ^ t["m"] for (b, _), t in zip(pairs, ts)))
        out = []
        for c, (_, m), t in zip(cs, pairs, ts):
            c = c.to(torch.int64)
            # b x = c x + (1 - 2c) m x, and m x = m e + sum_i c_i (weighted [m * piece])
            mx = m.e * t["m_ring"]
            for i, (coef, term) in enumerate(m.terms()):
                for piece, (k, w) in _piece_weights(term).items():
                    _add_weighted(mx, coef * k, w, t[f"{piece}{i}"])
            out.append(_flip_select(c, m.share, mx))
        return out

    def reveal_bits(self, bits, to=None):
        # Discloses the bits to the receiver(s): the intended output.
        packed = pack_bits(bits)
        if to is None:
            (opened,) = self.comm.all_reduce([packed], xor=(True,))
            return unpack_bits(opened, bits.shape)
        parts = self.comm.gather(packed, to)
        if parts is None:
            return None
        out = bits.clone()
        for p, part in enumerate(parts):
            if p != to:
                out ^= unpack_bits(part, bits.shape)
        return out


__all__ = ["Semi2k", "KERNELS", "RING"]
