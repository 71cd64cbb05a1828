"""The autograd methods of SecretTensor: requires_grad_, backward, detach, data.

The state lives in three slots of SecretBase: ``requires_grad`` (bool), ``grad`` (a
SecretTensor or None) and ``_node`` (the `Node` that made this tensor, None for leaves).
"""

from __future__ import annotations

from ..errors import ProtocolUsageError
from .graph import is_grad_enabled


class AutogradMixin:
    def requires_grad_(self, requires_grad: bool = True):
        """Mark this (leaf) tensor as a parameter to differentiate; returns ``self``.

        >>> import torch, veil
        >>> def f():
        ...     w = veil.tensor(torch.tensor([3.0]) if veil.rank() == 0 else None, owner=0)
        ...     w.requires_grad_()
        ...     (w * w).sum().backward()
        ...     return w.grad.reveal()          # discloses the gradient to every party
        >>> veil.run(f, parties=2, seed=0)[0].tolist()
        [6.0]
        """
        if requires_grad and not self.dtype.is_floating_point:
            raise ProtocolUsageError(f"only floating-point tensors can require gradients, got "
                                     f"{self.dtype}; convert with .float() first")
        if not requires_grad and self._node is not None:
            raise ProtocolUsageError("requires_grad_(False) on a computed tensor; use "
                                     ".detach() to cut it out of the graph instead")
        self.requires_grad = bool(requires_grad)
        return self

    def backward(self, gradient=None, retain_graph: bool = False) -> None:
        """Accumulate gradients of this tensor into ``.grad`` of the leaves (see
        `veil.autograd.backward`)."""
        from .engine import backward
        backward(self, gradient, retain_graph)

    @property
    def is_leaf(self) -> bool:
        return self._node is None

    @property
    def grad_fn(self):
        """The node that computed this tensor (its ``op`` names the rule), or None."""
        return self._node

    def detach(self):
        """The same shares, cut out of the graph (no copy, no traffic).

        torch's detach shares storage: recorded as a view, so in-place writes that torch
        would propagate are refused (see ``_check_writable``).
        """
        out = type(self)(self._share, dtype=self.dtype, frac=self.frac, bits=self._bits)
        return out._as_view_of(self)

    def detach_(self):
        self._node, self.requires_grad = None, False
        return self

    @property
    def data(self):
        """The value without its graph, as torch's ``p.data``; assigning replaces the
        shares in place (what optimizers do: ``p.data = p.data - lr * p.grad``)."""
        return self.detach()

    @data.setter
    def data(self, value):
        if not hasattr(value, "share") or tuple(value.shape) != tuple(self.shape):
            raise ProtocolUsageError(f"data must be a SecretTensor of shape {tuple(self.shape)}")
        if value.dtype != self.dtype:
            value = value._to_dtype(self.dtype)
        self._share, self._bits = value.share, value._bits

    def __setitem__(self, idx, value):
        # In-place writes would change a value the graph has already used; torch refuses
        # them on leaves that require grad for the same reason.
        if is_grad_enabled() and (self.requires_grad or getattr(value, "requires_grad", False)):
            raise ProtocolUsageError(
                "in-place assignment x[idx] = v on a tensor in an autograd graph; build the "
                "result with veil.cat / veil.where instead, or do it under "
                "veil.autograd.no_grad()")
        return super().__setitem__(idx, value)
