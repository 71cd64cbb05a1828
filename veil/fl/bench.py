"""`python -m veil.bench --group fl`: federated learning benchmark on scikit-learn data.

Per task (digits over 20 and 100 clients, breast_cancer over 10; Dirichlet α = 0.5
non-IID), softmax regression, 1 local epoch of SGD per round:

* plain Flower FedAvg (flwr's own strategy) vs veil ``SecureFedAvg``: accuracy per round,
  the largest weight difference (must be float32 rounding), time and bytes per round;
* the same two with 30 % of the sampled clients failing mid-round (crash in training,
  i.e. after the key exchange, before the masked input) every round;
* veil secure aggregation + client-level DP-FedAvg with the distributed discrete Gaussian
  at ε ∈ {1, 3, 8}, δ = 1e-5 over the run's rounds (settings in ``DP``; RDP accounting,
  noise calibrated to the target);
* SecAgg+ (``neighbours=k``, k and t from ``graph.choose_parameters``) and Flower's own
  SecAgg+ (legacy ``SecAggPlusWorkflow``, same k + 1 shares and t), with and without
  dropouts;
* ``mpc2``: aggregator-MPC mode with 2 veil (semi2k) aggregators, no DP.

All runs use ``LocalGrid`` (Flower's message path in one process, protobuf round trip per
message) so the numbers measure the protocol, not Ray's scheduling on a shared 2-core
host; ``tests/test_fl_simulation.py`` runs the same apps on the Ray engine. Bytes are
payload bytes counted at the grid for every message in both directions. Writes
docs/fl.md's table (``--docs``) and one accuracy-per-round PNG per task.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import random
import time

import torch
from flwr.app import ArrayRecord
from flwr.serverapp.strategy import FedAvg

from ..docs_markers import replace_marked
from . import flower_secaggplus, tasks
from .flower import DPConfig, LocalAggregators, LocalGrid, SecureFedAvg, secagg_mod
from .flower.strategy import _nbytes
from .secagg import graph

ROOT = pathlib.Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "fl.md"
BEGIN, END = "<!-- bench:fl:begin -->", "<!-- bench:fl:end -->"

TASKS = {   # name: dataset, clients, rounds (slowest last: docs are written after each)
    "breast_cancer-10": ("breast_cancer", 10, 20),
    "digits-20": ("digits", 20, 20),
    "digits-100": ("digits", 100, 10),
}
# DP-FedAvg settings, picked by a plaintext sweep (q ∈ {0.5, 1}, rounds ∈ {5, 10}, local
# epochs ∈ {1, 5}, C ∈ {0.5, 1, 2}; see docs/fl.md): every client in every round, few
# rounds of more local work, C below the median update norm. Distributed discrete
# Gaussian noise (mechanism="ddg"); with q = 1 its accounting is exact.
DP = dict(sample_rate=1.0, rounds=10, epochs=5, clip=0.5, server_lr=1.0)
DIMS = {"digits": (64, 10), "breast_cancer": (30, 2)}
EPSILONS = (1.0, 3.0, 8.0)
DROP = 0.3
CORRUPT = 0.1       # clients colluding with the server, for SecAgg+'s k and t
KINDS = ("plain", "secure", "secagg+", "flower-secagg+", "mpc2",
         "plain-drop", "secure-drop", "secagg+-drop", "flower-secagg+-drop")


class CountingGrid(LocalGrid):
    """LocalGrid that counts payload bytes in both directions (one chokepoint for all)."""

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.down = self.up = 0

    def push_messages(self, messages):
        messages = list(messages)
        self.down += sum(_nbytes(m.content) for m in messages)
        return super().push_messages(messages)

    def pull_messages(self, ids):
        out = super().pull_messages(ids)
        self.up += sum(_nbytes(m.content) for m in out if m.has_content())
        return out


def _failer(rate: float, seed: int):
    """Deterministic 'this node crashes this round' so plain and secure runs see the same."""
    def fail(node, rnd):
        return rate > 0 and random.Random(f"{seed}|{node}|{rnd}").random() < rate
    return fail


def run_one(task: str, kind: str, eps: float | None = None, seed: int = 0) -> dict:
    ds, n, rounds = TASKS[task]
    epochs = 1
    if eps is not None:
        rounds, epochs = DP["rounds"], DP["epochs"]
    f, c = DIMS[ds]
    parts, test = tasks.partition(ds, n, alpha=0.5, seed=seed)
    drop = kind.endswith("drop")
    fail = _failer(DROP if drop else 0.0, seed)
    secure = not kind.startswith("plain")
    k, t = graph.choose_parameters(n, dropout=DROP, corrupt=CORRUPT)
    if kind.startswith("flower"):
        app = flower_secaggplus.client_app(parts, f, c, lr=0.1, fail=fail)
    else:
        app = tasks.client_app(parts, f, c, lr=0.1, fail=fail, epochs=epochs,
                               mods=[secagg_mod] if secure else [])
    grid = CountingGrid(app, n)
    init = ArrayRecord(tasks.model(f, c).state_dict())
    acc = []

    def evaluate(rnd, arrays):
        net = tasks.model(f, c)
        net.load_state_dict(arrays if isinstance(arrays, dict) else arrays.to_torch_state_dict())
        acc.append(tasks.accuracy(net, test))

    if kind.startswith("flower"):
        # Flower's own SecAgg+ (legacy path), same k + 1 shares and threshold t as veil's.
        t0 = time.perf_counter()
        arrays = flower_secaggplus.run(grid, tasks.model(f, c).state_dict(), rounds, evaluate,
                                       num_shares=min(k + 1, n), threshold=t)
        secs = time.perf_counter() - t0
        return _row(task, kind, eps, rounds, n, acc, secs, grid, 0,
                    [torch.from_numpy(a) for a in arrays], k=k, t=t)
    if not secure:
        strat = FedAvg(fraction_evaluate=0.0, min_available_nodes=n)
    elif kind.startswith("mpc"):
        strat = SecureFedAvg(min_available_nodes=n, aggregators=LocalAggregators(2))
    elif kind.startswith("secagg+"):
        strat = SecureFedAvg(threshold=t, neighbours=k if k < n - 1 else None,
                             min_available_nodes=n)
    elif eps is None:
        strat = SecureFedAvg(threshold=0.5, min_available_nodes=n)
    else:
        # m = half the expected sample; a round needs m + 1 inputs (see DPConfig).
        q = DP["sample_rate"]
        strat = SecureFedAvg(threshold=0.5, min_available_nodes=n, dp=DPConfig(
            clip_norm=DP["clip"], sample_rate=q, min_clients=max(2, int(q * n) // 2),
            target_epsilon=eps, delta=1e-5, mechanism="ddg", server_lr=DP["server_lr"]))
    t0 = time.perf_counter()
    res = strat.start(grid=grid, initial_arrays=init, num_rounds=rounds, evaluate_fn=evaluate)
    secs = time.perf_counter() - t0
    sd = res.arrays.to_torch_state_dict()
    skipped = sum("skipped" in h for h in getattr(strat, "history", []))
    extra = {"k": k, "t": t} if kind.startswith("secagg+") else {}
    row = _row(task, kind, eps, rounds, n, acc, secs, grid, skipped, list(sd.values()), **extra)
    if eps is not None:
        row["noise_multiplier"] = strat.noise_multiplier
        row["final_epsilon"] = strat.history[-1].get("epsilon")
    return row


def _row(task, kind, eps, rounds, n, acc, secs, grid, skipped, tensors, **extra) -> dict:
    return {"task": task, "kind": kind, "eps": eps, "rounds": rounds, "clients": n,
            "skipped_rounds": skipped, "accuracy": acc[-1], "curve": acc,
            "sec_per_round": secs / rounds,
            "bytes_per_round_per_client": (grid.down + grid.up) / rounds / n,
            "weights": torch.cat([v.flatten() for v in tensors]).double().tolist(), **extra}


def run_task(task: str, dp: bool = True) -> list[dict]:
    rows = [run_one(task, k) for k in KINDS]
    if dp:
        rows += [run_one(task, "secure+dp", eps) for eps in EPSILONS]
    plain = {r["kind"]: r for r in rows if r["kind"].startswith("plain")}
    for r in rows:
        if r["kind"].startswith("plain") or r["eps"] is not None:
            continue
        base = plain["plain-drop" if r["kind"].endswith("drop") else "plain"]
        wa, wb = torch.tensor(base["weights"]), torch.tensor(r["weights"])
        r["max_weight_diff_vs_plain"] = float((wa - wb).abs().max())
    for r in rows:
        if r["kind"] in plain and r["kind"] == "plain":
            continue
        base = plain["plain-drop" if r["kind"].endswith("drop") else "plain"]
        r["time_ratio"] = r["sec_per_round"] / base["sec_per_round"]
        r["bytes_ratio"] = r["bytes_per_round_per_client"] / base["bytes_per_round_per_client"]
    return rows


def table(rows) -> str:
    out = ["| task | run | k, t | final acc | max Δw vs plain | skipped rounds | s/round | "
           "× plain | bytes/client/round | × plain | z | ε (δ=1e-5) |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        d = r.get("max_weight_diff_vs_plain")
        out.append("| {task} | {kind}{e} | {kt} | {acc:.3f} | {d} | {sk} | {s:.2f} | {tr} | {b:,.0f} | {br} | "
                   "{z} | {eps} |".format(
                       task=r["task"], kind=r["kind"], e=f" ε={r['eps']:g}" if r["eps"] else "",
                       kt=f"{r['k']}, {r['t']}" if "k" in r else "",
                       acc=r["accuracy"], d=f"{d:.1e}" if d is not None else "",
                       # Flower's workflow logs a halted round but does not report it.
                       sk="" if r["kind"].startswith(("plain", "flower")) else r["skipped_rounds"],
                       s=r["sec_per_round"], tr=f"{r['time_ratio']:.1f}" if "time_ratio" in r else "",
                       b=r["bytes_per_round_per_client"],
                       br=f"{r['bytes_ratio']:.1f}" if "bytes_ratio" in r else "",
                       z=f"{r['noise_multiplier']:.2f}" if "noise_multiplier" in r else "",
                       eps=f"{r['final_epsilon']:.2f}" if r.get("final_epsilon") else ""))
    return "\n".join(out)


def plot(rows, path: pathlib.Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    for r in rows:
        label = r["kind"] + (f" ε={r['eps']:g}" if r["eps"] else "")
        ax.plot(range(len(r["curve"])), r["curve"], label=label,
                linestyle="--" if r["kind"].startswith("plain") else "-")
    ax.set_xlabel("round")
    ax.set_ylabel("test accuracy")
    ax.set_title(rows[0]["task"] + " (Dirichlet α=0.5)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="veil bench --group fl", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", nargs="*", default=list(TASKS), choices=list(TASKS))
    ap.add_argument("--no-dp", action="store_true", help="skip the DP runs")
    ap.add_argument("--json", default="bench-results/fl.json")
    ap.add_argument("--docs", action="store_true", help="write docs/fl.md's table and plots")
    ap.add_argument("--table-from", help="only re-render the table from a --json file")
    args, _ = ap.parse_known_args(argv)
    if args.table_from:
        rows = json.loads(pathlib.Path(args.table_from).read_text())
        print(table(rows))
        if args.docs:
            _write_docs(rows)
        return 0
    torch.set_num_threads(1)
    import logging
    import os
    logging.getLogger("flwr").setLevel(logging.WARNING)     # Flower's per-stage INFO lines
    print(f"host load {os.getloadavg()[0]:.1f}", flush=True)
    rows = []
    for t in args.tasks:
        tr = run_task(t, dp=not args.no_dp)
        rows += tr
        print(table(tr), flush=True)
        plot(tr, (ROOT / "docs" / "img" if args.docs else pathlib.Path("bench-results"))
             / f"fl_{t}.png")
        # Written after every task, so a long run leaves its finished tasks behind.
        out = pathlib.Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps([{k: v for k, v in r.items() if k != "weights"}
                                   for r in rows], indent=1))
        if args.docs:
            _write_docs(rows)
    return 0


def _write_docs(rows) -> None:
    text = replace_marked(DOCS.read_text(), BEGIN, END, table(rows) + "\n")
    if text is None:
        raise SystemExit(f"{DOCS} has no {BEGIN} … {END} section")
    DOCS.write_text(text)


if __name__ == "__main__":
    raise SystemExit(main())
