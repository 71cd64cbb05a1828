"""TPC-H-like Q1 and Q6 at scale factor ``sf`` on a lineitem split *vertically* between two
parties, one OS process per party: ``veil run -n 2 -m veil.bench.sql_tpch --sf 1``.

Party 0 (finance) holds each line's price, discount, tax, return flag and line status;
party 1 (logistics) holds its quantity and ship date; both hold the line id, in the same
order (registered ``prealigned=True``: the ids are checked equal by a hash, no PSI). So
every filter and every sum crosses the two parties: Q6's date, quantity and discount
filters become one secret mask over all 6·10^6·sf rows, and Q1 sums both parties'
columns per (return flag, line status) group, filtered by party 1's ship date.

The columns follow TPC-H's value ranges (quantity 1..50, discount 0..0.10, tax 0..0.08,
price in cents, ship dates 1992-01-02..1998-12-01) from a seeded generator (DuckDB's
``tpch`` extension downloads at run time, which this host cannot). Party 0 checks the
result against DuckDB over the pooled table (it regenerates party 1's columns from the
seed — the check only); each party prints one JSON line.

The Q3-like join (orders ⋈ lineitem by PSI) is not run at SF 1 here: it needs a PSI
over 1.5·10^6 order keys (see veil.bench.sql_scale --psi).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time

import numpy as np

import veil

LINES_PER_SF = 6_000_000
BLOCK = 1 << 20

Q1 = """SELECT l_returnflag, l_linestatus, SUM(l_quantity) AS sum_qty,
  SUM(l_extendedprice) AS sum_base_price,
  SUM(l_extendedprice * (1 - l_discount)) AS sum_disc_price,
  SUM(l_extendedprice * (1 - l_discount) * (1 + l_tax)) AS sum_charge,
  COUNT(*) AS count_order
FROM fin f JOIN logi g ON f.id = g.id WHERE l_shipdate <= DATE '1998-09-02'
GROUP BY l_returnflag, l_linestatus ORDER BY l_returnflag, l_linestatus"""

Q6 = """SELECT SUM(l_extendedprice * l_discount) AS revenue, COUNT(*) AS n
FROM fin f JOIN logi g ON f.id = g.id
WHERE l_shipdate >= DATE '1994-01-01' AND l_shipdate < DATE '1995-01-01'
  AND l_discount BETWEEN 0.05 AND 0.07 AND l_quantity < 24"""

QUERIES = {"q1": Q1, "q6": Q6}


def _part(n: int, which: int, start: int):
    """Rows [start, start + m) of party ``which``'s columns (same at every run)."""
    m = min(BLOCK, n - start)
    rng = np.random.default_rng([start, 11])
    cols = {"qty": rng.integers(1, 51, m), "price": rng.integers(90_000, 10_500_000, m),
            "disc": rng.integers(0, 11, m), "tax": rng.integers(0, 9, m),
            "flag": rng.integers(0, 3, m), "status": rng.integers(0, 2, m),
            "ship": rng.integers(0, 2526, m)}
    ids = np.arange(start, start + m)
    if which == 0:
        return {"id": ids, **{k: cols[k] for k in ("price", "disc", "tax", "flag", "status")}}
    return {"id": ids, "qty": cols["qty"], "ship": cols["ship"]}


_SQL = {0: """SELECT id, (price / 100.0)::DECIMAL(15,2) AS l_extendedprice,
                (disc / 100.0)::DECIMAL(15,2) AS l_discount, (tax / 100.0)::DECIMAL(15,2) AS l_tax,
                ['A','N','R'][flag + 1] AS l_returnflag, ['F','O'][status + 1] AS l_linestatus
             FROM blk""",
        1: """SELECT id, qty::DECIMAL(15,2) AS l_quantity,
                (DATE '1992-01-02' + ship::INTEGER) AS l_shipdate FROM blk"""}


def part_table(n: int, which: int):
    """Party ``which``'s lineitem columns as one pyarrow table, in memory (small sf)."""
    import duckdb
    import pyarrow as pa
    con = duckdb.connect()
    parts = []
    for start in range(0, n, BLOCK):
        con.register("blk", pa.table(_part(n, which, start)))
        parts.append(con.sql(_SQL[which]).to_arrow_table())
    return pa.concat_tables(parts)


def write_part(n: int, which: int, out_dir: str) -> str:
    """Party ``which``'s lineitem columns as Parquet (reused when already written)."""
    import duckdb
    import pyarrow as pa
    import pyarrow.parquet as pq
    path = os.path.join(out_dir, f"lineitem{which}-{n}.parquet")
    if os.path.exists(path) and pq.ParquetFile(path).metadata.num_rows == n:
        return path
    con, writer = duckdb.connect(), None
    try:
        for start in range(0, n, BLOCK):
            con.register("blk", pa.table(_part(n, which, start)))
            t = con.sql(_SQL[which]).to_arrow_table()
            if writer is None:
                writer = pq.ParquetWriter(path + ".part", t.schema)
            writer.write_table(t)
    finally:
        if writer is not None:
            writer.close()
    os.replace(path + ".part", path)
    return path


def expected(paths: list[str], sql: str):
    import duckdb
    con = duckdb.connect()
    con.execute(f"CREATE VIEW fin AS SELECT * FROM '{paths[0]}'")
    con.execute(f"CREATE VIEW logi AS SELECT * FROM '{paths[1]}'")
    return con.execute(sql).df()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sf", type=float, default=1.0)
    ap.add_argument("--query", choices=sorted(QUERIES), action="append")
    ap.add_argument("--dir", default="bench-results/tpch", help="where each party writes "
                    "its Parquet columns (reused across runs)")
    ap.add_argument("--chunk", type=int, default=1 << 18)
    args = ap.parse_args()
    n = int(args.sf * LINES_PER_SF)
    os.makedirs(args.dir, exist_ok=True)

    def job():
        r = veil.rank()
        mine = write_part(n, r, args.dir) if r in (0, 1) else None
        out = []
        for q in args.query or sorted(QUERIES):
            db = veil.sql.Session(chunk_rows=args.chunk)
            # Measured bounds (the default): declared round-number bounds would make the
            # Q1 charge sum over 6·10^6 rows exceed the 2^63 check.
            db.register("fin", mine if r == 0 else None, owner=0, prealigned=True)
            db.register("logi", mine if r == 1 else None, owner=1, prealigned=True)
            s0, t0, c0 = veil.stats(), time.perf_counter(), time.process_time()
            got = db.query(QUERIES[q], reveal_to=0)
            dt, cpu, s1 = time.perf_counter() - t0, time.process_time() - c0, veil.stats()
            ok = None
            if got is not None:
                paths = [mine, write_part(n, 1, args.dir)]     # party 1's columns: check only
                want = expected(paths, QUERIES[q])
                ok = bool(got.shape == want.shape and np.allclose(
                    got.select_dtypes("number").to_numpy(float),
                    want.select_dtypes("number").to_numpy(float), rtol=1e-12, atol=0))
            rec = {"party": r, "query": q, "sf": args.sf, "rows": n, "seconds": round(dt, 2),
                   "cpu_seconds": round(cpu, 2),
                   "bytes_per_row": round((s1["bytes_sent"] - s0["bytes_sent"]) / n, 2),
                   "rounds": s1["rounds"] - s0["rounds"],
                   "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                                        / 1024),
                   "exact": ok, "load": [round(x, 2) for x in os.getloadavg()]}
            print(json.dumps(rec), flush=True)
            out.append(rec)
        return out
    veil.run(job, parties=2)


if __name__ == "__main__":
    main()
