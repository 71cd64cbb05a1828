"""Correlated-randomness providers: return this party's raw ring/bit shares of a recipe.

Providers know recipes and channels, never user tensor types, so protocols and
providers do not import each other. A new provider (OT- or HE-based, 3-party) implements
`Provider.get` and nothing above it changes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import contextmanager

import torch

# veil.stats() keys of the dealer's look-ahead, equal at every party: requests made,
# served from the look-ahead, waited for (sent only when needed), predictions dropped,
# request plans followed from the plan store (veil.offline.planstore)
COUNTERS = ("dealer_requests", "dealer_ahead", "dealer_waits", "dealer_dropped",
            "dealer_plans_loaded")


class Provider(ABC):
    @abstractmethod
    def get(self, kind: str, **args) -> dict[str, torch.Tensor]:
        """This party's shares of one instance of material ``kind`` (see materials.py)."""

    def close(self) -> None:
        """Tell any helper process the run is over."""

    # Request plans (veil.offline.plan): optional, a provider without a look-ahead
    # ignores them. Every party must bracket the same runs with the same public tag.
    def begin_plan(self, tag: str) -> None:
        """A run of the graph named ``tag`` (public) starts: follow its plan if known."""

    def end_plan(self, complete: bool = True) -> None:
        """The run started by the matching `begin_plan` is over: keep its plan (and store
        it, if ``complete``: not a run that raised midway)."""

    @contextmanager
    def plan(self, tag: str):
        """``with provider.plan(tag):`` around one run of a graph (nests: the outermost
        run is planned)."""
        self.begin_plan(tag)
        done = False
        try:
            yield
            done = True
        finally:
            self.end_plan(done)

    def note_key(self, key: int) -> None:
        """A keyed mask numbered ``key`` was allocated without asking for material (the
        party a ``mask_to`` opens to holds a zero share of it): key bookkeeping only."""

    # Repeats (veil.offline.lookahead.Repeat): optional, like plans. A program that knows
    # its request sequence repeats a stretch it already ran (a graph's next layer) says
    # so, and a provider that works ahead predicts the repeat from its first request.
    def mark(self):
        """A public token for this point of the request sequence (None: no look-ahead,
        so nothing to hint)."""
        return None

    def predicting(self) -> bool:
        """Whether the next requests are already predicted (a hint would add nothing)."""
        return True

    def repeat(self, since, until, keymap: dict) -> None:
        """The next requests repeat those made between marks ``since`` and ``until``,
        mask keys of values from before ``since`` renamed by ``keymap`` (public: key
        numbers). Every party must hint the same repeats at the same points."""

    def counters(self) -> dict[str, int]:
        """Counts of this provider's work for `veil.stats` (the same keys for every
        provider: zero where there is no dealer)."""
        return dict.fromkeys(COUNTERS, 0)


class NoDealer(Provider):
    """The provider of protocols that make their randomness from pairwise PRGs (rep3)."""

    def __init__(self, protocol: str) -> None:
        self.protocol = protocol

    def get(self, kind: str, **args) -> dict[str, torch.Tensor]:
        raise RuntimeError(f"protocol {self.protocol!r} runs without a dealer; it asked for "
                           f"dealer material {kind!r} (a bug in the protocol)")
