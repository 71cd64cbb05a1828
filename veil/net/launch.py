"""`veil.run` under the `veil run` launcher: this process runs one party, over TCP + TLS.

The launcher (veil/cli.py) sets, per process:

========================  ==========================================================
``VEIL_PARTY``            this process's rank (0..n-1) or ``dealer``
``VEIL_CLUSTER``          path of the cluster file (veil/net/cluster.py)
``VEIL_KEY``              this party's private key (default: its cert, ``.key``)
``VEIL_INSECURE=1``       plain TCP, only from the loud ``--insecure`` flag
``VEIL_BULK=tls``         TLS for the whole connection (``--tls-only``); by default the
                          links switch to AES-GCM records after the TLS handshake
                          (veil.net.aead)
``VEIL_INSECURE_SEED=1``  allow ``veil.run(seed=...)``, only from ``--insecure-seed``
``VEIL_INSECURE_PROTOCOL=1``  allow a protocol named ``insecure_*``, only from
                          ``--insecure-protocol``
``VEIL_MAX_ELEMENTS``     overrides ``Config.max_elements`` (largest tensor a peer may
                          announce or request)
``VEIL_NETWORK``          emulated links for every process (``veil run --network``)
``VEIL_PLAN_DIR``         this party's request-plan store (``veil run --plan-dir``;
                          ``Config.plan_dir``): ``<dir>/party<rank>``
``VEIL_CONNECT_TIMEOUT``  seconds to wait for all peers to come up (default 120)
``VEIL_TIMEOUT``          overrides ``Config.timeout`` (seconds a party waits for a peer)
``VEIL_LISTEN_FD``        an already bound listening socket (``veil run -n`` only)
========================  ==========================================================

Every `veil.run` call is one *run* over the same connections (made on the first call):
a run-start barrier checks all parties agree on run number, party count, protocol and
every public `Config` field that changes the arithmetic (all but the local ``timeout``
and ``max_elements``), and a run-end barrier makes `veil.run` return only once every
party has finished, as the in-process mode does. Neither barrier is metered, so
`veil.stats()` is the same in both modes.

What peers learn of a failure here: the error's class and which party failed, never its
message (which may hold private values or local paths); the full text is printed by
this party only (see veil.net.abort).
"""

from __future__ import annotations

import atexit
import dataclasses
import json
import os
import socket
import sys
import traceback
from pathlib import Path
from typing import Any, Callable

from ..comm import Communicator
from ..config import Config
from ..context import activate
from ..errors import PartyError, ProtocolUsageError
from ..runtime import setup_party
from .abort import error_class, report_of
from .cluster import Cluster, load_cluster
from .connect import Connector, clean, listen
from .hub import Hub
from .link import DATA, END, START, out_of_step
from .memory import keep_freed_memory
from .tls import Identity, warn_insecure

# Config fields that are each party's own business (local resource bounds), not compared.
LOCAL_FIELDS = ("timeout", "max_elements", "profile")
# Config fields compared only as set or not (a local path: each party has its own).
SET_OR_NOT = ("plan_dir",)
SEED_REFUSED = (
    "veil.run(seed=...) under `veil run`: a fixed seed derives every mask and every "
    "pairwise and dealer key, so any party that knows the seed (it is in the script) can "
    "unmask every other party's inputs. Drop seed= (fresh randomness from the OS), or pass "
    "--insecure-seed to `veil run` for a reproducible debugging run on data nobody minds "
    "disclosing.")
SEED_WARNING = (
    "WARNING: veil --insecure-seed: veil.run(seed=...) is honoured, so every mask and key "
    "follows from the seed; whoever knows it can read every party's inputs. Debugging only.")
PROTOCOL_REFUSED = (
    "protocol={name!r} under `veil run`: it sends every input IN THE CLEAR to every party "
    "(it is the executable specification, not a secure protocol). Use protocol='semi2k', or "
    "pass --insecure-protocol to `veil run` to run it anyway on data nobody minds "
    "disclosing.")
PROTOCOL_WARNING = ("WARNING: veil --insecure-protocol: a protocol named insecure_* may run; "
                    "it shows every input to every party.")

DEFAULT_CONNECT_TIMEOUT = 120.0
DEALER = "dealer"


def env_rank(n: int) -> int:
    raw = os.environ.get("VEIL_PARTY", "")
    if raw == DEALER:
        return n
    if not raw.isdigit() or int(raw) >= n:
        raise ProtocolUsageError(f"VEIL_PARTY={raw!r}: expected a rank 0..{n - 1} or "
                                 f"'{DEALER}' (start parties with `veil run`)")
    return int(raw)


def env_cluster() -> Cluster:
    path = os.environ.get("VEIL_CLUSTER")
    if not path:
        raise ProtocolUsageError("VEIL_PARTY is set but VEIL_CLUSTER is not: start parties "
                                 "with `veil run -n N script.py` or `veil run --cluster FILE "
                                 "--party P script.py`")
    return load_cluster(path)


class Node:
    """This process's place in the cluster: its rank, its links, how many runs so far."""

    def __init__(self, cluster: Cluster, rank: int, timeout: float) -> None:
        self.cluster, self.rank, self.n = cluster, rank, cluster.n
        self.name = cluster.entry(rank).name
        self.runs = 0
        self.stopped: PartyError | None = None
        keep_freed_memory()              # one party per process: reuse, not page faults
        insecure = os.environ.get("VEIL_INSECURE") == "1"
        if insecure:
            warn_insecure()
            ident = None
        else:
            cert = cluster.entry(rank).cert
            key = Path(os.environ.get("VEIL_KEY") or cert.with_suffix(".key"))
            ident = Identity(cert, key, cluster.trust_pem())
        deadline = float(os.environ.get("VEIL_CONNECT_TIMEOUT") or DEFAULT_CONNECT_TIMEOUT)
        listener = None
        if rank < self.n:
            fd = os.environ.get("VEIL_LISTEN_FD")
            listener = socket.socket(fileno=int(fd)) if fd else listen(cluster, rank)
        # A launch for a dealer-free protocol (`veil run --protocol rep3`) started none.
        peers = set(range(self.n)) - {rank} if os.environ.get("VEIL_NO_DEALER") == "1" else None
        self.hub: Hub = Connector(cluster, rank, ident, deadline, timeout, peers).run(listener)
        self._ranks = {v: k for k, v in cluster.names().items()}
        atexit.register(self.goodbye)

    def goodbye(self) -> None:
        if self.stopped is None and not self.hub.closing:
            self.hub.goodbye()

    def abort(self, exc: BaseException) -> None:
        """Tell every peer, once, who failed and how (class name and reason code: never
        the error's text, see veil.net.abort)."""
        if self.stopped is None:
            self.stopped = exc if isinstance(exc, PartyError) else \
                PartyError(self.name, f"failed: {error_class(exc)}")
            self.hub.abort(*report_of(exc, self.rank, self._ranks))

    def check_usable(self) -> None:
        if self.stopped is not None:
            raise PartyError(self.name, f"cannot start another run: an earlier run failed "
                                        f"({self.stopped})")

    # -- run barriers (transport control frames: not metered) -----------------------------
    def start_run(self, header: dict, timeout: float) -> None:
        """Check every party starts the same run (``header``); tell the dealer ``timeout``."""
        self.hub.timeout = timeout
        body = json.dumps(dict(header, timeout=timeout)).encode()
        for link in self.hub.links.values():
            self.hub.write(link, START, body)
        for j in range(self.n):
            if j != self.rank:
                got = self.expect(j, START, "the start of a run", timeout)
                if any(got.get(k) != v for k, v in header.items()):
                    raise PartyError(self.hub.links[j].name, _mismatch(got, header))

    def end_run(self, timeout: float) -> None:
        for link in self.hub.links.values():
            self.hub.write(link, END, b"")
        for j in range(self.n):
            if j != self.rank:
                self.expect(j, END, "the end of the run", timeout)

    def expect(self, j: int, kind: int, what: str, timeout: float | None):
        link = self.hub.links[j]
        got, body = self.hub.read(link, timeout)
        if got != kind:
            raise out_of_step(link, got, what) if got != DATA else PartyError(
                link.name, f"is still sending data at {what}: parties out of step (do all "
                           f"parties run the same program?)")
        return parse_control(body, link.name, what)


def parse_control(body, sender: str, what: str) -> dict | None:
    """A control frame's JSON object; one that does not parse is the sender's fault."""
    if not body:
        return None
    try:
        obj = json.loads(bytes(body).decode())
    except (ValueError, RecursionError):
        obj = None
    if not isinstance(obj, dict):
        err = PartyError(sender, f"sent a malformed message at {what} (not a JSON object)")
        err.reason = "step"
        raise err
    return obj


def public_config(config: Config) -> dict:
    """The Config fields every party must agree on (all but the local bounds), as they
    look after a JSON round trip (a tuple arrives as a list), so equal means equal."""
    fields = {k: v for k, v in dataclasses.asdict(config).items() if k not in LOCAL_FIELDS}
    fields.update({k: "set" for k in SET_OR_NOT if fields.get(k) is not None})
    return json.loads(json.dumps(fields, default=str))


def _mismatch(got: dict, mine: dict) -> str:
    diffs = []
    for k, v in mine.items():
        if k == "config" and isinstance(got.get(k), dict):
            diffs += [f"Config.{f}={clean(repr(got[k].get(f)), 40)} (here {w!r})"
                      for f, w in v.items() if got[k].get(f) != w]
            diffs += [f"Config.{clean(f, 40)} (unknown here)" for f in got[k] if f not in v]
        elif got.get(k) != v:
            diffs.append(f"{k}={clean(repr(got.get(k)), 40)} (here {v!r})")
    return (f"started a different run: {', '.join(diffs)}; all parties must make the same "
            f"veil.run calls with the same veil.Config")


_NODE: Node | None = None   # one per process: under `veil run` the process *is* one party


def node(timeout: float) -> Node:
    """This process's node, connecting to every peer on first use."""
    global _NODE
    if _NODE is None:
        cluster = env_cluster()
        _NODE = Node(cluster, env_rank(cluster.n), timeout)
    return _NODE


def check_insecure_choices(seed, protocol: str) -> None:
    """Refuse, under real parties, what only makes sense in one process — unless this
    party's own `veil run` was given the loud flag for it."""
    if seed is not None:
        if os.environ.get("VEIL_INSECURE_SEED") != "1":
            raise ProtocolUsageError(SEED_REFUSED)
        _warn_once("seed", SEED_WARNING)
    if protocol.startswith("insecure"):
        if os.environ.get("VEIL_INSECURE_PROTOCOL") != "1":
            raise ProtocolUsageError(PROTOCOL_REFUSED.format(name=protocol))
        _warn_once("protocol", PROTOCOL_WARNING)


_WARNED: set[str] = set()


def _warn_once(key: str, text: str) -> None:
    if key not in _WARNED:
        _WARNED.add(key)
        print(text, file=sys.stderr, flush=True)


def run_networked(fn: Callable, args: tuple, kwargs: dict, *, parties: int, protocol: str,
                  seed: int | None, config: Config) -> list[Any]:
    """Run ``fn`` as this process's party; return a list of length ``parties`` holding
    this party's result at its rank and ``None`` at every other rank.

    In-process, ``veil.run`` returns every party's result; here each process only has its
    own, at the same place, so a party's slot means the same thing in both modes (the
    process's rank is in ``VEIL_PARTY``). Code that reads another party's slot gets
    ``None``: reveal the value to that party (``x.reveal(to=p)``) and use it there.

    >>> # under `veil run -n 2 script.py`, in party 1:
    >>> veil.run(job, parties=2, seed=0)             # doctest: +SKIP
    [None, tensor([ 3., -1.])]
    """
    if os.environ.get("VEIL_PARTY") == DEALER:
        raise ProtocolUsageError("the dealer does not run user scripts: start it with "
                                 "`veil run --cluster FILE --party dealer` (no script)")
    cluster = env_cluster()
    from ..protocols import get_protocol
    if os.environ.get("VEIL_NO_DEALER") == "1" and get_protocol(protocol).needs_dealer:
        raise ProtocolUsageError(
            f"veil.run(protocol={protocol!r}) needs a dealer, but this launch started none "
            f"(`veil run --protocol {os.environ.get('VEIL_PROTOCOL')}`); pass that protocol "
            f"to veil.run or launch without --protocol")
    if parties != cluster.n:
        raise ProtocolUsageError(
            f"veil.run(parties={parties}) but this cluster has {cluster.n} parties "
            f"({cluster.path.name}); start it with `veil run -n {parties}` or change "
            f"parties= to {cluster.n}")
    if os.environ.get("VEIL_TIMEOUT"):
        config = dataclasses.replace(config, timeout=float(os.environ["VEIL_TIMEOUT"]))
    if os.environ.get("VEIL_MAX_ELEMENTS"):
        config = dataclasses.replace(config, max_elements=int(os.environ["VEIL_MAX_ELEMENTS"]))
    if os.environ.get("VEIL_NETWORK"):                 # veil run --network: every process
        config = dataclasses.replace(config, network=os.environ["VEIL_NETWORK"])
    if os.environ.get("VEIL_PLAN_DIR"):                # veil run --plan-dir
        config = dataclasses.replace(config, plan_dir=os.environ["VEIL_PLAN_DIR"])
    me = node(config.timeout)
    me.check_usable()
    me.runs += 1
    me.hub.set_limits(config.max_elements)
    results: list[Any] = [None] * parties
    try:
        check_insecure_choices(seed, protocol)      # after connecting: peers hear of it
        me.start_run({"run": me.runs, "parties": parties, "protocol": protocol,
                      "config": public_config(config)}, config.timeout)
        comm = Communicator(me.rank, me.n, dict(me.hub.links), config.timeout,
                            config.network_model())
        ctx = setup_party(me.rank, me.n, comm, protocol, config, seed)
        activate(ctx)
        try:
            results[me.rank] = fn(*args, **kwargs)
            ctx.provider.close()
        finally:
            activate(None)
        me.end_run(config.timeout)
    except PartyError as exc:            # a peer failed, stopped answering, or aborted
        me.abort(exc)
        raise
    except BaseException as exc:          # this party's own failure (KeyboardInterrupt too)
        me.abort(exc)                     # peers learn its class only, never its text
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        raise PartyError(me.name, "failed: " + "".join(
            traceback.format_exception_only(type(exc), exc)).strip()) from exc
    return results

