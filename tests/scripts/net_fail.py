"""Party 1 misbehaves half-way through a computation; the others must stop, naming it.

    veil run -n 3 net_fail.py MODE   MODE: kill | raise | veilraise | sleep | parties | ok
"""

import os
import signal
import sys
import time

import torch

import veil

MODE = sys.argv[1]


def job():
    r = veil.rank()
    x = veil.tensor(torch.arange(8.0) if r == 0 else None, owner=0)
    y = x * x                                        # a first round trip: everyone is up
    if r == 1:
        print(f"party 1 misbehaves now (at {time.time():.3f})", flush=True)
        if MODE == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        if MODE == "raise":
            raise ValueError("private value 4242 is bad")     # must not reach the others
        if MODE == "veilraise":                               # nor a veil error's text
            raise veil.ProtocolUsageError("cell 'salary=4242' of /private/hr.csv is bad")
        if MODE == "sleep":
            time.sleep(60)
    z = (y * x).relu()
    return z.reveal(to=0)


n = int(os.environ.get("NET_FAIL_PARTIES", "3"))
config = veil.Config(timeout=float(os.environ.get("NET_FAIL_TIMEOUT", "10")))
out = veil.run(job, parties=n + (MODE == "parties"), config=config)
print("DONE", out[0].tolist() if out[0] is not None else None, flush=True)
