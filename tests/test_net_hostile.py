"""A stranger or a hostile peer on loopback: it must not stop a party, exhaust its memory,
or put words in its mouth. Every attack is bounded in count and time."""

import json
import socket
import ssl
import threading
import time
import tracemalloc

import pytest

from veil.comm.limits import check_shape
from veil.errors import AbortedError, PartyError
from veil.net.certs import make_self_signed, write_cert, write_key
from veil.net.cluster import load_cluster, write_cluster
from veil.net.connect import Connector, listen
from veil.net.link import ABORT, DATA, EAGER, HEADER
from veil.net.loopback import connect_hubs, identity, local_cluster
from helpers import assert_dealer_refuses, assert_dealer_serves


def _connector(cluster, listeners, r, peers, out, deadline_s=20.0, handshake_s=10.0):
    def go():
        try:
            out[r] = Connector(cluster, r, identity(cluster, r), deadline_s, 5.0, peers,
                               handshake_s).run(listeners[r] if r < cluster.n else None)
        except Exception as exc:                     # noqa: BLE001
            out[r] = exc
    t = threading.Thread(target=go)
    t.start()
    return t


def _raw(port):
    return socket.create_connection(("127.0.0.1", port), timeout=5)


def _tls(port, tmp_path, cert_name=None):
    """A TLS client with no certificate, or with a self-signed one nobody listed."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    if cert_name:
        key, cert = make_self_signed(cert_name)
        write_key(tmp_path / "stranger.key", key)
        write_cert(tmp_path / "stranger.crt", cert)
        ctx.load_cert_chain(tmp_path / "stranger.crt", tmp_path / "stranger.key")
    s = ctx.wrap_socket(_raw(port))
    s.sendall(b"\x06" + b"\x00" * 8)                 # enough to make the server read
    return s


def test_strangers_during_set_up_are_dropped_and_never_named_as_a_peer(tmp_path, caplog):
    cluster, listeners = local_cluster(tmp_path, 3)
    port0 = cluster.entry(0).port
    held = []
    # Before any real peer: garbage, an idle socket, TLS without a certificate, TLS with a
    # self-signed certificate claiming to be party 1. None may stop party 0.
    held.append(_raw(port0))
    held[-1].sendall(b"GET / HTTP/1.0\r\n\r\n" + b"\xff" * 64)
    held.append(_raw(port0))                         # says nothing at all
    out = {}
    # The idle stranger may hold its handshake for 120 s, far past party 0's 30 s deadline:
    # party 0 can only finish if handshakes run side by side.
    threads = [_connector(cluster, listeners, 0, [1, 2], out, 30.0, handshake_s=120.0)]
    for name in (None, "veil party 1"):
        try:
            held.append(_tls(port0, tmp_path, name))
        except (ssl.SSLError, OSError):
            pass                                     # refused during TLS: that is fine too
    # Party 1 comes up, then connects a second time as party 1 (a duplicate), then party 2.
    threads.append(_connector(cluster, listeners, 1, [0], out))
    threads[-1].join(15)
    dup = {}
    threads.append(_connector(cluster, listeners, 1, [0], dup, deadline_s=5.0))
    threads[-1].join(15)
    threads.append(_connector(cluster, listeners, 2, [0], out))
    for t in threads:
        t.join(40)
    try:
        assert not isinstance(out[0], Exception), out[0]
        assert sorted(out[0].links) == [1, 2]
        assert not isinstance(out[1], Exception) and not isinstance(out[2], Exception)
        # The duplicate was refused (it is the dialler that hears why) ...
        assert isinstance(dup[1], PartyError), dup
        assert str(dup[1]).startswith("party 0: refused this party's connection: party 1 is "
                                      "not a rank this party is waiting for")
        drops = [r.getMessage() for r in caplog.records if "dropped a connection" in
                 r.getMessage()]
        assert len(drops) >= 3, drops
        assert all(" from 127.0.0.1:" in d for d in drops)
        assert not any(d.split(": ", 1)[0].endswith(("party 1", "party 2", "dealer"))
                       for d in drops)
    finally:
        for s in held:
            s.close()
        for r in (0, 1, 2):
            if r in out and not isinstance(out[r], Exception):
                out[r].close()


def test_a_garbage_connection_to_the_last_party_is_not_blamed_on_the_dealer(tmp_path, caplog):
    cluster, listeners = local_cluster(tmp_path, 2)
    listeners[0].close()
    out = {}
    t1 = _connector(cluster, listeners, 1, [2], out, deadline_s=15.0)
    junk = _raw(cluster.entry(1).port)
    junk.sendall(b"\x01" + (1 << 40).to_bytes(8, "little"))       # a data header, pre-TLS
    time.sleep(0.3)
    t2 = _connector(cluster, listeners, 2, [1], out, deadline_s=15.0)
    t1.join(20)
    t2.join(20)
    junk.close()
    assert not isinstance(out[1], Exception), out[1]
    assert sorted(out[1].links) == [2]
    assert not any("dealer" in r.getMessage() for r in caplog.records)
    for h in out.values():
        h.close()


def test_a_party_listens_on_its_cluster_host_not_every_interface(tmp_path):
    cluster, listeners = local_cluster(tmp_path, 2)
    for s in listeners:
        s.close()
    with socket.socket() as probe:
        probe.bind(("127.0.0.2", 0))
        port = probe.getsockname()[1]
    path = write_cluster(tmp_path / "cluster.toml", None,
                         [("127.0.0.2", port, "party0.crt"), ("127.0.0.1", 1, "party1.crt")],
                         ("127.0.0.1", "dealer.crt"))
    sock = listen(load_cluster(path), 0)
    try:
        assert sock.getsockname()[0] == "127.0.0.2"
    finally:
        sock.close()


# -- frames from an authenticated but hostile peer -------------------------------------------
@pytest.fixture
def pair(tmp_path):
    cluster, listeners = local_cluster(tmp_path, 2)
    listeners[1].close()
    hubs = connect_hubs(cluster, listeners, ranks=[0, 1])
    yield hubs
    for h in hubs.values():
        h.close()


def _inject(hub, peer, data: bytes):
    sock = hub.links[peer].sock
    sock.setblocking(True)
    sock.sendall(data)
    sock.setblocking(False)


def test_a_header_announcing_a_terabyte_is_refused_naming_the_sender(pair):
    _inject(pair[1], 0, HEADER.pack(DATA, 1 << 40))
    tracemalloc.start()
    try:
        with pytest.raises(PartyError, match=r"party 1: announced a data message of "
                                             r"1099511627776 bytes, more than"):
            pair[0].links[1].recv(5.0)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20


def test_a_large_frame_grows_only_as_its_bytes_arrive(pair):
    pair[0].set_limits(1 << 30)                      # 8 GiB frames allowed
    _inject(pair[1], 0, HEADER.pack(DATA, 4 << 30) + b"x" * (1 << 20))
    tracemalloc.start()
    try:
        with pytest.raises(PartyError, match="party 1: sent nothing for 0.5 s"):
            pair[0].links[1].recv(0.5)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak <= EAGER + (8 << 20), f"{peak} bytes for 1 MiB received"


def test_unread_bytes_per_peer_are_bounded(pair):
    pair[0].set_limits(1024)                         # frames up to 64 KiB, queue 128 KiB
    for _ in range(3):
        pair[1].links[0].send(bytes(60_000))
    with pytest.raises(PartyError, match="party 1: sent 180000 bytes this party has not "
                                         "read yet"):
        pair[0].links[1].recv(5.0)


def _three(tmp_path):
    cluster, listeners = local_cluster(tmp_path, 3)
    return connect_hubs(cluster, listeners, ranks=[0, 1, 2])


def test_an_abort_is_attributed_to_its_sender_not_the_party_it_names(tmp_path):
    hubs = _three(tmp_path)
    try:
        body = json.dumps({"cause": 2, "reason": "failed", "error": "ValueError"}).encode()
        _inject(hubs[1], 0, HEADER.pack(ABORT, len(body)) + body)
        with pytest.raises(AbortedError) as got:
            hubs[0].links[2].recv(5.0)
        assert got.value.party == "party 1"
        assert str(got.value) == ("party 1: stopped this run: it reports that party 2 "
                                  "failed: ValueError")
    finally:
        for h in hubs.values():
            h.close()


@pytest.mark.parametrize("body", [
    {"who": "dealer", "why": "\x1b[2J your data was leaked by party 2"},   # the old format
    {"cause": 2, "reason": "failed", "error": "Value Error\nparty 2: evil"},
    {"cause": 7, "reason": "failed", "error": ""},                         # no such rank
    {"cause": 1, "reason": "a story of its own", "error": ""},
])
def test_an_abort_that_does_not_parse_is_the_senders_fault(tmp_path, body):
    hubs = _three(tmp_path)
    try:
        raw = json.dumps(body).encode()
        _inject(hubs[1], 0, HEADER.pack(ABORT, len(raw)) + raw)
        with pytest.raises(PartyError) as got:
            hubs[0].links[1].recv(5.0)
        assert str(got.value) == "party 1: sent an abort message that does not parse"
    finally:
        for h in hubs.values():
            h.close()


def test_a_control_frame_that_does_not_parse_names_its_sender():
    from veil.net.launch import parse_control
    with pytest.raises(PartyError, match="party 1: sent a malformed message at the start"):
        parse_control(b"[1, 2", "party 1", "the start of a run")
    with pytest.raises(PartyError, match="party 1: sent a malformed"):
        parse_control(b"[1, 2]", "party 1", "the start of a run")
    assert parse_control(b'{"run": 1}', "party 1", "x") == {"run": 1}


# -- shapes and dealer requests ---------------------------------------------------------------
@pytest.mark.parametrize("shape, match", [
    ([1 << 20, 1 << 20], "announced a tensor of 1099511627776 elements"),
    ([-1, 4], "expected an integer in"),
    ([True, 2], "expected an integer in"),
    ("12", "malformed shape"),
    ([1] * 40, "malformed shape"),
])
def test_announced_shapes_are_checked_before_anything_is_allocated(shape, match):
    with pytest.raises(PartyError, match="party 3: .*" + match):
        check_shape(shape, 1 << 28, "party 3")
    assert check_shape([2, 0, 5], 100, "party 3") == (2, 0, 5)


@pytest.mark.parametrize("req, match", [
    ({"kind": "beaver", "args": {"op": "mul", "shape_a": [1 << 15, 1], "shape_b": [1, 1 << 15],
                                 "params": {}}}, "requested 1073741824 elements"),
    ({"kind": "cmp", "args": {"shape": [1 << 40], "width": 32}}, "dimension size = 1099511627776"),
    ({"kind": "cmp", "args": {"shape": [1 << 12, 1 << 12], "width": 32}}, "16777216 elements"),
    ({"kind": "beaver", "args": {"op": "conv2d", "shape_a": [1, 1, 4, 4],
                                 "shape_b": [1, 1, 2, 2], "params": {"out": [1]}}},
     "params are not a subset"),
    ({"kind": "beaver", "args": {"op": "pow", "shape_a": [1], "shape_b": [1]}},
     "cannot make"),
    ({"kind": "no_such_kind", "args": {}}, "cannot make"),
    ({"kind": "trunc", "args": {"shape": [2], "frac": 16, "extra": "x"}}, "cannot make"),
    ({"kind": "trunc", "args": {"shape": [2], "frac": 1.5}}, "not a small int"),
    ({"kind": "and"}, "not {kind, args}"),
    (["kind", "and"], "not {kind, args}"),
    ({"kind": "beaver", "args": {"op": "__import__", "shape_a": [1], "shape_b": [1]}},
     "op is not a small int, identifier"),
])
def test_the_dealer_refuses_malformed_or_oversized_requests_naming_party_0(req, match):
    assert_dealer_refuses(req, match)


def test_the_dealer_still_serves_a_well_formed_request():
    assert_dealer_serves({"kind": "beaver", "args": {
        "op": "conv2d", "shape_a": [1, 1, 4, 4], "shape_b": [2, 1, 3, 3],
        "params": {"padding": [1, 1], "stride": 1}}})


def test_max_elements_is_a_local_bound_not_compared_across_parties():
    import veil
    from veil.net.launch import public_config
    with pytest.raises(veil.ProtocolUsageError, match="max_elements must be a positive int"):
        veil.Config(max_elements=0)
    a, b = veil.Config(max_elements=10, timeout=5), veil.Config()
    assert public_config(a) == public_config(b)
    assert "frac_bits" in public_config(a) and "max_elements" not in public_config(a)
