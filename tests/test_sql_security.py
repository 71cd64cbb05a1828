"""veil.sql security: no input value or group label crosses a channel in the clear."""

import pytest

pytest.importorskip("duckdb")

import numpy as np
import pandas as pd

import veil.comm.communicator as cm
from sql_helpers import run_query


def _traffic(fn):
    seen = {}
    orig = cm.Communicator.send_bytes

    def spy(self, peer, payload):
        seen.setdefault(self.rank, []).append(bytes(payload))
        return orig(self, peer, payload)
    cm.Communicator.send_bytes = spy
    try:
        out = fn()
    finally:
        cm.Communicator.send_bytes = orig
    return out, {r: b"".join(v) for r, v in seen.items()}


def test_owner_values_and_group_labels_never_cross_in_the_clear():
    rng = np.random.default_rng(0)
    n = 64
    orders = pd.DataFrame({"id": np.arange(n),
                           "cat": rng.choice(["zebra-secret-cat", "okapi-secret-cat"], n),
                           "a": 0x5EC2E7_000000 + rng.integers(0, 1 << 20, n)})
    ads = pd.DataFrame({"id": np.arange(n), "b": 0x5EC2E7_000000 + rng.integers(0, 1 << 20, n)})
    tables = {"orders": (0, orders), "ads": (1, ads)}
    sql = ("SELECT o.cat, SUM(o.a) AS s, SUM(d.b) AS t FROM orders o JOIN ads d "
           "ON o.id = d.id WHERE o.a > d.b GROUP BY o.cat")
    out, wire = _traffic(lambda: run_query(tables, sql, parties=3, reveal_to=1))
    assert out[1] is not None and len(out[1]) >= 1       # labels reached the receiver
    assert set(out[1]["cat"]) <= {"zebra-secret-cat", "okapi-secret-cat"}
    for rank, (df, col) in {0: (orders, "a"), 1: (ads, "b")}.items():
        for v in df[col]:
            assert int(v).to_bytes(8, "little", signed=True) not in wire[rank]
    for label in ("zebra-secret-cat", "okapi-secret-cat"):
        assert all(label.encode() not in w for w in wire.values())
    # The third party (no table, not the receiver) got nothing but None.
    assert out[2] is None


def test_dropped_groups_stay_unreadable_to_the_receiver():
    orders = pd.DataFrame({"id": np.arange(12), "cat": ["big"] * 10 + ["tiny-group"] * 2,
                           "a": np.arange(12)})
    ads = pd.DataFrame({"id": np.arange(12), "b": np.arange(12)})
    tables = {"orders": (0, orders), "ads": (1, ads)}
    out, wire = _traffic(lambda: run_query(
        tables, "SELECT o.cat, SUM(d.b) AS s FROM orders o JOIN ads d ON o.id = d.id "
                "GROUP BY o.cat"))
    assert out[1]["cat"].tolist() == ["big"]
    assert b"tiny-group" not in wire[0]
