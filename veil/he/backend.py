"""The one adapter between veil.he and an HE library: CKKS on Microsoft SEAL via TenSEAL.

Everything above this file handles opaque ciphertext / plaintext objects and calls only
the functions of `Backend`; swapping the library (OpenFHE, a GPU backend) means
rewriting this file alone. Chosen by measurement on this machine's Python 3.11
(docs/he.md): TenSEAL 0.3.18 installs and its `sealapi` exposes SEAL's evaluator
directly (rotations, plaintext products, rescaling), which our own packing needs; the
`openfhe` wheel does not import on 3.11 and `pyfhel` does not build.

SEAL objects serialise only to file paths through TenSEAL, so (de)serialisation goes
through a private temporary directory (mode 0700). Only public objects are ever saved:
ciphertexts and evaluation keys; the secret key has no save path in this module.
"""

from __future__ import annotations

import atexit
import os
import shutil
import struct
import tempfile
import threading

import numpy as np

from ..errors import VeilError

try:                                                    # optional dependency: veil[he]
    import tenseal.sealapi as seal
except ImportError as exc:                              # pragma: no cover - env without extra
    seal = None
    _IMPORT_ERROR = exc

SEAL_MAGIC = 0xA15E
HEADER = struct.Struct("<HBBBBHQ")                      # SEAL's 16-byte serialisation header


class HEError(VeilError):
    """An encrypted computation cannot go on (levels exhausted, bad ciphertext, ...)."""


def _require():
    if seal is None:
        raise VeilError(f"veil.he needs TenSEAL: pip install 'veil[he]' ({_IMPORT_ERROR})")


def galois_elt(step: int, n: int) -> int:
    """SEAL's Galois element for a left rotation of the slot vector by ``step``."""
    half = n // 2
    if not -half < step < half:
        raise HEError(f"rotation step {step} out of range for ring size {n}")
    return pow(3, step % half, 2 * n)


class _Files:
    """Private scratch directory for SEAL's path-only save/load."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="veil-he-")       # mode 0700
        atexit.register(shutil.rmtree, self.dir, True)
        self.lock = threading.Lock()
        self.n = 0

    def path(self) -> str:
        with self.lock:
            self.n += 1
            return os.path.join(self.dir, f"{os.getpid()}-{threading.get_ident()}-{self.n}")


_FILES: _Files | None = None


def _scratch() -> str:
    global _FILES
    if _FILES is None:
        _FILES = _Files()
    return _FILES.path()


def _save(obj) -> bytes:
    path = _scratch()
    try:
        obj.save(path)
        with open(path, "rb") as f:
            return f.read()
    finally:
        if os.path.exists(path):
            os.unlink(path)


def check_header(buf: bytes, max_size: int, what: str) -> None:
    """Validate SEAL's header before SEAL parses anything (sizes bound the allocation)."""
    if len(buf) < HEADER.size:
        raise HEError(f"{what}: {len(buf)} bytes is shorter than a SEAL header")
    magic, hsize, _vmaj, _vmin, compr, _res, size = HEADER.unpack_from(buf)
    if magic != SEAL_MAGIC or hsize != HEADER.size:
        raise HEError(f"{what}: not a SEAL object (bad magic/header)")
    if size != len(buf):
        raise HEError(f"{what}: header says {size} bytes but {len(buf)} arrived (truncated or "
                      f"padded)")
    if size > max_size:
        raise HEError(f"{what}: {size} bytes exceeds the {max_size} bytes the parameters allow")
    if compr not in (0, 1, 2):
        raise HEError(f"{what}: unknown compression mode {compr}")


class Backend:
    """A CKKS context: encoder, evaluator and (de)serialisation for one parameter set."""

    def __init__(self, poly_degree: int, coeff_bits: list[int]) -> None:
        _require()
        parms = seal.EncryptionParameters(seal.SCHEME_TYPE.CKKS)
        parms.set_poly_modulus_degree(poly_degree)
        parms.set_coeff_modulus(seal.CoeffModulus.Create(poly_degree, list(coeff_bits)))
        # TC128: SEAL refuses parameters below 128-bit security (HE standard tables).
        self.ctx = seal.SEALContext(parms, True, seal.SEC_LEVEL_TYPE.TC128)
        if not self.ctx.parameters_set():
            raise HEError(f"SEAL refused the parameters: {self.ctx.parameters_error_message()}")
        self.n = poly_degree
        self.slots = poly_degree // 2
        self.primes = [q.value() for q in parms.coeff_modulus()]
        self._level_primes, self._level_parms = {}, {}
        data = self.ctx.first_context_data()
        while data is not None:
            self._level_primes[data.chain_index()] = data.parms().coeff_modulus()[-1].value()
            self._level_parms[data.chain_index()] = data.parms_id()
            data = data.next_context_data()
        self.encoder = seal.CKKSEncoder(self.ctx)
        self.ev = seal.Evaluator(self.ctx)
        # Largest serialised ciphertext: 2 polys x N coefficients x (data primes) x 8 bytes
        # uncompressed, plus SEAL's small metadata; anything larger is refused unparsed.
        self.max_ct_bytes = 2 * poly_degree * (len(coeff_bits) - 1) * 8 + 4096

    # -- levels ----------------------------------------------------------------------
    def level(self, ct) -> int:
        """Rescalings still possible: 0 means the ciphertext is at the last prime."""
        return self.ctx.get_context_data(ct.parms_id()).chain_index()

    def prime_at(self, ct) -> int:
        """The prime a rescale of ``ct`` divides by."""
        return self.prime_at_level(self.level(ct))

    def prime_at_level(self, level: int) -> int:
        return self._level_primes[level]

    # -- keys (client side) -----------------------------------------------------------
    def keygen(self):
        kg = seal.KeyGenerator(self.ctx)
        return kg, kg.secret_key()

    def eval_keys_bytes(self, kg, steps: list[int]) -> tuple[bytes, bytes]:
        """Relinearisation and Galois keys, serialised seeded (half size)."""
        relin = _save(kg.create_relin_keys())
        elts = sorted({galois_elt(s, self.n) for s in steps if s % self.slots})
        galois = _save(kg.create_galois_keys(elts)) if elts else b""
        return relin, galois

    def max_key_bytes(self, n_keys: int) -> int:
        """Upper bound on ``n_keys`` serialised key-switching keys (uncompressed: one
        2-polynomial ciphertext over all primes per data prime)."""
        k = len(self.primes)
        return n_keys * (k - 1) * (2 * self.n * k * 8 + 1024) + 4096

    def load_eval_keys(self, relin: bytes, galois: bytes, n_galois: int):
        """Parse untrusted evaluation keys: sizes bounded by the parameters first."""
        check_header(relin, self.max_key_bytes(1), "relinearisation keys")
        try:
            rk = self._load(seal.RelinKeys(), relin)
            gk = None
            if galois:
                check_header(galois, self.max_key_bytes(n_galois), "Galois keys")
                gk = self._load(seal.GaloisKeys(), galois)
                if gk.size() != n_galois:
                    raise HEError(f"Galois keys: {gk.size()} keys, {n_galois} agreed")
        except HEError:
            raise
        except Exception as exc:              # SEAL's own validity checks
            raise HEError(f"evaluation keys rejected: {exc}") from None
        return rk, gk

    # -- encode / encrypt / decrypt ----------------------------------------------------
    def encode(self, values, scale: float, like=None):
        """Plaintext of ``values`` (a float or a vector of <= slots floats) at ``scale``."""
        pt = seal.Plaintext()
        v = float(values) if np.isscalar(values) else np.asarray(values, np.float64).tolist()
        if like is None:
            self.encoder.encode(v, scale, pt)
        else:
            parms = (self._level_parms[like] if isinstance(like, int) else like.parms_id())
            self.encoder.encode(v, parms, scale, pt)
        return pt

    def encryptor(self, secret_key):
        return seal.Encryptor(self.ctx, secret_key), seal.Decryptor(self.ctx, secret_key)

    def encrypt_bytes(self, encryptor, values, scale: float) -> bytes:
        """Symmetric (seeded) encryption straight to bytes: half the size of a full one."""
        return _save(encryptor.encrypt_symmetric(self.encode(values, scale)))

    def decrypt(self, decryptor, ct) -> np.ndarray:
        pt = seal.Plaintext()
        decryptor.decrypt(ct, pt)
        return np.asarray(self.encoder.decode_double(pt), dtype=np.float64)

    # -- ciphertext bytes --------------------------------------------------------------
    def ct_to_bytes(self, ct) -> bytes:
        return _save(ct)

    def ct_from_bytes(self, buf: bytes):
        """Parse an untrusted ciphertext: header and size first, then SEAL's own checks
        (parameters id, coefficients reduced modulo the primes)."""
        check_header(buf, self.max_ct_bytes, "ciphertext")
        try:
            ct = self._load(seal.Ciphertext(), buf)
        except Exception as exc:              # SEAL raises std exceptions as RuntimeError etc.
            raise HEError(f"ciphertext rejected: {exc}") from None
        if ct.size() != 2:
            raise HEError(f"ciphertext has {ct.size()} polynomials, expected 2")
        return ct

    def _load(self, obj, buf: bytes):
        path = _scratch()
        try:
            with open(path, "wb") as f:
                f.write(buf)
            obj.load(self.ctx, path)
        finally:
            if os.path.exists(path):
                os.unlink(path)
        return obj

    # -- evaluation --------------------------------------------------------------------
    def new(self):
        return seal.Ciphertext()

    def copy(self, ct):
        out = seal.Ciphertext()
        self.ev.mod_switch_to(ct, ct.parms_id(), out)      # same level: a plain copy
        return out

    def add(self, a, b):
        out = seal.Ciphertext()
        self.ev.add(a, b, out)
        return out

    def add_inplace(self, a, b) -> None:
        self.ev.add_inplace(a, b)

    def add_plain_inplace(self, a, pt) -> None:
        self.ev.add_plain_inplace(a, pt)

    def mul_plain(self, a, pt):
        out = seal.Ciphertext()
        self.ev.multiply_plain(a, pt, out)
        return out

    def mul(self, a, b, relin):
        out = seal.Ciphertext()
        self.ev.multiply(a, b, out)
        self.ev.relinearize_inplace(out, relin)
        return out

    def square(self, a, relin):
        out = seal.Ciphertext()
        self.ev.square(a, out)
        self.ev.relinearize_inplace(out, relin)
        return out

    def rescale_inplace(self, a) -> None:
        self.ev.rescale_to_next_inplace(a)

    def mod_switch_to(self, a, like) -> None:
        self.ev.mod_switch_to_inplace(a, like.parms_id())

    def mod_switch_plain(self, pt, like) -> None:
        self.ev.mod_switch_to_inplace(pt, like.parms_id())

    def rotate(self, a, step: int, galois):
        out = seal.Ciphertext()
        self.ev.rotate_vector(a, step, galois, out)
        return out

    def set_scale(self, a, scale: float) -> None:
        a.scale = scale

    def scale(self, a) -> float:
        return a.scale

