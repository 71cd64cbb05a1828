"""Bounds on what a peer may make this party allocate: checked before anything is built.

Everything a peer sends is untrusted input. A shape it announces, a dealer request it
makes, the length in a frame header: each is a number that, taken on trust, would make
this party allocate (and zero) that much memory. These helpers turn such a number into a
validated value or raise a `PartyError` naming the peer that sent it.

``max_elements`` is `veil.Config.max_elements` (default `MAX_ELEMENTS`): the most
elements one tensor announced by a peer may have. A data frame may carry at most one
such tensor of int64 (`max_frame_bytes`).

>>> check_shape([3, 4], 100, "party 0")
(3, 4)
>>> check_shape([1 << 20, 1 << 20], 1 << 28, "party 0")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
veil.errors.PartyError: party 0: announced a tensor of 1099511627776 elements, more than ...
"""

from __future__ import annotations

from ..errors import PartyError

MAX_ELEMENTS = 1 << 28          # 2 GiB of int64 shares in one tensor
MAX_DIMS = 16                   # torch itself tops out at 25; nothing in veil needs more
CONTROL_MAX = 64 * 1024         # handshake, run start/end, abort, goodbye: small JSON
ITEM_BYTES = 8                  # the widest element a frame carries (an int64 share)


def max_frame_bytes(max_elements: int) -> int:
    """Largest data frame a party expects: one tensor of ``max_elements`` int64 values
    (JSON metadata is far smaller), and never less than a control frame."""
    return max(max_elements * ITEM_BYTES, CONTROL_MAX)


def check_count(value, limit: int, what: str, sender: str) -> int:
    """A non-negative int no larger than ``limit`` (bool is not an int here)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= limit:
        raise PartyError(sender, f"sent {what} = {_show(value)}, expected an integer in "
                                 f"0..{limit}")
    return value


def check_shape(shape, max_elements: int, sender: str, what: str = "a tensor") -> tuple:
    """A peer's announced shape as a tuple of ints, refused if malformed or too large.

    Call it on every shape that arrives from a peer before allocating anything of that
    shape (a shape announcement, a dealer request).
    """
    if not isinstance(shape, (list, tuple)) or len(shape) > MAX_DIMS:
        raise PartyError(sender, f"announced {what} with a malformed shape ({_show(shape)}): "
                                 f"expected a list of at most {MAX_DIMS} sizes")
    dims = tuple(check_count(d, max_elements, "a dimension size", sender) for d in shape)
    n = 1
    for d in dims:
        n *= d
    if n > max_elements:
        raise PartyError(sender, f"announced {what} of {n} elements, more than this party "
                                 f"accepts (max_elements={max_elements}); if that size is "
                                 f"meant, raise veil.Config(max_elements=...) at every party")
    return dims


def _show(value) -> str:
    # What a peer sent goes into our own error: bound it and keep it on one line.
    text = repr(value)
    text = "".join(c if c.isprintable() else "?" for c in text)
    return text if len(text) <= 60 else text[:57] + "..."
