"""Build one secret training set from data split across the parties.

* `vertical`: every party holds some feature columns of the same rows (aligned, e.g.
  after a private set intersection on a shared key); one party also holds the labels.
* `horizontal`: every party holds some rows with all the columns (and their labels).

Every party calls the same function with *its own* local tensor (or ``None`` where it
holds nothing of that kind). What becomes public is the layout only: each party's
column count (vertical) or row count (horizontal), and the dtype. The values are
secret-shared by their owner, so no party's data leaves it in the clear.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..context import current
from ..errors import ProtocolUsageError
from ..tensor import SecretTensor, cat, tensor


@dataclass
class SecretDataset:
    """Secret features ``X`` (rows × columns), secret labels ``y``, and the public layout.

    ``columns[p]`` / ``rows[p]``: how many columns / rows party p contributed (public).
    Rows of a horizontal set are in party order: party 0's rows first.
    """
    X: SecretTensor
    y: SecretTensor | None
    layout: str
    columns: tuple
    rows: tuple
    label_owner: int | None = None

    def __len__(self) -> int:
        return self.X.shape[0]

    def __getitem__(self, idx):
        # Public indices: a local gather of each party's shares, no traffic.
        return self.X[idx], (self.y[idx] if self.y is not None else None)

    def __repr__(self) -> str:
        return (f"SecretDataset({self.layout}, rows={len(self)}, columns={self.X.shape[1]}, "
                f"per party: {self.columns if self.layout == 'vertical' else self.rows})")


def _as_float(t, what: str) -> torch.Tensor:
    t = t if isinstance(t, torch.Tensor) else torch.as_tensor(t)
    if t.dim() == 1 and what == "features":
        t = t.unsqueeze(1)
    if t.dim() != 2 and what == "features":
        raise ProtocolUsageError(f"local features must be a 2-D (rows, columns) tensor, got "
                                 f"shape {tuple(t.shape)}")
    return t


def _labels(labels, num_classes):
    """Local labels as the float tensor that gets shared (one-hot if ``num_classes``)."""
    y = labels if isinstance(labels, torch.Tensor) else torch.as_tensor(labels)
    if num_classes is not None:
        if y.is_floating_point() and not torch.equal(y, y.round()):
            raise ProtocolUsageError("labels with num_classes must be class indices")
        if y.numel() and (y.min() < 0 or y.max() >= num_classes):
            raise ProtocolUsageError(f"class labels must lie in 0..{num_classes - 1}")
        # One-hot at the owner, before sharing: the loss then needs no secret comparison.
        return F.one_hot(y.long().reshape(-1), num_classes).float()
    return y.float()


def _share_each(local, what: str, transform):
    """Every party shares its own tensor (a 0-size one where it has none)."""
    ctx = current()
    parts = []
    for p in range(ctx.world_size):
        mine = None
        if ctx.rank == p:
            mine = transform(local) if local is not None else torch.zeros(0, 0)
        # Discloses party p's shape (its row / column count: the public layout).
        parts.append(tensor(mine, owner=p))
    return parts


def vertical(features, labels=None, *, label_owner: int | None,
             num_classes: int | None = None) -> SecretDataset:
    """Join column blocks: party p passes its (rows, columns_p) tensor, or None.

    The label owner also passes ``labels`` (others pass None); with ``num_classes``
    they are one-hot encoded at the owner before sharing.

    >>> import torch, veil
    >>> def f():
    ...     r = veil.rank()
    ...     mine = torch.full((4, 2 + r), float(r))          # party r: 2 + r columns
    ...     ds = veil.data.vertical(mine, torch.ones(4) if r == 1 else None, label_owner=1)
    ...     return ds.columns, ds.X.shape
    >>> veil.run(f, parties=2, seed=0)[0]
    ((2, 3), torch.Size([4, 5]))
    """
    ctx = current()
    if label_owner is not None and not (isinstance(label_owner, int)
                                        and 0 <= label_owner < ctx.world_size):
        raise ProtocolUsageError(f"label_owner must be a party in 0..{ctx.world_size - 1} "
                                 f"(or None: no labels)")
    if (labels is not None) != (ctx.rank == label_owner):
        raise ProtocolUsageError(
            f"party {ctx.rank}: only the label owner (party {label_owner}) passes labels; "
            f"the others pass labels=None")
    parts = _share_each(features, "features", lambda t: _as_float(t, "features").float())
    kept = [t for t in parts if t.numel()]
    if not kept:
        raise ProtocolUsageError("no party passed any feature columns")
    rows = {tuple(t.shape)[0] for t in kept}
    if len(rows) != 1:
        raise ProtocolUsageError(
            f"vertical split needs the same rows at every party; row counts per party: "
            f"{[t.shape[0] if t.numel() else 0 for t in parts]}. Align the rows first "
            f"(same order, same count)")
    n = rows.pop()
    y = None
    if label_owner is not None:               # every party joins the label sharing
        mine = _labels(labels, num_classes) if ctx.rank == label_owner else None
        # Discloses the label tensor's shape (rows, and classes if one-hot).
        y = tensor(mine, owner=label_owner)
        if y.shape[0] != n:
            raise ProtocolUsageError(f"labels have {y.shape[0]} rows, features {n}")
    X = cat(kept, dim=1) if len(kept) > 1 else kept[0]
    return SecretDataset(X, y, "vertical", tuple(t.shape[1] if t.numel() else 0 for t in parts),
                         (n,), label_owner)


def horizontal(features, labels=None, *, num_classes: int | None = None) -> SecretDataset:
    """Stack row blocks: party p passes its (rows_p, columns) tensor and its labels, or
    None for both if it holds no rows. Rows end up in party order.

    >>> import torch, veil
    >>> def f():
    ...     r = veil.rank()
    ...     x, y = torch.randn(3 + r, 4), torch.randint(0, 3, (3 + r,))
    ...     ds = veil.data.horizontal(x, y, num_classes=3)
    ...     return ds.rows, ds.y.shape
    >>> veil.run(f, parties=3, seed=0)[0]
    ((3, 4, 5), torch.Size([12, 3]))
    """
    if (features is None) != (labels is None):
        raise ProtocolUsageError("pass both features and labels for your rows, or neither")
    xs = _share_each(features, "features", lambda t: _as_float(t, "features").float())
    kept = [t for t in xs if t.numel()]
    if not kept:
        raise ProtocolUsageError("no party passed any rows")
    cols = {t.shape[1] for t in kept}
    if len(cols) != 1:
        raise ProtocolUsageError(f"horizontal split needs the same columns at every party; "
                                 f"columns per party: {[tuple(t.shape) for t in xs]}")
    ys = _share_each(labels, "labels", lambda t: _labels(t, num_classes))
    ys = [y for y, x in zip(ys, xs) if x.numel()]
    for p, (x, y) in enumerate(zip(kept, ys)):
        if y.shape[0] != x.shape[0]:
            raise ProtocolUsageError(f"a party passed {y.shape[0]} labels for "
                                     f"{x.shape[0]} rows")
    X = cat(kept, dim=0) if len(kept) > 1 else kept[0]
    y = cat(ys, dim=0) if len(ys) > 1 else ys[0]
    return SecretDataset(X, y, "horizontal", (X.shape[1],),
                         tuple(t.shape[0] if t.numel() else 0 for t in xs))


def vertical_csv(path, *, label_owner: int | None, label_column=None,
                 num_classes: int | None = None) -> SecretDataset:
    """`vertical` from each party's own CSV file (``path=None`` at a party with no
    columns); the label owner names its ``label_column``."""
    from .loader import read_csv
    feats = labels = None
    if path is not None:
        feats, labels, _ = read_csv(path, label_column if current().rank == label_owner else None)
    return vertical(feats, labels, label_owner=label_owner, num_classes=num_classes)


def horizontal_csv(path, *, label_column, num_classes: int | None = None) -> SecretDataset:
    """`horizontal` from each party's own CSV file of rows (``path=None``: no rows)."""
    from .loader import read_csv
    feats = labels = None
    if path is not None:
        feats, labels, _ = read_csv(path, label_column)
    return horizontal(feats, labels, num_classes=num_classes)
