"""veil.net.memory: a `veil run` process reuses freed memory instead of faulting it in."""

import subprocess
import sys

import pytest

PROGRAM = """
import resource, sys, torch
from veil.net.memory import keep_freed_memory
if sys.argv[1] == "tuned":
    assert keep_freed_memory()
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
def step():                                     # like a forward: a few large buffers
    x = [torch.ones(n << 17, dtype=torch.int64) for n in (20, 20, 6)]   # 46 MiB, filled
    del x                                       # freed: kept, or given back to the kernel
step()
step()
before = faults()
for _ in range(4):
    step()
print(faults() - before)
"""


def _faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", PROGRAM, mode], capture_output=True,
                         text=True, timeout=120, check=True)
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc only")
def test_freed_buffers_are_reused_without_page_faults():
    plain, tuned = _faults("plain"), _faults("tuned")
    assert plain > 4 * 10_000           # 46 MiB = 11,776 pages, faulted in every step
    assert tuned < plain / 5, (plain, tuned)
