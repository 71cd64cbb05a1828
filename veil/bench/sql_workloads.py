"""SQL benchmark workloads (group ``sql``): the SDH tail, TPC-H-like Q1/Q6 across parties, PSI.

SDH (Alimama's Secure Data Hub workload): two aligned integer columns a, b of N rows at two
parties; a > b, a·b, SUM(a·b) over rows with a > b, SUM(b) — one query on prealigned
tables (PSI apart, measured on its own). Values are below 2^16, so the comparison runs at
18 bits and every sum is exact. Peak memory per party under `veil run -n 2`:
``veil run -n 2 -m veil.bench.sql_scale --rows 1e7``.
"""

from __future__ import annotations

import numpy as np
import torch

from .registry import Workload, register_workload

SDH = ("SELECT SUM(CASE WHEN x.a > y.b THEN x.a * y.b ELSE 0 END) AS s, SUM(y.b) AS sb "
       "FROM ta x JOIN tb y ON x.id = y.id")


def sdh_frames(n: int, seed: int = 0):
    import pandas as pd
    rng = np.random.default_rng(seed)
    a = pd.DataFrame({"id": np.arange(n), "a": rng.integers(0, 1 << 16, n)})
    b = pd.DataFrame({"id": np.arange(n), "b": rng.integers(0, 1 << 16, n)})
    return a, b


def _sdh_plain(inp):
    a, b = inp["a"]["a"].to_numpy(), inp["b"]["b"].to_numpy()
    return torch.tensor([int((a * b * (a > b)).sum()), int(b.sum())], dtype=torch.float64)


def _sdh_secure(inp, timer):
    import veil
    db = veil.sql.Session()
    db.register("ta", inp["a"] if veil.rank() == 0 else None, owner=0, prealigned=True)
    db.register("tb", inp["b"] if veil.rank() == 1 else None, owner=1, prealigned=True)
    with timer():
        out = db.query(SDH, reveal_to=0)
    return None if out is None else torch.tensor([float(out["s"][0]), float(out["sb"][0])],
                                                 dtype=torch.float64)


def _psi_make(n):
    rng = np.random.default_rng(1)
    return {"k0": rng.choice(4 * n, n, replace=False).tolist(),
            "k1": rng.choice(4 * n, n, replace=False).tolist()}


def _psi_plain(inp):
    return torch.tensor([float(len(set(inp["k0"]) & set(inp["k1"])))])


def _psi_secure(inp, timer):
    import veil
    keys = inp["k0"] if veil.rank() == 0 else inp["k1"]
    with timer():
        out = veil.psi(keys, parties=(0, 1), protocol="ecdh")   # RR22: --group psi
    return torch.tensor([float(len(out))])


for _n, _label in ((10 ** 5, "1e5"), (10 ** 6, "1e6")):
    register_workload(Workload(
        f"sql-sdh-{_label}", "sql", (lambda n=_n: dict(zip("ab", sdh_frames(n)))),
        _sdh_plain, _sdh_secure, parties=(2,),
        note=f"SDH tail, {_label} rows, exact; bytes/row = bytes/{_label}"))

for _n, _label in ((10 ** 4, "1e4"), (10 ** 5, "1e5")):
    register_workload(Workload(
        f"sql-psi-{_label}", "sql", (lambda n=_n: _psi_make(n)), _psi_plain, _psi_secure,
        parties=(2,), note=f"ECDH-X25519 PSI, {_label} x {_label} keys"))


def _tpch_make(sf):
    from .sql_tpch import LINES_PER_SF, part_table
    n = int(sf * LINES_PER_SF)
    return {"fin": part_table(n, 0), "logi": part_table(n, 1)}


def _tpch_numbers(df):
    return torch.tensor(df.select_dtypes("number").to_numpy(float), dtype=torch.float64)


def _tpch_plain(q):
    def plain(inp):
        import duckdb
        from .sql_tpch import QUERIES
        con = duckdb.connect()
        for name, t in inp.items():
            con.register(name, t)
        return _tpch_numbers(con.execute(QUERIES[q]).df())
    return plain


def _tpch_secure(q):
    def secure(inp, timer):
        import veil
        from .sql_tpch import QUERIES
        db = veil.sql.Session()
        db.register("fin", inp["fin"] if veil.rank() == 0 else None, owner=0, prealigned=True)
        db.register("logi", inp["logi"] if veil.rank() == 1 else None, owner=1,
                    prealigned=True)
        with timer():
            out = db.query(QUERIES[q], reveal_to=0)
        return None if out is None else _tpch_numbers(out)
    return secure


for _q in ("q1", "q6"):
    register_workload(Workload(
        f"sql-tpch-{_q}-sf0.01", "sql", (lambda: _tpch_make(0.01)), _tpch_plain(_q),
        _tpch_secure(_q), parties=(2,),
        note=f"TPC-H-like {_q.upper()} on a lineitem split by columns between 2 parties "
             f"(prealigned), 60,000 rows; SF 1: veil.bench.sql_tpch"))
