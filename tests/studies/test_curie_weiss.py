"""The curie-weiss study: exact potentials, forward histograms, exact-score cloning against the
exact phi(t), and the speciation time against N.

Oracles: the exact finite-N law of M (histograms within binomial errors), the exact Monte Carlo
phi(t) of the Curie-Weiss posterior (cloning within binomial + Monte Carlo errors plus the derived
time-discretisation bias of the chain), and the (1/2) log N law of t_S in the ordered phase.
"""

import math

import numpy as np
import pytest

from physdiff.reverse import cloning, eps_from_score
from physdiff.studies import curie_weiss as cws
from physdiff.theory import curie_weiss as cw
from physdiff.theory import gaussian

BETA = 1.5


@pytest.fixture(scope="module")
def tiny():
    p = cws.Params(**cws.TINY)
    return p, cws.run(p)


def test_datasets_describe_themselves(tiny):
    _, out = tiny
    assert set(out) == {"potential", "forward", "trajectories", "speciation", "speciation_vs_N"}
    for name, ds in out.items():
        for v in ds.data_vars:
            assert ds[v].attrs.get("units") and ds[v].attrs.get("long_name"), (name, v)
    assert "step" in out["speciation"].dims and "time" in out["speciation"].coords


def test_forward_histograms_follow_the_exact_density(tiny):
    p, out = tiny
    fwd = out["forward"]
    width = float(np.diff(fwd["bin_center"]).mean())
    for k in range(fwd.sizes["step"]):
        mu, P = fwd["mu"].values, fwd["P_exact"].values[k]
        P_bin = np.interp(fwd["bin_center"], mu, P)
        # binomial error of a bin's count (5 sigma), plus the midpoint-rule error of the bin
        # average, width^2 / 24 max |P''|
        se = np.sqrt(P_bin * width * (1 - P_bin * width) / p.n_forward) / width
        curv = np.max(np.abs(np.gradient(np.gradient(P, mu), mu)))
        assert np.all(np.abs(fwd["hist"].values[k] - P_bin) <= 5 * se + width**2 / 24 * curv + 1e-3), k


def test_theory_times_and_speciation_vs_N(tiny):
    p, out = tiny
    sp = out["speciation"]
    assert float(sp["speciation_time_covariance"]) == pytest.approx(0.5 * math.log(cw.top_eigenvalue(p.N, BETA)))
    # the theory curve's phi = 0.7752 crossing lies near (1/2) log Lambda (within 0.2 at N = 32)
    assert abs(float(sp["speciation_time_phi_theory"]) - float(sp["speciation_time_covariance"])) < 0.2
    g = out["speciation_vs_N"]["speciation_time_grid"].sel(kind="covariance")
    N = g["N_grid"].values
    ordered = g.sel(beta_grid=BETA).values - 0.5 * np.log(N)
    assert np.ptp(ordered[-3:]) < 0.01  # t_S = (1/2) log N + O(1) for beta > 1
    assert np.ptp(g.sel(beta_grid=0.5).values) < 0.01  # O(1) for beta < 1


def test_measured_crossing_is_bracketed_and_has_an_error(tiny):
    _, out = tiny
    sp = out["speciation"]
    t = sp["time"].values
    t_x, err = float(sp["speciation_time"]), float(sp["speciation_time_stderr"])
    assert t.min() <= t_x <= t.max() and 0 < err < 1
    # the same crossing read in step ratio k / k_S lies in the same bracket of branch steps
    r = sp["step_ratio"].values
    k_x = float(sp["speciation_step_ratio"])
    i = np.searchsorted(np.sort(t), t_x)
    assert np.sort(r)[i - 1] <= k_x <= np.sort(r)[i]
    assert np.all((sp["phi"] >= 0) & (sp["phi"] <= 1))


def test_plot_returns_figures(tiny):
    _, out = tiny
    figs = cws.plot(out)
    assert set(figs) == {"potential", "forward", "trajectories", "cloning", "speciation_vs_N"}
    assert all(hasattr(f, "savefig") for f in figs.values())


def test_params_are_validated():
    with pytest.raises(ValueError, match="N"):
        cws.Params(N=1)
    with pytest.raises(ValueError, match="n_pairs"):
        cws.Params(n_pairs=0)


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
    ``rho* = alpha_bar Lambda / v``. The bias is ``(arcsin rho - arcsin rho*) / pi``: first order
    in the step size. Checked against simulated Gaussian chains (400 000 pairs, T = 25: agreement
    to 0.001).
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
    """phi(t) of reverse.cloning driven by the exact Curie-Weiss score (N = 16, h = H/N, the
    study's schedule with T = 30) against the exact phi_curie_weiss_mc, at 6 branch times from
    t_S - 0.6 to t_S + 0.9.

    Tolerance per branch time: 4 standard deviations of (measured - theory), the binomial
    ``sqrt(phi (1 - phi) / n_pairs)`` and the theory's Monte Carlo error in quadrature, plus the
    derived discretisation bias (:func:`gaussian_chain_phi_bias`, at most 0.0065 here). The bias
    must stay well below the statistical error, and theory must vary by > 0.25 across the branch
    times (so a shift of the time axis by ~0.3 fails).
    """
    N, n_pairs, T = 16, 800, 30
    h = H / N
    sched = cws.study_schedule(T)
    lam = cw.top_eigenvalue(N, BETA, h)
    t_S = 0.5 * math.log(lam)
    branch = sorted({sched.step_at_time(t_S + d) for d in (-0.6, -0.3, 0.0, 0.3, 0.6, 0.9)}, reverse=True)
    eps = eps_from_score(lambda x, ab: cw.score(x, ab, BETA, h), sched)
    res = cloning(eps, sched, lambda x: (x.sum(axis=1) > 0).astype(np.int64), branch, n_pairs, N, seed=11)
    phi_th, se_th = gaussian.phi_curie_weiss_mc(res.physical_time, N, BETA, h, n_samples=20000, seed=5)
    sd = np.sqrt(phi_th * (1 - phi_th) / n_pairs + se_th**2)
    bias = np.array([gaussian_chain_phi_bias(sched, lam, int(t)) for t in res.branch_steps])
    assert np.all(np.abs(bias) < 0.5 * sd), bias / sd
    assert np.ptp(phi_th) > 0.25
    dev = res.phi - phi_th
    assert np.all(np.abs(dev) <= 4 * sd + np.abs(bias)), dev / sd


def test_cli_writes_the_datasets_and_figures(tmp_path):
    from physdiff.cli import main
    from physdiff.results import open_dataset

    out = tmp_path / "cw"
    assert main(["study", "curie-weiss", "--N", "32", "--T", "30", "--n-pairs", "60", "--n-forward", "500",
                 "--n-trajectories", "10", "--out", str(out), "--no-progress"]) == 0
    pot = open_dataset(out / "potential.nc")
    assert pot["V"].dims == ("time", "mu") and int(pot["N"]) == 32 and float(pot["beta"]) == BETA
    sp = open_dataset(out / "speciation.nc")
    assert sp["phi"].dims == ("step",) and float(sp["speciation_time"]) > 0
    for name in ("potential", "forward", "trajectories", "cloning", "speciation_vs_N"):
        assert (out / f"{name}.png").is_file()
