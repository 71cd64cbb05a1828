"""The dealer works ahead (veil.offline.lookahead): predicted requests, same results.

Every party predicts the same continuation of the (public) request sequence, so a
misprediction keeps all PRGs in step: results must equal torch whatever the program
does after a repeating stretch, at 2 and 3 parties.
"""

import pytest
import torch

import veil
from veil.offline.lookahead import Predictor


def test_a_sequence_that_repeats_twice_is_predicted():
    p = Predictor()
    for k in "xabcabc":
        p.observe(k)
    assert p.period == 3 and [p.predict(i) for i in range(7, 11)] == list("abca")


def test_memory_stays_bounded_and_predictions_right_in_a_long_run(monkeypatch):
    import veil.offline.lookahead as L
    monkeypatch.setattr(L, "MAX_PERIOD", 4)
    p = Predictor()
    for i in range(1000):
        p.observe("abc"[i % 3])
    assert len(p.seq) <= 16 and p.count == 1000
    assert p.period == 3 and [p.predict(i) for i in range(1000, 1004)] == list("bcab")


def test_requests_that_never_repeat_are_forgotten(monkeypatch):
    # keyed requests (a fresh mask key per inference) are all distinct: the predictor
    # must not remember each one for the rest of the run
    import veil.offline.lookahead as L
    monkeypatch.setattr(L, "MAX_PERIOD", 4)
    p = Predictor()
    for i in range(1000):
        p.observe(f"keyed-{i}" if i % 2 else "w")
    assert len(p._pos) <= 4 * 4 + 1 and p.count == 1000


@pytest.mark.parametrize("seq, period", [("abcd", None), ("aab", None), ("abcabd", None),
                                         ("abcab", None), ("aabb", 1), ("xabab", 2)])
def test_a_period_is_claimed_only_after_two_full_repeats(seq, period):
    p = Predictor()
    for k in seq:
        p.observe(k)
    assert p.period == period


@pytest.mark.parametrize("parties", [2, 3])
def test_results_stay_exact_when_the_program_leaves_its_pattern(parties):
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(4, 3, generator=g), torch.randn(3, 5, generator=g)
    c = torch.randn(7, generator=g)

    def party():
        x = veil.tensor(a if veil.rank() == 0 else None, owner=0)
        w = veil.tensor(b if veil.rank() == 1 else None, owner=1)
        v = veil.tensor(c if veil.rank() == 0 else None, owner=0)
        s0 = veil.stats()
        outs = []
        for step in range(6):                  # a repeating step: matmul, mul, compare
            y = x @ w
            outs.append((y * y).reveal())
            outs.append((v > 0.1 * step).reveal())
        outs.append((v * v).sum().reveal())    # then something else: mispredicted
        outs.append((x @ w).reveal())
        return outs, veil.stats()["offline_rounds"] - s0["offline_rounds"]

    res = veil.run(party, parties=parties, seed=0)
    outs, offline_rounds = res[0]
    want = []
    for step in range(6):
        want += [(a @ b) ** 2, (c > 0.1 * step).float()]
    want += [(c * c).sum(), a @ b]
    for got, ref in zip(outs, want):
        assert torch.allclose(got.float(), ref.float(), atol=2e-3), (got, ref)
    # Party 0 asked ahead: more requests than the program used (the dropped predictions).
    plain = veil.run(lambda: _count_requests(party), parties=parties, seed=0)[0]
    assert offline_rounds > plain


def _count_requests(party):
    """The same program's request count with prediction off (never a period)."""
    from veil.context import current
    provider = current().provider
    provider._pred.observe = lambda key, keys=(), seq=provider._pred.seq: seq.append(key)
    return party()[1]


def test_keys_that_move_by_the_same_step_each_period_are_predicted():
    # a forward's layers: the same shapes, fresh activation keys and the layer's own
    # weight keys, each one period further than in the layer before
    p = Predictor()
    for layer in range(4):
        p.observe("mm", (100 + 7 * layer, 3 + 2 * layer))
        p.observe("cmp")
        p.observe("mm", (101 + 7 * layer, 4 + 2 * layer))
    assert p.period == 3 and p.keys_ready
    assert [p.predict(12), p.predict_keys(12)] == ["mm", (128, 11)]
    assert p.predict_keys(14) == (129, 12)


def test_keys_that_follow_no_rule_are_never_guessed():
    # shapes repeat but keys jump around: the predictor must not keep guessing (each
    # wrong guess would cost the dealer a window of work)
    p = Predictor()
    ready = []
    for i, k in enumerate([5, 40, 7, 90, 2, 61, 33, 8, 70, 1, 64, 12]):
        p.observe("mm", (k,))
        p.observe("cmp")
        ready.append(p.keys_ready)
    assert p.period == 2 and not any(ready)
