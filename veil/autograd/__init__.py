"""Reverse-mode automatic differentiation on SecretTensors.

* `graph`: grad mode (`no_grad`), `Node`, and the `differentiable(name)` decorator that
  the tensor layer puts on each differentiable forward;
* `engine`: `backward`, the reverse walk;
* `rules`: backward rules of the core ops (add, mul, matmul, conv2d, pooling, shape ops,
  sum, cat, where, max), in the same table as the smooth functions' rules
  (`veil.functions.grad_rules.GRAD_RULES`);
* `mixin`: the SecretTensor methods (`requires_grad_`, `backward`, `detach`, `.data`).

>>> import torch, veil
>>> def f():
...     x = veil.tensor(torch.tensor([[1., 2.]]) if veil.rank() == 0 else None, owner=0)
...     w = veil.tensor(torch.tensor([[0.5], [-1.]]) if veil.rank() == 1 else None, owner=1)
...     w.requires_grad_()
...     loss = (x @ w).relu().sum() + (w * w).sum()
...     loss.backward()
...     return w.grad.reveal(to=1)            # discloses d loss / d w to party 1 (w's owner)
>>> veil.run(f, parties=2, seed=0)[1].tolist()
[[1.0], [-2.0]]
"""

from .engine import backward, is_unit_grad
from .graph import Node, differentiable, enable_grad, is_grad_enabled, no_grad

__all__ = ["backward", "differentiable", "no_grad", "enable_grad", "is_grad_enabled", "Node",
           "is_unit_grad"]
