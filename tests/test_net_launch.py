"""`veil run`: real processes over loopback TLS. Every subprocess has a hard timeout."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import veil

HERE = Path(__file__).parent
SCRIPTS = HERE / "scripts"
VEIL = [sys.executable, "-m", "veil.cli"]


def veil_cmd(args, timeout=60, env=None):
    """Run `veil ...` in its own process group; kill the whole group if it overstays."""
    t0 = time.monotonic()
    proc = subprocess.Popen(VEIL + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True,
                            env=dict(os.environ, **(env or {})))
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"veil {' '.join(args)} hung for {timeout} s:\n{out}\n{err}")
    return proc.returncode, out, err, time.monotonic() - t0


def results(out):
    rows = [json.loads(line.split("RESULT ", 1)[1]) for line in out.splitlines()
            if "RESULT " in line]
    return {(r["run"], r["rank"]): r for r in rows}


def test_same_numbers_and_stats_in_process_and_under_veil_run():
    sys.path.insert(0, str(SCRIPTS))
    try:
        import net_basic
    finally:
        sys.path.remove(str(SCRIPTS))
    local = [veil.run(net_basic.job, parties=3, seed=11 + run) for run in range(2)]
    code, out, err, _ = veil_cmd(["run", "-n", "3", "--insecure-seed",
                                  str(SCRIPTS / "net_basic.py"), "--parties", "3", "--seed", "11"])
    assert code == 0, err
    for r in range(3):                                # the seed is honoured loudly
        assert f"[party {r}] WARNING: veil --insecure-seed" in err
    net = results(out)
    assert sorted(net) == [(run, r) for run in range(2) for r in range(3)]
    for run in range(2):
        for r in range(3):
            want, got = local[run][r], net[run, r]
            assert got["value"] == want["value"], f"run {run}, party {r}: revealed bits differ"
            assert got["stats"] == want["stats"], f"run {run}, party {r}: stats differ"
    assert all(f"[party {r}] RESULT" in out for r in range(3))


def _fail(mode, parties=2, timeout="10", grace="5", extra=()):
    """Run net_fail.py; also return how long the run lasted after party 1 misbehaved."""
    code, out, err, _ = veil_cmd(["run", "-n", str(parties), "--grace", grace, *extra,
                                  str(SCRIPTS / "net_fail.py"), mode],
                                 env={"NET_FAIL_TIMEOUT": timeout,
                                      "NET_FAIL_PARTIES": str(parties)})
    import re
    when = re.search(r"party 1 misbehaves now \(at ([\d.]+)\)", out)
    after = time.time() - float(when.group(1)) if when else None
    return code, out, err, after


def test_a_killed_party_stops_the_others_promptly_naming_it():
    code, out, err, after = _fail("kill", parties=3, grace="15")
    assert code != 0
    assert after is not None, out
    # Every survivor (party 0, party 2, the dealer) names party 1 and why.
    for who in ("party 0", "party 2", "dealer"):
        lines = [ln for ln in err.splitlines() if ln.startswith(f"[{who}]") and "party 1" in ln]
        assert any("closed its connection" in ln or "connection reset" in ln for ln in lines), \
            f"{who} did not name party 1:\n{err}"
    assert "veil run: party 1 failed (killed by SIGKILL)" in err
    assert "stopped" not in err.splitlines()[-1]          # nobody had to be stopped
    assert after < 15                                     # (seconds on a busy 2-core host)


@pytest.mark.parametrize("mode, cls, extra", [
    ("raise", "ValueError", ["--insecure"]),
    ("veilraise", "ProtocolUsageError", []),          # a veil error's text stays home too
])
def test_an_exception_in_one_party_reaches_all_without_its_text(mode, cls, extra):
    code, out, err, _ = _fail(mode, extra=extra)
    assert code != 0
    if extra:
        for who in ("party 0", "party 1", "dealer"):      # --insecure is loud everywhere
            assert f"[{who}] WARNING: veil --insecure: plain TCP" in err
    assert f"[party 1] {'veil.errors.' if mode == 'veilraise' else ''}{cls}: " in err
    assert "4242" in err                                    # party 1's own output has it ...
    others = [ln for ln in (out + err).splitlines() if not ln.startswith("[party 1]")]
    assert not any("4242" in ln or "hr.csv" in ln for ln in others)   # ... nobody else's
    # Each other process names party 1 and the error's class, first- or second-hand.
    for who in ("party 0", "dealer"):
        assert any(ln.startswith(f"[{who}]") and "party 1" in ln and f"failed: {cls}" in ln
                   for ln in others), err


def test_a_fixed_seed_is_refused_under_real_parties():
    code, out, err, took = veil_cmd(["run", "-n", "2", str(SCRIPTS / "net_basic.py"),
                                     "--parties", "2", "--seed", "3"])
    assert code != 0
    assert "veil.run(seed=...) under `veil run`: a fixed seed derives every mask" in err
    assert "--insecure-seed" in err and "RESULT" not in out


@pytest.mark.parametrize("mode, said", [
    # Whichever party compares first names the other, and the field.
    ("config", r"party [01]: started a different run: Config.frac_bits=(20 \(here 16|16 "
               r"\(here 20)\)"),
    ("reference", r"protocol='insecure_reference' under `veil run`: it sends every input IN "
                  r"THE CLEAR"),
])
def test_parties_that_disagree_or_pick_a_cleartext_protocol_are_stopped(mode, said):
    import re
    code, out, err, _ = veil_cmd(["run", "-n", "2", str(SCRIPTS / "net_config.py"), mode])
    assert code != 0 and "DONE" not in out
    assert re.search(said, err), err


def test_a_silent_party_times_out_naming_it():
    code, out, err, after = _fail("sleep", timeout="1.5", grace="1")
    assert code != 0
    assert any(ln.startswith(("[party 0]", "[party 2]")) and
               "party 1: sent nothing for 1.5 s (timeout" in ln for ln in err.splitlines()), err
    assert "stopped party 1" in err                       # the launcher ended the sleeper
    assert after < 1.5 + 1 + 12                           # timeout + grace + a busy host


def test_parties_must_match_the_cluster_size(tmp_path, monkeypatch):
    from veil.net.loopback import local_cluster
    cluster, listeners = local_cluster(tmp_path, 2)
    for s in listeners:
        s.close()
    monkeypatch.setenv("VEIL_PARTY", "0")
    monkeypatch.setenv("VEIL_CLUSTER", str(cluster.path))
    with pytest.raises(veil.ProtocolUsageError,
                       match=r"veil.run\(parties=3\) but this cluster has 2 parties.*"
                             r"veil run -n 3"):
        veil.run(lambda: None, parties=3)


def test_the_real_machines_example_prints_what_the_doc_says(tmp_path):
    import re
    doc = (HERE.parent / "docs" / "real-machines.md").read_text()
    code = re.findall(r"```python\n(.*?)```", doc, re.S)[0]
    script = tmp_path / "job.py"
    script.write_text(code)
    said = dict(re.findall(r"party (\d)\s+prints\s+`(\[.*?\])`", doc))
    assert set(said) == {"0", "1"}
    code_, out, err, _ = veil_cmd(["run", "-n", "2", str(script)])
    assert code_ == 0, err
    for r, text in said.items():
        assert f"[party {r}] {text}" in out.splitlines(), out


def test_rep3_under_veil_run_starts_no_dealer_and_matches_in_process():
    """`veil run -n 3 --protocol rep3`: no dealer process, the script's veil.run defaults
    to rep3, and numbers and stats equal the in-process run's bit for bit."""
    sys.path.insert(0, str(SCRIPTS))
    try:
        import net_basic
    finally:
        sys.path.remove(str(SCRIPTS))
    local = veil.run(net_basic.job, parties=3, seed=11, protocol="rep3")
    code, out, err, _ = veil_cmd(["run", "-n", "3", "--protocol", "rep3", "--insecure-seed",
                                  str(SCRIPTS / "net_basic.py"), "--parties", "3", "--seed", "11"])
    assert code == 0, err
    assert "[dealer]" not in out + err
    net = results(out)
    for r in range(3):
        got = net[0, r]
        assert got["value"] == local[r]["value"] and got["stats"] == local[r]["stats"]
        # Offline traffic is the pairwise PRG seeds only: 16 B to each higher rank.
        assert got["stats"]["offline_bytes_sent"] == 16 * (2 - r)


def test_rep3_launch_refuses_other_party_counts():
    code, _, err, _ = veil_cmd(["run", "-n", "2", "--protocol", "rep3",
                                str(SCRIPTS / "net_basic.py")])
    assert code != 0 and "--protocol rep3 runs with -n 3" in err


@pytest.mark.parametrize("bulk", ["--tls-only", None])
def test_emulated_network_under_veil_run_with_large_messages_both_ways(tmp_path, bulk):
    """`veil run --network`: many-MB openings sent by both parties at once arrive intact
    (the emulation must not drive the single-threaded hub from a second thread)."""
    script = tmp_path / "big.py"
    script.write_text(
        "import torch, veil\n"
        "def job():\n"
        "    g = torch.Generator().manual_seed(0)\n"
        "    a, b = torch.randn(256, 1024, generator=g), torch.randn(1024, 512, generator=g) / 32\n"
        "    me = veil.rank()\n"
        "    x = veil.tensor(a if me == 0 else None, owner=0) @ \\\n"
        "        veil.tensor(b if me == 1 else None, owner=1)\n"
        "    for _ in range(3):                       # many rounds of large messages\n"
        "        x = (x @ veil.tensor(b.T if me == 1 else None, owner=1)).relu() @ \\\n"
        "            veil.tensor(b if me == 1 else None, owner=1)\n"
        "    want = a @ b\n"
        "    for _ in range(3):\n"
        "        want = (want @ b.T).relu() @ b\n"
        "    err = (x.reveal() - want).abs().max().item()\n"
        "    return err\n"
        "err = veil.run(job, parties=2)\n"
        "assert [e < 1e-2 for e in err if e is not None] == [True], err\n"
        "print('OK')\n")
    args = ["run", "-n", "2", "--network", "1ms/10gbit", *([bulk] if bulk else []), str(script)]
    code, out, err, _ = veil_cmd(args, timeout=120)
    assert code == 0, err
    # each party opens x - A and y - B: (256*1024 + 1024*512) * 8 B = 6.3 MB each way
    assert sum("OK" in line for line in out.splitlines()) == 2, out
