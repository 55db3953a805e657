"""Exact and large-N theory of the Curie-Weiss model as the data of a diffusion model.

``q(a) ∝ exp(beta M^2 / (2N) + h M)`` for spins ``a_i = ±1``, ``M = sum_i a_i``; ``beta`` is the
inverse temperature and ``h`` a per-spin field. The data are diffused by the variance-preserving
forward process ``x_t = s a + sqrt(Delta) eps`` with ``s = sqrt(alpha_bar)``, ``Delta = 1 -
alpha_bar``; physical (Ornstein-Uhlenbeck) time is ``t = -(1/2) log alpha_bar``. numpy + scipy only,
float64 throughout. Formulas and sources: docs/theory.md, "The Curie-Weiss model" (all of them),
"The exact Curie-Weiss score at large N" (the numerics of the exact score) and "Speciation,
cloning and collapse".

Contents
--------
magnetization_distribution, m_star, susceptibility, top_eigenvalue
    Statics of the data.
posterior_mean, score, log_density
    Exact at any N through a one-dimensional Hubbard-Stratonovich integral.
score_asymptotic
    Large-N two-state form [BM23; Thesis eq. 27].
potential, potential_asymptotic, speciation_time
    Potentials of ``mu = sum_i x_i / sqrt(N)`` and the symmetry-breaking times.

References
----------
[BM23] Biroli, Mezard (2023), Generative diffusion in very large dimensions, arXiv:2306.03518.
[BBBM24] Biroli, Bonnaire, de Bortoli, Mezard (2024), Dynamical regimes of diffusion models,
    arXiv:2402.18491 (Nat. Commun. 15:9957).
[RA23] Raya, Ambrogioni (2023), Spontaneous symmetry breaking in generative diffusion models,
    arXiv:2305.19693.
[Thesis] Bustinduy de la Guerra (2024), Out-of-Equilibrium Machine Learning (UCM).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit
from scipy.optimize import brentq
from scipy.special import gammaln, logsumexp

from .._util import check_positive_int, check_real, map_row_blocks

__all__ = [
    "magnetization_distribution",
    "m_star",
    "susceptibility",
    "top_eigenvalue",
    "posterior_mean",
    "score",
    "log_density",
    "score_asymptotic",
    "potential",
    "potential_asymptotic",
    "speciation_time",
]

# Elements per temporary (samples x grid points x spins) block: ~32 MiB of float64.
_BLOCK = 1 << 22
# Hubbard-Stratonovich quadrature (see _hs_integrals): half-width of the margin beyond [-1, 1] in
# units of 1/sqrt(N beta), grid step in the same units, and the log-weight below which a grid
# point is dropped (e^-46 ~ 1e-20 relative). Margin and step put the tail and discretisation errors
# at e^-40 (3e-18), below float64's resolution; 12 and 0.5 (e^-72, e^-79) took 1.6x the points
# (N = 64, beta = 1.5: 89 instead of 55) for the same results to rounding (1e-14 of the score).
_HS_MARGIN = 9.0
_HS_STEP = 0.7
_HS_DROP = 46.0
# Fields larger than beta * (1 + w) + _SAT saturate tanh to +-1 to within e^-2*_SAT.
_SAT = 40.0
# Above this many uniform grid points the integral is done on a grid adapted to the saddles.
_HS_UNIFORM_MAX = 320


# --------------------------------------------------------------------------------------------
# validation helpers
# --------------------------------------------------------------------------------------------

def _check_model(N, beta, h):
    N = check_positive_int("N", N)
    beta = check_real("beta", beta, lo=0.0)
    h = check_real("h", h)
    return N, beta, h


def _check_beta_h(beta, h):
    beta = check_real("beta", beta, lo=0.0)
    h = check_real("h", h)
    return beta, h


def _check_alpha_bar(alpha_bar, what: str) -> np.ndarray:
    """alpha_bar as a float64 array, every entry in the open interval (0, 1)."""
    try:
        ab = np.asarray(alpha_bar, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"alpha_bar must be a real number or array, got {alpha_bar!r}") from None
    if ab.size == 0:
        raise ValueError("alpha_bar is empty; pass a scalar or a non-empty array in (0, 1)")
    if not np.all(np.isfinite(ab)):
        raise ValueError("alpha_bar contains NaN or inf; pass values in the open interval (0, 1)")
    if np.any(ab >= 1.0):
        raise ValueError(
            f"alpha_bar must be < 1 (got max {ab.max()!r}): alpha_bar = 1 is t = 0, where the data "
            f"are a sum of delta functions and the {what} is undefined; use a step t >= 1")
    if np.any(ab <= 0.0):
        raise ValueError(f"alpha_bar must be > 0 (got min {ab.min()!r}); pure noise has "
                         "alpha_bar -> 0 but not 0, take the last step of the schedule")
    return ab


def _prepare(x_t, alpha_bar, what: str):
    """Validate ``x_t`` (n, N) or (N,) and ``alpha_bar`` (scalar or (n,)).

    Returns x (n, N) float64, s (n, 1), Delta (n, 1) and whether x_t was 1-D.
    """
    x = np.asarray(x_t)
    if x.dtype.kind not in "biuf":
        raise ValueError(f"x_t must be a real array, got dtype {x.dtype}")
    x = x.astype(np.float64, copy=False)
    one = x.ndim == 1
    if one:
        x = x[None, :]
    if x.ndim != 2:
        raise ValueError(f"x_t must have shape (n, N) or (N,), got shape {np.shape(x_t)}")
    n, N = x.shape
    if N < 1 or n < 1:
        raise ValueError(f"x_t is empty (shape {np.shape(x_t)}); it needs N >= 1 spins and n >= 1 "
                         "samples")
    # one pass: a finite sum proves every entry finite (the elementwise check only if it is not)
    if not np.isfinite(x.sum()) and not np.all(np.isfinite(x)):
        raise ValueError("x_t contains NaN or inf; clean the input before calling")
    ab = _check_alpha_bar(alpha_bar, what)
    if ab.ndim > 1 or (ab.ndim == 1 and ab.shape[0] not in (1, n)):
        raise ValueError(f"alpha_bar must be a scalar or have shape (n,) = ({n},) to match x_t of "
                         f"shape {np.shape(x_t)}; got shape {ab.shape}")
    ab = np.broadcast_to(ab.reshape(-1), (n,))[:, None]
    s = np.sqrt(ab)
    delta = -np.expm1(np.log(ab))  # 1 - alpha_bar, exact for alpha_bar near 1
    return x, s, delta, one


# --------------------------------------------------------------------------------------------
# statics ([BM23])
# --------------------------------------------------------------------------------------------

def _magnetization_logweights(N: int, beta: float, h: float) -> tuple[np.ndarray, np.ndarray]:
    """``M`` (float64) and the unnormalised ``log[C(N, k) exp(beta M^2/(2N) + h M)]``."""
    k = np.arange(N + 1)
    M = (2 * k - N).astype(np.float64)
    logw = (gammaln(N + 1) - gammaln(k + 1) - gammaln(N - k + 1)
            + beta * M ** 2 / (2.0 * N) + h * M)
    return M, logw


def magnetization_distribution(N: int, beta: float, h: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Exact law of the total magnetization ``M = sum_i a_i`` of the Curie-Weiss model.

    ``P(M) ∝ C(N, (N+M)/2) exp(beta M^2/(2N) + h M)`` for ``M = -N, -N+2, ..., N``, computed in log
    space (docs/theory.md, "The exact Curie-Weiss score at large N").

    Parameters
    ----------
    N : int >= 1
        Number of spins.
    beta : float >= 0
        Inverse temperature.
    h : float
        Per-spin external field.

    Returns
    -------
    M : ndarray, int64, shape (N+1,)
        ``-N, -N+2, ..., N``.
    P : ndarray, float64, shape (N+1,)
        Probabilities, summing to 1.

    Raises
    ------
    ValueError
        ``N < 1``, ``beta < 0`` or non-finite parameters.
    """
    N, beta, h = _check_model(N, beta, h)
    M, logw = _magnetization_logweights(N, beta, h)
    P = np.exp(logw - logsumexp(logw))
    return M.astype(np.int64), P


def m_star(beta: float, h: float = 0.0) -> float:
    """Largest solution ``m*`` of the Curie-Weiss mean-field equation ``m = tanh(beta m + h)``.

    For ``beta > 1`` and a small field opposing the ordered state, the largest root is the
    (metastable) positive one. For ``beta <= 1`` and ``h = 0`` it is exactly 0.
    Source: the mean-field equation of [BM23]. Solved with
    ``scipy.optimize.brentq`` on a bracket where ``tanh(beta m + h) - m`` is monotone.

    Parameters
    ----------
    beta : float >= 0
        Inverse temperature.
    h : float
        Per-spin field.

    Returns
    -------
    float
        ``m*`` in ``[-1, 1]`` (dimensionless magnetization per spin).

    Raises
    ------
    ValueError
        ``beta < 0`` or non-finite parameters.
    """
    beta, h = _check_beta_h(beta, h)
    return _m_star(beta, h)


def _m_star(beta: float, h: float) -> float:
    if h == 0.0 and beta <= 1.0:
        return 0.0

    def g(m):
        return math.tanh(beta * m + h) - m

    kw = dict(xtol=1e-15, rtol=4 * np.finfo(float).eps, maxiter=500)
    if beta <= 1.0:  # g is decreasing: one root
        return float(brentq(g, -1.0, 1.0, **kw))
    # g increases on (m_l, m_r) and decreases outside, |beta m + h| = arccosh(sqrt(beta)) at m_l, m_r
    u0 = math.acosh(math.sqrt(beta))
    m_r = min(max((u0 - h) / beta, -1.0), 1.0)
    if g(m_r) >= 0.0:  # the largest root lies on the last decreasing branch
        return float(brentq(g, m_r, 1.0, **kw))
    m_l = min(max((-u0 - h) / beta, -1.0), 1.0)
    return float(brentq(g, -1.0, m_l, **kw))


def susceptibility(beta: float, h: float = 0.0) -> float:
    """Mean-field susceptibility ``chi = (1 - m*^2) / (1 - beta (1 - m*^2))``.

    Source: [BM23]. It is ``inf`` at the critical point ``beta = 1, h = 0``; for
    ``beta < 1, h = 0`` it equals ``1 / (1 - beta)``, and ``Lambda -> chi`` only in that phase.

    Parameters
    ----------
    beta : float >= 0
        Inverse temperature.
    h : float
        Per-spin field.

    Returns
    -------
    float
        ``chi`` (dimensionless, per spin), evaluated at the largest root ``m* = m_star(beta, h)``.

    Raises
    ------
    ValueError
        ``beta < 0`` or non-finite parameters.
    """
    beta, h = _check_beta_h(beta, h)
    if beta == 1.0 and h == 0.0:
        return math.inf
    q = 1.0 - _m_star(beta, h) ** 2
    den = 1.0 - beta * q
    return math.inf if den <= 0.0 else q / den


def top_eigenvalue(N: int, beta: float, h: float = 0.0) -> float:
    """Top eigenvalue ``Lambda = Var(M) / N`` of the Curie-Weiss data covariance, exact.

    The covariance ``<a_i a_j> - <a_i><a_j>`` is ``(1 - c) I + c 1 1^T`` by permutation symmetry;
    its top eigenvector is ``1/sqrt(N)`` with eigenvalue ``Var(M)/N`` (centred variance, so it holds
    for ``h != 0`` too). Source: [BM23]; [BBBM24] (speciation ``t_S = (1/2) log
    Lambda``). Limits: ``beta < 1``: ``1/(1 - beta)``; ``beta = 1``: ``~1.17083 sqrt(N)``;
    ``beta > 1``: ``~N m*^2``.

    Parameters
    ----------
    N : int >= 1
        Number of spins.
    beta : float >= 0
        Inverse temperature.
    h : float
        Per-spin field.

    Returns
    -------
    float
        ``Lambda`` (variance of ``mu = M / sqrt(N)`` under the data).

    Raises
    ------
    ValueError
        ``N < 1``, ``beta < 0`` or non-finite parameters.
    """
    N, beta, h = _check_model(N, beta, h)
    M, logw = _magnetization_logweights(N, beta, h)
    P = np.exp(logw - logsumexp(logw))
    mean = float(P @ M)
    return float(P @ (M - mean) ** 2) / N


# --------------------------------------------------------------------------------------------
# exact posterior through Hubbard-Stratonovich (docs/theory.md, "The exact Curie-Weiss score at large N")
# --------------------------------------------------------------------------------------------

def _log2cosh(u: np.ndarray) -> np.ndarray:
    """``log(2 cosh u)`` without overflow: ``|u| + log1p(exp(-2|u|))``."""
    a = np.abs(u)
    return a + np.log1p(np.exp(-2.0 * a))


def _hs_geometry(N: int, beta: float):
    """Uniform trapezoid lattice on ``[-1 - w, 1 + w]``: (m0, dx, G, Hc)."""
    sq = math.sqrt(N * beta)
    w = _HS_MARGIN / sq
    G = int(math.ceil((2.0 + 2.0 * w) / (_HS_STEP / sq))) + 1
    dx = (2.0 + 2.0 * w) / (G - 1)
    Hc = beta * (1.0 + w) + _SAT
    return -1.0 - w, dx, G, Hc


def _fast_logcosh(H: np.ndarray, m: np.ndarray, beta: float) -> bool:
    """Whether ``log cosh(beta m + H)`` may be taken directly for these fields and grid points:
    twice as fast as the overflow-safe form, and safe while ``|u| < 700``."""
    return float(np.abs(H).max()) + beta * float(np.abs(m).max()) < 700.0


def _reduced_F(H: np.ndarray, m: np.ndarray, beta: float, N: int, lin: np.ndarray | None = None,
               fast: bool | None = None, scratch: np.ndarray | None = None):
    """``F(m) = -N beta m^2/2 + sum_i [log 2cosh(beta m + H_i) - |H_i|]`` (+ ``beta m lin``).

    ``H`` (c, N') fields of the sites treated numerically, ``m`` (c, g) or (g,) grid points.
    Returns (c, g). Blocked so that no temporary exceeds ``_BLOCK`` elements. ``fast``: whether
    ``log cosh`` may be taken directly (default: decided from these ``H`` and ``m``; a caller
    splitting rows passes the whole set's decision, so that rows do not depend on the split).
    ``scratch``: a float64 buffer of at least ``c g N'`` elements for the blocks' temporary.
    """
    c, Np = H.shape
    m2 = np.broadcast_to(m, (c, m.shape[-1]))
    g = m2.shape[1]
    out = -0.5 * N * beta * m2 ** 2
    if lin is not None:
        out = out + beta * m2 * lin[:, None]
    if Np == 0:
        return out
    absH = np.abs(H).sum(axis=1)
    if fast is None:
        fast = _fast_logcosh(H, m2, beta)
    step = max(1, _BLOCK // max(1, c * Np))
    for j in range(0, g, step):
        shape = (c, min(step, g - j), Np)
        U = np.add(beta * m2[:, j:j + step, None], H[:, None, :],
                   out=None if scratch is None else scratch[:math.prod(shape)].reshape(shape))
        if fast:
            np.cosh(U, out=U)
            np.log(U, out=U)
            out[:, j:j + step] += U.sum(axis=2) + (Np * math.log(2.0)) - absH[:, None]
        else:
            out[:, j:j + step] += _log2cosh(U).sum(axis=2) - absH[:, None]
    return out


def _weighted_tanh(H: np.ndarray, m: np.ndarray, wts: np.ndarray, beta: float, step: int | None = None,
                   scratch: np.ndarray | None = None) -> np.ndarray:
    """``sum_g wts[c, g] tanh(beta m[c, g] + H[c, i])`` -> (c, N'), blocked over ``step`` grid points
    at a time (default: no temporary above ``_BLOCK`` elements); ``scratch`` as in :func:`_reduced_F`."""
    c, Np = H.shape
    m2 = np.broadcast_to(m, (c, m.shape[-1]))
    g = m2.shape[1]
    out = np.zeros((c, Np))
    step = max(1, _BLOCK // max(1, c * Np)) if step is None else step
    for j in range(0, g, step):
        shape = (c, min(step, g - j), Np)
        T = np.add(beta * m2[:, j:j + step, None], H[:, None, :],
                   out=None if scratch is None else scratch[:math.prod(shape)].reshape(shape))
        np.tanh(T, out=T)
        out += np.einsum("cg,cgi->ci", wts[:, j:j + step], T)
    return out


def _hs_uniform(H: np.ndarray, beta: float, need_mean: bool):
    """Trapezoid rule on the whole uniform lattice, vectorised over samples (moderate N beta)."""
    n, N = H.shape
    m0, dx, G, _ = _hs_geometry(N, beta)
    m = m0 + dx * np.arange(G)
    logq = np.full(G, math.log(dx))
    logq[[0, -1]] = math.log(dx / 2.0)
    logI = np.empty(n)
    mean = np.empty((n, N)) if need_mean else None
    chunk = max(1, _BLOCK // (G * N))
    for a in range(0, n, chunk):
        Hb = H[a:a + chunk]
        fast = _fast_logcosh(Hb, m, beta)  # decided for the whole chunk
        F = map_row_blocks(lambda r, buf: _reduced_F(Hb[r], m, beta, N, fast=fast, scratch=buf), len(Hb),
                           G * N) + logq
        lI = logsumexp(F, axis=1)
        logI[a:a + chunk] = lI
        if need_mean:
            keep = np.flatnonzero(np.max(F - F.max(axis=1, keepdims=True), axis=0) > -_HS_DROP)
            wts = np.exp(F[:, keep] - F.max(axis=1, keepdims=True))
            wts /= wts.sum(axis=1, keepdims=True)
            step = max(1, _BLOCK // (len(Hb) * N))  # the chunk's grid blocks, whatever the row blocks
            tanh_sum = map_row_blocks(lambda r, buf: _weighted_tanh(Hb[r], m[keep], wts[r], beta, step, buf),
                                      len(Hb), min(step, keep.size) * N)
            mean[a:a + chunk] = np.clip(tanh_sum, -1.0, 1.0)
    return logI, mean


def _hs_adaptive_one(Hrow: np.ndarray, beta: float, need_mean: bool):
    """One sample, large N beta: the uniform lattice of ``_hs_uniform``, restricted to the saddles.

    ``F''(m) >= -N beta`` everywhere, so between two points a distance ``d`` apart ``F`` exceeds
    its chord by at most ``N beta d^2 / 8``. Starting from every 64th lattice point, intervals whose
    bound ``max(F(ends)) + N beta d^2/8`` is below ``max F - _HS_DROP`` are discarded and the others
    are cut in four, down to the lattice step. Every saddle whose weight is not negligible (both
    ferromagnetic ones near symmetry breaking) survives; the discarded lattice points carry less
    than ``G e^-46`` of the weight, so the result equals the whole-lattice trapezoid sum.
    """
    N = Hrow.shape[0]
    m0, dx, G, Hc = _hs_geometry(N, beta)
    sat = np.abs(Hrow) >= Hc
    lin = np.array([np.sign(Hrow[sat]).sum()])  # saturated sites: log2cosh - |H| = sign(H) beta m
    Hu = Hrow[~sat][None, :]
    Fk = np.full(G, np.nan)  # F on the lattice, filled on demand

    def fill(k):
        k = k[np.isnan(Fk[k])]
        if k.size:
            Fk[k] = _reduced_F(Hu, m0 + dx * k, beta, N, lin)[0]

    S = 64
    ka = np.arange(0, G - 1, S)
    kb = np.minimum(ka + S, G - 1)
    fill(np.union1d(ka, kb))
    curv = N * beta * dx * dx / 8.0
    while True:
        bound = np.maximum(Fk[ka], Fk[kb]) + curv * (kb - ka) ** 2
        keep = bound >= np.nanmax(Fk) - _HS_DROP
        ka, kb = ka[keep], kb[keep]
        if S == 1:
            break
        S //= 4
        ka = np.concatenate([np.arange(a, b, S) for a, b in zip(ka, kb)])
        kb = np.minimum(ka + S, G - 1)
        fill(np.union1d(ka, kb))
    k = np.union1d(ka, kb)
    m = m0 + dx * k
    logq = np.full(k.shape, math.log(dx))
    logq[(k == 0) | (k == G - 1)] = math.log(dx / 2.0)
    F = Fk[k] + logq
    lI = float(logsumexp(F))
    if not need_mean:
        return lI, None
    keep = F - F.max() > -_HS_DROP
    wts = np.exp(F[keep] - F.max())
    wts /= wts.sum()
    mean = np.empty(N)
    mean[sat] = np.sign(Hrow[sat])
    if Hu.shape[1]:
        mean[~sat] = np.clip(_weighted_tanh(Hu, m[keep], wts[None, :], beta)[0], -1.0, 1.0)
    return lI, mean


def _hs_integrals(fields: np.ndarray, beta: float, need_mean: bool):
    """``log Z({h_i}) - sum_i |h_i|`` and ``<a_i>`` for the Curie-Weiss model with site fields.

    ``Z = sum_a exp(beta M^2/(2N) + sum_i h_i a_i) = sqrt(N beta / 2 pi) int dm e^{-N Phi(m)}``,
    ``Phi(m) = beta m^2/2 - (1/N) sum_i log 2cosh(beta m + h_i)`` (docs/theory.md, "The exact
    Curie-Weiss score at large N"). The
    integrand is entire and, since ``|cosh(u + iv)| <= cosh(u)``, grows at most like
    ``exp(N beta v^2 / 2)`` off the real axis; the trapezoid rule with step
    ``_HS_STEP / sqrt(N beta)`` therefore has relative error ``< exp(-2 pi^2 / _HS_STEP^2) ~ e^-40``,
    and the tails beyond ``|m| = 1 + 9/sqrt(N beta)`` weigh ``< e^-40``: both below float64's
    resolution (``2^-53 ~ e^-37``). Fields beyond ``Hc`` are
    clipped to ``±Hc``: ``log 2cosh(beta m + h) - |h| = sign(h) beta m`` to ``e^-80`` there, which
    keeps the sums exact in floating point even for ``|h_i| ~ 1e6``.
    """
    n, N = fields.shape
    if beta == 0.0:
        logZr = np.log1p(np.exp(-2.0 * np.abs(fields))).sum(axis=1)
        return logZr, (np.tanh(fields) if need_mean else None)
    _, _, G, Hc = _hs_geometry(N, beta)
    H = np.clip(fields, -Hc, Hc)
    if _METHOD == "taylor" or (_METHOD == "auto" and N >= _TAYLOR_MIN_N):
        logI = np.empty(n)
        mean = np.empty((n, N)) if need_mean else None
        bad = []
        chunk = max(1, _TAYLOR_CHUNK // N)
        work = (np.empty(min(n, chunk) * N), np.empty(min(n, chunk) * N))
        cp, cm = _saddle_starts(H, beta)  # all samples at once: few numpy calls
        # a shorter expansion first at large N (cheaper, usually certified), the full one for the rest
        K1 = _TAYLOR_K_LARGE_N if N >= _TAYLOR_LARGE_N else _TAYLOR_K
        for a in range(0, n, chunk):
            lI, mI, ok = _taylor_integrals(H[a:a + chunk], beta, need_mean, K=K1, work=work,
                                           starts=(cp[a:a + chunk], cm[a:a + chunk]))
            logI[a:a + chunk] = lI
            if need_mean:
                mean[a:a + chunk] = mI
            bad.append(a + np.flatnonzero(~ok))
        bad = np.concatenate(bad)
        if bad.size and K1 < _TAYLOR_K:
            redo, bad = bad, []
            for a in range(0, redo.size, chunk):
                rows = redo[a:a + chunk]
                lI, mI, ok = _taylor_integrals(H[rows], beta, need_mean, work=work,
                                               starts=(cp[rows], cm[rows]))
                logI[rows] = lI
                if need_mean:
                    mean[rows] = mI
                bad.append(rows[~ok])
            bad = np.concatenate(bad)
        if bad.size:
            lI, mI = _hs_quadrature(H[bad], beta, need_mean)
            logI[bad] = lI
            if need_mean:
                mean[bad] = mI
    else:
        logI, mean = _hs_quadrature(H, beta, need_mean)
    logZr = 0.5 * math.log(N * beta / (2.0 * math.pi)) + logI
    return logZr, mean


def _hs_quadrature(H: np.ndarray, beta: float, need_mean: bool):
    """Lattice trapezoid sum ``log int dm e^{F(m)}`` and ``<a_i>`` for clipped fields ``H``."""
    n, N = H.shape
    _, _, G, _ = _hs_geometry(N, beta)
    if G <= _HS_UNIFORM_MAX:
        logI, mean = _hs_uniform(H, beta, need_mean)
    else:
        logI = np.empty(n)
        mean = np.empty((n, N)) if need_mean else None
        for r in range(n):
            logI[r], mr = _hs_adaptive_one(H[r], beta, need_mean)
            if need_mean:
                mean[r] = mr
    return logI, mean


# --------------------------------------------------------------------------------------------
# fast large-N path: Taylor expansion of the m-law around its saddles
# --------------------------------------------------------------------------------------------

# "auto" (Taylor where certified, quadrature otherwise), "taylor" (same; for tests) or
# "quadrature" (always the lattice quadrature above).
_METHOD = "auto"
# Taylor order of sum_i log 2cosh(beta (c + delta) + H_i) in beta delta (the tanh series of the
# posterior mean has order _TAYLOR_K - 1); trust radius |beta delta| <= _TAYLOR_R (< pi/2, the
# radius of convergence at u = 0); spins of the subsample that locates the saddles; and the
# smallest N for which "auto" tries the expansion.
_TAYLOR_K = 16
_TAYLOR_R = 1.2
_TAYLOR_SUB = 128
_TAYLOR_MIN_N = 200
# from this N on, a first try with the shorter expansion _TAYLOR_K_LARGE_N
_TAYLOR_LARGE_N = 5000
_TAYLOR_K_LARGE_N = 10
# certified bounds: relative error of Z, absolute error of <a_i>
_TAYLOR_TOL = 1e-12
# spins (samples x N) per batch of the expansion: one (chunk, N) tanh array per centre
_TAYLOR_CHUNK = 1 << 18


def _derivative_polynomials(K: int):
    """Coefficients ``C[k, j]`` of ``D^k(tau) = sum_j C[k, j] tau^j``, ``D^0 = tau``,
    ``D^{k+1} = (1 - tau^2) d/dtau D^k`` (so ``D^k(tanh u) = d^k tanh(u) / du^k``), k <= K+1,
    and ``B[k] = max_{|tau| <= 1} |D^k(tau)|`` (bound on the (k+1)-th derivative of log 2cosh).
    """
    C = np.zeros((K + 2, K + 3))
    C[0, 1] = 1.0
    for k in range(K + 1):
        j = np.arange(1, K + 2)
        d = j * C[k, j]  # coefficient of tau^{j-1} in d/dtau D^k
        C[k + 1, j - 1] += d
        C[k + 1, j + 1] -= d
    tau = np.linspace(-1.0, 1.0, 40001)
    B = np.array([np.abs(np.polynomial.polynomial.polyval(tau, C[k])).max() for k in range(K + 2)])
    return C, B * 1.01 + 1e-300  # 1% margin for the maximum between grid points


_DPOLY = {}


def _dpoly(K: int):
    if K not in _DPOLY:
        _DPOLY[K] = _derivative_polynomials(K)
    return _DPOLY[K]


_LOG2 = math.log(2.0)
# spins per block of the numba kernels below (a block of float64 stays in L1)
_KB = 512


@njit(cache=True)
def _neumaier(v, m):  # pragma: no cover - compiled
    """Compensated sum of ``v[:m]`` (no fast-math: the compensation must not be reassociated)."""
    s, comp = 0.0, 0.0
    for i in range(m):
        t = s + v[i]
        if abs(s) >= abs(v[i]):
            comp += (s - t) + v[i]
        else:
            comp += (v[i] - t) + s
        s = t
    return s + comp


@njit(cache=True, fastmath={"reassoc", "contract", "nsz"})
def _centre_kernel(H, cb, T, J, need_L0, p, L0):  # pragma: no cover - compiled
    """One pass over ``T[r] = tanh(cb[r] + H[r])``: ``p[r, j] = sum_i T[r, i]^j``, ``j = 0..J``, and
    (if ``need_L0``) ``L0[r] = sum_i [log 2cosh(cb[r] + H[r, i]) - |H[r, i]|]``.

    ``log 2cosh(u) - |H| = (|u| - |H|) + log 2 - log(1 + |tanh u|)`` (exact identity, no cancellation
    for large ``|u|``), and ``|u| - |H| = c sign(H)`` where ``u = c + H`` and ``H`` have the same sign,
    ``-c sign(H) - 2 |H|`` (with ``|H| < |c|``) where they do not: an exact integer count times ``c``
    plus a sum of small terms. The product of ``1 + |tau| in [1, 2]`` is renormalised by ``frexp``
    every ``_KB`` spins (one logarithm per row, the powers of 2 an exact integer). Block sums are
    combined with compensation, so ``L0`` is good to about an ulp of its size.
    """
    n, N = T.shape
    w = np.empty(_KB)
    nb = (N + _KB - 1) // _KB
    blk = np.empty(max(nb, 5))
    for r in range(n):
        for j in range(J + 1):
            p[r, j] = 0.0
        p[r, 0] = N
        c = cb[r]
        mant, ex, cnt = 1.0, 0, 0.0
        for bi in range(nb):
            a = bi * _KB
            L = min(N - a, _KB)
            Tr = T[r, a:a + L]
            for i in range(L):
                w[i] = Tr[i]
            for j in range(1, J + 1):
                acc = 0.0
                for i in range(L):
                    acc += w[i]
                    w[i] *= Tr[i]
                p[r, j] += acc
            if need_L0:
                Hr = H[r, a:a + L]
                prod = 1.0
                small = 0.0
                for i in range(L):
                    prod *= 1.0 + abs(Tr[i])
                    h = Hr[i]
                    sg = 1.0 if h >= 0.0 else -1.0
                    if ((c + h) >= 0.0) == (h >= 0.0):
                        cnt += sg
                    else:
                        cnt -= sg
                        small += abs(h)
                blk[bi] = small
                mant, e = math.frexp(mant * prod)
                ex += e
        if need_L0:
            small = _neumaier(blk, nb)
            blk[0] = c * cnt
            blk[1] = -2.0 * small
            blk[2] = (N - ex) * _LOG2
            blk[3] = -math.log(mant)
            L0[r] = _neumaier(blk, 4)


@njit(cache=True, fastmath={"contract"})
def _horner(coef, t, L, out):  # pragma: no cover - compiled
    """``out[i] = sum_k coef[k] t[i]^k`` for ``i < L``, by Horner."""
    deg = coef.shape[0] - 1
    for i in range(L):
        out[i] = coef[deg]
    for k in range(deg - 1, -1, -1):
        ck = coef[k]
        for i in range(L):
            out[i] = out[i] * t[i] + ck


@njit(cache=True, fastmath={"contract"})
def _mean_kernel(Qp, Tp, idx, Qm, Tm, out):  # pragma: no cover - compiled
    """``out[r] = clip(sum_k Qp[r, k] Tp[r]^k + [sum_k Qm[q, k] Tm[q]^k if q = idx[r] >= 0], -1, 1)``
    by Horner, blocked (``Qp``, ``Qm`` of the same width)."""
    n, N = Tp.shape
    w = np.empty(_KB)
    for r in range(n):
        q = idx[r]
        for a in range(0, N, _KB):
            L = min(N - a, _KB)
            o = out[r, a:a + L]
            _horner(Qp[r], Tp[r, a:a + L], L, o)
            if q >= 0:
                _horner(Qm[q], Tm[q, a:a + L], L, w)
                for i in range(L):
                    o[i] += w[i]
            for i in range(L):
                o[i] = min(max(o[i], -1.0), 1.0)


def _taylor_centre(H: np.ndarray, c: np.ndarray, beta: float, K: int, need_L0: bool, work=None):
    """Expansion of the reduced ``F(c + delta)`` (see ``_reduced_F``) in powers of ``delta``.

    With ``u_i = beta c + H_i``, ``tau_i = tanh u_i``::

        sum_i log2cosh(u_i + beta delta) = sum_i log2cosh(u_i) + sum_{k=1}^{K+1} (beta delta)^k / k! S_{k-1}
        S_k = sum_i D^k(tau_i) = sum_j C[k, j] p_j,     p_j = sum_i tau_i^j,

    exact up to ``N B[K+1] (beta |delta|)^{K+2} / (K+2)!`` (Lagrange remainder). Returns the
    coefficients ``A`` (n, K+2) of ``F`` in powers of ``delta`` (the constant term is 0 unless
    ``need_L0``) and ``tau`` (n, N), in ``work`` if given. One tanh pass and one fused numba pass
    (power sums and ``log 2cosh``) over the spins.
    """
    n, N = H.shape
    C, _ = _dpoly(K)
    cb = beta * c
    T = np.empty((n, N)) if work is None else work.reshape(-1)[:n * N].reshape(n, N)
    np.add(H, cb[:, None], out=T)
    np.tanh(T, out=T)
    p = np.empty((n, K + 2))
    L0 = np.zeros(n)
    _centre_kernel(H, cb, T, K + 1, need_L0, p, L0)
    S = p @ C[:K + 1, :K + 2].T  # (n, K+1): S_0 .. S_K
    A = np.zeros((n, K + 2))
    k = np.arange(1, K + 2)
    A[:, 1:] = S * (beta ** k / np.exp(gammaln(k + 1)))[None, :]
    if need_L0:
        A[:, 0] = L0
    A[:, 0] -= 0.5 * N * beta * c ** 2
    A[:, 1] -= N * beta * c
    A[:, 2] -= 0.5 * N * beta
    return A, T


def _moments(Pw: np.ndarray, d: np.ndarray, K: int) -> np.ndarray:
    """``sum_l Pw[:, l] d[:, l]^q`` for ``q = 0..K-1`` -> (n, K)."""
    out = np.empty((Pw.shape[0], K))
    D = Pw.copy()
    for q in range(K):
        out[:, q] = D.sum(axis=1)
        D *= d
    return out


def _tail_certified(A, d, rem, Fa, a, N, beta, K, limit, side, H):
    """Whether ``F(m) < limit`` for every ``m`` beyond the window end ``a`` (``side = +1``: m > a;
    ``-1``: m < a), rigorously (docs/theory.md, "The exact Curie-Weiss score at large N").

    Mirror so that the tail is ``m' = side m > a' = side a``, ``x = m' - a' >= 0``. With
    ``phi(m) = mean_i tanh(beta m + H_i)`` (increasing, ``|phi| < 1``), ``F'(m) = N beta (phi(m) - m)``;
    ``phi' <= beta`` gives ``F - F(a) <= N beta (s x + (beta - 1) x^2 / 2)``, ``s = side F'(a) / (N beta)``,
    and ``phi(m') <= top`` for ``m' <= 1`` (beyond 1, ``F`` decreases) gives
    ``F - F(a) <= N beta x (2 (top - a') - x) / 2``. The minimum of the two is largest at
    ``x = max(x*, top - a', 0)``, ``x* = 2 (top - a' - s) / beta`` where they cross. ``top = 1`` costs
    nothing; where that is not enough, ``top = side phi(side)`` costs one tanh pass. ``F(a)`` and
    ``F'(a)`` enter with their Lagrange bounds (``rem`` and its derivative).
    """
    C1 = A[:, 1:] * np.arange(1, K + 2)[None, :]
    dF = side * _polyval_rows(C1, d[:, None])[:, 0]
    drem = N * beta * _dpoly(K)[1][K + 1] * np.exp((K + 1) * np.log(np.maximum(beta * np.abs(d), 1e-300))
                                                  - gammaln(K + 2))
    s = (dF + drem) / (N * beta)
    ap = side * a

    def excess(top, s, ap):
        x = np.maximum(np.maximum(2.0 * (top - ap - s) / beta, top - ap), 0.0)
        return np.maximum(0.5 * N * beta * x * (2.0 * (top - ap) - x), 0.0)

    ok = Fa + rem + excess(1.0, s, ap) < limit
    redo = np.flatnonzero(~ok & (Fa + rem < limit))
    if redo.size:
        top = side * np.tanh(side * beta + H[redo]).mean(axis=1)
        ok[redo] = Fa[redo] + rem[redo] + excess(top, s[redo], ap[redo]) < limit[redo]
    return ok


def _polyval_rows(A: np.ndarray, z: np.ndarray) -> np.ndarray:
    """``sum_k A[:, k] z^k`` by Horner, ``A`` (n, K), ``z`` (n, L) -> (n, L)."""
    out = np.broadcast_to(A[:, -1:], z.shape).copy()
    for k in range(A.shape[1] - 2, -1, -1):
        out *= z
        out += A[:, k:k + 1]
    return out


def _saddle_starts(H: np.ndarray, beta: float):
    """Approximate largest and smallest saddles (n,), (n,): the mean-field map
    ``m -> mean_i tanh(beta m + H_i)`` iterated 12 times from ``+1`` and ``-1`` on a subsample of
    ``_TAYLOR_SUB`` spins (they only place the expansion windows; the certificate is exact)."""
    n, N = H.shape
    sub = H[:, np.unique(np.linspace(0, N - 1, min(N, _TAYLOR_SUB)).astype(np.int64))]
    cp, cm = np.ones(n), -np.ones(n)
    for _ in range(12):
        cp = np.tanh(beta * cp[:, None] + sub).mean(axis=1)
        cm = np.tanh(beta * cm[:, None] + sub).mean(axis=1)
    return cp, cm


def _taylor_integrals(H: np.ndarray, beta: float, need_mean: bool, K: int | None = None, work=(None, None),
                      starts=None):
    """The lattice sum of ``_hs_uniform`` (same lattice, same weights) from Taylor expansions.

    Saddles: the mean-field map ``m -> mean_i tanh(beta m + H_i)`` iterated from ``m = +1`` and
    ``m = -1`` on a subsample of the spins gives two centres (merged into one when closer than
    ``0.3 / beta``). Around each centre ``F`` is a polynomial in ``delta`` (``_taylor_centre``),
    evaluated on the lattice points within ``|beta delta| <= _TAYLOR_R`` (points between two centres
    go to the nearer one), and the posterior mean is the tanh series
    ``<a_i> = sum_k beta^k E[delta^k] / k! D^k(tau_i)``, a polynomial in ``tau_i``.

    A sample is certified (``ok``) when (i) the Lagrange remainders bound the relative error of the
    sum by ``_TAYLOR_TOL`` and that of ``<a_i>`` by ``_TAYLOR_TOL``; (ii) the outermost points
    lie ``> _HS_DROP`` below the maximum, with ``F`` decreasing outwards, or at the lattice end; (iii)
    a gap between two trust regions is negligible, bounded by convexity of ``sum_i log 2cosh``
    (``F <= -N beta m^2/2 +`` chord). Returns ``logI`` (n,), ``mean`` (n, N) or None, ``ok`` (n,).
    """
    n, N = H.shape
    K = _TAYLOR_K if K is None else K
    C, B = _dpoly(K)
    m0, dx, G, _ = _hs_geometry(N, beta)
    R = _TAYLOR_R / beta
    cp, cm = _saddle_starts(H, beta) if starts is None else starts
    two = beta * (cp - cm) > 0.3
    cp = np.where(two, cp, 0.5 * (cp + cm))
    # --- expansions; the lattice windows
    L = int(math.floor(2.0 * R / dx)) + 1
    logI = np.full(n, np.nan)
    ok = np.ones(n, dtype=bool)
    rows2 = np.flatnonzero(two)
    need_L0 = bool(rows2.size) or not need_mean  # absolute F needed to weigh two centres / log Z
    Ap, Tp = _taylor_centre(H, cp, beta, K, need_L0, work[0])
    if rows2.size:
        Am, Tm = _taylor_centre(H[rows2], cm[rows2], beta, K, True, work[1])

    def window(c):
        k0 = np.ceil((c - R - m0) / dx).astype(np.int64)
        k = k0[:, None] + np.arange(L)[None, :]
        m = m0 + dx * k
        logq = np.where((k == 0) | (k == G - 1), math.log(dx / 2.0), math.log(dx))
        inside = (k >= 0) & (k <= G - 1)
        return k, m, m - c[:, None], logq, inside

    kp, mp, dp, qp, inp = window(cp)
    Fp = _polyval_rows(Ap, dp)
    remp = N * B[K + 1] * np.exp((K + 2) * np.log(np.maximum(beta * np.abs(dp), 1e-300))
                                 - gammaln(K + 3))
    usep = inp.copy()
    if rows2.size:
        km, mm, dm, qm, inm = window(cm[rows2])
        Fm = _polyval_rows(Am, dm)
        remm = N * B[K + 1] * np.exp((K + 2) * np.log(np.maximum(beta * np.abs(dm), 1e-300))
                                     - gammaln(K + 3))
        split = 0.5 * (cp[rows2] + cm[rows2])
        usep[rows2] &= mp[rows2] > split[:, None]
        usem = inm & (mm <= split[:, None])
    # --- log-sum over each sample's points
    Wp = np.where(usep, Fp + qp, -np.inf)
    top = Wp.max(axis=1)
    if rows2.size:
        Wm = np.where(usem, Fm + qm, -np.inf)
        top[rows2] = np.maximum(top[rows2], Wm.max(axis=1))
    Ep = np.exp(Wp - top[:, None])
    tot = Ep.sum(axis=1)
    err = (Ep * np.expm1(np.minimum(remp, 700.0))).sum(axis=1)
    if rows2.size:
        Em = np.exp(Wm - top[rows2, None])
        tot[rows2] += Em.sum(axis=1)
        err[rows2] += (Em * np.expm1(np.minimum(remm, 700.0))).sum(axis=1)
    logI = top + np.log(tot)
    ok &= err <= _TAYLOR_TOL * tot
    # --- (ii) outer tails: beyond the outermost window F stays below thr (or the lattice ends)
    thr = top - _HS_DROP
    logG = math.log(G)
    ok &= (kp[:, -1] >= G - 1) | _tail_certified(Ap, dp[:, -1], remp[:, -1], Fp[:, -1], mp[:, -1], N, beta, K,
                                                  thr - logG, +1, H)
    one_c = ~two
    if one_c.any():
        ok &= two | (kp[:, 0] <= 0) | _tail_certified(Ap, dp[:, 0], remp[:, 0], Fp[:, 0], mp[:, 0], N,
                                                      beta, K, thr - logG, -1, H)
    if rows2.size:
        ok[rows2] &= (km[:, 0] <= 0) | _tail_certified(Am, dm[:, 0], remm[:, 0], Fm[:, 0], mm[:, 0], N,
                                                       beta, K, thr[rows2] - logG, -1, H[rows2])
        # (iii) gap between the windows: sum log2cosh convex => F(m) <= -N beta m^2/2 + chord
        a, b = mm[:, -1], mp[rows2, 0]
        gap = (b - dx > split) | (a + dx <= split)  # lattice points left uncovered
        if gap.any():
            Ca = Fm[:, -1] + remm[:, -1] + 0.5 * N * beta * a ** 2
            Cb = Fp[rows2, 0] + remp[rows2, 0] + 0.5 * N * beta * b ** 2
            slope = (Cb - Ca) / np.where(gap, b - a, 1.0)
            mx = np.clip(slope / (N * beta), a, b)
            bound = -0.5 * N * beta * mx ** 2 + Ca + slope * (mx - a)
            ok[rows2] &= ~gap | (bound + math.log(G) < thr[rows2])
    ok &= (kp[:, 0] <= G - 1) & np.isfinite(logI)
    if not need_mean:
        return logI, None, ok
    mean, ok_mean = _taylor_mean(Ep / tot[:, None], dp, Tp, rows2,
                                 (Em / tot[rows2, None], dm, Tm) if rows2.size else None, beta, K)
    return logI, mean, ok & ok_mean


def _taylor_mean(Pp, dp, Tp, rows2, other, beta: float, K: int):
    """Posterior mean from the lattice weights ``Pp`` (normalised over both centres) at offsets
    ``dp`` around the first centre (``Tp = tanh(beta cp + H)``) and, for the rows ``rows2``, ``other = (Pm, dm,
    Tm)`` around the second: the tanh series ``<a_i> = sum_k beta^k E[delta^k] / k! D^k(tau_i)``,
    truncated after the first order ``Km`` whose Lagrange remainder ``B[Km] E|beta delta|^Km / Km!``
    is below ``_TAYLOR_TOL`` for every sample. Returns ``mean`` (n, N) and ``ok`` (n,)."""
    C, B = _dpoly(K)
    j = np.arange(K + 1)
    fac = beta ** j / np.exp(gammaln(j + 1))
    abs_p = _moments(Pp, beta * np.abs(dp), K + 1)  # E|beta delta|^q, q = 0..K
    mom_p = _moments(Pp, dp, K)
    if other is not None:
        Pm, dm, Tm = other
        abs_p[rows2] += _moments(Pm, beta * np.abs(dm), K + 1)
        mom_m = _moments(Pm, dm, K)
    rem = B[j] * abs_p / np.exp(gammaln(j + 1))  # (n, K+1): remainder bound after q terms
    fine = np.flatnonzero(np.max(rem, axis=0) <= _TAYLOR_TOL)
    Km = int(fine[0]) if fine.size else K
    Qp = (mom_p[:, :Km] * fac[None, :Km]) @ C[:Km, :Km + 1]  # coefficients in powers of tau
    idx = np.full(Qp.shape[0], -1, dtype=np.int64)
    if other is not None:
        Qm = (mom_m[:, :Km] * fac[None, :Km]) @ C[:Km, :Km + 1]
        idx[rows2] = np.arange(rows2.size)
    else:
        Qm, Tm = Qp[:0], Tp[:0]
    mean = np.empty(Tp.shape)
    _mean_kernel(np.ascontiguousarray(Qp), Tp, idx, np.ascontiguousarray(Qm), Tm, mean)
    return mean, rem[:, Km] <= _TAYLOR_TOL


def posterior_mean(x_t, alpha_bar, beta: float, h: float = 0.0) -> np.ndarray:
    """Exact posterior mean ``E[a | x_t]`` of Curie-Weiss data diffused to ``alpha_bar``, any N.

    Given ``x_t = s a + sqrt(Delta) eps`` the posterior of ``a`` is a Curie-Weiss model with site
    fields ``h_i = h + s x_i / Delta``; its magnetizations are the one-dimensional
    Hubbard-Stratonovich averages (docs/theory.md, "The exact Curie-Weiss score at large N", after
    [BM23])::

        Phi(m) = beta m^2/2 - (1/N) sum_i log 2cosh(beta m + h_i)
        <a_i>  = int dm e^{-N Phi(m)} tanh(beta m + h_i) / int dm e^{-N Phi(m)}

    evaluated by the trapezoid rule in log-sum-exp form, to about machine precision (see
    ``_hs_integrals``). Moderate ``N beta`` uses one uniform lattice on ``[-1 - w, 1 + w]``,
    ``w = 12/sqrt(N beta)``, vectorised over samples; large ``N beta`` restricts the same lattice to
    the neighbourhoods of the saddles ``m = (1/N) sum_i tanh(beta m + h_i)`` (both ferromagnetic
    ones near symmetry breaking), so the cost is ``O(n N G)`` with ``G ~ 2-4 sqrt(N beta)`` grid
    points. For ``N >= 200`` a faster path is tried first: around each saddle ``c`` the sum
    ``sum_i log 2cosh(beta (c + d) + h_i)`` is a Taylor series in ``d`` whose coefficients are power
    sums of ``tanh(beta c + h_i)`` (one tanh pass per saddle instead of one per lattice point),
    evaluated on the same lattice; a sample is used only if its certified error bound (Lagrange
    remainders, and rigorous bounds on the tails and on the gap between two saddles) is below
    1e-12, else it falls back to the quadrature (``_taylor_integrals``; docs/theory.md, "The exact
    Curie-Weiss score at large N"). ``beta = 0`` is the independent-spin case
    ``<a_i> = tanh(h_i)``. Stable for
    ``alpha_bar`` from ``1e-12`` to ``1 - 1e-12`` and ``N`` up to ``1e5`` and beyond.

    Parameters
    ----------
    x_t : array_like, shape (n, N) or (N,)
        Diffused samples (any real dtype; computed in float64). A 1-D array is one sample.
    alpha_bar : float or array_like of shape (n,)
        ``prod_{k<=t} alphas[k]``, in the open interval (0, 1); one value for all samples or one
        per sample.
    beta : float >= 0
        Inverse temperature of the data.
    h : float
        Per-spin field of the data.

    Returns
    -------
    ndarray, float64, same shape as ``x_t``
        ``<a_i>`` in ``[-1, 1]``.

    Raises
    ------
    ValueError
        ``x_t`` not 1-D/2-D, empty, non-real or with NaN/inf; ``alpha_bar`` outside (0, 1) (the
        posterior is the data point itself at ``alpha_bar = 1``) or of a shape other than () or
        (n,); ``beta < 0``; non-finite ``h``.
    """
    beta, h = _check_beta_h(beta, h)
    x, s, delta, one = _prepare(x_t, alpha_bar, "posterior mean")
    _, mean = _hs_integrals(_site_fields(x, s, delta, h), beta, True)
    return mean[0] if one else mean


def score(x_t, alpha_bar, beta: float, h: float = 0.0) -> np.ndarray:
    """Exact score ``grad_x log p_t(x)`` of diffused Curie-Weiss data, any N.

    Tweedie's formula ``score_i = -(x_i - s <a_i>) / Delta`` with the exact posterior mean of
    :func:`posterior_mean` (docs/theory.md, "Conventions" and "The exact Curie-Weiss score at
    large N"; [BM23]). The DDPM noise target is
    ``eps* = -sqrt(Delta) score``.

    Parameters
    ----------
    x_t : array_like, shape (n, N) or (N,)
        Diffused samples; a 1-D array is one sample.
    alpha_bar : float or array_like of shape (n,)
        In the open interval (0, 1): the score is undefined at ``alpha_bar = 1`` (t = 0).
    beta : float >= 0
        Inverse temperature of the data.
    h : float
        Per-spin field of the data.

    Returns
    -------
    ndarray, float64, same shape as ``x_t``
        The score, in units of 1/x.

    Raises
    ------
    ValueError
        As :func:`posterior_mean`.
    """
    beta, h = _check_beta_h(beta, h)
    x, s, delta, one = _prepare(x_t, alpha_bar, "score")
    _, out = _hs_integrals(_site_fields(x, s, delta, h), beta, True)
    out *= s  # -(x - s <a>) / Delta, in place
    out -= x
    out /= delta
    return out[0] if one else out


def _site_fields(x: np.ndarray, s: np.ndarray, delta: np.ndarray, h: float) -> np.ndarray:
    """``h_i = h + s x_i / Delta`` (n, N), two passes over ``x``."""
    fields = x * (s / delta)
    if h != 0.0:
        fields += h
    return fields


def log_density(x_t, alpha_bar, beta: float, h: float = 0.0):
    """Exact log-density ``log p_t(x)`` of Curie-Weiss data diffused to ``alpha_bar``, any N.

    docs/theory.md, "The exact Curie-Weiss score at large N"::

        log p_t(x) = -(|x|^2 + N s^2)/(2 Delta) - (N/2) log(2 pi Delta) + log Z({h_i}) - log Z0

    with ``h_i = h + s x_i / Delta``, ``Z({h_i}) = sqrt(N beta / 2 pi) int dm e^{-N Phi(m)}`` (the
    Hubbard-Stratonovich integral of :func:`posterior_mean`) and ``Z0 = sum_M C(N, k)
    exp(beta M^2/(2N) + h M)`` the data's partition function, so that ``p_t`` integrates to 1. The
    large terms are combined site by site, ``-(x_i^2 + s^2)/(2 Delta) + |h_i| = -(x_i - sign(h_i)
    s)^2/(2 Delta) + sign(h_i) h``, which avoids the cancellation of ``O(N / Delta)`` terms near
    ``alpha_bar = 1``.

    Parameters
    ----------
    x_t : array_like, shape (n, N) or (N,)
        Diffused samples; a 1-D array is one sample.
    alpha_bar : float or array_like of shape (n,)
        In the open interval (0, 1).
    beta : float >= 0
        Inverse temperature of the data.
    h : float
        Per-spin field of the data.

    Returns
    -------
    ndarray, float64, shape (n,); a float64 scalar for 1-D ``x_t``
        ``log p_t(x)`` (density with respect to Lebesgue measure on R^N).

    Raises
    ------
    ValueError
        As :func:`posterior_mean`.
    """
    beta, h = _check_beta_h(beta, h)
    x, s, delta, one = _prepare(x_t, alpha_bar, "density")
    N = x.shape[1]
    fields = h + s * x / delta
    sig = np.where(fields >= 0.0, 1.0, -1.0)
    site = (-(x - sig * s) ** 2 / (2.0 * delta) + sig * h).sum(axis=1)
    logZr, _ = _hs_integrals(fields, beta, False)
    _, logw = _magnetization_logweights(N, beta, h)
    out = site + logZr - logsumexp(logw) - 0.5 * N * np.log(2.0 * np.pi * delta[:, 0])
    return out[0] if one else out


def score_asymptotic(x_t, alpha_bar, beta: float, h: float = 0.0) -> np.ndarray:
    """Large-N (two-state) score of diffused Curie-Weiss data [BM23; Thesis eq. 27].

    For ``N -> infinity`` the data are two pure states ``±m*`` and the posterior mean is the same
    for every site::

        <a_i> ~= m* tanh(m* (s sqrt(N) mu / Delta + N h)),   mu = sum_i x_i / sqrt(N)

    with ``m* = m_star(beta, h)`` ([BM23]); the score follows by Tweedie,
    ``-(x_i - s <a_i>) / Delta``. Valid for ``beta > 1`` at times ``t >> 1`` (it ignores the
    individual-spin denoising of late times); for ``beta <= 1, h = 0`` it returns ``-x/Delta``.

    Parameters
    ----------
    x_t : array_like, shape (n, N) or (N,)
        Diffused samples; a 1-D array is one sample.
    alpha_bar : float or array_like of shape (n,)
        In the open interval (0, 1).
    beta : float >= 0
        Inverse temperature of the data.
    h : float
        Per-spin field of the data.

    Returns
    -------
    ndarray, float64, same shape as ``x_t``
        The approximate score.

    Raises
    ------
    ValueError
        As :func:`score`.
    """
    beta, h = _check_beta_h(beta, h)
    x, s, delta, one = _prepare(x_t, alpha_bar, "score")
    N = x.shape[1]
    m = _m_star(beta, h)
    a = m * np.tanh(m * (s[:, 0] * x.sum(axis=1) / delta[:, 0] + N * h))
    out = -(x - s * a[:, None]) / delta
    return out[0] if one else out


# --------------------------------------------------------------------------------------------
# potentials of mu = sum_i x_i / sqrt(N) ([BM23], [RA23])
# --------------------------------------------------------------------------------------------

_KINDS = ("density", "drift")


def _check_mu(mu) -> np.ndarray:
    try:
        m = np.asarray(mu, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"mu must be a real number or array, got {mu!r}") from None
    if not np.all(np.isfinite(m)):
        raise ValueError("mu contains NaN or inf; pass finite values of sum_i x_i / sqrt(N)")
    return m


def _check_time_array(alpha_bar):
    ab = _check_alpha_bar(alpha_bar, "potential")
    if ab.ndim > 1:
        raise ValueError(f"alpha_bar must be a scalar or 1-D (n_t,), got shape {ab.shape}")
    return ab


def _log_pt_mu(mu: np.ndarray, s: float, delta: float, N: int, M: np.ndarray,
               logP: np.ndarray) -> np.ndarray:
    """``log P_t(mu) = log sum_M P(M) N(mu; s M/sqrt(N), Delta)`` for flat ``mu``, exact.

    Components with ``log P(M) < max - 100`` are first left out; wherever the kept mixture is so
    small (``< max - 50``) that they could matter, the sum is redone over all ``M``.
    """
    c = s * M / math.sqrt(N)
    norm = -0.5 * math.log(2.0 * math.pi * delta)
    top = logP.max()
    kept = logP >= top - 100.0

    def lse(mu_, cc, lp):
        out = np.empty(mu_.shape)
        step = max(1, _BLOCK // max(1, cc.size))
        for j in range(0, mu_.size, step):
            d = mu_[j:j + step, None] - cc[None, :]
            out[j:j + step] = logsumexp(lp[None, :] - d * d / (2.0 * delta), axis=1)
        return out

    out = lse(mu, c[kept], logP[kept])
    if not kept.all():
        redo = out < top - 50.0
        if redo.any():
            out[redo] = lse(mu[redo], c, logP)
    return out + norm


def potential(mu, alpha_bar, N: int, beta: float, h: float = 0.0, kind: str = "density") -> np.ndarray:
    """Exact potential of the projection ``mu = sum_i x_i / sqrt(N)`` of diffused Curie-Weiss data.

    ``mu`` is Gaussian given ``M``, so at any N ([BM23], [BBBM24])::

        P_t(mu) = sum_M P(M) N(mu; s M / sqrt(N), Delta)

    evaluated with log-sum-exp. Two potentials (always say which):

    - ``kind="density"``: ``V(mu) = -log P_t(mu)``;
    - ``kind="drift"``: ``U(mu) = -mu^2/2 - 2 log P_t(mu)``, the potential of the reverse
      Ornstein-Uhlenbeck drift ``x + 2 score`` projected on ``mu`` ([RA23]'s potential is
      proportional to it).

    Parameters
    ----------
    mu : array_like, any shape
        Values of ``mu`` (finite).
    alpha_bar : float or array_like of shape (n_t,)
        In the open interval (0, 1). ``alpha_bar = 1`` (t = 0, where ``P_0`` is a sum of deltas)
        is rejected.
    N : int >= 1
        Number of spins.
    beta : float >= 0
        Inverse temperature.
    h : float
        Per-spin field.
    kind : {"density", "drift"}
        Which potential.

    Returns
    -------
    ndarray, float64
        Shape ``mu.shape`` for a scalar ``alpha_bar``; ``(n_t,) + mu.shape`` for a 1-D one.

    Raises
    ------
    ValueError
        Bad ``kind``, non-finite ``mu``, ``alpha_bar`` outside (0, 1) or not 0-/1-D, ``N < 1``,
        ``beta < 0``.
    """
    if kind not in _KINDS:
        raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}")
    N, beta, h = _check_model(N, beta, h)
    m = _check_mu(mu)
    ab = _check_time_array(alpha_bar)
    M, logw = _magnetization_logweights(N, beta, h)
    logP = logw - logsumexp(logw)
    flat = m.reshape(-1)
    rows = []
    for a in np.atleast_1d(ab):
        s = math.sqrt(a)
        delta = -math.expm1(math.log(a))
        lp = _log_pt_mu(flat, s, delta, N, M, logP)
        rows.append(-lp if kind == "density" else -0.5 * flat ** 2 - 2.0 * lp)
    out = np.stack(rows).reshape(ab.shape + m.shape)
    return out


def potential_asymptotic(mu, alpha_bar, N: int, beta: float, kind: str = "drift") -> np.ndarray:
    """Large-N potential of ``mu = sum_i x_i / sqrt(N)`` at ``h = 0`` [Thesis eq. 28; BM23].

    At fixed ``tau = t - (1/2) log N`` (``t = -(1/2) log alpha_bar``) and ``N -> infinity``,
    ``s -> 0``, ``Delta -> 1`` and the two states ``±m*`` give
    ``P_t(mu) -> [N(mu; m* e^{-tau}, 1) + N(mu; -m* e^{-tau}, 1)] / 2``, hence, with
    ``a = m* e^{-tau} = m* s sqrt(N)``::

        V(mu) = mu^2/2 - log cosh(a mu) + a^2/2 + (1/2) log(2 pi)          (kind="density")
        U(mu) = -mu^2/2 + 2 V = mu^2/2 - 2 log cosh(a mu) + a^2 + log(2 pi)    (kind="drift")

    The curvature at 0 vanishes at ``a^2 = 1`` (density) and ``a^2 = 1/2`` (drift), i.e. at
    ``t = (1/2) log(N m*^2) ~ t_S`` and ``t_S + (1/2) log 2`` (docs/theory.md, "Speciation, cloning
    and collapse"). The
    constants make it the exact ``-log`` of the limiting mixture, comparable with
    :func:`potential`.

    Parameters
    ----------
    mu : array_like, any shape
        Values of ``mu``.
    alpha_bar : float or array_like of shape (n_t,)
        In the open interval (0, 1).
    N : int >= 1
        Number of spins.
    beta : float >= 0
        Inverse temperature (``m* = 0`` for ``beta <= 1``: a single harmonic well).
    kind : {"drift", "density"}
        Which potential.

    Returns
    -------
    ndarray, float64
        Shape ``mu.shape`` for a scalar ``alpha_bar``; ``(n_t,) + mu.shape`` for a 1-D one.

    Raises
    ------
    ValueError
        As :func:`potential`.
    """
    if kind not in _KINDS:
        raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}")
    N, beta, _ = _check_model(N, beta, 0.0)
    m = _check_mu(mu)
    ab = _check_time_array(alpha_bar)
    a = _m_star(beta, 0.0) * np.sqrt(ab * N).reshape(ab.shape + (1,) * m.ndim)
    am = np.abs(a * m)
    logcosh = am + np.log1p(np.exp(-2.0 * am)) - math.log(2.0)
    V = 0.5 * m ** 2 - logcosh + 0.5 * a ** 2 + 0.5 * math.log(2.0 * math.pi)
    return V if kind == "density" else -0.5 * m ** 2 + 2.0 * V


# --------------------------------------------------------------------------------------------
# speciation ([BBBM24]; docs/theory.md, "Speciation, cloning and collapse")
# --------------------------------------------------------------------------------------------

def _curvature_sign(t: np.ndarray, N: int, M: np.ndarray, logP: np.ndarray, kind: str) -> np.ndarray:
    """``Delta^2`` times ``V''(0)`` (density) or ``U''(0)`` (drift), for each time in ``t``.

    For a Gaussian mixture, ``d^2/dmu^2 log P_t = Var_r(c_M)/Delta^2 - 1/Delta`` at any ``mu``,
    ``r_M ∝ P(M) N(mu; c_M, Delta)`` the responsibilities and ``c_M = s M / sqrt(N)``. At ``mu = 0``,
    ``r_M ∝ P(M) exp(-s^2 M^2 / (2 N Delta))``, ``Delta^2 V'' = Delta - s^2 Var_r(M)/N`` and
    ``Delta^2 U'' = 2 (Delta - s^2 Var_r(M)/N) - Delta^2``.
    """
    t = np.atleast_1d(t)
    out = np.empty(t.shape)
    step = max(1, _BLOCK // M.size)
    M2 = M * M
    for j in range(0, t.size, step):
        tt = t[j:j + step, None]
        s2 = np.exp(-2.0 * tt)
        delta = -np.expm1(-2.0 * tt)
        lr = logP[None, :] - s2 * M2[None, :] / (2.0 * N * delta)
        r = np.exp(lr - logsumexp(lr, axis=1, keepdims=True))
        e1 = r @ M
        var = np.einsum("tm,tm->t", r, (M[None, :] - e1[:, None]) ** 2)
        f = delta[:, 0] - s2[:, 0] * var / N
        out[j:j + step] = f if kind == "density" else 2.0 * f - delta[:, 0] ** 2
    return out


def speciation_time(N: int, beta: float, h: float = 0.0, kind: str = "covariance") -> float:
    """Physical time of symmetry breaking (speciation) of diffused Curie-Weiss data.

    ``kind="covariance"``: ``t_S = (1/2) log Lambda`` with ``Lambda = top_eigenvalue(N, beta, h)``
    [BBBM24] (docs/theory.md, "Speciation, cloning and collapse"). For ``Lambda <= 1`` this is
    ``<= 0``: the data variance
    along ``1/sqrt(N)`` never exceeds the noise's and there is no speciation.

    ``kind="density"`` / ``"drift"``: the largest time at which the curvature at ``mu = 0`` of the
    potential ``V = -log P_t(mu)`` / ``U = -mu^2/2 - 2 log P_t(mu)`` (see :func:`potential`) changes
    sign from positive (one well, large t) to negative (two wells), exactly. For the Gaussian
    mixture ``P_t`` ([BBBM24]; [RA23] for the drift potential)::

        Delta^2 V''(0) = Delta - s^2 Var_r(M) / N,    Delta^2 U''(0) = 2 Delta^2 V''(0) - Delta^2,
        r_M ∝ P(M) exp(-s^2 M^2 / (2 N Delta))

    and the root in ``t`` is bracketed on a grid (step 0.05, scanned downwards from
    ``(1/2) log(1 + 2 E[M^2]/N)``, above which both curvatures are provably positive, to ``0.01/N``)
    and refined with ``scipy.optimize.brentq``. Large N, ``beta > 1``: density ``-> t_S``, drift
    ``-> t_S + (1/2) log 2`` ([Thesis eq. 28]); both ``(1/2) log N + O(1)``.

    ``h != 0``: the curvature is still taken at ``mu = 0``. For two states ``±a`` of weights ``p``,
    ``1 - p`` (unit width) the responsibility at ``mu = 0`` is exactly ``p``, so ``V''(0) = 0`` at
    ``4 p (1 - p) a^2 = 1``, i.e. ``s^2 Lambda = 1`` with the centred ``Lambda``: the same time as
    the covariance kind to leading order. (``P_t`` loses log-concavity somewhere else, earlier
    in the generation, at ``a^2 = 1``.)

    A second sign change as ``t -> 0`` (where the lattice of ``M`` values is resolved) is not
    speciation: the largest root is returned. If the curvature never changes sign on
    ``t > 0.01/N`` the result is ``nan``, meaning ``P_t`` never becomes double-welled at 0 (e.g. the
    density kind with ``beta < 1`` and even ``N``). For ``beta < 1`` there is no speciation; the
    only roots are then ``t = O(1/N)`` ones, where the lattice of ``M`` values is resolved (e.g.
    the splitting of ``M = ±1`` for odd ``N``), except for the drift kind with ``1/2 < beta < 1``,
    whose ``U''(0)`` changes sign at the ``O(1)`` time ``~(1/2) log(Lambda - 1)`` where ``P_t``'s
    variance exceeds 2.

    Parameters
    ----------
    N : int >= 1
        Number of spins.
    beta : float >= 0
        Inverse temperature.
    h : float
        Per-spin field.
    kind : {"covariance", "density", "drift"}
        Which definition.

    Returns
    -------
    float
        Physical time ``t = -(1/2) log alpha_bar`` (``nan`` as described above).

    Raises
    ------
    ValueError
        Bad ``kind``, ``N < 1``, ``beta < 0`` or non-finite parameters.
    """
    kinds = ("covariance",) + _KINDS
    if kind not in kinds:
        raise ValueError(f"kind must be one of {kinds}, got {kind!r}")
    N, beta, h = _check_model(N, beta, h)
    if kind == "covariance":
        return 0.5 * math.log(top_eigenvalue(N, beta, h))
    M, logw = _magnetization_logweights(N, beta, h)
    logP = logw - logsumexp(logw)
    # Var_r(M) <= E_r[M^2] <= E_P[M^2] (r is P reweighted by a decreasing function of M^2), so
    # both curvatures are > 0 once e^{2t} > 1 + 2 E_P[M^2]/N.
    t_hi = 0.5 * math.log1p(2.0 * float(np.exp(logP) @ (M * M)) / N) + 0.05
    t_lo = 0.01 / N
    grid = np.concatenate([np.geomspace(t_lo, 0.05, 40, endpoint=False),
                           np.arange(0.05, t_hi + 0.05, 0.05)])[::-1]  # decreasing
    fun = lambda t: float(_curvature_sign(np.array([t]), N, M, logP, kind)[0])  # noqa: E731
    prev_t, prev_f = grid[0], fun(grid[0])
    if prev_f <= 0.0:  # cannot happen by the bound above; kept as a guard
        return math.nan
    for j in range(1, grid.size, 16):
        ts = grid[j:j + 16]
        f = _curvature_sign(ts, N, M, logP, kind)
        neg = np.flatnonzero(f <= 0.0)
        if neg.size:
            i = neg[0]
            t_a = ts[i]
            t_b = ts[i - 1] if i > 0 else prev_t
            if f[i] == 0.0:
                return float(t_a)
            return float(brentq(fun, t_a, t_b, xtol=1e-13, rtol=4 * np.finfo(float).eps))
        prev_t = ts[-1]
    return math.nan
