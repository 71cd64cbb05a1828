"""Counting correct predictions on secret outputs and labels (the count stays secret)."""

from __future__ import annotations

import torch

from ..autograd.rules import max_onehot
from ..tensor.core import is_secret


def correct_count(out, y):
    """Secret number of rows where ``out`` predicts ``y``.

    Binary (``out`` of shape (n,) or (n, 1), logits; ``y`` 0/1): prediction ``out > 0``,
    one comparison and one select. Multi-class (``out`` (n, C); ``y`` one-hot, or class
    indices): one-hot of the argmax by a max tree, then one product with ``y``.
    """
    if out.dim() == 1 or out.shape[-1] == 1:
        pred = out.gt(0)
        # correct = pred (2y - 1) + (1 - y): one select on the comparison's bits
        return (pred * (y * 2 - 1) + (1 - y)).sum()
    onehot = out._wrap(max_onehot(out.share), torch.int64)
    if is_secret(y) and not y.dtype.is_floating_point or \
            not is_secret(y) and not torch.as_tensor(y).is_floating_point():
        classes = torch.arange(out.shape[-1])
        y = y.unsqueeze(-1).eq(classes) if is_secret(y) else \
            (torch.as_tensor(y).unsqueeze(-1) == classes).float()
    return (onehot * y).sum()
