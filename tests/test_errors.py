"""Bad input gets a clear error naming what to change; a failing party stops the others."""

from __future__ import annotations

import time

import pytest
import torch

import veil
from veil.errors import PartyError, ProtocolUsageError, RangeError, VeilError
from helpers import share_from


def _raises_in_party(job, match, parties=2, **kw):
    with pytest.raises(PartyError, match=match):
        veil.run(job, parties=parties, seed=0, **kw)


def test_owner_out_of_range():
    _raises_in_party(lambda: veil.tensor(torch.ones(2), owner=2), r"owner must be a party index in 0\.\.1")


def test_non_owner_passing_data():
    _raises_in_party(lambda: veil.tensor(torch.ones(2), owner=0), r"party 1 passed data .* non-owners must pass None")


def test_owner_passing_none():
    _raises_in_party(lambda: veil.tensor(None, owner=1), r"party 1 is the owner but passed None")


def test_mismatched_shapes():
    def job():
        x = share_from(torch.ones(2, 3), 0)
        y = share_from(torch.ones(4), 1)
        return x + y
    _raises_in_party(job, r"size of tensor a \(3\) must match")


def test_unsupported_dtype():
    _raises_in_party(lambda: share_from(torch.ones(2, dtype=torch.complex64), 0), r"unsupported dtype")


def test_value_out_of_fixed_point_range_states_the_range():
    with pytest.raises(PartyError, match=r"safe range \(-32768, 32768\)") as info:
        veil.run(lambda: share_from(torch.tensor([1e6]), 0), parties=2)
    assert isinstance(info.value.__cause__, RangeError)


def test_nan_is_refused():
    _raises_in_party(lambda: share_from(torch.tensor([float("nan")]), 0), r"NaN")


def test_call_outside_run():
    with pytest.raises(VeilError, match=r"veil\.run"):
        veil.tensor(torch.ones(1), owner=0)
    with pytest.raises(VeilError, match=r"veil\.run"):
        veil.rank()


def test_bad_run_arguments():
    with pytest.raises(ProtocolUsageError, match="parties"):
        veil.run(lambda: 0, parties=1)
    with pytest.raises(ValueError, match="unknown protocol"):
        veil.run(lambda: 0, parties=2, protocol="nope")
    with pytest.raises(ProtocolUsageError, match="frac_bits"):
        veil.Config(frac_bits=40)


def test_reveal_to_bad_party():
    _raises_in_party(lambda: share_from(torch.ones(1), 0).reveal(to=5), r"reveal\(to=\.\.\.\)")


def test_truth_value_of_secret_refused():
    def job():
        return bool(share_from(torch.ones(3), 0) > 0)
    _raises_in_party(job, r"truth value of a SecretTensor is secret")


def test_secret_index_refused():
    def job():
        x = share_from(torch.ones(3), 0)
        return x[x > 0]
    _raises_in_party(job, r"secret index is not supported")


def test_party_taking_another_code_path_is_named_at_once():
    def job():
        x = share_from(torch.ones(3), 0)
        if veil.rank() == 1:
            return None                 # party 1 skips the comparison the others run
        return (x > 0).reveal()
    t0 = time.monotonic()
    _raises_in_party(job, r"party 1: closed its connection .* same program")
    assert time.monotonic() - t0 < 5.0


def test_unsupported_torch_function_names_it():
    def job():
        x = share_from(torch.ones(3), 0)
        return torch.fft.fft(x)
    _raises_in_party(job, r"fft.* is not supported on SecretTensor")


def test_failing_party_stops_the_others_promptly():
    def job():
        x = share_from(torch.ones(10), 0)
        if veil.rank() == 1:
            raise ValueError("bank B's data failed validation")
        return (x * x).reveal()       # party 0 blocks here waiting for party 1
    t0 = time.monotonic()
    with pytest.raises(PartyError, match=r"party 1: failed: ValueError: bank B's data") as info:
        veil.run(job, parties=3, seed=0)
    assert time.monotonic() - t0 < 5.0, "the surviving parties were not stopped promptly"
    assert isinstance(info.value.__cause__, ValueError)


def test_silent_peer_times_out_naming_it():
    def job():
        x = share_from(torch.ones(4), 0)
        if veil.rank() == 1:
            time.sleep(1.5)           # never sends its share of the reveal in time
            return None
        return x.reveal()
    with pytest.raises(PartyError, match=r"party 1: sent nothing for 0.5 s"):
        veil.run(job, parties=2, config=veil.Config(timeout=0.5))


def test_runs_with_different_party_counts_follow_each_other():
    def job():
        return share_from(torch.tensor([2.0]), 0).mul(3).reveal().item(), veil.world_size()
    assert veil.run(job, parties=5)[4] == (6.0, 5)
    assert veil.run(job, parties=2)[1] == (6.0, 2)
