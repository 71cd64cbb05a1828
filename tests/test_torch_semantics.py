"""torch semantics where veil used to guess or crash (issue 10 items 1 and 2).

Each test names the case from the issue; each failed before the fix (silent wrong value or
an internal error). Tolerances: 2e-3 for gradients through a division or reciprocal
(relative error ~1e-4 of the approximations), exact for bits and integers.
"""

from __future__ import annotations

import operator

import pytest
import torch
import torch.nn.functional as F

import veil
from helpers import assert_close, share_from
from veil.errors import ProtocolUsageError


def _run(job, parties=2):
    return veil.run(job, parties=parties, seed=0)[0]


# -- bitwise operators never guess ------------------------------------------------------------
@pytest.mark.parametrize("op", [operator.and_, operator.or_, operator.xor])
def test_bitwise_on_secret_integers_is_refused(op):
    def job():
        i, j = share_from(torch.tensor([3, 5, 6]), 0), share_from(torch.tensor([1, 4, 3]), 1)
        with pytest.raises(ProtocolUsageError, match="bitwise in torch"):
            op(i, j)                          # torch: 1, 5, 2 (bitwise); x * y would be 3, 20, 18
        with pytest.raises(ProtocolUsageError, match="bitwise in torch"):
            op(i, 1)
        with pytest.raises(ProtocolUsageError, match="bitwise in torch"):
            op(1, i)
        return True
    assert _run(job)


def test_bitwise_on_bools_is_logical_and_invert_on_ints_is_twos_complement():
    a, b = torch.tensor([True, True, False, False]), torch.tensor([True, False, True, False])
    ints = torch.tensor([3, -1, 0, 100])

    def job():
        x, y = share_from(a, 0), share_from(b, 1)
        n = share_from(ints, 0)
        c = share_from(torch.tensor([1.0, -2.0, 3.0, -4.0]), 0) > 0      # bit shares
        return [(x & y).reveal(), (x | y).reveal(), (x ^ y).reveal(), (~x).reveal(),
                (~n).reveal(), (c & True).reveal(), (c ^ torch.tensor([True] * 4)).reveal(),
                (c | y).reveal()]
    got = _run(job, parties=3)
    c = torch.tensor([1.0, -2.0, 3.0, -4.0]) > 0
    want = [a & b, a | b, a ^ b, ~a, ~ints, c & True, c ^ True, c | b]
    for g, w in zip(got, want):
        assert torch.equal(g, w), (g, w)


def test_invert_on_float_is_refused_like_torch():
    def job():
        with pytest.raises(ProtocolUsageError, match="not defined"):
            ~share_from(torch.tensor([1.0]), 0)
        return True
    assert _run(job)


def test_logical_ops_treat_nonzero_as_true():
    f = torch.tensor([0.0, 1.0, -2.5, 0.0])
    i = torch.tensor([0, 3, 0, -7])

    def job():
        x, n = share_from(f, 0), share_from(i, 1)
        return [torch.logical_not(x).reveal(), torch.logical_and(x, n).reveal(),
                torch.logical_or(x, n).reveal(), torch.logical_xor(x, n).reveal(),
                torch.logical_and(n, torch.tensor([1, 1, 0, 0])).reveal(), x.bool().reveal()]
    got = _run(job)
    want = [torch.logical_not(f), torch.logical_and(f, i), torch.logical_or(f, i),
            torch.logical_xor(f, i), torch.logical_and(i, torch.tensor([1, 1, 0, 0])), f.bool()]
    for g, w in zip(got, want):
        assert torch.equal(g, w), (g, w)


def test_where_refuses_a_non_bool_secret_condition():
    def job():
        c = share_from(torch.tensor([0.5, 2.0]), 0)
        with pytest.raises(ProtocolUsageError, match="must be bool"):
            torch.where(c, c, 0.0)
        return True
    assert _run(job)


# -- gradients at the kinks are torch's ----------------------------------------------------
KINKS = torch.tensor([-3.0, -1.0, 0.0, 1.0, 3.0, 6.0, 7.0])


@pytest.mark.parametrize("name", ["relu", "relu6", "leaky_relu", "hardsigmoid", "hardswish"])
def test_activation_gradient_at_the_kinks(name):
    fn = {"relu": torch.relu, "relu6": F.relu6, "leaky_relu": lambda t: F.leaky_relu(t, 0.1),
          "hardsigmoid": F.hardsigmoid, "hardswish": F.hardswish}[name]
    ref = KINKS.clone().requires_grad_()
    fn(ref).sum().backward()

    def job():
        x = share_from(KINKS, 0).requires_grad_()
        y = fn(x)
        y.sum().backward()
        return y.reveal(), x.grad.reveal()
    out, grad = _run(job)
    assert_close(out, fn(KINKS), 1e-4, f"{name} value")
    assert_close(grad, ref.grad, 1e-4, f"{name} gradient")


# -- division --------------------------------------------------------------------------------
def test_backward_through_broadcasting_division():
    x0 = torch.rand(4, 5, generator=torch.Generator().manual_seed(1)) + 0.5
    w = torch.arange(20.0).reshape(4, 5) / 20
    ref = x0.clone().requires_grad_()
    ((ref / ref.sum(-1, keepdim=True)) * w).sum().backward()

    def job():
        x = share_from(x0, 0).requires_grad_()
        ((x / x.sum(-1, keepdim=True)) * w).sum().backward()
        return x.grad.reveal()
    assert_close(_run(job), ref.grad, 2e-3, "d(x / x.sum)/dx")


def test_public_numerator_larger_than_the_secret_denominator():
    d = torch.tensor([2.0, -4.0])
    num = torch.arange(1.0, 7.0).reshape(3, 2)

    def job():
        y = share_from(d, 0).requires_grad_()
        q = num / y
        q.sum().backward()
        return q.reveal(), y.grad.reveal()
    q, g = _run(job)
    ref = d.clone().requires_grad_()
    (num / ref).sum().backward()
    assert_close(q, num / d, 1e-3, "public / secret")
    assert_close(g, ref.grad, 2e-3, "its gradient")


def test_rtruediv_gives_the_secret_numerator_its_gradient():
    def job():
        n = share_from(torch.tensor([2.0, 3.0]), 0).requires_grad_()
        d = share_from(torch.tensor([4.0, 5.0]), 1).requires_grad_()
        d.__rtruediv__(n).sum().backward()          # n / d, reached as Tensor.__rtruediv__
        return n.grad.reveal(), d.grad.reveal()
    gn, gd = _run(job)
    assert_close(gn, torch.tensor([0.25, 0.2]), 2e-3, "d/dn")
    assert_close(gd, torch.tensor([-2 / 16, -3 / 25]), 2e-3, "d/dd")


# -- shapes torch allows -------------------------------------------------------------------
def test_backward_of_a_dot_product():
    a, b = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([-1.0, 0.5, 2.0])

    def job():
        x = share_from(a, 0).requires_grad_()
        y = share_from(b, 1).requires_grad_()
        (x @ y).backward()
        z = share_from(a, 0).requires_grad_()
        (z @ b).backward()                           # public right operand
        return x.grad.reveal(), y.grad.reveal(), z.grad.reveal()
    gx, gy, gz = _run(job)
    assert_close(gx, b, 1e-4, "dx") and assert_close(gy, a, 1e-4, "dy")
    assert_close(gz, b, 1e-4, "dz")


def test_zero_dim_reductions():
    def job():
        z = share_from(torch.tensor(3.0), 0).requires_grad_()
        out = [z.sum(0), z.mean(0), z.max(0).values, z.min(0).values, z.amax(0),
               z.log_softmax(0), z.softmax(0)]
        sum(out).backward()
        return [o.reveal() for o in out] + [z.max(0).indices.reveal(), z.grad.reveal()]
    *vals, idx, grad = _run(job)
    ref = torch.tensor(3.0, requires_grad=True)
    want = [ref.sum(0), ref.mean(0), ref.max(0).values, ref.min(0).values, ref.amax(0),
            ref.log_softmax(0), ref.softmax(0)]
    sum(want).backward()
    for g, w in zip(vals, want):
        assert g.shape == () and abs(g.item() - w.item()) < 1e-3
    assert idx.item() == 0 and abs(grad.item() - ref.grad.item()) < 1e-3


def test_zero_size_tensors_and_zero_length_splits():
    def job():
        x = share_from(torch.arange(6.0).reshape(2, 3), 0).requires_grad_()
        parts = x.split([0, 2, 0, 1], dim=1)
        e = share_from(torch.zeros(0, 3), 1)
        (parts[1].sum() + parts[3].sum() * 2 + parts[0].sum()).backward()
        return [p.reveal() for p in parts] + [e.reveal(), (e * 2).sum(0).reveal(),
                                              x.grad.reveal()]
    *parts, e, esum, grad = _run(job, parties=3)
    want = torch.arange(6.0).reshape(2, 3).split([0, 2, 0, 1], dim=1)
    assert [tuple(p.shape) for p in parts] == [tuple(w.shape) for w in want]
    assert all(torch.equal(p, w) for p, w in zip(parts, want))
    assert e.shape == (0, 3) and esum.tolist() == [0.0, 0.0, 0.0]
    assert grad.tolist() == [[1.0, 1.0, 2.0], [1.0, 1.0, 2.0]]


# -- views: alias like torch or refuse ---------------------------------------------------------
VIEWS = {
    "view": lambda t: t.view(6), "reshape": lambda t: t.reshape(3, 2),
    "squeeze": lambda t: t.unsqueeze(0).squeeze(0), "slice": lambda t: t[0],
    "transpose": lambda t: t.T, "detach": lambda t: t.detach(),
    "narrow": lambda t: t.narrow(1, 0, 2),
}


@pytest.mark.parametrize("name", sorted(VIEWS))
def test_writes_through_views_are_refused(name):
    def job():
        x = share_from(torch.zeros(2, 3), 0)
        v = VIEWS[name](x)
        with pytest.raises(ProtocolUsageError, match="into a view"):
            v[0] = 1.0                       # torch would change x too
        with pytest.raises(ProtocolUsageError, match="live views"):
            x[0] = 1.0                       # torch would change v too
        del v
        x[0] = 1.0                           # no view left: fine
        c = x.clone()
        c[1] = 2.0                           # a clone is independent, as in torch
        y = x[torch.tensor([0])]             # advanced indexing copies, as in torch
        y[0] = 5.0
        return x.reveal(), c.reveal(), y.reveal()
    x, c, y = _run(job)
    assert x.tolist() == [[1.0] * 3, [0.0] * 3] and c.tolist() == [[1.0] * 3, [2.0] * 3]
    assert y.tolist() == [[5.0] * 3]


def test_abs_gradient_is_zero_at_zero():
    def job():
        x = share_from(torch.tensor([0.0, 2.0, -1.5, 0.0]), 0).requires_grad_()
        (x.abs() * torch.tensor([1.0, 2.0, 3.0, 4.0])).sum().backward()
        return x.grad.reveal()
    assert _run(job, parties=3).tolist() == [0.0, 2.0, -3.0, 0.0]


@pytest.mark.parametrize("name", ["maximum", "minimum"])
def test_maximum_gradient_splits_ties_like_torch(name):
    a0, b0 = torch.tensor([1.0, 2.0, -1.0, 0.0]), torch.tensor([1.0, 3.0, -2.0, 0.0])
    ra, rb = a0.clone().requires_grad_(), b0.clone().requires_grad_()
    getattr(torch, name)(ra, rb).sum().backward()

    def job():
        a = share_from(a0, 0).requires_grad_()
        b = share_from(b0, 1).requires_grad_()
        getattr(torch, name)(a, b).sum().backward()
        c = share_from(a0, 0).requires_grad_()
        getattr(torch, name)(c, b0).sum().backward()          # public other
        return a.grad.reveal(), b.grad.reveal(), c.grad.reveal()
    ga, gb, gc = _run(job)
    assert ga.tolist() == ra.grad.tolist() and gb.tolist() == rb.grad.tolist()
    assert gc.tolist() == ra.grad.tolist()
