"""Exact scores of diffused Gaussian and two-Gaussian data, and the theory of the cloning
probability ``phi(t)`` of [BBBM24].

All formulas are written with ``s = sqrt(alpha_bar)`` and ``Delta = 1 - alpha_bar`` (REFERENCES.md
sec. 1), so they hold for the discrete DDPM chain and for the Ornstein-Uhlenbeck process
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
speciation time is ``phi(t_S) = 0.775200`` (:data:`PHI_SPECIATION`).

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

import numpy as np
from scipy import integrate, linalg, special

from .._util import SeedLike, as_generator, check_positive_int, check_real
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
    "speciation_time_phi",
]

#: Universal large-N value of the cloning probability at the speciation time [BBBM24]:
#: ``phi = E_g[expit(2 + 2 g)]``, g ~ N(0, 1), the two-cluster formula at ``m e^{-t} = 1``,
#: ``Gamma = 1`` (REFERENCES.md sec. 5 gives 0.775200).
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
    ``s = sqrt(alpha_bar)``, ``Delta = 1 - alpha_bar`` (REFERENCES.md sec. 1; [Ho20] eq. 4), so
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
    ``score = -(x_t - s E[x0 | x_t]) / Delta`` (REFERENCES.md sec. 1).

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
    total = float(special.ndtr(mu / sd))
    lo, hi = max(-_U_CUT, mu - 40.0 * sd), min(_U_CUT, mu + 40.0 * sd)

    def f(u):
        return -np.sign(u) * special.expit(-abs(u)) * np.exp(-0.5 * ((u - mu) / sd) ** 2) / (sd * np.sqrt(2 * np.pi))

    for a, b in ((lo, min(hi, 0.0)), (max(lo, 0.0), hi)):
        if b > a:
            pts = [mu] if a < mu < b else None
            total += integrate.quad(f, a, b, points=pts, epsabs=1e-14, epsrel=1e-12, limit=200)[0]
    return total


def phi_two_clusters(t, m_norm, gamma, weight_plus=0.5) -> np.ndarray:
    """Cloning probability ``phi(t)`` of two clusters, the two-cluster theory of [BBBM24].

    ``phi(t) = (1/2) ∫ dq (G+^2 + G-^2) / (G+ + G-)``, ``G+- = N(q; +-m_norm e^{-t}, Gamma(t))``,
    ``Gamma(t) = gamma e^{-2t} + 1 - e^{-2t}`` (REFERENCES.md sec. 5; [BBBM24] Methods): ``q`` is the
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
    exact law ``P_t(mu) = sum_M P(M) N(mu; s M / sqrt(N), Delta)`` (REFERENCES.md sec. 4), the class
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
    logw = _log_esp(2.0 * s * x / delta) + log_prior_over_binom
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


def speciation_time_phi(t, phi, level: float = PHI_SPECIATION) -> float:
    """Time at which ``phi(t)`` first falls through ``level``, linearly interpolated in ``t``.

    The empirical speciation time of [BBBM24]: the crossing of ``phi = 0.7752`` (the universal
    large-N value at ``t_S``, :data:`PHI_SPECIATION`). Pass physical times to get a physical time
    (or step ratios ``k / k_S`` to get a step ratio; the function only interpolates).

    Parameters
    ----------
    t : array_like, shape (K,)
        Times, any order (sorted internally), distinct, finite.
    phi : array_like, shape (K,)
        Cloning probabilities at those times.
    level : float in (0, 1)
        Crossing level.

    Returns
    -------
    t_cross : float
        The first ``t`` (in increasing ``t``) where ``phi`` goes from ``>= level`` to ``< level``,
        linearly interpolated between the two bracketing points.

    Raises
    ------
    ValueError
        Shapes differ, fewer than 2 points, repeated or non-finite times, or ``phi`` never falls
        through ``level`` on the grid (extend the grid to earlier/later times).
    """
    tt = np.asarray(t, dtype=np.float64)
    pp = np.asarray(phi, dtype=np.float64)
    level = check_real("level", level, lo=0.0, hi=1.0, lo_open=True, hi_open=True)
    if tt.ndim != 1 or pp.shape != tt.shape or tt.size < 2:
        raise ValueError(f"t and phi must be 1-D of the same length >= 2, got shapes {tt.shape} and {pp.shape}")
    if not (np.all(np.isfinite(tt)) and np.all(np.isfinite(pp))):
        raise ValueError("t and phi must be finite")
    order = np.argsort(tt, kind="stable")
    tt, pp = tt[order], pp[order]
    if np.any(np.diff(tt) == 0.0):
        raise ValueError("t contains repeated times; average phi over repeats first")
    down = np.flatnonzero((pp[:-1] >= level) & (pp[1:] < level))
    if down.size == 0:
        raise ValueError(f"phi never falls through level={level} on this grid (phi ranges over "
                         f"[{pp.min():.4f}, {pp.max():.4f}]); extend the grid of times")
    i = int(down[0])
    frac = (pp[i] - level) / (pp[i] - pp[i + 1])
    return float(tt[i] + frac * (tt[i + 1] - tt[i]))
