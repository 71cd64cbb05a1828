"""Loopback, LAN and WAN side by side, and the cost model checked against them.

    python -m veil.bench.netem_bench             # the table
    python -m veil.bench.netem_bench --docs      # also rewrite it in docs/benchmarks.md

Each workload runs in-process three times over: on loopback (no emulation), then with
every link emulated as LAN (0.5 ms / 1 Gbit/s) and WAN (40 ms / 100 Mbit/s) by
`veil.comm.netem`. The cost model predicts the emulated time from the loopback run's
time and its exact counts:

    predicted = loopback time + (online rounds + dealer rounds) × latency
                + max(bytes one party sends, bytes one party gets from the dealer) / bandwidth

and the table shows how far the measurement is from it.
"""

from __future__ import annotations

import argparse
import sys

import torch

from ..comm.netem import Network, predict
from ..config import Config
from ..docs_markers import markdown_table
from . import workloads  # noqa: F401  (registers every workload)
from .registry import WORKLOADS
from .runner import host_line, run_workload

NETWORKS = ("lan", "wan")
DEFAULT = ("relu 100k", "x > y 100k", "matmul 256x256", "mlp 784-512-512-10 b64")


def measure(name: str, parties: int = 2, repeat: int = 3) -> dict:
    """Loopback (fastest of ``repeat``) and emulated times of workload ``name``, with the
    model's predictions."""
    w = WORKLOADS[name]
    base = run_workload(w, parties, repeat=repeat)
    row = {"workload": name, "parties": parties, "loopback_s": base["time_s"],
           "rounds": base["rounds"], "offline_rounds": base["offline_rounds"],
           "bytes": base["bytes_sent_per_party"], "link_bytes": max(
               base["bytes_sent_per_party"], base["offline_link_bytes"])}
    for net in NETWORKS:
        model = Network.parse(net)
        got = run_workload(w, parties, repeat=1, config=Config(network=net))
        row[f"{net}_s"] = got["time_s"]
        row[f"{net}_predicted_s"] = predict(base["time_s"],
                                            base["rounds"] + base["offline_rounds"],
                                            row["link_bytes"], model)
    return row


def _network_columns(net: str) -> list:
    def predicted(r):
        got, want = r[f"{net}_s"], r[f"{net}_predicted_s"]
        return f"{want:.3f} ({(got - want) / want:+.0%})"
    return [(f"{net.upper()} (s)", lambda r: f"{r[f'{net}_s']:.3f}"),
            (f"{net.upper()} predicted", predicted)]


TABLE_COLUMNS = [
    ("workload", lambda r: r["workload"]),
    ("parties", lambda r: r["parties"]),
    ("rounds (+dealer)", lambda r: f"{r['rounds']} (+{r['offline_rounds']})"),
    ("bytes sent/party", lambda r: f"{r['bytes']:,}"),
    ("loopback (s)", lambda r: f"{r['loopback_s']:.3f}"),
] + [col for net in NETWORKS for col in _network_columns(net)]


def format_table(rows: list[dict]) -> str:
    return markdown_table(TABLE_COLUMNS, rows) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m veil.bench.netem_bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="*", default=list(DEFAULT), help="workload names")
    ap.add_argument("--parties", type=int, default=2)
    ap.add_argument("--docs", action="store_true", help="rewrite the table in docs")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    rows = []
    for name in args.only:
        rows.append(measure(name, args.parties))
        print(format_table(rows[-1:]).splitlines()[-1], flush=True)
    table = format_table(rows)
    print("\n" + table + f"\nhost: {host_line()}")
    if args.docs:
        from .__main__ import _write_docs
        _write_docs(table, "netem")
    return 0


if __name__ == "__main__":
    sys.exit(main())
