"""Keep freed memory in the process instead of handing it back to the kernel at once.

A party's forward allocates and frees the same large buffers again and again (received
frames, Beaver masks, matmul outputs). glibc returns freed memory at the top of its heap
to the kernel (trim) and maps big blocks fresh each time, so every reuse costs a minor
page fault per 4 KiB page: 140-250 k faults per BERT-base layer forward per party. With
a high trim threshold and a top pad, freed memory stays mapped and is reused: measured
(`veil run -n 2`, BERT-base layer GELU, party 0) 138-150 k minor faults -> 2-28 k, and
-0.2 CPU-s per forward. The price: a party's resident memory stays near its peak until
it exits (the peak itself does not change). Only in `veil run` processes, which hold
one party each; a no-op where the C library is not glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
TRIM_THRESHOLD = (1 << 31) - 1  # keep up to this much freed memory at the top of the heap
TOP_PAD = 256 << 20          # grow the heap by at least this much at a time


def keep_freed_memory() -> bool:
    """Tune glibc's malloc as described above; True if it was applied."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) and mallopt(M_TOP_PAD, TOP_PAD)
    # The largest threshold glibc accepts (32 MiB): bigger blocks are mmapped, as before.
    mallopt(M_MMAP_THRESHOLD, 32 << 20)
    return bool(ok)
