"""Network emulation at the chokepoint: link latency and bandwidth, per direction.

Loopback hides what parties between two companies pay: a round trip of 1–40 ms and
0.1–1 Gbit/s. `Network` delays every message a party sends as a link would: the message
occupies the sender→peer link for ``bytes / bandwidth`` (after whatever it already
carries), then arrives ``latency`` later. The sender does not wait (as with a socket's
send buffer): it computes the arrival time on its `Link` and sends the message at once,
stamped with that time; the receiver holds it until then (`stamp`, `unstamp`). No thread
of the emulation touches a transport, so it is safe on the networked hub, which must be
driven by one thread (veil/net/hub.py). Because it sits in `Communicator`, it applies to
every transport (in-process threads and processes on one host, which share one
monotonic clock) and leaves byte and round counts unchanged.

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

import math
import re
import struct
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


class Link:
    """One sender→peer link's state: when it finishes carrying what it was given."""

    def __init__(self, net: Network, clock=time.monotonic):
        self._net, self._clock = net, clock
        self._free_at = 0.0                      # when the link finishes its last message

    def schedule(self, nbytes: int) -> float:
        """Arrival time of a message of ``nbytes`` sent now (updates the link's state)."""
        start = max(self._clock(), self._free_at)
        self._free_at = start + self._net.transfer_s(nbytes)
        return self._free_at + self._net.latency_s


_STAMP = struct.Struct("<d")                     # arrival time, monotonic seconds


def stamp(due: float, payload) -> bytearray:
    """The message as sent on an emulated link: its arrival time, then the payload."""
    out = bytearray(_STAMP.size + len(payload))
    _STAMP.pack_into(out, 0, due)
    out[_STAMP.size:] = memoryview(payload).cast("B")
    return out


def unstamp(data, most_ahead_s: float, clock=time.monotonic) -> tuple[float, bytearray]:
    """(arrival time, payload) of a stamped message. The stamp is a peer's word: refused
    unless it is a finite time at most ``most_ahead_s`` from now (a time further ahead
    means the parties do not share a clock, or a peer that would stall this one)."""
    if len(data) < _STAMP.size:
        raise ValueError("sent a message too short for an emulated link's time stamp")
    (due,) = _STAMP.unpack_from(data)
    if not math.isfinite(due) or due - clock() > most_ahead_s:
        raise ValueError(f"sent an emulated arrival time more than {most_ahead_s:g} s "
                         f"ahead: network emulation needs every party on one host (one "
                         f"clock) and the same --network setting")
    payload = data if isinstance(data, bytearray) else bytearray(data)
    del payload[:_STAMP.size]                    # in place: no second copy of the payload
    return due, payload


def wait_until(due: float, clock=time.monotonic, sleep=time.sleep) -> None:
    """Hold a received message until its emulated arrival time."""
    while (left := due - clock()) > 0:
        sleep(left)


__all__ = ["Network", "Link", "PRESETS", "predict", "stamp", "unstamp", "wait_until"]
