"""`veil certs`: a CA, and one key + certificate per party and for the dealer.

Keys are ECDSA P-256 (fast to make, TLS 1.3 friendly). Certificates carry the role in
the subject CN ("veil party 0", "veil dealer"); peers pin the exact certificate of each
rank (see veil.net.cluster), so a certificate of the same CA held by another rank is
still refused. Private keys are written with mode 0600 and never printed.

Who keeps what: each organisation keeps only its own ``.key``; everyone gets ``ca.crt``,
all ``.crt`` files and ``cluster.toml``. Keep ``ca.key`` offline (or delete it): it is
only needed to issue new certificates.
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .cluster import write_cluster

DEFAULT_BASE_PORT = 47100


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "veil"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _builder(subject, issuer, pub, days: int) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.timezone.utc)
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
            .public_key(pub).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(pub), critical=False))


def make_ca(days: int = 365):
    """A self-signed CA: (private key, certificate)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name("veil CA")
    cert = (_builder(name, name, key.public_key(), days)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                         False), critical=True)
            .sign(key, hashes.SHA256()))
    return key, cert


def make_leaf(ca_key, ca_cert, cn: str, days: int = 365):
    """A key and certificate for one role, usable as both TLS client and server."""
    key = ec.generate_private_key(ec.SECP256R1())
    aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key())
    cert = (_builder(_name(cn), ca_cert.subject, key.public_key(), days)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(aki, critical=False)
            .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False,
                                         False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                  ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    return key, cert


def write_key(path: Path, key) -> None:
    data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    # Create with 0600 from the start: no window where the key is world-readable.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def write_cert(path: Path, cert) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def role_file(rank: int, n: int) -> str:
    """Base file name of a role: party0 … party{n-1}, dealer."""
    return "dealer" if rank == n else f"party{rank}"


def make_certs(out: str | Path, parties: int, *, hosts: list[str] | None = None,
               base_port: int = DEFAULT_BASE_PORT, days: int = 365,
               force: bool = False) -> Path:
    """Write ca.crt/ca.key, party{i}.crt/.key, dealer.crt/.key and cluster.toml into ``out``.

    ``hosts`` gives each party's address (and the dealer's last), default 127.0.0.1 for
    all; party i listens on ``base_port + i``. Returns the cluster file's path.

    >>> make_certs("/tmp/veil-certs", parties=2, force=True).name
    'cluster.toml'
    """
    if parties < 2:
        raise ValueError(f"--parties must be at least 2, got {parties}")
    hosts = hosts or ["127.0.0.1"]
    if len(hosts) == 1:
        hosts = hosts * (parties + 1)
    if len(hosts) != parties + 1:
        raise ValueError(f"give one host per party plus one for the dealer ({parties + 1}), "
                         f"or a single host for all; got {len(hosts)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    names = ["ca"] + [role_file(r, parties) for r in range(parties + 1)]
    clash = [f"{b}{ext}" for b in names for ext in (".crt", ".key")
             if (out / f"{b}{ext}").exists()] + \
        (["cluster.toml"] if (out / "cluster.toml").exists() else [])
    if clash and not force:
        raise FileExistsError(f"{out} already holds {', '.join(clash[:4])}…; choose another "
                              f"--out or pass --force to overwrite")
    ca_key, ca_cert = make_ca(days)
    write_key(out / "ca.key", ca_key)
    write_cert(out / "ca.crt", ca_cert)
    for r in range(parties + 1):
        cn = "veil dealer" if r == parties else f"veil party {r}"
        key, cert = make_leaf(ca_key, ca_cert, cn, days)
        write_key(out / f"{role_file(r, parties)}.key", key)
        write_cert(out / f"{role_file(r, parties)}.crt", cert)
    rows = [(hosts[r], base_port + r, f"party{r}.crt") for r in range(parties)]
    return write_cluster(out / "cluster.toml", "ca.crt", rows, (hosts[-1], "dealer.crt"))
