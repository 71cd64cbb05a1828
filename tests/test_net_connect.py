"""Connection set-up: start order, pinned certificates, wrong CA, port in use, --insecure,
and strangers (garbage, silence, failed TLS, unknown certificates, a second connection for
a rank) that must not stop a party."""

import threading
import time

import pytest

from veil.errors import PartyError
from veil.net.connect import Connector, listen
from veil.net.loopback import connect_hubs, identity, local_cluster


def _run_ranks(cluster, listeners, plan, deadline_s=5.0):
    """plan: {rank: (identity or None, peers, delay_s)}; returns {rank: hub or exception}."""
    out = {}

    def one(r, ident, peers, delay):
        time.sleep(delay)
        try:
            lst = listeners[r] if r < cluster.n else None
            out[r] = Connector(cluster, r, ident, deadline_s, 5.0, peers).run(lst)
        except Exception as exc:                     # noqa: BLE001
            out[r] = exc

    threads = [threading.Thread(target=one, args=(r, *spec)) for r, spec in plan.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join(deadline_s + 10)
    for v in out.values():
        if not isinstance(v, Exception):
            v.close()
    return out


def test_processes_may_start_in_any_order(tmp_path):
    cluster, listeners = local_cluster(tmp_path, 3)
    plan = {r: (identity(cluster, r), None, delay)
            for r, delay in ((3, 0.0), (2, 0.1), (1, 0.3), (0, 0.6))}   # dealer first
    out = _run_ranks(cluster, listeners, plan)
    assert all(not isinstance(v, Exception) for v in out.values()), out
    assert sorted(out[0].links) == [1, 2, 3]


def test_a_party_that_never_comes_up_is_named_within_the_deadline(tmp_path):
    cluster, listeners = local_cluster(tmp_path, 2)
    listeners[0].close()                             # party 0 never starts
    t0 = time.monotonic()
    out = _run_ranks(cluster, listeners, {1: (identity(cluster, 1), [0], 0.0)}, deadline_s=1.0)
    assert time.monotonic() - t0 < 4
    assert isinstance(out[1], PartyError)
    assert "party 0: never came up at 127.0.0.1:" in str(out[1])
    assert "within 1 s" in str(out[1])


def test_a_certificate_of_another_rank_is_refused_and_the_listener_keeps_waiting(tmp_path):
    cluster, listeners = local_cluster(tmp_path, 3)
    impostor = identity(cluster, 2)                  # a listed certificate, but party 2's
    out = _run_ranks(cluster, listeners, {0: (identity(cluster, 0), [1], 0.0),
                                          1: (impostor, [0], 0.0)}, deadline_s=2.0)
    assert isinstance(out[0], PartyError) and isinstance(out[1], PartyError)
    # The authenticated listener tells the dialler why, and the dialler stops at once ...
    assert str(out[1]).startswith("party 0: refused this party's connection")
    assert "party 2's certificate but claims party 1" in str(out[1])
    # ... while the listener does not blame party 1 for it: it waited for the real one.
    assert str(out[0]).startswith("party 1: did not connect within 2 s")
    assert "dropped" in str(out[0]) and "party 2's certificate" in str(out[0])


def test_a_certificate_from_another_cluster_fails_the_handshake(tmp_path):
    cluster, listeners = local_cluster(tmp_path / "a", 2)
    other, other_listeners = local_cluster(tmp_path / "b", 2)
    for s in other_listeners:
        s.close()
    out = _run_ranks(cluster, listeners, {0: (identity(cluster, 0), [1], 0.0),
                                          1: (identity(other, 1), [0], 0.0)}, deadline_s=2.0)
    assert isinstance(out[1], PartyError) and str(out[1]).startswith("party 0:")
    assert "cluster file" in str(out[1])
    assert isinstance(out[0], PartyError) and str(out[0]).startswith("party 1: did not connect")
    assert "dropped" in str(out[0]) and "TLS" in str(out[0])


def test_tls_against_insecure_is_a_clear_error(tmp_path):
    cluster, listeners = local_cluster(tmp_path, 2)
    out = _run_ranks(cluster, listeners, {0: (None, [1], 0.0),
                                          1: (identity(cluster, 1), [0], 0.0)}, deadline_s=3.0)
    assert all(isinstance(v, PartyError) for v in out.values()), out
    assert "insecure" in str(out[0]) and "insecure" in str(out[1])


def test_port_in_use_says_which_and_what_to_do(tmp_path):
    cluster, listeners = local_cluster(tmp_path, 2)
    held = listeners[0]                               # still bound: someone holds the port
    with pytest.raises(PartyError, match=r"party 0: cannot listen on 127.0.0.1:\d+: .*in use"):
        listen(cluster, 0)
    held.close()


def test_loopback_helper_connects_everyone(tmp_path):
    cluster, listeners = local_cluster(tmp_path, 2)
    hubs = connect_hubs(cluster, listeners)
    assert sorted(hubs) == [0, 1, 2] and sorted(hubs[2].links) == [0, 1]
    for h in hubs.values():
        h.close()
