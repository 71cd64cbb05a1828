"""The dealer's memory of keyed masks it reconstructs again and again (model weights).

A product with a fixed operand (veil/tensor/fixed.py) asks the dealer for
``beaver_keyed``: c = op(A, B), with B the keyed mask of a weight. The dealer keeps no
state, so it regenerates B from every party's seed on every request — for GPT-2 small
that is ~160 M values drawn twice and summed per generated token, seconds of AES and
memory traffic on the critical path. The mask is the same every time (same key, same
seeds), so the dealer may keep the reconstructed value instead: a mask seen a second
time is kept, within ``budget`` bytes.

Nothing changes for the parties or the protocol: the cached tensor is bit-identical to a
fresh draw. The dealer knew every mask anyway (it made them), so keeping them discloses
nothing new; it only costs the dealer memory (``VEIL_DEALER_CACHE_MB``, default 2048;
0 turns the cache off).

Admission, not LRU: a model's weights are used in a cycle (every forward), where an LRU
smaller than the cycle would evict each weight just before its next use. So a mask is
admitted while there is room, and only masks unused for the last ``STALE_REQUESTS``
requests make room for new ones.

>>> from veil.offline.prg import PRG
>>> prgs = [PRG(bytes(16)), PRG(bytes([1] * 16))]
>>> make = lambda: sum(p.fork("mask|7|2x3").ring((2, 3)) for p in prgs)
>>> cache = KeyedCache(1 << 20)
>>> first, again = cache.plain("mask|7|2x3", make), cache.plain("mask|7|2x3", make)
>>> bool((first == again).all()), len(cache), cache.plain("mask|7|2x3", make) is again
(True, 1, True)
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable

import torch

from ..ring import numel

DEFAULT_MB = 2048
STALE_REQUESTS = 1 << 15    # ~20 BERT-base forwards; a weight unused that long may go
SEEN_MAX = 1 << 16          # labels remembered as drawn once (admitted on a second draw)


def default_budget() -> int:
    """The dealer's cache size in bytes (``VEIL_DEALER_CACHE_MB``, default 2048)."""
    raw = os.environ.get("VEIL_DEALER_CACHE_MB", "")
    try:
        mb = int(raw) if raw.strip() else DEFAULT_MB
    except ValueError:
        raise ValueError(f"VEIL_DEALER_CACHE_MB must be a whole number of MB, got "
                         f"{raw[:20]!r}") from None
    if mb < 0:
        raise ValueError("VEIL_DEALER_CACHE_MB must be >= 0")
    return mb << 20


class KeyedCache:
    """Reconstructed keyed masks by label, within ``budget`` bytes (see module doc)."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.used = 0
        self.now = 0                                   # requests served (the clock)
        self._kept: OrderedDict[str, list] = OrderedDict()  # label -> [tensor, last use]
        self._seen: OrderedDict[str, None] = OrderedDict()
        self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._kept)

    def tick(self) -> None:
        """One request served (the staleness clock)."""
        self.now += 1

    def plain(self, label: str, make: Callable[[], torch.Tensor]) -> torch.Tensor:
        """The reconstructed keyed mask named ``label`` (``make()`` reconstructs it).
        The tensor returned may be the kept one: callers must not modify it."""
        got = self._kept.get(label)
        if got is not None:
            got[1] = self.now
            self._kept.move_to_end(label)
            self.hits += 1
            return got[0]
        self.misses += 1
        out = make()
        self._admit(label, out)
        return out

    def _admit(self, label: str, value: torch.Tensor) -> None:
        if label not in self._seen:             # drawn once: remember that, keep nothing
            self._seen[label] = None
            if len(self._seen) > SEEN_MAX:
                self._seen.popitem(last=False)
            return
        size = numel(value.shape) * value.element_size()
        if size > self.budget:
            return
        while self.used + size > self.budget:
            label0, (old, last) = next(iter(self._kept.items()))   # least recently used
            if self.now - last < STALE_REQUESTS:
                return                           # all in use: keep what is kept
            del self._kept[label0]
            self.used -= numel(old.shape) * old.element_size()
        self._kept[label] = [value, self.now]
        self.used += size
