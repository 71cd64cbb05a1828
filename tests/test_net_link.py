"""Links and the hub over real loopback TLS, inside one process (one thread per rank)."""

import hashlib
import threading
import time

import pytest

from veil.errors import AbortedError, PartyError
from veil.net.loopback import connect_hubs, local_cluster


@pytest.fixture
def hubs3(tmp_path):
    cluster, listeners = local_cluster(tmp_path, 3)
    hubs = connect_hubs(cluster, listeners, ranks=[0, 1, 2])   # no dealer needed here
    yield hubs
    for h in hubs.values():
        h.close()


def _pair(tmp_path, secure=True):
    cluster, listeners = local_cluster(tmp_path, 2)
    listeners[1].close()
    return connect_hubs(cluster, listeners, ranks=[0, 1], secure=secure)


def test_messages_arrive_whole_and_in_order(tmp_path):
    hubs = _pair(tmp_path)
    a, b = hubs[0].links[1], hubs[1].links[0]
    msgs = [b"", b"x", bytes(range(256)) * 300, memoryview(bytearray(70_000))]
    for m in msgs:
        a.send(m)
    assert [bytes(b.recv(5.0)) for _ in msgs] == [bytes(m) for m in msgs]
    b.send(b"back")
    assert bytes(a.recv(5.0)) == b"back"


def test_100mb_each_way_at_the_same_moment_does_not_deadlock(tmp_path):
    hubs = _pair(tmp_path)
    size = 100 * 1024 * 1024
    payload = {r: bytes([r + 1]) * size for r in (0, 1)}
    got, errors = {}, []

    def side(r):
        try:
            link = hubs[r].links[1 - r]
            link.send(memoryview(payload[r]))        # both block in send until the other reads
            got[r] = hashlib.sha256(link.recv(30.0)).hexdigest()
        except BaseException as exc:                 # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=side, args=(r,)) for r in (0, 1)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors and not any(t.is_alive() for t in threads), errors
    assert got[0] == hashlib.sha256(payload[1]).hexdigest()
    assert got[1] == hashlib.sha256(payload[0]).hexdigest()
    assert time.monotonic() - t0 < 30


def test_silent_peer_times_out_naming_it(tmp_path):
    hubs = _pair(tmp_path)
    t0 = time.monotonic()
    with pytest.raises(PartyError, match=r"party 1: sent nothing for 0.3 s \(timeout"):
        hubs[0].links[1].recv(0.3)
    assert time.monotonic() - t0 < 2


def test_peer_that_closes_is_named_at_once(tmp_path):
    hubs = _pair(tmp_path)
    hubs[1].close()                                  # as if its process died
    t0 = time.monotonic()
    with pytest.raises(PartyError, match="party 1: closed its connection unexpectedly"):
        hubs[0].links[1].recv(30.0)
    assert time.monotonic() - t0 < 2


def test_abort_from_any_peer_stops_a_wait_on_another(hubs3):
    # Party 0 waits on party 1; party 2 aborts: party 0 must stop now, naming party 2.
    hubs3[2].abort(2, "failed", "ValueError", wait=0.1)
    with pytest.raises(AbortedError, match="party 2: stopped this run: failed: ValueError"):
        hubs3[0].links[1].recv(30.0)


def test_sending_after_an_abort_refuses(hubs3):
    hubs3[1].abort(1, "failed", "RuntimeError", wait=0.1)
    with pytest.raises(AbortedError, match="party 1"):
        hubs3[0].links[1].recv(5.0)
    with pytest.raises(AbortedError):
        hubs3[0].links[2].send(b"more")


def test_insecure_links_work_too(tmp_path):
    hubs = _pair(tmp_path, secure=False)
    hubs[0].links[1].send(b"plain")
    assert bytes(hubs[1].links[0].recv(5.0)) == b"plain"
