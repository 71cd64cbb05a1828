"""Where a graph repeats itself, so the dealer can predict a first run's requests.

A transformer is its first layer eleven more times: the same ops on the same shapes,
other weights. Every secret op asks the dealer for the same material in the same order
each time, so from the second layer on, the requests of the first are a prediction of
the next ones (veil.offline.lookahead.Repeat) — on a graph's very first run, before it
has a request plan (veil.offline.plan). Without it the dealer's look-ahead finds the
period only after seeing it twice and its keys once more: a BERT-base's first forward
waited a dealer round trip for 614 of its 2,598 requests (embeddings and three layers).

`repeat_table` finds, for each node, an earlier stretch of nodes the stretch starting
there repeats: the same ops with the same public arguments on inputs of the same shapes,
reading each other in the same pattern. `RepeatHints` follows a run node by node and,
when the dealer is not predicting anything, tells it which earlier requests come again
and how the mask keys are renamed: keys allocated inside the earlier stretch move by the
number allocated since; keys of the values it read from outside (weights, the previous
layer's output) become those of the values the new stretch reads in their place.

Everything here is public (the graph, shapes, key numbers) and the same at every party.
A hint is only a prediction: when a node asks for something else the look-ahead is
dropped (bounded dealer work) and the dealer checks every request as before.

>>> from veil.compile.graph import Graph, Input, Node, Param, Ref
>>> relu = lambda y, x: Node(y, "aten.relu.default", [Ref(x)], {}, [2, 2], "float32")
>>> mm = lambda y, x: Node(y, "aten.mm.default", [Ref(x), Ref("w")], {}, [2, 2], "float32")
>>> g = Graph(inputs=[Input("x", [2, 2], "float32")], params=[Param("w", [2, 2], "float32")],
...           nodes=[relu("h", "x"), mm("a", "h"), relu("b", "a"), mm("c", "b"),
...                  relu("d", "c")], outputs=[Ref("d")])
>>> repeat_table(g)     # c, d repeat a, b (2 nodes back); d alone repeats b
[None, None, None, (2, 2), (2, 1)]
"""

from __future__ import annotations

from ..tensor.fixed import mask_keys
from .graph import Graph, Ref

CANDIDATES = 32     # earlier nodes with the same signature tried per node (a layer has
                    # ~10 adds: its previous copy is that many occurrences back)
MAX_STRETCH = 512   # nodes one hint covers at most (a BERT layer is ~41, GPT-2's ~50)
MAX_WORK = 1 << 22  # node comparisons per graph at most (BERT-base: ~250,000): the graph
                    # comes from a peer, and its shape must not make this search costly


def _frozen(v, kinds: dict, meta: dict):
    """A hashable stand-in for a node argument: references by what they are (a node's
    result, a weight, an input, a constant) and their shape, not their name."""
    if isinstance(v, Ref):
        shape, dtype = meta.get(v.name, (None, None))
        return ("$ref", kinds.get(v.name), repr(shape), repr(dtype))
    if isinstance(v, (list, tuple)):
        return tuple(_frozen(x, kinds, meta) for x in v)
    if isinstance(v, dict):
        return tuple(sorted((k, _frozen(x, kinds, meta)) for k, x in v.items()))
    if hasattr(v, "shape") and hasattr(v, "dtype"):         # a public constant tensor
        return ("$tensor", tuple(v.shape), str(v.dtype))
    return repr(v)


def signatures(graph: Graph) -> list[int]:
    """One number per node; equal numbers: the same op, arguments and input shapes."""
    kinds = {i.name: ("input", i.public) for i in graph.inputs}
    kinds.update({p.name: "param" for p in graph.params})
    kinds.update({c: "const" for c in graph.constants})
    kinds.update({n.name: "node" for n in graph.nodes})
    meta, ids = graph.meta(), {}
    return [ids.setdefault((n.op, _frozen(n.args, kinds, meta), _frozen(n.kwargs, kinds, meta),
                            repr(n.shape), repr(n.dtype)), len(ids))
            for n in graph.nodes]


def repeat_table(graph: Graph) -> list[tuple[int, int] | None]:
    """For each node i: ``(back, length)`` when nodes i .. i+length-1 repeat the nodes
    ``back`` earlier (the longest such stretch found, at most ``back`` long), else None.

    Repeating means equal signatures and the same reading pattern: a node of the new
    stretch reads a value made inside it exactly where its twin reads the twin value,
    and a value from before the stretch where its twin does too (then renamed by key).
    """
    sigs = signatures(graph)
    at = {n.name: i for i, n in enumerate(graph.nodes)}
    reads = [[at.get(r.name) for r in n.refs()] for n in graph.nodes]
    n, table, seen = len(sigs), [], {}

    def same_reads(new: int, old: int, start: int, back: int) -> bool:
        for q, q_old in zip(reads[new], reads[old]):
            inside = q is not None and q >= start
            inside_old = q_old is not None and q_old >= start - back
            if inside != inside_old or (inside and q_old != q - back):
                return False
        return True

    work = 0
    for i in range(n):
        best = None
        for j in reversed(seen.get(sigs[i], [])[-CANDIDATES:]):
            back, length = i - j, 0
            most = min(back, MAX_STRETCH, n - i)
            while length < most and sigs[j + length] == sigs[i + length] \
                    and same_reads(i + length, j + length, i, back):
                length += 1
            work += length + 1
            if length and (best is None or length > best[1]):
                best = (back, length)
        if work > MAX_WORK:             # (the same cut-off at every party)
            return table + [None] * (n - i)
        table.append(best)
        seen.setdefault(sigs[i], []).append(i)
    return table


class RepeatHints:
    """One run's hints: call `before(i, env)` before node i runs (env: the run's values)."""

    def __init__(self, graph: Graph, table: list, provider, precomputed=()) -> None:
        self._table, self._provider = table, provider
        self._refs = [n.refs() for n in graph.nodes]
        # values made inside a stretch, by the run: a weight move computed once before
        # any run (``precomputed``) is a value from outside, with a key of its own
        self._at = {n.name: i for i, n in enumerate(graph.nodes) if n.name not in precomputed}
        self._marks: list = [None] * len(table)
        self._keys: list = [None] * len(table)     # keys of each node's inputs, as run

    def before(self, i: int, env: dict) -> None:
        prov = self._provider
        self._marks[i] = prov.mark()
        self._keys[i] = [mask_keys(env.get(r.name)) for r in self._refs[i]]
        hint = self._table[i]
        if hint is None or prov.predicting():
            return
        back, length = hint
        src = i - back
        keymap: dict[int, int] = {}
        for t in range(length):
            for r, old in zip(self._refs[i + t], self._keys[src + t]):
                q = self._at.get(r.name)
                if q is not None and q >= i:
                    continue                  # made inside the repeat: keys move by count
                new = mask_keys(env.get(r.name))       # (read before i: in env)
                if len(new) == len(old):
                    keymap.update(zip(old, new))
        prov.repeat(self._marks[src], self._marks[src + length], keymap)
