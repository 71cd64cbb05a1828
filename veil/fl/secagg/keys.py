"""Key agreement, share encryption and mask expansion for secure aggregation.

* X25519 (``cryptography``) for every pairwise secret; the raw Diffie-Hellman output is
  never used directly but run through HKDF-SHA256 with a label naming the round, the two
  clients (in sorted order) and the purpose, so mask keys and encryption keys differ.
* Masks are the AES-128-CTR keystream of veil's PRG (:mod:`veil.offline.prg`) read as
  uniform elements of Z_2^64: a 128-bit key, not Flower SecAgg+'s 32-bit seed.
* Shares travel through the server encrypted with AES-256-GCM under a key only the
  sender and the addressee can derive; the associated data binds sender, addressee and
  round, so the server cannot replay a share to another client or round unnoticed.
"""

from __future__ import annotations

import os

import torch
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ...offline.prg import PRG, SEED_BYTES

PUBLIC_KEY_BYTES = 32
PRIVATE_KEY_BYTES = 32
NONCE_BYTES = 12

_RAW = dict(encoding=serialization.Encoding.Raw, format=serialization.PublicFormat.Raw)
_RAW_PRIV = dict(encoding=serialization.Encoding.Raw, format=serialization.PrivateFormat.Raw,
                 encryption_algorithm=serialization.NoEncryption())


class KeyPair:
    """An X25519 key pair; the private half never appears in a repr."""

    def __init__(self, private: bytes | None = None):
        self._sk = (X25519PrivateKey.from_private_bytes(private) if private is not None
                    else X25519PrivateKey.generate())
        self.public = self._sk.public_key().public_bytes(**_RAW)

    def __repr__(self) -> str:
        return f"KeyPair(public={self.public.hex()[:16]}…, private=<hidden>)"

    def private_bytes(self) -> bytes:
        return self._sk.private_bytes(**_RAW_PRIV)

    def agree(self, peer_public: bytes, label: bytes, length: int) -> bytes:
        """HKDF(DH(self, peer), info=label): the same bytes on both sides."""
        if not isinstance(peer_public, bytes) or len(peer_public) != PUBLIC_KEY_BYTES:
            raise ValueError("peer public key must be 32 bytes (X25519)")
        shared = self._sk.exchange(X25519PublicKey.from_public_bytes(peer_public))
        return HKDF(algorithm=hashes.SHA256(), length=length, salt=None,
                    info=b"veil-secagg|" + label).derive(shared)


def pair_label(purpose: bytes, round_id: bytes, a: int, b: int) -> bytes:
    lo, hi = sorted((a, b))
    return b"|".join([purpose, round_id, str(lo).encode(), str(hi).encode()])


def mask(seed: bytes, numel: int) -> torch.Tensor:
    """Uniform int64 mask of ``numel`` elements expanded from a 16-byte seed (AES-CTR)."""
    if len(seed) != SEED_BYTES:
        raise ValueError(f"mask seed must be {SEED_BYTES} bytes")
    return PRG(seed).ring((numel,))


def fresh_seed() -> bytes:
    return os.urandom(SEED_BYTES)


def encrypt(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def decrypt(key: bytes, blob: bytes, aad: bytes) -> bytes:
    if not isinstance(blob, bytes) or len(blob) < NONCE_BYTES + 16:
        raise ValueError("encrypted share is too short")
    try:
        return AESGCM(key).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], aad)
    except InvalidTag:
        raise ValueError("encrypted share failed authentication (tampered, or sent to "
                         "the wrong client or round)") from None
