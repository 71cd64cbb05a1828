"""RR22 PSI (Raghuraman-Rindal, CCS 2022: VOLE-based OPRF + OKVS) via SecretFlow's `spu.libpsi`.

Why a subprocess: `spu` 0.9.5 (the only release on PyPI; SecretFlow publishes its PSI
library nowhere else there) pins Python < 3.12 and numpy < 2, which veil's own
environment cannot hold. `make test` (and `make psi-env`) build it into ``.venv-psi``
from ``requirements-psi.txt``; another interpreter can be named with ``VEIL_PSI_PYTHON``.
Each key holder starts one `rr22_worker.py` process; the two talk to each other directly.

Transport: libpsi speaks brpc over its own TCP connection (it cannot be handed veil's
channel). Parties on one host (``veil.run``, ``veil run -n N``) use 127.0.0.1, unencrypted
but never leaving the host. Parties on different hosts (``veil run --cluster``) use TLS
with their cluster certificates: each side presents its party certificate and verifies
the peer's against the cluster's trust list (every listed certificate, as veil's own
links do; brpc does not pin the exact certificate per rank, veil's links do). Its port
is picked at run time on the party's listen address and told to the peer over veil's
link, so a firewall must let the two parties reach each other on ephemeral ports.

Threat model: two semi-honest parties (RR22's semi-honest variant, as libpsi runs it).
Disclosed to both: the other's number of distinct keys and which of their own keys are
in the intersection — the same as the ECDH fallback. Keys go in as 128-bit BLAKE2b
digests of their canonical bytes (distinct keys collide with probability < n²/2^129).

What comes back from the subprocess is checked before use: positions in range and
distinct, the count equal to the peer's, and the ordered intersection identical at both
sides (a SHA-256 over it is exchanged; both already know the intersection).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from ..errors import PartyError, ProtocolUsageError

WORKER = Path(__file__).with_name("rr22_worker.py")
DIGEST = 16
# The benchmark's byte counter (veil/bench/psi_bench.py): maps the peer's "host:port" to
# an address that relays to it. None outside the benchmark.
PEER_ADDRESS_HOOK = None


class PSIBackendError(ProtocolUsageError):
    """The RR22 subprocess could not run or failed; the message says what to change."""


def python_path() -> Path | None:
    """The interpreter of the PSI environment, or None if there is none."""
    env = os.environ.get("VEIL_PSI_PYTHON")
    if env:
        return Path(env)
    root = Path(__file__).resolve().parents[2]
    p = root / ".venv-psi" / "bin" / "python"
    return p if p.exists() else None


@functools.lru_cache(maxsize=None)
def _probe(python: str) -> bool:
    try:
        r = subprocess.run([python, str(WORKER), "--probe"],
                           capture_output=True, timeout=120, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0


def available() -> bool:
    """Whether RR22 can run here (the PSI environment exists and imports `spu.libpsi`)."""
    p = python_path()
    return p is not None and _probe(str(p))


def digests(keys) -> np.ndarray:
    """Each canonical key's 128-bit BLAKE2b digest, as fixed-width bytes ('S16')."""
    out = np.empty(len(keys), dtype=f"S{DIGEST}")
    b2 = hashlib.blake2b
    for i, k in enumerate(keys):
        out[i] = b2(k, digest_size=DIGEST, person=b"veil-psi-rr22").digest()
    return out


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _cluster():
    """The cluster file of a ``veil run`` party, or None in-process."""
    if os.environ.get("VEIL_PARTY") and os.environ.get("VEIL_CLUSTER"):
        from ..net.launch import env_cluster
        return env_cluster()
    return None


def _transport(comm, peer: int, folder: Path) -> tuple[str, dict | None, str]:
    """(the peer's host, TLS files or None, this side's listen host)."""
    cluster = _cluster()
    if cluster is None:
        return "127.0.0.1", None, "127.0.0.1"
    from ..net.cluster import LOOPBACK
    me, them = cluster.entry(comm.rank), cluster.entry(peer)
    if me.host in LOOPBACK and them.host in LOOPBACK:
        return them.host, None, me.listen_host
    trust = folder / "trust.pem"
    trust.write_text(cluster.trust_pem())
    key = Path(os.environ.get("VEIL_KEY") or me.cert.with_suffix(".key")).resolve()
    return them.host, {"cert": str(me.cert.resolve()), "key": str(key),
                       "ca": str(trust)}, me.listen_host


def rr22_intersect(comm, peer: int, keys, first: bool, timings: dict | None = None
                   ) -> np.ndarray:
    """Positions in ``keys`` (distinct) of the intersection with the peer's, common order.

    The common order is ascending key digest, the same at both sides.
    """
    name = comm.peer_name(peer)
    python = python_path()
    if python is None or not _probe(str(python)):
        raise PSIBackendError("protocol='rr22' needs the PSI environment: run `make psi-env` "
                              "(builds .venv-psi from requirements-psi.txt) or set "
                              "VEIL_PSI_PYTHON to a Python with spu==0.9.5; or pass "
                              "protocol='ecdh'")
    t0 = time.perf_counter()
    dig = digests(keys)
    folder = Path(tempfile.mkdtemp(prefix="veil-psi-"))          # mode 0700
    try:
        peer_host, tls, my_host = _transport(comm, peer, folder)
        _write_keys(folder / "keys.csv", dig)
        port = _free_port(my_host)
        # Discloses this party's PSI port to the peer (it must connect there). Sent once
        # the input is written, so both workers start together.
        comm.count_round()
        comm.send_obj(peer, port)
        peer_port = comm.recv_obj(peer)
        if not isinstance(peer_port, int) or isinstance(peer_port, bool) or \
                not 0 < peer_port < 65536:
            raise PartyError(name, "sent a malformed PSI port")
        addrs = [f"{my_host}:{port}", f"{peer_host}:{peer_port}"]
        if PEER_ADDRESS_HOOK is not None:
            addrs[1] = PEER_ADDRESS_HOOK(addrs[1])
        if not first:
            addrs.reverse()
        cfg = {"rank": 0 if first else 1, "addrs": addrs, "tls": tls,
               "recv_timeout_ms": max(120_000, len(keys) // 20),   # generous: loaded hosts
               "connect_retries": 100}
        _write_private(folder / "config.json", json.dumps(cfg).encode())
        t_prep = time.perf_counter()
        ok, why = _run_worker(python, folder, comm, deadline_s(len(keys)))
        t_run = time.perf_counter()
        n_common = -1
        idx = None
        if ok:
            idx, n_common, why = _read_result(folder, len(keys))
            ok = idx is not None
        # Both sides say how it went and how many keys they found, before using anything.
        comm.count_round()
        comm.send_obj(peer, n_common)
        if not ok:
            raise PSIBackendError(f"the RR22 PSI subprocess failed: {why}")
        peer_n = comm.recv_obj(peer)
        if not isinstance(peer_n, int) or isinstance(peer_n, bool):
            raise PartyError(name, "sent a malformed PSI result count")
        if peer_n < 0:
            raise PartyError(name, "reports that its RR22 PSI subprocess failed")
        if peer_n != n_common:
            raise PartyError(name, f"found {peer_n} common keys where this party found "
                                   f"{n_common} (the PSI runs disagree)")
        idx = idx[_digest_order(dig[idx])]
        h = hashlib.sha256(dig[idx].tobytes()).digest()
        comm.count_round()
        comm.send_bytes(peer, h)
        if bytes(comm.recv_bytes(peer)) != h:
            raise PartyError(name, "has a different intersection (the PSI runs disagree)")
        if timings is not None:
            timings.update(prepare=t_prep - t0, worker=t_run - t_prep,
                           check=time.perf_counter() - t_run)
        return idx
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _digest_order(d: np.ndarray) -> np.ndarray:
    """Indices sorting 16-byte digests ascending (as two big-endian words: a numpy string
    sort of 5·10^6 digests takes seconds)."""
    w = np.frombuffer(d.tobytes(), dtype=">u8").reshape(-1, 2)
    return np.lexsort((w[:, 1], w[:, 0]))


_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def key_lines(dig: np.ndarray, start: int = 0) -> bytes:
    """CSV rows ``<32 hex digits>,<position>\n`` for digests numbered from ``start``,
    built with numpy (a Python f-string per key costs ~1 µs: 10 s at 10^7 keys)."""
    n = len(dig)
    raw = np.frombuffer(dig.tobytes(), dtype=np.uint8).reshape(n, DIGEST)
    width = max(1, len(str(start + n - 1)) if n else 1)
    rows = np.empty((n, 2 * DIGEST + width + 2), dtype=np.uint8)
    rows[:, 0:2 * DIGEST:2] = _HEX[raw >> 4]
    rows[:, 1:2 * DIGEST:2] = _HEX[raw & 15]
    rows[:, 2 * DIGEST] = ord(",")
    pos = np.arange(start, start + n, dtype=np.int64)
    for k in range(width):                       # zero-padded decimal, most significant first
        rows[:, 2 * DIGEST + 1 + k] = ord("0") + (pos // 10 ** (width - 1 - k)) % 10
    rows[:, -1] = ord("\n")
    return rows.tobytes()


def _write_keys(path: Path, dig: np.ndarray, block: int = 1 << 20) -> None:
    """``k,i`` rows (hex digest, position), written in blocks to bound memory."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(b"k,i\n")
        for lo in range(0, len(dig), block):
            f.write(key_lines(dig[lo:lo + block], lo))


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _abort_signal(comm):
    """The run's shared stop signal, where there is one (in-process runs: on their
    channels); networked runs rely on the worker's own link timeouts instead."""
    for ch in comm.channels.values():
        abort = getattr(ch, "_abort", None)
        if abort is not None:
            return abort
    return None


def deadline_s(n: int) -> float:
    """How long a worker may run before it is stopped: generous (10^7 keys: ~38 min; the
    PSI takes ~1.5 min unloaded, more on a loaded host), since it only guards against a
    hang such as a peer that never completes the TLS handshake. ``VEIL_PSI_TIMEOUT``
    (seconds) overrides it."""
    env = os.environ.get("VEIL_PSI_TIMEOUT")
    return float(env) if env else 300.0 + 200e-6 * n


def _run_worker(python: Path, folder: Path, comm, deadline: float) -> tuple[bool, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VEIL_")}
    env["TMPDIR"] = str(folder)                       # libpsi's scratch files stay private
    log = folder / "worker.log"
    abort = _abort_signal(comm)
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(python), str(WORKER), str(folder)], cwd=folder, env=env,
                                stdin=subprocess.DEVNULL, stdout=out, stderr=out)
        stop = time.monotonic() + deadline
        try:
            while True:
                try:
                    rc = proc.wait(timeout=0.2)
                    break
                except subprocess.TimeoutExpired:
                    if time.monotonic() > stop:
                        proc.kill()
                        proc.wait()
                        return False, f"no result after {deadline:g} s" + \
                            _detail(log, " (last error: {})")
                    if abort is not None and abort.is_set():
                        proc.kill()
                        proc.wait()
                        abort.check()                # raises: names the party that failed
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    if rc == 0:
        return True, ""
    return False, _last_error(log, rc)


def _detail(log: Path, fmt: str) -> str:
    """The worker's last error line (libpsi / brpc: paths, addresses, TLS reasons; never
    key material, which the worker only holds as digests)."""
    text = log.read_bytes().decode("utf-8", "replace").splitlines()
    errs = [ln for ln in text if "Error" in ln or "error msg" in ln or "Fail to" in ln]
    return fmt.format(errs[-1][-300:].strip()) if errs else ""


def _last_error(log: Path, rc: int) -> str:
    how = f"killed by signal {-rc}" if rc < 0 else f"exit status {rc}"
    return how + _detail(log, ": {}")


def _read_result(folder: Path, n: int):
    try:
        idx = np.fromfile(folder / "index.bin", dtype="<i8")
        report = json.loads((folder / "report.json").read_text())
    except (OSError, ValueError) as exc:
        return None, -1, f"unreadable result ({type(exc).__name__})"
    if not isinstance(report, dict) or report.get("intersection") != len(idx):
        return None, -1, "result count differs from its report"
    if len(idx) and (idx.min() < 0 or idx.max() >= n):
        return None, -1, "result has positions out of range"
    if len(np.unique(idx)) != len(idx):
        return None, -1, "result has repeated positions"
    return idx.astype(np.int64), len(idx), ""


__all__ = ["rr22_intersect", "available", "python_path", "digests", "PSIBackendError"]
