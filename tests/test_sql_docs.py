"""veil.sql / veil.psi docstring examples run, and the ad attribution example matches DuckDB."""

import doctest
import importlib
import pathlib
import runpy

import pytest

pytest.importorskip("duckdb")

ROOT = pathlib.Path(__file__).resolve().parents[1]
MODULES = ["veil.sql.session", "veil.sql.exact", "veil.sql.policy", "veil.psi"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    mod = importlib.import_module(name)
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"{name}: no examples"
    assert result.failed == 0


def test_ad_attribution_example(capsys):
    runpy.run_path(str(ROOT / "examples" / "ad_attribution.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "matches DuckDB on the pooled tables (exact)" in out and "spring" in out
