"""Profile mode (Config(profile=True)): per-kernel time split, and nothing else changes."""

from __future__ import annotations

import doctest

import pytest
import torch

import veil
from veil.comm import profile as profile_mod
from veil.comm.profile import OUTSIDE, Profiler
from veil.errors import VeilError
from helpers import FakeClock, share_from


def test_nested_kernels_are_charged_exclusively_and_waits_to_the_innermost():
    clock = FakeClock()
    p = Profiler(clock)
    with p.kernel("mul_trunc"):
        clock.now += 1.0
        with p.kernel("trunc"):
            clock.now += 2.0
            p.waited(0.5, offline=False)
            p.waited(0.25, offline=True)
            p.sent(0.125)
        clock.now += 4.0
    p.waited(3.0, offline=False)                       # outside any kernel
    r = p.report()
    assert r["mul_trunc"]["total_s"] == 5.0 and r["trunc"]["total_s"] == 2.0
    assert r["trunc"]["compute_s"] == 2.0 - 0.5 - 0.25 - 0.125
    assert r[OUTSIDE]["peer_wait_s"] == 3.0 and r[OUTSIDE]["total_s"] == 3.0


def test_profile_is_off_by_default_and_says_how_to_turn_it_on():
    with pytest.raises(veil.PartyError, match="profile=True"):
        veil.run(lambda: veil.profile(), parties=2)
    with pytest.raises(VeilError):
        veil.profile()                                  # outside a party


@pytest.mark.parametrize("protocol, parties", [("semi2k", 2), ("semi2k", 3), ("rep3", 3)])
def test_profiling_changes_neither_results_nor_counts(protocol, parties):
    def job():
        x = share_from(torch.linspace(-2, 2, 64), 0)
        y = share_from(torch.linspace(1, 3, 64), 1)
        out = (x * y).relu().sum().reveal()
        prof = veil.profile() if veil.context.current().config.profile else None
        return out, veil.stats(), prof

    plain = veil.run(job, parties=parties, protocol=protocol, seed=4)
    prof = veil.run(job, parties=parties, protocol=protocol, seed=4,
                    config=veil.Config(profile=True))
    for (v0, s0, _), (v1, s1, report) in zip(plain, prof):
        assert torch.equal(v0, v1) and s0 == s1
        assert {"msb", "select"} <= set(report) and ({"mul", "mul_trunc"} & set(report))
        for row in report.values():
            parts = row["compute_s"] + row["peer_wait_s"] + row["dealer_wait_s"] + row["send_s"]
            assert row["compute_s"] >= 0 and parts <= row["total_s"] + 1e-9


def test_profiled_bytes_are_the_protocol_bytes_on_emulated_links_too():
    # network emulation stamps each message on the wire; the stamp is not protocol traffic
    def job():
        x, y = share_from(torch.linspace(-2, 2, 64), 0), share_from(torch.ones(64), 1)
        def total():
            return sum(r["bytes_sent"] for k, r in veil.profile().items()
                       if not k.startswith(profile_mod.SCOPE))
        p0, s0 = total(), veil.stats()
        (x * y).relu().sum().reveal()
        return total() - p0, veil.stats()["bytes_sent"] - s0["bytes_sent"]

    for profiled, sent in veil.run(job, parties=2, seed=4,
                                   config=veil.Config(profile=True, network="1ms/10gbit")):
        assert sent > 0 and profiled == sent


def test_docstring_examples_run():
    assert doctest.testmod(profile_mod).failed == 0
    assert doctest.testmod(veil.context).failed == 0
