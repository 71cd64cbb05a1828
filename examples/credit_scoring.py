"""Two banks train a credit-scoring model together without showing each other their data.

Bank A (party 0) knows its customers' income, savings, age, ...; bank B (party 1) knows
the same customers' credit history and whether they defaulted (the label). The rows are
the same customers in the same order (matched beforehand, e.g. by a private set
intersection on a customer key). They train a logistic regression on all 11 columns on
secret shares: neither bank sees the other's columns; bank B alone sees the per-epoch
loss / accuracy and receives the trained model.

    python examples/credit_scoring.py                   # both banks as threads, one process
    veil run -n 2 examples/credit_scoring.py            # one OS process per bank, over TLS
    python examples/credit_scoring.py --data breast_cancer   # real data (needs scikit-learn)
    python examples/credit_scoring.py --dp-epsilon 3    # DP-SGD on shares: (3, 1e-5)-DP model

With ``--dp-epsilon E`` the banks train with DP-SGD inside MPC (veil.dp.make_private):
each step draws a secret Poisson batch, clips every customer's gradient and adds noise
that neither bank knows, so the model bank B receives is (E, 1e-5)-differentially
private for every customer; ε is printed after each epoch and training stops at E.

Writes (at bank B): credit_model.pt (the trained weights) and credit_loss.png (the loss
curve), in --out (default: ./outputs, created if missing; git ignores it).

The data is synthetic and deterministic (a stand-in for each bank's database): every
party generates the same world from a fixed seed and keeps only its own columns.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch

import veil
import veil.dp  # DP-SGD on shares (--dp-epsilon)

BANK_A, BANK_B = 0, 1                 # party ranks; bank B owns the labels
A_COLUMNS = ["age", "log_income", "years_employed", "log_savings", "products", "mortgage"]
B_COLUMNS = ["utilization", "late_payments", "debt_to_income", "history_years", "inquiries"]


def synthetic_credit(n: int = 2000, seed: int = 7):
    """(bank A's columns, bank B's columns, default labels), deterministic."""
    g = torch.Generator().manual_seed(seed)
    age = 22 + 45 * torch.rand(n, generator=g)
    log_income = 10.3 + 0.5 * torch.randn(n, generator=g) + 0.004 * (age - 40)
    years_employed = (age - 21) * torch.rand(n, generator=g)
    log_savings = log_income - 2.0 + 1.0 * torch.randn(n, generator=g)
    products = torch.randint(1, 6, (n,), generator=g).float()
    mortgage = (torch.rand(n, generator=g) < 0.4).float()
    utilization = torch.rand(n, generator=g).pow(0.7)
    late = torch.poisson(0.6 * torch.ones(n), generator=g)
    dti = (0.15 + 0.25 * torch.rand(n, generator=g) + 0.1 * mortgage).clamp(max=0.9)
    history = (age - 18) * (0.3 + 0.7 * torch.rand(n, generator=g))
    inquiries = torch.poisson(1.2 * torch.ones(n), generator=g)
    logit = (-1.2 - 0.9 * (log_income - 10.3) - 0.35 * (log_savings - 8.3) - 0.03 * years_employed
             + 2.2 * (utilization - 0.6) + 0.7 * late + 3.0 * (dti - 0.3)
             - 0.03 * history + 0.25 * inquiries)
    default = (torch.rand(n, generator=g) < torch.sigmoid(logit)).float()
    a = torch.stack([age, log_income, years_employed, log_savings, products, mortgage], 1)
    b = torch.stack([utilization, late, dti, history, inquiries], 1)
    return a, b, default


def breast_cancer():
    from sklearn.datasets import load_breast_cancer
    x, y = load_breast_cancer(return_X_y=True)
    x = torch.tensor(x, dtype=torch.float32)
    return x[:, :15], x[:, 15:], torch.tensor(y, dtype=torch.float32)


def standardise(train, test):
    """Each bank scales its own columns with its own training rows (a local step)."""
    mean, std = train.mean(0), train.std(0).clamp(min=1e-6)
    return (train - mean) / std, (test - mean) / std


def bank(args):
    me = veil.rank()
    a, b, y = breast_cancer() if args.data == "breast_cancer" else synthetic_credit()
    mine = a if me == BANK_A else b                  # each bank keeps only its own columns
    train_idx, test_idx = veil.data.split_indices(len(y), 0.2, seed=args.seed)  # public
    x_train, x_test = standardise(mine[train_idx], mine[test_idx])
    labels = (y[train_idx].unsqueeze(1), y[test_idx].unsqueeze(1)) if me == BANK_B else (None,
                                                                                           None)
    train = veil.data.vertical(x_train, labels[0], label_owner=BANK_B)
    test = veil.data.vertical(x_test, labels[1], label_owner=BANK_B)
    if me == BANK_B:
        torch.manual_seed(args.seed)                 # bank B draws torch's initial weights
        print(f"bank B: {len(train)} training customers, columns per bank {train.columns}, "
              f"{args.epochs} epochs")
    model = veil.nn.Linear(train.X.shape[1], 1, owner=BANK_B)
    t0 = time.perf_counter()
    if args.dp_epsilon is not None:
        private = veil.dp.make_private(
            model, veil.optim.SGD(model.parameters(), lr=args.lr), veil.nn.BCEWithLogitsLoss(),
            (train.X, train.y), batch_size=args.batch, max_grad_norm=args.dp_clip,
            target_epsilon=args.dp_epsilon, epochs=args.epochs, delta=args.dp_delta)
        if me == BANK_B:
            print(f"bank B: DP-SGD, noise multiplier {private.noise_multiplier:.2f}, clip "
                  f"{args.dp_clip} (enforced <= {private.sensitivity:.4f}), Poisson rate "
                  f"{private.sample_rate:.4f}, {private.steps_per_epoch} steps per epoch")
        history = private.fit(args.epochs, eval_data=(test.X, test.y), metrics_to=BANK_B)
    else:
        opt = veil.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
        loader = veil.data.DataLoader(train, batch_size=args.batch, seed=args.seed)
        history = veil.nn.fit(model, loader, veil.nn.BCEWithLogitsLoss(), opt, args.epochs,
                              eval_data=(test.X, test.y))    # metrics go to bank B only
    seconds = time.perf_counter() - t0
    stats = veil.stats()
    state = model.reveal_state_dict(to=BANK_B)     # discloses the model to bank B only
    if me != BANK_B:
        print(f"bank A: done in {seconds:.1f}s; it learned the layout and the model's shape, "
              f"no values (sent {stats['bytes_sent'] / 1e6:.1f} MB)")
        return None
    os.makedirs(args.out, exist_ok=True)
    torch.save(dict(state), os.path.join(args.out, "credit_model.pt"))
    veil.nn.save_loss_curve(history, os.path.join(args.out, "credit_loss.png"))
    acc = history.epochs[-1]["eval_acc"]
    dp = "" if args.dp_epsilon is None else \
        f", ({history.epochs[-1]['epsilon']:.2f}, {args.dp_delta:g})-DP"
    print(f"bank B: test accuracy {100 * acc:.1f}%{dp} after {seconds:.1f}s "
          f"({stats['rounds']} rounds, {stats['bytes_sent'] / 1e6:.1f} MB sent); model and "
          f"loss curve in {os.path.abspath(args.out)}")
    if args.dp_epsilon is not None:
        return acc                                   # the plaintext reference is not DP
    # Only possible because this demo generates both banks' data: the same model trained
    # on the pooled table in plaintext, to show the secure result is the same.
    ref = pooled_plaintext(args, a, b, y, train_idx, test_idx)
    print(f"reference, pooled plaintext torch (same init, batches, hyperparameters): "
          f"{100 * ref:.1f}%")
    return acc


def pooled_plaintext(args, a, b, y, train_idx, test_idx) -> float:
    xa, xa_test = standardise(a[train_idx], a[test_idx])
    xb, xb_test = standardise(b[train_idx], b[test_idx])
    x, x_test = torch.cat([xa, xb], 1), torch.cat([xa_test, xb_test], 1)
    yt = y[train_idx].unsqueeze(1)
    torch.manual_seed(args.seed)
    model = torch.nn.Linear(x.shape[1], 1)
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
    for epoch in range(args.epochs):
        for idx in veil.data.batch_order(len(x), args.batch, args.seed, epoch):
            opt.zero_grad()
            torch.nn.functional.binary_cross_entropy_with_logits(model(x[idx]), yt[idx]).backward()
            opt.step()
    with torch.no_grad():
        return ((model(x_test) > 0).float().squeeze(1) == y[test_idx]).float().mean().item()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", choices=["synthetic", "breast_cancer"], default="synthetic")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="outputs")
    ap.add_argument("--dp-epsilon", type=float, default=None,
                    help="train with DP-SGD on shares to this ε (at --dp-delta)")
    ap.add_argument("--dp-delta", type=float, default=1e-5)
    ap.add_argument("--dp-clip", type=float, default=1.0, help="per-customer gradient clip")
    args = ap.parse_args(argv)
    given = sys.argv[1:] if argv is None else argv
    if args.dp_epsilon is not None:      # DP-SGD's usual settings unless given
        args.batch = args.batch if "--batch" in given else 256
        args.lr = args.lr if "--lr" in given else 1.0
        args.epochs = args.epochs if "--epochs" in given else 5
    return veil.run(bank, args, parties=2)


if __name__ == "__main__":
    main()
