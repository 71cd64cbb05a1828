"""Ad attribution: an ad platform and a merchant, one SQL query, neither sees the other's rows.

Party 0, the ad platform, holds impressions (user, campaign, day shown, cost in cents).
Party 1, the merchant, holds orders (user, day, amount in cents). The merchant wants, per
campaign, how many orders followed an impression and the revenue they brought, and the
platform's spend on those users:

* the join on user runs as PSI (both learn which of their users are common, nothing else);
* "the order came on or after the impression" compares the two parties' dates: a secret
  0/1 mask per joined row, never revealed, that multiplies into the sums;
* campaign is the platform's column: the group sums are one secret matmul; groups under
  the threshold (4 rows by default) are dropped secretly, and the merchant gets only the
  kept campaigns' names and totals.

    python examples/ad_attribution.py           # both parties as threads
    veil run -n 2 examples/ad_attribution.py    # one OS process per party, over TLS
"""

import numpy as np
import pandas as pd

import veil


def make_tables(seed: int = 7):
    rng = np.random.default_rng(seed)
    users = np.arange(400)
    shown = rng.choice(users, 600)
    impressions = pd.DataFrame({
        "user_id": shown,
        "campaign": rng.choice(["spring", "summer", "brand", "retarget"], 600,
                               p=[0.4, 0.3, 0.295, 0.005]),
        "day": pd.to_datetime("2025-03-01") + pd.to_timedelta(rng.integers(0, 30, 600), "D"),
        "cost_cents": rng.integers(5, 80, 600),
    }).drop_duplicates("user_id")
    buyers = rng.choice(users, 300)
    orders = pd.DataFrame({
        "user_id": buyers,
        "day": pd.to_datetime("2025-03-01") + pd.to_timedelta(rng.integers(0, 40, 300), "D"),
        "amount_cents": rng.integers(500, 250_000, 300),
    })
    return impressions, orders


QUERY = """
SELECT i.campaign,
       COUNT(*)             AS conversions,
       SUM(o.amount_cents)  AS revenue_cents,
       SUM(i.cost_cents)    AS spend_cents
FROM impressions i JOIN orders o ON i.user_id = o.user_id
WHERE o.day >= i.day
GROUP BY i.campaign
ORDER BY revenue_cents DESC
"""


def job():
    impressions, orders = make_tables()
    db = veil.sql.Session()
    db.register("impressions", impressions if veil.rank() == 0 else None, owner=0)
    db.register("orders", orders if veil.rank() == 1 else None, owner=1)
    result = db.query(QUERY, reveal_to=1)
    if result is not None:
        print("merchant (party 1) sees:\n" + result.to_string(index=False))
        import duckdb
        con = duckdb.connect()
        con.register("impressions", impressions)
        con.register("orders", orders)
        # The check only this demo can do: both tables pooled in the clear.
        want = con.execute(QUERY.replace("ORDER BY", "HAVING COUNT(*) >= 4 ORDER BY")).df()
        assert result.values.tolist() == want.values.tolist(), (result, want)
        print("matches DuckDB on the pooled tables (exact)")
        sent = veil.stats()
        print(f"party 1 sent {sent['bytes_sent']:,} bytes in {sent['rounds']} rounds")
    return result


if __name__ == "__main__":
    out = veil.run(job, parties=2)
    assert out[0] is None
