"""BatchNorm in training mode (batch statistics on shares, running statistics updated),
the new veil.nn layers, and veil.nn.from_torch for Conv1d, ReLU6, Hardtanh, Softmax,
LogSoftmax, BatchNorm1d/2d/3d, AdaptiveMaxPool2d, Embedding: against torch at 2 and 3
parties. Tolerance 2e-3 (one rsqrt per channel, relative error ~1e-4).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import veil
from veil.autograd.check import compare_grads
from helpers import share_from

G = torch.Generator().manual_seed(7)
X4 = torch.randn(4, 3, 5, 5, generator=G) * 2 + 1
X2 = torch.randn(6, 4, generator=G)


def _bn_job(parties):
    def job():
        bn = veil.nn.BatchNorm2d(3)
        x = share_from(X4, 1 % veil.world_size())
        y1 = bn(x)                       # training: batch statistics
        y2 = bn(x * 0.5)
        bn.eval()
        y3 = bn(x)                       # eval: the updated running statistics
        return [t.reveal() for t in (y1, y2, y3, bn.running_mean, bn.running_var)]
    return veil.run(job, parties=parties, seed=3)[0]


@pytest.mark.parametrize("parties", [2, 3])
def test_batchnorm_training_matches_torch_and_updates_running_stats(parties):
    got = _bn_job(parties)
    bn = torch.nn.BatchNorm2d(3)
    want = [bn(X4), bn(X4 * 0.5)]
    bn.eval()
    want += [bn(X4), bn.running_mean, bn.running_var]
    for g, w, name in zip(got, want, ["train", "train2", "eval", "running_mean", "running_var"]):
        assert (g - w.detach()).abs().max() <= 2e-3, name


def test_batchnorm_training_gradient_matches_torch():
    w, b = torch.rand(4, generator=G) + 0.5, torch.randn(4, generator=G)
    errs = compare_grads(lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True),
                         [X2, w, b])
    assert errs["out"] <= 2e-3 and max(errs["grads"]) <= 2e-3, errs


def test_batchnorm_training_refuses_public_running_stats():
    def job():
        with pytest.raises(veil.errors.ProtocolUsageError, match="must be a SecretTensor"):
            F.batch_norm(share_from(X2, 0), torch.zeros(4), torch.ones(4), training=True)
        return True
    assert veil.run(job, parties=2, seed=0) == [True, True]


def _net():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv1d(2, 4, 3, padding=1), torch.nn.BatchNorm1d(4), torch.nn.ReLU6(),
        torch.nn.Hardtanh(-0.5, 2.0), torch.nn.Flatten(), torch.nn.Linear(32, 6),
        torch.nn.LogSoftmax(-1))


def _img_net():
    torch.manual_seed(1)
    return torch.nn.Sequential(torch.nn.BatchNorm2d(2), torch.nn.AdaptiveMaxPool2d((2, 3)),
                               torch.nn.Flatten(), torch.nn.Softmax(1))


@pytest.mark.parametrize("parties", [2, 3])
def test_from_torch_new_layers_forward_like_torch(parties):
    net, img = _net().eval(), _img_net().eval()
    # non-trivial running statistics
    with torch.no_grad():
        net[1].running_mean.uniform_(-0.5, 0.5)
        net[1].running_var.uniform_(0.5, 2.0)
        img[0].running_mean.uniform_(-0.5, 0.5)
    x = torch.randn(3, 2, 8, generator=G)
    xi = torch.randn(2, 2, 5, 7, generator=G)

    def job():
        r = veil.rank()
        m = veil.nn.from_torch(net if r == 0 else None, owner=0).eval()
        mi = veil.nn.from_torch(img if r == 0 else None, owner=0).eval()
        return m(share_from(x, 1)).reveal(), mi(share_from(xi, 1)).reveal()
    a, b = veil.run(job, parties=parties, seed=1)[0]
    assert (a - net(x)).abs().max() <= 2e-3
    assert (b - img(xi)).abs().max() <= 2e-3


def test_from_torch_trains_batchnorm_and_conv1d():
    net = _net()
    x = torch.randn(8, 2, 8, generator=G)
    y = torch.randint(0, 6, (8,), generator=G)

    def job():
        m = veil.nn.from_torch(net if veil.rank() == 0 else None, owner=0)
        opt = veil.optim.SGD(m.parameters(), lr=0.1)
        loss = F.nll_loss(m(share_from(x, 1)), y)
        loss.backward()
        opt.step()
        return loss.reveal(), m.reveal_state_dict(to=0)
    loss, state = veil.run(job, parties=2, seed=2)[0]
    ref = _net()
    opt = torch.optim.SGD(ref.parameters(), lr=0.1)
    want = F.nll_loss(ref(x), y)
    want.backward()
    opt.step()
    assert abs(loss.item() - want.item()) <= 2e-3
    ref_state = dict(ref.named_parameters())
    for k, v in state.items():
        assert (v - ref_state[k].detach()).abs().max() <= 2e-3, k


def test_embedding_public_and_secret_indices():
    torch.manual_seed(3)
    emb = torch.nn.Embedding(7, 3)
    idx = torch.tensor([[1, 6, 0], [3, 3, 2]])

    def job():
        m = veil.nn.from_torch(torch.nn.Sequential(emb) if veil.rank() == 0 else None, owner=0)
        return m(idx).reveal(), m(share_from(idx, 1)).reveal()
    a, b = veil.run(job, parties=2, seed=0)[0]
    assert (a - emb(idx)).abs().max() <= 2e-5
    assert (b - emb(idx)).abs().max() <= 1e-3


@pytest.mark.parametrize("kind", ["LSTMCell", "GRUCell"])
def test_recurrent_cells_from_torch_forward_and_gradient(kind):
    torch.manual_seed(4)
    cell = getattr(torch.nn, kind)(3, 4)
    xs = torch.randn(3, 2, 3, generator=G)            # 3 steps, batch 2

    def run_torch():
        h = None
        for x in xs:
            h = cell(x, h)
        out = h[0] if kind == "LSTMCell" else h
        return out

    def job():
        m = veil.nn.from_torch(cell if veil.rank() == 0 else None, owner=0)
        h = None
        for x in xs:
            h = m(share_from(x, 1), h)
        out = h[0] if kind == "LSTMCell" else h
        out.sum().backward()
        return out.reveal(), m.weight_hh.grad.reveal()
    got, grad = veil.run(job, parties=2, seed=0)[0]
    want = run_torch()
    want.sum().backward()
    assert (got - want.detach()).abs().max() <= 2e-3
    assert (grad - cell.weight_hh.grad).abs().max() <= 2e-3
