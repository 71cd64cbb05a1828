"""Federated learning with secure aggregation and differential privacy, on Flower.

* :mod:`veil.fl.secagg` — pairwise-masking secure aggregation (SecAgg), plain Python.
* :mod:`veil.fl.flower` — the same protocol on Flower's Message API: the strategy
  :class:`~veil.fl.flower.SecureFedAvg` (plus DP-FedAvg with ``dp=DPConfig(...)``) and
  the client mod :func:`~veil.fl.flower.secagg_mod`.
* :mod:`veil.fl.aggregator` — aggregator-MPC mode: sealed additive shares to 2–5 veil
  (semi2k) servers that add the noise inside MPC.
* :mod:`veil.fl.tasks` — non-IID scikit-learn tasks and a ready ClientApp;
  :mod:`veil.fl.bench` — ``python -m veil.bench --group fl``.

Needs the ``fl`` extra (``flwr[simulation]``, ``dp-accounting``, ``opacus``). See
docs/fl.md for what each party learns.
"""
