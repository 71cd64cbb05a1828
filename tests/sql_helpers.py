"""Shared helpers for the veil.sql tests: run a query under veil and on pooled DuckDB."""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd

import veil


def run_query(tables: dict, sql: str, parties: int = 2, reveal_to=1, policies=None,
              bounds=None, prealigned=(), chunk_rows: int = 1 << 18, protocol="semi2k",
              join="auto", psi="auto"):
    """tables: name → (owner, DataFrame). Returns every party's result."""
    policies, bounds = policies or {}, bounds or {}

    def job():
        db = veil.sql.Session(chunk_rows=chunk_rows)
        for name, (owner, df) in tables.items():
            db.register(name, df if veil.rank() == owner else None, owner=owner,
                        policy=policies.get(name), bounds=bounds.get(name, "measured"),
                        prealigned=name in prealigned)
        return db.query(sql, reveal_to=reveal_to, join=join, psi=psi)
    return veil.run(job, parties=parties, protocol=protocol)


def pooled(tables: dict, sql: str) -> pd.DataFrame:
    con = duckdb.connect()
    for name, (_, df) in tables.items():
        con.register(name, df)
    return con.execute(sql).df()


def assert_same(got: pd.DataFrame, want: pd.DataFrame, rtol: float = 0.0,
                ordered: bool = False) -> None:
    """Equal row sets (or sequences), column by column by position; exact unless rtol."""
    assert got is not None
    assert got.shape == want.shape, (got, want)
    g, w = got.copy(), want.copy()
    g.columns = w.columns = range(len(w.columns))
    if not ordered:
        g = g.sort_values(list(g.columns), kind="stable").reset_index(drop=True)
        w = w.sort_values(list(w.columns), kind="stable").reset_index(drop=True)
    for c in w.columns:
        a, b = g[c].to_numpy(), w[c].to_numpy()
        numeric = pd.api.types.is_numeric_dtype(w[c]) and not pd.api.types.is_bool_dtype(w[c])
        if numeric and (np.issubdtype(np.asarray(b).dtype, np.floating) or rtol):
            np.testing.assert_allclose(a.astype(float), b.astype(float), rtol=rtol or 1e-12,
                                       atol=0)
        else:
            assert [str(x) for x in a] == [str(x) for x in b], (c, a, b)


def random_tables(seed: int, n0: int = 60, n1: int = 50):
    rng = np.random.default_rng(seed)
    orders = pd.DataFrame({
        "id": rng.permutation(np.arange(100))[:n0].astype(np.int64),
        "cat": rng.choice(["toys", "food", "tech"], n0),
        "a": rng.integers(-1000, 1000, n0),
        "price": np.round(rng.uniform(0, 500, n0), 2),
        "day": pd.to_datetime("2024-01-01") + pd.to_timedelta(rng.integers(0, 60, n0), "D"),
    })
    orders["price"] = orders["price"].astype("float64")
    ads = pd.DataFrame({
        "id": rng.permutation(np.arange(100))[:n1].astype(np.int64),
        "b": rng.integers(-1000, 1000, n1),
        "clicks": rng.integers(0, 50, n1),
        "campaign": rng.choice(["c1", "c2"], n1),
    })
    return {"orders": (0, orders), "ads": (1, ads)}
