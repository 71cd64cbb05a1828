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

import json
import os
import sys

from ..comm import Communicator
from ..errors import PartyError, VeilError
from ..runtime import run_dealer
from .launch import Node, describe_failure, env_cluster
from .link import BYE, END, START


def serve() -> None:
    """Connect to every party, then serve runs until all parties have said goodbye."""
    cluster = env_cluster()
    n = cluster.n
    node = Node(cluster, n, float(os.environ.get("VEIL_TIMEOUT") or 60.0))
    hub = node.hub
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
            header = json.loads(bytes(heads[0][1]).decode())
            hub.timeout = float(header["timeout"])
            # Like the in-process dealer: no deadline while party 0 computes between
            # requests; a party that fails or dies still stops it at once.
            run_dealer(n, Communicator(n, n, dict(hub.links), None))
            for j in range(n):
                node.expect(j, END, "the end of the run", hub.timeout)
    except PartyError as exc:
        node.abort(exc)
        raise
    except BaseException as exc:
        node.abort(PartyError("dealer", f"failed: {describe_failure(exc)}"))
        raise


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
