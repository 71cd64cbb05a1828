"""The `veil` command: run a script as real parties, make certificates, benchmark.

    veil run -n 3 train.py --epochs 2                  # 3 parties + dealer on this host
    veil run -n 3 --protocol rep3 train.py             # 3 parties, no dealer (rep3)
    veil run --cluster cluster.toml --party 1 train.py # one party of a multi-host run
    veil run --cluster cluster.toml --party dealer     # the dealer of that run
    veil certs --role party1 --out keys/               # this organisation's key + cert
    veil certs --pin party0.crt party1.crt dealer.crt --hosts H0 H1 HD --out cluster/
                                                       # cluster.toml pinning those certs
    veil certs --parties 2 --out certs/                # all keys at once (one trusted maker)
    veil bench --group core                            # python -m veil.bench
    veil sql --table t=0:t.parquet --table u=1:u.csv "SELECT …"   # SQL (veil[sql])

A script written for `veil.run(fn, parties=N)` runs unchanged: under `veil run` each
process runs ``fn`` for its own party only (see docs/real-machines.md).
"""

from __future__ import annotations

import argparse
import os
import sys

from .comm.netem import Network

# Options of `veil run` that take a value; everything from the script name on is the
# script's own command line, so `veil run -n 2 s.py -n 5` passes `-n 5` to s.py.
_VALUED = {"-n", "--parties", "--cluster", "--party", "--key", "--timeout",
           "--connect-timeout", "--grace", "--max-elements", "--network", "--protocol",
           "--plan-dir"}


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
    ap.add_argument("--protocol", help="the protocol veil.run uses by default (semi2k, "
                    "rep3, ...); rep3 needs no dealer (-n starts none; with --cluster, start "
                    "only the parties, each with --protocol rep3)")
    ap.add_argument("--insecure", action="store_true", help="plain TCP, NO encryption and NO "
                    "authentication: only for debugging on a trusted machine")
    ap.add_argument("--insecure-seed", action="store_true", help="honour veil.run(seed=...): "
                    "every mask and key then follows from the seed, so whoever knows it reads "
                    "every input; only to reproduce a run bit for bit while debugging")
    ap.add_argument("--insecure-protocol", action="store_true", help="allow a protocol "
                    "named insecure_* (e.g. insecure_reference), which shows every input to "
                    "every party: only for debugging")
    ap.add_argument("--tls-only", action="store_true", help="keep TLS for the whole "
                    "connection instead of switching to AES-GCM records after the handshake "
                    "(veil.net.aead; both are authenticated encryption, this one is slower)")
    ap.add_argument("--max-elements", type=int, help="largest tensor (elements) a peer may "
                    "announce or request (overrides Config.max_elements; default 2**28)")
    ap.add_argument("--network", help="emulate links: 'lan' (0.5 ms, 1 Gbit/s), 'wan' (40 ms, "
                    "100 Mbit/s) or '<latency>ms/<bandwidth>mbit' (overrides Config.network)")
    ap.add_argument("--plan-dir", help="keep the dealer's request plans of compiled graphs "
                    "in DIR/party<rank> (public request shapes, nothing secret), so a later "
                    "process predicts them from a graph's first run (overrides "
                    "Config.plan_dir; give it to every party or none)")
    return ap


def _insecure_env(opts) -> dict:
    """VEIL_* settings of the loud flags (each also printed by the process it affects)."""
    env = {}
    if opts.insecure_seed:
        env["VEIL_INSECURE_SEED"] = "1"
    if opts.insecure_protocol:
        env["VEIL_INSECURE_PROTOCOL"] = "1"
    if opts.max_elements is not None:
        if opts.max_elements < 1:
            raise SystemExit(f"veil run: --max-elements must be positive, got "
                             f"{opts.max_elements}")
        env["VEIL_MAX_ELEMENTS"] = str(opts.max_elements)
    if opts.network is not None:
        Network.parse(opts.network)               # a bad spec fails before any process
        env["VEIL_NETWORK"] = opts.network
    if opts.tls_only:
        env["VEIL_BULK"] = "tls"
    if opts.plan_dir is not None:
        env["VEIL_PLAN_DIR"] = os.path.abspath(opts.plan_dir)   # scripts may chdir
    return env


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
        if opts.protocol is not None:
            from .protocols import get_protocol, protocol_names
            if opts.protocol not in protocol_names():
                ap.error(f"--protocol must be one of {protocol_names()}, got {opts.protocol!r}")
            counts = get_protocol(opts.protocol).party_counts
            if counts is not None and opts.parties not in counts:
                ap.error(f"--protocol {opts.protocol} runs with -n "
                         f"{' or '.join(map(str, counts))}, got -n {opts.parties}")
        from .net.supervisor import run_local
        if opts.insecure:
            from .net.tls import warn_insecure
            warn_insecure()
        return run_local(opts.parties, target, insecure=opts.insecure,
                         connect_timeout=opts.connect_timeout, timeout=opts.timeout,
                         grace=opts.grace, extra_env=_insecure_env(opts),
                         protocol=opts.protocol)
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
    env.update(_insecure_env(opts))
    if opts.protocol is not None:
        from .protocols import get_protocol, protocol_names
        if opts.protocol not in protocol_names():
            ap.error(f"--protocol must be one of {protocol_names()}, got {opts.protocol!r}")
        if party == "dealer" and not get_protocol(opts.protocol).needs_dealer:
            ap.error(f"--protocol {opts.protocol} runs without a dealer: start only the parties")
        env["VEIL_PROTOCOL"] = opts.protocol
        if not get_protocol(opts.protocol).needs_dealer:
            env["VEIL_NO_DEALER"] = "1"          # parties do not wait for the dealer
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
    ap = argparse.ArgumentParser(
        prog="veil certs",
        usage="veil certs (--role ROLE | --pin CERT [CERT ...] | --parties N) --out DIR "
              "[options]",
        description="Make keys and certificates for `veil run --cluster`. Between "
                    "organisations: each runs --role on its own machine (its key never "
                    "leaves it), they exchange the .crt files only, and one of them runs "
                    "--pin to write the cluster file every party then checks and uses. "
                    "--parties makes every key at once: whoever runs it can impersonate any "
                    "party or be the dealer, so use it only where one person is trusted by "
                    "all (tests, your own machines).")
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--role", help="make this organisation's key and certificate: "
                      "partyK (K = 0, 1, ...) or dealer")
    mode.add_argument("--pin", nargs="+", metavar="CERT", help="write a cluster file "
                      "pinning these certificates (every party's and the dealer's)")
    mode.add_argument("--parties", type=int, help="all in one: a CA and every key (one "
                      "trusted maker only)")
    ap.add_argument("--out", required=True, help="directory to write into")
    ap.add_argument("--hosts", nargs="+", help="--pin/--parties: each party's address, then "
                    "the dealer's (or one for all; default 127.0.0.1)")
    ap.add_argument("--base-port", type=int, default=None, help="party i listens on "
                    "BASE+i (default 47100)")
    ap.add_argument("--days", type=int, default=365, help="certificate lifetime")
    ap.add_argument("--force", action="store_true", help="overwrite existing files (never "
                    "through a symbolic link)")
    opts = ap.parse_args(argv)
    from .net.certs import DEFAULT_BASE_PORT, make_certs, make_role, pin_cluster
    from .net.cluster import load_cluster, format_fingerprint
    from .errors import VeilError
    port = opts.base_port or DEFAULT_BASE_PORT
    try:
        if opts.role is not None:
            key, crt, fp = make_role(opts.out, opts.role, days=opts.days, force=opts.force)
            print(f"wrote {key} (private: keep it on this machine, never send it) and {crt}\n"
                  f"send {crt.name} to whoever writes the cluster file; its fingerprint is\n"
                  f"  {fp}\ncheck that this line appears for {opts.role} in the cluster file "
                  f"you get back")
            return 0
        if opts.pin is not None:
            path = pin_cluster(opts.out, opts.pin, hosts=opts.hosts, base_port=port,
                               force=opts.force)
            cluster = load_cluster(path)
            print(f"wrote {path}, pinning:")
            for r in range(cluster.n + 1):
                print(f"  {cluster.entry(r).name:>9}  "
                      f"{format_fingerprint(cluster.fingerprint(r))}")
            print("send this directory (it holds no key) to every organisation; each checks "
                  "its own fingerprint before starting")
            return 0
        path = make_certs(opts.out, opts.parties, hosts=opts.hosts, base_port=port,
                          days=opts.days, force=opts.force)
    except (ValueError, OSError, VeilError) as exc:
        print(f"veil certs: {exc}", file=sys.stderr)
        return 2
    print(f"wrote a CA, {opts.parties} party certificates, the dealer's, and {path}\n"
          f"whoever holds this directory holds every key: give each organisation its own "
          f".key only, keep ca.key offline; between organisations prefer --role and --pin")
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
