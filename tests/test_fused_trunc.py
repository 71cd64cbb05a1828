"""Fused truncation (semi2k ``trunc_masked``): a truncation's opening serves the next
elementwise product's, so a truncated value is multiplied without opening it again.

Ring products are exact, so every product here is compared with the product of the
revealed operands bit for bit (mod 2^64), at 2, 3 and 5 parties; the truncations
themselves are checked against floor division (exact truncation: floor or floor + 1).
"""

from __future__ import annotations

import pytest
import torch

import veil
from veil.context import current
from helpers import (PARTY_COUNTS, assert_dealer_refuses, assert_dealer_serves,
                     openings_seen)
from test_security import _chi2_uniform_bytes

SHAPE = (3, 50)


def _ring(seed, shape=SHAPE, bound=1 << 40):
    return torch.randint(-bound, bound, shape, generator=torch.Generator().manual_seed(seed))


def _fused_products(bits_a, bits_b):
    p = current().protocol
    xa, xb, z = (_ring(s) for s in (1, 2, 3))
    sa, sb, sz = (p.add_public(p.zeros(t.shape), t) if p.rank == 0 else p.zeros(t.shape)
                  for t in (xa, xb, z))
    (ya,) = p.trunc_masked([sa], bits_a)
    yb, yrow = p.trunc_masked([sb, sb[:1].contiguous()], bits_b)
    (mz,) = p.mask(sz)
    twice = p.masked_affine(ya, 3, torch.tensor(12345))          # 3 ya + 12345
    pairs = {"y*y": (ya, ya), "ya*yb": (ya, yb), "y*mask": (ya, mz), "mask*y": (mz, yb),
             "affine*y": (twice, yb), "row*y": (yrow, ya)}
    before = veil.stats()
    prods = {k: p.mul_masked(a, b) for k, (a, b) in pairs.items()}
    after = veil.stats()
    traffic = (after["rounds"] - before["rounds"], after["bytes_sent"] - before["bytes_sent"])
    masks_hold = all(torch.equal(p.reveal(m.share) - m.e, p.reveal(m.a))
                     for m in (ya, yb, yrow, twice))
    plain = {k: (p.reveal(a.share), p.reveal(b.share)) for k, (a, b) in pairs.items()}
    return {"traffic": traffic, "masks_hold": masks_hold,
            "ya": p.reveal(ya.share), "yb": p.reveal(yb.share),
            "products": {k: (p.reveal(v), plain[k][0] * plain[k][1]) for k, v in prods.items()}}


@pytest.mark.parametrize("parties", PARTY_COUNTS)
@pytest.mark.parametrize("bits_a, bits_b", [(16, 16), (16, 40), (40, 36)])
def test_products_of_fused_truncations_are_exact_and_free(parties, bits_a, bits_b):
    # (40, 36): the shifts add up to more than 64 bits: the dealer's M*M piece is used
    out = veil.run(_fused_products, bits_a, bits_b, parties=parties, seed=5)[0]
    assert out["traffic"] == (0, 0), "a product of fused truncations opened something"
    assert out["masks_hold"], "a masked form's public part plus its mask is not its value"
    for name, (got, want) in out["products"].items():
        assert torch.equal(got, want), f"{name}: fused product differs from the ring product"
    for got, x, bits in ((out["ya"], _ring(1), bits_a), (out["yb"], _ring(2), bits_b)):
        floor = torch.div(x, 2 ** bits, rounding_mode="floor")
        assert bool(((got == floor) | (got == floor + 1)).all()), "truncation off by > 1"


def _selects():
    p = current().protocol
    xa, z = _ring(1), _ring(3)
    bits = torch.randint(0, 2, SHAPE, dtype=torch.uint8, generator=torch.Generator().manual_seed(4))
    sa, sz = (p.add_public(p.zeros(t.shape), t) if p.rank == 0 else p.zeros(t.shape)
              for t in (xa, z))
    sb = p.xor_public(torch.zeros(SHAPE, dtype=torch.uint8), bits)
    (ya,) = p.trunc_masked([sa], 16)
    (mz,) = p.mask(sz)
    diff = p.masked_combine([(1, ya), (-3, mz)], torch.tensor(777))     # ya - 3 z + 777
    values = {"trunc": ya, "mask": mz, "combination": diff}
    before = veil.stats()
    got = p.select_masked([(sb, m) for m in values.values()])
    after = veil.stats()
    return {"rounds": after["rounds"] - before["rounds"],
            "selected": {k: (p.reveal(g), p.reveal(m.share) * bits.to(torch.int64))
                         for (k, m), g in zip(values.items(), got)}}


@pytest.mark.parametrize("parties", PARTY_COUNTS)
def test_select_of_masked_values_opens_only_the_bits_and_is_exact(parties):
    out = veil.run(_selects, parties=parties, seed=6)[0]
    assert out["rounds"] == 1
    for name, (got, want) in out["selected"].items():
        assert torch.equal(got, want), f"{name}: select differs from bit * value"


def test_functions_save_rounds_and_bytes_with_fused_truncation(monkeypatch):
    """GELU and softmax at the exact default against the same with fusion switched off
    (the protocol's fuses_truncation forced False): fewer rounds, fewer bytes, and the
    values agree with torch either way."""
    from veil.protocols.semi2k import Semi2k
    x = torch.linspace(-6, 6, 400).reshape(4, 100)

    def job():
        s = veil.tensor(x if veil.rank() == 0 else None, owner=0)
        out = {}
        for name, fn in (("gelu", lambda t: t.gelu()), ("softmax", lambda t: t.softmax(-1))):
            b = veil.stats()
            y = fn(s)
            a = veil.stats()
            out[name] = (a["rounds"] - b["rounds"], a["bytes_sent"] - b["bytes_sent"],
                         y.reveal())
        return out

    fused = veil.run(job, parties=2, seed=1)[0]
    monkeypatch.setattr(Semi2k, "fuses_truncation", property(lambda self: False))
    plain = veil.run(job, parties=2, seed=1)[0]
    refs = {"gelu": torch.nn.functional.gelu(x), "softmax": x.softmax(-1)}
    for name in refs:
        (r1, b1, y1), (r0, b0, y0) = fused[name], plain[name]
        assert r1 < r0 and b1 < b0, f"{name}: fused {r1} rounds {b1} B vs {r0} / {b0}"
        for y in (y1, y0):
            assert (y - refs[name]).abs().max() < 5e-4, f"{name}: error vs torch"


def test_truncation_openings_look_uniform_for_a_zero_input():
    """What a party sees opened inside fused chains (GELU of zeros) is uniform."""
    def job():
        x = veil.tensor(torch.zeros(20_000) if veil.rank() == 0 else None, owner=0)
        return x.gelu().share

    seen = openings_seen(job, min_numel=20_000)
    assert len(seen) >= 3, "spy saw too few openings; the test would be vacuous"
    assert all(_chi2_uniform_bytes(t.reshape(-1)) < 400 for t in seen)


def _req(kind, **args):
    return {"kind": kind, "args": args}


@pytest.mark.parametrize("req, match", [
    (_req("trunc_keyed", shape=[4], frac=63, key=1), "cannot make"),
    (_req("trunc_keyed", shape=[4], frac=0, key=1), "cannot make"),
    (_req("beaver_trunc", op="matmul", shape_a=[2, 2], shape_b=[2, 2], key_a=1, key_b=2,
          frac_a=16, frac_b=0), "cannot make"),
    (_req("beaver_trunc", op="mul", shape_a=[2, 3], shape_b=[4, 3], key_a=1, key_b=2,
          frac_a=16, frac_b=16), "cannot make"),
    (_req("beaver_trunc", op="mul", shape_a=[2], shape_b=[2], key_a=1, key_b=-2,
          frac_a=16, frac_b=16), "expected an integer in"),
    (_req("select_keyed", shape=[4], terms=3, key_a=1, frac_a=16, key_b=2, frac_b=0),
     "cannot make"),
    (_req("select_keyed", shape=[4], terms=2, key_a=1, frac_a=70, key_b=2, frac_b=0),
     "cannot make"),
])
def test_the_dealer_refuses_bad_fused_requests_naming_party_0(req, match):
    assert_dealer_refuses(req, match)


def test_the_dealer_serves_fused_requests():
    for req in (_req("trunc_keyed", shape=[4], frac=16, key=1),
                _req("beaver_trunc", op="mul", shape_a=[1, 3], shape_b=[4, 3], key_a=1,
                     key_b=2, frac_a=16, frac_b=40),
                _req("select_keyed", shape=[4], terms=2, key_a=1, frac_a=16, key_b=2,
                     frac_b=0)):
        assert_dealer_serves(req)


def test_local_truncation_and_rep3_do_not_fuse():
    def job():
        return current().protocol.fuses_truncation
    assert veil.run(job, parties=2, config=veil.Config(truncation="local")) == [False] * 2
    assert veil.run(job, parties=3, protocol="rep3") == [False] * 3
    assert veil.run(job, parties=3) == [True] * 3


def _carried_across_ops():
    """A truncated product keeps its masked form through a reshape into the next op's
    elementwise product (no opening there), loses it through a transpose or an in-place
    change (then the product opens again), and every result equals torch's."""
    from veil.protocols.base import carried
    a = veil.tensor(torch.linspace(-2, 2, 24).reshape(4, 6) if veil.rank() == 0 else None,
                    owner=0)
    b = veil.tensor(torch.linspace(1, 3, 24).reshape(4, 6) if veil.rank() == 1 else None,
                    owner=1)
    y = a * b                                   # truncated: carries its masked form
    out = {"carries": carried(y.share) is not None}
    flat = y.reshape(24)
    out["reshape carries"] = carried(flat.share) is not None
    before = veil.stats()
    sq = flat * flat                            # opens nothing: y's truncation did
    out["square rounds"] = veil.stats()["rounds"] - before["rounds"] - 1   # its own trunc
    out["transpose carries"] = carried(y.t().share) is not None
    z = a * b
    z.share.add_(0)                             # an in-place write drops the form
    out["in-place carries"] = carried(z.share) is not None
    out["square"] = sq.reveal()
    out["z"] = z.reveal()
    return out


@pytest.mark.parametrize("parties", [2, 3])
def test_masked_forms_carry_through_reshapes_only(parties, monkeypatch):
    import importlib
    arith = importlib.import_module("veil.tensor.arith")   # (veil.tensor is a function)
    monkeypatch.setattr(arith, "FUSE_MIN_ELEMENTS", 0)     # fuse these small products
    out = veil.run(_carried_across_ops, parties=parties, seed=2)[0]
    assert out["carries"] and out["reshape carries"]
    assert out["square rounds"] == 0
    assert not out["transpose carries"] and not out["in-place carries"]
    y = torch.linspace(-2, 2, 24) * torch.linspace(1, 3, 24)
    assert (out["square"] - y * y).abs().max() < 1e-3
    assert (out["z"] - y.reshape(4, 6)).abs().max() < 1e-4


def test_small_products_are_not_fused_in_the_tensor_layer():
    """Below FUSE_MIN_ELEMENTS a tensor-layer truncation stays plain (a keyed mask per
    tensor costs more than it can save there); from it on the result is carried."""
    import importlib
    from veil.protocols.base import carried
    FUSE_MIN_ELEMENTS = importlib.import_module("veil.tensor.arith").FUSE_MIN_ELEMENTS

    def job():
        out = []
        for n in (FUSE_MIN_ELEMENTS - 1, FUSE_MIN_ELEMENTS):
            a = veil.tensor(torch.ones(n) if veil.rank() == 0 else None, owner=0)
            out.append(carried((a * a).share) is not None)
        return out
    assert veil.run(job, parties=2, seed=0)[0] == [False, True]


def test_linear_adds_its_bias_before_its_one_truncation():
    """nn.Linear (aten.addmm) under veil.secure: the bias joins the product before the
    truncation, so the output carries its masked form into the GELU after it."""
    from veil.protocols.base import carried
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(16, 64), torch.nn.GELU()).eval()
    x = torch.randn(64, 16)                     # 4096 outputs: fused (>= FUSE_MIN_ELEMENTS)
    seen = []
    import veil.functions.activations as act
    real = act.gelu

    def spy(t, *a, **k):
        seen.append(carried(t.share) is not None)
        return real(t, *a, **k)

    def job():
        m = veil.secure(net if veil.rank() == 0 else None, owner=0,
                        example_input=x if veil.rank() == 0 else None)
        return m(veil.tensor(x if veil.rank() == 1 else None, owner=1)).reveal()

    act.gelu = spy
    try:
        got = veil.run(job, parties=2, seed=1)[0]
    finally:
        act.gelu = real
    with torch.no_grad():
        assert (got - net(x)).abs().max() < 1e-3
    assert seen and all(seen)


def test_row_max_plans_by_tensor_size():
    from veil.functions.softmax import comparison_weight, tournament
    assert comparison_weight(400) == 2.0 and comparison_weight(12 * 128 * 128) > 6
    small, large = tournament(128, None, 2.0), tournament(128, None, 8.0)

    def comparisons(plan, n=128):
        total = 0
        for g in plan:
            groups = -(-n // g)
            total, n = total + groups * g * (g - 1) // 2, groups
        return total
    assert comparisons(large) < comparisons(small) / 2      # fewer bytes for big tensors


def _one_mask_at_two_shapes():
    """One truncation's mask used at (3, 3) and, reshaped, at (9,) and (1, 9): the
    dealer regenerates (and from the second use keeps) it by key and element count, and
    must read it at each request's shape."""
    from veil.protocols.base import Masked
    p = current().protocol
    x, z = _ring(7, (3, 3)), _ring(8, (9,))
    sx, sz = (p.add_public(p.zeros(t.shape), t) if p.rank == 0 else p.zeros(t.shape)
              for t in (x, z))
    (y,) = p.trunc_masked([sx], 16)
    (mz,) = p.mask(sz)

    def view(m, shape):
        return Masked(m.share.reshape(shape), m.e.reshape(shape), m.a.reshape(shape),
                      m.key, m.frac, m.mult, m.msb_w.reshape(shape))
    # (a keyed uniform mask is named by its shape and is never reshaped: only y is)
    pairs = [(y, y), (view(y, (9,)), mz), (view(y, (1, 9)), mz), (view(y, (9,)), mz),
             (view(y, (1, 9)), view(y, (9, 1))), (y, view(y, (3, 3)))]
    out = []
    for a, b in pairs:
        got = p.reveal(p.mul_masked(a, b))
        out.append(torch.equal(got, p.reveal(a.share) * p.reveal(b.share)))
    return out


@pytest.mark.parametrize("parties", [2, 3])
def test_a_reshaped_truncation_mask_is_read_at_each_shape(parties):
    assert all(veil.run(_one_mask_at_two_shapes, parties=parties, seed=4)[0])
