"""Differential privacy: mechanisms, noise generated inside MPC, DP-SGD on shares, and an
accountant (``dp-accounting``).

* :func:`clip_update`, :func:`gaussian`, :func:`laplace`, :func:`noise_share_std` — DP-FedAvg's
  clipping and distributed noise (each client adds a share; see :mod:`.mechanisms`).
* :func:`joint_gaussian`, :func:`joint_laplace` — secret noise that every party contributes
  to and no ``colluders`` parties know (:mod:`.noise`).
* :func:`release`, :func:`privatize` — reveal a secure aggregate with DP (:mod:`.release`).
* :func:`make_private` — DP-SGD on secret shares: per-example clipping, hidden Poisson
  sampling and joint noise inside MPC (:mod:`.private`).
* :class:`Accountant`, :func:`epsilon`, :func:`calibrate_noise` — (ε, δ) for Poisson-
  sampled Gaussian rounds with RDP or PLD accounting. Needs the ``fl`` extra.
"""

from .mechanisms import clip_update, gaussian, laplace, noise_share_std
from .noise import gaussian_sigma, joint_gaussian, joint_laplace, laplace_scale
from .private import PrivateTrainer, make_private
from .release import privatize, release


def __getattr__(name):
    # The accountant imports dp-accounting (an extra); load it on first use only.
    if name in ("Accountant", "epsilon", "calibrate_noise"):
        from . import accountant
        return getattr(accountant, name)
    raise AttributeError(name)


__all__ = ["Accountant", "calibrate_noise", "clip_update", "epsilon", "gaussian",
           "noise_share_std", "laplace", "joint_gaussian", "joint_laplace", "gaussian_sigma",
           "laplace_scale", "release", "privatize", "make_private", "PrivateTrainer"]
