"""Federated learning with secure aggregation and differential privacy, on Flower.

* :mod:`veil.fl.secagg` — the pairwise-masking secure aggregation protocol, plain Python.
* :mod:`veil.fl.flower` — the same protocol on Flower's Message API: a server-side round
  loop (:func:`veil.fl.flower.secure_fedavg`) and a client-side mod
  (:func:`veil.fl.flower.secagg_mod`). Needs the ``fl`` extra (``flwr``).
"""
