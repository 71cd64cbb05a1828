"""Correlated randomness: PRGs, recipes of material, and providers (trusted dealer now)."""

from .dealer import TrustedDealerUnsafe, serve_dealer
from .materials import recipe, register_kind
from .prg import PRG, derived_seed, fresh_seed
from .provider import NoDealer, Provider

__all__ = ["NoDealer", "PRG", "Provider", "TrustedDealerUnsafe", "derived_seed", "fresh_seed", "recipe",
           "register_kind", "serve_dealer"]
