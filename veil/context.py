"""A party's context: everything one party of one run needs, as one object.

No process-wide singletons: the current party's context sits in a ``contextvars``
variable that `veil.run` sets in each party's thread, so two runs with different party
counts can follow each other (or even run side by side) in one Python process.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass

from .comm import Communicator
from .config import Config
from .errors import VeilError
from .offline import Provider
from .protocols import Protocol

_CURRENT: contextvars.ContextVar["PartyContext | None"] = contextvars.ContextVar(
    "veil_party", default=None)


@dataclass
class PartyContext:
    rank: int
    world_size: int
    comm: Communicator
    provider: Provider
    protocol: Protocol
    config: Config

    def __repr__(self) -> str:
        return (f"PartyContext(rank={self.rank}, world_size={self.world_size}, "
                f"protocol={self.protocol.name})")


def current() -> PartyContext:
    ctx = _CURRENT.get()
    if ctx is None:
        raise VeilError("this veil call must run inside a party: wrap your code in a function "
                        "and call veil.run(fn, parties=N), or start it with `veil run -n N`")
    return ctx


def activate(ctx: PartyContext | None):
    return _CURRENT.set(ctx)


def rank() -> int:
    """This party's index, 0..world_size-1.

    >>> import veil
    >>> veil.run(veil.rank, parties=3)
    [0, 1, 2]
    """
    return current().rank


def world_size() -> int:
    """Number of computing parties in this run (the dealer is not counted)."""
    return current().world_size


def stats() -> dict:
    """This party's traffic since its run began.

    Keys: ``bytes_sent``, ``bytes_received``, ``rounds``, ``messages`` (online protocol
    traffic) and ``offline_bytes_sent``, ``offline_bytes_received``, ``offline_bytes``,
    ``offline_rounds`` (set-up and dealer traffic). Bytes are payload bytes; transport
    framing is not counted. A round is one collective step (see veil.comm).
    ``dealer_requests``, ``dealer_ahead``, ``dealer_waits`` and ``dealer_dropped`` count
    the dealer's look-ahead (veil.offline.lookahead): requests made, served from material
    asked for ahead, sent only when needed (party 0 waited a round trip for each), and
    predictions dropped; equal at every party, zero without a dealer.
    ``dealer_plans_loaded`` counts the request plans followed from the plan store
    (``Config.plan_dir``, veil.offline.planstore).
    """
    ctx = current()
    return {**ctx.comm.stats.as_dict(), **ctx.provider.counters()}


def stats_since(before: dict) -> dict:
    """This party's traffic since ``before`` (an earlier `stats()`): every key's growth."""
    after = stats()
    return {k: after[k] - before[k] for k in after}


def profile() -> dict:
    """This party's time per protocol kernel, split into compute, waiting on peers,
    waiting on the dealer and sending (needs ``veil.Config(profile=True)``).

    >>> import torch, veil
    >>> def job():
    ...     x = veil.tensor(torch.ones(4) if veil.rank() == 0 else None, owner=0)
    ...     (x * x).relu()
    ...     return sorted(k for k in veil.profile() if not k.startswith("("))
    >>> veil.run(job, parties=2, config=veil.Config(profile=True))[0]
    ['and_bits', 'msb', 'mul', 'select', 'share', 'trunc']
    """
    prof = current().comm.profiler
    if prof is None:
        raise VeilError("profiling is off: run with veil.Config(profile=True)")
    return prof.report()


def send_bytes(data: bytes, to: int) -> None:
    """Send opaque bytes to party ``to`` (one metered message; the receiver must call
    `recv_bytes`). For protocols built above veil's tensors, e.g. veil.he's ciphertexts."""
    ctx = current()
    if not 0 <= to < ctx.world_size or to == ctx.rank:
        raise VeilError(f"send_bytes: no party {to} to send to (this is party {ctx.rank})")
    ctx.comm.count_round()
    ctx.comm.send_bytes(to, bytes(data))


def recv_bytes(src: int) -> bytes:
    """Receive one `send_bytes` message from party ``src`` (the content is untrusted)."""
    ctx = current()
    if not 0 <= src < ctx.world_size or src == ctx.rank:
        raise VeilError(f"recv_bytes: no party {src} to receive from (this is party {ctx.rank})")
    ctx.comm.count_round()
    return bytes(ctx.comm.recv_bytes(src))
