"""`python -m veil.bench` (or `veil bench`): run the benchmark and print the table.

    python -m veil.bench                      # every workload, 2 and 3 parties
    python -m veil.bench --group core         # one area
    python -m veil.bench --only relu          # names containing 'relu'
    python -m veil.bench --docs               # also rewrite the table in docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import importlib
import json
import pathlib
import sys

import torch

from . import workloads  # noqa: F401  (registers every workload)
from ..comm.profile import format_profile
from ..config import Config
from .docs_section import write_section
from .registry import WORKLOADS
from .runner import format_table, host_line, run_workload

DOCS = pathlib.Path(__file__).resolve().parents[2] / "docs" / "benchmarks.md"
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"

# Groups with their own runner and table: group -> (module, what its main() is given).
OWN_RUNNERS = {
    "he": (".he_workloads", "nothing"),         # CKKS inference
    "psi": (".psi_bench", "argv"),              # two OS processes per size
    "models": (".model_workloads", "docs"),     # whole models under `veil run`
    "fl": ("..fl.bench", "argv"),               # Flower apps, not veil.run
    "dp": ("..dp.bench", "argv"),               # DP-SGD on shares: accuracy vs epsilon
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="veil bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--group", help="only workloads of this group")
    ap.add_argument("--only", help="only workloads whose name contains this")
    ap.add_argument("--parties", type=int, nargs="*", help="party counts (default per workload)")
    ap.add_argument("--json", default="bench-results/bench.json", help="where to save results")
    ap.add_argument("--docs", action="store_true", help="rewrite the table in docs/benchmarks.md")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--profile", action="store_true",
                    help="also print party 0's time per kernel: compute, waiting on peers, "
                         "waiting on the dealer, sending (veil.Config(profile=True))")
    ap.add_argument("--repeat", type=int, default=3,
                    help="runs per workload; the fastest is reported (default 3)")
    args = ap.parse_args(argv)
    if args.group in OWN_RUNNERS:
        return _run_own(args.group, sys.argv[1:] if argv is None else argv, args.docs)
    torch.set_num_threads(args.threads)
    rows = []
    for w in WORKLOADS.values():
        if args.group and w.group != args.group:
            continue
        if args.only and args.only not in w.name:
            continue
        for n in args.parties or w.parties:
            row = run_workload(w, n, repeat=args.repeat,
                               config=Config(profile=True) if args.profile else None)
            rows.append(row)
            print(format_table([row]).splitlines()[-1], flush=True)
            if args.profile:
                print(format_profile(row["profile"]), flush=True)
    if not rows:
        print("no workload matched", file=sys.stderr)
        return 2
    table = format_table(rows)
    print("\n" + table + f"\nhost: {host_line()}")
    out = pathlib.Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"host": host_line(), "rows": rows}, indent=1))
    if args.docs:
        _write_docs(table, args.group, args.repeat)
    return 0


def _run_own(group: str, argv: list[str], docs: bool) -> int:
    module, given = OWN_RUNNERS[group]
    run = importlib.import_module(module, __package__).main
    if given == "nothing":
        return run()
    return run(argv if given == "argv" else (["--docs"] if docs else []))


def _write_docs(table: str, group: str | None, repeat: int = 1) -> None:
    begin = BEGIN if group is None else f"<!-- bench:{group}:begin -->"
    end = END if group is None else f"<!-- bench:{group}:end -->"
    runs = f" (fastest of {repeat} runs)" if repeat > 1 else ""
    write_section(f"{table}\nhost: {host_line()}{runs}\n", begin, end, docs=DOCS)


if __name__ == "__main__":
    sys.exit(main())
