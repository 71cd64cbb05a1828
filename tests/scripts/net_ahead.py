"""Two `veil.run` calls over the same connections, each a loop whose dealer requests
repeat, so the dealer is working ahead (veil.offline.lookahead) when the run ends.

Prints, per party and run, a JSON line: rank, run, the revealed values and the dealer
counters (requests sent ahead must be > 0, or the script tests nothing).
"""

import json

import torch

import veil


def job(steps: int):
    r = veil.rank()
    g = torch.Generator().manual_seed(3)
    a = torch.empty(8, 4).uniform_(-2, 2, generator=g)
    b = torch.empty(8, 4).uniform_(-2, 2, generator=g)
    x = veil.tensor(a if r == 0 else None, owner=0)
    y = veil.tensor(b if r == 1 else None, owner=1)
    acc = x * 0
    for _ in range(steps):                 # the same requests every step: a period
        acc = acc + (x * y).relu()
    got = acc.reveal()                     # to every party: a test value, nothing secret
    want = (a * b).relu() * steps
    # predicted requests still outstanding as the run ends (what the test is about)
    ahead = len(veil.context.current().provider._ahead)
    return {"rank": r, "err": (got - want).abs().max().item(), "stats": veil.stats(),
            "ahead_at_end": ahead}


def main():
    for run in range(2):
        for rec in veil.run(job, 12, parties=2):
            if rec is not None:
                print("RESULT " + json.dumps(dict(rec, run=run)), flush=True)


if __name__ == "__main__":
    main()
