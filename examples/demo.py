"""veil demo: two parties compute on data neither shows the other.

A hospital (party 0) holds patients' lab values; an insurer (party 1) holds a risk
model's weights. They compute risk scores and the ReLU of them on secret shares; only the
hospital learns the scores. Runs in-process (`python examples/demo.py`) or as real
processes (`veil run -n 2 examples/demo.py`).
"""

import time

import torch

import veil


def job():
    # Each party makes the same example data from its own generator (parties may be
    # threads of one process, so the global torch RNG would interleave between them).
    g = torch.Generator().manual_seed(0)
    labs = torch.randn(1000, 16, generator=g)                # hospital's private data
    weights = torch.randn(16, 4, generator=g) * 0.2          # insurer's private model
    x = veil.tensor(labs if veil.rank() == 0 else None, owner=0)
    w = veil.tensor(weights if veil.rank() == 1 else None, owner=1)
    t0 = time.perf_counter()
    scores = (x @ w).relu()                       # secret shares only
    elapsed = time.perf_counter() - t0
    result = scores.reveal(to=0)                  # discloses the scores to the hospital only
    if veil.rank() == 0:
        expected = (labs @ weights).relu()
        err = (result - expected).abs().max().item()
        s = veil.stats()
        print(f"hospital got scores {tuple(result.shape)}; max error vs plaintext {err:.1e}")
        print(f"secure matmul + ReLU: {elapsed * 1000:.1f} ms, {s['rounds']} rounds, "
              f"{s['bytes_sent'] / 1e6:.2f} MB sent by the hospital")
    return result


if __name__ == "__main__":
    veil.run(job, parties=2)
