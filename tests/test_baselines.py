"""The thesis' perceptron baseline on toy data (MNIST 0 vs 1: tests/studies/test_perceptron.py)."""

import numpy as np
import pytest

from physdiff.baselines import train_perceptron, train_test_split


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
