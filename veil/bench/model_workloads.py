"""Whole models end to end (issue 15): HF BERT-base classification, GPT-2 generation.

    python -m veil.bench.model_workloads                        # the default set
    python -m veil.bench.model_workloads --only bert --layers 1 2 12
    python -m veil.bench.model_workloads --only gpt2 --parties 3 --protocol rep3
    python -m veil.bench.model_workloads --network lan          # emulated links
    python -m veil.bench.model_workloads --truncation exact     # Config(truncation=...)
    python -m veil.bench.model_workloads --docs                 # also rewrite docs/benchmarks.md
    python -m veil.bench.model_workloads --no-run --docs        # the table of stored rows
    python -m veil.bench.model_workloads --only bert --stored-plan   # a new process whose
                                                    # request plans an earlier one stored
    python -m veil.bench --group models                         # the same as the first line

Every configuration runs under `veil run -n N` (one OS process per party, plus the
dealer for semi2k, TLS over loopback), so each party's peak RSS is its own. Models are
built from their configs with `transformers` (random weights, nothing downloaded):

* ``bert``: BertForSequenceClassification, BERT-base sizes (d 768, 12 heads, FFN 3072,
  vocab 30522), sequence 128, ``--layers`` encoder layers; the model at party 0, the
  token ids at party 1 (one-hot shared), the attention mask public; the logits are
  revealed to party 1 and compared with torch.
* ``gpt2``: GPT2LMHeadModel, GPT-2 small sizes (d 768, 12 heads, vocab 50257), a
  32-token prompt at party 1, 8 generated tokens with `veil.compile.decoder` (prefill
  once, then one token per step against the secret key/value cache); tokens compared
  with torch's greedy generation, logits teacher-forced on the generated tokens.

BERT runs the same forward twice: the first records the graph's dealer request plan
(veil.offline.plan), the second (a server's every later inference) follows it, so the
dealer works ahead from its first request. GPT-2's first step records the step's plan
and later steps follow it. Without a plan (a first forward) the dealer is still ahead
from the second layer on: the graph says where it repeats itself (veil.compile.repeats)
and the look-ahead copies the first layer's requests, keys renamed.
"Dealer waits" count the requests party 0 sent only when it needed them (a round trip
to the dealer on the critical path each; exact, equal at every party); the others were
sent ahead. The LAN / WAN predictions charge every dealer request a latency (a run
without a plan); those of the 2nd forward / later tokens only the requests waited for
(`predicted_warm`: the rest overlaps online work, as the emulated BERT runs confirm).
``--stored-plan`` measures a restarted server: `veil run --plan-dir` keeps each party's
plans on disk (veil.offline.planstore); a first `veil run` (not timed) stores them, and
the row is the second's, whose first forward follows the stored plan after one round in
which the parties check they hold the same. ``--plan-dir DIR`` keeps them in DIR instead
(across invocations: a row then says whether its first forward had a stored plan).

Times are the secure part only (capture, graph broadcast and weight sharing before the
clock), the maximum over parties. Counts are exact. Each run is merged into
``bench-results/models.json`` by configuration, and ``--docs`` renders every stored row,
so configurations can be run one at a time and the table rebuilt from them.

This module is both the driver and the party-side program (``--as-party``).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import pathlib
import sys
import tempfile
import time

import torch

import veil

from ..comm.netem import Network, predict
from ..compile import zoo
from ..compile.decoder import greedy_reference, secure_decoder
from ..context import stats_since
from ..docs_markers import markdown_table
from .docs_section import write_section
from .processes import veil_run, write_record
from .runner import host_line

RESULTS = pathlib.Path("bench-results/models.json")
BEGIN, END = "<!-- bench:models:begin -->", "<!-- bench:models:end -->"


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """One model configuration; ``seq`` is BERT's input length or GPT-2's prompt."""
    kind: str                      # "bert" or "gpt2"
    layers: int = 12
    d: int = 768
    heads: int = 12
    ffn: int = 3072
    vocab: int = 30522
    seq: int = 128
    positions: int = 512
    new_tokens: int = 0
    seed: int = 0

    @property
    def name(self) -> str:
        base = {"bert": "bert-base", "gpt2": "gpt2-small"}[self.kind] \
            if (self.d, self.heads) == (768, 12) else f"{self.kind} d{self.d}"
        what = f"seq {self.seq}" if self.kind == "bert" else \
            f"prompt {self.seq} + {self.new_tokens} tokens"
        return f"{base} x{self.layers} {what}"


def bert_base(layers: int = 12) -> ModelSpec:
    return ModelSpec("bert", layers)


def gpt2_small(layers: int = 12, prompt: int = 32, new_tokens: int = 8) -> ModelSpec:
    return ModelSpec("gpt2", layers, vocab=50257, seq=prompt, positions=1024,
                     new_tokens=new_tokens)


def build(spec: ModelSpec) -> torch.nn.Module:
    """The plaintext model, deterministic in ``spec.seed`` (the owner's copy)."""
    with torch.random.fork_rng():
        torch.manual_seed(spec.seed)
        if spec.kind == "bert":
            return zoo.hf_bert(spec.vocab, spec.d, spec.heads, spec.ffn, spec.layers,
                               spec.positions)
        return zoo.hf_gpt2(spec.vocab, spec.d, spec.heads, spec.layers, spec.positions)


def token_ids(spec: ModelSpec) -> torch.Tensor:
    """The data owner's input: (1, seq) token ids."""
    return torch.randint(0, spec.vocab, (1, spec.seq),
                         generator=torch.Generator().manual_seed(spec.seed + 1))


# -- party side ------------------------------------------------------------------------------
def _status_mb(field: str):
    """VmHWM (peak) of this process in MB; None in-process (parties share one heap)."""
    if os.environ.get("VEIL_PARTY") is None:
        return None
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024 / 1e6
    return None


def _cpu() -> float:
    """This process's CPU seconds: on a loaded host, closer to what a quiet one would take
    than the wall clock (in-process, the parties share one clock: not per party)."""
    return time.process_time()


def party_job(spec: ModelSpec) -> dict:
    """Runs in every party: the model at party 0, the token ids at party 1."""
    r = veil.rank()
    t0 = time.perf_counter()
    if spec.kind == "bert":
        rec = _bert(spec, r, t0)
    else:
        rec = _gpt2(spec, r, t0)
    rec["peak_mb"] = _status_mb("VmHWM")
    return rec


def _bert(spec, r, t0):
    ids, mask = token_ids(spec), torch.ones(1, spec.seq, dtype=torch.long)
    model = build(spec) if r == 0 else None
    m = veil.secure(model, owner=0, example_input=(ids,) if r == 0 else None,
                    example_kwargs={"attention_mask": mask} if r == 0 else None,
                    public_inputs=("attention_mask",))
    del model
    x = m.share_input("input_ids", ids if r == 1 else None, owner=1)
    setup = time.perf_counter() - t0
    s0, t1, c1, w1 = veil.stats(), time.perf_counter(), _cpu(), _dealer_wait_s()
    out = m(x, attention_mask=mask)
    seconds, cpu, wait = time.perf_counter() - t1, _cpu() - c1, _dealer_wait_s() - w1
    stats = stats_since(s0)
    logits = out["logits"].reveal(to=1)      # discloses the prediction to party 1 only
    # The same forward again: the dealer now knows its request plan (veil.offline.plan)
    # and works ahead from the first request (a server's second and later inferences).
    s0, t1, w1 = veil.stats(), time.perf_counter(), _dealer_wait_s()
    again = m(x, attention_mask=mask)
    warm_s, warm_wait = time.perf_counter() - t1, _dealer_wait_s() - w1
    warm = stats_since(s0)
    same = again["logits"].reveal(to=1)      # the same prediction, to party 1 only
    return {"setup_s": setup, "seconds": seconds, "cpu_s": cpu, "stats": stats,
            "dealer_wait_s": wait, "warm_s": warm_s, "warm_stats": warm,
            "warm_dealer_wait_s": warm_wait,
            "logits": logits.tolist() if r == 1 else None,
            "warm_logits": same.tolist() if r == 1 else None}


def _dealer_wait_s() -> float:
    """Party 0's time blocked on dealer replies so far (0 elsewhere; indicative)."""
    from ..context import current
    return getattr(current().provider, "wait_s", 0.0)


def _gpt2(spec, r, t0):
    prompt = token_ids(spec)
    model = build(spec) if r == 0 else None
    dec = secure_decoder(model, owner=0, prompt_len=spec.seq, max_new_tokens=spec.new_tokens)
    del model
    setup = time.perf_counter() - t0
    s0, t1, c1 = veil.stats(), time.perf_counter(), _cpu()
    # return_logits: the prompt owner also gets every step's logits, to measure the error
    # (revealed after each step's figures are taken, so not part of them).
    steps = []                      # this party's (seconds, stats, dealer wait) per token
    w = [_dealer_wait_s()]

    def on_token(i, sec, st):
        steps.append((sec, st))
        waits.append(_dealer_wait_s() - w[0])
        w[0] = _dealer_wait_s()
    waits: list = []
    g = dec.generate(prompt if r == 1 else None, owner=1, return_logits=True,
                     on_token=on_token)
    rec = {"setup_s": setup, "seconds": time.perf_counter() - t1, "cpu_s": _cpu() - c1,
           "stats": stats_since(s0),
           "prefill_s": steps[0][0], "prefill_stats": steps[0][1],
           "step_s": [s for s, _ in steps[1:]], "step_stats": [st for _, st in steps[1:]],
           "step_dealer_wait_s": waits[1:]}
    if g is not None:
        rec.update(tokens=g.tokens.tolist(), logits=[t.tolist() for t in g.logits])
    return rec


# -- driver ----------------------------------------------------------------------------------
def run_processes(spec: ModelSpec, parties: int = 2, protocol: str = "semi2k",
                  network: str | None = None, truncation: str | None = None,
                  plan_dir: str | None = None) -> list[dict]:
    """Each party's record, from a `veil run -n parties` of this module (``plan_dir``:
    `veil run --plan-dir`, the parties' request-plan store)."""
    # --timeout: the owner captures whole models (minutes on a loaded host) while the
    # other parties wait for the graph.
    cli = ["--protocol", protocol, "--timeout", "1800",
           *(["--network", network] if network else []),
           *(["--plan-dir", plan_dir] if plan_dir else [])]
    argv = ["--as-party", json.dumps(dataclasses.asdict(spec)), "--parties", str(parties),
            *(["--truncation", truncation] if truncation else [])]
    return veil_run("veil.bench.model_workloads", argv, parties, cli, timeout=3600)


def run_in_process(spec: ModelSpec, parties: int = 2, protocol: str = "semi2k",
                   seed: int = 0, network: str | None = None,
                   truncation: str | None = None, plan_dir: str | None = None) -> list[dict]:
    """The same records from threads in this process (no per-party memory figure);
    ``network`` emulates the links (veil.comm.netem) as the netem table does."""
    config = _config(network, truncation, plan_dir)
    return veil.run(party_job, spec, parties=parties, protocol=protocol, seed=seed,
                    config=config)


def _config(network: str | None = None, truncation: str | None = None,
            plan_dir: str | None = None):
    fields = {k: v for k, v in (("network", network), ("truncation", truncation),
                                ("plan_dir", plan_dir)) if v}
    return veil.Config(**fields) if fields else None


def summarize(spec: ModelSpec, recs: list[dict], parties: int, protocol: str,
              network: str | None, truncation: str | None = None) -> dict:
    """One table row: exact counts, times, memory, and the error against torch."""
    st = [r["stats"] for r in recs]
    row = {"model": spec.name, "spec": dataclasses.asdict(spec), "parties": parties,
           "protocol": protocol, "network": network or "loopback",
           "time_s": max(r["seconds"] for r in recs),
           "setup_s": max(r["setup_s"] for r in recs),
           "rounds": max(s["rounds"] for s in st),
           "bytes_sent_per_party": max(s["bytes_sent"] for s in st),
           "dealer_bytes_per_party": max(s["offline_bytes_received"] for s in st),
           "dealer_rounds": max(s["offline_rounds"] for s in st),
           "truncation": truncation or "default",
           # the first forward (step) followed a plan stored by an earlier process
           "stored_plan": st[0].get("dealer_plans_loaded", 0) > 0,
           "peak_mb": [r.get("peak_mb") for r in recs],
           "cpu_s": [r.get("cpu_s") if r.get("peak_mb") is not None else None for r in recs],
           "load": os.getloadavg()[0], "host": host_line()}
    model = build(spec)
    with torch.no_grad():
        if spec.kind == "bert":
            ids = token_ids(spec)
            want = model(ids, attention_mask=torch.ones_like(ids)).logits
            row["max_abs_err"] = (torch.tensor(recs[1]["logits"]) - want).abs().max().item()
            _warm_row(recs, row, want)
        else:
            _gpt2_row(spec, model, recs, row)
    return row


def _warm_row(recs, row, want):
    """The second forward (request plan known): time, dealer requests waited for."""
    st = [r["stats"] for r in recs]
    warm = [r["warm_stats"] for r in recs]
    row.update(warm_time_s=max(r["warm_s"] for r in recs),
               dealer_waits=st[0].get("dealer_waits"),
               warm_dealer_waits=warm[0].get("dealer_waits"),
               dealer_wait_s=recs[0].get("dealer_wait_s"),
               warm_dealer_wait_s=recs[0].get("warm_dealer_wait_s"),
               warm_rounds=max(s["rounds"] for s in warm),
               warm_max_abs_err=(torch.tensor(recs[1]["warm_logits"]) - want)
               .abs().max().item())


def _gpt2_row(spec, model, recs, row):
    """Per-token figures: the slowest party's time, the largest per-party counts."""
    owner = recs[1]
    prompt = token_ids(spec)
    got = torch.tensor(owner["tokens"])
    want = greedy_reference(model, prompt, spec.new_tokens)
    full = model(torch.cat([prompt, got], 1)).logits[:, spec.seq - 1:-1]   # teacher-forced
    logits = torch.stack([torch.tensor(x) for x in owner["logits"]], 1)
    top2 = full.topk(2, -1).values
    steps = [s for r in recs for s in r["step_stats"]]
    per_step = [max(ts) for ts in zip(*(r["step_s"] for r in recs))]

    def most(key, what="step_stats"):
        return max(s[key] for r in recs for s in
                   (r[what] if what == "step_stats" else [r[what]]))

    row.update(tokens_match=bool(torch.equal(got, want)), tokens=got.tolist(),
               torch_tokens=want.tolist(),
               max_abs_err=(logits - full).abs().max().item(),
               min_top2_gap=(top2[..., 0] - top2[..., 1]).min().item(),
               prefill_s=max(r["prefill_s"] for r in recs),
               prefill_rounds=most("rounds", "prefill_stats"),
               prefill_bytes=most("bytes_sent", "prefill_stats"),
               token_s=sum(per_step) / len(per_step), token_s_max=max(per_step),
               token_rounds=max(s["rounds"] for s in steps),
               token_bytes=max(s["bytes_sent"] for s in steps),
               token_dealer_bytes=most("offline_bytes_received"),
               token_dealer_rounds=most("offline_rounds"),
               # the first step records the step's request plan; later ones follow it
               first_step_s=per_step[0],
               warm_token_s=(sum(per_step[1:]) / len(per_step[1:])) if per_step[1:]
               else None,
               step_dealer_waits=[s.get("dealer_waits") for s in recs[0]["step_stats"]],
               prefill_dealer_waits=recs[0]["prefill_stats"].get("dealer_waits"),
               step_dealer_wait_s=recs[0].get("step_dealer_wait_s"))


def predicted(row: dict, net: str) -> float:
    """Cost model for ``net``: the loopback run's time + rounds x latency + bytes / bandwidth
    (veil.comm.netem.predict; the same form as the netem table). A BERT first forward
    adds a latency for each dealer request waited for (the others were sent ahead: repeat
    hints); rows older than the wait count charge every dealer request."""
    model = Network.parse(net)
    if row["spec"]["kind"] == "gpt2":
        return predict(row["token_s"], row["token_rounds"] + row["token_dealer_rounds"],
                       max(row["token_bytes"], row["token_dealer_bytes"]), model)
    dealer = row.get("dealer_waits")
    return predict(row["time_s"], row["rounds"] + (row["dealer_rounds"] if dealer is None
                                                   else dealer),
                   max(row["bytes_sent_per_party"], row["dealer_bytes_per_party"]), model)


def predicted_warm(row: dict, net: str) -> float | None:
    """The cost model for a run whose request plan is known (BERT's 2nd forward, GPT-2's
    later steps): requests sent ahead overlap online work, so only the dealer round trips
    waited for add latency. Checked on BERT-base: 155 s predicted vs 165 s emulated WAN,
    20.8 vs 19.3 s LAN (the form above predicts 223 and 21.9). None for older rows."""
    model = Network.parse(net)
    if row["spec"]["kind"] == "gpt2":
        waits = row.get("step_dealer_waits") or []
        if row.get("warm_token_s") is None or len(waits) < 2:
            return None
        return predict(row["warm_token_s"], row["token_rounds"] + max(waits[1:]),
                       max(row["token_bytes"], row["token_dealer_bytes"]), model)
    if row.get("warm_time_s") is None:
        return None
    return predict(row["warm_time_s"], row["warm_rounds"] + row["warm_dealer_waits"],
                   max(row["bytes_sent_per_party"], row["dealer_bytes_per_party"]), model)


def _mb(n):
    return f"{n / 1e6:,.0f}"


def _peak(row):
    vals = [p for p in row["peak_mb"] if p is not None]
    return " / ".join(f"{p:,.0f}" for p in vals) if vals else "n/a"


def _cpus(row):
    vals = [c for c in row.get("cpu_s") or [] if c is not None]
    return " / ".join(f"{c:,.0f}" for c in vals) if vals else "n/a"


def _pred(row):
    if not row["network"].startswith("loopback"):
        return "n/a", "n/a"
    return f"{predicted(row, 'lan'):.1f}", f"{predicted(row, 'wan'):.1f}"


def _pred_warm(row):
    if not row["network"].startswith("loopback") or predicted_warm(row, "lan") is None:
        return "n/a"
    return f"{predicted_warm(row, 'lan'):.1f} / {predicted_warm(row, 'wan'):.1f}"


_COMMON = [("model", lambda r: r["model"]),
           ("parties, protocol", lambda r: f"{r['parties']}, {r['protocol']}"
            + (f", trunc {r['truncation']}" if r.get("truncation", "default") != "default"
               else "") + (", stored plan" if r.get("stored_plan") else "")),
           ("link", lambda r: r["network"])]


def _opt(fmt, *keys):
    """A column of stored fields that older rows may lack ("n/a" there)."""
    def get(r):
        vals = [r.get(k) for k in keys]
        return "n/a" if any(v is None for v in vals) else fmt(*vals)
    return get
_TAIL = [("max abs err (logits)", lambda r: f"{r['max_abs_err']:.1e}")]
_LOAD = [("load", lambda r: f"{r['load']:.1f}")]
BERT_COLUMNS = _COMMON + [
    ("time (s)", lambda r: f"{r['time_s']:.1f}"),
    ("2nd forward, plan known (s)", _opt(lambda t: f"{t:.1f}", "warm_time_s")),
    ("dealer waits, 1st / 2nd", _opt(lambda a, b: f"{a:,} / {b:,}", "dealer_waits",
                                     "warm_dealer_waits")),
    ("CPU s/party", _cpus),
    ("rounds", lambda r: r["rounds"]),
    ("online MB sent/party", lambda r: _mb(r["bytes_sent_per_party"])),
    ("dealer MB/party", lambda r: _mb(r["dealer_bytes_per_party"])),
    ("peak RSS/party (MB)", _peak)] + _TAIL + [
    ("LAN predicted (s)", lambda r: _pred(r)[0]),
    ("WAN predicted (s)", lambda r: _pred(r)[1]),
    ("LAN / WAN predicted, 2nd forward (s)", _pred_warm)] + _LOAD
GPT2_COLUMNS = _COMMON + [
    ("prompt + 1st token (s)", lambda r: f"{r['prefill_s']:.1f}"),
    ("per token (s), mean / max", lambda r: f"{r['token_s']:.2f} / {r['token_s_max']:.2f}"),
    ("1st step / later, plan known (s)", _opt(lambda a, b: f"{a:.2f} / {b:.2f}",
                                               "first_step_s", "warm_token_s")),
    ("dealer waits/token, 1st / later", _opt(lambda w: f"{w[0]:,} / {max(w[1:]):,}"
                                             if len(w) > 1 else f"{w[0]:,}",
                                             "step_dealer_waits")),
    ("rounds/token", lambda r: r["token_rounds"]),
    ("online MB/token/party", lambda r: _mb(r["token_bytes"])),
    ("dealer MB/token/party", lambda r: _mb(r["token_dealer_bytes"])),
    ("prompt: rounds, MB", lambda r: f"{r['prefill_rounds']}, {_mb(r['prefill_bytes'])}"),
    ("CPU s/party, all tokens", _cpus),
    ("peak RSS/party (MB)", _peak),
    ("tokens = torch greedy", lambda r: "yes" if r["tokens_match"] else "NO")] + _TAIL + [
    ("LAN predicted (s/token)", lambda r: _pred(r)[0]),
    ("WAN predicted (s/token)", lambda r: _pred(r)[1]),
    ("LAN / WAN predicted, later tokens (s/token)", _pred_warm)] + _LOAD


def format_tables(rows: list[dict]) -> str:
    out = []
    for kind, columns in (("bert", BERT_COLUMNS), ("gpt2", GPT2_COLUMNS)):
        mine = [r for r in rows if r["spec"]["kind"] == kind]
        if mine:
            out += [markdown_table(columns, mine), ""]
    return "\n".join(out)


def _key(row: dict) -> str:
    trunc = row.get("truncation", "default")
    return f"{row['model']} | {row['parties']} {row['protocol']} | {row['network']}" + \
        ("" if trunc == "default" else f" | {trunc}") + \
        (" | stored plan" if row.get("stored_plan") else "")


def _merge(rows: list[dict], path: pathlib.Path = RESULTS) -> list[dict]:
    old = json.loads(path.read_text()) if path.exists() else []
    merged = {_key(r): r for r in old}
    merged.update({_key(r): r for r in rows})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(list(merged.values()), indent=1))
    return sorted(merged.values(), key=lambda r: (r["spec"]["kind"], r["network"],
                                                  r["parties"], r["spec"]["layers"]))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m veil.bench.model_workloads",
                                 description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=("bert", "gpt2"), help="one model family")
    ap.add_argument("--layers", type=int, nargs="*", help="BERT layer counts (default 12)")
    ap.add_argument("--parties", type=int, default=2)
    ap.add_argument("--protocol", default=None, help="semi2k (default) or rep3 (3 parties)")
    ap.add_argument("--network", help="emulate links under veil run: lan, wan, or custom")
    ap.add_argument("--truncation", help="veil.Config(truncation=...): exact, local, auto "
                    "(default: the Config default)")
    ap.add_argument("--docs", action="store_true", help="rewrite the table in docs from "
                    "every stored row (bench-results/models.json)")
    ap.add_argument("--in-process", action="store_true", help="parties as threads of this "
                    "process (no per-party memory; with --network, as the netem table runs)")
    ap.add_argument("--no-run", action="store_true", help="run nothing: print (and with "
                    "--docs write) the table of the stored rows")
    ap.add_argument("--plan-dir", help="veil run --plan-dir DIR: the parties keep their "
                    "request plans in DIR (a later invocation's first forward follows them)")
    ap.add_argument("--stored-plan", action="store_true", help="run each configuration "
                    "twice with a fresh plan directory and report the second run (a "
                    "restarted server whose plans an earlier process stored)")
    ap.add_argument("--as-party", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    if args.as_party:
        spec = ModelSpec(**json.loads(args.as_party))
        # No seed: real parties refuse one (a seed is a key); fresh randomness here.
        rec = next(r for r in veil.run(party_job, spec, parties=args.parties,
                                       config=_config(truncation=args.truncation))
                   if r is not None)
        write_record(args.out, rec)
        return 0
    protocol = args.protocol or "semi2k"
    specs = []
    if not args.no_run:
        if args.only in (None, "bert"):
            specs += [bert_base(n) for n in (args.layers or [12])]
        if args.only in (None, "gpt2"):
            specs.append(gpt2_small())
    print(f"load average at start: {os.getloadavg()}", flush=True)
    rows = []
    for spec in specs:
        # (in-process, each veil.run is a new run too: it keeps no plan from the last)
        run = functools.partial(run_in_process if args.in_process else run_processes,
                                spec, args.parties, protocol, network=args.network,
                                truncation=args.truncation)
        link = f"{args.network or 'loopback'}, in-process" if args.in_process else args.network
        if args.stored_plan:
            with tempfile.TemporaryDirectory(prefix="veil-plans-") as plans:
                run(plan_dir=plans)                 # stores the plans: not reported
                recs = run(plan_dir=plans)
        else:
            recs = run(plan_dir=args.plan_dir)
        rows.append(summarize(spec, recs, args.parties, protocol, link, args.truncation))
        print(format_tables(rows[-1:]), flush=True)
    allrows = _merge(rows)
    text = format_tables(allrows) + f"\nhost: {host_line()}; one process per party (and " \
                                    f"the dealer); load = 1-minute load average when the " \
                                    f"row's run ended\n"
    print(text)
    if args.docs:
        write_section(text, BEGIN, END)
    return 0


if __name__ == "__main__":
    sys.exit(main())
