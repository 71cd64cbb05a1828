"""veil.fl on Flower's Message API, run on LocalGrid (no Ray): secure FedAvg equals plain
Flower FedAvg, dropouts at each stage, skipped rounds, bad clients, DP-FedAvg wiring, and
what crosses the wire."""

import logging

import pytest
import torch

pytest.importorskip("flwr")

from flwr.app import ArrayRecord, Message, RecordDict  # noqa: E402
from flwr.serverapp.strategy import FedAvg  # noqa: E402

from veil.fl import tasks  # noqa: E402
from veil.fl.flower import DPConfig, LocalGrid, SecureFedAvg, secagg_mod  # noqa: E402

N_CLIENTS = 6


@pytest.fixture(scope="module")
def data():
    return tasks.partition("digits", N_CLIENTS, alpha=0.5, seed=0)


def _init():
    return ArrayRecord(tasks.model(64, 10).state_dict())


def _weights(result):
    sd = result.arrays.to_torch_state_dict()
    return torch.cat([sd["weight"].flatten(), sd["bias"]]).double()


def _plain(data, rounds=2, fail=None):
    parts, _ = data
    app = tasks.client_app(parts, 64, 10, fail=fail)
    return FedAvg(fraction_evaluate=0.0).start(grid=LocalGrid(app, N_CLIENTS),
                                               initial_arrays=_init(), num_rounds=rounds)


def _secure(data, rounds=2, fail=None, drop=None, threshold=3, extra_mods=(), **kw):
    parts, _ = data
    app = tasks.client_app(parts, 64, 10, fail=fail, mods=[*extra_mods, secagg_mod])
    s = SecureFedAvg(threshold=threshold, **kw)
    r = s.start(grid=LocalGrid(app, N_CLIENTS, drop=drop), initial_arrays=_init(),
                num_rounds=rounds)
    return s, r


def test_secure_fedavg_matches_flower_fedavg(data):
    s, r = _secure(data)
    plain = _plain(data)
    # Both average float32 weights; the secure sum is exact to 2^-25 per client in
    # fixed point, then the same float32 cast: agreement to float32 rounding.
    assert float((_weights(r) - _weights(plain)).abs().max()) < 1e-6
    assert [h["clients"] for h in s.history] == [N_CLIENTS, N_CLIENTS]
    assert tasks.accuracy(_net(r), data[1]) > 0.5


def _net(result):
    net = tasks.model(64, 10)
    net.load_state_dict(result.arrays.to_torch_state_dict())
    return net


def test_dropouts_before_and_after_masked_input(data):
    # Node 2 crashes in training (before its masked input), node 5 vanishes before unmask
    # (after its masked input): the sum holds 1,3,4,5,6 — as plain FedAvg without node 2.
    fail = lambda node, rnd: node == 2
    s, r = _secure(data, fail=fail, drop=lambda node, stage: node == 5 and stage == "unmask")
    plain = _plain(data, fail=fail)
    assert float((_weights(r) - _weights(plain)).abs().max()) < 1e-6
    assert s.history[0]["clients"] == 5 and s.history[0]["dropped_after_input"] == 1


def test_too_few_clients_skips_round_with_message(data, caplog):
    with caplog.at_level(logging.WARNING, logger="veil.fl"):
        s, r = _secure(data, rounds=1, threshold=5,
                       drop=lambda node, stage: node <= 2 and stage == "masked_input")
    assert "skipped" in s.history[0] and "threshold needs 5" in s.history[0]["skipped"]
    assert "round 1 skipped" in caplog.text
    assert torch.equal(_weights(r), _weights(type("R", (), {"arrays": _init()})))


def test_non_finite_update_drops_that_client_only(data):
    def nan_mod(msg, context, call_next):
        # A broken client: its training returns NaN weights.
        reply = call_next(msg, context)
        if context.node_id == 3 and "arrays" in reply.content.array_records:
            sd = reply.content["arrays"].to_torch_state_dict()
            sd["bias"][0] = float("nan")
            reply.content["arrays"] = ArrayRecord(sd)
        return reply
    parts, _ = data
    app = _client_with(parts, [secagg_mod, nan_mod])      # nan_mod runs inside secagg_mod
    s = SecureFedAvg(threshold=3)
    r = s.start(grid=LocalGrid(app, N_CLIENTS), initial_arrays=_init(), num_rounds=1)
    plain = _plain(data, rounds=1, fail=lambda node, rnd: node == 3)
    assert s.history[0]["clients"] == N_CLIENTS - 1
    assert float((_weights(r) - _weights(plain)).abs().max()) < 1e-6


def _client_with(parts, mods):
    return tasks.client_app(parts, 64, 10, mods=mods)


def test_wrong_length_masked_vector_is_dropped(data, caplog):
    def truncate_mod(msg, context, call_next):
        reply = call_next(msg, context)
        if context.node_id == 4 and "veil.masked" in reply.content.array_records:
            y = reply.content["veil.masked"]["y"].numpy()[:-1].copy()
            from flwr.app import Array
            reply.content["veil.masked"] = ArrayRecord({"y": Array(y)})
        return reply
    parts, _ = data
    app = _client_with(parts, [truncate_mod, secagg_mod])
    s = SecureFedAvg(threshold=3)
    with caplog.at_level(logging.WARNING, logger="veil.fl"):
        r = s.start(grid=LocalGrid(app, N_CLIENTS), initial_arrays=_init(), num_rounds=1)
    assert "client 4 sent a malformed masked input" in caplog.text
    plain = _plain(data, rounds=1, fail=lambda node, rnd: node == 4)
    assert float((_weights(r) - _weights(plain)).abs().max()) < 1e-6


@pytest.fixture
def spy_run(data):
    """Run a strategy for one round on a LocalGrid that records every reply the server
    receives; returns (result, the replies)."""
    def run(strategy):
        seen = []

        class Spy(LocalGrid):
            def pull_messages(self, ids):
                out = super().pull_messages(ids)
                seen.extend(out)
                return out

        app = _client_with(data[0], [secagg_mod])
        r = strategy.start(grid=Spy(app, N_CLIENTS), initial_arrays=_init(), num_rounds=1)
        return r, seen
    return run


def test_trained_weights_never_leave_a_node(spy_run):
    """Everything the server receives: public keys, encrypted shares, masked vectors,
    Shamir shares — never an ArrayRecord of weights, never the encoded update."""
    _, seen = spy_run(SecureFedAvg(threshold=3))
    assert seen and all("arrays" not in m.content.array_records for m in seen)
    assert all(not m.content.metric_records for m in seen)
    ys = [m.content["veil.masked"]["y"].numpy() for m in seen
          if "veil.masked" in m.content.array_records]
    assert len(ys) == N_CLIENTS
    top = torch.tensor([float((torch.from_numpy(y) < 0).double().mean()) for y in ys])
    assert float((top - 0.5).abs().max()) < 0.15     # 651 elements: sd 0.02 per vector


@pytest.mark.parametrize("aggregators", [0, 3])
def test_dp_fedavg_wiring_and_accounting(data, aggregators):
    """Tiny noise and no effective clipping, q = 1: DP-FedAvg's update must equal the
    unweighted mean of the clients' updates (fixed denominator q N), with pairwise
    masking and with 3 MPC aggregators adding the noise (fixed point 2^-16 there)."""
    from veil.fl.flower import LocalAggregators
    parts, _ = data
    # noise std ~ 1e-12 x 1e3 per coordinate, far below the 1e-6 bound (at 1e-9 the max
    # over ~650 coordinates is near it: one CI run measured 1.03e-6)
    dp = DPConfig(clip_norm=1e3, sample_rate=1.0, min_clients=3, noise_multiplier=1e-12)
    s, r = _secure(data, rounds=1, dp=dp,
                   aggregators=LocalAggregators(aggregators) if aggregators else None)
    w0 = _weights(type("R", (), {"arrays": _init()}))
    deltas = []
    for k in range(N_CLIENTS):
        net = tasks.model(64, 10)
        tasks.local_train(net, parts[k], 1, 0.1, 16, seed=1000 + k)
        deltas.append(torch.cat([net.weight.detach().flatten(), net.bias.detach()]).double() - w0)
    expect = w0 + sum(deltas) / N_CLIENTS
    assert float((_weights(r) - expect).abs().max()) < (1e-5 if aggregators else 1e-6)
    assert s.history[0]["epsilon"] > 0


def test_dp_budget_stops_training(data):
    dp = DPConfig(clip_norm=1.0, sample_rate=1.0, min_clients=3, noise_multiplier=2.0,
                  budget=3.0)
    s, r = _secure(data, rounds=20, dp=dp)
    eps = [h["epsilon"] for h in s.history]
    assert 1 <= len(eps) < 20 and eps[-1] <= 3.0 and eps == sorted(eps)


def test_federated_evaluation_is_flowers_own(data):
    parts, test = data
    app = tasks.client_app(parts, 64, 10, mods=[secagg_mod])

    @app.evaluate()
    def evaluate(msg, context):
        from flwr.app import MetricRecord
        net = tasks.model(64, 10)
        net.load_state_dict(msg.content["arrays"].to_torch_state_dict())
        return Message(RecordDict({"metrics": MetricRecord(
            {"accuracy": tasks.accuracy(net, test), "num-examples": 1})}), reply_to=msg)

    s = SecureFedAvg(threshold=3, fraction_evaluate=0.5)
    r = s.start(grid=LocalGrid(app, N_CLIENTS), initial_arrays=_init(), num_rounds=1)
    assert r.evaluate_metrics_clientapp[1]["accuracy"] == pytest.approx(
        tasks.accuracy(_net(r), test))


def test_aggregator_mpc_mode_matches_fedavg(data, spy_run):
    """Clients seal shares to 2 veil aggregators; without DP the model equals FedAvg's to
    veil's fixed point (2^-16 per value, weighted by example counts)."""
    from veil.fl.flower import LocalAggregators
    r, seen = spy_run(SecureFedAvg(aggregators=LocalAggregators(2)))
    plain = _plain(data, rounds=1)
    # fixed point 2^-16 on n_k * Δ_k, then / Σ n_k (~1400): far below 1e-6
    assert float((_weights(r) - _weights(plain)).abs().max()) < 1e-6
    assert all("arrays" not in m.content.array_records for m in seen)
    # Flower server's view: ciphertexts only (AES-GCM), none equal across aggregators.
    rec = seen[0].content.config_records["veil.secagg"]
    assert len(rec["shares"]) == 2 and rec["shares"][0] != rec["shares"][1]


def test_secaggplus_sparse_graph_matches_fedavg(data, spy_run):
    """SecAgg+ with k = 2 neighbours of 6: same model as FedAvg, and each client received
    the keys of its 2 neighbours and itself only."""
    s = SecureFedAvg(threshold=2, neighbours=2)
    r, seen = spy_run(s)
    assert float((_weights(r) - _weights(_plain(data, rounds=1))).abs().max()) < 1e-6
    assert s.history[0]["clients"] == N_CLIENTS
    outboxes = [m.content.config_records["veil.secagg"] for m in seen
                if m.content.config_records.get("veil.secagg", {}).get("vals")]
    assert len(outboxes) == N_CLIENTS and all(len(o["ids"]) == 2 for o in outboxes)
    with pytest.raises(ValueError, match="even int"):
        SecureFedAvg(neighbours=3)


def test_secaggplus_bad_clients_are_dropped_with_a_message(data, caplog):
    """SecAgg+ (k = 4 of 6): node 2's app returns a model of the wrong shape, node 5's a
    NaN weight; both are dropped with a message naming the cause, the others' sum is
    exactly FedAvg without them."""
    def bad_mod(msg, context, call_next):
        reply = call_next(msg, context)
        if "arrays" in reply.content.array_records and context.node_id in (2, 5):
            sd = reply.content["arrays"].to_torch_state_dict()
            if context.node_id == 2:
                sd["bias"] = torch.zeros(11)
            else:
                sd["weight"][0, 0] = float("inf")
            reply.content["arrays"] = ArrayRecord(sd)
        return reply
    app = _client_with(data[0], [secagg_mod, bad_mod])
    s = SecureFedAvg(threshold=2, neighbours=4)
    with caplog.at_level(logging.WARNING, logger="veil.fl"):
        r = s.start(grid=LocalGrid(app, N_CLIENTS), initial_arrays=_init(), num_rounds=1)
    assert "client 2 dropped" in caplog.text and "client 5 dropped" in caplog.text
    assert "NaN or inf" in caplog.text and "values" in caplog.text
    plain = _plain(data, rounds=1, fail=lambda node, rnd: node in (2, 5))
    assert s.history[0]["clients"] == N_CLIENTS - 2
    assert float((_weights(r) - _weights(plain)).abs().max()) < 1e-6
