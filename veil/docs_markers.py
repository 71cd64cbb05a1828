"""Generated tables live between HTML-comment markers in the docs; replace one in place.

>>> replace_marked("a <!-- x:begin -->\\nold<!-- x:end --> b", "<!-- x:begin -->",
...                "<!-- x:end -->", "new\\n")
'a <!-- x:begin -->\\nnew\\n<!-- x:end --> b'
>>> replace_marked("no markers", "<!-- x:begin -->", "<!-- x:end -->", "new") is None
True
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
