"""`veil.data`: a secret training set from data split across parties, and its batches.

* `vertical` / `vertical_csv`: each party holds some columns of the same rows, one
  party the labels;
* `horizontal` / `horizontal_csv`: each party holds some rows with all columns;
* `DataLoader`: mini-batches by public indices from a shared seed (`batch_order`);
* `split_indices`, `read_csv`, `agree_seed`: local helpers.
"""

from .loader import DataLoader, agree_seed, batch_order, read_csv, split_indices
from .split import SecretDataset, horizontal, horizontal_csv, vertical, vertical_csv

__all__ = ["SecretDataset", "vertical", "horizontal", "vertical_csv", "horizontal_csv",
           "DataLoader", "batch_order", "agree_seed", "split_indices", "read_csv"]
