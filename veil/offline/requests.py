"""The dealer's check of a party's request, before it draws or computes anything.

A request arrives as JSON from party 0: ``{"kind": "beaver", "args": {...}}``. Taken on
trust, its shapes would size the dealer's allocations and its ``params`` would go into
``torch.nn.functional.conv2d``. So a request must be a known kind with arguments of
plain types (ints, short identifiers, lists of ints, one level of ``params``), every
shape within ``max_elements``, and every part of the material it asks for too; anything
else is refused with an error naming the sender (and never echoing what it sent).

>>> parse_request({"kind": "trunc", "args": {"shape": [2, 3], "frac": 16}}, 100, "party 0")
('trunc', {'shape': (2, 3), 'frac': 16})
"""

from __future__ import annotations

import re

from ..comm.limits import MAX_DIMS, check_count, check_shape
from ..errors import PartyError
from ..ring import numel
from .materials import Recipe, recipe

MAX_ARGS = 8
MAX_KEY = (1 << 62) - 1        # keyed masks are numbered by a per-run counter
CONV_PARAMS = ("stride", "padding", "dilation", "groups")
_WORD = re.compile(r"[a-z][a-z0-9_]{0,15}")


def _value(key: str, v, max_elements: int, sender: str):
    if key.startswith("shape"):
        return check_shape(v, max_elements, sender, f"a dealer request's {key}")
    if key == "key" or key.startswith("key_"):  # a keyed mask's number (materials.py)
        return check_count(v, MAX_KEY, f"a dealer request's {key}", sender)
    if isinstance(v, bool) or v is None:
        return v
    if isinstance(v, int):
        return check_count(v, max_elements, f"a dealer request's {key}", sender)
    if isinstance(v, str) and _WORD.fullmatch(v):
        return v
    if isinstance(v, (list, tuple)) and len(v) <= MAX_DIMS:
        return tuple(check_count(d, max_elements, f"a dealer request's {key}", sender)
                     for d in v)
    raise PartyError(sender, f"sent a dealer request whose {key} is not a small int, "
                             f"identifier or list of ints")


def _params(v, max_elements: int, sender: str) -> dict:
    if v is None:
        return {}
    if not isinstance(v, dict) or not set(v) <= set(CONV_PARAMS):
        raise PartyError(sender, f"sent a dealer request whose params are not a subset of "
                                 f"{CONV_PARAMS}")
    return {k: _value(k, x, max_elements, sender) for k, x in v.items()}


def parse_request(req, max_elements: int, sender: str) -> tuple[str, dict]:
    """(kind, validated args) of a request, or a `PartyError` naming ``sender``."""
    if not isinstance(req, dict) or set(req) != {"kind", "args"} \
            or not isinstance(req["kind"], str) or not isinstance(req["args"], dict):
        raise PartyError(sender, "sent a dealer request that is not {kind, args}")
    kind, raw = req["kind"], req["args"]
    if len(raw) > MAX_ARGS or not all(isinstance(k, str) and _WORD.fullmatch(k) for k in raw):
        raise PartyError(sender, "sent a dealer request with malformed argument names")
    args = {k: (_params(v, max_elements, sender) if k == "params"
                else _value(k, v, max_elements, sender)) for k, v in raw.items()}
    return kind, args


def checked_recipe(kind: str, args: dict, max_elements: int, sender: str, parties: int
                   ) -> Recipe:
    """The recipe for a validated request, refused if it is not one the dealer can make,
    if any part of it (derived parts included) exceeds ``max_elements``, or if a keyed
    part names a party outside a run of ``parties`` (a mask opened to one party alone:
    semi2k ``mask_to``)."""
    try:
        rec = recipe(kind, args)
    except Exception:                  # noqa: BLE001 - unknown kind, wrong args, bad shapes
        raise PartyError(sender, f"sent a dealer request the dealer cannot make (kind "
                                 f"{kind[:32]!r} with these arguments)") from None
    for part in (*rec.randoms, *rec.derived, *rec.keyed):
        if numel(part.shape) > max_elements:
            raise PartyError(sender, f"requested {numel(part.shape)} elements of material, "
                                     f"more than the dealer serves (max_elements="
                                     f"{max_elements}; raise it with VEIL_MAX_ELEMENTS / "
                                     f"`veil run --max-elements`)")
        if part.skip is not None and not (parties > 1 and 0 <= part.skip < parties):
            raise PartyError(sender, f"sent a dealer request for a mask opened to party "
                                     f"{part.skip} alone; this run has parties "
                                     f"0..{parties - 1}, and such a mask needs 2 parties "
                                     f"or more")
    return rec
