"""The backward pass: walk the recorded graph from a result back to its leaves.

Reverse-mode, as torch: order the tensors that lead to the root topologically, seed the
root's gradient, and for each tensor (root first) call its op's rule from
``GRAD_RULES``, adding the input gradients into a table keyed by tensor. Leaves (tensors
made with ``requires_grad_()``) accumulate into ``.grad``; intermediate gradients are
dropped as soon as they are used. Rules run with recording off (no higher-order
gradients) and use SecretTensor ops only, so the backward pass of every op runs under
every protocol, and costs what those ops cost.
"""

from __future__ import annotations

import torch

from ..errors import ProtocolUsageError
from ..tensor.core import SecretBase  # a leaf module: safe while veil.tensor is importing
import contextvars

from .graph import no_grad

# The seed gradient backward() made for a scalar root: the public value 1, held as shares.
# A rule that multiplies by grad_out may skip that product (a round) when it sees this.
_UNIT_SEED: contextvars.ContextVar = contextvars.ContextVar("veil_unit_seed", default=None)


def is_unit_grad(g) -> bool:
    """True if ``g`` is the implicit gradient 1 of ``loss.backward()`` (public, so
    multiplying by it is free)."""
    return g is not None and g is _UNIT_SEED.get()


def _secret(x) -> bool:
    return isinstance(x, SecretBase)


def _parents(t):
    if t._node.inputs is None:
        raise ProtocolUsageError("backward() through a graph that was already freed; pass "
                                 "retain_graph=True to the first backward() to go twice")
    for inp in t._node.inputs:
        items = inp if isinstance(inp, (list, tuple)) else (inp,)
        for x in items:
            if _secret(x) and x.requires_grad:
                yield x


def _topo(root) -> list:
    """Tensors reachable from ``root`` through nodes, root first (reverse post-order)."""
    order, seen = [], {id(root)}
    stack = [(root, iter(_parents(root)) if root._node is not None else iter(()))]
    while stack:
        t, it = stack[-1]
        nxt = next(it, None)
        if nxt is None:
            stack.pop()
            order.append(t)
        elif id(nxt) not in seen:
            seen.add(id(nxt))
            stack.append((nxt, iter(_parents(nxt)) if nxt._node is not None else iter(())))
    order.reverse()
    return order


def _rule(op: str):
    from ..functions.grad_rules import GRAD_RULES
    try:
        return GRAD_RULES[op]
    except KeyError:
        raise ProtocolUsageError(
            f"no gradient rule for op {op!r}; register one with "
            f"veil.functions.grad_rules.register_grad({op!r}) next to its forward") from None


def _pairs(inputs, grads, op):
    """(input, grad) pairs, flattening list inputs (cat/stack) and their list grads."""
    grads = tuple(grads) + (None,) * (len(inputs) - len(grads))
    for inp, g in zip(inputs, grads):
        if isinstance(inp, (list, tuple)):
            if g is None:
                continue
            if len(g) != len(inp):
                raise ProtocolUsageError(f"internal: rule for {op!r} returned {len(g)} "
                                         f"gradients for a list of {len(inp)} inputs")
            yield from zip(inp, g)
        else:
            yield inp, g


def _broadcasts(small: tuple, big: tuple) -> bool:
    """True if ``small`` broadcasts to exactly ``big``."""
    if len(small) > len(big):
        return False
    return all(s in (1, b) for s, b in zip(small[::-1], big[::-1]))


def _unbroadcast(g, shape: tuple):
    """Sum a gradient over the dims broadcasting added (the transpose of broadcasting).

    Done here, once, so that every elementwise rule is right for broadcast operands
    (x / x.sum(-1, keepdim=True) needs it) without each rule summing by hand.
    """
    lead = g.dim() - len(shape)
    dims = list(range(lead)) + [lead + i for i, s in enumerate(shape)
                                if s == 1 and g.shape[lead + i] != 1]
    return g.sum(dim=dims, keepdim=True).reshape(shape) if dims else g.reshape(shape)


def _fit(g, inp, op):
    """Check a rule's gradient against its input; cast float dtype to the input's."""
    if not _secret(g):
        raise ProtocolUsageError(f"internal: rule for {op!r} returned a "
                                 f"{type(g).__name__}, expected a SecretTensor")
    if tuple(g.shape) != tuple(inp.shape) and _broadcasts(tuple(inp.shape), tuple(g.shape)):
        g = _unbroadcast(g, tuple(inp.shape))
    if tuple(g.shape) != tuple(inp.shape):
        raise ProtocolUsageError(f"internal: rule for {op!r} returned a gradient of shape "
                                 f"{tuple(g.shape)} for an input of shape {tuple(inp.shape)}")
    if g.dtype != inp.dtype:
        g = g._wrap(g.share_at(inp.frac) if inp.frac >= g.frac else g.share, inp.dtype)
    return g


def backward(root, gradient=None, retain_graph: bool = False) -> None:
    """Accumulate d(root)/d(leaf) into ``leaf.grad`` for every leaf that requires grad.

    ``gradient`` is d(loss)/d(root) (a SecretTensor or public tensor of root's shape);
    it may be omitted for a one-element root, as in torch. The graph is freed unless
    ``retain_graph=True``.
    """
    from . import rules  # noqa: F401  registers the core-op rules (lazily: import cycle)
    if not getattr(root, "requires_grad", False):
        raise ProtocolUsageError(
            "backward() on a tensor that does not require grad: call requires_grad_() on "
            "the parameters before computing with them, and compute outside no_grad()")
    if gradient is None:
        if root.numel() != 1:
            raise ProtocolUsageError(
                f"backward() without a gradient needs a one-element result, got shape "
                f"{tuple(root.shape)}; pass gradient= (e.g. the loss's d/d(root)) or "
                f"reduce with .sum() / .mean() first")
    unit = None
    if gradient is None:
        unit = gradient = root._lift_like(1.0)
    elif not _secret(gradient):
        gradient = root._wrap(root._lift(torch.broadcast_to(torch.as_tensor(gradient),
                                                            root.shape), root.frac), root.dtype)
    grads = {id(root): _fit(gradient, root, "backward")}
    token = _UNIT_SEED.set(grads[id(root)] if unit is not None else None)
    try:
        _run(root, grads, retain_graph)
    finally:
        _UNIT_SEED.reset(token)


def _run(root, grads, retain_graph):
    with no_grad():
        for t in _topo(root):
            g = grads.pop(id(t), None)
            node = t._node
            if g is None:
                continue
            if node is None:                   # a leaf: accumulate, as torch does
                t.grad = g if t.grad is None else t.grad + g
                continue
            in_grads = _rule(node.op)(g, t, *node.inputs, **node.kwargs)
            for inp, ig in _pairs(node.inputs, in_grads, node.op):
                if ig is None or not _secret(inp) or not inp.requires_grad:
                    continue
                ig = _fit(ig, inp, node.op)
                prev = grads.get(id(inp))
                grads[id(inp)] = ig if prev is None else prev + ig
            if not retain_graph:
                node.inputs = None             # frees saved inputs now, not at the next step
