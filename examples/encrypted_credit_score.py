"""A customer gets a credit score from a bank without showing the bank their finances.

The customer (party 0) encrypts their features with CKKS and sends one ciphertext; the
bank (party 1) runs its logistic-regression model on the ciphertext with public
evaluation keys only and sends one ciphertext back; only the customer can decrypt the
default probability. The bank never sees the features, the customer never sees the model
weights (only the layer sizes). No third server, one message each way.

    python examples/encrypted_credit_score.py           # both parties as threads
    veil run -n 2 examples/encrypted_credit_score.py    # one OS process each, over TLS

Needs the HE extra: pip install 'veil[he]'.
"""

from __future__ import annotations

import time

import torch

import veil
import veil.he as he

CUSTOMER, BANK = 0, 1
FEATURES = ["income_k", "debt_k", "late_payments", "years_employed", "utilization"]


def bank_history(n: int = 4000, seed: int = 3):
    """The bank's past customers and whether they defaulted (synthetic, deterministic)."""
    g = torch.Generator().manual_seed(seed)
    income = 20 + 80 * torch.rand(n, generator=g)
    debt = 60 * torch.rand(n, generator=g)
    late = torch.poisson(torch.full((n,), 0.8), generator=g)
    years = 30 * torch.rand(n, generator=g)
    util = torch.rand(n, generator=g)
    x = torch.stack([income, debt, late, years, util], 1)
    logit = -0.04 * income + 0.05 * debt + 0.9 * late - 0.05 * years + 2.0 * util - 0.5
    y = (torch.rand(n, generator=g) < torch.sigmoid(logit)).float()
    return x, y


def train_bank_model(x, y) -> torch.nn.Sequential:
    mean, std = x.mean(0), x.std(0)
    model = torch.nn.Sequential(torch.nn.Linear(len(FEATURES), 1), torch.nn.Sigmoid())
    opt = torch.optim.LBFGS(model.parameters(), max_iter=100)
    xs = (x - mean) / std

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy(model(xs).squeeze(1), y)
        loss.backward()
        return loss
    opt.step(closure)
    with torch.no_grad():                            # fold the standardisation into the model
        lin = model[0]
        lin.bias -= (lin.weight / std) @ mean
        lin.weight /= std
    return model


def job():
    if veil.rank() == BANK:
        x, y = bank_history()
        model = train_bank_model(x, y)
        plan = he.compile(model, x[:1000])           # calibration: the bank's own data
        print(f"[bank] {plan}\n{plan.report}", flush=True)
        he.Server(plan, client=CUSTOMER).serve(queries=1)
        return None
    me = torch.tensor([[42.0, 35.0, 2.0, 4.0, 0.7]])  # only the customer has these
    session = he.Client(server=BANK)                 # keys made here; secret key stays
    t = time.perf_counter()
    p = session.infer(me)[0, 0].item()
    print(f"[customer] default probability {p:.4f} ({time.perf_counter() - t:.2f} s, "
          f"{veil.stats()['bytes_sent'] / 1e6:.1f} MB sent incl. keys)", flush=True)
    return p


if __name__ == "__main__":
    out = veil.run(job, parties=2)
    if out[CUSTOMER] is not None:
        x, y = bank_history()
        ref = train_bank_model(x, y)(torch.tensor([[42.0, 35.0, 2.0, 4.0, 0.7]])).item()
        print(f"plaintext model: {ref:.4f}; encrypted: {out[CUSTOMER]:.4f}")
