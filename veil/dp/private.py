"""DP-SGD on secret shares: `make_private`, in the spirit of Opacus's PrivacyEngine.

Each step, inside MPC: a secret Poisson mask draws the batch (`veil.dp.sampling`: no
party learns which rows, or how many), every training row runs forward and backward,
each drawn example's gradient is clipped to ``max_grad_norm`` (`veil.dp.clipping`,
per layer, bound guaranteed up to the stated ``clip_error``), jointly generated Gaussian
noise of std ``noise_multiplier * C'`` is added to the sum (`veil.dp.noise`; C' is the
guaranteed clip bound), and the wrapped optimizer takes its step with ``noisy sum /
expected batch size`` as the gradient (Opacus's normalisation). Nothing is revealed: the
noisy gradient, the model and the optimizer state stay secret. The RDP accountant on
``dp-accounting`` (the one veil.fl uses) composes the Poisson-sampled Gaussian steps.

Guarantee: (ε, δ)-DP at the sample level (adding or removing one training row, all of
its parties' columns and its label) for the trained model and everything derived from
it (its predictions, a revealed state dict), against any ``colluders`` parties pooling
their views (default: the protocol's threshold, n - 1 for semi2k). Not covered: the
per-epoch metrics `PrivateTrainer.fit` reveals (computed without noise; see there).

>>> import torch, veil
>>> def f():
...     X = veil.tensor(torch.randn(40, 3) if veil.rank() == 0 else None, owner=0)
...     y = veil.tensor((torch.rand(40, 1) < 0.5).float() if veil.rank() == 1 else None,
...                     owner=1)
...     model = veil.nn.Linear(3, 1)
...     opt = veil.optim.SGD(model.parameters(), lr=0.1)
...     private = make_private(model, opt, veil.nn.BCEWithLogitsLoss(), (X, y),
...                            batch_size=10, noise_multiplier=1.0, max_grad_norm=1.0)
...     private.step()
...     return private.steps, round(private.epsilon(), 2)
>>> veil.run(f, parties=2, seed=0)[0]
(1, 3.08)
"""

from __future__ import annotations

import copy
import math
import time

from ..autograd import no_grad
from ..context import current
from ..errors import ProtocolUsageError
from ..nn.metrics import correct_count
from ..nn.train import History, Progress, evaluate, format_epoch
from ..tensor import SecretTensor, cat
from .clipping import (MAX_CLIP, MIN_CLIP, clip_error, clipped_sum, linear_layers,
                       prepared_inputs, tapped)
from .noise import _check_colluders, joint_gaussian
from .sampling import poisson_masks, sampling_rate


class PrivateTrainer:
    """A model, its optimizer and its data under DP-SGD; `step` or `fit` it."""

    def __init__(self, model, optimizer, criterion, data, *, batch_size: int,
                 noise_multiplier: float, max_grad_norm: float, delta: float = 1e-5,
                 budget: float | None = None, colluders: int | None = None,
                 accounting: str = "rdp") -> None:
        X, y = data
        if not isinstance(X, SecretTensor) or not isinstance(y, SecretTensor):
            raise ProtocolUsageError("make_private: data must be (X, y) SecretTensors (e.g. "
                                     "veil.data.vertical(...).X, .y)")
        n = X.shape[0]
        if y.shape[0] != n or n < 1:
            raise ProtocolUsageError(f"make_private: X has {n} rows, y {y.shape[0]}")
        if not 1 <= batch_size <= n:
            raise ProtocolUsageError(f"batch_size (the expected Poisson batch) must be in "
                                     f"1..{n}, got {batch_size!r}")
        if not noise_multiplier >= 0:
            raise ProtocolUsageError(f"noise_multiplier must be >= 0, got {noise_multiplier!r}")
        self.layers = linear_layers(model)
        clip = max_grad_norm / math.sqrt(len(self.layers))
        if not MIN_CLIP <= clip <= MAX_CLIP:
            raise ProtocolUsageError(
                f"max_grad_norm / sqrt(layers) = {clip:g} is outside [{MIN_CLIP:g}, "
                f"{MAX_CLIP:g}], the range where fixed point clips accurately; rescale the "
                f"loss or the clip norm")
        self.model, self.optimizer, self.criterion = model, optimizer, criterion
        # Per-example signals: d loss_i / d output_i, i.e. the summed loss's gradient.
        self._per_example = copy.copy(criterion)
        self._per_example.reduction = "sum"
        self.X, self.y, self.n = X, y, n
        self.sample_rate = sampling_rate(batch_size / n)
        self.expected_batch = self.sample_rate * n
        self.clip = clip
        frac = current().config.frac_bits
        # The sensitivity really enforced: every layer within clip (1 + its error).
        self.clip_error = max(clip_error(layer.in_features, layer.out_features, frac, clip)
                              for _, layer in self.layers)
        self.max_grad_norm = max_grad_norm
        self.sensitivity = max_grad_norm * (1 + self.clip_error)
        self.noise_multiplier = float(noise_multiplier)
        self.noise_std = self.noise_multiplier * self.sensitivity
        self.colluders = _check_colluders(colluders) if noise_multiplier else colluders
        self.delta, self.budget = delta, budget
        self.accountant = None
        if noise_multiplier > 0:
            from .accountant import Accountant
            self.accountant = Accountant(noise_multiplier, self.sample_rate, delta, budget,
                                         accounting)
        elif budget is not None:
            raise ProtocolUsageError("a privacy budget needs noise_multiplier > 0")
        self.steps = 0
        self._masks: list = []
        self._prepared: dict = {}           # layer id -> input side of clipping, for X

    # -- privacy ----------------------------------------------------------------------------
    def epsilon(self) -> float:
        """ε spent so far at ``delta`` (inf without noise)."""
        return self.accountant.epsilon() if self.accountant else math.inf

    def can_step(self) -> bool:
        return self.accountant is None or self.accountant.can_step()

    @property
    def steps_per_epoch(self) -> int:
        return max(1, round(1 / self.sample_rate))

    # -- one step -----------------------------------------------------------------------------
    def _next_mask(self):
        if not self._masks:                    # one batched draw per epoch's worth of steps
            masks, _ = poisson_masks(self.steps_per_epoch, self.n, self.sample_rate)
            self._masks = [masks[i] for i in range(masks.shape[0])]
        return self._masks.pop(0)

    def step(self, mask: SecretTensor | None = None):
        """One DP-SGD step; returns the (secret, detached) outputs on every row."""
        if not self.can_step():
            raise ProtocolUsageError(f"privacy budget exhausted: one more step would take ε "
                                     f"past {self.budget}")
        mask = self._next_mask() if mask is None else mask
        with tapped(self.layers) as taps:
            out = self.model(self.X)
            out.backward(self._per_example.input_grad(out, self.y))
        with no_grad():
            grads = []
            for tap in taps:
                prepared = None
                if tap.source is self.X:         # the data itself: the same every step
                    key = id(tap.layer)
                    if key not in self._prepared:
                        self._prepared[key] = prepared_inputs(tap.input, tap.layer)
                    prepared = self._prepared[key]
                gw, gb = clipped_sum(tap, self.clip, mask, prepared)
                grads.append((tap.layer.weight, gw))
                if gb is not None:
                    grads.append((tap.layer.bias, gb))
            flat = cat([g.reshape(-1) for _, g in grads])
            if self.noise_std > 0:
                flat = flat + joint_gaussian(flat.shape, self.noise_std,
                                             colluders=self.colluders)
            flat = flat * (1.0 / self.expected_batch)
        at = 0
        for p, g in grads:
            p.grad = flat[at:at + g.numel()].reshape(p.shape)
            at += g.numel()
        self.optimizer.step()
        self.optimizer.zero_grad()
        self.steps += 1
        if self.accountant is not None:
            self.accountant.step()
        return out.detach()

    # -- epochs ------------------------------------------------------------------------------
    def fit(self, epochs: int, *, eval_data=None, metrics_to: int | None = None,
            progress: bool = True, stream=None):
        """Up to ``epochs`` epochs of ``steps_per_epoch`` steps, stopping at the budget.

        Reveals to ``metrics_to`` (None: everyone) after each epoch: ε, the training loss
        and accuracy on the last step's outputs, and the accuracy on ``eval_data``. These
        metrics are computed on the data without noise: they are *not* covered by the
        DP guarantee (set ``metrics_to`` to a party that may see them, or pass
        ``eval_data`` held out from training only).
        """
        me = current().rank
        show = progress and (metrics_to is None and me == 0 or metrics_to == me)
        bar = Progress(epochs, self.steps_per_epoch, show, stream)
        history = History()
        self.model.train()
        for epoch in range(epochs):
            t0, out = time.perf_counter(), None
            for k in range(self.steps_per_epoch):
                if not self.can_step():
                    break
                out = self.step()
                bar.step(epoch, k + 1)
            if out is None:
                break
            with no_grad():
                loss = self.criterion.value(out, self.y)
                correct = correct_count(out, self.y)
            # Discloses the epoch's training loss and correct count (not DP) to metrics_to.
            loss_v, correct_v = loss.reveal(to=metrics_to), correct.reveal(to=metrics_to)
            row = {"epoch": epoch + 1, "seconds": time.perf_counter() - t0,
                   "epsilon": self.epsilon(), "steps": self.steps,
                   "loss": None if loss_v is None else loss_v.item(),
                   "train_acc": None if correct_v is None else correct_v.item() / self.n}
            if eval_data is not None:
                row["eval_acc"] = evaluate(self.model, *eval_data, to=metrics_to)
            history.append(**row)
            bar.epoch(format_epoch(row))
            if not self.can_step():
                bar.epoch(f"privacy budget {self.budget} reached after {self.steps} steps")
                break
        return history


def make_private(model, optimizer, criterion, data, *, batch_size: int,
                 max_grad_norm: float, noise_multiplier: float | None = None,
                 target_epsilon: float | None = None, epochs: int | None = None,
                 delta: float = 1e-5, **kw) -> PrivateTrainer:
    """Wrap a veil.nn model and veil.optim optimizer for DP-SGD on shares.

    Give ``noise_multiplier``, or ``target_epsilon`` and ``epochs`` to calibrate it (like
    Opacus's ``make_private_with_epsilon``: the smallest noise whose ε after ``epochs``
    epochs is <= target; that target then also becomes the budget).
    """
    if (noise_multiplier is None) == (target_epsilon is None):
        raise ProtocolUsageError("make_private: give noise_multiplier, or target_epsilon "
                                 "and epochs")
    if target_epsilon is not None:
        if not epochs or epochs < 1:
            raise ProtocolUsageError("target_epsilon needs epochs >= 1 to calibrate the noise")
        from .accountant import calibrate_noise
        n = data[0].shape[0]
        q = sampling_rate(batch_size / n)
        steps = epochs * max(1, round(1 / q))
        noise_multiplier = calibrate_noise(target_epsilon, q, steps, delta,
                                           kw.get("accounting", "rdp"))
        kw.setdefault("budget", target_epsilon)
    return PrivateTrainer(model, optimizer, criterion, data, batch_size=batch_size,
                          noise_multiplier=noise_multiplier, max_grad_norm=max_grad_norm,
                          delta=delta, **kw)
