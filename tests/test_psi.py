"""veil.psi: the join layout of the intersection, duplicates, empty and multi-column keys."""

import importlib

import numpy as np
import pytest

import veil
from veil.psi.ecdh import hash_to_u
from veil.psi.rr22 import available as rr22_available


def _psi(keys0, keys1, parties=2, pair=(0, 1), protocol="auto"):
    def job():
        keys = {pair[0]: keys0, pair[1]: keys1}.get(veil.rank())
        return veil.psi(keys, parties=pair, protocol=protocol)
    return veil.run(job, parties=parties)


def _pairs(out, k0, k1, pair=(0, 1)):
    a, b = out[pair[0]], out[pair[1]]
    assert len(a) == len(b)
    return sorted((k0[i], k1[j]) for i, j in zip(a, b))


def test_intersection_matches_plaintext_and_order_is_common():
    rng = np.random.default_rng(0)
    k0 = [int(x) for x in rng.choice(500, 120, replace=False)]
    k1 = [int(x) for x in rng.choice(500, 150, replace=False)]
    out = _psi(k0, k1)
    want = sorted((k, k) for k in set(k0) & set(k1))
    assert _pairs(out, k0, k1) == want
    assert all(k0[i] == k1[j] for i, j in zip(out[0], out[1]))   # row i pairs equal keys


def test_duplicates_give_the_many_to_many_join():
    pd = pytest.importorskip("pandas")
    k0 = ["x", "y", "x", "z"]
    k1 = ["x", "x", "x", "y", "w"]
    out = _psi(k0, k1)
    want = pd.DataFrame({"k": k0}).merge(pd.DataFrame({"k": k1}), on="k")
    assert len(out[0]) == len(want) == 7
    assert _pairs(out, k0, k1) == sorted(zip(want["k"], want["k"]))


def test_empty_intersection_and_empty_side():
    out = _psi([1, 2, 3], [4, 5])
    assert out[0].tolist() == [] and out[1].tolist() == []
    out = _psi([], [4, 5])
    assert out[0].tolist() == [] and out[1].tolist() == []


def test_multi_column_keys_and_mixed_numeric_types():
    pd = pytest.importorskip("pandas")
    k0 = pd.DataFrame({"a": [1, 1, 2], "b": ["u", "v", "u"]})
    k1 = [(1.0, "v"), (2, "u"), (2, "v")]
    out = _psi(k0, k1)
    assert sorted(zip(out[0].tolist(), out[1].tolist())) == [(1, 0), (2, 1)]


def test_length_prefix_keeps_tuples_apart():
    out = _psi([("a", "bc")], [("ab", "c")])
    assert out[0].tolist() == []


def test_third_party_gets_none_and_sees_no_traffic():
    def job():
        keys = {1: [1, 2, 3], 2: [2, 3, 4]}.get(veil.rank())
        res = veil.psi(keys, parties=(1, 2))
        return res, veil.stats()["bytes_received"]
    out = veil.run(job, parties=3)
    assert out[0][0] is None and out[0][1] == 0
    assert sorted(out[1][0].tolist()) == [1, 2]


def test_keys_never_cross_in_plaintext():
    """The wire carries 32-byte curve points, none equal to a key's hash or the key."""
    import veil.comm.communicator as cm
    seen = []
    orig = cm.Communicator.send_bytes

    def spy(self, peer, payload):
        seen.append(bytes(payload))
        return orig(self, peer, payload)
    cm.Communicator.send_bytes = spy
    try:
        keys = [f"secret-email-{i}@example.com" for i in range(20)]
        _psi(keys, keys[10:])
    finally:
        cm.Communicator.send_bytes = orig
    wire = b"".join(seen)
    from veil.psi import canonical_keys
    for k in canonical_keys(keys):
        assert k not in wire and hash_to_u(k) not in wire


def test_null_keys_and_bad_arguments_are_refused():
    with pytest.raises(veil.PartyError, match="NULL"):
        _psi([1, None], [1])
    with pytest.raises(veil.PartyError, match="two distinct parties"):
        veil.run(lambda: veil.psi([1], parties=(0, 0)), parties=2)


@pytest.mark.parametrize("protocol", ["ecdh", "rr22"])
def test_protocols_agree_with_plaintext_with_duplicates(protocol):
    """Both backends: the many-to-many join equals pandas' merge, row pairs equal keys."""
    pd = pytest.importorskip("pandas")
    if protocol == "rr22" and not rr22_available():
        pytest.skip("the PSI environment (.venv-psi, `make psi-env`) is not built")
    rng = np.random.default_rng(3)
    k0 = rng.integers(0, 400, 600)                 # numpy fast path, duplicates
    k1 = [int(x) for x in rng.integers(0, 400, 500)]   # general path, duplicates

    def job():
        info = {}
        keys = {0: k0, 1: k1}.get(veil.rank())
        return veil.psi(keys, parties=(0, 1), protocol=protocol, info=info), info
    out = veil.run(job, parties=2)
    (a, info0), (b, info1) = out
    assert info0["protocol"] == info1["protocol"] == protocol
    assert info0["common"] == info1["common"] == len(set(k0.tolist()) & set(k1))
    want = pd.DataFrame({"k": k0}).merge(pd.DataFrame({"k": k1}), on="k")
    assert len(a) == len(b) == len(want)
    assert (k0[a] == np.asarray(k1)[b]).all()
    assert sorted(zip(a.tolist(), b.tolist())) == sorted(
        (int(i), int(j)) for i in range(len(k0)) for j in range(len(k1)) if k0[i] == k1[j])


needs_rr22 = pytest.mark.skipif(
    not rr22_available(), reason="the PSI environment (.venv-psi, `make psi-env`) is not built")


def _cluster_at(tmp_path, host, name="c"):
    from veil.net.certs import make_self_signed, write_cert, write_key
    from veil.net.cluster import load_cluster, write_cluster
    d = tmp_path / name
    d.mkdir()
    for r, role in enumerate(["party0", "party1", "dealer"]):
        key, cert = make_self_signed(f"veil {role}", 2)
        write_key(d / f"{role}.key", key)
        write_cert(d / f"{role}.crt", cert)
    path = write_cluster(d / "cluster.toml", None,
                         [(host, 1, "party0.crt"), (host, 2, "party1.crt")], (host, "dealer.crt"))
    return load_cluster(path)


@needs_rr22
def test_rr22_between_hosts_uses_tls_and_refuses_a_stranger(tmp_path, monkeypatch):
    """Parties on different hosts (127.0.0.2 is not loopback to veil's cluster rules)
    run RR22 over TLS with their cluster certificates; a peer whose certificate is not
    in the trust list fails the handshake, reported as such (not a hang)."""
    rr22 = importlib.import_module("veil.psi.rr22")
    good = _cluster_at(tmp_path, "127.0.0.2")
    stranger = _cluster_at(tmp_path, "127.0.0.2", "s")
    seen = []
    orig = rr22._transport

    def spy(comm, peer, folder):
        out = orig(comm, peer, folder)
        seen.append(out[1])
        return out
    monkeypatch.setattr(rr22, "_transport", spy)
    monkeypatch.setattr(rr22, "_cluster", lambda: good)
    k0, k1 = np.arange(0, 300), np.arange(150, 400)

    def job():
        return veil.psi({0: k0, 1: k1}[veil.rank()], protocol="rr22")
    a, b = veil.run(job, parties=2)
    assert sorted(k0[a].tolist()) == list(range(150, 300)) and (k0[a] == k1[b]).all()
    assert all(t is not None and t["cert"].endswith(("party0.crt", "party1.crt")) for t in seen)

    def trust_only_strangers():
        import veil as v
        return stranger if v.rank() == 1 else good
    monkeypatch.setattr(rr22, "_cluster", trust_only_strangers)
    monkeypatch.setenv("VEIL_PSI_TIMEOUT", "10")
    with pytest.raises(veil.PartyError, match="SSL|certificate|no result after"):
        veil.run(job, parties=2)


@needs_rr22
def test_rr22_worker_death_is_a_clear_error_and_stops_both(tmp_path, monkeypatch):
    from veil.psi.rr22 import python_path
    wrapper = tmp_path / "python"
    wrapper.write_text(f"""#!/bin/sh
if [ "$2" != "--probe" ] && grep -q '"rank": 0' "$2/config.json"; then kill -9 $$; fi
exec {python_path()} "$@"
""")
    wrapper.chmod(0o700)
    monkeypatch.setenv("VEIL_PSI_PYTHON", str(wrapper))

    def job():
        return veil.psi({0: np.arange(100), 1: np.arange(50, 150)}[veil.rank()],
                        protocol="rr22")
    with pytest.raises(veil.PartyError, match="party 0.*RR22 PSI subprocess failed: "
                                              "killed by signal 9"):
        veil.run(job, parties=2)


def test_missing_rr22_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("VEIL_PSI_PYTHON", str(tmp_path / "nowhere" / "python"))

    def job(protocol):
        def f():
            info = {}
            out = veil.psi({0: [1, 2, 3], 1: [2, 3, 4]}[veil.rank()], protocol=protocol,
                           info=info)
            return sorted(out.tolist()), info["protocol"]
        return f
    # auto falls back to ECDH (and says so); an explicit rr22 request is refused clearly
    assert veil.run(job("auto"), parties=2)[0] == ([1, 2], "ecdh")
    with pytest.raises(veil.PartyError, match="protocol='rr22' is not available at this "
                                              "party: run `make psi-env`"):
        veil.run(job("rr22"), parties=2)
    with pytest.raises(veil.PartyError, match="protocol must be one of"):
        veil.run(job("kkrt"), parties=2)


@needs_rr22
def test_rr22_wire_carries_neither_keys_nor_their_digests(monkeypatch):
    """Everything libpsi's connection carries (captured by a relay): no key, no canonical
    key bytes, no 128-bit input digest appears in it."""
    rr22 = importlib.import_module("veil.psi.rr22")
    from veil.bench.psi_bench import Relay
    from veil.psi import canonical_keys
    wire = []
    monkeypatch.setattr(rr22, "PEER_ADDRESS_HOOK", lambda addr: Relay(addr, wire).address)
    keys = [f"secret-email-{i}@example.com" for i in range(200)]
    out = _psi(keys, keys[100:] + ["other@example.com"], protocol="rr22")
    assert sorted(out[0].tolist()) == list(range(100, 200))
    blob = b"".join(wire)
    assert len(blob) > 10_000                     # the PSI did run through the relay
    canon = canonical_keys(keys)
    for k, c, d in zip(keys, canon, rr22.digests(canon)):
        assert k.encode() not in blob and c not in blob
        assert bytes(d) not in blob and d.hex().encode() not in blob


@needs_rr22
def test_rr22_between_parties_1_and_2_of_three():
    """RR22 between two of three parties: the third gets None and no traffic."""
    def job():
        keys = {1: np.arange(0, 500), 2: np.arange(250, 900)}.get(veil.rank())
        res = veil.psi(keys, parties=(1, 2), protocol="rr22")
        return res, veil.stats()["bytes_received"]
    out = veil.run(job, parties=3)
    assert out[0][0] is None and out[0][1] == 0
    a, b = out[1][0], out[2][0]
    assert sorted(np.arange(0, 500)[a].tolist()) == list(range(250, 500))
    assert (np.arange(0, 500)[a] == np.arange(250, 900)[b]).all()
