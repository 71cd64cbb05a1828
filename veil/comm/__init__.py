"""Transport layer: channels (in-memory, TCP+TLS) behind one metered Communicator."""

from .channel import Abort, Channel, MemoryChannel, party_name
from .communicator import OFFLINE, ONLINE, Communicator, Stats

__all__ = ["Abort", "Channel", "MemoryChannel", "Communicator", "Stats", "ONLINE", "OFFLINE",
           "party_name"]
