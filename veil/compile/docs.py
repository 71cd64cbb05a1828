"""The generated parts of docs/inference.md: `python -m veil.compile --docs`.

* the op support matrix, from the lowering table (which ATen ops run on secret values,
  how, and whether the veil.functions methods they need exist);
* the layer coverage table: each torch.nn layer captured, with the ATen ops it becomes;
* accuracy and cost per model: secure vs plaintext on the same random inputs.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import warnings

import torch
import torch.nn.functional as F
import torch.utils._pytree
from torch import nn

from ..docs_markers import emit_sections, replace_marked
from . import zoo
from .capture import capture
from .lowering import LOWERINGS
from .support import problems, secret_sources

DOC = pathlib.Path(__file__).resolve().parents[2] / "docs" / "inference.md"


def ops_table() -> str:
    rows = ["| ATen op | on secret values | available |", "|---|---|---|"]
    for op in sorted(LOWERINGS):
        rule = LOWERINGS[op]
        missing = rule.missing()
        status = "yes" if not missing else \
            "waits for " + ", ".join(f"`SecretTensor.{m}`" for m in missing)
        rows.append(f"| `{op}` | {rule.note or '-'} | {status} |")
    return "\n".join(rows) + "\n"


class _Sdpa(nn.Module):
    def __init__(self, causal=False):
        super().__init__()
        self.causal = causal

    def forward(self, q, mask=None):
        return F.scaled_dot_product_attention(q, q, q, attn_mask=mask, is_causal=self.causal)


class _Mha(nn.Module):
    def __init__(self):
        super().__init__()
        self.mha = nn.MultiheadAttention(8, 2, batch_first=True)

    def forward(self, x, key_padding_mask=None, attn_mask=None):
        return self.mha(x, x, x, key_padding_mask=key_padding_mask, attn_mask=attn_mask,
                        need_weights=False)[0]


class _Shapes(nn.Module):
    def forward(self, x):
        a, b = x.split(4, dim=-1)
        c, d = x.chunk(2, dim=0)
        y = torch.cat([a, b], -1).reshape(2, 2, 4).permute(2, 0, 1).transpose(0, 1)
        return y[:, 1:, torch.tensor([0, 1])].mean(dim=0).sum() + c.sum() + d[:, 1] + x


def _layers():
    """(label, module, example args, example kwargs, public input names)."""
    img, seq, vec = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 10), torch.randn(2, 8)
    tok = torch.randn(2, 5, 8)
    pad = torch.zeros(2, 5, dtype=torch.bool)
    pad[1, 3:] = True
    mask4 = ~pad[:, None, None, :]
    return [
        ("Linear", nn.Linear(8, 4), (vec,), {}, ()),
        ("Conv1d (stride, padding, dilation, groups)",
         nn.Conv1d(4, 6, 3, stride=2, padding=2, dilation=2, groups=2), (seq,), {}, ()),
        ("Conv2d (stride, padding, dilation, groups)",
         nn.Conv2d(4, 6, 3, stride=2, padding=1, dilation=2, groups=2), (img,), {}, ()),
        ("Conv2d depthwise", nn.Conv2d(4, 4, 3, padding=1, groups=4), (img,), {}, ()),
        ("ConvTranspose2d", nn.ConvTranspose2d(4, 3, 3, stride=2, padding=1), (img,), {}, ()),
        ("Conv2d + BatchNorm2d (folded)", nn.Sequential(nn.Conv2d(4, 4, 3), nn.BatchNorm2d(4)),
         (img,), {}, ()),
        ("Linear + BatchNorm1d (folded)", nn.Sequential(nn.Linear(8, 4), nn.BatchNorm1d(4)),
         (vec,), {}, ()),
        ("BatchNorm2d alone", nn.BatchNorm2d(4), (img,), {}, ()),
        ("LayerNorm", nn.LayerNorm(8), (vec,), {}, ()),
        ("GroupNorm", nn.GroupNorm(2, 4), (img,), {}, ()),
        ("ReLU", nn.ReLU(), (vec,), {}, ()),
        ("ReLU6", nn.ReLU6(), (vec,), {}, ()),
        ("LeakyReLU", nn.LeakyReLU(0.1), (vec,), {}, ()),
        ("GELU", nn.GELU(), (vec,), {}, ()),
        ("GELU(approximate='tanh')", nn.GELU("tanh"), (vec,), {}, ()),
        ("SiLU", nn.SiLU(), (vec,), {}, ()),
        ("Sigmoid", nn.Sigmoid(), (vec,), {}, ()),
        ("Tanh", nn.Tanh(), (vec,), {}, ()),
        ("Hardswish", nn.Hardswish(), (vec,), {}, ()),
        ("Softmax", nn.Softmax(-1), (vec,), {}, ()),
        ("LogSoftmax", nn.LogSoftmax(-1), (vec,), {}, ()),
        ("MaxPool2d", nn.MaxPool2d(3, 2, 1), (img,), {}, ()),
        ("AvgPool2d", nn.AvgPool2d(2), (img,), {}, ()),
        ("AdaptiveAvgPool2d", nn.AdaptiveAvgPool2d((3, 2)), (img,), {}, ()),
        ("Flatten + Dropout (eval)", nn.Sequential(nn.Flatten(), nn.Dropout()), (img,), {}, ()),
        ("Embedding", nn.Embedding(10, 4), (torch.tensor([[1, 2, 3]]),), {}, ()),
        ("Upsample (nearest, bilinear)", nn.Sequential(nn.Upsample(scale_factor=2),
                                                       nn.Upsample(scale_factor=2,
                                                                   mode="bilinear")),
         (img,), {}, ()),
        ("InstanceNorm2d", nn.InstanceNorm2d(4, affine=True), (img,), {}, ()),
        ("ELU / Softplus / Mish / PReLU", nn.Sequential(nn.ELU(), nn.Softplus(), nn.Mish(),
                                                        nn.PReLU()), (vec,), {}, ()),
        ("MultiheadAttention", _Mha(), (tok,), {}, ()),
        ("MultiheadAttention, key padding mask", _Mha(), (tok,), {"key_padding_mask": pad},
         ("key_padding_mask",)),
        ("MultiheadAttention, causal attn_mask", _Mha(), (tok,),
         {"attn_mask": nn.Transformer.generate_square_subsequent_mask(5)}, ("attn_mask",)),
        ("scaled_dot_product_attention", _Sdpa(), (tok.view(2, 5, 2, 4).transpose(1, 2),), {}, ()),
        ("scaled_dot_product_attention, is_causal", _Sdpa(True), (tok.view(2, 5, 2, 4).transpose(1, 2),), {},
         ()),
        ("scaled_dot_product_attention, padding mask", _Sdpa(), (tok.view(2, 5, 2, 4).transpose(1, 2),),
         {"mask": mask4}, ("mask",)),
        ("TransformerEncoderLayer", zoo.transformer_encoder_layer(8, 2, 16), (tok,), {}, ()),
        ("cat / split / chunk / reshape / permute / transpose / slice / index / mean / sum / "
         "residual add", _Shapes(), (vec,), {}, ()),
    ]


def layers_table() -> str:
    rows = ["| torch layer | ATen ops on secret values | ATen ops in plaintext (public "
            "masks, shapes) | runs securely |", "|---|---|---|---|"]
    for label, module, args, kwargs, public in _layers():
        graph, _ = capture(module, args, kwargs, public_inputs=public, check=False)
        src = secret_sources(graph)
        names = {True: set(), False: set()}
        for n in graph.nodes:
            if n.op != "getitem":
                deps = frozenset().union(*[src.get(r.name, frozenset()) for r in n.refs()])
                names[bool(deps)].add(n.op.removeprefix("aten."))
        why = {}
        for op, _, _, reason, _ in problems(graph):
            why.setdefault(op.removeprefix("aten."), reason.split(" (")[0].split(",")[0])
        status = "yes" if not why else "not yet: " + "; ".join(f"`{o}` {w}" for o, w in
                                                              sorted(why.items()))
        rows.append(f"| {label} | {_codes(names[True])} | {_codes(names[False])} | {status} |")
    return "\n".join(rows) + "\n"


def _codes(ops) -> str:
    return ", ".join(f"`{o}`" for o in sorted(ops)) or "-"


def _models():
    """(label, factory, args, kwargs, public inputs, token inputs, tolerance)."""
    ids = torch.randint(0, 100, (2, 32), generator=torch.Generator().manual_seed(0))
    mask = torch.ones(2, 32, dtype=torch.long)
    mask[1, 20:] = 0
    g = torch.Generator().manual_seed(1)
    return [
        ("MLP 64-32-32-10, batch 8", lambda: zoo.mlp((64, 32, 32, 10)),
         (torch.randn(8, 64, generator=g),), {}, (), (), 1e-3),
        ("LeNet-5, batch 4, 28x28", zoo.lenet5, (torch.randn(4, 1, 28, 28, generator=g),), {},
         (), (), 1e-3),
        ("ResNet-18 (CIFAR), batch 1, 32x32", zoo.ResNet18,
         (torch.randn(1, 3, 32, 32, generator=g),), {}, (), (), 1e-3),
        ("MobileNetV2-style, batch 2, 32x32", zoo.mobilenet_v2,
         (torch.randn(2, 3, 32, 32, generator=g),), {}, (), (), 1e-3),
        ("TransformerEncoderLayer d64 h4, seq 32", lambda: zoo.transformer_encoder_layer(64, 4,
                                                                                       256),
         (torch.randn(2, 32, 64, generator=g),), {}, (), (), 1e-2),
        ("BERT-style encoder d64 h4 x2, seq 32, padding mask",
         lambda: zoo.BertStyle(100, 64, 4, 256, 2, 32), (ids,), {"mask": mask}, ("mask",),
         ("ids",), 1e-2),
        ("GPT-style decoder d64 h4 x2, seq 32, causal",
         lambda: zoo.GptStyle(100, 64, 4, 256, 2, 32), (ids,), {}, (), ("ids",), 1e-2),
        ("HF BertForSequenceClassification d64 h4 x2, seq 32",
         lambda: zoo.hf_bert(100, 64, 4, 256, 2, 32), (ids,), {"attention_mask": mask},
         ("attention_mask",), ("input_ids",), 1e-2),
        ("HF GPT2LMHeadModel d64 h4 x2, seq 32", lambda: zoo.hf_gpt2(100, 64, 4, 2, 32),
         (ids,), {}, (), ("input_ids",), 1e-2),
    ]


def accuracy_table(parties: int = 2) -> str:
    from .evaluate import compare
    rows = ["| model | parties | max abs error (logits) | bound | max abs logit | "
            "secure forward (s) | rounds | MB sent/party |", "|---|---|---|---|---|---|---|---|"]
    for label, factory, args, kwargs, public, tokens, tol in _models():
        with torch.random.fork_rng():
            torch.manual_seed(0)
            model = factory()
        r = compare(model, args, kwargs, parties=parties, public_inputs=public,
                    token_inputs=tokens)
        ok = "" if r.max_abs_error <= tol else " (over)"
        scale = max(t.abs().max().item() for t in torch.utils._pytree.tree_leaves(r.plain)
                    if isinstance(t, torch.Tensor))
        rows.append(f"| {label} | {parties} | {r.max_abs_error:.1e}{ok} | {tol:g} | "
                    f"{scale:.2g} | {r.seconds:.2f} | {r.rounds} | {r.bytes_sent / 1e6:.1f} |")
        print(rows[-1], flush=True)
    return "\n".join(rows) + "\n"


def digits_line() -> str:
    from .evaluate import compare
    model = zoo.train_digits_cnn()
    _, _, x, y = zoo.digits_data()
    r = compare(model, x)
    agree = (r.secure.argmax(1) == r.plain.argmax(1)).float().mean().item()
    acc = (r.secure.argmax(1) == y).float().mean().item()
    return (f"Digits CNN, all {len(x)} test images in one batch, 2 parties: secure prediction "
            f"= plaintext prediction for {agree:.1%} of the images; secure accuracy {acc:.1%}; "
            f"max abs error of logits {r.max_abs_error:.1e}; {r.seconds:.2f} s, "
            f"{r.rounds} rounds, {r.bytes_sent / 1e6:.1f} MB sent per party.\n")


def replace_section(text: str, name: str, body: str) -> str:
    begin, end = f"<!-- inference:{name}:begin -->", f"<!-- inference:{name}:end -->"
    out = replace_marked(text, begin, end, body)
    return text + f"\n{begin}\n{body}{end}\n" if out is None else out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m veil.compile", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", action="store_true", help=f"rewrite the tables in {DOC}")
    ap.add_argument("--no-models", action="store_true",
                    help="skip the (slow) accuracy runs; only the op and layer tables")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", category=FutureWarning)
    sections = {"ops": ops_table(), "layers": layers_table()}
    if not args.no_models:
        sections["accuracy"] = accuracy_table()
        sections["digits"] = digits_line()
    emit_sections(DOC, sections, replace_section, args.docs, "# Secure inference\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
