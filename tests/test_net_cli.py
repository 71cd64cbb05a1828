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
        args += [str(SCRIPTS / "net_basic.py"), "--parties", "2"]
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


def test_each_party_started_on_its_own_in_any_order(tmp_path):
    main(["certs", "--parties", "2", "--out", str(tmp_path), "--base-port", "0"])
    # Port 0 is not a real choice for a cluster file: give each party a free port.
    import socket
    ports = []
    for _ in range(2):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    path = write_cluster(tmp_path / "cluster.toml", "ca.crt",
                         [("127.0.0.1", p, f"party{r}.crt") for r, p in enumerate(ports)],
                         ("127.0.0.1", "dealer.crt"))
    dealer = _start(path, "dealer", script=False)      # the dealer first, party 0 last
    time.sleep(0.5)
    p1 = _start(path, "1")
    time.sleep(0.5)
    p0 = _start(path, "0")
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
                               str(SCRIPTS / "net_basic.py"), "--parties", "3"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              start_new_session=True) for r in (2, 1, 0)]
    res = _finish(procs, timeout=90)
    assert [r[0] for r in res] == [0, 0, 0], res
    values = {line.split('"value": ')[1][:60] for code, out, err in res
              for line in out.splitlines() if "RESULT" in line and '"run": 0' in line}
    assert len(values) == 1
