"""Secure matmul's shape check (veil.tensor.arith): torch's rules without a meta call.

Valid shapes skip torch's meta kernel, whose first call imports sympy (torch._check
does): 0.2-1.4 s of a training's first step in a fresh process. Shapes torch refuses
still go to torch, for its own error message.
"""

import subprocess
import sys

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import veil
from veil.errors import PartyError
from veil.tensor.arith import matmul_shapes_ok

shapes = st.lists(st.integers(0, 3), min_size=0, max_size=4).map(tuple)


@settings(max_examples=400, deadline=None)
@given(shapes, shapes)
def test_the_rule_agrees_with_torch(a, b):
    try:
        torch.matmul(torch.empty(a, device="meta"), torch.empty(b, device="meta"))
        torch_ok = True
    except RuntimeError:
        torch_ok = False
    assert matmul_shapes_ok(a, b) == torch_ok, (a, b)


def test_bad_shapes_still_get_torchs_error():
    def f():
        x = veil.tensor(torch.ones(2, 3) if veil.rank() == 0 else None, owner=0)
        y = veil.tensor(torch.ones(2, 3) if veil.rank() == 1 else None, owner=1)
        return x @ y
    with pytest.raises(PartyError, match="same reduction dim"):
        veil.run(f, parties=2, seed=0)


FRESH = """
import sys, torch, veil
def f():
    x = veil.tensor(torch.ones(4, 3) if veil.rank() == 0 else None, owner=0)
    w = veil.tensor(torch.ones(3, 1) if veil.rank() == 1 else None, owner=1)
    w.requires_grad_()
    (x @ w).sum().backward()
    return (x @ w).reveal(), w.grad.reveal()
y, g = veil.run(f, parties=2, seed=0)[0]
assert torch.allclose(y, torch.full((4, 1), 3.0), atol=1e-3), y
assert torch.allclose(g, torch.full((3, 1), 4.0), atol=1e-3), g
print("sympy imported:", "sympy" in sys.modules)
"""


def test_a_training_step_in_a_fresh_process_does_not_import_sympy():
    out = subprocess.run([sys.executable, "-c", FRESH], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "sympy imported: False"
