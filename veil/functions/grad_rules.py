"""Backward rules of the smooth functions, keyed by op name (shared with veil.autograd).

The contract, for whoever builds autograd on top:

* ``GRAD_RULES[name]`` is ``rule(grad_out, out, *inputs, **kwargs) -> tuple`` with one
  gradient per positional input (``None`` for an input that takes no gradient, e.g. a
  public weight the caller did not ask about). ``out`` is the forward result, passed so
  rules like exp/sigmoid/softmax reuse it instead of recomputing; ``kwargs`` are the
  forward call's static keyword arguments (``dim=``, ``approximate=``, ``eps=``, ...).
* Rules are written with SecretTensor ops only, so they run under any protocol.
* Each rule is registered right below its forward function (JAX keeps ``mul_p``'s
  derivative next to ``mul_p``); this module only holds the table.
* Recording (veil.autograd): the forward is marked with
  ``@differentiable("name")`` from ``veil.autograd.graph`` (it imports nothing from
  veil.tensor, so any layer may use it); ``name`` is the key of its rule here. The op
  then records one graph node when an input requires grad, and its internals are not
  recorded. A forward that declares a keyword-only ``saved=None`` parameter gets a
  fresh dict there while being recorded and may stash values for its rule (which then
  receives ``saved=`` too). ``veil.autograd.is_unit_grad(grad_out)`` tells a rule that
  grad_out is ``loss.backward()``'s implicit 1, so multiplying by it can be skipped.

Names are the torch names of the forward op: ``"exp"``, ``"log"``, ``"reciprocal"``,
``"sqrt"``, ``"rsqrt"``, ``"pow_float"``, ``"sigmoid"``, ``"tanh"``, ``"erf"``,
``"softmax"``, ``"log_softmax"``, ``"gelu"``, ``"silu"``, ``"softplus"``, ``"hardswish"``,
``"hardsigmoid"``, ``"relu6"``, ``"leaky_relu"``, ``"layer_norm"``, ``"group_norm"``,
``"batch_norm"``, ``"normalize"``, ``"cosine_similarity"``, ``"div"`` (x / y), ``"rdiv"``
(c / y for a public c).

>>> from veil.functions.grad_rules import GRAD_RULES, register_grad
>>> @register_grad("example_double")
... def _double_grad(grad_out, out, x):
...     return (grad_out * 2,)
>>> GRAD_RULES["example_double"] is _double_grad
True
>>> del GRAD_RULES["example_double"]
"""

from __future__ import annotations

from typing import Callable

GRAD_RULES: dict[str, Callable] = {}


def register_grad(name: str) -> Callable[[Callable], Callable]:
    """Decorator: register ``rule`` as the backward rule of op ``name`` (no duplicates)."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"a gradient rule needs a non-empty op name, got {name!r}")

    def deco(rule: Callable) -> Callable:
        if name in GRAD_RULES:
            raise ValueError(f"a gradient rule for {name!r} is already registered "
                             f"({GRAD_RULES[name].__module__}.{GRAD_RULES[name].__qualname__})")
        if not callable(rule):
            raise TypeError(f"gradient rule for {name!r} must be callable")
        GRAD_RULES[name] = rule
        return rule

    return deco


def grad_rule(name: str) -> Callable:
    """The rule for ``name``, or a clear error naming the registered ones."""
    try:
        return GRAD_RULES[name]
    except KeyError:
        raise KeyError(f"no gradient rule for {name!r}; registered: {sorted(GRAD_RULES)}") \
            from None


__all__ = ["GRAD_RULES", "register_grad", "grad_rule"]
