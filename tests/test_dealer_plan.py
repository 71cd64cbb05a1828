"""Request plans (veil.offline.plan) and the dealer's keyed-mask cache (veil.offline.keycache).

A compiled graph's first run records its dealer requests; later runs hand that plan to
the look-ahead at every party, so party 0 sends requests ahead from the first one. The
checks: later runs wait for no request (a count, not a time); results equal torch and
are bit-identical with and without plans (truncation errs by one unit depending on the
randomness, so any PRG falling out of step would show); a plan that does not fit
the graph (same tag, other graph) costs only dropped predictions; the look-ahead stays
within its bounds; the dealer's cache changes nothing but its own work.
"""

from __future__ import annotations

import pytest
import torch

import veil
import veil.offline.dealer as dealer_mod
from veil.compile import zoo
from veil.compile.decoder import greedy_reference, secure_decoder
from veil.context import current
from veil.offline import keycache
from veil.offline import plan as plan_mod
from veil.offline.keycache import KeyedCache
from veil.offline.plan import PlanBook

EXACT = veil.Config(truncation="exact")
G = torch.Generator().manual_seed(5)
NET = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.GELU(), torch.nn.Linear(8, 8),
                          torch.nn.ReLU(), torch.nn.Linear(8, 3)).eval()
OTHER = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Sigmoid(),
                            torch.nn.Linear(5, 3)).eval()
X = torch.randn(4, 6, generator=G)
ATOL = 2e-2          # GELU / sigmoid approximations on values of magnitude ~1


def _forwards(n_runs: int, plans: bool = True, retag=None, period: bool = True):
    """``n_runs`` forwards of NET (then OTHER, if ``retag``): outputs revealed to all,
    and the look-ahead's counters per forward."""
    def job():
        prov = current().provider
        if not plans:
            prov.begin_plan = prov.end_plan = lambda *a: None
        if not period:                                 # the period predictor never fires
            prov._pred.observe = lambda *a: None
        mine = veil.rank() == 0
        m = veil.secure(NET if mine else None, owner=0, example_input=X)
        other = veil.secure(OTHER if mine else None, owner=0, example_input=X)
        if retag:
            other._plan_tag = m.plan_tag           # a stale plan: same tag, other graph
        x = veil.tensor(X if veil.rank() == 1 else None, owner=1)
        outs, counts = [], []
        for i in range(n_runs):
            s0 = veil.stats()
            y = (other if retag and i == n_runs - 1 else m)(x)
            outs.append(y.reveal())
            s1 = veil.stats()
            counts.append({k: s1[k] - s0[k] for k in s1 if k.startswith("dealer_")})
        return outs, counts
    return job


@pytest.mark.parametrize("parties", [2, 3])
def test_later_forwards_wait_for_no_dealer_request(parties):
    res = veil.run(_forwards(3), parties=parties, seed=0, config=EXACT)
    outs, counts = res[0]
    with torch.no_grad():
        want = NET(X)
    for y in outs:
        assert (y - want).abs().max().item() <= ATOL
    first, *later = counts
    assert first["dealer_waits"] > 10                # the first run had no plan
    for c in later:
        assert c["dealer_waits"] == 0 and c["dealer_dropped"] == 0
        assert c["dealer_ahead"] == c["dealer_requests"] == first["dealer_requests"]
    assert all(r[1] == counts for r in res)          # every party counts the same


def test_plans_give_bit_identical_results():
    """Truncation errs by one unit depending on the randomness, so equal outputs mean
    every party drew the very material it draws without plans (the period predictor is
    off in both: its dropped guesses would shift the draws)."""
    with_plans = veil.run(_forwards(3, period=False), parties=2, seed=0)[0]
    without = veil.run(_forwards(3, plans=False, period=False), parties=2, seed=0)[0]
    assert with_plans[1][-1]["dealer_ahead"] > 0 and without[1][-1]["dealer_ahead"] == 0
    for a, b in zip(with_plans[0], without[0]):
        assert torch.equal(a, b)


@pytest.mark.parametrize("parties", [2, 3])
def test_a_plan_that_does_not_fit_costs_only_dropped_predictions(parties):
    outs, counts = veil.run(_forwards(3, retag=True), parties=parties, seed=0)[0]
    with torch.no_grad():
        want = [NET(X), NET(X), OTHER(X)]
    for y, w in zip(outs, want):
        assert (y - w).abs().max().item() <= ATOL
    assert counts[-1]["dealer_dropped"] > 0          # it did follow the wrong plan


def test_the_look_ahead_stays_within_its_bounds(monkeypatch):
    monkeypatch.setattr(dealer_mod, "AHEAD_COUNT", 3)
    monkeypatch.setattr(dealer_mod, "AHEAD_REQUEST_BYTES", 600)

    def job():
        prov = current().provider
        prov._max_ahead = 4096                      # bytes of material held ahead
        seen = []
        get = prov.get

        def watched(kind, **args):
            out = get(kind, **args)
            seen.append((len(prov._ahead), prov._ahead_bytes, prov._ahead_requests))
            return out
        prov.get = watched
        outs, counts = _forwards(3)()
        return outs, counts, seen
    outs, counts, seen = veil.run(job, parties=2, seed=0, config=EXACT)[0]
    assert max(n for n, _, _ in seen) == 3
    assert max(b for _, b, _ in seen) <= 4096 and max(r for _, _, r in seen) <= 600
    assert counts[-1]["dealer_ahead"] > 0            # it still worked ahead
    with torch.no_grad():
        assert (outs[-1] - NET(X)).abs().max().item() <= ATOL


def test_generation_steps_after_the_first_wait_for_nothing():
    with torch.random.fork_rng():
        torch.manual_seed(2)
        lm = zoo.hf_gpt2(vocab=40, d=16, heads=2, layers=1, seq=16)
    prompt = torch.tensor([[5, 17, 3]])

    def job():
        mine = veil.rank() == 0
        dec = secure_decoder(lm if mine else None, owner=0, prompt_len=3, max_new_tokens=4)
        # the LM head's W.T multiplies one row: kept as one dense copy for both graphs
        # at the weights' holder; party 1's share is zero (held elsewhere), kept as the
        # expanded zero it is, and shared by both graphs too
        moved = [k for k in dec.step._weights if k not in {p.name for p in dec.step.graph.params}]
        shared = [k for k in moved if dec.prefill._weights.get(k) is dec.step._weights[k]]
        layout = [dec.step._weights[k].share.is_contiguous() if mine else
                  set(dec.step._weights[k].share.stride()) == {0} for k in moved]
        return dec.generate(prompt if veil.rank() == 1 else None, owner=1), moved, shared, \
            layout
    res = veil.run(job, parties=2, seed=0)
    for _, moved, shared, layout in res:
        assert moved and shared == moved and all(layout)
    g = res[1][0]
    assert torch.equal(g.tokens, greedy_reference(lm, prompt, 4))
    waits = [s["dealer_waits"] for s in g.step_stats]
    assert waits[0] > 0 and waits[1:] == [0, 0]


# -- the plan book alone -----------------------------------------------------------------
def test_plan_keys_are_relative_to_the_run_and_absolute_before_it():
    book = PlanBook()
    assert book.begin("g", next_key=100)
    book.record("mask_free", {"shape": [2]})
    book.record("beaver_keyed", {"op": "matmul", "key_a": 104, "key_b": 7})
    assert book.predict(0) is None                  # nothing known on the first run
    assert book.end()
    book.begin("g", next_key=250)
    assert book.predict(0) == ("mask_free", {"shape": [2]})
    assert book.predict(1) == ("beaver_keyed", {"op": "matmul", "key_a": 254, "key_b": 7})
    assert book.predict(2) is None                  # past the plan's end


def test_only_the_outermost_run_is_planned_and_a_broken_plan_predicts_nothing():
    book = PlanBook()
    book.begin("outer", 0)
    assert not book.begin("inner", 0)
    book.record("a", {})
    assert not book.end() and book.end()
    assert len(book) == 1
    book.begin("outer", 0)
    assert book.active and book.predict(0) == ("a", {})
    book.broken()
    assert not book.active and book.predict(0) is None
    book.end()
    with pytest.raises(RuntimeError, match="without begin"):
        book.end()


def test_plans_stay_bounded(monkeypatch):
    monkeypatch.setattr(plan_mod, "MAX_PLAN_REQUESTS", 5)
    monkeypatch.setattr(plan_mod, "MAX_PLANS", 3)
    monkeypatch.setattr(plan_mod, "MAX_TOTAL_REQUESTS", 8)
    book = PlanBook()
    for tag, n in [("long", 6), ("a", 4), ("b", 4), ("c", 1), ("d", 1)]:
        book.begin(tag, 0)
        for i in range(n):
            book.record("k", {"i": i})
        book.end()
    assert "long" not in book._plans                # too long: not kept
    assert list(book._plans) == ["b", "c", "d"] and book._total == 6


# -- the dealer's keyed-mask cache ---------------------------------------------------------
def test_the_cache_keeps_masks_seen_twice_within_its_budget(monkeypatch):
    monkeypatch.setattr(keycache, "STALE_REQUESTS", 10)
    cache = KeyedCache(budget=2 * 8 * 6)             # room for two (2, 3) int64 masks
    made = []

    def make(label):
        def f():
            made.append(label)
            return torch.full((2, 3), len(made), dtype=torch.int64)
        return f
    for label in ["w1", "w1", "w2", "w2", "w3", "w3", "w1", "w2", "w3"]:
        cache.tick()
        cache.plain(label, make(label))
    # w1, w2 kept on their second draw; w3 found no room (both in use), drawn each time
    assert made == ["w1", "w1", "w2", "w2", "w3", "w3", "w3"] and cache.used == 96
    for _ in range(20):                              # w1 and w2 go unused: stale
        cache.tick()
    cache.plain("w3", make("w3"))
    assert "mask|w3" not in cache._kept and "w3" in cache._kept and cache.used <= 96


def test_the_cache_budget_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("VEIL_DEALER_CACHE_MB", "3")
    assert keycache.default_budget() == 3 << 20
    monkeypatch.setenv("VEIL_DEALER_CACHE_MB", "lots")
    with pytest.raises(ValueError, match="whole number of MB"):
        keycache.default_budget()


def test_results_do_not_depend_on_the_dealer_cache(monkeypatch):
    """Local truncation: outputs depend on the randomness, so equal outputs mean the
    cached masks are the very masks a fresh draw gives."""
    cached = veil.run(_forwards(3), parties=2, seed=0)[0][0]
    monkeypatch.setenv("VEIL_DEALER_CACHE_MB", "0")
    fresh = veil.run(_forwards(3), parties=2, seed=0)[0][0]
    for a, b in zip(cached, fresh):
        assert torch.equal(a, b)


def test_module_examples_run():
    import doctest

    from veil.offline import lookahead
    for mod in (plan_mod, keycache, lookahead):
        assert doctest.testmod(mod).failed == 0


def test_a_first_forward_of_repeated_layers_is_predicted_after_three_layers():
    """No plan yet: the period predictor finds the layers' repeating shapes and
    continues their keys (each layer's fresh activation keys and its own weight keys)."""
    torch.manual_seed(3)
    deep = torch.nn.Sequential(*[m for _ in range(8) for m in (torch.nn.Linear(6, 6),
                                                                torch.nn.ReLU())]).eval()

    def job():
        m = veil.secure(deep if veil.rank() == 0 else None, owner=0, example_input=X)
        x = veil.tensor(X if veil.rank() == 1 else None, owner=1)
        s0 = veil.stats()
        y = m(x).reveal()
        s1 = veil.stats()
        return y, {k: s1[k] - s0[k] for k in s1 if k.startswith("dealer_")}
    y, c = veil.run(job, parties=2, seed=0)[0]
    with torch.no_grad():
        assert (y - deep(X)).abs().max().item() <= ATOL
    assert c["dealer_ahead"] >= c["dealer_requests"] / 2 > 0
    assert c["dealer_waits"] + c["dealer_ahead"] == c["dealer_requests"]


def test_approximation_variants_are_planned_apart():
    """A forward under other function variants (GELU "quad") asks for other material:
    it gets a plan of its own, so switching back and forth mispredicts nothing."""
    from veil.functions import approximations

    def job():
        mine = veil.rank() == 0
        m = veil.secure(NET if mine else None, owner=0, example_input=X)
        x = veil.tensor(X if veil.rank() == 1 else None, owner=1)
        tags, counts = [], []
        for quad in (False, True, False, True):
            s0 = veil.stats()
            with approximations(gelu="quad" if quad else None):
                tags.append(m.plan_tag)
                m(x).reveal()
            s1 = veil.stats()
            counts.append({k: s1[k] - s0[k] for k in s1 if k.startswith("dealer_")})
        return tags, counts

    tags, counts = veil.run(job, parties=2, seed=0, config=EXACT)[0]
    assert tags[0] == tags[2] != tags[1] == tags[3] and tags[1].endswith("|gelu=quad")
    assert counts[0]["dealer_requests"] != counts[1]["dealer_requests"]   # other material
    for c in counts[2:]:                       # each variant follows its own plan
        assert c["dealer_waits"] == 0 and c["dealer_dropped"] == 0
