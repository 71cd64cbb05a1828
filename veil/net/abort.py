"""What a failing party tells its peers, and how a peer's report is read.

An abort frame carries three fields and no free text::

    {"cause": 1, "reason": "failed", "error": "ValueError"}

``cause`` is the rank the sender says failed (itself, or a peer it saw fail), ``reason``
one of the fixed codes below, ``error`` an exception class name. The receiver renders its
own sentence from them and attributes it to the *sender*: a peer can report what it saw,
but cannot make this party blame a third party, print text of its choosing, or carry the
failing party's error message (which may hold private values: it stays in that party's
own output). A frame that does not parse is its sender's fault.
"""

from __future__ import annotations

import json
import re

from ..errors import AbortedError, PartyError

# The reasons a peer may give, and the words this party prints for each.
REASONS = {
    "failed": "failed",
    "lost": "closed its connection unexpectedly",
    "timeout": "stopped answering (timeout)",
    "step": "sent something the others did not expect (out of step, or malformed)",
}
_CLASS = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


def error_class(exc: BaseException) -> str:
    """The class name peers may see (a public fact: no value can hide in it)."""
    name = type(exc).__name__
    return name if _CLASS.fullmatch(name) else "Exception"


def encode_abort(cause: int, reason: str, error: str = "") -> bytes:
    if reason not in REASONS:
        reason = "failed"
    if error and not _CLASS.fullmatch(error):
        error = "Exception"
    return json.dumps({"cause": int(cause), "reason": reason, "error": error}).encode()


def describe(cause_name: str, reason: str, error: str, first_hand: bool) -> str:
    what = REASONS[reason] + (f": {error}" if error else "")
    return f"stopped this run: {what}" if first_hand else \
        f"stopped this run: it reports that {cause_name} {what}"


def parse_abort(body, sender: int, sender_name: str, names: dict[int, str]) -> AbortedError:
    """The sender's report as an `AbortedError` naming the sender; raise `LinkLost` (the
    sender's fault) if the frame is not a well-formed report."""
    from .link import LinkLost                      # (link imports nothing from here)
    try:
        info = json.loads(bytes(body).decode("ascii"))
        cause, reason, error = info["cause"], info["reason"], info["error"]
        ok = (isinstance(info, dict) and len(info) == 3 and isinstance(cause, int)
              and not isinstance(cause, bool) and (cause in names or cause == sender)
              and reason in REASONS and isinstance(error, str)
              and (error == "" or _CLASS.fullmatch(error)))
    except (ValueError, TypeError, KeyError, RecursionError):
        ok = False
    if not ok:
        raise LinkLost("sent an abort message that does not parse", "step")
    first_hand = cause == sender
    err = AbortedError(sender_name, describe(names.get(cause, sender_name), reason, error,
                                             first_hand))
    err.report = (cause, reason, error)             # what this party passes on, if it must
    err.relayed = not first_hand
    return err


def report_of(exc: BaseException, me: int, rank_of_name: dict[str, int]) -> tuple[int, str, str]:
    """(cause, reason, error) to send peers for this party's failure ``exc``."""
    if isinstance(exc, PartyError):
        if "report" in exc.__dict__:                # passing on a peer's report
            return exc.report
        cause = rank_of_name.get(exc.party)
        if cause is not None and cause != me:       # a peer this party saw fail
            return cause, exc.__dict__.get("reason", "step"), ""
        inner = exc.__cause__ if exc.__cause__ is not None else exc
        return me, "failed", error_class(inner)
    return me, "failed", error_class(exc)
