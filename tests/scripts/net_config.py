"""Parties that disagree on something public: `veil run -n 2 net_config.py MODE`.

MODE ``config``: party 1 uses other fixed-point settings than party 0.
MODE ``reference``: every party asks for the cleartext ``insecure_reference`` protocol.
"""

import os
import sys

import torch

import veil

MODE = sys.argv[1]
rank = int(os.environ["VEIL_PARTY"])


def job():
    x = veil.tensor(torch.tensor([1.5, 2.0]) if veil.rank() == 0 else None, owner=0)
    return (x * x).reveal(to=0)


if MODE == "config":
    out = veil.run(job, parties=2, config=veil.Config(frac_bits=16 + 4 * rank))
else:
    out = veil.run(job, parties=2, protocol="insecure_reference")
print("DONE", out, flush=True)
