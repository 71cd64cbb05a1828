"""The README example runs as written, and generated docs are current."""

from __future__ import annotations

import contextlib
import io
import pathlib
import re

from veil.protocols import cost_table

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_readme_example_runs_and_prints_what_it_says():
    src = (ROOT / "README.md").read_text()
    code = re.findall(r"```python\n(.*?)```", src, re.S)[0]
    promised = re.search(r"# (None .*)$", code, re.M).group(1)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), {})
    assert out.getvalue().strip() == promised.strip()


def test_protocol_cost_table_is_current():
    doc = (ROOT / "docs" / "protocols.md").read_text()
    assert cost_table.table() in doc, "run: python -m veil.protocols.cost_table --docs"
