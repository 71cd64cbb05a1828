"""PSI alone (group ``psi``): N x N keys, half of them common, per protocol.

Each size and protocol runs as two OS processes (``veil run -n 2``, TLS between the
parties), so the parties do not share a GIL. Reported per party: seconds (fastest of
``--repeat``), bytes sent (veil's link plus, for RR22, libpsi's own connection, counted by
a relay the benchmark puts in front of the peer's worker), rounds on veil's link, peak RSS.

    python -m veil.bench --group psi [--docs]            # the table in docs/benchmarks.md
    python -m veil.bench.psi_bench --keys 1e6 --protocol rr22
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import pathlib
import resource
import socket
import subprocess
import sys
import threading
import time

import numpy as np

from ..docs_markers import markdown_table, replace_marked

SIZES = {"rr22": (10 ** 5, 10 ** 6, 10 ** 7), "ecdh": (10 ** 4, 10 ** 5)}
DOCS = pathlib.Path(__file__).resolve().parents[2] / "docs" / "benchmarks.md"
BEGIN, END = "<!-- bench:psi:begin -->", "<!-- bench:psi:end -->"


class Relay:
    """Counts the bytes of TCP connections to one address, each way."""

    def __init__(self, target: str, capture: list | None = None) -> None:
        self.capture = capture                   # a list to keep every chunk in (tests)
        host, port = target.rsplit(":", 1)
        self.target = (host, int(port))
        self.srv = socket.create_server(("127.0.0.1", 0))
        self.up = self.down = 0                  # client→target, target→client
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.srv.getsockname()[1]}"

    def _accept(self) -> None:
        while True:
            try:
                c, _ = self.srv.accept()
            except OSError:
                return
            try:
                t = socket.create_connection(self.target)
            except OSError:
                c.close()
                continue
            threading.Thread(target=self._pump, args=(c, t, "up"), daemon=True).start()
            threading.Thread(target=self._pump, args=(t, c, "down"), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket, way: str) -> None:
        try:
            while True:
                buf = a.recv(1 << 16)
                if not buf:
                    break
                b.sendall(buf)
                with self.lock:
                    if self.capture is not None:
                        self.capture.append(bytes(buf))
                    setattr(self, way, getattr(self, way) + len(buf))
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def party_job(n: int, protocol: str, repeat: int) -> None:
    """Run under ``veil run -n 2``: one JSON line per party."""
    import veil
    rr22 = importlib.import_module("veil.psi.rr22")
    relays = []

    def hook(addr: str) -> str:
        relays.append(Relay(addr))
        return relays[-1].address
    rr22.PEER_ADDRESS_HOOK = hook

    def job():
        r = veil.rank()
        keys = np.arange(n, dtype=np.int64) + (n // 2 if r == 1 else 0)   # n/2 common
        best = None
        for _ in range(repeat):
            relays.clear()
            s0, t0 = veil.stats(), time.perf_counter()
            info = {}
            out = veil.psi(keys, parties=(0, 1), protocol=protocol, info=info)
            dt, d = time.perf_counter() - t0, veil.context.stats_since(s0)
            assert len(out) == n - n // 2
            rec = {"party": r, "keys": n, "protocol": info["protocol"], "seconds": dt,
                   "veil_bytes": d["bytes_sent"], "rounds": d["rounds"],
                   "relay_up": sum(x.up for x in relays),
                   "relay_down": sum(x.down for x in relays),
                   "split": {k: round(v, 2) for k, v in info.get("seconds", {}).items()}}
            best = rec if best is None or dt < best["seconds"] else best
        best["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        best["load"] = round(os.getloadavg()[0], 1)
        print("PSIBENCH " + json.dumps(best), flush=True)
    veil.run(job, parties=2)


def measure(n: int, protocol: str, repeat: int) -> dict:
    cmd = [sys.executable, "-m", "veil.cli", "run", "-n", "2", "-m", "veil.bench.psi_bench",
           "--party-job", str(n), protocol, str(repeat)]
    p = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    recs = [json.loads(line.split("PSIBENCH ", 1)[1])
            for line in (p.stdout + p.stderr).splitlines() if "PSIBENCH " in line]
    if p.returncode != 0 or len(recs) != 2:
        raise RuntimeError(f"psi bench {protocol} {n} failed:\n{p.stderr[-2000:]}")
    a, b = sorted(recs, key=lambda r: r["party"])
    # A party sends its requests on the connection it opened (its relay's "up") and
    # answers on the one the peer opened (the peer relay's "down").
    sent = [a["veil_bytes"] + a["relay_up"] + b["relay_down"],
            b["veil_bytes"] + b["relay_up"] + a["relay_down"]]
    return {"protocol": a["protocol"], "keys": n,
            "seconds": round(max(a["seconds"], b["seconds"]), 2),
            "bytes_per_key_party": round(max(sent) / n, 1), "bytes_total": sum(sent),
            "rounds": a["rounds"], "peak_rss_mb": max(a["peak_rss_mb"], b["peak_rss_mb"]),
            "load": max(a["load"], b["load"]), "split": [a["split"], b["split"]]}


COLUMNS = [("protocol", lambda r: r["protocol"]),
           ("keys (each side)", lambda r: f"{r['keys']:.0e}"),
           ("seconds", lambda r: r["seconds"]),
           ("bytes/key/party", lambda r: r["bytes_per_key_party"]),
           ("total bytes", lambda r: f"{r['bytes_total']:,}"),
           ("rounds (veil link)", lambda r: r["rounds"]),
           ("peak RSS/party (MB)", lambda r: r["peak_rss_mb"]),
           ("host load", lambda r: r["load"])]


def table(rows: list[dict]) -> str:
    return markdown_table(COLUMNS, rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="veil bench --group psi", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--group")
    ap.add_argument("--keys", type=float, nargs="*", help="sizes (default per protocol)")
    ap.add_argument("--protocol", nargs="*", default=["rr22", "ecdh"])
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--docs", action="store_true", help="rewrite the psi table in "
                                                        "docs/benchmarks.md")
    ap.add_argument("--party-job", nargs=3, help=argparse.SUPPRESS)
    args, _ = ap.parse_known_args(argv)
    if args.party_job:
        n, proto, rep = args.party_job
        party_job(int(n), proto, int(rep))
        return 0
    rows = []
    for proto in args.protocol:
        for n in ([int(k) for k in args.keys] if args.keys else SIZES[proto]):
            rows.append(measure(n, proto, args.repeat))
            print(table(rows[-1:]).splitlines()[-1], rows[-1]["split"] or "", flush=True)
    text = table(rows)
    print(text)
    if args.docs:
        doc = replace_marked(DOCS.read_text(), BEGIN, END, text + "\n")
        if doc is None:
            raise SystemExit(f"{DOCS} has no {BEGIN} … {END} section")
        DOCS.write_text(doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
