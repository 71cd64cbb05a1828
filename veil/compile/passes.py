"""Inference-time rewrites of the captured graph, run once by the owner at capture.

* `remove_noops`: dropout (eval), clone, alias, detach and runtime assertions vanish.
* `fold_batchnorm`: BatchNorm after a conv or linear is folded into its weights; any other
  BatchNorm becomes one multiply-add with precomputed scale and shift (still secret).
* `fold_constants`: nodes computed from public constants only are evaluated now and
  shipped as constants (position ids, causal masks, ...).
* `dead_code`: nodes, weights and constants nobody reads are dropped.

``weights`` is the owner's name -> tensor dict (plaintext, never sent); passes that
change weights add new entries and leave unused ones to `dead_code`.
"""

from __future__ import annotations

import torch

from .graph import Graph, Node, Param, Ref, dtype_name, map_refs, resolve_op

NOOPS = {"aten.clone.default", "aten.alias.default", "aten.detach.default",
         "aten.lift_fresh_copy.default", "aten.contiguous.default"}
# largest public tensor (elements) folded into the graph; bigger ones are recomputed
FOLD_LIMIT = 1 << 20
_NEVER_FOLD = ("rand", "bernoulli", "dropout", "normal", "uniform", "exponential")


def _substitute(graph: Graph, subst: dict[str, Ref]) -> None:
    def fix(r):
        while r.name in subst:
            r = subst[r.name]
        return r
    for n in graph.nodes:
        n.args, n.kwargs = map_refs(n.args, fix), map_refs(n.kwargs, fix)
    graph.outputs = map_refs(graph.outputs, fix)


def remove_noops(graph: Graph) -> None:
    meta = graph.meta()
    subst, kept = {}, []
    for n in graph.nodes:
        if n.op.startswith("aten._assert") or n.op == "aten.sym_constrain_range.default":
            continue
        src = n.args[0] if n.args else None
        identity = n.op in NOOPS or (n.op == "aten.dropout.default" and not n.args[2])
        if n.op == "aten._to_copy.default" and isinstance(src, Ref):
            # a cast to the dtype the value already has (device moves are moot here)
            identity = set(n.kwargs) <= {"dtype", "layout", "device", "memory_format"} and \
                meta.get(src.name, (None, None))[1] == n.dtype
        if identity and isinstance(src, Ref):
            subst[n.name] = src
            continue
        kept.append(n)
    graph.nodes = kept
    _substitute(graph, subst)


# -- BatchNorm ------------------------------------------------------------------------------
_BN = "aten._native_batch_norm_legit_no_training.default"


def _bn_affine(n: Node, weights):
    """(scale, shift) of an eval-mode BatchNorm, from the owner's plaintext statistics."""
    _, w, b, mean, var, _, eps = n.args
    get = (lambda r: None if r is None else weights[r.name].double())
    w, b, mean, var = get(w), get(b), get(mean), get(var)
    scale = torch.rsqrt(var + eps) * (w if w is not None else 1.0)
    shift = (b if b is not None else 0.0) - mean * scale
    return scale, shift


def _new_param(graph, weights, base, value, like_dtype):
    name, k = f"{base}_folded", 0
    taken = {p.name for p in graph.params} | set(weights)
    while name in taken:
        k += 1
        name = f"{base}_folded{k}"
    value = value.to(like_dtype)
    weights[name] = value
    graph.params.append(Param(name, list(value.shape), dtype_name(value.dtype)))
    return Ref(name)


def fold_batchnorm(graph: Graph, weights: dict) -> None:
    users = graph.users()
    by_name = {n.name: n for n in graph.nodes}
    subst, new_nodes = {}, []
    for n in graph.nodes:
        if n.op != _BN or not all(a is None or a.name in weights for a in n.args[1:5]):
            new_nodes.append(n)
            continue
        outs = [u for u in users.get(n.name, []) if u.op == "getitem" and u.args[1] == 0]
        scale, shift = _bn_affine(n, weights)
        x = n.args[0]
        src = by_name.get(x.name) if isinstance(x, Ref) else None
        if src is not None and len(users.get(src.name, [])) == 1 and \
                _fold_into(graph, weights, src, by_name, users, scale, shift):
            for o in outs:
                subst[o.name] = Ref(src.name)
            continue
        # not after a conv/linear: one multiply-add with precomputed (secret) scale/shift
        rank = len(n.shape[0])
        per_c = [-1] + [1] * (rank - 2)
        dt = getattr(torch, n.dtype[0])
        s = _new_param(graph, weights, n.args[1].name if n.args[1] else n.name + "_scale",
                       scale.reshape(per_c), dt)
        t = _new_param(graph, weights, n.args[2].name if n.args[2] else n.name + "_shift",
                       shift.reshape(per_c), dt)
        mul = Node(n.name + "_scale", "aten.mul.Tensor", [x, s], {}, n.shape[0], n.dtype[0],
                   n.src)
        add = Node(n.name + "_shift", "aten.add.Tensor", [Ref(mul.name), t], {}, n.shape[0],
                   n.dtype[0], n.src)
        new_nodes += [mul, add]
        for o in outs:
            subst[o.name] = Ref(add.name)
    graph.nodes = [n for n in new_nodes if n.name not in subst]
    _substitute(graph, subst)


def _fold_into(graph, weights, src, by_name, users, scale, shift) -> bool:
    """Fold y = x * scale + shift into the conv / linear ``src`` that makes x."""
    if src.op == "aten.convolution.default":
        w, b, transposed, groups = src.args[1], src.args[2], src.args[6], src.args[8]
        if not isinstance(w, Ref) or w.name not in weights or (transposed and groups != 1):
            return False
        wt = weights[w.name].double()
        axis = 1 if transposed else 0
        shape = [1] * wt.dim()
        shape[axis] = -1
        bias = weights[b.name].double() if b is not None else torch.zeros_like(scale)
        src.args[1] = _new_param(graph, weights, w.name, wt * scale.reshape(shape),
                                 weights[w.name].dtype)
        src.args[2] = _new_param(graph, weights, (b or w).name + "_bias",
                                 bias * scale + shift, weights[w.name].dtype)
        return True
    if src.op in ("aten.addmm.default", "aten.mm.default"):
        perm = src.args[-1]
        pnode = by_name.get(perm.name) if isinstance(perm, Ref) else None
        if pnode is None or pnode.op != "aten.permute.default" or pnode.args[1] != [1, 0] or \
                len(users.get(pnode.name, [])) != 1 or pnode.args[0].name not in weights:
            return False
        w = pnode.args[0]
        if src.op == "aten.addmm.default":
            b = src.args[0]
            if not isinstance(b, Ref) or b.name not in weights or src.kwargs:
                return False
            bias = weights[b.name].double()
        else:
            bias = torch.zeros_like(scale)
        dt = weights[w.name].dtype
        pnode.args[0] = _new_param(graph, weights, w.name,
                                   weights[w.name].double() * scale[:, None], dt)
        new_b = _new_param(graph, weights, w.name + "_bias", bias * scale + shift, dt)
        src.op = "aten.addmm.default"
        src.args = [new_b, src.args[-2], perm]
        return True
    return False


# -- constants and dead code ------------------------------------------------------------------
def fold_constants(graph: Graph) -> None:
    known = dict(graph.constants)
    kept = []
    for n in graph.nodes:
        refs = n.refs()
        if any(r.name not in known for r in refs) or any(k in n.op for k in _NEVER_FOLD):
            kept.append(n)
            continue
        get = (lambda r: known[r.name])
        args, kwargs = map_refs(n.args, get), map_refs(n.kwargs, get)
        value = args[0][args[1]] if n.op == "getitem" else resolve_op(n.op)(*args, **kwargs)
        if isinstance(value, torch.Tensor) and value.numel() > FOLD_LIMIT:
            kept.append(n)
            continue
        known[n.name] = value
        if isinstance(value, (torch.Tensor, bool, int, float)) or value is None:
            graph.constants[n.name] = value
        else:       # a tuple: keep the node, its getitems fold against ``known``
            kept.append(n)
    graph.nodes = kept


def dead_code(graph: Graph) -> None:
    live = graph.output_names()
    kept = []
    for n in reversed(graph.nodes):
        if n.name in live:
            kept.append(n)
            live |= {r.name for r in n.refs()}
    graph.nodes = kept[::-1]
    graph.params = [p for p in graph.params if p.name in live]
    graph.constants = {k: v for k, v in graph.constants.items() if k in live}


def run_passes(graph: Graph, weights: dict) -> None:
    remove_noops(graph)
    fold_batchnorm(graph, weights)
    fold_constants(graph)
    dead_code(graph)
    for k in [k for k in weights if k not in {p.name for p in graph.params}]:
        del weights[k]
