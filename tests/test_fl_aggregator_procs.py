"""Aggregator-MPC mode deployed: 2 aggregators as separate `veil run` OS processes over
veil's TLS, fed by the Flower server through a spool folder (veil.fl.aggregator.serve)."""

import os
import subprocess
import sys

import pytest
import torch

pytest.importorskip("flwr")

from flwr.app import ArrayRecord
from flwr.serverapp.strategy import FedAvg

from veil.fl import tasks
from veil.fl.aggregator import spool
from veil.fl.flower import (
    DPConfig,
    LocalGrid,
    SecureFedAvg,
    SpoolAggregators,
    secagg_mod,
)

N_CLIENTS = 5


def _weights(arrays):
    sd = arrays.to_torch_state_dict()
    return torch.cat([sd["weight"].flatten(), sd["bias"]]).double()


@pytest.fixture
def aggregators(tmp_path):
    """Start `veil run -n 2 -m veil.fl.aggregator.serve` (2 parties + dealer, TLS)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VEIL_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "veil.cli", "run", "-n", "2", "--timeout", "60", "-m",
         "veil.fl.aggregator.serve", "--spool", str(tmp_path)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    aggs = SpoolAggregators(tmp_path, 2, timeout=120)
    yield aggs, proc
    try:
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_two_aggregator_processes_match_fedavg_and_add_noise(aggregators, tmp_path):
    aggs, proc = aggregators
    parts, _ = tasks.partition("breast_cancer", N_CLIENTS, alpha=0.5, seed=0)
    init = ArrayRecord(tasks.model(30, 2).state_dict())
    app = tasks.client_app(parts, 30, 2, mods=[secagg_mod])
    s = SecureFedAvg(aggregators=aggs)
    r = s.start(grid=LocalGrid(app, N_CLIENTS), initial_arrays=init, num_rounds=2)
    plain = FedAvg(fraction_evaluate=0.0).start(
        grid=LocalGrid(tasks.client_app(parts, 30, 2), N_CLIENTS), initial_arrays=init,
        num_rounds=2)
    assert [h.get("clients") for h in s.history] == [N_CLIENTS, N_CLIENTS]
    # veil fixed point 2^-16 on n_k * Δ_k, divided by Σ n_k: far below 1e-6.
    assert float((_weights(r.arrays) - _weights(plain.arrays)).abs().max()) < 1e-6
    # DP round through the processes: each aggregator adds N(0, (zC)^2) inside MPC; the
    # model moves by the noisy sum / (qN), visibly away from the noiseless result.
    dp = DPConfig(clip_norm=1.0, sample_rate=1.0, min_clients=2, noise_multiplier=1.0)
    s2 = SecureFedAvg(aggregators=aggs, dp=dp)
    r2 = s2.start(grid=LocalGrid(app, N_CLIENTS), initial_arrays=init, num_rounds=1)
    step = (_weights(r2.arrays) - _weights(init)) * N_CLIENTS        # = clipped sum + noise
    # Σ of 5 clipped updates has norm <= 5; the noise of 2 aggregators has norm
    # ~ sqrt(2 * 62) = 11: the step's norm is far above 5 (fails only if noise is missing).
    assert float(step.norm()) > 6
    # A malformed request: that aggregator fails inside the MPC run, the other stops at
    # once naming it (no hang), and the error file tells the Flower server why.
    for j in (0, 1):
        spool.write_atomic(spool.request_path(tmp_path, 4, j), b"VEILAGG1 garbage")
    out, _ = proc.communicate(timeout=90)
    assert proc.returncode != 0, out
    assert "malformed aggregation request" in out
    assert spool.error_path(tmp_path, 4, 0).read_text() == "aggregation request is truncated"


def test_spool_requests_are_validated(tmp_path):
    msgs = [{"client": c, "ephemeral": bytes(32), "shares": [bytes(12 + 8 * 3 + 16)] * 2}
            for c in (4, 9)]
    blob = spool.encode_request(b"r" * 16, 3, 0.5, msgs, index=1)
    rid, n, noise, sealed = spool.decode_request(blob, 1, max_vector_len=10)
    assert (rid, n, noise, [m["client"] for m in sealed]) == (b"r" * 16, 3, 0.5, [4, 9])
    for bad, match in [(blob[:-1], "truncated"), (blob + b"x", "trailing"),
                       (b"XXXXXXXX" + blob[8:], "magic"),
                       (spool.encode_request(b"r" * 16, 3, 0.5, msgs[:1] * 2, 0), "twice"),
                       (spool.encode_request(b"r" * 16, 3, float("nan"), msgs, 0), "finite"),
                       (spool.encode_request(b"r" * 16, 11, 0.5, msgs, 0), "outside")]:
        with pytest.raises(ValueError, match=match):
            spool.decode_request(bad, 0, max_vector_len=10)
    # No aggregator up: a clear error naming the folder and the command, not a hang.
    from veil.fl.flower import AggregatorUnavailableError
    with pytest.raises(AggregatorUnavailableError, match="veil run"):
        _ = SpoolAggregators(tmp_path, 2, timeout=0.2).publics
