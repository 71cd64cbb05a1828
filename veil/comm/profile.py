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

Time outside any kernel (local ops of the tensor layer, Python overhead) is reported
under ``"(outside kernels)"``. `veil.profile()` returns this party's table.

>>> p = Profiler()
>>> with p.kernel("mul"):
...     p.waited(0.0, offline=False)
>>> sorted(p.report()["mul"])
['calls', 'compute_s', 'dealer_wait_s', 'peer_wait_s', 'send_s', 'total_s']
"""

from __future__ import annotations

import functools
import time
from contextlib import contextmanager

OUTSIDE = "(outside kernels)"
_FIELDS = ("total_s", "peer_wait_s", "dealer_wait_s", "send_s")


class Profiler:
    """One party's per-kernel time split (see the module docstring)."""

    def __init__(self, clock=time.perf_counter) -> None:
        self._clock = clock
        self._rows: dict[str, dict] = {}
        self._stack: list[list] = []          # [name, start, time spent in nested kernels]

    def _row(self, name: str) -> dict:
        return self._rows.setdefault(name, {"calls": 0, **{f: 0.0 for f in _FIELDS}})

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

    def waited(self, seconds: float, offline: bool) -> None:
        name = self._stack[-1][0] if self._stack else OUTSIDE
        self._row(name)["dealer_wait_s" if offline else "peer_wait_s"] += seconds

    def sent(self, seconds: float) -> None:
        self._row(self._stack[-1][0] if self._stack else OUTSIDE)["send_s"] += seconds

    def report(self) -> dict:
        """kernel -> calls, total_s, compute_s, peer_wait_s, dealer_wait_s, send_s."""
        out = {}
        for name, row in self._rows.items():
            r = dict(row)
            if name != OUTSIDE:
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
    """A markdown table of `Profiler.report`, largest total first."""
    head = ("| kernel | calls | total (s) | compute (s) | waiting on peers (s) | "
            "waiting on dealer (s) | sending (s) |\n|---|---|---|---|---|---|---|\n")
    rows = sorted(report.items(), key=lambda kv: -kv[1]["total_s"])
    return head + "\n".join(
        f"| {k} | {r['calls']} | {r['total_s']:.4f} | {r['compute_s']:.4f} | "
        f"{r['peer_wait_s']:.4f} | {r['dealer_wait_s']:.4f} | {r['send_s']:.4f} |"
        for k, r in rows) + "\n"


__all__ = ["Profiler", "instrument", "format_profile", "OUTSIDE"]
