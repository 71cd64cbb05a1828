"""Private token ids: one-hot encoded by their owner before sharing.

Looking a secret id up in a secret embedding table costs one equality test per vocabulary
entry if the ids are shared as integers. Their owner can instead one-hot encode them in
plaintext and share the one-hot rows; the lookup is then one secret matmul (a single
round), and no comparison is spent at all. `SecureModule.share_input` does this for every
integer input that only feeds embeddings.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..context import current
from ..errors import ProtocolUsageError
from ..tensor import tensor as share_tensor


class TokenIds:
    """Secret token ids held as a one-hot SecretTensor of shape ``ids.shape + (vocab,)``."""

    is_veil_token_ids = True
    dtype = torch.int64

    def __init__(self, onehot):
        self.onehot = onehot

    @property
    def shape(self) -> torch.Size:
        return torch.Size(tuple(self.onehot.shape)[:-1])

    def dim(self) -> int:
        return len(self.shape)

    def __repr__(self) -> str:
        return f"TokenIds(shape={tuple(self.shape)}, vocab={self.onehot.shape[-1]}, <secret>)"

    def movement(self, op: str, fn, args):
        """Shape ops on the ids, applied to the leading dims of the one-hot tensor."""
        n, v = self.dim(), self.onehot.shape[-1]

        def d(i):
            return i % n if i < 0 else i

        name = op.split(".")[1]
        if name in ("view", "_unsafe_view", "reshape"):
            return TokenIds(self.onehot.reshape(*args[0], v))
        if name == "unsqueeze":
            i = args[0] if args[0] >= 0 else args[0] + n + 1
            return TokenIds(self.onehot.unsqueeze(i))
        if name == "expand":
            return TokenIds(self.onehot.expand(*args[0], v))
        if name in ("slice", "select", "squeeze", "alias", "clone", "detach"):
            moved = [d(args[0]), *args[1:]] if args and name != "squeeze" else list(args)
            if name == "squeeze" and args:
                dims = args[0] if isinstance(args[0], (list, tuple)) else [args[0]]
                moved = [[d(i) for i in dims]]
            return TokenIds(self.onehot._map(lambda t: fn(t, *moved)))
        raise ProtocolUsageError(f"token ids shared with share_input() can only be reshaped, "
                                 f"sliced and looked up in embeddings; {op} needs them as "
                                 f"integers: share them with veil.tensor(ids, owner=...) instead")


def share_token_ids(ids, owner: int, vocab: int) -> TokenIds:
    """One-hot encode ``ids`` at ``owner`` (plaintext, local) and secret-share the rows.

    Discloses the ids' shape (public by contract) and nothing else; costs one round (the
    shape announcement) and no share traffic.
    """
    ctx = current()
    onehot = None
    if ctx.rank == owner:
        ids = torch.as_tensor(ids)
        if ids.is_floating_point() or ids.dtype == torch.bool:
            raise ProtocolUsageError(f"token ids must be integers, got {ids.dtype}")
        if ids.numel() and (ids.min() < 0 or ids.max() >= vocab):
            # Says only that some id is out of range, not which or what it is.
            raise ProtocolUsageError(f"token ids must lie in 0..{vocab - 1} (the embedding "
                                     f"table's size)")
        onehot = F.one_hot(ids.long(), vocab).to(torch.int64)
    return TokenIds(share_tensor(onehot, owner=owner))
