"""Repeat hints (veil.compile.repeats): a graph's first run predicts its repeated layers.

A transformer's second layer asks the dealer for what its first asked, keys renamed. The
checks: the repeats are found in a captured BERT; a first forward waits for far fewer
dealer requests with the hints; the results are bit-identical with and without them
(truncation errs by one unit depending on the randomness, so a PRG out of step would
show) and equal torch within the model's tolerance at 2 and 3 parties; a wrong hint
costs only dropped predictions; a decoder's first token gains the same way.
"""

from __future__ import annotations

import pytest
import torch

import veil
from veil.compile import zoo
from veil.compile.decoder import greedy_reference, secure_decoder
from veil.compile.repeats import repeat_table
from veil.context import current

LAYERS = 3
with torch.random.fork_rng():
    torch.manual_seed(3)
    BERT = zoo.hf_bert(vocab=40, d=32, heads=2, ffn=64, layers=LAYERS, seq=16)
IDS = torch.randint(0, 40, (1, 16), generator=torch.Generator().manual_seed(4))
MASK = torch.ones(1, 16, dtype=torch.long)
ATOL = 3e-2          # logits of a 3-layer BERT with secure GELU, softmax and LayerNorm


def _first_forward(hints: bool = True, period: bool = True, wrong: bool = False):
    """One forward of BERT (its first: no request plan yet): logits revealed to all, the
    look-ahead's counters, and the repeat table of the captured graph."""
    def job():
        prov = current().provider
        if not hints:
            prov.repeat = lambda *a: None
        elif wrong:                        # every party renames every key wrongly alike
            hint = prov.repeat
            prov.repeat = lambda since, until, keymap: hint(
                since, until, {k: v + 1000 for k, v in keymap.items()})
        if not period:                     # the period predictor never finds one
            prov._pred._detect = lambda *a: None
        mine = veil.rank() == 0
        m = veil.secure(BERT if mine else None, owner=0, example_input=(IDS,) if mine else None,
                        example_kwargs={"attention_mask": MASK} if mine else None,
                        public_inputs=("attention_mask",))
        x = m.share_input("input_ids", IDS if veil.rank() == 1 else None, owner=1)
        s0 = veil.stats()
        out = m(x, attention_mask=MASK)["logits"].reveal()
        s1 = veil.stats()
        return out, {k: s1[k] - s0[k] for k in s1 if k.startswith("dealer_")}, \
            repeat_table(m.graph)
    return job


def _want():
    with torch.no_grad():
        return BERT(IDS, attention_mask=MASK).logits


def test_the_layers_of_a_captured_bert_are_found():
    table = veil.run(_first_forward(), parties=2, seed=0)[0][2]
    whole = [(i, h[0]) for i, h in enumerate(table) if h and h[0] == h[1]]
    # the second and third layers start a repeat of the whole layer before them
    layer = max(back for _, back in whole)
    starts = [i for i, back in whole if back == layer]
    assert len(starts) >= LAYERS - 1 and layer * LAYERS < len(table)


def test_hints_give_bit_identical_results_and_fewer_waits():
    """The period predictor is off in both runs (its dropped guesses would shift the
    draws): equal outputs mean every party drew the very material it draws without."""
    with_hints = veil.run(_first_forward(period=False), parties=2, seed=0)
    without = veil.run(_first_forward(hints=False, period=False), parties=2, seed=0)
    (a, ca, _), (b, cb, _) = with_hints[0], without[0]
    assert torch.equal(a, b)
    assert ca["dealer_requests"] == cb["dealer_requests"] and cb["dealer_ahead"] == 0
    assert ca["dealer_dropped"] == 0                       # no hint was wrong here
    assert ca["dealer_waits"] * 2 < cb["dealer_waits"]     # layers 2 and 3 predicted
    assert all(r[1] == ca for r in with_hints)             # every party counts the same


@pytest.mark.parametrize("parties", [2, 3, 5])
def test_hinted_first_forward_equals_torch(parties):
    res = veil.run(_first_forward(), parties=parties, seed=0)
    out, counts, _ = res[0]
    assert (out - _want()).abs().max().item() <= ATOL
    assert counts["dealer_ahead"] > counts["dealer_waits"]
    assert all(r[1] == counts for r in res)


def test_a_wrong_hint_costs_only_dropped_predictions():
    out, counts, _ = veil.run(_first_forward(wrong=True, period=False), parties=2, seed=0)[0]
    assert counts["dealer_dropped"] > 0                    # it followed the wrong keys
    assert (out - _want()).abs().max().item() <= ATOL


def test_a_decoders_first_token_waits_less_with_hints():
    with torch.random.fork_rng():
        torch.manual_seed(2)
        lm = zoo.hf_gpt2(vocab=40, d=16, heads=2, layers=3, seq=16)
    prompt = torch.tensor([[5, 17, 3, 9]])

    def job(hints):
        if not hints:
            current().provider.repeat = lambda *a: None
        mine = veil.rank() == 0
        dec = secure_decoder(lm if mine else None, owner=0, prompt_len=4, max_new_tokens=2)
        return dec.generate(prompt if veil.rank() == 1 else None, owner=1)
    with_hints = veil.run(job, True, parties=2, seed=0)[1]
    without = veil.run(job, False, parties=2, seed=0)[1]
    want = greedy_reference(lm, prompt, 2)
    assert torch.equal(with_hints.tokens, want) and torch.equal(without.tokens, want)
    # the prefill's and the first step's graphs both run for the first time
    first = [g.prefill_stats["dealer_waits"] + g.step_stats[0]["dealer_waits"]
             for g in (with_hints, without)]
    assert first[0] < first[1]


def test_the_search_for_repeats_is_bounded_on_any_graph(monkeypatch):
    """The graph comes from a peer: a chain of identical nodes (every earlier node a
    candidate) must not make the search quadratic. Past the work bound nothing more is
    hinted (the same cut-off at every party); stretches are capped too."""
    from veil.compile import repeats
    from veil.compile.graph import Graph, Input, Node, Ref
    n = 3000
    chain = [Node(f"n{i}", "aten.relu.default", [Ref(f"n{i - 1}" if i else "x")], {}, [2],
                  "float32") for i in range(n)]
    g = Graph(inputs=[Input("x", [2], "float32")], nodes=chain, outputs=[Ref(f"n{n - 1}")])
    table = repeats.repeat_table(g)
    assert len(table) == n and max(h[1] for h in table if h) <= repeats.MAX_STRETCH
    monkeypatch.setattr(repeats, "MAX_WORK", 5000)
    cut = repeats.repeat_table(g)
    assert cut[:10] == table[:10] and cut[-1] is None and len(cut) == n
