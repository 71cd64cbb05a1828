"""Write a generated table into its marked section of docs/benchmarks.md.

Each benchmark area owns one section between ``<!-- bench:NAME:begin -->`` and
``<!-- bench:NAME:end -->``; only the text between the markers is replaced, so prose
around a table is kept. A section that does not exist yet is appended (with ``intro``).
"""

from __future__ import annotations

import pathlib

from ..docs_markers import replace_marked

DOCS = pathlib.Path(__file__).resolve().parents[2] / "docs" / "benchmarks.md"


def write_section(body: str, begin: str, end: str, intro: str = "", docs=DOCS) -> None:
    text = docs.read_text() if docs.exists() else "# Benchmarks\n"
    if begin not in text:
        text += f"\n{intro}{begin}\n{end}\n"
    docs.write_text(replace_marked(text, begin, end, body))
