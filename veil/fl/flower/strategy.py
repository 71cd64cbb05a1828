"""Server side on Flower: ``SecureFedAvg``, a new-style Flower strategy whose training
step is a secure-aggregation round on the Message API.

It is a drop-in for ``flwr.serverapp.strategy.FedAvg`` (same ``start(grid, ...)`` call
and ``Result``); the ClientApp adds :func:`veil.fl.flower.secagg_mod`. Each round:

1. sample clients (FedAvg's fraction, or Poisson sampling at ``dp.sample_rate`` under DP);
2. four message exchanges (advertise keys, share keys, masked input with the global
   model, unmask) — see :mod:`veil.fl.secagg.client`;
3. update the global model from the unmasked sum only:
   weighted FedAvg ``w += sum(n_k Δ_k) / sum(n_k)``, or DP-FedAvg
   ``w += sum(clip(Δ_k) + noise_k) / (q N)`` with a fixed denominator.

Clients that fail or time out at any stage are dropped from the round (their masks are
removed with the survivors' shares); if fewer than the threshold remain the round is
skipped with a warning and the model is unchanged. Under DP, an accountant reports
(ε, δ) after every round and training stops before the budget would be exceeded.
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from dataclasses import dataclass

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.serverapp.strategy import FedAvg, Result

from ...dp import noise_share_std
from ..secagg import FixedPoint, InsufficientClientsError, SecAggConfig, SecAggServer
from . import records as R
from .aggregator_mode import AggregatorUnavailableError

log = logging.getLogger("veil.fl")


@dataclass(frozen=True)
class DPConfig:
    """Client-level DP-FedAvg with distributed noise (see docs/fl.md for the guarantee).

    ``clip_norm``: L2 bound C on each client's update. ``noise_multiplier`` z: the sum
    carries Gaussian noise of std at least ``z * C``; or give ``target_epsilon`` and it
    is calibrated for ``num_rounds``. ``sample_rate`` q: each client joins a round with
    probability q (Poisson), which the accountant amplifies. ``min_clients`` m: each
    client adds noise of std ``z C / sqrt(m)``, and a round is only unmasked if at least
    m + 1 inputs are in the sum, so the noise *not* contributed by any one client is at
    least ``z C``.

    ``mechanism``: ``"gaussian"`` (float noise shares) or ``"ddg"``, the distributed
    discrete Gaussian (Kairouz et al. 2021; pairwise-masking mode only): updates rounded
    to the grid ``2^-granularity_bits``, integer noise, an exactly integer sum; the
    accountant's multiplier is then relative to the rounded norm bound Δ₂ (Δ₂γ/C =
    1.0001 for C = 1, γ = 2^-12, 650 values). ``server_lr`` scales the noisy mean update.
    """

    clip_norm: float
    sample_rate: float
    min_clients: int
    delta: float = 1e-5
    noise_multiplier: float | None = None
    target_epsilon: float | None = None
    budget: float | None = None
    accounting: str = "rdp"
    mechanism: str = "gaussian"
    granularity_bits: int = 12
    server_lr: float = 1.0

    def __post_init__(self):
        if (self.noise_multiplier is None) == (self.target_epsilon is None):
            raise ValueError("give exactly one of noise_multiplier and target_epsilon")
        if self.min_clients < 1:
            raise ValueError("min_clients must be >= 1")
        if self.mechanism not in ("gaussian", "ddg"):
            raise ValueError("mechanism must be 'gaussian' (float noise shares) or 'ddg' "
                             "(distributed discrete Gaussian, veil.dp.discrete)")
        if not self.server_lr > 0:
            raise ValueError("server_lr must be > 0")


class SecureFedAvg(FedAvg):
    """FedAvg with veil secure aggregation (and optional distributed DP).

    >>> s = SecureFedAvg(fraction_train=0.5, threshold=2 / 3)
    >>> s.threshold
    0.6666666666666666
    """

    def __init__(self, *, fraction_train: float = 1.0, min_train_nodes: int = 2,
                 min_available_nodes: int = 2, threshold: int | float = 2 / 3,
                 fixed_point: FixedPoint | None = None, dp: DPConfig | None = None,
                 stage_timeout: float = 600.0, fraction_evaluate: float = 0.0,
                 aggregators=None, neighbours: int | None = None, **fedavg_kwargs):
        # Federated evaluation (FedAvg's configure/aggregate_evaluate) is off by default:
        # its per-client metrics are sent in the clear, outside secure aggregation.
        super().__init__(fraction_train=fraction_train, min_train_nodes=min_train_nodes,
                         min_available_nodes=min_available_nodes,
                         fraction_evaluate=fraction_evaluate, **fedavg_kwargs)
        self.threshold, self.dp, self.stage_timeout = threshold, dp, stage_timeout
        # SecAgg+: each client pairs with `neighbours` (even) others; None = complete graph.
        SecAggConfig(vector_len=1, threshold=threshold, neighbours=neighbours)  # validate
        self.neighbours = neighbours
        # Aggregator-MPC mode (e.g. LocalAggregators(2)) instead of pairwise masking.
        self.aggregators = aggregators
        if aggregators is not None and dp is not None and dp.mechanism == "ddg":
            raise ValueError("mechanism='ddg' is for pairwise masking; the aggregators add "
                             "their own Gaussian noise inside MPC (use 'gaussian')")
        self.fixed_point = fixed_point or FixedPoint(frac_bits=24, bound=float(2 ** 20),
                                                     max_clients=4096)
        self.history: list[dict] = []

    def summary(self) -> None:
        log.info("SecureFedAvg: threshold %s, %s", self.threshold,
                 "DP-FedAvg" if self.dp else "weighted FedAvg")

    # -- the round loop -----------------------------------------------------------------
    def start(self, grid, initial_arrays: ArrayRecord, num_rounds: int = 3,
              timeout: float = 3600, train_config: ConfigRecord | None = None,
              evaluate_config: ConfigRecord | None = None, evaluate_fn=None) -> Result:
        self.summary()
        train_config = ConfigRecord() if train_config is None else train_config
        result = Result()
        flat, layout = R.flatten(initial_arrays)
        result.arrays = initial_arrays
        acc = self._accountant(grid, num_rounds)
        if evaluate_fn:
            res = evaluate_fn(0, initial_arrays)
            if res is not None:
                result.evaluate_metrics_serverapp[0] = res
        for rnd in range(1, num_rounds + 1):
            if acc is not None and not acc.can_step():
                log.warning("privacy budget ε=%.3g reached after %d rounds: stopping",
                            self.dp.budget, acc.steps)
                break
            t0 = time.perf_counter()
            info = {"round": rnd}
            try:
                one_round = (self._aggregator_round if self.aggregators is not None
                             else self._secure_round)
                new = one_round(grid, rnd, flat, layout, train_config, info)
            except (InsufficientClientsError, AggregatorUnavailableError) as e:
                log.warning("round %d skipped: %s", rnd, e)
                info["skipped"] = str(e)
                new = None
            if acc is not None:
                # Sampling happened and shares were sent, so the round counts even if skipped.
                info["epsilon"] = acc.step()
                log.info("round %d: ε = %.3f (δ = %g)", rnd, info["epsilon"], self.dp.delta)
            if new is not None:
                flat = new
                result.arrays = R.unflatten(flat, layout)
            info["seconds"] = time.perf_counter() - t0
            self.history.append(info)
            result.train_metrics_clientapp[rnd] = MetricRecord(
                {k: float(v) for k, v in info.items()
                 if isinstance(v, (int, float)) and k != "round"})
            if self.fraction_evaluate > 0:
                replies = grid.send_and_receive(self.configure_evaluate(
                    rnd, result.arrays, ConfigRecord(dict(evaluate_config or {})), grid),
                    timeout=timeout)
                agg = self.aggregate_evaluate(rnd, replies)
                if agg is not None:
                    result.evaluate_metrics_clientapp[rnd] = agg
            if evaluate_fn:
                res = evaluate_fn(rnd, result.arrays)
                if res is not None:
                    result.evaluate_metrics_serverapp[rnd] = res
        return result

    def _accountant(self, grid, num_rounds):
        if self.dp is None:
            return None
        from ...dp import Accountant, calibrate_noise
        d = self.dp
        z = d.noise_multiplier
        if z is None:
            z = calibrate_noise(d.target_epsilon, d.sample_rate, num_rounds, d.delta,
                                d.accounting)
        self.noise_multiplier = z
        self.num_nodes = len(list(grid.get_node_ids()))
        log.info("DP-FedAvg: noise multiplier %.4g, clip %.4g, q %.4g", z, d.clip_norm,
                 d.sample_rate)
        return Accountant(z, d.sample_rate, d.delta, budget=d.budget, method=d.accounting)

    def _sample(self, grid) -> list[int]:
        # Like Flower's sample_nodes: wait (up to stage_timeout) for enough nodes to join.
        deadline = time.monotonic() + self.stage_timeout
        nodes = sorted(grid.get_node_ids())
        while len(nodes) < self.min_available_nodes and time.monotonic() < deadline:
            time.sleep(0.5)
            nodes = sorted(grid.get_node_ids())
        rng = secrets.SystemRandom()
        if self.dp is not None:
            # Poisson sampling: the amplification the accountant assumes.
            return [v for v in nodes if rng.random() < self.dp.sample_rate]
        if len(nodes) < self.min_available_nodes:
            raise InsufficientClientsError("sample", len(nodes), self.min_available_nodes)
        k = min(len(nodes), max(int(len(nodes) * self.fraction_train), self.min_train_nodes))
        return sorted(rng.sample(nodes, k))

    def _exchange(self, grid, rnd, stage, payloads: dict[int, RecordDict], info) -> dict:
        """Send each node its content; return node -> reply content (errors dropped)."""
        msgs = []
        for v, content in payloads.items():
            msgs.append(Message(content, dst_node_id=v, message_type="train",
                                group_id=str(rnd)))
            info["bytes_down"] = info.get("bytes_down", 0) + _nbytes(content)
        replies = grid.send_and_receive(msgs, timeout=self.stage_timeout)
        out = {}
        for m in replies:
            v = m.metadata.src_node_id
            if m.has_error() or v not in payloads:
                if m.has_error():
                    # Flower carries the client's exception text (veil's say what, never
                    # values): say which client left the round and why.
                    log.warning("round %d, stage %s: client %d dropped: %s", rnd, stage, v,
                                m.error.reason[:300])
                info.setdefault("failed", set()).add(v)
                continue
            info["bytes_up"] = info.get("bytes_up", 0) + _nbytes(m.content)
            out[v] = m.content
        return out

    def _secure_round(self, grid, rnd, flat, layout, train_config, info):
        sampled = self._sample(grid)
        info["sampled"] = len(sampled)
        weighted = self.dp is None
        vlen = flat.numel() + (1 if weighted else 0)
        min_surv = self.dp.min_clients + 1 if self.dp else 0
        cfg = SecAggConfig(vector_len=vlen, threshold=self.threshold,
                           fixed_point=self.fixed_point, min_survivors=min_surv,
                           neighbours=self.neighbours)
        if len(sampled) < max(2, min_surv):
            raise InsufficientClientsError("sample", len(sampled), max(2, min_surv))
        server = SecAggServer(cfg, os.urandom(16))
        noise, ddg = 0.0, {}
        if self.dp is not None and self.dp.mechanism == "ddg":
            from ...dp import discrete
            bits = self.dp.granularity_bits
            bound = discrete.l2_bound(self.dp.clip_norm, 2.0 ** -bits, vlen)
            noise = discrete.client_sigma(self.noise_multiplier, self.dp.min_clients, bound)
            ddg = {"ddg_bits": bits, "ddg_bound": bound}
            info["ddg_z"] = discrete.ddg_noise_multiplier(noise, self.dp.min_clients, bound,
                                                          vlen)
        elif self.dp is not None:
            noise = noise_share_std(self.noise_multiplier, self.dp.clip_norm,
                                    self.dp.min_clients)
        params = R.config_to_record(cfg, server.round_id, "weighted" if weighted else "dp",
                                    self.dp.clip_norm if self.dp else 0.0, noise, **ddg)

        def cfg_msg(values):
            return RecordDict({R.SECAGG: ConfigRecord(values)})

        replies = self._exchange(grid, rnd, "advertise",
                                 {v: cfg_msg({"stage": "advertise", **params}) for v in sampled},
                                 info)
        adverts = {v: {"c_pk": r.config_records[R.SECAGG].get("c_pk"),
                       "s_pk": r.config_records[R.SECAGG].get("s_pk")}
                   for v, r in replies.items() if R.SECAGG in r.config_records}
        roster = server.collect_keys(adverts)

        def keys_msg(v):
            # v's neighbourhood only (everyone in the complete graph).
            mine = server.roster_for(v)
            ids = sorted(mine)
            return cfg_msg({"stage": "share_keys", "round_id": server.round_id, "ids": ids,
                            "c_pks": [mine[u][0] for u in ids],
                            "s_pks": [mine[u][1] for u in ids]})
        replies = self._exchange(grid, rnd, "share_keys", {v: keys_msg(v) for v in roster},
                                 info)
        outboxes = {}
        for v, r in replies.items():
            try:
                outboxes[v] = R.unpack_map(r.config_records[R.SECAGG])
            except (KeyError, ValueError) as e:
                log.warning("round %d: client %d sent malformed shares (%s); dropped", rnd, v, e)
        inboxes = server.route_shares(outboxes)
        for v, why in server.rejected.items():
            log.warning("round %d: client %d %s; dropped", rnd, v, why)
        arrays = R.unflatten(flat, layout)
        payloads = {}
        for v, inbox in inboxes.items():
            c = RecordDict({"arrays": arrays, "config": ConfigRecord(
                {**dict(train_config), "server-round": rnd})})
            c.config_records[R.SECAGG] = ConfigRecord(
                {"stage": "masked_input", "round_id": server.round_id, **R.pack_map(inbox)})
            payloads[v] = c
        replies = self._exchange(grid, rnd, "masked_input", payloads, info)
        ys = {}
        for v, r in replies.items():
            try:
                y = R.record_to_vector(r.array_records.get(R.MASKED))
                if y.numel() != vlen:
                    raise ValueError(f"{y.numel()} values, expected {vlen}")
                ys[v] = y
            except ValueError as e:
                log.warning("round %d: client %d sent a malformed masked input (%s); "
                            "dropped", rnd, v, e)
        survivors = server.collect_masked(ys)
        replies = self._exchange(grid, rnd, "unmask", {v: cfg_msg(
            {"stage": "unmask", "round_id": server.round_id,
             "survivors": server.survivors_for(v), "total": len(survivors)})
            for v in survivors}, info)
        responses = {}
        for v, r in replies.items():
            rec = r.config_records.get(R.SECAGG, {})
            try:
                responses[v] = {"b": R.unpack_map(rec, "b_ids", "b"),
                                "s": R.unpack_map(rec, "s_ids", "s")}
            except ValueError as e:
                log.warning("round %d: client %d sent malformed unmask shares (%s); "
                            "dropped", rnd, v, e)
        agg = server.unmask(responses)
        info.update(clients=len(agg.survivors), dropped=len(sampled) - len(agg.survivors),
                    dropped_after_input=len(agg.dropped_after_input))
        info.pop("failed", None)
        s = agg.sum
        if weighted:
            total = float(s[-1])
            if not total > 0:
                raise ValueError("secure aggregate has no examples (sum of num-examples <= 0)")
            # Reveals: the survivors' example count and their weighted mean update.
            return flat + s[:-1] / total
        expected = self.dp.sample_rate * self.num_nodes
        # Reveals: the noisy sum of clipped updates (DP-protected), nothing per client.
        return flat + self.dp.server_lr * s / expected


    def _aggregator_round(self, grid, rnd, flat, layout, train_config, info):
        """One message exchange: sealed shares to the aggregators, noisy sum back."""
        from .aggregator_mode import new_round_id, parse_sealed
        sampled = self._sample(grid)
        info["sampled"] = len(sampled)
        weighted = self.dp is None
        vlen = flat.numel() + (1 if weighted else 0)
        need = 2 if weighted else max(2, self.dp.min_clients)
        if len(sampled) < need:
            raise InsufficientClientsError("sample", len(sampled), need)
        cfg = SecAggConfig(vector_len=vlen, threshold=2, fixed_point=self.fixed_point)
        rid = new_round_id()
        params = R.config_to_record(cfg, rid, "weighted" if weighted else "dp",
                                    self.dp.clip_norm if self.dp else 0.0, 0.0)
        publics = self.aggregators.publics
        arrays = R.unflatten(flat, layout)
        payloads = {}
        for v in sampled:
            c = RecordDict({"arrays": arrays, "config": ConfigRecord(
                {**dict(train_config), "server-round": rnd})})
            c.config_records[R.SECAGG] = ConfigRecord(
                {"stage": "aggregators", **params, "aggregators": publics})
            payloads[v] = c
        replies = self._exchange(grid, rnd, "aggregators", payloads, info)
        sealed = []
        for v, r in replies.items():
            try:
                sealed.append(parse_sealed(r.config_records.get(R.SECAGG, {}), v,
                                           len(publics), vlen))
            except ValueError as e:
                log.warning("round %d: %s; dropped", rnd, e)
        if len(sealed) < need:
            raise InsufficientClientsError("aggregators", len(sealed), need)
        # Each aggregator adds std z*C: one honest aggregator suffices for the guarantee.
        noise = self.noise_multiplier * self.dp.clip_norm if self.dp else 0.0
        s = self.aggregators.aggregate(sealed, noise, rid)
        info.update(clients=len(sealed), dropped=len(sampled) - len(sealed))
        info.pop("failed", None)
        if weighted:
            total = float(s[-1])
            if not total > 0:
                raise ValueError("aggregate has no examples (sum of num-examples <= 0)")
            return flat + s[:-1] / total            # reveals: the weighted mean update
        # the noisy sum only
        return flat + self.dp.server_lr * s / (self.dp.sample_rate * self.num_nodes)


def _nbytes(content: RecordDict) -> int:
    """Payload bytes of a message: array data, byte strings and strings at their length,
    numbers at 8 bytes, plus each key. (Flower's own ConfigRecord.count_bytes fails on
    an empty list in flwr 1.42.)"""
    total = 0
    for name, rec in content.items():
        total += len(name)
        if isinstance(rec, ArrayRecord):
            total += rec.count_bytes()
            continue
        for k, v in rec.items():
            total += len(k)
            for x in (v if isinstance(v, list) else [v]):
                total += len(x) if isinstance(x, (bytes, str)) else 8
    return total
