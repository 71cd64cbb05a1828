"""veil.net.memory: a `veil run` process reuses freed memory instead of faulting it in."""

import subprocess
import sys
from pathlib import Path

import pytest

import veil.net.memory

# Plain glibc first, then tuned, in one process (no torch: a bytes fill touches every page).
PROGRAM = """
import importlib.util, resource, sys
spec = importlib.util.spec_from_file_location("memory", sys.argv[1])  # not veil: no torch
memory = importlib.util.module_from_spec(spec)
spec.loader.exec_module(memory)
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
def step():                                     # like a forward: a few large buffers,
    x = [b"\\1" * (n << 20) for n in (20, 20, 6)]   # 46 MiB, filled, then freed
    del x
def measure():
    step(); step()
    before = faults()
    for _ in range(4):
        step()
    return faults() - before
plain = measure()
assert memory.keep_freed_memory()
print(plain, measure())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc only")
def test_freed_buffers_are_reused_without_page_faults():
    path = Path(veil.net.memory.__file__)
    out = subprocess.run([sys.executable, "-c", PROGRAM, str(path)], capture_output=True,
                         text=True, timeout=120, check=True)
    plain, tuned = map(int, out.stdout.split())
    assert plain > 4 * 10_000           # 46 MiB = 11,776 pages, faulted in every step
    assert tuned < plain / 5, (plain, tuned)
