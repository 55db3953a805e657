"""Sweeps of a registered study on dask.distributed: same numbers as point by point, one Dataset
with the grid as coordinates, a failing point reported without losing the others, re-runs skip
finished points."""

from __future__ import annotations

import importlib
import os
import sys
import textwrap

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")

from physdiff import PhysdiffError, studies  # noqa: E402
from physdiff.studies import _sweep  # noqa: E402

TOY = textwrap.dedent('''
    from dataclasses import dataclass, field

    import numpy as np
    import xarray as xr

    from physdiff.studies import register


    @register("sweep-toy", title="a toy study for the sweep tests")
    @dataclass(frozen=True)
    class Params:
        x: float = field(default=1.0, metadata={"help": "abscissa", "coord": True})
        seed: int = field(default=0, metadata={"help": "random seed", "coord": True})
        n: int = field(default=3, metadata={"help": "draws"})

        def __post_init__(self):
            if self.n < 1:
                raise ValueError(f"n must be >= 1, got {self.n}")


    def run(params, progress=False):
        if params.x < 0:
            raise RuntimeError("x < 0 fails at run time, after validation")
        rng = np.random.default_rng(params.seed)
        y = params.x**2 + rng.normal(size=params.n)
        return {"toy": xr.Dataset({"y": (("draw",), y, {"units": "1", "long_name": "x squared plus noise"})},
                                  coords={"draw": np.arange(params.n)})}


    def plot(datasets):
        return {}
''')


@pytest.fixture(scope="module")
def toy_module(tmp_path_factory):
    """Registers the toy study from a module that the workers can import (PYTHONPATH)."""
    folder = tmp_path_factory.mktemp("toy")
    (folder / "physdiff_sweep_toy.py").write_text(TOY)
    sys.path.insert(0, str(folder))
    importlib.import_module("physdiff_sweep_toy")
    yield folder
    studies._REGISTERED.pop("sweep-toy", None)
    sys.modules.pop("physdiff_sweep_toy", None)
    sys.path.remove(str(folder))


@pytest.fixture(scope="module")
def client(toy_module):
    env = {"PYTHONPATH": os.pathsep.join([str(toy_module), os.environ.get("PYTHONPATH", "")]),
           "NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                                  env=env) as cluster, distributed.Client(cluster) as c:
        yield c


def test_parse_grid_values_ranges_and_errors(toy_module):
    Params = studies.get("sweep-toy").Params
    assert _sweep.parse_grid(Params, ["x=0.5,2", "seed=0:3"]) == {"x": [0.5, 2.0], "seed": [0, 1, 2]}
    assert _sweep.grid_points({"x": [1.0, 2.0], "seed": [0, 1]})[1] == {"x": 1.0, "seed": 1}
    for bad, match in [(["x"], "NAME=v1"), (["y=1"], "not a parameter"), (["x=1", "x=2"], "twice"),
                       (["x=0:2"], "integer parameter"), (["seed=a"], "not a valid int"), (["seed=3:1"], "no values")]:
        with pytest.raises(ValueError, match=match):
            _sweep.parse_grid(Params, bad)


def test_sweep_equals_point_by_point_and_keeps_good_points(client, tmp_path):
    grid = {"x": [-1.0, 0.5, 2.0], "seed": [0, 1]}
    res = _sweep.sweep("sweep-toy", grid, client=client, out=tmp_path / "sw")
    assert set(res.failures) == {"x=-1.0,seed=0", "x=-1.0,seed=1"}
    assert all("x < 0 fails" in msg for msg in res.failures.values())
    ds = res.datasets["toy"]
    assert ds["y"].dims == ("x", "seed", "draw")
    assert ds["y"].attrs["units"] == "1"
    for x in (0.5, 2.0):
        for seed in (0, 1):
            one = studies.study("sweep-toy", x=x, seed=seed)["toy"]
            np.testing.assert_array_equal(ds["y"].sel(x=x, seed=seed).values, one["y"].values)
    assert np.isnan(ds["y"].sel(x=-1.0).values).all()  # the failed points are missing, not invented
    assert (tmp_path / "sw" / "toy.nc").exists()
    assert sorted(p.name for p in (tmp_path / "sw" / "points").iterdir()) == [
        "x=0.5,seed=0", "x=0.5,seed=1", "x=2.0,seed=0", "x=2.0,seed=1"]


def test_rerun_reads_finished_points_back(client, tmp_path):
    out = tmp_path / "sw"
    first = _sweep.sweep("sweep-toy", {"x": [1.0, 3.0]}, client=client, out=out)
    stamp = (out / "points" / "x=1.0" / "toy.nc").stat().st_mtime_ns
    again = _sweep.sweep("sweep-toy", {"x": [1.0, 3.0]}, client=client, out=out)
    assert (out / "points" / "x=1.0" / "toy.nc").stat().st_mtime_ns == stamp  # not recomputed
    np.testing.assert_array_equal(first.datasets["toy"]["y"].values, again.datasets["toy"]["y"].values)


def test_bad_points_are_refused_before_any_work(client):
    with pytest.raises(ValueError, match="n must be >= 1"):
        _sweep.sweep("sweep-toy", {"x": [1.0]}, client=client, n=0)
    with pytest.raises(ValueError, match="both swept"):
        _sweep.sweep("sweep-toy", {"x": [1.0]}, client=client, x=2.0)
    with pytest.raises(ValueError, match="unknown study"):
        _sweep.sweep("no-such-study", {"x": [1.0]}, client=client)


def test_without_dask_the_message_says_how_to_install(toy_module, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    with pytest.raises(PhysdiffError, match=r"pip install 'physdiff\[dask\]'"):
        _sweep.sweep("sweep-toy", {"x": [1.0]})


def test_cli_sweep_of_a_real_study_on_a_local_cluster(tmp_path, capsys):
    """`physdiff sweep` on LocalCluster(2 workers, 1 thread each) over 4 points of a registered
    study: the combined Dataset holds exactly the numbers of the points run one by one."""
    from physdiff.cli import main

    tiny = studies.get("two-cluster-cloning").TINY
    flags = ["--d", *map(str, tiny["d"]), "--n-pairs", str(tiny["n_pairs"]), "--T", str(tiny["T"]),
             "--t-max", str(tiny["t_max"]), "--offsets", *map(str, tiny["offsets"])]
    out = tmp_path / "sw"
    code = main(["sweep", "two-cluster-cloning", "--grid", "seed=0,1", "--grid", "sigma=1.0,0.5",
                 "--workers", "2", "--no-progress", "--out", str(out), *flags])
    assert code == 0, capsys.readouterr().err
    assert "4 of 4 points done" in capsys.readouterr().out
    from physdiff.results import open_dataset

    combined = open_dataset(out / "speciation.nc")
    for seed in (0, 1):
        for sigma in (1.0, 0.5):
            one = studies.study("two-cluster-cloning", seed=seed, sigma=sigma, **tiny)["speciation"]
            for name, var in one.data_vars.items():
                np.testing.assert_array_equal(combined[name].sel(seed=seed, sigma=sigma).values, var.values)
    assert main(["sweep", "two-cluster-cloning", "--grid", "nope=1", "--out", str(tmp_path / "x")]) == 2
    assert "not a parameter" in capsys.readouterr().err
