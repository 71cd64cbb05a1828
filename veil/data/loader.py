"""Mini-batches of a secret data set, and reading a party's local CSV file.

Batches are drawn by *public* row indices from a shared seed: every party computes the
same permutation and slices its own shares (no traffic). That is safe because the row
layout is public anyway (vertical: everyone has the same rows; horizontal: the row
counts per party are public, so everyone already knows which rows came from whom); the
permutation itself depends on the seed only, never on the data.

`batch_order` is the same function plaintext code can call, so a torch baseline sees the
very same batches in the same order.
"""

from __future__ import annotations

import csv
import os

import torch

from ..context import current
from ..comm.limits import check_count
from ..errors import ProtocolUsageError


def agree_seed(seed: int | None = None) -> int:
    """A seed every party knows: ``seed`` if given (must be the same at every party), else
    one party 0 draws from the OS and sends to all (one round)."""
    if seed is not None:
        if not isinstance(seed, int) or seed < 0:
            raise ProtocolUsageError(f"seed must be a non-negative int, got {seed!r}")
        return seed
    ctx = current()
    mine = int.from_bytes(os.urandom(8), "little") >> 1 if ctx.rank == 0 else None
    # Discloses a fresh random number (public randomness, independent of any data).
    agreed = ctx.comm.broadcast_obj(mine, 0)
    return check_count(agreed, (1 << 63) - 1, "a shuffle seed", ctx.comm.peer_name(0))


def batch_order(n: int, batch_size: int, seed: int, epoch: int, shuffle: bool = True,
                drop_last: bool = False) -> list[torch.Tensor]:
    """The row indices of each batch of epoch ``epoch`` (public, deterministic).

    >>> [b.tolist() for b in batch_order(5, 2, seed=0, epoch=0, shuffle=False)]
    [[0, 1], [2, 3], [4]]
    """
    if batch_size < 1:
        raise ProtocolUsageError(f"batch_size must be >= 1, got {batch_size}")
    if shuffle:
        g = torch.Generator().manual_seed((seed * 1_000_003 + epoch) % (2 ** 63))
        order = torch.randperm(n, generator=g)
    else:
        order = torch.arange(n)
    batches = list(order.split(batch_size))
    if drop_last and batches and len(batches[-1]) < batch_size:
        batches.pop()
    return batches


class DataLoader:
    """Iterate over (X, y) secret mini-batches, reshuffled each epoch.

    >>> import torch, veil
    >>> def f():
    ...     x = veil.tensor(torch.arange(10.).reshape(5, 2) if veil.rank() == 0 else None, owner=0)
    ...     ds = veil.data.SecretDataset(x, None, "vertical", (2,), (5,))
    ...     loader = veil.data.DataLoader(ds, batch_size=2, shuffle=False)
    ...     return [xb.shape[0] for xb, _ in loader]
    >>> veil.run(f, parties=2, seed=0)[0]
    [2, 2, 1]
    """

    def __init__(self, dataset, batch_size: int = 32, shuffle: bool = True,
                 seed: int | None = None, drop_last: bool = False) -> None:
        self.dataset, self.batch_size = dataset, batch_size
        self.shuffle, self.drop_last = shuffle, drop_last
        self.seed = agree_seed(seed) if shuffle else 0
        self.epoch = 0

    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self):
        order = batch_order(len(self.dataset), self.batch_size, self.seed, self.epoch,
                            self.shuffle, self.drop_last)
        self.epoch += 1
        for idx in order:
            yield self.dataset[idx]


def split_indices(n: int, test_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A public train/test split of row indices (every party applies it to its own rows).

    >>> tr, te = split_indices(10, 0.2, seed=0)
    >>> len(tr), len(te)
    (8, 2)
    """
    if not 0 < test_fraction < 1:
        raise ProtocolUsageError(f"test_fraction must be in (0, 1), got {test_fraction}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_test = max(1, round(n * test_fraction))
    return perm[n_test:].sort().values, perm[:n_test].sort().values


def read_csv(path, label_column: str | int | None = None, *, delimiter: str = ",",
             header: bool = True):
    """A party's local CSV file as ``(features, labels, column_names)`` (float32 tensors;
    ``labels`` is None without ``label_column``). Read locally; nothing is sent."""
    if not os.path.exists(path):
        raise ProtocolUsageError(f"CSV file not found: {path!r}")
    with open(path, newline="") as f:
        rows = [r for r in csv.reader(f, delimiter=delimiter) if r]
    names = rows.pop(0) if header else [str(i) for i in range(len(rows[0]) if rows else 0)]
    try:
        values = torch.tensor([[float(v) for v in r] for r in rows], dtype=torch.float64)
    except ValueError as exc:
        raise ProtocolUsageError(f"{path}: every cell must be a number ({exc}); encode "
                                 f"categories as numbers first") from None
    if values.dim() != 2 or values.shape[1] != len(names):
        raise ProtocolUsageError(f"{path}: rows must all have {len(names)} cells")
    labels = None
    if label_column is not None:
        j = names.index(label_column) if isinstance(label_column, str) else label_column
        labels = values[:, j].float()
        values = torch.cat([values[:, :j], values[:, j + 1:]], 1)
        names = names[:j] + names[j + 1:]
    return values.float(), labels, names
