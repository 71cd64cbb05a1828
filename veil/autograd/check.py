"""Check veil's gradients against torch's on the same function and inputs.

The oracle is torch autograd: ``fn`` runs once on float64 torch tensors and once on
SecretTensors (each input shared by its owner), and both backward passes use the same
random upstream gradient, so every output element's path is checked.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from ..config import Config
from ..runtime import run


def compare_grads(fn: Callable, inputs: Sequence[torch.Tensor], *,
                  requires_grad: Sequence[bool] | None = None, secret: Sequence[bool] | None = None,
                  parties: int = 2, protocol: str = "semi2k", seed: int = 0,
                  config: Config | None = None) -> dict:
    """Max abs errors of veil vs torch: ``{"out": e, "grads": [e_i or None, ...]}``.

    ``secret[i]`` False passes input i as a public tensor (default: all secret, input i
    owned by party ``i % parties``); ``requires_grad[i]`` selects the inputs whose
    gradients are compared (default: every secret floating input).

    >>> import torch
    >>> from veil.autograd.check import compare_grads
    >>> x, w = torch.randn(4, 3), torch.randn(3, 2)
    >>> errs = compare_grads(lambda a, b: (a @ b).relu(), [x, w])
    >>> errs["out"] < 1e-3 and max(errs["grads"]) < 1e-3
    True
    """
    n_in = len(inputs)
    secret = list(secret) if secret is not None else [True] * n_in
    if requires_grad is None:
        requires_grad = [s and t.is_floating_point() for s, t in zip(secret, inputs)]
    t_in = [t.detach().double().requires_grad_(rg) if t.is_floating_point() else t
            for t, rg in zip(inputs, requires_grad)]
    t_out = fn(*t_in)
    upstream = torch.empty(t_out.shape, dtype=torch.float64).uniform_(
        -1, 1, generator=torch.Generator().manual_seed(seed + 7))
    (t_out * upstream).sum().backward()
    t_grads = [t.grad if rg else None for t, rg in zip(t_in, requires_grad)]

    def party():
        import veil
        r = veil.rank()
        xs = []
        for i, (t, s, rg) in enumerate(zip(inputs, secret, requires_grad)):
            if not s:
                xs.append(t)
                continue
            owner = i % veil.world_size()
            x = veil.tensor(t if r == owner else None, owner=owner)
            xs.append(x.requires_grad_() if rg else x)
        out = fn(*xs)
        out.backward(upstream.to(torch.float32))
        # Reveals the output and gradients to party 0 only: this is a test oracle.
        return out.reveal(to=0), [x.grad.reveal(to=0) if rg and x.grad is not None else None
                                  for x, rg in zip(xs, requires_grad)]

    v_out, v_grads = run(party, parties=parties, protocol=protocol, seed=seed,
                         config=config)[0]

    def err(a, b):
        return (a.double() - b.double()).abs().max().item() if a.numel() else 0.0
    grads = []
    for tg, vg, rg in zip(t_grads, v_grads, requires_grad):
        if not rg:
            grads.append(None)
        elif tg is None:                       # torch: the output does not depend on it
            grads.append(err(vg, torch.zeros(vg.shape)) if vg is not None else 0.0)
        elif vg is None:
            grads.append(float("inf"))         # a gradient that never arrived is a failure
        else:
            grads.append(err(vg, tg))
    return {"out": err(v_out, t_out.detach()), "grads": grads}
