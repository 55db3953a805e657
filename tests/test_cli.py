"""The physdiff command end to end, on tiny settings: outputs, provenance, refusals, bad input."""

import numpy as np
import pytest
import xarray as xr

from physdiff import __version__
from physdiff.cli import main

TINY = ["--epochs", "2", "--T", "40", "--hidden", "16", "--n-samples", "64", "--no-progress"]


def test_train_swiss_roll_writes_every_output_and_sample_reads_it(tmp_path, capsys):
    out = tmp_path / "sr"
    assert main(["train", "swiss-roll", "--out", str(out), "--n-train", "400", "--seed", "3", *TINY]) == 0
    for name in ("model.safetensors", "config.json", "samples.nc", "samples.png", "loss.nc", "loss.png"):
        assert (out / name).is_file(), name
    with xr.open_dataset(out / "samples.nc") as ds:
        assert ds["x"].shape == (64, 2)
        assert ds.attrs["physdiff_version"] == __version__
        assert ds.attrs["seed"] == 3 and "physdiff train swiss-roll" in ds.attrs["command"]
        assert ds.attrs["sliced_wasserstein_baseline"] > 0
    with xr.open_dataset(out / "loss.nc") as ds:
        assert ds["loss"].dims == ("epoch", "t") and ds["loss"].shape == (2, 40)
        assert np.isfinite(ds["loss"]).all()
    # nothing is overwritten without --force
    assert main(["train", "swiss-roll", "--out", str(out), "--n-train", "400", *TINY]) == 2
    assert "--force" in capsys.readouterr().err
    # physdiff sample
    target = tmp_path / "more.nc"
    assert main(["sample", str(out), "-n", "16", "--out", str(target), "--no-progress"]) == 0
    with xr.open_dataset(target) as ds:
        assert ds["x"].shape == (16, 2) and np.isfinite(ds["x"]).all()
    assert (tmp_path / "more.png").is_file()


def test_train_mnist_tiny(tmp_path, mnist_dir):
    out = tmp_path / "mnist"
    assert main(["train", "mnist", "--data-dir", str(mnist_dir), "--out", str(out), "--digits", "0", "1",
                 *TINY, "--epochs", "1", "--hidden", "8", "--init", "random"]) == 0
    with xr.open_dataset(out / "samples.nc") as ds:
        assert ds["image"].shape == (64, 28, 28)
        for key in ("share_in_digits", "copy_share", "confidence"):
            assert key in ds.attrs, sorted(ds.attrs)


def test_bad_input_is_a_clear_error(tmp_path, capsys):
    assert main(["train", "swiss-roll", "--out", str(tmp_path / "a"), "--preset", "nope", *TINY]) == 2
    assert "unknown preset" in capsys.readouterr().err
    assert main(["train", "mnist", "--data-dir", str(tmp_path / "empty"), "--out", str(tmp_path / "b"), *TINY]) == 2
    err = capsys.readouterr().err
    assert "t10k-images-idx3-ubyte" in err and str(tmp_path / "empty") in err
    assert main(["sample", str(tmp_path / "missing"), "--out", str(tmp_path / "c.nc")]) == 2


def test_study_curie_weiss_small(tmp_path):
    out = tmp_path / "cw"
    assert main(["study", "curie-weiss", "--N", "64", "--beta", "1.5", "--T", "60", "--n-pairs", "100",
                 "--out", str(out), "--no-progress"]) == 0
    with xr.open_dataset(out / "potential.nc") as ds:
        assert ds["V"].dims == ("t", "mu") and {"alpha_bar", "physical_time"} <= set(ds.coords)
        assert ds.attrs["N"] == 64 and ds.attrs["beta"] == 1.5 and ds.attrs["T"] == 60
    with xr.open_dataset(out / "speciation.nc") as ds:
        assert ds["phi"].dims == ("t",) and float(ds["speciation_time"]) > 0
    for name in ("potential.png", "forward.png", "trajectories.png", "cloning.png", "speciation_vs_N.png"):
        assert (out / name).is_file()
