"""Share-level building blocks the smooth functions are written with.

Every value here is this party's additive ring share (int64) of a fixed-point number at
the run's scale ``F = Config.frac_bits`` unless a name says otherwise. The helpers batch
what a round can carry: all products of one polynomial layer go out in ONE ``mul`` call
and come back through ONE ``trunc`` call, all thresholds of a range reduction in ONE
``msb`` call (SecretFlow-SPU and CrypTen both batch this way), so a function's round
count is its circuit depth, not its operation count.

Costs (semi2k): ``mul`` 1 round, ``trunc`` 1 (exact, the default at every party count;
0 under the 2-party opt-in ``Config(truncation="local")``), ``msb`` 6, ``select`` 1,
``b2a`` 1. Since a truncation is a round, the helpers keep values untruncated where the
ring has room and truncate several of them in one call (``raw`` results, `newton_reciprocal`).

On truncation failures: the opt-in 2-party local truncation (SecureML, Mohassel & Zhang
2017) is wrong with probability |v| / 2^64 for a ring value v; under it the algorithms
keep every value they truncate small (typically |v| < 2^36, i.e. < 16 at scale 2F) and
skip the folds that would truncate 2^F larger values (`local_truncation`).
"""

from __future__ import annotations

import math

import torch

from ..context import current
from ..errors import ProtocolUsageError
from ..protocols.base import carried, carry, carry_reshaped
from ..ring import broadcast_shape, is_float
from ..tensor.core import proto
from ..tensor.fixed import reuses_openings

ONE_BIT = torch.ones((), dtype=torch.uint8)


def F() -> int:
    """Fractional bits of the run (every internal value uses this scale)."""
    return current().config.frac_bits


def enc(c: float, frac: int | None = None) -> int:
    """A public real as a ring integer at scale ``frac`` (default F)."""
    return int(round(float(c) * 2 ** (F() if frac is None else frac)))


def _encoded(c, frac: int | None = None) -> torch.Tensor:
    """A public constant (number or tensor) as ring integers at scale ``frac`` (default F)."""
    f = F() if frac is None else frac
    return torch.round(torch.as_tensor(c, dtype=torch.float64) * 2.0 ** f).to(torch.int64)


def lift(c, like: torch.Tensor, frac: int | None = None) -> torch.Tensor:
    """A public constant (number or tensor) as a share shaped like ``like`` (party 0 holds it)."""
    return proto().add_public(torch.zeros_like(like), _encoded(c, frac).expand(like.shape))


def add_const(x: torch.Tensor, c, frac: int | None = None) -> torch.Tensor:
    return proto().add_public(x, _encoded(c, frac))


# -- batching --------------------------------------------------------------------------
def _cat(ts: list[torch.Tensor]) -> tuple[torch.Tensor, list]:
    shapes = [t.shape for t in ts]
    if len(ts) == 1:
        return ts[0].reshape(-1), shapes
    return torch.cat([t.reshape(-1) for t in ts]), shapes


def _split(flat: torch.Tensor, shapes) -> list[torch.Tensor]:
    out, at = [], 0
    for s in shapes:
        n = math.prod(s)
        out.append(flat[at:at + n].reshape(s))
        at += n
    return out


def _batched(kernel, pairs: list[tuple[torch.Tensor, torch.Tensor]]) -> list[torch.Tensor]:
    """Apply an elementwise two-input kernel to many pairs in one call (one round)."""
    if not pairs:
        return []
    a_list, b_list = [], []
    for a, b in pairs:
        a, b = torch.broadcast_tensors(a, b)
        a_list.append(a)
        b_list.append(b)
    a_flat, shapes = _cat(a_list)
    b_flat, _ = _cat(b_list)
    return _split(kernel(a_flat.contiguous(), b_flat.contiguous()), shapes)


def products(pairs: list[tuple[torch.Tensor, torch.Tensor]]) -> list[torch.Tensor]:
    """Untruncated products a*b of share pairs, all in one ``mul`` call (one round)."""
    return _batched(proto().mul, pairs)


def products_common(a: torch.Tensor, bs: list[torch.Tensor]) -> list[torch.Tensor]:
    """Untruncated a * b for every b, in one ``mul`` call that opens ``a`` only once.

    The Beaver product broadcasts (a: (1, n), b: (k, n)), so a shared factor is masked
    and sent once: (k + 1) n values on the wire instead of 2 k n. A Chebyshev layer is
    all products of T_h, the layer's highest known term, with lower terms.
    """
    if len(bs) == 1:
        return products([(a, bs[0])])
    shape = broadcast_shape(a.shape, *(b.shape for b in bs))
    a_flat = a.expand(shape).reshape(1, -1)
    b_flat = torch.stack([b.expand(shape).reshape(-1) for b in bs])
    z = proto().mul(a_flat.contiguous(), b_flat.contiguous())
    return [row.reshape(shape) for row in z]


def reshaped(t: torch.Tensor, shape) -> torch.Tensor:
    """t.reshape(shape), keeping the masked form a fused truncation left on t."""
    out = t.reshape(shape)
    carry_reshaped(t, out)
    return out


def _known(t: torch.Tensor, opened: dict | None):
    """t's masked form: from ``opened``, or carried by t from a fused truncation in an
    earlier op (then registered in ``opened`` too); None if t is not opened."""
    if opened is None:
        return None
    got = opened.get(id(t))
    if got is not None:
        return got[1]
    m = carried(t)
    if m is not None:
        opened[id(t)] = (t, m)
    return m


def products_once(pairs: list[tuple[torch.Tensor, torch.Tensor]], opened: dict
                  ) -> list[torch.Tensor]:
    """Untruncated products a*b (broadcasting), opening each distinct tensor only once.

    ``opened`` maps id(tensor) -> (tensor, Masked) and carries openings from earlier
    calls: a tensor opened there is not opened again (x*x opens x once; a Chebyshev
    basis opens each T_k once). New tensors are opened in one ``mask`` call (one round);
    the products are then local. Only for protocols where `reuses_openings` is true.
    """
    new: list[torch.Tensor] = []
    for a, b in pairs:
        for t in (a, b):
            if _known(t, opened) is None and not any(t is n for n in new):
                new.append(t)
    p = proto()
    for t, m in zip(new, p.mask(*[t.contiguous() for t in new])):
        opened[id(t)] = (t, m)          # keeps t alive, so its id is not reused
    return [p.mul_masked(opened[id(a)][1], opened[id(b)][1]) for a, b in pairs]


def products_reusing(pairs: list[tuple[torch.Tensor, torch.Tensor]], opened: dict | None
                     ) -> list[torch.Tensor]:
    """Untruncated products through `products_once` where the protocol reuses openings,
    otherwise one ``mul`` call (`products`)."""
    if opened is None or not reuses_openings():
        return products(pairs)
    return products_once(pairs, opened)


def mul_once(pairs: list[tuple[torch.Tensor, torch.Tensor]], opened: dict | None,
             bits: int | None = None) -> list[torch.Tensor]:
    """`mul` (fixed-point, truncated by ``bits``, default F) through `products_once` where
    the protocol reuses openings; otherwise the ordinary fused ``mul_trunc``. ``opened``
    as there; the results are registered in it (`trunc_once`)."""
    bits = F() if bits is None else bits
    if opened is None or not reuses_openings():
        return mul(pairs, bits)
    return trunc_once(products_once(pairs, opened), bits, opened)


def trunc_once(xs: list[torch.Tensor], bits: int, opened: dict | None) -> list[torch.Tensor]:
    """`trunc`, and where the protocol fuses truncations (semi2k, exact) each result is
    registered in ``opened`` as already opened: a later `products_once` with it opens
    nothing new, the truncation's opening serves (one round and 8 bytes an element
    fewer per product chain step)."""
    p = proto()
    if opened is None or not xs or bits == 0 or not p.fuses_truncation:
        return trunc(xs, bits)
    out = []
    for m in p.trunc_masked([x.contiguous() for x in xs], bits):
        if m.e is not None:                 # not opened where the shift is too wide
            opened[id(m.share)] = (m.share, m)
        out.append(carry(m, p.rank == 0))   # and for products in later ops
    return out


def affine_once(x: torch.Tensor, mult: int, const: float, frac: int | None,
                opened: dict | None) -> torch.Tensor:
    """mult * x + const (public int mult, real const at scale ``frac``, default F), with
    the result registered in ``opened`` when x is there: its opening carries over."""
    c = _encoded(const, frac) if const else None
    mx = _known(x, opened)
    if mx is None or mx.e is None:
        y = x * mult if mult != 1 else x
        return y if c is None else proto().add_public(y, c)
    m = proto().masked_affine(mx, mult, c)
    opened[id(m.share)] = (m.share, m)
    return m.share


def combine_once(terms: list[tuple[int, torch.Tensor]], opened: dict | None,
                 const: float = 0.0) -> torch.Tensor:
    """sum c * x + const for public ints c (and a real const at scale F); registered in
    ``opened`` when every x is there (its mask is then the same combination of theirs:
    `Protocol.masked_combine`)."""
    c0 = _encoded(const) if const else None
    known = [_known(x, opened) for _, x in terms]
    if any(m is None for m in known):
        out = sum(c * x for c, x in terms)
        return out if c0 is None else proto().add_public(out, c0)
    m = proto().masked_combine([(c, k) for (c, _), k in zip(terms, known)], c0)
    opened[id(m.share)] = (m.share, m)
    return m.share


def select_once(pairs: list[tuple[torch.Tensor, torch.Tensor]], opened: dict | None
                ) -> list[torch.Tensor]:
    """`select_many`, in one round; a value registered in ``opened`` is not opened at
    all (only its bit is: semi2k ``select_masked``)."""
    known = [_known(x, opened) for _, x in pairs]
    if not pairs or any(m is None for m in known):
        return select_many(pairs)
    return proto().select_masked([(b.contiguous(), m) for (b, _), m in zip(pairs, known)])


def fits(bits: float) -> bool:
    """True when a value below 2^bits in magnitude is inside exact truncation's range
    (|z| < 2^62): the folds that keep values untruncated at a larger scale check this
    for the run's frac_bits (at 24 fractional bits most of them do not fit)."""
    return bits <= 62


def range_bits() -> int:
    """log2 of the safe range: every encoded value is below 2^range_bits()."""
    cfg = current().config
    return cfg.compare_bits - 2 - cfg.frac_bits


def local_truncation() -> bool:
    """True when truncation is the opt-in local one (free, fails with probability ~ the
    truncated magnitude): then keeping truncated values small matters more than rounds."""
    return current().config.truncation == "local"


def trunc(xs: list[torch.Tensor], bits: int) -> list[torch.Tensor]:
    """Divide every share by 2^bits in one ``trunc`` call (free at 2 parties)."""
    if not xs or bits == 0:
        return list(xs)
    flat, shapes = _cat(xs)
    return _split(proto().trunc(flat.contiguous(), bits), shapes)


def mul(pairs: list[tuple[torch.Tensor, torch.Tensor]], bits: int | None = None
        ) -> list[torch.Tensor]:
    """Fixed-point products truncated by ``bits`` (default F: scale F each side, F
    result), in one fused mul_trunc call."""
    bits = F() if bits is None else bits
    return _batched(lambda a, b: proto().mul_trunc(a, b, bits), pairs)


def newton_reciprocal(x: torch.Tensor, y: torch.Tensor, opened: dict | None = None
                      ) -> torch.Tensor:
    """One Newton step y (2 - x y) towards 1/x, for a seed y with |1 - x y| < 1 and
    |y| < 9.1 (1/x for x >= 1/8 and the seeds' 13 % error).

    Where truncation is exact, x y stays untruncated (scale 2F) and the step truncates
    once, 2F bits: |y (2 - x y)| < 2 |y| keeps the product far inside the ring. The
    opt-in local truncation would fail 2^F times more often on that 3F-scale value, so
    it keeps two truncations. ``opened`` (`products_once`): x and y, if opened before,
    are not opened again, and the new y is registered (`trunc_once`).
    """
    f = F()
    if local_truncation() or not fits(5 + 3 * f):      # |y (2 - x y)| < 9.1 * 2 < 2^5
        (q,) = mul_once([(x, y)], opened)
        (out,) = mul_once([(y, add_const(-q, 2.0))], opened)
        return out
    (q,) = products_reusing([(x, y)], opened)
    (out,) = mul_once([(y, add_const(-q, 2.0, 2 * f))], opened, 2 * f)
    return out


def lincomb(terms: list[tuple[float, torch.Tensor]], const: float = 0.0,
            like: torch.Tensor | None = None, *, raw: int | None = None,
            opened: dict | None = None) -> torch.Tensor:
    """sum(c * x) + const with public reals c, truncated once (shares at scale F).

    Coefficients are encoded at scale F (use ``scale`` for one small coefficient that
    needs more bits); integer coefficients need no truncation at all (which saves the
    truncation round). ``raw=e`` returns the sum untruncated at scale 2F + e (c encoded
    at F + e), for a caller that adds it to other untruncated terms and truncates once.
    ``opened``: the truncated result is registered there (`trunc_once`).
    """
    f = F()
    like = like if like is not None else terms[0][1]
    terms = [(c, x) for c, x in terms if c]
    if raw is not None:
        acc = torch.zeros_like(like)
        for c, x in terms:
            acc = acc + x * enc(c, f + raw)
        return add_const(acc, const, 2 * f + raw) if const else acc
    if all(float(c).is_integer() for c, _ in terms):
        acc = None
        for c, x in terms:
            t = x * int(c) if c != 1 else x
            acc = t if acc is None else acc + t
        if acc is None:
            acc = torch.zeros_like(like)
        return add_const(acc, const) if const else acc
    acc = None
    for c, x in terms:
        t = x * enc(c, f)
        acc = t if acc is None else acc + t
    if const:
        acc = add_const(acc, const, 2 * f)
    return trunc_once([acc], f, opened)[0]


def scale(x: torch.Tensor, c: float, const: float = 0.0) -> torch.Tensor:
    """c * x + const for one public real c, keeping ~F significant bits of c.

    lincomb encodes c at scale F, which for c = 1/768 (a mean) is off by 0.4%; here c
    gets F + e bits with 2^-e ~ |c|, so the product keeps the same ring magnitude as
    |c x| 2^2F and the relative error of c stays below 2^-F.
    """
    f = F()
    e = max(0, min(f, -math.floor(math.log2(abs(c))))) if c else 0
    acc = x * enc(c, f + e)
    if const:
        acc = add_const(acc, const, 2 * f + e)
    return trunc([acc], f + e)[0]


# -- comparisons and selection -----------------------------------------------------------
def ge_many(x: torch.Tensor, thresholds, frac: int | None = None) -> torch.Tensor:
    """XOR-shared bits [x >= t] for every public threshold t, in ONE msb call.

    Returns shape (len(thresholds), *x.shape). Exact while |x - t| is inside the
    comparison range (Config.compare_bits).
    """
    f = F() if frac is None else frac
    p = proto()
    th = torch.tensor([float(t) for t in thresholds], dtype=torch.float64)
    enc_t = torch.round(th * 2.0 ** f).to(torch.int64).view(-1, *([1] * x.dim()))
    diffs = p.add_public(x.unsqueeze(0).expand(len(th), *x.shape), -enc_t)
    lt = p.msb(diffs.contiguous())
    return p.xor_public(lt, ONE_BIT.expand(lt.shape))


def onehot(ge_bits: torch.Tensor) -> torch.Tensor:
    """Interval indicators from increasing thresholds' [x >= t_j] bits (local XORs).

    Row 0 is x < t_0, row j is t_{j-1} <= x < t_j, the last row is x >= t_last.
    """
    p = proto()
    first = p.xor_public(ge_bits[:1], ONE_BIT.expand(ge_bits[:1].shape))
    mid = ge_bits[:-1] ^ ge_bits[1:]
    return torch.cat([first, mid, ge_bits[-1:]], 0)


def select_many(pairs: list[tuple[torch.Tensor, torch.Tensor]]) -> list[torch.Tensor]:
    """bit * x for (XOR-shared bit, share) pairs, in ONE select call (one round, exact)."""
    return _batched(proto().select, pairs)


def b2a(bits: torch.Tensor) -> torch.Tensor:
    """XOR-shared bits to additive shares of 0/1 integers (scale 0), one round."""
    return proto().b2a(bits.contiguous())


# -- SecretTensor boundary ---------------------------------------------------------------
def is_secret(x) -> bool:
    from ..tensor.core import is_secret as _is_secret
    return _is_secret(x)


def float_input(x, name: str):
    """Check ``x`` is a SecretTensor and return it as a float tensor at scale F."""
    from ..tensor.core import is_secret
    if not is_secret(x):
        raise ProtocolUsageError(f"{name}: expected a SecretTensor, got {type(x).__name__}")
    if not is_float(x.dtype):
        x = x._to_float(torch.get_default_dtype())
    if x.frac != F():
        raise ProtocolUsageError(f"{name}: input has {x.frac} fractional bits, expected {F()}")
    return x


def wrap(x, share: torch.Tensor):
    """A result share as a SecretTensor of ``x``'s dtype (scale F)."""
    return x._wrap(share, x.dtype)


__all__ = ["F", "enc", "lift", "add_const", "products", "products_common", "products_once",
           "products_reusing", "mul_once", "trunc_once", "affine_once", "combine_once",
           "select_once", "reshaped", "local_truncation", "newton_reciprocal", "fits",
           "range_bits", "reuses_openings", "trunc", "mul", "lincomb", "ge_many",
           "onehot", "select_many", "b2a", "float_input", "wrap"]
