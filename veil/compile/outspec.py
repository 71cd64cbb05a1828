"""The structure of a model's outputs, in veil's own minimal schema.

The owner describes how the flat output list nests (a tensor, tuples, lists, string-keyed
dicts); every party rebuilds the same structure from that description. The schema is
plain JSON with four shapes and nothing else, so a description from another party can
name no Python type, import nothing and index no attribute (torch's own
``treespec_loads`` does all three and must never see peer text):

    {"leaf": true}   {"tuple": [spec, ...]}   {"list": [spec, ...]}
    {"dict": [[key, spec], ...]}              (keys are strings)

Named tuples come back as tuples; dicts and Hugging Face ``ModelOutput`` objects as
`Outputs`, a dict whose string keys are also attributes (``out.logits``, ``out["logits"]``).

>>> import torch.utils._pytree as pytree
>>> spec = from_pytree(pytree.tree_flatten({"logits": 1, "hidden": (2, 3)})[1])
>>> spec
{'dict': [['logits', {'leaf': True}], ['hidden', {'tuple': [{'leaf': True}, {'leaf': True}]}]]}
>>> out = unflatten(["a", "b", "c"], validate(spec, 3))
>>> out.logits, out["hidden"]
('a', ('b', 'c'))
"""

from __future__ import annotations

import torch.utils._pytree as pytree

from ..errors import ProtocolUsageError

MAX_DEPTH = 32
MAX_KEY = 200


class Outputs(dict):
    """A model's named outputs: a dict whose keys are also attributes."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"outputs have no {name!r}; they have {list(self)}") from None


# A pytree node like torch's dict, so tree_map / tree_leaves see the tensors inside (a dict
# subclass is otherwise one opaque leaf: compare() once reported 0 error for HF models).
pytree.register_pytree_node(
    Outputs, lambda o: (list(o.values()), list(o.keys())),
    lambda values, keys: Outputs(zip(keys, values)),
    serialized_type_name="veil.compile.outspec.Outputs",
    flatten_with_keys_fn=lambda o: ([(pytree.MappingKey(k), v) for k, v in o.items()],
                                    list(o.keys())))


def from_pytree(spec) -> dict:
    """veil's description of a torch pytree ``TreeSpec`` (at the owner, at capture)."""
    if spec.is_leaf():
        return {"leaf": True}
    kids = [from_pytree(c) for c in spec.children()]
    ctx = spec.context
    if spec.type is list:
        return {"list": kids}
    if isinstance(ctx, (list, tuple)) and len(ctx) == len(kids) and \
            all(isinstance(k, str) for k in ctx):
        return {"dict": [[k, c] for k, c in zip(ctx, kids)]}
    return {"tuple": kids}         # tuples, named tuples, anything else with children


def validate(spec, n_leaves: int) -> dict:
    """``spec`` if it is a well-formed description of ``n_leaves`` outputs, else an error."""
    count = _count(spec, 0)
    if count != n_leaves:
        raise ProtocolUsageError(f"output structure from the model owner describes {count} "
                                 f"outputs, but the graph has {n_leaves}")
    return spec


def _count(spec, depth: int) -> int:
    if depth > MAX_DEPTH or not isinstance(spec, dict) or len(spec) != 1:
        raise ProtocolUsageError("malformed output structure from the model owner")
    (kind, body), = spec.items()
    if kind == "leaf" and body is True:
        return 1
    if kind in ("tuple", "list") and isinstance(body, list):
        return sum(_count(c, depth + 1) for c in body)
    if kind == "dict" and isinstance(body, list):
        keys = set()
        for item in body:
            if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str)
                    and len(item[0]) <= MAX_KEY and item[0] not in keys):
                raise ProtocolUsageError("malformed output structure from the model owner "
                                         "(dict keys must be distinct short strings)")
            keys.add(item[0])
        return sum(_count(c, depth + 1) for _, c in body)
    raise ProtocolUsageError("malformed output structure from the model owner")


def unflatten(flat: list, spec: dict | None):
    """Nest ``flat`` as ``spec`` says (validated); None: one output, or a tuple of them."""
    if spec is None:
        return flat[0] if len(flat) == 1 else tuple(flat)
    return _build(iter(flat), spec)


def _build(leaves, spec):
    (kind, body), = spec.items()
    if kind == "leaf":
        return next(leaves)
    if kind == "tuple":
        return tuple(_build(leaves, c) for c in body)
    if kind == "list":
        return [_build(leaves, c) for c in body]
    return Outputs((k, _build(leaves, c)) for k, c in body)


__all__ = ["Outputs", "from_pytree", "validate", "unflatten"]
