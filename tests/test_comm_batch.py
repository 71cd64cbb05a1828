"""`Communicator.batch`: small messages held and written together (veil.comm).

Held messages must never change what a peer receives (same messages, same order, same
counts), must never make a party block with messages unsent (a receive that would wait
sends them first), and over real links go out as one write. The dealer uses it: party 0
sends a period's predicted requests in one write, the dealer answers them together.
"""

from __future__ import annotations

import threading

import pytest
import torch

import veil
from veil.comm import Abort, Communicator, MemoryChannel
from veil.comm.communicator import HOLD_BYTES


class Counting(MemoryChannel):
    """A memory channel that counts writes (one per `send`, one per `send_many`)."""

    writes = 0

    def send(self, payload):
        self.writes += 1
        super().send(payload)

    def send_many(self, payloads):
        self.writes += 1
        for p in payloads:
            super().send(p)


def _pair(timeout=5.0):
    abort = Abort()
    a, b = MemoryChannel.pair("party 0", "party 1", abort)
    a.__class__ = b.__class__ = Counting
    return (Communicator(0, 2, {1: a}, timeout), Communicator(1, 2, {0: b}, timeout), a, b)


def test_held_messages_go_out_together_in_order_when_the_block_ends():
    c0, c1, a, b = _pair()
    msgs = [bytes([i]) * (i + 1) for i in range(5)]
    with c0.batch():
        for m in msgs:
            c0.send_bytes(1, memoryview(bytearray(m)))   # a buffer the sender may reuse
        assert not b.ready() and a.writes == 0           # nothing left yet
    assert a.writes == 1
    assert [bytes(c1.recv_bytes(0)) for _ in msgs] == msgs


def test_counts_are_the_messages_not_the_writes():
    c0, _, _, _ = _pair()
    with c0.batch():
        for _ in range(4):
            c0.send_bytes(1, b"abc")
    s = c0.stats.as_dict()
    assert s["messages"] == 4 and s["bytes_sent"] == 12


def test_a_receive_that_would_wait_sends_the_held_messages_first():
    # party 1 answers only once it has party 0's message: if party 0 waited with that
    # message still held, both would wait forever (here: a timeout)
    c0, c1, a, _ = _pair(timeout=5.0)
    answer = threading.Thread(target=lambda: c1.send_bytes(0, bytes(c1.recv_bytes(0)) + b"!"))
    answer.start()
    with c0.batch():
        c0.send_bytes(1, b"ping")
        assert bytes(c0.recv_bytes(1)) == b"ping!"
    answer.join(5)
    assert a.writes == 1


def test_a_large_message_goes_at_once_after_the_held_ones():
    c0, c1, a, _ = _pair()
    big = bytes(HOLD_BYTES + 1)
    with c0.batch():
        c0.send_bytes(1, b"small")
        c0.send_bytes(1, big)                 # not held: the small one must go first
        assert a.writes == 2
    assert [bytes(c1.recv_bytes(0)) for _ in range(2)] == [b"small", big]


def test_a_block_that_fails_sends_nothing_it_held():
    c0, c1, a, b = _pair()
    with pytest.raises(ValueError):
        with c0.batch():
            c0.send_bytes(1, b"never")
            raise ValueError("the run fails here")
    assert a.writes == 0 and not b.ready()
    c0.send_bytes(1, b"next")                 # and later messages are not held
    assert bytes(c1.recv_bytes(0)) == b"next"


def test_link_writes_a_batch_as_one_frame_stream(tmp_path):
    from veil.net.loopback import connect_hubs, local_cluster
    cluster, listeners = local_cluster(tmp_path, 2)
    listeners[1].close()
    hubs = connect_hubs(cluster, listeners, ranks=[0, 1])
    try:
        a, b = hubs[0].links[1], hubs[1].links[0]
        msgs = [b"", b"x", bytes(range(256)) * 40, memoryview(bytearray(b"tail"))]
        a.send_many(msgs)
        a.send(b"after")
        assert [bytes(b.recv(5.0)) for _ in range(5)] == [bytes(m) for m in msgs] + [b"after"]
    finally:
        for h in hubs.values():
            h.close()


@pytest.mark.parametrize("parties", [2, 3])
def test_party_0_sends_a_loops_predicted_requests_in_bursts(parties):
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(6, 4, generator=g), torch.randn(6, 4, generator=g)

    def party():
        from veil.context import current
        comm = current().comm
        dealer = comm.channels[comm.world_size]
        dealer.__class__ = Counting
        x = veil.tensor(a if veil.rank() == 0 else None, owner=0)
        y = veil.tensor(b if veil.rank() == 1 else None, owner=1)
        acc = x * 0
        for _ in range(20):                   # the same requests every step
            acc = acc + (x * y).relu()
        s = veil.stats()
        return acc.reveal(), dealer.writes, s

    out = veil.run(party, parties=parties, seed=0)
    got, writes, stats = out[0]
    assert torch.allclose(got, 20 * (a * b).relu(), atol=20 * 2e-4)
    assert stats["dealer_ahead"] > 30
    # one write per request waited for, then bursts of about half a step's requests
    # (measured: 51 writes for 180 requests, 162 sent ahead; one write each before)
    assert writes <= stats["dealer_waits"] + stats["dealer_ahead"] / 3
