"""Channels: one party's link to one peer, moving whole messages as bytes.

A channel knows nothing about tensors, rounds or counting; the metered chokepoint is
`Communicator`, which every transport's channels plug into. That is what keeps
`veil.stats()` identical across transports.
"""

from __future__ import annotations

import queue
import threading
import time
from abc import ABC, abstractmethod

from ..errors import AbortedError, PartyError


def party_name(rank: int, world_size: int) -> str:
    """Human name of a rank; rank == world_size is the dealer."""
    return "dealer" if rank == world_size else f"party {rank}"


class Abort:
    """Shared stop signal of one run: the first failure sets it, every wait checks it."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.who: str | None = None
        self.why: str | None = None

    def set(self, who: str, why: str) -> None:
        if not self._event.is_set():
            self.who, self.why = who, why
            self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        if self._event.is_set():
            raise AbortedError(self.who or "a party", f"stopped this run: {self.why}")


class Channel(ABC):
    """Ordered, reliable message link to one peer."""

    @abstractmethod
    def send(self, payload: bytes | memoryview) -> None: ...

    @abstractmethod
    def recv(self, timeout: float | None) -> bytes:
        """Return the next whole message; raise PartyError naming the peer on failure.

        ``timeout=None`` waits without a deadline (the dealer idling between requests).
        """

    def send_many(self, payloads: list) -> None:
        """Several messages, in order; a transport may write them at once."""
        for p in payloads:
            self.send(p)

    def ready(self) -> bool:
        """True when a message is already waiting (``recv`` would not block). False when
        unsure: it only decides whether held messages go out before a receive."""
        return False

    def close(self) -> None:  # pragma: no cover - default no-op
        pass


CLOSED_HINT = ("closed its connection while this party waited for data (it finished or "
               "exited): do all parties run the same program with the same shapes?")


class _Closed:
    """End-of-stream marker a finished party leaves in its outgoing queues."""


class MemoryChannel(Channel):
    """In-process channel: a pair of queues, used by `veil.run`'s thread mode."""

    _POLL_S = 0.02  # how often a blocked receiver checks the abort signal

    def __init__(self, inbox: queue.SimpleQueue, outbox: queue.SimpleQueue,
                 peer: str, abort: Abort) -> None:
        self._inbox, self._outbox, self._peer, self._abort = inbox, outbox, peer, abort

    @staticmethod
    def pair(name_a: str, name_b: str, abort: Abort) -> tuple["MemoryChannel", "MemoryChannel"]:
        """Two connected endpoints; the first is held by `name_a` and talks to `name_b`."""
        a_to_b, b_to_a = queue.SimpleQueue(), queue.SimpleQueue()
        return (MemoryChannel(b_to_a, a_to_b, name_b, abort),
                MemoryChannel(a_to_b, b_to_a, name_a, abort))

    def send(self, payload: bytes | memoryview) -> None:
        self._abort.check()
        # One copy, into a buffer the receiver owns (a socket would copy too), so the
        # sender may reuse its tensor and the receiver may wrap the bytes without copying.
        self._outbox.put(bytearray(payload))

    def ready(self) -> bool:
        return not self._inbox.empty()

    def recv(self, timeout: float | None) -> bytes:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                msg = self._inbox.get(timeout=self._POLL_S)
            except queue.Empty:
                self._abort.check()
                if deadline is not None and time.monotonic() > deadline:
                    raise PartyError(self._peer, f"sent nothing for {timeout:g} s (timeout)")
                continue
            if isinstance(msg, _Closed):
                self._inbox.put(msg)             # stay closed for later reads too
                raise PartyError(self._peer, CLOSED_HINT)
            return msg

    def close(self) -> None:
        self._outbox.put(_Closed())
