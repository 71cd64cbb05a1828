"""Links: one party's framed TCP (+TLS) connection to one peer.

Wire format: each frame is a 9-byte header (kind: 1 byte, payload length: 8 bytes,
little-endian) then the payload. DATA frames carry the Communicator's messages; the
other kinds are transport control (run start/end barriers, abort, goodbye, handshake)
and are not metered, so `veil.stats()` counts exactly what the in-process mode counts.
A `Link` only frames bytes; waiting, reading and writing are the `Hub`'s (veil/net/hub.py).
"""

from __future__ import annotations

import socket
import ssl
import struct
from collections import deque
from typing import TYPE_CHECKING

from ..comm import Channel
from ..errors import PartyError

if TYPE_CHECKING:
    from .hub import Hub

HEADER = struct.Struct("<BQ")
DATA, START, END, ABORT, BYE, HELLO, REFUSE = range(1, 8)
KIND_NAMES = {DATA: "data", START: "run-start", END: "run-end", ABORT: "abort", BYE: "goodbye",
              HELLO: "hello", REFUSE: "refusal"}
SMALL = 64 * 1024          # header + payload up to this go out as one write (one TLS record)
CHUNK = 1 << 20            # large payloads are written in 1 MiB slices so reads interleave
MAX_FRAME = 1 << 40        # a bigger length is a corrupt header, not a tensor
ABORTED = "stopped this run: "
WOULD_BLOCK = (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError, InterruptedError)


class LinkLost(Exception):
    """The connection itself failed (reset, TLS alert, garbage); the text says how."""


def describe(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError):
        return f"TLS error: {exc.reason or exc}"
    if isinstance(exc, ConnectionResetError):
        return "connection reset (its process ended or was killed)"
    if isinstance(exc, BrokenPipeError):
        return "connection closed while sending (its process ended or was killed)"
    return f"{type(exc).__name__}: {exc}"


def tune(sock: socket.socket) -> None:
    """Low latency (no Nagle) and detection of a silently vanished host (keepalive)."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for opt, val in (("TCP_KEEPIDLE", 15), ("TCP_KEEPINTVL", 5), ("TCP_KEEPCNT", 3)):
        if hasattr(socket, opt):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, opt), val)


class Link(Channel):
    """This party's connection to one peer; the `Channel` the Communicator talks to.

    Received frames wait in ``inbox`` until asked for; ``recv`` returns DATA only.
    """

    def __init__(self, hub: "Hub", sock: socket.socket, rank: int, name: str) -> None:
        self.hub, self.sock, self.rank, self.name = hub, sock, rank, name
        self.inbox: deque = deque()
        self.eof = False           # peer closed (or the connection broke)
        self.bye = False           # peer said goodbye: its script ended normally
        self.aborted = False       # peer sent an abort
        self.lost: PartyError | None = None
        self.last_rx = 0.0         # monotonic time bytes last arrived (timeouts count from it)
        self.dirty = False         # a frame was left half-written: the stream is unusable
        self._head = bytearray(HEADER.size)
        self._want = memoryview(self._head)
        self._got = 0
        self._kind = 0
        self._body: bytearray | None = None

    def __repr__(self) -> str:
        return f"Link(to={self.name})"

    # -- Channel ----------------------------------------------------------------------
    def send(self, payload: bytes | memoryview) -> None:
        self.hub.write(self, DATA, payload)

    def recv(self, timeout: float | None) -> bytes:
        kind, body = self.hub.read(self, timeout)
        if kind != DATA:
            raise out_of_step(self, kind, "a data message")
        return body

    def close(self) -> None:
        # A no-op: links outlive a run (the next veil.run reuses them). The run-end
        # barrier tells a peer still waiting for data that this party is done.
        pass

    # -- raw non-blocking I/O -----------------------------------------------------------
    def try_send(self, chunk: memoryview) -> int | None:
        try:
            return self.sock.send(chunk)
        except WOULD_BLOCK:
            return None
        except (ssl.SSLError, OSError) as exc:
            raise LinkLost(describe(exc)) from None

    def try_recv(self) -> int | None:
        """Read into the current frame; None if nothing is there, 0 at end of stream."""
        try:
            return self.sock.recv_into(self._want[self._got:])
        except WOULD_BLOCK:
            return None
        except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
            return 0
        except (ssl.SSLError, OSError) as exc:
            raise LinkLost(describe(exc)) from None

    def advance(self, n: int):
        """Account ``n`` bytes read; return a finished (kind, payload) frame, if any."""
        self._got += n
        if self._got < len(self._want):
            return None
        if self._body is None:                          # the header is complete
            kind, length = HEADER.unpack(self._head)
            if kind not in KIND_NAMES or length > MAX_FRAME:
                raise LinkLost("sent bytes that are not a veil frame (is it a veil party of "
                               "this cluster, and are both sides --insecure or neither?)")
            if length:
                self._kind, self._body = kind, bytearray(length)
                self._want, self._got = memoryview(self._body), 0
                return None
            frame = (kind, b"")
        else:
            frame = (self._kind, self._body)
        self._body, self._want, self._got = None, memoryview(self._head), 0
        return frame


def out_of_step(link: Link, kind: int, expected: str) -> PartyError:
    if kind == BYE:
        return PartyError(link.name, f"finished its script and left while this party waits "
                                     f"for {expected}: do all parties make the same veil.run "
                                     f"calls?")
    return PartyError(link.name, f"sent a {KIND_NAMES[kind]} message where {expected} was "
                                 f"expected (parties out of step: do all parties run the same "
                                 f"program?)")
