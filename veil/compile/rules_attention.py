"""Lowering rule: scaled dot-product attention, kept whole by capture.

Capture keeps torch's attention ops out of the Core ATen decomposition: the decomposed
form tests scores against -inf (``_safe_softmax``) and, for some strides, cannot even be
re-traced (Hugging Face GPT-2 at batch 2). Whole, the rule sees the mask directly:

    scores = (q @ k^T) * scale              1 round (Beaver matmul) + 1 truncation (one
                                            for both when scale is 2^-k, as 1/sqrt(64))
    masked entries -> MASK_FILL             public mask: local
    p = softmax(scores) * keep              veil.functions; keep is public: local
    out = p @ v                             1 round

``keep`` zeroes masked probabilities exactly, whatever the softmax approximation leaves
there. Masks (bool or additive float, causal or padding) must be public; an additive
secret mask is added as a secret.
"""

from __future__ import annotations

import math

import torch

from ..errors import ProtocolUsageError
from ..tensor import where as veil_where
from .lowering import MASK_FILL, local, mask_safe, register_lowering, secret

KEPT_OPS = ("_scaled_dot_product_flash_attention_for_cpu", "scaled_dot_product_attention",
            "_scaled_dot_product_attention_math")


def _mm(a, b):
    if secret(a) or secret(b):
        return a.matmul(b) if secret(a) else b.__rmatmul__(a)
    return torch.matmul(a, b)


def _t(x):
    return local(x, lambda t: t.transpose(-2, -1)) if secret(x) else x.transpose(-2, -1)


def _scaled(q, scale):
    """(q * scale, 1.0) with no truncation of its own when scale is 2^-k and q is a secret
    float that needs no gradient: the share is read with k more fractional bits, so the
    matmul that follows truncates F + k bits once instead of F, then k (BERT's and
    GPT-2's 1/sqrt(64) = 1/8). Otherwise (q, scale) unchanged."""
    k = -math.log2(scale) if scale > 0 else 0.5
    if not (secret(q) and q.dtype.is_floating_point and not q.requires_grad
            and k.is_integer() and 1 <= k <= q.frac):
        return q, scale
    return type(q)._wrap(q.share, q.dtype, frac=q.frac + int(k)), 1.0


def _repeat_heads(x, times):
    fn = (lambda t: t.repeat_interleave(times, dim=-3))
    return local(x, fn) if secret(x) else fn(x)


def attention(q, k, v, attn_mask=None, is_causal=False, scale=None, enable_gqa=False):
    """torch.nn.functional.scaled_dot_product_attention (eval: no dropout) on shares."""
    L, S, E = q.shape[-2], k.shape[-2], q.shape[-1]
    scale = 1.0 / math.sqrt(E) if scale is None else scale
    if enable_gqa and k.shape[-3] != q.shape[-3]:
        k, v = _repeat_heads(k, q.shape[-3] // k.shape[-3]), \
            _repeat_heads(v, q.shape[-3] // v.shape[-3])
    q, scale = _scaled(q, scale)
    scores = _mm(q, _t(k))
    if scale != 1.0:
        scores = scores * scale
    keep = torch.ones(L, S, dtype=torch.bool).tril() if is_causal else None
    if attn_mask is not None:
        if secret(attn_mask):
            if attn_mask.dtype == torch.bool:
                raise ProtocolUsageError("a secret boolean attention mask is not supported; "
                                         "pass the mask in the clear (public_inputs=...)")
            scores = scores + attn_mask
        elif attn_mask.dtype == torch.bool:
            keep = attn_mask if keep is None else keep & attn_mask
        else:
            add = mask_safe(attn_mask)
            scores = scores.add(add) if secret(scores) else scores + add
            dead = attn_mask <= -1e4
            if bool(dead.any()):
                keep = ~dead if keep is None else keep & ~dead
    if not secret(scores):                 # only v is secret: the weights are public
        if keep is not None:
            scores = scores.masked_fill(~keep, float("-inf"))
        return _mm(scores.softmax(-1), v)
    if keep is not None:
        scores = veil_where(keep, scores, MASK_FILL)
    p = scores.softmax(-1)
    if keep is not None:
        p = p * keep.to(torch.int64)      # exact zeros where masked; a public 0/1 product
    return _mm(p, v)


def _query_shape_check(node, shape_of):
    q = shape_of(node.args[0])
    return None if q is None or len(q) >= 2 else "attention needs (..., L, E) queries"


@register_lowering("aten._scaled_dot_product_flash_attention_for_cpu.default",
                   needs=("softmax",), check=_query_shape_check,
                   note="(q @ k^T) * scale, public mask, softmax (veil.functions), @ v: "
                        "2 matmul rounds + softmax")
def _sdpa_flash_cpu(q, k, v, dropout_p=0.0, is_causal=False, *, attn_mask=None, scale=None):
    return attention(q, k, v, attn_mask, is_causal, scale), None


@register_lowering("aten.scaled_dot_product_attention.default", needs=("softmax",),
                   check=_query_shape_check, note="as above")
def _sdpa(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, *, scale=None,
          enable_gqa=False):
    return attention(q, k, v, attn_mask, is_causal, scale, enable_gqa)


@register_lowering("aten._scaled_dot_product_attention_math.default", needs=("softmax",),
                   check=_query_shape_check, note="as above")
def _sdpa_math(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, dropout_mask=None, *,
               scale=None, enable_gqa=False):
    return attention(q, k, v, attn_mask, is_causal, scale, enable_gqa), None
