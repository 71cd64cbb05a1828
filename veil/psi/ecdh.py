"""ECDH private set intersection over X25519 (Meadows 1986; Huberman-Franklin-Hogg 1999).

Threat model: two semi-honest parties. Each hashes its distinct keys to Curve25519
u-coordinates and raises them to its secret scalar; the other raises what it receives to
its own scalar, so equal keys meet at the same H(k)^(ab) and nothing else matches.
Security rests on DDH on Curve25519 and its twist (hash outputs land on either; the
curve was designed twist-secure and X25519's clamped scalars clear both cofactors) with
the hash as a random oracle.

Why X25519 from `cryptography`: it is the one curve a well-kept, everywhere-installed
library exposes as a raw scalar multiplication on arbitrary points (``exchange`` accepts
any 32-byte u-coordinate), so no hand-written curve arithmetic is needed; P-256 there
has no hash-to-curve or raw point multiplication. It is ~2 scalar multiplications per
key per party (~30 µs each here, spread over the cores by threads): the fallback, not
the fastest protocol (RR22 in ``spu.libpsi``, veil/psi/rr22.py, is ~15x faster but
needs its own environment).

Disclosed to both parties: the number of distinct keys of the other party, and which of
their own keys are in the intersection (SCQL's ``reveal_key_after_join``). The order of
the intersection is pseudorandom (sorted by H(k)^(ab)) and the same at both parties.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from ..errors import PartyError

POINT = 32
CHUNK = 4096
THREADS = max(1, min(8, os.cpu_count() or 1))
DOMAIN = b"veil-psi-x25519-v1"


def hash_to_u(key: bytes) -> bytes:
    """A key's Curve25519 u-coordinate: BLAKE2b-256 with the top bit cleared (RFC 7748)."""
    d = bytearray(hashlib.blake2b(key, digest_size=POINT, person=DOMAIN[:16]).digest())
    d[31] &= 0x7F
    return bytes(d)


def _mult_serial(secret: X25519PrivateKey, points: list[bytes], peer: str) -> list[bytes]:
    out = []
    for u in points:
        try:
            out.append(secret.exchange(X25519PublicKey.from_public_bytes(u)))
        except ValueError:                     # a low-order point: never from honest hashing
            raise PartyError(peer, "sent an invalid curve point in the PSI") from None
    return out


def _mult(secret: X25519PrivateKey, points: list[bytes], peer: str) -> list[bytes]:
    """Every point raised to ``secret``. `cryptography` releases the GIL inside X25519,
    so threads use every core (measured here: 2 threads, 2.2x one); no processes, which
    would have to be handed the secret scalar."""
    workers = min(THREADS, (len(points) + CHUNK - 1) // CHUNK)
    if workers <= 1:
        return _mult_serial(secret, points, peer)
    chunks = [points[i:i + CHUNK] for i in range(0, len(points), CHUNK)]
    with ThreadPoolExecutor(workers, thread_name_prefix="veil-psi") as pool:
        parts = list(pool.map(lambda c: _mult_serial(secret, c, peer), chunks))
    return [p for part in parts for p in part]


def _split(buf: bytes, count: int, peer: str) -> list[bytes]:
    if len(buf) != POINT * count:
        raise PartyError(peer, f"sent {len(buf)} PSI bytes where {POINT * count} were "
                               f"expected (parties out of step?)")
    return [bytes(buf[i:i + POINT]) for i in range(0, len(buf), POINT)]


def ecdh_intersect(comm, peer: int, keys: list[bytes]) -> list[int]:
    """Positions in ``keys`` (distinct byte strings) of the intersection with the peer's.

    Returned in the common order (both parties get their own positions of the same
    keys, in the same order). Two rounds; 64 bytes per own key sent.
    """
    name = comm.peer_name(peer)
    secret = X25519PrivateKey.generate()          # OS randomness; a fresh scalar per run
    mine = _mult(secret, [hash_to_u(k) for k in keys], name)
    # Sort before sending so the order tells the peer nothing about our key order.
    order = sorted(range(len(mine)), key=mine.__getitem__)
    comm.count_round()
    comm.send_obj(peer, len(keys))
    comm.send_bytes(peer, b"".join(mine[i] for i in order))
    theirs_n = comm.recv_obj(peer)
    if not isinstance(theirs_n, int) or isinstance(theirs_n, bool) or theirs_n < 0:
        raise PartyError(name, "sent a malformed PSI set size")
    theirs = _split(comm.recv_bytes(peer), theirs_n, name)
    # Second round: return the peer's points raised to our scalar, in their order.
    comm.count_round()
    theirs_ab = _mult(secret, theirs, name)                      # H(k')^(ab)
    comm.send_bytes(peer, b"".join(theirs_ab))
    doubled = _split(comm.recv_bytes(peer), len(keys), name)     # H(k)^(ab), our sorted order
    mine_ab = {doubled[j]: order[j] for j in range(len(keys))}
    theirs_set = set(theirs_ab)
    common = sorted(v for v in mine_ab if v in theirs_set)
    return [mine_ab[v] for v in common]


__all__ = ["ecdh_intersect", "hash_to_u"]
