"""The hub: all of one process's links, and the one loop that reads and writes them.

Why one loop and no I/O threads: an OpenSSL connection must not be driven by two threads
at once, and a sender thread would have to copy (or pin) every tensor it is handed. So
sockets are non-blocking and whenever this party waits — for a message, or for room to
write a large one — the hub reads whatever any peer has sent into that peer's inbox.
Two parties sending 100 MB to each other at once therefore both make progress, a large
payload is written straight from the tensor's memory, a small message costs no thread
hand-off, and an abort or a dropped connection from *any* peer is seen at once.
"""

from __future__ import annotations

import selectors
import socket
import time

from ..comm.limits import MAX_ELEMENTS, max_frame_bytes
from ..errors import PartyError
from .abort import encode_abort, parse_abort
from .link import (ABORT, BYE, CHUNK, DATA, HEADER, HELLO, KIND_NAMES, REFUSE, SMALL, Link,
                   LinkLost, out_of_step)

DRAIN_BUDGET = 8 << 20     # read at most this much from one peer before serving the others
CLOSE_WAIT_S = 2.0         # how long an abort/goodbye tries to reach peers before closing
_READ, _WRITE = selectors.EVENT_READ, selectors.EVENT_WRITE


class Hub:
    """All of this process's links, and the one loop that reads and writes them."""

    def __init__(self, me: str, timeout: float, names: dict[int, str] | None = None) -> None:
        self.me = me
        self.timeout = timeout
        self.names = dict(names or {})            # every rank's name, for abort reports
        self.links: dict[int, Link] = {}
        self.set_limits(MAX_ELEMENTS)
        self.failure: PartyError | None = None    # first abort or lost peer seen
        self.closing = False
        self._sel = selectors.DefaultSelector()
        self._again: set[Link] = set()

    def add(self, sock: socket.socket, rank: int, name: str) -> Link:
        sock.setblocking(False)
        link = Link(self, sock, rank, name)
        self.links[rank] = link
        self._sel.register(sock, _READ, link)
        return link

    def set_limits(self, max_elements: int) -> None:
        """Largest data frame, and most unread bytes per peer, this hub accepts."""
        self.max_frame = max_frame_bytes(max_elements)
        self.max_queue = 2 * self.max_frame

    def live(self) -> list[Link]:
        return [ln for ln in self.links.values() if not ln.eof]

    def _fail(self) -> None:
        f = self.failure
        if f is not None:
            err = type(f)(f.party, f.cause)
            err.__dict__.update(f.__dict__)          # reason, report: what peers are told
            raise err

    # -- receiving ----------------------------------------------------------------------
    def read(self, link: Link, timeout: float | None):
        """Next frame from ``link`` as (kind, payload); raise if the run has failed.

        ``timeout`` bounds how long the peer may send *nothing*: a large message that keeps
        arriving, however slowly, does not time out.
        """
        start = time.monotonic()
        deadline = None
        while True:
            self._fail()
            if link.inbox:
                frame = link.inbox.popleft()
                link.queued -= len(frame[1])
                return frame
            if link.eof:
                raise link.lost or out_of_step(link, BYE, "a message")
            if timeout is not None:
                deadline = max(start, link.last_rx) + timeout
                if time.monotonic() >= deadline:
                    err = PartyError(link.name, f"sent nothing for {timeout:g} s (timeout; if "
                                                f"it is only slow, raise veil.Config(timeout="
                                                f"...) or pass --timeout)")
                    err.reason = "timeout"
                    raise err
            self._progress(deadline)

    def _progress(self, deadline: float | None, writer: Link | None = None) -> None:
        """Wait until some socket is ready (or the deadline), then read what arrived."""
        if self._again:
            wait = 0.0
        else:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
        watching = writer is not None and not writer.eof
        if watching:
            self._sel.modify(writer.sock, _READ | _WRITE, writer)
        try:
            events = self._sel.select(wait)
        finally:
            if watching and not writer.eof:
                self._sel.modify(writer.sock, _READ, writer)
        again, self._again = self._again, set()
        for link in again:
            self._drain(link)
        for key, mask in events:
            if mask & _READ and key.data not in again:
                self._drain(key.data)

    def _drain(self, link: Link) -> None:
        budget = DRAIN_BUDGET
        try:
            while budget > 0 and not link.eof:
                n = link.try_recv()
                if n is None:
                    return
                if n == 0:
                    self._gone(link, "closed its connection unexpectedly (its process "
                                     "ended or was killed; see its output)")
                    return
                budget -= n
                link.last_rx = time.monotonic()
                frame = link.advance(n)
                if frame is not None:
                    self._deliver(link, *frame)
            if not link.eof:
                self._again.add(link)      # more may sit in TLS buffers; come back soon
        except LinkLost as exc:
            self._gone(link, str(exc), exc.reason)

    def _deliver(self, link: Link, kind: int, body) -> None:
        if self.closing:
            return
        if kind == ABORT:
            link.queued -= len(body)
            # Attributed to its sender, whatever it says; a frame that does not parse is
            # the sender's fault (parse_abort raises LinkLost).
            err = parse_abort(body, link.rank, link.name, self.names)
            link.aborted = True
            if self.failure is None or (self.failure.__dict__.get("relayed")
                                        and not err.relayed):
                self.failure = err          # a first-hand report beats a relayed one
            return
        if kind == BYE:
            link.bye = True
        elif kind in (HELLO, REFUSE):
            raise LinkLost(f"sent a {KIND_NAMES[kind]} message in the middle of the run",
                           "step")
        link.inbox.append((kind, body))

    def _gone(self, link: Link, why: str, reason: str = "lost") -> None:
        if link.eof:
            return
        link.eof = True
        self._again.discard(link)
        try:
            self._sel.unregister(link.sock)
        except (KeyError, ValueError):
            pass
        link.sock.close()
        if self.closing or link.bye or link.aborted:
            return
        link.lost = PartyError(link.name, why)
        link.lost.reason = reason
        if self.failure is None:
            self.failure = link.lost

    # -- sending --------------------------------------------------------------------------
    def write(self, link: Link, kind: int, payload, *, deadline: float | None = None,
              force: bool = False) -> None:
        """Write one whole frame to ``link``, reading every peer while the socket is full."""
        if not force:
            self._fail()
        if link.eof or link.dirty:
            raise link.lost or PartyError(link.name, "its connection is already closed")
        body = memoryview(payload).cast("B")
        head = HEADER.pack(kind, body.nbytes)
        # Small: one buffer, one TLS record, one TCP segment. Large: no copy of the payload.
        parts = [head + body.tobytes()] if body.nbytes <= SMALL else [head, body]
        self._write_parts(link, parts, deadline, force)

    def write_many(self, link: Link, payloads: list) -> None:
        """Several DATA frames as one buffer: one write (one record, one system call, one
        wake-up of the peer) instead of one each. For small messages (a batch)."""
        self._fail()
        if link.eof or link.dirty:
            raise link.lost or PartyError(link.name, "its connection is already closed")
        frames = [HEADER.pack(DATA, len(p)) + bytes(p) for p in payloads]
        self._write_parts(link, [b"".join(frames)], None, False)

    def _write_parts(self, link: Link, parts: list, deadline: float | None,
                     force: bool) -> None:
        link.dirty = True
        for part in parts:
            mv, off = memoryview(part), 0
            while off < mv.nbytes:
                chunk = mv[off:off + CHUNK]
                # The timeout bounds a stall, not a whole (possibly huge) message.
                stall = deadline or time.monotonic() + self.timeout
                off += self._write_chunk(link, chunk, stall, force)
        link.dirty = False

    def _write_chunk(self, link: Link, chunk: memoryview, deadline: float, force: bool) -> int:
        while True:
            try:
                n = link.try_send(chunk)
            except LinkLost as exc:
                self._drain(link)       # its last words (an abort) may be waiting unread
                self._gone(link, str(exc))
                self._fail()
                raise link.lost or PartyError(link.name, str(exc)) from None
            if n is not None:
                return n
            if time.monotonic() >= deadline:
                err = PartyError(link.name, "has taken no data for "
                                            f"{self.timeout:g} s (timeout): it is stuck or "
                                            f"far slower than this party")
                err.reason = "timeout"
                raise err
            # Retry with this same slice: OpenSSL wants the same buffer back after WANT_WRITE.
            self._progress(deadline, writer=link)
            if not force:
                self._fail()

    # -- ending ---------------------------------------------------------------------------
    def abort(self, cause: int, reason: str, error: str = "",
              wait: float = CLOSE_WAIT_S) -> None:
        """Tell every peer the run failed — which rank ``cause`` failed, how (a `reason`
        code) and the class of the error, never its text — then close. Never raises."""
        self._tell_all(ABORT, encode_abort(cause, reason, error), wait)

    def goodbye(self, wait: float = CLOSE_WAIT_S) -> None:
        """Tell every peer this party's script ended normally, then close."""
        self._tell_all(BYE, b"", wait)

    def _tell_all(self, kind: int, payload: bytes, wait: float) -> None:
        deadline = time.monotonic() + wait
        for link in self.live():
            if link.dirty:
                continue            # a half-written frame: the peer will see our close
            try:
                self.write(link, kind, payload, deadline=deadline, force=True)
                # Half-close (TCP FIN), keeping TLS reads working: the peer sees the end
                # of stream after our last frame instead of a reset that could lose it.
                socket.socket.shutdown(link.sock, socket.SHUT_WR)
            except (PartyError, LinkLost, OSError):
                pass
        self.closing = True
        # Linger until the peers close too, so no unread data turns our close into a reset.
        while self.live() and time.monotonic() < deadline:
            self._progress(deadline)
        self.close()

    def close(self) -> None:
        self.closing = True
        for link in list(self.links.values()):
            self._gone(link, "closed")
        self._sel.close()
