"""Measured accuracy and cost of the smooth functions; generates docs/functions.md's tables.

    python -m veil.functions.accuracy            # print the tables
    python -m veil.functions.accuracy --docs     # rewrite them in docs/functions.md

Inputs are drawn on the fixed-point grid of the config being measured (so the numbers
are the functions' own error, not the input encoding's: encoding x adds |f'(x)| 2^-(F+1)
on top), reproducibly (fixed seeds), and compared with torch in float64. Rounds and bytes
are one party's online traffic (veil.stats) at 2 parties; times are wall-clock on this
machine, in-process, 1 torch thread per party. The tests (tests/test_functions_*.py) use
the same cases with fewer points.
"""

from __future__ import annotations

import argparse
import math
import pathlib
import sys
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F

from ..config import Config

# Targets on relative error at outputs near 1e-4 need ~1e-7 resolution: 24 fractional
# bits. 64-bit products at scale 2^48 need exact truncation to be safe, and values up to
# 1e5 need a comparison range above 2^17 (48 bits leave 2^23).
HIGH_PRECISION = Config(frac_bits=24, compare_bits=48, truncation="exact")


def on_grid(x: torch.Tensor, frac: int) -> torch.Tensor:
    return torch.round(x.double() * 2.0 ** frac) / 2.0 ** frac


def linear(lo, hi):
    def make(n, frac, seed):
        g = torch.Generator().manual_seed(seed)
        return on_grid(torch.empty(n, dtype=torch.float64).uniform_(lo, hi, generator=g), frac)
    return make


def logspace(lo, hi):
    def make(n, frac, seed):
        g = torch.Generator().manual_seed(seed)
        u = torch.empty(n, dtype=torch.float64).uniform_(math.log(lo), math.log(hi),
                                                         generator=g)
        return on_grid(u.exp(), frac).clamp(min=2.0 ** -frac)
    return make


def rows(n_cols, lo, hi):
    def make(n, frac, seed):
        g = torch.Generator().manual_seed(seed)
        r = max(1, n // n_cols)
        return on_grid(torch.empty(r, n_cols, dtype=torch.float64).uniform_(lo, hi,
                                                                            generator=g), frac)
    return make


def normal_rows(n_cols, std):
    def make(n, frac, seed):
        g = torch.Generator().manual_seed(seed)
        r = max(1, n // n_cols)
        return on_grid(torch.randn(r, n_cols, dtype=torch.float64, generator=g) * std, frac)
    return make


@dataclass(frozen=True)
class Case:
    name: str
    secure: Callable                      # SecretTensor -> SecretTensor
    ref: Callable                         # float64 torch reference
    inputs: Callable                      # (n, frac, seed) -> inputs on the grid
    domain: str                           # for the table
    metric: str = "abs"                   # "abs" or "rel"
    target: float | None = None
    where: Callable | None = None         # mask of reference outputs the target covers
    where_text: str = ""
    n: int = 100_000
    round_target: int | None = None
    extra: dict = field(default_factory=dict)


def _rel_ok(ref):
    return ref.abs() > 0


CASES: list[Case] = [
    Case("exp", lambda x: x.exp(), torch.exp, linear(-16, 10), "[-16, 10]", "rel", 1e-3,
         lambda r: r >= 1e-4, "where exp(x) >= 1e-4", round_target=10),
    Case("log", lambda x: x.log(), torch.log, logspace(1e-3, 1e4), "[1e-3, 1e4]", "abs",
         1e-3),
    Case("reciprocal", lambda x: x.reciprocal(), torch.reciprocal, logspace(1e-2, 1e4),
         "[1e-2, 1e4]", "rel", 1e-3, _rel_ok, "", round_target=20),
    Case("sqrt", lambda x: x.sqrt(), torch.sqrt, logspace(1e-3, 1e5), "[1e-3, 1e5]", "rel",
         1e-3, _rel_ok, "", round_target=12),
    Case("rsqrt", lambda x: x.rsqrt(), torch.rsqrt, logspace(1e-3, 1e5), "[1e-3, 1e5]", "rel",
         1e-3, _rel_ok),
    Case("sigmoid", lambda x: x.sigmoid(), torch.sigmoid, linear(-30, 30), "[-30, 30]", "abs",
         1e-3, round_target=15),
    Case("tanh", lambda x: x.tanh(), torch.tanh, linear(-30, 30), "[-30, 30]", "abs", 1e-3),
    Case("gelu", lambda x: x.gelu(), F.gelu, linear(-30, 30), "[-30, 30]", "abs", 1e-3),
    Case("gelu (tanh)", lambda x: x.gelu("tanh"), lambda x: F.gelu(x, approximate="tanh"),
         linear(-30, 30), "[-30, 30]", "abs", 1e-3),
    Case("silu", lambda x: x.silu(), F.silu, linear(-30, 30), "[-30, 30]", "abs", 1e-3),
    Case("erf", lambda x: x.erf(), torch.erf, linear(-30, 30), "[-30, 30]", "abs", 1e-3),
    Case("softplus", lambda x: x.softplus(), F.softplus, linear(-30, 30), "[-30, 30]"),
    Case("softmax (rows of 1000)", lambda x: x.softmax(-1), lambda x: torch.softmax(x, -1),
         rows(1000, -20, 20), "rows of 1000 in [-20, 20]", "abs", 1e-3),
    Case("softmax (rows of 100)", lambda x: x.softmax(-1), lambda x: torch.softmax(x, -1),
         rows(100, -20, 20), "rows of 100 in [-20, 20]", "abs", 1e-3, round_target=50),
    Case("log_softmax (rows of 100)", lambda x: x.log_softmax(-1),
         lambda x: torch.log_softmax(x, -1), rows(100, -20, 20), "rows of 100 in [-20, 20]"),
    Case("layer_norm (768)", lambda x: x.layer_norm((768,)),
         lambda x: F.layer_norm(x, (768,)), normal_rows(768, 3.0), "rows of 768 ~ N(0, 3^2)",
         "abs", 1e-2, n=98_304),
    Case("hardswish", lambda x: x.hardswish(), F.hardswish, linear(-10, 10), "[-10, 10]"),
    Case("leaky_relu", lambda x: x.leaky_relu(0.01), F.leaky_relu, linear(-10, 10),
         "[-10, 10]"),
]

APPROX_CASES: list[Case] = [
    Case("exp, approx=\"square\"", lambda x: x.exp(approx="square"), torch.exp,
         linear(-16, 10), "[-16, 10]", "rel", 1e-3, lambda r: r >= 0.02, "where exp(x) >= 0.02"),
    Case("softmax, approx=\"2quad\"", lambda x: x.softmax(-1, approx="2quad"),
         lambda x: torch.softmax(x, -1), rows(100, -5, 5), "rows of 100 in [-5, 5]"),
    Case("gelu, approx=\"quad\"", lambda x: x.gelu(approx="quad"), F.gelu, linear(-5, 5),
         "[-5, 5]"),
    Case("sigmoid, approx=\"linear\"", lambda x: x.sigmoid(approx="linear"), torch.sigmoid,
         linear(-30, 30), "[-30, 30]"),
]

OUT_OF_RANGE: list[Case] = [
    Case("exp above the range", lambda x: x.exp(), torch.exp, linear(10.4, 30), "[10.4, 30]",
         extra={"show": "max"}),
    Case("exp below the range", lambda x: x.exp(), torch.exp, linear(-30000, -12.5),
         "[-30000, -12.5]"),
    Case("exp, approx=\"square\", [-40, -22]", lambda x: x.exp(approx="square"), torch.exp,
         linear(-40, -22), "[-40, -22]"),
    Case("exp, approx=\"square\", [-100, -40]", lambda x: x.exp(approx="square"), torch.exp,
         linear(-100, -40), "[-100, -40]"),
    Case("reciprocal below 2^-14", lambda x: x.reciprocal(), torch.reciprocal,
         logspace(2.0 ** -16, 2.0 ** -14), "[2^-16, 2^-14]", "rel"),
    Case("sqrt below 2^-14", lambda x: x.sqrt(), torch.sqrt, logspace(2.0 ** -16, 2.0 ** -14),
         "[2^-16, 2^-14]", "abs"),
    Case("log below 2^-14", lambda x: x.log(), torch.log, logspace(2.0 ** -16, 2.0 ** -14),
         "[2^-16, 2^-14]", "abs"),
    Case("sigmoid far out", lambda x: x.sigmoid(), torch.sigmoid, linear(-30000, 30000),
         "[-30000, 30000]"),
    Case("gelu far out", lambda x: x.gelu(), F.gelu, linear(-30000, 30000),
         "[-30000, 30000]", "rel", extra={"min_abs": 30}),
]


def pairs(lo_a, hi_a, lo_b, hi_b, log_a=False):
    """(n/2, 2) inputs: column 0 in [lo_a, hi_a] (log-uniform if log_a), column 1 uniform."""
    def make(n, frac, seed):
        r = max(1, n // 2)
        a = (logspace(lo_a, hi_a) if log_a else linear(lo_a, hi_a))(r, frac, seed)
        b = linear(lo_b, hi_b)(r, frac, seed + 1)
        return torch.stack([a, b], -1)
    return make


def _col(fn):
    return lambda t: fn(t[..., 0], t[..., 1])


# Functions of issue 10 (veil.functions.trig): their own table, "More functions".
MORE_CASES: list[Case] = [
    Case("sin", lambda x: x.sin(), torch.sin, linear(-100, 100), "[-100, 100]", "abs", 1e-3,
         n=20_000),
    Case("sin, large inputs", lambda x: x.sin(), torch.sin, linear(-30000, 30000),
         "[-30000, 30000]", "abs", 1e-3, n=20_000),
    Case("cos", lambda x: x.cos(), torch.cos, linear(-100, 100), "[-100, 100]", "abs", 1e-3,
         n=20_000),
    Case("tan", lambda x: x.tan(), torch.tan, linear(-1.4, 1.4), "[-1.4, 1.4]", "rel", 1e-2,
         lambda r: r.abs() >= 0.1, "where |tan x| >= 0.1", n=20_000),
    Case("atan", lambda x: x.atan(), torch.atan, linear(-1000, 1000), "[-1000, 1000]", "abs",
         1e-3, n=20_000),
    Case("atan2", _col(lambda y, x: torch.atan2(y, x)), _col(torch.atan2),
         pairs(-100, 100, -100, 100), "y, x in [-100, 100]", "abs", 1e-3, n=20_000),
    Case("sinh", lambda x: x.sinh(), torch.sinh, linear(-10, 10), "[-10, 10]", "rel", 1e-3,
         lambda r: r.abs() >= 1, "where |sinh x| >= 1", n=20_000),
    Case("cosh", lambda x: x.cosh(), torch.cosh, linear(-10, 10), "[-10, 10]", "rel", 1e-3,
         n=20_000),
    Case("exp2", lambda x: x.exp2(), torch.exp2, linear(-20, 14), "[-20, 14]", "rel", 1e-3,
         lambda r: r >= 1e-4, "where 2^x >= 1e-4", n=20_000),
    # exp's error is ~2e-4 relative to e^x, so near x = 0 expm1 holds 1e-3 relative only
    # from |expm1 x| ~ 0.3 (measured at 0.1: up to 1.4e-3 at 20,000 points, seed 3)
    Case("expm1", lambda x: x.expm1(), torch.expm1, linear(-16, 10), "[-16, 10]", "rel", 1e-3,
         lambda r: r.abs() >= 0.3, "where |expm1 x| >= 0.3", n=20_000),
    Case("log2", lambda x: x.log2(), torch.log2, logspace(1e-3, 1e4), "[1e-3, 1e4]", "abs",
         1e-3, n=20_000),
    Case("log10", lambda x: x.log10(), torch.log10, logspace(1e-3, 1e4), "[1e-3, 1e4]", "abs",
         1e-3, n=20_000),
    Case("log1p", lambda x: x.log1p(), torch.log1p, linear(-0.99, 1000), "[-0.99, 1000]",
         "abs", 1e-3, n=20_000),
    Case("logaddexp", _col(torch.logaddexp), _col(torch.logaddexp),
         pairs(-20, 20, -20, 20), "a, b in [-20, 20]", "abs", 1e-3, n=20_000),
    Case("pow, tensor exponent", _col(torch.pow), _col(torch.pow),
         pairs(0.1, 10, -2, 2, log_a=True), "base [0.1, 10], exponent [-2, 2]", "rel", 1e-3,
         n=20_000),
]


def measure(case: Case, parties: int = 2, config: Config | None = None, n: int | None = None,
            seed: int = 0, protocol: str = "semi2k") -> dict:
    """Run ``case`` once under veil; return errors, rounds, bytes and time."""
    import veil
    cfg = config or Config()
    x = case.inputs(n or case.n, cfg.frac_bits, seed)
    top = cfg.safe_bound - 2.0 ** -cfg.frac_bits      # what this config can encode
    clipped = bool((x.abs() > top).any())
    x = x.clamp(-top, top)

    def party():
        t = veil.tensor(x if veil.rank() == 0 else None, owner=0)
        s0 = veil.stats()
        t0 = time.perf_counter()
        y = case.secure(t)
        dt = time.perf_counter() - t0
        d = veil.context.stats_since(s0)
        return y.reveal(), dt, d["rounds"], d["bytes_sent"]

    torch.set_num_threads(1)
    res = veil.run(party, parties=parties, seed=seed, config=cfg, protocol=protocol)
    got = res[0][0].double()
    want = case.ref(x)
    err = (got - want).abs()
    out = {"case": case.name, "parties": parties, "frac_bits": cfg.frac_bits, "numel": x.numel(),
           "time_s": max(r[1] for r in res), "rounds": res[0][2],
           "bytes_per_elem": max(r[3] for r in res) / x.numel(),
           "max_abs": err.max().item(), "max_out": got.abs().max().item(),
           "clipped": clipped}
    if case.metric == "rel":
        mask = case.where(want) if case.where else want.abs() > 0
        if "min_abs" in case.extra:
            mask = mask & (x.abs() >= case.extra["min_abs"])
        rel = err[mask] / want[mask].abs()
        out["max_rel"] = rel.max().item() if rel.numel() else 0.0
        if case.target is not None:
            bad = want[mask][rel > case.target].abs()
            out["holds_above"] = bad.max().item() if bad.numel() else 0.0
    out["error"] = out.get("max_rel", out["max_abs"])
    out["meets"] = None if case.target is None else out["error"] <= case.target
    return out


# -- tables ------------------------------------------------------------------------------------
def _fmt(v) -> str:
    return f"{v:.1e}" if v is not None else ""


def target_table(default: list[dict], precise: list[dict], three: list[dict]) -> str:
    head = ("| function | inputs | target | error, default (2 parties) | holds at default? | "
            "error, 3 parties | error, HIGH_PRECISION | rounds (2p) | bytes/elem (2p) | "
            "time (s), elements |\n|---|---|---|---|---|---|---|---|---|---|\n")
    lines = []
    for case, d, t, p in zip([c for c in CASES], default, three, precise):
        if case.target is not None:
            kind = "relative" if case.metric == "rel" else "absolute"
            tgt = f"{kind} <= {case.target:g} {case.where_text}".strip()
        else:
            tgt = "(none)"
        if d["meets"] is None:
            holds = ""
        elif d["meets"]:
            holds = "yes"
        elif "holds_above" in d:
            holds = f"no: only for outputs > {d['holds_above']:.2g}"
        else:
            holds = "no"
        prec = _fmt(p["error"]) + (" (meets)" if p.get("meets") else "") if p else ""
        rt = f"{d['rounds']}" + (f" (target {case.round_target})" if case.round_target else "")
        dom = case.domain + (f" (to {Config().safe_bound:g} at default)" if d["clipped"]
                             else "")
        lines.append(f"| {case.name} | {dom} | {tgt} | {_fmt(d['error'])} | {holds} | "
                     f"{_fmt(t['error'])} | {prec} | {rt} | {d['bytes_per_elem']:.0f} | "
                     f"{d['time_s']:.3f}, {d['numel']:,} |")
    return head + "\n".join(lines) + "\n"


def simple_table(cases: list[Case], rows_: list[dict]) -> str:
    head = ("| variant | inputs | max error | rounds (2p) | bytes/elem (2p) | time (s), "
            "elements |\n|---|---|---|---|---|---|\n")
    lines = []
    for case, r in zip(cases, rows_):
        kind = "relative" if case.metric == "rel" else "absolute"
        lines.append(f"| {case.name} | {case.domain} | {_fmt(r['error'])} {kind} | "
                     f"{r['rounds']} | {r['bytes_per_elem']:.0f} | {r['time_s']:.3f}, "
                     f"{r['numel']:,} |")
    return head + "\n".join(lines) + "\n"


def range_table(rows_: list[dict]) -> str:
    head = ("| case | inputs | max abs error | max rel error | largest output |\n"
            "|---|---|---|---|---|\n")
    lines = []
    for case, r in zip(OUT_OF_RANGE, rows_):
        lines.append(f"| {case.name} | {case.domain} | {_fmt(r['max_abs'])} | "
                     f"{_fmt(r.get('max_rel'))} | {r['max_out']:.3g} |")
    return head + "\n".join(lines) + "\n"


def more_table(default: list[dict], three: list[dict]) -> str:
    head = ("| function | inputs | target | error, default (2 parties) | holds? | "
            "error, 3 parties | rounds (2p) | bytes/elem (2p) | time (s), elements |\n"
            "|---|---|---|---|---|---|---|---|---|\n")
    lines = []
    for case, d, t in zip(MORE_CASES, default, three):
        kind = "relative" if case.metric == "rel" else "absolute"
        tgt = f"{kind} <= {case.target:g} {case.where_text}".strip() if case.target \
            else f"(none; {kind} error shown)"
        holds = "" if d["meets"] is None else ("yes" if d["meets"] else "no")
        if d["meets"] is False and d.get("holds_above"):
            holds = f"no: only for outputs > {d['holds_above']:.2g}"
        lines.append(f"| {case.name} | {case.domain} | {tgt} | {_fmt(d['error'])} | {holds} | "
                     f"{_fmt(t['error'])} | {d['rounds']} | {d['bytes_per_elem']:.0f} | "
                     f"{d['time_s']:.3f}, {d['numel']:,} |")
    return head + "\n".join(lines) + "\n"


def measure_more(scale: float = 1.0) -> str:
    for c in MORE_CASES:
        measure(c, n=64)
    n = [max(1000, int(c.n * scale)) for c in MORE_CASES]
    return more_table([measure(c, n=k) for c, k in zip(MORE_CASES, n)],
                      [measure(c, parties=3, n=k // 5) for c, k in zip(MORE_CASES, n)])


DOCS = pathlib.Path(__file__).resolve().parents[2] / "docs" / "functions.md"
MARKERS = {name: (f"<!-- functions:{name}:begin -->", f"<!-- functions:{name}:end -->")
           for name in ("targets", "approx", "range", "more")}


def write_docs(tables: dict[str, str], path: pathlib.Path = DOCS) -> None:
    text = path.read_text()
    for name, table in tables.items():
        begin, end = MARKERS[name]
        if begin not in text:
            raise SystemExit(f"{path} lacks the markers {begin} / {end}")
        head, rest = text.split(begin, 1)
        _, tail = rest.split(end, 1)
        text = f"{head}{begin}\n{table}{end}{tail}"
    path.write_text(text)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m veil.functions.accuracy", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", action="store_true", help="rewrite docs/functions.md's tables")
    ap.add_argument("--scale", type=float, default=1.0, help="fraction of the points to use")
    ap.add_argument("--only", choices=["more"], help="measure and write only this table")
    args = ap.parse_args(argv)
    if args.only == "more":
        table = measure_more(args.scale)
        print(table)
        if args.docs:
            write_docs({"more": table})
        return 0

    def size(c):
        return max(1000, int(c.n * args.scale))

    for c in CASES:                     # warm up: first-call costs stay out of the times
        measure(c, n=64)

    default = [measure(c, n=size(c)) for c in CASES]
    three = [measure(c, parties=3, n=size(c) // 5) for c in CASES]
    precise = [measure(c, config=HIGH_PRECISION, n=size(c) // 5) if c.metric == "rel"
               and c.target else None for c in CASES]
    tables = {
        "targets": target_table(default, precise, three),
        "approx": simple_table(APPROX_CASES, [measure(c, n=size(c)) for c in APPROX_CASES]),
        "range": range_table([measure(c, n=size(c) // 5) for c in OUT_OF_RANGE]),
        "more": measure_more(args.scale),
    }
    for name, table in tables.items():
        print(f"\n## {name}\n\n{table}")
    if args.docs:
        write_docs(tables)
    return 0


if __name__ == "__main__":
    sys.exit(main())
