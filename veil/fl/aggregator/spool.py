"""The hand-off between the Flower server and the aggregator processes: a spool folder.

The Flower server (:class:`veil.fl.flower.SpoolAggregators`) writes, per round ``r`` and
aggregator ``j``, ``round-<r>.agg<j>``: the clients' sealed shares *for aggregator j only*
(AES-GCM ciphertexts that only j can open, so the folder — a shared disk, an rsync'd
directory, an object-store bucket — needs no confidentiality of its own). The aggregators
(:mod:`.serve`, one ``veil run`` party each) sum them inside MPC and aggregator 0 writes
``round-<r>.sum``: the noisy sum, the only thing the Flower server ever reads back.
Every file is written under a temporary name and renamed, so a reader never sees half.

Binary layout of a request (little-endian; parsed field by field, never unpickled)::

    b"VEILAGG1" | round_id (16) | u32 vector_len | f64 noise_std | u32 count
    count x ( i64 client | ephemeral public key (32) | u32 len | ciphertext )

>>> rid = bytes(16)
>>> msgs = [{"client": 7, "ephemeral": b"e" * 32, "shares": [b"c" * 44]}]
>>> blob = encode_request(rid, 2, 0.5, msgs, index=0)   # 2 values: 12 + 16 + 16 bytes
>>> r, n, noise, sealed = decode_request(blob, index=0, max_vector_len=10)
>>> r == rid, n, noise, sealed[0]["client"], sealed[0]["shares"][0] == b"c" * 44
(True, 2, 0.5, 7, True)
"""

from __future__ import annotations

import math
import os
import pathlib
import struct

from ..secagg import keys

MAGIC = b"VEILAGG1"
MAX_CLIENTS = 1 << 20


def request_path(spool: pathlib.Path, seq: int, index: int) -> pathlib.Path:
    return spool / f"round-{seq:06d}.agg{index}"


def result_path(spool: pathlib.Path, seq: int) -> pathlib.Path:
    return spool / f"round-{seq:06d}.sum"


def error_path(spool: pathlib.Path, seq: int, index: int) -> pathlib.Path:
    return spool / f"round-{seq:06d}.error{index}"


def public_path(spool: pathlib.Path, index: int) -> pathlib.Path:
    return spool / f"agg-{index}.pub"


def write_atomic(path: pathlib.Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def encode_request(round_id: bytes, vector_len: int, noise_std: float, sealed: list[dict],
                   index: int) -> bytes:
    out = [MAGIC, round_id, struct.pack("<IdI", vector_len, noise_std, len(sealed))]
    for m in sealed:
        blob = m["shares"][index]
        out += [struct.pack("<q", m["client"]), m["ephemeral"], struct.pack("<I", len(blob)),
                blob]
    return b"".join(out)


def decode_request(data: bytes, index: int, max_vector_len: int):
    """(round_id, vector_len, noise_std, sealed) from a request; ValueError names the fault.
    ``sealed`` entries carry only this aggregator's share, at key ``index``."""
    def take(n):
        nonlocal pos
        if pos + n > len(data):
            raise ValueError("aggregation request is truncated")
        pos += n
        return data[pos - n:pos]
    pos = 0
    if take(8) != MAGIC:
        raise ValueError("not an aggregation request (bad magic)")
    rid = take(16)
    vlen, noise, count = struct.unpack("<IdI", take(16))
    if not 1 <= vlen <= max_vector_len:
        raise ValueError(f"vector length {vlen} outside 1..{max_vector_len}")
    if not (math.isfinite(noise) and noise >= 0):
        raise ValueError("noise std must be finite and >= 0")
    if not 1 <= count <= MAX_CLIENTS:
        raise ValueError(f"client count {count} outside 1..{MAX_CLIENTS}")
    want = keys.NONCE_BYTES + 8 * vlen + 16
    sealed, seen = [], set()
    for _ in range(count):
        (client,) = struct.unpack("<q", take(8))
        eph = take(32)
        (ln,) = struct.unpack("<I", take(4))
        if ln != want:
            raise ValueError(f"client {client}: share of {ln} bytes, expected {want}")
        if client in seen:
            raise ValueError(f"client {client} appears twice")
        seen.add(client)
        sealed.append({"client": client, "ephemeral": eph, "shares": {index: take(ln)}})
    if pos != len(data):
        raise ValueError("trailing bytes after the last share")
    return rid, vlen, noise, sealed
