"""The cluster file: who the parties are, where they listen, which certificate each holds.

Every organisation starts its party from the same file, so it is also what each party
checks its peers against (a hash of it travels in the connection handshake)::

    # veil cluster file. Paths are relative to this file.
    [[party]]                 # party 0 (rank = order in the file)
    host = "10.0.0.1"         # where the others reach it; also where it listens
    port = 47100
    cert = "party0.crt"
    fingerprint = "sha256:3f9a…"   # optional pin: the cert must hash to this
    # bind = "10.0.0.1"       # optional: local address to listen on, if not ``host``
                              # (behind NAT: the private address; "0.0.0.0": every one)
    [[party]]                 # party 1
    host = "10.0.0.2"
    port = 47100
    cert = "party1.crt"

    [dealer]                  # the dealer connects out to every party: it needs no port
    host = "10.0.0.3"
    cert = "dealer.crt"

Trust is exactly the listed certificates: each rank must present *its* certificate (TLS
verifies against these certificates only, then the exact one is pinned per rank). An
optional ``ca = "ca.crt"`` (written by the all-in-one `veil certs --parties N`) is also
loaded, but pinning still refuses any certificate not listed for the rank.

Each party's private key is not in this file: it stays with its owner (``--key``, by
default the certificate's path with ``.key`` in place of ``.crt``).
"""

from __future__ import annotations

import hashlib
import json
import ssl
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import VeilError

LOOPBACK = ("127.0.0.1", "localhost", "::1")
FINGERPRINT_PREFIX = "sha256:"


class ClusterError(VeilError):
    """The cluster file is missing, unreadable or incomplete; the message says what to fix."""


@dataclass(frozen=True)
class Entry:
    """One party (or the dealer) in the cluster file."""
    rank: int
    name: str                  # "party 0" … / "dealer", as errors name it
    host: str
    port: int | None           # None for the dealer (it connects out)
    cert: Path
    bind: str | None = None
    pin: str | None = None     # fingerprint the cluster file pins (normalised hex)

    @property
    def listen_host(self) -> str:
        """Local address to listen on: ``bind`` if given, else the host itself — never
        every interface unless the cluster file says ``bind = "0.0.0.0"``."""
        return self.bind or self.host

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}" if self.port is not None else self.host


@dataclass(frozen=True)
class Cluster:
    """A parsed cluster file: ``parties`` in rank order, then the dealer (rank n)."""
    path: Path
    ca: Path | None
    parties: tuple[Entry, ...]
    dealer: Entry
    _fps: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def n(self) -> int:
        return len(self.parties)

    def entry(self, rank: int) -> Entry:
        return self.dealer if rank == self.n else self.parties[rank]

    def fingerprint(self, rank: int) -> str:
        """SHA-256 of the DER certificate that ``rank`` must present (certificate pinning)."""
        if rank not in self._fps:
            e = self.entry(rank)
            fp = cert_fingerprint(e.cert)
            if e.pin is not None and fp != e.pin:
                raise ClusterError(f"{self.path}: {e.cert.name} is not the certificate the "
                                   f"file pins for {e.name} (it hashes to "
                                   f"{format_fingerprint(fp)}, the file says "
                                   f"{format_fingerprint(e.pin)}); someone replaced the file, "
                                   f"or the pin is stale: get the certificate again from its "
                                   f"owner and compare fingerprints out of band")
            self._fps[rank] = fp
        return self._fps[rank]

    def names(self) -> dict[int, str]:
        return {r: self.entry(r).name for r in range(self.n + 1)}

    def trust_pem(self) -> str:
        """The certificates TLS may accept: every listed one (and the CA's, if any)."""
        paths = [self.entry(r).cert for r in range(self.n + 1)]
        for r in range(self.n + 1):
            self.fingerprint(r)                  # refuse a swapped file before trusting it
        if self.ca is not None:
            paths.append(self.ca)
        out = []
        for p in paths:
            try:
                out.append(Path(p).read_text())
            except OSError as exc:
                raise ClusterError(f"cannot read certificate {p}: {exc.strerror or exc}; "
                                   f"fix the path in {self.path}") from None
        return "\n".join(out)

    def rank_of_fingerprint(self, fp: str) -> int | None:
        return next((r for r in range(self.n + 1) if self.fingerprint(r) == fp), None)

    def identity(self) -> str:
        """Hash of what all parties must agree on: addresses and pinned certificates."""
        rows = [[e.host, e.port, self.fingerprint(e.rank)] for e in (*self.parties, self.dealer)]
        return hashlib.sha256(json.dumps(rows).encode()).hexdigest()[:16]

    def identity_insecure(self) -> str:
        rows = [[e.host, e.port] for e in (*self.parties, self.dealer)]
        return hashlib.sha256(json.dumps(rows).encode()).hexdigest()[:16]


def format_fingerprint(fp: str) -> str:
    """``sha256:`` and the hex digest in colon-separated pairs, as people compare them."""
    return FINGERPRINT_PREFIX + ":".join(fp[i:i + 2] for i in range(0, len(fp), 2)).upper()


def parse_fingerprint(text: str) -> str | None:
    raw = text.strip().lower()
    raw = raw[len(FINGERPRINT_PREFIX):] if raw.startswith(FINGERPRINT_PREFIX) else raw
    raw = raw.replace(":", "")
    return raw if len(raw) == 64 and all(c in "0123456789abcdef" for c in raw) else None


def cert_fingerprint(path: Path) -> str:
    try:
        der = ssl.PEM_cert_to_DER_cert(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ClusterError(f"cannot read certificate {path}: {exc}") from None
    return hashlib.sha256(der).hexdigest()


def _need(table: dict, key: str, kind, where: str, path: Path):
    if key not in table:
        raise ClusterError(f"{path}: {where} has no '{key}'; add {key} = ... (see "
                           f"docs/real-machines.md)")
    if not isinstance(table[key], kind):
        raise ClusterError(f"{path}: {where}.{key} must be a {kind.__name__}, "
                           f"got {table[key]!r}")
    return table[key]


def _entry(table: dict, rank: int, name: str, path: Path, port_required: bool) -> Entry:
    base = path.parent
    host = _need(table, "host", str, name, path)
    port = _need(table, "port", int, name, path) if port_required else table.get("port")
    if port is not None and not 0 < port < 65536:
        raise ClusterError(f"{path}: {name}'s port must be in 1..65535, got {port}")
    cert = base / _need(table, "cert", str, name, path)
    pin = None
    if "fingerprint" in table:
        pin = parse_fingerprint(_need(table, "fingerprint", str, name, path))
        if pin is None:
            raise ClusterError(f"{path}: {name}'s fingerprint must be 'sha256:' and 64 hex "
                               f"digits (as `veil certs --role` prints it)")
    bind = table.get("bind")
    if bind is not None and not isinstance(bind, str):
        raise ClusterError(f"{path}: {name}.bind must be a string (a local address)")
    return Entry(rank, name, host, port, cert, bind, pin)


def load_cluster(path: str | Path) -> Cluster:
    """Read and check a cluster file.

    >>> c = load_cluster("cluster.toml")            # doctest: +SKIP
    >>> c.n, c.entry(0).where                        # doctest: +SKIP
    (2, '127.0.0.1:47100')
    """
    path = Path(path).resolve()
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ClusterError(f"cluster file {path} not found; create one with "
                           f"`veil certs --parties N --out DIR`") from None
    except tomllib.TOMLDecodeError as exc:
        raise ClusterError(f"{path} is not valid TOML: {exc}") from None
    ca = path.parent / _need(data, "ca", str, "the file", path) if "ca" in data else None
    rows = data.get("party")
    if not isinstance(rows, list) or len(rows) < 2:
        raise ClusterError(f"{path}: list at least two parties as [[party]] tables")
    n = len(rows)
    parties = tuple(_entry(t, r, f"party {r}", path, True) for r, t in enumerate(rows))
    if not isinstance(data.get("dealer"), dict):
        raise ClusterError(f"{path}: add a [dealer] table (host, cert): the dealer is its own "
                           f"process, never folded into a party")
    dealer = _entry(data["dealer"], n, "dealer", path, False)
    return Cluster(path, ca, parties, dealer)


def _q(s) -> str:
    # A JSON string is a valid TOML basic string (same escapes), so no TOML writer is needed.
    return json.dumps(str(s))


def write_cluster(path: str | Path, ca: str | None, parties: list[tuple[str, int, str]],
                  dealer: tuple[str, str], *, pins: list[str] | None = None,
                  force: bool = True) -> Path:
    """Write a cluster file: ``parties`` as (host, port, cert), ``dealer`` as (host, cert);
    ``pins`` (one fingerprint per party, then the dealer's) pins each certificate."""
    from .files import write_public
    lines = ["# veil cluster file: one [[party]] per party (rank = order), then the dealer.",
             "# Paths are relative to this file. Each party's key stays with its owner."]
    if ca is not None:
        lines.append(f"ca = {_q(ca)}")
    lines.append("")
    pin = (lambda r: [f"fingerprint = {_q(format_fingerprint(pins[r]))}"]) if pins else \
        (lambda r: [])
    for r, (host, port, cert) in enumerate(parties):
        lines += [f"[[party]]  # party {r}", f"host = {_q(host)}", f"port = {int(port)}",
                  f"cert = {_q(cert)}", *pin(r), ""]
    lines += ["[dealer]  # connects out to every party, so it needs no port",
              f"host = {_q(dealer[0])}", f"cert = {_q(dealer[1])}", *pin(len(parties)), ""]
    path = Path(path)
    write_public(path, "\n".join(lines).encode(), force=force)
    return path
