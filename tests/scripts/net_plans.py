"""A captured model's forward under `veil run --plan-dir DIR`: when an earlier process
stored the graph's dealer request plan in DIR (veil.offline.planstore), the first
forward follows it. Prints, per party, a JSON line: rank, the error against torch and
the dealer counters.
"""

import json

import torch

import veil

with torch.random.fork_rng():
    torch.manual_seed(0)                   # the same model in every process
    NET = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.GELU(),
                              torch.nn.Linear(8, 3)).eval()
X = torch.randn(4, 6, generator=torch.Generator().manual_seed(5))


def job():
    mine = veil.rank() == 0
    m = veil.secure(NET if mine else None, owner=0, example_input=X if mine else None)
    x = veil.tensor(X if veil.rank() == 1 else None, owner=1)
    s0 = veil.stats()
    y = m(x).reveal()                      # to every party: a test value, nothing secret
    s1 = veil.stats()
    with torch.no_grad():
        err = (y - NET(X)).abs().max().item()
    return {"rank": veil.rank(), "err": err,
            "counts": {k: s1[k] - s0[k] for k in s1 if k.startswith("dealer_")}}


def main():
    for rec in veil.run(job, parties=2):
        if rec is not None:
            print("RESULT " + json.dumps(rec), flush=True)


if __name__ == "__main__":
    main()
