"""veil secure aggregation and DP on Flower's Message API (needs ``flwr``, the ``fl`` extra).

Server (``ServerApp`` main)::

    strategy = SecureFedAvg(fraction_train=0.5)          # instead of FedAvg(...)
    result = strategy.start(grid=grid, initial_arrays=arrays, num_rounds=10)

Client::

    app = ClientApp(mods=[secagg_mod])                   # the train handler is unchanged
"""

from .aggregator_mode import AggregatorUnavailableError, LocalAggregators, SpoolAggregators
from .client_mod import secagg_mod
from .local_grid import LocalGrid
from .strategy import DPConfig, SecureFedAvg

__all__ = ["AggregatorUnavailableError", "DPConfig", "LocalAggregators", "LocalGrid",
           "SecureFedAvg", "SpoolAggregators", "secagg_mod"]
