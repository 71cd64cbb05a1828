"""Messages between data owner and model owner, parsed as untrusted input.

A bundle is ``b"VHE1" | count (u32) | count x size (u64) | blobs``; each blob is a SEAL
object whose own header is checked (`backend.check_header`) before SEAL parses it. Counts
and sizes are bounded by what the agreed parameters allow, so nothing a peer sends can
make this side allocate more than a legitimate message would.
"""

from __future__ import annotations

import json
import struct

from .backend import HEError

MAGIC = b"VHE1"
MAX_HELLO = 64 * 1024


def pack(blobs: list[bytes]) -> bytes:
    head = MAGIC + struct.pack("<I", len(blobs)) + struct.pack(f"<{len(blobs)}Q",
                                                                *map(len, blobs))
    return head + b"".join(blobs)


def unpack(buf: bytes, count: int, max_each: int, what: str) -> list[bytes]:
    """Split a bundle that must hold exactly ``count`` blobs of at most ``max_each`` bytes."""
    if len(buf) < 8 or buf[:4] != MAGIC:
        raise HEError(f"{what}: not a veil.he message")
    (n,) = struct.unpack_from("<I", buf, 4)
    if n != count:
        raise HEError(f"{what}: {n} objects where {count} were expected")
    end = 8 + 8 * n
    if len(buf) < end:
        raise HEError(f"{what}: truncated header")
    sizes = struct.unpack_from(f"<{n}Q", buf, 8)
    if any(s > max_each for s in sizes) or end + sum(sizes) != len(buf):
        raise HEError(f"{what}: object sizes {list(sizes)[:4]}... do not add up to the "
                      f"{len(buf) - end} bytes received (limit {max_each} each)")
    out, pos = [], end
    for s in sizes:
        out.append(buf[pos:pos + s])
        pos += s
    return out


def hello(params: str, steps: list[int], n_in: int, n_out: int, layout: str) -> bytes:
    return json.dumps({"v": 1, "params": params, "steps": sorted(steps), "n_in": n_in,
                       "n_out": n_out, "layout": layout}).encode()


def parse_hello(buf: bytes, slots_of) -> dict:
    """The model owner's public plan header, checked field by field."""
    if len(buf) > MAX_HELLO:
        raise HEError("plan header too large")
    try:
        h = json.loads(buf.decode())
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise HEError("plan header is not JSON") from None
    if not isinstance(h, dict) or h.get("v") != 1:
        raise HEError("plan header: unknown version")
    slots = slots_of(h.get("params"))                # raises for an unknown parameter set
    if h.get("layout") not in ("vector", "batch"):
        raise HEError(f"plan header: bad layout {h.get('layout')!r}")
    for k in ("n_in", "n_out"):
        if not isinstance(h.get(k), int) or not 1 <= h[k] <= (slots if h["layout"] == "vector"
                                                              else 1 << 16):
            raise HEError(f"plan header: bad {k}")
    steps = h.get("steps")
    if (not isinstance(steps, list) or len(steps) > 512
            or not all(isinstance(s, int) and 0 < s < slots for s in steps)):
        raise HEError("plan header: bad rotation steps")
    return h
