"""The SDH tail at scale, one OS process per party: ``veil run -n 2 -m veil.bench.sql_scale``.

    veil run -n 2 -m veil.bench.sql_scale --rows 1e7 [--chunk 262144]

Each party builds only its own column (same seed as the in-process workload), registers
it prealigned, runs the query, and prints one JSON line: rows, seconds, bytes sent per
row, rounds, offline bytes per row and its peak RSS (MB). Party 0 also checks the result
against numpy.
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import numpy as np

import veil
from .sql_workloads import SDH


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=float, default=1e6)
    ap.add_argument("--chunk", type=int, default=1 << 18)
    args = ap.parse_args()
    n = int(args.rows)

    def job():
        import pandas as pd
        rng = np.random.default_rng(0)
        a_col, b_col = rng.integers(0, 1 << 16, n), rng.integers(0, 1 << 16, n)
        mine = (pd.DataFrame({"id": np.arange(n), "a": a_col}) if veil.rank() == 0 else
                pd.DataFrame({"id": np.arange(n), "b": b_col}) if veil.rank() == 1 else None)
        db = veil.sql.Session(chunk_rows=args.chunk)
        db.register("ta", mine if veil.rank() == 0 else None, owner=0, prealigned=True)
        db.register("tb", mine if veil.rank() == 1 else None, owner=1, prealigned=True)
        del mine
        s0, t0 = veil.stats(), time.perf_counter()
        out = db.query(SDH, reveal_to=0)
        dt, s1 = time.perf_counter() - t0, veil.stats()
        ok = None
        if out is not None:
            ok = int(out["s"][0]) == int((a_col * b_col * (a_col > b_col)).sum()) and \
                int(out["sb"][0]) == int(b_col.sum())
        rec = {"party": veil.rank(), "rows": n, "seconds": round(dt, 2),
               "bytes_per_row": round((s1["bytes_sent"] - s0["bytes_sent"]) / n, 2),
               "rounds": s1["rounds"] - s0["rounds"],
               "offline_bytes_per_row": round((s1["offline_bytes_received"] -
                                               s0["offline_bytes_received"]) / n, 2),
               "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
               "exact": ok}
        print(json.dumps(rec), flush=True)
        return rec
    veil.run(job, parties=2)


if __name__ == "__main__":
    main()
