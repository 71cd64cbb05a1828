"""The dealer working ahead under `veil run`: runs over the same connections stay in step.

A run can end while requests predicted for the next step are still in flight (the
training loop's last step looks like any other). Their replies reach every party whose
turn it is to receive (receivers rotate, veil.offline.dealer.receiver); each must read
them before the run ends, or they wait in the link and the next run reads them as its
own. In-process, every run gets fresh channels, so only real processes show it.
"""

from pathlib import Path

from test_net_launch import results, veil_cmd

SCRIPT = Path(__file__).parent / "scripts" / "net_ahead.py"


def test_a_second_run_after_one_that_ended_with_requests_ahead():
    code, out, err, _ = veil_cmd(["run", "-n", "2", str(SCRIPT)], timeout=120)
    assert code == 0, err
    got = results(out)
    assert sorted(got) == [(run, r) for run in range(2) for r in range(2)]
    for (run, r), rec in got.items():
        assert rec["ahead_at_end"] > 0, "nothing was ahead at the end: tests nothing"
        assert rec["err"] < 12 * 2e-4, f"run {run}, party {r}: wrong result"
    # same program, same traffic in both runs
    assert got[0, 0]["stats"] == got[1, 0]["stats"]
    assert got[0, 1]["stats"] == got[1, 1]["stats"]
