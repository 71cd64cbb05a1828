"""F.batch_norm in training mode: batch statistics on shares, running stats updated.

Kept apart from normalization.py (inference) so the two read separately; the
SecretTensor method ``batch_norm`` (veil.functions.more_mixin) sends ``training=True``
here. Written with SecretTensor ops only, so its gradient is torch's batch-norm gradient
through the pieces.
"""

from __future__ import annotations

from ..autograd.graph import no_grad
from ..errors import ProtocolUsageError
from ..tensor.core import as_public, is_secret


def batch_norm_train(x, running_mean=None, running_var=None, weight=None, bias=None,
                     momentum: float = 0.1, eps: float = 1e-5):
    """F.batch_norm(training=True): batch statistics on shares, running stats updated.

    mean and biased variance over (N, *spatial) per channel are local sums (one product
    round for the squares), then one rsqrt per channel (veil.functions, 16 rounds at 2
    parties; 13 with local truncation). ``running_mean`` / ``running_var`` must be
    SecretTensors (they are updated in place with the secret batch statistics, as torch
    does, unbiased variance) or None.
    Gradients follow from the pieces (torch's batch-norm gradient).
    """
    if x.dim() < 2:
        raise ProtocolUsageError("batch_norm expects at least 2 dims (N, C, ...)")
    for name, r in (("running_mean", running_mean), ("running_var", running_var)):
        if r is not None and not is_secret(r):
            raise ProtocolUsageError(f"batch_norm(training=True): {name} must be a SecretTensor "
                                     f"(it is updated with secret batch statistics) or None; "
                                     f"or call model.eval() to use the running statistics")
    dims = [0] + list(range(2, x.dim()))
    n = x.numel() // x.shape[1]
    if n <= 1:
        raise ProtocolUsageError(f"Expected more than 1 value per channel when training, got "
                                 f"input size {tuple(x.shape)} (as torch)")
    shape = (1, -1) + (1,) * (x.dim() - 2)
    mean = x.mean(dims, keepdim=True)
    centred = x - mean
    var = (centred * centred).mean(dims, keepdim=True)
    out = centred * (var + eps).rsqrt()
    if weight is not None:
        out = out * (weight.reshape(shape) if is_secret(weight) else
                     as_public(weight).reshape(shape))
    if bias is not None:
        out = out + (bias.reshape(shape) if is_secret(bias) else as_public(bias).reshape(shape))
    with no_grad():
        m = 0.1 if momentum is None else momentum
        if running_mean is not None:
            running_mean.mul_(1 - m).add_(mean.reshape(-1).detach() * m)
        if running_var is not None:
            running_var.mul_(1 - m).add_(var.reshape(-1).detach() * (m * n / (n - 1)))
    return out
