"""The metered chokepoint: every byte any party sends or receives passes through here.

Counting is always on and the same for every transport. Two phases are kept apart:
``online`` (the protocol's own traffic) and ``offline`` (set-up and correlated randomness
from the dealer). A *round* is one collective call: every party that takes part counts
it once, whether it sends, receives or both, so round counts agree across parties.
Payload bytes are counted; transport framing (a TCP length prefix, TLS records) is not.
"""

from __future__ import annotations

import json
import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch

from .channel import Channel, party_name
from . import netem
from .netem import Network
from ..errors import PartyError

ONLINE, OFFLINE = "online", "offline"
# The tensors one party sends one peer in a round go as one message while together they
# are at most this big: one frame, one queue hand-off, one receive instead of one per
# tensor (a Beaver product opens two, a comparison's round an int32 and bit rows). Larger
# ones go separately, each without a staging copy. Bytes and rounds are the same either
# way; only the message count differs.
FUSE_BYTES = 64 * 1024
# Inside `Communicator.batch`, messages up to this size wait to go out together (larger
# ones go at once, after those held for the same peer), and at most HOLD_MAX bytes wait.
HOLD_BYTES = 64 * 1024
HOLD_MAX = 1 << 20


@dataclass
class PhaseStats:
    bytes_sent: int = 0
    bytes_received: int = 0
    rounds: int = 0
    messages: int = 0


@dataclass
class Stats:
    online: PhaseStats = field(default_factory=PhaseStats)
    offline: PhaseStats = field(default_factory=PhaseStats)

    def as_dict(self) -> dict:
        on, off = self.online, self.offline
        return {
            "bytes_sent": on.bytes_sent,
            "bytes_received": on.bytes_received,
            "rounds": on.rounds,
            "messages": on.messages,
            "offline_bytes_sent": off.bytes_sent,
            "offline_bytes_received": off.bytes_received,
            "offline_bytes": off.bytes_sent + off.bytes_received,
            "offline_rounds": off.rounds,
        }


def tensor_to_bytes(t: torch.Tensor) -> memoryview:
    """Raw little-endian bytes of a tensor, without a copy when it is contiguous."""
    try:
        arr = t.numpy()         # one torch call (each releases the GIL: in-process parties
    except (RuntimeError, TypeError):     # then hand it back and forth), not five
        arr = t.detach().cpu().numpy()    # a tensor that requires grad, or not on the CPU
    # Contiguous (a copy only if it is not, as .contiguous() would) and flattened:
    # memoryview.cast refuses a multi-dim view with a 0 in its shape.
    return memoryview(np.ascontiguousarray(arr).reshape(-1)).cast("B")


# Received bytes are wrapped with numpy where it knows the dtype: its frombuffer and
# reshape cost a fraction of torch's, and, unlike torch's, do not let go of the GIL (which
# in-process parties would then pass back and forth); one torch call (from_numpy) remains.
_NUMPY = {torch.int64: np.int64, torch.int32: np.int32, torch.int16: np.int16,
          torch.int8: np.int8, torch.uint8: np.uint8, torch.float64: np.float64,
          torch.float32: np.float32}


def _wrap(owned: bytearray, dtype: torch.dtype, count: int, offset: int, shape) -> torch.Tensor:
    """``count`` elements of ``dtype`` at ``offset`` in ``owned``, shaped (no copy)."""
    np_dtype = _NUMPY.get(dtype)
    if np_dtype is None:
        return torch.frombuffer(owned, dtype=dtype, count=count, offset=offset).reshape(shape)
    return torch.from_numpy(np.frombuffer(owned, np_dtype, count, offset).reshape(shape))


def bytes_to_tensor(buf: bytes, shape, dtype: torch.dtype, sender: str) -> torch.Tensor:
    # math.prod of Python ints: exact and ~10x cheaper than np.prod per received message
    count = math.prod(shape)
    expected = count * dtype.itemsize
    if len(buf) != expected:
        raise PartyError(sender, f"sent {len(buf)} bytes where {expected} were expected "
                                 f"(parties out of step: do all parties run the same program?)")
    if not expected:
        return torch.empty(shape, dtype=dtype)
    # Transports hand over a bytearray the receiver owns: wrap it without a copy.
    owned = buf if isinstance(buf, bytearray) else bytearray(buf)
    return _wrap(owned, dtype, count, 0, tuple(shape))


def parse_obj(raw, sender: str):
    """`Communicator.recv_obj`'s parse of a received message (``sender`` named on error)."""
    try:
        return json.loads(bytes(raw).decode())
    except (ValueError, RecursionError):
        raise PartyError(sender, "sent a metadata message that is not valid JSON (parties "
                                 "out of step, or a hostile peer)") from None


def _layout(tensors) -> tuple[list[int], list[int], int, list[int]]:
    """Where each tensor sits in a fused message: widest dtypes first, so every piece is
    aligned for its dtype when the message is wrapped without a copy. Both ends compute
    it from the same (local) shapes and dtypes. Also returns each tensor's numel."""
    counts = [t.numel() for t in tensors]
    sizes = [t.dtype.itemsize for t in tensors]
    order = sorted(range(len(tensors)), key=lambda i: -sizes[i])
    offsets, at = [0] * len(tensors), 0
    for i in order:
        offsets[i] = at
        at += counts[i] * sizes[i]
    return order, offsets, at, counts


def fuse(tensors) -> bytearray:
    """The bytes of several tensors as one message (see `_layout`)."""
    order, offsets, total, _ = _layout(tensors)
    out = bytearray(total)
    for i in order:
        raw = tensor_to_bytes(tensors[i])
        out[offsets[i]:offsets[i] + raw.nbytes] = raw
    return out


def unfuse(buf, like, sender: str) -> list[torch.Tensor]:
    """Split a fused message back into tensors shaped like ``like`` (views, no copy).

    The length is checked against what ``like`` implies before anything is built: a
    peer's message of any other size is refused, naming it.
    """
    _, offsets, total, counts = _layout(like)
    if len(buf) != total:
        raise PartyError(sender, f"sent {len(buf)} bytes where {total} were expected "
                                 f"(parties out of step: do all parties run the same program?)")
    owned = buf if isinstance(buf, bytearray) else bytearray(buf)
    out = []
    for t, off, n in zip(like, offsets, counts):
        if not n:
            out.append(torch.empty(t.shape, dtype=t.dtype))
            continue
        out.append(_wrap(owned, t.dtype, n, off, tuple(t.shape)))
    return out


class Communicator:
    """One party's metered endpoint to all peers (ranks 0..n-1, and n for the dealer)."""

    def __init__(self, rank: int, world_size: int, channels: dict[int, Channel],
                 timeout: float | None, network: Network | None = None) -> None:
        self.rank = rank
        self.world_size = world_size
        self.channels = channels
        self.timeout = timeout
        self.stats = Stats()
        self._phase = ONLINE
        # emulated links (veil.comm.netem): each send is stamped with its arrival time
        self._links = {p: netem.Link(network) for p in channels} if network is not None \
            else {}
        self.profiler = None          # a veil.comm.profile.Profiler when Config.profile
        self._batching = 0            # depth of open `batch` blocks
        self._held: dict[int, list] = {}    # peer -> messages waiting in a batch
        self._held_bytes = 0

    # -- the chokepoint -------------------------------------------------------------
    def _meter(self) -> PhaseStats:
        return self.stats.online if self._phase == ONLINE else self.stats.offline

    def send_bytes(self, peer: int, payload: bytes | memoryview) -> None:
        nbytes = len(payload)           # what the protocol sent (an emulation stamp is not)
        m = self._meter()
        m.bytes_sent += nbytes
        m.messages += 1
        if self._batching and nbytes <= HOLD_BYTES:
            # a copy: the caller may reuse its buffer (a tensor's memory) once this returns
            self._held.setdefault(peer, []).append(bytes(payload))
            self._held_bytes += nbytes
            if self.profiler is not None:
                self.profiler.sent(0.0, nbytes, self._phase == OFFLINE)
            if self._held_bytes > HOLD_MAX:
                self.flush()
            return
        if self._held.get(peer):
            self.flush()                # keep this peer's messages in order
        t0 = time.perf_counter() if self.profiler is not None else 0.0
        link = self._links.get(peer)
        if link is not None:
            payload = netem.stamp(link.schedule(nbytes), payload)
        self._channel(peer).send(payload)
        if self.profiler is not None:
            self.profiler.sent(time.perf_counter() - t0, nbytes, self._phase == OFFLINE)

    @contextmanager
    def batch(self):
        """Small messages sent inside the block are held and go out together: one write
        per peer instead of one per message (fewer system calls, and one wake-up of the
        receiver for all of them). They go when the block ends, when a larger message
        follows them to the same peer, or as soon as a receive would have to wait: this
        party never blocks with messages unsent, so holding them cannot deadlock. Each
        message is counted as it is sent (`veil.stats()` is the same), and each peer gets
        its messages in order. The dealer answers party 0's requests in a batch; party 0
        sends its predicted requests in one.
        """
        self._batching += 1
        try:
            yield
        except BaseException:
            self._batching -= 1
            if not self._batching:       # the run is failing: nothing more to deliver
                self._held, self._held_bytes = {}, 0
            raise
        self._batching -= 1
        if not self._batching:
            self.flush()

    def flush(self) -> None:
        """Send every message a `batch` holds (one write per peer)."""
        held, self._held, self._held_bytes = self._held, {}, 0
        for peer, msgs in held.items():
            t0 = time.perf_counter() if self.profiler is not None else 0.0
            link = self._links.get(peer)
            if link is not None:          # emulated links: the clock starts now
                msgs = [netem.stamp(link.schedule(len(m)), m) for m in msgs]
            self._channel(peer).send_many(msgs)
            if self.profiler is not None:
                self.profiler.sent(time.perf_counter() - t0, 0, self._phase == OFFLINE)

    def recv_bytes(self, peer: int) -> bytes:
        if self._held and not self._channel(peer).ready():
            self.flush()                  # about to wait: never with messages unsent
        t0 = time.perf_counter() if self.profiler is not None else 0.0
        data = self._channel(peer).recv(self.timeout)
        if self._links:
            try:
                due, data = netem.unstamp(data, self.timeout or 600.0)
            except ValueError as e:
                raise PartyError(party_name(peer, self.world_size), str(e)) from None
            netem.wait_until(due)             # the emulated link delivers it only now
        if self.profiler is not None:
            self.profiler.waited(time.perf_counter() - t0, offline=self._phase == OFFLINE,
                                 nbytes=len(data))
        self._meter().bytes_received += len(data)
        return data

    def close(self) -> None:
        """Tell every peer this party is done, so one still waiting on it fails at once."""
        for ch in self.channels.values():
            ch.close()

    def _channel(self, peer: int) -> Channel:
        try:
            return self.channels[peer]
        except KeyError:
            raise PartyError(party_name(self.rank, self.world_size),
                             f"has no channel to {party_name(peer, self.world_size)}") from None

    @contextmanager
    def phase(self, name: str):
        """Count the traffic inside the block under ``name`` (online / offline)."""
        old, self._phase = self._phase, name
        try:
            yield
        finally:
            self._phase = old

    def count_round(self) -> None:
        self._meter().rounds += 1
        if self.profiler is not None:
            self.profiler.counted_round(self._phase == OFFLINE)

    def peer_name(self, peer: int) -> str:
        return party_name(peer, self.world_size)

    # -- tensors ----------------------------------------------------------------------
    def send_tensor(self, peer: int, t: torch.Tensor) -> None:
        self.send_bytes(peer, tensor_to_bytes(t))

    def recv_tensor(self, peer: int, shape, dtype: torch.dtype) -> torch.Tensor:
        return bytes_to_tensor(self.recv_bytes(peer), shape, dtype, self.peer_name(peer))

    def send_obj(self, peer: int, obj) -> None:
        """Small public metadata (shapes, dtypes, request names) as JSON."""
        self.send_bytes(peer, json.dumps(obj).encode())

    def recv_obj(self, peer: int):
        """A peer's JSON metadata: plain data only (no object hooks); one that does not
        parse is the sender's fault. Validate its contents before use (veil.comm.limits)."""
        return parse_obj(self.recv_bytes(peer), self.peer_name(peer))

    # -- collectives: one round each ---------------------------------------------------
    def parties(self) -> range:
        return range(self.world_size)

    def send_to_all(self, tensors) -> bool:
        """Start a round: count it and send ``tensors`` to every other party, as one
        message per peer while together at most `FUSE_BYTES` (`fuse`; returned: whether
        they were fused), else one message per tensor. Pair with `recv_from`."""
        self.count_round()
        fused = len(tensors) > 1 and \
            sum([t.numel() * t.dtype.itemsize for t in tensors]) <= FUSE_BYTES
        payload = fuse(tensors) if fused else None
        for p in self.parties():
            if p != self.rank:
                if fused:
                    self.send_bytes(p, payload)
                else:
                    for t in tensors:
                        self.send_tensor(p, t)
        return fused

    def recv_from(self, peer: int, like, fused: bool) -> list[torch.Tensor]:
        """What ``peer`` sent in this round's `send_to_all`, shaped and typed like ``like``
        (every party sends the same shapes: SPMD); its length is checked first."""
        if fused:
            return unfuse(self.recv_bytes(peer), like, self.peer_name(peer))
        return [self.recv_tensor(peer, t.shape, t.dtype) for t in like]

    def all_reduce(self, tensors, xor: tuple[bool, ...] | None = None) -> list[torch.Tensor]:
        """One round: send every tensor to every other party and combine what comes back.

        Tensor i is summed (ring shares) or XORed (bit shares, ``xor[i]`` true). Inputs are
        not modified.
        """
        tensors = list(tensors)
        xor = xor or (False,) * len(tensors)
        fused = self.send_to_all(tensors)
        outs = [None] * len(tensors)
        for p in self.parties():
            if p == self.rank:
                continue
            for i, (t, got) in enumerate(zip(tensors, self.recv_from(p, tensors, fused))):
                if outs[i] is None:
                    outs[i] = t ^ got if xor[i] else t + got
                elif xor[i]:
                    outs[i] ^= got
                else:
                    outs[i] += got
        return [t.clone() if o is None else o for t, o in zip(tensors, outs)]

    def gather(self, t: torch.Tensor, to: int) -> list[torch.Tensor] | None:
        """Everyone sends ``t`` to party ``to``; it gets the list, the others ``None``."""
        self.count_round()
        if self.rank != to:
            self.send_tensor(to, t)
            return None
        return [t if p == to else self.recv_tensor(p, t.shape, t.dtype) for p in self.parties()]

    def broadcast_obj(self, obj, src: int):
        """Party ``src`` sends small public metadata to all; returns it everywhere."""
        self.count_round()
        if self.rank == src:
            for p in self.parties():
                if p != src:
                    self.send_obj(p, obj)
            return obj
        return self.recv_obj(src)
