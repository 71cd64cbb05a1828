"""`veil.he.compile`: a torch ``nn.Sequential`` -> an HE evaluation plan.

Consecutive linear layers (Linear, Conv2d, AvgPool2d, BatchNorm in eval mode, Flatten,
Dropout/Identity) are composed into one affine map ``W x + b`` by probing them with the
unit vectors (so BatchNorm is folded, a convolution becomes its im2col-equivalent matrix);
each activation becomes a polynomial (veil/he/poly.py). The plan alternates affine steps
(one level each) and polynomial steps, and knows its depth, its rotation steps and the
largest value it reaches on the calibration data.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from .backend import HEError
from .evaluator import poly_depth
from .params import Params, choose_params, get_params
from .poly import DEFAULT_DEGREE, fit, fit_auto

LINEAR = (nn.Linear, nn.Conv2d, nn.Conv1d, nn.AvgPool2d, nn.AvgPool1d, nn.BatchNorm1d,
          nn.BatchNorm2d, nn.Flatten, nn.Identity, nn.Dropout)


class Square(nn.Module):
    """``x * x``: the CryptoNets activation, exact under CKKS (one level)."""

    def forward(self, x):
        return x * x


ACTIVATIONS = {nn.ReLU: "relu", nn.Sigmoid: "sigmoid", nn.GELU: "gelu", nn.Tanh: "tanh",
               Square: "square"}


@dataclass
class Step:
    kind: str                       # "affine" | "square" | "poly" (Chebyshev coefficients)
    name: str                       # the layers it stands for, for errors and the report
    weight: np.ndarray | None = None
    bias: np.ndarray | None = None
    coeffs: list[float] | None = None


@dataclass
class Report:
    changes: list[str] = field(default_factory=list)
    depth: int = 0
    params: str = ""
    max_abs: float = 0.0
    max_error: float = 0.0          # |original - polynomial model| on the calibration data
    agreement: float = 1.0          # same decision (argmax, or > 0.5 for one output)

    def __str__(self) -> str:
        lines = [f"HE plan: depth {self.depth} on {self.params}, largest value "
                 f"{self.max_abs:.3g}"]
        lines += [f"  - {c}" for c in self.changes]
        lines.append(f"  accuracy cost on the calibration data: max |output change| "
                     f"{self.max_error:.3g}, decisions kept {100 * self.agreement:.2f} %")
        return "\n".join(lines)


def _layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    if isinstance(model, nn.Sequential):
        out = []
        for name, m in model.named_children():
            sub = _layers(m) if isinstance(m, nn.Sequential) else [(name, m)]
            out += [(f"{name}.{n}" if isinstance(m, nn.Sequential) else n, s) for n, s in sub]
        return out
    if isinstance(model, LINEAR) or type(model) in ACTIVATIONS:
        return [("0", model)]
    raise HEError(f"veil.he.compile takes an nn.Sequential of {[c.__name__ for c in LINEAR]} "
                  f"and activations {[c.__name__ for c in ACTIVATIONS]}; got "
                  f"{type(model).__name__} (write the model as nn.Sequential)")


def _affine_of(layer: nn.Module, in_shape: tuple) -> tuple[np.ndarray, np.ndarray, tuple]:
    """The matrix and bias of a linear layer on one flattened sample of ``in_shape``."""
    n = int(np.prod(in_shape))
    with torch.no_grad():
        zero = layer(torch.zeros((1,) + in_shape, dtype=torch.float64))
        basis = layer(torch.eye(n, dtype=torch.float64).reshape((n,) + in_shape))
    b = zero.reshape(-1).numpy()
    w = (basis.reshape(n, -1) - zero.reshape(1, -1)).numpy().T
    return w, b, tuple(zero.shape[1:])


class Plan:
    """A compiled model. ``steps`` alternate affine maps and polynomials."""

    def __init__(self, steps: list[Step], in_shape: tuple, params: Params,
                 report: Report) -> None:
        self.steps, self.in_shape, self.params, self.report = steps, in_shape, params, report

    @property
    def n_in(self) -> int:
        return int(np.prod(self.in_shape))

    @property
    def n_out(self) -> int:
        for s in reversed(self.steps):
            if s.kind == "affine":
                return s.weight.shape[0]
        return self.n_in

    @property
    def depth(self) -> int:
        return sum(step_depth(s) for s in self.steps)

    def simulate(self, x: torch.Tensor) -> torch.Tensor:
        """The polynomial model in plaintext float64 (what HE computes, minus noise)."""
        h = x.detach().to(torch.float64).reshape(x.shape[0], -1).numpy()
        for s in self.steps:
            if s.kind == "affine":
                h = h @ s.weight.T + s.bias
            elif s.kind == "square":
                h = h * h
            else:
                h = np.polynomial.chebyshev.chebval(h, s.coeffs)
        return torch.from_numpy(h)

    def __repr__(self) -> str:
        kinds = " -> ".join(f"{s.kind}[{s.name}]" for s in self.steps)
        return f"Plan({kinds}; depth {self.depth}, {self.params.name})"


def compile(model: nn.Module, example_input: torch.Tensor, *, params: str | Params | None = None,
            degree: dict | None = None, ranges: dict | None = None, margin: float = 1.1) -> Plan:
    """Compile ``model`` for encrypted inference on inputs shaped like ``example_input[0]``.

    ``example_input`` (a batch) is also the calibration data: each activation's input range
    is ``margin`` x the largest magnitude seen there unless ``ranges[layer_name]`` states
    it; ``degree`` overrides the polynomial degree per activation kind ("relu": 4 by
    default; sigmoid and tanh default to "auto": the lowest of 3, 7, 15, 31 that fits
    within 3e-4 on the range). The returned plan's ``report`` says what changed and what
    it costs.

    >>> import torch, veil.he as he
    >>> torch.manual_seed(0) and None
    >>> model = torch.nn.Sequential(torch.nn.Linear(4, 1), torch.nn.Sigmoid())
    >>> plan = he.compile(model, torch.randn(64, 4))
    >>> plan
    Plan(affine[0] -> poly[1]; depth 4, n8192)
    """
    model = model.eval()
    degree = {**DEFAULT_DEGREE, **(degree or {})}
    ranges = ranges or {}
    x = example_input.detach().to(torch.float64)
    in_shape = tuple(x.shape[1:])
    layers = _layers(model)
    report = Report()
    steps: list[Step] = []
    shape = in_shape
    h = x.reshape(x.shape[0], -1).numpy()
    w_acc, b_acc, names = None, None, []
    max_abs = float(np.abs(h).max())
    for name, layer in layers:
        if isinstance(layer, LINEAR):
            w, b, shape = _affine_of(layer.double(), shape)
            layer.float()
            if isinstance(layer, (nn.BatchNorm1d, nn.BatchNorm2d)):
                report.changes.append(f"{name} ({type(layer).__name__}) folded into the "
                                      f"neighbouring affine map")
            w_acc, b_acc = (w, b) if w_acc is None else (w @ w_acc, w @ b_acc + b)
            names.append(name)
            continue
        kind = ACTIVATIONS[type(layer)]
        if w_acc is None:
            raise HEError(f"layer {name}: an activation must follow a linear layer")
        pre = h @ w_acc.T + b_acc
        if kind == "square":
            steps.append(Step("affine", "+".join(names), w_acc, b_acc))
            steps.append(Step("square", name))
            h = pre * pre
        else:
            r = float(ranges.get(name, margin * max(np.abs(pre).max(), 1e-3)))
            if degree[kind] == "auto":
                coeffs, err, deg = fit_auto(kind, r)
            else:
                deg = int(degree[kind])
                coeffs, err = fit(kind, r, deg)
            # u = pre / r: fold 1/r into the affine map so powers of u stay in [-1, 1].
            steps.append(Step("affine", "+".join(names), w_acc / r, b_acc / r))
            steps.append(Step("poly", name, coeffs=[float(c) for c in coeffs]))
            report.changes.append(f"{name} ({type(layer).__name__}) -> degree-{deg} "
                                  f"least-squares polynomial on [-{r:.3g}, {r:.3g}] "
                                  f"(max error {err:.2g} there)")
            h = np.polynomial.chebyshev.chebval(pre / r, coeffs)
            # Partial sums inside the evaluation stay below sum |c_k| on [-1, 1].
            max_abs = max(max_abs, 1.0, float(np.abs(coeffs).sum()))
        max_abs = max(max_abs, float(np.abs(pre).max()), float(np.abs(h).max()))
        w_acc, b_acc, names = None, None, []
    if w_acc is not None:
        steps.append(Step("affine", "+".join(names), w_acc, b_acc))
        max_abs = max(max_abs, float(np.abs(h @ w_acc.T + b_acc).max()))
    plan = Plan(steps, in_shape, get_params("n8192"), report)
    report.depth = plan.depth
    report.max_abs = max_abs
    plan.params = get_params(params) if params is not None else choose_params(plan.depth,
                                                                              max_abs)
    if plan.params.levels < plan.depth:
        raise HEError(f"the model needs {plan.depth} levels, parameter set "
                      f"{plan.params.name} has {plan.params.levels}: {_depth_table(steps)}")
    report.params = plan.params.describe()
    with torch.no_grad():
        ref = model.double()(x).reshape(x.shape[0], -1)
        model.float()
    got = plan.simulate(x)
    report.max_error = float((ref - got).abs().max())
    report.agreement = _agreement(ref, got)
    return plan


def _agreement(a: torch.Tensor, b: torch.Tensor) -> float:
    if a.shape[1] == 1:
        return float(((a > 0.5) == (b > 0.5)).double().mean())
    return float((a.argmax(1) == b.argmax(1)).double().mean())


def step_depth(s: Step) -> int:
    return poly_depth(len(s.coeffs) - 1) if s.kind == "poly" else 1


def _depth_table(steps: list[Step]) -> str:
    return ", ".join(f"{s.name}: {step_depth(s)}" for s in steps)
