"""docs/support.md, generated: ``python -m veil.compile.support_doc --docs``.

Three tables, each read from the code's own registries, never typed:

* eager ``SecretTensor``: every torch callable in the dispatch table
  (`veil.tensor.dispatch.TORCH_TABLE`), with what a *probe* measured: each callable is
  called on small secret tensors with the first argument pattern that works (a tensor, two
  tensors, a dim, a list, an index, images for conv/pool ...), its online rounds counted
  at 2 parties, and ``backward()`` run through it. "not probed" means no generic pattern
  fits the signature; the op is still supported (its tests are in tests/);
* ``veil.secure``: every ATen op of the lowering table with its cost note (inference only:
  a secure module has no backward);
* the gradient rules (`veil.functions.grad_rules.GRAD_RULES`), and the torch functions that
  are *refused* (no entry: a clear error naming the function at call time).
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import warnings

import torch
import torch.nn.functional as F

from ..docs_markers import emit_sections, replace_marked

DOC = pathlib.Path(__file__).resolve().parents[2] / "docs" / "support.md"
_NAMESPACES = [("torch.Tensor", torch.Tensor), ("torch.nn.functional", F),
               ("torch.special", torch.special), ("torch.linalg", torch.linalg),
               ("torch", torch)]


def public_name(fn) -> str:
    """The name a user writes for a torch callable (torch.Tensor.add, F.relu, torch.exp)."""
    for prefix, ns in _NAMESPACES:
        for attr in dir(ns):
            try:
                if getattr(ns, attr) is fn:
                    return f"{prefix}.{attr}"
            except Exception:  # noqa: BLE001 - odd attributes of torch namespaces
                continue
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


_PATTERNS = [
    lambda v: (v["x"],), lambda v: (v["x"], v["y"]), lambda v: (v["x"], 1),
    lambda v: (v["x"], 0.5), lambda v: ([v["x"], v["y"]],), lambda v: (v["x"], 1, v["idx"]),
    lambda v: (v["x"], 1, v["idx"], v["y"]), lambda v: (v["x"] > 1, v["x"], v["y"]),
    lambda v: (v["img"], v["ker"]), lambda v: (v["img"], 2), lambda v: (v["x"], 2, 1),
    lambda v: (v["x"], v["y"][0]), lambda v: (v["x"][0], v["y"][0]),
    lambda v: (v["x"].sigmoid(), (v["y"] > 1).float()), lambda v: (v["x"], [0]),
    lambda v: (v["x"], (3, 2)), lambda v: (v["x"], 1, 0), lambda v: (v["x"], 1, 0, 2),
    lambda v: (v["x"], (1, 0)), lambda v: (v["x"], v["y"].t()),
    lambda v: (v["x"].unsqueeze(0), v["y"].t().unsqueeze(0)),
    lambda v: (v["x"], 1, v["row"]), lambda v: (v["x"], 1, v["row"], v["y"][:, :2]),
    lambda v: (v["x"], v["x"] > 1, 0.5), lambda v: (v["x"], (3,)),
    lambda v: (v["img"], torch.zeros(2), torch.ones(2)),
    lambda v: (v["img"][:, :, 0], v["ker"][:, :, 0]), lambda v: (v["si"], 3),
    lambda v: (v["x"], v["row"]), lambda v: (v["vol"], v["ker3"]),
    lambda v: (v["xp"], v["x"]),                   # torch.Tensor methods: a public self
]


def probe() -> dict:
    """public name -> (pattern index, rounds, backward) measured at 2 parties, or
    ("refused", why) when every fitting pattern was refused on secret values."""
    import veil
    from ..errors import ProtocolUsageError
    from ..tensor.dispatch import TORCH_TABLE

    names = {}
    for fn in TORCH_TABLE:
        names.setdefault(public_name(fn), fn)
    g = torch.Generator().manual_seed(0)
    pv = {"x": torch.rand(2, 3, generator=g) + 0.5, "y": torch.rand(2, 3, generator=g) + 0.5,
          "img": torch.rand(1, 2, 4, 4, generator=g), "ker": torch.rand(2, 2, 3, 3, generator=g),
          "si": torch.tensor([2, 0, 1]), "idx": torch.tensor([[0, 2], [1, 0]]),
          "row": torch.tensor([2, 0]), "vol": torch.rand(1, 2, 3, 4, 4, generator=g),
          "ker3": torch.rand(2, 2, 2, 2, 2, generator=g)}
    pv["xp"] = pv["x"]

    def fits(fn, k) -> bool:
        # A pattern torch itself rejects is not tried on shares (a bad shape must not
        # reach the protocol in a probe).
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                r = fn(*_PATTERNS[k](pv))
            return r is not NotImplemented
        except Exception:  # noqa: BLE001
            return False

    todo = {name: [k for k in range(len(_PATTERNS)) if fits(fn, k)]
            for name, fn in names.items()}

    def party():
        out = {}
        me = veil.rank()
        for name, fn in sorted(names.items()):
            res = None
            for k in todo[name]:
                v = dict(pv)
                for key, owner in [("x", 0), ("y", 1), ("img", 0), ("ker", 1), ("si", 1),
                                   ("vol", 0), ("ker3", 1)]:
                    v[key] = veil.tensor(pv[key] if me == owner else None, owner=owner)
                    if v[key].is_floating_point():
                        v[key].requires_grad_()
                try:
                    s0 = veil.stats()["rounds"]
                    r = fn(*_PATTERNS[k](v))
                    rounds = veil.stats()["rounds"] - s0
                except ProtocolUsageError as exc:  # refused on shares: keep why, try the next
                    res = ("refused", str(exc).split(";")[0].split(" (")[0][:90])
                    continue
                except Exception:  # noqa: BLE001 - this pattern does not fit; try the next
                    continue
                if r is NotImplemented:
                    continue
                res = (k, rounds, _backward(r, [v["x"], v["y"], v["img"], v["ker"], v["vol"]]))
                break
            out[name] = res
        return out

    return veil.run(party, parties=2, seed=0)[0]


def _backward(r, leaves) -> str:
    first = r[0] if isinstance(r, (tuple, list)) and r and hasattr(r[0], "share") else r
    if not hasattr(first, "share"):
        return "n/a (public result)"
    if not first.dtype.is_floating_point:
        return "no (integer/bool result, as torch)"
    if not first.requires_grad:
        return "no"
    try:
        first.sum().backward()
    except Exception as exc:  # noqa: BLE001 - reported in the table
        return f"fails: {type(exc).__name__}"
    return "yes" if any(t.grad is not None for t in leaves) else "no"


def eager_table(results: dict) -> str:
    rows = ["| torch callable | online rounds (2 parties, probe) | backward |",
            "|---|---|---|"]
    for name in sorted(results):
        r = results[name]
        if r is None:
            rows.append(f"| `{name}` | not probed | not probed |")
            continue
        if r[0] == "refused":
            rows.append(f"| `{name}` | refused on the probe: {r[1]} | - |")
            continue
        _, rounds, back = r
        cls = "local (0)" if rounds == 0 else str(rounds)
        rows.append(f"| `{name}` | {cls} | {back} |")
    return "\n".join(rows) + "\n"


def secure_table() -> str:
    from .lowering import LOWERINGS
    rows = ["| ATen op | how, and its cost | available |", "|---|---|---|"]
    for op in sorted(LOWERINGS):
        rule = LOWERINGS[op]
        missing = rule.missing()
        ok = "yes" if not missing else "needs " + ", ".join(f"`{m}`" for m in missing)
        rows.append(f"| `{op}` | {rule.note or '-'} | {ok} |")
    return "\n".join(rows) + "\n"


def grad_table() -> str:
    from ..autograd import rules  # noqa: F401  registers the core rules
    from ..functions.grad_rules import GRAD_RULES
    return ", ".join(f"`{n}`" for n in sorted(GRAD_RULES)) + "\n"


def refused_table() -> str:
    """torch.nn.functional / torch functions with no entry (refused by name at call time)."""
    from ..tensor.dispatch import TORCH_TABLE
    have = {public_name(f) for f in TORCH_TABLE}
    over = torch.overrides.get_overridable_functions()
    out = []
    for ns, label in [(F, "torch.nn.functional"), (torch, "torch")]:
        names = sorted({f"{label}.{getattr(f, '__name__', '?')}" for f in over.get(ns, [])
                        if not getattr(f, "__name__", "_").startswith("_")})
        missing = [n for n in names if n not in have]
        out.append(f"**{label}** ({len(missing)} of {len(names)}): " +
                   ", ".join(f"`{n.rsplit('.', 1)[1]}`" for n in missing) + "\n")
    return "\n".join(out)


def sections(results: dict | None = None) -> dict:
    return {"eager": eager_table(results if results is not None else probe()),
            "secure": secure_table(), "grads": grad_table(), "refused": refused_table()}


def replace_section(text: str, name: str, body: str) -> str:
    begin, end = f"<!-- support:{name}:begin -->", f"<!-- support:{name}:end -->"
    out = replace_marked(text, begin, end, body)
    if out is None:
        raise SystemExit(f"{DOC} lacks the markers {begin} / {end}")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m veil.compile.support_doc", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", action="store_true", help=f"rewrite the tables in {DOC}")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    emit_sections(DOC, sections(), replace_section, args.docs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
