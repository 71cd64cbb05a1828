"""Client side on Flower: a mod that runs the secure-aggregation stages around the
app's own ``train`` handler.

Add it to an existing ClientApp and nothing else changes::

    app = ClientApp(mods=[secagg_mod])

    @app.train()
    def train(msg, context):                # unchanged Flower code
        ...
        return Message(RecordDict({"arrays": new_arrays,
                                   "metrics": MetricRecord({"num-examples": n})}),
                       reply_to=msg)

Messages without the ``veil.secagg`` record pass straight through, so the same app also
serves plain Flower strategies. In stage ``masked_input`` the mod calls the app's train
handler, turns its reply into an update (new weights minus the global model), and sends
only the masked vector: the trained weights and the app's metrics never leave the node.

* mode ``weighted`` (FedAvg): the vector is ``[n * update, n]`` with ``n`` the app's
  ``num-examples``, so the server obtains exactly FedAvg's weighted mean.
* mode ``dp`` (DP-FedAvg): the update is clipped to L2 norm ``clip`` and this client's
  share of the Gaussian noise (std ``noise_std``) is added before masking; with
  ``ddg_bits`` set, the clipped update is rounded to the grid 2^-ddg_bits and the share
  is discrete Gaussian (:mod:`veil.dp.discrete`).
"""

from __future__ import annotations

import torch
from flwr.app import ConfigRecord, Context, Message, RecordDict

from ...dp import clip_update, gaussian
from ...dp.discrete import conditional_round, discrete_gaussian
from ..secagg import SecAggClient
from . import records as R


def secagg_mod(msg: Message, context: Context, call_next) -> Message:
    """Flower client mod: secure aggregation (and distributed DP noise) for ``train``."""
    if msg.metadata.message_type.split(".")[0] != "train" or R.SECAGG not in msg.content:
        return call_next(msg, context)
    rec = msg.content.config_records[R.SECAGG]
    stage = rec.get("stage")
    if stage not in R.STAGES:
        raise ValueError(f"unknown secure aggregation stage {stage!r}")
    node = msg.metadata.dst_node_id
    if stage == "aggregators":
        return _to_aggregators(msg, context, call_next, rec, node)
    if stage == "advertise":
        cfg, extra = R.record_to_config(rec)
        client = SecAggClient(node, cfg, extra["round_id"])
        out = client.advertise()
        _save(context, client, rec)
        return _reply(msg, {"c_pk": out["c_pk"], "s_pk": out["s_pk"]})
    client, cfg, extra = _load(context, rec)
    if stage == "share_keys":
        ids = R.int_list(rec, "ids")
        if len(set(ids)) != len(ids):
            raise ValueError("the roster repeats a node id")
        roster = dict(zip(ids, zip(R.bytes_list(rec, "c_pks", len(ids)),
                                   R.bytes_list(rec, "s_pks", len(ids)))))
        out = R.pack_map(client.share_keys(roster))
        _save(context, client)
        return _reply(msg, out)
    if stage == "masked_input":
        inbox = R.unpack_map(rec)
        vec = _train_vector(msg, context, call_next, cfg.vector_len, extra)
        y = client.masked_input(vec, inbox)
        _save(context, client)
        content = RecordDict({R.MASKED: R.vector_to_record(y)})
        content.config_records[R.SECAGG] = ConfigRecord({"stage": stage})
        return Message(content, reply_to=msg)
    total = rec.get("total")
    if type(total) is not int:
        raise ValueError("unmask request lacks the survivor count 'total'")
    out = client.unmask(R.int_list(rec, "survivors"), total)
    _forget(context)
    return _reply(msg, {**R.pack_map(out["b"], "b_ids", "b"),
                        **R.pack_map(out["s"], "s_ids", "s")})


def _train_vector(msg, context, call_next, vector_len, extra) -> torch.Tensor:
    """Run the app's train handler on the global model; the vector to aggregate."""
    reply = call_next(msg, context)
    if reply.has_error():
        raise RuntimeError(f"the app's train handler failed: {reply.error.reason}")
    arrays = reply.content.array_records.get("arrays")
    if arrays is None:
        raise ValueError("the app's train reply must hold an ArrayRecord named 'arrays'")
    new, _ = R.flatten(arrays)
    old, _ = R.flatten(msg.content.array_records["arrays"])
    if new.numel() != old.numel():
        raise ValueError(f"the trained model has {new.numel()} values, the global model "
                         f"{old.numel()}: the update cannot be aggregated")
    update = new - old
    if extra["mode"] == "dp":
        # Client-level DP: clip the whole update, add this client's noise share.
        clipped, _ = clip_update(update, extra["clip"])
        if extra["ddg_bits"]:
            # Distributed discrete Gaussian: integers on the grid γ, exact in fixed point.
            gamma = 2.0 ** -extra["ddg_bits"]
            grid = conditional_round(clipped, gamma, extra["ddg_bound"])
            vec = (grid + discrete_gaussian(grid.numel(), extra["noise_std"])) * gamma
        else:
            vec = clipped + gaussian(clipped.numel(), extra["noise_std"])
    else:
        metrics = reply.content.metric_records.get("metrics", {})
        n = metrics.get("num-examples")
        if not isinstance(n, (int, float)) or not n > 0:
            raise ValueError("weighted secure FedAvg needs the train reply's MetricRecord "
                             "'metrics' to hold a positive 'num-examples'")
        vec = torch.cat([update * float(n), torch.tensor([float(n)], dtype=torch.float64)])
    if vec.numel() != vector_len:
        raise ValueError(f"update vector has {vec.numel()} values, the server expects "
                         f"{vector_len}: client and server models differ")
    return vec


def _to_aggregators(msg, context, call_next, rec, node) -> Message:
    """Aggregator-MPC mode: train, form the vector, seal additive shares to each server."""
    from ..aggregator import ClientSharer
    cfg, extra = R.record_to_config(rec)
    publics = R.bytes_list(rec, "aggregators", len(rec.get("aggregators", [])))
    vec = _train_vector(msg, context, call_next, cfg.vector_len, {**extra, "noise_std": 0.0})
    sealed = ClientSharer(publics, extra["round_id"], bound=cfg.fixed_point.bound).seal(vec, node)
    return _reply(msg, {"ephemeral": sealed["ephemeral"], "shares": sealed["shares"]})


def _reply(msg: Message, values: dict) -> Message:
    return Message(RecordDict({R.SECAGG: ConfigRecord(values)}), reply_to=msg)


def _save(context: Context, client: SecAggClient, params=None) -> None:
    st = context.state.config_records.get(R.STATE)
    saved = dict(st) if st is not None and params is None else {}
    if params is not None:
        saved.update({"p." + k: v for k, v in params.items() if k != "stage"})
    saved.update({"c." + k: v for k, v in client.to_state().items()})
    context.state.config_records[R.STATE] = ConfigRecord(saved)


def _load(context: Context, rec):
    st = context.state.config_records.get(R.STATE)
    if st is None:
        raise RuntimeError("secure aggregation stage arrived before 'advertise' on this "
                           "node (state lost or messages out of order)")
    params = {k[2:]: v for k, v in st.items() if k.startswith("p.")}
    cfg, extra = R.record_to_config(params)
    cstate = {k[2:]: v for k, v in st.items() if k.startswith("c.")}
    if rec.get("round_id", cstate["round_id"]) != cstate["round_id"]:
        raise ValueError("message belongs to another secure aggregation round")
    return SecAggClient.from_state(cstate, cfg), cfg, extra


def _forget(context: Context) -> None:
    # The round is over: drop keys and shares from the node's state.
    if R.STATE in context.state.config_records:
        del context.state.config_records[R.STATE]
