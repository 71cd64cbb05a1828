"""TLS 1.3 with mutual authentication, and the loud opt-out.

Both ends present a certificate signed by the cluster's CA *and* the exact certificate
the cluster file lists for that rank (checked after the handshake, see veil.net.connect):
a certificate of the same CA belonging to another role is refused. Host names are not
checked: the pinned certificate identifies the peer, whatever address it comes from.
"""

from __future__ import annotations

import hashlib
import ssl
import sys
from dataclasses import dataclass
from pathlib import Path

from .cluster import ClusterError

INSECURE_WARNING = (
    "WARNING: veil --insecure: plain TCP. Shares, masks and seeds cross the network "
    "UNENCRYPTED and peers are NOT authenticated; anyone on the path can read or forge "
    "them. Use only to debug on a machine you trust.")


@dataclass(frozen=True)
class Identity:
    """What this process proves itself with: its certificate, its key, the cluster CA."""
    cert: Path
    key: Path
    ca: Path

    def __repr__(self) -> str:          # paths only; the key's contents never appear
        return f"Identity(cert={str(self.cert)!r}, key=<{self.key.name}>, ca={str(self.ca)!r})"


def _context(purpose: int, ident: Identity) -> ssl.SSLContext:
    ctx = ssl.SSLContext(purpose)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.verify_mode = ssl.CERT_REQUIRED
    for p, what in ((ident.cert, "certificate"), (ident.key, "key"), (ident.ca, "CA")):
        if not Path(p).is_file():
            raise ClusterError(f"{what} file {p} not found; create one with `veil certs`, "
                               f"or fix the path in the cluster file / --key")
    try:
        ctx.load_cert_chain(ident.cert, ident.key)
        ctx.load_verify_locations(ident.ca)
    except ssl.SSLError as exc:
        raise ClusterError(f"cannot load {ident.cert} with its key {ident.key.name} and CA "
                           f"{ident.ca}: {exc.reason or exc} (does the key belong to this "
                           f"certificate?)") from None
    return ctx


def server_context(ident: Identity) -> ssl.SSLContext:
    ctx = _context(ssl.PROTOCOL_TLS_SERVER, ident)
    # No session tickets: they are post-handshake records nobody uses here.
    ctx.num_tickets = 0
    return ctx


def client_context(ident: Identity) -> ssl.SSLContext:
    ctx = _context(ssl.PROTOCOL_TLS_CLIENT, ident)
    ctx.check_hostname = False        # the pinned certificate is checked instead
    return ctx


def peer_fingerprint(sock) -> str | None:
    der = sock.getpeercert(binary_form=True) if isinstance(sock, ssl.SSLSocket) else None
    return hashlib.sha256(der).hexdigest() if der else None


def warn_insecure() -> None:
    print(INSECURE_WARNING, file=sys.stderr, flush=True)
