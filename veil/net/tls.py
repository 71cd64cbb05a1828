"""TLS 1.3 with mutual authentication, and the loud opt-out.

Both ends present a certificate TLS verifies against the certificates the cluster file
lists (and its CA, if it names one), *and* the exact certificate the file lists for that
rank (checked after the handshake, see veil.net.connect): a listed certificate belonging
to another role is refused. Host names are not checked: the pinned certificate
identifies the peer, whatever address it comes from. A private key readable by other
users is refused, as ssh does.
"""

from __future__ import annotations

import hashlib
import os
import ssl
import stat
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
    """What this process proves itself with (its certificate and key), and whom it
    trusts (``trust``: PEM text of the cluster's certificates, `Cluster.trust_pem`)."""
    cert: Path
    key: Path
    trust: str

    def __repr__(self) -> str:          # paths only; the key's contents never appear
        return f"Identity(cert={str(self.cert)!r}, key=<{self.key.name}>)"


def check_key_file(key: Path) -> None:
    """Refuse a private key other users could read (or a link to one)."""
    try:
        st = os.lstat(key)
    except OSError:
        return                           # reported as "not found" below
    if stat.S_ISLNK(st.st_mode):
        st = os.stat(key)
    if st.st_mode & 0o077:
        raise ClusterError(f"private key {key} is readable or writable by other users "
                           f"(mode {stat.S_IMODE(st.st_mode):04o}): run `chmod 600 {key}`")


def _context(purpose: int, ident: Identity) -> ssl.SSLContext:
    ctx = ssl.SSLContext(purpose)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.verify_mode = ssl.CERT_REQUIRED
    # The pinned certificates are trust anchors themselves (self-signed, or CA-issued).
    ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    for p, what in ((ident.cert, "certificate"), (ident.key, "key")):
        if not Path(p).is_file():
            raise ClusterError(f"{what} file {p} not found; create one with `veil certs`, "
                               f"or fix the path in the cluster file / --key")
    check_key_file(Path(ident.key))
    try:
        ctx.load_cert_chain(ident.cert, ident.key)
        ctx.load_verify_locations(cadata=ident.trust)
    except ssl.SSLError as exc:
        raise ClusterError(f"cannot load {ident.cert} with its key {ident.key.name}: "
                           f"{exc.reason or exc} (does the key belong to this "
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
