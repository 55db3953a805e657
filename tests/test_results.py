"""results.py: schemas, attrs and atomic netCDF round trips."""

import dataclasses
import json

import numpy as np
import pytest
import xarray as xr

from physdiff import __version__, results

AB3 = np.array([1.0, 0.9, 0.5, 0.1])  # alpha_bar at steps 0..3


def test_samples_round_trip_with_provenance(tmp_path):
    x = np.random.default_rng(0).uniform(-1, 1, (5, 784)).astype(np.float32)
    ds = results.samples_dataset(x, image_shape=(28, 28),
                                 attrs=results.provenance(seed=3, command="physdiff test", dataset="mnist",
                                                          digits=[0, 1], flag=True, cfg={"a": 1}, none=None))
    path = results.write_dataset(ds, tmp_path / "s.nc")
    with xr.open_dataset(path) as back:
        np.testing.assert_array_equal(back["x"].values, x)
        np.testing.assert_array_equal(back["image"].values[2], x[2].reshape(28, 28))
        assert back.attrs["physdiff_version"] == __version__
        assert back.attrs["command"] == "physdiff test" and back.attrs["seed"] == 3
        assert list(back.attrs["digits"]) == [0, 1] and back.attrs["flag"] == 1
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary left behind


def test_write_refuses_to_overwrite_when_asked(tmp_path):
    ds = results.loss_dataset(np.ones((2, 3)), alpha_bar=AB3)
    results.write_dataset(ds, tmp_path / "l.nc")
    with pytest.raises(FileExistsError):
        results.write_dataset(ds, tmp_path / "l.nc", overwrite=False)


def test_failed_write_leaves_previous_file(tmp_path, monkeypatch):
    ds = results.loss_dataset(np.ones((2, 3)), alpha_bar=AB3)
    path = results.write_dataset(ds, tmp_path / "l.nc")
    before = path.read_bytes()

    def boom(*a, **k):
        raise RuntimeError("killed mid-write")

    monkeypatch.setattr(xr.Dataset, "to_netcdf", boom)
    with pytest.raises(RuntimeError):
        results.write_dataset(results.loss_dataset(np.zeros((4, 3)), alpha_bar=AB3), path)
    assert path.read_bytes() == before
    assert not list(tmp_path.glob(".*.tmp"))


def test_loss_dataset_layout_and_physical_time():
    loss = np.arange(6.0).reshape(2, 3)
    ds = results.loss_dataset(loss, alpha_bar=AB3, attrs={"dataset": "x"})
    assert ds["loss"].dims == ("epoch", "step") and ds.attrs["dataset"] == "x"
    np.testing.assert_array_equal(ds["loss"], loss)
    np.testing.assert_array_equal(ds["epoch"], [1, 2])
    np.testing.assert_array_equal(ds["step"], [1, 2, 3])
    assert ds["time"].dims == ("step",)
    np.testing.assert_allclose(ds["time"], -0.5 * np.log(AB3[1:]), rtol=1e-15)
    for k in ("loss", "epoch", "step", "time"):
        assert {"units", "long_name"} <= set(ds[k].attrs), k


def test_bad_shapes():
    with pytest.raises(ValueError):
        results.samples_dataset(np.ones((2, 10)), image_shape=(3, 3))
    with pytest.raises(ValueError):
        results.loss_dataset(np.ones(3), alpha_bar=AB3)
    with pytest.raises(ValueError, match="alpha_bar"):
        results.loss_dataset(np.ones((2, 3)), alpha_bar=AB3[1:])  # steps 1..T only: ambiguous
    with pytest.raises(ValueError, match="alpha_bar"):
        results.loss_dataset(np.ones((2, 3)), alpha_bar=[1.0, 0.5, 0.0, 0.1])
    with pytest.raises(FileNotFoundError):
        results.open_dataset("/nonexistent/file.nc")


def test_written_files_have_the_usual_permissions(tmp_path):
    import os
    import stat

    path = results.write_dataset(results.loss_dataset(np.ones((2, 3)), alpha_bar=AB3), tmp_path / "l.nc")
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask


def test_describe_adds_global_attributes_and_scalar_coordinates():
    @dataclasses.dataclass(frozen=True)
    class P:
        N: int = dataclasses.field(default=8, metadata={"help": "spins", "coord": True})
        n_pairs: int = dataclasses.field(default=3, metadata={"help": "pairs"})
        seed: int = dataclasses.field(default=4, metadata={"help": "seed", "coord": True})

    ds = xr.Dataset({"phi": ("step", [1.0, 0.5], {"units": "1", "long_name": "phi"})}, attrs={"kept": 1})
    out = results.describe(ds, title="a study", params=P(), seed=4, history="physdiff study x")
    assert out["N"].item() == 8 and out["seed"].item() == 4 and "n_pairs" not in out.variables
    assert out.attrs["kept"] == 1 and json.loads(out.attrs["params"]) == {"N": 8, "n_pairs": 3, "seed": 4}
    assert "N" not in ds.variables  # the input is not modified
    merged = xr.combine_by_coords([out.expand_dims("N"),
                                   results.describe(ds, title="a study", params=P(N=16), seed=4, history="h")
                                   .expand_dims("N")], combine_attrs="drop")
    assert list(merged["N"].values) == [8, 16]


def test_output_files_are_compressed(tmp_path):
    ds = xr.Dataset({"x": ("i", [0.0] * 100_000, {"units": "1", "long_name": "zeros"})})
    path = results.write_dataset(ds, tmp_path / "z.nc")
    assert path.stat().st_size < 50_000
    with xr.open_dataset(path, engine="h5netcdf") as back:
        assert back["x"].encoding.get("zlib")
