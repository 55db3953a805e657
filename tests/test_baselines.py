"""The thesis' perceptron baseline: MNIST 0 vs 1 (the t10k images we have), and toy checks."""

import os
from pathlib import Path

import numpy as np
import pytest

from physdiff.baselines import train_perceptron, train_test_split
from physdiff.datasets import load_mnist


def _mnist_01():
    for d in (os.environ.get("PHYSDIFF_DATA"), "/work/shared/data/mnist", None):
        if d is not None and not Path(d).exists():
            continue
        try:
            return load_mnist(d, split="test", digits=[0, 1])
        except FileNotFoundError:
            continue
    pytest.skip("MNIST t10k files not found (set PHYSDIFF_DATA or run load_mnist(download=True))")


@pytest.mark.parametrize("rule,epochs,lr", [("perceptron", 10, 1.0), ("logistic", 100, 0.5)])
def test_mnist_zero_vs_one_at_most_one_percent_test_error(rule, epochs, lr):
    x, labels = _mnist_01()
    assert x.shape == (2115, 784)                    # 980 zeros + 1135 ones in t10k
    xtr, ytr, xte, yte = train_test_split(x, labels, 1600, seed=0)
    model = train_perceptron(xtr, ytr, rule=rule, epochs=epochs, lr=lr, seed=0)
    assert model.errors(xte, yte) <= 0.01 * len(yte)
    assert model.errors(xtr, ytr) <= 0.01 * len(ytr)
    assert set(np.unique(model.predict(xte))) <= {0, 1}


def test_separable_toy_data_is_learned_exactly_and_reproducibly():
    rng = np.random.default_rng(1)
    w_true = rng.normal(size=5)
    x = rng.normal(size=(400, 5))
    margin = x @ w_true
    keep = np.abs(margin) > 0.3
    x, labels = x[keep], np.where(margin[keep] > 0, 7, 3)
    m = train_perceptron(x, labels, epochs=50, seed=2)
    assert m.errors(x, labels) == 0 and list(m.classes) == [3, 7]
    m2 = train_perceptron(x, labels, epochs=50, seed=2)
    np.testing.assert_array_equal(m.w, m2.w)


def test_split_and_validation():
    x = np.arange(20).reshape(10, 2)
    a = train_test_split(x, np.arange(10), 7, seed=0)
    assert a[0].shape == (7, 2) and a[2].shape == (3, 2)
    assert sorted(np.concatenate([a[1], a[3]]).tolist()) == list(range(10))
    with pytest.raises(ValueError, match="two classes"):
        train_perceptron(x, np.arange(10))
    with pytest.raises(ValueError, match="rule"):
        train_perceptron(x, np.arange(10) % 2, rule="svm")
    with pytest.raises(ValueError, match="n_train"):
        train_test_split(x, np.arange(10), 10)
