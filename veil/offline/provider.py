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

    def record(self) -> list | None:
        """Start noting this party's requests (kind, args) in a list, returned; None when
        the provider cannot ask ahead (then `ask_ahead` is never needed)."""
        return None

    def stop_recording(self) -> None:
        """Stop adding to the list `record` returned."""

    def drop_ahead(self) -> None:
        """Forget material asked ahead and not used (every party drew it, so the PRG
        streams stay in step): call when the loop that asked ahead ends early."""

    def ask_ahead(self, requests: list) -> None:
        """Have material for ``requests`` made now, before the calls that will use it.

        The next ``get`` calls must ask for exactly these, in this order: the caller runs
        a data-oblivious computation (e.g. one more chunk of the same size) whose requests
        depend only on shapes. A provider without a helper process ignores this.
        """


class NoDealer(Provider):
    """The provider of protocols that make their randomness from pairwise PRGs (rep3)."""

    def __init__(self, protocol: str) -> None:
        self.protocol = protocol

    def get(self, kind: str, **args) -> dict[str, torch.Tensor]:
        raise RuntimeError(f"protocol {self.protocol!r} runs without a dealer; it asked for "
                           f"dealer material {kind!r} (a bug in the protocol)")
