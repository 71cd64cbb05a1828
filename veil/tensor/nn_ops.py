"""Convolution, linear and pooling on SecretTensor, torch.nn.functional semantics.

Products with a public operand are local; secret × secret uses the protocol's
``matmul`` / ``conv2d`` kernels (one round). Average pooling is local plus one
truncation; max pooling is a max tree over each window.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..autograd.graph import differentiable
from ..errors import ProtocolUsageError
from .core import (as_public, encode_operand, factor_limit, frac_of, is_secret, proto,
                   public_frac, public_is_integral, result_dtype)
from .arith import _meta
from .fixed import fixed_move, masked_pair
from .reduce import max_tree


def _pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def _bilinear(x, w, local_fn, kernel, masked_kernel=None):
    """``local_fn`` applied to (x, w) where at least one is secret; returns a SecretTensor."""
    dtype = result_dtype(x, w)
    sec = x if is_secret(x) else w
    if is_secret(x) and is_secret(w):
        _meta(local_fn, x, w)                 # torch's shape error, before the dealer sees it
        masked = masked_pair(x, w) if masked_kernel is not None else None
        z = kernel(x.share, w.share) if masked is None else masked_kernel(*masked)
        return sec._rescale(z, x.frac + w.frac, dtype)
    pub = as_public(w if is_secret(x) else x)
    pf = public_frac(pub) if pub.is_floating_point() and not public_is_integral(pub) else 0
    if not pub.is_floating_point() or public_is_integral(pub):
        pub = pub.to(torch.int64)
    enc = encode_operand(pub, pf, factor_limit())
    z = local_fn(x.share, enc) if is_secret(x) else local_fn(enc, w.share)
    return sec._rescale(z, sec.frac + pf, dtype)


def _add_bias(out, bias, shape):
    if bias is None:
        return out
    return out + (bias.reshape(shape) if is_secret(bias) else as_public(bias).reshape(shape))


@differentiable("conv2d")
def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """torch.nn.functional.conv2d with secret input and/or weight."""
    if isinstance(padding, str) and padding not in ("same", "valid"):
        raise ProtocolUsageError("conv2d padding must be int, tuple, 'same' or 'valid'")
    params = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    out = _bilinear(x, weight, lambda a, b: F.conv2d(a, b, **params),
                    lambda a, b: proto().conv2d(a, b, **params),
                    lambda a, b: proto().conv2d_masked(a, b, **params))
    return _add_bias(out, bias, (1, -1, 1, 1))


def conv1d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """torch.nn.functional.conv1d, as a conv2d of height 1."""
    if isinstance(padding, str):
        pad2 = padding
    else:
        pad2 = (0, padding[0] if isinstance(padding, (tuple, list)) else padding)
    s = stride[0] if isinstance(stride, (tuple, list)) else stride
    d = dilation[0] if isinstance(dilation, (tuple, list)) else dilation
    out = conv2d(x.unsqueeze(-2), weight.unsqueeze(-2), None, (1, s), pad2, (1, d), groups)
    return _add_bias(out.squeeze(-2), bias, (1, -1, 1))


def linear(x, weight, bias=None):
    """torch.nn.functional.linear: x @ weight.T + bias."""
    wt = fixed_move(weight, "T", lambda w: w.transpose(-1, -2)) if is_secret(weight) \
        else as_public(weight).transpose(-1, -2)
    out = x.matmul(wt) if is_secret(x) else wt.__rmatmul__(as_public(x))
    return _add_bias(out, bias, (-1,))


def _windows(share, kernel, stride, dilation):
    """(N, C, H, W) → (N, C, oH, oW, kh*kw) windows, local on the share."""
    (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    t = share.unfold(2, (kh - 1) * dh + 1, sh).unfold(3, (kw - 1) * dw + 1, sw)
    t = t[..., ::dh, ::dw]
    return t.reshape(*t.shape[:4], kh * kw)


def _clamp_pad(share, ph, pw):
    """Pad H and W by repeating edge values (max-neutral for windows that touch the edge)."""
    h, w = share.shape[-2:]
    ih = torch.arange(-ph, h + ph).clamp(0, h - 1)
    iw = torch.arange(-pw, w + pw).clamp(0, w - 1)
    return share.index_select(-2, ih).index_select(-1, iw)


@differentiable("max_pool2d")
def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    """torch.nn.functional.max_pool2d (return_indices and ceil_mode unsupported)."""
    if ceil_mode or return_indices:
        raise ProtocolUsageError("max_pool2d: ceil_mode and return_indices are not supported")
    k, s = _pair(kernel_size), _pair(stride if stride is not None else kernel_size)
    p, d = _pair(padding), _pair(dilation)
    share = x.share
    squeeze = share.dim() == 3
    if squeeze:
        share = share.unsqueeze(0)
    if p != (0, 0):
        if d != (1, 1):
            raise ProtocolUsageError("max_pool2d with both padding and dilation is not supported")
        share = _clamp_pad(share, *p)
    vals, _ = max_tree(_windows(share, k, s, d), None)
    return x._wrap(vals.squeeze(0) if squeeze else vals, x.dtype)


@differentiable("avg_pool2d")
def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True, divisor_override=None):
    if ceil_mode:
        raise ProtocolUsageError("avg_pool2d: ceil_mode is not supported")
    k, s, p = _pair(kernel_size), _pair(stride if stride is not None else kernel_size), \
        _pair(padding)
    share = F.pad(x.share, (p[1], p[1], p[0], p[0])) if p != (0, 0) else x.share
    sums = _windows(share if share.dim() == 4 else share.unsqueeze(0), k, s, (1, 1)).sum(-1)
    if share.dim() == 3:
        sums = sums.squeeze(0)
    total = x._wrap(sums, x.dtype)
    if divisor_override:
        return total * (1.0 / divisor_override)
    if count_include_pad or p == (0, 0):
        return total * (1.0 / (k[0] * k[1]))
    ones = torch.ones(1, 1, *x.shape[-2:])
    counts = F.avg_pool2d(ones, k, s, p, count_include_pad=False, divisor_override=1)
    return total * (1.0 / counts.reshape(counts.shape[-2:]))


def _adaptive_matrix(n_in, n_out):
    m = torch.zeros(n_out, n_in, dtype=torch.float64)
    for i in range(n_out):
        lo, hi = (i * n_in) // n_out, math.ceil((i + 1) * n_in / n_out)
        m[i, lo:hi] = 1.0 / (hi - lo)
    return m


def adaptive_avg_pool2d(x, output_size):
    """torch's adaptive average pooling as one public linear map (one truncation)."""
    oh, ow = _pair(output_size)
    h, w = x.shape[-2:]
    oh, ow = oh or h, ow or w
    mat = torch.kron(_adaptive_matrix(h, oh), _adaptive_matrix(w, ow))   # (oh*ow, h*w)
    flat = x.flatten(-2)
    out = flat.matmul(mat.T)._to_dtype(x.dtype)
    return out.reshape(*x.shape[:-2], oh, ow)


@differentiable("pad")
def pad(x, pad, mode="constant", value=0.0):
    """torch.nn.functional.pad (constant mode, or replicate) on a SecretTensor."""
    if mode == "constant":
        share = F.pad(x.share, pad)
        if value:
            mask = F.pad(torch.zeros(x.shape, dtype=torch.int64), pad, value=1)
            share = proto().add_public(share, mask * encode_operand(as_public(value),
                                                                      frac_of(x.dtype)))
        return x._wrap(share, x.dtype)
    if mode == "replicate":
        share = x.share
        for i in range(len(pad) // 2):
            dim = -1 - i
            lo, hi = pad[2 * i], pad[2 * i + 1]
            n = share.shape[dim]
            share = share.index_select(dim, torch.arange(-lo, n + hi).clamp(0, n - 1))
        return x._wrap(share, x.dtype)
    raise ProtocolUsageError(f"pad mode {mode!r} is not supported; use 'constant' or 'replicate'")
