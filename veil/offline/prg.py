"""Cryptographic PRG: AES-128 in counter mode (via `cryptography`, AES-NI where present).

Two holders of the same 16-byte seed draw identical streams, which is how pairwise and
dealer-shared randomness costs no traffic. Seeds come from ``os.urandom`` unless the
caller fixed a run seed (tests, benchmarks).
"""

from __future__ import annotations

import hashlib
import os

import numpy as np
import torch
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

SEED_BYTES = 16


def fresh_seed() -> bytes:
    return os.urandom(SEED_BYTES)


def derived_seed(run_seed: int, *label) -> bytes:
    """Deterministic seed for tests: SHA-256 of the run seed and a label, first 16 bytes."""
    text = "|".join(["veil", str(run_seed), *map(str, label)])
    return hashlib.sha256(text.encode()).digest()[:SEED_BYTES]


class PRG:
    """AES-CTR keystream turned into ring elements and bits. Never repr'd with its key."""

    def __init__(self, seed: bytes) -> None:
        if len(seed) != SEED_BYTES:
            raise ValueError(f"PRG seed must be {SEED_BYTES} bytes")
        self._seed = bytes(seed)
        self._enc = Cipher(algorithms.AES(seed), modes.CTR(b"\0" * 16)).encryptor()

    def __repr__(self) -> str:
        return "PRG(<seed hidden>)"

    def fork(self, label: str) -> "PRG":
        """An independent PRG keyed by this one's seed and ``label`` (a PRF: BLAKE2b keyed
        with the seed). Two holders of the same seed fork identical streams for the same
        label, whatever either has drawn so far: how a dealer and a party regenerate a
        mask named by a key instead of storing it. The main stream is not touched.
        """
        sub = hashlib.blake2b(label.encode(), key=self._seed, digest_size=SEED_BYTES,
                              person=b"veil-fork").digest()
        return PRG(sub)

    def bytes(self, n: int) -> torch.Tensor:
        """``n`` keystream bytes as a uint8 tensor, written in place (no extra copies)."""
        # Encrypting zeros yields the keystream itself; update_into needs 15 spare bytes.
        out = torch.empty(n + 15, dtype=torch.uint8)
        if n:
            self._enc.update_into(_zeros(n), out.numpy())
        return out[:n]

    def ring(self, shape) -> torch.Tensor:
        """Uniform int64 tensor (uniform over Z_2^64)."""
        n = int(np.prod(shape, dtype=np.int64))
        if n == 0:
            return torch.zeros(shape, dtype=torch.int64)
        return self.bytes(8 * n).view(torch.int64).reshape(shape)

    def bits(self, shape) -> torch.Tensor:
        """Uniform 0/1 uint8 tensor."""
        n = int(np.prod(shape, dtype=np.int64))
        raw = self.bytes((n + 7) // 8).numpy()
        return torch.from_numpy(np.unpackbits(raw, count=n).reshape(shape))


_ZEROS = memoryview(bytes(1 << 20))


def _zeros(n: int) -> memoryview:
    """A read-only all-zero buffer of at least n bytes, grown on demand and shared."""
    global _ZEROS
    if len(_ZEROS) < n:
        _ZEROS = memoryview(bytes(max(n, 2 * len(_ZEROS))))
    return _ZEROS[:n]
