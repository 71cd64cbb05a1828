"""Evaluate a compiled `Plan` on ciphertexts: the model owner's side.

Two layouts (veil/he/pack.py): ``vector`` (one input per ciphertext, lowest latency) and
``batch`` (slot s = sample s, one ciphertext per input feature, highest throughput).
`Prepared` encodes every weight matrix's diagonals once, at the level its input will
reach, so an inference is rotations, plaintext products and additions only.
"""

from __future__ import annotations

from .backend import HEError
from .compile import Plan, step_depth
from .evaluator import Evaluator
from .pack import DiagonalPlan, periodic


def rotation_steps(plan: Plan, slots: int) -> set[int]:
    """The Galois keys the vector layout needs (the client generates exactly these)."""
    steps: set[int] = set()
    for s in plan.steps:
        if s.kind == "affine":
            steps |= DiagonalPlan(s.weight, slots).steps()
    return steps


class Prepared:
    """A plan bound to an evaluator, with its plaintexts pre-encoded (vector layout)."""

    def __init__(self, plan: Plan, ev: Evaluator, layout: str = "vector") -> None:
        if ev.params != plan.params:
            raise HEError(f"plan compiled for {plan.params.name}, keys are {ev.params.name}")
        if layout not in ("vector", "batch"):
            raise HEError(f"layout must be 'vector' or 'batch', got {layout!r}")
        self.plan, self.ev, self.layout = plan, ev, layout
        self.encoded: list = []
        level = plan.params.levels
        slots = plan.params.slots
        for s in plan.steps:
            if s.kind == "affine":
                if layout == "vector":
                    dp = DiagonalPlan(s.weight, slots)
                    self.encoded.append((dp, ev.encode_diagonals(dp, level) if level >= 1
                                         else None, periodic(s.bias, dp.p_out, slots)))
                level -= 1
            else:
                self.encoded.append(None)
                level -= step_depth(s)

    def run(self, cts):
        """Vector layout: one ciphertext in, one out. Batch: a list of ``n_in`` in, of
        ``n_out`` out."""
        plan, ev = self.plan, self.ev
        if self.layout == "vector":
            ct = cts
            for s, enc in zip(plan.steps, self.encoded):
                if s.kind == "affine":
                    dp, diags, bias = enc
                    ct = ev.linear(ct, dp, bias, diags, where=f"layer {s.name}")
                else:
                    ct = self._act(ct, s)
            return ct
        if len(cts) != plan.n_in:
            raise HEError(f"batch layout: {len(cts)} ciphertexts, the model takes "
                          f"{plan.n_in} features")
        for s in plan.steps:
            if s.kind == "affine":
                cts = ev.linear_batch(cts, s.weight, s.bias, where=f"layer {s.name}")
            else:
                cts = [self._act(c, s) for c in cts]
        return cts

    def _act(self, ct, s):
        if s.kind == "square":
            return self.ev.square(ct, where=f"layer {s.name}")
        return self.ev.chebval(ct, s.coeffs, where=f"layer {s.name}")
