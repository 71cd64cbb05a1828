"""Network emulation (veil.comm.netem): the link model, and that it changes nothing but time."""

from __future__ import annotations

import doctest
import threading

import pytest
import torch

import veil
from veil.comm import netem
from veil.comm.netem import DelayLine, Network, predict
from veil.errors import ProtocolUsageError
from helpers import share_from


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_a_link_carries_one_message_at_a_time_then_adds_latency():
    clock = FakeClock()
    line = DelayLine(Network(latency_s=0.010, bandwidth_bps=8e6), lambda b: None, clock=clock)
    # 1 MB at 8 Mbit/s takes 1 s on the wire, then 10 ms of flight
    assert line.schedule(1_000_000) == pytest.approx(101.010)
    # a second message sent at once queues behind the first
    assert line.schedule(500_000) == pytest.approx(101.510)
    clock.now = 200.0                                 # an idle link starts at once
    assert line.schedule(0) == pytest.approx(200.010)
    line.flush()


def test_delay_line_delivers_in_order_and_reports_a_failed_delivery():
    got, done = [], threading.Event()

    def deliver(b):
        got.append(bytes(b))
        if len(got) == 3:
            done.set()

    line = DelayLine(Network(1e-4, 1e9), deliver)
    for i in range(3):
        line.push(bytes([i]) * (3 - i))
    line.flush()
    assert done.is_set() and got == [b"\x00\x00\x00", b"\x01\x01", b"\x02"]

    def broken(b):
        raise ConnectionError("peer gone")

    line = DelayLine(Network(1e-4, 1e9), broken)
    line.push(b"x")
    with pytest.raises(ConnectionError):
        line.flush()


@pytest.mark.parametrize("spec", ["fast", "10ms", "10ms/0mbit", "-1ms/10mbit", 5])
def test_bad_network_specs_are_refused_with_the_accepted_forms(spec):
    with pytest.raises(ProtocolUsageError, match="lan"):
        veil.Config(network=spec)


def test_predict_adds_rounds_of_latency_and_bytes_over_bandwidth():
    assert predict(0.5, 10, 12_500_000, Network(0.04, 1e8)) == pytest.approx(0.5 + 0.4 + 1.0)


@pytest.mark.parametrize("parties", [2, 3])
def test_emulated_links_change_neither_results_nor_counts(parties):
    def job():
        x = share_from(torch.linspace(-2, 2, 50), 0)
        y = share_from(torch.linspace(1, 3, 50), parties - 1)
        return (x * y).relu().sum().reveal(), veil.stats()

    plain = veil.run(job, parties=parties, seed=3)
    emulated = veil.run(job, parties=parties, seed=3, config=veil.Config(network="1ms/1gbit"))
    for (v0, s0), (v1, s1) in zip(plain, emulated):
        assert torch.equal(v0, v1) and s0 == s1


def test_docstring_examples_run():
    assert doctest.testmod(netem).failed == 0
