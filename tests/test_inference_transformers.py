"""Transformers: attention (with and without masks), encoder/decoder blocks, Hugging Face.

Weights at party 0, token ids or embeddings at party 1, attention masks public. The
bound is the issue's: max abs error of logits <= 1e-2 at default settings (softmax, GELU,
LayerNorm and tanh are fixed-point approximations from veil.functions).
"""

from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import veil
from veil.compile import zoo
from veil.compile.evaluate import compare

ATOL = 1e-2
os.environ.setdefault("HF_HUB_OFFLINE", "1")       # configs only: nothing is downloaded


def _g(seed):
    return torch.Generator().manual_seed(seed)


def _build(factory, seed=0):
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return factory().eval()


class _Sdpa(nn.Module):
    def __init__(self, causal=False):
        super().__init__()
        self.causal = causal
        self.qkv = nn.Linear(8, 24)

    def forward(self, x, mask=None):
        q, k, v = self.qkv(x).view(2, 5, 3, 2, 4).permute(2, 0, 3, 1, 4)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=self.causal)


class _Mha(nn.Module):
    def __init__(self, need_weights=False):
        super().__init__()
        self.mha = nn.MultiheadAttention(8, 2, batch_first=True)
        self.need_weights = need_weights

    def forward(self, x, key_padding_mask=None, attn_mask=None):
        out, w = self.mha(x, x, x, key_padding_mask=key_padding_mask, attn_mask=attn_mask,
                          need_weights=self.need_weights)
        return out if w is None else (out, w)


X = torch.randn(2, 5, 8, generator=_g(1))
PAD = torch.zeros(2, 5, dtype=torch.bool)
PAD[1, 3:] = True                                    # the second sequence has 3 tokens

ATTENTION = {
    "sdpa": (lambda: _Sdpa(), {}, ()),
    "sdpa_causal": (lambda: _Sdpa(causal=True), {}, ()),
    "sdpa_bool_padding_mask": (lambda: _Sdpa(), {"mask": ~PAD[:, None, None, :]}, ("mask",)),
    "sdpa_additive_mask": (lambda: _Sdpa(), {"mask": torch.zeros(5, 5).masked_fill(
        torch.ones(5, 5, dtype=torch.bool).triu(1), float("-inf"))}, ("mask",)),
    "mha": (lambda: _Mha(), {}, ()),
    "mha_with_weights": (lambda: _Mha(need_weights=True), {}, ()),
    "mha_key_padding_mask": (lambda: _Mha(), {"key_padding_mask": PAD},
                             ("key_padding_mask",)),
    "mha_causal_attn_mask": (lambda: _Mha(), {
        "attn_mask": nn.Transformer.generate_square_subsequent_mask(5)}, ("attn_mask",)),
}


@pytest.mark.parametrize("name", sorted(ATTENTION))
def test_attention(name):
    factory, kwargs, public = ATTENTION[name]
    r = compare(_build(factory), (X,), kwargs, public_inputs=public)
    assert r.max_abs_error <= ATOL


@pytest.mark.parametrize("parties,protocol", [(2, "semi2k"), (3, "semi2k"), (3, "rep3")])
def test_transformer_encoder_layer(parties, protocol):
    net = _build(lambda: zoo.transformer_encoder_layer(16, 2, 32, "gelu"))
    r = compare(net, torch.randn(2, 6, 16, generator=_g(2)), parties=parties, protocol=protocol)
    assert r.max_abs_error <= ATOL


IDS = torch.randint(0, 50, (2, 12), generator=_g(3))
MASK = torch.ones(2, 12, dtype=torch.long)
MASK[1, 8:] = 0


@pytest.mark.parametrize("parties,tokens,protocol", [(2, "one_hot", "semi2k"),
                                                     (2, "secret_ints", "semi2k"),
                                                     (3, "one_hot", "semi2k"), (3, "one_hot", "rep3")])
def test_bert_style_encoder_with_padding_mask(parties, tokens, protocol):
    net = _build(lambda: zoo.BertStyle(vocab=50, d=16, heads=2, ffn=32, layers=2, seq=12))
    r = compare(net, (IDS,), {"mask": MASK}, parties=parties, public_inputs=("mask",),
                protocol=protocol,
                token_inputs=("ids",) if tokens == "one_hot" else ())
    assert r.max_abs_error <= ATOL


@pytest.mark.parametrize("parties,protocol", [(2, "semi2k"), (3, "semi2k"), (3, "rep3")])
def test_gpt_style_decoder_causal(parties, protocol):
    net = _build(lambda: zoo.GptStyle(vocab=50, d=16, heads=2, ffn=32, layers=2, seq=12))
    r = compare(net, (IDS,), parties=parties, protocol=protocol, token_inputs=("ids",))
    assert r.max_abs_error <= ATOL


def test_hf_bert_for_sequence_classification():
    net = _build(lambda: zoo.hf_bert(vocab=50, d=16, heads=2, ffn=32, layers=2, seq=12))
    r = compare(net, (IDS,), {"attention_mask": MASK}, public_inputs=("attention_mask",),
                token_inputs=("input_ids",))
    assert r.max_abs_error <= ATOL
    assert r.secure["logits"].shape == (2, 2)         # a ModelOutput, keyed like torch's


def test_hf_gpt2_lm_head():
    net = _build(lambda: zoo.hf_gpt2(vocab=50, d=16, heads=2, layers=2, seq=12))
    r = compare(net, (IDS,), token_inputs=("input_ids",))
    assert r.max_abs_error <= ATOL
    assert r.secure["logits"].shape == (2, 12, 50)


def test_token_ids_stay_secret_and_need_no_comparisons():
    """One-hot ids: the embedding lookup is one matmul; no comparison rounds."""
    net = _build(lambda: nn.Sequential(nn.Embedding(30, 4), nn.Linear(4, 3)))
    ids = torch.randint(0, 30, (2, 5), generator=_g(4))

    def job(tokens):
        r = veil.rank()
        m = veil.secure(net if r == 0 else None, owner=0,
                        example_input=ids if r == 0 else None)
        x = m.share_input("input", ids if r == 1 else None, owner=1) if tokens else \
            veil.tensor(ids if r == 1 else None, owner=1)
        before = veil.stats()["rounds"]
        out = m(x)
        rounds = veil.stats()["rounds"] - before
        return out.reveal(to=1), rounds, repr(x)

    with torch.no_grad():
        want = net(ids)
    (_, (got, rounds, text)) = veil.run(job, True, parties=2, seed=0)
    assert (got - want).abs().max() < 1e-3
    # embedding matmul (integer one-hot: no truncation) + linear matmul + its truncation
    assert rounds == 3
    assert text == "TokenIds(shape=(2, 5), vocab=30, <secret>)"
    (_, (got_int, rounds_int, _)) = veil.run(job, False, parties=2, seed=0)
    assert (got_int - want).abs().max() < 1e-3
    assert rounds_int > rounds               # secret integer ids need equality tests
