"""veil.sql against DuckDB on the pooled plaintext tables: exact for integers and counts."""

import pytest

pytest.importorskip("duckdb")
pytest.importorskip("sqlglot")

import numpy as np
import pandas as pd

import veil
from veil.sql import Policy
from sql_helpers import assert_same, pooled, random_tables, run_query

NO_THRESHOLD = Policy(group_threshold=0)

CASES = [
    # cross-party filter as a secret mask, sum of cross-party products
    "SELECT SUM(o.a * d.b) AS s, COUNT(*) AS n FROM orders o JOIN ads d ON o.id = d.id "
    "WHERE o.a > d.b",
    # pushed-down single-party predicates, AVG, MIN, MAX over cross-party values
    "SELECT AVG(o.a + d.b) AS m, MIN(o.a - d.b) AS lo, MAX(d.b) AS hi FROM orders o "
    "JOIN ads d ON o.id = d.id WHERE o.cat <> 'food' AND d.clicks BETWEEN 5 AND 40",
    # CASE WHEN, IN list, OR across parties, decimal money
    "SELECT SUM(CASE WHEN o.a > d.b THEN o.price ELSE 0 END) AS rev, "
    "SUM(d.clicks) AS c FROM orders o JOIN ads d ON o.id = d.id "
    "WHERE d.clicks IN (1, 2, 3, 7, 11, 13) OR o.a < d.b",
    # GROUP BY one party's column, ORDER BY / LIMIT on the revealed result
    "SELECT o.cat, SUM(d.b) AS s, COUNT(*) AS n FROM orders o JOIN ads d ON o.id = d.id "
    "WHERE o.a > d.b GROUP BY o.cat ORDER BY s DESC LIMIT 2",
    # group by the other party's column, HAVING on a secret aggregate
    "SELECT d.campaign, SUM(o.a) AS s, MAX(o.a) AS mx FROM orders o JOIN ads d "
    "ON o.id = d.id GROUP BY d.campaign HAVING SUM(d.clicks) > 100",
    # NOT, comparisons with constants, arithmetic after aggregation
    "SELECT SUM(o.a) * 2 + 1 AS t, SUM(d.b) - COUNT(*) AS u FROM orders o JOIN ads d "
    "ON o.id = d.id WHERE NOT (o.a + d.b >= 100)",
]


@pytest.mark.parametrize("sql", CASES)
def test_two_party_queries_match_duckdb(sql):
    tables = random_tables(1)
    got = run_query(tables, sql, policies={"orders": NO_THRESHOLD, "ads": NO_THRESHOLD})
    assert got[0] is None
    assert_same(got[1], pooled(tables, sql), ordered="ORDER BY" in sql,
                rtol=1e-9 if "price" in sql or "AVG" in sql else 0.0)


def test_three_parties_receiver_holds_no_table():
    tables = random_tables(2)
    sql = ("SELECT o.cat, SUM(o.a * d.clicks) AS s, COUNT(*) AS n FROM orders o "
           "JOIN ads d ON o.id = d.id WHERE d.b < o.a GROUP BY o.cat")
    got = run_query(tables, sql, parties=3, reveal_to=2,
                    policies={"orders": NO_THRESHOLD, "ads": NO_THRESHOLD})
    assert got[0] is None and got[1] is None
    assert_same(got[2], pooled(tables, sql))


def test_reveal_to_everyone_and_row_level_result():
    tables = random_tables(3)
    sql = ("SELECT o.id, o.a, d.b FROM orders o JOIN ads d ON o.id = d.id "
           "WHERE o.a > d.b ORDER BY o.id")
    got = run_query(tables, sql, reveal_to=None)
    want = pooled(tables, sql)
    for out in got:
        assert_same(out, want, ordered=True)


def test_single_owner_query_with_dates_revealed_to_other_party():
    tables = random_tables(4)
    sql = ("SELECT o.cat, COUNT(*) AS n, MIN(o.day) AS first, SUM(o.a) AS s FROM orders o "
           "WHERE o.day >= DATE '2024-01-15' GROUP BY o.cat")
    got = run_query(tables, sql)
    want = pooled(tables, sql + " HAVING COUNT(*) >= 4")
    got[1]["first"] = pd.to_datetime(got[1]["first"])
    want["first"] = pd.to_datetime(want["first"])
    assert_same(got[1], want)


def test_group_threshold_drops_small_groups_secretly():
    rng = np.random.default_rng(5)
    orders = pd.DataFrame({"id": np.arange(40), "cat": ["big"] * 30 + ["small"] * 3 + ["mid"] * 7,
                           "a": rng.integers(0, 100, 40)})
    ads = pd.DataFrame({"id": np.arange(40), "b": rng.integers(0, 100, 40)})
    tables = {"orders": (0, orders), "ads": (1, ads)}
    sql = "SELECT o.cat, SUM(d.b) AS s FROM orders o JOIN ads d ON o.id = d.id GROUP BY o.cat"
    got = run_query(tables, sql, policies={"orders": Policy(group_threshold=5)})
    assert_same(got[1], pooled(tables, sql + " HAVING COUNT(*) >= 5"))
    assert "small" not in set(got[1]["cat"])


def test_money_column_of_1e12_cents_compares_exactly():
    big = 10 ** 12
    a = pd.DataFrame({"id": np.arange(6), "cents": [big, big - 1, -big, 5, big, 0]})
    b = pd.DataFrame({"id": np.arange(6), "cents": [big - 1, big, -big + 1, 5, big, -1]})
    tables = {"a": (0, a), "b": (1, b)}
    sql = ("SELECT SUM(CASE WHEN x.cents > y.cents THEN 1 ELSE 0 END) AS gt, "
           "SUM(CASE WHEN x.cents = y.cents THEN 1 ELSE 0 END) AS eq, SUM(x.cents) AS s "
           "FROM a x JOIN b y ON x.id = y.id")
    got = run_query(tables, sql, bounds={"a": {"cents": 2 * big}, "b": {"cents": 2 * big}})
    assert got[1].to_dict("records") == [{"gt": 2, "eq": 2, "s": big + big - 1 - big + 5 + big}]


def test_streaming_chunks_give_the_same_answer():
    tables = random_tables(6, 90, 90)
    sql = ("SELECT SUM(o.a * d.b) AS s, MAX(o.a - d.b) AS m FROM orders o JOIN ads d "
           "ON o.id = d.id WHERE o.a > d.b")
    got = run_query(tables, sql, chunk_rows=7)
    assert_same(got[1], pooled(tables, sql))


def test_prealigned_tables_join_by_position_and_filter_secretly():
    rng = np.random.default_rng(7)
    n = 50
    a = pd.DataFrame({"id": np.arange(n), "a": rng.integers(0, 1 << 16, n)})
    b = pd.DataFrame({"id": np.arange(n), "b": rng.integers(0, 1 << 16, n)})
    tables = {"ta": (0, a), "tb": (1, b)}
    sql = ("SELECT SUM(x.a * y.b) AS s, SUM(y.b) AS sb, COUNT(*) AS c FROM ta x JOIN tb y "
           "ON x.id = y.id WHERE x.a > y.b AND x.a > 100")
    got = run_query(tables, sql, prealigned=("ta", "tb"))
    assert_same(got[1], pooled(tables, sql))


def test_prealigned_with_different_keys_is_refused():
    a = pd.DataFrame({"id": [1, 2, 3], "a": [1, 2, 3]})
    b = pd.DataFrame({"id": [1, 3, 2], "b": [1, 2, 3]})
    with pytest.raises(veil.PartyError, match="do not have equal join keys"):
        run_query({"ta": (0, a), "tb": (1, b)}, "SELECT SUM(x.a * y.b) FROM ta x JOIN tb y "
                  "ON x.id = y.id", prealigned=("ta", "tb"))


def test_empty_join_gives_sql_nulls_and_zero_count():
    a = pd.DataFrame({"id": [1, 2], "a": [1, 2]})
    b = pd.DataFrame({"id": [3, 4], "b": [1, 2]})
    tables = {"ta": (0, a), "tb": (1, b)}
    sql = "SELECT COUNT(*) AS n, SUM(x.a * y.b) AS s FROM ta x JOIN tb y ON x.id = y.id"
    got = run_query(tables, sql)
    assert got[1]["n"].tolist() == [0] and pd.isna(got[1]["s"][0])


@pytest.mark.parametrize("parties", [3, 5])
def test_grouped_result_revealed_to_every_party(parties):
    tables = random_tables(10, 80, 80)
    sql = ("SELECT d.campaign, SUM(o.a) AS s, COUNT(*) AS n FROM orders o JOIN ads d "
           "ON o.id = d.id WHERE o.a < d.b GROUP BY d.campaign")
    got = run_query(tables, sql, parties=parties, reveal_to=None)
    assert len(got) == parties
    want = pooled(tables, sql + " HAVING COUNT(*) >= 4")
    for out in got:
        assert_same(out, want)


def test_inputs_from_pyarrow_and_duckdb_relation():
    import duckdb
    import pyarrow as pa
    t = random_tables(11)
    rel = duckdb.connect().from_df(t["ads"][1])
    tables = {"orders": (0, pa.Table.from_pandas(t["orders"][1])), "ads": (1, rel)}
    sql = "SELECT SUM(o.a * d.b) AS s FROM orders o JOIN ads d ON o.id = d.id"
    got = run_query(tables, sql)
    assert_same(got[1], pooled(random_tables(11), sql))


def test_row_level_strings_and_dates_without_a_secret_filter():
    tables = random_tables(12)
    sql = ("SELECT o.cat, o.day, d.campaign, o.a + d.b AS t FROM orders o JOIN ads d "
           "ON o.id = d.id WHERE o.a > 0 ORDER BY o.id")
    got = run_query(tables, sql)
    want = pooled(tables, sql)
    got[1]["day"], want["day"] = got[1]["day"].astype(str), want["day"].astype(str)
    assert_same(got[1], want, ordered=True)


def test_row_level_string_under_a_secret_filter_is_refused():
    with pytest.raises(veil.PartyError, match="string in a row-level result"):
        run_query(random_tables(12), "SELECT o.cat FROM orders o JOIN ads d ON o.id = d.id "
                  "WHERE o.a > d.b")


@pytest.mark.parametrize("sql", [
    "SELECT o.cat, SUM(d.b) AS s FROM orders o JOIN ads d ON o.id = d.id WHERE o.a > 5000 "
    "GROUP BY o.cat",
    "SELECT o.cat, SUM(d.b) AS s FROM orders o JOIN ads d ON o.id = d.id "
    "WHERE o.a > d.b + 5000 GROUP BY o.cat",
    "SELECT o.cat, d.b FROM orders o JOIN ads d ON o.id = d.id WHERE o.a > 5000",
    "SELECT o.cat, SUM(d.b), COUNT(*) FROM orders o JOIN ads d ON o.id = d.id "
    "WHERE o.a > 5000 GROUP BY o.cat",
])
def test_empty_results_keep_their_columns(sql):
    """Empty results, with the column names DuckDB gives (unaliased ones by their text)."""
    got = run_query(random_tables(1), sql)[1]
    assert len(got) == 0 and list(got.columns) == list(pooled(random_tables(1), sql).columns)


@pytest.mark.parametrize("parties", [2, 3])
def test_many_chunks_are_exact(parties):
    """Chunks of 4 rows (dozens of chunks): grouped sums, a CASE, MIN and COUNT stay exact
    (the chunk loop's dealer requests repeat chunk after chunk)."""
    tables = random_tables(11, 90, 90)
    sql = ("SELECT o.cat, SUM(CASE WHEN o.a > d.b THEN o.a * d.clicks ELSE 0 END) AS s, "
           "MIN(o.a - d.b) AS lo, COUNT(*) AS n FROM orders o JOIN ads d ON o.id = d.id "
           "GROUP BY o.cat")
    got = run_query(tables, sql, parties=parties, chunk_rows=4)
    assert_same(got[1], pooled(tables, sql))


@pytest.mark.parametrize("protocol,parties", [("semi2k", 2), ("semi2k", 3), ("rep3", 3)])
def test_summed_products_are_dot_products_and_exact(protocol, parties):
    """SUM(x·y) (masked by WHERE or CASE, decimals included) runs as one dot product per
    chunk (exact.Product); the same products grouped or in MAX are elementwise."""
    tables = random_tables(5, 80, 80)
    sql = ("SELECT SUM(o.a * d.b) AS s, SUM(CASE WHEN o.a > d.b THEN o.price * d.clicks "
           "ELSE 0.00 END) AS t, SUM(o.a * d.b * d.clicks) AS u, MAX(o.a * d.b) AS m "
           "FROM orders o JOIN ads d ON o.id = d.id WHERE o.a + d.b > -300")
    got = run_query(tables, sql, parties=parties, chunk_rows=16, protocol=protocol)
    assert_same(got[1], pooled(tables, sql), rtol=1e-12)
    grouped = ("SELECT d.campaign, SUM(o.a * d.b) AS s FROM orders o JOIN ads d "
               "ON o.id = d.id GROUP BY d.campaign")
    got = run_query(tables, grouped, parties=parties, protocol=protocol)
    assert_same(got[1], pooled(tables, grouped))


def test_a_summed_product_needs_one_dealer_number_per_chunk():
    """Dealer traffic of SUM(a·b): the Beaver c of a dot product is one ring element per
    chunk, where an elementwise product needs one per row."""
    n = 4000
    rng = np.random.default_rng(3)
    a = pd.DataFrame({"id": np.arange(n), "a": rng.integers(0, 1000, n)})
    b = pd.DataFrame({"id": np.arange(n), "b": rng.integers(0, 1000, n)})

    def job(sql):
        db = veil.sql.Session()
        db.register("ta", a if veil.rank() == 0 else None, owner=0, prealigned=True)
        db.register("tb", b if veil.rank() == 1 else None, owner=1, prealigned=True)
        s0 = veil.stats()["offline_bytes_received"]
        out = db.query(sql, reveal_to=0)
        return out, veil.stats()["offline_bytes_received"] - s0
    dot = "SELECT SUM(x.a * y.b) AS s FROM ta x JOIN tb y ON x.id = y.id"
    rows = "SELECT MAX(x.a * y.b) AS s FROM ta x JOIN tb y ON x.id = y.id"
    (out, offline), _ = veil.run(job, dot, parties=2)
    assert int(out["s"][0]) == int((a["a"] * b["b"]).sum())
    assert offline == 8                         # c of the one (n,)·(n,) dot product
    (_, offline_rows), _ = veil.run(job, rows, parties=2)
    assert offline_rows >= 8 * n                # the elementwise product's c, per row


@pytest.mark.parametrize("protocol,parties", [("semi2k", 2), ("semi2k", 3), ("rep3", 3)])
def test_masked_sums_share_one_select_round(protocol, parties):
    """Under a cross-party WHERE, every summed column is masked in one batched select
    (and COUNT(*) is the mask itself): exact, and three sums take the rounds of one."""
    tables = random_tables(8, 90, 90)
    where = "FROM orders o JOIN ads d ON o.id = d.id WHERE o.a > d.b GROUP BY d.campaign"
    three = f"SELECT d.campaign, SUM(o.a) AS s, SUM(d.clicks) AS c, SUM(o.price) AS p, " \
            f"COUNT(*) AS n {where}"
    # The same columns (each measured bound is agreed once per column), one masked sum.
    one = f"SELECT d.campaign, SUM(o.a + d.clicks + o.price) AS s, COUNT(*) AS n {where}"

    def job(sql):
        db = veil.sql.Session()
        for name, (owner, df) in tables.items():
            db.register(name, df if veil.rank() == owner else None, owner=owner)
        s0 = veil.stats()["rounds"]
        out = db.query(sql, reveal_to=1)
        return out, veil.stats()["rounds"] - s0
    got3 = veil.run(job, three, parties=parties, protocol=protocol)
    got1 = veil.run(job, one, parties=parties, protocol=protocol)
    assert_same(got3[1][0], pooled(tables, three), rtol=1e-12)
    assert_same(got1[1][0], pooled(tables, one), rtol=1e-12)
    assert got3[0][1] == got1[0][1]
