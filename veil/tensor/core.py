"""Storage and plumbing of SecretTensor: shares, scale, dtype, operand coercion.

A SecretTensor holds this party's share of a tensor, in one or both of two forms:

* ``_share``: additive ring shares (int64), scaled by 2^frac (frac = frac_bits for float
  dtypes, 0 for integer and bool dtypes);
* ``_bits``: XOR shares of a 0/1 value (uint8), what comparisons produce. The additive
  form is made from it on first use (one round, b2a), and ``where``/``relu`` use the bits
  directly to save that round.
"""

from __future__ import annotations

import math
import weakref

import torch

from ..context import current
from ..errors import ProtocolUsageError, RangeError
from ..ring import check_public, decode, encode_public, is_float


def proto():
    return current().protocol


def frac_bits() -> int:
    return current().config.frac_bits


def frac_of(dtype: torch.dtype) -> int:
    return frac_bits() if is_float(dtype) else 0


class SecretBase:
    # requires_grad / grad / _node: autograd state (veil.autograd; _node is None for leaves)
    # _base / _views: which tensors torch would alias with this one (see `_check_writable`)
    # _fixed: a veil.tensor.fixed.FixedState when marked with `fixed_`, else None
    __slots__ = ("_share", "_bits", "frac", "dtype", "_shape", "requires_grad", "grad", "_node",
                 "_base", "_views", "_fixed", "__weakref__")

    def __init__(self, share: torch.Tensor | None = None, *, dtype: torch.dtype,
                 frac: int | None = None, bits: torch.Tensor | None = None) -> None:
        if share is None and bits is None:
            raise ProtocolUsageError("a SecretTensor needs a share or bit share")
        self._share = share
        self._bits = bits
        self.dtype = dtype
        self.frac = frac_of(dtype) if frac is None else frac
        self._shape = tuple((share if share is not None else bits).shape)
        self.requires_grad, self.grad, self._node = False, None, None
        self._base, self._views = None, None
        self._fixed = None

    def fixed_(self):
        """Mark this tensor as a *fixed operand*: a value that will not change, such as a
        model weight at inference. Products with it (``*``, ``@``, conv2d) then open its
        masked form once and reuse it, so each later product opens only the other
        operand (semi2k: a 768x768 weight saves 4.7 MB per product and party). Changing
        the tensor afterwards is safe: the next product masks it again under a fresh
        mask. Returns ``self``.

        >>> import torch, veil
        >>> def f():
        ...     w = veil.tensor(torch.eye(3) if veil.rank() == 0 else None, owner=0).fixed_()
        ...     x = veil.tensor(torch.ones(2, 3) if veil.rank() == 1 else None, owner=1)
        ...     first = veil.stats()["bytes_sent"]
        ...     (x @ w).reveal()                  # opens x and w (+ truncation, reveal)
        ...     second = veil.stats()["bytes_sent"]
        ...     y = (x @ w).reveal()              # opens x only
        ...     return second - first, veil.stats()["bytes_sent"] - second, y.tolist()
        >>> veil.run(f, parties=2, seed=0)[0]
        (216, 144, [[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]])
        """
        from .fixed import mark_fixed
        return mark_fixed(self)

    # -- construction helpers ---------------------------------------------------------
    @classmethod
    def _wrap(cls, share, dtype, frac=None):
        return cls(share, dtype=dtype, frac=frac)

    @classmethod
    def _wrap_bits(cls, bits):
        return cls(None, dtype=torch.bool, frac=0, bits=bits)

    def _like(self, share, dtype=None):
        return type(self)(share, dtype=dtype or self.dtype, frac=frac_of(dtype) if dtype
                          else self.frac)

    # -- aliasing ---------------------------------------------------------------------------
    def _as_view_of(self, base):
        """Record that torch would make this tensor a view of ``base`` (shared storage).

        veil's shape ops copy shares instead of aliasing them, which is invisible until
        someone writes in place; `_check_writable` refuses those writes, so veil never
        silently differs from torch there.
        """
        self._base = base
        if base._views is None:
            base._views = weakref.WeakSet()
        base._views.add(self)
        return self

    def _check_writable(self, what: str = "an in-place write") -> None:
        """Refuse ``what`` on a tensor that torch would alias with another live tensor.

        In-place ops call this first (``__setitem__`` here; any future ``add_`` etc.).
        """
        if self._base is not None:
            raise ProtocolUsageError(
                f"{what} into a view (made by view/reshape/squeeze/slicing/transpose/... of "
                f"another SecretTensor): torch would write through to the original, veil's "
                f"shape ops copy. Write into the original tensor, or .clone() the view first")
        if self._views is not None and len(self._views):
            raise ProtocolUsageError(
                f"{what} into a SecretTensor that has live views (made by view/reshape/"
                f"slicing/...): torch would update those views too, veil's would not. Take "
                f"the views after writing, or .clone() this tensor and write into the clone")

    # -- views of the share -----------------------------------------------------------
    @property
    def share(self) -> torch.Tensor:
        """This party's additive ring share (converting from bit shares if needed)."""
        if self._share is None:
            self._share = proto().b2a(self._bits)
        return self._share

    @property
    def bits(self) -> torch.Tensor | None:
        return self._bits

    def share_at(self, frac: int) -> torch.Tensor:
        """The share rescaled to ``frac`` fractional bits (only upward: exact)."""
        if frac < self.frac:
            raise ProtocolUsageError("internal: cannot rescale a share downward locally")
        return self.share << (frac - self.frac) if frac > self.frac else self.share

    # -- torch-like metadata --------------------------------------------------------------
    @property
    def shape(self) -> torch.Size:
        return torch.Size(self._shape)

    def size(self, dim: int | None = None):
        return self.shape if dim is None else self.shape[dim]

    def dim(self) -> int:
        return len(self._shape)

    @property
    def ndim(self) -> int:
        return len(self._shape)

    def numel(self) -> int:
        return self.shape.numel()

    def __len__(self) -> int:
        if not self._shape:
            raise TypeError("len() of a 0-d SecretTensor")
        return self._shape[0]

    def is_floating_point(self) -> bool:
        return is_float(self.dtype)

    def __repr__(self) -> str:
        # Never prints share values: a share is harmless alone, but logs collect them.
        return f"SecretTensor(shape={tuple(self._shape)}, dtype={self.dtype}, <secret>)"

    def __bool__(self):
        raise TypeError("the truth value of a SecretTensor is secret; reveal it first, or use "
                        "veil.where / comparisons that stay secret")

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    # -- reveal -------------------------------------------------------------------------
    def reveal(self, to: int | None = None) -> torch.Tensor | None:
        """Reconstruct the value at every party (``to=None``) or at party ``to`` only.

        Discloses the value to the receiver(s) — that is its purpose; the other parties
        receive nothing. Fixed-point values decode to ``self.dtype``.

        >>> import torch, veil
        >>> def f():
        ...     x = veil.tensor(torch.tensor([-1.99999]) if veil.rank() == 0 else None, owner=0)
        ...     return x.reveal()
        >>> [round(v.item(), 4) for v in veil.run(f, parties=2, seed=1)]
        [-2.0, -2.0]
        """
        ctx = current()
        if to is not None and not (isinstance(to, int) and 0 <= to < ctx.world_size):
            raise ProtocolUsageError(f"reveal(to=...) must be a party in 0..{ctx.world_size - 1}"
                                     f" or None, got {to!r}")
        if self._share is None:
            b = ctx.protocol.reveal_bits(self._bits, to)
            return None if b is None else b.bool()
        v = ctx.protocol.reveal(self._share, to)
        return None if v is None else decode(v, self.frac, self.dtype)

    def get_plain_text(self, to: int | None = None):
        """CrypTen's name for `reveal`, for users porting code."""
        return self.reveal(to)


def is_secret(x) -> bool:
    return isinstance(x, SecretBase)


def as_public(x) -> torch.Tensor:
    """A public operand as a torch tensor (numbers become 0-d tensors)."""
    if isinstance(x, torch.Tensor):
        return x.detach()
    if isinstance(x, bool):
        return torch.tensor(x)
    if isinstance(x, int):
        if not -2 ** 63 <= x < 2 ** 63:
            raise RangeError("public integer operand out of the int64 range")
        return torch.tensor(x)
    if isinstance(x, float):
        return torch.tensor(x)
    try:
        return torch.as_tensor(x)
    except Exception as exc:  # noqa: BLE001
        raise ProtocolUsageError(f"cannot use {type(x).__name__} as a public operand: {exc}")


def _promotion_key(x):
    """What torch's type promotion looks at in an operand: its dtype and whether it is a
    dimensioned tensor, a 0-d tensor or a Python number (values never matter; with the
    default dtype, that decides the result). None for anything else (probed, not cached)."""
    if isinstance(x, SecretBase):
        return ("d", x.dtype)                 # probed as a 1-element (dimensioned) tensor
    if isinstance(x, torch.Tensor):
        return ("d" if x.dim() else "0", x.dtype)
    if type(x) in (bool, int, float, complex):
        return ("n", type(x))
    return None


_PROMOTION: dict = {}


def result_dtype(a, b) -> torch.dtype:
    """torch's promotion for a binary op of ``a`` (secret or public) and ``b``.

    Memoised per pair of `_promotion_key`s: it runs on every binary op, and probing costs
    a tensor allocation and two torch calls.
    """
    def probe(x):
        if is_secret(x):
            return torch.empty(1, dtype=x.dtype)
        if isinstance(x, int) and not isinstance(x, bool) and not -2 ** 63 <= x < 2 ** 63:
            as_public(x)                      # raises the RangeError
        return x
    # Python floats promote to the default dtype, which a program may change.
    key = (_promotion_key(a), _promotion_key(b), torch.get_default_dtype())
    hit = _PROMOTION.get(key) if None not in key else None
    if hit is not None:
        if isinstance(a, int) or isinstance(b, int):
            probe(a), probe(b)                # the int64 range check still runs
        return hit
    out = torch.result_type(probe(a), probe(b))
    if None not in key:
        _PROMOTION[key] = out
    return out


def public_is_integral(t: torch.Tensor) -> bool:
    """True if a public tensor holds only integers (so multiplying by it needs no truncation)."""
    if not t.is_floating_point():
        return True
    return bool(torch.isfinite(t).all() and (t == t.round()).all() and t.abs().max() < 2 ** 62) \
        if t.numel() else True


def public_frac(t: torch.Tensor) -> int:
    """Fractional bits for encoding a public non-integer factor.

    Small constants (1/768 for a mean, 1/9 for a pooling window) lose most of their
    relative precision at frac_bits: 1/768 is only 85 ulp, 0.6 % off after rounding.
    Encoding them with up to frac_bits extra bits, so the largest entry lands just under
    2^frac_bits, keeps the relative error at 2^-17 while the product stays as large as a
    product with a value of magnitude <= 1; the truncation after it is longer by the same.
    """
    f = frac_bits()
    if not t.numel():
        return f
    m = t.detach().abs().max().item()
    if not (0 < m < float("inf")):
        return f
    return f + max(0, min(-math.ceil(math.log2(m)), f))


def addend_limit(frac: int) -> float:
    """Bound on |v| for a public value added to, compared with or stored into a secret at
    scale ``frac``: the safe range (32768 for floats, 2^31 for ints at the defaults)."""
    cfg = current().config
    return cfg.safe_bound if frac else cfg.safe_bound * 2 ** cfg.frac_bits


def factor_limit() -> float:
    """Bound on |c| for a public factor (x * c, x @ W, x / (1/c)): the integer safe range.

    Larger than the addend range on purpose: scaling a small secret by 1000 is fine.
    """
    cfg = current().config
    return cfg.safe_bound * 2 ** cfg.frac_bits


def encode_operand(t: torch.Tensor, frac: int, limit: float | None = None) -> torch.Tensor:
    """A public operand at scale ``frac``, refused (RangeError) when non-finite or when an
    entry reaches ``limit`` (default: `addend_limit`)."""
    check_public(t, addend_limit(frac) if limit is None else limit)
    return encode_public(t, frac)
