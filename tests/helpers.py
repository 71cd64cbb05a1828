"""Shared test helpers: run a function at N parties and compare with torch."""

from __future__ import annotations

import torch

import veil

PARTY_COUNTS = (2, 3, 5)
PROTOCOLS = ("semi2k", "insecure_reference")
# Every (protocol, parties) the suites run: the any-count protocols at each count, plus
# the fixed-count ones (rep3: exactly 3 parties).
PROTOCOL_GRID = tuple((p, n) for p in PROTOCOLS for n in PARTY_COUNTS) + (("rep3", 3),)


def share_from(value: torch.Tensor, owner: int):
    """veil.tensor with the value present only at ``owner``."""
    return veil.tensor(value if veil.rank() == owner else None, owner=owner)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def uniform(shape, lo=-3.0, hi=3.0, seed=0) -> torch.Tensor:
    return torch.empty(shape).uniform_(lo, hi, generator=gen(seed))


def assert_close(got, want, atol, what=""):
    assert got is not None, f"{what}: got None"
    if isinstance(want, torch.Tensor) and want.dtype == torch.bool:
        assert torch.equal(got.bool(), want), f"{what}: {got} != {want}"
        return
    got, want = torch.as_tensor(got).double(), torch.as_tensor(want).double()
    assert got.shape == want.shape, f"{what}: shape {tuple(got.shape)} != {tuple(want.shape)}"
    err = (got - want).abs().max().item() if got.numel() else 0.0
    assert err <= atol, f"{what}: max abs error {err:.3g} > {atol:g}"


def dealer_answers(req, max_elements=1 << 20):
    """Run the dealer's loop on one request from party 0 (in memory); return its error
    (a PartyError) or None."""
    from veil.comm import Abort, Communicator, MemoryChannel
    from veil.errors import PartyError
    from veil.offline import PRG, serve_dealer
    dealer_end, party_end = MemoryChannel.pair("dealer", "party 0", Abort())
    party = Communicator(0, 1, {1: party_end}, 5.0)
    dealer = Communicator(1, 1, {0: dealer_end}, 5.0)
    party.send_obj(1, req)
    party.close()
    try:
        serve_dealer(dealer, [PRG(bytes(16))], max_elements)
    except PartyError as exc:
        return exc
    return None


def assert_dealer_refuses(req, match: str) -> None:
    """The dealer stops on ``req`` with an error naming party 0 that contains ``match``."""
    err = dealer_answers(req)
    assert err is not None and err.party == "party 0", err
    assert match in err.cause


def assert_dealer_serves(req) -> None:
    """The dealer answers ``req``, then waits for the next and meets the closed channel."""
    err = dealer_answers(req)
    assert err is not None and "closed its connection" in err.cause


def openings_seen(job, parties: int = 2, rank: int = 1, min_numel: int = 0) -> list:
    """Run ``job`` (semi2k) and return every value party ``rank`` saw opened through
    ``Semi2k._open`` (at least ``min_numel`` elements each)."""
    from veil.protocols import Semi2k
    seen, real = [], Semi2k._open

    def spy(self, *xs):
        outs = real(self, *xs)
        if self.rank == rank:
            seen.extend(o.clone() for o in outs if o.numel() >= min_numel)
        return outs

    Semi2k._open = spy
    try:
        veil.run(job, parties=parties)
    finally:
        Semi2k._open = real
    return seen


class FakeClock:
    """A clock the test moves by hand (``clock.now = ...``), for code that takes one."""

    def __init__(self, now: float = 0.0):
        self.now = now

    def __call__(self):
        return self.now
