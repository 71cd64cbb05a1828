"""`veil.secure`: one model owner, any number of parties, secret weights, public graph."""

from __future__ import annotations

import hashlib
import json

import torch

from ..context import current
from ..errors import ProtocolUsageError
from ..functions.approx import current_approximations
from ..tensor import SecretTensor
from ..tensor import tensor as share_tensor
from ..tensor.create import held_tensor
from ..tensor.fixed import held_by, mark_held, open_fixed
from .capture import capture
from .graph import Graph, dtype_of
from .interpreter import Interpreter
from .lowering import secret
from .outspec import unflatten, validate as validate_out_spec
from .support import check_supported
from .validate import GraphLimits, validate_graph
from .tokens import share_token_ids

# data moves of weights that run once per model (see SecureModule._prepare_weights)
_WEIGHT_MOVES = {"aten.view.default", "aten._unsafe_view.default", "aten.reshape.default",
                 "aten.unsqueeze.default", "aten.permute.default", "aten.t.default",
                 "aten.transpose.int", "aten.squeeze.dim", "aten.squeeze.dims",
                 "aten.slice.Tensor", "aten.select.int"}
_MOVES = {"aten.view.default", "aten._unsafe_view.default", "aten.reshape.default",
          "aten.unsqueeze.default", "aten.expand.default", "aten.slice.Tensor",
          "aten.select.int", "aten.squeeze.dim", "aten.squeeze.dims"}


# products whose right operand may be a moved weight, and "a few rows" of the left one
_PRODUCTS = {"aten.mm.default", "aten.addmm.default", "aten.matmul.default",
             "aten.bmm.default"}
THIN_ROWS = 16


def _numel(shape) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def secure(model, owner: int, example_input=None, *, example_kwargs=None,
           public_inputs=(), limits: GraphLimits | None = None) -> "SecureModule":
    """Turn ``model`` (held by party ``owner``) into a module all parties run together.

    The owner passes the model and an example input (a tensor, or a tuple of positional
    inputs; ``example_kwargs`` for keyword inputs such as an attention mask); every
    other party passes ``None``. The captured graph, with its shapes, becomes public to
    all parties; the weights are secret-shared and never leave the owner in the clear.
    ``public_inputs`` names inputs every party will pass in the clear (e.g. an attention
    mask): ops on them then run in plaintext.

    Inputs must have the example's shapes. Unsupported ops fail here, at the owner,
    before any cryptography. Every other party validates the graph it receives before
    running any of it (veil.compile.validate): only the ops veil lowers, arguments
    checked against each op's schema, and sizes within ``limits`` (a `GraphLimits`; each
    party may pass its own; by default its tensors are bounded by ``Config.max_elements``).

    >>> import torch, veil
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    >>> x = torch.randn(5, 4)
    >>> def job():
    ...     m = veil.secure(net if veil.rank() == 0 else None, owner=0, example_input=x)
    ...     xs = veil.tensor(x if veil.rank() == 1 else None, owner=1)
    ...     return m(xs).reveal(to=1)          # the prediction goes to the data owner only
    >>> out = veil.run(job, parties=2, seed=0)
    >>> out[0] is None, bool((out[1] - net(x)).abs().max() < 1e-3)
    (True, True)
    """
    ctx = current()
    if not isinstance(owner, int) or not 0 <= owner < ctx.world_size:
        raise ProtocolUsageError(f"owner must be a party in 0..{ctx.world_size - 1}, got "
                                 f"{owner!r}")
    weights = graph = None
    if ctx.rank == owner:
        if model is None:
            raise ProtocolUsageError(f"party {owner} owns the model but passed None")
        if example_input is None and not example_kwargs:
            raise ProtocolUsageError("the owner must pass example_input (and/or "
                                     "example_kwargs): capture traces the model with it")
        graph, weights = capture(model, example_input if example_input is not None else (),
                                 example_kwargs, public_inputs=public_inputs)
    elif model is not None:
        raise ProtocolUsageError(f"party {ctx.rank} passed a model owned by party {owner};"
                                 f" the other parties pass None (the model stays with "
                                 f"its owner)")
    graph = publish_graph(graph, owner, limits)
    return SecureModule(graph, _share_weights(graph, weights, owner))


def publish_graph(graph: Graph | None, owner: int, limits: GraphLimits | None = None) -> Graph:
    """The owner's captured ``graph`` (None at the other parties), as every party checks
    and keeps it; the one seam through which a graph reaches the parties."""
    ctx = current()
    payload = None
    if ctx.rank == owner:
        graph.owner = owner
        payload = json.loads(graph.to_json())
    # Discloses the architecture (ops, shapes, public constants; no weights) to every
    # party: public by contract.
    payload = ctx.comm.broadcast_obj(payload, owner)
    # The graph is untrusted input at every other party: parse it strictly, then allow
    # only the ops veil runs, with checked arguments and bounded shapes, before anything
    # of it runs (the owner checks its own graph the same way, so it fails first).
    graph = Graph.from_json(json.dumps(payload))
    validate_graph(graph, limits or GraphLimits(max_elements=ctx.config.max_elements))
    if graph.out_spec is not None:
        validate_out_spec(graph.out_spec, len(graph.outputs))
    if ctx.rank != owner:
        check_supported(graph)         # the same check the owner ran, on what arrived
    return graph


def _share_weights(graph: Graph, weights, owner: int) -> dict:
    """One held_tensor call per dtype (one round each), then local slicing. The owner
    keeps its weights in the clear anyway, so they are shared held (its share is the
    weight, the others' zero: veil.tensor.fixed), which makes products with them
    owner-aware."""
    ctx = current()
    out = {}
    groups: dict[str, list] = {}
    for p in graph.params:
        groups.setdefault(p.dtype, []).append(p)
    for dt, params in groups.items():
        flat = None
        if ctx.rank == owner:
            flat = torch.cat([weights[p.name].detach().reshape(-1).to(dtype_of(dt))
                              for p in params])
        shared = held_tensor(flat, owner=owner)
        holder = held_by(shared) if dtype_of(dt).is_floating_point else None
        at = 0
        for p in params:
            n = 1
            for s in p.shape:
                n *= s
            out[p.name] = shared[at:at + n].reshape(tuple(p.shape))
            if holder is not None:          # slicing keeps the zero shares zero
                mark_held(out[p.name], holder)
            at += n
    return out


def _keep_held(out, srcs: list):
    """Mark ``out``, a data move (or copy) of ``srcs``, held where they all are held by
    one party: moving shares keeps the zero shares zero. Returns ``out``."""
    holders = {held_by(t) for t in srcs}
    if len(holders) == 1 and None not in holders and secret(out) and out.is_floating_point():
        mark_held(out, holders.pop())
    return out


class SecureModule:
    """A captured model whose weights are secret-shared; call it like the model.

    Inputs may be SecretTensors, public tensors, or (for token ids) what `share_input`
    returns. The result has the model's output structure with SecretTensors in it.

    >>> import torch, veil
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> lm = torch.nn.Sequential(torch.nn.Embedding(20, 4), torch.nn.Linear(4, 2))
    >>> ids = torch.tensor([[3, 7, 19]])
    >>> def job():
    ...     mine = veil.rank() == 0
    ...     m = veil.secure(lm if mine else None, owner=0, example_input=ids if mine else None)
    ...     x = m.share_input("input", ids if veil.rank() == 1 else None, owner=1)
    ...     return x, m(x).reveal(to=1)        # the output goes to the ids' owner only
    >>> (x0, _), (x1, y) = veil.run(job, parties=2, seed=0)
    >>> x0
    TokenIds(shape=(1, 3), vocab=20, <secret>)
    >>> bool((y - lm(ids)).abs().max() < 1e-3)
    True
    """

    def __init__(self, graph: Graph, weights: dict, dense: dict | None = None) -> None:
        self.graph = graph
        self._dense = {} if dense is None else dense   # dense copies of moved weights
        self._interp = Interpreter(graph)
        self._plan_tag: str | None = None
        self._weights = self._prepare_weights(weights)
        self.owner = graph.owner
        if current().provider.mark() is not None:   # the dealer works ahead: its hints
            self._interp.find_repeats()               # are worked out with the setup

    def _prepare_weights(self, weights: dict) -> dict:
        """Run the weight-only data moves (``permute(W)`` before a matmul, ...) once, and
        mark every weight a fixed operand (`SecretTensor.fixed_`): products with a weight
        then reuse one opening of its masked form across every forward, so an inference
        opens only its activations. The moves are local (no traffic)."""
        env = dict(weights)
        done = set()
        for i, node in enumerate(self.graph.nodes):
            refs = list(node.refs())
            if node.op in _WEIGHT_MOVES and refs and all(r.name in env for r in refs) \
                    and all(secret(env[r.name]) for r in refs):
                env[node.name] = self._interp.run_node(i, env)
                done.add(node.name)
                _keep_held(env[node.name], [env[r.name] for r in refs])
        # keep what the remaining nodes read (a weight read only by a folded move is gone)
        used = {r.name for n in self.graph.nodes if n.name not in done for r in n.refs()}
        used |= set(self.graph.output_names())
        env = {k: v for k, v in env.items() if k in used}
        params = {p.name for p in self.graph.params}
        nodes = {n.name: n for n in self.graph.nodes}
        for k in self._thin_products(done & set(env)):
            n = nodes[k]
            # graphs sharing these weights (a decoder's prefill and step) share the copy
            # (and its opening) when the move reads weights only
            memo = (n.op, repr(n.args), repr(n.kwargs)) \
                if all(r.name in params for r in n.refs()) else None
            if memo is not None and memo in self._dense:
                env[k] = self._dense[memo]
            else:
                # (a share known zero, held elsewhere, is never multiplied: it stays the
                # expanded zero it is; the memo is kept alike at every party, so the
                # graphs share one opening everywhere)
                if held_by(env[k]) in (None, current().rank):
                    env[k] = _keep_held(env[k].contiguous(), [env[k]])
                if memo is not None:
                    self._dense[memo] = env[k]
        fixed = [v.fixed_() for v in env.values() if secret(v) and v.is_floating_point()]
        # Opens W - B for every weight W, B uniform and keyed for W alone (a fresh key per
        # weight, never reused for another value): discloses nothing. Once per model.
        open_fixed(fixed)
        self._interp.precomputed = done
        return env

    def _thin_products(self, moved: set) -> list[str]:
        """Moved weights (``W.T`` of a Linear: a strided view) that multiply a few rows
        (a decoder step's one token). torch's int64 matmul reads a strided right operand
        ~10x slower than a dense one (GPT-2's LM head at one row: 0.56 s vs 0.05 s per
        product), so those are copied dense once; with many rows (a whole sequence) the
        difference is ~2x and not worth a second copy of the weight."""
        meta, users = self.graph.meta(), self.graph.users()
        out = []
        for name in sorted(moved):
            for u in users.get(name, []):
                if u.op not in _PRODUCTS:
                    continue
                rows = [meta[r.name][0] for r in u.refs() if r.name != name]
                if any(s and len(s) >= 2 and _numel(s[:-1]) <= THIN_ROWS for s in rows):
                    out.append(name)
                    break
        return out

    def __repr__(self) -> str:
        n = sum(int(torch.Size(p.shape).numel()) for p in self.graph.params)
        ins = ", ".join(f"{i.name}: {tuple(i.shape)} {i.dtype}" + (" public" if i.public
                                                                     else "")
                        for i in self.graph.inputs if i.shape is not None)
        return (f"SecureModule(owner={self.owner}, inputs=[{ins}], ops={len(self.graph.nodes)},"
                f" secret weights={n:,} values)")

    @property
    def inputs(self) -> list:
        """(name, shape, dtype) of each tensor input, in forward() order."""
        return [(i.name, tuple(i.shape), i.dtype) for i in self.graph.inputs
                if i.shape is not None]

    def __call__(self, *args, **kwargs):
        return self.trace(None, *args, **kwargs)

    forward = __call__

    def trace(self, on_node, *args, **kwargs):
        """Like calling the module, with ``on_node(node, value)`` called after each node."""
        env = dict(self._weights)
        env.update(self._bind(args, kwargs))
        # The dealer's request plan of this graph (veil.offline.plan): recorded on the
        # first run, sent ahead from the first request of every later one.
        with current().provider.plan(self.plan_tag):
            flat = self._interp.run(env, on_node)
        return unflatten(flat, self.graph.out_spec)

    @property
    def plan_tag(self) -> str:
        """A public name of this graph's dealer requests, the same at every party: its
        JSON's hash, and the function approximations in force where any is not the
        default (`veil.functions.approximations`: they change the requests, so a run
        under other variants records a plan of its own instead of mispredicting)."""
        if self._plan_tag is None:
            self._plan_tag = "graph:" + hashlib.sha256(self.graph.to_json().encode()).hexdigest()
        modes = sorted((k, v) for k, v in current_approximations().items() if v != "exact")
        if not modes:
            return self._plan_tag
        return self._plan_tag + "|" + ",".join(f"{k}={v}" for k, v in modes)

    def _bind(self, args, kwargs) -> dict:
        by_key = {i.key: i for i in self.graph.inputs}
        given = dict(enumerate(args))
        given.update(kwargs)
        env = {}
        for key, value in given.items():
            inp = by_key.get(key)
            if inp is None and isinstance(key, str):      # a positional input by name
                inp = next((i for i in self.graph.inputs if i.name == key), None)
            if inp is None:
                raise ProtocolUsageError(f"input {key!r} was not part of the example at "
                                         f"capture; captured inputs: {self._names()}")
            env[inp.name] = self._check_input(inp, value)
        for inp in self.graph.inputs:
            if inp.name not in env:
                if inp.shape is not None:
                    raise ProtocolUsageError(f"missing input {inp.name!r}; captured inputs: "
                                             f"{self._names()}")
                env[inp.name] = inp.value
        return env

    def _names(self):
        return [i.name for i in self.graph.inputs]

    def _check_input(self, inp, value):
        if inp.shape is None:           # a fixed Python value, specialised at capture
            if value != inp.value:
                raise ProtocolUsageError(f"input {inp.name!r} was {inp.value!r} at capture; "
                                         f"the graph is specialised to it, got {value!r}")
            return value
        if not (secret(value) or isinstance(value, torch.Tensor)):
            value = torch.as_tensor(value)
        if tuple(value.shape) != tuple(inp.shape):
            raise ProtocolUsageError(f"input {inp.name!r} has shape {tuple(value.shape)}; the "
                                     f"model was captured with {tuple(inp.shape)}: pass that "
                                     f"shape, or capture again with a matching example")
        if inp.public and secret(value):
            raise ProtocolUsageError(f"input {inp.name!r} was declared public at capture but "
                                     f"a secret value was passed; capture without it in "
                                     f"public_inputs")
        if isinstance(value, SecretTensor) and value.is_floating_point() != \
                dtype_of(inp.dtype).is_floating_point:
            raise ProtocolUsageError(f"input {inp.name!r} is {value.dtype}; the model takes "
                                     f"{inp.dtype}")
        return value

    def share_input(self, name, data, owner: int):
        """Share one input the cheapest way the model allows; ``data`` only at ``owner``.

        Integer inputs that only feed embeddings (token ids) are one-hot encoded by their
        owner before sharing, so the lookup is a secret matmul and needs no comparison;
        other inputs are shared with `veil.tensor`. Discloses the input's shape only.
        """
        inp = next((i for i in self.graph.inputs if name in (i.name, i.key)), None)
        if inp is None or inp.shape is None:
            raise ProtocolUsageError(f"{name!r} is not a tensor input; inputs: {self._names()}")
        vocab = self._embedding_vocab(inp.name)
        if vocab is not None:
            return share_token_ids(data, owner, vocab)
        return share_tensor(data, owner=owner)

    def _embedding_vocab(self, name):
        """Vocabulary size if input ``name`` reaches only embedding lookups (as indices)."""
        users = self.graph.users()
        meta = self.graph.meta()
        vocabs, frontier = set(), [name]
        while frontier:
            cur = frontier.pop()
            for u in users.get(cur, []):
                if u.op == "aten.embedding.default" and getattr(u.args[1], "name", None) == cur \
                        and getattr(u.args[0], "name", None) != cur:
                    vocabs.add(meta[u.args[0].name][0][0])
                elif u.op in _MOVES and getattr(u.args[0], "name", None) == cur:
                    frontier.append(u.name)
                else:
                    return None
        return vocabs.pop() if len(vocabs) == 1 else None


