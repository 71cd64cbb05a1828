"""The kernel interface every protocol implements, with declared costs.

Required kernels (a new protocol writes these): ``share``, ``reveal``, ``mul``,
``matmul``, ``conv2d``, ``trunc``, ``msb``, ``eqz``, ``and_bits``, ``b2a``, ``select``,
``reveal_bits``. Local linear kernels (``add``, ``neg``, ``add_public``, ``mul_public``,
``xor_public``) are written here once for every additive protocol.

Everything above this layer (functions, tensors, nn, training) is written against these
kernels only. Each kernel declares its online cost as a function of the party count
``n``, this party's ``rank`` and the sizes involved; `tests/test_costs.py` checks that
declared == counted for every kernel, protocol and party count.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Callable

import torch

from ..comm import Communicator
from ..config import Config
from ..offline import Provider
from ..offline.prg import PRG


def compare_width(cfg: Config, width: int | None) -> int:
    """``width`` checked to lie in 2..64, or the config's ``compare_bits`` when None.

    Used by the kernels and by their declared costs, so both read the same width.
    """
    if width is None:
        return cfg.compare_bits
    if isinstance(width, bool) or not isinstance(width, int) or not 2 <= width <= 64:
        raise ValueError(f"a comparison width must be an int in 2..64 (the 64-bit ring), "
                         f"got {width!r}; values needing more bits cannot be compared exactly")
    return width


class ConfigAtWidth:
    """A run's `Config` read at another comparison width: ``compare_bits`` is ``width``,
    every other field is the run's. Lets a kernel's cost and body written against
    ``cfg.compare_bits`` serve a per-call ``width=`` unchanged."""

    __slots__ = ("_cfg", "compare_bits")

    def __init__(self, cfg: Config, width: int) -> None:
        self._cfg, self.compare_bits = cfg, width

    def __getattr__(self, name):
        return getattr(self._cfg, name)


def at_width(cost: Callable[..., "Cost"]) -> Callable[..., "Cost"]:
    """A comparison kernel's declared cost with a ``width=`` size (None: compare_bits)."""
    def cost_at(n, rank, cfg, numel, width=None):
        return cost(n, rank, ConfigAtWidth(cfg, compare_width(cfg, width)), numel)
    return cost_at


@dataclass(frozen=True)
class Cost:
    rounds: int
    bytes_sent: int


@dataclass
class Masked:
    """A tensor opened once under a mask, ready for any number of products (``mask``).

    ``share``: this party's share of x; ``e``: the public x - A (None where a protocol
    opens nothing, e.g. rep3's fallback); ``a``: this party's share of the mask A (may be
    dropped once unneeded: a fixed weight keeps only ``e``); ``key``: the mask's number,
    which names A to the dealer. Never repr'd with values.

    A mask may also be what a truncation left (semi2k ``trunc_masked``, ``frac`` > 0):
    A = mult (L - msb_w M) with dealer-known pieces L, M of the truncation's keyed mask
    and the public weight ``msb_w`` = msb(c) 2^(64-frac). ``mult`` is the
    public integer a masked value was multiplied by since (`Protocol.masked_affine`).

    ``parts``: a linear combination of masked tensors (`Protocol.masked_combine`) has no
    key of its own; its mask is sum c_i A_i over the ``(c_i, Masked)`` pairs listed.

    Owner-aware products (`Protocol.mask_to`): ``held`` names the party whose share is
    the whole value (every other share is zero: a model weight shared by
    `Protocol.share_held`); ``to`` marks a tensor opened to that party alone: ``e`` is
    set there only, and the mask's share there is zero (``a`` is None).
    """
    share: object
    e: torch.Tensor | None = None
    a: torch.Tensor | None = None
    key: int | None = None
    frac: int = 0
    mult: int = 1
    msb_w: torch.Tensor | None = None
    parts: tuple = ()
    held: int | None = None
    to: int | None = None

    def terms(self) -> tuple:
        """(coefficient, single-key Masked) pairs whose weighted sum is this mask."""
        return self.parts or ((1, self),)

    def __repr__(self) -> str:
        return f"Masked(key={self.key}, <secret>)"


# A share tensor that a fused truncation made carries its masked form, so a product in
# another op (the GELU after a Linear, a LayerNorm's scale after its normalisation)
# opens nothing new. Stored without the share itself (no reference cycle), without the
# mask share, which is the share minus the public part at party 0 and the share itself
# elsewhere, and with msb(c) as one byte per element instead of its 8-byte weight
# msb(c) 2^(64-frac); with the share's version: an in-place change of the share drops it.
_CARRIED = "_veil_masked"


def carry(m: Masked, party0: bool) -> torch.Tensor:
    """Attach ``m`` (opened, single key) to its share tensor; returns the share.
    ``party0``: whether this party holds the public part in its share (add_public)."""
    if m.e is not None and m.key is not None and not m.parts:
        msb = None if m.msb_w is None else m.msb_w != 0
        kept = Masked(None, m.e, None, m.key, m.frac, m.mult, msb)
        setattr(m.share, _CARRIED, (kept, m.share._version, party0))
    return m.share


def carry_reshaped(src, dst) -> None:
    """``dst``, a row-major reshape of ``src``, carries src's truncation mask reshaped
    (a truncation mask is keyed by its element count: materials.trunc_label). Either may
    be None (a tensor with bit shares only): nothing to carry."""
    if src is None or dst is None:
        return
    got = getattr(src, _CARRIED, None)
    if got is None or got[1] != src._version or got[0].frac == 0 \
            or not src.is_contiguous() or dst.numel() != src.numel():
        return
    k, shape = got[0], dst.shape
    kept = Masked(None, k.e.reshape(shape), None, k.key, k.frac, k.mult,
                  k.msb_w.reshape(shape))          # (msb(c) as bools: see `carry`)
    setattr(dst, _CARRIED, (kept, dst._version, got[2]))


def carried(t) -> Masked | None:
    """The masked form a share tensor carries (`carry`), or None (none, or changed since)."""
    got = getattr(t, _CARRIED, None)
    if got is None or got[1] != t._version:
        return None
    k, party0 = got[0], got[2]
    msb_w = None if k.msb_w is None else k.msb_w.to(torch.int64) << (64 - k.frac)
    return Masked(t, k.e, t - k.e if party0 else t, k.key, k.frac, k.mult, msb_w)


def carried_key(t) -> int | None:
    """The key of the masked form a share tensor carries (`carry`), or None; computes
    nothing (`carried` rebuilds the form)."""
    got = getattr(t, _CARRIED, None)
    return None if got is None or got[1] != t._version else got[0].key


def _flat_apply(fn, *lists) -> list:
    """``fn`` on the flattened concatenation of each list of tensors (lists shaped
    alike), its flat result split back to the first list's shapes: one kernel call, one
    round, for many tensors."""
    flat = fn([torch.cat([t.reshape(-1) for t in ts]) for ts in lists])
    out, at = [], 0
    for t in lists[0]:
        out.append(flat[at:at + t.numel()].reshape(t.shape))
        at += t.numel()
    return out


def _keeps_shape(x: torch.Tensor, c: torch.Tensor) -> bool:
    """Whether x op c has x's shape and dtype (so a party adding zeros may copy x)."""
    if c.dtype != x.dtype or c.dim() > x.dim():
        return False
    # c's dims, aligned right, are 1 or x's (torch.broadcast_shapes costs ~40 us a call)
    return all(d == 1 or d == e for d, e in zip(reversed(c.shape), reversed(x.shape)))


@dataclass(frozen=True)
class Kernel:
    """One entry of a protocol's kernel table: its name and its declared online cost."""
    name: str
    cost: Callable[..., Cost]
    doc: str = ""


class Protocol(ABC):
    """A protocol instance serves one party of one run.

    ``pair_prgs[j]`` is the PRG this party shares with party ``j`` (j != rank).
    """

    name: str = "?"
    kernels: dict[str, Kernel] = {}
    #: whether runs start a trusted dealer process/thread for this protocol
    needs_dealer: bool = True
    #: the party counts the protocol supports (None: any)
    party_counts: tuple[int, ...] | None = None

    def __init__(self, comm: Communicator, provider: Provider, config: Config,
                 pair_prgs: dict[int, PRG]) -> None:
        self.comm, self.provider, self.config = comm, provider, config
        self.pair_prgs = pair_prgs
        self.rank, self.n = comm.rank, comm.world_size

    def declared_cost(self, kernel: str, **sizes) -> Cost:
        return self.kernels[kernel].cost(n=self.n, rank=self.rank, cfg=self.config, **sizes)

    # -- required kernels -------------------------------------------------------------
    @abstractmethod
    def share(self, value: torch.Tensor | None, owner: int, shape) -> torch.Tensor: ...

    @abstractmethod
    def reveal(self, x: torch.Tensor, to: int | None = None) -> torch.Tensor | None: ...

    @abstractmethod
    def mul(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor: ...

    @abstractmethod
    def matmul(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor: ...

    @abstractmethod
    def conv2d(self, x: torch.Tensor, w: torch.Tensor, **params) -> torch.Tensor: ...

    @abstractmethod
    def trunc(self, x: torch.Tensor, bits: int) -> torch.Tensor: ...

    @abstractmethod
    def msb(self, x: torch.Tensor, width: int | None = None) -> torch.Tensor:
        """XOR-shared bit: 1 where x < 0, exact for |x| < 2^(width-1).

        ``width`` (2..64, default ``config.compare_bits``) is the number of low ring bits
        the comparison reads: narrower is cheaper (rounds and bytes follow it, see the
        kernel table), wider covers larger values. Values beyond the width wrap, so the
        caller states a width its operands' bound fits (`check_width`).
        """

    @abstractmethod
    def eqz(self, x: torch.Tensor, width: int | None = None) -> torch.Tensor:
        """XOR-shared bit: 1 where x == 0; exact for |x| < 2^(width-1), like msb
        (semi2k decides it on the low width - 1 bits)."""

    def check_width(self, width: int | None) -> int:
        """The comparison width a kernel call runs at: ``width`` or ``config.compare_bits``.

        Refuses widths outside 2..64 (the ring has 64 bits; one bit is the sign).
        """
        return compare_width(self.config, width)

    def config_at(self, width: int | None) -> "Config | ConfigAtWidth":
        """This run's config read at the comparison width of one kernel call."""
        return ConfigAtWidth(self.config, self.check_width(width))

    @abstractmethod
    def and_bits(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor: ...

    @abstractmethod
    def b2a(self, bits: torch.Tensor) -> torch.Tensor: ...

    @abstractmethod
    def select(self, bits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Ring shares of x * bit (bit XOR-shared, same shape as x)."""

    @abstractmethod
    def reveal_bits(self, bits: torch.Tensor, to: int | None = None) -> torch.Tensor | None: ...

    # -- fused fixed-point products: a protocol may override to save a round -------------
    def mul_trunc(self, x: torch.Tensor, y: torch.Tensor, bits: int) -> torch.Tensor:
        """trunc(mul(x, y), bits); rep3 truncates inside the product's reshare."""
        z = self.mul(x, y)
        return self.trunc(z, bits) if bits else z

    def matmul_trunc(self, x: torch.Tensor, y: torch.Tensor, bits: int) -> torch.Tensor:
        z = self.matmul(x, y)
        return self.trunc(z, bits) if bits else z

    # -- open once, multiply many times: a protocol may override to save traffic ---------
    @property
    def reuses_openings(self) -> bool:
        """Whether ``mask`` really opens (the protocol overrides it): callers then open a
        tensor once for all its products instead of using the batched ordinary kernels."""
        return type(self).mask is not Protocol.mask

    def mask(self, *xs) -> list[Masked]:
        """Prepare tensors for products that reuse one opening each (semi2k opens x - A
        for a keyed mask A, one round for all of ``xs``). The fallback opens nothing and
        the ``*_masked`` products below are the ordinary kernels."""
        return [Masked(x) for x in xs]

    def share_held(self, value: torch.Tensor | None, owner: int, shape):
        """(share, holder) of a value the owner shares so that a product with it can be
        owner-aware: semi2k gives the owner the whole value and every other party a zero
        share (holder = owner); the fallback is ``share`` (holder None). A zero share
        tells its party nothing (it is independent of the value), but it is not uniform:
        use it only for values the owner keeps in the clear anyway (its model weights)."""
        return self.share(value, owner, shape), None

    def mask_to(self, to: int, *xs) -> list[Masked]:
        """Masked forms opened to party ``to`` only, for products with a tensor ``to``
        holds (`share_held`): semi2k has every other party send x_i - A_i to ``to`` (one
        direction, one round), with ``to``'s share of A zero. The fallback is ``mask``."""
        return self.mask(*xs)

    @property
    def fuses_truncation(self) -> bool:
        """Whether ``trunc_masked`` leaves its results masked for free products (the
        protocol overrides it): callers then register the results as opened."""
        return False

    def trunc_masked(self, xs: list, bits: int) -> list[Masked]:
        """Truncate each tensor of ``xs`` (one round for all) and return them masked, so
        an elementwise product with a result opens nothing new (semi2k: the truncation's
        own opening is the product's). The fallback truncates all in one call and
        opens nothing."""
        if len(xs) == 1:
            return [Masked(self.trunc(xs[0], bits))]
        return [Masked(t) for t in _flat_apply(lambda f: self.trunc(f[0], bits), xs)]

    def masked_affine(self, mx: Masked, mult: int, const: torch.Tensor | None) -> Masked:
        """mult * x + const (public int and ring constant) with its masked form: the mask
        scales by ``mult``, the public part takes the constant; no traffic."""
        if mx.parts:
            return self.masked_combine([(mult, mx)], const)
        share = mx.share * mult
        if const is not None:
            share = self.add_public(share, const)
        if mx.e is None:
            return Masked(share)
        e = mx.e * mult if const is None else mx.e * mult + const
        return Masked(share, e, None if mx.a is None else mx.a * mult, mx.key, mx.frac,
                      mx.mult * mult, mx.msb_w)

    def masked_combine(self, terms: list, const: torch.Tensor | None = None) -> Masked:
        """sum c_i x_i + const for (public int c_i, Masked x_i) pairs, with its masked
        form (the mask is sum c_i A_i: `Masked.parts`); no traffic."""
        share = sum(c * m.share for c, m in terms)
        if const is not None:
            share = self.add_public(share, const)
        if any(m.e is None or m.a is None for _, m in terms):
            return Masked(share)
        e = sum(c * m.e for c, m in terms)
        parts = tuple((c * c2, m2) for c, m in terms for c2, m2 in m.terms())
        return Masked(share, e if const is None else e + const,
                      sum(c * m.a for c, m in terms), parts=parts)

    def select_masked(self, pairs: list) -> list:
        """bit * x for (XOR-shared bits, Masked x) pairs, one round for all (semi2k opens
        only the bits when each x's mask is the dealer's to know). The fallback is one
        ordinary ``select`` of all pairs."""
        if not pairs:
            return []
        return _flat_apply(lambda f: self.select(*f), [b for b, _ in pairs],
                           [m.share for _, m in pairs])

    def mul_masked(self, mx: Masked, my: Masked):
        return self.mul(mx.share, my.share)

    def matmul_masked(self, mx: Masked, my: Masked):
        return self.matmul(mx.share, my.share)

    def conv2d_masked(self, mx: Masked, my: Masked, **params):
        return self.conv2d(mx.share, my.share, **params)

    # -- local linear kernels, shared by all additive protocols --------------------------
    def add_public(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Add a public ring value: party 0 adds it, the others broadcast to the shape
        (a new tensor at every party)."""
        if self.rank == 0:
            return x + c
        return x.clone() if _keeps_shape(x, c) else x + torch.zeros_like(c)

    def xor_public(self, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        if self.rank == 0:
            return b ^ c
        return b.clone() if _keeps_shape(b, c) else b ^ torch.zeros_like(c)

    def and_bit_elements(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """AND of XOR-shared 0/1 elements: packed 8 per byte for one ``and_bits`` call."""
        from ..ring import pack_rows, unpack_row
        a, b = torch.broadcast_tensors(a, b)
        n = a.numel()
        z = self.and_bits(pack_rows(a.reshape(1, -1)), pack_rows(b.reshape(1, -1)))
        return unpack_row(z[0], n).reshape(a.shape)

    def zeros(self, shape) -> torch.Tensor:
        return torch.zeros(shape, dtype=torch.int64)
