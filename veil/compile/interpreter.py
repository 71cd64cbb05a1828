"""Run a captured graph at one party: public nodes in plaintext, secret ones by the table.

Every party walks the same node list in the same order, so the protocol messages of the
secret nodes line up across parties. A node whose arguments are all public (shapes,
constants, masks built from public inputs) is the ATen op itself on torch tensors: every
party computes the same value and nothing is sent.
"""

from __future__ import annotations

from ..errors import ProtocolUsageError, VeilError
from .graph import Graph, iter_refs, map_refs, resolve_op
from .lowering import LOWERINGS, any_secret
from .repeats import RepeatHints, repeat_table
from .validate import GraphRefusedError, allowed_op


# Ops run as another op: views as reshapes (capture drops the clones that made tensors
# contiguous); empty_like as zeros_like, so this host's uninitialised memory can never
# flow into a value a peer sees.
_RUN_AS = {"aten.view.default": "aten.reshape.default",
               "aten._unsafe_view.default": "aten.reshape.default",
               "aten.empty_like.default": "aten.zeros_like.default"}


class LoweringError(VeilError):
    """A node of the captured graph failed while running; names the node and its source."""


class Interpreter:
    """Evaluates ``graph`` on an environment of inputs, weights and constants.

    >>> import torch
    >>> from veil.compile.graph import Graph, Input, Node, Ref
    >>> g = Graph(inputs=[Input("x", [2], "float32")],
    ...           nodes=[Node("y", "aten.mul.Scalar", [Ref("x"), 3.0], {}, [2], "float32")],
    ...           outputs=[Ref("y")])
    >>> Interpreter(g).run({"x": torch.tensor([1.0, 2.0])})
    [tensor([3., 6.])]
    """

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        # Only allowlisted ops ever resolve (defence in depth: a received graph has also
        # passed validate_graph, which checks arguments and shapes).
        for n in graph.nodes:
            if not allowed_op(n.op):
                raise GraphRefusedError(f"graph node {n.name!r} uses {n.op[:80]}, which veil "
                                        f"does not run")
        self._ops = [None if n.op == "getitem" else
                     resolve_op(_RUN_AS.get(n.op, n.op)) for n in graph.nodes]
        # free each value after its last use: activations of a deep net add up
        last: dict[str, int] = {}
        for i, node in enumerate(graph.nodes):
            for r in node.refs():
                last[r.name] = i
        keep = graph.output_names()
        #: nodes whose value the caller passes in env, computed once (weight moves)
        self.precomputed: set[str] = set()
        self._repeats: list | None = None      # repeat_table(graph), when first needed
        self._free = [[] for _ in graph.nodes]
        for name, i in last.items():
            if name not in keep:
                self._free[i].append(name)

    def run(self, env: dict, on_node=None) -> list:
        """Outputs for ``env`` (inputs and weights by name); ``on_node(node, value)`` sees
        every node's result (a debugging hook: see evaluate.node_errors)."""
        env = {**self.graph.constants, **env}
        prof = _profiler()
        hints = self._hints()
        for i, node in enumerate(self.graph.nodes):
            if hints is not None:     # the dealer predicts a repeated layer's requests
                hints.before(i, env)
            if node.name in self.precomputed:
                pass
            elif prof is None:
                env[node.name] = self._run_node(node, self._ops[i], env)
            else:                     # Config(profile=True): bytes and time per ATen op
                with prof.scope(node.op):
                    env[node.name] = self._run_node(node, self._ops[i], env)
            if on_node is not None and node.name in env:   # (a folded weight move may
                on_node(node, env[node.name])                 # feed only another one)
            for name in self._free[i]:
                env.pop(name, None)
        return map_refs(self.graph.outputs, lambda r: env[r.name])

    def find_repeats(self) -> None:
        """Work out where the graph repeats itself (veil.compile.repeats) now, instead of
        on its first secure run (`veil.secure` does, while setting up)."""
        if self._repeats is None:
            self._repeats = repeat_table(self.graph)

    def _hints(self) -> RepeatHints | None:
        """This run's repeat hints (veil.compile.repeats), when the party's dealer works
        ahead and the graph repeats itself somewhere."""
        from ..context import _CURRENT
        ctx = _CURRENT.get()
        if ctx is None or ctx.provider.mark() is None:
            return None
        self.find_repeats()
        if not any(self._repeats):
            return None
        return RepeatHints(self.graph, self._repeats, ctx.provider, self.precomputed)

    def run_node(self, i: int, env: dict):
        """The value of node ``i`` from the values in ``env`` (one node, nothing freed)."""
        return self._run_node(self.graph.nodes[i], self._ops[i], env)

    def _run_node(self, node, op, env):
        def get(ref):
            try:
                return env[ref.name]
            except KeyError:
                raise ProtocolUsageError(f"graph node {node.name} reads {ref.name}, which is "
                                         f"not defined (malformed graph)") from None
        args, kwargs = map_refs(node.args, get), map_refs(node.kwargs, get)
        try:
            if op is None:
                return args[0][args[1]]
            if any_secret(args) or any_secret(kwargs):
                rule = LOWERINGS.get(node.op)
                if rule is None:
                    raise ProtocolUsageError(f"{node.op} has no lowering for secret inputs")
                # export omits arguments equal to the schema default: a rule must see
                # them, or its own default could differ (Hardtanh(-3, 1) lost its max 1)
                args, kwargs = with_defaults(op, args, kwargs)
                return rule.fn(*args, **kwargs)
            return op(*args, **kwargs)
        except LoweringError:
            raise
        except Exception as exc:  # noqa: BLE001 - re-raised with the node named
            # Messages of veil and torch errors carry shapes and op names, never values.
            raise LoweringError(f"while running node {node.name} ({node.op})"
                                f"{' from ' + node.src if node.src else ''}: "
                                f"{type(exc).__name__}: {exc}") from exc


def _profiler():
    from ..context import _CURRENT
    ctx = _CURRENT.get()              # None outside a party (plaintext evaluation)
    return None if ctx is None else ctx.comm.profiler


def with_defaults(op, args, kwargs) -> tuple[list, dict]:
    """``args``/``kwargs`` of an ATen call with every omitted argument set to its default.

    >>> import torch
    >>> with_defaults(torch.ops.aten.hardtanh.default, [1.0], {})
    ([1.0, -1, 1], {})
    """
    args, kwargs = list(args), dict(kwargs)
    for i, a in enumerate(op._schema.arguments):
        if a.kwarg_only:
            if a.name not in kwargs and a.has_default_value():
                kwargs[a.name] = a.default_value
        elif i == len(args):            # the next positional slot: given by name, or default
            if a.name in kwargs:
                args.append(kwargs.pop(a.name))
            elif a.has_default_value():
                args.append(a.default_value)
    return args, kwargs


__all__ = ["Interpreter", "LoweringError", "iter_refs", "with_defaults"]
