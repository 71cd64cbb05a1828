"""`python -m veil.bench --group dp`: accuracy vs ε of DP-SGD on shares.

On the credit-scoring example's data (examples/credit_scoring.py: the synthetic two-bank
table, 1600 training customers, and breast_cancer, 455), logistic regression split
vertically between 2 banks:

* ``secure``: non-private secure training (veil.nn.fit, the example's settings);
* ``secure DP``: `veil.dp.make_private` (hidden Poisson batches, per-example clipping
  and joint noise inside MPC) at ε ∈ {1, 3, 8}, δ = 1e-5, noise calibrated to reach ε
  after the run's epochs (RDP);
* ``Opacus``: plaintext DP-SGD on the pooled table with Opacus 1.6 at the same noise
  multiplier, sampling rate, clip norm, learning rate and epochs.

DP rows are the mean ± standard deviation of the test accuracy over ``--seeds`` runs
(different noise and batches). Costs are per epoch at the party 0: bytes sent, rounds
(machine-independent), seconds (fastest of the seeds, host load printed). Writes the
table into docs/training.md with ``--docs``.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import pathlib
import statistics
import time
import warnings

import torch

import veil

from ..docs_markers import replace_marked
from .accountant import calibrate_noise
from .private import make_private
from .sampling import sampling_rate

ROOT = pathlib.Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "training.md"
BEGIN, END = "<!-- bench:dp:begin -->", "<!-- bench:dp:end -->"
EPSILONS = (1.0, 3.0, 8.0)
DELTA = 1e-5
SETTINGS = {   # data: (batch, lr, epochs, clip) for DP; the non-private run uses the example's
    "synthetic": (256, 1.0, 5, 1.0),
    "breast_cancer": (64, 1.0, 5, 1.0),
}


def _example():
    spec = importlib.util.spec_from_file_location("credit_scoring",
                                                  ROOT / "examples" / "credit_scoring.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _data(ex, name: str):
    a, b, y = ex.breast_cancer() if name == "breast_cancer" else ex.synthetic_credit()
    tr, te = veil.data.split_indices(len(y), 0.2, seed=0)
    xa, xa_t = ex.standardise(a[tr], a[te])
    xb, xb_t = ex.standardise(b[tr], b[te])
    return (xa, xb, y[tr].unsqueeze(1)), (xa_t, xb_t, y[te].unsqueeze(1))


def _secure_job(train, test, *, dp: dict | None, init_seed: int):
    """One party's run: bank A (0) holds xa, bank B (1) holds xb and the labels."""
    me = veil.rank()
    xa, xb, y = train
    xa_t, xb_t, y_t = test
    mine, mine_t = (xa, xa_t) if me == 0 else (xb, xb_t)
    tr = veil.data.vertical(mine, y if me == 1 else None, label_owner=1)
    te = veil.data.vertical(mine_t, y_t if me == 1 else None, label_owner=1)
    if me == 1:
        torch.manual_seed(init_seed)
    model = veil.nn.Linear(tr.X.shape[1], 1, owner=1)
    crit = veil.nn.BCEWithLogitsLoss()
    before = veil.stats()
    t0 = time.perf_counter()
    if dp is None:
        opt = veil.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        loader = veil.data.DataLoader(tr, batch_size=64, seed=init_seed)
        h = veil.nn.fit(model, loader, crit, opt, 10, eval_data=(te.X, te.y), metrics_to=None,
                        progress=False)
        epochs, eps = 10, None
    else:
        private = make_private(model, veil.optim.SGD(model.parameters(), lr=dp["lr"]), crit,
                               (tr.X, tr.y), batch_size=dp["batch"], max_grad_norm=dp["clip"],
                               noise_multiplier=dp["sigma"], delta=DELTA)
        h = private.fit(dp["epochs"], eval_data=(te.X, te.y), metrics_to=None, progress=False)
        epochs, eps = len(h.epochs), private.epsilon()
    seconds = time.perf_counter() - t0
    after = veil.stats()
    return dict(acc=h.epochs[-1]["eval_acc"], eps=eps, seconds=seconds / epochs,
                bytes=(after["bytes_sent"] - before["bytes_sent"]) / epochs,
                rounds=(after["rounds"] - before["rounds"]) / epochs)


def _opacus(train, test, *, sigma, batch, lr, epochs, clip, seed) -> float:
    from opacus import PrivacyEngine
    xa, xb, y = train
    x = torch.cat([xa, xb], 1)
    torch.manual_seed(seed)
    model = torch.nn.Linear(x.shape[1], 1)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=batch)
    with warnings.catch_warnings():
        # secure_mode=False (a plaintext reference) and torch's backward-hook notice
        warnings.simplefilter("ignore")
        model, opt, loader = PrivacyEngine(accountant="rdp").make_private(
            module=model, optimizer=opt, data_loader=loader, noise_multiplier=sigma,
            max_grad_norm=clip, poisson_sampling=True)
        for _ in range(epochs):
            for xb_, yb in loader:
                if len(yb) == 0:
                    continue
                opt.zero_grad()
                torch.nn.functional.binary_cross_entropy_with_logits(model(xb_), yb).backward()
                opt.step()
    xa_t, xb_t, y_t = test
    with torch.no_grad():
        pred = (model(torch.cat([xa_t, xb_t], 1)) > 0).float()
    return float((pred == y_t).float().mean())


def _mean_sd(xs) -> str:
    xs = [100 * x for x in xs]
    sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
    return f"{statistics.mean(xs):.1f} ± {sd:.1f} %"


def run(datasets, seeds: int) -> str:
    ex = _example()
    rows = ["| data | training | ε (δ = 1e-5) | noise σ | test accuracy | s/epoch | "
            "MB sent/epoch (party 0) | rounds/epoch |", "|---|---|---|---|---|---|---|---|"]
    for name in datasets:
        train, test = _data(ex, name)
        n = len(train[2])
        batch, lr, epochs, clip = SETTINGS[name]
        q = sampling_rate(batch / n)
        steps = epochs * max(1, round(1 / q))
        r = veil.run(_secure_job, train, test, dp=None, init_seed=0, parties=2)[0]
        rows.append(f"| {name} | secure, non-private (SGD+momentum, 10 epochs) | ∞ | 0 | "
                    f"{100 * r['acc']:.1f} % | {r['seconds']:.2f} | {r['bytes'] / 1e6:.1f} | "
                    f"{r['rounds']:.0f} |")
        print(rows[-1], flush=True)
        for eps in EPSILONS:
            sigma = calibrate_noise(eps, q, steps, DELTA)
            dp = dict(sigma=sigma, batch=batch, lr=lr, epochs=epochs, clip=clip)
            sec = [veil.run(_secure_job, train, test, dp=dp, init_seed=s, parties=2)[0]
                   for s in range(seeds)]
            opa = [_opacus(train, test, seed=s, sigma=sigma, batch=batch, lr=lr,
                           epochs=epochs, clip=clip) for s in range(max(seeds, 5))]
            r = min(sec, key=lambda x: x["seconds"])
            rows.append(f"| {name} | secure DP-SGD (q = {q:.3f}, {epochs} epochs) | "
                        f"{max(x['eps'] for x in sec):.2f} | {sigma:.2f} | "
                        f"{_mean_sd([x['acc'] for x in sec])} | {r['seconds']:.2f} | "
                        f"{r['bytes'] / 1e6:.1f} | {r['rounds']:.0f} |")
            print(rows[-1], flush=True)
            rows.append(f"| {name} | plaintext Opacus, same σ, q, C = {clip}, lr, epochs | "
                        f"{eps:.2f} | {sigma:.2f} | {_mean_sd(opa)} | | | |")
            print(rows[-1], flush=True)
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    return "\n".join(rows) + f"\n\nDP rows: {seeds} secure runs, {max(seeds, 5)} Opacus " \
        f"runs per ε; host load {load} on a shared 2-core machine (times indicative only).\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="veil bench --group dp", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--group", default="dp")
    ap.add_argument("--data", nargs="*", default=["synthetic", "breast_cancer"],
                    choices=list(SETTINGS))
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--docs", action="store_true", help="rewrite the table in docs/training.md")
    args, _ = ap.parse_known_args(argv)
    torch.set_num_threads(1)
    table = run(args.data, args.seeds)
    print("\n" + table)
    if args.docs:
        DOCS.write_text(replace_marked(DOCS.read_text(), BEGIN, END, table))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
