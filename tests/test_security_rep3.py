"""rep3 security properties: every message a party receives looks uniform (even for a
constant secret), no plaintext on any channel, reveal-to-one sends to the receiver only,
no dealer, and the replicated share type refuses ops that would silently be wrong."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import veil
from veil.errors import PartyError, ProtocolUsageError
from veil.protocols import Rep3
from veil.protocols.rep3_share import RepShare
from helpers import share_from


def _chi2_lanes(t: torch.Tensor) -> float:
    """Largest chi-square statistic over the byte lanes of t's elements (255 dof)."""
    width = t.element_size()
    raw = t.contiguous().reshape(-1).numpy().view(np.uint8).reshape(-1, width)
    worst = 0.0
    for lane in range(width):
        counts = np.bincount(raw[:, lane], minlength=256)
        expected = len(raw) / 256
        worst = max(worst, float(((counts - expected) ** 2 / expected).sum()))
    return worst


def test_every_received_message_looks_uniform_for_a_constant_secret(monkeypatch):
    """mul, fixed-point mul (fused trunc), trunc, msb, eqz, b2a, select on x = 0: each
    message is masked by randomness the receiver lacks, so its bytes are uniform."""
    seen: list[tuple[int, int, str, torch.Tensor]] = []
    real = Rep3._send
    phase = {"kernel": ""}

    def spy(self, peer, t):
        seen.append((self.rank, peer, phase["kernel"], t.detach().clone()))
        return real(self, peer, t)

    monkeypatch.setattr(Rep3, "_send", spy)

    def job():
        p = veil.context.current().protocol
        x = share_from(torch.zeros(16_384), 0)
        y = share_from(torch.zeros(16_384), 1)
        steps = {"mul": lambda: p.mul(x.share, y.share),
                 "mul_trunc": lambda: p.mul_trunc(x.share, y.share, 16),
                 "trunc": lambda: p.trunc(x.share, 16),
                 "msb": lambda: p.msb(x.share), "eqz": lambda: p.eqz(x.share),
                 "b2a": lambda: p.b2a((x < 1.0)._bits),
                 "select": lambda: p.select((x < 1.0)._bits, y.share)}
        for name, step in steps.items():
            phase["kernel"] = name
            step()

    veil.run(job, parties=3, protocol="rep3")
    checked = {k for _, _, k, t in seen if t.numel() >= 2048}
    assert checked >= {"mul", "mul_trunc", "trunc", "msb", "eqz", "b2a", "select"}
    for sender, peer, kernel, t in seen:
        if t.numel() < 2048:        # too few samples for a chi-square test (tail AND layers)
            continue
        if t.dtype == torch.int64 and bool(((t >> 33) == 0).all()):
            # a comparison's masked opening is uniform mod 2^compare_bits (33), sent in
            # int64 (a uniform 64-bit message has zero top bits with probability ~0):
            # test its low 32 bits
            t = (t & 0xFFFFFFFF).to(torch.int32)
        # chi2, 255 dof: mean 255, sd 22.6; 400 is > 6 sd.
        assert _chi2_lanes(t) < 400, f"{kernel}: party {sender} -> {peer} is not uniform"


# plaintext never crosses a channel: tests/test_security.py, with rep3 in its grid


@pytest.mark.parametrize("to", [0, 1, 2])
def test_reveal_to_one_party_sends_only_to_that_party(to):
    def job():
        x = share_from(torch.arange(100.0), 0)
        before = veil.stats()
        out = x.reveal(to=to)
        after = veil.stats()
        return out, after["bytes_sent"] - before["bytes_sent"], \
            after["bytes_received"] - before["bytes_received"]

    res = veil.run(job, parties=3, seed=1, protocol="rep3")
    assert torch.equal(res[to][0], torch.arange(100.0))
    # Party to-1 sends the one component the receiver lacks; nobody else sends or
    # receives anything, so no other party ever holds a third component.
    for r in range(3):
        if r != to:
            assert res[r][0] is None and res[r][2] == 0
        assert res[r][1] == (800 if r == (to - 1) % 3 else 0)
    assert res[to][2] == 800


def test_no_dealer_and_no_dealer_traffic():
    def job():
        x = share_from(torch.randn(50), 0)
        (x * x).relu().reveal()
        ctx = veil.context.current()
        try:
            ctx.provider.get("beaver")
            asked = "served"
        except RuntimeError as exc:
            asked = str(exc)
        return veil.stats(), sorted(ctx.comm.channels), asked

    for rank, (stats, peers, asked) in enumerate(veil.run(job, parties=3, protocol="rep3")):
        assert peers == [p for p in range(3) if p != rank]       # no channel to a dealer
        assert stats["offline_bytes_sent"] == 16 * (2 - rank)     # pairwise seeds only
        assert "runs without a dealer" in asked


@pytest.mark.parametrize("parties", [2, 5])
def test_other_party_counts_are_refused(parties):
    with pytest.raises(ProtocolUsageError, match="runs with 3 parties"):
        veil.run(lambda: 0, parties=parties, protocol="rep3")


def test_replicated_share_refuses_silently_wrong_ops_and_hides_values():
    s = RepShare(torch.tensor([5, 6]), torch.tensor([7, 8]))
    for bad in (lambda: s + torch.tensor([1, 1]), lambda: s + 3, lambda: s * s,
                lambda: s.numpy(), lambda: s.item(), lambda: s >> 2, lambda: s.prod(),
                lambda: s.__setitem__(0, 5), lambda: s.masked_fill(s.a > 5, 1),
                lambda: torch.cat([s, torch.ones(2, dtype=torch.int64)]),
                lambda: torch.zeros(2, dtype=torch.int64).add_(s)):
        with pytest.raises(TypeError):
            bad()
    assert "5" not in repr(s) and "<secret>" in repr(s)
    t = (s * 3 + s)[1:]                  # public scaling and adding shares stay local
    assert t.a.tolist() == [24] and t.b.tolist() == [32]


def test_a_plain_tensor_where_a_share_belongs_is_an_error():
    def job():
        veil.context.current().protocol.mul(torch.ones(3, dtype=torch.int64),
                                            torch.ones(3, dtype=torch.int64))
    with pytest.raises(PartyError, match="plain tensor, not a share"):
        veil.run(job, parties=3, protocol="rep3")
