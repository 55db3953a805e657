"""Shared fixtures: where the real MNIST test set lives (../shared/data/mnist beside the repo)."""

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _mnist_dir():
    for cand in (REPO.parent / "shared" / "data" / "mnist", os.environ.get("PHYSDIFF_DATA"), REPO / "data" / "mnist"):
        if cand and (Path(cand) / "t10k-images-idx3-ubyte.gz").exists():
            return Path(cand)
    return None


@pytest.fixture(scope="session")
def mnist_dir():
    d = _mnist_dir()
    if d is None:
        pytest.skip("the MNIST test set is not available (set PHYSDIFF_DATA)")
    return d
