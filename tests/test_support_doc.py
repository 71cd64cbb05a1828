"""docs/support.md is generated from the registries and current (the eager table is
re-probed: every dispatch-table op actually runs on secret values)."""

from __future__ import annotations

import pathlib

from veil.compile import support_doc as S

DOC = (pathlib.Path(__file__).resolve().parents[1] / "docs" / "support.md").read_text()
HINT = "run: python -m veil.compile.support_doc --docs"


def _section(name):
    begin, end = f"<!-- support:{name}:begin -->\n", f"<!-- support:{name}:end -->"
    return DOC[DOC.index(begin) + len(begin):DOC.index(end)]


def test_static_tables_are_current():
    assert _section("secure") == S.secure_table(), HINT
    assert _section("grads") == S.grad_table(), HINT
    assert _section("refused") == S.refused_table(), HINT


def test_eager_table_is_current_and_every_probed_op_runs():
    results = S.probe()
    assert _section("eager") == S.eager_table(results), HINT
    probed = [r for r in results.values() if r is not None and r[0] != "refused"]
    assert len(probed) >= 0.85 * len(results), "the probe stopped fitting most ops"
    assert all(r[1] >= 0 for r in probed)


def test_public_names_are_what_users_write():
    import torch
    import torch.nn.functional as F
    assert S.public_name(torch.gather) == "torch.gather"
    assert S.public_name(F.nll_loss) == "torch.nn.functional.nll_loss"
