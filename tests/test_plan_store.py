"""Request plans kept on disk (veil.offline.planstore, ``Config(plan_dir=...)``).

Each `veil.run` is a new run with a new provider (as a restarted process is): without a
store its first forward of a graph waits on the dealer; with one, a plan stored by an
earlier run is followed from the first request once every party holds the same. The
checks: counts (dealer waits, plans loaded, the one agreement round), results against
torch and bit for bit against the run that recorded the plan (truncation errs by one
unit depending on the randomness, so any PRG out of step would show), parties holding
different plans use none, a wrong plan agreed by all costs only dropped predictions,
bad files are refused with a reason, and a file holds public request descriptions only.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
from pathlib import Path

import pytest
import torch

import veil
from test_dealer_plan import ATOL, NET, OTHER, X      # the plan tests' two small models
from test_net_launch import SCRIPTS, veil_cmd
from veil.compile import zoo
from veil.compile.decoder import greedy_reference, secure_decoder
from veil.context import current
from veil.net.launch import public_config
from veil.offline import planstore
from veil.offline.materials import _KINDS
from veil.offline.planstore import OTHER_FIELDS, REQUEST_FIELDS, PlanStore, canonical

with torch.no_grad():
    WANT = {"net": NET(X), "other": OTHER(X)}


def _job(which="net", period=True, forwards=1):
    """Forwards of NET (or OTHER): the revealed outputs, each forward's dealer counters
    and offline rounds, and the graph's plan tag."""
    model = {"net": NET, "other": OTHER}[which]

    def job():
        if not period:                             # no period guesses (dropped ones
            current().provider._pred.observe = lambda *a: None   # would shift the draws)
        mine = veil.rank() == 0
        m = veil.secure(model if mine else None, owner=0, example_input=X)
        x = veil.tensor(X if veil.rank() == 1 else None, owner=1)
        outs, counts = [], []
        for _ in range(forwards):
            s0 = veil.stats()
            outs.append(m(x).reveal())
            s1 = veil.stats()
            counts.append({k: s1[k] - s0[k] for k in s1
                           if k.startswith("dealer_") or k == "offline_rounds"})
        return outs, counts, m.plan_tag
    return job


def _run(plan_dir, parties=2, which="net", period=True, forwards=1, **config):
    res = veil.run(_job(which, period, forwards), parties=parties, seed=0,
                   config=veil.Config(plan_dir=plan_dir, **config))
    dealer = [[{k: v for k, v in c.items() if k.startswith("dealer_")} for c in r[1]]
              for r in res]
    assert all(d == dealer[0] for d in dealer), "parties count differently"
    outs, counts, tag = res[0]
    for y in outs:
        assert (y - WANT[which]).abs().max().item() <= ATOL
    return outs, counts, tag


def _files(root: Path, parties: int) -> list[Path]:
    out = [sorted((root / f"party{r}").glob("*.json")) for r in range(parties)]
    assert all(len(f) == 1 for f in out), out
    return [f[0] for f in out]


@pytest.mark.parametrize("parties", [2, 3])
def test_a_new_run_follows_the_plan_an_earlier_run_stored(tmp_path, parties):
    outs1, (c1,), _ = _run(tmp_path, parties, period=False)
    assert c1["dealer_waits"] > 10 and c1["dealer_plans_loaded"] == 0
    files = _files(tmp_path, parties)
    assert len({f.read_bytes() for f in files}) == 1          # every party, the same plan
    outs2, (c2,), _ = _run(tmp_path, parties, period=False)
    assert c2["dealer_plans_loaded"] == 1
    assert c2["dealer_waits"] == 0 and c2["dealer_dropped"] == 0
    assert c2["dealer_ahead"] == c2["dealer_requests"] == c1["dealer_requests"]
    assert torch.equal(outs1[0], outs2[0])                    # the same material drawn
    # without a store: the same run, less the agreement's one offline round
    _, (c0,), _ = _run(None, parties, period=False)
    assert c1 == dict(c0, offline_rounds=c0["offline_rounds"] + 1)


def test_a_transformer_encoder_from_its_first_forward(tmp_path):
    with torch.random.fork_rng():
        torch.manual_seed(0)
        enc = torch.nn.Sequential(*[zoo.transformer_encoder_layer(16, 2, 32, "gelu")
                                    for _ in range(2)]).eval()
    h = torch.randn(2, 6, 16, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        want = enc(h)

    def job():
        m = veil.secure(enc if veil.rank() == 0 else None, owner=0, example_input=h)
        x = veil.tensor(h if veil.rank() == 1 else None, owner=1)
        s0 = veil.stats()
        y = m(x).reveal()
        return y, veil.stats()["dealer_waits"] - s0["dealer_waits"]
    config = veil.Config(plan_dir=str(tmp_path))
    (y1, waits1), _ = veil.run(job, parties=2, config=config)
    (y2, waits2), _ = veil.run(job, parties=2, config=config)
    assert waits1 > 0 and waits2 == 0
    for y in (y1, y2):
        assert (y - want).abs().max().item() <= 1e-2


def test_a_decoder_generates_from_its_first_token_with_stored_plans(tmp_path):
    with torch.random.fork_rng():
        torch.manual_seed(2)
        lm = zoo.hf_gpt2(vocab=40, d=16, heads=2, layers=1, seq=16)
    prompt = torch.tensor([[5, 17, 3]])

    def job():
        dec = secure_decoder(lm if veil.rank() == 0 else None, owner=0, prompt_len=3,
                             max_new_tokens=3)
        return dec.generate(prompt if veil.rank() == 1 else None, owner=1)
    config = veil.Config(plan_dir=str(tmp_path))
    first = veil.run(job, parties=2, config=config)[1]
    again = veil.run(job, parties=2, config=config)[1]
    want = greedy_reference(lm, prompt, 3)
    assert torch.equal(first.tokens, want) and torch.equal(again.tokens, want)
    assert first.prefill_stats["dealer_waits"] > 0 and first.step_stats[0]["dealer_waits"] > 0
    # the prompt's pass and every step: predicted from the plans the first run stored
    assert again.prefill_stats["dealer_waits"] == 0
    assert [s["dealer_waits"] for s in again.step_stats] == [0, 0]
    assert again.prefill_stats["dealer_plans_loaded"] == 1
    assert again.step_stats[0]["dealer_plans_loaded"] == 1


def _other_plans(root: Path, parties: int) -> list[bytes]:
    """OTHER's stored plans rewritten under the headers of NET's (in ``root``): valid
    files whose requests are not NET's, one per party."""
    _run(root / "other", parties, which="other")
    out = []
    for mine, theirs in zip(_files(root, parties), _files(root / "other", parties)):
        doc = json.loads(theirs.read_text())
        doc["header"] = json.loads(mine.read_text())["header"]
        out.append(canonical(doc))
    return out


@pytest.mark.parametrize("change", ["deleted", "another plan"])
def test_parties_holding_different_plans_use_none(tmp_path, change, caplog):
    _, (c1,), _ = _run(tmp_path, 2)
    f0, f1 = _files(tmp_path, 2)
    good = f1.read_bytes()
    if change == "deleted":
        f1.unlink()
    else:
        f1.write_bytes(_other_plans(tmp_path, 2)[1])
    with caplog.at_level(logging.WARNING, logger="veil.plans"):
        _, (c2,), _ = _run(tmp_path, 2)
    assert c2["dealer_plans_loaded"] == 0 and c2["dealer_waits"] == c1["dealer_waits"]
    assert "parties hold different ones" in caplog.text
    assert f1.read_bytes() == good                 # recorded again: the same everywhere
    _, (c3,), _ = _run(tmp_path, 2)
    assert c3["dealer_plans_loaded"] == 1 and c3["dealer_waits"] == 0


@pytest.mark.parametrize("parties", [2, 3])
def test_a_wrong_plan_agreed_by_all_costs_only_dropped_predictions(tmp_path, parties):
    _run(tmp_path, parties)
    files = _files(tmp_path, parties)
    good = files[0].read_bytes()
    for f, other in zip(files, _other_plans(tmp_path, parties)):
        f.write_bytes(other)
    _, (c,), _ = _run(tmp_path, parties)                       # results checked in _run
    assert c["dealer_plans_loaded"] == 1 and c["dealer_dropped"] > 0
    assert all(f.read_bytes() == good for f in files)         # replaced by the right one
    _, (c,), _ = _run(tmp_path, parties)
    assert c["dealer_waits"] == 0 and c["dealer_dropped"] == 0


def test_a_corrupt_file_at_every_party_leaves_the_run_as_without_one(tmp_path, caplog):
    _, (c1,), _ = _run(tmp_path, 2)
    files = _files(tmp_path, 2)
    good = files[0].read_bytes()
    for f in files:
        f.write_bytes(good[: len(good) // 2])                 # a write cut short
    with caplog.at_level(logging.WARNING, logger="veil.plans"):
        _, (c2,), _ = _run(tmp_path, 2)
    assert "ignoring the stored request plan" in caplog.text and "not a JSON plan" in caplog.text
    assert c2["dealer_plans_loaded"] == 0 and c2["dealer_waits"] == c1["dealer_waits"]
    assert files[0].read_bytes() == good


def test_another_config_or_party_count_finds_no_plan(tmp_path):
    _run(tmp_path, 2)
    _, (c,), _ = _run(tmp_path, 2, frac_bits=14, compare_bits=31)
    assert c["dealer_plans_loaded"] == 0
    assert len(list((tmp_path / "party0").glob("*.json"))) == 2


def test_a_run_that_fails_midway_stores_nothing(tmp_path):
    def job():
        prov = current().provider
        x = veil.tensor(torch.ones(3) if veil.rank() == 0 else None, owner=0)
        try:
            with prov.plan("graph:failed"):
                x * x
                raise KeyError("midway")
        except KeyError:
            pass
        with prov.plan("graph:done"):
            x * x
        return prov._store.path("graph:failed"), prov._store.path("graph:done")
    failed, done = veil.run(job, parties=2, config=veil.Config(plan_dir=str(tmp_path)))[0]
    assert not failed.exists() and done.exists()


def test_a_new_process_under_veil_run_follows_a_stored_plan(tmp_path):
    """An earlier process (this one, in-process parties) stores the plan; `veil run
    --plan-dir` starts new ones, whose first forward follows it."""
    sys.path.insert(0, str(SCRIPTS))
    try:
        import net_plans
    finally:
        sys.path.remove(str(SCRIPTS))
    first = veil.run(net_plans.job, parties=2, config=veil.Config(plan_dir=str(tmp_path)))
    assert first[0]["counts"]["dealer_waits"] > 0
    code, out, err, _ = veil_cmd(["run", "-n", "2", "--plan-dir", str(tmp_path),
                                  str(SCRIPTS / "net_plans.py")], timeout=120)
    assert code == 0, err
    got = [json.loads(line.split("RESULT ", 1)[1]) for line in out.splitlines()
           if "RESULT " in line]
    assert sorted(r["rank"] for r in got) == [0, 1]
    for r in got:
        assert r["err"] < ATOL
        assert r["counts"]["dealer_plans_loaded"] == 1 and r["counts"]["dealer_waits"] == 0


# -- the file: public content, untrusted input ---------------------------------------------
ARG_NAMES = {"op", "shape", "shape_a", "shape_b", "frac", "frac_a", "frac_b", "width",
             "terms", "params", "to_a", "to_b"}      # (to_a/to_b: a party index)


def _values(x):
    if isinstance(x, dict):
        for k, v in x.items():
            yield k
            yield from _values(v)
    elif isinstance(x, list):
        for v in x:
            yield from _values(v)
    else:
        yield x


def test_a_file_holds_public_request_descriptions_only(tmp_path):
    _run(tmp_path, 2)
    doc = json.loads(_files(tmp_path, 2)[0].read_text())
    assert set(doc) == {"format", "header", "requests"}
    assert set(doc["header"]) == {"format", "tag", "veil", "protocol", "parties",
                                  *REQUEST_FIELDS}
    for kind, plain, keyed in doc["requests"]:
        assert kind in _KINDS and set(plain) <= ARG_NAMES
        assert all(name.startswith("key") and mode in ("rel", "abs") for name, mode, _ in keyed)
    values = list(_values(doc["requests"]))
    # shapes, fractional bits, widths and key numbers: no share or seed (64-bit uniform)
    assert all(type(v) is not float for v in values)
    assert max(v for v in values if type(v) is int) < 1 << 10
    assert {v for v in values if type(v) is str} <= ARG_NAMES | set(_KINDS) | {
        "mul", "matmul", "conv2d", "key", "key_a", "key_b", "rel", "abs", "stride",
        "padding", "dilation", "groups"}


HEADER = {"format": planstore.FORMAT, "tag": "graph:t", "veil": "0.1.0", "parties": 2}
GOOD = [["trunc", {"shape": [2, 3], "frac": 16}, []],
        ["beaver_keyed", {"op": "matmul", "shape_a": [2, 3], "shape_b": [3, 4]},
         [["key_a", "rel", 0], ["key_b", "abs", 7]]]]


def _doc(requests=GOOD, **top):
    return json.dumps({"format": planstore.FORMAT, "header": HEADER, "requests": requests,
                       **top}).encode()


def _req(i, value):
    reqs = json.loads(json.dumps(GOOD))
    reqs[1][i] = value
    return _doc(reqs)


BAD = {
    "truncated": _doc()[:-7],
    "not utf-8": b"\xff\xfe" + _doc(),
    "nested 100k deep": b"[" * 100_000 + b"]" * 100_000,
    "a float": _doc().replace(b'"frac": 16', b'"frac": 16.5'),
    "NaN": _doc().replace(b'"frac": 16', b'"frac": NaN'),
    "a huge int": _doc().replace(b'"frac": 16', b'"frac": ' + b"9" * 5000),
    "another graph's header": _doc().replace(b"graph:t", b"graph:u"),
    "an extra field": _doc(extra=1),
    "requests not a list": _doc({"a": 1}),
    "unknown kind": _req(0, "rm_rf"),
    "a mask kind": _req(0, "mask"),
    "a negative size": _req(1, {"op": "matmul", "shape_a": [2, -3], "shape_b": [3, 4]}),
    "inner sizes differ": _req(1, {"op": "matmul", "shape_a": [2, 5], "shape_b": [3, 4]}),
    "an unknown op": _req(1, {"op": "pow", "shape_a": [2, 3], "shape_b": [3, 4]}),
    "too many elements": _req(1, {"op": "matmul", "shape_a": [2, 1 << 40],
                                  "shape_b": [1 << 40, 4]}),
    "a string key": _req(2, [["key_a", "rel", "0"], ["key_b", "abs", 7]]),
    "a bool key": _req(2, [["key_a", "rel", True], ["key_b", "abs", 7]]),
    "a key out of range": _req(2, [["key_a", "rel", 1 << 50], ["key_b", "abs", 7]]),
    "a key mode": _req(2, [["key_a", "eval", 0], ["key_b", "abs", 7]]),
    "a key twice": _req(2, [["key_a", "rel", 0], ["key_a", "abs", 7]]),
    "a missing key": _req(2, [["key_a", "rel", 0]]),
    "conv channels": _req(1, {"op": "conv2d", "shape_a": [1, 3, 8, 8],
                              "shape_b": [4, 2, 3, 3]}),
    "an entry not a list": _doc([GOOD[0], "x"]),
    "a mask opened to no such party": _req(1, {"op": "matmul", "shape_a": [2, 3],
                                              "shape_b": [3, 4], "to_a": 2}),
}


def test_a_good_file_parses_into_plan_entries():
    owner_aware = _req(1, {"op": "matmul", "shape_a": [2, 3], "shape_b": [3, 4], "to_a": 0})
    assert planstore.parse(owner_aware, HEADER)[1][1]["to_a"] == 0
    got = planstore.parse(_doc(), HEADER)
    assert got == [("trunc", {"shape": [2, 3], "frac": 16}, ()),
                   ("beaver_keyed", {"op": "matmul", "shape_a": [2, 3], "shape_b": [3, 4]},
                    (("key_a", ("rel", 0)), ("key_b", ("abs", 7))))]


@pytest.mark.parametrize("name", list(BAD))
def test_a_bad_file_is_refused_with_a_reason(tmp_path, name, caplog):
    store = PlanStore(tmp_path, 0, {k: v for k, v in HEADER.items()
                                    if k not in ("format", "tag")})
    assert store.header("graph:t") == HEADER
    store.dir.mkdir()
    store.path("graph:t").write_bytes(BAD[name])
    with caplog.at_level(logging.WARNING, logger="veil.plans"):
        assert store.load("graph:t") is None
    [rec] = caplog.records
    assert "ignoring the stored request plan" in rec.getMessage()
    assert len(rec.getMessage()) < 400                      # a reason, not the file


def test_an_oversized_file_is_not_read_whole(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(planstore, "MAX_FILE_BYTES", 64)
    store = PlanStore(tmp_path, 0, {})
    store.dir.mkdir()
    store.path("graph:t").write_bytes(b" " * 10_000)
    with caplog.at_level(logging.WARNING, logger="veil.plans"):
        assert store.load("graph:t") is None
    assert "larger than 64 bytes" in caplog.text
    store.save("graph:t", [("trunc", {"shape": [2, 3], "frac": 16}, ())] * 10)
    assert "not stored" in caplog.text


def test_a_fifo_in_a_files_place_is_not_waited_on(tmp_path, caplog):
    store = PlanStore(tmp_path, 0, {})
    store.dir.mkdir()
    os.mkfifo(store.path("graph:t"))           # opening it to read would block
    with caplog.at_level(logging.WARNING, logger="veil.plans"):
        assert store.load("graph:t") is None
    assert "not a regular file" in caplog.text


def test_a_store_that_cannot_be_written_logs_and_goes_on(tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with caplog.at_level(logging.WARNING, logger="veil.plans"):
        PlanStore(blocker, 0, {}).save("graph:t", [])
    assert "cannot store the request plan" in caplog.text


# -- configuration ------------------------------------------------------------------------
def test_every_config_field_is_classified_for_the_store_key():
    fields = {f.name for f in dataclasses.fields(veil.Config)}
    assert set(REQUEST_FIELDS) | set(OTHER_FIELDS) == fields
    assert not set(REQUEST_FIELDS) & set(OTHER_FIELDS)


def test_plan_dir_is_compared_across_parties_as_set_or_not(tmp_path):
    a, b = veil.Config(plan_dir=str(tmp_path / "a")), veil.Config(plan_dir=tmp_path / "b")
    assert b.plan_dir == str(tmp_path / "b")
    assert public_config(a) == public_config(b) != public_config(veil.Config())
    with pytest.raises(veil.ProtocolUsageError, match="plan_dir"):
        veil.Config(plan_dir="")
