"""Differential privacy: client-level mechanisms and an accountant (``dp-accounting``).

* :func:`clip_update`, :func:`gaussian`, :func:`noise_share_std` — DP-FedAvg's clipping
  and distributed Gaussian noise (each client adds a share; see :mod:`.mechanisms`).
* :class:`Accountant`, :func:`epsilon`, :func:`calibrate_noise` — (ε, δ) for Poisson-
  sampled Gaussian rounds with RDP or PLD accounting. Needs the ``fl`` extra.
"""

from .mechanisms import clip_update, gaussian, noise_share_std


def __getattr__(name):
    # The accountant imports dp-accounting (an extra); load it on first use only.
    if name in ("Accountant", "epsilon", "calibrate_noise"):
        from . import accountant
        return getattr(accountant, name)
    raise AttributeError(name)


__all__ = ["Accountant", "calibrate_noise", "clip_update", "epsilon", "gaussian",
           "noise_share_std"]
