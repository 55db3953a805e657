"""Tests of the phase-transition study (physdiff.experiments.phase_transition).

The score comparison is exactly zero for an exact "learned" score; the mu-binned potential estimator
is exact on a Gaussian (linear projected score) and reproduces the exact Curie-Weiss V(mu, t) within
its propagated 5-sigma error; the cloning experiment run with the exact Curie-Weiss score reproduces
the exact phi(t) within its binomial and Monte Carlo errors plus the derived time-discretisation
bias; the study runs end to end on a tiny trained model and writes every file.
"""

import math

import numpy as np
import pytest
import xarray as xr

from physdiff.experiments import phase_transition as pt
from physdiff.experiments.curie_weiss import study_schedule
from physdiff.reverse import cloning, eps_from_score
from physdiff.schedules import make_schedule
from physdiff.theory import curie_weiss as cw
from physdiff.theory import gaussian

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


def gaussian_chain_phi_bias(schedule, lam: float, t_b: int, sigma: str = "beta") -> float:
    """Time-discretisation bias of the cloning ``phi`` at branch step ``t_b``, for Gaussian data.

    Along the top eigendirection ``u`` the data have variance ``Lambda``; replace them by a Gaussian
    of that variance. Its exact score is linear, ``-x / v_t`` with ``v_t = alpha_bar_t Lambda +
    Delta_t``, so the ancestral chain with the exact score is linear too: one step is
    ``x_{t-1} = a_t x_t + sigma_t z`` with ``a_t = (1 - beta_t / v_t) / sqrt(alpha_t)`` ([Ho20]
    Alg. 2 with ``eps = -sqrt(Delta) score``; ``sigma_t = 0`` at ``t = 1``). From ``x_T ~ N(0, 1)``
    the chain's variance at ``t_b`` is ``V_b``; the two clones' endpoints are ``A x_{t_b} + xi``
    and ``A x_{t_b} + xi'`` with ``A = prod_{t <= t_b} a_t`` and independent ``xi``, ``xi'`` of
    variance ``S``, so their correlation is ``rho = A^2 V_b / (A^2 V_b + S)``, and for a centred
    Gaussian pair ``P(same sign) = 1/2 + arcsin(rho) / pi``. The exact reverse process gives
    ``rho* = Corr(E[x0 | x_t]) = alpha_bar Lambda / v`` (clones are independent draws of
    ``q(x0 | x_t)``). The bias is ``(arcsin rho - arcsin rho*) / pi``: first order in the step
    size (it halves when ``T`` doubles). Checked against simulated Gaussian chains (400 000 pairs,
    T = 25: agreement to 0.001).
    """
    ab, b, al = schedule.alpha_bar, schedule.betas, schedule.alphas
    s2 = schedule.sigma2(sigma)
    v = ab * lam + 1.0 - ab
    a = lambda t: (1.0 - b[t] / v[t]) / math.sqrt(al[t])  # noqa: E731
    V = 1.0
    for t in range(schedule.T, t_b, -1):
        V = a(t) ** 2 * V + (s2[t] if t > 1 else 0.0)
    A, S = 1.0, 0.0
    for t in range(t_b, 0, -1):
        S = a(t) ** 2 * S + (s2[t] if t > 1 else 0.0)
        A *= a(t)
    rho = A * A * V / (A * A * V + S)
    rho_exact = ab[t_b] * lam / v[t_b]
    return (math.asin(rho) - math.asin(rho_exact)) / math.pi


@pytest.mark.parametrize("H", [0.0, 0.5])
def test_exact_score_cloning_matches_phi_theory(H):
    """phi(t) of reverse.cloning driven by the exact Curie-Weiss score (N = 16, h = H/N) against the
    exact phi_curie_weiss_mc, at 6 branch times from t_S - 0.6 to t_S + 0.9.

    Tolerance per branch time: 4 standard deviations of (measured - theory), the binomial
    ``sqrt(phi (1 - phi) / n_pairs)`` (pairs are independent; the theory's phi is used) and the
    theory's own Monte Carlo standard error in quadrature, plus the derived discretisation bias of
    the T = 30 chain (:func:`gaussian_chain_phi_bias`, at most 0.0065 here). The 6 estimates share
    their originals, so they are correlated; 4 sigma each keeps the family-wise false-alarm rate
    below 6 x 6.3e-5. The bias must stay well below the statistical error (else the test would be
    measuring the schedule), and theory must vary by > 0.25 across the branch times (so a shift of
    the time axis by ~0.3 fails).
    """
    N, n_pairs, T = 16, 800, 30
    h = H / N
    sched = study_schedule(T)
    lam = cw.top_eigenvalue(N, BETA, h)
    t_S = 0.5 * math.log(lam)
    branch = sorted({sched.step_at_time(t_S + d) for d in (-0.6, -0.3, 0.0, 0.3, 0.6, 0.9)}, reverse=True)
    eps = eps_from_score(lambda x, ab: cw.score(x, ab, BETA, h), sched)
    det = cloning(eps, sched, lambda x: (x.sum(axis=1) > 0).astype(np.int64), branch, n_pairs, N, seed=11,
                  return_details=True)
    phi_th, se_th = gaussian.phi_curie_weiss_mc(det.physical_time, N, BETA, h, n_samples=20000, seed=5)
    sd = np.sqrt(phi_th * (1 - phi_th) / n_pairs + se_th**2)
    bias = np.array([gaussian_chain_phi_bias(sched, lam, int(t)) for t in det.branch_steps])
    assert np.all(np.abs(bias) < 0.5 * sd), bias / sd
    assert np.ptp(phi_th) > 0.25
    dev = det.phi - phi_th
    assert np.all(np.abs(dev) <= 4 * sd + np.abs(bias)), dev / sd


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


def test_phi_gaussian_is_the_cloning_probability_of_a_gaussian():
    # Monte Carlo of E[P(+|mu_t)^2 + P(-|mu_t)^2] for mu_0 ~ N(0, Lam): the posterior of mu_0 given
    # mu_t is N(s Lam mu_t / v, Lam Delta / v), v = s^2 Lam + Delta
    rng = np.random.default_rng(0)
    from scipy.stats import norm

    Lam, n = 20.0, 200_000
    for t in (0.3, 1.0, 1.5, 2.5):
        s, D = math.exp(-t), -math.expm1(-2 * t)
        v = s * s * Lam + D
        mu_t = rng.normal(0, math.sqrt(v), n)
        p = norm.cdf((s * Lam * mu_t / v) / math.sqrt(Lam * D / v))
        vals = p**2 + (1 - p) ** 2
        assert abs(pt.phi_gaussian(t, Lam) - vals.mean()) < 4 * vals.std() / math.sqrt(n)
    tG = pt.speciation_time_gaussian(Lam)
    assert pt.phi_gaussian(tG, Lam) == pytest.approx(pt.PHI_LEVEL, abs=1e-12)
    # a Gaussian with Curie-Weiss's Lambda crosses earlier (smaller t) than the double well does
    lam64 = cw.top_eigenvalue(64, BETA)
    assert pt.speciation_time_gaussian(lam64) < 0.5 * math.log(lam64) - 0.4


def test_speciation_scan_end_to_end(tmp_path):
    out = tmp_path / "scan"
    lines = []
    kw = dict(N=8, beta=BETA, seeds=(3,), epochs=(2,), n_pairs=100, n_pairs_exact=40, n_theory=300, n_train=64,
              overrides={"T": 25, "hidden": 16}, log=lines.append, command="test")
    summary = pt.speciation_scan(out, **kw)
    for name in pt.SCAN_OUTPUTS + ("seed3_epochs30/config.json", "seed3_epochs2/model.safetensors"):
        assert (out / name).is_file(), name
    with xr.open_dataset(out / "speciation_scan.nc", engine="h5netcdf") as ds:
        assert ds.sizes["run"] == 2 and ds["phi"].shape == (2, ds.sizes["t"])
        np.testing.assert_array_equal(ds["seed"], [3, 3])
        np.testing.assert_array_equal(ds["epochs"], [30, 2])
        np.testing.assert_array_equal(ds["seed_run"], [1, 0])
        assert ds["well_depth"].shape == (2, 2) and np.all(ds["well_depth_exact"].values > 0)  # t < t_S: a double well
        assert ds.attrs["command"] == "test"
        assert np.all((ds["phi"].values >= 0) & (ds["phi"].values <= 1))
    assert summary["speciation_time_theory"] == pytest.approx(cw.speciation_time(8, BETA))
    assert len(summary["runs"]) == 2
    with pytest.raises(FileExistsError):
        pt.speciation_scan(out, **kw)


def test_well_numbers():
    mu = np.linspace(-3, 3, 121)
    n, depth, err, pos = pt.well_numbers(mu, (mu**2 - 1) ** 2)
    assert (n, pos) == (2, pytest.approx(1.0)) and depth == pytest.approx(1.0)
    n, depth, _, pos = pt.well_numbers(mu, mu**2)
    assert (n, depth, pos) == (1, 0.0, 0.0)
    # a wiggle smaller than twice the statistical error is not a minimum
    noisy = 0.5 * mu**2 + 0.01 * np.sin(40 * mu)
    assert pt.well_numbers(mu, noisy, np.full(mu.size, 0.02))[0] == 1
    assert pt.well_numbers(mu, noisy)[0] > 1
    # samples that do not reach mu = 0 give no depth
    right = mu > 1.0
    assert np.isnan(pt.well_numbers(mu[right], (mu[right] - 2) ** 2)[1])
