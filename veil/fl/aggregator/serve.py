"""An aggregation server as a real process: ``veil run`` starts one per aggregator, and
they compute over veil's mutually authenticated TLS links.

On one host (throw-away certificates; 2 aggregators + semi2k's dealer)::

    veil run -n 2 -m veil.fl.aggregator.serve --spool /srv/veil-spool

Across organisations, each aggregator on its own machine with its own key
(docs/real-machines.md for the cluster file and ``veil certs``)::

    veil run --cluster cluster.toml --party 0 -m veil.fl.aggregator.serve --spool DIR
    veil run --cluster cluster.toml --party 1 -m veil.fl.aggregator.serve --spool DIR
    veil run --cluster cluster.toml --party dealer

Each process makes a fresh X25519 key pair (the private half never leaves it), publishes
the public half as ``agg-<rank>.pub`` in the spool, then serves rounds in order: it reads
``round-<r>.agg<rank>`` (:mod:`.spool`), opens its shares, and joins the other aggregators
in :func:`veil.fl.aggregator.aggregate` (sum, each adds its own Gaussian noise inside MPC,
reveal); aggregator 0 writes ``round-<r>.sum``. A file named ``stop`` in the spool ends
the loop. A malformed request makes this aggregator fail *inside* the MPC run, so the
others stop at once naming it (never a hang), and ``round-<r>.error<rank>`` tells the
Flower server why.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

from . import spool
from .mpc import AggregatorKeys, aggregate


def serve(spool_dir: pathlib.Path, aggregators: int, *, poll: float = 0.05,
          max_vector_len: int = 1 << 26, max_rounds: int | None = None) -> int:
    """Serve rounds until ``stop`` appears (or ``max_rounds``); returns rounds served."""
    from ...net.launch import env_rank
    rank = env_rank(aggregators)
    me = AggregatorKeys()
    servers: list[AggregatorKeys | None] = [None] * aggregators
    servers[rank] = me
    spool.write_atomic(spool.public_path(spool_dir, rank), me.public)
    seq = 0
    while max_rounds is None or seq < max_rounds:
        req = spool.request_path(spool_dir, seq + 1, rank)
        if not req.exists():
            if (spool_dir / "stop").exists():
                break
            time.sleep(poll)
            continue
        seq += 1
        try:
            rid, vlen, noise, sealed = spool.decode_request(req.read_bytes(), rank,
                                                            max_vector_len)
            bad = None
        except ValueError as e:
            rid, vlen, noise, sealed, bad = bytes(16), 1, 0.0, [], e
        if bad is not None:
            spool.write_atomic(spool.error_path(spool_dir, seq, rank), str(bad).encode())
            # Enter the MPC run anyway and fail there, so the peers stop now, naming us.
            import veil
            veil.run(_fail, str(bad), parties=aggregators, protocol="semi2k")
        total = aggregate(servers, sealed, noise_std=noise, round_id=rid, vector_len=vlen)
        if rank == 0:
            # Reveals to the Flower server the noisy sum only.
            spool.write_atomic(spool.result_path(spool_dir, seq),
                               total.numpy().astype("<f8").tobytes())
        req.unlink(missing_ok=True)
    return seq


def _fail(reason: str):
    raise ValueError(f"malformed aggregation request: {reason}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="veil run -n K -m veil.fl.aggregator.serve",
                                 description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--spool", required=True, help="folder shared with the Flower server")
    ap.add_argument("--aggregators", type=int, default=2, help="how many aggregators (2-5)")
    ap.add_argument("--max-rounds", type=int, help="exit after this many rounds")
    args = ap.parse_args(argv)
    if not 2 <= args.aggregators <= 5:
        ap.error("--aggregators must be 2..5")
    d = pathlib.Path(args.spool)
    if not d.is_dir():
        ap.error(f"spool folder {d} does not exist")
    import os
    if os.environ.get("VEIL_PARTY") is None:
        ap.error("start the aggregators with `veil run -n K -m veil.fl.aggregator.serve ...` "
                 "(one process per aggregator, TLS between them)")
    served = serve(d, args.aggregators, max_rounds=args.max_rounds)
    print(f"aggregator {os.environ['VEIL_PARTY']}: served {served} round(s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
