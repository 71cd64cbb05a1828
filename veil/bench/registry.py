"""Benchmark workloads: one registry, filled by the workload modules of each area.

A workload names its group (core, functions, inference, training, net), builds its
plaintext inputs deterministically, computes the plaintext torch reference, and runs the
secure version inside a party, returning a SecretTensor (revealed to party 0 by the
runner) or a plain tensor already revealed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable


@dataclass(frozen=True)
class Workload:
    name: str
    group: str
    make: Callable[[], dict]                  # plaintext inputs, deterministic
    plain: Callable[[dict], object]           # torch reference (its time is measured too)
    secure: Callable[[dict], object]          # runs in every party; returns SecretTensor
    parties: tuple[int, ...] = (2, 3)
    note: str = ""
    extra: dict = field(default_factory=dict)


WORKLOADS: dict[str, Workload] = {}


def register_workload(w: Workload) -> Workload:
    if w.name in WORKLOADS:
        raise ValueError(f"workload {w.name!r} is already registered")
    WORKLOADS[w.name] = w
    return w
