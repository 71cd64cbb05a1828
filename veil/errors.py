"""Exceptions veil raises. Messages say what to change; they never carry secret values."""


class VeilError(Exception):
    """Base class of every error veil raises on purpose."""


class PartyError(VeilError):
    """A party (or the dealer) failed or stopped answering; names it and the cause."""

    def __init__(self, party: str, cause: str):
        self.party = party
        self.cause = cause
        super().__init__(f"{party}: {cause}")


class AbortedError(PartyError):
    """This party stopped because another party failed first."""


class RangeError(VeilError, ValueError):
    """A value is outside the range fixed-point encoding can hold safely."""


class ProtocolUsageError(VeilError, ValueError):
    """An operation was called with arguments the protocol cannot accept."""
