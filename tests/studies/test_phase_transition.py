"""The phase-transition study and the Curie-Weiss estimators it uses (physdiff.metrics).

The score comparison is exactly zero for an exact "learned" score; the mu-binned potential
estimator is exact on a Gaussian (linear projected score) and reproduces the exact Curie-Weiss
V(mu, t) within its propagated 5-sigma error; the axis energy of the exact score is -log p_t along
the axis; the well counter counts a double well as 2; the study runs end to end on tiny trained
checkpoints (with the sibling linear model) and its linear model has no double well.
"""

import math

import numpy as np
import pytest

from physdiff import metrics
from physdiff.schedules import make_schedule
from physdiff.studies import phase_transition as pt
from physdiff.theory import curie_weiss as cw

BETA = 1.5


class ExactModel:
    """A stand-in for a DDPM whose eps is the exact Curie-Weiss one (Tweedie)."""

    def __init__(self, N, beta, h=0.0, T=30):
        self.schedule = make_schedule("linear", T, beta_start=min(0.1 / T, 0.5), beta_end=min(20.0 / T, 0.5))
        self.N, self.beta, self.h = N, beta, h

    def eps(self, x, t):
        ab = float(self.schedule.alpha_bar[t])
        return -math.sqrt(1.0 - ab) * cw.score(np.asarray(x, dtype=np.float64), ab, self.beta, self.h)


def test_score_comparison_is_zero_for_the_exact_score():
    m = ExactModel(12, BETA, h=0.05, T=20)
    ds = pt._score_dataset(m, 12, BETA, 0.05, 40, np.random.default_rng(3))
    assert ds.sizes["step"] == 20
    for v in ("mse", "mse_parallel", "mse_orthogonal", "relative_error", "relative_error_parallel",
              "relative_error_orthogonal"):
        assert np.all(np.abs(ds[v].values) <= 1e-20), v  # float32 inputs, float64 rounding only
    np.testing.assert_allclose(ds["cosine"], 1.0, atol=1e-12)
    np.testing.assert_allclose(ds["cosine_parallel"], 1.0, atol=1e-12)
    np.testing.assert_allclose(ds["mse_parallel"] + ds["mse_orthogonal"], ds["mse"], rtol=1e-9, atol=1e-30)
    wrong = ExactModel(12, BETA, T=10)
    exact = ExactModel(12, BETA, T=10)
    wrong.eps = lambda x, t: 0.5 * exact.eps(x, t)  # half the score: relative error exactly 1/4
    ds = pt._score_dataset(wrong, 12, BETA, 0.0, 50, np.random.default_rng(0))
    np.testing.assert_allclose(ds["relative_error"], 0.25, rtol=1e-9)
    np.testing.assert_allclose(ds["relative_error_parallel"], 0.25, rtol=1e-9)


def test_potential_estimator_is_exact_for_a_gaussian():
    # mu ~ N(0, v), projected score g = -mu / v: -dV/dmu is linear, the trapezoid rule exact
    rng = np.random.default_rng(0)
    v = 1.7
    mu = rng.normal(0, math.sqrt(v), 50000)
    est = metrics.projected_potential(mu, -mu / v, np.linspace(-4, 4, 41), min_count=20)
    ok = np.isfinite(est["V"])
    assert ok.sum() >= 35
    a = est["mu"][est["anchor"]]
    np.testing.assert_allclose(est["V"][ok], (est["mu"][ok] ** 2 - a**2) / (2 * v), atol=1e-12)
    assert est["V"][est["anchor"]] == 0.0 and est["V_stderr"][est["anchor"]] == 0.0
    with pytest.raises(ValueError, match="same length"):
        metrics.projected_potential(mu, mu[:-1], np.linspace(-4, 4, 41))
    with pytest.raises(ValueError, match="increasing"):
        metrics.projected_potential(mu, mu, [0.0, 0.0, 1.0])


def test_potential_stderr_is_the_propagated_error():
    # V[k] - V[anchor] is a weighted sum of the bin means of g: check the propagation against the
    # spread of V over independent replicates (200 replicates: the sd is known to ~5 %)
    edges = np.linspace(-2.1, 1.9, 9)  # the anchor (bin mean nearest 0, ~0.15) is the same bin in every replicate
    reps, errs = [], []
    for s in range(200):
        rng = np.random.default_rng(s)
        mu = rng.uniform(-2.1, 1.9, 4000)
        est = metrics.projected_potential(mu, rng.normal(size=mu.size), edges)
        reps.append(est["V"])
        errs.append(est["V_stderr"])
    sd, err = np.std(reps, axis=0, ddof=1), np.mean(errs, axis=0)
    far = err > 0
    np.testing.assert_allclose(sd[far], err[far], rtol=0.25)


@pytest.mark.parametrize("N, n, dt", [(32, 10000, -0.5), (32, 10000, 0.5), (64, 5000, 0.0)])
def test_binned_potential_of_exact_score_matches_theory(N, n, dt):
    sched = make_schedule("linear", 100, beta_start=1e-3, beta_end=0.2)
    step = sched.step_at_time(cw.speciation_time(N, BETA) + dt)
    exact = lambda x, t: cw.score(np.asarray(x, np.float64), float(sched.alpha_bar[t]), BETA)  # noqa: E731
    ds = metrics.binned_potentials({"exact": exact}, sched, N, BETA, steps=[step], n_samples=n,
                                   edges=np.linspace(-6, 6, 49), min_count=20, seed=1)
    V, Vth, err = ds["V_exact"].values[0], ds["V_theory"].values[0], ds["V_exact_stderr"].values[0]
    use = np.isfinite(V) & (ds["count"].values[0] >= 100)
    assert use.sum() >= 10
    # 5 sigma of the propagated statistical error, plus the O(width^2) quadrature / in-bin averaging bias
    assert np.all(np.abs(V[use] - Vth[use]) <= 5 * err[use] + 0.02), np.max(np.abs(V[use] - Vth[use]) - 5 * err[use])
    assert np.nanmax(Vth[use]) - np.nanmin(Vth[use]) > 0.3  # the potential has structure: not vacuous
    for v in ds.data_vars:
        assert ds[v].attrs["units"] and ds[v].attrs["long_name"]


def test_axis_energy_of_exact_score_is_minus_log_density():
    N, sched = 16, make_schedule("linear", 50, beta_start=2e-3, beta_end=0.4)
    exact = lambda x, t: cw.score(np.asarray(x, np.float64), float(sched.alpha_bar[t]), BETA)  # noqa: E731
    mu = np.linspace(-4, 4, 161)
    E = pt._axis_energy(exact, [10, 25], mu, N)
    u = np.full(N, 1 / math.sqrt(N))
    for k, t in enumerate([10, 25]):
        lp = cw.log_density((mu[:, None] * u).astype(np.float32).astype(np.float64), float(sched.alpha_bar[t]), BETA)
        ref = -(lp - lp[80])
        # trapezoid rule, step 0.05: error ~ h^2/12 * int |V'''|, below 1e-3 of the potential's range here
        np.testing.assert_allclose(E[k], ref, atol=2e-3 * np.ptp(ref))


def test_well_numbers():
    mu = np.linspace(-3, 3, 121)
    n, depth, err, pos = metrics.well_numbers(mu, (mu**2 - 1) ** 2)
    assert (n, pos) == (2, pytest.approx(1.0)) and depth == pytest.approx(1.0)
    n, depth, _, pos = metrics.well_numbers(mu, mu**2)
    assert (n, depth, pos) == (1, 0.0, 0.0)
    # a wiggle smaller than twice the statistical error is not a minimum
    noisy = 0.5 * mu**2 + 0.01 * np.sin(40 * mu)
    assert metrics.well_numbers(mu, noisy, np.full(mu.size, 0.02))[0] == 1
    assert metrics.well_numbers(mu, noisy)[0] > 1
    right = mu > 1.0  # samples that do not reach mu = 0 give no depth
    assert np.isnan(metrics.well_numbers(mu[right], (mu[right] - 2) ** 2)[1])


@pytest.fixture(scope="module")
def tiny_checkpoints(tmp_path_factory):
    from physdiff import datasets, ddpm

    root = tmp_path_factory.mktemp("pt")
    x0, meta = datasets.load_training_data("curie-weiss", seed=0, N=16, beta=BETA, h=0.0, n_train=600)
    for name, act in (("cw", "relu"), ("cw_linear", "linear")):
        cfg = ddpm.get_config("curie-weiss", "quick", T=40, hidden=16, epochs=2, activation=act, device="cpu", seed=0)
        ddpm.train(x0, cfg, progress=False, log=None, metadata=meta).save(root / name)
    return root


def test_study_on_checkpoints(tiny_checkpoints):
    p = pt.Params(checkpoint=str(tiny_checkpoints / "cw"), N=16, n_eval=8, n_potential=800, n_pairs=60, n_pairs_exact=40,
                  n_generate=200, n_trajectories=10)
    out = pt.run(p)
    assert set(out) == {"score", "potential", "autoencoder", "speciation", "trajectories", "state_weights",
                        "memorization"}
    for name, ds in out.items():
        for v in ds.data_vars:
            assert ds[v].attrs.get("units") and ds[v].attrs.get("long_name"), (name, v)
    assert "V_linear" in out["potential"] and "phi_linear" in out["speciation"]  # the sibling linear model
    mem, sw = out["memorization"], out["state_weights"]
    assert int(mem["memorization_checked"][0]) == 1  # training set rebuilt from the metadata, sha256 matched
    assert 0.0 <= float(mem["copy_share"][0]) <= 1.0
    assert sw.attrs["share_plus_exact"] == pytest.approx(0.5)  # h = 0: the two states weigh the same
    sp = out["speciation"]
    assert float(sp["speciation_time_theory"]) == pytest.approx(cw.speciation_time(16, BETA))
    assert np.all((sp["phi"] >= 0) & (sp["phi"] <= 1))
    ae = out["autoencoder"]
    assert np.all(np.isfinite(ae["jacobian_asymmetry"]))
    # a linear model's energy is a parabola: never a double well; the exact one has one before t_S
    assert np.all(ae["n_minima_linear"].values <= 1)
    before = ae["energy_time"].values < float(sp["speciation_time_theory"]) - 0.4
    assert np.all(ae["n_minima_exact"].values[before] == 2)
    figs = pt.plot(out)
    assert set(figs) == {"score", "potential", "autoencoder", "cloning", "trajectories", "state_weights"}


def test_params_reject_bad_checkpoints(tmp_path, tiny_checkpoints):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        pt.Params(checkpoint=str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="trained on N=16"):
        pt.Params(checkpoint=str(tiny_checkpoints / "cw"))  # N = 64 by default
    with pytest.raises(ValueError, match="n_pairs"):
        pt.Params(n_pairs=1)
