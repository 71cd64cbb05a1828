"""Where a party's time goes, per protocol kernel: compute, peers, sending, the dealer.

With ``veil.Config(profile=True)`` every kernel call of the protocol is timed, and the
metered chokepoint (`Communicator`) reports how long each receive waited and each send
took. A kernel's *exclusive* time (nested kernels, e.g. the ``trunc`` inside
``mul_trunc``, are charged to themselves) splits into:

* ``peer_wait_s``: blocked receiving online messages (latency, the peers' compute, and
  on TLS links decryption);
* ``dealer_wait_s``: blocked receiving correlated randomness (the dealer computing or
  sending it; offline phase);
* ``send_s``: handing messages to the transport (serialisation, TLS encryption, or the
  emulated link's queue);
* ``compute_s``: the rest — this party's own ring arithmetic.

Each row also counts this party's traffic: ``bytes_sent`` and ``rounds`` online, and
``dealer_bytes`` (correlated randomness received from the dealer).

Scopes name a larger unit of work than a kernel: the secure-inference interpreter opens
one per graph node (``op aten.gelu.default``), so a row ``op NAME`` holds everything
(time, bytes, rounds) spent inside that ATen op, nested kernels included.

Time outside any kernel (local ops of the tensor layer, Python overhead) is reported
under ``"(outside kernels)"``. `veil.profile()` returns this party's table.

>>> p = Profiler()
>>> with p.kernel("mul"):
...     p.waited(0.0, offline=False)
>>> sorted(p.report()["mul"])  # doctest: +NORMALIZE_WHITESPACE
['bytes_sent', 'calls', 'compute_s', 'dealer_bytes', 'dealer_wait_s', 'peer_wait_s',
 'rounds', 'send_s', 'total_s']
"""

from __future__ import annotations

import functools
import time
from contextlib import contextmanager

OUTSIDE = "(outside kernels)"
SCOPE = "op "                                 # prefix of scope rows in the report
_FIELDS = ("total_s", "peer_wait_s", "dealer_wait_s", "send_s")
_COUNTS = ("bytes_sent", "rounds", "dealer_bytes")


class Profiler:
    """One party's per-kernel time split (see the module docstring)."""

    def __init__(self, clock=time.perf_counter) -> None:
        self._clock = clock
        self._rows: dict[str, dict] = {}
        self._stack: list[list] = []          # [name, start, time spent in nested kernels]
        self._scopes: list[str] = []          # open scope rows (outermost first)

    def _row(self, name: str) -> dict:
        return self._rows.setdefault(name, {"calls": 0, **{f: 0.0 for f in _FIELDS},
                                            **dict.fromkeys(_COUNTS, 0)})

    def _charge(self, field: str, amount) -> None:
        """Add to the innermost kernel's row and to every open scope's row."""
        self._row(self._stack[-1][0] if self._stack else OUTSIDE)[field] += amount
        for s in set(self._scopes):
            self._row(s)[field] += amount

    @contextmanager
    def scope(self, name: str):
        """Charge everything inside the block to the row ``op NAME`` too (inclusive)."""
        row_name = SCOPE + name
        self._scopes.append(row_name)
        t0 = self._clock()
        try:
            yield
        finally:
            self._scopes.pop()
            row = self._row(row_name)
            row["calls"] += 1
            if row_name not in self._scopes:            # recursion: count the time once
                row["total_s"] += self._clock() - t0

    @contextmanager
    def kernel(self, name: str):
        frame = [name, self._clock(), 0.0]
        self._stack.append(frame)
        try:
            yield
        finally:
            self._stack.pop()
            elapsed = self._clock() - frame[1]
            row = self._row(name)
            row["calls"] += 1
            row["total_s"] += elapsed - frame[2]          # exclusive of nested kernels
            if self._stack:
                self._stack[-1][2] += elapsed

    def waited(self, seconds: float, offline: bool, nbytes: int = 0) -> None:
        self._charge("dealer_wait_s" if offline else "peer_wait_s", seconds)
        if offline:
            self._charge("dealer_bytes", nbytes)

    def sent(self, seconds: float, nbytes: int = 0, offline: bool = False) -> None:
        self._charge("send_s", seconds)
        if not offline:
            self._charge("bytes_sent", nbytes)

    def counted_round(self, offline: bool) -> None:
        if not offline:
            self._charge("rounds", 1)

    def report(self) -> dict:
        """kernel -> calls, total_s, compute_s, peer_wait_s, dealer_wait_s, send_s."""
        out = {}
        for name, row in self._rows.items():
            r = dict(row)
            if name.startswith(SCOPE):          # inclusive: waits nested inside it too
                r["compute_s"] = max(0.0, r["total_s"] - r["peer_wait_s"]
                                     - r["dealer_wait_s"] - r["send_s"])
            elif name != OUTSIDE:
                r["compute_s"] = max(0.0, r["total_s"] - r["peer_wait_s"] - r["dealer_wait_s"]
                                     - r["send_s"])
            else:
                r["compute_s"] = 0.0
                r["total_s"] = r["peer_wait_s"] + r["dealer_wait_s"] + r["send_s"]
            out[name] = r
        return out


def instrument(proto, profiler: Profiler) -> None:
    """Time every kernel of ``proto``'s kernel table (this instance only)."""
    for name in proto.kernels:                 # the protocol's declared kernel table
        method = getattr(proto, name, None)
        if callable(method):
            setattr(proto, name, _timed(method, name, profiler))


def _timed(method, name: str, profiler: Profiler):
    @functools.wraps(method)
    def run(*args, **kwargs):
        with profiler.kernel(name):
            return method(*args, **kwargs)
    return run


def format_profile(report: dict) -> str:
    """Markdown tables of `Profiler.report`: kernels (largest total first), then scopes
    (ops of a captured graph, most bytes first) when there are any."""
    def table(first: str, rows) -> str:
        head = (f"| {first} | calls | total (s) | compute (s) | waiting on peers (s) | "
                f"waiting on dealer (s) | sending (s) | bytes sent | rounds | dealer bytes |"
                f"\n|---|---|---|---|---|---|---|---|---|---|\n")
        return head + "\n".join(
            f"| {k} | {r['calls']} | {r['total_s']:.4f} | {r['compute_s']:.4f} | "
            f"{r['peer_wait_s']:.4f} | {r['dealer_wait_s']:.4f} | {r['send_s']:.4f} | "
            f"{r.get('bytes_sent', 0):,} | {r.get('rounds', 0)} | {r.get('dealer_bytes', 0):,} |"
            for k, r in rows) + "\n"
    kernels = sorted(((k, r) for k, r in report.items() if not k.startswith(SCOPE)),
                     key=lambda kv: -kv[1]["total_s"])
    scopes = sorted(((k[len(SCOPE):], r) for k, r in report.items() if k.startswith(SCOPE)),
                    key=lambda kv: (-kv[1].get("bytes_sent", 0), -kv[1]["total_s"]))
    out = table("kernel", kernels)
    return out + ("\n" + table("op (inclusive)", scopes) if scopes else "")


__all__ = ["Profiler", "instrument", "format_profile", "OUTSIDE", "SCOPE"]
