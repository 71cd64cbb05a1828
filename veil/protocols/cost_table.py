"""Generate the kernel cost table in docs/protocols.md from the kernel tables.

    python -m veil.protocols.cost_table          # print
    python -m veil.protocols.cost_table --docs   # rewrite the table in docs/protocols.md

The table evaluates each kernel's declared cost for n elements; `tests/test_costs.py`
checks the declarations against counted traffic, and `tests/test_docs.py` checks this
table is current.
"""

from __future__ import annotations

import pathlib
import sys

from ..config import Config
from . import get_protocol, protocol_names

DOC = pathlib.Path(__file__).resolve().parents[2] / "docs" / "protocols.md"
BEGIN, END = "<!-- costs:begin -->", "<!-- costs:end -->"
N_ELEM = 1000

_SIZES = {
    "share": {"numel": N_ELEM}, "reveal": {"numel": N_ELEM}, "trunc": {"numel": N_ELEM},
    "mul": {"numel_x": N_ELEM, "numel_y": N_ELEM}, "matmul": {"numel_x": N_ELEM, "numel_y": N_ELEM},
    "conv2d": {"numel_x": N_ELEM, "numel_y": N_ELEM}, "msb": {"numel": N_ELEM},
    "eqz": {"numel": N_ELEM}, "and_bits": {"numel": N_ELEM}, "b2a": {"numel": N_ELEM},
    "select": {"numel": N_ELEM}, "reveal_bits": {"numel": N_ELEM},
    "mul_trunc": {"numel_x": N_ELEM, "numel_y": N_ELEM},
    "matmul_trunc": {"numel_x": N_ELEM, "numel_y": N_ELEM},
    "mask": {"numel": N_ELEM}, "mul_masked": {"numel_x": N_ELEM, "numel_y": N_ELEM},
    "matmul_masked": {"numel_x": N_ELEM, "numel_y": N_ELEM},
    "conv2d_masked": {"numel_x": N_ELEM, "numel_y": N_ELEM},
    "trunc_masked": {"numel": N_ELEM}, "select_masked": {"numel": N_ELEM},
    "mask_to": {"numel": N_ELEM}, "share_held": {"numel": N_ELEM},     # (to party 0)
}


def table() -> str:
    cfg = Config()
    lines = [f"Online cost per party for {N_ELEM} elements (matmul/conv: {N_ELEM} elements in "
             f"each operand), default Config; bytes sent by party 0.\n",
             "| protocol | kernel | parties | rounds | bytes sent | bytes / element |",
             "|---|---|---|---|---|---|"]
    uneven = []
    for name in protocol_names():
        cls = get_protocol(name)
        for kernel, k in cls.kernels.items():
            for n in cls.party_counts or (2, 3, 5):
                c = k.cost(n=n, rank=0, cfg=cfg, **_SIZES[kernel])
                lines.append(f"| {name} | {kernel} | {n} | {c.rounds} | {c.bytes_sent:,} | "
                             f"{c.bytes_sent / N_ELEM:.2f} |")
                per_rank = [k.cost(n=n, rank=r, cfg=cfg, **_SIZES[kernel]).bytes_sent
                            for r in range(n)]
                if len(set(per_rank)) > 1 and kernel not in ("share",):
                    uneven.append(f"| {name} | {kernel} | {n} | "
                                  f"{' / '.join(f'{b / N_ELEM:.2f}' for b in per_rank)} |")
    if uneven:
        lines += ["", "Kernels whose bytes differ by party (fixed roles), bytes / element sent "
                      "by party 0 / 1 / ...:\n", "| protocol | kernel | parties | per party |",
                  "|---|---|---|---|", *uneven]
    return "\n".join(lines) + "\n"


def write_docs() -> None:
    text = DOC.read_text()
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    DOC.write_text(f"{head}{BEGIN}\n{table()}{END}{tail}")


if __name__ == "__main__":
    write_docs() if "--docs" in sys.argv else print(table())
