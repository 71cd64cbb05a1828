"""veil.sql bad input and policies: clear errors naming what to change, before data moves."""

import pytest

pytest.importorskip("duckdb")

import pandas as pd

import veil
from veil.sql import Policy
from sql_helpers import pooled, random_tables, run_query

JOIN = "FROM orders o JOIN ads d ON o.id = d.id"


def _refused(sql, match, **kw):
    with pytest.raises(veil.PartyError, match=match):
        run_query(random_tables(0), sql, **kw)


@pytest.mark.parametrize("sql,match", [
    ("SELECT SUM(x) FROM nowhere", "unknown table 'nowhere'"),
    (f"SELECT SUM(o.nope) {JOIN}", "nope"),
    (f"SELECT SUM(o.a) OVER () {JOIN}", "window functions are not supported"),
    (f"SELECT DISTINCT o.cat {JOIN}", "SELECT DISTINCT is not supported"),
    ("SELECT o.a FROM orders o FULL JOIN ads d ON o.id = d.id", "FULL JOIN is not supported"),
    ("SELECT o.a FROM orders o RIGHT JOIN ads d ON o.id = d.id", "LEFT JOIN with the two"),
    (f"SELECT STDDEV(o.a) {JOIN}", "aggregate STDDEV"),
    (f"SELECT COUNT(DISTINCT o.a) {JOIN}", "DISTINCT"),
    (f"SELECT SUM(o.a / d.b) {JOIN}", "division"),
    ("SELECT SUM(o.a) FROM orders o, ads d", "equality join condition"),
    (f"SELECT SUM(o.a) {JOIN} WHERE o.a IN (SELECT 1)", "subqueries are not supported"),
    (f"SELECT o.cat, SUM(d.b) {JOIN} GROUP BY o.cat, d.campaign", "more than one party"),
    ("SELECT SUM(o.a) FROM orders o JOIN ads d ON o.id = d.campaign", "type mismatch"),
    (f"SELECT SUM(CASE WHEN o.a > d.b THEN 1 END) {JOIN}", "add an ELSE"),
    ("DELETE FROM orders", "DELETE statements are not supported"),
    ("SELEC 1", "could not parse"),
])
def test_unsupported_or_wrong_sql_is_refused_by_name(sql, match):
    _refused(sql, match)


def test_nulls_in_a_secret_column_are_refused_with_the_fix():
    tables = random_tables(1)
    tables["orders"][1].loc[3, "a"] = None
    with pytest.raises(veil.PartyError, match=r"o\.a has NULLs.*COALESCE"):
        run_query(tables, f"SELECT SUM(o.a * d.b) {JOIN}")
    # The fix the message names works (computed locally by the owner).
    out = run_query(tables, f"SELECT SUM(COALESCE(o.a, 0) * d.b) AS s {JOIN}")
    assert out[1] is not None


def test_null_join_key_is_refused():
    tables = random_tables(1)
    tables["ads"][1]["id"] = tables["ads"][1]["id"].astype("float64")
    tables["ads"][1].loc[0, "id"] = None
    with pytest.raises(veil.PartyError, match="join key .*NULLs"):
        run_query(tables, f"SELECT SUM(o.a) {JOIN}")


def test_overflow_is_refused_not_wrapped():
    a = pd.DataFrame({"id": [1, 2], "v": [1, 2]})
    b = pd.DataFrame({"id": [1, 2], "w": [3, 4]})
    with pytest.raises(veil.PartyError, match="wrap around the 64-bit ring"):
        run_query({"a": (0, a), "b": (1, b)}, "SELECT SUM(x.v * y.w) FROM a x JOIN b y "
                  "ON x.id = y.id", bounds={"a": "type", "b": "type"})


def test_value_above_declared_bound_is_refused_at_its_owner():
    a = pd.DataFrame({"id": [1, 2], "v": [1, 5000]})
    b = pd.DataFrame({"id": [1, 2], "w": [3, 4]})
    with pytest.raises(veil.PartyError, match="party 0.*outside its declared bound"):
        run_query({"a": (0, a), "b": (1, b)}, "SELECT SUM(x.v * y.w) FROM a x JOIN b y "
                  "ON x.id = y.id", bounds={"a": {"v": 100}})


def test_registration_errors():
    def job(kind):
        db = veil.sql.Session()
        if kind == "none_at_owner":
            db.register("t", None, owner=0)
        if kind == "data_elsewhere":
            db.register("t", pd.DataFrame({"a": [1]}), owner=0)
        if kind == "bad_name":
            db.register("t; DROP", pd.DataFrame({"a": [1]}) if veil.rank() == 0 else None,
                        owner=0)
    with pytest.raises(veil.PartyError, match="owns 't': pass its table"):
        veil.run(job, "none_at_owner", parties=2)
    with pytest.raises(veil.PartyError, match="must pass None"):
        veil.run(job, "data_elsewhere", parties=2)
    with pytest.raises(veil.PartyError, match="plain SQL identifier"):
        veil.run(job, "bad_name", parties=2)


# -- policies -------------------------------------------------------------------------------
def test_aggregate_only_column_cannot_be_selected_plainly():
    pol = {"ads": Policy(columns={"b": "aggregate"})}
    _refused(f"SELECT o.id, d.b {JOIN}", r"ads\.b allows 'aggregate'.*uses it as 'plain'",
             policies=pol)
    out = run_query(random_tables(0), f"SELECT SUM(d.b) AS s {JOIN}", policies=pol)
    assert out[1] is not None


def test_compare_only_column_cannot_be_aggregated_and_party_lists_apply():
    pol = {"ads": Policy(columns={"clicks": ("compare", [1])})}
    _refused(f"SELECT SUM(d.clicks) {JOIN}", "ads.clicks allows 'compare'", policies=pol)
    _refused(f"SELECT SUM(o.a) {JOIN} WHERE d.clicks > o.a", "party 0", policies=pol,
             reveal_to=0)
    out = run_query(random_tables(0), f"SELECT SUM(o.a) AS s {JOIN} WHERE d.clicks > o.a",
                    policies=pol, reveal_to=1)
    assert out[1] is not None


def test_join_key_rules():
    _refused(f"SELECT SUM(o.a) {JOIN}", "reveal_key_after_join=False",
             policies={"orders": Policy(reveal_key_after_join=False)}, join="psi")
    _refused(f"SELECT o.id, SUM(d.b) {JOIN} GROUP BY o.id", "orders.id allows 'join'",
             policies={"orders": Policy(columns={"id": "join"})})


def test_group_count_rule():
    _refused(f"SELECT o.cat, COUNT(*) {JOIN} GROUP BY o.cat", "reveal_group_count=False",
             policies={"orders": Policy(reveal_group_count=False)})


def test_policy_refusal_moves_no_data():
    """A refused query sends nothing beyond registration's schema messages."""
    def job():
        db = veil.sql.Session()
        t = random_tables(0)
        db.register("orders", t["orders"][1] if veil.rank() == 0 else None, owner=0,
                    policy=Policy(columns={"a": "none"}))
        db.register("ads", t["ads"][1] if veil.rank() == 1 else None, owner=1)
        before = veil.stats()["bytes_sent"]
        try:
            db.query(f"SELECT SUM(o.a) {JOIN}", reveal_to=1)
        except veil.sql.PolicyError as exc:
            return str(exc), veil.stats()["bytes_sent"] - before
    for msg, sent in veil.run(job, parties=2):
        assert "orders.a allows 'none'" in msg and sent == 0


def test_only_the_receiver_gets_the_result_and_results_are_not_in_other_traffic():
    def job():
        db = veil.sql.Session()
        t = random_tables(3)
        db.register("orders", t["orders"][1] if veil.rank() == 0 else None, owner=0)
        db.register("ads", t["ads"][1] if veil.rank() == 1 else None, owner=1)
        out = db.query(f"SELECT SUM(o.a * d.b) AS s {JOIN} WHERE o.a > d.b", reveal_to=1)
        return out, veil.stats()["bytes_received"]
    (r0, recv0), (r1, _) = veil.run(job, parties=2)
    assert r0 is None and r1 is not None
    assert recv0 > 0


def test_dates_and_timestamps_are_not_compared_across_units():
    t = random_tables(2)
    t["ads"][1]["seen"] = pd.Timestamp("2024-01-20")
    t["ads"][1]["shown"] = pd.Timestamp("2024-01-20").date()
    # orders.day is a TIMESTAMP: comparing it with the other party's DATE is refused...
    with pytest.raises(veil.PartyError, match="cannot combine a timestamp with a date"):
        run_query(t, f"SELECT COUNT(*) {JOIN} WHERE o.day > d.shown")
    with pytest.raises(veil.PartyError, match="cannot combine a timestamp with a number"):
        run_query(t, f"SELECT COUNT(*) {JOIN} WHERE o.day > d.clicks")
    # ... and works when both sides have the same unit.
    sql = f"SELECT COUNT(*) AS n {JOIN} WHERE o.day > d.seen"
    assert run_query(t, sql)[1]["n"].tolist() == pooled(t, sql)["n"].tolist()


def test_int64_minimum_does_not_slip_past_the_bound_check():
    a = pd.DataFrame({"id": [1, 2], "v": [1, -(1 << 63)]})
    b = pd.DataFrame({"id": [1, 2], "w": [3, 4]})
    with pytest.raises(veil.PartyError, match="outside its declared bound"):
        run_query({"a": (0, a), "b": (1, b)}, "SELECT COUNT(*) FROM a x JOIN b y "
                  "ON x.id = y.id WHERE x.v > y.w", bounds={"a": "type"})
