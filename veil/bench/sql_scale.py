"""The SDH tail at scale, one OS process per party: ``veil run -n 2 -m veil.bench.sql_scale``.

    veil run -n 2 -m veil.bench.sql_scale --rows 1e7 [--chunk 262144] [--parquet DIR]
    veil run -n 2 -m veil.bench.sql_scale --rows 1e5 --psi     # PSI alone, N x N keys

Each party builds only its own column (seeded, chunk by chunk), registers it prealigned,
runs the query, and prints one JSON line: rows, seconds, bytes sent per row, rounds,
offline bytes per row and its peak RSS (MB). Party 0 checks the result against numpy
(recomputed chunk by chunk). With ``--parquet DIR`` each party first writes its column
to DIR/party{r}.parquet (row groups of one chunk) and registers the path, so DuckDB
streams it and peak memory stays bounded by the chunk, not the table.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time

import numpy as np

import veil
from .sql_workloads import SDH

BLOCK = 1 << 20


def _blocks(n: int, which: int):
    """Column ``which`` (0: a, 1: b) in blocks, the same at every party for one seed."""
    for start in range(0, n, BLOCK):
        rng = np.random.default_rng([start, 7])
        m = min(BLOCK, n - start)
        a, b = rng.integers(0, 1 << 16, m), rng.integers(0, 1 << 16, m)
        yield start, (a, b)[which] if which in (0, 1) else (a, b)


def _expected(n: int) -> tuple[int, int]:
    s = sb = 0
    for _, (a, b) in _blocks(n, 2):
        s += int((a * b * (a > b)).sum())
        sb += int(b.sum())
    return s, sb


def _table(n: int, which: int, parquet_dir: str | None):
    import pandas as pd
    name = "ab"[which]
    if parquet_dir is None:
        parts = [pd.DataFrame({"id": np.arange(s, s + len(c)), name: c})
                 for s, c in _blocks(n, which)]
        return pd.concat(parts, ignore_index=True)
    import pyarrow as pa
    import pyarrow.parquet as pq
    path = os.path.join(parquet_dir, f"party{which}-{n}.parquet")
    if os.path.exists(path) and pq.ParquetFile(path).metadata.num_rows == n:
        return path                           # written by an earlier run (same seed)
    schema = pa.schema([("id", pa.int64()), (name, pa.int64())])
    with pq.ParquetWriter(path + ".part", schema) as w:
        for s, c in _blocks(n, which):
            w.write_table(pa.table({"id": np.arange(s, s + len(c)), name: c}, schema=schema))
    os.replace(path + ".part", path)          # complete files only, for the reuse above
    return path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=float, default=1e6)
    ap.add_argument("--chunk", type=int, default=1 << 18)
    ap.add_argument("--parquet", help="write each party's column here and stream it")
    ap.add_argument("--profile", action="store_true", help="time every protocol kernel "
                    "(veil.Config(profile=True)) and print each party's split")
    ap.add_argument("--psi", action="store_true", help="time veil.psi alone on N x N keys "
                    "(half of them common) instead of the SDH query")
    args = ap.parse_args()
    n = int(args.rows)
    if args.psi:
        return _psi(n)

    def job():
        r = veil.rank()
        mine = _table(n, r, args.parquet) if r in (0, 1) else None
        db = veil.sql.Session(chunk_rows=args.chunk)
        db.register("ta", mine if r == 0 else None, owner=0, prealigned=True)
        db.register("tb", mine if r == 1 else None, owner=1, prealigned=True)
        del mine
        s0, t0, c0 = veil.stats(), time.perf_counter(), time.process_time()
        out = db.query(SDH, reveal_to=0)
        dt, d = time.perf_counter() - t0, veil.context.stats_since(s0)
        ok = None
        if out is not None:
            ok = (int(out["s"][0]), int(out["sb"][0])) == _expected(n)
        cpu = time.process_time() - c0
        rec = {"party": r, "rows": n, "seconds": round(dt, 2), "cpu_seconds": round(cpu, 2),
               "bytes_per_row": round(d["bytes_sent"] / n, 2), "rounds": d["rounds"],
               "offline_bytes_per_row": round(d["offline_bytes_received"] / n, 2),
               "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
               "exact": ok, "source": "parquet" if args.parquet else "dataframe",
               "load": [round(x, 2) for x in os.getloadavg()]}
        print(json.dumps(rec), flush=True)
        if args.profile:
            print(json.dumps({"party": r, "profile": veil.profile()}), flush=True)
        return rec
    veil.run(job, parties=2, config=veil.Config(profile=args.profile))


def _psi(n: int) -> None:
    def job():
        r = veil.rank()
        keys = np.arange(n) + (n // 2 if r == 1 else 0)          # n/2 common keys
        s0, t0 = veil.stats(), time.perf_counter()
        out = veil.psi(keys.tolist(), parties=(0, 1))
        dt, d = time.perf_counter() - t0, veil.context.stats_since(s0)
        rec = {"party": r, "psi_keys": n, "seconds": round(dt, 2), "common": len(out),
               "bytes_per_key": round(d["bytes_sent"] / n, 2), "rounds": d["rounds"],
               "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}
        print(json.dumps(rec), flush=True)
    veil.run(job, parties=2)


if __name__ == "__main__":
    main()
