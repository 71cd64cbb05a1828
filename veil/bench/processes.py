"""Benchmark rows under `veil run -n N`: one OS process per party (and the dealer).

    python -m veil.bench.processes --group training            # every training row
    python -m veil.bench.processes --only "logreg breast_cancer 10" --repeat 5
    python -m veil.bench.processes --only "mlp 784-512-512-10 b64" --profile

The in-process rows (veil.bench.runner) run the parties as threads of one Python process:
they share one interpreter lock, so each round's Python work is paid once per party, one
after the other. Here every party is its own process, started as a user starts it
(``python -m veil.cli run -n N -m veil.bench.processes --as-party NAME``), over mutually
authenticated TLS on loopback, each with one torch thread; the same registered workload
(veil.bench.registry), the same timer around the secure part only, the same counts.

Each party runs the workload ``--repeat`` times inside one `veil run` (every `veil.run`
call is a fresh run over the same connections) and writes its records as JSON; the
driver keeps the fastest run (its time: the maximum over parties), checks that every run
moved the same bytes and rounds, and reports the host load. There is no fixed seed
(real parties refuse one: it is a key), so masks differ from the in-process run; the
error against torch is measured on the fastest run's revealed output.

`veil_run` and `write_record` are the plumbing shared with the other process-based
benchmarks (veil.bench.model_workloads, veil.bench.net_workloads).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import subprocess
import sys
import tempfile

import torch

import veil

from ..config import Config
from ..docs_markers import markdown_table
from .registry import WORKLOADS, Workload


# -- plumbing shared by the process-based benchmarks --------------------------------------
def veil_run(module: str, party_argv: list[str], parties: int, cli: list[str] = (),
             timeout: float = 3600, quiet: bool = True) -> list[dict]:
    """Run ``python -m veil.cli run -n parties *cli -m module *party_argv --out DIR`` and
    return each party's record (``DIR/<rank>.json``, written by `write_record`), in rank
    order. ``quiet`` drops the parties' stdout (their errors still reach stderr)."""
    with tempfile.TemporaryDirectory(prefix="veil-bench-") as tmp:
        cmd = [sys.executable, "-m", "veil.cli", "run", "-n", str(parties), *cli, "-m",
               module, *party_argv, "--out", tmp]
        subprocess.run(cmd, check=True, timeout=timeout,
                       stdout=subprocess.DEVNULL if quiet else None)
        return [json.loads((pathlib.Path(tmp) / f"{r}.json").read_text())
                for r in range(parties)]


def write_record(out: str | os.PathLike, rec) -> int:
    """Party side of `veil_run`: this party's record as ``out/<rank>.json``; its rank."""
    rank = int(os.environ["VEIL_PARTY"])
    (pathlib.Path(out) / f"{rank}.json").write_text(json.dumps(rec))
    return rank


# -- a registered workload, party side -----------------------------------------------------
def _config(w: Workload, profile: bool) -> Config | None:
    config = w.extra.get("config")
    if profile:
        config = dataclasses.replace(config or Config(), profile=True)
    return config


def party_runs(w: Workload, parties: int, repeat: int, profile: bool = False) -> list[dict]:
    """This party's records of ``repeat`` fresh runs of ``w`` (under `veil run`)."""
    from .runner import _party
    inp = w.make()
    expected = None
    runs = []
    for _ in range(repeat):
        # No seed: real parties refuse one (a seed is a key); fresh randomness each run.
        value, rec = next(x for x in veil.run(_party, w, inp, {}, parties=parties,
                                               config=_config(w, profile)) if x is not None)
        err = None
        if isinstance(value, torch.Tensor):          # party 0: the revealed output
            if expected is None:
                expected = w.plain(inp)
            if isinstance(expected, torch.Tensor):
                err = (value.double() - expected.double()).abs().max().item()
        runs.append({"time": rec["time"], "cpu": rec.get("cpu"), "stats": rec["stats"],
                     "err": err, "profile": rec.get("profile")})
    return runs


# -- driver ------------------------------------------------------------------------------------
def run_workload_processes(w: Workload, parties: int, repeat: int = 3, profile: bool = False,
                           cli: list[str] = ()) -> dict:
    """One row for ``w`` at ``parties`` under `veil run`: the fastest of ``repeat`` runs.

    Keys as `veil.bench.runner.run_workload`'s row, plus ``repeat``, ``cpu_s`` (each
    party's CPU seconds in the timed part of the fastest run), ``load`` (1-minute load
    average at the start and the end) and ``profile`` (party 0's, with ``profile``).
    """
    from .runner import _plain_time, count_fields, timed_fields
    load0 = os.getloadavg()[0]
    argv = ["--as-party", w.name, "--parties", str(parties), "--repeat", str(repeat),
            *(["--profile"] if profile else [])]
    recs = veil_run("veil.bench.processes", argv, parties, list(cli))
    load1 = os.getloadavg()[0]
    stats = [[run["stats"] for run in rec] for rec in recs]
    for r, party in enumerate(stats):
        if any(s != party[0] for s in party):
            raise RuntimeError(f"{w.name}: party {r}'s traffic differs between runs")
    times = [max(rec[i]["time"] for rec in recs) for i in range(repeat)]
    best = min(range(repeat), key=times.__getitem__)
    plain_s, _ = _plain_time(w, w.make())
    secure_s = times[best]
    runs = [rec[best] for rec in recs]
    return {
        "workload": w.name, "group": w.group, "parties": parties,
        "protocol": os.environ.get("VEIL_PROTOCOL") or "semi2k", "mode": "veil run",
        **timed_fields(secure_s, plain_s), "times_s": times, "repeat": repeat,
        **count_fields([run["stats"] for run in runs]),
        "max_abs_error": runs[0]["err"], "cpu_s": [run["cpu"] for run in runs],
        "load": (load0, load1), "note": w.note, "profile": runs[0]["profile"],
    }


TABLE_COLUMNS = [
    ("workload", lambda r: r["workload"]),
    ("parties", lambda r: r["parties"]),
    ("time (s), fastest", lambda r: f"{r['time_s']:.3f}"),
    ("of N", lambda r: r["repeat"]),
    # the first run of a process pays its warm-up (lazy imports, first allocations)
    ("first run (s)", lambda r: f"{r['times_s'][0]:.3f}"),
    ("CPU s/party", lambda r: " / ".join(f"{c:.2f}" for c in r["cpu_s"])),
    ("bytes sent/party", lambda r: f"{r['bytes_sent_per_party']:,}"),
    ("rounds", lambda r: r["rounds"]),
    ("offline bytes", lambda r: f"{r['offline_bytes']:,}"),
    ("max abs err", lambda r: "n/a" if r["max_abs_error"] is None
     else f"{r['max_abs_error']:.2e}"),
    ("load, start / end", lambda r: f"{r['load'][0]:.1f} / {r['load'][1]:.1f}"),
]


def format_table(rows: list[dict]) -> str:
    return markdown_table(TABLE_COLUMNS, rows) + "\n"


def select(group: str | None = None, only: str | None = None) -> list[Workload]:
    return [w for w in WORKLOADS.values() if (group is None or w.group == group)
            and (only is None or only in w.name)]


def table(workloads: list[Workload], repeat: int = 3, profile: bool = False,
          parties: list[int] | None = None) -> tuple[str, list[dict]]:
    """Rows (printed as they finish) and their markdown table."""
    from ..comm.profile import format_profile
    rows = []
    for w in workloads:
        for n in parties or w.parties:
            rows.append(run_workload_processes(w, n, repeat, profile))
            print(format_table(rows[-1:]).splitlines()[-1], flush=True)
            if profile and rows[-1]["profile"]:
                print(format_profile(rows[-1]["profile"]), flush=True)
    return format_table(rows), rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m veil.bench.processes", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--group", help="only workloads of this group (e.g. training)")
    ap.add_argument("--only", help="only workloads whose name contains this")
    ap.add_argument("--parties", type=int, nargs="*", help="party counts (default per "
                    "workload)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per row; the fastest is "
                    "reported (default 3)")
    ap.add_argument("--profile", action="store_true", help="also print party 0's time per "
                    "kernel (veil.Config(profile=True))")
    ap.add_argument("--json", help="also save the rows here")
    ap.add_argument("--as-party", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    from . import workloads  # noqa: F401  (registers every workload)
    if args.as_party:
        w = WORKLOADS[args.as_party]
        write_record(args.out, party_runs(w, args.parties[0], args.repeat, args.profile))
        return 0
    chosen = select(args.group, args.only)
    if not chosen:
        print("no workload matched", file=sys.stderr)
        return 2
    from .runner import host_line
    print(f"load average at start: {os.getloadavg()}", flush=True)
    text, rows = table(chosen, args.repeat, args.profile, args.parties)
    print(f"\n{text}\nhost: {host_line()}; under `veil run` (one process per party and the "
          f"dealer, TLS on loopback); fastest of {args.repeat}\n")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
