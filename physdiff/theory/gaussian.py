"""Exact scores of diffused Gaussian and two-Gaussian data, and the theory of the cloning
probability ``phi(t)`` of [BBBM24].

All formulas are written with ``s = sqrt(alpha_bar)`` and ``Delta = 1 - alpha_bar`` (``docs/theory.md``),
so they hold for the discrete DDPM chain and for the Ornstein-Uhlenbeck process
``dx = -x dt + sqrt(2) dW`` alike: data ``x0 ~ p0`` diffuses to ``x_t = s x0 + sqrt(Delta) eps``, and
the score is ``grad log p_t(x) = -(x - s E[x0 | x_t = x]) / Delta`` (Tweedie). Times taken or
returned by the ``phi`` functions are physical times ``t = -log(alpha_bar) / 2``. numpy + scipy
only.

Speciation and cloning [BBBM24]: run the reverse process down to time ``t``, branch it into two
clones with independent noise, finish both; ``phi(t)`` is the probability that the clones end in the
same class. For *exact* reverse dynamics the state at time ``t`` is distributed as ``p_t`` and each
clone's endpoint is an independent draw from the posterior ``q(x0 | x_t)``, so

    phi(t) = E_{x_t ~ p_t} [ sum_c P(c | x_t)^2 ],

``P(c | x_t)`` the posterior probability of the final class ``c``. The universal large-N value at the
speciation time is ``phi(t_S) = 0.775200`` (:data:`PHI_SPECIATION`); its crossing by a measured
``phi`` is :func:`physdiff.reverse.crossing_time`.

Collapse [BBBM24]: with ``P`` training points the empirical score memorises below the collapse
time ``t_C``, where the excess entropy density :func:`excess_entropy` vanishes
(:func:`collapse_time`; the estimate from a training set is :func:`excess_entropy_empirical`).

References
----------
[Ho20] Ho, Jain, Abbeel (2020), Denoising Diffusion Probabilistic Models, arXiv:2006.11239.
[BM23] Biroli, Mezard (2023), Generative diffusion in very large dimensions, arXiv:2306.03518.
[BBBM24] Biroli, Bonnaire, de Bortoli, Mezard (2024), Dynamical regimes of diffusion models,
arXiv:2402.18491 (Nat. Commun. 15:9957), Sec. "Speciation" and Methods (cloning, phi(t)).
[RA23] Raya, Ambrogioni (2023), Spontaneous symmetry breaking in generative diffusion models,
arXiv:2305.19693.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import linalg, special

from .._util import SeedLike, as_generator, as_samples, check_positive_int, check_real, map_row_blocks
from .curie_weiss import magnetization_distribution

__all__ = [
    "PHI_SPECIATION",
    "score_gaussian",
    "log_density_gaussian",
    "posterior_mean_gaussian",
    "score_two_gaussians",
    "log_density_two_gaussians",
    "posterior_mean_two_gaussians",
    "phi_two_clusters",
    "phi_curie_weiss",
    "phi_curie_weiss_mc",
    "phi_gaussian",
    "speciation_time_gaussian",
    "collapse_time",
    "excess_entropy",
    "excess_entropy_empirical",
    "phi_empirical_mixture",
]

#: Universal large-N value of the cloning probability at the speciation time [BBBM24]:
#: ``phi = E_g[expit(2 + 2 g)]``, g ~ N(0, 1), the two-cluster formula at ``m e^{-t} = 1``,
#: ``Gamma = 1`` ([BBBM24] give 0.775200).
PHI_SPECIATION = 0.7752002453966632

_LOG_2PI = float(np.log(2.0 * np.pi))


# ----------------------------------------------------------------------------------------------
# input handling
# ----------------------------------------------------------------------------------------------

def _as_points(x_t) -> np.ndarray:
    x = np.asarray(x_t, dtype=np.float64)
    if x.ndim == 0 or x.shape[-1] == 0:
        raise ValueError(f"x_t must have shape (..., d) with d >= 1 (e.g. (n, d)), got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("x_t contains NaN or inf; clean the input before calling")
    return x


def _as_alpha_bar(alpha_bar, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``s`` and ``Delta`` shaped ``(..., 1)`` to broadcast against ``x`` of shape ``(..., d)``."""
    ab = np.asarray(alpha_bar, dtype=np.float64)
    if not np.all(np.isfinite(ab)) or np.any(ab <= 0.0) or np.any(ab > 1.0):
        raise ValueError("alpha_bar must lie in (0, 1] (a schedule's alpha_bar[t]); "
                         f"got values in [{np.min(ab)}, {np.max(ab)}]")
    try:
        np.broadcast_shapes(ab.shape, x.shape[:-1])
    except ValueError:
        raise ValueError(f"alpha_bar of shape {ab.shape} does not broadcast against x_t.shape[:-1] = "
                         f"{x.shape[:-1]}; pass a scalar or one value per sample") from None
    ab = ab[..., None]
    return np.sqrt(ab), 1.0 - ab


def _as_vector(name: str, v, d: int) -> np.ndarray:
    a = np.asarray(v, dtype=np.float64)
    if a.ndim == 0:
        a = np.full(d, float(a))
    if a.shape != (d,):
        raise ValueError(f"{name} must be a scalar or have shape (d,) = ({d},), got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or inf")
    return a


def _as_covariance(cov, d: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Eigen-decomposition ``cov = U diag(lam) U^T``; ``U`` is None for a diagonal covariance."""
    c = np.asarray(cov, dtype=np.float64)
    if not np.all(np.isfinite(c)):
        raise ValueError("cov contains NaN or inf")
    if c.ndim == 0:
        lam, U = np.full(d, float(c)), None
    elif c.shape == (d,):
        lam, U = c.copy(), None
    elif c.shape == (d, d):
        scale = max(float(np.max(np.abs(c))), np.finfo(float).tiny)
        if not np.allclose(c, c.T, rtol=0.0, atol=1e-12 * scale):
            raise ValueError("cov must be symmetric; symmetrise it with (cov + cov.T) / 2")
        lam, U = linalg.eigh(0.5 * (c + c.T))
        # eigenvalues of a PSD matrix that round to slightly negative values are zeros
        lam = np.where(np.abs(lam) <= 1e-12 * scale * d, 0.0, lam)
    else:
        raise ValueError(f"cov must be a scalar variance, a (d,) diagonal or a (d, d) matrix with "
                         f"d = {d}, got shape {c.shape}")
    if np.any(lam < 0.0):
        raise ValueError(f"cov must be positive semi-definite; smallest eigenvalue {lam.min():.3g}")
    return lam, U


def _gaussian_terms(x_t, alpha_bar, mean, cov):
    """Residual ``z = x - s mean`` in the eigenbasis of ``cov`` and the variances of ``p_t`` there."""
    x = _as_points(x_t)
    d = x.shape[-1]
    s, delta = _as_alpha_bar(alpha_bar, x)
    mean = _as_vector("mean", mean, d)
    lam, U = _as_covariance(cov, d)
    z = x - s * mean
    if U is not None:
        z = z @ U
    var = s**2 * lam + delta
    if np.any(var <= 0.0):
        raise ValueError("the diffused covariance s^2 cov + (1 - alpha_bar) I is singular: alpha_bar = 1 "
                         "with a singular cov; use alpha_bar < 1 or a positive-definite cov")
    return z, var, s, lam, U, mean


# ----------------------------------------------------------------------------------------------
# Gaussian data
# ----------------------------------------------------------------------------------------------

def score_gaussian(x_t, alpha_bar, mean, cov) -> np.ndarray:
    """Exact score of diffused Gaussian data ``x0 ~ N(mean, cov)``.

    The forward process maps ``N(mean, cov)`` to ``p_t = N(s mean, s^2 cov + Delta I)`` with
    ``s = sqrt(alpha_bar)``, ``Delta = 1 - alpha_bar`` ([Ho20] eq. 4), so
    ``score(x) = -(s^2 cov + Delta I)^{-1} (x - s mean)``. A full ``cov`` is diagonalised once
    (``scipy.linalg.eigh``), which lets ``alpha_bar`` differ per sample.

    Parameters
    ----------
    x_t : array_like, shape (..., d), e.g. (n, d)
        Points (float; converted to float64).
    alpha_bar : float or array_like broadcasting against ``x_t.shape[:-1]``, e.g. (n,)
        ``alpha_bar`` of the diffusion step, in (0, 1].
    mean : float or array_like (d,)
        Data mean.
    cov : float, array_like (d,) or (d, d)
        Data covariance: a scalar variance (isotropic), a diagonal, or a symmetric positive
        semi-definite matrix.

    Returns
    -------
    score : ndarray, float64, shape ``x_t.shape`` (broadcast with ``alpha_bar``)

    Raises
    ------
    ValueError
        Bad shapes, ``alpha_bar`` outside (0, 1], a covariance that is not symmetric PSD, or a
        singular diffused covariance (``alpha_bar = 1`` with singular ``cov``).
    """
    z, var, _, _, U, _ = _gaussian_terms(x_t, alpha_bar, mean, cov)
    out = -z / var
    return out @ U.T if U is not None else out


def log_density_gaussian(x_t, alpha_bar, mean, cov) -> np.ndarray:
    """Exact log-density of diffused Gaussian data, ``log N(x; s mean, s^2 cov + Delta I)``.

    Parameters and errors as :func:`score_gaussian`.

    Returns
    -------
    log_p : ndarray, float64, shape ``x_t.shape[:-1]`` (broadcast with ``alpha_bar``)
        Natural log of the density (units: log of 1/volume in ``x`` space).
    """
    z, var, _, _, _, _ = _gaussian_terms(x_t, alpha_bar, mean, cov)
    return -0.5 * np.sum(z**2 / var + np.log(var) + _LOG_2PI, axis=-1)


def posterior_mean_gaussian(x_t, alpha_bar, mean, cov) -> np.ndarray:
    """Posterior mean ``E[x0 | x_t]`` for Gaussian data ``N(mean, cov)``.

    ``E[x0 | x_t] = mean + s cov (s^2 cov + Delta I)^{-1} (x_t - s mean)`` (Gaussian conditioning of
    the joint law of ``(x0, x_t)``); it satisfies Tweedie's formula
    ``score = -(x_t - s E[x0 | x_t]) / Delta``.

    Parameters and errors as :func:`score_gaussian`.

    Returns
    -------
    x0_hat : ndarray, float64, shape ``x_t.shape`` (broadcast with ``alpha_bar``)
    """
    z, var, s, lam, U, mean = _gaussian_terms(x_t, alpha_bar, mean, cov)
    shift = s * lam * z / var
    return mean + (shift @ U.T if U is not None else shift)


# ----------------------------------------------------------------------------------------------
# two-Gaussian mixture data
# ----------------------------------------------------------------------------------------------

def _two_gaussian_terms(x_t, alpha_bar, m, sigma, weight_plus):
    x = _as_points(x_t)
    d = x.shape[-1]
    s, delta = _as_alpha_bar(alpha_bar, x)
    m = _as_vector("m", m, d)
    sigma = check_real("sigma", sigma, lo=0.0)
    w = check_real("weight_plus", weight_plus, lo=0.0, hi=1.0, lo_open=True, hi_open=True)
    v = s**2 * sigma**2 + delta  # (..., 1): variance of each diffused component
    if np.any(v <= 0.0):
        raise ValueError("sigma = 0 with alpha_bar = 1 gives two point masses (no density); "
                         "use alpha_bar < 1 or sigma > 0")
    proj = (x @ m)[..., None]  # (..., 1)
    # log-odds of the + component given x_t: log(w+/w-) + 2 s m.x / v
    logit = np.log(w) - np.log1p(-w) + 2.0 * s * proj / v
    return x, s, delta, m, sigma, w, v, proj, logit


def score_two_gaussians(x_t, alpha_bar, m, sigma, weight_plus=0.5) -> np.ndarray:
    """Exact score of diffused two-Gaussian data ``w+ N(m, sigma^2 I) + w- N(-m, sigma^2 I)``.

    ``p_t = w+ N(s m, v I) + w- N(-s m, v I)`` with ``v = s^2 sigma^2 + Delta``, so
    ``score(x) = -(x - s m tanh(l / 2)) / v`` with the log-odds
    ``l = log(w+/w-) + 2 s m.x / v`` of the ``+`` component ([BBBM24] Methods, Gaussian mixture;
    [RA23] for ``sigma = 0``). ``tanh(l/2) = P(+|x) - P(-|x)`` is evaluated without overflow.

    Parameters
    ----------
    x_t : array_like, shape (..., d), e.g. (n, d)
        Points.
    alpha_bar : float or array_like broadcasting against ``x_t.shape[:-1]``
        In (0, 1].
    m : float or array_like (d,)
        Centre of the ``+`` cluster (a scalar is broadcast to all ``d`` coordinates).
    sigma : float >= 0
        Standard deviation of each cluster (``0``: two point masses; needs ``alpha_bar < 1``).
    weight_plus : float in (0, 1)
        Weight ``w+`` of the ``+`` cluster; ``w- = 1 - w+``.

    Returns
    -------
    score : ndarray, float64, shape ``x_t.shape`` (broadcast with ``alpha_bar``)

    Raises
    ------
    ValueError
        Bad shapes, ``alpha_bar`` outside (0, 1], ``sigma < 0``, ``weight_plus`` outside (0, 1),
        or ``sigma = 0`` at ``alpha_bar = 1``.
    """
    x, s, _, m, _, _, v, _, logit = _two_gaussian_terms(x_t, alpha_bar, m, sigma, weight_plus)
    return -(x - s * m * np.tanh(0.5 * logit)) / v


def posterior_mean_two_gaussians(x_t, alpha_bar, m, sigma, weight_plus=0.5) -> np.ndarray:
    """Posterior mean ``E[x0 | x_t]`` for two-Gaussian data (see :func:`score_two_gaussians`).

    ``E[x0 | x_t] = tanh(l/2) m Delta / v + s sigma^2 x_t / v``: each component's Gaussian
    posterior mean ``+-m + s sigma^2 (x_t -+ s m) / v``, weighted by ``P(+-|x_t)``. Consistent with
    the score through Tweedie, ``score = -(x_t - s E[x0|x_t]) / Delta``.

    Parameters and errors as :func:`score_two_gaussians`.

    Returns
    -------
    x0_hat : ndarray, float64, shape ``x_t.shape`` (broadcast with ``alpha_bar``)
    """
    x, s, delta, m, sigma, _, v, _, logit = _two_gaussian_terms(x_t, alpha_bar, m, sigma, weight_plus)
    return np.tanh(0.5 * logit) * m * (delta / v) + (s * sigma**2 / v) * x


def log_density_two_gaussians(x_t, alpha_bar, m, sigma, weight_plus=0.5) -> np.ndarray:
    """Exact log-density of diffused two-Gaussian data, in log space (no under/overflow).

    ``log p_t(x) = -(|x|^2 + s^2 |m|^2) / (2v) - (d/2) log(2 pi v)
    + logaddexp(log w+ + s m.x / v, log w- - s m.x / v)``, ``v = s^2 sigma^2 + Delta``.

    Parameters and errors as :func:`score_two_gaussians`.

    Returns
    -------
    log_p : ndarray, float64, shape ``x_t.shape[:-1]`` (broadcast with ``alpha_bar``)
    """
    x, s, _, m, _, w, v, proj, _ = _two_gaussian_terms(x_t, alpha_bar, m, sigma, weight_plus)
    d = x.shape[-1]
    quad = (np.sum(x**2, axis=-1, keepdims=True) + s**2 * float(m @ m)) / (2.0 * v)
    mix = np.logaddexp(np.log(w) + s * proj / v, np.log1p(-w) - s * proj / v)
    return (mix - quad - 0.5 * d * (np.log(v) + _LOG_2PI))[..., 0]


# ----------------------------------------------------------------------------------------------
# cloning probability phi(t)
# ----------------------------------------------------------------------------------------------

_U_CUT = 50.0  # |u| beyond which expit(-|u|) < 2e-22: the tails of E[expit(u)] - P(u > 0)


def _expected_expit(mu: float, sd: float) -> float:
    """``E[expit(u)]`` for ``u ~ N(mu, sd^2)``, to about 1e-13 absolute.

    For ``sd < 1e-3`` a second-order expansion in ``sd`` (error below 1e-13); otherwise written as
    ``P(u > 0) + E[expit(u) - 1{u > 0}]``: the first term is ``ndtr(mu / sd)`` exactly, the second
    has the integrand ``-sign(u) expit(-|u|) N(u; mu, sd^2)``, localised in ``|u| < 50``
    and within 40 sd of ``mu``, integrated with ``scipy.integrate.quad`` on both sides of 0.
    """
    if sd < 1e-3:
        # E[expit(mu + sd g)] = expit(mu) + expit''(mu) sd^2 / 2 + O(sd^4), |expit''''| < 1/8
        e = float(special.expit(mu))
        return e + 0.5 * sd**2 * e * (1.0 - e) * (1.0 - 2.0 * e)
    from scipy.integrate import quad  # here: scipy.integrate takes 0.15 s to import

    total = float(special.ndtr(mu / sd))
    lo, hi = max(-_U_CUT, mu - 40.0 * sd), min(_U_CUT, mu + 40.0 * sd)

    def f(u):
        return -np.sign(u) * special.expit(-abs(u)) * np.exp(-0.5 * ((u - mu) / sd) ** 2) / (sd * np.sqrt(2 * np.pi))

    for a, b in ((lo, min(hi, 0.0)), (max(lo, 0.0), hi)):
        if b > a:
            pts = [mu] if a < mu < b else None
            total += quad(f, a, b, points=pts, epsabs=1e-14, epsrel=1e-12, limit=200)[0]
    return total


def phi_two_clusters(t, m_norm, gamma, weight_plus=0.5) -> np.ndarray:
    """Cloning probability ``phi(t)`` of two clusters, the two-cluster theory of [BBBM24].

    ``phi(t) = (1/2) ∫ dq (G+^2 + G-^2) / (G+ + G-)``, ``G+- = N(q; +-m_norm e^{-t}, Gamma(t))``,
    ``Gamma(t) = gamma e^{-2t} + 1 - e^{-2t}`` ([BBBM24] Methods): ``q`` is the
    coordinate along the cluster axis, ``m_norm`` the distance of each cluster centre from 0 and
    ``gamma`` the within-cluster variance along the axis, both at ``t = 0``. It is
    ``E_q[P(+|q)^2 + P(-|q)^2]`` for ``q`` drawn from the diffused mixture, and is evaluated in the
    reduced form ``phi = sum_c w_c E_g[expit(+-log(w+/w-) + 2 r^2 + 2 r g)]``, ``g ~ N(0, 1)``,
    ``r = m_norm e^{-t} / sqrt(Gamma)`` (the posterior ``P(+|q)`` is a logistic function of ``q``),
    by ``scipy.integrate.quad`` to about 1e-12.

    It is exact for :func:`score_two_gaussians` data in any dimension (``m_norm = |m|``,
    ``gamma = sigma^2``): the class posterior depends on ``x_t`` only through ``m.x_t``. For
    Curie-Weiss at large N, ``m_norm = m* sqrt(N)`` and ``gamma = chi`` (the within-state variance of
    ``M / sqrt(N)``); then ``phi(t_S) -> 0.775200`` (``r = 1``) at ``t_S = log(m_norm)``.

    Parameters
    ----------
    t : float or array_like
        Physical times ``t = -log(alpha_bar) / 2 >= 0`` (dimensionless).
    m_norm : float or array_like >= 0
        Distance of the cluster centres from the origin.
    gamma : float or array_like >= 0
        Within-cluster variance along the cluster axis.
    weight_plus : float in (0, 1)
        Weight of the ``+`` cluster (default 0.5, two equal clusters).

    Returns
    -------
    phi : ndarray, float64, shape ``broadcast(t, m_norm, gamma)``
        In ``[w+^2 + w-^2, 1]``: 1 at ``t = 0`` (separated clusters), ``w+^2 + w-^2`` as
        ``t -> inf``.

    Raises
    ------
    ValueError
        Negative or non-finite ``t``, ``m_norm`` or ``gamma``; ``weight_plus`` outside (0, 1).
    """
    w = check_real("weight_plus", weight_plus, lo=0.0, hi=1.0, lo_open=True, hi_open=True)
    arrs = []
    for name, v in (("t", t), ("m_norm", m_norm), ("gamma", gamma)):
        a = np.asarray(v, dtype=np.float64)
        if not np.all(np.isfinite(a)) or np.any(a < 0.0):
            raise ValueError(f"{name} must be finite and >= 0")
        arrs.append(a)
    tt, mm, gg = np.broadcast_arrays(*arrs)
    s = np.exp(-tt)
    a = mm * s
    Gamma = gg * s**2 + -np.expm1(-2.0 * tt)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(Gamma > 0.0, a / np.sqrt(Gamma), np.where(a > 0.0, np.inf, 0.0))
    c = float(np.log(w) - np.log1p(-w))
    uniq, inv = np.unique(r.ravel(), return_inverse=True)
    vals = np.empty(uniq.shape)
    for i, ri in enumerate(uniq):
        if np.isinf(ri):
            vals[i] = 1.0
            continue
        plus = _expected_expit(c + 2.0 * ri**2, 2.0 * ri)
        minus = plus if c == 0.0 else _expected_expit(-c + 2.0 * ri**2, 2.0 * ri)
        vals[i] = w * plus + (1.0 - w) * minus
    return np.clip(vals[inv.ravel()].reshape(r.shape), 0.0, 1.0)


def _check_times(t) -> np.ndarray:
    tt = np.asarray(t, dtype=np.float64)
    if not np.all(np.isfinite(tt)) or np.any(tt < 0.0):
        raise ValueError("t must hold finite physical times >= 0")
    return tt


def _class_weights(M: np.ndarray) -> np.ndarray:
    """Share of each magnetization ``M`` in the ``+`` class: 1 for M > 0, 1/2 for M = 0, 0 below."""
    return np.where(M > 0, 1.0, np.where(M == 0, 0.5, 0.0))


def phi_curie_weiss(t, N: int, beta: float, h: float = 0.0, n_grid: int = 401) -> np.ndarray:
    """Cloning probability ``phi(t)`` of Curie-Weiss data seen along ``mu``, exact at finite N.

    The class of a clone is the sign of its final magnetization ``M`` (``M = 0`` split half/half).
    This is ``phi`` for an observer of ``mu_t = sum_i x_i / sqrt(N)`` [BM23; BBBM24]: ``mu_t`` has the
    exact law ``P_t(mu) = sum_M P(M) N(mu; s M / sqrt(N), Delta)`` ([BM23]), the class
    posterior given ``mu`` is ``P(+|mu) = p+(mu) / P_t(mu)`` with
    ``p+(mu) = sum_{M>0} P(M) N(mu; s M/sqrt(N), Delta) + P(0) N(mu; 0, Delta) / 2`` and

        phi_mu(t) = E_mu[P(+|mu)^2 + P(-|mu)^2] = 1 - 2 ∫ dmu p+(mu) p-(mu) / P_t(mu).

    The integrand is below ``N(mu; 0, Delta)``, so the integral runs over ``|mu| < 10 sqrt(Delta)``
    (trapezoid, ``n_grid`` points, log-sum-exp over M; states with ``P(M) < e^-70 max P`` dropped).

    Is this the cloning ``phi`` of the exact reverse dynamics? Not exactly. Given the full ``x_t``,
    ``q(a | x_t) ∝ q(a) exp(s a.x_t / Delta)``, so
    ``P(M | x_t) ∝ P(M) e_k(exp(2 s x_t / Delta)) / C(N, k)``, ``k = (N + M)/2``, with ``e_k`` the
    elementary symmetric polynomial: it depends on the whole empirical distribution of the
    ``x_i``, not on ``mu`` alone (already for N = 2 the ``M = 0`` weight is
    ``cosh(s (x_1 - x_2) / Delta)``). Since ``P(+|mu) = E[P(+|x_t) | mu]``, Jensen's inequality gives
    ``phi_mu <= phi`` (the true cloning value, see :func:`phi_curie_weiss_mc`). Measured at
    beta = 1.5 the gap is 1.2e-2 at ``t_S / 2`` and 3e-3 at ``t_S = (1/2) log Lambda`` for N = 4,
    4e-3 and 6e-4 for N = 8, and below the 1e-3 Monte Carlo resolution from N = 16 on. It vanishes
    as N grows: beyond ``mu`` (the linear statistic) the ``x_i`` inform on M only through the
    nonlinear part of their likelihood, ``O((s^2/Delta)^2)`` per spin, i.e. ``O(1/N)`` for all N
    spins near ``t_S = (1/2) log N + O(1)``; earlier, ``mu`` alone already fixes the sign
    (``phi -> 1``). For large N this is therefore the cloning ``phi`` of Curie-Weiss data; it tends
    to :func:`phi_two_clusters` with ``m_norm = E|M| / sqrt(N)``, ``gamma = Var|M| / N`` (to
    ``O(1/N^2)``), or with the thermodynamic ``m* sqrt(N)`` and ``chi`` (to ``O(1/N)``).

    Parameters
    ----------
    t : float or array_like
        Physical times ``>= 0``.
    N : int >= 1
        Number of spins.
    beta : float >= 0
        Inverse temperature.
    h : float
        Per-spin field.
    n_grid : int >= 101
        Trapezoid points over ``|mu| < 10 sqrt(Delta)``; the default (spacing 0.05 sqrt(Delta))
        is accurate to about 1e-14, 101 points to 1e-9.

    Returns
    -------
    phi : ndarray, float64, shape ``t.shape``
        At ``t = 0``: ``1 - P(M=0)/2``; ``-> P(+)^2 + P(-)^2`` as ``t -> inf``.

    Raises
    ------
    ValueError
        Negative or non-finite ``t``; bad ``N``, ``beta``, ``h`` or ``n_grid``.
    """
    tt = _check_times(t)
    n_grid = check_positive_int("n_grid", n_grid, minimum=101)
    M, P = magnetization_distribution(N, beta, h)
    N = int(N)
    with np.errstate(divide="ignore"):
        logP = np.log(P)
    keep = logP > logP.max() - 70.0
    M, logP = M[keep], logP[keep]
    wp = _class_weights(M)
    with np.errstate(divide="ignore"):
        log_wp, log_wm = logP + np.log(wp), logP + np.log1p(-wp)
    p_zero = float(P[N // 2]) if N % 2 == 0 else 0.0
    u = np.linspace(-10.0, 10.0, n_grid)  # mu in units of sqrt(Delta)
    out = np.empty(tt.shape)
    for idx, ti in np.ndenumerate(tt):
        delta = -np.expm1(-2.0 * ti)
        if delta == 0.0:
            out[idx] = 1.0 - 0.5 * p_zero
            continue
        sd = np.sqrt(delta)
        centres = np.exp(-ti) * M / np.sqrt(N) / sd  # in units of sqrt(Delta)
        quad = -0.5 * (u[:, None] - centres[None, :]) ** 2
        lp = special.logsumexp(quad + log_wp, axis=1)
        lm = special.logsumexp(quad + log_wm, axis=1)
        # p+ p- / (p+ + p-) with the Gaussian normalisation 1/sqrt(2 pi): mu = sd * u
        integrand = np.exp(lp + lm - np.logaddexp(lp, lm)) / np.sqrt(2.0 * np.pi)
        out[idx] = 1.0 - 2.0 * np.trapezoid(integrand, u)
    return np.clip(out, 0.0, 1.0)


def _log_esp(log_u: np.ndarray) -> np.ndarray:
    """``log e_k(u)``, ``k = 0..N``, of the elementary symmetric polynomials of ``u = exp(log_u)``.

    ``log_u`` has shape (n, N); returns (n, N+1). Recursion ``e_k <- e_k + u_i e_{k-1}`` over ``i``
    in log space (``O(n N^2)``).
    """
    n, N = log_u.shape
    E = np.full((n, N + 1), -np.inf)
    E[:, 0] = 0.0
    for i in range(N):
        E[:, 1:i + 2] = np.logaddexp(E[:, 1:i + 2], E[:, 0:i + 1] + log_u[:, i:i + 1])
    return E


def _posterior_plus_curie_weiss(x: np.ndarray, s: float, delta: float, log_prior_over_binom: np.ndarray,
                                wp: np.ndarray) -> np.ndarray:
    """``P(M > 0 | x_t) + P(M = 0 | x_t) / 2`` for Curie-Weiss data, exact, x of shape (n, N).

    ``P(M | x_t) ∝ P(M) / C(N, k) * e_k(exp(2 s x / Delta))`` (the common factor
    ``exp(-s sum_i x_i / Delta)`` cancels), ``k = (N + M) / 2`` the number of up spins.
    """
    log_u = 2.0 * s * x / delta
    # rows are independent: L2-sized blocks of them side by side on the threads (same bytes)
    logw = map_row_blocks(lambda r, _: _log_esp(log_u[r]), len(x), x.shape[1] + 1) + log_prior_over_binom
    logw -= special.logsumexp(logw, axis=1, keepdims=True)
    return np.exp(logw) @ wp


def phi_curie_weiss_mc(t, N: int, beta: float, h: float = 0.0, n_samples: int = 20000,
                       seed: SeedLike = None) -> tuple[np.ndarray, np.ndarray]:
    """The exact cloning probability of Curie-Weiss data, by Monte Carlo over ``x_t``.

    ``phi(t) = E_{x_t ~ p_t}[P(+|x_t)^2 + P(-|x_t)^2]`` ([BBBM24]; the class is the sign of the final
    ``M``, ``M = 0`` split half/half): for the exact reverse process the clones' endpoints are
    independent draws from ``q(x0 | x_t)``. ``x_t = s a + sqrt(Delta) xi`` is sampled exactly (M from
    ``P(M)``; since ``P(+|x_t)`` is symmetric in the ``x_i``, the up spins may sit anywhere), and
    ``P(+|x_t)`` is computed exactly from ``P(M | x_t) ∝ P(M) e_k(exp(2 s x_t / Delta)) / C(N, k)``
    (see :func:`phi_curie_weiss` for why it is not a function of ``mu`` alone). The estimator is
    Rao-Blackwellised: its error is far below that of a cloning run with the same ``n_samples``.
    Cost ``O(n_samples N^2)`` per time: meant for N up to a few hundred.

    Parameters
    ----------
    t : float or array_like
        Physical times ``>= 0``.
    N : int >= 1
        Number of spins.
    beta : float >= 0
        Inverse temperature.
    h : float
        Per-spin field.
    n_samples : int >= 2
        Monte Carlo samples per time.
    seed : int, numpy.random.Generator or None
        Equal seeds give equal results.

    Returns
    -------
    phi : ndarray, float64, shape ``t.shape``
    stderr : ndarray, float64, shape ``t.shape``
        Standard error of each estimate (0 at ``t = 0``, where ``phi = 1 - P(M=0)/2`` exactly).

    Raises
    ------
    ValueError
        Negative or non-finite ``t``; bad ``N``, ``beta``, ``h`` or ``n_samples``.
    """
    tt = _check_times(t)
    n_samples = check_positive_int("n_samples", n_samples, minimum=2)
    M, P = magnetization_distribution(N, beta, h)
    N = int(N)
    rng = as_generator(seed)
    k = (M + N) // 2
    with np.errstate(divide="ignore"):
        log_prior_over_binom = (np.log(P) - (special.gammaln(N + 1) - special.gammaln(k + 1)
                                             - special.gammaln(N - k + 1)))
    wp = _class_weights(M)
    p_zero = float(P[N // 2]) if N % 2 == 0 else 0.0
    phi, err = np.empty(tt.shape), np.empty(tt.shape)
    chunk = max(1, min(n_samples, 4_000_000 // (N + 1)))
    cols = np.arange(N)
    for idx, ti in np.ndenumerate(tt):
        delta = -np.expm1(-2.0 * ti)
        if delta == 0.0:
            phi[idx], err[idx] = 1.0 - 0.5 * p_zero, 0.0
            continue
        s = np.exp(-ti)
        vals = np.empty(n_samples)
        for start in range(0, n_samples, chunk):
            n = min(chunk, n_samples - start)
            kk = k[rng.choice(N + 1, size=n, p=P)]
            a = np.where(cols[None, :] < kk[:, None], 1.0, -1.0)
            x = s * a + np.sqrt(delta) * rng.standard_normal((n, N))
            pp = _posterior_plus_curie_weiss(x, s, delta, log_prior_over_binom, wp)
            vals[start:start + n] = pp**2 + (1.0 - pp) ** 2
        phi[idx] = vals.mean()
        err[idx] = vals.std(ddof=1) / np.sqrt(n_samples)
    return phi, err


# ----------------------------------------------------------------------------------------------
# a Gaussian along the cluster axis: phi and its crossing
# ----------------------------------------------------------------------------------------------

def phi_gaussian(t, Lam: float) -> np.ndarray:
    """Cloning probability of centred Gaussian data of variance ``Lam`` along an axis ``u``, the
    class being the sign of ``u.x``.

    What the best linear model learns of two-cluster data with the same top eigenvalue
    ``Lambda`` (``docs/theory.md``, "Speciation, cloning and collapse"). Diffused,
    ``mu_t = s mu_0 + sqrt(Delta) xi``, and the two clones' endpoints are independent draws of
    ``mu_0 | mu_t``, jointly Gaussian with correlation
    ``rho = Var E[mu_0 | mu_t] / Lam = s^2 Lam / (s^2 Lam + Delta)``; for a centred Gaussian pair
    ``P(same sign) = 1/2 + arcsin(rho) / pi`` (Sheppard's formula), ``s^2 = e^{-2t}``,
    ``Delta = 1 - e^{-2t}``.

    Parameters
    ----------
    t : float or array_like
        Physical times ``>= 0``.
    Lam : float > 0
        Variance of the data along ``u`` (the top eigenvalue of the data covariance).

    Returns
    -------
    phi : ndarray, float64, shape of ``t``
        1 at ``t = 0``, decreasing to 1/2 as ``t -> inf``.

    Raises
    ------
    ValueError
        Negative or non-finite ``t``; ``Lam <= 0``.
    """
    tt = _check_times(t)
    Lam = check_real("Lam", Lam, lo=0.0, lo_open=True)
    ab = np.exp(-2.0 * tt)
    return 0.5 + np.arcsin(ab * Lam / (ab * Lam - np.expm1(-2.0 * tt))) / np.pi


def speciation_time_gaussian(Lam: float, level: float = PHI_SPECIATION) -> float:
    """Physical time where :func:`phi_gaussian` falls through ``level``, in closed form.

    With ``rho* = sin(pi (level - 1/2))``: ``alpha_bar = rho* / (Lam (1 - rho*) + rho*)`` and
    ``t = -(1/2) log alpha_bar`` (positive for every ``Lam > 0``: ``phi_gaussian(0) = 1``).

    Parameters
    ----------
    Lam : float > 0
        Variance along the class axis.
    level : float in (1/2, 1)
        Crossing level (default :data:`PHI_SPECIATION`).

    Returns
    -------
    float
        Physical time ``> 0``.

    Raises
    ------
    ValueError
        ``Lam <= 0`` or ``level`` outside (1/2, 1).
    """
    Lam = check_real("Lam", Lam, lo=0.0, lo_open=True)
    level = check_real("level", level, lo=0.5, hi=1.0, lo_open=True, hi_open=True)
    rho = float(np.sin(np.pi * (level - 0.5)))
    ab = rho / (Lam * (1.0 - rho) + rho)
    return -0.5 * float(np.log(ab))


# ----------------------------------------------------------------------------------------------
# collapse (memorisation) and the excess entropy [BBBM24]
# ----------------------------------------------------------------------------------------------

def _check_Pd(P, d) -> tuple[int, int]:
    return check_positive_int("P", P), check_positive_int("d", d)


def collapse_time(P: int, d: int, sigma2: float) -> float:
    """Collapse (memorisation) time ``t_C`` of the empirical score of ``P`` isotropic Gaussian
    points in ``d`` dimensions [BBBM24].

    ``t_C`` is where the excess entropy density vanishes (:func:`excess_entropy`):
    ``alpha = (1/2) log(1 + sigma2 e^{-2t} / Delta_t)``, ``alpha = log(P) / d``,
    ``Delta_t = 1 - e^{-2t}``, so ``t_C = (1/2) log(1 + sigma2 / (e^{2 alpha} - 1))``
    (``docs/theory.md``, "Speciation, cloning and collapse"). Keeping ``t_C`` small needs ``P``
    exponential in ``d``.

    Parameters
    ----------
    P : int >= 1
        Training points.
    d : int >= 1
        Dimension.
    sigma2 : float > 0
        Per-dimension variance of the data (for Curie-Weiss at ``beta > 1``, the within-state
        variance ``1 - m*^2``).

    Returns
    -------
    float
        Physical time; ``inf`` for ``P = 1`` (one point: the score is collapsed at all times).

    Raises
    ------
    ValueError
        ``P`` or ``d`` < 1, ``sigma2 <= 0``.
    """
    P, d = _check_Pd(P, d)
    sigma2 = check_real("sigma2", sigma2, lo=0.0, lo_open=True)
    c = float(np.expm1(2.0 * np.log(P) / d))
    return float("inf") if c == 0.0 else 0.5 * float(np.log1p(sigma2 / c))


def excess_entropy(t, P: int, d: int, sigma2: float, *, normalized: bool = True) -> np.ndarray:
    """Excess entropy density ``f^e(t)`` of ``P`` isotropic Gaussian training points [BBBM24].

    With ``alpha = log(P) / d`` and ``Delta_t = 1 - e^{-2t}``,

        f^e(t) = max(0, alpha - (1/2) log(1 + sigma2 e^{-2t} / Delta_t)),

    ``(1/d)`` times the entropy of the training index given ``x_t`` in the large-``d`` limit: it
    is ``alpha`` (the index is unknown) at large ``t``, decreases as ``t`` falls and vanishes at
    the collapse time :func:`collapse_time`, below which ``x_t`` pins down its training point and
    the empirical score memorises (``docs/theory.md``, "Speciation, cloning and collapse").

    Parameters
    ----------
    t : float or array_like
        Physical times ``>= 0`` (``t = 0`` gives 0).
    P : int >= 2
        Training points.
    d : int >= 1
        Dimension.
    sigma2 : float > 0
        Per-dimension data variance.
    normalized : bool
        Return ``f^e(t) / alpha`` (in [0, 1], the curve of [BBBM24]'s figures; default) instead of
        ``f^e(t)`` (nats per dimension).

    Returns
    -------
    ndarray, float64, shape of ``t``

    Raises
    ------
    ValueError
        Negative or non-finite ``t``; ``P < 2``, ``d < 1`` or ``sigma2 <= 0``.
    """
    tt = _check_times(t)
    P, d = _check_Pd(P, d)
    if P < 2:
        raise ValueError(f"P must be >= 2 (alpha = log(P)/d = 0 for one point), got {P}")
    sigma2 = check_real("sigma2", sigma2, lo=0.0, lo_open=True)
    alpha = np.log(P) / d
    with np.errstate(divide="ignore"):
        snr = sigma2 * np.exp(-2.0 * tt) / -np.expm1(-2.0 * tt)  # inf at t = 0
    f = np.maximum(alpha - 0.5 * np.log1p(snr), 0.0)
    return f / alpha if normalized else f


def excess_entropy_empirical(x0, t, n_eval: int = 2000, seed: SeedLike = None, *,
                             normalized: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Monte Carlo estimate of the excess entropy density from a training set [BBBM24].

    The protocol of [BBBM24]: draw ``n_eval`` training points ``a_mu`` (uniformly, with
    replacement) and noise them to time ``t``, ``x = e^{-t} a_mu + sqrt(Delta_t) z``; evaluate the
    empirical density ``P^e_t(x) = (1/P) sum_nu N(x; e^{-t} a_nu, Delta_t I)`` by log-sum-exp over
    the ``P`` points, and return

        f^e(t) = (1/d) mean_x log P^e_t(x) + s_sep,   s_sep = alpha + (1/2) log(2 pi e Delta_t),

    ``alpha = log(P) / d``. For isotropic Gaussian data it tends to :func:`excess_entropy` as
    ``d`` grows (away from ``t_C``, the finite-``P`` bias is of order
    ``e^{d (alpha - 2 f^e)} / d``; ``docs/theory.md``, "Speciation, cloning and collapse").

    Parameters
    ----------
    x0 : array_like, shape (P, d)
        Training points, ``P >= 2``.
    t : float or array_like (K,)
        Physical times ``> 0``.
    n_eval : int >= 2
        Noised points per time.
    seed : int, numpy.random.Generator or None
    normalized : bool
        Divide by ``alpha`` (default), as :func:`excess_entropy`.

    Returns
    -------
    f : ndarray, float64, shape of ``t``
        The estimate (not clipped: statistical noise can make it slightly negative).
    stderr : ndarray, float64, shape of ``t``
        Its standard error over the ``n_eval`` points.

    Raises
    ------
    ValueError
        ``x0`` not 2-D with ``P >= 2`` finite rows, ``t <= 0`` or non-finite, ``n_eval < 2``.

    Notes
    -----
    Cost ``O(n_eval P d)`` per time, in chunks of at most ~4e6 distances.
    """
    x0 = np.asarray(x0, dtype=np.float64)
    if x0.ndim != 2 or x0.shape[0] < 2 or x0.shape[1] < 1 or not np.all(np.isfinite(x0)):
        raise ValueError(f"x0 must be a finite (P, d) array with P >= 2 training points, got shape {x0.shape}")
    tt = _check_times(t)
    if np.any(tt <= 0.0):
        raise ValueError("t must be > 0 (at t = 0 the empirical density is a sum of point masses)")
    n_eval = check_positive_int("n_eval", n_eval, minimum=2)
    rng = as_generator(seed)
    P, d = x0.shape
    alpha = np.log(P) / d
    sq0 = np.sum(x0**2, axis=1)
    f, err = np.empty(tt.shape), np.empty(tt.shape)
    chunk = max(1, 4_000_000 // P)
    for idx, ti in np.ndenumerate(tt):
        s, delta = float(np.exp(-ti)), float(-np.expm1(-2.0 * ti))
        x = s * x0[rng.integers(0, P, n_eval)] + np.sqrt(delta) * rng.standard_normal((n_eval, d))
        vals = np.empty(n_eval)
        for a in range(0, n_eval, chunk):
            xa = x[a:a + chunk]
            dist2 = np.maximum(np.sum(xa**2, axis=1)[:, None] - 2.0 * s * (xa @ x0.T) + s * s * sq0[None, :], 0.0)
            log_pe = special.logsumexp(-dist2 / (2.0 * delta), axis=1) - np.log(P) - 0.5 * d * np.log(2 * np.pi * delta)
            vals[a:a + chunk] = log_pe / d
        s_sep = alpha + 0.5 * np.log(2.0 * np.pi * np.e * delta)
        f[idx] = vals.mean() + s_sep
        err[idx] = vals.std(ddof=1) / np.sqrt(n_eval)
    if normalized:
        return f / alpha, err / alpha
    return f, err


def phi_empirical_mixture(t, x_train, labels, *, n_samples: int = 2000, seed: SeedLike = None,
                          chunk: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """Cloning probability of the exact score of a training set, by Monte Carlo over ``x_t``.

    The exact score of ``P`` training points ``x_j`` is that of the empirical mixture ``p_t(x) =
    (1/P) sum_j N(x; s x_j, Delta I)``. For exact reverse dynamics the clones' endpoints are
    independent draws from the posterior over training points, ``w_j(x_t) ∝ exp(-|x_t - s x_j|^2 /
    (2 Delta))``, so with ``P(c | x_t) = sum_{j in c} w_j``

        phi(t) = E_{x_t ~ p_t}[ sum_c P(c | x_t)^2 ]                    [BBBM24]

    ``x_t = s x_j + sqrt(Delta) xi`` is sampled exactly and ``P(c | x_t)`` computed exactly
    (max-shifted exponentials), so the estimator is Rao-Blackwellised. The same draws ``(j, xi)`` serve every
    time (common random numbers): with ``G = X_j X^T`` and ``Z = xi X^T`` computed once, ``x_t . x_i
    = s G + sqrt(Delta) Z``, and each time costs ``O(n_samples P)`` instead of ``O(n_samples P d)``.
    This score memorises below the collapse time, which leaves the speciation time alone while
    ``t_C < t_S`` [BBBM24]; see ``docs/theory.md``, "MNIST studies".

    Parameters
    ----------
    t : float or array_like, shape (K,)
        Physical times ``t = -(1/2) log alpha_bar > 0``.
    x_train : array_like, shape (P, d)
    labels : array_like, shape (P,)
        Class of each training point (any comparable values).
    n_samples : int >= 2
        Monte Carlo samples (per time, shared by all times).
    seed : int, Generator or None
    chunk : int >= 1
        Samples per batch (memory about ``4 chunk P`` float64).

    Returns
    -------
    phi, stderr : ndarray, float64, shape ``t.shape``
        The estimate and its standard error (errors at different times are correlated).

    Raises
    ------
    ValueError
        Non-positive or non-finite times, bad shapes, ``n_samples < 2``.
    """
    tt = np.asarray(t, dtype=np.float64)
    if not np.all(np.isfinite(tt)) or np.any(tt <= 0.0):
        raise ValueError("t must hold finite physical times > 0 (at t = 0 the posterior is a point mass)")
    x = as_samples("x_train", x_train, dtype=np.float64)
    labels = np.asarray(labels)
    if labels.shape != (x.shape[0],):
        raise ValueError(f"labels must have shape ({x.shape[0]},), got {labels.shape}")
    n_samples = check_positive_int("n_samples", n_samples, minimum=2)
    chunk = check_positive_int("chunk", chunk)
    rng = as_generator(seed)
    _, cls = np.unique(labels, return_inverse=True)
    onehot = np.zeros((x.shape[0], cls.max() + 1))
    onehot[np.arange(x.shape[0]), cls] = 1.0
    sq = 0.5 * np.einsum("ij,ij->i", x, x)
    s = np.exp(-tt.ravel())
    delta = -np.expm1(-2.0 * tt.ravel())
    vals = np.empty((tt.size, n_samples))
    for start in range(0, n_samples, chunk):
        n = min(chunk, n_samples - start)
        j = rng.integers(0, x.shape[0], size=n)
        H = x[j] @ x.T
        H -= sq[None, :]  # x_j.x_i - |x_i|^2 / 2
        Z = rng.standard_normal((n, x.shape[1])) @ x.T  # xi.x_i
        logw, tmp = np.empty_like(H), np.empty_like(H)
        for k in range(tt.size):
            # log w_i = (s x_t.x_i - s^2 |x_i|^2 / 2) / Delta + const(x_t)
            #         = (s^2 / Delta) H + (s / sqrt(Delta)) Z, computed in place
            np.multiply(H, s[k] * s[k] / delta[k], out=logw)
            logw += np.multiply(Z, s[k] / math.sqrt(delta[k]), out=tmp)
            logw -= logw.max(axis=1, keepdims=True)
            np.exp(logw, out=logw)
            pc = logw @ onehot  # unnormalised class posteriors; their sum is the normaliser
            pc /= pc.sum(axis=1, keepdims=True)
            vals[k, start:start + n] = np.sum(pc * pc, axis=1)
    phi = vals.mean(axis=1).reshape(tt.shape)
    err = (vals.std(axis=1, ddof=1) / math.sqrt(n_samples)).reshape(tt.shape)
    return phi, err
