"""Lowering rules: convolution, pooling, normalisation, softmax, embedding.

Convolutions use the protocol's conv2d kernel (secret x secret: one round, Beaver);
conv1d is a conv2d of height 1 and transposed convolution is zero insertion + padding +
an ordinary conv with the flipped, transposed kernel (all local until the conv itself).
BatchNorm normally never reaches here: capture folds it into the preceding conv/linear,
or rewrites it to one multiply-add with weights the owner precomputes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..tensor import nn_ops, pooling
from .lowering import local, register_lowering, secret


def _map(x, fn):
    return local(x, fn) if secret(x) else fn(x)


# -- convolution ------------------------------------------------------------------------------
def _conv_check(node, shape_of):
    stride = node.args[3]
    rank = shape_of(node.args[0])
    if len(stride) not in (1, 2, 3):
        return f"{len(stride)}-d convolution is not supported (1-d, 2-d and 3-d are)"
    if len(stride) == 3 and node.args[6]:
        return "transposed 3-d convolution is not supported"
    if rank is not None and len(rank) != len(stride) + 2:
        return "unbatched convolution input (add a batch dimension)"
    return None


def _transposed_as_conv(x, w, stride, padding, dilation, output_padding, groups):
    """conv_transpose2d == conv2d(zero-inserted, padded x, flipped transposed w)."""
    (sh, sw), (dh, dw) = stride, dilation
    cin, cout_g, kh, kw = w.shape

    def upsample(t):
        if (sh, sw) == (1, 1):
            return t
        n, c, h, wd = t.shape
        out = t.new_zeros(n, c, (h - 1) * sh + 1, (wd - 1) * sw + 1)
        out[..., ::sh, ::sw] = t
        return out

    lo_h, lo_w = dh * (kh - 1) - padding[0], dw * (kw - 1) - padding[1]
    pads = [lo_w, lo_w + output_padding[1], lo_h, lo_h + output_padding[0]]
    # negative padding crops, which is what a large transposed-conv padding means
    xp = _map(x, lambda t: F.pad(upsample(t), pads))

    def kernel(t):
        t = t.reshape(groups, cin // groups, cout_g, kh, kw).transpose(1, 2)
        return t.reshape(groups * cout_g, cin // groups, kh, kw).flip(-2, -1)
    return xp, _map(w, kernel)


@register_lowering("aten.convolution.default", check=_conv_check,
                   note="conv1d / conv2d / conv3d (groups, dilation) and transposed conv "
                        "as zero insertion + conv")
def _convolution(x, w, bias, stride, padding, dilation, transposed, output_padding, groups):
    if len(stride) == 3:        # one conv2d over the depth windows (veil.tensor.pooling)
        return pooling.conv3d(x, w, bias, list(stride), list(padding), list(dilation), groups)
    one_d = len(stride) == 1
    if one_d:   # as 2-d with height 1
        x, w = _map(x, lambda t: t.unsqueeze(-2)), _map(w, lambda t: t.unsqueeze(-2))
        stride, padding, dilation = [1, *stride], [0, *padding], [1, *dilation]
        output_padding = [0, *output_padding]
    if transposed:
        x, w = _transposed_as_conv(x, w, stride, padding, dilation, output_padding, groups)
        stride, padding = [1, 1], [0, 0]
    out = nn_ops.conv2d(x, w, None, list(stride), list(padding), list(dilation), groups)
    if one_d:
        out = out.squeeze(-2)
    if bias is not None:
        b = bias.reshape(-1, *([1] * (len(out.shape) - 2)))
        out = out.add(b)
    return out


# -- pooling ----------------------------------------------------------------------------------
@register_lowering("aten.max_pool2d_with_indices.default",
                   note="max tree over each window (ceil_mode, padding, dilation); indices "
                        "come with the values")
def _max_pool2d(x, kernel_size, stride=(), padding=0, dilation=1, ceil_mode=False):
    return pooling.max_pool2d(x, list(kernel_size), list(stride) or None, padding, dilation,
                              ceil_mode, return_indices=True)


@register_lowering("aten.avg_pool2d.default", note="local sums + 1 truncation (ceil_mode too)")
def _avg_pool2d(x, kernel_size, stride=(), padding=0, ceil_mode=False,
                count_include_pad=True, divisor_override=None):
    return pooling.avg_pool2d(x, list(kernel_size), list(stride) or None, padding, ceil_mode,
                              count_include_pad, divisor_override)


@register_lowering("aten._adaptive_avg_pool2d.default", note="one public linear map")
def _adaptive_avg_pool2d(x, output_size):
    return nn_ops.adaptive_avg_pool2d(x, list(output_size))


# -- resampling ---------------------------------------------------------------------------
def _spatial_map(x, fn):
    """A public linear map on the last two dims, found by applying ``fn`` to a basis.

    Nearest neighbour gives a 0/1 matrix (exact, no truncation); bilinear one truncation.
    Its size is (H*W) x (out H * out W): fine for feature maps, not for photographs.
    """
    h, w = x.shape[-2:]
    m = fn(torch.eye(h * w, dtype=torch.float64).reshape(h * w, 1, h, w))
    oh, ow = m.shape[-2:]
    out = x.flatten(-2).matmul(m.reshape(h * w, oh * ow))
    return out.reshape(*x.shape[:-2], oh, ow)


def _resample_rule(op):
    aten_op = getattr(getattr(torch.ops.aten, op.split(".")[1]), op.split(".")[2])

    def rule(x, *args, **kwargs):
        return _spatial_map(x, lambda basis: aten_op(basis, *args, **kwargs))
    rule.__name__ = "_" + op.split(".")[1]
    return rule


for _op in ("aten.upsample_nearest2d.vec", "aten.upsample_nearest2d.default",
            "aten._upsample_nearest_exact2d.vec", "aten._upsample_nearest_exact2d.default",
            "aten.upsample_bilinear2d.vec", "aten.upsample_bilinear2d.default"):
    register_lowering(_op, note="a public linear map on H x W (nearest: exact gather)")(
        _resample_rule(_op))


# -- normalisation ------------------------------------------------------------------------
@register_lowering("aten.native_layer_norm.default", needs=("layer_norm",),
                   note="x.layer_norm(...) (veil.functions)")
def _layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    return x.layer_norm(list(normalized_shape), weight, bias, eps), None, None


@register_lowering("aten.native_group_norm.default", needs=("layer_norm",),
                   note="layer_norm over each group, then the per-channel affine")
def _group_norm(x, weight, bias, n, c, hw, group, eps):
    if hasattr(x, "group_norm"):
        return x.group_norm(group, weight, bias, eps), None, None
    shape = tuple(x.shape)
    g = x.reshape(n, group, -1)
    y = g.layer_norm([g.shape[-1]], None, None, eps).reshape(shape)
    per_channel = (-1, *([1] * (len(shape) - 2)))
    if weight is not None:
        y = y.mul(weight.reshape(per_channel)) if secret(y) else weight.reshape(per_channel).mul(y)
    if bias is not None:
        y = y.add(bias.reshape(per_channel))
    return y, None, None


@register_lowering("aten._native_batch_norm_legit.no_stats", needs=("layer_norm",),
                   note="instance norm: layer_norm over all but the channel dim, then affine")
def _instance_stats_norm(x, weight, bias, training, momentum, eps):
    shape = tuple(x.shape)
    moved = x.transpose(0, 1)                          # (C, N, *spatial)
    flat = moved.reshape(shape[1], -1)
    y = flat.layer_norm([flat.shape[-1]], None, None, eps).reshape(tuple(moved.shape))
    y = y.transpose(0, 1)
    per_channel = (-1, *([1] * (len(shape) - 2)))
    if weight is not None:
        y = y.mul(weight.reshape(per_channel))
    if bias is not None:
        y = y.add(bias.reshape(per_channel))
    return y, None, None


@register_lowering("aten._native_batch_norm_legit_no_training.default", needs=("rsqrt",),
                   note="normally folded at capture; else (x - mean) * w * rsqrt(var + eps) + b")
def _batch_norm(x, weight, bias, mean, var, momentum, eps):
    per_channel = (-1, *([1] * (len(x.shape) - 2)))
    scale = (var + eps)
    scale = scale.rsqrt() if secret(scale) else torch.rsqrt(scale)
    if weight is not None:
        scale = scale.mul(weight) if secret(scale) else weight.mul(scale)
    y = x.sub(mean.reshape(per_channel)) if secret(x) else (-mean.reshape(per_channel)).add(x)
    y = y.mul(scale.reshape(per_channel)) if secret(y) else scale.reshape(per_channel).mul(y)
    if bias is not None:
        y = y.add(bias.reshape(per_channel))
    return y, None, None


# -- softmax ----------------------------------------------------------------------------------
@register_lowering("aten._softmax.default", needs=("softmax",),
                   note="x.softmax(dim) (veil.functions); -inf mask entries become "
                        "MASK_FILL")
def _softmax(x, dim, half_to_float=False):
    return x.softmax(dim)


@register_lowering("aten._log_softmax.default", needs=("log_softmax",),
                   note="x.log_softmax(dim) (veil.functions)")
def _log_softmax(x, dim, half_to_float=False):
    return x.log_softmax(dim)


# -- embedding --------------------------------------------------------------------------------
@register_lowering("aten.embedding.default",
                   note="public ids: local gather; ids shared with share_input: one-hot x "
                        "table (1 round); other secret ids: equality tests + one-hot")
def _embedding(weight, indices, padding_idx=-1, scale_grad_by_freq=False, sparse=False):
    if getattr(indices, "is_veil_token_ids", False):
        return indices.onehot.matmul(weight)
    if not secret(indices):
        return _map(weight, lambda t: t[indices])
    vocab = weight.shape[0]
    onehot = indices.unsqueeze(-1).eq(torch.arange(vocab))
    return onehot.matmul(weight) if secret(weight) else onehot.matmul(weight.float())
