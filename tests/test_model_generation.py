"""Private generation with a secret key/value cache (veil.compile.decoder), and the
whole-model benchmark's workload on tiny configs.

The oracle is torch: greedy tokens from full recomputation (no cache), and every step's
logits teacher-forced on the generated tokens. Tolerance: max abs error of logits
<= 5e-2 on logits of magnitude ~15 (fixed point, 16 fractional bits; softmax, GELU and
LayerNorm are approximations), and the tokens must be equal: the smallest gap between
the two best logits in these cases is 0.77, far above that error.
"""

from __future__ import annotations

import os

import pytest
import torch
import torch.utils._pytree as pytree

import veil
from veil.bench import model_workloads as mw
from veil.compile import zoo
from veil.compile.decoder import greedy_reference, secure_decoder
from veil.compile.outspec import Outputs
from veil.errors import PartyError, ProtocolUsageError

os.environ.setdefault("HF_HUB_OFFLINE", "1")       # configs only: nothing is downloaded
ATOL = 5e-2
P, NEW = 5, 6


def _lm(seed=2):
    """Tiny GPT-2 (2 layers, d 64) with weights large enough that greedy tokens vary
    (at GPT-2's init scale a random model repeats one token forever)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        lm = zoo.hf_gpt2(vocab=64, d=64, heads=2, layers=2, seq=32)
        with torch.no_grad():
            for name, p in lm.named_parameters():
                if p.dim() == 2:
                    p.normal_(0, 0.5 if ("wte" in name or "wpe" in name) else 0.15)
    return lm


LM = _lm()
PROMPT = torch.randint(0, 64, (1, P), generator=torch.Generator().manual_seed(2))


def _job():
    r = veil.rank()
    s0 = veil.stats()["bytes_sent"]
    dec = secure_decoder(LM if r == 0 else None, owner=0, prompt_len=P, max_new_tokens=NEW)
    shared = veil.stats()["bytes_sent"] - s0
    return dec.generate(PROMPT if r == 1 else None, owner=1, return_logits=True), dec, shared


@pytest.mark.parametrize("parties,protocol", [(2, "semi2k"), (3, "semi2k"), (3, "rep3")])
def test_kv_cache_generation_equals_torch_greedy(parties, protocol):
    want = greedy_reference(LM, PROMPT, NEW)
    assert len(set(want[0].tolist())) > 2                 # the case is not degenerate
    res = veil.run(_job, parties=parties, protocol=protocol, seed=0)
    assert res[0][0] is None and all(r[0] is None for r in res[2:])   # the owner only
    g = res[1][0]
    assert torch.equal(g.tokens, want)
    with torch.no_grad():
        full = LM(torch.cat([PROMPT, want], 1)).logits[:, P - 1:-1]
    got = torch.stack(g.logits, 1)
    assert (got - full).abs().max().item() <= ATOL
    assert len(g.step_s) == NEW - 1 and len(g.step_stats) == NEW - 1
    # the cost per token does not grow with the position: the same counts at every step
    assert len({(s["bytes_sent"], s["rounds"]) for s in g.step_stats}) == 1
    if parties == 2:
        _check_structure(res[0][1], res[0][2])


def _check_structure(dec, shared_bytes):
    """The step graph computes the new token only: its ids are (1, 1), every matmul has
    one row, and attention reads the secret cache (P + NEW - 1 slots) plus the token.
    One weight sharing serves both graphs."""
    step = dec.step.graph
    assert [i.shape for i in step.inputs if i.name == "input_ids"] == [[1, 1]]
    mms = [n for n in step.nodes if n.op in ("aten.addmm.default", "aten.mm.default")]
    assert mms and all(n.shape[0] == 1 for n in mms)
    past = [i for i in step.inputs if i.name.startswith("past")]
    assert len(past) == 4 and all(i.shape[2] == P + NEW - 1 and not i.public for i in past)
    pre_w, step_w = dec.prefill._weights, dec.step._weights    # each module's prepared view
    common = set(pre_w) & set(step_w) & {p.name for p in dec.step.graph.params}
    assert common and all(pre_w[k] is step_w[k] for k in common)   # the same shared tensors
    # sharing is free (pairwise PRGs); each weight then opens once under its mask (8 B per
    # value, a fixed operand for both graphs) and each graph's weight-only moves (a
    # transposed copy) at most once more: a second sharing or opening would exceed this
    values = sum(p.numel() for p in LM.parameters())
    assert 8 * values <= shared_bytes <= 8 * values * 1.5
    assert repr(dec) == "SecureDecoder(owner=0, prompt_len=5, max_new_tokens=6, batch=1)"


def test_bad_prompt_and_lengths_fail_clearly():
    def job(prompt):
        r = veil.rank()
        dec = secure_decoder(LM if r == 0 else None, owner=0, prompt_len=P, max_new_tokens=3)
        with pytest.raises(ProtocolUsageError, match="max_new_tokens must be in 1..3"):
            dec.generate(None, owner=1, max_new_tokens=4)    # checked by every party
        return dec.generate(prompt if r == 1 else None, owner=1)
    with pytest.raises(PartyError, match=r"party 1: .*prompt has shape \(1, 4\)"):
        veil.run(job, PROMPT[:, :4], parties=2, seed=0)
    with pytest.raises(PartyError, match="secure_decoder takes a Hugging Face causal LM"):
        veil.run(lambda: secure_decoder(torch.nn.Linear(2, 2) if veil.rank() == 0 else None,
                                        owner=0, prompt_len=2, max_new_tokens=2),
                 parties=2, seed=0)
    with pytest.raises(PartyError, match="prompt_len must be a positive int"):
        veil.run(lambda: secure_decoder(None, owner=0, prompt_len=0, max_new_tokens=2),
                 parties=2, seed=0)


def test_outputs_are_a_pytree_node():
    """compare() and tree_map see inside HF-style outputs (they were one opaque leaf)."""
    out = Outputs(logits=torch.ones(2), hidden=torch.zeros(1))
    assert [t.shape for t in pytree.tree_leaves(out)] == [(2,), (1,)]
    assert pytree.tree_map(lambda t: t + 1, out).logits.tolist() == [2.0, 2.0]


TINY_BERT = mw.ModelSpec("bert", layers=2, d=32, heads=2, ffn=64, vocab=100, seq=16,
                         positions=16)
TINY_GPT2 = mw.ModelSpec("gpt2", layers=2, d=32, heads=2, vocab=100, seq=6, positions=16,
                         new_tokens=3)


@pytest.mark.parametrize("spec", [TINY_BERT, TINY_GPT2], ids=["bert", "gpt2"])
def test_model_benchmark_workload_runs_on_tiny_configs(spec):
    recs = mw.run_in_process(spec, parties=2)
    row = mw.summarize(spec, recs, 2, "semi2k", None)
    assert row["max_abs_err"] <= 1e-2
    assert row["rounds"] > 0 and row["bytes_sent_per_party"] > 0
    assert row["dealer_bytes_per_party"] > 0
    if spec.kind == "gpt2":
        assert row["tokens_match"] and row["token_rounds"] > 0
        assert row["token_dealer_bytes"] > 0      # per-party maxima: party 0 gets them
        # the first step records the step's request plan, later ones wait for nothing
        assert row["step_dealer_waits"][0] > 0 and max(row["step_dealer_waits"][1:]) == 0
    else:                                         # the 2nd forward follows the plan
        assert row["dealer_waits"] > 0 and row["warm_dealer_waits"] == 0
        assert row["warm_max_abs_err"] <= 1e-2 and row["warm_rounds"] == row["rounds"]
    assert mw.predicted_warm(row, "wan") > mw.predicted_warm(row, "lan") > 0
    assert mw.predicted(row, "wan") > mw.predicted(row, "lan") > row.get("token_s",
                                                                         row["time_s"])
    table = mw.format_tables([row])
    assert spec.name in table and "n/a" in table         # no per-party RSS in-process
