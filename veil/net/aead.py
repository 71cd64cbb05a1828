"""Bulk encryption after the TLS handshake: AES-256-GCM records on the raw socket.

Python's `ssl` encrypts at about 0.7 GB/s on the benchmark host; AES-256-GCM from
`cryptography` (OpenSSL's AES-NI code, called on whole 1 MiB records, written straight
into a reused buffer) does several GB/s. So by default a link uses TLS 1.3 only to
authenticate the peer and agree on keys, then carries its frames as AES-GCM records:

1. Inside the mutually authenticated TLS channel, each side's hello carries a fresh
   X25519 public key (``bulk``). Python's `ssl` has no TLS exporter (RFC 8446 §7.5), so
   the keys come from this second, ephemeral exchange — authenticated because it travels
   inside TLS, whose peer certificate was checked against the pinned one.
2. ``secret = X25519(mine, theirs)``; two 256-bit keys, one per direction, are
   ``HKDF-SHA256(secret, salt=SHA-256(transcript), info="veil bulk v1 key i->j")``, the
   transcript binding the cluster id, both ranks, both pinned certificate fingerprints
   and both public keys (`transcript`).
3. Both sides close TLS cleanly (close_notify both ways, `ssl.SSLSocket.unwrap`) and
   from then on send records: a 4-byte little-endian length, then the AES-256-GCM
   ciphertext and 16-byte tag of at most 1 MiB of the frame stream. The length is the
   associated data; the nonce is a 64-bit per-direction record counter (never sent,
   never reused: each key has one sender, which counts up; 2^64 records ends the link).
   A receiver that expects record k opens it with nonce k, so a tampered, replayed,
   reordered, dropped or foreign record fails authentication and the link is closed with
   an error naming the peer. A stream cut inside a record is an error too; a stream cut
   between records is what a dead peer looks like, and veil already treats a link that
   ends without an (authenticated) goodbye as that peer's failure.
4. After every 2^34 bytes (16 GiB) in a direction, both ends replace that direction's key
   by ``HKDF(key, info="veil bulk v1 update")`` at the same record (TLS 1.3's KeyUpdate,
   without a message: both ends count the same bytes), far inside the AES-GCM usage
   limits of RFC 8446 §5.5.

This is TLS 1.3's own record construction (HKDF-derived per-direction AES-256-GCM keys,
implicit sequence-number nonces, length-checked records) with larger records; see
docs/security.md for the argument. ``veil run --tls-only`` (``VEIL_BULK=tls``) keeps
TLS for the whole connection.

>>> from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
>>> a, b = X25519PrivateKey.generate(), X25519PrivateKey.generate()
>>> t = transcript("cid", (0, "f0", public_bytes(a)), (1, "f1", public_bytes(b)))
>>> k01, k10 = direction_keys(a.exchange(b.public_key()), t, 0, 1)
>>> (k01, k10) == direction_keys(b.exchange(a.public_key()), t, 1, 0)[::-1], k01 != k10
(True, True)
"""

from __future__ import annotations

import hashlib
import json
import socket
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import (
    X25519PrivateKey,
    X25519PublicKey,
)
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

LABEL = b"veil bulk v1"
RECORD_MAX = 1 << 20        # plaintext bytes per record (the hub writes 1 MiB slices)
TAG = 16
LEN = struct.Struct("<I")   # a record's ciphertext length (tag included)
READ_AHEAD = 64 * 1024      # while no record is half-read, read up to this much at once
REKEY_BYTES = 1 << 34       # bytes per direction and key before both ends ratchet it
MODES = ("aes-gcm", "tls")  # VEIL_BULK: records after the handshake, or TLS throughout
# encrypt_into / decrypt_into (no allocation per record) are recent in `cryptography`;
# older versions (pyproject allows >= 42) take the allocating calls and one copy.
_INTO = hasattr(AESGCM, "encrypt_into")


class RecordError(Exception):
    """A record that is not from this session's peer, or a stream cut inside one."""


def public_bytes(key: X25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw,
                                         serialization.PublicFormat.Raw)


def transcript(cluster_id: str, *ends: tuple[int, str, bytes]) -> bytes:
    """What the keys are bound to: the cluster, and (rank, certificate fingerprint, X25519
    public key) of both ends in rank order, as unambiguous JSON."""
    rows = sorted((int(r), str(fp), bytes(pub).hex()) for r, fp, pub in ends)
    return json.dumps([LABEL.decode(), str(cluster_id), rows]).encode()


def _hkdf(secret: bytes, info: bytes, salt: bytes | None = None) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(secret)


def direction_keys(secret: bytes, transcript_bytes: bytes, me: int, peer: int
                   ) -> tuple[bytes, bytes]:
    """(key this end sends with, key it receives with)."""
    salt = hashlib.sha256(transcript_bytes).digest()
    return (_hkdf(secret, LABEL + f" key {me}->{peer}".encode(), salt),
            _hkdf(secret, LABEL + f" key {peer}->{me}".encode(), salt))


def shared_secret(mine: X25519PrivateKey, theirs: bytes) -> bytes:
    """X25519 with the peer's raw public key; a malformed or low-order key is refused."""
    if not isinstance(theirs, (bytes, bytearray)) or len(theirs) != 32:
        raise ValueError("its bulk-encryption key is not 32 bytes")
    try:
        return mine.exchange(X25519PublicKey.from_public_bytes(bytes(theirs)))
    except ValueError:                  # all-zero result: a low-order point
        raise ValueError("its bulk-encryption key is not a valid X25519 key") from None


class _Direction:
    """One direction's key and record counter."""

    def __init__(self, key: bytes, rekey_bytes: int) -> None:
        self._key, self._aes = key, AESGCM(key)
        self.count = 0                # records so far: the next record's nonce
        self._since = 0               # bytes under the current key
        self._rekey = rekey_bytes

    def nonce(self) -> bytes:
        if self.count >= 1 << 64:
            raise RecordError("sent 2^64 records on one link: the nonce space is spent")
        return b"\0\0\0\0" + self.count.to_bytes(8, "little")

    def advance(self, nbytes: int) -> None:
        self.count += 1
        self._since += nbytes
        if self._since >= self._rekey:        # both ends do this at the same record
            self._key = _hkdf(self._key, LABEL + b" update")
            self._aes, self._since = AESGCM(self._key), 0

    def seal(self, plain, aad: bytes, out) -> None:
        if _INTO:
            self._aes.encrypt_into(self.nonce(), plain, aad, out)
        else:
            out[:] = self._aes.encrypt(self.nonce(), bytes(plain), aad)
        self.advance(len(plain))

    def open(self, sealed, aad: bytes, out) -> None:
        try:
            if _INTO:
                self._aes.decrypt_into(self.nonce(), sealed, aad, out)
            else:
                out[:] = self._aes.decrypt(self.nonce(), bytes(sealed), aad)
        except InvalidTag:
            raise RecordError("sent a record that fails authentication (tampered with, "
                              "replayed, reordered, or not from this session); the link "
                              "is closed") from None
        self.advance(len(sealed) - TAG)


class AeadSocket(socket.socket):
    """A connected socket whose ``send`` / ``recv_into`` speak AES-GCM records.

    Like an `ssl.SSLSocket` in non-blocking mode: a ``send`` that raises `BlockingIOError`
    keeps its sealed record and must be retried with the same data (the hub does); a
    ``recv_into`` returns plaintext bytes, raises `BlockingIOError` when none are ready,
    returns 0 at a clean end of stream, and raises `RecordError` for a bad record.
    """

    @classmethod
    def over(cls, raw: socket.socket, send_key: bytes, recv_key: bytes,
             rekey_bytes: int = REKEY_BYTES) -> AeadSocket:
        timeout = raw.gettimeout()
        s = cls(raw.family, raw.type, raw.proto, fileno=raw.detach())
        s.settimeout(timeout)
        s._tx, s._rx = _Direction(send_key, rekey_bytes), _Direction(recv_key, rekey_bytes)
        s._obuf = bytearray(LEN.size + RECORD_MAX + TAG)       # reused: one sealed record
        s._out: memoryview | None = None                        # its unsent bytes
        s._out_plain = 0
        s._rbuf = bytearray(LEN.size + RECORD_MAX + TAG)        # reused: incoming records
        s._have = 0
        s._pbuf = bytearray(RECORD_MAX)                         # plaintext not yet taken
        s._plain = memoryview(s._pbuf)[:0]
        return s

    def __repr__(self) -> str:
        return f"AeadSocket(fd={self.fileno()})"

    # -- sending --------------------------------------------------------------------------
    def send(self, data, flags: int = 0) -> int:
        if self._out is None:
            plain = memoryview(data).cast("B")[:RECORD_MAX]
            if not plain.nbytes:
                return 0
            size = plain.nbytes + TAG
            head = LEN.pack(size)
            self._obuf[:LEN.size] = head
            out = memoryview(self._obuf)[:LEN.size + size]
            self._tx.seal(plain, head, out[LEN.size:])
            self._out, self._out_plain = out, plain.nbytes
        elif min(memoryview(data).nbytes, RECORD_MAX) != self._out_plain:
            raise ValueError("a blocked send must be retried with the same data")
        while self._out.nbytes:
            self._out = self._out[super().send(self._out, flags):]   # BlockingIOError: retry
        self._out = None
        return self._out_plain

    def sendall(self, data, flags: int = 0) -> None:
        view = memoryview(data).cast("B")
        while view.nbytes:
            view = view[self.send(view, flags):]

    # -- receiving ------------------------------------------------------------------------
    def recv_into(self, buffer, nbytes: int = 0, flags: int = 0) -> int:
        dst = memoryview(buffer).cast("B")
        if nbytes:
            dst = dst[:nbytes]
        if not dst.nbytes:
            return 0
        while True:
            if self._plain.nbytes:
                k = min(self._plain.nbytes, dst.nbytes)
                dst[:k] = self._plain[:k]
                self._plain = self._plain[k:]
                return k
            size = self._record_size()
            if size is not None and self._have >= LEN.size + size:
                n = size - TAG
                rec = memoryview(self._rbuf)
                target = dst[:n] if dst.nbytes >= n else memoryview(self._pbuf)[:n]
                self._rx.open(rec[LEN.size:LEN.size + size], bytes(rec[:LEN.size]), target)
                self._consume(LEN.size + size)
                if target.obj is not self._pbuf:
                    return n                      # decrypted straight into the caller's
                self._plain = target
                continue
            limit = READ_AHEAD if size is None else LEN.size + size
            got = super().recv_into(memoryview(self._rbuf)[self._have:limit])
            if got == 0:
                if self._have:
                    raise RecordError("closed its connection in the middle of an encrypted "
                                      "record (truncated stream)")
                return 0
            self._have += got

    def _record_size(self) -> int | None:
        if self._have < LEN.size:
            return None
        size = LEN.unpack_from(self._rbuf)[0]
        if not TAG < size <= RECORD_MAX + TAG:
            raise RecordError("sent bytes that are not an encrypted veil record (are both "
                              "sides started with the same --tls-only setting?)")
        return size

    def _consume(self, n: int) -> None:
        left = self._have - n
        if left:                               # read-ahead of the next record: < 64 KiB
            self._rbuf[:left] = self._rbuf[n:self._have]
        self._have = left

    def pending(self) -> int:
        """Plaintext bytes decrypted and not yet taken (like `ssl.SSLSocket.pending`)."""
        return self._plain.nbytes


def switch(tls_sock, send_key: bytes, recv_key: bytes) -> AeadSocket:
    """Close TLS cleanly on an established connection and carry on in AES-GCM records."""
    raw = tls_sock.unwrap()         # close_notify both ways; read-ahead is off meanwhile
    return AeadSocket.over(raw, send_key, recv_key)
