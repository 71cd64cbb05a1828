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
    assert _width(2) == MIN_WIDTH == 2 and _width(1 << 17) == 18
    assert _width(1 << 32) == 33 and _width(1 << 40) == 41
    with pytest.raises(RangeError):
        _width((1 << 63) + 1)


@pytest.mark.parametrize("protocol,parties", [("semi2k", 2), ("semi2k", 3), ("rep3", 3),
                                              ("insecure_reference", 2)])
def test_kernel_width_is_exact_up_to_its_domain_and_wraps_beyond(protocol, parties):
    """msb/eqz(width=w) are exact for |x| < 2^(w-1), the edges included; a value one past
    the edge wraps (which is why SQL derives w from a bound); widths outside 2..64 are
    refused before any traffic."""
    def job():
        p = veil.context.current().protocol
        out = {}
        for w in (2, 12, 18, 41, 64):
            top = (1 << (w - 1)) - 1
            xs = torch.tensor([top, -top, 0, 1, -1, top // 3, -(top // 3)] if w < 64
                              else [top, -top, 0, 1, -1])
            sh = p.add_public(p.zeros(xs.shape), xs)
            lt = p.reveal_bits(p.msb(sh, width=w)).tolist()
            eq = p.reveal_bits(p.eqz(sh, width=w)).tolist()
            out[w] = (xs.tolist(), lt, eq)
        over = p.add_public(p.zeros((1,)), torch.tensor([1 << 11]))
        out["wrapped"] = p.reveal_bits(p.msb(over, width=12)).tolist()
        for bad in (1, 65, 12.5, True):
            with pytest.raises(ValueError, match="width must be an int in 2..64"):
                p.msb(over, width=bad)
            with pytest.raises(ValueError, match="width must be an int in 2..64"):
                p.eqz(over, width=bad)
        return out
    out = veil.run(job, parties=parties, protocol=protocol, seed=1)[0]
    for w in (2, 12, 18, 41, 64):
        xs, lt, eq = out[w]
        assert lt == [int(x < 0) for x in xs], w
        assert eq == [int(x == 0) for x in xs], w
    assert out["wrapped"] == [1]          # 2^11 read on 12 bits is negative: beyond the width


def test_sql_comparison_width_is_the_operands_bound():
    """The comparison traffic follows the declared bound: 2^16 columns pay for 18 bits,
    10^12-cent columns for 42 (declared msb cost at that width == counted)."""
    def job():
        p = veil.context.current().protocol
        res = {}
        for bound, width in ((1 << 16, 18), (10 ** 12, 42)):
            a = SInt.share(torch.tensor([bound - 1, 3]) if veil.rank() == 0 else None, 0,
                           (2,), bound)
            b = SInt.share(torch.tensor([-(bound - 1), 3]) if veil.rank() == 1 else None, 1,
                           (2,), bound)
            s0 = veil.stats()
            bit = a > b
            s1 = veil.stats()
            cost = p.declared_cost("msb", numel=2, width=width)
            res[bound] = ((s1["rounds"] - s0["rounds"], s1["bytes_sent"] - s0["bytes_sent"]),
                          (cost.rounds, cost.bytes_sent), bit.to_int().reveal().tolist())
        return res
    for counted, declared, bits in veil.run(job, parties=2, seed=0)[0].values():
        assert counted == declared and bits == [1, 0]


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
    """SDH row: msb at 18 bits + select (on a) + the summed product a·b as one (n,)·(n,)
    matmul; bytes counted == kernels' declared costs."""
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
        declared = sum(proto.declared_cost(k, **sz).bytes_sent
                       for k, sz in [("msb", {"numel": n, "width": 18}),
                                     ("matmul", {"numel_x": n, "numel_y": n}),
                                     ("select", {"numel": n})])
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
