"""examples/private_inference.py runs as documented and prints what it promises."""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_private_inference_example_in_process():
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "private_inference.py")],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    text = out.stdout
    assert "model owner: served 450 predictions" in text
    agree = re.search(r"agreement with plaintext inference ([0-9.]+)%", text)
    assert agree and float(agree.group(1)) >= 99.5, text
    # the predictions are printed by the data owner only
    assert text.count("first predictions") == 1
