"""Optimizer base and SGD, on secret parameters.

An optimizer updates every parameter in one pass over one flat vector (all parameters'
gradients concatenated): the shape of the update does not matter to a local step, and a
step that needs secret products (a secret learning rate, Adam's square root) then costs
the rounds of one product, not one per parameter tensor.

Learning rate: a Python float is public (the update ``lr * g`` is a local product and a
truncation); a one-element SecretTensor keeps it secret (one product round per step).
"""

from __future__ import annotations

from ..autograd import no_grad
from ..errors import ProtocolUsageError
from ..tensor import SecretTensor, cat


def _check_lr(lr):
    if isinstance(lr, SecretTensor):
        if lr.numel() != 1:
            raise ProtocolUsageError(f"a secret learning rate must have one element, got shape "
                                     f"{tuple(lr.shape)}")
        return lr.reshape(())
    if not isinstance(lr, (int, float)) or lr < 0:
        raise ProtocolUsageError(f"lr must be a non-negative number or a one-element "
                                 f"SecretTensor, got {lr!r}")
    return float(lr)


class Optimizer:
    """Base: ``param_groups`` (one group; change ``param_groups[0]['lr']`` to schedule),
    ``zero_grad``, ``step``; subclasses define ``_update(flat_params, flat_grads, state)``.
    """

    def __init__(self, params, defaults: dict) -> None:
        params = list(params)
        if not params:
            raise ProtocolUsageError("optimizer got an empty parameter list")
        for i, p in enumerate(params):
            if not isinstance(p, SecretTensor) or not p.requires_grad:
                raise ProtocolUsageError(
                    f"parameter {i} is not a SecretTensor with requires_grad; pass "
                    f"model.parameters() of a veil.nn model")
        defaults = dict(defaults, lr=_check_lr(defaults["lr"]))
        self.param_groups = [dict(defaults, params=params)]
        self.state: dict = {}

    @property
    def params(self) -> list:
        return self.param_groups[0]["params"]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        group = self.param_groups[0]
        group["lr"] = _check_lr(group["lr"])
        live = [p for p in self.params if p.grad is not None]
        # Parameters that skipped a step (no gradient then) are at another step count:
        # each count is updated as its own flat vector.
        by_step: dict = {}
        for p in live:
            by_step.setdefault(self.state.setdefault(id(p), {}).get("step", 0), []).append(p)
        with no_grad():
            for ps in by_step.values():
                self._step_flat(ps, group)

    def _step_flat(self, ps, group) -> None:
        flat_p = cat([p.detach().reshape(-1) for p in ps])
        flat_g = cat([p.grad.reshape(-1) for p in ps])
        first = self.state[id(ps[0])]
        keys = [k for k, v in first.items() if isinstance(v, SecretTensor)]
        state = {"step": first.get("step", 0)}
        for k in keys:
            state[k] = cat([self.state[id(p)][k] for p in ps])
        new = self._update(flat_p, flat_g, state, group)
        at = 0
        for p in ps:
            n = p.numel()
            p.data = new[at:at + n].reshape(p.shape)
            mine = self.state[id(p)]
            mine["step"] = state.get("step", 0)
            for k, v in state.items():
                if isinstance(v, SecretTensor):
                    mine[k] = v[at:at + n]
            at += n

    @staticmethod
    def _times_lr(x, lr):
        return x * lr if isinstance(lr, SecretTensor) else x * float(lr)

    def _update(self, p, g, state: dict, group: dict):
        """The new flat parameter vector; may update ``state`` (flat tensors, "step")."""
        raise NotImplementedError


class SGD(Optimizer):
    """torch.optim.SGD (momentum, dampening, nesterov, weight decay), same update order.

    >>> import torch, veil
    >>> def f():
    ...     w = veil.tensor(torch.tensor([1.0, -1.0]) if veil.rank() == 0 else None, owner=0)
    ...     w.requires_grad_()
    ...     opt = veil.optim.SGD([w], lr=0.5)
    ...     (w * w).sum().backward()               # grad 2w
    ...     opt.step()
    ...     return w.reveal()                      # discloses the new weights to all
    >>> veil.run(f, parties=2, seed=0)[0].tolist()
    [0.0, 0.0]
    """

    def __init__(self, params, lr: float = 1e-3, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False) -> None:
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ProtocolUsageError("nesterov momentum needs momentum > 0 and dampening 0")
        super().__init__(params, dict(lr=lr, momentum=float(momentum),
                                      dampening=float(dampening),
                                      weight_decay=float(weight_decay), nesterov=nesterov))

    def _update(self, p, g, state, group):
        if group["weight_decay"]:
            g = g + p * group["weight_decay"]
        mom = group["momentum"]
        if mom:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = g
            else:
                damp = 1.0 - group["dampening"]
                buf = buf * mom + (g * damp if damp != 1.0 else g)
            state["momentum_buffer"] = buf
            g = g + buf * mom if group["nesterov"] else buf
        return p - self._times_lr(g, group["lr"])


__all__ = ["Optimizer", "SGD"]
