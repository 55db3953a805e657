"""The bound K of [SD15] eq. 14 with exact edge terms, for Gaussian and binomial reverse models.

See :mod:`physdiff.sd15` and ``docs/theory.md`` ("Sohl-Dickstein et al. 2015: the bound K") for the
formula, its sign (a lower bound on the LOG-likelihood, in bits) and the schedules. numpy + scipy
only: the reverse models are passed in as functions.

References
----------
[SD15] Sohl-Dickstein, Weiss, Maheswaranathan, Ganguli (2015), Deep Unsupervised Learning using
    Nonequilibrium Thermodynamics, arXiv:1503.03585.
[Ho20] Ho, Jain, Abbeel (2020), Denoising Diffusion Probabilistic Models, arXiv:2006.11239.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, NamedTuple

import numpy as np
from scipy.special import log_expit, xlogy

from .._util import SeedLike, as_generator, as_samples, check_positive_int, check_real
from ..binomial import _as_bits, _check_betas, _reverse_rate, binomial_betas
from ..schedules import Schedule

__all__ = ["BoundK", "LOG2", "gaussian_betas", "bound_K_gaussian", "bound_K_binomial"]

#: ``log(2)``: nats per bit.
LOG2 = math.log(2.0)


class BoundK(NamedTuple):
    """The bound K of [SD15] eq. 14 (exact edge terms, see the module docstring), in bits.

    Attributes
    ----------
    bits : float
        K, a lower bound on ``E[log2 p(x0)]``, bits per sample (per sequence).
    stderr : float
        Monte-Carlo standard error of ``bits`` (0 for a deterministic evaluation).
    per_step : ndarray, float64, shape (T+1,)
        Contributions in bits: ``per_step[0]`` the prior term ``-E KL(q(x_T|x0) || p(x_T))``,
        ``per_step[1]`` the term ``E log2 p(x0|x1)``, ``per_step[t]`` (t >= 2) ``-E KL_t``;
        ``bits == per_step.sum()``.
    n : int
        Number of Monte-Carlo samples (``len(x0) * n_mc``).
    """

    bits: float
    stderr: float
    per_step: np.ndarray
    n: int


# ---------------------------------------------------------------------------------------------
# schedules and Gaussian closed forms
# ---------------------------------------------------------------------------------------------


def gaussian_betas(T: int = 40, kind: str = "geometric", beta_1: float | None = None) -> np.ndarray:
    """Gaussian forward schedules ending at ``alpha_bar_T = 0`` (``x_T ~ N(0, I)`` exactly).

    * ``kind="sd15"``: ``beta_t = 1/(T - t + 1)``, the fixed schedule [SD15] recommend (footnote to
      Sec. 2.4.1: "just as effective" as learning it); ``alpha_bar_t = 1 - t/T``.
      ``beta_1`` (default ``1/T``) may be overridden ([SD15] fix ``beta_1`` "to a small constant").
    * ``kind="geometric"`` (default): the noise variance grows geometrically, ``1 - alpha_bar_t =
      beta_1^((T - t)/(T - 1))`` for ``t = 1..T`` (default ``beta_1 = 1e-4``), so every step adds
      the same fraction of the noise already present. It stands in for [SD15]'s learned
      ``beta_2..T``: on thin data (the Swiss roll) the reverse kernels stay nearly isotropic, which
      a diagonal-variance model needs; with ``beta_t = 1/(T-t+1)`` the first step alone blurs by
      ``sqrt(1/T) = 0.16`` a curve ~0.013 thick (the unit-variance 2-pi roll), and the best
      axis-aligned Gaussian for ``q(x0 | x1)`` then loses ~2.5 bits.

    Both end with ``beta_T = 1``, so these are plain arrays, not
    :class:`~physdiff.schedules.Schedule` objects (which require ``beta_t < 1``).

    Parameters
    ----------
    T : int >= 2
        Number of steps (40 for [SD15]'s Swiss roll).
    kind : {"geometric", "sd15"}
    beta_1 : float in (0, 1), optional
        First step's variance (defaults above).

    Returns
    -------
    ndarray, float64, shape (T+1,), with ``betas[0] = 0`` and ``betas[T] = 1``.

    Raises
    ------
    ValueError
        ``T < 2``, unknown ``kind`` or ``beta_1`` outside (0, 1).
    """
    T = check_positive_int("T", T, minimum=2)
    if kind not in ("geometric", "sd15"):
        raise ValueError(f"kind must be 'geometric' or 'sd15', got {kind!r}")
    if beta_1 is not None:
        beta_1 = check_real("beta_1", beta_1, lo=0.0, hi=1.0, lo_open=True, hi_open=True)
    if kind == "sd15":
        betas = binomial_betas(T)
        if beta_1 is not None:
            betas[1] = beta_1
        return betas
    b1 = 1e-4 if beta_1 is None else beta_1
    t = np.arange(1, T + 1)
    noise = b1 ** ((T - t) / (T - 1.0))          # 1 - alpha_bar_t, t = 1..T
    alpha_bar = np.concatenate([[1.0], 1.0 - noise])
    betas = np.zeros(T + 1)
    betas[1:T] = 1.0 - alpha_bar[1:T] / alpha_bar[0:T - 1]
    betas[T] = 1.0
    return betas


def _gaussian_betas_array(schedule_or_betas) -> np.ndarray:
    if isinstance(schedule_or_betas, Schedule):
        return np.asarray(schedule_or_betas.betas, dtype=np.float64)
    return _check_betas(schedule_or_betas)


@dataclass(frozen=True)
class _GaussCoefs:
    betas: np.ndarray
    alpha_bar: np.ndarray
    post_c0: np.ndarray    # coefficient of x0 in the posterior mean
    post_ct: np.ndarray    # coefficient of x_t
    post_var: np.ndarray   # beta_tilde_t

    @classmethod
    def build(cls, betas: np.ndarray) -> "_GaussCoefs":
        # q(x_{t-1} | x_t, x0) = N(c0 x0 + ct x_t, beta_tilde_t)  [Ho20, eqs. 6-7]
        alphas = 1.0 - betas
        ab = np.cumprod(alphas)
        ab[-1] = max(ab[-1], 0.0)
        c0 = np.zeros_like(betas)
        ct = np.zeros_like(betas)
        var = np.zeros_like(betas)
        one_m = 1.0 - ab
        c0[1:] = np.sqrt(ab[:-1]) * betas[1:] / one_m[1:]
        ct[1:] = np.sqrt(alphas[1:]) * one_m[:-1] / one_m[1:]
        var[1:] = one_m[:-1] / one_m[1:] * betas[1:]
        return cls(betas, ab, c0, ct, var)


def _to_numpy(a) -> np.ndarray:
    if type(a).__module__.split(".")[0] == "torch":
        a = a.detach().cpu().numpy()
    return np.asarray(a, dtype=np.float64)


def _std_err(values: np.ndarray) -> float:
    n = values.size
    return float(values.std(ddof=1) / math.sqrt(n)) if n > 1 else float("nan")


def bound_K_gaussian(mean_var_fn: Callable, x0, schedule_or_betas, n_mc: int = 1,
                     seed: SeedLike = None) -> BoundK:
    """The bound K [SD15, eq. 14] of a Gaussian reverse model, in bits per sample.

    The reverse model is ``p(x_{t-1} | x_t) = N(mean(x_t, t), diag(var(x_t, t)))`` with ``p(x_T) =
    N(0, I)``. For each data point and each of ``n_mc`` replicates, every step ``t = 1..T`` gets an
    independent ``x_t ~ q(x_t | x0)`` [Ho20, eq. 4]; the KL divergences to the forward posterior
    ``q(x_{t-1} | x_t, x0) = N(mu_tilde, beta_tilde I)`` [Ho20, eqs. 6-7] and the prior term are
    closed form, the t = 1 term is ``log N(x0; mean(x_1, 1), var(x_1, 1))``. The estimate is
    unbiased; with the true reverse kernel it equals ``-H(data) - KL(q(x_T) || N(0, I))``.

    Parameters
    ----------
    mean_var_fn : callable ``(x_t, t) -> (mean, var)``
        ``x_t`` a float array (n, d) of ``x0``'s float dtype, ``t`` an int step in ``1..T``;
        ``mean`` (n, d) and ``var`` > 0 broadcastable to (n, d) (a scalar, (n, 1) or (n, d)),
        numpy arrays or torch tensors. For a DDPM noise predictor use
        :func:`physdiff.sd15.ddpm_mean_var`.
    x0 : array_like, shape (n, d)
        Data (held-out data for a fair estimate).
    schedule_or_betas : Schedule or array_like, shape (T+1,)
        The forward schedule: a :class:`~physdiff.schedules.Schedule`, or betas with ``betas[0] =
        0`` and ``0 < betas[t] <= 1`` (e.g. :func:`gaussian_betas`).
    n_mc : int >= 1
        Replicates of each data point.
    seed : int, numpy.random.Generator or None

    Returns
    -------
    BoundK
        ``bits`` (K in bits per sample, a lower bound on ``E log2 p(x0)``), ``stderr``,
        ``per_step`` (T+1,) and ``n``.

    Raises
    ------
    ValueError
        Bad ``x0``, schedule or ``n_mc``; ``mean_var_fn`` returning a wrong shape or a variance
        that is not positive and finite.
    """
    return _bound_K_gaussian_many([mean_var_fn], x0, schedule_or_betas, n_mc, seed)[0]


def _bound_K_gaussian_many(mean_var_fns, x0, schedule_or_betas, n_mc: int, seed: SeedLike) -> list:
    """:func:`bound_K_gaussian` of several reverse models on the SAME draws of ``x_t`` (each step's
    ``x_t`` is drawn once and handed to every ``mean_var_fn`` in turn)."""
    x0 = as_samples("x0", x0)
    if x0.dtype.kind != "f":
        x0 = x0.astype(np.float32)
    n_mc = check_positive_int("n_mc", n_mc)
    betas = _gaussian_betas_array(schedule_or_betas)
    co = _GaussCoefs.build(betas)
    T = betas.size - 1
    rng = as_generator(seed)
    xr = np.repeat(x0.astype(np.float64), n_mc, axis=0)
    N, d = xr.shape
    M = len(mean_var_fns)
    total = np.zeros((M, N))
    per_step = np.zeros((M, T + 1))

    # prior: -KL(N(sqrt(ab_T) x0, (1-ab_T) I) || N(0, I)), per sample
    abT = co.alpha_bar[T]
    vT = 1.0 - abT
    prior = -0.5 * np.sum(vT + abT * xr**2 - 1.0 - np.log(vT), axis=1)
    total += prior
    per_step[:, 0] = prior.mean()

    for t in range(1, T + 1):
        eps = rng.standard_normal((N, d))
        x_t = math.sqrt(co.alpha_bar[t]) * xr + math.sqrt(1.0 - co.alpha_bar[t]) * eps
        x_in = x_t.astype(x0.dtype)
        for k, mean_var_fn in enumerate(mean_var_fns):
            mean, var = mean_var_fn(x_in, t)
            mean = _to_numpy(mean)
            var = _to_numpy(var)
            if mean.shape != (N, d):
                raise ValueError(f"mean_var_fn returned a mean of shape {mean.shape} at t={t}; expected {(N, d)}")
            try:
                var = np.broadcast_to(var, (N, d))
            except ValueError:
                raise ValueError(f"mean_var_fn returned a variance of shape {var.shape} at t={t}, not "
                                 f"broadcastable to {(N, d)}") from None
            if not (np.all(np.isfinite(var)) and np.all(var > 0)) or not np.all(np.isfinite(mean)):
                raise ValueError(f"mean_var_fn returned a non-finite mean or a variance <= 0 at t={t}; "
                                 "the bound needs var > 0 (for beta_tilde use beta_1 at t = 1)")
            if t == 1:
                term = -0.5 * np.sum(np.log(2 * np.pi * var) + (xr - mean) ** 2 / var, axis=1)
            else:
                mu_q = co.post_c0[t] * xr + co.post_ct[t] * x_t
                s = co.post_var[t]
                term = -0.5 * np.sum(np.log(var / s) + (s + (mu_q - mean) ** 2) / var - 1.0, axis=1)
            total[k] += term
            per_step[k, t] = term.mean()
    total /= LOG2
    per_step /= LOG2
    return [BoundK(float(total[k].mean()), _std_err(total[k]), per_step[k], int(N)) for k in range(M)]



# ---------------------------------------------------------------------------------------------
# the binomial bound
# ---------------------------------------------------------------------------------------------


def _bernoulli_kl(q, p=None, logit=None):
    """KL(B(q) || B(p)) elementwise, nats; ``p`` given as a probability or a logit."""
    neg_ent = xlogy(q, q) + xlogy(1.0 - q, 1.0 - q)
    if logit is not None:
        return neg_ent - q * log_expit(logit) - (1.0 - q) * log_expit(-logit)
    return neg_ent - xlogy(q, p) - xlogy(1.0 - q, 1.0 - p)


def bound_K_binomial(rate_fn: Callable, x0, betas, n_mc: int = 1, seed: SeedLike = None,
                     output: str = "prob", p_T: float = 0.5) -> BoundK:
    """The bound K [SD15, eq. 14] of a binomial reverse model, in bits per sequence.

    The reverse model is ``p(x_{t-1} = 1 | x_t) = rate_fn(x_t, t)`` independently per bit, with
    ``p(x_T) = B(p_T)`` per bit [SD15, Table App.1]. Every step gets an independent ``x_t ~
    q(x_t | x0)`` (:func:`physdiff.binomial.binomial_diffuse`); the Bernoulli KL divergences to the
    forward posterior (:func:`physdiff.binomial.posterior_rate`) and the prior term are closed
    form (at ``t = 1`` the posterior is the point mass ``x0`` and the KL is ``-log p(x0 | x1)``).

    Parameters
    ----------
    rate_fn : callable ``(x_t, t) -> rate``
        ``x_t`` int8 (n, d) in {0, 1}, ``t`` an int step in ``1..T``; returns (n, d) numpy or torch
        probabilities (``output="prob"``) or logits (``output="logit"``, more accurate near 0 and 1).
    x0 : array_like of 0/1, shape (n, d)
    betas : array_like, shape (T+1,)
        ``betas[0] = 0``, ``0 < betas[t] <= 1`` (:func:`physdiff.binomial.binomial_betas`).
    n_mc : int >= 1
        Replicates of each data point.
    seed : int, numpy.random.Generator or None
    output : {"prob", "logit"}
    p_T : float in (0, 1)
        Per-bit probability of 1 under ``p(x_T)`` (0.5, which equals ``q(x_T)`` when ``beta_T = 1``).

    Returns
    -------
    BoundK
        ``bits`` = K in bits per sequence (a lower bound on ``E log2 p(x0)``), ``stderr``,
        ``per_step`` (T+1,), ``n``.

    Raises
    ------
    ValueError
        Non-binary ``x0``; bad ``betas``, ``n_mc``, ``output`` or ``p_T``; ``rate_fn`` returning a
        wrong shape or probabilities outside [0, 1].
    """
    x0 = _as_bits("x0", x0)
    b = _check_betas(betas)
    n_mc = check_positive_int("n_mc", n_mc)
    if output not in ("prob", "logit"):
        raise ValueError(f"output must be 'prob' or 'logit', got {output!r}")
    p_T = check_real("p_T", p_T, lo=0.0, hi=1.0, lo_open=True, hi_open=True)
    rng = as_generator(seed)
    T = b.size - 1
    gamma = np.cumprod(1.0 - b)
    xr = np.repeat(x0, n_mc, axis=0)
    N, d = xr.shape
    xf = xr.astype(np.float64)
    total = np.zeros(N)
    per_step = np.zeros(T + 1)

    qT = xf * gamma[T] + 0.5 * (1.0 - gamma[T])
    prior = -_bernoulli_kl(qT, np.full_like(qT, p_T)).sum(axis=1)
    total += prior
    per_step[0] = prior.mean()

    for t in range(1, T + 1):
        p_t = xf * gamma[t] + 0.5 * (1.0 - gamma[t])
        x_t = (rng.random((N, d)) < p_t).astype(np.int8)
        # forward posterior q(x_{t-1}=1 | x_t, x0): Bayes with a = q(x_{t-1}=1 | x0)
        q = _reverse_rate(xf * gamma[t - 1] + 0.5 * (1.0 - gamma[t - 1]), x_t, b[t])
        out = _to_numpy(rate_fn(x_t, t))
        if out.shape != (N, d):
            raise ValueError(f"rate_fn returned shape {out.shape} at t={t}; expected {(N, d)}")
        if output == "logit":
            kl = _bernoulli_kl(q, logit=out)
        else:
            if np.any(~(out >= 0.0) | (out > 1.0)):
                raise ValueError(f"rate_fn returned values outside [0, 1] at t={t}; pass output='logit' "
                                 "if it returns logits")
            kl = _bernoulli_kl(q, out)
        term = -kl.sum(axis=1)
        total += term
        per_step[t] = term.mean()
    total /= LOG2
    per_step /= LOG2
    return BoundK(float(total.mean()), _std_err(total), per_step, int(N))
