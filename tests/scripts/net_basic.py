"""A script written for in-process mode; `veil run -n N` runs it unchanged.

Prints, per party, a JSON line with its rank, revealed results (as hex bytes, to compare
bit for bit) and `veil.stats()`; with `--parties N`, `--seed S` (under `veil run` that needs
`--insecure-seed`) or `--no-seed`.
"""

import argparse
import json

import torch

import veil


def job():
    r = veil.rank()
    g = torch.Generator().manual_seed(5)
    a = torch.empty(6, 4).uniform_(-3, 3, generator=g)
    b = torch.empty(4, 5).uniform_(-3, 3, generator=g)
    x = veil.tensor(a if r == 0 else None, owner=0)
    y = veil.tensor(b if r == 1 else None, owner=1)
    z = (x @ y).relu() * 0.5 + (x.sum() > 0)
    out = {p: z.reveal(to=p) for p in range(veil.world_size())}
    mine = out[r]
    return {"rank": r, "value": mine.numpy().tobytes().hex(), "list": mine.tolist(),
            "stats": veil.stats()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--parties", type=int, default=3)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--no-seed", action="store_true", help="fresh randomness (real parties)")
    opts = ap.parse_args()
    # Two runs: the second reuses the connections, and its stats start from zero again.
    for run in range(2):
        seed = None if opts.no_seed else opts.seed + run
        res = veil.run(job, parties=opts.parties, seed=seed)
        for r in res:
            if r is not None:
                print("RESULT " + json.dumps(dict(r, run=run)), flush=True)


if __name__ == "__main__":
    main()
