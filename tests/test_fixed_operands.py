"""Fixed operands and keyed masks: a weight's masked form is opened once per model and
reused; every other tensor is masked afresh; products stay correct at 2, 3 and 5 parties
and under every protocol; the dealer regenerates keyed masks and refuses bad keys."""

from __future__ import annotations

import pytest
import torch

import veil
from veil.comm.profile import SCOPE
from veil.offline import PRG
from veil.protocols import Semi2k
from helpers import (PROTOCOL_GRID, assert_close, assert_dealer_refuses, assert_dealer_serves,
                     share_from, uniform)

TOL = 2e-3          # two fixed-point products of values of magnitude ~3, 16 fractional bits


def _products(x, w, g, ker, img):
    """x @ w, x * g, g * x, conv2d(img, ker), twice each (the second reuses the opening)."""
    out = []
    for _ in range(2):
        out += [(x @ w).reveal(), (x * g).reveal(), (g * x).reveal(),
                img.conv2d(ker, padding=1).reveal()]
    return out


@pytest.mark.parametrize("protocol,parties", PROTOCOL_GRID)
def test_products_with_fixed_operands_match_torch(protocol, parties):
    x, w, g = uniform((4, 6), seed=1), uniform((6, 5), seed=2), uniform((6,), seed=3)
    img, ker = uniform((1, 2, 5, 5), seed=4), uniform((3, 2, 3, 3), seed=5)

    def job():
        sx, simg = share_from(x, parties - 1), share_from(img, parties - 1)
        sw, sg, sker = (share_from(t, 0).fixed_() for t in (w, g, ker))
        return _products(sx, sw, sg, sker, simg)

    want = [x @ w, x * g, g * x, torch.nn.functional.conv2d(img, ker, padding=1)] * 2
    for got, exp in zip(veil.run(job, parties=parties, protocol=protocol, seed=2)[0], want):
        assert_close(got, exp, TOL, f"{protocol} n={parties}")


def _spy_masks(monkeypatch):
    """Record (key, shape, id of the share) of every tensor semi2k masks, per party."""
    seen: dict[int, list] = {}
    real = Semi2k.mask

    def spy(self, *xs):
        out = real(self, *xs)
        seen.setdefault(self.rank, []).extend((m.key, tuple(x.shape), id(x))
                                              for x, m in zip(xs, out))
        return out
    monkeypatch.setattr(Semi2k, "mask", spy)
    return seen


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.GELU(),
                               torch.nn.LayerNorm(16), torch.nn.Linear(16, 3)).eval()


@pytest.mark.parametrize("parties", [2, 3])
def test_each_weight_is_opened_once_per_model_and_inputs_every_time(monkeypatch, parties):
    seen = _spy_masks(monkeypatch)
    net, x = _model(), uniform((5, 8), seed=7)

    def job():
        m = veil.secure(net if veil.rank() == 0 else None, owner=0, example_input=x)
        after_setup = len(seen[veil.rank()])
        outs, traffic = [], []
        for _ in range(3):
            xs = share_from(x, 1)
            s0 = veil.stats()
            outs.append(m(xs).reveal())
            traffic.append(veil.stats()["bytes_sent"] - s0["bytes_sent"])
        return after_setup, outs, traffic

    res = veil.run(job, parties=parties, seed=5)
    with torch.no_grad():
        want = net(x)
    n_weights = sum(1 for _ in net.parameters())       # (each linear weight as permuted)
    for rank, (after_setup, outs, traffic) in enumerate(res):
        masks = seen[rank]
        # every weight masked at setup, once; nothing masked twice under one key
        assert after_setup == n_weights
        keys = [k for k, _, _ in masks]
        assert len(keys) == len(set(keys)), "a mask key was used for two tensors"
        setup_ids = {i for _, _, i in masks[:after_setup]}
        assert not setup_ids & {i for _, _, i in masks[after_setup:]}, \
            "a weight was opened again during a forward"
        # each forward masks the same activations afresh, and sends the same bytes
        per_forward = (len(masks) - after_setup) // 3
        assert per_forward > 0 and len(masks) - after_setup == 3 * per_forward
        assert traffic[0] == traffic[1] == traffic[2]
        for out in outs:
            assert_close(out, want, 2e-3, f"n={parties}")


def test_fresh_masks_hide_a_repeated_input(monkeypatch):
    """The same input in two inferences is opened under two independent masks: the opened
    values differ and look uniform (A is fresh every call; only W - B is reused)."""
    opened: list[torch.Tensor] = []
    real = Semi2k._open

    def spy(self, *xs):
        out = real(self, *xs)
        if self.rank == 1:
            opened.extend(o.clone() for o in out)
        return out
    monkeypatch.setattr(Semi2k, "_open", spy)
    w = uniform((64, 64), seed=1)

    def job():
        sw = share_from(w, 0).fixed_()
        (share_from(torch.zeros(2000, 64), 1) @ sw).share     # opens W - B and X - A_1
        before = len(opened) if veil.rank() == 1 else 0
        (share_from(torch.zeros(2000, 64), 1) @ sw).share     # opens X - A_2 only
        return before

    before = veil.run(job, parties=2, seed=None)[1]
    first_x = next(t for t in opened[:before] if t.shape == (2000, 64))
    second_x, _truncation = opened[before:]       # X - A_2, then the product's trunc
    assert not torch.equal(first_x, second_x)
    for t in (first_x, second_x):
        counts = torch.bincount(t.reshape(-1).view(torch.uint8).to(torch.int64), minlength=256)
        expected = t.numel() * 8 / 256
        assert float(((counts - expected) ** 2 / expected).sum()) < 400   # chi2, 255 dof


def test_changing_a_fixed_tensor_masks_it_again_under_a_new_key(monkeypatch):
    seen = _spy_masks(monkeypatch)
    x, w = uniform((3, 4), seed=1), uniform((4, 2), seed=2)

    def job():
        sx, sw = share_from(x, 1), share_from(w, 0).fixed_()
        first = (sx @ sw).reveal()
        sw.mul_(2.0)                              # a new share: the stored opening is stale
        second = (sx @ sw).reveal()
        third = (sx @ sw).reveal()
        return first, second, third

    first, second, third = veil.run(job, parties=2, seed=1)[0]
    assert_close(first, x @ w, TOL)
    assert_close(second, x @ (2 * w), TOL)
    assert_close(third, x @ (2 * w), TOL)
    shapes = [s for _, s, _ in seen[0]]
    assert shapes.count((4, 2)) == 2              # w: once before the change, once after
    assert len({k for k, _, _ in seen[0]}) == len(seen[0])


def test_prg_fork_is_deterministic_independent_and_leaves_the_stream_alone():
    a, b = PRG(b"s" * 16), PRG(b"s" * 16)
    assert torch.equal(a.fork("mask|1|4").ring((4,)), b.fork("mask|1|4").ring((4,)))
    assert not torch.equal(a.fork("mask|1|4").ring((4,)), a.fork("mask|2|4").ring((4,)))
    assert not torch.equal(PRG(b"t" * 16).fork("mask|1|4").ring((4,)),
                           a.fork("mask|1|4").ring((4,)))
    assert torch.equal(a.ring((3,)), b.ring((3,)))   # forks did not advance either stream


def _keyed(**over):
    args = {"op": "matmul", "shape_a": [2, 3], "shape_b": [3, 4], "key_a": 1, "key_b": 2,
            "params": {}}
    args.update(over)
    return {"kind": "beaver_keyed", "args": args}


@pytest.mark.parametrize("req, match", [
    (_keyed(key_a=-1), "expected an integer in"),
    (_keyed(key_b=True), "expected an integer in"),
    (_keyed(key_a=1 << 62), "expected an integer in"),
    (_keyed(key_a="1"), "expected an integer in"),
    (_keyed(shape_a=[1 << 10, 1], shape_b=[1, 1 << 11]), "requested 2097152 elements"),
    (_keyed(shape_b=[5, 4]), "do not fit together"),
])
def test_the_dealer_refuses_bad_keyed_requests_naming_party_0(req, match):
    assert_dealer_refuses(req, match)


def test_the_dealer_serves_a_keyed_request():
    assert_dealer_serves(_keyed())


def test_profile_counts_bytes_per_kernel_and_per_op():
    net, x = _model(), uniform((5, 8), seed=7)

    def job():
        m = veil.secure(net if veil.rank() == 0 else None, owner=0, example_input=x)
        xs = share_from(x, 1)
        p0, s0 = veil.profile(), veil.stats()
        m(xs)
        p1, s1 = veil.profile(), veil.stats()
        return p0, p1, s0, s1

    p0, p1, s0, s1 = veil.run(job, parties=2, seed=0, config=veil.Config(profile=True))[0]
    delta = {k: {f: v - p0.get(k, {}).get(f, 0) for f, v in row.items()} for k, row in p1.items()}
    kernels = {k: r for k, r in delta.items() if not k.startswith(SCOPE)}
    ops = {k: r for k, r in delta.items() if k.startswith(SCOPE)}
    sent = s1["bytes_sent"] - s0["bytes_sent"]
    assert sent > 0
    assert sum(r["bytes_sent"] for r in kernels.values()) == sent
    assert sum(r["bytes_sent"] for r in ops.values()) == sent      # every byte inside an op
    assert sum(r["rounds"] for r in ops.values()) == s1["rounds"] - s0["rounds"]
    assert ops[SCOPE + "aten.gelu.default"]["bytes_sent"] > 0
    assert delta["mask"]["bytes_sent"] > 0 and delta["matmul_masked"]["bytes_sent"] == 0


def test_veil_nn_layers_in_eval_mode_reuse_their_weights_openings():
    torch.manual_seed(3)
    ref = torch.nn.Linear(16, 8)
    x = uniform((4, 16), seed=9)

    def job():
        layer = veil.nn.Linear(16, 8, init_from=ref if veil.rank() == 0 else None).eval()
        xs = share_from(x, 1)
        sent, outs = [], []
        for train in (False, False, True):
            layer.train(train)
            s0 = veil.stats()["bytes_sent"]
            outs.append(layer(xs).reveal())
            sent.append(veil.stats()["bytes_sent"] - s0)
        return sent, outs

    (sent, outs), _ = veil.run(job, parties=2, seed=0)
    # out_bytes: the reveal, and the product's exact truncation opens the output once more
    weight_bytes, out_bytes, in_bytes = 16 * 8 * 8, 2 * 4 * 8 * 8, 4 * 16 * 8
    assert sent == [in_bytes + weight_bytes + out_bytes, in_bytes + out_bytes,
                    in_bytes + weight_bytes + out_bytes]      # training: W opened each step
    with torch.no_grad():
        for out in outs:
            assert_close(out, ref(x), TOL)


def test_fixed_docstring_example_runs():
    import doctest
    from veil.tensor import core, fixed
    assert doctest.testmod(core, optionflags=doctest.ELLIPSIS).failed == 0
    assert doctest.testmod(fixed, optionflags=doctest.ELLIPSIS).failed == 0
