"""Key generation at the data owner: the secret key never leaves this object.

`SecretKeys` (client) makes the evaluation material a server needs — relinearisation
keys and Galois keys for exactly the rotation steps the model's plan lists — as bytes;
`Evaluator` (server) is rebuilt from those bytes alone. There is no method that
serialises, pickles or prints the secret key.
"""

from __future__ import annotations

import numpy as np

from .backend import Backend, HEError
from .evaluator import Evaluator
from .params import Params, get_params

_BACKENDS: dict[str, Backend] = {}


def backend_for(params: Params) -> Backend:
    """One SEAL context per parameter set and process (contexts are public and reusable)."""
    be = _BACKENDS.get(params.name)
    if be is None:
        be = _BACKENDS[params.name] = Backend(params.poly_degree, params.coeff_bits)
    return be


class SecretKeys:
    """The data owner's CKKS keys.

    >>> import torch, veil.he as he
    >>> keys = he.keygen("n8192")
    >>> x = keys.encrypt(torch.tensor([1.0, -2.0, 3.0]))
    >>> [round(v, 3) for v in (x * 2 + 1).decrypt().tolist()]
    [3.0, -3.0, 7.0]
    """

    def __init__(self, params: str | Params = "n8192") -> None:
        self.params = get_params(params)
        self.backend = backend_for(self.params)
        self._kg, sk = self.backend.keygen()
        self._encryptor, self._decryptor = self.backend.encryptor(sk)
        self._local: Evaluator | None = None

    def __repr__(self) -> str:                       # never the key material
        return f"SecretKeys({self.params.name})"

    def __reduce__(self):
        raise TypeError("the secret key cannot be pickled or sent: it never leaves its owner")

    # -- what the server gets ----------------------------------------------------------------
    def evaluation_keys(self, steps) -> tuple[bytes, bytes]:
        """(relinearisation keys, Galois keys for ``steps``) as bytes, for the server."""
        return self.backend.eval_keys_bytes(self._kg, sorted({int(s) for s in steps}))

    def local_evaluator(self) -> Evaluator:
        """An evaluator in this process (notebooks, tests): Galois keys made on demand."""
        if self._local is None:
            relin, _ = self.evaluation_keys([])
            rk, _ = self.backend.load_eval_keys(relin, b"", 0)

            def more(steps):
                _, g = self.evaluation_keys(steps)
                return self.backend.load_eval_keys(relin, g, _n_keys(steps, self.params))[1]
            self._local = Evaluator(self.params, self.backend, rk, None, set(), keygen=more)
        return self._local

    # -- encrypt / decrypt ------------------------------------------------------------------
    def encrypt_slots(self, values: np.ndarray) -> bytes:
        """Encrypt a full slot vector; returns the seeded ciphertext bytes."""
        if len(values) > self.params.slots:
            raise HEError(f"{len(values)} values do not fit {self.params.slots} slots")
        m = float(np.max(np.abs(values))) if len(values) else 0.0
        if not np.isfinite(m) or m >= self.params.max_abs:
            raise HEError(f"input magnitude {m:.3g} is outside the encodable range "
                          f"(< {self.params.max_abs:g} for {self.params.name})")
        return self.backend.encrypt_bytes(self._encryptor, values, self.params.scale)

    def decrypt_slots(self, ct) -> np.ndarray:
        return self.backend.decrypt(self._decryptor, ct)

    def encrypt(self, x):
        """Encrypt a 1-D tensor for local use (vector layout); see `EncryptedTensor`."""
        from .tensor import EncryptedTensor
        return EncryptedTensor.encrypt(self, x)


def _n_keys(steps, params: Params) -> int:
    from .backend import galois_elt
    return len({galois_elt(int(s), params.poly_degree) for s in steps if int(s) % params.slots})


def keygen(params: str | Params = "n8192") -> SecretKeys:
    """Generate CKKS keys for the data owner (``params``: a set of `veil.he.params`)."""
    return SecretKeys(params)
