"""Shamir secret sharing of byte strings over GF(2^521 - 1), threshold t of n.

Used by secure aggregation to share each client's mask key and self-mask seed, so that
any ``t`` surviving clients can help the server cancel the masks of a client that
dropped, while fewer than ``t`` shares reveal nothing (information-theoretic). The
Mersenne prime 2^521 - 1 holds any secret of up to 65 bytes in one field element.

>>> shares = split(b"sixteen byte key", t=3, n=5)
>>> combine(shares[1:4], t=3)
b'sixteen byte key'
"""

from __future__ import annotations

import secrets

PRIME = (1 << 521) - 1
MAX_SECRET_BYTES = 65
SHARE_BYTES = 66          # an element of GF(2^521 - 1) in big-endian bytes


def split(secret: bytes, t: int, n: int) -> list[tuple[int, bytes]]:
    """``n`` shares ``(x, y)`` with x = 1..n; any ``t`` of them recover ``secret``."""
    if not 1 <= t <= n:
        raise ValueError(f"threshold t={t} must be between 1 and the number of shares n={n}")
    if len(secret) > MAX_SECRET_BYTES:
        raise ValueError(f"secret of {len(secret)} bytes exceeds {MAX_SECRET_BYTES}")
    # A leading 1 byte keeps the length (leading zero bytes) through the round trip.
    s = int.from_bytes(b"\x01" + secret, "big")
    coeffs = [s] + [secrets.randbelow(PRIME) for _ in range(t - 1)]
    out = []
    for x in range(1, n + 1):
        y = 0
        for c in reversed(coeffs):          # Horner
            y = (y * x + c) % PRIME
        out.append((x, y.to_bytes(SHARE_BYTES, "big")))
    return out


def combine(shares, t: int) -> bytes:
    """Recover the secret from at least ``t`` shares with distinct x (Lagrange at 0)."""
    pts = {}
    for x, y in shares:
        if not (isinstance(x, int) and 1 <= x < PRIME) or len(y) != SHARE_BYTES:
            raise ValueError("malformed Shamir share")
        pts[x] = int.from_bytes(y, "big")
    if len(pts) < t:
        raise ValueError(f"need {t} distinct shares to recover a secret, got {len(pts)}")
    xs = list(pts)[:t]
    s = 0
    for i in xs:
        num, den = 1, 1
        for j in xs:
            if j != i:
                num = num * (-j) % PRIME
                den = den * (i - j) % PRIME
        s = (s + pts[i] * num * pow(den, -1, PRIME)) % PRIME
    raw = s.to_bytes((s.bit_length() + 7) // 8, "big")
    if not raw or raw[0] != 1:
        raise ValueError("Shamir shares are inconsistent (wrong or tampered share)")
    return raw[1:]
