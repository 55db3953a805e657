"""The MNIST training set keeps a seeded held-out split for the reconstruction/inpainting studies."""

import numpy as np
import pytest

from physdiff import datasets
from physdiff.experiments.train import heldout_images, load_training_data


def test_holdout_split_is_disjoint_seeded_and_complete(mnist_dir):
    x, meta = load_training_data("mnist", data_dir=mnist_dir, seed=3, holdout=0.1)
    x_all, y_all = datasets.load_mnist(mnist_dir, split="test", digits=[0, 1])
    held = np.asarray(meta["holdout_indices"])
    assert len(held) == round(0.1 * len(x_all)) and len(x) + len(held) == len(x_all)
    xh, yh = heldout_images(meta, mnist_dir)
    np.testing.assert_array_equal(xh, x_all[held])
    np.testing.assert_array_equal(yh, y_all[held])
    # no held-out image is in the training set
    xh64, x64 = xh.astype(np.float64), x.astype(np.float64)
    d2 = (xh64 ** 2).sum(1)[:, None] + (x64 ** 2).sum(1)[None, :] - 2 * xh64 @ x64.T
    assert d2.min() > 1.0  # pixels in [-1, 1]: a distinct image differs by far more
    _, meta2 = load_training_data("mnist", data_dir=mnist_dir, seed=3, holdout=0.1)
    assert meta2["holdout_indices"] == meta["holdout_indices"]


def test_heldout_images_needs_a_split(mnist_dir):
    _, meta = load_training_data("mnist", data_dir=mnist_dir, holdout=0.0)
    with pytest.raises(ValueError, match="--holdout"):
        heldout_images(meta, mnist_dir)
    with pytest.raises(ValueError, match="fraction"):
        load_training_data("mnist", data_dir=mnist_dir, holdout=1.0)
