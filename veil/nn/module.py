"""`Module`: torch.nn.Module's bookkeeping for models whose parameters are SecretTensors.

Parameters are made by `parameter`: party ``owner`` holds the initial value (drawn the
way torch draws it, from torch's global RNG, so ``torch.manual_seed`` at the owner gives
torch's exact initial weights) and secret-shares it; the other parties learn its shape
only. After that nobody holds the weights: they exist only as shares until someone
calls `Module.reveal_state_dict`.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Iterator

import torch

from ..context import current
from ..errors import ProtocolUsageError
from ..tensor import SecretTensor, tensor


def parameter(make, owner: int) -> SecretTensor:
    """A trainable SecretTensor: ``make()`` runs at party ``owner`` only and returns the
    initial value (a torch tensor); every party gets shares of it.

    >>> import torch, veil
    >>> def f():
    ...     w = veil.nn.parameter(lambda: torch.zeros(2, 3), owner=0)
    ...     return w.shape, w.requires_grad
    >>> veil.run(f, parties=2, seed=0)[1]
    (torch.Size([2, 3]), True)
    """
    value = make().detach().float() if current().rank == owner else None
    # Discloses the shape (public by design: it is the layer's size) to every party.
    return tensor(value, owner=owner).requires_grad_()


class Module:
    """Base class of veil.nn layers: parameters, sub-modules, train/eval, state export."""

    def __init__(self) -> None:
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    def __setattr__(self, name, value) -> None:
        if "_parameters" not in self.__dict__:
            raise ProtocolUsageError(f"{type(self).__name__}.__init__ must call "
                                     f"super().__init__() before setting attributes")
        self._parameters.pop(name, None)
        self._modules.pop(name, None)
        if isinstance(value, SecretTensor) and value.requires_grad:
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        object.__setattr__(self, name, value)

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} must define forward()")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    # -- parameters -------------------------------------------------------------------------
    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, SecretTensor]]:
        for name, p in self._parameters.items():
            yield prefix + name, p
        for mname, m in self._modules.items():
            yield from m.named_parameters(prefix + mname + ".")

    def parameters(self) -> list[SecretTensor]:
        return [p for _, p in self.named_parameters()]

    def children(self) -> list["Module"]:
        return list(self._modules.values())

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.grad = None

    def train(self, mode: bool = True) -> "Module":
        """Training mode (``mode=True``) or inference mode. In inference mode the
        parameters are *fixed operands* (SecretTensor.fixed_): a product with a weight
        opens its masked form once and reuses it in later forwards; training unmarks
        them, since every step changes them."""
        object.__setattr__(self, "training", mode)
        for p in self._parameters.values():
            if mode:
                p._fixed = None
            else:
                p.fixed_()
        for m in self._modules.values():
            m.train(mode)
        return self

    def eval(self) -> "Module":
        return self.train(False)

    # -- export -----------------------------------------------------------------------------
    def reveal_state_dict(self, to: int | None) -> "OrderedDict[str, torch.Tensor] | None":
        """The trained weights as a torch state dict, at party ``to`` only (None elsewhere;
        ``to=None``: at every party). Names match the torch module this mirrors.

        Discloses every parameter to ``to``: the model is that party's output.
        """
        out = OrderedDict()
        for name, p in self.named_parameters():
            out[name] = p.reveal(to=to)       # discloses this parameter to ``to``
        if to is not None and current().rank != to:
            return None
        return out

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        for name, m in self._modules.items():
            lines.append(f"  ({name}): " + repr(m).replace("\n", "\n  "))
        return lines[0] + (")" if len(lines) == 1 else "\n" + "\n".join(lines[1:]) + "\n)")

    def extra_repr(self) -> str:
        return ""


class Sequential(Module):
    """Layers applied in order, like torch.nn.Sequential (indexable, iterable)."""

    def __init__(self, *layers: Module) -> None:
        super().__init__()
        for i, layer in enumerate(layers):
            if not isinstance(layer, Module):
                raise ProtocolUsageError(
                    f"Sequential item {i} is a {type(layer).__name__}, not a veil.nn.Module; "
                    f"for a torch layer use veil.nn.from_torch(...)")
            setattr(self, str(i), layer)

    def forward(self, x):
        for layer in self._modules.values():
            x = layer(x)
        return x

    def __getitem__(self, i):
        return list(self._modules.values())[i]

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())
