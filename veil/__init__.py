"""veil: privacy-preserving machine learning on secret shares.

>>> import torch, veil
>>> def job():
...     x = veil.tensor(torch.tensor([1.0, -2.0]) if veil.rank() == 0 else None, owner=0)
...     y = veil.tensor(torch.tensor([3.0, 0.5]) if veil.rank() == 1 else None, owner=1)
...     return (x * y).reveal(to=1)
>>> veil.run(job, parties=2, seed=0)[1].tolist()
[3.0, -1.0]
"""

from .compile import secure
from .config import Config
from .context import profile, rank, stats, world_size
from .context import recv_bytes, send_bytes  # opaque messages (veil.he ciphertexts)
from .errors import AbortedError, PartyError, ProtocolUsageError, RangeError, VeilError
from .runtime import run
from .tensor import SecretTensor, cat, share_public, stack, tensor, where
from . import autograd, data, nn, optim  # training (issue 6)
from .psi import psi  # private set intersection (issue 11)

__version__ = "0.1.0"

__all__ = ["Config", "run", "rank", "world_size", "stats", "tensor", "share_public",
           "SecretTensor", "where", "cat", "stack", "VeilError", "PartyError", "AbortedError",
           "ProtocolUsageError", "RangeError", "secure", "autograd", "nn", "optim", "data"]
__all__ += ["send_bytes", "recv_bytes", "profile"]
__all__ += ["psi", "sql"]


def __getattr__(name):
    # veil.sql needs the optional `veil[sql]` extra (DuckDB, sqlglot, pandas, pyarrow):
    # imported on first use so `import veil` works without it.
    if name == "sql":
        import importlib
        return importlib.import_module(".sql", __name__)
    raise AttributeError(f"module 'veil' has no attribute {name!r}")
