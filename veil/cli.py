"""The `veil` command: run a script as real parties, make certificates, benchmark.

    veil run -n 3 train.py --epochs 2                  # 3 parties + dealer on this host
    veil run --cluster cluster.toml --party 1 train.py # one party of a multi-host run
    veil run --cluster cluster.toml --party dealer     # the dealer of that run
    veil certs --parties 2 --out certs/                # CA, keys, certs, cluster.toml
    veil bench --group core                            # python -m veil.bench
    veil sql --table t=0:t.parquet --table u=1:u.csv "SELECT …"   # SQL (veil[sql])

A script written for `veil.run(fn, parties=N)` runs unchanged: under `veil run` each
process runs ``fn`` for its own party only (see docs/real-machines.md).
"""

from __future__ import annotations

import argparse
import os
import sys

# Options of `veil run` that take a value; everything from the script name on is the
# script's own command line, so `veil run -n 2 s.py -n 5` passes `-n 5` to s.py.
_VALUED = {"-n", "--parties", "--cluster", "--party", "--key", "--timeout",
           "--connect-timeout", "--grace"}


def _run_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="veil run", usage="veil run (-n N | --cluster FILE --party P) [options] "
                               "(script.py | -m module) [args ...]",
        description="Run a veil script as real parties: one OS process per party, over "
                    "mutually authenticated TLS 1.3.")
    ap.add_argument("-n", "--parties", type=int, help="start N parties and a dealer on this "
                    "host (loopback, throw-away certificates)")
    ap.add_argument("--cluster", help="cluster file (veil certs makes one); start one party")
    ap.add_argument("--party", help="which party of --cluster to start: a rank or 'dealer'")
    ap.add_argument("--key", help="this party's private key (default: its cert with .key)")
    ap.add_argument("--timeout", type=float, help="seconds a party waits for a peer's "
                    "message before it stops, naming the peer (overrides Config.timeout)")
    ap.add_argument("--connect-timeout", type=float, help="seconds to wait for every peer to "
                    "come up (default 120)")
    ap.add_argument("--grace", type=float, default=5.0, help="-n only: after a failure, "
                    "seconds the others get to report before being stopped (default 5)")
    ap.add_argument("--insecure", action="store_true", help="plain TCP, NO encryption and NO "
                    "authentication: only for debugging on a trusted machine")
    return ap


def _split(argv: list[str]) -> tuple[list[str], list[str]]:
    """(our options, target): target is [script, args…] or [-m, module, args…]."""
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "-m":
            return argv[:i], argv[i:]
        if a.startswith("-") and a != "-":
            i += 2 if a in _VALUED else 1
            continue
        return argv[:i], argv[i:]
    return argv, []


def cmd_run(argv: list[str]) -> int:
    ours, target = _split(argv)
    ap = _run_parser()
    opts = ap.parse_args(ours)
    if (opts.parties is None) == (opts.cluster is None):
        ap.error("give either -n N (all parties here) or --cluster FILE --party P (one party)")
    if target[:1] == ["-m"] and len(target) < 2:
        ap.error("-m needs a module name")
    if target and target[0] != "-m" and not os.path.isfile(target[0]):
        ap.error(f"script {target[0]!r} not found")
    if opts.parties is not None:
        if not target:
            ap.error("name the script to run: veil run -n N script.py [args]")
        if opts.party or opts.key:
            ap.error("--party/--key go with --cluster; -n makes its own certificates")
        if opts.parties < 2:
            ap.error(f"-n must be at least 2, got {opts.parties}")
        from .net.supervisor import run_local
        if opts.insecure:
            from .net.tls import warn_insecure
            warn_insecure()
        return run_local(opts.parties, target, insecure=opts.insecure,
                         connect_timeout=opts.connect_timeout, timeout=opts.timeout,
                         grace=opts.grace)
    if opts.party is None:
        ap.error("--cluster needs --party P (a rank, or 'dealer')")
    return _run_one(opts, target, ap)


def _run_one(opts, target: list[str], ap) -> int:
    """This host's party of a cluster: become the script's process (or the dealer)."""
    from .net.cluster import load_cluster
    from .errors import VeilError
    try:
        cluster = load_cluster(opts.cluster)
    except VeilError as exc:
        print(f"veil run: {exc}", file=sys.stderr)
        return 2
    party = opts.party
    if party != "dealer" and not (party.isdigit() and int(party) < cluster.n):
        ap.error(f"--party must be 0..{cluster.n - 1} or 'dealer' for {opts.cluster}, "
                 f"got {party!r}")
    env = {"VEIL_PARTY": party, "VEIL_CLUSTER": str(cluster.path), "PYTHONUNBUFFERED": "1"}
    if opts.key:
        env["VEIL_KEY"] = os.path.abspath(opts.key)
    if opts.insecure:
        env["VEIL_INSECURE"] = "1"
    if opts.connect_timeout is not None:
        env["VEIL_CONNECT_TIMEOUT"] = str(opts.connect_timeout)
    if opts.timeout is not None:
        env["VEIL_TIMEOUT"] = str(opts.timeout)
    # Only these flags set VEIL_* (no plain TCP from a stray VEIL_INSECURE in the shell).
    for k in [k for k in os.environ if k.startswith("VEIL_")]:
        del os.environ[k]
    os.environ.update(env)
    if party == "dealer":
        if target:
            print("veil run: the dealer does not run the script; ignoring "
                  f"{' '.join(target)}", file=sys.stderr)
        from .net.dealer import main as dealer_main
        return dealer_main()
    if not target:
        ap.error("name the script to run: veil run --cluster FILE --party P script.py [args]")
    # Take the port now, before the script spends time loading data: a port in use is
    # reported at once, and peers' connections queue until the script reaches veil.run.
    from .net.connect import listen
    try:
        sock = listen(cluster, int(party))
    except VeilError as exc:
        print(f"veil run: {exc}", file=sys.stderr)
        return 2
    sock.set_inheritable(True)
    os.environ["VEIL_LISTEN_FD"] = str(sock.fileno())
    # Replace this process with `python script.py args`: same sys.path, signals, exit code.
    os.execv(sys.executable, [sys.executable, "-u", *target])
    return 0  # pragma: no cover


def cmd_certs(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="veil certs", description="Create a CA, one key and "
                                 "certificate per party and for the dealer, and a cluster file.")
    ap.add_argument("--parties", type=int, required=True, help="number of parties (>= 2)")
    ap.add_argument("--out", required=True, help="directory to write into")
    ap.add_argument("--hosts", nargs="+", help="each party's address, then the dealer's "
                    "(or one for all; default 127.0.0.1)")
    ap.add_argument("--base-port", type=int, default=None, help="party i listens on "
                    "BASE+i (default 47100)")
    ap.add_argument("--days", type=int, default=365, help="certificate lifetime")
    ap.add_argument("--force", action="store_true", help="overwrite existing files")
    opts = ap.parse_args(argv)
    from .net.certs import DEFAULT_BASE_PORT, make_certs
    try:
        path = make_certs(opts.out, opts.parties, hosts=opts.hosts,
                          base_port=opts.base_port or DEFAULT_BASE_PORT, days=opts.days,
                          force=opts.force)
    except (ValueError, FileExistsError) as exc:
        print(f"veil certs: {exc}", file=sys.stderr)
        return 2
    print(f"wrote CA, {opts.parties} party certificates, the dealer's, and {path}\n"
          f"give each organisation its own .key only; keep ca.key offline")
    return 0


def cmd_bench(argv: list[str]) -> int:
    from .bench.__main__ import main as bench_main
    return bench_main(argv)


def cmd_sql(argv: list[str]) -> int:
    from .sql.cli import main as sql_main
    return sql_main(argv)


COMMANDS = {"run": cmd_run, "certs": cmd_certs, "bench": cmd_bench}
COMMANDS["sql"] = cmd_sql


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print(__doc__.strip(), file=sys.stderr if argv and argv[0] not in ("-h", "--help")
              else sys.stdout)
        if argv and argv[0] not in ("-h", "--help"):
            print(f"\nveil: unknown command {argv[0]!r}; use one of: {', '.join(COMMANDS)}",
                  file=sys.stderr)
            return 2
        return 0
    return COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main())
