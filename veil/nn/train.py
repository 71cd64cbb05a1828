"""`fit`: the training loop, with per-epoch loss and accuracy a person can watch.

Each step: forward, ``d loss / d output`` from the criterion (no loss value: that would
cost an exp and a log per step), ``output.backward(d)``, optional gradient clipping,
optimizer step. The epoch's loss is computed once at the end of the epoch, over the
logits every step produced (so it is the same number as torch's average of per-step
losses, for equal batch sizes), in one batched evaluation.

What is revealed, to the ``metrics_to`` party only (default: the label owner, or every
party when the labels come from everyone): per epoch, the mean training loss, the
number of correctly classified training rows, and the same for ``eval_data``. Nothing
else leaves the shares until the caller reveals the model.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field

from ..autograd import no_grad
from ..context import current
from ..tensor import cat
from .metrics import correct_count
from .utils import clip_grad_value_


@dataclass
class History:
    """Per-epoch metrics (None at parties they were not revealed to)."""
    epochs: list = field(default_factory=list)

    def append(self, **row) -> None:
        self.epochs.append(row)

    def column(self, name: str) -> list:
        return [row.get(name) for row in self.epochs]


class Progress:
    """A one-line progress bar on a terminal, a line per epoch otherwise."""

    def __init__(self, epochs: int, steps: int, enabled: bool, stream=None) -> None:
        self.epochs, self.steps, self.enabled = epochs, steps, enabled
        self.stream = stream or sys.stderr
        self.tty = enabled and hasattr(self.stream, "isatty") and self.stream.isatty()

    def step(self, epoch: int, step: int) -> None:
        if self.tty:
            width = 24
            done = int(width * step / max(self.steps, 1))
            self.stream.write(f"\repoch {epoch + 1}/{self.epochs} [{'#' * done}"
                              f"{'.' * (width - done)}] {step}/{self.steps}")
            self.stream.flush()

    def epoch(self, text: str) -> None:
        if self.enabled:
            self.stream.write(("\r" if self.tty else "") + text + " " * 8 + "\n")
            self.stream.flush()


def format_epoch(row: dict) -> str:
    """One line of a fit history: epoch, then whichever of ε, loss, accuracies it has."""
    parts = [f"epoch {row['epoch']}"]
    if row.get("epsilon") is not None:
        parts.append(f"ε {row['epsilon']:.2f}")
    if row.get("loss") is not None:
        parts.append(f"loss {row['loss']:.4f}")
    if row.get("train_acc") is not None:
        parts.append(f"train acc {100 * row['train_acc']:.1f}%")
    if row.get("eval_acc") is not None:
        parts.append(f"eval acc {100 * row['eval_acc']:.1f}%")
    parts.append(f"{row['seconds']:.2f}s")
    return "  ".join(parts)


def _default_metrics_party(loader):
    owner = getattr(loader.dataset, "label_owner", None)
    return owner


def evaluate(model, X, y, *, to: int | None = None, batch_size: int = 512):
    """Accuracy of ``model`` on secret ``(X, y)``, revealed to party ``to`` only (None:
    every party). Discloses the count of correct predictions, nothing per row."""
    was_training = model.training
    model.eval()
    correct = None
    with no_grad():
        for at in range(0, X.shape[0], batch_size):
            out = model(X[at:at + batch_size])
            c = correct_count(out, y[at:at + batch_size])
            correct = c if correct is None else correct + c
    model.train(was_training)
    n = correct.reveal(to=to)                 # discloses the number of correct rows to ``to``
    return None if n is None else n.item() / X.shape[0]


def train_epoch(model, loader, criterion, optimizer, *, clip_value: float | None = None,
                on_step=None):
    """One pass over ``loader``: the training steps only (no loss value, nothing revealed).
    Returns the outputs and targets of every step (detached), for the epoch's metrics."""
    outs, ys = [], []
    for step, (xb, yb) in enumerate(loader):
        out = model(xb)
        out.backward(criterion.input_grad(out, yb))
        if clip_value is not None:
            clip_grad_value_(model.parameters(), clip_value)
        optimizer.step()
        optimizer.zero_grad()
        outs.append(out.detach())
        ys.append(yb)
        if on_step is not None:
            on_step(step + 1)
    return outs, ys


def fit(model, loader, criterion, optimizer, epochs: int, *, eval_data=None,
        metrics_to: int | None | str = "auto", clip_value: float | None = None,
        progress: bool = True, stream=None) -> History:
    """Train ``model`` for ``epochs`` over ``loader``; print and return per-epoch metrics.

    ``eval_data``: an optional ``(X, y)`` secret held-out set. ``clip_value``: clip each
    gradient element to [-clip_value, clip_value] (one comparison round per step; needed
    for losses with unbounded gradients such as MSE on unbounded targets).
    """
    if metrics_to == "auto":
        metrics_to = _default_metrics_party(loader)
    me = current().rank
    show = progress and (metrics_to is None and me == 0 or metrics_to == me)
    bar = Progress(epochs, len(loader), show, stream)
    history = History()
    model.train()
    for epoch in range(epochs):
        t0 = time.perf_counter()
        outs, ys = train_epoch(model, loader, criterion, optimizer, clip_value=clip_value,
                               on_step=lambda step: bar.step(epoch, step))
        seconds = time.perf_counter() - t0
        with no_grad():
            all_out, all_y = cat(outs, 0), cat(ys, 0)
            loss = criterion.value(all_out, all_y)
            correct = correct_count(all_out, all_y)
        # Discloses the epoch's mean training loss and number of correct training rows.
        loss_v, correct_v = loss.reveal(to=metrics_to), correct.reveal(to=metrics_to)
        row = {"epoch": epoch + 1, "seconds": seconds,
               "loss": None if loss_v is None else loss_v.item(),
               "train_acc": None if correct_v is None else correct_v.item() / all_out.shape[0]}
        if eval_data is not None:
            row["eval_acc"] = evaluate(model, *eval_data, to=metrics_to)
        history.append(**row)
        bar.epoch(format_epoch(row) if row["loss"] is not None else f"epoch {epoch + 1}")
    return history


__all__ = ["fit", "train_epoch", "evaluate", "History", "Progress"]
