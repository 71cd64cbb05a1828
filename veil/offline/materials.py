"""Kinds of correlated randomness, described once and used by party and dealer alike.

A kind is a recipe: some *random* parts every party draws from its dealer-shared PRG,
and some *derived* parts, functions of the reconstructed random values. For a derived
part, every party but one draws its share from the PRG too and that one receives the
correction from the dealer (which party rotates: veil.offline.dealer.receiver), so only
one party's derived shares cost traffic.

A part with a ``key`` is *keyed*: it is drawn from a PRG forked off the dealer-shared seed
by that key (`PRG.fork`), not from the stream, so the dealer and the party can both
regenerate the same value for the same key at any later time without storing it. A
recipe's ``keyed`` parts are drawn by the dealer only (inputs to ``derive`` the party
already holds or does not need); keyed parts among ``randoms`` are drawn by both.

Parts live in one of three domains: ``ring`` (additive shares in Z_2^64), ``bits``
(XOR shares, one 0/1 uint8 per bit) or ``bytes`` (XOR shares of packed bits: every bit of
every uint8 is an independent shared bit). A ring part with ``width`` w < 64 is only
meaningful mod 2^w (its user multiplies it by 2^(64-w) or more): the correction
then travels in w bits (int16 / int32, `wire_dtype`) and is sign-extended on arrival,
which leaves it right mod 2^w.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from .. import ringmm
from ..ring import broadcast_shape, numel, packed_bit_rows, packed_len

RING, BITS, BYTES = "ring", "bits", "bytes"
XOR_DOMAINS = (BITS, BYTES)


@dataclass(frozen=True)
class Part:
    name: str
    shape: tuple
    domain: str
    key: str | None = None        # keyed: drawn from PRG.fork(key), not from the stream
    width: int = 64               # ring parts: shares meaningful mod 2^width only
    skip: int | None = None       # keyed: the party whose share is zero (not drawn)


def wire_dtype(part: Part) -> torch.dtype:
    """The dtype the receiving party's share of ``part`` travels in from the dealer."""
    if part.domain != RING:
        return torch.uint8
    return torch.int16 if part.width <= 16 else torch.int32 if part.width <= 32 else torch.int64


@dataclass(frozen=True)
class Recipe:
    randoms: tuple[Part, ...]
    derived: tuple[Part, ...]
    derive: Callable[[dict], dict]
    keyed: tuple[Part, ...] = ()  # keyed parts only the dealer draws (see module doc)


_KINDS: dict[str, Callable[..., Recipe]] = {}


def register_kind(name: str):
    """Add a kind of correlated randomness; a name can be registered once only."""
    def deco(factory):
        if name in _KINDS:
            raise ValueError(f"material kind {name!r} is already registered")
        _KINDS[name] = factory
        return factory
    return deco


def recipe(kind: str, args: dict) -> Recipe:
    try:
        factory = _KINDS[kind]
    except KeyError:
        raise ValueError(f"unknown material kind {kind!r}; known: {sorted(_KINDS)}") from None
    return factory(**args)


def _shape(s) -> tuple:
    return tuple(int(d) for d in s)


_BILINEAR = {
    "mul": lambda a, b, **_: a * b,
    "matmul": lambda a, b, **_: ringmm.matmul(a, b),
    "conv2d": lambda a, b, **kw: ringmm.conv2d(a, b, **kw),
}


def _matmul_shape(a: tuple, b: tuple) -> tuple:
    """torch.matmul's output shape (1-D operands are promoted and the extra dim dropped)."""
    a2 = (1, *a) if len(a) == 1 else a
    b2 = (*b, 1) if len(b) == 1 else b
    batch = broadcast_shape(a2[:-2], b2[:-2])
    out = (*batch, a2[-2], b2[-1])
    if len(a) == 1:
        out = out[:-2] + out[-1:]
    if len(b) == 1:
        out = out[:-1]
    return out


def _conv2d_shape(a: tuple, b: tuple, stride=1, padding=0, dilation=1, groups=1) -> tuple:
    pair = lambda v: tuple(v) if isinstance(v, (list, tuple)) else (v, v)  # noqa: E731
    (sh, sw), (dh, dw) = pair(stride), pair(dilation)
    kh, kw = b[-2:]
    if padding == "same":
        return (*a[:-3], b[0], a[-2], a[-1])
    ph, pw = (0, 0) if padding == "valid" else pair(padding)
    h = (a[-2] + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    w = (a[-1] + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    return (*a[:-3], b[0], h, w)


# Output shapes without computing anything (meta tensors would import torch._dynamo,
# seconds on first use).
_SHAPES = {
    "mul": lambda a, b, **_: broadcast_shape(a, b),
    "matmul": lambda a, b, **_: _matmul_shape(a, b),
    "conv2d": _conv2d_shape,
}


@register_kind("beaver")
def beaver(op: str, shape_a, shape_b, params: dict | None = None) -> Recipe:
    """Beaver triple for a bilinear op: random a, b and c = op(a, b) (Beaver 1991)."""
    params = params or {}
    fn = _BILINEAR[op]
    shape_a, shape_b = _shape(shape_a), _shape(shape_b)
    shape_c = _SHAPES[op](shape_a, shape_b, **params)
    return Recipe(
        randoms=(Part("a", shape_a, RING), Part("b", shape_b, RING)),
        derived=(Part("c", shape_c, RING),),
        derive=lambda v: {"c": fn(v["a"], v["b"], **params)})


def mask_label(key: int, shape: tuple) -> str:
    """The fork label of the keyed mask ``key``: the shape is part of it, so a request
    naming a key with another shape gets an unrelated mask, never a slice of this one."""
    return f"mask|{int(key)}|{'x'.join(str(int(d)) for d in shape)}"


@register_kind("mask")
def keyed_mask(shape, key: int) -> Recipe:
    """A uniform ring mask named by ``key``: every party draws its share of it from its
    dealer seed forked by the key, so it costs no traffic and the dealer can regenerate
    the same mask later (for ``beaver_keyed``) without storing it."""
    shape = _shape(shape)
    return Recipe(randoms=(Part("a", shape, RING, mask_label(key, shape)),), derived=(),
                  derive=lambda v: {})


@register_kind("beaver_keyed")
def beaver_keyed(op: str, shape_a, shape_b, key_a: int, key_b: int,
                 params: dict | None = None, to_a: int | None = None,
                 to_b: int | None = None) -> Recipe:
    """c = op(A, B) for the keyed masks A (``key_a``) and B (``key_b``) of two tensors
    already opened as x - A and y - B (semi2k's ``mask``): a product of them needs no
    further opening. The dealer regenerates A and B from their keys (no state kept).
    ``to_a`` / ``to_b``: that mask was opened to one party alone (semi2k ``mask_to``),
    whose share of it is zero: the dealer sums the other parties' draws."""
    params = params or {}
    fn = _BILINEAR[op]
    shape_a, shape_b = _shape(shape_a), _shape(shape_b)
    shape_c = _SHAPES[op](shape_a, shape_b, **params)
    return Recipe(
        randoms=(), derived=(Part("c", shape_c, RING),),
        derive=lambda v: {"c": fn(v["a"], v["b"], **params)},
        keyed=(Part("a", shape_a, RING, mask_label(key_a, shape_a), skip=to_a),
               Part("b", shape_b, RING, mask_label(key_b, shape_b), skip=to_b)))


@register_kind("and")
def and_triple(shape) -> Recipe:
    """Binary Beaver triple on packed bits (uint8 words): u, v, w = u AND v."""
    shape = _shape(shape)
    return Recipe(
        randoms=(Part("u", shape, BYTES), Part("v", shape, BYTES)),
        derived=(Part("w", shape, BYTES),),
        derive=lambda v: {"w": v["u"] & v["v"]})


@register_kind("and_bcast")
def and_broadcast(shape_a, shape_b) -> Recipe:
    """Binary Beaver triple for operands that broadcast: u (shape_a), v (shape_b) and
    w = u AND v (the broadcast shape); an operand row shared by several ANDs is masked
    and opened once."""
    shape_a, shape_b = _shape(shape_a), _shape(shape_b)
    return Recipe(
        randoms=(Part("u", shape_a, BYTES), Part("v", shape_b, BYTES)),
        derived=(Part("w", broadcast_shape(shape_a, shape_b), BYTES),),
        derive=lambda v: {"w": v["u"] & v["v"]})


@register_kind("trunc")
def trunc_pair(shape, frac: int) -> Recipe:
    """Mask r with what exact truncation by 2^frac needs from msb(r) and r mod 2^63:

    ``low`` = [msb(r) 2^(63-frac) - ((r mod 2^63) >> frac)] and ``m`` = [msb(r)], which
    semi2k only uses as msb(c) m 2^(64-frac): its shares are meaningful mod 2^frac, so
    the receiving party's travels in 2 bytes (frac <= 16) or 4 (<= 32): 10 or 12 dealer
    bytes per element instead of 16 for two full ring shares. The receiver's m is the dealer's
    msb(r) minus the others' uniform PRG draws: uniform mod 2^frac, it discloses nothing.
    """
    shape = _shape(shape)
    return Recipe(
        randoms=(Part("r", shape, RING),),
        derived=(Part("m", shape, RING, width=frac), Part("low", shape, RING)),
        derive=lambda v: _trunc_derive(v["r"], frac))


def _trunc_derive(r: torch.Tensor, frac: int) -> dict:
    # msb(r) 2^(63-frac) - ((r mod 2^63) >> frac) is -(r >> frac) with r read signed
    # (the arithmetic shift subtracts msb(r) 2^(64-frac)): two tensor ops, not six
    return {"m": (r >> 63) & 1, "low": (r >> frac).neg_()}


# Fused truncation (semi2k ``trunc_masked``): a truncation whose mask r is keyed, so the
# dealer can later regenerate r and make product material for the truncated value.
MAX_FUSED_FRAC = 62       # exact truncation's range: |x| < 2^62


def trunc_label(key: int, shape: tuple, frac: int) -> str:
    """Fork label of a keyed truncation mask (distinct from `mask_label`'s). It names the
    element count, not the shape: the mask drawn at any shape of that count is the same
    values in row-major order, so a reshaped truncation result keeps its mask (the
    tensor layer carries it through order-keeping reshapes only)."""
    return f"tmask|{int(key)}|{int(frac)}|{numel(shape)}"


def _keyed_label(key: int, shape: tuple, frac: int) -> str:
    """The fork label of a keyed mask's r: a uniform mask's (frac 0) or a truncation's."""
    return mask_label(key, shape) if frac == 0 else trunc_label(key, shape, frac)


def _check_fused_frac(frac: int, zero_ok: bool = False) -> int:
    if not (zero_ok and frac == 0) and not 1 <= frac <= MAX_FUSED_FRAC:
        raise ValueError(f"a fused truncation shifts 1..{MAX_FUSED_FRAC} bits, got {frac}")
    return frac


@register_kind("trunc_keyed")
def trunc_keyed(shape, frac: int, key: int) -> Recipe:
    """`trunc_pair` with r drawn from the fork ``key`` (`trunc_label`): the truncated
    value y = public + (low - msb(c) m 2^(64-frac)) then has a mask the dealer can
    regenerate, and a product with y needs no opening of y (``beaver_trunc``)."""
    shape, frac = _shape(shape), _check_fused_frac(frac)
    return Recipe(
        randoms=(Part("r", shape, RING, trunc_label(key, shape, frac)),),
        derived=(Part("m", shape, RING, width=frac), Part("low", shape, RING)),
        derive=lambda v: _trunc_derive(v["r"], frac))


def fused_components(frac: int) -> tuple[str, ...]:
    """The dealer-known pieces of a keyed mask: a uniform mask is one piece ``A``; a
    truncation's (frac > 0) is ``L`` (its low part) and ``M`` (msb(r), which only ever
    counts times a multiple of 2^(64-frac))."""
    return ("A",) if frac == 0 else ("L", "M")


def fused_pairs(frac_a: int, frac_b: int) -> list[tuple[str, int]]:
    """(part name, width) of every product of pieces ``beaver_trunc`` makes. An M piece
    counts times a multiple of 2^(64-frac), so a product with one M is only needed mod
    2^frac of that side (it travels narrow), and M times M mod 2^(frac_a+frac_b-64):
    not at all where the two shifts add up to 64 bits or less."""
    out = []
    for i in fused_components(frac_a):
        for j in fused_components(frac_b):
            if i == "M" and j == "M":
                width = frac_a + frac_b - 64
            else:
                width = frac_a if i == "M" else frac_b if j == "M" else 64
            if width > 0:
                out.append((i + j, width))
    return out


def _pieces(r: torch.Tensor, frac: int) -> dict:
    if frac == 0:
        return {"A": r}
    d = _trunc_derive(r, frac)
    return {"L": d["low"], "M": d["m"]}


@register_kind("beaver_trunc")
def beaver_trunc(op: str, shape_a, shape_b, key_a: int, key_b: int, frac_a: int,
                 frac_b: int) -> Recipe:
    """Products of the pieces of two keyed masks (`fused_components`), for an
    elementwise product of tensors whose masked forms are known without a new opening:
    a ``mask`` (frac 0) or a ``trunc_keyed`` truncation (frac > 0). The parties weight
    each piece product by public values (semi2k ``mul_masked``)."""
    if op != "mul":
        raise ValueError("beaver_trunc serves elementwise products only")
    shape_a, shape_b = _shape(shape_a), _shape(shape_b)
    frac_a, frac_b = _check_fused_frac(frac_a, True), _check_fused_frac(frac_b, True)
    shape_c = broadcast_shape(shape_a, shape_b)

    def derive(v):
        pa, pb = _pieces(v["ra"], frac_a), _pieces(v["rb"], frac_b)
        return {name: pa[name[0]] * pb[name[1]] for name, _ in fused_pairs(frac_a, frac_b)}

    return Recipe(
        randoms=(),
        derived=tuple(Part(name, shape_c, RING, width=w) for name, w in fused_pairs(frac_a, frac_b)),
        derive=derive,
        keyed=(Part("ra", shape_a, RING, _keyed_label(key_a, shape_a, frac_a)),
               Part("rb", shape_b, RING, _keyed_label(key_b, shape_b, frac_b))))


@register_kind("select_keyed")
def select_keyed(shape, terms: int, key_a: int, frac_a: int, key_b: int, frac_b: int
                 ) -> Recipe:
    """daBit m with [m * piece] for every piece (`fused_components`) of one or two keyed
    masks (``terms``; the second's key and frac are ignored for one): multiplies by a
    secret bit a value whose mask the dealer knows, opening only the bit (semi2k
    ``select_masked``). Parts ``L0``, ``M0``, ``A1``, ...: piece, then term index."""
    shape = _shape(shape)
    if terms not in (1, 2):
        raise ValueError(f"select_keyed takes 1 or 2 masks, got {terms}")
    masks = [(key_a, _check_fused_frac(frac_a, True)), (key_b, _check_fused_frac(frac_b, True))]
    masks = masks[:terms]
    names = [(f"{piece}{i}", frac if piece == "M" else 64)
             for i, (_, frac) in enumerate(masks) for piece in fused_components(frac)]

    def derive(v):
        m = v["m"].to(torch.int64)
        out = {"m_ring": m}
        for i, (_, frac) in enumerate(masks):
            for piece, value in _pieces(v[f"r{i}"], frac).items():
                out[f"{piece}{i}"] = m * value
        return out

    return Recipe(
        randoms=(Part("m", shape, BITS),),
        derived=(Part("m_ring", shape, RING),
                 *(Part(name, shape, RING, width=w) for name, w in names)),
        derive=derive,
        keyed=tuple(Part(f"r{i}", shape, RING, _keyed_label(k, shape, f))
                    for i, (k, f) in enumerate(masks)))


@register_kind("cmp")
def compare_mask(shape, width: int) -> Recipe:
    """Mask r (ring) with XOR shares of the low ``width`` bits of r, as packed rows.

    ``r_bits`` has shape (width, ceil(numel / 8)): row j packs bit j of every element.
    """
    shape = _shape(shape)
    return Recipe(
        randoms=(Part("r", shape, RING),),
        derived=(Part("r_bits", (width, packed_len(numel(shape))), BYTES),),
        derive=lambda v: {"r_bits": packed_bit_rows(v["r"], width)})


@register_kind("bit")
def bit_mask(shape) -> Recipe:
    """A random bit m, XOR-shared and additively shared (a daBit)."""
    shape = _shape(shape)
    return Recipe(
        randoms=(Part("m", shape, BITS),),
        derived=(Part("m_ring", shape, RING),),
        derive=lambda v: {"m_ring": v["m"].to(torch.int64)})


@register_kind("select")
def select_mask(shape) -> Recipe:
    """daBit m with a ring mask a and [m * a]: multiply a secret by a secret bit in 1 round."""
    shape = _shape(shape)
    return Recipe(
        randoms=(Part("m", shape, BITS), Part("a", shape, RING)),
        derived=(Part("m_ring", shape, RING), Part("ma", shape, RING)),
        derive=lambda v: {"m_ring": v["m"].to(torch.int64),
                          "ma": v["m"].to(torch.int64) * v["a"]})


def combine(domain: str, shares: list[torch.Tensor], owned: bool = False) -> torch.Tensor:
    """Reconstruct a value from all shares of it: a new tensor, the shares kept, or with
    ``owned`` (fresh draws the caller gives up) summed into the first share, which saves
    the dealer an allocation and its page faults per part."""
    if len(shares) == 1:
        return shares[0] if owned else shares[0].clone()
    xor = domain in XOR_DOMAINS
    if owned:
        out = shares[0].bitwise_xor_(shares[1]) if xor else shares[0].add_(shares[1])
    else:
        out = shares[0] ^ shares[1] if xor else shares[0] + shares[1]
    for s in shares[2:]:
        if xor:
            out ^= s
        else:
            out += s
    return out


def correction(domain: str, value: torch.Tensor, others: list[torch.Tensor],
               owned: bool = False) -> torch.Tensor:
    """The receiving party's share making the shares reconstruct to ``value``: a new
    tensor, or with ``owned`` (the caller gives ``value`` up) computed in place."""
    if not others:
        return value if owned else value.clone()
    xor = domain in XOR_DOMAINS
    if owned:
        out = value.bitwise_xor_(others[0]) if xor else value.sub_(others[0])
    else:
        out = value ^ others[0] if xor else value - others[0]
    for s in others[1:]:
        if xor:
            out ^= s
        else:
            out -= s
    return out


__all__ = ["mask_label", "trunc_label", "fused_components", "fused_pairs", "MAX_FUSED_FRAC",
           "Part", "Recipe", "RING", "BITS", "BYTES", "XOR_DOMAINS", "register_kind",
           "recipe", "combine", "correction", "wire_dtype"]
