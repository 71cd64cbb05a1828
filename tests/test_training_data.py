"""Secret training sets from vertically / horizontally split data; batches; CSV; layers."""

from __future__ import annotations

import pytest
import torch

import veil
from veil.errors import PartyError


def _cols(r, n=5):
    return torch.arange(n * (r + 2), dtype=torch.float32).reshape(n, r + 2) + 100 * r


@pytest.mark.parametrize("parties", [2, 3])
def test_vertical_joins_columns_in_party_order_and_labels_stay_with_owner(parties):
    labels = torch.tensor([0, 2, 1, 1, 0])

    def f():
        r = veil.rank()
        ds = veil.data.vertical(_cols(r), labels if r == parties - 1 else None,
                                label_owner=parties - 1, num_classes=3)
        # Reveal to party 0 only: the test's oracle.
        return ds.columns, ds.X.reveal(to=0), ds.y.reveal(to=0)
    cols, X, y = veil.run(f, parties=parties, seed=0)[0]
    assert cols == tuple(r + 2 for r in range(parties))
    assert torch.equal(X, torch.cat([_cols(r) for r in range(parties)], 1))
    assert torch.equal(y, torch.nn.functional.one_hot(labels, 3).float())


def test_horizontal_stacks_rows_and_row_counts_are_the_public_layout():
    def f():
        r = veil.rank()
        x = torch.full((r + 1, 3), float(r))
        ds = veil.data.horizontal(x, torch.full((r + 1, 1), float(r)))
        return ds.rows, ds.X.reveal(to=0), ds.y.reveal(to=0)
    rows, X, y = veil.run(f, parties=3, seed=0)[0]
    assert rows == (1, 2, 3)
    assert torch.equal(X[:, 0], torch.tensor([0., 1, 1, 2, 2, 2]))
    assert torch.equal(y[:, 0], X[:, 0])


def test_a_party_without_columns_passes_none():
    def f():
        r = veil.rank()
        ds = veil.data.vertical(_cols(r) if r != 1 else None, torch.ones(5) if r == 1 else None,
                                label_owner=1)
        return ds.columns, tuple(ds.X.shape)
    assert veil.run(f, parties=3, seed=0)[0] == ((2, 0, 4), (5, 6))


@pytest.mark.parametrize("case, needle", [
    ("rows", "same rows at every party"),
    ("labels", "only the label owner"),
    ("cols", "same columns at every party"),
])
def test_layout_errors_name_the_fix(case, needle):
    def f():
        r = veil.rank()
        if case == "rows":
            veil.data.vertical(torch.ones(4 + r, 2), None, label_owner=None)
        elif case == "labels":
            veil.data.vertical(torch.ones(4, 2), torch.ones(4), label_owner=0)
        else:
            veil.data.horizontal(torch.ones(3, 2 + r), torch.ones(3))
    with pytest.raises(PartyError) as info:
        veil.run(f, parties=2, seed=0)
    assert needle in str(info.value)


def test_loader_batches_are_public_reshuffles_plaintext_can_reproduce():
    x = torch.arange(20.).reshape(10, 2)

    def f():
        xs = veil.tensor(x if veil.rank() == 0 else None, owner=0)
        ds = veil.data.SecretDataset(xs, xs, "vertical", (2,), (10,))
        loader = veil.data.DataLoader(ds, batch_size=4, seed=11)
        return [[xb.reveal(to=0) for xb, _ in loader] for _ in range(2)]
    epochs = veil.run(f, parties=2, seed=0)[0]
    for e, batches in enumerate(epochs):
        want = [x[idx] for idx in veil.data.batch_order(10, 4, 11, e)]
        assert [b.shape[0] for b in batches] == [4, 4, 2]
        assert all(torch.equal(a, b) for a, b in zip(batches, want))
    assert not torch.equal(epochs[0][0], epochs[1][0])        # reshuffled per epoch


def test_agreed_seed_is_the_same_everywhere():
    assert len(set(veil.run(veil.data.agree_seed, parties=3))) == 1


def test_csv_files_per_party(tmp_path):
    a, b = tmp_path / "bank_a.csv", tmp_path / "bank_b.csv"
    a.write_text("age,income\n30,2.5\n41,3.0\n")
    b.write_text("debt,default\n1.5,0\n0.2,1\n")

    def f():
        path = str(a) if veil.rank() == 0 else str(b)
        ds = veil.data.vertical_csv(path, label_owner=1, label_column="default")
        return ds.columns, ds.X.reveal(to=1), ds.y.reveal(to=1)
    cols, X, y = veil.run(f, parties=2, seed=0)[1]
    assert cols == (2, 1)
    assert torch.allclose(X, torch.tensor([[30., 2.5, 1.5], [41., 3.0, 0.2]]), atol=1e-4)
    assert y.tolist() == [0.0, 1.0]


def test_csv_with_text_cells_is_refused(tmp_path):
    p = tmp_path / "bad.csv"
    p.write_text("a,b\n1,yes\n")
    with pytest.raises(veil.ProtocolUsageError, match="must be a number"):
        veil.data.read_csv(str(p))


def test_dropout_mask_is_shared_and_off_in_eval():
    def f():
        layer = veil.nn.Dropout(0.5, seed=3)
        x = veil.tensor(torch.ones(100) if veil.rank() == 0 else None, owner=0)
        train = layer(x).reveal()
        layer.eval()
        return train, layer(x).reveal()
    outs = veil.run(f, parties=2, seed=0)
    train, ev = outs[0]
    assert set(train.tolist()) <= {0.0, 2.0} and 20 < int((train == 0).sum()) < 80
    assert torch.equal(ev, torch.ones(100))


def test_from_torch_refuses_custom_modules_by_name():
    class Mine(torch.nn.Module):
        def forward(self, x):
            return x

    def f():
        veil.nn.from_torch(torch.nn.Sequential(torch.nn.Linear(2, 2), Mine())
                           if veil.rank() == 0 else None, owner=0)
    with pytest.raises(PartyError, match=r"model\[1\].*Mine.*not supported"):
        veil.run(f, parties=2, seed=0)


def test_layers_initialise_like_torch_at_the_owner():
    def f():
        if veil.rank() == 0:             # the owner's RNG draws; parties are threads here
            torch.manual_seed(5)
        lin = veil.nn.Linear(4, 3)
        conv = veil.nn.Conv2d(2, 3, 3)
        return lin.reveal_state_dict(to=1), conv.reveal_state_dict(to=1)
    lin, conv = veil.run(f, parties=2, seed=0)[1]
    torch.manual_seed(5)
    ref_lin, ref_conv = torch.nn.Linear(4, 3), torch.nn.Conv2d(2, 3, 3)
    assert all(torch.allclose(lin[k], v, atol=2e-5) for k, v in ref_lin.state_dict().items())
    assert all(torch.allclose(conv[k], v, atol=2e-5) for k, v in ref_conv.state_dict().items())
