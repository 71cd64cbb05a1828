"""Training workloads (issue: secure training): cost per epoch, and accuracy vs plaintext.

Two trainings, each also run in plaintext torch with the same initial weights, batch
order and hyperparameters:

* logistic regression on sklearn's breast_cancer, vertically split between 2 banks
  (15 feature columns each; labels at party 1), SGD, batch 32;
* an MLP 64-32-10 on sklearn's digits, horizontally split across 3 parties (each a third
  of the rows), Adam, batch 32.

``python -m veil.bench.training_workloads --docs`` writes both tables into
docs/benchmarks.md: the cost (time, bytes per party and rounds per epoch; the logistic
regression also for 10 epochs, the CrypTen anchor's setting), each row the fastest of 3
runs because the host is shared, and the full trainings' test accuracy, secure vs
plaintext. ``python -m veil.bench --group training`` runs the cost rows once, like every
other group. ``--processes`` runs the cost rows under `veil run -n N` instead (one OS
process per party and the dealer, TLS on loopback: as a user runs them; the in-process
rows share one interpreter lock between the parties) and writes them to their own table
(veil.bench.processes). Needs scikit-learn (the ``test`` extra); no download.
"""

from __future__ import annotations

import argparse
import pathlib
import time

import torch

import veil
from ..functions.approx import approximations
from .registry import Workload, register_workload
from .runner import run_workload

# The training sigmoid (BCE's gradient) is the 65-knot spline: 7 rounds instead of 13,
# error 2.1e-4 instead of 1.7e-4 (veil.functions.approx); "exact" restores the default.
LOGREG = dict(epochs=10, batch=32, lr=0.1, momentum=0.0, seed=0, split_at=15, label_owner=1,
              sigmoid="spline")
MLP = dict(epochs=10, batch=32, lr=0.01, seed=0, hidden=32, parties=3)


# -- data: every party prepares its own part locally ------------------------------------------
def breast_cancer_parts(seed: int = 0, split_at: int = 15, test_fraction: float = 0.2):
    """Bank A's and bank B's feature columns (train/test rows), and B's labels.

    Each bank standardises its own columns with its own training rows' mean and std:
    a local step, identical to standardising the joined table (columns are disjoint).
    """
    from sklearn.datasets import load_breast_cancer
    x, y = load_breast_cancer(return_X_y=True)
    x, y = torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.float32)
    tr, te = veil.data.split_indices(len(x), test_fraction, seed)
    mean, std = x[tr].mean(0), x[tr].std(0)
    x = (x - mean) / std
    cols = [slice(0, split_at), slice(split_at, x.shape[1])]
    return {"train": [x[tr][:, c] for c in cols], "test": [x[te][:, c] for c in cols],
            "y_train": y[tr].unsqueeze(1), "y_test": y[te].unsqueeze(1)}


def digits_parts(parties: int = 3, seed: int = 0, test_fraction: float = 0.2):
    """Each party's rows of sklearn digits (pixels / 16: a public scaling), train and test."""
    from sklearn.datasets import load_digits
    x, y = load_digits(return_X_y=True)
    x, y = torch.tensor(x, dtype=torch.float32) / 16.0, torch.tensor(y)
    tr, te = veil.data.split_indices(len(x), test_fraction, seed)
    return {"train": [(x[i], y[i]) for i in tr.tensor_split(parties)],
            "test": [(x[i], y[i]) for i in te.tensor_split(parties)]}


# -- plaintext references ----------------------------------------------------------------
def _init_logreg(cfg):
    torch.manual_seed(cfg["seed"])
    return torch.nn.Linear(30, 1)


def _init_mlp(cfg):
    torch.manual_seed(cfg["seed"])
    return torch.nn.Sequential(torch.nn.Linear(64, cfg["hidden"]), torch.nn.ReLU(),
                               torch.nn.Linear(cfg["hidden"], 10))


def plain_logreg(parts, cfg=LOGREG, epochs=None):
    """The same training in torch: returns (model, test accuracy)."""
    model = _init_logreg(cfg)
    x, y = torch.cat(parts["train"], 1), parts["y_train"]
    opt = torch.optim.SGD(model.parameters(), lr=cfg["lr"], momentum=cfg["momentum"])
    for epoch in range(cfg["epochs"] if epochs is None else epochs):
        for idx in veil.data.batch_order(len(x), cfg["batch"], cfg["seed"], epoch):
            opt.zero_grad()
            torch.nn.functional.binary_cross_entropy_with_logits(model(x[idx]), y[idx]).backward()
            opt.step()
    with torch.no_grad():
        pred = model(torch.cat(parts["test"], 1)) > 0
    return model, (pred.float() == parts["y_test"]).float().mean().item()


def plain_mlp(parts, cfg=MLP, epochs=None):
    model = _init_mlp(cfg)
    x = torch.cat([p[0] for p in parts["train"]])
    y = torch.cat([p[1] for p in parts["train"]])
    opt = torch.optim.Adam(model.parameters(), lr=cfg["lr"])
    for epoch in range(cfg["epochs"] if epochs is None else epochs):
        for idx in veil.data.batch_order(len(x), cfg["batch"], cfg["seed"], epoch):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    xt = torch.cat([p[0] for p in parts["test"]])
    yt = torch.cat([p[1] for p in parts["test"]])
    with torch.no_grad():
        acc = (model(xt).argmax(1) == yt).float().mean().item()
    return model, acc


# -- secure trainings (run at every party) -----------------------------------------------------
def secure_logreg_setup(parts, cfg=LOGREG):
    """Model, loader, criterion, optimizer and test set of the vertical logistic regression."""
    r, owner = veil.rank(), cfg["label_owner"]
    mine = 0 if r != owner else 1
    train = veil.data.vertical(parts["train"][mine], parts["y_train"] if r == owner else None,
                               label_owner=owner)
    test = veil.data.vertical(parts["test"][mine], parts["y_test"] if r == owner else None,
                              label_owner=owner)
    # The label owner (bank B) draws the initial weights, as torch would.
    model = veil.nn.from_torch(_init_logreg(cfg) if r == owner else None, owner=owner)
    opt = veil.optim.SGD(model.parameters(), lr=cfg["lr"], momentum=cfg["momentum"])
    loader = veil.data.DataLoader(train, batch_size=cfg["batch"], seed=cfg["seed"])
    return model, loader, veil.nn.BCEWithLogitsLoss(), opt, (test.X, test.y)


def secure_mlp_setup(parts, cfg=MLP):
    r = veil.rank()
    x, y = parts["train"][r]
    train = veil.data.horizontal(x, y, num_classes=10)
    xt, yt = parts["test"][r]
    test = veil.data.horizontal(xt, yt, num_classes=10)
    # Party 0 draws the initial weights (torch's init) and shares them.
    model = veil.nn.from_torch(_init_mlp(cfg) if r == 0 else None, owner=0)
    opt = veil.optim.Adam(model.parameters(), lr=cfg["lr"])
    loader = veil.data.DataLoader(train, batch_size=cfg["batch"], seed=cfg["seed"])
    return model, loader, veil.nn.CrossEntropyLoss(), opt, (test.X, test.y)


def _flat(model):
    return veil.cat([p.detach().reshape(-1) for p in model.parameters()])


def _plain_flat(model):
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def _epochs_workload(setup, epochs, sigmoid=None):
    def secure(inp, timer):
        model, loader, crit, opt, _ = setup(inp["parts"])
        with timer(), approximations(sigmoid=sigmoid):
            for _ in range(epochs):
                veil.nn.train.train_epoch(model, loader, crit, opt)
        return _flat(model)
    return secure


def _register():
    def lr_make():
        return {"parts": breast_cancer_parts(LOGREG["seed"], LOGREG["split_at"])}

    def mlp_make():
        return {"parts": digits_parts(MLP["parties"], MLP["seed"])}

    note = ("vertical 15/15 cols, labels at party 1, SGD lr 0.1, batch 32, spline sigmoid; "
            "err = weights vs torch")
    register_workload(Workload(
        "train logreg breast_cancer 1 epoch", "training", lr_make,
        lambda i: _plain_flat(plain_logreg(i["parts"], epochs=1)[0]),
        _epochs_workload(secure_logreg_setup, 1, LOGREG["sigmoid"]), parties=(2,), note=note))
    register_workload(Workload(
        "train logreg breast_cancer 10 epochs", "training", lr_make,
        lambda i: _plain_flat(plain_logreg(i["parts"], epochs=10)[0]),
        _epochs_workload(secure_logreg_setup, 10, LOGREG["sigmoid"]), parties=(2,),
        note=note + "; anchor CrypTen 7.2 s, 3,750 rounds"))
    register_workload(Workload(
        "train mlp 64-32-10 digits 1 epoch", "training", mlp_make,
        lambda i: _plain_flat(plain_mlp(i["parts"], epochs=1)[0]),
        _epochs_workload(secure_mlp_setup, 1), parties=(3,),
        note="horizontal, 3 parties, Adam lr 0.01, batch 32; err = weights vs torch"))


_register()


# -- full runs: accuracy secure vs plaintext ------------------------------------------------
def run_logreg(parts=None, cfg=LOGREG, epochs=None, progress=False):
    """Full vertical logistic regression: (secure test acc, plaintext test acc, seconds)."""
    parts = parts or breast_cancer_parts(cfg["seed"], cfg["split_at"])
    cfg = dict(cfg, epochs=epochs or cfg["epochs"])

    def party():
        model, loader, crit, opt, test = secure_logreg_setup(parts, cfg)
        with approximations(sigmoid=cfg.get("sigmoid")):
            hist = veil.nn.fit(model, loader, crit, opt, cfg["epochs"], progress=progress)
        return hist, veil.nn.evaluate(model, *test, to=cfg["label_owner"])
    t0 = time.perf_counter()
    hist, acc = veil.run(party, parties=2, seed=cfg["seed"])[cfg["label_owner"]]
    return acc, plain_logreg(parts, cfg)[1], time.perf_counter() - t0, hist


def run_mlp(parts=None, cfg=MLP, epochs=None, progress=False, protocol="semi2k"):
    parts = parts or digits_parts(cfg["parties"], cfg["seed"])
    cfg = dict(cfg, epochs=epochs or cfg["epochs"])

    def party():
        model, loader, crit, opt, test = secure_mlp_setup(parts, cfg)
        hist = veil.nn.fit(model, loader, crit, opt, cfg["epochs"], progress=progress,
                           metrics_to=0)
        return hist, veil.nn.evaluate(model, *test, to=0)
    t0 = time.perf_counter()
    hist, acc = veil.run(party, parties=cfg["parties"], seed=cfg["seed"], protocol=protocol)[0]
    return acc, plain_mlp(parts, cfg)[1], time.perf_counter() - t0, hist


DOCS = pathlib.Path(__file__).resolve().parents[2] / "docs" / "benchmarks.md"
MARKS = {"cost": ("<!-- bench:training:begin -->", "<!-- bench:training:end -->"),
         "accuracy": ("<!-- bench:training-accuracy:begin -->",
                      "<!-- bench:training-accuracy:end -->"),
         "processes": ("<!-- bench:training-processes:begin -->",
                       "<!-- bench:training-processes:end -->")}


def cost_table(repeat: int = 3) -> str:
    """The training workloads' table, each row the fastest of ``repeat`` runs (the host is
    shared: the minimum is the least disturbed; bytes and rounds are the same every run)."""
    from .registry import WORKLOADS
    from .runner import format_table
    rows = []
    for w in WORKLOADS.values():
        if w.group != "training":
            continue
        for n in w.parties:
            runs = [run_workload(w, n) for _ in range(repeat)]
            rows.append(min(runs, key=lambda r: r["time_s"]))
            print(format_table(rows[-1:]).splitlines()[-1], flush=True)
    return format_table(rows)


def processes_table(repeat: int = 3, profile: bool = False) -> str:
    """The cost rows under `veil run` (veil.bench.processes), each the fastest of
    ``repeat`` runs in one `veil run`, with each party's CPU time and the host load."""
    from . import processes
    return processes.table(processes.select(group="training"), repeat, profile)[0]


def accuracy_table() -> str:
    rows = ["| training | parties | epochs | secure test acc | plaintext test acc | "
            "difference (points) | wall time (s) |", "|---|---|---|---|---|---|---|"]
    for name, fn, cfg in [("logreg breast_cancer, vertical, SGD", run_logreg, LOGREG),
                          ("mlp 64-32-10 digits, horizontal, Adam", run_mlp, MLP)]:
        acc, plain, secs, _ = fn(progress=True)
        parties = cfg.get("parties", 2)
        diff = round(100 * (acc - plain), 2) + 0.0       # no "-0.00"
        rows.append(f"| {name} | {parties} | {cfg['epochs']} | {100 * acc:.2f}% | "
                    f"{100 * plain:.2f}% | {diff:+.2f} | {secs:.1f} |")
    return "\n".join(rows) + "\n"


def _write(kind: str, table: str) -> None:
    begin, end = MARKS[kind]
    text = DOCS.read_text()
    if begin not in text:
        text += f"\n{begin}\n{end}\n"
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    DOCS.write_text(f"{head}{begin}\n{table}{end}{tail}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="training benchmark: cost per epoch (best of "
                                             "--repeat) and full trainings' accuracy")
    ap.add_argument("--docs", action="store_true", help="write both tables into "
                                                        "docs/benchmarks.md")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--only", choices=["cost", "accuracy"])
    ap.add_argument("--processes", action="store_true", help="the cost rows under `veil "
                    "run -n N` (one process per party) instead, in their own table")
    ap.add_argument("--profile", action="store_true", help="with --processes: also print "
                    "party 0's time per kernel (veil.Config(profile=True))")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    from .runner import host_line
    make = {"cost": lambda: cost_table(args.repeat), "accuracy": accuracy_table,
            "processes": lambda: processes_table(args.repeat, args.profile)}
    notes = {"cost": f" (fastest of {args.repeat} runs)", "accuracy": "",
             "processes": f" (fastest of {args.repeat} runs in one `veil run`: one process "
                          f"per party and the dealer, TLS on loopback)"}
    kinds = ["processes"] if args.processes else \
        [k for k in ("cost", "accuracy") if args.only in (None, k)]
    for kind in kinds:
        table, note = make[kind](), notes[kind]
        table += f"\nhost: {host_line()}{note}\n"
        print(table)
        if args.docs:
            _write(kind, table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = ["breast_cancer_parts", "digits_parts", "plain_logreg", "plain_mlp", "run_logreg",
           "run_mlp", "secure_logreg_setup", "secure_mlp_setup"]
