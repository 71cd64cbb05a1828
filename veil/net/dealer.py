"""The dealer as its own process: ``python -m veil.net.dealer`` (started by `veil run`).

Trust it needs (see veil/offline/dealer.py): the dealer generates every mask and triple,
so it must be trusted by all parties not to collude with any of them, and run by someone
other than the parties (or on hardware they all trust). It never sees inputs, outputs or
online traffic: it only receives each party's dealer seed and party 0's requests (kind
and shape: public). It does not run the user's script, so it needs neither the data nor
the code; it connects out to every party, so its host needs no open port.

It serves one run per `veil.run` call of the parties, then exits 0 once every party has
said goodbye, or 1 (naming the party and the cause) as soon as any run fails.
"""

from __future__ import annotations

import math
import os
import sys

from ..comm import Communicator
from ..comm.limits import CONTROL_MAX, MAX_ELEMENTS
from ..comm.netem import Network
from ..errors import PartyError, VeilError
from ..runtime import run_dealer
from .launch import Node, env_cluster, parse_control
from .link import BYE, END, START


def serve() -> None:
    """Connect to every party, then serve runs until all parties have said goodbye."""
    cluster = env_cluster()
    n = cluster.n
    max_elements = int(os.environ.get("VEIL_MAX_ELEMENTS") or MAX_ELEMENTS)
    node = Node(cluster, n, float(os.environ.get("VEIL_TIMEOUT") or 60.0))
    hub = node.hub
    # The dealer only ever receives seeds and small JSON requests: nothing bigger is let in.
    hub.set_limits(CONTROL_MAX // 8)
    try:
        while True:
            # Between runs the parties may compute in plaintext for as long as they like:
            # no timeout here, but a party that dies is still seen at once.
            heads = [hub.read(hub.links[j], None) for j in range(n)]
            kinds = {k for k, _ in heads}
            if kinds == {BYE}:
                hub.close()
                return
            if kinds != {START}:
                j = next(j for j, (k, _) in enumerate(heads) if k != START)
                raise PartyError(cluster.entry(j).name,
                                 "left while the others started another run: do all parties "
                                 "make the same veil.run calls?")
            header = parse_control(heads[0][1], cluster.entry(0).name, "the start of a run")
            hub.timeout = _timeout(header, cluster.entry(0).name)
            # Like the in-process dealer: no deadline while party 0 computes between
            # requests; a party that fails or dies still stops it at once.
            comm = Communicator(n, n, dict(hub.links), None, _network(header))
            run_dealer(n, comm, max_elements)
            for j in range(n):
                node.expect(j, END, "the end of the run", hub.timeout)
    except BaseException as exc:          # peers learn the class and who, never the text
        node.abort(exc)
        raise


def _timeout(header, sender: str) -> float:
    t = header.get("timeout") if header else None
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 < t < math.inf:
        raise PartyError(sender, "sent a run start without a valid timeout")
    return float(t)


def _network(header: dict):
    """The run's emulated network (party 0's header: a spec `Network.parse` checks)."""
    spec = header.get("config", {}).get("network") if isinstance(header, dict) else None
    return None if spec is None else Network.parse(spec)


def main() -> int:
    try:
        serve()
    except VeilError as exc:
        print(f"veil dealer: {exc}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
