"""The speciation-scan study: one model per training seed and number of epochs, each with its
cloning crossing of 0.7752 and learned well depth, against the exact score and the exact theory.

Physics checked on a tiny run (N = 8): the exact potential is a double well before t_S (positive
depth), phi lies in [0, 1] and falls from the early to the late branch times for the exact score,
and the exact theory's crossing lies near (1/2) log Lambda.
"""

import math

import numpy as np
import pytest

from physdiff.studies import speciation_scan as ss
from physdiff.theory import curie_weiss as cw

BETA = 1.5


@pytest.fixture(scope="module")
def tiny():
    p = ss.Params(**ss.TINY)
    return p, ss.run(p)["speciation_scan"]


def test_runs_and_shapes(tiny):
    p, ds = tiny
    # seed 3 at the preset's 0 epochs (its least-squares start), then seed 3 at 2 Adam epochs
    np.testing.assert_array_equal(ds["training_seed"], [3, 3])
    np.testing.assert_array_equal(ds["epochs"], [0, 2])
    assert ds["phi"].shape == (2, ds.sizes["step"]) and ds["well_depth"].shape == (2, 2)
    for v in ds.data_vars:
        assert ds[v].attrs["units"] and ds[v].attrs["long_name"], v


def test_physics_of_the_references(tiny):
    p, ds = tiny
    assert float(ds["speciation_time_theory"]) == pytest.approx(0.5 * math.log(cw.top_eigenvalue(8, BETA)))
    assert np.all(ds["well_depth_exact"].values > 0)  # before t_S the exact V is a double well
    assert np.all((ds["phi"].values >= 0) & (ds["phi"].values <= 1))
    # the exact score's phi agrees with the exact theory (interpolated on its 25-point curve) within
    # 4 sigma of the binomial and Monte Carlo errors, plus 0.02 for the time discretisation of the
    # T = 25 chain (about 0.01, see tests/studies/test_curie_weiss.py) and the interpolation (< 0.002)
    t = ds["time"].values
    th = np.interp(t, ds["time_curve"].values, ds["phi_theory"].values)
    th_se = np.interp(t, ds["time_curve"].values, ds["phi_theory_stderr"].values)
    sd = np.sqrt(th * (1 - th) / p.n_pairs_exact + th_se**2)
    assert np.all(np.abs(ds["phi_exact"].values - th) <= 4 * sd + 0.02)
    # the exact theory crosses 0.7752 within 0.3 of (1/2) log Lambda at N = 8
    assert abs(float(ds["speciation_time_phi_theory"]) - float(ds["speciation_time_theory"])) < 0.3
    # the Gaussian with the same Lambda crosses earlier than the double well
    assert float(ds["speciation_time_gaussian"]) < float(ds["speciation_time_phi_theory"])


def test_plot_and_params(tiny):
    _, ds = tiny
    assert set(ss.plot({"speciation_scan": ds})) == {"speciation_scan"}
    with pytest.raises(ValueError, match="seeds"):
        ss.Params(seeds=())
    with pytest.raises(ValueError, match="T"):
        ss.Params(T=20)
