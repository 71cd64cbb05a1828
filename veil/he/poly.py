"""Polynomial stand-ins for activations: least-squares fits over a stated range.

veil's MPC approximation tables (veil/functions) are piecewise and comparison-based, which
CKKS cannot evaluate; here every activation becomes one polynomial: a Chebyshev
least-squares fit of ``f(R u)`` on ``u`` in [-1, 1], kept in the Chebyshev basis, where
``R`` is the input range. The compiler divides the preceding affine layer by ``R`` so the
polynomial's input, and every T_k of it, stays in [-1, 1].
"""

from __future__ import annotations

import math

import numpy as np
from numpy.polynomial import chebyshev as C

FUNCTIONS = {
    "relu": lambda x: np.maximum(x, 0.0),
    "sigmoid": lambda x: 1.0 / (1.0 + np.exp(-x)),
    "gelu": lambda x: 0.5 * x * (1.0 + np.vectorize(math.erf)(x / math.sqrt(2.0))),
    "tanh": np.tanh,
    "square": lambda x: x * x,
}
# Default degrees: sigmoid/tanh are smooth (error falls geometrically with the degree), so
# theirs is chosen per range: the lowest of AUTO_DEGREES whose fit error is <= AUTO_TOL.
# ReLU/GELU have a kink (or nearly) and a low degree is the usual trade (CryptoNets-style).
DEFAULT_DEGREE = {"sigmoid": "auto", "tanh": "auto", "relu": 4, "gelu": 4, "square": 2}
AUTO_DEGREES = (3, 7, 15, 31)         # 2^k - 1: the most terms per level (ceil(log2(d+1)))
AUTO_TOL = 3e-4                       # leaves room for CKKS noise under a 1e-3 budget


def fit(name: str, r: float, degree: int) -> tuple[np.ndarray, float]:
    """Chebyshev coefficients of the fit of ``f(r u)`` on [-1, 1], and its max error on
    [-r, r]. (The Chebyshev basis keeps coefficients and partial sums bounded: the power
    basis of a degree-31 sigmoid fit has coefficients summing to 2e7.)"""
    f = FUNCTIONS[name]
    u = np.cos(np.pi * (np.arange(4 * degree + 64) + 0.5) / (4 * degree + 64))
    coeffs = C.chebfit(u, f(r * u), degree)
    # Odd/even functions give exact zeros in exact arithmetic; keep them zero.
    coeffs[np.abs(coeffs) < 1e-12 * np.abs(coeffs).max()] = 0.0
    grid = np.linspace(-1, 1, 4001)
    err = float(np.max(np.abs(C.chebval(grid, coeffs) - f(r * grid))))
    return coeffs, err


def fit_auto(name: str, r: float, tol: float = AUTO_TOL) -> tuple[np.ndarray, float, int]:
    """The lowest degree of AUTO_DEGREES meeting ``tol`` on [-r, r] (else the highest)."""
    for d in AUTO_DEGREES:
        coeffs, err = fit(name, r, d)
        if err <= tol:
            break
    return coeffs, err, d
