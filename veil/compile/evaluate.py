"""Run a model securely and in plaintext on the same inputs, and report the difference.

What users run to see whether their model survives fixed point, and what the tests, the
docs generator and the benchmark use.

>>> import torch
>>> from veil.compile.evaluate import compare
>>> torch.manual_seed(0)  # doctest: +ELLIPSIS
<torch._C.Generator object at ...>
>>> r = compare(torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.ReLU()), torch.randn(3, 8))
>>> r.max_abs_error < 1e-3, r.rounds > 0
(True, True)
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.utils._pytree as pytree

import veil
from .secure import secure


@dataclass
class Report:
    secure: object              # the revealed secure output (model's output structure)
    plain: object               # torch's output
    max_abs_error: float        # over every output tensor
    seconds: float              # the secure forward only, max over parties
    bytes_sent: int             # online bytes sent, max over parties
    rounds: int                 # online rounds of the forward
    capture_seconds: float      # capture + graph broadcast + weight sharing at the owner


def compare(model, args, kwargs=None, *, parties: int = 2, owner: int = 0,
            data_owner: int | None = None, public_inputs=(), token_inputs=(), seed=0,
            config=None, protocol: str = "semi2k") -> Report:
    """Party ``owner`` holds ``model``; party ``data_owner`` (default: the next one) holds
    the inputs, except ``public_inputs`` that every party passes in the clear.
    ``token_inputs`` are shared with `SecureModule.share_input` (one-hot token ids).
    The output is revealed to the data owner only."""
    args = args if isinstance(args, tuple) else (args,)
    kwargs = dict(kwargs or {})
    data_owner = (owner + 1) % parties if data_owner is None else data_owner
    model.eval()
    with torch.no_grad():
        plain = model(*args, **kwargs)

    def job():
        r = veil.rank()
        t0 = time.perf_counter()
        m = secure(model if r == owner else None, owner=owner,
                   example_input=args if r == owner else None,
                   example_kwargs=kwargs if r == owner else None, public_inputs=public_inputs)
        t_capture = time.perf_counter() - t0
        names = {i.key: i.name for i in m.graph.inputs}
        pos = [_share(m, names.get(i, i), a, data_owner, public_inputs, token_inputs)
               for i, a in enumerate(args)]
        kw = {k: _share(m, k, v, data_owner, public_inputs, token_inputs)
              for k, v in kwargs.items()}
        s0 = veil.stats()
        t0 = time.perf_counter()
        out = m(*pos, **kw)
        # Discloses the prediction to the data owner only.
        revealed = pytree.tree_map(lambda v: v.reveal(to=data_owner)
                                   if isinstance(v, veil.SecretTensor) else v, out)
        dt = time.perf_counter() - t0
        d = veil.context.stats_since(s0)
        return revealed, dt, d["bytes_sent"], d["rounds"], t_capture

    results = veil.run(job, parties=parties, seed=seed, config=config, protocol=protocol)
    got = results[data_owner][0]
    err = 0.0
    for a, b in zip(pytree.tree_leaves(got), pytree.tree_leaves(plain)):
        if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and b.numel():
            err = max(err, (a.double() - b.double()).abs().max().item())
    return Report(got, plain, err, max(r[1] for r in results), max(r[2] for r in results),
                  max(r[3] for r in results), results[owner][4])


def _share(m, name, value, data_owner, public_inputs, token_inputs):
    if not isinstance(value, torch.Tensor) or name in public_inputs:
        return value
    mine = value if veil.rank() == data_owner else None
    if name in token_inputs:
        return m.share_input(name, mine, owner=data_owner)
    return veil.tensor(mine, owner=data_owner)


def node_errors(model, args, kwargs=None, *, parties: int = 2, public_inputs=(),
                token_inputs=(), seed=0, config=None) -> list[tuple]:
    """Debugging: where does precision go? (node, op, source, max abs error, max abs value)
    for every floating-point node, secure vs the same graph run in plaintext.

    Reveals every intermediate value to every party: for test data only.
    """
    from .capture import capture
    from .interpreter import Interpreter
    args = args if isinstance(args, tuple) else (args,)
    kwargs = dict(kwargs or {})
    graph, weights = capture(model, args, kwargs, public_inputs=public_inputs)
    given = {i.name: (args[i.key] if isinstance(i.key, int) else kwargs[i.key])
             for i in graph.inputs if i.shape is not None}
    plain = {}
    Interpreter(graph).run({**weights, **given, **{i.name: i.value for i in graph.inputs
                                                   if i.shape is None}},
                           lambda node, v: plain.__setitem__(node.name, v))

    def job():
        r = veil.rank()
        m = secure(model if r == 0 else None, owner=0, example_input=args if r == 0 else None,
                   example_kwargs=kwargs if r == 0 else None, public_inputs=public_inputs)
        names = {i.key: i.name for i in m.graph.inputs}
        pos = [_share(m, names.get(i, i), a, 1, public_inputs, token_inputs)
               for i, a in enumerate(args)]
        kw = {k: _share(m, k, v, 1, public_inputs, token_inputs) for k, v in kwargs.items()}
        seen = {}

        def observe(node, v):
            if isinstance(v, veil.SecretTensor) and v.is_floating_point():
                seen[node.name] = v.reveal()      # discloses every intermediate (debugging)
        m.trace(observe, *pos, **kw)
        return seen

    got = veil.run(job, parties=parties, seed=seed, config=config)[0]
    rows = []
    for node in graph.nodes:
        if node.name in got and isinstance(plain.get(node.name), torch.Tensor):
            want = plain[node.name].double()
            err = (got[node.name].double() - want).abs().max().item() if want.numel() else 0.0
            rows.append((node.name, node.op, node.src, err,
                         want.abs().max().item() if want.numel() else 0.0))
    return rows
