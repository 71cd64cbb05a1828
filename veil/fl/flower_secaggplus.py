"""Flower's own SecAgg+ on the same task, for the benchmark's comparison.

Flower 1.42 offers SecAgg+ only on its legacy path: a ``DefaultWorkflow`` whose fit
workflow is ``flwr.server.workflow.SecAggPlusWorkflow``, a legacy ``flwr.server.strategy
.FedAvg`` inside a ``LegacyContext``, and ClientApps built from a ``client_fn`` with
``flwr.client.mod.secaggplus_mod``. This module wires exactly that around
:mod:`veil.fl.tasks` (same data split, model, local training and seeds as veil's runs).

What reading flwr 1.42's code shows (``flwr/common/secure_aggregation/secaggplus_utils.py``
and ``flwr/server/workflow/secure_aggregation/secaggplus_workflow.py``):

* ``pseudo_rand_gen`` XOR-folds each 32-byte mask seed into a 32-bit ``seed32`` for
  ``numpy.random.RandomState``: every mask is one of 2^32 streams, so a server holding a
  masked vector can brute-force the mask (veil: AES-128-CTR keyed by 128 bits).
* an even integer ``num_shares`` below the sample size: the server sends the even value
  to the clients, then adds one for its own neighbour lists, so each client receives one
  more public key than shares it made and fails in ``_share_keys`` (IndexError) — every
  client, every round (reproduced in tests/test_fl_flower_secaggplus.py).
* masks and quantization live in Z_2^32 with parameters (not updates) clipped to ±8 and
  stochastically rounded to 2^22 levels, so the average differs from FedAvg's by up to
  ~16/2^22 per weight even without dropouts.
"""

from __future__ import annotations

import types

import numpy as np
import torch
from flwr.app import Context, RecordDict

from . import tasks


def client_app(parts, num_features: int, num_classes: int, *, lr: float = 0.1,
               batch: int = 16, fail=None):
    """A legacy ``client_fn`` ClientApp with Flower's ``secaggplus_mod``; trains as
    :func:`veil.fl.tasks.client_app` does (same seeds)."""
    from flwr.client import ClientApp, NumPyClient
    from flwr.client.mod import secaggplus_mod

    class Client(NumPyClient):
        def __init__(self, node_id: int):
            self.node_id = node_id

        def fit(self, parameters, config):
            rnd = int(config.get("server-round", 0))
            if fail is not None and fail(self.node_id, rnd):
                raise RuntimeError("simulated client failure")
            net = tasks.model(num_features, num_classes)
            net.load_state_dict({"weight": torch.from_numpy(parameters[0]),
                                 "bias": torch.from_numpy(parameters[1])})
            k = self.node_id - 1
            n = tasks.local_train(net, parts[k], 1, lr, batch, seed=1000 * rnd + k)
            return [net.weight.detach().numpy(), net.bias.detach().numpy()], n, {}

    def client_fn(context: Context):
        return Client(context.node_id).to_client()

    return ClientApp(client_fn=client_fn, mods=[secaggplus_mod])


def run(grid, init_state: dict, rounds: int, evaluate, *, num_shares, threshold,
        clipping_range: float = 8.0) -> list[np.ndarray]:
    """Run Flower's SecAgg+ workflow for ``rounds`` on ``grid`` (every node trains each
    round); ``evaluate(round, state_dict)`` after every round. Returns the final arrays."""
    from flwr.common import ndarrays_to_parameters, parameters_to_ndarrays
    from flwr.server import LegacyContext, ServerConfig
    from flwr.server.strategy import FedAvg as LegacyFedAvg
    from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow

    n = len(list(grid.get_node_ids()))
    final = {}

    def evaluate_fn(rnd, arrays, config):
        final["arrays"] = arrays
        evaluate(rnd, {"weight": torch.from_numpy(arrays[0]), "bias": torch.from_numpy(arrays[1])})
        return 0.0, {}

    strategy = LegacyFedAvg(
        fraction_fit=1.0, fraction_evaluate=0.0, min_fit_clients=n, min_available_clients=n,
        initial_parameters=ndarrays_to_parameters([v.numpy() for v in init_state.values()]),
        evaluate_fn=evaluate_fn, on_fit_config_fn=lambda rnd: {"server-round": rnd})
    if getattr(grid, "run", None) is None:
        grid.set_run(types.SimpleNamespace(run_id=1))     # what a SuperLink's run carries
    ctx = LegacyContext(context=Context(run_id=1, node_id=0, node_config={}, state=RecordDict(),
                                        run_config={}),
                        config=ServerConfig(num_rounds=rounds), strategy=strategy)
    DefaultWorkflow(fit_workflow=SecAggPlusWorkflow(
        num_shares=num_shares, reconstruction_threshold=threshold,
        clipping_range=clipping_range))(grid, ctx)
    arrays = final.get("arrays")
    return arrays if arrays is not None else parameters_to_ndarrays(strategy.initial_parameters)
