"""`veil run -n N`: N party processes and a dealer process on this host, supervised.

Each run gets throw-away keys and self-signed certificates in a private temporary directory
(mode 0700, deleted at the end; made by this launcher, which runs every party anyway, so one
maker holding every key gives nothing away here) and loopback ports the launcher binds
itself and hands to the parties, so no other program can take a port between choosing and
listening. Output lines are streamed prefixed with the process's role; the first process to
fail makes the launcher wait a short grace period (so the others can print their own error
naming it), then stop the rest, and exit non-zero.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from .loopback import local_cluster

GRACE_S = 5.0            # after a failure: time the others get to report before being stopped
DEALER_EXIT_S = 5.0      # after every party exited 0: time the dealer gets to notice
POLL_S = 0.05


class _Child:
    def __init__(self, name: str, argv: list[str], env: dict, pass_fds=()) -> None:
        self.name = name
        self.proc = subprocess.Popen(argv, env=env, pass_fds=pass_fds, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        self.pumps = [threading.Thread(target=_pump, args=(s, out, f"[{name}] "), daemon=True)
                      for s, out in ((self.proc.stdout, sys.stdout),
                                     (self.proc.stderr, sys.stderr))]
        self.exited_at: float | None = None
        for t in self.pumps:
            t.start()
        threading.Thread(target=self._watch, daemon=True).start()

    def _watch(self) -> None:
        self.proc.wait()
        self.exited_at = time.monotonic()

    def stop(self, sig) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(sig)
            except ProcessLookupError:
                pass


_out_lock = threading.Lock()


def _pump(stream, out, prefix: str) -> None:
    for raw in iter(stream.readline, b""):
        line = raw.decode(errors="replace").rstrip("\n")
        with _out_lock:
            out.write(prefix + line + "\n")
            out.flush()
    stream.close()


def _exit_text(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def run_local(n: int, target: list[str], *, insecure: bool = False,
              connect_timeout: float | None = None, timeout: float | None = None,
              grace: float = GRACE_S, extra_env: dict | None = None,
              protocol: str | None = None) -> int:
    """Start N parties running ``target`` (script and args, or -m module and args) and a
    dealer if the protocol needs one (``protocol``: the default of the scripts' veil.run;
    rep3 starts none); return 0 if every party succeeded, else non-zero."""
    from ..protocols import get_protocol
    dealer = get_protocol(protocol or "semi2k").needs_dealer
    tmp = Path(tempfile.mkdtemp(prefix="veil-run-"))        # 0700: it holds private keys
    listeners: list[socket.socket] = []
    children: list[_Child] = []
    try:
        cluster, listeners = local_cluster(tmp, n)
        # Only this launcher's flags set VEIL_* (no plain TCP from a stray VEIL_INSECURE).
        base = {k: v for k, v in os.environ.items() if not k.startswith("VEIL_")}
        base.update(VEIL_CLUSTER=str(cluster.path), PYTHONUNBUFFERED="1")
        # N+1 processes share this host: torch's default (a thread per core, spinning while
        # idle) would oversubscribe it and starve the dealer. Users may still set it.
        base.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // (n + 1))))
        if insecure:
            base["VEIL_INSECURE"] = "1"
        if protocol is not None:
            base["VEIL_PROTOCOL"] = protocol
        if not dealer:
            base["VEIL_NO_DEALER"] = "1"
        if connect_timeout is not None:
            base["VEIL_CONNECT_TIMEOUT"] = str(connect_timeout)
        if timeout is not None:
            base["VEIL_TIMEOUT"] = str(timeout)
        base.update({k: v for k, v in (extra_env or {}).items() if k.startswith("VEIL_")})
        py = [sys.executable, "-u"]
        for r, s in enumerate(listeners):
            s.set_inheritable(True)
            env = dict(base, VEIL_PARTY=str(r), VEIL_KEY=str(tmp / f"party{r}.key"),
                       VEIL_LISTEN_FD=str(s.fileno()))
            children.append(_Child(f"party {r}", py + target, env, (s.fileno(),)))
        if dealer:
            env = dict(base, VEIL_PARTY="dealer", VEIL_KEY=str(tmp / "dealer.key"))
            children.append(_Child("dealer", py + ["-m", "veil.net.dealer"], env))
        # Only the parties may hold their ports now: if one dies, its peers must see it.
        for s in listeners:
            s.close()
        return _supervise(children, n, grace)
    except KeyboardInterrupt:
        _stop_all(children)
        return 130
    finally:
        for s in listeners:
            s.close()
        _stop_all(children)
        shutil.rmtree(tmp, ignore_errors=True)


def _supervise(children: list[_Child], n: int, grace: float) -> int:
    parties, dealer = children[:n], children[n:]               # no dealer for rep3
    stop_at = None
    while True:
        failed = _failures(children)
        if failed and stop_at is None:
            stop_at = time.monotonic() + grace
        if all(c.proc.poll() is not None for c in parties):
            # The dealer only serves parties: it exits on their goodbyes, or is told to.
            _wait(dealer, 0.5 if failed else DEALER_EXIT_S)
            break
        if stop_at is not None and time.monotonic() > stop_at:
            break
        time.sleep(POLL_S)
    running = [c for c in children if c.proc.poll() is None]
    _finish(children)
    if all(c.proc.returncode == 0 for c in parties):
        return 0
    failed = [c for c in _failures(children) if c not in running]
    parts = [f"{c.name} failed ({_exit_text(c.proc.returncode)})" for c in failed]
    if running:
        parts.append(f"stopped {', '.join(c.name for c in running)}")
    with _out_lock:
        print("veil run: " + "; ".join(parts), file=sys.stderr, flush=True)
    code = failed[0].proc.returncode if failed else 1
    return code if code > 0 else 1


def _failures(children: list[_Child]) -> list[_Child]:
    """Children that exited non-zero, earliest first (the first is the likely cause)."""
    bad = [c for c in children if c.exited_at is not None and c.proc.returncode != 0]
    return sorted(bad, key=lambda c: c.exited_at)


def _finish(children: list[_Child]) -> None:
    _stop_all(children)
    for c in children:
        for t in c.pumps:
            t.join(timeout=2.0)


def _wait(children: list[_Child], seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end and any(c.proc.poll() is None for c in children):
        time.sleep(POLL_S)


def _stop_all(children: list[_Child]) -> None:
    for c in children:
        c.stop(signal.SIGTERM)
    _wait(children, 2.0)
    for c in children:
        c.stop(signal.SIGKILL)
    for c in children:
        try:
            c.proc.wait(timeout=2.0)
        except subprocess.TimeoutExpired:
            pass
