"""A throw-away cluster on this host: certificates, ports, and in-process connections.

`veil run -n` builds its cluster with `local_cluster`; tests and benchmarks also use
`connect_hubs` to wire every rank of it inside one process (one thread per rank).

>>> import tempfile
>>> cluster, listeners = local_cluster(tempfile.mkdtemp(), 2)
>>> hubs = connect_hubs(cluster, listeners)
>>> hubs[0].links[1].send(b"hi"); bytes(hubs[1].links[0].recv(5.0))
b'hi'
>>> for h in hubs.values(): h.close()
"""

from __future__ import annotations

import socket
import threading
from pathlib import Path

from .certs import make_self_signed, role_file, write_cert, write_key
from .cluster import Cluster, load_cluster, write_cluster
from .connect import BACKLOG, Connector
from .hub import Hub
from .tls import Identity


def local_cluster(tmp: str | Path, n: int, days: int = 2
                  ) -> tuple[Cluster, list[socket.socket]]:
    """A key and self-signed certificate for n parties and the dealer in ``tmp`` (one
    person makes them all: fine on one host, where that person runs every party), a
    cluster file pinning them, and a loopback listening socket per party (port chosen by
    the OS: no collisions, no race)."""
    tmp = Path(tmp)
    tmp.mkdir(mode=0o700, parents=True, exist_ok=True)
    listeners = [socket.create_server(("127.0.0.1", 0), backlog=BACKLOG) for _ in range(n)]
    for r in range(n + 1):
        key, cert = make_self_signed("veil dealer" if r == n else f"veil party {r}", days)
        write_key(tmp / f"{role_file(r, n)}.key", key)
        write_cert(tmp / f"{role_file(r, n)}.crt", cert)
    rows = [("127.0.0.1", s.getsockname()[1], f"party{r}.crt") for r, s in enumerate(listeners)]
    path = write_cluster(tmp / "cluster.toml", None, rows, ("127.0.0.1", "dealer.crt"))
    return load_cluster(path), listeners


def identity(cluster: Cluster, rank: int) -> Identity:
    cert = cluster.entry(rank).cert
    return Identity(cert, cert.with_suffix(".key"), cluster.trust_pem())


def connect_hubs(cluster: Cluster, listeners: list[socket.socket], *, ranks=None,
                 secure: bool = True, deadline_s: float = 10.0,
                 timeout: float = 10.0, bulk: str | None = None) -> dict[int, Hub]:
    """Connect ``ranks`` (default: every party and the dealer) to each other, in threads of
    this process; return their hubs. Re-raises the first rank's error, if any. ``bulk``:
    "aes-gcm" or "tls" (veil.net.aead; default: ``VEIL_BULK``, else "aes-gcm")."""
    ranks = list(range(cluster.n + 1) if ranks is None else ranks)
    hubs: dict[int, Hub] = {}
    errors: dict[int, BaseException] = {}

    def one(r: int) -> None:
        try:
            ident = identity(cluster, r) if secure else None
            lst = listeners[r] if r < cluster.n else None
            peers = [p for p in ranks if p != r]
            hubs[r] = Connector(cluster, r, ident, deadline_s, timeout, peers,
                                bulk=bulk).run(lst)
        except BaseException as exc:          # noqa: BLE001 - re-raised below
            errors[r] = exc

    threads = [threading.Thread(target=one, args=(r,), daemon=True) for r in ranks]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        for h in hubs.values():
            h.close()
        raise next(iter(errors.values()))
    return hubs
