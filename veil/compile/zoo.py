"""Reference models for the tests, the benchmark, the docs and the example.

Plain PyTorch, nothing veil-specific: they are what users would write. Sizes are
parameters so the tests run small and the benchmark runs the published sizes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def mlp(sizes=(784, 512, 512, 10)) -> nn.Module:
    layers = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers[:-1])


def lenet5(in_ch: int = 1, classes: int = 10, size: int = 28) -> nn.Module:
    """LeNet-5 as CrypTen benchmarks it (ReLU, max pooling); ``size`` is the image side."""
    s = ((size + 4 - 4) // 2 - 4) // 2          # conv5 pad2, pool2, conv5, pool2
    return nn.Sequential(
        nn.Conv2d(in_ch, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(16 * s * s, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
        nn.Linear(84, classes))


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.short = nn.Sequential()
        if stride != 1 or cin != cout:
            self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                       nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.short(x))


class ResNet18(nn.Module):
    """ResNet-18 for CIFAR (3x3 stem, no max pool); ``width`` 64 is the standard net."""

    def __init__(self, classes: int = 10, width: int = 64):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        blocks, cin = [], width
        for i, stride in enumerate([1, 2, 2, 2]):
            cout = width * 2 ** i
            blocks += [BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)]
            cin = cout
        self.layers = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.pool(self.layers(x))
        return self.fc(torch.flatten(x, 1))


class InvertedResidual(nn.Module):
    def __init__(self, cin, cout, stride, expand):
        super().__init__()
        hidden = cin * expand
        self.use_res = stride == 1 and cin == cout
        self.block = nn.Sequential(
            nn.Conv2d(cin, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(),
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden), nn.ReLU6(),
            nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        return x + self.block(x) if self.use_res else self.block(x)


def mobilenet_v2(classes: int = 10, width: int = 16, expand: int = 4) -> nn.Module:
    """A MobileNetV2-style net: depthwise convs, ReLU6, inverted residuals."""
    w = width
    return nn.Sequential(
        nn.Conv2d(3, w, 3, 2, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU6(),
        InvertedResidual(w, w, 1, 1), InvertedResidual(w, 2 * w, 2, expand),
        InvertedResidual(2 * w, 2 * w, 1, expand), InvertedResidual(2 * w, 4 * w, 2, expand),
        nn.Conv2d(4 * w, 8 * w, 1, bias=False), nn.BatchNorm2d(8 * w), nn.ReLU6(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(8 * w, classes))


class Attention(nn.Module):
    """Multi-head self-attention written with F.scaled_dot_product_attention."""

    def __init__(self, d, heads, causal=False):
        super().__init__()
        self.heads, self.causal = heads, causal
        self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)

    def forward(self, x, mask=None):
        b, s, d = x.shape
        q, k, v = self.qkv(x).view(b, s, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        attn_mask = None if mask is None else mask[:, None, None, :].bool()
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=self.causal)
        return self.out(y.transpose(1, 2).reshape(b, s, d))


class Block(nn.Module):
    def __init__(self, d, heads, ffn, causal=False, pre_norm=False):
        super().__init__()
        self.attn = Attention(d, heads, causal)
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.ffn = nn.Sequential(nn.Linear(d, ffn), nn.GELU(), nn.Linear(ffn, d))
        self.pre_norm = pre_norm

    def forward(self, x, mask=None):
        if self.pre_norm:                          # GPT
            x = x + self.attn(self.ln1(x), mask)
            return x + self.ffn(self.ln2(x))
        x = self.ln1(x + self.attn(x, mask))       # BERT
        return self.ln2(x + self.ffn(x))


class BertStyle(nn.Module):
    """Token + position embeddings, post-norm encoder blocks, classifier on token 0."""

    def __init__(self, vocab=100, d=32, heads=2, ffn=64, layers=2, seq=16, classes=2):
        super().__init__()
        self.tok, self.pos = nn.Embedding(vocab, d), nn.Embedding(seq, d)
        self.ln = nn.LayerNorm(d)
        self.blocks = nn.ModuleList(Block(d, heads, ffn) for _ in range(layers))
        self.head = nn.Linear(d, classes)

    def forward(self, ids, mask=None):
        pos = torch.arange(ids.shape[1])
        x = self.ln(self.tok(ids) + self.pos(pos))
        for blk in self.blocks:
            x = blk(x, mask)
        return self.head(torch.tanh(x[:, 0]))


class GptStyle(nn.Module):
    """Pre-norm causal decoder with tied input/output embeddings."""

    def __init__(self, vocab=100, d=32, heads=2, ffn=64, layers=2, seq=16):
        super().__init__()
        self.tok, self.pos = nn.Embedding(vocab, d), nn.Embedding(seq, d)
        self.blocks = nn.ModuleList(Block(d, heads, ffn, causal=True, pre_norm=True)
                                    for _ in range(layers))
        self.ln = nn.LayerNorm(d)

    def forward(self, ids):
        x = self.tok(ids) + self.pos(torch.arange(ids.shape[1]))
        for blk in self.blocks:
            x = blk(x)
        return self.ln(x) @ self.tok.weight.T


def transformer_encoder_layer(d=128, heads=4, ffn=512, activation="relu") -> nn.Module:
    return nn.TransformerEncoderLayer(d, heads, ffn, dropout=0.1, activation=activation,
                                      batch_first=True)


def hf_bert(vocab=100, d=32, heads=2, ffn=64, layers=2, seq=16, classes=2):
    """transformers' BertForSequenceClassification from a small config (random weights)."""
    from transformers import BertConfig, BertForSequenceClassification
    cfg = BertConfig(vocab_size=vocab, hidden_size=d, num_attention_heads=heads,
                     intermediate_size=ffn, num_hidden_layers=layers,
                     max_position_embeddings=seq, num_labels=classes)
    return BertForSequenceClassification(cfg).eval()


class _FirstOutput(nn.Module):
    """A module whose forward returns its inner module's first output (HF layers return
    tuples in some versions, a tensor in others)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x):
        out = self.inner(x)
        return out[0] if isinstance(out, tuple) else out


def hf_bert_layer(d=768, heads=12, ffn=3072, act="gelu") -> nn.Module:
    """One transformers BertLayer (self-attention, GELU FFN, two LayerNorms) built from a
    BertConfig (random weights), taking hidden states (batch, seq, d)."""
    from transformers import BertConfig
    from transformers.models.bert.modeling_bert import BertLayer
    cfg = BertConfig(hidden_size=d, num_attention_heads=heads, intermediate_size=ffn,
                     hidden_act=act, attn_implementation="eager")
    return _FirstOutput(BertLayer(cfg)).eval()


def hf_gpt2(vocab=100, d=32, heads=2, layers=2, seq=16):
    """transformers' GPT2LMHeadModel from a small config (random weights)."""
    from transformers import GPT2Config, GPT2LMHeadModel
    cfg = GPT2Config(vocab_size=vocab, n_embd=d, n_head=heads, n_layer=layers,
                     n_positions=seq, bos_token_id=0, eos_token_id=0, use_cache=False)
    return GPT2LMHeadModel(cfg).eval()


# -- digits: a real data set, small enough to train in a second ----------------------------
def digits_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(32 * 2 * 2, 64), nn.ReLU(), nn.Linear(64, 10))


def digits_data(seed: int = 0):
    """scikit-learn's digits: (x_train, y_train, x_test, y_test), images (N, 1, 8, 8) in [0, 1]."""
    from sklearn.datasets import load_digits
    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(d.target)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    test, train = order[:450], order[450:]          # a quarter of the 1797 images
    return x[train], y[train], x[test], y[test]


def train_digits_cnn(epochs: int = 12, seed: int = 0) -> nn.Module:
    """Train `digits_cnn` in plaintext (about a second on one core)."""
    xtr, ytr, _, _ = digits_data(seed)
    g = torch.Generator().manual_seed(seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)        # small batches: extra threads only contend
    try:
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            model = digits_cnn()
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        for _ in range(epochs):
            for idx in torch.randperm(len(xtr), generator=g).split(64):
                opt.zero_grad()
                F.cross_entropy(model(xtr[idx]), ytr[idx]).backward()
                opt.step()
    finally:
        torch.set_num_threads(threads)
    return model.eval()
