"""Exact ring integers for SQL: secret columns with a tracked magnitude bound.

SQL needs exact answers, so this layer works on the protocol's raw ring shares (Z_2^64,
no fractional bits, no truncation) instead of fixed-point `SecretTensor`s. Every value
carries an exclusive bound ``|v| < bound`` (a Python int, public: it comes from the
column's declared type or bound, never from the data), and a decimal ``scale`` (v stands
for v / 10^scale). Each operation derives the result's bound and refuses, before any
traffic, when it could leave the ring's exact range — no silent wrap-around.

Comparisons run the protocol's ``msb`` / ``eqz`` kernels with ``width=`` the narrowest
width that is still exact for the operands' bound (``_width``), up to the full 64-bit
ring: a 10^12-cent money column compares exactly, and a 16-bit column pays for 18 bits.

>>> import torch, veil
>>> from veil.sql.exact import SInt
>>> def job():
...     a = SInt.share(torch.tensor([10**12, 5]) if veil.rank() == 0 else None, 0, (2,), 2**41)
...     b = SInt.share(torch.tensor([10**12 - 1, 7]) if veil.rank() == 1 else None, 1, (2,), 2**41)
...     return (a > b).to_int().reveal(to=0)
>>> veil.run(job, parties=2, seed=0)[0].tolist()
[1, 0]
"""

from __future__ import annotations

import torch

from ..context import current
from ..errors import RangeError

RING_MAX = 1 << 63            # shares live in Z_2^64; signed values need |v| < 2^63
MIN_WIDTH = 2                 # the narrowest width the kernels take (sign + one bit)


def _proto():
    return current().protocol


def _width(bound: int) -> int:
    """Bits at which msb is exact for |x| < bound (msb is exact below 2^(w-1))."""
    w = max(MIN_WIDTH, (bound - 1).bit_length() + 1)
    if w > 64:
        raise RangeError(f"a comparison operand may reach {bound:.3g}, beyond the 64-bit "
                         f"ring; declare smaller column bounds (register(..., bounds=...))")
    return w


def check_bound(bound: int, what: str) -> int:
    if bound > RING_MAX:
        raise RangeError(
            f"{what} may reach {bound:.3g} (> 2^63) and would wrap around the 64-bit ring; "
            f"declare tighter column bounds with register(..., bounds={{col: max_abs}}) or "
            f"filter the rows")
    return bound


class SInt:
    """Additive ring shares of integers with a public bound and a decimal scale."""

    __slots__ = ("sh", "bound", "scale")

    def __init__(self, sh: torch.Tensor, bound: int, scale: int = 0) -> None:
        self.sh, self.bound, self.scale = sh, int(bound), int(scale)

    def __repr__(self) -> str:                       # never the shares
        return f"SInt(shape={tuple(self.sh.shape)}, bound={self.bound}, scale={self.scale})"

    @staticmethod
    def share(values: torch.Tensor | None, owner: int, shape, bound: int, scale: int = 0):
        """The owner's int64 values (checked |v| < bound there) become shares everywhere."""
        p = _proto()
        if p.rank == owner:
            # Two-sided, since abs(-2^63) overflows back to -2^63 in int64.
            if values.numel() and (int(values.max()) >= bound or int(values.min()) <= -bound):
                raise RangeError(f"a value is outside its declared bound {bound:.3g}")
            values = values.to(torch.int64).reshape(shape)
        return SInt(p.share(values, owner, tuple(shape)), check_bound(bound, "a column"), scale)

    @staticmethod
    def public(v: int, shape=(), scale: int = 0) -> "SInt":
        p = _proto()
        t = torch.full(tuple(shape), int(v), dtype=torch.int64)
        return SInt(p.add_public(p.zeros(tuple(shape)), t), abs(int(v)) + 1, scale)

    # -- scale alignment -----------------------------------------------------------------
    def rescale(self, scale: int) -> "SInt":
        """Same value at a larger decimal scale (exact: multiplies by 10^k)."""
        if scale == self.scale:
            return self
        k = 10 ** (scale - self.scale)
        return SInt(self.sh * k, check_bound(self.bound * k, "a rescaled value"), scale)

    @staticmethod
    def align(a: "SInt", b: "SInt"):
        s = max(a.scale, b.scale)
        return a.rescale(s), b.rescale(s)

    # -- linear ops (local) --------------------------------------------------------------
    def __add__(self, o: "SInt") -> "SInt":
        a, b = SInt.align(self, o)
        return SInt(a.sh + b.sh, check_bound(a.bound + b.bound, "a sum"), a.scale)

    def __sub__(self, o: "SInt") -> "SInt":
        a, b = SInt.align(self, o)
        return SInt(a.sh - b.sh, check_bound(a.bound + b.bound, "a difference"), a.scale)

    def __neg__(self) -> "SInt":
        return SInt(-self.sh, self.bound, self.scale)

    def mul_public(self, c: int) -> "SInt":
        return SInt(self.sh * int(c), check_bound(self.bound * max(1, abs(int(c))),
                                                  "a product"), self.scale)

    def sum(self, dim: int = 0) -> "SInt":
        n = self.sh.shape[dim] if self.sh.dim() else 1
        return SInt(self.sh.sum(dim), check_bound(self.bound * max(1, n), "SUM"), self.scale)

    # -- multiplications (one round each) -------------------------------------------------
    def __mul__(self, o: "SInt") -> "SInt":
        bound = check_bound(self.bound * o.bound, "a product")
        return SInt(_proto().mul(self.sh, o.sh), bound, self.scale + o.scale)

    def matmul_onehot(self, onehot: "SInt") -> "SInt":
        """(G, N) 0/1 shares @ (N, K) values → (G, K) per-group sums, one round."""
        n = self.sh.shape[0]
        bound = check_bound(self.bound * max(1, n), "a group SUM")
        return SInt(_proto().matmul(onehot.sh, self.sh), bound, self.scale)

    # -- comparisons -> SBool ------------------------------------------------------------
    def _sign(self) -> "SBool":
        return SBool(xor=_proto().msb(self.sh, width=_width(self.bound)))

    def __lt__(self, o: "SInt") -> "SBool":
        return (self - o)._sign()

    def __gt__(self, o: "SInt") -> "SBool":
        return (o - self)._sign()

    def __le__(self, o: "SInt") -> "SBool":
        return (o - self)._sign().not_()

    def __ge__(self, o: "SInt") -> "SBool":
        return (self - o)._sign().not_()

    def eq(self, o: "SInt") -> "SBool":
        d = self - o
        return SBool(xor=_proto().eqz(d.sh, width=_width(d.bound)))

    def reveal(self, to: int | None = None) -> torch.Tensor | None:
        # Discloses the value to the receiver(s): callers reveal only query results.
        return _proto().reveal(self.sh, to)


class Product:
    """``a · b`` not multiplied yet: a SUM of it needs only Σ a_i·b_i, one dot product.

    As an (n,) · (n,) matmul, the Beaver triple opens the same 16 B/row as an
    elementwise product, but the dealer's ``c`` is one number per chunk instead of one per
    row (8 B/row less dealer traffic, and no per-row ``c`` to draw, correct or add), and
    the products are summed inside the kernel. A mask goes onto one factor,
    m·(a·b) = (m·a)·b: the same one-round select, applied to ``a`` instead of the product.
    Anything else takes `value` (an elementwise product).
    """

    __slots__ = ("a", "b", "bound")

    def __init__(self, a: SInt, b: SInt) -> None:
        self.a, self.b = a, b
        self.bound = check_bound(a.bound * b.bound, "a product")

    def __repr__(self) -> str:
        return f"Product({self.a!r}, {self.b!r})"

    @property
    def scale(self) -> int:
        return self.a.scale + self.b.scale

    def value(self) -> SInt:
        return self.a * self.b

    def rescale(self, scale: int) -> "Product":
        return self if scale == self.scale else Product(self.a.rescale(scale - self.b.scale),
                                                        self.b)

    def masked(self, bit: "SBool") -> "Product":
        return Product(bit.apply(self.a), self.b)

    def sum(self) -> SInt:
        n = self.a.sh.numel()
        bound = check_bound(self.bound * max(1, n), "SUM")
        # 1-D · 1-D: torch runs an int64 dot product (a (1, n) · (n, 1) int64 matmul
        # takes a naive GEMM path, ~100x slower).
        z = _proto().matmul(self.a.sh.reshape(n), self.b.sh.reshape(n))
        return SInt(z.reshape(()), bound, self.scale)


class SBool:
    """A secret 0/1 per row: XOR-shared bits (from comparisons) and/or ring 0/1 shares.

    Comparisons give XOR bits; predicates a party computed locally arrive as ring
    shares. Each form is converted to the other only when an operation needs it
    (``b2a`` is 1 bit per row); applying a mask to a value uses ``select`` on bits
    (one round, 8 bytes + 1 bit per row) or a Beaver product on ring 0/1.
    """

    __slots__ = ("xor", "arith")

    def __init__(self, xor: torch.Tensor | None = None, arith: SInt | None = None) -> None:
        self.xor, self.arith = xor, arith

    def __repr__(self) -> str:
        return "SBool(...)"

    @staticmethod
    def public(v: bool, shape) -> "SBool":
        return SBool(arith=SInt.public(int(bool(v)), shape))

    def to_int(self) -> SInt:
        if self.arith is None:
            self.arith = SInt(_proto().b2a(self.xor), 2)
        return self.arith

    def and_(self, o: "SBool") -> "SBool":
        if self.xor is not None and o.xor is not None:
            return SBool(xor=_proto().and_bit_elements(self.xor, o.xor))
        a, b = self.to_int(), o.to_int()
        return SBool(arith=SInt((a * b).sh, 2))

    def or_(self, o: "SBool") -> "SBool":
        if self.xor is not None and o.xor is not None:
            return SBool(xor=self.xor ^ o.xor ^ _proto().and_bit_elements(self.xor, o.xor))
        a, b = self.to_int(), o.to_int()
        return SBool(arith=SInt((a + b - a * b).sh, 2))

    def not_(self) -> "SBool":
        p = _proto()
        if self.xor is not None:
            return SBool(xor=p.xor_public(self.xor, torch.ones_like(self.xor)))
        a = self.arith
        return SBool(arith=SInt(p.add_public(-a.sh, torch.ones_like(a.sh)), 2))

    def apply(self, v: SInt) -> SInt:
        """v where the bit is 1, 0 elsewhere (one round). ``v`` may stack several columns
        (K, n) over the n bits: all are masked in that one round."""
        shape = v.sh.shape

        def full(t):
            return t if t.shape == shape else t.expand(shape).contiguous()
        if self.xor is not None:
            return SInt(_proto().select(full(self.xor), v.sh), v.bound, v.scale)
        # A 0/1 factor keeps v's bound: multiply the shares directly.
        return SInt(_proto().mul(full(self.arith.sh), v.sh), v.bound, v.scale)

    def where(self, x: SInt, y: SInt) -> SInt:
        """CASE WHEN self THEN x ELSE y: y + bit·(x − y)."""
        x, y = SInt.align(x, y)
        d = self.apply(x - y)
        return SInt(y.sh + d.sh, max(x.bound, y.bound), x.scale)

    def reveal(self, to: int | None = None) -> torch.Tensor | None:
        # Discloses the bits to the receiver(s): callers reveal only result masks.
        if self.xor is not None:
            out = _proto().reveal_bits(self.xor, to)
            return None if out is None else out.to(torch.int64)
        return self.arith.reveal(to)
