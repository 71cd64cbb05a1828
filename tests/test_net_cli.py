"""`veil certs`, the cluster file, and `veil run --cluster` with one process per party."""

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from veil.cli import main
from veil.net.cluster import ClusterError, load_cluster, write_cluster

SCRIPTS = Path(__file__).parent / "scripts"


def test_certs_writes_a_ca_keys_certificates_and_a_cluster_file(tmp_path, capsys):
    assert main(["certs", "--parties", "3", "--out", str(tmp_path), "--base-port", "47200"]) == 0
    for name in ["ca", "party0", "party1", "party2", "dealer"]:
        assert (tmp_path / f"{name}.crt").is_file()
        key = tmp_path / f"{name}.key"
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, f"{key} is readable by others"
    cluster = load_cluster(tmp_path / "cluster.toml")
    assert cluster.n == 3 and cluster.entry(2).where == "127.0.0.1:47202"
    assert cluster.dealer.port is None and cluster.entry(3).name == "dealer"
    assert len({cluster.fingerprint(r) for r in range(4)}) == 4
    assert "PRIVATE" not in capsys.readouterr().out
    # A second run would overwrite keys: refused unless --force.
    assert main(["certs", "--parties", "3", "--out", str(tmp_path)]) == 2
    assert "--force" in capsys.readouterr().err


def test_cluster_file_errors_say_what_to_fix(tmp_path):
    with pytest.raises(ClusterError, match="not found; create one with `veil certs"):
        load_cluster(tmp_path / "nope.toml")
    path = write_cluster(tmp_path / "c.toml", "ca.crt", [("h", 1, "a.crt"), ("h", 2, "b.crt")],
                         ("h", "d.crt"))
    path.write_text(path.read_text().split("[dealer]")[0])
    with pytest.raises(ClusterError, match=r"add a \[dealer\] table"):
        load_cluster(path)
    path.write_text('ca = "ca.crt"\n[[party]]\nhost = "h"\ncert = "a.crt"\n'
                    '[[party]]\nhost = "h"\nport = 2\ncert = "b.crt"\n')
    with pytest.raises(ClusterError, match="party 0 has no 'port'"):
        load_cluster(path)


def test_run_needs_a_mode_and_a_script(capsys):
    with pytest.raises(SystemExit):
        main(["run", "script.py"])
    assert "either -n N" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["run", "-n", "2"])
    assert "name the script" in capsys.readouterr().err


def _start(cluster, party, *extra, script=True):
    args = [sys.executable, "-m", "veil.cli", "run", "--cluster", str(cluster), "--party",
            party, *extra]
    if script:
        args += [str(SCRIPTS / "net_basic.py"), "--parties", "2", "--no-seed"]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def _finish(procs, timeout=60):
    outs = []
    end = time.monotonic() + timeout
    for p in procs:
        try:
            outs.append(p.communicate(timeout=max(end - time.monotonic(), 1)))
        except subprocess.TimeoutExpired:
            for q in procs:
                if q.poll() is None:
                    os.killpg(q.pid, signal.SIGKILL)
            pytest.fail("a party hung")
    return [(p.returncode, *o) for p, o in zip(procs, outs)]


def test_each_organisation_makes_its_key_and_parties_start_on_their_own(tmp_path, capsys):
    # Each role makes its key where it runs; only certificates reach the cluster file.
    for role in ("party0", "party1", "dealer"):
        assert main(["certs", "--role", role, "--out", str(tmp_path / role)]) == 0
    fps = [ln.strip() for ln in capsys.readouterr().out.splitlines() if "sha256:" in ln]
    assert len(fps) == 3
    import socket
    ports = []
    for _ in range(2):                                  # a free loopback port per party
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    shared = tmp_path / "shared"
    certs = [str(tmp_path / r / f"{r}.crt") for r in ("dealer", "party1", "party0")]
    assert main(["certs", "--pin", *certs, "--out", str(shared)]) == 0
    assert not list(shared.glob("*.key"))               # nothing secret in what travels
    text = (shared / "cluster.toml").read_text()
    assert all(fp.split()[-1] in text for fp in fps)    # each can check its own pin
    path = write_cluster(shared / "cluster.toml", None,
                         [("127.0.0.1", p, f"party{r}.crt") for r, p in enumerate(ports)],
                         ("127.0.0.1", "dealer.crt"),
                         pins=[load_cluster(shared / "cluster.toml").fingerprint(r)
                               for r in range(3)])
    key = lambda r: ["--key", str(tmp_path / r / f"{r}.key")]          # noqa: E731
    dealer = _start(path, "dealer", *key("dealer"), script=False)  # dealer first, party 0 last
    time.sleep(0.5)
    p1 = _start(path, "1", *key("party1"))
    time.sleep(0.5)
    p0 = _start(path, "0", *key("party0"))
    res = _finish([p0, p1, dealer])
    assert [r[0] for r in res] == [0, 0, 0], res
    values = [line for code, out, err in res[:2] for line in out.splitlines()
              if "RESULT" in line and '"run": 0' in line]
    assert len(values) == 2
    assert values[0].split('"value": ')[1][:60] == values[1].split('"value": ')[1][:60]


def test_a_party_that_never_comes_up_is_named(tmp_path):
    main(["certs", "--parties", "2", "--out", str(tmp_path), "--base-port", "0"])
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path = write_cluster(tmp_path / "cluster.toml", "ca.crt",
                         [("127.0.0.1", port, "party0.crt"), ("127.0.0.1", 1, "party1.crt")],
                         ("127.0.0.1", "dealer.crt"))
    t0 = time.monotonic()
    [(code, out, err)] = _finish([_start(path, "0", "--connect-timeout", "2")])
    assert code != 0
    assert "party 1: did not connect within 2 s (still waiting for: party 1, dealer)" in err
    assert time.monotonic() - t0 < 30


def test_a_port_in_use_is_reported_at_start(tmp_path):
    main(["certs", "--parties", "2", "--out", str(tmp_path), "--base-port", "0"])
    import socket
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        path = write_cluster(tmp_path / "cluster.toml", "ca.crt",
                             [("127.0.0.1", port, "party0.crt"), ("127.0.0.1", 1, "party1.crt")],
                             ("127.0.0.1", "dealer.crt"))
        [(code, out, err)] = _finish([_start(path, "0")])
    assert code == 2
    assert f"party 0: cannot listen on 127.0.0.1:{port}" in err and "change party 0's port" in err


def test_role_keys_are_private_and_never_written_through_a_link(tmp_path, capsys):
    out = tmp_path / "keys"
    assert main(["certs", "--role", "party1", "--out", str(out)]) == 0
    key = out / "party1.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert "PRIVATE" not in capsys.readouterr().out
    before = key.read_bytes()
    # A second run refuses; --force replaces the regular file (still 0600).
    assert main(["certs", "--role", "party1", "--out", str(out)]) == 2
    assert "--force" in capsys.readouterr().err
    assert main(["certs", "--role", "party1", "--out", str(out), "--force"]) == 0
    assert key.read_bytes() != before and stat.S_IMODE(key.stat().st_mode) == 0o600
    # A planted link is refused, --force included, and its target is left untouched.
    victim = tmp_path / "victim.txt"
    victim.write_text("do not overwrite")
    for f in ("party1.key", "party1.crt"):
        (out / f).unlink()
        (out / f).symlink_to(victim)
        for extra in ([], ["--force"]):
            assert main(["certs", "--role", "party1", "--out", str(out), *extra]) == 2
            assert "symbolic link" in capsys.readouterr().err
        (out / f).unlink()
    assert victim.read_text() == "do not overwrite"
    # Same rules for the all-in-one mode.
    (tmp_path / "all").mkdir()
    (tmp_path / "all" / "dealer.key").symlink_to(victim)
    assert main(["certs", "--parties", "2", "--out", str(tmp_path / "all"), "--force"]) == 2
    assert victim.read_text() == "do not overwrite"


def test_the_cluster_file_pins_certificates_and_refuses_swaps_and_loose_keys(tmp_path):
    from veil.net.loopback import connect_hubs, identity, local_cluster
    from veil.net.tls import server_context
    cluster, listeners = local_cluster(tmp_path, 2)
    assert all(cluster.entry(r).pin is None for r in range(3))
    # A pinned cluster (what --pin writes) connects with self-signed certificates, no CA.
    pins = [cluster.fingerprint(r) for r in range(3)]
    rows = [("127.0.0.1", s.getsockname()[1], f"party{r}.crt") for r, s in enumerate(listeners)]
    path = write_cluster(cluster.path, None, rows, ("127.0.0.1", "dealer.crt"), pins=pins)
    pinned = load_cluster(path)
    assert pinned.ca is None and pinned.entry(1).pin == pins[1]
    hubs = connect_hubs(pinned, listeners)
    assert sorted(hubs[0].links) == [1, 2]
    for h in hubs.values():
        h.close()
    # Someone swaps party1.crt for another certificate: refused before any connection.
    original = (tmp_path / "party1.crt").read_bytes()
    (tmp_path / "party1.crt").write_bytes((tmp_path / "party0.crt").read_bytes())
    with pytest.raises(ClusterError, match="party1.crt is not the certificate the file pins "
                                           "for party 1"):
        load_cluster(path).trust_pem()
    # A private key readable by others is refused, as ssh does.
    (tmp_path / "party1.crt").write_bytes(original)
    os.chmod(tmp_path / "party0.key", 0o644)
    with pytest.raises(ClusterError, match=r"party0.key is readable or writable by other "
                                           r"users \(mode 0644\): run `chmod 600"):
        server_context(identity(cluster, 0))


def test_pin_refuses_a_private_key_and_incomplete_sets(tmp_path, capsys):
    for role in ("party0", "party1", "dealer"):
        main(["certs", "--role", role, "--out", str(tmp_path)])
    capsys.readouterr()
    assert main(["certs", "--pin", str(tmp_path / "party0.crt"), str(tmp_path / "party1.key"),
                 str(tmp_path / "dealer.crt"), "--out", str(tmp_path / "c")]) == 2
    assert "holds a private key" in capsys.readouterr().err
    assert main(["certs", "--pin", str(tmp_path / "party0.crt"), str(tmp_path / "dealer.crt"),
                 "--out", str(tmp_path / "c")]) == 2
    assert "need certificates for party0" in capsys.readouterr().err


def test_bench_subcommand_is_python_m_veil_bench(capsys):
    assert main(["bench", "--only", "no such workload", "--json", "/dev/null"]) == 2
    assert "no workload matched" in capsys.readouterr().err


def test_rep3_cluster_runs_without_starting_the_dealer(tmp_path):
    """Multi-host rep3: each party starts with --protocol rep3 and nobody starts the
    dealer; the cluster file still lists one (certs makes it), and it is not waited for."""
    main(["certs", "--parties", "3", "--out", str(tmp_path), "--base-port", "0"])
    import socket
    ports = []
    for _ in range(3):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    path = write_cluster(tmp_path / "cluster.toml", "ca.crt",
                         [("127.0.0.1", p, f"party{r}.crt") for r, p in enumerate(ports)],
                         ("127.0.0.1", "dealer.crt"))
    procs = [subprocess.Popen([sys.executable, "-m", "veil.cli", "run", "--cluster", str(path),
                               "--party", str(r), "--protocol", "rep3",
                               str(SCRIPTS / "net_basic.py"), "--parties", "3", "--no-seed"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              start_new_session=True) for r in (2, 1, 0)]
    res = _finish(procs, timeout=90)
    assert [r[0] for r in res] == [0, 0, 0], res
    values = {line.split('"value": ')[1][:60] for code, out, err in res
              for line in out.splitlines() if "RESULT" in line and '"run": 0' in line}
    assert len(values) == 1


def test_bench_groups_with_their_own_runner_resolve_to_a_main():
    """Every group that `veil bench --group G` hands to its own runner names a module with
    a callable main (a renamed module fails here, not in a user's benchmark run)."""
    import importlib

    from veil.bench.__main__ import OWN_RUNNERS
    for group, (module, given) in OWN_RUNNERS.items():
        assert given in ("nothing", "argv", "docs"), group
        assert callable(importlib.import_module(module, "veil.bench").main), group
