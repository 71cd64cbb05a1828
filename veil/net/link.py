"""Links: one party's framed TCP (+TLS) connection to one peer.

Wire format: each frame is a 9-byte header (kind: 1 byte, payload length: 8 bytes,
little-endian) then the payload. DATA frames carry the Communicator's messages; the
other kinds are transport control (run start/end barriers, abort, goodbye, handshake)
and are not metered, so `veil.stats()` counts exactly what the in-process mode counts.
A `Link` only frames bytes; waiting, reading and writing are the `Hub`'s (veil/net/hub.py).

A header is a peer's claim, not a fact: a frame's length is bounded by what its kind can
carry (control frames 64 KiB; data frames one tensor of `Config.max_elements` int64
values), the bytes a peer may have waiting unread are bounded too, and a large frame's
buffer grows as its bytes actually arrive, so a 9-byte header cannot make this party
allocate gigabytes.
"""

from __future__ import annotations

import socket
import ssl
import struct
from collections import deque
from typing import TYPE_CHECKING

from ..comm import Channel
from ..comm.limits import CONTROL_MAX
from ..errors import PartyError
from .aead import RecordError

if TYPE_CHECKING:
    from .hub import Hub

HEADER = struct.Struct("<BQ")
DATA, START, END, ABORT, BYE, HELLO, REFUSE = range(1, 8)
KIND_NAMES = {DATA: "data", START: "run-start", END: "run-end", ABORT: "abort", BYE: "goodbye",
              HELLO: "hello", REFUSE: "refusal"}
SMALL = 64 * 1024          # header + payload up to this go out as one write (one TLS record)
CHUNK = 1 << 20            # large payloads are written in 1 MiB slices so reads interleave
EAGER = 64 << 20           # a frame's buffer starts at most this big and doubles as bytes arrive
ABORTED = "stopped this run: "
WOULD_BLOCK = (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError, InterruptedError)


class LinkLost(Exception):
    """The connection itself failed (reset, TLS alert, garbage); the text says how.

    ``reason`` is the short code peers are told (see veil.net.abort).
    """

    def __init__(self, text: str, reason: str = "lost") -> None:
        super().__init__(text)
        self.reason = reason


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
        self._len = 0              # length the current frame's header announced
        self._body: bytearray | None = None
        self.queued = 0            # bytes received from this peer and not yet read

    def __repr__(self) -> str:
        return f"Link(to={self.name})"

    # -- Channel ----------------------------------------------------------------------
    def send(self, payload: bytes | memoryview) -> None:
        self.hub.write(self, DATA, payload)

    def send_many(self, payloads: list) -> None:
        self.hub.write_many(self, payloads)

    def ready(self) -> bool:
        return bool(self.inbox)

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
        except RecordError as exc:
            raise LinkLost(str(exc), "step") from None
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
        except RecordError as exc:         # AES-GCM records (veil.net.aead): bad or cut
            raise LinkLost(str(exc), "step") from None
        except (ssl.SSLError, OSError) as exc:
            raise LinkLost(describe(exc)) from None

    def advance(self, n: int):
        """Account ``n`` bytes read; return a finished (kind, payload) frame, if any."""
        self._got += n
        if self._got < len(self._want):
            return None
        if self._body is None:                          # the header is complete
            kind, length = HEADER.unpack(self._head)
            self._check_header(kind, length)
            if length:
                self._kind, self._len = kind, length
                self._body = bytearray(min(length, EAGER))
                self._want, self._got = memoryview(self._body), 0
                return None
            frame = (kind, b"")
        elif len(self._body) < self._len:               # full, but more was announced:
            bigger = bytearray(min(2 * len(self._body), self._len))   # the peer really
            bigger[:self._got] = self._body                             # sent this much
            self._body, self._want = bigger, memoryview(bigger)
            return None
        else:
            frame = (self._kind, self._body)
        self._body, self._want, self._got = None, memoryview(self._head), 0
        self.queued += len(frame[1])
        return frame

    def _check_header(self, kind: int, length: int) -> None:
        if kind not in KIND_NAMES:
            raise LinkLost("sent bytes that are not a veil frame (is it a veil party of "
                           "this cluster, and are both sides --insecure or neither?)", "step")
        limit = self.hub.max_frame if kind == DATA else CONTROL_MAX
        if length > limit:
            raise LinkLost(f"announced a {KIND_NAMES[kind]} message of {length} bytes, more "
                           f"than the {limit} this party accepts (a data message holds at "
                           f"most one tensor of veil.Config(max_elements=...) int64 values)",
                           "step")
        if self.queued + length > self.hub.max_queue:
            raise LinkLost(f"sent {self.queued + length} bytes this party has not read yet, "
                           f"more than the {self.hub.max_queue} it buffers per peer (it is "
                           f"far ahead or flooding; raise veil.Config(max_elements=...) if "
                           f"the program really needs it)", "step")


def out_of_step(link: Link, kind: int, expected: str) -> PartyError:
    if kind == BYE:
        return PartyError(link.name, f"finished its script and left while this party waits "
                                     f"for {expected}: do all parties make the same veil.run "
                                     f"calls?")
    err = PartyError(link.name, f"sent a {KIND_NAMES[kind]} message where {expected} was "
                                f"expected (parties out of step: do all parties run the same "
                                f"program?)")
    err.reason = "step"
    return err
