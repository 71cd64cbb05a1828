"""The runnable examples in veil.fl and veil.dp docstrings run."""

import doctest
import importlib

import pytest

pytest.importorskip("flwr")
pytest.importorskip("dp_accounting")

MODULES = ["veil.fl.secagg", "veil.fl.secagg.encoding", "veil.fl.secagg.shamir",
           "veil.fl.secagg.server", "veil.fl.tasks", "veil.fl.flower.local_grid",
           "veil.fl.flower.strategy", "veil.dp.accountant", "veil.dp.mechanisms",
           "veil.dp.dpsgd", "veil.fl.aggregator", "veil.fl.secagg.graph",
           "veil.fl.aggregator.spool", "veil.fl.flower.aggregator_mode", "veil.dp.discrete"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    assert result.attempted > 0, f"{name}: no examples"
