"""Secure aggregation core (veil.fl.secagg): correctness against the plain sum, dropouts,
thresholds, bad input, and what the server sees. No Flower needed."""

import math

import pytest
import torch

from veil.errors import RangeError
from veil.fl.secagg import (FixedPoint, InsufficientClientsError, SecAggClient, SecAggConfig,
                            simulate_round)
from veil.fl.secagg import shamir

N = 257   # vector length: not a multiple of anything convenient


def _updates(ids, seed=0, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    return {u: scale * torch.randn(N, generator=g, dtype=torch.float64) for u in ids}


@pytest.mark.parametrize("clients", [2, 3, 5, 8])
def test_sum_matches_plain_to_fixed_point_precision(clients):
    cfg = SecAggConfig(vector_len=N, threshold=2)
    xs = _updates(range(10, 10 + clients))
    r = simulate_round(cfg, xs)
    plain = sum(xs.values())
    err = float((r.sum - plain).abs().max())
    assert err <= cfg.fixed_point.precision(clients)
    assert r.survivors == sorted(xs)


def test_dropouts_before_and_after_masked_input():
    ids = list(range(1, 11))
    xs = _updates(ids, seed=1)
    cfg = SecAggConfig(vector_len=N, threshold=5)
    r = simulate_round(cfg, xs, drop_after_keys=[1], drop_after_shares=[2, 3],
                       drop_after_input=[4, 5])
    # 2, 3 sent shares but no masked input: excluded, masks cancelled via their key shares.
    # 4, 5 sent masked input then vanished: included, self-masks recovered from others.
    assert r.dropped_before_input == [2, 3] and r.dropped_after_input == [4, 5]
    assert r.survivors == [4, 5, 6, 7, 8, 9, 10]
    plain = sum(xs[u] for u in r.survivors)
    assert float((r.sum - plain).abs().max()) <= cfg.fixed_point.precision(7)


def test_masked_vectors_look_uniform_to_the_server():
    """The server's view of one client: y = x + masks; with x = 0 or x = huge constant,
    every byte of y is uniform (chi-square) and the two cases are indistinguishable."""
    cfg = SecAggConfig(vector_len=4096, threshold=2)
    seen = {}
    xs = {1: torch.zeros(4096), 2: torch.full((4096,), 1000.0), 3: torch.zeros(4096)}
    simulate_round(cfg, xs, observe=lambda k, v: seen.setdefault(k, v))
    for u in (1, 2):
        y = seen["masked"][u]
        b = y.view(torch.uint8).long()
        counts = torch.bincount(b, minlength=256).double()
        expect = b.numel() / 256
        chi2 = float(((counts - expect) ** 2 / expect).sum())
        # 255 degrees of freedom: mean 255, sd ~22.6; 400 is > 6 sd (false alarm ~1e-8).
        assert chi2 < 400, chi2
        # top bit of each element: fair coin (sd of the mean = 1/128 for 4096 bits)
        assert abs(float((y < 0).double().mean()) - 0.5) < 0.06
    # The plaintext never appears in anything the server receives.
    enc = cfg.fixed_point.encode(xs[2])
    assert not bool((seen["masked"][2] == enc).any())


def test_too_few_clients_for_threshold():
    cfg = SecAggConfig(vector_len=N, threshold=4)
    with pytest.raises(InsufficientClientsError, match="threshold needs 4"):
        simulate_round(cfg, _updates([1, 2, 3]))
    xs = _updates([1, 2, 3, 4, 5])
    with pytest.raises(InsufficientClientsError, match="stage 'masked_input'"):
        simulate_round(cfg, xs, drop_after_shares=[1, 2])
    with pytest.raises(InsufficientClientsError, match="stage 'unmask'"):
        simulate_round(cfg, xs, drop_after_input=[1, 2])


def test_client_refuses_unmask_below_threshold():
    """Even if the server claims fewer survivors than t, no client reveals shares."""
    cfg = SecAggConfig(vector_len=4, threshold=3)
    cs = {u: SecAggClient(u, cfg, b"r" * 16) for u in (1, 2, 3)}
    roster = {u: (a["c_pk"], a["s_pk"]) for u, a in ((u, c.advertise()) for u, c in cs.items())}
    out = {u: c.share_keys(roster) for u, c in cs.items()}
    inbox = {v: {u: out[u][v] for u in cs if u != v} for v in cs}
    for u, c in cs.items():
        c.masked_input(torch.ones(4), inbox[u])
    with pytest.raises(InsufficientClientsError):
        cs[1].unmask([1, 2])
    with pytest.raises(RuntimeError, match="each stage runs once"):
        cs[1].unmask([1, 2, 3])


@pytest.mark.parametrize("bad, match", [
    (torch.ones(N + 1), "flat vector of 257"),
    (torch.ones(N, 1), "flat vector"),
    (torch.full((N,), float("nan")), "NaN or inf"),
    (torch.full((N,), float("inf")), "NaN or inf"),
    (torch.full((N,), 1e9), "bound"),
])
def test_bad_update_is_refused(bad, match):
    cfg = SecAggConfig(vector_len=N, threshold=2)
    xs = _updates([1, 2, 3])
    xs[2] = bad
    with pytest.raises((ValueError, RangeError), match=match):
        simulate_round(cfg, xs)


def test_server_rejects_malformed_masked_vector():
    from veil.fl.secagg import SecAggServer
    cfg = SecAggConfig(vector_len=8, threshold=2)
    s = SecAggServer(cfg)
    cs = {u: SecAggClient(u, cfg, s.round_id) for u in (1, 2)}
    roster = s.collect_keys({u: c.advertise() for u, c in cs.items()})
    inbox = s.route_shares({u: c.share_keys(roster) for u, c in cs.items()})
    ys = {u: c.masked_input(torch.ones(8), inbox[u]) for u, c in cs.items()}
    ys[2] = ys[2].double()
    with pytest.raises(ValueError, match="client 2 sent a masked vector"):
        s.collect_masked(ys)


def test_tampered_share_is_detected():
    cfg = SecAggConfig(vector_len=4, threshold=2)
    cs = {u: SecAggClient(u, cfg, b"r" * 16) for u in (1, 2)}
    roster = {u: (a["c_pk"], a["s_pk"]) for u, a in ((u, c.advertise()) for u, c in cs.items())}
    out = {u: c.share_keys(roster) for u, c in cs.items()}
    blob = bytearray(out[1][2])
    blob[-1] ^= 1
    with pytest.raises(ValueError, match="failed authentication"):
        cs[2].masked_input(torch.ones(4), {1: bytes(blob)})


def test_fixed_point_overflow_bound_is_checked():
    with pytest.raises(RangeError, match="could wrap"):
        FixedPoint(frac_bits=40, bound=1e4, max_clients=1000)
    fp = FixedPoint(frac_bits=24, bound=1e4, max_clients=10_000)
    assert fp.max_clients * fp.bound * 2 ** fp.frac_bits < 2 ** 63


def test_shamir_threshold_and_secrecy():
    secret = bytes(range(32))
    sh = shamir.split(secret, t=3, n=5)
    for subset in ([0, 1, 2], [2, 3, 4], [0, 2, 4]):
        assert shamir.combine([sh[i] for i in subset], t=3) == secret
    with pytest.raises(ValueError, match="need 3"):
        shamir.combine(sh[:2], t=3)
    # leading zero bytes survive
    assert shamir.combine(shamir.split(b"\0\0ab", 2, 3)[:2], 2) == b"\0\0ab"


def test_threshold_fraction_rounds_up():
    cfg = SecAggConfig(vector_len=1, threshold=2 / 3)
    assert cfg.t_for(10) == math.ceil(20 / 3) == 7
    assert cfg.t_for(2) == 2
    with pytest.raises(ValueError, match=">= 2"):
        SecAggConfig(vector_len=1, threshold=1)


@pytest.mark.parametrize("t, n", [(4, 5), (2, 4), (6, 6)])
def test_even_and_full_thresholds_work(t, n):
    # Flower 1.42's SecAgg+ crashes every round with an even num_shares (issue 13).
    cfg = SecAggConfig(vector_len=16, threshold=t)
    xs = _updates(range(1, n + 1))
    xs = {u: x[:16] for u, x in xs.items()}
    r = simulate_round(cfg, xs)
    assert float((r.sum - sum(xs.values())).abs().max()) <= cfg.fixed_point.precision(n)
