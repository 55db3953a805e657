"""The physdiff command end to end, on tiny settings: outputs, provenance, refusals, bad input."""

import numpy as np
import pytest
import xarray as xr

from physdiff import __version__, ddpm
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
        assert ds["loss"].dims == ("epoch", "step") and ds["loss"].shape == (2, 40)
        assert np.isfinite(ds["loss"]).all()
        np.testing.assert_array_equal(ds["step"], np.arange(1, 41))
        sched = ddpm.load(out, device="cpu").schedule
        np.testing.assert_allclose(ds["time"], sched.physical_time[1:], rtol=1e-12)
        assert all({"units", "long_name"} <= set(ds[k].attrs) for k in ("loss", "epoch", "step", "time"))
    # nothing is overwritten without --force
    assert main(["train", "swiss-roll", "--out", str(out), "--n-train", "400", *TINY]) == 2
    assert "--force" in capsys.readouterr().err
    # physdiff sample
    target = tmp_path / "more.nc"
    assert main(["sample", str(out), "-n", "16", "--out", str(target), "--no-progress"]) == 0
    with xr.open_dataset(target) as ds:
        assert ds["x"].shape == (16, 2) and np.isfinite(ds["x"]).all()
    assert (tmp_path / "more.png").is_file()


@pytest.mark.slow
def test_train_mnist_tiny(tmp_path, mnist_dir):
    out = tmp_path / "mnist"
    assert main(["train", "mnist", "--data-dir", str(mnist_dir), "--out", str(out), "--digits", "0", "1",
                 *TINY, "--epochs", "1", "--hidden", "8", "--init", "random"]) == 0
    with xr.open_dataset(out / "samples.nc") as ds:
        assert ds["image"].shape == (64, 28, 28)
        for key in ("share_in_digits", "copy_share", "confidence", "speciation_time", "speciation_time_exact"):
            assert key in ds.attrs, sorted(ds.attrs)
        # the exact-score crossing of the train split's zeros and ones is a property of the data alone
        assert 1.9 < ds.attrs["speciation_time_exact"] < 2.25, ds.attrs["speciation_time_exact"]


def test_train_least_squares_only(tmp_path):
    # epochs 0 with init lstsq: the least-squares fit is the whole training, and the run is complete
    out = tmp_path / "sr"
    assert main([*SR, "--out", str(out), "--init", "lstsq", "--epochs", "0", "--hidden", "16"]) == 0
    assert (out / "samples.png").is_file() and not (out / "loss.png").exists()
    with xr.open_dataset(out / "loss.nc") as ds:
        assert ds.sizes["epoch"] == 0
    model = ddpm.load(out)
    assert model.trained and model.config.init == "lstsq" and model.config.epochs == 0


def test_bad_input_is_a_clear_error(tmp_path, capsys):
    assert main(["train", "swiss-roll", "--out", str(tmp_path / "a"), "--preset", "nope", *TINY]) == 2
    assert "unknown preset" in capsys.readouterr().err
    assert main(["train", "mnist", "--data-dir", str(tmp_path / "empty"), "--out", str(tmp_path / "b"), *TINY]) == 2
    err = capsys.readouterr().err
    assert "train-images-idx3-ubyte" in err and str(tmp_path / "empty") in err
    assert main(["sample", str(tmp_path / "missing"), "--out", str(tmp_path / "c.nc")]) == 2


SR = ["train", "swiss-roll", "--n-train", "300", *TINY]


@pytest.mark.parametrize("argv, message", [
    ([*SR, "--n-samples", "0"], "--n-samples must be >= 1, got 0"),
    ([*SR, "--n-train", "0"], "--n-train must be >= 2, got 0"),
    ([*SR, "--epochs", "-1"], "--epochs must be >= 0, got -1"),
    ([*SR, "--epochs", "0"], "epochs=0 would leave the randomly initialised nets untrained"),
    ([*SR, "--lr", "0"], "--lr must be > 0, got 0.0"),
    ([*SR, "--T", "0"], "--T must be >= 1, got 0"),
    ([*SR, "--hidden", "-4"], "--hidden must be >= 1, got -4"),
    ([*SR, "--checkpoint-every", "-1"], "--checkpoint-every must be >= 0"),
    ([*SR, "--checkpoint-every", "nan"], "--checkpoint-every must be finite"),
    ([*SR, "--seed", "-1"], "--seed must be >= 0"),
    ([*SR, "--device", "tpu"], "--device"),
    ([*SR, "--resume", "--force"], "--resume and --force"),
    (["train", "curie-weiss", "--N", "0", "--beta", "1", *TINY], "--N must be >= 1, got 0"),
    (["train", "curie-weiss", "--N", "8", "--beta", "-1", *TINY], "--beta must be >= 0"),
    (["train", "mnist", "--digits", "12", *TINY], "--digits must be digits 0..9, got 12"),
    (["sample", "CK", "-n", "0"], "-n must be >= 1, got 0"),
    (["sample", "CK", "-n", "4", "--steps", "0"], "--steps must be >= 1, got 0"),
])
def test_every_flag_fails_fast_with_its_name(tmp_path, capsys, argv, message):
    import time

    argv = [a.replace("CK", str(tmp_path / "ck")) for a in argv] + ["--out", str(tmp_path / "out")]
    t0 = time.perf_counter()
    assert main(argv) == 2
    assert time.perf_counter() - t0 < 2.0
    err = capsys.readouterr().err
    assert err.startswith("physdiff: error: ") and message in err and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", ["train", "sample"])
def test_unwritable_out_parent_exits_2_up_front(tmp_path, capsys, monkeypatch, command):
    import os
    from pathlib import Path

    parent = tmp_path / "ro"
    parent.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **k: False if Path(p) == parent else real_access(p, mode))
    argv = ([*SR, "--out", str(parent / "run")] if command == "train"
            else ["sample", str(tmp_path / "nothing-needed"), "-n", "4", "--out", str(parent / "s.nc")])
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "not writable" in err and str(parent) in err and "Traceback" not in err


def test_sample_partial_and_swapped_checkpoints(tmp_path, capsys):
    from physdiff import ddpm

    x0 = np.random.default_rng(0).standard_normal((64, 2)).astype(np.float32)
    cfg = ddpm.TrainConfig(T=6, hidden=4, epochs=3, chunk=2, batch=32, device="cpu")

    def stop(model, steps, epoch):
        if steps == [3, 4]:
            raise KeyboardInterrupt

    ck = tmp_path / "ck"
    with pytest.raises(KeyboardInterrupt):
        ddpm.train(x0, cfg, progress=False, log=None, checkpoint=ck, on_epoch=stop)
    assert main(["sample", str(ck), "-n", "4", "--out", str(tmp_path / "a.nc"), "--no-progress"]) == 2
    assert "--allow-partial" in capsys.readouterr().err
    assert main(["sample", str(ck), "-n", "4", "--out", str(tmp_path / "a.nc"), "--no-progress",
                 "--allow-partial"]) == 0
    err = capsys.readouterr().err
    assert "physdiff: warning:" in err and "partial" in err
    # weights swapped in from another model of the same shape
    full = tmp_path / "full"
    ddpm.train(x0, cfg, progress=False, log=None).save(full)
    other = tmp_path / "other"
    ddpm.train(x0, cfg.replace(seed=1), progress=False, log=None).save(other)
    (full / "model.safetensors").write_bytes((other / "model.safetensors").read_bytes())
    assert main(["sample", str(full), "-n", "4", "--out", str(tmp_path / "b.nc"), "--no-progress"]) == 2
    assert "SHA-256" in capsys.readouterr().err
