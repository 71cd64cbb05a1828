"""Secure inference workloads (issue: secure inference of unmodified PyTorch models).

    python -m veil.bench --group inference --docs           # in-process table
    python -m veil.bench.inference_workloads --docs         # per-party memory, real processes

Two parties: the model at party 0, the input at party 1. Capture, graph broadcast and
weight sharing happen before the timer; the timer covers the secure forward only.
Anchors (from the issue): CrypTen LeNet-5 b16 1.45 s, 113 rounds, 176 MB/party;
ResNet-18 2.8 s, 554 rounds, 235 MB; d128 encoder layer 0.41 s, 160 rounds; BERT-base
layer 2.81 s, 171 rounds, 310 MB (ReLU instead of GELU). SPU: ResNet-18 8.46 s; BERT-base
layer with GELU 7.8 s.

Peak memory per party needs one process per party (in-process parties share one heap):
running this module runs each workload under `veil run -n 2` and reads each party's peak
RSS. Each forward runs twice: the second follows the graph's dealer request plan
(veil.offline.plan), as a server's every later inference does; its time and CPU seconds
per party are reported next to the first's.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import resource
import subprocess
import sys
import tempfile
import time

import torch

import veil
from ..compile import zoo
from .registry import Workload, register_workload

SPECS: dict[str, tuple] = {}          # name -> (build, input shape, seed)


def _model(name):
    build, _, seed = SPECS[name]
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return build().eval()


def _input(name):
    _, shape, seed = SPECS[name]
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _plain(inp):
    with torch.no_grad():
        return inp["model"](inp["x"])


def _secure(inp, timer):
    r = veil.rank()
    m = veil.secure(inp["model"] if r == 0 else None, owner=0,
                    example_input=inp["x"] if r == 0 else None)
    x = veil.tensor(inp["x"] if r == 1 else None, owner=1)
    with timer():
        out = m(x)
    return out


def _register(name, build, shape, note, seed=0):
    SPECS[name] = (build, shape, seed)
    register_workload(Workload(name, "inference",
                               lambda: {"model": _model(name), "x": _input(name)},
                               _plain, _secure, parties=(2,), note=note))


_register("lenet5 b16 28x28", zoo.lenet5, (16, 1, 28, 28),
          "CrypTen: 1.45 s, 113 rounds, 176 MB/party")
_register("resnet18 b1 3x32x32", zoo.ResNet18, (1, 3, 32, 32),
          "CrypTen: 2.8 s, 554 rounds, 235 MB; SPU: 8.46 s")
_register("encoder layer d128 h4 ffn512 s32",
          lambda: zoo.transformer_encoder_layer(128, 4, 512, "relu"), (1, 32, 128),
          "CrypTen: 0.41 s, 160 rounds")
_register("bert-base layer relu d768 s128",
          lambda: zoo.transformer_encoder_layer(768, 12, 3072, "relu"), (1, 128, 768),
          "CrypTen (ReLU): 2.81 s, 171 rounds, 310 MB")
_register("bert-base layer gelu d768 s128",
          lambda: zoo.transformer_encoder_layer(768, 12, 3072, "gelu"), (1, 128, 768),
          "SPU (GELU): 7.8 s")
_register("hf bert layer gelu d768 s128", lambda: zoo.hf_bert_layer(768, 12, 3072),
          (1, 128, 768), "transformers BertLayer from a BertConfig; issue 15: <= 90 MB/party")


# -- peak memory per party: one process per party under `veil run` -------------------------
def _status_mb(field: str) -> float:
    """VmRSS (now) or VmHWM (peak since start or the last reset) of this process, in MB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024 / 1e6
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3


def _reset_peak() -> None:
    try:                       # Linux: "5" resets this process's peak RSS (VmHWM)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def _as_party(name: str, out: pathlib.Path) -> None:
    def job():
        r = veil.rank()
        # each party builds only what it owns, so its peak is its own
        m = veil.secure(_model(name) if r == 0 else None, owner=0,
                        example_input=_input(name) if r == 0 else None)
        x = veil.tensor(_input(name) if r == 1 else None, owner=1)
        setup_peak, before = _status_mb("VmHWM"), _status_mb("VmRSS")
        _reset_peak()
        s0, t0 = veil.stats(), time.perf_counter()
        y = m(x)
        seconds = time.perf_counter() - t0
        d = veil.context.stats_since(s0)
        forward_peak = _status_mb("VmHWM")
        y.reveal(to=1)            # discloses the output to party 1 (benchmark only)
        # The same forward again: the dealer now knows the graph's request plan
        # (veil.offline.plan) and works ahead from the first request, as for a server's
        # every inference after the first.
        c0, t0 = time.process_time(), time.perf_counter()
        again = m(x)
        warm, warm_cpu = time.perf_counter() - t0, time.process_time() - c0
        again.reveal(to=1)        # the same output, to party 1 only
        return {"rss_before_mb": before, "forward_peak_mb": forward_peak,
                "peak_mb": max(setup_peak, forward_peak), "seconds": seconds,
                "warm_seconds": warm, "warm_cpu_s": warm_cpu,
                "bytes_sent": d["bytes_sent"], "rounds": d["rounds"]}
    res = veil.run(job, parties=2, seed=0)
    rank = int(os.environ["VEIL_PARTY"])
    (out / f"{rank}.json").write_text(json.dumps(res[rank]))


def memory_table() -> str:
    rows = ["| workload (2 parties, `veil run`) | time, 1st / 2nd forward (s) | CPU s/party, "
            "2nd | peak RSS party 0 / 1 (MB) | growth in the forward, party 0 / 1 (MB) | "
            "bytes sent/party | rounds |",
            "|---|---|---|---|---|---|---|"]
    for name in SPECS:
        with tempfile.TemporaryDirectory(prefix="veil-bench-mem-") as tmp:
            cmd = [sys.executable, "-m", "veil.cli", "run", "-n", "2", "--insecure-seed", "-m",
                   "veil.bench.inference_workloads", "--as-party", name, "--out", tmp]
            subprocess.run(cmd, check=True, timeout=900, stdout=subprocess.DEVNULL)
            p = [json.loads((pathlib.Path(tmp) / f"{r}.json").read_text()) for r in range(2)]
        grow = [max(0.0, q["forward_peak_mb"] - q["rss_before_mb"]) for q in p]
        rows.append(f"| {name} | {max(q['seconds'] for q in p):.3f} / "
                    f"{max(q['warm_seconds'] for q in p):.3f} | "
                    f"{p[0]['warm_cpu_s']:.2f} / {p[1]['warm_cpu_s']:.2f} | "
                    f"{p[0]['peak_mb']:.0f} / {p[1]['peak_mb']:.0f} | "
                    f"{grow[0]:.0f} / {grow[1]:.0f} | "
                    f"{max(q['bytes_sent'] for q in p):,} | {max(q['rounds'] for q in p)} |")
        print(rows[-1], flush=True)
    return "\n".join(rows) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m veil.bench.inference_workloads",
                                 description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", action="store_true", help="rewrite the memory table in "
                    "docs/benchmarks.md")
    ap.add_argument("--as-party", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.as_party:
        torch.set_num_threads(1)
        _as_party(args.as_party, pathlib.Path(args.out))
        return 0
    from .runner import host_line
    torch.set_num_threads(1)            # what each party process uses (see _as_party)
    table = memory_table() + f"\nhost: {host_line()}; one process per party and the dealer\n"
    print(table)
    if args.docs:
        # not `from .__main__ import DOCS`: run as __main__, this module would then be
        # imported a second time and register its workloads twice
        docs = pathlib.Path(__file__).resolve().parents[2] / "docs" / "benchmarks.md"
        begin, end = "<!-- bench:inference-memory:begin -->", "<!-- bench:inference-memory:end -->"
        text = docs.read_text()
        head, rest = text.split(begin, 1)
        _, tail = rest.split(end, 1)
        docs.write_text(f"{head}{begin}\n{table}{end}{tail}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
