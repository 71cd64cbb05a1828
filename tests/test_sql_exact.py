"""veil.sql.exact: exact ring integers — full-width comparisons, bounds, declared costs."""

import pytest
import torch

import veil

pytest.importorskip("sqlglot")
from veil.errors import RangeError
from veil.sql.exact import MIN_WIDTH, SInt, _width


def _cmp(xs, ys, bound):
    def job():
        a = SInt.share(torch.tensor(xs) if veil.rank() == 0 else None, 0, (len(xs),), bound)
        b = SInt.share(torch.tensor(ys) if veil.rank() == 1 else None, 1, (len(ys),), bound)
        return [(a > b).to_int().reveal(to=0), a.eq(b).to_int().reveal(to=0),
                (a * SInt.public(1, (len(xs),))).reveal(to=0)]
    return veil.run(job, parties=2)[0]


def test_comparison_exact_over_the_full_64_bit_range():
    big = (1 << 62) - 1
    xs = [big, -big, big, 0, 10 ** 12, -(10 ** 12), 5]
    ys = [big - 1, -big + 1, -big, 0, 10 ** 12 - 1, -(10 ** 12), 5]
    gt, eq, same = _cmp(xs, ys, 1 << 62)
    assert gt.tolist() == [int(x > y) for x, y in zip(xs, ys)]
    assert eq.tolist() == [int(x == y) for x, y in zip(xs, ys)]
    assert same.tolist() == xs
    assert _width(1 << 63) == 64


def test_width_follows_the_bound():
    assert _width(2) == MIN_WIDTH == 19 and _width(1 << 32) == 33 and _width(1 << 40) == 41
    with pytest.raises(RangeError):
        _width((1 << 63) + 1)


def test_products_and_sums_that_could_wrap_are_refused():
    def job():
        a = SInt.share(torch.tensor([3]) if veil.rank() == 0 else None, 0, (1,), 1 << 40)
        with pytest.raises(RangeError, match="wrap around"):
            a * a
        return (a * SInt.share(torch.tensor([1 << 20]) if veil.rank() == 1 else None, 1,
                               (1,), 1 << 22)).reveal(to=0)
    assert veil.run(job, parties=2)[0].tolist() == [3 << 20]


def test_values_beyond_the_bound_are_refused_at_the_owner():
    def job():
        SInt.share(torch.tensor([100]) if veil.rank() == 0 else None, 0, (1,), 100)
    with pytest.raises(veil.PartyError, match="party 0.*outside its declared bound"):
        veil.run(job, parties=2)


@pytest.mark.parametrize("parties", [2, 3])
def test_sdh_traffic_matches_the_kernels_declared_costs(parties):
    """SDH row: msb at 19 bits + mul + select; bytes counted == kernels' declared costs."""
    pytest.importorskip("duckdb")
    import pandas as pd
    n = 1000
    rng = torch.Generator().manual_seed(0)
    a = torch.randint(0, 1 << 16, (n,), generator=rng)
    b = torch.randint(0, 1 << 16, (n,), generator=rng)

    def job():
        db = veil.sql.Session()
        db.register("ta", pd.DataFrame({"id": range(n), "a": a.numpy()})
                    if veil.rank() == 0 else None, owner=0, prealigned=True)
        db.register("tb", pd.DataFrame({"id": range(n), "b": b.numpy()})
                    if veil.rank() == 1 else None, owner=1, prealigned=True)
        proto = veil.context.current().protocol
        from dataclasses import replace
        cfg = replace(proto.config, compare_bits=MIN_WIDTH)
        declared = sum(k.cost(n=parties, rank=veil.rank(), cfg=cfg, **sz).bytes_sent
                       for k, sz in [(proto.kernels["msb"], {"numel": n}),
                                     (proto.kernels["mul"], {"numel_x": n, "numel_y": n}),
                                     (proto.kernels["select"], {"numel": n})])
        s0 = veil.stats()["bytes_sent"]
        out = db.query("SELECT SUM(CASE WHEN x.a > y.b THEN x.a * y.b ELSE 0 END) AS s "
                       "FROM ta x JOIN tb y ON x.id = y.id", reveal_to=0)
        return out, veil.stats()["bytes_sent"] - s0, declared
    res = veil.run(job, parties=parties)
    assert int(res[0][0]["s"][0]) == int((a * b * (a > b)).sum())
    for r, (_, sent, declared) in enumerate(res):
        # + at the two owners, the prealigned key check (16-byte nonce, 32-byte digest)
        # and the row count broadcast (JSON "1000"); the final openings of COUNT and SUM
        # (8 bytes each) to party 0.
        extra = (16 + 32 + 4 * (parties - 1) if r < 2 else 0) + (2 * 8 if r != 0 else 0)
        assert sent == declared + extra, (r, sent, declared)
