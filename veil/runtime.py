"""`veil.run`: SPMD execution of one function by every party.

In-process mode runs each party, and the dealer, as a thread of this process over
`MemoryChannel`s; the channels plug into the same metered `Communicator` as TCP does.
Under the `veil run` launcher (environment variable ``VEIL_PARTY`` set) the same call runs
only this process's party, over TLS (see veil.net).
"""

from __future__ import annotations

import contextvars
import os
import threading
import traceback
from typing import Any, Callable

from .comm import OFFLINE, Abort, Communicator, MemoryChannel, party_name
from .comm.limits import MAX_ELEMENTS
from .comm.profile import Profiler, instrument
from .config import Config
from .context import PartyContext, activate
from .errors import AbortedError, PartyError, ProtocolUsageError
from .offline import PRG, NoDealer, TrustedDealerUnsafe, derived_seed, fresh_seed, serve_dealer
from .offline.prg import SEED_BYTES
from .protocols import get_protocol

MAX_PARTIES = 64


def _seed_for(seed: int | None, *label) -> bytes:
    return fresh_seed() if seed is None else derived_seed(seed, *label)


def setup_party(rank: int, n: int, comm: Communicator, protocol: str, config: Config,
                seed: int | None) -> PartyContext:
    """Agree on PRG seeds (dealer and pairwise), build this party's context.

    Seeds travel over the (TLS or in-memory) channels in the offline phase, so the traffic
    is the same whether or not the run seed is fixed.
    """
    cls = get_protocol(protocol)
    with comm.phase(OFFLINE):
        comm.count_round()
        dealer_seed = _seed_for(seed, "dealer", rank)
        if cls.needs_dealer:
            comm.send_bytes(n, dealer_seed)
        pair = {}
        for j in range(rank + 1, n):
            pair[j] = _seed_for(seed, "pair", rank, j)
            comm.send_bytes(j, pair[j])
        for j in range(rank):
            pair[j] = bytes(comm.recv_bytes(j))
            if len(pair[j]) != SEED_BYTES:
                raise PartyError(party_name(j, n), f"sent a pairwise seed of "
                                                   f"{len(pair[j])} bytes, not {SEED_BYTES}")
    # (replies sent ahead wait in party 0's inbox, which holds 2 x max_elements int64)
    provider = TrustedDealerUnsafe(comm, n, PRG(dealer_seed), 8 * config.max_elements,
                                   _plan_store(rank, n, protocol, config)) \
        if cls.needs_dealer else NoDealer(protocol)
    proto = cls(comm, provider, config, {j: PRG(s) for j, s in pair.items()})
    if config.profile:
        comm.profiler = Profiler()
        instrument(proto, comm.profiler)
    return PartyContext(rank, n, comm, provider, proto, config)


def _plan_store(rank: int, n: int, protocol: str, config: Config):
    """This party's request-plan store (``Config.plan_dir``), or None."""
    if config.plan_dir is None:
        return None
    from . import __version__
    from .offline.planstore import PlanStore, key_context
    return PlanStore(config.plan_dir, rank, key_context(__version__, protocol, n, config),
                     config.max_elements)


def run_dealer(n: int, comm: Communicator, max_elements: int = MAX_ELEMENTS) -> None:
    with comm.phase(OFFLINE):
        comm.count_round()
        seeds = [comm.recv_bytes(p) for p in range(n)]
    for p, s in enumerate(seeds):
        if len(s) != SEED_BYTES:
            raise PartyError(party_name(p, n), f"sent a dealer seed of {len(s)} bytes, not "
                                               f"{SEED_BYTES}")
    serve_dealer(comm, [PRG(bytes(s)) for s in seeds], max_elements)


def _check_args(parties: int, protocol: str, seed) -> None:
    if not isinstance(parties, int) or not 2 <= parties <= MAX_PARTIES:
        raise ProtocolUsageError(f"parties must be an int in 2..{MAX_PARTIES}, got {parties!r}")
    counts = get_protocol(protocol).party_counts
    if counts is not None and parties not in counts:
        raise ProtocolUsageError(f"protocol {protocol!r} runs with {' or '.join(map(str, counts))}"
                                 f" parties, got {parties}; use protocol='semi2k' for any count")
    if seed is not None and not isinstance(seed, int):
        raise ProtocolUsageError(f"seed must be an int or None, got {type(seed).__name__}")


def run(fn: Callable, *args, parties: int = 2, protocol: str | None = None,
        seed: int | None = None, config: Config | None = None, **kwargs) -> list[Any]:
    """Run ``fn(*args, **kwargs)`` once per party; return the results in party order.

    ``seed`` fixes every random choice (tests, benchmarks); ``None`` draws all randomness
    from the OS. A seed is a key: every mask, pairwise PRG and dealer PRG is derived from
    it, so anyone who knows it can unmask every input. In one process that gives nothing
    away (this process holds every party's data anyway); under `veil run` (real parties) it
    is refused unless ``--insecure-seed`` is passed. ``protocol`` picks the kernels
    (``semi2k`` by default; ``rep3`` for three parties without a dealer). ``config`` sets
    fixed-point and protocol options (`veil.Config`). If any party raises, the others stop
    at their next message and the error is re-raised here as a `PartyError` naming that
    party.

    >>> import torch, veil
    >>> def f():
    ...     x = veil.tensor(torch.tensor([1.5, -2.0]) if veil.rank() == 0 else None, owner=0)
    ...     return (x * 2).reveal(to=1)
    >>> out = veil.run(f, parties=2, seed=0)
    >>> out[0] is None, out[1].tolist()
    (True, [3.0, -4.0])
    """
    config = config or Config()
    # Default: semi2k, or what `veil run --protocol P` set for the scripts it launches.
    protocol = protocol or os.environ.get("VEIL_PROTOCOL") or "semi2k"
    _check_args(parties, protocol, seed)
    if os.environ.get("VEIL_PARTY") is not None:
        from .net.launch import run_networked  # only under the `veil run` launcher
        return run_networked(fn, args, kwargs, parties=parties, protocol=protocol, seed=seed,
                             config=config)
    return _run_threads(fn, args, kwargs, parties, protocol, seed, config)


def _run_threads(fn, args, kwargs, n, protocol, seed, config):
    abort = Abort()
    dealer = get_protocol(protocol).needs_dealer
    ranks = list(range(n + 1 if dealer else n))             # rank n is the dealer
    channels: dict[int, dict[int, MemoryChannel]] = {r: {} for r in ranks}
    for a in ranks:
        for b in ranks:
            if a < b:
                ea, eb = MemoryChannel.pair(party_name(a, n), party_name(b, n), abort)
                channels[a][b], channels[b][a] = ea, eb
    results: list[Any] = [None] * n
    errors: dict[int, BaseException] = {}                 # in the order they happened

    def party_main(r: int) -> None:
        # The dealer idles between requests for as long as the parties compute.
        comm = Communicator(r, n, channels[r], None if r == n else config.timeout,
                            config.network_model())
        token = None
        try:
            if r == n:
                run_dealer(n, comm, config.max_elements)
                return
            ctx = setup_party(r, n, comm, protocol, config, seed)
            token = activate(ctx)
            results[r] = fn(*args, **kwargs)
            ctx.provider.close()
            comm.close()
        except BaseException as exc:                        # noqa: BLE001 - re-raised below
            errors[r] = exc
            abort.set(party_name(r, n), f"{type(exc).__name__}: {exc}")
        finally:
            if token is not None:
                activate(None)

    # Each party thread starts from a copy of the caller's context, so settings the caller
    # made with context managers (approximation modes, no_grad) hold inside the parties.
    threads = [threading.Thread(target=contextvars.copy_context().run, args=(party_main, r),
                                name=f"veil-{party_name(r, n)}", daemon=True) for r in ranks]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        # The first party to fail is the cause; the others only saw the abort.
        causes = [r for r, e in errors.items() if not isinstance(e, AbortedError)] or list(errors)
        r = causes[0]
        exc = errors[r]
        detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        raise PartyError(party_name(r, n), f"failed: {detail}") from exc
    return results
