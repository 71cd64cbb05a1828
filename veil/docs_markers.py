"""Generated tables live between HTML-comment markers in the docs; replace one in place.

>>> replace_marked("a <!-- x:begin -->\\nold<!-- x:end --> b", "<!-- x:begin -->",
...                "<!-- x:end -->", "new\\n")
'a <!-- x:begin -->\\nnew\\n<!-- x:end --> b'
>>> replace_marked("no markers", "<!-- x:begin -->", "<!-- x:end -->", "new") is None
True
>>> print(markdown_table([("a", lambda r: r[0]), ("b", lambda r: f"{r[1]:.1f}")], [(1, 2)]))
| a | b |
|---|---|
| 1 | 2.0 |
"""

from __future__ import annotations


def replace_marked(text: str, begin: str, end: str, body: str) -> str | None:
    """``text`` with what lies between ``begin`` and ``end`` replaced by ``body`` (after a
    newline); None when ``text`` has no such section (the caller decides what then)."""
    if begin not in text:
        return None
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{begin}\n{body}{end}{tail}"


def markdown_table(columns, rows) -> str:
    """A Markdown table: ``columns`` is a list of (header, cell) pairs, ``cell(row)`` gives
    a row's text in that column; the separator line always matches the header."""
    lines = ["| " + " | ".join(h for h, _ in columns) + " |",
             "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(cell(r)) for _, cell in columns) + " |" for r in rows]
    return "\n".join(lines)


def emit_sections(doc, sections: dict, replace, write: bool, default: str = "") -> None:
    """Print each generated section, or (``write``) put each into ``doc`` with
    ``replace(text, name, body)``; a missing ``doc`` starts as ``default``."""
    if not write:
        for body in sections.values():
            print(body)
        return
    text = doc.read_text() if doc.exists() else default
    for name, body in sections.items():
        text = replace(text, name, body)
    doc.write_text(text)
    print(f"wrote {doc}")
