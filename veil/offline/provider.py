"""Correlated-randomness providers: return this party's raw ring/bit shares of a recipe.

Providers know recipes and channels, never user tensor types, so protocols and
providers do not import each other. A new provider (OT- or HE-based, 3-party) implements
`Provider.get` and nothing above it changes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch


class Provider(ABC):
    @abstractmethod
    def get(self, kind: str, **args) -> dict[str, torch.Tensor]:
        """This party's shares of one instance of material ``kind`` (see materials.py)."""

    def close(self) -> None:
        """Tell any helper process the run is over."""


class NoDealer(Provider):
    """The provider of protocols that make their randomness from pairwise PRGs (rep3)."""

    def __init__(self, protocol: str) -> None:
        self.protocol = protocol

    def get(self, kind: str, **args) -> dict[str, torch.Tensor]:
        raise RuntimeError(f"protocol {self.protocol!r} runs without a dealer; it asked for "
                           f"dealer material {kind!r} (a bug in the protocol)")
