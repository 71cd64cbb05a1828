"""AES-GCM records after the TLS handshake (veil.net.aead): the security claims of
docs/security.md, checked through a man-in-the-middle proxy on the real connection."""

import os
import socket
import threading
import time

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from veil.errors import PartyError
from veil.net.aead import (
    RECORD_MAX,
    AeadSocket,
    direction_keys,
    public_bytes,
    shared_secret,
    transcript,
)
from veil.net.cluster import load_cluster, write_cluster
from veil.net.loopback import connect_hubs, local_cluster

MARK = b"VEIL-PLAINTEXT-MARKER-"


class Proxy:
    """Forwards one TCP connection (party 1 -> party 0), keeping every byte it saw, and
    lets a test tamper with, drop, replay, inject or cut what party 1 sends next."""

    def __init__(self, target_port: int) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.target = target_port
        self.seen = {"up": bytearray(), "down": bytearray()}
        self.action = None             # applied to the next chunk going up (1 -> 0)
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        a, _ = self.server.accept()
        b = socket.create_connection(("127.0.0.1", self.target))
        self.up, self.down = a, b
        threading.Thread(target=self._pump, args=(a, b, "up"), daemon=True).start()
        threading.Thread(target=self._pump, args=(b, a, "down"), daemon=True).start()

    def _pump(self, src, dst, way: str) -> None:
        try:
            while True:
                chunk = src.recv(1 << 20)
                if not chunk:
                    dst.shutdown(socket.SHUT_WR)
                    return
                with self.lock:
                    self.seen[way] += chunk
                    act, self.action = (self.action, None) if way == "up" else (None,
                                                                                self.action)
                for piece in act(chunk) if act else [chunk]:
                    if piece is None:          # cut the connection here
                        for s in (dst, src):
                            s.shutdown(socket.SHUT_RDWR)
                        return
                    dst.sendall(piece)
        except OSError:
            pass


@pytest.fixture
def proxied(tmp_path):
    """Party 0 and party 1 connected through a `Proxy` (default bulk mode)."""
    cluster, listeners = local_cluster(tmp_path, 2)
    proxy = Proxy(listeners[0].getsockname()[1])
    # Party 1 dials the proxy; party 0 keeps accepting on its real socket.
    rows = [("127.0.0.1", proxy.port, "party0.crt"),
            ("127.0.0.1", listeners[1].getsockname()[1], "party1.crt")]
    cluster = load_cluster(write_cluster(tmp_path / "cluster.toml", None, rows,
                                         ("127.0.0.1", "dealer.crt")))
    listeners[1].close()

    def make(bulk=None):
        return connect_hubs(cluster, listeners, ranks=[0, 1], bulk=bulk), proxy
    yield make


def _close(hubs):
    for h in hubs.values():
        h.close()


@pytest.mark.parametrize("bulk", ["aes-gcm", "tls"])
def test_plaintext_never_crosses_the_wire(proxied, bulk):
    hubs, proxy = proxied(bulk)
    try:
        kind = AeadSocket if bulk == "aes-gcm" else __import__("ssl").SSLSocket
        assert isinstance(hubs[0].links[1].sock, kind)
        big = MARK * (3 * RECORD_MAX // len(MARK))          # several records
        hubs[1].links[0].send(MARK + b"small")
        hubs[1].links[0].send(big)
        hubs[0].links[1].send(MARK + b"back")
        assert bytes(hubs[0].links[1].recv(10.0)) == MARK + b"small"
        assert bytes(hubs[0].links[1].recv(10.0)) == big
        assert bytes(hubs[1].links[0].recv(10.0)) == MARK + b"back"
        time.sleep(0.1)
        with proxy.lock:
            wire = bytes(proxy.seen["up"]) + bytes(proxy.seen["down"])
        assert len(wire) > len(big)
        for secret in (MARK, b"cluster", b"bulk"):          # payloads, and the hellos
            assert secret not in wire
    finally:
        _close(hubs)


def _corrupt_last_byte(chunk):
    return [chunk[:-1] + bytes([chunk[-1] ^ 1])]


@pytest.mark.parametrize("action, match", [
    (_corrupt_last_byte, "party 1: sent a record that fails authentication"),
    (lambda c: [c, c], "party 1: sent a record that fails authentication"),     # replay
    (lambda c: [b"\xff\xff\xff\xff" + os.urandom(64)],
     "party 1: sent bytes that are not an encrypted veil record"),
    (lambda c: [(1000).to_bytes(4, "little") + os.urandom(1000)],
     "party 1: sent a record that fails authentication"),                      # forged
    (lambda c: [c[:len(c) // 2], None],
     "party 1: closed its connection in the middle of an encrypted record"),  # cut
])
def test_a_bad_record_is_a_clear_error_naming_the_peer_never_a_hang(proxied, action, match):
    hubs, proxy = proxied()
    try:
        hubs[1].links[0].send(b"first")
        assert bytes(hubs[0].links[1].recv(10.0)) == b"first"
        proxy.action = action
        hubs[1].links[0].send(b"second")
        t0 = time.monotonic()
        with pytest.raises(PartyError, match=match):
            for _ in range(2):         # a replay: the original arrives, then its copy fails
                assert bytes(hubs[0].links[1].recv(10.0)) == b"second"
        assert time.monotonic() - t0 < 5
    finally:
        _close(hubs)


def test_a_dropped_record_makes_the_next_one_fail(proxied):
    hubs, proxy = proxied()
    try:
        proxy.action = lambda c: []
        hubs[1].links[0].send(b"lost")
        time.sleep(0.2)
        hubs[1].links[0].send(b"next")
        with pytest.raises(PartyError, match="party 1: sent a record that fails auth"):
            hubs[0].links[1].recv(10.0)
    finally:
        _close(hubs)


def test_keys_differ_per_direction_and_per_session(proxied, tmp_path):
    hubs, _ = proxied()
    try:
        a, b = hubs[0].links[1].sock, hubs[1].links[0].sock
        assert a._tx._key == b._rx._key and a._rx._key == b._tx._key
        assert a._tx._key != a._rx._key
    finally:
        _close(hubs)
    cluster, listeners = local_cluster(tmp_path / "again", 2)
    listeners[1].close()
    again = connect_hubs(cluster, listeners, ranks=[0, 1])
    try:
        c = again[0].links[1].sock
        assert {c._tx._key, c._rx._key}.isdisjoint({a._tx._key, a._rx._key})
    finally:
        _close(again)


def test_keys_are_bound_to_both_certificates_and_both_public_keys():
    x, y = X25519PrivateKey.generate(), X25519PrivateKey.generate()
    secret = shared_secret(x, public_bytes(y))
    base = transcript("c", (0, "f0", public_bytes(x)), (1, "f1", public_bytes(y)))
    keys = direction_keys(secret, base, 0, 1)
    for other in (transcript("c", (0, "f0", public_bytes(x)), (1, "fX", public_bytes(y))),
                  transcript("d", (0, "f0", public_bytes(x)), (1, "f1", public_bytes(y))),
                  transcript("c", (0, "f0", public_bytes(y)), (1, "f1", public_bytes(x)))):
        assert set(direction_keys(secret, other, 0, 1)).isdisjoint(keys)
    for bad in (b"", b"\0" * 32, b"x" * 31, None):   # wrong size, or a low-order point
        with pytest.raises(ValueError, match="bulk-encryption key"):
            shared_secret(x, bad)


def test_both_ends_update_the_key_at_the_same_record():
    a, b = socket.socketpair()
    k1, k2 = os.urandom(32), os.urandom(32)
    x = AeadSocket.over(a, k1, k2, rekey_bytes=3000)
    y = AeadSocket.over(b, k2, k1, rekey_bytes=3000)
    try:
        first = x._tx._key
        msgs = [os.urandom(n) for n in (1000, 2500, 10, 4000, 7)]
        for m in msgs:
            x.sendall(m)
            got = bytearray(len(m))
            view, n = memoryview(got), 0
            while n < len(m):
                n += y.recv_into(view[n:])
            assert got == m
        assert x._tx._key != first and x._tx._key == y._rx._key
    finally:
        x.close()
        y.close()


def test_a_tls_only_party_and_an_aes_gcm_party_refuse_each_other_clearly(tmp_path):
    from veil.net.connect import Connector
    from veil.net.loopback import identity
    cluster, listeners = local_cluster(tmp_path, 2)
    listeners[1].close()
    errors = {}

    def one(r, bulk):
        try:
            Connector(cluster, r, identity(cluster, r), 10.0, 10.0, [1 - r],
                      bulk=bulk).run(listeners[0] if r == 0 else None).close()
        except PartyError as exc:
            errors[r] = str(exc)
    threads = [threading.Thread(target=one, args=(0, "aes-gcm")),
               threading.Thread(target=one, args=(1, "tls"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert "party 1: refused its connection" in errors[0]
    assert "disagree on bulk encryption" in errors[0] and "--tls-only" in errors[1]


def test_tls_only_flag_reaches_every_process_through_the_environment():
    from veil.cli import _insecure_env, _run_parser
    on = _run_parser().parse_args(["-n", "2", "--tls-only"])   # the script is split off
    off = _run_parser().parse_args(["-n", "2"])
    assert _insecure_env(on).get("VEIL_BULK") == "tls" and "VEIL_BULK" not in _insecure_env(off)


def test_records_are_the_same_without_encrypt_into(monkeypatch):
    """Older `cryptography` (no encrypt_into) takes the allocating calls: same records."""
    import veil.net.aead as A
    k = os.urandom(32)
    msg = os.urandom(5000)
    wires = []
    for into in (True, False):
        monkeypatch.setattr(A, "_INTO", into)
        a, b = socket.socketpair()
        x, y = AeadSocket.over(a, k, k), AeadSocket.over(b, k, k)
        x.sendall(msg)
        got = bytearray(len(msg))
        n = 0
        while n < len(msg):
            n += y.recv_into(memoryview(got)[n:])
        assert got == msg
        x.sendall(b"z")
        wires.append(bytes(x._obuf[:4 + 1 + 16]))
        x.close()
        y.close()
    assert wires[0] == wires[1]
