"""`veil sql`: one query over Parquet / CSV files held by different parties.

    # all parties on this host, as threads (files readable here):
    veil sql --parties 2 --table orders=0:orders.parquet --table ads=1:ads.csv \\
        --to 1 "SELECT o.cat, SUM(d.b) AS s FROM orders o JOIN ads d ON o.id = d.id GROUP BY o.cat"
    # one OS process per party (same command on every party; each opens only its files):
    veil run -n 2 -m veil.cli sql --table orders=0:orders.parquet --table ads=1:ads.csv "SELECT …"
    veil run --cluster cluster.toml --party 1 -m veil.cli sql --table … "SELECT …"

``--table NAME=OWNER:PATH`` registers PATH (read only at party OWNER) as NAME. The
receiver (``--to``, default every party) prints the result as a table, or writes it to
``--out`` (.csv or .parquet).
"""

from __future__ import annotations

import argparse
import os
import sys


def _parse_table(spec: str):
    name, _, rest = spec.partition("=")
    owner, _, path = rest.partition(":")
    if not name or not owner.isdigit() or not path:
        raise argparse.ArgumentTypeError(f"--table wants NAME=OWNER:PATH, got {spec!r}")
    return name, int(owner), path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="veil sql", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sql", help="the query")
    ap.add_argument("--table", action="append", type=_parse_table, default=[],
                    metavar="NAME=OWNER:PATH", help="a table and the party that holds it")
    ap.add_argument("--to", type=int, default=None, help="the party that gets the result "
                    "(default: every party)")
    ap.add_argument("--parties", type=int, default=None, help="party count when not under "
                    "`veil run` (default 2; under `veil run` the cluster's)")
    ap.add_argument("--out", help="write the result here (.csv or .parquet) at the receiver")
    ap.add_argument("--progress", action="store_true", help="show a progress bar")
    args = ap.parse_args(argv)
    import veil
    parties = args.parties or 2
    if os.environ.get("VEIL_PARTY") is not None:
        from ..net.launch import env_cluster
        parties = env_cluster().n

    def job():
        db = veil.sql.Session()
        for name, owner, path in args.table:
            db.register(name, path if veil.rank() == owner else None, owner=owner)
        out = db.query(args.sql, reveal_to=args.to, progress=args.progress)
        if out is not None and (args.to is not None or veil.rank() == 0 or
                                os.environ.get("VEIL_PARTY") is not None):
            _emit(out, args.out)
        return None
    try:
        veil.run(job, parties=parties)
    except veil.VeilError as exc:
        print(f"veil sql: {exc}", file=sys.stderr)
        return 1
    return 0


def _emit(df, out: str | None) -> None:
    if out is None:
        print(df.to_string(index=False), flush=True)
    elif out.endswith(".parquet"):
        df.to_parquet(out, index=False)
    else:
        df.to_csv(out, index=False)


if __name__ == "__main__":
    sys.exit(main())
