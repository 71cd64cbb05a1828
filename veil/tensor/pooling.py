"""N-d pooling with torch's full options, and conv3d: max_pool1d/2d/3d (padding, dilation,
ceil_mode, return_indices), avg_pool1d/2d/3d (ceil_mode, count_include_pad,
divisor_override), adaptive_max_pool1d/2d, conv3d.

One mechanism for every window shape: a public index table ``src`` (output position x
window slot -> flat input position) computed in plaintext from the shapes alone. Window
slots that fall in the padding (or past the end under ceil_mode, or beyond a shorter
adaptive window) point at the window's first real element instead: a copy of an element
already in the window never changes its max, so max pooling needs no sentinel value and
no range assumption. Average pooling multiplies those slots by a public 0.

Costs: gathering windows is local; max pooling is a max tree over the K = prod(kernel)
slots (ceil(log2 K) layers of one comparison + one select), carrying the input position
(free: same select) so ``return_indices`` costs nothing more; avg pooling is local plus
one truncation. conv3d is ONE conv2d call: the kernel's depth is folded into the input
channels (x's depth windows gathered locally), so it costs what a conv2d does.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..autograd.graph import differentiable
from ..errors import ProtocolUsageError
from ..functions.grad_rules import register_grad
from .core import proto
from .reduce import max_tree


def _tuple(v, nd, what):
    t = tuple(v) if isinstance(v, (tuple, list)) else (v,) * nd
    if len(t) == 1 and nd > 1:
        t = t * nd
    if len(t) != nd:
        raise ProtocolUsageError(f"{what} must be an int or a tuple of {nd}, got {v!r}")
    return tuple(int(a) for a in t)


def _out_len(L, k, s, p, d, ceil_mode):
    span = d * (k - 1) + 1
    if p > k // 2:
        raise ProtocolUsageError(f"pad should be at most half of effective kernel size, but "
                                 f"got pad={p}, kernel_size={k} (as torch)")
    num = L + 2 * p - span
    out = (-(-num // s) if ceil_mode else num // s) + 1
    if ceil_mode and (out - 1) * s >= L + p:
        out -= 1
    if out <= 0:
        raise ProtocolUsageError(f"pooling output size would be {out} for input {L}, kernel "
                                 f"{k}, stride {s}, padding {p}, dilation {d}")
    return out


def _combine(per_dim, spatial):
    """Per-dim (positions (out_i, k_i), valid) -> flat src (*out, K), valid (*out, K)."""
    nd = len(per_dim)
    flat, valid = None, None
    stride = 1
    for i in range(nd - 1, -1, -1):
        pos, ok = per_dim[i]
        shape = [1] * (2 * nd)
        shape[i], shape[nd + i] = pos.shape
        term = (pos.clamp(0, spatial[i] - 1) * stride).reshape(shape)
        okr = ok.reshape(shape)
        flat = term if flat is None else flat + term
        valid = okr if valid is None else valid & okr
        stride *= spatial[i]
    outs = flat.shape[:nd]
    k = math.prod(flat.shape[nd:])
    return flat.reshape(*outs, k), valid.reshape(*outs, k)


def _fill_invalid(src, valid):
    """Point every invalid slot at the first valid slot of its window (max-neutral)."""
    first = valid.to(torch.int8).argmax(-1, keepdim=True)
    if not valid.any(-1).all():
        raise ProtocolUsageError("internal: a pooling window with no input element")
    return torch.where(valid, src, src.gather(-1, first))


def window_index(spatial, k, s, p, d, ceil_mode):
    per_dim = []
    for L, kk, ss, pp, dd in zip(spatial, k, s, p, d):
        o = _out_len(L, kk, ss, pp, dd, ceil_mode)
        pos = torch.arange(o).unsqueeze(1) * ss - pp + torch.arange(kk).unsqueeze(0) * dd
        per_dim.append((pos, (pos >= 0) & (pos < L)))
    src, valid = _combine(per_dim, spatial)
    return _fill_invalid(src, valid), valid


def adaptive_index(spatial, out_size):
    per_dim = []
    for L, o in zip(spatial, out_size):
        o = L if o is None else int(o)
        starts = [(i * L) // o for i in range(o)]
        ends = [-(-((i + 1) * L) // o) for i in range(o)]
        kmax = max(e - b for b, e in zip(starts, ends))
        pos = torch.tensor([[b + j for j in range(kmax)] for b in starts])
        ok = torch.tensor([[b + j < e for j in range(kmax)] for b, e in zip(starts, ends)])
        per_dim.append((pos, ok))
    src, valid = _combine(per_dim, spatial)
    return _fill_invalid(src, valid), valid


def _windows(share, src, nd):
    """(lead..., *spatial) shares -> (lead..., *out, K) windows (local)."""
    lead = share.shape[:share.dim() - nd]
    flat = share.reshape(*lead, -1)
    return flat[..., src]


@differentiable("max_pool_nd")
def _max_pool(x, src, nd: int, with_index: bool):
    win = _windows(x.share, src, nd)
    pos = proto().add_public(torch.zeros(src.shape, dtype=torch.int64), src) \
        if with_index else None                  # positions ride in the same selects
    vals, idx = max_tree(win, pos.expand(win.shape).contiguous() if with_index else None)
    return x._wrap(vals, x.dtype), (x._wrap(idx, torch.int64, 0) if with_index else None)


@register_grad("max_pool_nd")
def _max_pool_grad(g, out, x, src, nd, with_index):
    from ..autograd.rules import _route_to_max
    win = _windows(x.share, src, nd)
    routed = _route_to_max(win, g.share)                            # (lead..., *out, K)
    lead = x.shape[:x.dim() - nd]
    flat = torch.zeros(*lead, math.prod(x.shape[x.dim() - nd:]), dtype=torch.int64)
    flat.scatter_add_(-1, src.reshape(-1).expand(*lead, -1).contiguous(),
                      routed.reshape(*lead, -1))
    return g._wrap(flat.reshape(x.shape), g.dtype), None, None, None


def _check_rank(x, nd, what):
    if x.dim() not in (nd + 1, nd + 2):
        raise ProtocolUsageError(f"{what} expects a {nd + 1}-d or {nd + 2}-d input, got "
                                 f"{x.dim()}-d")


def max_pool(x, nd, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
             return_indices=False):
    """F.max_pool{nd}d with every option (see the module note for the cost)."""
    what = f"max_pool{nd}d"
    _check_rank(x, nd, what)
    k = _tuple(kernel_size, nd, "kernel_size")
    s = _tuple(stride if stride not in (None, []) else kernel_size, nd, "stride")
    src, _ = window_index(tuple(x.shape[-nd:]), k, s, _tuple(padding, nd, "padding"),
                          _tuple(dilation, nd, "dilation"), bool(ceil_mode))
    vals, idx = _max_pool(x, src, nd, bool(return_indices))
    return (vals, idx) if return_indices else vals


def max_pool1d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    return max_pool(x, 1, kernel_size, stride, padding, dilation, ceil_mode, return_indices)


def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    """F.max_pool2d: padding with dilation, ceil_mode and return_indices included.

    >>> import torch, veil
    >>> def f():
    ...     x = veil.tensor(torch.arange(16.).reshape(1, 1, 4, 4) if veil.rank() == 0 else None,
    ...                     owner=0)
    ...     v, i = torch.nn.functional.max_pool2d(x, 3, 2, ceil_mode=True, return_indices=True)
    ...     return v.reveal().flatten().tolist(), i.reveal().flatten().tolist()
    >>> veil.run(f, parties=2, seed=0)[0]
    ([10.0, 11.0, 14.0, 15.0], [10, 11, 14, 15])
    """
    return max_pool(x, 2, kernel_size, stride, padding, dilation, ceil_mode, return_indices)


def max_pool3d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    return max_pool(x, 3, kernel_size, stride, padding, dilation, ceil_mode, return_indices)


def adaptive_max_pool(x, nd, output_size, return_indices=False):
    _check_rank(x, nd, f"adaptive_max_pool{nd}d")
    out = output_size if isinstance(output_size, (tuple, list)) else (output_size,) * nd
    src, _ = adaptive_index(tuple(x.shape[-nd:]), tuple(out))
    vals, idx = _max_pool(x, src, nd, bool(return_indices))
    return (vals, idx) if return_indices else vals


def adaptive_max_pool1d(x, output_size, return_indices=False):
    return adaptive_max_pool(x, 1, output_size, return_indices)


def adaptive_max_pool2d(x, output_size, return_indices=False):
    return adaptive_max_pool(x, 2, output_size, return_indices)


def avg_pool(x, nd, kernel_size, stride=None, padding=0, ceil_mode=False,
             count_include_pad=True, divisor_override=None):
    """F.avg_pool{nd}d: a local window sum times a public 1/divisor (torch's divisor,
    computed by torch on a tensor of ones with the same options)."""
    _check_rank(x, nd, f"avg_pool{nd}d")
    k = _tuple(kernel_size, nd, "kernel_size")
    s = _tuple(stride if stride not in (None, []) else kernel_size, nd, "stride")
    p = _tuple(padding, nd, "padding")
    spatial = tuple(x.shape[-nd:])
    src, valid = window_index(spatial, k, s, p, (1,) * nd, bool(ceil_mode))
    ones = torch.ones(1, 1, *spatial, dtype=torch.float64)
    if nd == 1:                     # avg_pool1d has no divisor_override: use height 1
        ones, k2, s2, p2 = ones.unsqueeze(-2), (1, *k), (1, *s), (0, *p)
    else:
        k2, s2, p2 = k, s, p
    pool = F.avg_pool3d if nd == 3 else F.avg_pool2d
    kw = dict(kernel_size=k2, stride=s2, padding=p2, ceil_mode=bool(ceil_mode),
              count_include_pad=count_include_pad)
    avg = pool(ones, divisor_override=divisor_override, **kw)
    total = pool(ones, divisor_override=1, **kw)          # real elements per window
    scale = (avg / total).reshape(src.shape[:-1])          # 1 / torch's divisor
    lead = x.shape[:x.dim() - nd]
    win = x.reshape(*lead, -1)._map(lambda t: t[..., src])    # local, differentiable
    sums = (win * valid.to(torch.int64)).sum(-1)
    return (sums * scale)._to_dtype(x.dtype)   # scale is float64 for its precision


def avg_pool1d(x, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True):
    return avg_pool(x, 1, kernel_size, stride, padding, ceil_mode, count_include_pad)


def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True, divisor_override=None):
    return avg_pool(x, 2, kernel_size, stride, padding, ceil_mode, count_include_pad,
                    divisor_override)


def avg_pool3d(x, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True, divisor_override=None):
    return avg_pool(x, 3, kernel_size, stride, padding, ceil_mode, count_include_pad,
                    divisor_override)


# -- conv3d as one conv2d -------------------------------------------------------------------
def conv3d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """F.conv3d: the kernel depth folded into channels, one conv2d (one product round)."""
    from . import nn_ops
    from .core import as_public, is_secret
    if isinstance(padding, str):
        raise ProtocolUsageError("conv3d: string padding is not supported; give numbers")
    unbatched = x.dim() == 4
    if unbatched:
        x = x.unsqueeze(0)
    s, p, d = _tuple(stride, 3, "stride"), _tuple(padding, 3, "padding"), \
        _tuple(dilation, 3, "dilation")
    w = weight if is_secret(weight) else as_public(weight)
    o, cg, kd, kh, kw = w.shape
    n, c, depth, h, wd = x.shape
    if p[0]:
        x = nn_ops.pad(x, (0, 0, 0, 0, p[0], p[0]))
        depth += 2 * p[0]
    dout = (depth - d[0] * (kd - 1) - 1) // s[0] + 1
    didx = (torch.arange(dout).unsqueeze(1) * s[0] + torch.arange(kd).unsqueeze(0) * d[0])
    # (N, C, Dout, kd, H, W) -> (N, Dout, groups, kd, C/groups, H, W) -> (N*Dout, kd*C, H, W)
    def fold(t):
        t = t[:, :, didx]
        t = t.reshape(n, groups, c // groups, dout, kd, *t.shape[-2:])
        t = t.permute(0, 3, 1, 4, 2, 5, 6)
        return t.reshape(n * dout, groups * kd * (c // groups), *t.shape[-2:])
    xf = x._map(fold)
    wf = w.permute(0, 2, 1, 3, 4).reshape(o, kd * cg, kh, kw)
    out = nn_ops.conv2d(xf, wf, None, s[1:], p[1:], d[1:], groups)   # (N*Dout, O, H', W')
    out = out.reshape(n, dout, o, *out.shape[-2:]).permute(0, 2, 1, 3, 4)
    if bias is not None:
        out = out + (bias.reshape(1, -1, 1, 1, 1) if is_secret(bias) else
                     as_public(bias).reshape(1, -1, 1, 1, 1))
    return out.squeeze(0) if unbatched else out


__all__ = ["max_pool1d", "max_pool2d", "max_pool3d", "adaptive_max_pool1d",
           "adaptive_max_pool2d", "avg_pool1d", "avg_pool2d", "avg_pool3d", "conv3d",
           "window_index", "adaptive_index"]
