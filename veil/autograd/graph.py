"""The recording half of autograd: grad mode, graph nodes, and the `differentiable` hook.

A differentiable op is marked once, where its forward is defined::

    @differentiable("mul")
    def mul(self, other): ...

When grad mode is on and any positional input is a SecretTensor with ``requires_grad``,
the wrapper runs the forward with recording off (so the op's own internals are not
recorded), then attaches a `Node` to each floating-point SecretTensor in the result:
the op name (the key of its rule in ``veil.functions.grad_rules.GRAD_RULES``), the
inputs, and the static keyword arguments. Otherwise it calls the forward directly: the
cost of the hook when nothing needs a gradient is one context-variable read and a scan
of the positional arguments.

A forward that declares a keyword-only parameter ``saved`` receives a fresh dict there
when it is being recorded (``None`` otherwise) and may stash values its rule needs
(a sigmoid, a softmax) instead of the rule recomputing them; the rule receives the same
dict as ``saved=``.

Arguments are normalised with the forward's signature before they are recorded, so a
rule sees every parameter positionally (with defaults filled in), whether the caller
wrote ``conv2d(x, w, b)`` or ``conv2d(x, weight=w, bias=b)``. Keyword-only parameters
stay keywords.

This module imports nothing from veil.tensor: the tensor layer imports it.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
from contextlib import contextmanager
from typing import Callable

# Per party: each party thread (and each networked process) has its own context, so one
# party entering no_grad() never affects another.
_GRAD_ENABLED: contextvars.ContextVar[bool] = contextvars.ContextVar("veil_grad", default=True)


def is_grad_enabled() -> bool:
    """True when differentiable ops record graph nodes (the default, as in torch)."""
    return _GRAD_ENABLED.get()


@contextmanager
def no_grad():
    """Context manager: ops inside record nothing (optimizer steps, evaluation).

    >>> import torch, veil
    >>> def f():
    ...     w = veil.tensor(torch.ones(2) if veil.rank() == 0 else None, owner=0).requires_grad_()
    ...     with veil.autograd.no_grad():
    ...         y = w * 2
    ...     return y.requires_grad
    >>> veil.run(f, parties=2, seed=0)
    [False, False]
    """
    token = _GRAD_ENABLED.set(False)
    try:
        yield
    finally:
        _GRAD_ENABLED.reset(token)


@contextmanager
def enable_grad():
    """Context manager: turn recording back on inside a `no_grad` block."""
    token = _GRAD_ENABLED.set(True)
    try:
        yield
    finally:
        _GRAD_ENABLED.reset(token)


class Node:
    """One recorded op application: what the backward pass needs to call its rule.

    ``inputs`` are the positional arguments as the forward received them (SecretTensors,
    public tensors, numbers, lists of tensors for ``cat``); ``kwargs`` the keyword-only
    ones. The output is not stored here (the output tensor holds the node), so a graph
    is freed as soon as its last tensor is.
    """

    __slots__ = ("op", "inputs", "kwargs")

    def __init__(self, op: str, inputs: tuple, kwargs: dict) -> None:
        self.op, self.inputs, self.kwargs = op, inputs, kwargs

    def __repr__(self) -> str:
        # Names the op only: inputs are shares or public data, neither belongs in a log.
        return f"<veil.autograd.Node {self.op}>"


def _requires_grad(x) -> bool:
    if getattr(x, "requires_grad", False) is True:
        return True
    if isinstance(x, (list, tuple)):
        return any(getattr(t, "requires_grad", False) is True for t in x)
    return False


def _is_float_secret(x) -> bool:
    return hasattr(x, "_node") and getattr(x, "dtype", None) is not None and \
        x.dtype.is_floating_point


def _attach(out, node: Node, inputs: tuple):
    if not _is_float_secret(out):
        return out
    if any(out is a for a in inputs):
        # A forward that returned its input unchanged: give the result its own identity,
        # or the input would become its own parent.
        out = type(out)(out._share, dtype=out.dtype, frac=out.frac, bits=out._bits)
    out._node = node
    out.requires_grad = True
    return out


def differentiable(name: str) -> Callable[[Callable], Callable]:
    """Mark ``fn`` (a SecretTensor method or function) as the forward of op ``name``.

    The op's backward rule is ``GRAD_RULES[name]``, called as
    ``rule(grad_out, out, *inputs, **kwargs)`` and returning one gradient per
    positional input (``None`` where there is none).
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"differentiable() needs an op name, got {name!r}")

    def deco(fn: Callable) -> Callable:
        sig = inspect.signature(fn)
        wants_saved = "saved" in sig.parameters and \
            sig.parameters["saved"].kind is inspect.Parameter.KEYWORD_ONLY
        # A call that passes every parameter positionally binds to exactly its arguments
        # (no defaults to fill): skip Signature.bind, which costs more than most local ops.
        params = [p for p in sig.parameters.values() if not (wants_saved and p.name == "saved")]
        n_positional = len(params) if all(
            p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD for p in params) else -1

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            if not _GRAD_ENABLED.get() or not (
                    any(_requires_grad(a) for a in args)
                    or any(_requires_grad(v) for v in kwargs.values())):
                return fn(*args, **kwargs)
            if not kwargs and len(args) == n_positional:
                inputs, kw = args, ({"saved": {}} if wants_saved else {})
            else:
                bound = sig.bind(*args, **kwargs)
                bound.apply_defaults()
                if wants_saved:
                    bound.arguments["saved"] = {}
                inputs, kw = bound.args, bound.kwargs
            token = _GRAD_ENABLED.set(False)
            try:
                out = fn(*inputs, **kw)
            finally:
                _GRAD_ENABLED.reset(token)
            node = Node(name, inputs, kw)
            if isinstance(out, tuple):
                return type(out)(*(_attach(o, node, inputs) for o in out)) \
                    if hasattr(out, "_fields") else tuple(_attach(o, node, inputs) for o in out)
            return _attach(out, node, inputs)

        wrapper.__veil_op__ = name
        return wrapper

    return deco


__all__ = ["differentiable", "no_grad", "enable_grad", "is_grad_enabled", "Node"]
