"""Tests of physdiff.theory.curie_weiss: exact statics, exact score, potentials, speciation.

Oracles: brute-force enumeration of all 2^N configurations (N <= 12), closed forms, large-N
limits, symmetries and reference values ([BM23]; docs/theory.md).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy.integrate import quad
from scipy.special import logsumexp

from physdiff.theory import curie_weiss as cw


# ------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------

def brute_force(x, alpha_bar, beta, h):
    """Posterior mean and log p_t(x) by enumerating all 2^N spin configurations."""
    x = np.atleast_2d(x)
    N = x.shape[1]
    a = np.array(list(itertools.product([-1.0, 1.0], repeat=N)))
    M = a.sum(axis=1)
    s, delta = math.sqrt(alpha_bar), 1.0 - alpha_bar
    logq = beta * M ** 2 / (2 * N) + h * M
    logq -= logsumexp(logq)
    loglik = (-((x[:, None, :] - s * a[None]) ** 2).sum(-1) / (2 * delta)
              - 0.5 * N * math.log(2 * math.pi * delta))
    L = logq[None] + loglik
    logp = logsumexp(L, axis=1)
    post = np.exp(L - logp[:, None])
    return post @ a, logp


def sample_data(n, N, beta, h, rng):
    """Exact Curie-Weiss samples: M from P(M), then a uniformly random set of (N+M)/2 up spins."""
    M, P = cw.magnetization_distribution(N, beta, h)
    Ms = rng.choice(M, size=n, p=P)
    order = np.argsort(rng.random((n, N)), axis=1)
    up = np.arange(N)[None, :] < ((N + Ms) // 2)[:, None]
    a = np.empty((n, N))
    np.put_along_axis(a, order, np.where(up, 1.0, -1.0), axis=1)
    return a


def diffuse(a, alpha_bar, rng):
    return math.sqrt(alpha_bar) * a + math.sqrt(1 - alpha_bar) * rng.standard_normal(a.shape)


# ------------------------------------------------------------------------------------------
# statics (docs/theory.md, "The Curie-Weiss model")
# ------------------------------------------------------------------------------------------

def test_magnetization_distribution_reference():
    M, P = cw.magnetization_distribution(4, 1.0)
    np.testing.assert_array_equal(M, [-4, -2, 0, 2, 4])
    np.testing.assert_allclose(P, [0.2175307, 0.1941506, 0.1766374, 0.1941506, 0.2175307], atol=5e-8)


def test_m_star_and_susceptibility_reference():
    assert cw.m_star(1.5) == pytest.approx(0.858560, abs=5e-7)
    assert cw.m_star(2.0) == pytest.approx(0.957504, abs=5e-7)
    assert cw.susceptibility(1.5) == pytest.approx(0.434012, abs=5e-7)
    assert cw.m_star(0.7) == 0.0 and cw.m_star(1.0) == 0.0
    assert cw.susceptibility(1.0) == math.inf
    assert cw.susceptibility(0.6) == pytest.approx(1 / 0.4, rel=1e-14)


@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0, 1.5, 3.0])
@pytest.mark.parametrize("h", [0.0, 0.2, -0.05, -0.5, 2.0])
def test_m_star_is_the_largest_root(beta, h):
    m = cw.m_star(beta, h)
    assert abs(math.tanh(beta * m + h) - m) < 1e-14
    # no root above it: tanh(beta u + h) - u < 0 on a fine grid above m
    u = np.linspace(m + 1e-6, 1.0, 20001)
    assert np.all(np.tanh(beta * u + h) - u < 0)


def test_top_eigenvalue_reference_and_limits():
    for N, ref in [(100, 72.45205), (1000, 735.96512), (10000, 7370.09504)]:
        assert cw.top_eigenvalue(N, 1.5) == pytest.approx(ref, abs=5e-5)
    # paramagnet: Lambda -> 1/(1 - beta) with O(1/N) corrections
    assert cw.top_eigenvalue(20000, 0.5) == pytest.approx(2.0, rel=2e-3)
    # critical point: Lambda ~ 1.17083 sqrt(N)
    assert cw.top_eigenvalue(100000, 1.0) / math.sqrt(100000) == pytest.approx(1.17083, rel=1e-2)
    # ferromagnet: Lambda ~ N m*^2 (+ O(1))
    assert cw.top_eigenvalue(100000, 1.5) / 100000 == pytest.approx(cw.m_star(1.5) ** 2, rel=1e-4)


def test_top_eigenvalue_is_the_covariance_eigenvalue_with_field():
    """Brute force: top eigenvalue of the exact (centred) covariance of a, N = 8, h != 0."""
    N, beta, h = 8, 1.3, 0.15
    a = np.array(list(itertools.product([-1.0, 1.0], repeat=N)))
    M = a.sum(1)
    w = np.exp(beta * M ** 2 / (2 * N) + h * M)
    w /= w.sum()
    mean = w @ a
    C = (a - mean).T @ ((a - mean) * w[:, None])
    assert cw.top_eigenvalue(N, beta, h) == pytest.approx(np.linalg.eigvalsh(C)[-1], rel=1e-12)


# ------------------------------------------------------------------------------------------
# exact posterior mean, score and log-density (docs/theory.md, "The Curie-Weiss model")
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("N", [1, 2, 5, 9, 12])
@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0, 1.5])
@pytest.mark.parametrize("h", [0.0, 0.3, -0.7])
def test_exact_against_brute_force(N, beta, h):
    rng = np.random.default_rng(1000 * N + int(10 * beta) + int(100 * h) % 97)
    for alpha_bar in (1e-3, 0.5, 0.99):
        a = sample_data(4, N, beta, h, rng)
        x = np.concatenate([diffuse(a, alpha_bar, rng), 1.5 * rng.standard_normal((2, N))])
        mean_bf, logp_bf = brute_force(x, alpha_bar, beta, h)
        delta, s = 1 - alpha_bar, math.sqrt(alpha_bar)
        np.testing.assert_allclose(cw.posterior_mean(x, alpha_bar, beta, h), mean_bf, rtol=0, atol=1e-10)
        np.testing.assert_allclose(cw.score(x, alpha_bar, beta, h), -(x - s * mean_bf) / delta,
                                   rtol=1e-10, atol=1e-10 / delta)
        np.testing.assert_allclose(cw.log_density(x, alpha_bar, beta, h), logp_bf, rtol=1e-12, atol=1e-10)


def test_posterior_mean_reference():
    x = np.array([1.0, -0.5, 0.2, 0.0])
    np.testing.assert_allclose(cw.posterior_mean(x, math.exp(-1), 1.0),
                               [0.6960189, -0.1321948, 0.3101497, 0.1889415], atol=5e-8)


def test_per_sample_alpha_bar_and_shapes():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 6))
    ab = np.array([0.1, 0.5, 0.9])
    sc = cw.score(x, ab, 1.2, 0.1)
    ld = cw.log_density(x, ab, 1.2, 0.1)
    assert sc.shape == (3, 6) and ld.shape == (3,)
    for i in range(3):
        np.testing.assert_allclose(sc[i], cw.score(x[i], ab[i], 1.2, 0.1), rtol=1e-13, atol=1e-13)
        assert np.ndim(cw.log_density(x[i], ab[i], 1.2, 0.1)) == 0
        assert cw.log_density(x[i], ab[i], 1.2, 0.1) == pytest.approx(ld[i], rel=1e-13)
    assert cw.posterior_mean(x[0].astype(np.float32), 0.5, 1.2).shape == (6,)


@pytest.mark.parametrize("N,beta,h,alpha_bar", [(6, 1.5, 0.0, 0.5), (6, 0.8, 0.4, 0.9),
                                                 (5000, 1.5, 0.0, 2e-4), (5000, 1.5, 0.001, 0.3)])
def test_score_is_gradient_of_log_density(N, beta, h, alpha_bar):
    rng = np.random.default_rng(N)
    x = diffuse(sample_data(1, N, beta, h, rng), alpha_bar, rng)[0]
    sc = cw.score(x, alpha_bar, beta, h)
    eps = 1e-4
    idx = rng.choice(N, size=min(N, 4), replace=False)
    E = np.zeros((2 * idx.size, N))
    E[np.arange(idx.size), idx] = eps
    E[idx.size + np.arange(idx.size), idx] = -eps
    lp = cw.log_density(x[None, :] + E, alpha_bar, beta, h)
    fd = (lp[:idx.size] - lp[idx.size:]) / (2 * eps)
    # truncation eps^2 |f'''|/6 ~ 1e-8 / Delta^2; roundoff ulp(log p)/eps
    tol = 1e-8 / (1 - alpha_bar) ** 2 + 1e-15 * abs(lp[0]) / eps * 10
    np.testing.assert_allclose(fd, sc[idx], rtol=0, atol=tol)


def test_log_density_is_normalised():
    for beta, h, ab in [(1.5, 0.0, 0.6), (0.7, -0.4, 0.95)]:
        total, err = quad(lambda u: math.exp(cw.log_density(np.array([u]), ab, beta, h)),
                          -12, 12, points=[-1, 1], limit=200)
        assert total == pytest.approx(1.0, abs=1e-9)
    # N = 2: trapezoid on a grid (spectrally accurate for this smooth, rapidly decaying density)
    ab, L = 0.8, 9.0
    g = np.linspace(-L, L, 241)
    X, Y = np.meshgrid(g, g, indexing="ij")
    p = np.exp(cw.log_density(np.stack([X.ravel(), Y.ravel()], 1), ab, 2.0, 0.3))
    assert p.sum() * (g[1] - g[0]) ** 2 == pytest.approx(1.0, abs=1e-9)


def test_adaptive_grid_equals_uniform_grid(monkeypatch):
    """Large N beta uses a saddle-adapted subset of the uniform lattice: same numbers."""
    rng = np.random.default_rng(7)
    N, beta = 6000, 1.5
    ab = np.array([1 / cw.top_eigenvalue(N, beta), 3e-3, 0.5, 0.999])  # incl. two-saddle time
    x = np.stack([diffuse(sample_data(1, N, beta, 0.0, rng), a, rng)[0] for a in ab])
    m_adapt, l_adapt = cw.posterior_mean(x, ab, beta), cw.log_density(x, ab, beta)
    monkeypatch.setattr(cw, "_HS_UNIFORM_MAX", 10 ** 9)
    np.testing.assert_allclose(m_adapt, cw.posterior_mean(x, ab, beta), rtol=0, atol=1e-11)
    np.testing.assert_allclose(l_adapt, cw.log_density(x, ab, beta), rtol=1e-13)


@pytest.mark.parametrize("N", [7, 3000])
@pytest.mark.parametrize("beta", [0.0, 1.5])
def test_spin_flip_symmetry(N, beta):
    rng = np.random.default_rng(N)
    x = diffuse(sample_data(3, N, beta, 0.0, rng), 0.3, rng)
    np.testing.assert_allclose(cw.score(-x, 0.3, beta), -cw.score(x, 0.3, beta), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(cw.log_density(-x, 0.3, beta), cw.log_density(x, 0.3, beta), rtol=1e-12)


def test_large_N_and_extreme_alpha_bar_is_stable():
    N, beta = 100_000, 1.5
    rng = np.random.default_rng(11)
    a = sample_data(2, N, beta, 0.0, rng)
    # late time (t = 6.9, tau = t - log(N)/2 = 1.15): matches the large-N form to O(1/sqrt(N))
    x = diffuse(a, 1e-6, rng)
    m = cw.posterior_mean(x, 1e-6, beta)
    assert np.all(np.isfinite(m)) and np.all(np.isfinite(cw.log_density(x, 1e-6, beta)))
    m_asym = (x + (1 - 1e-6) * cw.score_asymptotic(x, 1e-6, beta)) / 1e-3
    assert np.abs(m - m_asym).max() < 10 / math.sqrt(N)
    # early time (Delta = 1e-6, fields ~ 1e6): the posterior is the nearest corner a = sign(x),
    # so log p = log q(sign x) + sum_i log N(x_i; s sign(x_i), Delta) up to e^-O(1e5)
    ab = 1 - 1e-6
    x = diffuse(a, ab, rng)
    np.testing.assert_allclose(cw.posterior_mean(x, ab, beta), np.sign(x), rtol=0, atol=1e-12)
    sig = np.sign(x)
    Ms = sig.sum(1)
    M, P = cw.magnetization_distribution(N, beta)
    logq = np.log(P[((Ms + N) // 2).astype(int)]) - (
        np.array([math.lgamma(N + 1) - math.lgamma((N + k) / 2 + 1) - math.lgamma((N - k) / 2 + 1)
                  for k in Ms]))
    s, delta = math.sqrt(ab), 1e-6
    ref = logq + (-(x - s * sig) ** 2 / (2 * delta)).sum(1) - 0.5 * N * math.log(2 * math.pi * delta)
    ld = cw.log_density(x, ab, beta)
    np.testing.assert_allclose(ld, ref, rtol=1e-13)


def test_score_asymptotic_approaches_exact_score():
    """At fixed tau = t - (1/2) log N = 1 (beyond t_S) the error of <a> shrinks like 1/sqrt(N)."""
    rng = np.random.default_rng(5)
    errs = []
    for N in (100, 1000, 10000):
        ab = math.exp(-2 * (1.0 + 0.5 * math.log(N)))
        x = diffuse(sample_data(8, N, 1.5, 0.0, rng), ab, rng)
        exact, asym = cw.score(x, ab, 1.5), cw.score_asymptotic(x, ab, 1.5)
        errs.append(np.abs(exact - asym).max() * (1 - ab) / math.sqrt(ab))  # error on <a_i>
    assert errs[0] > 2 * errs[1] > 4 * errs[2]
    assert errs[2] < 0.01


# ------------------------------------------------------------------------------------------
# potentials (docs/theory.md, "The Curie-Weiss model")
# ------------------------------------------------------------------------------------------

def test_potential_reference_values():
    N, beta = 1000, 1.5
    ab = math.exp(-2 * cw.speciation_time(N, beta))
    V = cw.potential(np.array([0.0, 0.5, 1.0, 2.0]), ab, N, beta)
    np.testing.assert_allclose(V[1:] - V[0], [0.0048734, 0.0662463, 0.6756261], atol=5e-7)


def test_potential_normalised_shapes_and_drift_relation():
    N, beta, h = 60, 1.5, 0.02
    total, _ = quad(lambda u: math.exp(-cw.potential(u, 0.3, N, beta, h)), -30, 30, limit=200)
    assert total == pytest.approx(1.0, abs=1e-10)
    mu = np.linspace(-3, 3, 12).reshape(3, 4)
    ab = np.array([0.01, 0.2, 0.7])
    V = cw.potential(mu, ab, N, beta, h)
    U = cw.potential(mu, ab, N, beta, h, kind="drift")
    assert V.shape == (3, 3, 4) and cw.potential(mu, 0.2, N, beta).shape == (3, 4)
    np.testing.assert_allclose(U, -0.5 * mu ** 2 + 2 * V, rtol=1e-13)
    np.testing.assert_allclose(V[1], cw.potential(mu, 0.2, N, beta, h), rtol=1e-14)


def _curvature0(V_fn, mu_step=1e-3):
    v = V_fn(np.array([-mu_step, 0.0, mu_step]))
    return (v[0] - 2 * v[1] + v[2]) / mu_step ** 2


def test_potential_regimes_ferromagnet():
    N, beta = 2000, 1.5
    tS = cw.speciation_time(N, beta)
    m = cw.m_star(beta)
    # late: one harmonic well
    ab = math.exp(-2 * (tS + 2))
    assert _curvature0(lambda u: cw.potential(u, ab, N, beta)) > 0
    assert _curvature0(lambda u: cw.potential(u, ab, N, beta, kind="drift")) > 0
    # early: double well, minima near +-s m* sqrt(N)
    for dt in (1.5, 3.0):
        ab = math.exp(-2 * (tS - dt))
        assert _curvature0(lambda u: cw.potential(u, ab, N, beta)) < 0
        c = math.sqrt(ab * N) * m
        mu = np.linspace(0, 2 * c, 4001)
        mu_min = mu[np.argmin(cw.potential(mu, ab, N, beta))]
        # the well of N(mu; s M/sqrt(N), Delta) mixtures sits at s E[M | M > 0]/sqrt(N) ~ c (1 + O(1/N))
        assert mu_min == pytest.approx(c, rel=0.02)
        assert cw.potential(-mu_min, ab, N, beta) == pytest.approx(cw.potential(mu_min, ab, N, beta))


def test_potential_single_well_paramagnet():
    N, beta = 1000, 0.6
    mu = np.linspace(-4, 4, 801)
    for t in (0.05, 0.3, 1.0, 3.0):
        V = cw.potential(mu, math.exp(-2 * t), N, beta)
        assert np.argmin(V) == 400  # minimum at mu = 0
        assert np.all(np.diff(V, 2) > 0)  # convex: single well


def test_potential_asymptotic_limit():
    """At fixed tau the exact potentials converge to [Thesis eq. 28] with an O(1/sqrt(N)) error."""
    mu = np.linspace(-3, 3, 13)
    for kind in ("density", "drift"):
        errs = []
        for N in (100, 10_000, 1_000_000):
            ab = math.exp(-2 * (0.2 + 0.5 * math.log(N)))
            errs.append(np.abs(cw.potential(mu, ab, N, 1.5, kind=kind)
                               - cw.potential_asymptotic(mu, ab, N, 1.5, kind=kind)).max())
        assert errs[0] > 50 * errs[1] > 2500 * errs[2] and errs[2] < 1e-4
    # its curvature at 0 vanishes at a^2 = m*^2 N alpha_bar = 1 (density) and 1/2 (drift)
    N, m = 10 ** 6, cw.m_star(1.5)
    ab = 1 / (N * m * m)
    assert abs(_curvature0(lambda u: cw.potential_asymptotic(u, ab, N, 1.5, kind="density"))) < 1e-5
    assert abs(_curvature0(lambda u: cw.potential_asymptotic(u, ab / 2, N, 1.5, kind="drift"))) < 1e-5


# ------------------------------------------------------------------------------------------
# speciation (secs. 4-5)
# ------------------------------------------------------------------------------------------

def test_speciation_time_reference():
    for N, ref in [(100, 2.14146), (1000, 3.30059), (10000, 4.45259)]:
        assert cw.speciation_time(N, 1.5) == pytest.approx(ref, abs=5e-6)


def test_speciation_scales_as_half_log_N():
    Ns = (100, 1000, 10000)
    for kind in ("covariance", "density", "drift"):
        t = [cw.speciation_time(N, 1.5, kind=kind) for N in Ns]
        np.testing.assert_allclose(np.diff(t), 0.5 * math.log(10), atol=0.02)
    dens = [cw.speciation_time(N, 1.5, kind="density") for N in Ns]
    drift = [cw.speciation_time(N, 1.5, kind="drift") for N in Ns]
    gap = np.subtract(drift, dens)
    # drift - density instability -> (1/2) log 2, approached from below with O(1/N) corrections
    assert abs(gap[2] - 0.5 * math.log(2)) < 1e-4
    assert np.all(np.diff(np.abs(gap - 0.5 * math.log(2))) < 0)
    # density instability ~ covariance t_S at large N
    assert dens[2] == pytest.approx(cw.speciation_time(10000, 1.5), abs=1e-4)


def test_speciation_time_is_where_curvature_vanishes():
    N, beta = 500, 1.4
    for kind in ("density", "drift"):
        t = cw.speciation_time(N, beta, kind=kind)
        for dt, sign in ((0.02, 1), (-0.02, -1)):
            ab = math.exp(-2 * (t + dt))
            assert sign * _curvature0(lambda u: cw.potential(u, ab, N, beta, kind=kind)) > 0


def test_speciation_paramagnet():
    # covariance: O(1), -> (1/2) log(1/(1 - beta))
    assert cw.speciation_time(5000, 0.5) == pytest.approx(0.5 * math.log(2), abs=1e-3)
    # density: no double well at mu = 0 for beta < 1 (even N) -> nan
    assert math.isnan(cw.speciation_time(1000, 0.5, kind="density"))
    # drift, 1/2 < beta < 1: U''(0) < 0 once Var(mu) > 2, at ~ (1/2) log(Lambda - 1) = O(1)
    t = cw.speciation_time(1000, 0.9, kind="drift")
    assert t == pytest.approx(0.5 * math.log(cw.top_eigenvalue(1000, 0.9) - 1), abs=0.03)


def test_speciation_with_field_matches_covariance():
    """h = H/N: the curvature at mu = 0 breaks where s^2 Lambda = 1 (centred Lambda), to O(1/N)."""
    N = 10000
    t_cov = cw.speciation_time(N, 1.5, h=1.0 / N)
    assert cw.speciation_time(N, 1.5, h=1.0 / N, kind="density") == pytest.approx(t_cov, abs=1e-3)
    assert t_cov < cw.speciation_time(N, 1.5)  # the minority state weighs less: later speciation


# ------------------------------------------------------------------------------------------
# input validation
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fn", [cw.posterior_mean, cw.score, cw.log_density, cw.score_asymptotic])
def test_bad_input_raises(fn):
    x = np.zeros((2, 3))
    with pytest.raises(ValueError, match="alpha_bar must be < 1"):
        fn(x, 1.0, 1.0)
    for ab in (0.0, -0.1, 1.5, np.nan, [0.5, 0.5, 0.5], np.ones((2, 1)) * 0.5):
        with pytest.raises(ValueError):
            fn(x, ab, 1.0)
    with pytest.raises(ValueError, match="NaN"):
        fn(np.array([[0.0, np.nan, 1.0]]), 0.5, 1.0)
    with pytest.raises(ValueError):
        fn(np.zeros((2, 3, 4)), 0.5, 1.0)
    with pytest.raises(ValueError):
        fn(np.zeros((2, 0)), 0.5, 1.0)
    with pytest.raises(ValueError, match="beta"):
        fn(x, 0.5, -1.0)
    with pytest.raises(ValueError):
        fn(x, 0.5, 1.0, np.inf)


def test_bad_model_parameters_raise():
    for call in (lambda: cw.top_eigenvalue(0, 1.0), lambda: cw.top_eigenvalue(2.5, 1.0),
                 lambda: cw.m_star(-0.1), lambda: cw.speciation_time(10, 1.0, kind="foo"),
                 lambda: cw.speciation_time(0, 1.5),
                 lambda: cw.potential(0.0, 0.5, 10, 1.0, kind="foo"),
                 lambda: cw.potential(0.0, 1.0, 10, 1.0),
                 lambda: cw.potential(np.nan, 0.5, 10, 1.0),
                 lambda: cw.potential(0.0, np.full((2, 2), 0.5), 10, 1.0),
                 lambda: cw.potential_asymptotic(0.0, 0.0, 10, 1.5),
                 lambda: cw.magnetization_distribution(5, -1.0)):
        with pytest.raises(ValueError):
            call()


# ------------------------------------------------------------------------------------------
# fast large-N path (Taylor expansion around the saddles) against the lattice quadrature
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("N", [256, 1000, 10000])
@pytest.mark.parametrize("beta", [0.5, 1.0, 1.5, 2.0])
@pytest.mark.parametrize("h", [0.0, 0.01])
def test_taylor_path_equals_quadrature(N, beta, h, monkeypatch):
    from physdiff.spins import sample_curie_weiss
    rng = np.random.default_rng(N + int(100 * beta) + int(1000 * h))
    lam = cw.top_eigenvalue(N, beta, h)
    abs_ = [a for a in (1e-4, 1 / lam, 0.01, 0.3, 0.9, 0.999) if a < 1]
    n = 2 if N == 10000 else 3
    xs, ab = [], []
    for a in abs_:
        data = sample_curie_weiss(N, beta, h, n, seed=rng).astype(np.float64)
        xs += [diffuse(data, a, rng), rng.standard_normal((1, N))]
        ab += [a] * (n + 1)
    x, ab = np.concatenate(xs), np.array(ab)
    monkeypatch.setattr(cw, "_METHOD", "quadrature")
    sq, lq = cw.score(x, ab, beta, h), cw.log_density(x, ab, beta, h)
    monkeypatch.setattr(cw, "_METHOD", "taylor")
    st, lt = cw.score(x, ab, beta, h), cw.log_density(x, ab, beta, h)
    # relative 1e-9 in the score; absolute floor 1e-9 / sqrt(Delta), the score's natural scale
    err = np.abs(st - sq)
    assert np.all(err <= 1e-9 * np.abs(sq) + 1e-9 / np.sqrt(1 - ab)[:, None]), err.max()
    np.testing.assert_allclose(lt, lq, rtol=1e-12, atol=1e-9)


def test_taylor_path_is_used_at_large_N():
    """The certified expansion covers most samples at N = 1000, beta = 1.5 (else no speed-up)."""
    rng = np.random.default_rng(3)
    N, beta = 1000, 1.5
    for a in (1 / cw.top_eigenvalue(N, beta), 0.01, 0.9):
        x = diffuse(sample_data(40, N, beta, 0.0, rng), a, rng)
        _, _, _, Hc = cw._hs_geometry(N, beta)
        H = np.clip(math.sqrt(a) * x / (1 - a), -Hc, Hc)
        lI, mean, ok = cw._taylor_integrals(H, beta, True)
        assert ok.mean() >= 0.9
        _, mq = cw._hs_quadrature(H[ok], beta, True)
        np.testing.assert_allclose(mean[ok], mq, rtol=0, atol=1e-11)


def test_derivative_polynomials_are_tanh_derivatives():
    C, B = cw._dpoly(6)
    u = np.linspace(-3, 3, 61)
    tau = np.tanh(u)
    sech2 = 1 - tau ** 2
    exact = [tau, sech2, -2 * tau * sech2, sech2 * (6 * tau ** 2 - 2)]
    for k, e in enumerate(exact):
        np.testing.assert_allclose(np.polynomial.polynomial.polyval(tau, C[k]), e, atol=1e-14)
    assert B[1] == pytest.approx(1.01, rel=1e-6) and B[0] == pytest.approx(1.01, rel=1e-6)


def _diffused_batch(N, beta, h, n, rng):
    """Exact samples at alpha_bar across (0, 1): deep noise, 1/Lambda (both saddles), late times."""
    lam = cw.top_eigenvalue(N, beta, h)
    abs_ = sorted({1e-4, min(1 / lam, 0.9), 0.05, 0.5, 0.97})
    xs = [diffuse(sample_data(n, N, beta, h, rng), a, rng) for a in abs_]
    return np.concatenate(xs), np.repeat(abs_, n)


@pytest.mark.parametrize("N,beta,h", [(200, 3.0, 0.02), (1000, 0.8, -0.01), (1000, 3.0, 0.0),
                                      (10_000, 1.5, 0.003), (10_000, 3.0, -0.002), (100_000, 1.2, 0.0)])
def test_saddle_path_agrees_with_quadrature_to_1e10(N, beta, h, monkeypatch):
    rng = np.random.default_rng(N + int(10 * beta))
    x, ab = _diffused_batch(N, beta, h, 1 if N == 100_000 else 2, rng)
    monkeypatch.setattr(cw, "_METHOD", "taylor")
    st, lt = cw.score(x, ab, beta, h), cw.log_density(x, ab, beta, h)
    monkeypatch.setattr(cw, "_METHOD", "quadrature")
    sq, lq = cw.score(x, ab, beta, h), cw.log_density(x, ab, beta, h)
    # 1e-10 relative to the score's scale |score| + 1/sqrt(Delta) (the score of a unit-size error)
    scale = np.abs(sq) + 1 / np.sqrt(1 - ab)[:, None]
    assert np.max(np.abs(st - sq) / scale) <= 1e-10
    np.testing.assert_allclose(lt, lq, rtol=1e-12, atol=1e-8)


@pytest.mark.parametrize("K", [6, 9, 16])
def test_certified_bound_bounds_the_error(K):
    """Samples the expansion certifies (bound <= _TAYLOR_TOL) are within that bound of the
    quadrature, for expansions short enough that some samples are refused."""
    rng = np.random.default_rng(K)
    refused = 0
    for N, beta, h in ((300, 2.0, 0.01), (3000, 1.5, 0.0)):
        x, ab = _diffused_batch(N, beta, h, 4, rng)
        _, _, _, Hc = cw._hs_geometry(N, beta)
        H = np.clip(h + np.sqrt(ab)[:, None] * x / (1 - ab)[:, None], -Hc, Hc)
        lI, mean, ok = cw._taylor_integrals(H, beta, True, K=K)
        lq, mq = cw._hs_quadrature(H, beta, True)
        refused += int((~ok).sum())
        # relative error of the integral <= tol (+ rounding of sums of N terms ~ 1e3 each)
        assert np.all(np.abs(lI[ok] - lq[ok]) <= cw._TAYLOR_TOL + 1e-15 * N * 10)
        assert np.all(np.abs(mean[ok] - mq[ok]) <= cw._TAYLOR_TOL + 1e-13)
    if K == 6:
        assert refused > 0  # the bound is not vacuous: short expansions are refused somewhere


@pytest.mark.parametrize("N", [1, 511, 1300])
def test_taylor_centre_kernel_matches_direct_sums(N):
    """The fused numba pass (power sums of tanh, sum log 2cosh - |H| through log(1 + |tanh|)) equals
    the direct numpy sums, also for fields near the clipping bound and blocks of any length."""
    rng = np.random.default_rng(N)
    beta, K = 1.7, 10
    _, _, _, Hc = cw._hs_geometry(max(N, 200), beta)
    H = np.concatenate([rng.standard_normal((3, N)) * 3.0, rng.uniform(-Hc, Hc, (2, N))])
    c = np.array([0.9, -0.4, 0.0, 0.7, -1.1])
    A, T = cw._taylor_centre(H, c, beta, K, True)
    U = beta * c[:, None] + H
    np.testing.assert_array_equal(T, np.tanh(U))
    p = np.stack([(T ** j).sum(axis=1) for j in range(K + 2)], axis=1)
    C, _ = cw._dpoly(K)
    k = np.arange(1, K + 2)
    coef = (p @ C[:K + 1, :K + 2].T) * beta ** k / np.array([math.factorial(j) for j in k])
    coef[:, 0] -= N * beta * c
    coef[:, 1] -= 0.5 * N * beta
    np.testing.assert_allclose(A[:, 1:], coef, rtol=1e-12, atol=1e-12 * N)
    L0 = (cw._log2cosh(U) - np.abs(H)).sum(axis=1) - 0.5 * N * beta * c ** 2
    np.testing.assert_allclose(A[:, 0], L0, rtol=1e-13, atol=1e-13 * N)


def test_mean_kernel_is_the_clipped_polynomial():
    rng = np.random.default_rng(5)
    n, N, deg = 4, 700, 7
    Tp, Tm = np.tanh(rng.standard_normal((n, N))), np.tanh(rng.standard_normal((2, N)))
    Qp, Qm = rng.standard_normal((n, deg + 1)) * 0.3, rng.standard_normal((2, deg + 1)) * 0.3
    idx = np.array([-1, 1, -1, 0])
    out = np.empty((n, N))
    cw._mean_kernel(Qp, Tp, idx, Qm, Tm, out)
    pv = np.polynomial.polynomial.polyval
    for r in range(n):
        e = pv(Tp[r], Qp[r]) + (pv(Tm[idx[r]], Qm[idx[r]]) if idx[r] >= 0 else 0.0)
        np.testing.assert_allclose(out[r], np.clip(e, -1.0, 1.0), rtol=0, atol=1e-14)
