"""veil.he: non-interactive encrypted inference with CKKS (docs/he.md).

The data owner generates keys and encrypts; the model owner evaluates a compiled plan on
ciphertexts with public evaluation keys only; the data owner decrypts.
"""

from .backend import HEError
from .compile import Plan, Report, Square, compile
from .keys import SecretKeys, keygen
from .params import PARAMS, Params, get_params
from .party import Client, Server
from .run import Prepared
from .tensor import EncryptedTensor
from .release import flood

__all__ = ["HEError", "SecretKeys", "keygen", "EncryptedTensor", "Params", "PARAMS",
           "get_params", "compile", "Plan", "Report", "Square", "Client", "Server",
           "Prepared", "flood"]
