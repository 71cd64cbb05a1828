"""`veil certs`: keys and certificates, made where they are used.

Keys are ECDSA P-256 (fast to make, TLS 1.3 friendly). Certificates carry the role in
the subject CN ("veil party 0", "veil dealer"); peers pin the exact certificate of each
rank (see veil.net.cluster). Private keys are written with mode 0600, never through a
symbolic link (veil.net.files), and never printed.

Two ways to make them:

* **Per organisation** (between organisations: the only safe way). Each one runs
  ``veil certs --role partyK`` (or ``--role dealer``) on its own machine: a key that never
  leaves it and a self-signed certificate. Only certificates travel; whoever collects
  them runs ``veil certs --pin *.crt --hosts …`` to write the cluster file, which pins
  each certificate's fingerprint, and every organisation checks its own fingerprint in
  that file before starting (`make_role`, `pin_cluster`).
* **All in one** (``veil certs --parties N``): one person makes every key, the dealer's
  and a CA's. That person can impersonate any party, or keep ``dealer.key`` and be the
  dealer (and so know every mask). Use it only when one person is trusted by all
  parties with everything: tests, one's own machines, ``veil run -n`` on one host.
"""

from __future__ import annotations

import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .cluster import cert_fingerprint, format_fingerprint, write_cluster
from .files import write_private, write_public

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


def _leaf_extensions(builder):
    """What every party's certificate carries: not a CA, signing, TLS client and server."""
    return (builder
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False,
                                         False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                  ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False))


def make_leaf(ca_key, ca_cert, cn: str, days: int = 365):
    """A key and certificate for one role, usable as both TLS client and server."""
    key = ec.generate_private_key(ec.SECP256R1())
    aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key())
    cert = (_leaf_extensions(_builder(_name(cn), ca_cert.subject, key.public_key(), days))
            .add_extension(aki, critical=False)
            .sign(ca_key, hashes.SHA256()))
    return key, cert


def make_self_signed(cn: str, days: int = 365):
    """A key and a self-signed certificate for one role (no CA: the cluster file pins it)."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _leaf_extensions(_builder(_name(cn), _name(cn), key.public_key(), days)) \
        .sign(key, hashes.SHA256())
    return key, cert


def write_key(path: Path, key, force: bool = False) -> None:
    data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    write_private(path, data, force=force)


def write_cert(path: Path, cert, force: bool = False) -> None:
    write_public(path, cert.public_bytes(serialization.Encoding.PEM), force=force)


def _outdir(out) -> Path:
    out = Path(out)
    out.mkdir(mode=0o700, parents=True, exist_ok=True)
    return out


def role_file(rank: int, n: int) -> str:
    """Base file name of a role: party0 … party{n-1}, dealer."""
    return "dealer" if rank == n else f"party{rank}"


def _hosts(hosts: list[str] | None, parties: int) -> list[str]:
    hosts = hosts or ["127.0.0.1"]
    if len(hosts) == 1:
        hosts = hosts * (parties + 1)
    if len(hosts) != parties + 1:
        raise ValueError(f"give one host per party plus one for the dealer ({parties + 1}), "
                         f"or a single host for all; got {len(hosts)}")
    return hosts


def role_cn(role: str) -> str:
    """'party3' -> 'veil party 3', 'dealer' -> 'veil dealer'; refuse anything else."""
    if role == "dealer":
        return "veil dealer"
    if role.startswith("party") and role[5:].isdigit() and len(role) <= 8:
        return f"veil party {int(role[5:])}"
    raise ValueError(f"--role must be partyK (K = 0, 1, …) or dealer, got {role!r}")


def make_role(out: str | Path, role: str, *, days: int = 365,
              force: bool = False) -> tuple[Path, Path, str]:
    """On one organisation's machine: ``role``.key (stays here) and ``role``.crt (send it).

    Returns (key path, certificate path, fingerprint as people compare it).

    >>> key, crt, fp = make_role("/tmp/veil-role", "party1", force=True)
    >>> key.name, crt.name, fp[:7]
    ('party1.key', 'party1.crt', 'sha256:')
    """
    cn = role_cn(role)
    out = _outdir(out)
    key, cert = make_self_signed(cn, days)
    write_key(out / f"{role}.key", key, force)
    write_cert(out / f"{role}.crt", cert, force)
    return out / f"{role}.key", out / f"{role}.crt", format_fingerprint(
        cert_fingerprint(out / f"{role}.crt"))


def _role_of(path: Path) -> str:
    text = path.read_text()
    if "PRIVATE KEY" in text:
        raise ValueError(f"{path} holds a private key: send and pin certificates (.crt) "
                         f"only; the key never leaves its owner")
    try:
        cert = x509.load_pem_x509_certificate(text.encode())
    except ValueError:
        raise ValueError(f"{path} is not a PEM certificate") from None
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    cn = str(cns[0].value) if cns else ""
    if cn == "veil dealer":
        return "dealer"
    if cn.startswith("veil party ") and cn[11:].isdigit():
        return f"party{int(cn[11:])}"
    raise ValueError(f"{path}: its subject CN {cn!r} is not a veil role (make certificates "
                     f"with `veil certs --role partyK|dealer`)")


def pin_cluster(out: str | Path, certs: list[str | Path], *, hosts: list[str] | None = None,
                base_port: int = DEFAULT_BASE_PORT, force: bool = False) -> Path:
    """Write ``out``/cluster.toml pinning the exchanged certificates (copied into ``out``).

    ``certs`` are every party's certificate and the dealer's, in any order: each one's
    role is read from it. Returns the cluster file's path; send the directory (it holds
    no key) to every organisation.
    """
    roles = {}
    for c in map(Path, certs):
        role = _role_of(c)
        if role in roles:
            raise ValueError(f"two certificates for {role}: {roles[role]} and {c}")
        roles[role] = c
    n = len(roles) - 1
    want = {f"party{r}" for r in range(n)} | {"dealer"}
    if set(roles) != want or n < 2:
        raise ValueError(f"need certificates for party0 … party{{N-1}} (N >= 2) and the "
                         f"dealer, got {sorted(roles)}")
    hosts = _hosts(hosts, n)
    out = _outdir(out)
    if (out / "cluster.toml").exists() and not force:
        raise FileExistsError(f"{out / 'cluster.toml'} already exists; pass --force")
    pins = []
    for r in range(n + 1):
        src = roles[role_file(r, n)]
        dst = out / f"{role_file(r, n)}.crt"
        if src.resolve() != dst.resolve():
            write_public(dst, src.read_bytes(), force=force)
        pins.append(cert_fingerprint(dst))
    rows = [(hosts[r], base_port + r, f"party{r}.crt") for r in range(n)]
    return write_cluster(out / "cluster.toml", None, rows, (hosts[-1], "dealer.crt"),
                         pins=pins, force=force)


def make_certs(out: str | Path, parties: int, *, hosts: list[str] | None = None,
               base_port: int = DEFAULT_BASE_PORT, days: int = 365,
               force: bool = False) -> Path:
    """All in one: ca.crt/ca.key, party{i}.crt/.key, dealer.crt/.key and cluster.toml in
    ``out``. Whoever runs this holds every key: use it only where one person is trusted by
    every party (tests, one's own machines); between organisations use `make_role`.

    ``hosts`` gives each party's address (and the dealer's last), default 127.0.0.1 for
    all; party i listens on ``base_port + i``. Returns the cluster file's path.

    >>> make_certs("/tmp/veil-certs", parties=2, force=True).name
    'cluster.toml'
    """
    if parties < 2:
        raise ValueError(f"--parties must be at least 2, got {parties}")
    hosts = _hosts(hosts, parties)
    out = _outdir(out)
    names = ["ca"] + [role_file(r, parties) for r in range(parties + 1)]
    clash = [f"{b}{ext}" for b in names for ext in (".crt", ".key")
             if (out / f"{b}{ext}").exists()] + \
        (["cluster.toml"] if (out / "cluster.toml").exists() else [])
    if clash and not force:
        raise FileExistsError(f"{out} already holds {', '.join(clash[:4])}…; choose another "
                              f"--out or pass --force to overwrite")
    ca_key, ca_cert = make_ca(days)
    write_key(out / "ca.key", ca_key, force)
    write_cert(out / "ca.crt", ca_cert, force)
    for r in range(parties + 1):
        cn = "veil dealer" if r == parties else f"veil party {r}"
        key, cert = make_leaf(ca_key, ca_cert, cn, days)
        write_key(out / f"{role_file(r, parties)}.key", key, force)
        write_cert(out / f"{role_file(r, parties)}.crt", cert, force)
    rows = [(hosts[r], base_port + r, f"party{r}.crt") for r in range(parties)]
    return write_cluster(out / "cluster.toml", "ca.crt", rows, (hosts[-1], "dealer.crt"),
                         force=force)
