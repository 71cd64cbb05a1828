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

from ..ring import numel

SEED_BYTES = 16
# Draws of at most SMALL bytes are cut from a keystream block of BLOCK bytes produced
# ahead, instead of one AES call and one tensor allocation each: the dealer draws
# thousands of masks of a few hundred bytes per training epoch. The stream is the same
# byte for byte however it is cut (AES-CTR is one keystream), so two holders of a seed
# stay in step whichever sizes each draws. The block starts at SMALL and doubles up to
# BLOCK, so a forked PRG that draws one small mask does not produce 64 KiB it never uses.
SMALL = 4096
BLOCK = 64 * 1024


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
        self._block = np.empty(0, dtype=np.uint8)
        self._pos = self._end = 0             # keystream ahead: self._block[_pos:_end]

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
        """``n`` keystream bytes as a fresh uint8 tensor the caller owns (writable)."""
        return torch.from_numpy(self.array(n))

    def array(self, n: int) -> np.ndarray:
        """``n`` keystream bytes as a fresh uint8 array (numpy: its views and reshapes
        cost a fraction of torch's, and `ring` needs two of them per draw).

        Small draws are copied out of the block produced ahead; a large one takes what is
        left of the block, then has the rest encrypted straight into it (no extra copy).
        """
        ahead = self._end - self._pos
        if n <= ahead:                                  # the common small draw
            out = self._block[self._pos:self._pos + n].copy()
            self._pos += n
            return out
        if n - ahead <= SMALL:
            out = np.empty(n, dtype=np.uint8)
            out[:ahead] = self._block[self._pos:self._end]
            size = min(BLOCK, max(SMALL, 2 * self._end))
            if len(self._block) < size + 15:       # update_into needs 15 spare bytes
                self._block = np.empty(size + 15, dtype=np.uint8)
            # Encrypting zeros yields the keystream itself.
            self._enc.update_into(_zeros(size), self._block)
            self._pos, self._end = n - ahead, size
            out[ahead:] = self._block[:self._pos]
            return out
        buf = np.empty(n + 15, dtype=np.uint8)
        buf[:ahead] = self._block[self._pos:self._end]
        self._pos = self._end = 0
        self._enc.update_into(_zeros(n - ahead), buf[ahead:])
        return buf[:n]

    def ring(self, shape) -> torch.Tensor:
        """Uniform int64 tensor (uniform over Z_2^64)."""
        n = numel(shape)
        if n == 0:
            return torch.zeros(shape, dtype=torch.int64)
        # native int64 words of the same bytes, as torch's view(int64) gave before
        return torch.from_numpy(self.array(8 * n).view(np.int64).reshape(shape))

    def bits(self, shape) -> torch.Tensor:
        """Uniform 0/1 uint8 tensor."""
        n = numel(shape)
        return torch.from_numpy(np.unpackbits(self.array((n + 7) // 8), count=n)
                                .reshape(shape))


_ZEROS = memoryview(bytes(1 << 20))


def _zeros(n: int) -> memoryview:
    """A read-only all-zero buffer of at least n bytes, grown on demand and shared."""
    global _ZEROS
    if len(_ZEROS) < n:
        _ZEROS = memoryview(bytes(max(n, 2 * len(_ZEROS))))
    return _ZEROS[:n]
