"""Backward rules of the core ops, registered in the one table ``GRAD_RULES``.

Each rule is ``rule(grad_out, out, *inputs) -> tuple`` (see veil.functions.grad_rules),
written with SecretTensor ops or, for purely local index shuffles, directly on this
party's share. A rule computes a gradient only for inputs that require one: the
gradient of a data matrix would cost a matmul round and be thrown away.

Costs (semi2k): add/neg/sum/cat/shape ops are local; ``mul`` and ``matmul`` cost one
secret product per secret operand that needs a gradient (none with a public operand,
only a truncation); ``where`` one select; max and max pooling re-run the max tree
carrying a one-hot of the winner, then one product.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import ProtocolUsageError
from ..functions.grad_rules import register_grad
from ..tensor import nn_ops
from ..tensor.arith import where
from ..tensor.core import as_public, is_secret, proto
from ..tensor.reduce import _dims, max_tree


def _needs(x) -> bool:
    return is_secret(x) and x.requires_grad


def _shape(x) -> tuple:
    return tuple(x.shape) if is_secret(x) or isinstance(x, torch.Tensor) else \
        tuple(as_public(x).shape)


def _sum_to(g, shape):
    """Sum a broadcast gradient back to ``shape`` (the transpose of broadcasting)."""
    shape = tuple(shape)
    if tuple(g.shape) == shape:
        return g
    lead = g.dim() - len(shape)
    dims = list(range(lead)) + [lead + i for i, s in enumerate(shape)
                                if s == 1 and g.shape[lead + i] != 1]
    return g.sum(dim=dims, keepdim=True).reshape(shape) if dims else g.reshape(shape)


def _scatter(g, src: torch.Tensor, shape):
    """Transpose of a gather: ``src`` (g's shape) holds 1 + the flat input position each
    element of g came from, 0 for none; add g's share into those positions. Local."""
    n = 1
    for d in shape:
        n *= int(d)
    flat = proto().zeros((n + 1,))          # a share of zero, whatever the protocol's type
    flat.index_add_(0, src.reshape(-1), g.share.reshape(-1))
    return g._wrap(flat[1:].reshape(shape), g.dtype)


def _positions(shape) -> torch.Tensor:
    """1 + the flat position of each element (0 is kept for 'no source', e.g. padding)."""
    n = 1
    for d in shape:
        n *= int(d)
    return torch.arange(1, n + 1, dtype=torch.int64).reshape(shape)


# -- elementwise --------------------------------------------------------------------------
@register_grad("add")
def _add_grad(g, out, x, other, alpha=1):
    gx = _sum_to(g, x.shape) if _needs(x) else None
    go = _sum_to(g if alpha == 1 else g * alpha, other.shape) if _needs(other) else None
    return gx, go


@register_grad("neg")
def _neg_grad(g, out, x):
    return (-g,)


@register_grad("mul")
def _mul_grad(g, out, x, other):
    if x is other:                            # x * x: one product instead of two
        return _sum_to((g * x) * 2, x.shape), None
    gx = _sum_to(g * other, x.shape) if _needs(x) else None
    go = _sum_to(g * x, other.shape) if _needs(other) else None
    return gx, go


@register_grad("abs")
def _abs_grad(g, out, x):
    # g * sign(x), with sign(0) = 0 as in torch (1 - 2 [x < 0] would give 1 at 0). Both
    # bits come from ONE msb call on [x, -x], then one select round moves g: 7 rounds.
    p = proto()
    bits = p.msb(torch.stack([x.share, -x.share]))                  # [x < 0, x > 0]
    gs = g.share.expand(x.shape) if tuple(g.shape) != tuple(x.shape) else g.share
    sel = p.select(bits.reshape(-1).contiguous(),
                   torch.stack([gs, gs]).reshape(-1).contiguous()).reshape(2, *x.shape)
    return (g._wrap(sel[1] - sel[0], g.dtype),)


@register_grad("to_dtype")
def _to_dtype_grad(g, out, x, dtype):
    return g, None                            # the engine casts g back to x's dtype


@register_grad("where")
def _where_grad(g, out, condition, x, y):
    if not (_needs(x) or _needs(y)):
        return None, None, None
    if is_secret(condition):
        gx = g * condition                    # one select on the comparison's bit shares
        gy = g - gx
    else:
        cond = as_public(condition).bool()
        gx, gy = where(cond, g, 0.0), where(cond, 0.0, g)
    return (None, _sum_to(gx, _shape(x)) if _needs(x) else None,
            _sum_to(gy, _shape(y)) if _needs(y) else None)


def _pairwise_extreme_grad(g, x, other, pick):
    # torch gives each side half the gradient where x == other; the forward's pick bit
    # alone would give all of it to x. One equality test and two selects.
    tie = x.eq(other)
    gx = g * pick - (g * 0.5) * tie
    return (gx if _needs(x) else None, (g - gx) if _needs(other) else None)


@register_grad("maximum")
def _maximum_grad(g, out, x, other, *, saved=None):
    pick = (saved or {}).get("pick")
    return _pairwise_extreme_grad(g, x, other, pick if pick is not None else x.ge(other))


@register_grad("minimum")
def _minimum_grad(g, out, x, other, *, saved=None):
    pick = (saved or {}).get("pick")
    return _pairwise_extreme_grad(g, x, other, pick if pick is not None else x.le(other))


# -- linear algebra -----------------------------------------------------------------------
def _mm(a, b):
    return a.matmul(b) if is_secret(a) else b.__rmatmul__(a)


def _mT(a):
    return a.transpose(-1, -2) if is_secret(a) else as_public(a).transpose(-1, -2)


def _mul_either(g, t):
    return g * t if is_secret(t) else g * as_public(t)


def _matmul_grads(g, a, b, need_a: bool, need_b: bool):
    """Gradients of a @ b with torch's 1-D promotion and batch broadcasting."""
    sa, sb = _shape(a), _shape(b)
    if len(sa) == 1 and len(sb) == 1:         # a dot product: g is 0-d
        return (_mul_either(g, b) if need_a else None), (_mul_either(g, a) if need_b else None)
    a1 = a if len(sa) > 1 else (a.unsqueeze(0) if is_secret(a) else as_public(a).unsqueeze(0))
    b1 = b if len(sb) > 1 else (b.unsqueeze(-1) if is_secret(b) else as_public(b).unsqueeze(-1))
    g1 = g
    if len(sa) == 1:
        g1 = g1.unsqueeze(-2)
    if len(sb) == 1:
        g1 = g1.unsqueeze(-1)
    ga = _sum_to(_mm(g1, _mT(b1)), _shape(a1)).reshape(sa) if need_a else None
    gb = _sum_to(_mm(_mT(a1), g1), _shape(b1)).reshape(sb) if need_b else None
    return ga, gb


@register_grad("matmul")
def _matmul_grad(g, out, x, other):
    return _matmul_grads(g, x, other, _needs(x), _needs(other))


@register_grad("rmatmul")
def _rmatmul_grad(g, out, x, other):
    # out = other @ x (other public, or secret when reached as x.__rmatmul__(other))
    g_other, g_x = _matmul_grads(g, other, x, _needs(other), _needs(x))
    return g_x, g_other


# -- reductions ---------------------------------------------------------------------------
@register_grad("sum")
def _sum_grad(g, out, x, dim=None, keepdim=False, dtype=None):
    if x.dim() == 0:                          # sum of a 0-d tensor (any dim) is itself
        return (g.reshape(()),)
    dims = _dims(dim, x.dim())
    if not keepdim:
        for d in sorted(dims):
            g = g.unsqueeze(d)
    return (g.expand(x.shape),)


@register_grad("cumsum")
def _cumsum_grad(g, out, x, dim):
    return (g.flip([dim]).cumsum(dim).flip([dim]),)


# -- shape ops: every one is a gather of the share --------------------------------------------
@register_grad("index_map")
def _index_map_grad(g, out, x, fn):
    # ``fn`` is the local reshaping the forward applied to the share (reshape, permute,
    # index, expand, flip, narrow, tril, ...). Applied to positions it tells where each
    # output element came from; the gradient is the scatter-add back (sums for expand).
    return _scatter(g, fn(_positions(x.shape)), x.shape), None


@register_grad("cat")
def _cat_grad(g, out, tensors, dim=0):
    sizes = [_shape(t)[dim] for t in tensors]
    pieces = g.split(sizes, dim)
    return [p if _needs(t) else None for p, t in zip(pieces, tensors)], None


@register_grad("stack")
def _stack_grad(g, out, tensors, dim=0):
    pieces = g.unbind(dim)
    return [p if _needs(t) else None for p, t in zip(pieces, tensors)], None


@register_grad("pad")
def _pad_grad(g, out, x, pad, mode="constant", value=0.0):
    pos = _positions(x.shape)
    if mode == "constant":
        src = F.pad(pos, pad)                 # padded cells read 0: no source
    else:                                     # replicate: the forward's index arithmetic
        src = pos
        for i in range(len(pad) // 2):
            dim, lo, hi = -1 - i, pad[2 * i], pad[2 * i + 1]
            n = src.shape[dim]
            src = src.index_select(dim, torch.arange(-lo, n + hi).clamp(0, n - 1))
    return _scatter(g, src, x.shape), None, None, None


# -- max: route the gradient to the (first) winner ---------------------------------------------
def max_onehot(values: torch.Tensor) -> torch.Tensor:
    """Ring shares of the one-hot of the (first) max of ``values`` along the last dim.

    Few candidates (pooling windows, classes): the max tree carries each candidate's
    one-hot along with its value, moved by the same select rounds. Many: the tree
    carries the index, then one equality test and one select.
    """
    p = proto()
    n = values.shape[-1]
    if n > 16:
        return _route_many(values, p.add_public(torch.zeros(values.shape, dtype=torch.int64),
                                                torch.ones(values.shape[:-1], dtype=torch.int64)))
    oh = p.add_public(torch.zeros(*values.shape, n, dtype=torch.int64),
                      torch.eye(n, dtype=torch.int64).expand(*values.shape, n))
    vals = values
    while vals.shape[-1] > 1:
        m = vals.shape[-1]
        h = m // 2
        a, b = vals[..., 0:2 * h:2], vals[..., 1:2 * h:2]
        oa, ob = oh[..., 0:2 * h:2, :], oh[..., 1:2 * h:2, :]
        keep_a = p.xor_public(p.msb(a - b), torch.ones(a.shape, dtype=torch.uint8))  # a >= b
        bits = torch.cat([keep_a.reshape(-1), keep_a.unsqueeze(-1).expand(oa.shape).reshape(-1)])
        sel = p.select(bits, torch.cat([(a - b).reshape(-1), (oa - ob).reshape(-1)]))
        new_v = b + sel[:a.numel()].reshape(a.shape)
        new_oh = ob + sel[a.numel():].reshape(oa.shape)
        if m % 2:
            new_v = torch.cat([new_v, vals[..., -1:]], -1)
            new_oh = torch.cat([new_oh, oh[..., -1:, :]], -2)
        vals, oh = new_v, new_oh
    return oh[..., 0, :]


def _route_many(values: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    p = proto()
    n = values.shape[-1]
    idx0 = p.add_public(torch.zeros(n, dtype=torch.int64), torch.arange(n))
    _, idx = max_tree(values, idx0.expand(values.shape).contiguous())
    diff = p.add_public(idx.unsqueeze(-1).expand(values.shape), -torch.arange(n))
    hit = p.eqz(diff.contiguous())
    return p.select(hit, g.unsqueeze(-1).expand(values.shape).contiguous())


def _route_to_max(values: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Shares of g placed at the argmax of ``values`` along the last dim, 0 elsewhere."""
    if values.shape[-1] > 16:
        return _route_many(values, g)
    onehot = max_onehot(values)
    return proto().mul(onehot, g.unsqueeze(-1).expand(onehot.shape).contiguous())


@register_grad("extreme")
def _extreme_grad(g, out, x, dim, keepdim, sign, with_index):
    if x.dim() == 0:                          # a 0-d tensor is its own max
        return g, None, None, None, None
    if x.numel() == 0:
        return x._wrap(torch.zeros(x.shape, dtype=torch.int64), g.dtype), None, None, None, None
    share = x.share if sign > 0 else -x.share
    if dim is None:
        routed = _route_to_max(share.reshape(1, -1), g.share.reshape(1))
        return x._wrap(routed.reshape(x.shape), g.dtype), None, None, None, None
    d = dim % x.dim()
    gs = g.share if keepdim else g.share.unsqueeze(d)
    routed = _route_to_max(share.movedim(d, -1), gs.movedim(d, -1).squeeze(-1))
    return x._wrap(routed.movedim(-1, d), g.dtype), None, None, None, None


def _pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


@register_grad("max_pool2d")
def _max_pool2d_grad(g, out, x, kernel_size, stride=None, padding=0, dilation=1,
                     ceil_mode=False, return_indices=False):
    k, s = _pair(kernel_size), _pair(stride if stride is not None else kernel_size)
    pd, d = _pair(padding), _pair(dilation)
    shape4 = (1, *x.shape) if x.dim() == 3 else tuple(x.shape)
    share, pos = x.share.reshape(shape4), _positions(shape4)
    if pd != (0, 0):                          # the forward pads by repeating edges
        share, pos = nn_ops._clamp_pad(share, *pd), nn_ops._clamp_pad(pos, *pd)
    win, src = nn_ops._windows(share, k, s, d), nn_ops._windows(pos, k, s, d)
    routed = _route_to_max(win, g.share.reshape(win.shape[:-1]))
    return (_scatter(g._wrap(routed, g.dtype), src, shape4).reshape(x.shape),) + (None,) * 6


@register_grad("avg_pool2d")
def _avg_pool2d_grad(g, out, x, kernel_size, stride=None, padding=0, ceil_mode=False,
                     count_include_pad=True, divisor_override=None):
    k, s, pd = _pair(kernel_size), _pair(stride if stride is not None else kernel_size), \
        _pair(padding)
    shape4 = (1, *x.shape) if x.dim() == 3 else tuple(x.shape)
    pos = F.pad(_positions(shape4), (pd[1], pd[1], pd[0], pd[0]))
    src = nn_ops._windows(pos, k, s, (1, 1))
    if divisor_override:
        scaled = g * (1.0 / divisor_override)
    elif count_include_pad or pd == (0, 0):
        scaled = g * (1.0 / (k[0] * k[1]))
    else:
        ones = torch.ones(1, 1, *x.shape[-2:])
        counts = F.avg_pool2d(ones, k, s, pd, count_include_pad=False, divisor_override=1)
        scaled = g * (1.0 / counts.reshape(counts.shape[-2:]))
    spread = scaled.reshape(src.shape[:-1]).unsqueeze(-1).expand(src.shape)
    return (_scatter(spread, src, shape4).reshape(x.shape),) + (None,) * 6


# -- convolution ----------------------------------------------------------------------------
def _same_pads(x_hw, k, d):
    pads = []
    for size, kk, dd in zip(x_hw, k, d):
        total = dd * (kk - 1)
        pads.append((total // 2, total - total // 2))
    return pads


def _dilate(g, s):
    """Insert s-1 zeros between the elements of g's last two dims (local)."""
    if s == (1, 1):
        return g
    n, c, h, w = g.shape
    z = proto().zeros((n, c, (h - 1) * s[0] + 1, (w - 1) * s[1] + 1))
    z[..., ::s[0], ::s[1]] = g.share
    return g._wrap(z, g.dtype)


def _conv_input_grad(g, w, s, d, in_hw):
    """conv_transpose2d(g, w) for groups=1, written as a conv2d (the protocol's kernel)."""
    kh, kw = w.shape[-2:]
    gd = _dilate(g, s)
    ph, pw = d[0] * (kh - 1), d[1] * (kw - 1)
    gp = g._wrap(F.pad(gd.share, (pw, pw, ph, ph)), g.dtype)
    wf = w.flip([2, 3]).transpose(0, 1) if is_secret(w) else \
        as_public(w).flip([2, 3]).transpose(0, 1)
    gx = nn_ops.conv2d(gp, wf, None, 1, 0, d, 1)
    extra_h, extra_w = in_hw[0] - gx.shape[-2], in_hw[1] - gx.shape[-1]
    # rows/cols the forward's stride never reached get no gradient
    return gx._wrap(F.pad(gx.share, (0, extra_w, 0, extra_h)), gx.dtype) \
        if extra_h or extra_w else gx


def _conv_weight_grad(g, xp, s, d, k):
    """d out / d weight for groups=1: a conv2d of the input by the output gradient."""
    xt = xp.transpose(0, 1) if is_secret(xp) else as_public(xp).transpose(0, 1)
    gw = nn_ops.conv2d(xt, g.transpose(0, 1), None, d, 0, s, 1)      # (C, O, kh', kw')
    return gw[:, :, :k[0], :k[1]].transpose(0, 1)


@register_grad("conv2d")
def _conv2d_grad(g, out, x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    s, d = _pair(stride), _pair(dilation)
    k = tuple(_shape(weight)[-2:])
    need_x, need_w = _needs(x), _needs(weight)
    unbatched = len(_shape(x)) == 3
    if unbatched:
        x = x.unsqueeze(0) if is_secret(x) else as_public(x).unsqueeze(0)
        g = g.unsqueeze(0)
    if padding == "valid":
        pads = [(0, 0), (0, 0)]
    elif padding == "same":
        pads = _same_pads(_shape(x)[-2:], k, d)
    else:
        p = _pair(padding)
        pads = [(p[0], p[0]), (p[1], p[1])]
    flat_pad = (pads[1][0], pads[1][1], pads[0][0], pads[0][1])
    xp = (nn_ops.pad(x, flat_pad) if is_secret(x) else F.pad(as_public(x), flat_pad)) \
        if any(flat_pad) else x
    in_hw = _shape(xp)[-2:]
    cin, cout = _shape(x)[1] // groups, _shape(weight)[0] // groups
    gxs, gws = [], []
    for gi in range(groups):
        gg = g[:, gi * cout:(gi + 1) * cout] if groups > 1 else g
        wg = weight[gi * cout:(gi + 1) * cout] if groups > 1 else weight
        xg = xp[:, gi * cin:(gi + 1) * cin] if groups > 1 else xp
        if need_x:
            gxs.append(_conv_input_grad(gg, wg, s, d, in_hw))
        if need_w:
            gws.append(_conv_weight_grad(gg, xg, s, d, k))
    gx = gw = gb = None
    if need_x:
        gx = gxs[0] if groups == 1 else type(g)._wrap(torch.cat([t.share for t in gxs], 1),
                                                     g.dtype)
        h, w = _shape(x)[-2:]
        gx = gx[:, :, pads[0][0]:pads[0][0] + h, pads[1][0]:pads[1][0] + w]
        gx = gx.squeeze(0) if unbatched else gx
    if need_w:
        gw = gws[0] if groups == 1 else type(g)._wrap(torch.cat([t.share for t in gws], 0),
                                                     g.dtype)
    if _needs(bias):
        gb = g.sum(dim=[0, 2, 3])
    return gx, gw, gb, None, None, None, None


def check_rules(names) -> None:
    """Raise naming every op in ``names`` without a registered rule (used by tests)."""
    from ..functions.grad_rules import GRAD_RULES
    missing = sorted(set(names) - set(GRAD_RULES))
    if missing:
        raise ProtocolUsageError(f"no gradient rule registered for: {missing}")
