"""Shared fixtures: where the real MNIST files live (../shared/data/mnist beside the repository in CI,
else $PHYSDIFF_DATA or data/mnist). The folder found is exported as PHYSDIFF_DATA, so code that uses
physdiff.datasets' default search (the studies' TINY runs) finds it too."""

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


_FOUND = _mnist_dir()
if _FOUND is not None:
    os.environ["PHYSDIFF_DATA"] = str(_FOUND)
