"""veil.sql joins: PSI and secret (membership-hiding) modes, INNER and LEFT, against DuckDB."""

import pytest

pytest.importorskip("duckdb")

import numpy as np
import pandas as pd

import veil
from veil.sql import Policy
from sql_helpers import assert_same, pooled, run_query


def _tables(seed=0, n0=20, n1=12, dup=True):
    rng = np.random.default_rng(seed)
    ids0 = rng.integers(0, 15, n0) if dup else rng.permutation(30)[:n0]
    ids1 = rng.integers(5, 25, n1) if dup else rng.permutation(30)[:n1]
    orders = pd.DataFrame({"id": ids0.astype(np.int64), "cat": rng.choice(["x", "y"], n0),
                           "a": rng.integers(-50, 50, n0)})
    ads = pd.DataFrame({"id": ids1.astype(np.int64), "b": rng.integers(-9, 9, n1),
                        "w": rng.choice(["u", "v"], n1)})
    return {"orders": (0, orders), "ads": (1, ads)}


LEFT = "FROM orders o LEFT JOIN ads d ON o.id = d.id"
QUERIES = [
    "SELECT SUM(o.a * d.b) AS s, COUNT(*) AS n FROM orders o JOIN ads d ON o.id = d.id "
    "WHERE o.a > d.b",
    f"SELECT o.cat, SUM(d.b) AS s, COUNT(*) AS n, COUNT(d.b) AS nb, AVG(d.b) AS av {LEFT} "
    f"GROUP BY o.cat",
    f"SELECT COUNT(*) AS n, SUM(o.a) AS s {LEFT} WHERE d.id IS NULL",           # anti-join
    f"SELECT COUNT(*) AS n, SUM(o.a + d.b) AS s {LEFT} WHERE d.b > 0 OR d.b IS NULL",
    f"SELECT SUM(o.a) AS s, COUNT(*) AS n, SUM(COALESCE(d.b, 7)) AS c {LEFT} WHERE o.a > d.b",
    f"SELECT o.id, o.a, COALESCE(d.b, 0) AS b {LEFT} WHERE o.a > 0",
]


@pytest.mark.parametrize("join", ["psi", "secret"])
@pytest.mark.parametrize("sql", QUERIES)
def test_joins_match_duckdb_with_duplicated_keys(sql, join):
    tables = _tables()
    assert_same(run_query(tables, sql, join=join)[1], pooled(tables, sql))


@pytest.mark.parametrize("join", ["psi", "secret"])
def test_three_parties_third_holds_nothing(join):
    tables = _tables(seed=2)
    sql = f"SELECT o.cat, SUM(d.b * o.a) AS s, COUNT(d.id) AS n {LEFT} GROUP BY o.cat"
    out = run_query(tables, sql, parties=3, reveal_to=2, join=join,
                    policies={"orders": Policy(group_threshold=1)})
    assert out[0] is None and out[1] is None
    assert_same(out[2], pooled(tables, sql))


@pytest.mark.parametrize("join", ["psi", "secret"])
def test_multi_column_keys_and_empty_intersection(join):
    rng = np.random.default_rng(5)
    left = pd.DataFrame({"k1": rng.integers(0, 3, 10), "k2": rng.choice(["p", "q"], 10),
                         "a": rng.integers(0, 9, 10)})
    right = pd.DataFrame({"k1": rng.integers(0, 3, 8), "k2": rng.choice(["p", "q"], 8),
                          "b": rng.integers(0, 9, 8)})
    tables = {"l": (0, left), "r": (1, right)}
    on = "FROM l JOIN r ON l.k1 = r.k1 AND l.k2 = r.k2"
    for sql in (f"SELECT SUM(l.a * r.b) AS s, COUNT(*) AS n {on}",
                f"SELECT SUM(r.b) AS s, COUNT(*) AS n {on.replace('JOIN', 'LEFT JOIN')}"):
        assert_same(run_query(tables, sql, join=join)[1], pooled(tables, sql))
    # no common key: INNER gives 0 rows (SUM is NULL); LEFT keeps every left row
    right["k1"] += 10
    for sql in (f"SELECT SUM(l.a) AS s, COUNT(*) AS n {on}",
                f"SELECT SUM(r.b) AS s, COUNT(*) AS n, SUM(l.a) AS t "
                f"{on.replace('JOIN', 'LEFT JOIN')}"):
        got, want = run_query(tables, sql, join=join)[1], pooled(tables, sql)
        assert_same(got, want)


def test_policy_forbidding_key_reveal_picks_the_secret_join():
    tables = _tables(seed=3)
    sql = "SELECT SUM(o.a * d.b) AS s FROM orders o JOIN ads d ON o.id = d.id"
    pol = {"ads": Policy(reveal_key_after_join=False)}
    assert_same(run_query(tables, sql, policies=pol)[1], pooled(tables, sql))


def _traffic(tables, sql, join):
    def job():
        db = veil.sql.Session()
        for name, (owner, df) in tables.items():
            db.register(name, df if veil.rank() == owner else None, owner=owner)
        before = veil.stats()["bytes_sent"]
        out = db.query(sql, reveal_to=0, join=join)
        return out, veil.stats()["bytes_sent"] - before
    return veil.run(job, parties=2)


def test_secret_join_traffic_does_not_depend_on_which_keys_match(monkeypatch):
    """Same sizes, different overlaps (none / all): every party sends the same bytes,
    and no PSI runs; the PSI join's traffic does depend on the overlap."""
    import veil.sql.join as join_mod

    def no_psi(*a, **k):
        raise AssertionError("the secret join must not run a PSI")
    sql = "SELECT SUM(o.a) AS s, COUNT(*) AS n FROM orders o JOIN ads d ON o.id = d.id"
    t_none = _tables(seed=4, dup=False)
    t_all = _tables(seed=4, dup=False)
    t_none["ads"][1]["id"] = np.arange(100, 112)                # no common key
    t_all["ads"][1]["id"] = t_all["orders"][1]["id"].to_numpy()[:12]   # 12 common keys
    with monkeypatch.context() as m:
        m.setattr(join_mod, "psi", no_psi)
        a, b = _traffic(t_none, sql, "secret"), _traffic(t_all, sql, "secret")
    assert [x[1] for x in a] == [x[1] for x in b]
    assert a[0][0]["n"][0] == 0 and b[0][0]["n"][0] == 12
    pa_, pb_ = _traffic(t_none, sql, "psi"), _traffic(t_all, sql, "psi")
    assert [x[1] for x in pa_] != [x[1] for x in pb_]


def test_secret_join_size_bound_and_bad_requests():
    tables = _tables()
    sql = "SELECT SUM(o.a) AS s FROM orders o JOIN ads d ON o.id = d.id"

    def job(**kw):
        def f():
            db = veil.sql.Session(secret_join_max_pairs=100)
            for name, (owner, df) in tables.items():
                db.register(name, df if veil.rank() == owner else None, owner=owner)
            return db.query(sql, reveal_to=1, **kw)
        return f
    with pytest.raises(veil.PartyError, match=r"20 x 12 = 240 pairs is over the bound of 100"):
        veil.run(job(join="secret"), parties=2)
    with pytest.raises(veil.PartyError, match="join must be 'auto', 'psi' or 'secret'"):
        veil.run(job(join="hash"), parties=2)
    with pytest.raises(veil.PartyError, match="protocol must be one of"):
        veil.run(job(join="psi", psi="kkrt"), parties=2)


@pytest.mark.parametrize("sql,match", [
    (f"SELECT MIN(d.b) {LEFT}", "MIN over a LEFT JOIN"),
    (f"SELECT COUNT(*) {LEFT} WHERE o.a > d.b OR o.a < 0", "OR over a LEFT JOIN"),
    (f"SELECT d.w, COUNT(*) {LEFT} GROUP BY d.w", "GROUP BY a LEFT JOIN's right-side"),
    (f"SELECT o.id, d.b {LEFT}", "row-level LEFT JOIN result"),
    ("SELECT COUNT(*) FROM orders o LEFT JOIN ads d ON o.id = d.id AND d.b > 0",
     "takes only key equalities"),
])
def test_left_join_constructs_that_would_guess_nulls_are_refused(sql, match):
    with pytest.raises(veil.PartyError, match=match):
        run_query(_tables(), sql)


def test_left_join_of_prealigned_tables_is_refused():
    tables = _tables(dup=False, n0=12, n1=12)
    with pytest.raises(veil.PartyError, match="LEFT JOIN of prealigned tables"):
        run_query(tables, f"SELECT SUM(d.b) {LEFT}", prealigned=("orders", "ads"))


@pytest.mark.parametrize("join", ["psi", "secret"])
def test_null_keys_and_type_mismatch_are_refused(join):
    tables = _tables()
    tables["ads"][1]["id"] = tables["ads"][1]["id"].astype("float64")
    tables["ads"][1].loc[0, "id"] = None
    with pytest.raises(veil.PartyError, match="join key .*NULLs"):
        run_query(tables, f"SELECT SUM(o.a) {LEFT}", join=join)
    tables = _tables()
    with pytest.raises(veil.PartyError, match="type mismatch"):
        run_query(tables, "SELECT COUNT(*) FROM orders o JOIN ads d ON o.id = d.w", join=join)
