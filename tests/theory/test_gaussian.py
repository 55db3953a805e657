"""Gaussian and two-Gaussian scores; the cloning probability phi(t) and the collapse
(excess entropy) of [BBBM24].

Oracles: scipy.stats densities, finite differences, Gaussian conditioning (Tweedie), brute-force
quadrature of the defining integrals and enumeration of all 2^N spin configurations.
"""

import itertools

import numpy as np
import pytest
from scipy import integrate, stats
from scipy.special import logsumexp

from physdiff.theory.curie_weiss import magnetization_distribution
from physdiff.theory.gaussian import (
    PHI_SPECIATION,
    _class_weights,
    collapse_time,
    excess_entropy,
    excess_entropy_empirical,
    _posterior_plus_curie_weiss,
    log_density_gaussian,
    log_density_two_gaussians,
    phi_curie_weiss,
    phi_curie_weiss_mc,
    phi_gaussian,
    phi_two_clusters,
    posterior_mean_gaussian,
    posterior_mean_two_gaussians,
    score_gaussian,
    score_two_gaussians,
    speciation_time_gaussian,
)

RNG = np.random.default_rng(20240218)
D = 3
MEAN = np.array([0.5, -1.0, 2.0])
A = RNG.normal(size=(D, D))
COV_FULL = A @ A.T / D + 0.1 * np.eye(D)
COVS = {"scalar": 0.7, "diag": np.array([0.3, 1.5, 0.05]), "full": COV_FULL}


def _dense(cov):
    c = np.asarray(cov, dtype=float)
    return c * np.eye(D) if c.ndim == 0 else (np.diag(c) if c.ndim == 1 else c)


def _fd_grad(f, x, h=1e-5):
    """Central finite-difference gradient of a (n,)-valued function of (n, d) points."""
    g = np.empty_like(x)
    for j in range(x.shape[1]):
        e = np.zeros(x.shape[1])
        e[j] = h
        g[:, j] = (f(x + e) - f(x - e)) / (2 * h)
    return g


# ------------------------------------------------------------------------------------------------
# Gaussian data
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", sorted(COVS))
def test_gaussian_log_density_matches_scipy(kind):
    cov = COVS[kind]
    x = RNG.normal(size=(6, D)) * 2
    for ab in (1.0, 0.6, 1e-3):
        s = np.sqrt(ab)
        ref = stats.multivariate_normal(s * MEAN, ab * _dense(cov) + (1 - ab) * np.eye(D)).logpdf(x)
        np.testing.assert_allclose(log_density_gaussian(x, ab, MEAN, cov), ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", sorted(COVS))
def test_gaussian_score_is_gradient_of_log_density(kind):
    cov = COVS[kind]
    x = RNG.normal(size=(5, D))
    ab = np.array([0.9, 0.5, 0.2, 0.05, 0.999])  # one alpha_bar per sample
    num = _fd_grad(lambda y: log_density_gaussian(y, ab, MEAN, cov), x)
    np.testing.assert_allclose(score_gaussian(x, ab, MEAN, cov), num, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("kind", sorted(COVS))
def test_gaussian_tweedie(kind):
    # E[x0 | x_t] from the joint Gaussian law of (x0, x_t), by a linear solve; Tweedie:
    # score = -(x - s E[x0|x]) / Delta.
    cov = _dense(COVS[kind])
    x = RNG.normal(size=(4, D))
    for ab in (0.8, 0.3):
        s, delta = np.sqrt(ab), 1 - ab
        post = MEAN + (s * cov @ np.linalg.solve(ab * cov + delta * np.eye(D), (x - s * MEAN).T)).T
        np.testing.assert_allclose(posterior_mean_gaussian(x, ab, MEAN, COVS[kind]), post, rtol=1e-11, atol=1e-12)
        np.testing.assert_allclose(score_gaussian(x, ab, MEAN, COVS[kind]), -(x - s * post) / delta,
                                   rtol=1e-9, atol=1e-10)


def test_gaussian_shapes_and_singular_cov():
    x = RNG.normal(size=(7, D))
    assert score_gaussian(x[0], 0.5, MEAN, 1.0).shape == (D,)
    assert log_density_gaussian(x, 0.5, MEAN, 1.0).shape == (7,)
    assert score_gaussian(x[0], np.array([0.2, 0.5]), MEAN, 1.0).shape == (2, D)
    # a singular covariance is fine while alpha_bar < 1 (data on a line): score along its kernel
    cov = np.diag([1.0, 0.0, 2.0])
    sc = score_gaussian(x, 0.5, MEAN, cov)
    np.testing.assert_allclose(sc[:, 1], -(x[:, 1] - np.sqrt(0.5) * MEAN[1]) / 0.5)
    with pytest.raises(ValueError, match="singular"):
        score_gaussian(x, 1.0, MEAN, cov)


@pytest.mark.parametrize("kwargs, match", [
    (dict(alpha_bar=0.0), "alpha_bar"),
    (dict(alpha_bar=1.5), "alpha_bar"),
    (dict(alpha_bar=np.ones(3) * 0.5), "broadcast"),
    (dict(mean=np.zeros(2)), "mean"),
    (dict(cov=np.ones((2, 2))), "cov"),
    (dict(cov=np.array([[1.0, 0.5, 0], [0, 1, 0], [0, 0, 1]])), "symmetric"),
    (dict(cov=-np.eye(D)), "semi-definite"),
])
def test_gaussian_validation(kwargs, match):
    args = dict(x_t=np.zeros((5, D)), alpha_bar=0.5, mean=MEAN, cov=1.0) | kwargs
    with pytest.raises(ValueError, match=match):
        score_gaussian(**args)


# ------------------------------------------------------------------------------------------------
# two-Gaussian mixture
# ------------------------------------------------------------------------------------------------

M2 = np.array([1.2, -0.4, 0.7])


@pytest.mark.parametrize("w", [0.5, 0.8])
@pytest.mark.parametrize("sigma", [0.0, 0.4])
def test_two_gaussians_log_density_matches_scipy_mixture(w, sigma):
    x = RNG.normal(size=(6, D)) * 2
    for ab in (0.9, 0.3, 1e-3):
        s, v = np.sqrt(ab), ab * sigma**2 + 1 - ab
        lp = stats.multivariate_normal(s * M2, v * np.eye(D)).logpdf(x)
        lm = stats.multivariate_normal(-s * M2, v * np.eye(D)).logpdf(x)
        ref = np.logaddexp(np.log(w) + lp, np.log(1 - w) + lm)
        np.testing.assert_allclose(log_density_two_gaussians(x, ab, M2, sigma, w), ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("w", [0.5, 0.3])
def test_two_gaussians_score_gradient_and_tweedie(w):
    x = RNG.normal(size=(5, D))
    ab = np.array([0.95, 0.6, 0.3, 0.1, 0.01])
    sc = score_two_gaussians(x, ab, M2, 0.5, w)
    num = _fd_grad(lambda y: log_density_two_gaussians(y, ab, M2, 0.5, w), x)
    np.testing.assert_allclose(sc, num, rtol=1e-6, atol=1e-6)
    s, delta = np.sqrt(ab)[:, None], (1 - ab)[:, None]
    post = posterior_mean_two_gaussians(x, ab, M2, 0.5, w)
    np.testing.assert_allclose(sc, -(x - s * post) / delta, rtol=1e-10, atol=1e-10)


def test_two_gaussians_posterior_mean_by_quadrature():
    # d = 1: E[x0 | x_t] = ∫ x0 p0(x0) N(x_t; s x0, Delta) dx0 / p_t(x_t), by scipy quad.
    m, sigma, w, ab = 1.3, 0.6, 0.7, 0.4
    s, delta = np.sqrt(ab), 1 - ab

    def p0(x0):
        return w * stats.norm.pdf(x0, m, sigma) + (1 - w) * stats.norm.pdf(x0, -m, sigma)

    for xt in (-1.5, 0.2, 2.0):
        lik = lambda x0: p0(x0) * stats.norm.pdf(xt, s * x0, np.sqrt(delta))  # noqa: E731
        num = integrate.quad(lambda x0: x0 * lik(x0), -20, 20, epsabs=1e-13)[0]
        den = integrate.quad(lik, -20, 20, epsabs=1e-13)[0]
        got = posterior_mean_two_gaussians(np.array([[xt]]), ab, m, sigma, w)[0, 0]
        assert got == pytest.approx(num / den, rel=1e-9)


def test_two_gaussians_symmetry_and_stability():
    x = RNG.normal(size=(8, D)) * 3
    ab = 0.4
    # equal weights: the density is even, the score odd
    np.testing.assert_allclose(score_two_gaussians(-x, ab, M2, 0.3), -score_two_gaussians(x, ab, M2, 0.3),
                               rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(log_density_two_gaussians(-x, ab, M2, 0.3), log_density_two_gaussians(x, ab, M2, 0.3),
                               rtol=1e-13)
    # swapping the clusters: (m, w) -> (-m, 1 - w) is the same data
    np.testing.assert_allclose(score_two_gaussians(x, ab, -M2, 0.3, 0.2), score_two_gaussians(x, ab, M2, 0.3, 0.8),
                               rtol=1e-12, atol=1e-14)
    # far away (log-odds ~ 1e5): finite, and the score of the nearest cluster
    far = np.tile(1e4 * M2, (2, 1)) * np.array([[1.0], [-1.0]])
    v, s = ab * 0.09 + 1 - ab, np.sqrt(ab)
    sc = score_two_gaussians(far, ab, M2, 0.3)
    np.testing.assert_allclose(sc, -(far - s * np.sign(far @ M2)[:, None] * M2) / v, rtol=1e-12)
    assert np.all(np.isfinite(log_density_two_gaussians(far, ab, M2, 0.3)))
    # scalar m broadcasts; sigma = 0 needs alpha_bar < 1
    np.testing.assert_allclose(score_two_gaussians(x, ab, 0.5, 0.3), score_two_gaussians(x, ab, np.full(D, 0.5), 0.3))
    with pytest.raises(ValueError, match="point masses"):
        score_two_gaussians(x, 1.0, M2, 0.0)
    for bad in (0.0, 1.0, 1.2):
        with pytest.raises(ValueError, match="weight_plus"):
            score_two_gaussians(x, ab, M2, 0.3, bad)
    with pytest.raises(ValueError, match="sigma"):
        score_two_gaussians(x, ab, M2, -0.1)


# ------------------------------------------------------------------------------------------------
# phi(t): two clusters
# ------------------------------------------------------------------------------------------------

def _phi_brute(t, m_norm, gamma, w=0.5, n=400_001):
    """The defining integral sum_c ∫ w_c^2 G_c^2 / (w+ G+ + w- G-) dq on a fine trapezoid grid."""
    s = np.exp(-t)
    a, G = m_norm * s, gamma * s * s + 1 - s * s
    q = np.linspace(-a - 16 * np.sqrt(G), a + 16 * np.sqrt(G), n)
    gp, gm = w * stats.norm.pdf(q, a, np.sqrt(G)), (1 - w) * stats.norm.pdf(q, -a, np.sqrt(G))
    return np.trapezoid((gp**2 + gm**2) / np.maximum(gp + gm, 1e-300), q)


def test_phi_universal_value():
    # [BBBM24]: phi(t_S) = 0.775200 where m_norm e^{-t} = 1 and Gamma = 1
    assert PHI_SPECIATION == pytest.approx(0.775200, abs=5e-7)
    for m_norm in (10.0, 1e3):
        assert phi_two_clusters(np.log(m_norm), m_norm, 1.0) == pytest.approx(PHI_SPECIATION, abs=1e-12)
    assert phi_two_clusters(np.log(1e4), 1e4, 0.43) == pytest.approx(PHI_SPECIATION, abs=1e-8)
    assert _phi_brute(np.log(5.0), 5.0, 1.0) == pytest.approx(PHI_SPECIATION, abs=1e-9)


@pytest.mark.parametrize("t, m_norm, gamma, w", [
    (0.3, 3.0, 0.5, 0.5), (1.2, 3.0, 0.1, 0.5), (2.0, 5.0, 2.0, 0.5), (0.05, 1.0, 0.2, 0.5),
    (0.7, 2.0, 0.3, 0.8), (1.5, 4.0, 1.0, 0.35),
])
def test_phi_two_clusters_matches_defining_integral(t, m_norm, gamma, w):
    assert phi_two_clusters(t, m_norm, gamma, w) == pytest.approx(_phi_brute(t, m_norm, gamma, w), abs=1e-10)


def test_phi_two_clusters_limits_and_monotonicity():
    t = np.linspace(0.0, 12.0, 241)
    phi = phi_two_clusters(t, 20.0, 0.3)
    assert phi.shape == t.shape
    assert phi[0] == 1.0 and phi[-1] == pytest.approx(0.5, abs=1e-6)
    assert np.all(np.diff(phi) <= 1e-13)
    w = 0.8
    assert phi_two_clusters(40.0, 20.0, 0.3, w) == pytest.approx(w**2 + (1 - w) ** 2, abs=1e-12)
    assert phi_two_clusters(0.0, 1e-3, 0.0) == 1.0  # separated point masses at t = 0
    np.testing.assert_allclose(phi_two_clusters(1.0, np.array([1.0, 2.0]), 0.5),
                               [phi_two_clusters(1.0, 1.0, 0.5), phi_two_clusters(1.0, 2.0, 0.5)])
    for bad in (dict(t=-0.1), dict(m_norm=np.nan), dict(gamma=-1.0)):
        with pytest.raises(ValueError):
            phi_two_clusters(**(dict(t=1.0, m_norm=2.0, gamma=0.5) | bad))


# ------------------------------------------------------------------------------------------------
# phi(t): Curie-Weiss
# ------------------------------------------------------------------------------------------------

def _configs(N):
    a = np.array(list(itertools.product([-1.0, 1.0], repeat=N)))
    return a, a.sum(axis=1)


def _phi_mu_brute(t, N, beta, h):
    """phi along mu from all 2^N configurations and scipy quad over mu."""
    a, Mc = _configs(N)
    logq = beta * Mc**2 / (2 * N) + h * Mc
    q = np.exp(logq - logsumexp(logq))
    wp = np.where(Mc > 0, 1.0, np.where(Mc == 0, 0.5, 0.0))
    s, delta = np.exp(-t), 1 - np.exp(-2 * t)

    def overlap(mu):
        g = q * stats.norm.pdf(mu, s * Mc / np.sqrt(N), np.sqrt(delta))
        pp, pm = np.sum(g * wp), np.sum(g * (1 - wp))
        return pp * pm / (pp + pm) if pp + pm > 0 else 0.0

    L = 12 * np.sqrt(delta)
    return 1 - 2 * integrate.quad(overlap, -L, L, points=[0.0], epsabs=1e-13, limit=400)[0]


@pytest.mark.parametrize("N, beta, h", [(4, 1.0, 0.0), (5, 1.5, 0.0), (6, 0.5, 0.1), (8, 1.5, -0.05)])
def test_phi_curie_weiss_against_enumeration(N, beta, h):
    t = np.array([0.05, 0.3, 0.7, 1.5])
    ref = [_phi_mu_brute(ti, N, beta, h) for ti in t]
    np.testing.assert_allclose(phi_curie_weiss(t, N, beta, h), ref, rtol=0, atol=1e-9)


def test_phi_curie_weiss_limits():
    for N in (4, 7):
        M, P = magnetization_distribution(N, 1.2, 0.1)
        p0 = P[M == 0].sum()
        assert phi_curie_weiss(0.0, N, 1.2, 0.1) == pytest.approx(1 - p0 / 2, abs=1e-15)
        assert phi_curie_weiss(1e-6, N, 1.2, 0.1) == pytest.approx(1 - p0 / 2, abs=1e-9)
        pp = P[M > 0].sum() + p0 / 2
        assert phi_curie_weiss(20.0, N, 1.2, 0.1) == pytest.approx(pp**2 + (1 - pp) ** 2, abs=1e-12)
    assert phi_curie_weiss(np.zeros((2, 3)), 5, 1.0).shape == (2, 3)


def test_phi_curie_weiss_tends_to_two_clusters():
    # P(M) -> two Gaussians of centre E|M| and variance Var|M|: the two-cluster formula with those
    # moments holds to O(1/N^2); with the thermodynamic m*, chi to O(1/N) (measured: 0.34/N).
    beta = 1.5
    m_star = 0.858560  # root of m = tanh(1.5 m)
    chi = 0.434012
    for N, tol_moments, tol_thermo in ((100, 1e-3, 1e-2), (1000, 1e-5, 1e-3)):
        M, P = magnetization_distribution(N, beta)
        lam = np.sum(P * M**2) / N
        m_norm = np.sum(P * np.abs(M)) / np.sqrt(N)
        gamma = lam - m_norm**2
        t = 0.5 * np.log(lam) + np.linspace(-1.5, 1.5, 7)
        phi = phi_curie_weiss(t, N, beta)
        assert np.max(np.abs(phi - phi_two_clusters(t, m_norm, gamma))) < tol_moments
        assert np.max(np.abs(phi - phi_two_clusters(t, m_star * np.sqrt(N), chi))) < tol_thermo
    # at t_S = (1/2) log Lambda the universal value; N = 10000, Lambda = 7370.09504
    # (docs/theory.md, "The Curie-Weiss model")
    assert phi_curie_weiss(0.5 * np.log(7370.09504), 10000, beta) == pytest.approx(PHI_SPECIATION, abs=1e-5)


def test_posterior_class_probability_exact():
    # P(M>0 | x_t) + P(M=0 | x_t)/2 from the elementary-symmetric recursion vs all 2^N configurations
    from scipy.special import gammaln

    for N, beta, h in ((5, 1.5, 0.0), (6, 0.8, 0.2)):
        M, P = magnetization_distribution(N, beta, h)
        k = (M + N) // 2
        lpb = np.log(P) - (gammaln(N + 1) - gammaln(k + 1) - gammaln(N - k + 1))
        a, Mc = _configs(N)
        for ab in (0.9, 0.3):
            s, delta = np.sqrt(ab), 1 - ab
            x = RNG.normal(size=(7, N)) * 1.5
            got = _posterior_plus_curie_weiss(x, s, delta, lpb, _class_weights(M))
            lw = beta * Mc**2 / (2 * N) + h * Mc + s * (x @ a.T) / delta
            w = np.exp(lw - logsumexp(lw, axis=1, keepdims=True))
            ref = w[:, Mc > 0].sum(axis=1) + 0.5 * w[:, Mc == 0].sum(axis=1)
            np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12)


def test_phi_curie_weiss_mc_against_brute_force_and_mu_bound():
    # the exact cloning phi E_x[P+(x)^2 + P-(x)^2] (x_t drawn from the enumerated law, posterior by
    # enumeration) against phi_curie_weiss_mc; and phi along mu is a lower bound (Jensen), with a
    # clear gap at N = 4: the class posterior is NOT a function of mu alone.
    N, beta, t, n = 4, 1.5, 0.25, 40_000
    s, delta = np.exp(-t), 1 - np.exp(-2 * t)
    a, Mc = _configs(N)
    logq = beta * Mc**2 / (2 * N)
    q = np.exp(logq - logsumexp(logq))
    rng = np.random.default_rng(7)
    x = s * a[rng.choice(len(a), size=n, p=q)] + np.sqrt(delta) * rng.standard_normal((n, N))
    lw = logq + s * (x @ a.T) / delta
    w = np.exp(lw - logsumexp(lw, axis=1, keepdims=True))
    pp = w[:, Mc > 0].sum(axis=1) + 0.5 * w[:, Mc == 0].sum(axis=1)
    vals = pp**2 + (1 - pp) ** 2
    brute, brute_err = vals.mean(), vals.std() / np.sqrt(n)
    phi, err = phi_curie_weiss_mc(t, N, beta, n_samples=n, seed=3)
    assert abs(phi - brute) < 5 * np.hypot(err, brute_err)
    phi_mu = phi_curie_weiss(t, N, beta)
    assert phi - phi_mu > 5 * err  # measured gap ~0.012, err ~4e-4
    # equal seeds, equal results; t = 0 is exact
    np.testing.assert_array_equal(phi_curie_weiss_mc([0.3, 0.6], 5, 1.5, n_samples=500, seed=11)[0],
                                  phi_curie_weiss_mc([0.3, 0.6], 5, 1.5, n_samples=500, seed=11)[0])
    p0, e0 = phi_curie_weiss_mc(0.0, N, beta, n_samples=10, seed=0)
    M, P = magnetization_distribution(N, beta)
    assert p0 == 1 - P[M == 0].sum() / 2 and e0 == 0.0


# ------------------------------------------------------------------------------------------------
# a Gaussian along the cluster axis; collapse and excess entropy
# ------------------------------------------------------------------------------------------------

def test_phi_gaussian_is_the_cloning_probability_of_a_gaussian():
    # Monte Carlo of E[P(+|mu_t)^2 + P(-|mu_t)^2] for mu_0 ~ N(0, Lam): the posterior of mu_0 given
    # mu_t is N(s Lam mu_t / v, Lam Delta / v), v = s^2 Lam + Delta; 4 standard errors
    rng = np.random.default_rng(0)
    Lam, n = 20.0, 200_000
    for t in (0.3, 1.0, 1.5, 2.5):
        s, D_t = np.exp(-t), -np.expm1(-2 * t)
        v = s * s * Lam + D_t
        mu_t = rng.normal(0, np.sqrt(v), n)
        p = stats.norm.cdf((s * Lam * mu_t / v) / np.sqrt(Lam * D_t / v))
        vals = p**2 + (1 - p) ** 2
        assert abs(phi_gaussian(t, Lam) - vals.mean()) < 4 * vals.std() / np.sqrt(n)
    # limits: 1 at t = 0, 1/2 at t -> inf
    assert phi_gaussian(0.0, Lam) == 1.0 and phi_gaussian(40.0, Lam) == pytest.approx(0.5, abs=1e-12)
    tG = speciation_time_gaussian(Lam)
    assert phi_gaussian(tG, Lam) == pytest.approx(PHI_SPECIATION, abs=1e-12)
    assert speciation_time_gaussian(Lam, level=0.9) < tG
    # a narrow Gaussian crosses early: rho* = Lam e^{-2t} / (Lam e^{-2t} + Delta) at the crossing
    assert 0.0 < speciation_time_gaussian(0.5) < speciation_time_gaussian(2.0)
    # a Gaussian with a Curie-Weiss Lambda crosses earlier than the double well's (1/2) log Lambda
    from physdiff.theory.curie_weiss import top_eigenvalue

    lam64 = top_eigenvalue(64, 1.5)
    assert speciation_time_gaussian(lam64) < 0.5 * np.log(lam64) - 0.4
    with pytest.raises(ValueError, match="Lam"):
        phi_gaussian(1.0, 0.0)
    with pytest.raises(ValueError, match="t must"):
        phi_gaussian(-1.0, 2.0)
    with pytest.raises(ValueError, match="level"):
        speciation_time_gaussian(2.0, level=0.3)


def test_collapse_time_solves_its_equation():
    for P, d, s2 in [(4000, 64, 0.263), (100, 10, 1.0), (10**6, 784, 0.5)]:
        t = collapse_time(P, d, s2)
        f = 0.5 * np.log(1 + s2 * np.exp(-2 * t) / -np.expm1(-2 * t))
        assert f == pytest.approx(np.log(P) / d, rel=1e-10)
    assert collapse_time(1, 10, 1.0) == np.inf
    # more data, earlier collapse; larger d, later collapse
    assert collapse_time(10**4, 20, 1.0) < collapse_time(10**3, 20, 1.0) < collapse_time(10**3, 40, 1.0)
    for args, match in [((10, 10, 0.0), "sigma2"), ((0, 10, 1.0), "P"), ((10, 0, 1.0), "d")]:
        with pytest.raises(ValueError, match=match):
            collapse_time(*args)


def test_excess_entropy_closed_form_limits_and_zero_at_collapse():
    P, d, s2 = 2000, 40, 1.0
    alpha = np.log(P) / d
    tC = collapse_time(P, d, s2)
    # vanishes exactly at t_C: zero just below (clipped), positive just above, and the unclipped
    # value alpha - (1/2) log(1 + s2 e^{-2t}/Delta) is 0 there to rounding
    assert excess_entropy(tC * (1 - 1e-9), P, d, s2) == 0.0
    assert excess_entropy(tC * (1 + 1e-6), P, d, s2) > 0.0
    assert excess_entropy(tC, P, d, s2, normalized=False) == pytest.approx(0.0, abs=1e-12)
    # limits: 0 at t = 0, alpha as t -> inf (normalised: 1); monotone in t
    t = np.linspace(0.0, 8.0, 401)
    f = excess_entropy(t, P, d, s2, normalized=False)
    assert f[0] == 0.0 and f[-1] == pytest.approx(alpha, rel=1e-6)
    assert np.all(np.diff(f) >= 0)
    np.testing.assert_allclose(excess_entropy(t, P, d, s2), f / alpha, rtol=1e-15)
    # the formula itself above t_C
    t1 = 1.3
    assert excess_entropy(t1, P, d, s2, normalized=False) == pytest.approx(
        alpha - 0.5 * np.log(1 + s2 * np.exp(-2 * t1) / (1 - np.exp(-2 * t1))), rel=1e-14)
    with pytest.raises(ValueError, match="P must be >= 2"):
        excess_entropy(1.0, 1, d, s2)


def test_excess_entropy_empirical_matches_closed_form_on_gaussian_data():
    """The estimate from P isotropic Gaussian points against the large-d closed form.

    Tolerance: 5 standard errors of the mean over the noised points, plus the finite-P bias,
    derived for Gaussian data: with the kernel K = N(x; s a, Delta), ``E_x E_a[K^2] / p_t^2 =
    (1 + s^2 sigma2 / Delta)^d = e^{2 d (alpha - f)}``, so the relative variance of P^e is
    ``e^{d (alpha - 2 f)}`` (Jensen bias of log, plus the term of x's own training point), which
    gives ``2 e^{d (alpha - 2 f)} / d`` per dimension above t_C; below t_C the other points weigh
    ``P e^{-d s^2 sigma2 / Delta}`` against x's own, a bias ``log(1 + that) / d``. Times near t_C,
    where the large-d form has O(1/d) corrections, are not tested.
    """
    P, d, s2 = 2000, 40, 1.0
    alpha = np.log(P) / d
    x0 = np.sqrt(s2) * np.random.default_rng(3).standard_normal((P, d))
    t = np.array([0.2, 0.25, 1.5, 2.5])
    est, se = excess_entropy_empirical(x0, t, n_eval=2000, seed=4, normalized=False)
    f = excess_entropy(t, P, d, s2, normalized=False)
    snr = s2 * np.exp(-2 * t) / -np.expm1(-2 * t)
    bias = np.where(f > 0, 2 * np.exp(d * (alpha - 2 * f)) / d, np.log1p(P * np.exp(-d * snr)) / d)
    assert np.all(bias < 0.01)  # the test is not vacuous: the regimes are where the bias is small
    assert np.all(np.abs(est - f) <= 5 * se + bias), (est, f, se, bias)
    assert np.all(se < 0.005)
    # normalised version and reproducibility
    est_n, se_n = excess_entropy_empirical(x0, t, n_eval=2000, seed=4)
    np.testing.assert_allclose(est_n, est / alpha, rtol=1e-12)
    np.testing.assert_allclose(se_n, se / alpha, rtol=1e-12)
    for args, match in [((x0[:1], 1.0), "P >= 2"), ((x0, 0.0), "t must be > 0"), ((x0, -1.0), "t must")]:
        with pytest.raises(ValueError, match=match):
            excess_entropy_empirical(*args)
