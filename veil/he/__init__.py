"""veil.he: non-interactive encrypted inference with CKKS (docs/he.md).

The data owner generates keys and encrypts; the model owner evaluates a compiled plan on
ciphertexts with public evaluation keys only; the data owner decrypts.
"""

from .backend import HEError
from .keys import SecretKeys, keygen
from .params import PARAMS, Params, get_params
from .tensor import EncryptedTensor

__all__ = ["HEError", "SecretKeys", "keygen", "EncryptedTensor", "Params", "PARAMS",
           "get_params"]
