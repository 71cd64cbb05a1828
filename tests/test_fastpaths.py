"""Fast paths of shared mechanisms give bit-identical results to the slow ones.

The per-op and per-round overhead work (issue 15) replaced a few hot paths by cheaper
ones; each is checked here against the straightforward statement of the same thing.
"""

from __future__ import annotations

import importlib
import random

import numpy as np
import pytest
import torch
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

import veil
from veil.comm.communicator import bytes_to_tensor, tensor_to_bytes
from veil.offline.prg import BLOCK, PRG, SMALL
from veil.protocols.circuits import BROADCAST_PAIRS, carry_out

from helpers import dealer_answers


# -- PRG: small draws cut from a block produced ahead ----------------------------------------
def _keystream(seed: bytes, n: int) -> bytes:
    return Cipher(algorithms.AES(seed), modes.CTR(b"\0" * 16)).encryptor().update(bytes(n))


def test_prg_stream_is_aes_ctr_however_it_is_cut():
    seed = bytes(range(16))
    sizes = [0, 1, 7, 8, SMALL - 1, SMALL, SMALL + 1, BLOCK - 3, BLOCK + 5, 3 * BLOCK]
    rng = random.Random(0)
    sizes += [rng.randrange(0, 2 * SMALL) for _ in range(300)]
    rng.shuffle(sizes)
    prg, got = PRG(seed), []
    for n in sizes:
        t = prg.bytes(n)
        assert t.dtype == torch.uint8 and t.shape == (n,)
        got.append(t.numpy().tobytes())
    joined = b"".join(got)
    assert joined == _keystream(seed, len(joined))


def test_prg_draws_are_owned_and_writable():
    # A caller may modify its draw in place (the Beaver kernel adds into b): that must not
    # touch the keystream still ahead, nor an earlier draw.
    seed = b"\x07" * 16
    a, b = PRG(seed), PRG(seed)
    x = a.ring((4, 3))
    x += 1                              # in place, as the kernels do
    y = a.ring((5,))
    b.ring((4, 3))
    assert torch.equal(y, b.ring((5,)))
    assert x.dtype == torch.int64 and x.shape == (4, 3)
    bits = a.bits((3, 9))
    assert bits.shape == (3, 9) and set(bits.unique().tolist()) <= {0, 1}


def test_prg_ring_matches_keystream_words():
    seed = b"\x01" * 16
    words = PRG(seed).ring((2, 3)).reshape(-1).numpy()
    ref = np.frombuffer(_keystream(seed, 48), dtype="<i8")
    assert (words == ref).all()


# -- tensor bytes on the wire --------------------------------------------------------------
def _old_tensor_to_bytes(t):
    return bytes(memoryview(t.detach().contiguous().cpu().reshape(-1).numpy()).cast("B"))


@pytest.mark.parametrize("t", [
    torch.arange(12, dtype=torch.int64).reshape(3, 4),
    torch.arange(12, dtype=torch.int64).reshape(3, 4).t(),          # not contiguous
    torch.arange(24, dtype=torch.int32).reshape(2, 3, 4)[:, ::2],     # strided
    torch.arange(10, dtype=torch.int64)[::3],                         # 1-d strided
    torch.zeros(0, 5, dtype=torch.int64),                             # a 0 in the shape
    torch.tensor(7, dtype=torch.int64),                               # 0-d
    torch.tensor([True, False, True]),
    torch.randn(3, 2, requires_grad=True),                            # needs detach
])
def test_tensor_to_bytes_same_bytes_as_before(t):
    raw = tensor_to_bytes(t)
    assert bytes(raw) == _old_tensor_to_bytes(t)
    back = bytes_to_tensor(bytearray(raw), tuple(t.shape), t.dtype, "party 1")
    assert torch.equal(back, t.detach())


# -- the carry tree: strided slices vs one tensor per row --------------------------------------
def carry_out_rows(proto, g: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """`carry_out` written one row at a time: the reference the fast, strided one must match."""
    g_rows, p_rows = list(g), list(p)
    broadcast = getattr(proto, "and_broadcasts", False)
    while len(g_rows) > 1:
        pairs = len(g_rows) // 2
        left_a = [p_rows[2 * i + 1] for i in range(pairs)]          # P_hi & G_lo
        left_b = [g_rows[2 * i] for i in range(pairs)]
        right_a = [p_rows[2 * i + 1] for i in range(1, pairs)]     # P_hi & P_lo
        right_b = [p_rows[2 * i] for i in range(1, pairs)]
        if broadcast and pairs >= BROADCAST_PAIRS:
            both = torch.stack([torch.stack(left_b), torch.stack([p_rows[0]] + right_b)])
            prod = proto.and_bits(torch.stack(left_a).unsqueeze(0), both)
            prod = torch.cat([prod[0], prod[1, 1:]])
        else:
            prod = proto.and_bits(torch.stack(left_a + right_a),
                                  torch.stack(left_b + right_b))
        new_g = [g_rows[2 * i + 1] ^ prod[i] for i in range(pairs)]
        new_p = [p_rows[1]] + [prod[pairs + i - 1] for i in range(1, pairs)]  # row-0 P unused
        if len(g_rows) % 2:
            new_g.append(g_rows[-1])
            new_p.append(p_rows[-1])
        g_rows, p_rows = new_g, new_p
    return g_rows[0]


@pytest.mark.parametrize("rows", [1, 2, 3, 5, 6, 7, 31, 32, 33, 63])
def test_carry_out_matches_row_by_row(rows):
    def party():
        gen = torch.Generator().manual_seed(rows)
        g = torch.randint(0, 256, (rows, 5), dtype=torch.uint8, generator=gen)
        p = torch.randint(0, 256, (rows, 5), dtype=torch.uint8, generator=gen)
        # XOR shares: party 0 holds the value, party 1 zeros (the circuit is share-wise
        # the same either way; the opened AND results are what is compared)
        if veil.rank() == 1:
            g, p = torch.zeros_like(g), torch.zeros_like(p)
        proto = veil.context.current().protocol
        s0 = veil.stats()
        fast = carry_out(proto, g, p)
        s1 = veil.stats()
        slow = carry_out_rows(proto, g, p)
        s2 = veil.stats()
        same_cost = (s1["rounds"] - s0["rounds"], s1["bytes_sent"] - s0["bytes_sent"]) == \
            (s2["rounds"] - s1["rounds"], s2["bytes_sent"] - s1["bytes_sent"])
        opened = proto.comm.all_reduce([fast, slow], xor=(True, True))
        return opened, same_cost, g, p

    outs = veil.run(party, parties=2, seed=1)
    (fast, slow), same_cost, g, p = outs[0]
    assert same_cost and outs[1][1]
    assert torch.equal(fast, slow)
    # and both are the carry out of the top row: c_i = G_i ^ (P_i & c_i-1), row 0 first
    carry = g[0].clone()
    for i in range(1, rows):
        carry = g[i] ^ (p[i] & carry)
    assert torch.equal(fast, carry)


# -- one message per peer and round (fused small tensors) -------------------------------------
def test_fuse_unfuse_round_trip_mixed_dtypes():
    from veil.comm.communicator import fuse, unfuse
    ts = [torch.tensor([1, 2, 3], dtype=torch.uint8),          # odd length first: the layout
          torch.arange(5, dtype=torch.int64) - 2 ** 62,        # still aligns the int64s
          torch.arange(6, dtype=torch.int32).reshape(2, 3).t(),
          torch.zeros(0, dtype=torch.int64)]
    buf = fuse(ts)
    assert len(buf) == 3 + 40 + 24
    back = unfuse(bytes(buf), ts, "party 1")
    for a, b in zip(ts, back):
        assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
        if b.numel():
            assert b.data_ptr() % b.dtype.itemsize == 0


def test_unfuse_refuses_a_message_of_the_wrong_length():
    from veil.comm.communicator import fuse, unfuse
    ts = [torch.zeros(4, dtype=torch.int64), torch.zeros(3, dtype=torch.uint8)]
    buf = fuse(ts)
    for bad in (buf[:-1], buf + b"\0", b""):
        with pytest.raises(veil.errors.PartyError, match="party 2.*bytes where 35"):
            unfuse(bad, ts, "party 2")


@pytest.mark.parametrize("parties", [2, 3])
def test_fused_rounds_give_the_same_results_and_traffic(parties, monkeypatch):
    import veil.comm.communicator as cm

    def party():
        gen = torch.Generator().manual_seed(0)
        x0, y0 = torch.randn(7, 3, generator=gen), torch.randn(3, 2, generator=gen)
        x = veil.tensor(x0 if veil.rank() == 0 else None, owner=0)
        y = veil.tensor(y0 if veil.rank() == parties - 1 else None, owner=parties - 1)
        s0 = veil.stats()
        out = [(x @ y).reveal(), (x > 0.1).reveal(), (x * x).reveal()]
        s1 = veil.stats()
        return out, {k: s1[k] - s0[k] for k in ("rounds", "bytes_sent", "messages")}

    fused = veil.run(party, parties=parties, seed=3)
    monkeypatch.setattr(cm, "FUSE_BYTES", -1)                  # every tensor its own message
    apart = veil.run(party, parties=parties, seed=3)
    for (o1, s1), (o2, s2) in zip(fused, apart):
        assert all(torch.equal(a, b) for a, b in zip(o1, o2))
        assert (s1["rounds"], s1["bytes_sent"]) == (s2["rounds"], s2["bytes_sent"])
        assert s1["messages"] < s2["messages"]


# -- memoised type promotion -------------------------------------------------------------------
def test_result_dtype_memo_matches_torch():
    from veil.tensor.core import _PROMOTION, is_secret, result_dtype

    def party():
        out = []
        mine = veil.rank() == 0
        secrets = [veil.tensor(torch.tensor([1.5]) if mine else None, owner=0),
                   veil.tensor(torch.tensor([2], dtype=torch.int32) if mine else None, owner=0),
                   veil.tensor(torch.tensor([True]) if mine else None, owner=0)]
        publics = [torch.tensor(2.0, dtype=torch.float64), torch.tensor([3], dtype=torch.int64),
                   torch.tensor(1, dtype=torch.uint8), torch.tensor([1.0], dtype=torch.float16),
                   2, 2.5, True, np.float64(1.0)]
        for _ in range(2):                         # the second pass answers from the memo
            for s in secrets:
                probe = torch.empty(1, dtype=s.dtype)
                for p in publics + secrets:
                    want = torch.result_type(probe, torch.empty(1, dtype=p.dtype)
                                             if is_secret(p) else p)
                    out.append((result_dtype(s, p) == want, result_dtype(p, s) ==
                                torch.result_type(p if not is_secret(p)
                                                  else torch.empty(1, dtype=p.dtype), probe)))
        with pytest.raises(veil.errors.RangeError):
            result_dtype(secrets[0], 2 ** 70)     # the int64 range check survives the memo
        return out

    _PROMOTION.clear()
    res = veil.run(party, parties=2, seed=0)[0]
    assert all(a and b for a, b in res)
    assert _PROMOTION


def test_matmul_shape_check_still_refuses_after_a_good_pair():
    def party():
        a = veil.tensor(torch.ones(2, 3) if veil.rank() == 0 else None, owner=0)
        b = veil.tensor(torch.ones(3, 4) if veil.rank() == 0 else None, owner=0)
        c = veil.tensor(torch.ones(4, 4) if veil.rank() == 0 else None, owner=0)
        (a @ b).reveal(), (a @ b).reveal()            # remembered as fine
        with pytest.raises(RuntimeError):
            a @ c                                     # torch's own shape error, every time
        with pytest.raises(RuntimeError):
            a @ c
        return True
    assert all(veil.run(party, parties=2, seed=0))


# -- dealer requests: worked out once per distinct request -----------------------------------
REQUEST_VALUES = [1, 2, True, False, None, 1.0, 2.5, "mul", "1", [2, 3], (2, 3), [3, 2], [],
                  (), [[2, 3]], [2, [3]], [True, 3], [1.0, 3], {"stride": 1},
                  {"stride": True}, {"stride": [1, 1], "padding": 0},
                  {"padding": 0, "stride": (1, 1)}, {"stride": 1.0}, {}]


def test_frozen_request_values_are_equal_exactly_when_their_json_is():
    # The party-side request index must never merge two requests the dealer would tell
    # apart (True == 1 in Python, not in JSON), nor split two it would not (lists/tuples).
    import json

    from veil.offline.dealer import _frozen
    vals = REQUEST_VALUES + [{"shape": v, "frac": 16} for v in REQUEST_VALUES[:12]]
    for a in vals:
        for b in vals:
            same_json = json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
            assert (_frozen(a) == _frozen(b)) == same_json, (a, b)
            hash(_frozen(a))


def test_request_caches_give_the_same_results_traffic_and_counters(monkeypatch):
    # A few SGD steps of a logistic regression (the requests repeat every step, so the
    # look-ahead predicts them): with the caches, and with every lookup a miss.
    from veil.offline import dealer
    # built once, outside the parties: torch's global RNG is shared by the party threads,
    # so seeding it inside them races (the two runs would start from different weights)
    torch.manual_seed(0)
    net = torch.nn.Linear(5, 1)

    def party():
        gen = torch.Generator().manual_seed(1)
        x0, y0 = torch.randn(24, 5, generator=gen), (torch.rand(24, 1, generator=gen) > 0.5)
        x = veil.tensor(x0 if veil.rank() == 0 else None, owner=0)
        y = veil.tensor(y0.float() if veil.rank() == 1 else None, owner=1)
        model = veil.nn.from_torch(net if veil.rank() == 0 else None, owner=0)
        opt = veil.optim.SGD(model.parameters(), lr=0.5)
        crit = veil.nn.BCEWithLogitsLoss()
        for i in range(5):
            xb, yb = x[i * 4:i * 4 + 8], y[i * 4:i * 4 + 8]
            out = model(xb)
            out.backward(crit.input_grad(out, yb))
            opt.step()
            opt.zero_grad()
        return [p.reveal() for p in model.parameters()], veil.stats()

    cached = veil.run(party, parties=2, seed=5)

    def uncached(self, kind, args):
        return dealer._Known(kind, args)
    monkeypatch.setattr(dealer.TrustedDealerUnsafe, "_lookup", uncached)
    monkeypatch.setattr(dealer._Checked, "get", lambda self, raw: None)
    plain = veil.run(party, parties=2, seed=5)
    for (p1, s1), (p2, s2) in zip(cached, plain):
        assert all(torch.equal(a, b) for a, b in zip(p1, p2))
        assert s1 == s2                      # bytes, rounds, messages, dealer counters
    assert cached[0][1]["dealer_ahead"] > 0


def test_a_request_the_dealer_refused_is_refused_again():
    # Only requests that passed the checks are remembered: the same bad bytes twice are
    # checked (and refused) twice; a good one is remembered, keyed ones never.
    from veil.offline.dealer import _Checked
    from veil.offline.requests import checked_recipe, parse_request
    checked = _Checked()
    good = b'{"kind": "trunc", "args": {"shape": [2], "frac": 16}}'
    kind, args = parse_request({"kind": "trunc", "args": {"shape": [2], "frac": 16}}, 100, "p")
    checked.add(good, kind, args, checked_recipe(kind, args, 100, "p", 2))
    assert checked.get(good)[0] == "trunc"
    keyed = {"shape": (2,), "key": 7}
    checked.add(b"keyed", "mask", keyed, None)
    assert checked.get(b"keyed") is None
    bad = {"kind": "cmp", "args": {"shape": [1 << 12, 1 << 12], "width": 32}}
    for _ in range(2):
        err = dealer_answers(bad)
        assert err is not None and "16777216 elements" in err.cause


def test_the_dealer_serves_a_repeated_request_from_its_memory():
    # Two identical requests, then two that differ from them only in a value: each gets
    # its own material (the dealer's loop answers all four), the bytes tell them apart.
    from veil.comm import Abort, Communicator, MemoryChannel
    from veil.offline import PRG, serve_dealer
    dealer_end, party_end = MemoryChannel.pair("dealer", "party 0", Abort())
    party = Communicator(0, 1, {1: party_end}, 5.0)
    dealer = Communicator(1, 1, {0: dealer_end}, 5.0)
    reqs = [{"kind": "trunc", "args": {"shape": [3], "frac": 16}}] * 2 + \
        [{"kind": "trunc", "args": {"shape": [3], "frac": 12}},
         {"kind": "trunc", "args": {"shape": [4], "frac": 16}}, {"kind": "__stop__"}]
    for r in reqs:
        party.send_obj(1, r)
    serve_dealer(dealer, [PRG(bytes(16))], 100)
    sizes = [len(party.recv_bytes(1)) for _ in range(8)]   # m and low, per request
    assert sizes == [6, 24, 6, 24, 6, 24, 8, 32]


# -- public factors: checked and encoded once per value and setting --------------------------
def test_remembered_public_factors_give_the_same_products(monkeypatch):
    arith = importlib.import_module("veil.tensor.arith")
    factors = [0.1, 0.1, 1 / 32, 3, 3.0, -0.0, 0.0, 2, True, 1e-6, -2.5, 7, 7.0, 0.1]

    def party():
        x = veil.tensor(torch.tensor([1.5, -2.25, 3.0]) if veil.rank() == 0 else None,
                        owner=0)
        out = [(x * f).reveal() for f in factors]
        for bad in (float("nan"), float("inf"), 1e30, 2 ** 70):
            for _ in range(2):                    # refused every time, never remembered
                with pytest.raises(veil.errors.VeilError):
                    x * bad
        return out

    def run(config):
        return veil.run(party, parties=2, seed=0, config=config)[0]

    configs = [veil.Config(), veil.Config(frac_bits=20)]
    remembered = [run(c) for c in configs]
    monkeypatch.setattr(arith, "_public_factor", arith._encode_factor)   # every time afresh
    fresh = [run(c) for c in configs]
    for a, b in zip(remembered, fresh):
        assert all(u.dtype == v.dtype and torch.equal(u, v) for u, v in zip(a, b))
    assert not torch.equal(remembered[0][0], remembered[1][0])   # the setting is in the key
    assert all(k[1] == k[1] for k in arith._FACTORS)             # no NaN was kept


# -- the dealer's reconstruction and correction: no staging clone ------------------------------
@pytest.mark.parametrize("n", [1, 2, 3, 5])
@pytest.mark.parametrize("domain", ["ring", "bytes"])
def test_combine_and_correction_match_their_definitions(n, domain):
    from veil.offline.materials import combine, correction
    gen = torch.Generator().manual_seed(n)
    if domain == "ring":
        shares = [torch.randint(-2 ** 62, 2 ** 62, (3, 4), generator=gen) * 2 for _ in range(n)]
        want, fold = shares[0].clone(), (lambda a, b: a + b)
        unfold = lambda a, b: a - b  # noqa: E731
    else:
        shares = [torch.randint(0, 256, (3, 4), dtype=torch.uint8, generator=gen)
                  for _ in range(n)]
        want, fold = shares[0].clone(), (lambda a, b: a ^ b)
        unfold = fold
    before = [s.clone() for s in shares]
    for s in shares[1:]:
        want = fold(want, s)
    got = combine(domain, shares)
    assert torch.equal(got, want) and all(got is not s for s in shares)
    corr = correction(domain, want, shares[1:])
    assert torch.equal(corr, shares[0]) and corr is not want
    for s in shares[1:]:
        want = unfold(want, s)
    assert torch.equal(want, shares[0])
    assert all(torch.equal(a, b) for a, b in zip(shares, before))   # inputs untouched
