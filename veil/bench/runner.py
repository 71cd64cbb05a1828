"""Run registered workloads in-process and report time, bytes, rounds and error vs torch.

Times are wall-clock of the secure computation only (inputs are shared before the timer
starts), the maximum over parties; they include the dealer's on-demand generation of
correlated randomness, since the in-process dealer runs while the parties wait. Bytes
and rounds come from `veil.stats()`, which counts the same in every transport.
"""

from __future__ import annotations

import statistics
import time
from contextlib import contextmanager

import torch

import veil
from ..docs_markers import markdown_table
from .registry import Workload


def _plain_time(w: Workload, inp: dict, repeat: int = 3) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = w.plain(inp)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def _party(w: Workload, inp: dict, box: dict):
    rec = {}

    profiling = veil.context.current().config.profile

    @contextmanager
    def timer():
        s0 = veil.stats()
        p0 = veil.profile() if profiling else None
        t0, c0 = time.perf_counter(), time.process_time()
        yield
        rec["time"] = time.perf_counter() - t0
        # this process's CPU time: one party's under `veil run`, all of them in-process
        rec["cpu"] = time.process_time() - c0
        s1 = veil.stats()
        rec["stats"] = {k: s1[k] - s0[k] for k in s1}
        if profiling:                       # the timed part only
            rec["profile"] = _minus(veil.profile(), p0)

    out = w.secure(inp, timer)
    value = out.reveal(to=0) if isinstance(out, veil.SecretTensor) else out
    return value, rec


def _minus(after: dict, before: dict) -> dict:
    zero = dict.fromkeys(next(iter(after.values()), {}), 0)
    out = {k: {f: v - before.get(k, zero).get(f, 0) for f, v in row.items()}
           for k, row in after.items()}
    return {k: row for k, row in out.items() if row.get("calls") or row.get("total_s")}


def run_workload(w: Workload, parties: int, seed: int = 0, repeat: int = 1,
                 protocol: str = "semi2k", config: veil.Config | None = None) -> dict:
    """Run ``w`` ``repeat`` times (fresh runs) and keep the fastest; counts must agree."""
    inp = w.make()
    plain_s, expected = _plain_time(w, inp)
    best = None
    for _ in range(max(1, repeat)):
        results = veil.run(_party, w, inp, {}, parties=parties, seed=seed, protocol=protocol,
                           config=config if config is not None else w.extra.get("config"))
        recs = [r[1] for r in results]
        if best is not None and [r["stats"] for r in recs] != [r["stats"] for r in best[1]]:
            raise RuntimeError(f"{w.name}: traffic differs between identical runs")
        if best is None or max(r["time"] for r in recs) < max(r["time"] for r in best[1]):
            best = (results[0][0], recs)
    value, recs = best
    err = None
    if isinstance(expected, torch.Tensor) and isinstance(value, torch.Tensor):
        err = (value.double() - expected.double()).abs().max().item()
    secure_s = max(r["time"] for r in recs)
    return {
        "workload": w.name, "group": w.group, "parties": parties, "protocol": protocol,
        **timed_fields(secure_s, plain_s), **count_fields([r["stats"] for r in recs]),
        "max_abs_error": err, "note": w.note,
        "profile": recs[0].get("profile"),          # party 0's, with Config(profile=True)
    }


def timed_fields(secure_s: float, plain_s: float) -> dict:
    """A row's time, plaintext time and their ratio."""
    return {"time_s": secure_s, "plain_s": plain_s,
            "slowdown": secure_s / plain_s if plain_s > 0 else None}


def count_fields(stats: list[dict]) -> dict:
    """A row's exact counts from each party's `veil.stats()`: what the busiest party sent
    and its rounds; offline bytes over all parties, and on the busiest dealer link."""
    return {
        "bytes_sent_per_party": max(s["bytes_sent"] for s in stats),
        "rounds": max(s["rounds"] for s in stats),
        "offline_bytes": sum(s["offline_bytes_received"] for s in stats),
        "offline_rounds": max(s["offline_rounds"] for s in stats),
        "offline_link_bytes": max(s["offline_bytes_received"] for s in stats),
    }


TABLE_COLUMNS = [
    ("workload", lambda r: r["workload"]),
    ("parties", lambda r: r["parties"]),
    ("time (s)", lambda r: f"{r['time_s']:.3f}"),
    ("plaintext (s)", lambda r: f"{r['plain_s']:.4f}"),
    ("slowdown", lambda r: "n/a" if r["slowdown"] is None else f"{r['slowdown']:.0f}x"),
    ("bytes sent/party", lambda r: f"{r['bytes_sent_per_party']:,}"),
    ("rounds", lambda r: r["rounds"]),
    ("offline bytes", lambda r: f"{r['offline_bytes']:,}"),
    ("max abs err", lambda r: "n/a" if r["max_abs_error"] is None
     else f"{r['max_abs_error']:.2e}"),
]


def format_table(rows: list[dict]) -> str:
    return markdown_table(TABLE_COLUMNS, rows) + "\n"


def host_line() -> str:
    import os
    import platform
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
            f"torch {torch.__version__}, {torch.get_num_threads()} torch thread(s), "
            f"python {platform.python_version()}")

