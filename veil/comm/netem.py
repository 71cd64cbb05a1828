"""Network emulation at the chokepoint: link latency and bandwidth, per direction.

Loopback hides what parties between two companies pay: a round trip of 1–40 ms and
0.1–1 Gbit/s. `Network` delays every message a party sends as a link would: the message
occupies the sender→peer link for ``bytes / bandwidth`` (after whatever it already
carries), then arrives ``latency`` later. The sender does not wait (as with a socket's
send buffer); a per-peer *delay line* thread hands the message to the real channel at its
arrival time, in order. Because it sits in `Communicator`, it applies to every transport
(in-process threads and TLS processes alike) and leaves byte and round counts unchanged.

Presets: ``"lan"`` = 0.5 ms / 1 Gbit/s, ``"wan"`` = 40 ms / 100 Mbit/s; custom values as
``"10ms/200mbit"``. `predict` is the matching cost model.

>>> Network.parse("wan")
Network(latency_s=0.04, bandwidth_bps=100000000.0)
>>> Network.parse("2.5ms/10gbit").bandwidth_bps
10000000000.0
>>> round(Network.parse("lan").transfer_s(125_000), 6)    # 1 Mbit at 1 Gbit/s
0.001
"""

from __future__ import annotations

import heapq
import re
import threading
import time
from dataclasses import dataclass

from ..errors import ProtocolUsageError

PRESETS = {"lan": (0.5e-3, 1e9), "wan": (40e-3, 100e6)}
_UNITS = {"kbit": 1e3, "mbit": 1e6, "gbit": 1e9}
_SPEC = re.compile(r"^\s*([0-9.]+)\s*ms\s*/\s*([0-9.]+)\s*(kbit|mbit|gbit)\s*$", re.I)


@dataclass(frozen=True)
class Network:
    """One-way latency (seconds) and bandwidth (bits per second) of every link."""
    latency_s: float
    bandwidth_bps: float

    @classmethod
    def parse(cls, spec: str) -> "Network":
        """A preset name (``lan``, ``wan``) or ``"<latency>ms/<bandwidth>(k|m|g)bit"``."""
        if not isinstance(spec, str):
            raise ProtocolUsageError(f"network must be a string like 'lan', 'wan' or "
                                     f"'10ms/100mbit', got {type(spec).__name__}")
        key = spec.strip().lower()
        if key in PRESETS:
            return cls(*PRESETS[key])
        m = _SPEC.match(key)
        if not m:
            raise ProtocolUsageError(f"network {spec[:40]!r}: use 'lan', 'wan' or "
                                     f"'<latency>ms/<bandwidth>mbit' (kbit, mbit, gbit)")
        latency, bw = float(m.group(1)) / 1e3, float(m.group(2)) * _UNITS[m.group(3).lower()]
        if bw <= 0:
            raise ProtocolUsageError(f"network {spec!r}: bandwidth must be positive (or use "
                                     f"'lan' or 'wan')")
        return cls(latency, bw)

    def transfer_s(self, nbytes: int) -> float:
        return nbytes * 8 / self.bandwidth_bps


def predict(compute_s: float, rounds: int, link_bytes: int, net: Network) -> float:
    """Cost model: compute (the loopback time) + rounds × latency + bytes / bandwidth,
    with ``link_bytes`` the most bytes any one link carries in the run."""
    return compute_s + rounds * net.latency_s + net.transfer_s(link_bytes)


class DelayLine:
    """Delivers one sender→peer link's messages at their emulated arrival times, in order.

    ``deliver(payload)`` is the real channel's send. Errors in delivery (the peer gone)
    are raised at the next `push` or at `flush`.
    """

    def __init__(self, net: Network, deliver, clock=time.monotonic):
        self._net, self._deliver, self._clock = net, deliver, clock
        self._free_at = 0.0                      # when the link finishes its last message
        self._queue: list = []
        self._seq = 0
        self._cv = threading.Condition()
        self._error: BaseException | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._run, daemon=True, name="veil-netem")
        self._thread.start()

    def schedule(self, nbytes: int) -> float:
        """Arrival time of a message of ``nbytes`` sent now (updates the link's state)."""
        start = max(self._clock(), self._free_at)
        self._free_at = start + self._net.transfer_s(nbytes)
        return self._free_at + self._net.latency_s

    def push(self, payload) -> None:
        data = bytearray(payload)                # the sender may reuse its buffer
        with self._cv:
            if self._error is not None:
                raise self._error
            heapq.heappush(self._queue, (self.schedule(len(data)), self._seq, data))
            self._seq += 1
            self._cv.notify()

    def flush(self, timeout: float = 60.0) -> None:
        """Wait until every pushed message is delivered, then stop the thread."""
        with self._cv:
            self._closed = True
            self._cv.notify()
        self._thread.join(timeout)
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._queue and not self._closed:
                    self._cv.wait()
                if not self._queue:
                    return
                due, _, data = self._queue[0]
                wait = due - self._clock()
                if wait > 0:
                    self._cv.wait(wait)              # a later push cannot be due earlier
                    continue
                heapq.heappop(self._queue)
            try:
                self._deliver(data)
            except BaseException as exc:  # noqa: BLE001 - handed to the sender
                with self._cv:
                    self._error = exc
                    self._queue.clear()
                return


__all__ = ["Network", "DelayLine", "PRESETS", "predict"]
