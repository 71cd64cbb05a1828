"""Network emulation (veil.comm.netem): the link model, and that it changes nothing but time."""

from __future__ import annotations

import doctest

import pytest
import torch

import veil
from veil.comm import netem
from veil.comm.netem import Link, Network, predict
from veil.errors import ProtocolUsageError
from helpers import FakeClock, share_from


def test_a_link_carries_one_message_at_a_time_then_adds_latency():
    clock = FakeClock(100.0)
    link = Link(Network(latency_s=0.010, bandwidth_bps=8e6), clock=clock)
    # 1 MB at 8 Mbit/s takes 1 s on the wire, then 10 ms of flight
    assert link.schedule(1_000_000) == pytest.approx(101.010)
    # a second message sent at once queues behind the first
    assert link.schedule(500_000) == pytest.approx(101.510)
    clock.now = 200.0                                 # an idle link starts at once
    assert link.schedule(0) == pytest.approx(200.010)


def test_a_stamped_message_is_held_until_its_arrival_time():
    clock, slept = FakeClock(100.0), []

    def sleep(s):
        slept.append(s)
        clock.now += s

    due, payload = netem.unstamp(netem.stamp(100.25, b"abc"), 60.0, clock=clock)
    assert (due, bytes(payload)) == (100.25, b"abc")
    netem.wait_until(due, clock=clock, sleep=sleep)
    assert clock.now == pytest.approx(100.25) and len(slept) == 1
    netem.wait_until(due, clock=clock, sleep=sleep)   # already due: no wait
    assert len(slept) == 1


@pytest.mark.parametrize("due", [float("nan"), float("inf"), 100.0 + 61])
def test_a_peer_stamp_that_is_not_a_near_time_is_refused(due):
    # a stamp is a peer's word: it may not make this party wait for long (or forever)
    with pytest.raises(ValueError, match="one host"):
        netem.unstamp(netem.stamp(due, b"x"), 60.0, clock=FakeClock(100.0))
    with pytest.raises(ValueError, match="too short"):
        netem.unstamp(b"1234", 60.0, clock=FakeClock(100.0))


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
