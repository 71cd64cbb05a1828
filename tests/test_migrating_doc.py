"""docs/migrating-from-crypten.md: every veil name it recommends exists, and its example
runs and prints what it says."""

from __future__ import annotations

import contextlib
import io
import pathlib
import re

import veil

DOC = (pathlib.Path(__file__).resolve().parents[1] / "docs" / "migrating-from-crypten.md") \
    .read_text()


def _veil_cells():
    """The veil column of every table row."""
    for line in DOC.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0] not in ("CrypTen", "---"):
            yield cells[1]


def test_every_recommended_veil_name_exists():
    names = set()
    for cell in _veil_cells():
        for code in re.findall(r"`([^`]+)`", cell):
            names.update(re.findall(r"\bveil(?:\.[A-Za-z_]\w*)+", code))
            if code.startswith("x.") or code.startswith("."):
                for m in re.findall(r"\.([A-Za-z_]\w*)\(", code):
                    names.add(f"veil.SecretTensor.{m}")
        for m in re.findall(r"`\.([A-Za-z_]\w*)\(", cell):
            names.add(f"veil.SecretTensor.{m}")
    assert len(names) > 40, names
    missing = []
    for name in sorted(names):
        obj = veil
        for part in name.split(".")[1:]:
            if not hasattr(obj, part):
                missing.append(name)
                break
            obj = getattr(obj, part)
    assert not missing, f"the migration page names what veil lacks: {missing}"


def test_same_named_methods_exist_on_secret_tensors():
    """Rows whose veil column says "same": each CrypTen method name exists on SecretTensor."""
    methods = set()
    for line in DOC.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`x_enc") and cells[1].startswith("same"):
            for code in re.findall(r"`([^`]+)`", cells[0]):
                methods.update(re.findall(r"\.([a-z_]\w*)", code))
    assert {"sin", "gather", "conv2d", "relu"} <= methods
    lacking = sorted(m for m in methods if not hasattr(veil.SecretTensor, m))
    assert not lacking, lacking


def test_example_runs_and_prints_what_it_says():
    code = re.findall(r"```python\n(.*?)```", DOC, re.S)[0]
    promised = re.search(r"^# (tensor.*)$", code, re.M).group(1)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "migrating-from-crypten.md", "exec"), {})
    assert out.getvalue().strip() == promised
