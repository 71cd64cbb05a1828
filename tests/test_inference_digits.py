"""Accuracy on real data: a CNN trained on scikit-learn's digits, the whole test split.

The model is trained in plaintext (about a second), then the 450 test images are
classified securely in one batch (weights at party 0, images at party 1). The secure
prediction must equal the plaintext one for at least 99.5 % of the images.
"""

from __future__ import annotations

import pytest
import torch

from veil.compile import zoo
from veil.compile.evaluate import compare


@pytest.fixture(scope="module")
def trained():
    model = zoo.train_digits_cnn()
    _, _, x_test, y_test = zoo.digits_data()
    return model, x_test, y_test


def test_model_learned_something(trained):
    model, x, y = trained
    with torch.no_grad():
        acc = (model(x).argmax(1) == y).float().mean().item()
    assert acc > 0.9, f"plaintext accuracy {acc:.3f}: the training recipe broke"


@pytest.mark.parametrize("parties,protocol", [(2, "semi2k"), (3, "semi2k"), (3, "rep3")])
def test_secure_predictions_agree_with_plaintext(trained, parties, protocol):
    model, x, y = trained
    r = compare(model, x, parties=parties, protocol=protocol)
    agree = (r.secure.argmax(1) == r.plain.argmax(1)).float().mean().item()
    assert len(x) == 450
    assert agree >= 0.995, f"secure and plaintext predictions agree on {agree:.2%} only"
    assert r.max_abs_error < 1e-2
