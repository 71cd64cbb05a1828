"""Privacy accounting for sampled Gaussian mechanisms, on Google's ``dp-accounting``.

One federated round with client-level DP is a Poisson-sampled Gaussian mechanism: each
client joins the round independently with probability ``q`` (the sample rate), its
update is clipped to L2 norm ``C`` and Gaussian noise of standard deviation ``z * C``
is added to the sum (``z`` = noise multiplier). ``T`` rounds compose. RDP accounting
with sampling amplification (Mironov et al. 2019) is the default, as in Opacus and in
TensorFlow Privacy; PLD (Meiser & Mohammadi 2018 / Doroshenko et al. 2022) is tighter.

>>> round(epsilon(noise_multiplier=1.0, sample_rate=0.1, steps=100, delta=1e-5), 2)
7.9
"""

from __future__ import annotations

import logging

import dp_accounting
from dp_accounting import pld, rdp

METHODS = ("rdp", "pld")
# Opacus's orders from 1.7 up (dp-accounting's series for fractional orders below ~1.6
# does not converge at small noise and drops them with a warning; they are never the
# minimiser at the ε of interest here).
RDP_ORDERS = [1 + x / 10.0 for x in range(7, 100)] + list(range(12, 64)) + [128, 256]


def _event(noise_multiplier: float, sample_rate: float, steps: int):
    if not noise_multiplier > 0:
        raise ValueError("noise_multiplier must be > 0 (zero noise has no finite epsilon)")
    if not 0 < sample_rate <= 1:
        raise ValueError("sample_rate must be in (0, 1]")
    g = dp_accounting.GaussianDpEvent(noise_multiplier)
    one = g if sample_rate == 1 else dp_accounting.PoissonSampledDpEvent(sample_rate, g)
    return dp_accounting.SelfComposedDpEvent(one, int(steps))


def _accountant(method: str):
    if method == "rdp":
        return rdp.RdpAccountant(RDP_ORDERS)
    if method == "pld":
        return pld.PLDAccountant()
    raise ValueError(f"accounting method must be one of {METHODS}, got {method!r}")


def epsilon(noise_multiplier: float, sample_rate: float, steps: int, delta: float,
            method: str = "rdp") -> float:
    """ε after ``steps`` Poisson-sampled Gaussian rounds, at ``delta``."""
    if not 0 < delta < 1:
        raise ValueError("delta must be in (0, 1)")
    if steps == 0:
        return 0.0
    acc = _accountant(method)
    # dp-accounting drops an RDP order whose series does not converge, with a warning per
    # call; dropping an order only loosens the bound (still valid), so keep it quiet.
    absl = logging.getLogger("absl")
    level = absl.level
    absl.setLevel(logging.ERROR)
    try:
        acc.compose(_event(noise_multiplier, sample_rate, steps))
        return float(acc.get_epsilon(delta))
    finally:
        absl.setLevel(level)


def calibrate_noise(target_epsilon: float, sample_rate: float, steps: int, delta: float,
                    method: str = "rdp", tol: float = 1e-3) -> float:
    """The smallest noise multiplier whose ε after ``steps`` rounds is <= target (bisection).

    >>> z = calibrate_noise(8.0, 0.1, 100, 1e-5)
    >>> 0.95 < z < 1.0 and epsilon(z, 0.1, 100, 1e-5) <= 8.0
    True
    """
    if not target_epsilon > 0:
        raise ValueError("target_epsilon must be > 0")
    lo, hi = 1e-2, 1.0
    while epsilon(hi, sample_rate, steps, delta, method) > target_epsilon:
        lo, hi = hi, hi * 2
        if hi > 1e4:
            raise ValueError("no noise multiplier up to 1e4 reaches this epsilon")
    while hi - lo > tol * hi:
        mid = (lo + hi) / 2
        if epsilon(mid, sample_rate, steps, delta, method) > target_epsilon:
            lo = mid
        else:
            hi = mid
    return hi


class Accountant:
    """Tracks ε round by round and says when the next round would exceed a budget.

    >>> acc = Accountant(noise_multiplier=1.0, sample_rate=0.1, delta=1e-5, budget=4.0)
    >>> while acc.can_step():
    ...     _ = acc.step()
    >>> acc.steps, acc.epsilon() <= 4.0 < acc.epsilon_after(acc.steps + 1)
    (16, True)
    """

    def __init__(self, noise_multiplier: float, sample_rate: float, delta: float,
                 budget: float | None = None, method: str = "rdp"):
        _event(noise_multiplier, sample_rate, 1)          # validates
        _accountant(method)
        self.noise_multiplier, self.sample_rate = noise_multiplier, sample_rate
        self.delta, self.budget, self.method = delta, budget, method
        self.steps = 0

    def epsilon_after(self, steps: int) -> float:
        return epsilon(self.noise_multiplier, self.sample_rate, steps, self.delta, self.method)

    def epsilon(self) -> float:
        return self.epsilon_after(self.steps)

    def can_step(self) -> bool:
        """False when one more round would take ε past the budget."""
        return self.budget is None or self.epsilon_after(self.steps + 1) <= self.budget

    def step(self) -> float:
        """Record one round (call it for every round whose aggregate was released, and for
        rounds skipped after sampling: conservative); returns the new ε."""
        self.steps += 1
        return self.epsilon()
