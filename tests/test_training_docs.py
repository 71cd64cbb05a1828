"""The runnable examples in the training modules' docstrings run, and the credit-scoring
example works end to end (small: 2 epochs)."""

from __future__ import annotations

import doctest
import importlib
import pathlib
import runpy
import sys

import pytest

MODULES = ["veil.autograd", "veil.autograd.graph", "veil.autograd.mixin", "veil.autograd.check",
           "veil.nn", "veil.nn.module", "veil.nn.layers", "veil.nn.convert", "veil.nn.utils",
           "veil.nn.plot", "veil.optim.optimizer", "veil.optim.adam", "veil.data.split",
           "veil.data.loader"]
ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    mod = importlib.import_module(name)
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 or name in ("veil.autograd.mixin",), f"{name}: no examples"
    assert result.failed == 0


def test_credit_scoring_example_end_to_end(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["credit_scoring.py", "--epochs", "2", "--out",
                                      str(tmp_path)])
    runpy.run_path(str(ROOT / "examples" / "credit_scoring.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "bank B: test accuracy" in out and "reference, pooled plaintext" in out
    assert (tmp_path / "credit_model.pt").exists()
    assert (tmp_path / "credit_loss.png").read_bytes()[:4] == b"\x89PNG"
