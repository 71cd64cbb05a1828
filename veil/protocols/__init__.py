"""Protocols: one kernel table each, registered here by name."""

from .base import Cost, Kernel, Protocol
from .reference import InsecureReference
from .rep3 import Rep3
from .semi2k import Semi2k

_PROTOCOLS: dict[str, type[Protocol]] = {}


def register_protocol(cls: type[Protocol]) -> type[Protocol]:
    """Make a protocol available to ``veil.run(protocol=name)``; names are unique."""
    if cls.name in _PROTOCOLS:
        raise ValueError(f"protocol {cls.name!r} is already registered")
    _PROTOCOLS[cls.name] = cls
    return cls


def get_protocol(name: str) -> type[Protocol]:
    try:
        return _PROTOCOLS[name]
    except KeyError:
        raise ValueError(f"unknown protocol {name!r}; choose one of {sorted(_PROTOCOLS)}") \
            from None


def protocol_names() -> list[str]:
    return sorted(_PROTOCOLS)


register_protocol(Semi2k)
register_protocol(InsecureReference)
register_protocol(Rep3)

__all__ = ["Cost", "Kernel", "Protocol", "Semi2k", "InsecureReference", "Rep3", "register_protocol",
           "get_protocol", "protocol_names"]
