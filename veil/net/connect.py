"""Connection set-up: every pair of processes gets one authenticated link.

Rule: the higher rank connects, the lower rank listens (the dealer, rank n, connects to
every party and listens for no one). A process first dials all lower ranks — retrying
until the connect deadline, so processes may start in any order — then accepts the
higher ones. Dialling first cannot deadlock: party 0 only accepts, and by induction
every lower rank reaches its accept loop.

Strangers cannot stop a party. Anyone may open a TCP connection to a listening party, so
each accepted connection gets its own thread and a budget (`HANDSHAKE_S`) for TLS and the
hello. One that fails — garbage, silence, a failed TLS handshake, no certificate or one
the cluster file does not list, a rank it cannot prove or that is already connected — is
refused, logged (logger ``veil.net``) and forgotten: the party keeps waiting for its real
peers until the deadline, whose error then lists what was dropped. Only a connection
*authenticated* as an awaited peer (by its pinned certificate) can stop the set-up early,
and only for what waiting cannot cure (another cluster file, another veil version); the
error then names that peer. An unauthenticated socket is never given a peer's name.
A dialler likewise retries (until the deadline) when what answers at a peer's address
fails TLS or presents a certificate that is not that peer's.

Handshake, after TLS: the dialler sends HELLO {rank, cluster id}; the listener checks the
peer's certificate is *the one pinned for that rank* (not merely one it trusts), and
answers HELLO, or REFUSE with the reason, which both sides then report. Unless both
run TLS-only (``VEIL_BULK=tls``), each hello carries an X25519 key and both ends then
switch the connection to AES-GCM records (veil.net.aead); ends that disagree are refused.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import queue
import socket
import ssl
import threading
import time
from collections import deque

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from ..errors import PartyError
from .aead import MODES, direction_keys, public_bytes, shared_secret, switch, transcript
from .cluster import Cluster
from .hub import Hub
from .link import HEADER, HELLO, REFUSE, describe, tune
from .tls import Identity, client_context, peer_fingerprint, server_context

VERSION = 1
HANDSHAKE_S = 10.0       # most an accepted connection may take to finish TLS and say hello
MAX_PENDING = 32         # handshakes in progress at once; a connection beyond is dropped
BACKLOG = 64             # connections the kernel queues while this party is busy
HELLO_MAX = 4096         # a hello or refusal is a few hundred bytes of JSON
LOG_DROPS = 20           # dropped connections logged one by one; later ones only counted
POLL_S = 0.05
log = logging.getLogger("veil.net")


def _send(sock, kind: int, obj) -> None:
    body = json.dumps(obj).encode()
    sock.sendall(HEADER.pack(kind, len(body)) + body)


def _recv_exact(sock, n: int, end: float | None) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        if end is not None:          # one budget for the whole exchange, not per recv
            left = end - time.monotonic()
            if left <= 0:
                raise TimeoutError("handshake budget spent")
            sock.settimeout(left)
        got = sock.recv(n - len(buf))
        if not got:
            raise ConnectionResetError("closed during the handshake")
        buf += got
    return bytes(buf)


def _recv(sock, end: float | None = None) -> tuple[int, dict]:
    kind, length = HEADER.unpack(_recv_exact(sock, HEADER.size, end))
    if kind not in (HELLO, REFUSE) or length > HELLO_MAX:
        raise ValueError("it does not speak the veil handshake (is it a veil party, and are "
                         "both sides --insecure or neither?)")
    try:
        msg = json.loads(_recv_exact(sock, length, end).decode())
    except (ValueError, RecursionError):
        raise ValueError("its hello does not parse (is it a veil party?)") from None
    if not isinstance(msg, dict):
        raise ValueError("its hello does not parse (is it a veil party?)")
    return kind, msg


def clean(text, limit: int = 300) -> str:
    """A peer's words, made safe to print: one line of printable characters, bounded."""
    text = "".join(c if c.isprintable() else "?" for c in str(text))
    return text if len(text) <= limit else text[:limit - 3] + "..."


class _Drop(Exception):
    """A connection to forget (its reason is logged, and kept for the deadline error)."""


class Connector:
    """Builds this process's `Hub`: its links to every other rank of the cluster."""

    def __init__(self, cluster: Cluster, rank: int, ident: Identity | None,
                 deadline_s: float, timeout: float, peers=None,
                 handshake_s: float = HANDSHAKE_S, bulk: str | None = None) -> None:
        self.c, self.rank, self.ident = cluster, rank, ident
        # After TLS: AES-GCM records (veil.net.aead) unless TLS-only is asked for.
        self.bulk = (bulk or os.environ.get("VEIL_BULK") or MODES[0]) if ident else None
        if self.bulk is not None and self.bulk not in MODES:
            raise PartyError(cluster.entry(rank).name, f"unknown bulk encryption "
                                                       f"{self.bulk!r}; use one of {MODES}")
        self.n = cluster.n
        # Normally every other rank; a subset only in tests and benchmarks.
        self.peers = set(range(self.n + 1)) - {rank} if peers is None else set(peers)
        self.deadline_s = deadline_s
        self.deadline = time.monotonic() + deadline_s
        self.handshake_s = handshake_s
        self.me = cluster.entry(rank).name
        self.cid = cluster.identity() if ident else cluster.identity_insecure()
        self.hub = Hub(self.me, timeout, cluster.names())
        self._client = client_context(ident) if ident else None
        self._server = server_context(ident) if ident and rank < self.n else None
        self.dropped = 0
        self._notes: deque[str] = deque(maxlen=3)
        self._done_lock = threading.Lock()
        self._finished = False

    def _left(self) -> float:
        return self.deadline - time.monotonic()

    def _err(self, rank: int, cause: str) -> PartyError:
        return PartyError(self.c.entry(rank).name, cause)

    def _name(self, rank) -> str:
        return self.c.entry(rank).name if isinstance(rank, int) and 0 <= rank <= self.n \
            else f"rank {clean(rank, 20)}"

    def run(self, listener: socket.socket | None) -> Hub:
        try:
            for j in sorted(p for p in self.peers if p < self.rank):
                self._dial(j)
            if any(p > self.rank for p in self.peers):
                self._accept_all(listener)
        except BaseException:
            self.hub.close()
            raise
        finally:
            if listener is not None:
                listener.close()
        return self.hub

    # -- dialling ---------------------------------------------------------------------------
    def _dial(self, j: int) -> None:
        e = self.c.entry(j)
        last, pause = "no attempt made", 0.05
        while True:
            left = self._left()
            if left <= 0:
                raise self._err(j, f"never came up at {e.where} within {self.deadline_s:g} s "
                                   f"(last attempt: {last}); is it started, with this "
                                   f"cluster file, and is the port reachable?")
            try:
                sock = socket.create_connection((e.host, e.port), timeout=min(left, 5.0))
            except OSError as exc:       # refused / unreachable: it may start later
                last = exc.strerror or str(exc)
            else:
                last = self._try_dial(sock, j)
                if last is None:
                    return
            time.sleep(min(pause, max(self._left(), 0)))
            pause = min(pause * 2, 0.5)

    def _try_dial(self, sock: socket.socket, j: int) -> str | None:
        """One attempt: None once linked; else why it failed (retry: what answered may not
        be the peer). Raises only when the authenticated peer itself refuses."""
        e = self.c.entry(j)
        try:
            # The whole remaining deadline: the listener may still be dialling lower ranks
            # (or starting up) before it accepts us, and the kernel already queued us.
            sock.settimeout(max(self._left(), 0.1))
            tune(sock)
            if self._client:
                sock = self._client.wrap_socket(sock)       # handshake happens here
                fp = peer_fingerprint(sock)
                if fp != self.c.fingerprint(j):
                    sock.close()
                    return (f"the process at {e.where} presented a certificate that is not "
                            f"{e.name}'s ({self._holder(fp)}); check the cert paths in the "
                            f"cluster file and the --party value")
            key = X25519PrivateKey.generate() if self.bulk == "aes-gcm" else None
            _send(sock, HELLO, self._hello(key))
            kind, msg = _recv(sock, time.monotonic() + max(self._left(), 0.1))
        except (OSError, ValueError) as exc:
            sock.close()
            return f"the handshake failed: {self._why(exc, server=False)}"
        if kind == REFUSE or msg.get("rank") != j or msg.get("veil") != VERSION \
                or msg.get("cluster") != self.cid:
            sock.close()
            why = clean(msg.get("why")) if kind == REFUSE else \
                "it answered with a hello for another rank, version or cluster file"
            if self._client:            # authenticated: it is j, and it says why
                raise self._err(j, f"refused this party's connection: {why}")
            return f"refused: {why}"
        if self._client:                # authenticated as j: a mismatch will not go away
            try:
                keys = self._keys(key, msg, j)
            except ValueError as exc:
                sock.close()
                raise self._err(j, str(exc)) from None
            if keys is not None:
                try:
                    sock = switch(sock, *keys)
                except OSError as exc:
                    sock.close()
                    return f"the switch to bulk encryption failed: {describe(exc)}"
        sock.settimeout(None)
        self.hub.add(sock, j, e.name)
        return None

    # -- bulk encryption ----------------------------------------------------------------------
    def _hello(self, key) -> dict:
        hello = {"veil": VERSION, "rank": self.rank, "cluster": self.cid}
        if key is not None:
            hello["bulk"] = public_bytes(key).hex()
        return hello

    def _keys(self, key, msg: dict, peer: int) -> tuple[bytes, bytes] | None:
        """After the hellos: None to stay on TLS, or this end's (send, receive) keys for
        AES-GCM records. ValueError if the two ends disagree or the peer's key is bad."""
        theirs = msg.get("bulk")
        if (key is None) != (theirs is None):
            mine = "TLS only (--tls-only)" if key is None else "AES-GCM records after TLS"
            raise ValueError(f"it and this party disagree on bulk encryption (this party: "
                             f"{mine}): start every process with the same --tls-only "
                             f"setting")
        if key is None:
            return None
        try:
            peer_pub = bytes.fromhex(theirs) if isinstance(theirs, str) else None
        except ValueError:
            peer_pub = None
        secret = shared_secret(key, peer_pub)         # ValueError if malformed
        t = transcript(self.cid, (self.rank, self.c.fingerprint(self.rank), public_bytes(key)),
                       (peer, self.c.fingerprint(peer), peer_pub))
        return direction_keys(secret, t, self.rank, peer)

    def _holder(self, fp: str | None) -> str:
        other = self.c.rank_of_fingerprint(fp) if fp else None
        return f"it is that of {self.c.entry(other).name}" if other is not None else \
            "it is not in the cluster file"

    @staticmethod
    def _why(exc: BaseException, server: bool) -> str:
        if isinstance(exc, ssl.SSLCertVerificationError):
            return (f"its certificate is not one this cluster file lists, nor from its CA "
                    f"({exc.verify_message}): do both sides use the same cluster file and "
                    f"certificates?")
        if isinstance(exc, ssl.SSLError):
            what = ("its certificate is not one the cluster file lists (or its CA's), or it "
                    "uses --insecure" if server else "it rejected this party's certificate, "
                    "or it uses --insecure")
            return (f"{describe(exc)} ({what}: check both use the same cluster file and CA, "
                    f"and that both or neither use --insecure)")
        if isinstance(exc, (socket.timeout, TimeoutError)):
            return "no answer in time (is it a veil party? is it stuck?)"
        if isinstance(exc, ValueError):
            return str(exc)
        if isinstance(exc, (ConnectionResetError, BrokenPipeError)):
            return ("it closed the connection during the handshake: its process exited, or "
                    "it refused this party (check both use the same cluster file and CA, and "
                    "that both or neither use --insecure)")
        return describe(exc)

    # -- accepting --------------------------------------------------------------------------
    def _accept_all(self, listener: socket.socket) -> None:
        waiting = {p for p in self.peers if p > self.rank}
        done: queue.Queue = queue.Queue()
        pending = 0
        listener.settimeout(POLL_S)
        try:
            while waiting:
                while True:                          # settle finished handshakes, in order
                    try:
                        item = done.get_nowait()
                    except queue.Empty:
                        break
                    pending -= 1
                    self._settle(item, waiting)
                if not waiting:
                    break
                if self._left() <= 0:
                    raise self._late(waiting)
                try:
                    sock, addr = listener.accept()
                except (socket.timeout, TimeoutError):
                    continue
                except OSError as exc:               # out of file descriptors, …
                    self._drop(None, "(not accepted)", f"accept failed: {describe(exc)}")
                    time.sleep(POLL_S)
                    continue
                where = f"{addr[0]}:{addr[1]}"
                if pending >= MAX_PENDING:
                    self._drop(sock, where, f"{MAX_PENDING} other connections are still "
                                            f"completing their handshake")
                    continue
                pending += 1
                threading.Thread(target=self._handshake, args=(sock, where, done),
                                 name=f"veil-handshake-{where}", daemon=True).start()
        finally:
            with self._done_lock:                    # late handshakes close their own
                self._finished = True
                while True:
                    try:
                        done.get_nowait()[0].close()
                    except queue.Empty:
                        break

    def _handshake(self, sock, where: str, done: queue.Queue) -> None:
        """In its own thread: TLS and the hello within the budget; never raises."""
        end = time.monotonic() + min(self.handshake_s, max(self._left(), 0.1))
        rank = kind = msg = None
        problem = None
        try:
            sock.settimeout(max(end - time.monotonic(), 0.01))
            tune(sock)
            if self._server:
                sock = self._server.wrap_socket(sock, server_side=True)
                fp = peer_fingerprint(sock)
                rank = self.c.rank_of_fingerprint(fp) if fp else None
                if rank is None:
                    raise _Drop("its certificate is not one the cluster file lists")
            kind, msg = _recv(sock, end)
        except _Drop as exc:
            problem = str(exc)
        except (OSError, ValueError) as exc:
            problem = self._why(exc, server=True)
        except Exception as exc:                     # noqa: BLE001 - a stranger's doing
            problem = f"its handshake raised {type(exc).__name__}"
        with self._done_lock:
            if self._finished:
                sock.close()
            else:
                done.put((sock, where, rank, kind, msg, problem))

    def _settle(self, item, waiting: set[int]) -> None:
        """Decide on one finished handshake (main thread: it owns ``waiting``)."""
        sock, where, cert_rank, kind, msg, problem = item
        if problem is not None:
            return self._drop(sock, where, problem)
        claimed = msg.get("rank")
        if kind != HELLO or isinstance(claimed, bool) or not isinstance(claimed, int):
            return self._refuse(sock, where, "it did not send a veil hello naming its rank")
        if self._server and claimed != cert_rank:
            return self._refuse(sock, where, f"it presents {self._name(cert_rank)}'s "
                                             f"certificate but claims {self._name(claimed)}; "
                                             f"check --party")
        if claimed not in waiting:
            return self._refuse(sock, where, f"{self._name(claimed)} is not a rank this party "
                                             f"is waiting for (waiting for: "
                                             f"{sorted(waiting)}): a second connection, or a "
                                             f"wrong --party")
        problem = None
        if msg.get("veil") != VERSION:
            problem = "it runs another version of the veil handshake"
        elif msg.get("cluster") != self.cid:
            problem = (f"its cluster file differs from this one's (id "
                       f"{clean(msg.get('cluster'), 20)} vs {self.cid}): give every party the "
                       f"same file")
        if problem:
            self._refuse(sock, where, problem)
            if self._server:          # authenticated as that peer: waiting will not help
                raise self._err(claimed, f"refused its connection from {where}: {problem}")
            return None
        key = X25519PrivateKey.generate() if self.bulk == "aes-gcm" else None
        keys = None
        if self._server:
            try:
                keys = self._keys(key, msg, claimed)
            except ValueError as exc:     # authenticated as that peer: tell it, and stop
                self._refuse(sock, where, str(exc))
                raise self._err(claimed, f"refused its connection from {where}: {exc}") \
                    from None
        try:
            sock.settimeout(min(max(self._left(), 0.1), self.handshake_s))
            _send(sock, HELLO, self._hello(key))
            if keys is not None:
                sock = switch(sock, *keys)
        except OSError as exc:
            return self._drop(sock, where, f"the hello reply failed: {describe(exc)}")
        sock.settimeout(None)
        self.hub.add(sock, claimed, self.c.entry(claimed).name)
        waiting.discard(claimed)
        return None

    def _refuse(self, sock, where: str, why: str) -> None:
        try:
            sock.settimeout(1.0)
            _send(sock, REFUSE, {"why": why})
        except OSError:
            pass
        self._drop(sock, where, why)

    def _drop(self, sock, where: str, why: str) -> None:
        if sock is not None:
            sock.close()
        self.dropped += 1
        self._notes.append(f"{where}: {why}")
        if self.dropped <= LOG_DROPS:
            log.warning("veil: %s dropped a connection from %s: %s", self.me, where, why)
        elif self.dropped == LOG_DROPS + 1:
            log.warning("veil: %s: more connections dropped; counting them silently",
                        self.me)

    def _late(self, waiting: set[int]) -> PartyError:
        names = ", ".join(self.c.entry(r).name for r in sorted(waiting))
        text = (f"did not connect within {self.deadline_s:g} s (still waiting for: {names}); "
                f"is it started, with this cluster file, and can it reach "
                f"{self.c.entry(self.rank).where}?")
        if self.dropped:
            text += (f" Meanwhile {self.dropped} connection(s) were dropped, last: "
                     + " | ".join(self._notes))
        return self._err(min(waiting), text)


def listen(cluster: Cluster, rank: int) -> socket.socket:
    """Bind this party's port on the address the cluster file gives it (its ``bind``, else
    its ``host``; never every interface unless asked); say clearly when that fails."""
    e = cluster.entry(rank)
    try:
        return socket.create_server((e.listen_host, e.port), backlog=BACKLOG)
    except OSError as exc:
        hint = (f"Stop the program holding the port (an earlier run still exiting?) or change "
                f"{e.name}'s port in {cluster.path}")
        if exc.errno == errno.EADDRNOTAVAIL:
            hint = (f"{e.listen_host} is not an address of this machine: behind NAT, add "
                    f"bind = \"<this machine's private address>\" to {e.name} in "
                    f"{cluster.path} (bind = \"0.0.0.0\" listens on every interface)")
        raise PartyError(e.name, f"cannot listen on {e.listen_host}:{e.port}: "
                                 f"{exc.strerror or exc}. {hint}") from None
