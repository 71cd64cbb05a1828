"""Loss modules with torch's names. Each also offers what training needs cheaply:

* ``input_grad(input, target)``: d loss / d input without the loss value (one sigmoid /
  softmax; what `veil.nn.fit` feeds to ``output.backward(...)`` every step);
* ``value(input, target)``: the loss value alone, for one batched evaluation per epoch.

``loss = criterion(out, y); loss.backward()`` works as in torch and gives the same
gradients; it computes the value every step, which costs an ``exp`` and a ``log`` more.
"""

from __future__ import annotations

from ..autograd import no_grad
from ..errors import ProtocolUsageError
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


# -- losses composed of differentiable ops (veil.nn.more_functional) --------------------------
class _ComposedLoss(_Loss):
    """A loss whose gradient comes from autograd through its pieces; ``input_grad`` runs
    that backward pass (it computes the value too, unlike the fused losses above)."""

    _REDUCTIONS = ("none", "mean", "sum")

    def __init__(self, reduction: str = "mean") -> None:
        Module.__init__(self)
        if reduction not in self._REDUCTIONS:
            raise ProtocolUsageError(f"{type(self).__name__}: reduction={reduction!r}; use "
                                     f"one of {self._REDUCTIONS}")
        self.reduction = reduction

    def input_grad(self, input, target):
        from ..autograd import enable_grad
        x = input.detach().requires_grad_()
        with enable_grad():
            self.forward(x, target).backward()
        return x.grad


def _mf():
    from . import more_functional
    return more_functional


class L1Loss(_ComposedLoss):
    """Mean absolute error (one comparison per element)."""

    def forward(self, input, target):
        return _mf().l1_loss(input, target, reduction=self.reduction)


class SmoothL1Loss(_ComposedLoss):
    """torch.nn.SmoothL1Loss(beta)."""

    def __init__(self, reduction: str = "mean", beta: float = 1.0) -> None:
        super().__init__(reduction)
        self.beta = beta

    def forward(self, input, target):
        return _mf().smooth_l1_loss(input, target, reduction=self.reduction, beta=self.beta)


class HuberLoss(_ComposedLoss):
    """torch.nn.HuberLoss(delta)."""

    def __init__(self, reduction: str = "mean", delta: float = 1.0) -> None:
        super().__init__(reduction)
        self.delta = delta

    def forward(self, input, target):
        return _mf().huber_loss(input, target, reduction=self.reduction, delta=self.delta)


class BCELoss(_ComposedLoss):
    """Binary cross-entropy on probabilities (clamped to [2^-10, 1 - 2^-10]; prefer
    BCEWithLogitsLoss, which needs no clamp)."""

    def __init__(self, weight=None, reduction: str = "mean") -> None:
        super().__init__(reduction)
        self.weight = weight

    def forward(self, input, target):
        return _mf().binary_cross_entropy(input, target, self.weight, reduction=self.reduction)


class KLDivLoss(_ComposedLoss):
    """torch.nn.KLDivLoss (input: log-probabilities)."""

    _REDUCTIONS = ("none", "mean", "sum", "batchmean")

    def __init__(self, reduction: str = "mean", log_target: bool = False) -> None:
        super().__init__(reduction)
        self.log_target = log_target

    def forward(self, input, target):
        return _mf().kl_div(input, target, reduction=self.reduction,
                            log_target=self.log_target)


class NLLLoss(_ComposedLoss):
    """torch.nn.NLLLoss (input: log-probabilities; targets: class indices)."""

    def __init__(self, weight=None, ignore_index: int = -100, reduction: str = "mean") -> None:
        super().__init__(reduction)
        self.weight, self.ignore_index = weight, ignore_index

    def forward(self, input, target):
        return _mf().nll_loss(input, target, self.weight, ignore_index=self.ignore_index,
                              reduction=self.reduction)
