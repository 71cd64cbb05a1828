"""Connection set-up: every pair of processes gets one authenticated link.

Rule: the higher rank connects, the lower rank listens (the dealer, rank n, connects to
every party and listens for no one). A process first dials all lower ranks — retrying
until the connect deadline, so processes may start in any order — then accepts the
higher ones. Dialling first cannot deadlock: party 0 only accepts, and by induction
every lower rank reaches its accept loop.

Handshake, after TLS: the dialler sends HELLO {rank, cluster id}; the listener checks the
peer's certificate is *the one pinned for that rank* (not merely one from the same CA),
and answers HELLO, or REFUSE with the reason, which both sides then report.
"""

from __future__ import annotations

import json
import socket
import ssl
import time

from ..errors import PartyError
from .cluster import Cluster
from .hub import Hub
from .link import BYE, HEADER, HELLO, REFUSE, describe, tune
from .tls import Identity, client_context, peer_fingerprint, server_context

VERSION = 1
HANDSHAKE_S = 10.0       # most an accepted connection may take to finish TLS and say hello


def _send(sock, kind: int, obj) -> None:
    body = json.dumps(obj).encode()
    sock.sendall(HEADER.pack(kind, len(body)) + body)


def _recv_exact(sock, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        got = sock.recv(n - len(buf))
        if not got:
            raise ConnectionResetError("closed during the handshake")
        buf += got
    return bytes(buf)


def _recv(sock) -> tuple[int, dict]:
    kind, length = HEADER.unpack(_recv_exact(sock, HEADER.size))
    if kind not in (HELLO, REFUSE, BYE) or length > 65536:
        raise ValueError("the peer does not speak the veil handshake (is it a veil party, "
                         "and are both sides --insecure or neither?)")
    return kind, json.loads(_recv_exact(sock, length).decode())


class Connector:
    """Builds this process's `Hub`: its links to every other rank of the cluster."""

    def __init__(self, cluster: Cluster, rank: int, ident: Identity | None,
                 deadline_s: float, timeout: float, peers=None) -> None:
        self.c, self.rank, self.ident = cluster, rank, ident
        self.n = cluster.n
        # Normally every other rank; a subset only in tests and benchmarks.
        self.peers = set(range(self.n + 1)) - {rank} if peers is None else set(peers)
        self.deadline_s = deadline_s
        self.deadline = time.monotonic() + deadline_s
        self.me = cluster.entry(rank).name
        self.cid = cluster.identity() if ident else cluster.identity_insecure()
        self.hub = Hub(self.me, timeout)
        self._client = client_context(ident) if ident else None
        self._server = server_context(ident) if ident and rank < self.n else None

    def _left(self) -> float:
        return self.deadline - time.monotonic()

    def _err(self, rank: int, cause: str) -> PartyError:
        return PartyError(self.c.entry(rank).name, cause)

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
                break
            except OSError as exc:       # refused / unreachable: it may start later
                last = exc.strerror or str(exc)
                time.sleep(min(pause, max(left, 0)))
                pause = min(pause * 2, 0.5)
        try:
            # The whole remaining deadline: the listener may still be dialling lower ranks
            # (or starting up) before it accepts us, and the kernel already queued us.
            sock.settimeout(max(self._left(), 0.1))
            tune(sock)
            if self._client:
                sock = self._client.wrap_socket(sock)       # handshake happens here
                self._check_pin(sock, j, f"the process at {e.where}")
            _send(sock, HELLO, {"veil": VERSION, "rank": self.rank, "cluster": self.cid})
            kind, msg = _recv(sock)
        except PartyError:
            sock.close()
            raise
        except (OSError, ValueError) as exc:
            sock.close()
            raise self._err(j, f"connection to {e.where} failed during the handshake: "
                               f"{self._why(exc, server=False)}") from None
        if kind == REFUSE:
            sock.close()
            raise self._err(j, f"refused this party's connection: {msg.get('why')}")
        sock.settimeout(None)
        self.hub.add(sock, j, e.name)

    @staticmethod
    def _why(exc: BaseException, server: bool) -> str:
        if isinstance(exc, ssl.SSLCertVerificationError):
            return (f"its certificate does not verify against this cluster's CA "
                    f"({exc.verify_message}): do both sides use the same ca.crt?")
        if isinstance(exc, ssl.SSLError):
            what = ("its certificate is not from this cluster's CA, or it uses --insecure"
                    if server else "it rejected this party's certificate, or it uses "
                    "--insecure")
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

    def _check_pin(self, sock, j: int, who: str) -> None:
        fp = peer_fingerprint(sock)
        if fp != self.c.fingerprint(j):
            other = self.c.rank_of_fingerprint(fp) if fp else None
            holder = f"that of {self.c.entry(other).name}" if other is not None else \
                "not in the cluster file"
            raise self._err(j, f"{who} presented a certificate that is not "
                               f"{self.c.entry(j).name}'s (it is {holder}); check the cert "
                               f"paths in the cluster file and the --party value")

    # -- accepting --------------------------------------------------------------------------
    def _accept_all(self, listener: socket.socket) -> None:
        waiting = {p for p in self.peers if p > self.rank}
        while waiting:
            left = self._left()
            if left <= 0:
                names = ", ".join(self.c.entry(r).name for r in sorted(waiting))
                raise self._err(min(waiting),
                                f"did not connect within {self.deadline_s:g} s (still "
                                f"waiting for: {names}); is it started, with this cluster "
                                f"file, and can it reach {self.c.entry(self.rank).where}?")
            listener.settimeout(left)
            try:
                sock, addr = listener.accept()
            except (socket.timeout, TimeoutError):
                continue
            waiting.discard(self._admit(sock, addr, waiting))

    def _admit(self, sock: socket.socket, addr, waiting: set[int]) -> int:
        where = f"{addr[0]}:{addr[1]}"
        guess = min(waiting) if len(waiting) == 1 else None   # who it can only have been
        try:
            sock.settimeout(min(max(self._left(), 0.1), HANDSHAKE_S))
            tune(sock)
            if self._server:
                sock = self._server.wrap_socket(sock, server_side=True)
            kind, msg = _recv(sock)
        except (OSError, ValueError) as exc:
            sock.close()
            who = self.c.entry(guess).name if guess is not None else f"a peer at {where}"
            raise PartyError(who, f"connection from {where} failed the handshake: "
                                  f"{self._why(exc, server=True)}") from None
        r = msg.get("rank")
        problem = None
        if kind != HELLO or msg.get("veil") != VERSION or not isinstance(r, int):
            problem = "it did not send a veil hello of this version"
        elif msg.get("cluster") != self.cid:
            problem = (f"its cluster file differs from this one's (id {msg.get('cluster')} "
                       f"vs {self.cid}): give every party the same file")
        elif r not in waiting:
            problem = (f"it claims rank {r}, which is not one this party accepts "
                       f"(expected: {sorted(waiting)}); check --party")
        elif self._server:
            try:
                self._check_pin(sock, r, f"a connection from {where}")
            except PartyError as exc:
                problem = exc.cause
        if problem:
            try:
                _send(sock, REFUSE, {"why": problem})
            except OSError:
                pass
            sock.close()
            who = self.c.entry(r).name if isinstance(r, int) and 0 <= r <= self.n else \
                f"a peer at {where}"
            raise PartyError(who, f"refused its connection from {where}: {problem}")
        try:
            _send(sock, HELLO, {"veil": VERSION, "rank": self.rank, "cluster": self.cid})
        except OSError as exc:
            sock.close()
            raise PartyError(self.c.entry(r).name, f"handshake failed: {describe(exc)}") from None
        sock.settimeout(None)
        self.hub.add(sock, r, self.c.entry(r).name)
        return r


def listen(cluster: Cluster, rank: int) -> socket.socket:
    """Bind this party's port from the cluster file; say clearly when it is taken."""
    e = cluster.entry(rank)
    try:
        return socket.create_server((e.listen_host, e.port), backlog=cluster.n + 4)
    except OSError as exc:
        raise PartyError(e.name, f"cannot listen on {e.listen_host}:{e.port}: "
                                 f"{exc.strerror or exc}. Stop the program holding the port "
                                 f"(an earlier run still exiting?) or change {e.name}'s port "
                                 f"in {cluster.path}") from None
