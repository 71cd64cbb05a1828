"""Trusted dealer — UNSAFE unless the dealer is trusted by everyone and colludes with no one.

Threat model: the dealer sees every mask it makes, so a dealer that also saw a party's
view (or any opened value) could learn secrets. It never sees online traffic. It must be
a separate role — a thread in `veil.run`, its own process under `veil run` — and trust
in it is the price of dishonest-majority semi-honest security with cheap preprocessing.

Cost: each party shares one AES seed with the dealer, so all random parts and the derived
shares of parties 1..n-1 are generated locally; only party 0 receives its derived shares
(one offline round per request). Party 0 sends the request (kind and shapes: public).
The dealer checks every request before drawing anything (veil.offline.requests): a
malformed or oversized one stops the run, naming party 0.
"""

from __future__ import annotations

from ..comm import OFFLINE, Communicator
from ..comm.limits import MAX_ELEMENTS
from ..errors import PartyError
from ..ring import numel
from .materials import BITS, BYTES, RING, Part, combine, correction, recipe
from .prg import PRG
from .provider import Provider
from .requests import checked_recipe, parse_request

STOP = "__stop__"


def _draw(prg: PRG, part: Part):
    if part.domain == BITS:
        return prg.bits(part.shape)
    if part.domain == BYTES:
        return prg.bytes(numel(part.shape)).reshape(part.shape)
    return prg.ring(part.shape)



def _recv_part(comm: Communicator, peer: int, part: Part):
    import torch
    dtype = torch.int64 if part.domain == RING else torch.uint8
    return comm.recv_tensor(peer, part.shape, dtype)


class _Pending(dict):
    """Party 0's material: random parts now, the dealer's derived parts on first use.

    Party 0 sends its request and goes on (drawing masks, opening e and f) while the
    dealer works; it blocks only when it touches a derived part. Replies arrive in request
    order, so touching one drains every earlier reply first.
    """

    def __init__(self, provider: "TrustedDealerUnsafe", derived: tuple[Part, ...], **parts):
        super().__init__(**parts)
        self._provider, self._derived, self._done = provider, derived, False

    def __missing__(self, key):
        self._provider._drain(self)
        return dict.__getitem__(self, key)

    def receive(self) -> None:
        comm = self._provider._comm
        with comm.phase(OFFLINE):
            for p in self._derived:
                dict.__setitem__(self, p.name, _recv_part(comm, self._provider._dealer, p))
        self._done = True


class TrustedDealerUnsafe(Provider):
    """Party side of the trusted dealer (see module docstring for the trust it needs)."""

    def __init__(self, comm: Communicator, dealer_rank: int, prg: PRG) -> None:
        self._comm, self._dealer, self._prg = comm, dealer_rank, prg
        self._queue: list[_Pending] = []

    def __repr__(self) -> str:
        return f"TrustedDealerUnsafe(rank={self._comm.rank})"

    def get(self, kind: str, **args):
        rec = recipe(kind, args)
        if self._comm.rank != 0:
            out = {p.name: _draw(self._prg, p) for p in rec.randoms}
            out.update({p.name: _draw(self._prg, p) for p in rec.derived})
            return out
        with self._comm.phase(OFFLINE):
            self._comm.count_round()
            self._comm.send_obj(self._dealer, {"kind": kind, "args": args})
        pending = _Pending(self, rec.derived, **{p.name: _draw(self._prg, p) for p in rec.randoms})
        self._queue.append(pending)
        return pending

    def _drain(self, upto: _Pending) -> None:
        while self._queue:
            head = self._queue.pop(0)
            head.receive()
            if head is upto:
                return

    def close(self) -> None:
        if self._comm.rank == 0:
            while self._queue:                       # replies nobody used still arrive
                self._queue.pop(0).receive()
            with self._comm.phase(OFFLINE):
                self._comm.send_obj(self._dealer, {"kind": STOP})


def serve_dealer(comm: Communicator, prgs: list[PRG], max_elements: int = MAX_ELEMENTS) -> None:
    """The dealer's loop: answer party 0's requests until it says stop."""
    sender = comm.peer_name(0)
    with comm.phase(OFFLINE):
        while True:
            req = comm.recv_obj(0)
            if req == {"kind": STOP}:
                return
            kind, args = parse_request(req, max_elements, sender)
            rec = checked_recipe(kind, args, max_elements, sender)
            shares = [{p.name: _draw(prg, p) for p in rec.randoms} for prg in prgs]
            plain = {p.name: combine(p.domain, [s[p.name] for s in shares])
                     for p in rec.randoms}
            try:
                derived = rec.derive(plain)
            except Exception:                     # noqa: BLE001 - e.g. shapes that do not fit
                raise PartyError(sender, f"sent a dealer request whose shapes do not fit "
                                         f"together (kind {kind!r})") from None
            others = [{p.name: _draw(prg, p) for p in rec.derived} for prg in prgs[1:]]
            comm.count_round()
            for p in rec.derived:
                corr = correction(p.domain, derived[p.name], [o[p.name] for o in others])
                comm.send_tensor(0, corr)
