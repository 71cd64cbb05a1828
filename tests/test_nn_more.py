"""F.hardtanh / F.dropout, the losses issue 10 added and their nn modules, against torch at
2 and 3 parties, forward and gradient.

Tolerances: 2e-3 absolute (values of magnitude <= 3 at 16 fractional bits; BCE and KL
add a log, accurate to 1e-3 absolute on [1e-3, 1e4], see docs/functions.md).
"""

from __future__ import annotations

import functools

import pytest
import torch
import torch.nn.functional as F

import veil
from veil.autograd.check import compare_grads
from helpers import PROTOCOLS, assert_close, share_from, uniform

X = uniform((4, 5), -2.5, 2.5, seed=31)
Y = uniform((4, 5), -2.5, 2.5, seed=32)
P = torch.sigmoid(uniform((4, 5), -4, 4, seed=33))            # probabilities in (0.02, 0.98)
T01 = (uniform((4, 5), 0, 1, seed=34) > 0.5).float()
LOGP = torch.log_softmax(X, 1)
Q = torch.softmax(Y, 1)
CLS = torch.tensor([1, 0, 4, 2])
A = 2e-3

CASES = {
    "hardtanh": (lambda s: F.hardtanh(s["x"], -1.0, 0.5), lambda p: F.hardtanh(p["x"], -1.0, 0.5)),
    "dropout_eval": (lambda s: F.dropout(s["x"], 0.5, training=False),
                     lambda p: F.dropout(p["x"], 0.5, training=False)),
    "l1": (lambda s: F.l1_loss(s["x"], s["y"]), lambda p: F.l1_loss(p["x"], p["y"])),
    "l1_none": (lambda s: F.l1_loss(s["x"], Y, reduction="none"),
                lambda p: F.l1_loss(p["x"], p["y"], reduction="none")),
    "smooth_l1": (lambda s: F.smooth_l1_loss(s["x"], s["y"], beta=0.7),
                  lambda p: F.smooth_l1_loss(p["x"], p["y"], beta=0.7)),
    "huber_sum": (lambda s: F.huber_loss(s["x"], s["y"], reduction="sum", delta=1.5),
                  lambda p: F.huber_loss(p["x"], p["y"], reduction="sum", delta=1.5)),
    "bce": (lambda s: F.binary_cross_entropy(s["p"], s["t"]),
            lambda p: F.binary_cross_entropy(p["p"], p["t"])),
    "bce_public_target_weight": (lambda s: F.binary_cross_entropy(s["p"], T01, weight=Y.abs()),
                                 lambda p: F.binary_cross_entropy(p["p"], p["t"], weight=Y.abs())),
    "kl_div_public_target": (lambda s: F.kl_div(s["logp"], Q, reduction="batchmean"),
                             lambda p: F.kl_div(p["logp"], p["q"], reduction="batchmean")),
    "kl_div_secret_target": (lambda s: F.kl_div(s["logp"], s["q"], reduction="sum"),
                             lambda p: F.kl_div(p["logp"], p["q"], reduction="sum")),
    "kl_div_log_target": (lambda s: F.kl_div(s["logp"], Q.log(), reduction="sum", log_target=True),
                          lambda p: F.kl_div(p["logp"], p["q"].log(), reduction="sum",
                                             log_target=True)),
    "nll_public": (lambda s: F.nll_loss(s["logp"], CLS), lambda p: F.nll_loss(p["logp"], CLS)),
    "nll_weight_ignore": (lambda s: F.nll_loss(s["logp"], torch.tensor([1, -100, 4, 4]),
                                               weight=torch.tensor([1., 2., 1., 1., .5])),
                          lambda p: F.nll_loss(p["logp"], torch.tensor([1, -100, 4, 4]),
                                               weight=torch.tensor([1., 2., 1., 1., .5]))),
    "nll_secret_target": (lambda s: F.nll_loss(s["logp"], s["cls"], reduction="sum"),
                          lambda p: F.nll_loss(p["logp"], CLS, reduction="sum")),
    "nll_3d": (lambda s: F.nll_loss(s["logp"].reshape(2, 5, 2), CLS.reshape(2, 2) % 5),
               lambda p: F.nll_loss(p["logp"].reshape(2, 5, 2), CLS.reshape(2, 2) % 5)),
    "BCELoss": (lambda s: veil.nn.BCELoss()(s["p"], s["t"]),
                lambda p: torch.nn.BCELoss()(p["p"], p["t"])),
    "L1Loss_sum": (lambda s: veil.nn.L1Loss("sum")(s["x"], s["y"]),
                   lambda p: torch.nn.L1Loss(reduction="sum")(p["x"], p["y"])),
    "SmoothL1Loss": (lambda s: veil.nn.SmoothL1Loss()(s["x"], s["y"]),
                     lambda p: torch.nn.SmoothL1Loss()(p["x"], p["y"])),
    "HuberLoss": (lambda s: veil.nn.HuberLoss(delta=2.0)(s["x"], s["y"]),
                  lambda p: torch.nn.HuberLoss(delta=2.0)(p["x"], p["y"])),
    "KLDivLoss": (lambda s: veil.nn.KLDivLoss("batchmean")(s["logp"], s["q"]),
                  lambda p: torch.nn.KLDivLoss(reduction="batchmean")(p["logp"], p["q"])),
    "NLLLoss": (lambda s: veil.nn.NLLLoss()(s["logp"], CLS),
                lambda p: torch.nn.NLLLoss()(p["logp"], CLS)),
    "CosineSimilarity": (lambda s: veil.nn.CosineSimilarity(dim=1)(s["x"], s["y"]),
                         lambda p: torch.nn.CosineSimilarity(dim=1)(p["x"], p["y"])),
    "Hardtanh_ReLU6": (lambda s: veil.nn.ReLU6()(veil.nn.Hardtanh(-2, 2)(s["x"]) * 3),
                       lambda p: torch.nn.ReLU6()(torch.nn.Hardtanh(-2, 2)(p["x"]) * 3)),
    "Softmax_LogSoftmax": (lambda s: veil.nn.Softmax(1)(s["x"]) + veil.nn.LogSoftmax(0)(s["y"]),
                           lambda p: torch.nn.Softmax(1)(p["x"]) + torch.nn.LogSoftmax(0)(p["y"])),
}

PLAIN = {"x": X, "y": Y, "p": P, "t": T01, "logp": LOGP, "q": Q, "cls": CLS}
OWNERS = {"x": 0, "y": 1, "p": 0, "t": 1, "logp": 0, "q": 1, "cls": 1}


def _all_cases():
    n = veil.world_size()
    s = {k: share_from(v, OWNERS[k] % n) for k, v in PLAIN.items()}
    return {name: fn(s).reveal() for name, (fn, _) in CASES.items()}


@functools.lru_cache(maxsize=None)
def results(protocol: str, parties: int) -> dict:
    return veil.run(_all_cases, parties=parties, protocol=protocol, seed=17)


@pytest.mark.parametrize("parties", [2, 3])
@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_torch(case, protocol, parties):
    want = CASES[case][1](PLAIN)
    for r, got in enumerate(results(protocol, parties)):
        assert_close(got[case], want, A, f"{case} at party {r}")


def test_dropout_train_mode_keeps_or_zeroes_with_torch_scaling_and_agrees_across_parties():
    def job():
        x = share_from(X.abs() + 0.5, 0)
        a = F.dropout(x, 0.4, training=True).reveal()
        b = F.dropout(x, 0.4).reveal()
        return a, b
    outs = veil.run(job, parties=3, seed=0)
    a, b = outs[0]
    for got in (a, b):
        kept = got != 0
        assert_close(got[kept], (X.abs() + 0.5)[kept] / 0.6, 1e-3, "kept entries scaled")
        assert 0 < kept.sum() < X.numel()
    assert not torch.equal(a != 0, b != 0), "two calls drew the same mask"
    assert all(torch.equal(o[0], a) for o in outs), "parties disagree on the mask"


def _r(*shape, seed=0, lo=-2.0, hi=2.0):
    return uniform(shape, lo, hi, seed=seed)


GRAD_CASES = {
    "hardtanh": (lambda a: F.hardtanh(a, -0.5, 1.0), [_r(3, 4)]),
    "dropout_eval": (lambda a: F.dropout(a, 0.3, training=False), [_r(3, 4)]),
    "l1": (lambda a, b: F.l1_loss(a, b), [_r(3, 4), _r(3, 4, seed=1)]),
    "smooth_l1": (lambda a, b: F.smooth_l1_loss(a, b, beta=0.5), [_r(3, 4), _r(3, 4, seed=1)]),
    "huber": (lambda a, b: F.huber_loss(a, b, delta=1.5), [_r(3, 4), _r(3, 4, seed=1)]),
    "bce": (lambda a: F.binary_cross_entropy(torch.sigmoid(a), T01[:3, :4].to(a.dtype)), [_r(3, 4)]),
    "kl_div": (lambda a: F.kl_div(torch.log_softmax(a, 1), Q[:3, :4].softmax(1).to(a.dtype),
                                  reduction="batchmean"), [_r(3, 4)]),
    "nll": (lambda a: F.nll_loss(torch.log_softmax(a, 1), CLS[:3] % 4), [_r(3, 4)]),
    "cosine": (lambda a, b: torch.nn.CosineSimilarity()(a, b), [_r(3, 4), _r(3, 4, seed=1)]),
}


@pytest.mark.parametrize("name", sorted(GRAD_CASES))
def test_gradient_matches_torch(name):
    fn, inputs = GRAD_CASES[name]
    errs = compare_grads(fn, inputs, parties=2)
    assert errs["out"] <= A, f"{name}: forward error {errs['out']:.3g}"
    for i, e in enumerate(errs["grads"]):
        assert e is not None and e <= 5e-3, f"{name}: grad of input {i} error {e:.3g}"


@pytest.mark.parametrize("name", ["smooth_l1", "nll"])
def test_gradient_matches_torch_3_parties(name):
    fn, inputs = GRAD_CASES[name]
    errs = compare_grads(fn, inputs, parties=3, seed=3)
    assert errs["out"] <= A and max(errs["grads"]) <= 5e-3, errs


def test_module_input_grad_equals_torch_gradient():
    def job():
        x, y = share_from(X, 0), share_from(Y, 1)
        return veil.nn.SmoothL1Loss().input_grad(x, y).reveal()
    got = veil.run(job, parties=2, seed=0)[0]
    xt = X.clone().requires_grad_()
    F.smooth_l1_loss(xt, Y).backward()
    assert_close(got, xt.grad, 1e-3, "input_grad")


def test_bad_options_are_refused_with_what_to_change():
    def job():
        x, y = share_from(X, 0), share_from(Y, 1)
        for call, match in [(lambda: F.l1_loss(x, y, reduction="avg"), "reduction"),
                            (lambda: F.l1_loss(x, y[:2]), "shape"),
                            (lambda: F.nll_loss(x, share_from(CLS, 1), weight=torch.ones(5)),
                             "secret divisor"),
                            (lambda: F.dropout(x, 1.5), "between 0 and 1"),
                            (lambda: veil.nn.L1Loss("avg"), "reduction")]:
            with pytest.raises(veil.errors.ProtocolUsageError, match=match):
                call()
        return True
    assert veil.run(job, parties=2, seed=0) == [True, True]
