"""Loss modules with torch's names. Each also offers what training needs cheaply:

* ``input_grad(input, target)``: d loss / d input without the loss value (one sigmoid /
  softmax; what `veil.nn.fit` feeds to ``output.backward(...)`` every step);
* ``value(input, target)``: the loss value alone, for one batched evaluation per epoch.

``loss = criterion(out, y); loss.backward()`` works as in torch and gives the same
gradients; it computes the value every step, which costs an ``exp`` and a ``log`` more.
"""

from __future__ import annotations

from ..autograd import no_grad
from . import functional as VF
from .module import Module


class _Loss(Module):
    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        VF._scale(reduction, 1)               # validates the reduction name now
        self.reduction = reduction

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"

    def value(self, input, target):
        with no_grad():
            return self.forward(input, target)


class MSELoss(_Loss):
    """Mean squared error; gradient 2 (x - y) / n is local."""

    def forward(self, input, target):
        return VF.mse_loss(input, target, self.reduction)

    def input_grad(self, input, target):
        return VF.mse_input_grad(input, target, self.reduction)


class BCEWithLogitsLoss(_Loss):
    """Binary cross-entropy on logits; gradient (sigmoid(z) - y) / n."""

    def forward(self, input, target):
        return VF.binary_cross_entropy_with_logits(input, target, self.reduction)

    def input_grad(self, input, target):
        return VF.bce_with_logits_input_grad(input, target, self.reduction)


class CrossEntropyLoss(_Loss):
    """Softmax cross-entropy over dim 1; targets are class indices or probabilities
    (one-hot from `veil.data` with ``num_classes``: no comparison needed)."""

    def __init__(self, reduction: str = "mean", label_smoothing: float = 0.0) -> None:
        super().__init__(reduction)
        if label_smoothing:
            raise NotImplementedError("CrossEntropyLoss(label_smoothing=...) is not supported; "
                                      "smooth the one-hot targets before sharing them")

    def forward(self, input, target):
        return VF.cross_entropy(input, target, self.reduction)

    def input_grad(self, input, target):
        return VF.cross_entropy_input_grad(input, target, self.reduction)
