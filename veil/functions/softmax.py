"""softmax and log_softmax along a dim, and the row maximum they start from.

softmax(x) = e / sum(e) with e = exp(x - max x), where:

* max: a tournament whose layers compare *every pair* in groups of g (one batched msb
  for all pairs, 6 rounds), pick each group's winner with an AND tree over its g - 1
  wins (ceil(log2(g-1)) rounds) and move it with one select round. A binary tree over
  100 values takes 7 layers of 7 rounds (49, CrypTen's and SPU's choice); groups of 5
  then 20 take 9 + 12 = 21 rounds for 4 comparisons per element. The group sizes come
  from a small search minimising rounds + 2 x comparisons per element.
* exp: x - max <= 0, so exp_log's range reduction needs only the buckets below 0 (3
  edges at 16 fractional bits; entries below -12.5 become exactly 0): 11 rounds.
  The row sum is taken *before* the scaled entries are truncated, so per-entry rounding
  does not add up over long rows.
* 1/sum: the sum lies in [1, n] (the max entry contributes e^0 = 1), so a degree-16
  Chebyshev seed on [1, n] plus Newton steps does it without range reduction (10 rounds
  for n = 100) on one value per row.

2 parties, rows of 100: 56 rounds by default (exact truncation), 43 with local truncation
(21 (max) + 11 (exp) + 10 (1/sum) + 1). ``approx="2quad"`` (MPCFormer, Li et al. 2023):
(x + 5)^2 / sum (x + 5)^2.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ProtocolUsageError
from ..tensor.core import proto
from ..tensor.dispatch import register_torch
from . import _kern as K
from . import cheb
from .approx import choose
from .exp_log import exp_parts, log_shares
from .grad_rules import register_grad
from .roots import div_shares, reciprocal_shares

QUAD_SHIFT = 5.0


# -- the row maximum ---------------------------------------------------------------------
def _layer_rounds(g: int) -> int:
    return 7 if g == 2 else 7 + math.ceil(math.log2(g - 1))


# The planner's exchange rate between rounds and comparisons: one comparison per element
# (~16 bytes each way at 2 parties) weighs COMPARISON_WEIGHT rounds for small tensors
# (0.3 us per element against ~15 us per in-process round), and for large ones as much as
# its bytes take on the emulated WAN (40 ms, 100 Mbit/s: ~500 KB per round, so one round
# per ELEMENTS_PER_ROUND elements). Bytes weigh more still on the LAN and in-process, so
# the WAN's rate is the conservative choice: an attention's 12 x 128 x 128 scores take
# (3, 5, 9) (27 rounds, 2 comparisons per element) instead of (8, 16) (21, 4.4).
COMPARISON_WEIGHT = 2.0
ELEMENTS_PER_ROUND = 31_250


def comparison_weight(numel: int) -> float:
    """Rounds one comparison per element is worth, for a max over ``numel`` elements."""
    return max(COMPARISON_WEIGHT, numel / ELEMENTS_PER_ROUND)


@lru_cache(maxsize=None)
def tournament(n: int, n0: int | None = None, weight: float = COMPARISON_WEIGHT
               ) -> tuple[int, ...]:
    """Group sizes of each layer for a max over n values (min rounds + ``weight`` rounds
    per comparison per element): (4, 8) for 32, (5, 20) for 100, (4, 9, 28) for 1000
    at the default weight."""
    n0 = n0 or n
    if n <= 1:
        return ()
    best = None
    for g in range(2, min(n, 64) + 1):
        groups = -(-n // g)
        cost = _layer_rounds(g) + weight * groups * g * (g - 1) / 2 / n0
        rest = tournament(groups, n0, weight)
        total = cost + _plan_cost(rest, groups, n0, weight)
        if best is None or total < best[0]:
            best = (total, (g,) + rest)
    return best[1]


def _plan_cost(plan, n, n0, weight) -> float:
    cost = 0.0
    for g in plan:
        groups = -(-n // g)
        cost += _layer_rounds(g) + weight * groups * g * (g - 1) / 2 / n0
        n = groups
    return cost


def _and_rows(rows: torch.Tensor) -> torch.Tensor:
    """AND over dim 0 of XOR-shared bit rows, one and_bits call per tree layer."""
    p = proto()
    while rows.shape[0] > 1:
        half = rows.shape[0] // 2
        prod = p.and_bit_elements(rows[:half], rows[half:2 * half])
        rows = torch.cat([prod, rows[2 * half:]], 0) if rows.shape[0] % 2 else prod
    return rows[0]


def row_max(v: torch.Tensor) -> torch.Tensor:
    """Max over the last dim of shares v (any scale); ties are harmless."""
    p = proto()
    # the weight is rounded to a power of two so that plans are cached per size class
    w = comparison_weight(v.numel())
    for g in tournament(v.shape[-1], None, 2.0 ** round(math.log2(w))):
        n = v.shape[-1]
        groups = -(-n // g)
        if groups * g > n:      # pad with copies of the row's first entry: max unchanged
            v = torch.cat([v, v[..., :1].expand(*v.shape[:-1], groups * g - n)], -1)
        x = v.reshape(*v.shape[:-1], groups, g)
        ii, jj = torch.triu_indices(g, g, 1)
        diffs = (x[..., ii] - x[..., jj]).movedim(-1, 0)          # (pairs, ..., groups)
        ge = p.xor_public(p.msb(diffs.contiguous()), K.ONE_BIT.expand(diffs.shape))
        # wins[i] = AND over j != i of [x_i >= x_j] (j > i) or [x_i > x_j] (j < i).
        pair_of = {}
        for k, (i, j) in enumerate(zip(ii.tolist(), jj.tolist())):
            pair_of[(i, j)] = k
        rows = []
        for i in range(g):
            row = []
            for j in range(g):
                if j > i:
                    row.append(ge[pair_of[(i, j)]])
                elif j < i:
                    row.append(p.xor_public(ge[pair_of[(j, i)]], K.ONE_BIT.expand(ge[0].shape)))
            rows.append(torch.stack(row))
        wins = _and_rows(torch.stack(rows, 1))                    # (g, ..., groups)
        sel = K.select_many([(wins, x.movedim(-1, 0))])[0]
        v = sel.sum(0)
    return v[..., 0]


# -- softmax ---------------------------------------------------------------------------
def _inv(x):
    return 1.0 / x


@lru_cache(maxsize=None)
def _sum_reciprocal_plan(n: int, frac: int):
    """(seed polynomial on [1, n], Newton steps) for 1/s with s in [1, n], or None."""
    if n <= 1:
        return None
    p = cheb.fit(_inv, 1.0, float(n), 16, frac, relative=True)
    grid = np.geomspace(1.0, n, 4001)
    e0 = float(np.max(np.abs(1 - grid * p.plain(grid))))
    if e0 >= 0.9:
        return None
    steps = 0
    while e0 ** (2 ** steps) > 1e-6:
        steps += 1
    return p, steps


def sum_reciprocal(s: torch.Tensor, n: int, u: torch.Tensor | None = None,
                   opened: dict | None = None) -> torch.Tensor:
    """1/s for row sums known to lie in [1, n] (no range reduction for moderate n); ``u``:
    the seed polynomial's argument, if `_exp_parts` computed it; ``opened``: openings to
    reuse and extend (`K.products_once`)."""
    plan = _sum_reciprocal_plan(n, K.F())
    if plan is None:
        return reciprocal_shares(s, positive=True)
    p, steps = plan
    (y,) = cheb.evaluate(s, [p], u=u, opened=opened)
    for _ in range(steps):
        y = K.newton_reciprocal(s, y, opened)
    return y


def _check_dim(x, dim):
    if not isinstance(dim, int):
        raise ProtocolUsageError(f"softmax: dim must be an int, got {dim!r} (torch's implicit "
                                 f"dim is deprecated; pass dim=-1)")
    if not -max(x.dim(), 1) <= dim < max(x.dim(), 1):     # a 0-d tensor takes 0 and -1
        raise ProtocolUsageError(f"softmax: dim {dim} out of range for a {x.dim()}-d tensor")
    return dim % max(x.dim(), 1)


def _plus(x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
    return x if y is None else x + y


def _exp_parts(z: torch.Tensor, opened: dict | None = None):
    """Shares of exp(z) (z <= 0), of its row sum and, where it saves a round, of the
    argument u of 1/sum's seed polynomial (else None): all in ONE truncation call, whose
    results are registered in ``opened`` (`K.trunc_once`)."""
    exact, pending, bits = exp_parts(z, upper=False)  # all buckets below 0: all pending
    f, n = K.F(), z.shape[-1]
    plan = _sum_reciprocal_plan(n, f)
    row_sum = None if exact is None else exact.sum(-1, keepdim=True)
    ps = pending.sum(-1, keepdim=True)
    # u = a s + b needs s untruncated at a common shift: e and s go 2^F higher, which
    # exact truncation takes while n 2^(2F + bits) < 2^61 (s <= n); the opt-in local one
    # would fail 2^F times more often, so it keeps two truncations.
    if plan is None or K.local_truncation() or n >= 2 ** (61 - 2 * f - bits):
        e, s = K.trunc_once([pending, ps], bits, opened)
        return _plus(e, exact), _plus(s, row_sum), None
    u = cheb.argument(plan[0], _plus(ps, None if row_sum is None else row_sum << bits), bits)
    e, s, u = K.trunc_once([pending << f, ps << f, u], f + bits, opened)
    return _plus(e, exact), _plus(s, row_sum), u


def softmax(x, dim: int, *, approx: str | None = None, saved: dict | None = None):
    """softmax along ``dim`` (torch.softmax / F.softmax). Absolute error < 1e-4.

    45 rounds at 2 parties for rows of 100 (``approx="2quad"``: 29; with local truncation
    43 and 21).

    >>> import torch, veil
    >>> def f():
    ...     x = veil.tensor(torch.tensor([[1.0, 2.0, 3.0]]) if veil.rank() == 0 else None,
    ...                     owner=0)
    ...     return x.softmax(-1).reveal()
    >>> [round(v, 3) for v in veil.run(f, parties=2, seed=0)[0][0].tolist()]
    [0.09, 0.245, 0.665]
    """
    x = K.float_input(x, "softmax")
    d = _check_dim(x, dim)
    mode = choose("softmax", approx)
    if saved is not None:
        saved["mode"] = mode
    if x.dim() == 0:
        return K.wrap(x, K.lift(1.0, x.share))
    if x.numel() == 0:
        return K.wrap(x, x.share.clone())
    share = x.share.movedim(d, -1)
    n = share.shape[-1]
    if mode == "2quad":
        shifted = K.add_const(share, QUAD_SHIFT)
        (q,) = K.mul([(shifted, shifted)])
        out = div_shares(q, q.sum(-1, keepdim=True), positive=True)
    else:
        z = share - row_max(share).unsqueeze(-1)
        # e * (1/s): where openings are reused, 1/s is opened once per row, not per
        # entry, and where truncations are fused e and 1/s come opened by theirs
        opened: dict | None = {} if K.reuses_openings() else None
        e, s, u = _exp_parts(z, opened)
        (out,) = K.mul_once([(e, sum_reciprocal(s, n, u, opened))], opened)
    return K.wrap(x, out.movedim(-1, d))


def log_softmax(x, dim: int):
    """log_softmax along ``dim``: (x - max) - log(sum exp(x - max)). Error < 5e-4.

    >>> import torch, veil
    >>> def f():
    ...     x = veil.tensor(torch.tensor([[1.0, 2.0, 3.0]]) if veil.rank() == 0 else None,
    ...                     owner=0)
    ...     return x.log_softmax(-1).reveal()
    >>> [round(v, 3) for v in veil.run(f, parties=2, seed=0)[0][0].tolist()]
    [-2.408, -1.408, -0.408]
    """
    x = K.float_input(x, "log_softmax")
    d = _check_dim(x, dim)
    if x.dim() == 0:                                   # a single entry: log(1) = 0
        return K.wrap(x, K.lift(0.0, x.share))
    if x.numel() == 0:
        return K.wrap(x, x.share.clone())
    share = x.share.movedim(d, -1)
    z = share - row_max(share).unsqueeze(-1)
    _, s, _ = _exp_parts(z)
    return K.wrap(x, (z - log_shares(s)).movedim(-1, d))


@register_grad("softmax")
def _softmax_grad(grad_out, out, x, dim, *, approx=None, saved=None):
    inner = (grad_out * out).sum(dim, keepdim=True)
    if ((saved or {}).get("mode") or choose("softmax", approx)) == "2quad":
        # p = q / S with q = (x + c)^2: dx = 2 (x + c) / S * (g - sum(g p)).
        shifted = x + QUAD_SHIFT
        s = (shifted * shifted).sum(dim, keepdim=True)
        return (((grad_out - inner) * shifted * 2) / s,)
    return ((grad_out - inner) * out,)


@register_grad("log_softmax")
def _log_softmax_grad(grad_out, out, x, dim):
    return (grad_out - out.exp() * grad_out.sum(dim, keepdim=True),)


def _torch_softmax(method):
    def impl(x, dim=None, _stacklevel=3, dtype=None, **kw):
        if dtype is not None and dtype != x.dtype:
            x = x._to_dtype(dtype)
        return getattr(x, method)(dim, **kw)
    return impl


T = torch.Tensor
register_torch([torch.softmax, F.softmax, T.softmax, torch.special.softmax],
               _torch_softmax("softmax"))
register_torch([torch.log_softmax, F.log_softmax, T.log_softmax, torch.special.log_softmax],
               _torch_softmax("log_softmax"))

__all__ = ["softmax", "log_softmax", "row_max", "tournament", "sum_reciprocal"]
