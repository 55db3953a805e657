"""Tests of the phase-transition study (physdiff.experiments.phase_transition).

The score comparison is exactly zero for an exact "learned" score; the mu-binned potential estimator
is exact on a Gaussian (linear projected score) and reproduces the exact Curie-Weiss V(mu, t) within
its propagated 5-sigma error; the study runs end to end on a tiny trained model and writes every file.
"""

import math

import numpy as np
import pytest
import xarray as xr

from physdiff.experiments import phase_transition as pt
from physdiff.schedules import make_schedule
from physdiff.theory import curie_weiss as cw

BETA = 1.5


class ExactModel:
    """A stand-in for a DDPM whose eps is the exact Curie-Weiss one (Tweedie)."""

    def __init__(self, N, beta, h=0.0, T=30):
        self.schedule = make_schedule("linear", T, beta_start=min(0.1 / T, 0.5), beta_end=min(20.0 / T, 0.5))
        self.N, self.beta, self.h = N, beta, h
        self.data = {"dataset": "curie-weiss", "N": N, "beta": beta, "h": h}

    def eps(self, x, t):
        ab = float(self.schedule.alpha_bar[t])
        return -math.sqrt(1.0 - ab) * cw.score(np.asarray(x, dtype=np.float64), ab, self.beta, self.h)

    eps_fn = property(lambda self: self.eps)


def test_score_comparison_is_zero_for_the_exact_score():
    m = ExactModel(12, BETA, h=0.05, T=20)
    ds = pt.score_comparison(m, 12, BETA, 0.05, n_eval=40, seed=3)
    assert ds.sizes["t"] == 20
    for v in ("mse", "mse_parallel", "mse_orthogonal"):
        assert np.all(ds[v].values <= 1e-24 * 1e4), v  # float64 rounding of -(-c s)/c only
    for v in ("relative_error", "relative_error_parallel", "relative_error_orthogonal"):
        assert np.all(ds[v].values < 1e-24), v
    np.testing.assert_allclose(ds["cosine"], 1.0, atol=1e-12)
    np.testing.assert_allclose(ds["cosine_parallel"], 1.0, atol=1e-12)
    # the split sums to the total
    np.testing.assert_allclose(ds["mse_parallel"] + ds["mse_orthogonal"], ds["mse"], rtol=1e-9, atol=1e-30)
    # equal seeds, equal results
    ds2 = pt.score_comparison(m, 12, BETA, 0.05, n_eval=40, seed=3)
    np.testing.assert_array_equal(ds["cosine"].values, ds2["cosine"].values)


def test_score_comparison_sees_a_wrong_score():
    m = ExactModel(12, BETA, T=10)
    wrong = ExactModel(12, BETA, T=10)
    wrong.eps = lambda x, t: 0.5 * m.eps(x, t)  # half the score: relative error exactly 1/4
    ds = pt.score_comparison(wrong, 12, BETA, n_eval=50, seed=0)
    np.testing.assert_allclose(ds["relative_error"], 0.25, rtol=1e-9)
    np.testing.assert_allclose(ds["relative_error_parallel"], 0.25, rtol=1e-9)
    assert 1 <= ds.attrs["t_max_relative_error"] <= 10


def test_potential_estimator_is_exact_for_a_gaussian():
    # mu ~ N(0, v), projected score g = -mu / v: -dV/dmu is linear, the trapezoid rule exact
    rng = np.random.default_rng(0)
    v = 1.7
    mu = rng.normal(0, math.sqrt(v), 50000)
    est = pt.potential_from_projected_score(mu, -mu / v, np.linspace(-4, 4, 41), min_count=20)
    ok = np.isfinite(est["V"])
    assert ok.sum() >= 35
    a = est["mu"][est["anchor"]]
    np.testing.assert_allclose(est["V"][ok], (est["mu"][ok] ** 2 - a**2) / (2 * v), atol=1e-12)
    assert est["V"][est["anchor"]] == 0.0 and est["V_stderr"][est["anchor"]] == 0.0
    with pytest.raises(ValueError, match="same length"):
        pt.potential_from_projected_score(mu, mu[:-1], np.linspace(-4, 4, 41))
    with pytest.raises(ValueError, match="increasing"):
        pt.potential_from_projected_score(mu, mu, [0.0, 0.0, 1.0])


@pytest.mark.parametrize("N, n, dt", [(32, 10000, -0.5), (32, 10000, 0.5), (64, 5000, 0.0)])
def test_binned_potential_of_exact_score_matches_theory(N, n, dt):
    sched = make_schedule("linear", 100, beta_start=1e-3, beta_end=0.2)
    t_S = cw.speciation_time(N, BETA)
    step = sched.step_at_time(t_S + dt)
    exact = lambda x, t: cw.score(np.asarray(x, np.float64), float(sched.alpha_bar[t]), BETA)  # noqa: E731
    ds = pt.binned_potentials({"exact": exact}, sched, N, BETA, steps=[step], n_samples=n,
                              edges=np.linspace(-6, 6, 49), min_count=20, seed=1)
    V, Vth, err = ds["V_exact"].values[0], ds["V_theory"].values[0], ds["V_exact_stderr"].values[0]
    use = np.isfinite(V) & (ds["count"].values[0] >= 100)
    assert use.sum() >= 10
    # 5 sigma of the propagated statistical error, plus the O(width^2) quadrature / in-bin averaging bias
    assert np.all(np.abs(V[use] - Vth[use]) <= 5 * err[use] + 0.02), np.max(np.abs(V[use] - Vth[use]) - 5 * err[use])
    # the potential has some structure here, so this is not vacuous
    assert np.nanmax(Vth[use]) - np.nanmin(Vth[use]) > 0.3


def test_collapse_time_solves_its_equation():
    for P, N, s2 in [(4000, 64, 0.263), (100, 10, 1.0), (10**6, 784, 0.5)]:
        t = pt.collapse_time(P, N, s2)
        f = 0.5 * math.log(1 + s2 * math.exp(-2 * t) / -math.expm1(-2 * t))
        assert f == pytest.approx(math.log(P) / N, rel=1e-10)
    assert pt.collapse_time(1, 10, 1.0) == math.inf
    with pytest.raises(ValueError):
        pt.collapse_time(10, 10, 0.0)


def test_axis_energy_of_exact_score_is_minus_log_density():
    N, sched = 16, make_schedule("linear", 50, beta_start=2e-3, beta_end=0.4)
    exact = lambda x, t: cw.score(np.asarray(x, np.float64), float(sched.alpha_bar[t]), BETA)  # noqa: E731
    mu = np.linspace(-4, 4, 161)
    E = pt.axis_potentials(exact, [10, 25], mu, N)
    u = np.full(N, 1 / math.sqrt(N))
    for k, t in enumerate([10, 25]):
        lp = cw.log_density((mu[:, None] * u).astype(np.float32).astype(np.float64), float(sched.alpha_bar[t]), BETA)
        ref = -(lp - lp[80])
        # trapezoid rule, step 0.05: error ~ h^2/12 * int |V'''|, below 1e-3 of the potential's range here
        np.testing.assert_allclose(E[k], ref, atol=2e-3 * np.ptp(ref))


@pytest.fixture(scope="module")
def tiny_checkpoints(tmp_path_factory):
    from physdiff import datasets, ddpm

    root = tmp_path_factory.mktemp("pt")
    N, n = 16, 600
    x0 = datasets.curie_weiss(n, N, BETA, 0.0, seed=0)
    meta = {"dataset": "curie-weiss", "N": N, "beta": BETA, "h": 0.0, "n_train": n}
    for name, act in (("cw", "relu"), ("cw_linear", "linear")):
        cfg = ddpm.get_config("curie-weiss", "quick", T=40, hidden=16, epochs=2, activation=act, device="cpu", seed=0)
        model = ddpm.train(x0, cfg, progress=False, log=None, metadata=meta)
        model.save(root / name)
    return root


def test_study_end_to_end(tiny_checkpoints, tmp_path):
    out = tmp_path / "pt"
    lines = []
    summary = pt.phase_transition_study(tiny_checkpoints / "cw", out, seed=0, n_eval=8, n_potential=800,
                                        n_pairs=100, n_pairs_exact=40, n_generate=200, n_trajectories=10,
                                        progress=False, log=lines.append, command="test")
    for name in pt.OUTPUTS:
        assert (out / name).is_file(), name
        if name.endswith(".nc"):
            with xr.open_dataset(out / name, engine="h5netcdf") as ds:
                assert ds.attrs["command"] == "test" and ds.attrs["N"] == 16
    with xr.open_dataset(out / "potential.nc", engine="h5netcdf") as ds:
        assert "V_linear" in ds and "V_learned" in ds  # the sibling linear model was found
    with xr.open_dataset(out / "memorization.nc", engine="h5netcdf") as ds:
        assert int(ds["memorization_checked"][0]) == 1  # training set regenerated, sha256 matched
        assert 0.0 <= float(ds["memorized_share"][0]) <= 1.0
    assert summary["speciation_time_theory"] == pytest.approx(cw.speciation_time(16, BETA))
    assert 0.0 <= summary["share_plus"] <= 1.0
    assert summary["share_plus_exact"] == pytest.approx(0.5)
    assert np.isfinite(summary["jacobian_asymmetry_mean"])
    assert summary["linear_double_well"] is False
    # nothing is overwritten without force
    with pytest.raises(FileExistsError):
        pt.phase_transition_study(tiny_checkpoints / "cw", out, progress=False, log=lines.append)


def test_study_rejects_bad_checkpoints(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        pt.phase_transition_study(tmp_path / "missing", tmp_path / "out", progress=False)
