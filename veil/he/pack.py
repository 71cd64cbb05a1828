"""Slot layouts and the baby-step / giant-step diagonal packing of a plaintext matrix.

*Vector layout* (one input per ciphertext): a vector of length ``n`` is zero-padded to a
power of two ``p`` (its *period*) and repeated across all slots, so a rotation of the
whole slot vector by ``k < p`` is a cyclic rotation of the vector itself.

``y = W x`` for ``W`` of shape (n_out, n_in), padded to (p_out, p_in), uses the
generalised diagonals (Halevi-Shoup 2014; hybrid form of GAZELLE, Juvekar et al. 2018)
``diag_i[t] = W[t mod p_out, (t + i) mod p_in]`` for ``i < d = min(p_in, p_out)``:
``y' = sum_i diag_i * rot(x, i)``; when ``p_out < p_in`` the ``p_in / p_out`` partial sums
are folded with log2(p_in / p_out) rotations. Baby-step/giant-step with ``b`` baby steps:
``y' = sum_g rot(sum_j rot(diag_{gb+j}, -gb) * rot(x, j), gb)``, i.e. ``b - 1 + d/b - 1``
ciphertext rotations instead of ``d - 1``. The output has period ``p_out``.

*Batch layout* (many inputs per ciphertext): slot ``s`` holds sample ``s``; feature ``f``
is ciphertext ``f``. A linear layer is then scalar products only, no rotations.
"""

from __future__ import annotations

import math

import numpy as np


def pow2(n: int) -> int:
    return 1 << max(0, math.ceil(math.log2(max(1, n))))


def periodic(v: np.ndarray, period: int, slots: int) -> np.ndarray:
    """``v`` zero-padded to ``period`` and tiled over ``slots``."""
    out = np.zeros(period)
    out[: len(v)] = v
    return np.tile(out, slots // period)


def baby_steps(d: int) -> int:
    return pow2(int(math.isqrt(d - 1)) + 1) if d > 1 else 1


class DiagonalPlan:
    """The (pre-rotated) diagonals of one matrix and the rotations they need."""

    def __init__(self, w: np.ndarray, slots: int) -> None:
        n_out, n_in = w.shape
        self.n_in, self.n_out = n_in, n_out
        self.p_in, self.p_out = pow2(n_in), pow2(n_out)
        if max(self.p_in, self.p_out) > slots:
            raise ValueError(f"a {n_out}x{n_in} matrix needs {max(self.p_in, self.p_out)} "
                             f"slots, the ring has {slots}")
        wp = np.zeros((self.p_out, self.p_in))
        wp[:n_out, :n_in] = w
        d = min(self.p_in, self.p_out)
        self.b = min(baby_steps(d), d)
        self.g = d // self.b
        t = np.arange(slots)
        self.diags: dict[tuple[int, int], np.ndarray] = {}
        for g in range(self.g):
            for j in range(self.b):
                i = g * self.b + j
                diag = wp[t % self.p_out, (t + i) % self.p_in]
                if not diag.any():
                    continue                         # an all-zero diagonal costs nothing
                self.diags[(g, j)] = np.roll(diag, g * self.b)   # rot(diag, -g b)
        self.folds = []
        k = self.p_out
        while k < self.p_in:
            self.folds.append(k)
            k *= 2

    def steps(self) -> set[int]:
        used_j = {j for (_, j) in self.diags}
        used_g = {g for (g, _) in self.diags}
        return ({j for j in used_j if j} | {g * self.b for g in used_g if g}
                | set(self.folds))
