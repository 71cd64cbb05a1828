"""Capture-time support check: which nodes may be secret, and can each of them run?

A value may be secret if it depends on a weight or on an input not declared public. Every
such node needs a lowering rule whose helper methods exist and whose static check passes;
all problems are reported at once, each with the op, the node and the user's source line,
before any party spends time on cryptography.
"""

from __future__ import annotations

from ..errors import ProtocolUsageError
from .graph import Graph
from .lowering import LOWERINGS

WEIGHTS = "<weights>"


class UnsupportedOpError(ProtocolUsageError):
    """The captured model uses an op veil cannot run on secret values."""


def secret_sources(graph: Graph) -> dict[str, frozenset]:
    """name -> the secret sources (input names, or WEIGHTS) the value may depend on."""
    src: dict[str, frozenset] = {i.name: frozenset() if i.public or i.shape is None
                                 else frozenset([i.name]) for i in graph.inputs}
    src.update({p.name: frozenset([WEIGHTS]) for p in graph.params})
    src.update({k: frozenset() for k in graph.constants})
    meta = graph.meta()

    def shape_of(v):
        return meta.get(v.name, (None, None))[0] if hasattr(v, "name") else None

    for n in graph.nodes:
        deps = frozenset().union(*[src.get(r.name, frozenset()) for r in n.refs()])
        rule = LOWERINGS.get(n.op)
        if deps and rule is not None and rule.public_if is not None and \
                rule.public_if(n, shape_of):
            deps = frozenset()
        src[n.name] = deps
    return src


def problems(graph: Graph) -> list[tuple]:
    """(op, node name, source, why, hint) for every may-be-secret node that cannot run."""
    src = secret_sources(graph)
    meta = graph.meta()

    def shape_of(v):
        return meta.get(v.name, (None, None))[0] if hasattr(v, "name") else None

    out = []
    for n in graph.nodes:
        deps = frozenset().union(*[src.get(r.name, frozenset()) for r in n.refs()])
        if not deps or n.op == "getitem":
            continue
        rule = LOWERINGS.get(n.op)
        if rule is None:
            why = "has no lowering for secret values"
        elif rule.missing():
            why = (f"needs SecretTensor.{'/'.join(rule.missing())} (veil.functions), which "
                   f"this veil does not have")
        else:
            why = rule.check(n, shape_of) if rule.check else None
            if why is None:
                continue
        hint = ""
        if WEIGHTS not in deps:
            names = ", ".join(repr(d) for d in sorted(deps))
            hint = (f"; it depends only on input(s) {names}: if every party knows them, "
                    f"pass public_inputs=({names},)")
        out.append((n.op, n.name, n.src, why, hint))
    return out


def check_supported(graph: Graph) -> None:
    found = [f"{op} at node {name!r}{' (' + src + ')' if src else ''} {why}{hint}"
             for op, name, src, why, hint in problems(graph)]
    if found:
        more = f"\n  ... and {len(found) - 12} more" if len(found) > 12 else ""
        raise UnsupportedOpError(
            "the model cannot run on secret values:\n  " + "\n  ".join(found[:12]) + more +
            "\nsee docs/inference.md for the supported ops; rewrite those layers with "
            "supported ones, or keep them outside the secure model")
