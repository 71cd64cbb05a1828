"""Three-party benchmark: rep3 (no dealer) next to semi2k at 3 parties (with a dealer).

    python -m veil.bench.rep3_workloads            # print the tables
    python -m veil.bench.rep3_workloads --docs     # also rewrite its section of docs/benchmarks.md
    python -m veil.bench.rep3_workloads --big      # add ResNet-18 and a BERT-base layer

The workloads are the registered ones (core, functions, inference), each run in-process
at 3 parties under both protocols, and the core ones again as three real processes
(`veil run -n 3 --protocol P`, TLS over loopback). Times are the secure part only, the
maximum over parties, fastest of ``--repeat`` runs; bytes are the most any party sent.
Not a timed test: the figures depend on the host, and shared hosts are noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile

import torch

import veil

from . import workloads  # noqa: F401  (registers every workload)
from .docs_section import write_section
from .registry import WORKLOADS
from .runner import _party, host_line, run_workload

BASE = ("mul 1M", "matmul 256x256", "relu 100k", "x > y 100k", "exp 100k", "reciprocal 100k",
        "softmax 1000x100", "mlp 784-512-512-10 b64", "lenet5 b16 28x28")
BIG = ("resnet18 b1 3x32x32", "bert-base layer gelu d768 s128")
NET = ("mul 1M", "matmul 256x256", "relu 100k", "mlp 784-512-512-10 b64")
PROTOCOLS = ("semi2k", "rep3")
DOCS = pathlib.Path(__file__).resolve().parents[2] / "docs" / "benchmarks.md"
BEGIN, END = "<!-- bench:rep3:begin -->", "<!-- bench:rep3:end -->"
# Anchors quoted in issue 12 (3 parties; CrypTen and SPU measured by the author).
ANCHORS = {"relu 100k": "CrypTen 0.46 s / 16 rounds",
           "softmax 1000x100": "CrypTen 2.97 s / 251 rounds",
           "mlp 784-512-512-10 b64": "CrypTen 0.57 s / 53 rounds",
           "mul 1M": "SPU ABY3: 1 round, 8 B (+ trunc 3 rounds, 32 B)",
           "x > y 100k": "SPU ABY3 a2b: 8 rounds, 112 B",
           "resnet18 b1 3x32x32": "SPU ABY3 9.29 s"}


def _row(name: str, protocol: str, repeat: int) -> dict:
    return run_workload(WORKLOADS[name], 3, repeat=repeat, protocol=protocol)


def _table(names, repeat: int) -> str:
    head = ("| workload (3 parties) | semi2k-3 (s) | rep3 (s) | rep3 / semi2k | rounds "
            "semi2k / rep3 | bytes/party semi2k / rep3 | rep3 max abs err | anchor |\n"
            "|---|---|---|---|---|---|---|---|\n")
    lines = []
    for name in names:
        s, r = (_row(name, p, repeat) for p in PROTOCOLS)
        err = "n/a" if r["max_abs_error"] is None else f"{r['max_abs_error']:.2e}"
        lines.append(f"| {name} | {s['time_s']:.3f} | {r['time_s']:.3f} | "
                     f"{r['time_s'] / s['time_s']:.2f}x | {s['rounds']} / {r['rounds']} | "
                     f"{s['bytes_sent_per_party']:,} / {r['bytes_sent_per_party']:,} | {err} | "
                     f"{ANCHORS.get(name, '')} |")
        print(lines[-1], flush=True)
    return head + "\n".join(lines) + "\n"


# -- under `veil run -n 3 --protocol P` ------------------------------------------------------
def _party_main(out: pathlib.Path) -> None:
    torch.set_num_threads(1)
    mine = {}
    for name in NET:
        w = WORKLOADS[name]
        inp = w.make()
        _, rec = next(x for x in veil.run(_party, w, inp, {}, parties=3, seed=0) if x is not None)
        mine[name] = {"time": rec["time"], "stats": rec["stats"]}
    (out / f"net-{os.environ['VEIL_PARTY']}.json").write_text(json.dumps(mine))


def _net(protocol: str, out: pathlib.Path) -> list[dict]:
    cmd = [sys.executable, "-m", "veil.cli", "run", "-n", "3", "--protocol", protocol, "-m",
           "veil.bench.rep3_workloads", "--as-party", "--out", str(out)]
    subprocess.run(cmd, check=True, timeout=900)
    return [json.loads((out / f"net-{r}.json").read_text()) for r in range(3)]


def _net_table() -> str:
    head = ("| workload (3 processes, TLS) | semi2k-3 (s) | rep3 (s) | rep3 / semi2k | "
            "rounds semi2k / rep3 | bytes/party semi2k / rep3 |\n|---|---|---|---|---|---|\n")
    with tempfile.TemporaryDirectory(prefix="veil-bench-rep3-") as tmp:
        res = {p: _net(p, pathlib.Path(tmp)) for p in PROTOCOLS}
    lines = []
    for name in NET:
        t = {p: max(x[name]["time"] for x in res[p]) for p in PROTOCOLS}
        rounds = {p: max(x[name]["stats"]["rounds"] for x in res[p]) for p in PROTOCOLS}
        sent = {p: max(x[name]["stats"]["bytes_sent"] for x in res[p]) for p in PROTOCOLS}
        lines.append(f"| {name} | {t['semi2k']:.3f} | {t['rep3']:.3f} | "
                     f"{t['rep3'] / t['semi2k']:.2f}x | {rounds['semi2k']} / {rounds['rep3']} | "
                     f"{sent['semi2k']:,} / {sent['rep3']:,} |")
    return head + "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m veil.bench.rep3_workloads", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", action="store_true", help="rewrite its section of "
                    "docs/benchmarks.md")
    ap.add_argument("--big", action="store_true", help="also ResNet-18 and a BERT-base layer")
    ap.add_argument("--no-net", action="store_true", help="skip the `veil run` table")
    ap.add_argument("--only", help="only workloads whose name contains this")
    ap.add_argument("--repeat", type=int, default=2, help="runs per workload (fastest kept)")
    ap.add_argument("--as-party", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.as_party:
        _party_main(pathlib.Path(args.out))
        return 0
    torch.set_num_threads(1)
    load = os.getloadavg()[0]
    names = [n for n in BASE + (BIG if args.big else ()) if not args.only or args.only in n]
    text = _table(names, args.repeat)
    if not args.no_net:
        net = _net_table()
        print(net, flush=True)
        text += "\n" + net
    text += f"\nhost: {host_line()}; load average at start {load:.1f}\n"
    print(text)
    if args.docs:
        _write_docs(text)
    return 0


SECTION = f"""
## Three parties: rep3 next to semi2k

Produced by `python -m veil.bench.rep3_workloads --docs` (issue 12). rep3 is replicated
secret sharing among exactly three parties with an honest majority and **no dealer**
(docs/protocols.md); semi2k-3 is semi2k at three parties with its trusted dealer (the
dealer's generation time is inside semi2k's figures, its traffic is not in the bytes
column). Rounds and bytes are machine-independent and exact (`tests/test_costs.py`);
times are from the shared host below and move with its load. Anchors are the figures
quoted in the issue.

{BEGIN}
{END}
"""


def _write_docs(body: str) -> None:
    write_section(body, BEGIN, END, SECTION.split(BEGIN)[0])


if __name__ == "__main__":
    sys.exit(main())
