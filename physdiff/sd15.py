"""[SD15]'s diffusion probabilistic models: the bound K, Gaussian diffusion with a learned mean
AND diagonal variance (Swiss roll), and binomial diffusion (binary heartbeat).

The bound K
-----------
For a reverse chain ``p(x_{0..T}) = p(x_T) prod_t p(x_{t-1} | x_t)`` and the forward chain ``q``,
Jensen's inequality gives ``E_q[log p(x0)] >= K`` with [SD15, eqs. 12-14; Ho20, eq. 5]::

    K = E_q[ log p(x0 | x1) ]                                                  (t = 1)
        - sum_{t=2}^{T} E_{q(x0, x_t)}[ D_KL( q(x_{t-1} | x_t, x0) || p(x_{t-1} | x_t) ) ]
        - E_{q(x0)}[ D_KL( q(x_T | x0) || p(x_T) ) ].                          (prior)

This is [SD15] eq. 14 with its two edge terms taken exactly: [SD15] replace the t = 1 and prior
terms by ``H_q(X_T|X_0) - H_q(X_1|X_0) - H_p(X_T)``, which assumes that the last reverse step
mirrors the first forward step and that ``q(x_T) = p(x_T)`` (their Appendix B). Here every term is
exact, so K is a true lower bound for any reverse model, and it is TIGHT (``K = E_q[log q(x0)] =
-H(data)``) when ``p`` is the true reverse kernel ``q(x_{t-1} | x_t)`` and ``p(x_T) = q(x_T)``.
Every KL divergence is closed form (Gaussian or Bernoulli), so only ``(x0, x_t)`` are sampled.

Sign and units: K is a lower bound on the LOG-likelihood (not the negative log-likelihood), in bits
per sample (per sequence for the heartbeat), as in [SD15] Table 1, which reports K = 2.35 bits for
the Swiss roll (K - L_null = 6.45 bits) and K = -2.414 bits/sequence for the heartbeat (K - L_null
= 12.024 bits/sequence) against the exact log-likelihood ``log2(1/5) = -2.322`` bits. ``L_null`` is
the log-likelihood of the null model: ``N(0, I)`` for continuous data scaled to unit variance
(:func:`unit_variance`), independent Bernoullis with the data's mean for binary data.

Schedules
---------
* Gaussian: [SD15] learn ``beta_2..T`` by gradient ascent on K (``beta_1`` fixed small), and note
  (footnote to Sec. 2.4.1) that the fixed binomial schedule ``beta_t = 1/(T - t + 1)`` is "just as
  effective". :func:`gaussian_betas` gives that schedule (``kind="sd15"``) and, by default, a
  fixed stand-in for the learned one (``kind="geometric"``: the noise variance ``1 - alpha_bar_t``
  grows geometrically from ``beta_1 = 1e-4`` to 1). Both end at ``alpha_bar_T = 0``, so ``q(x_T |
  x0) = N(0, I) = p(x_T)`` and the prior term vanishes. On thin data (the Swiss roll) the geometric
  one keeps every reverse kernel nearly isotropic, which a diagonal-variance model needs.
* Binomial: ``beta_t = 1/(T - t + 1)`` [SD15, Sec. 2.4.1] (:func:`physdiff.binomial.binomial_betas`).
  ``x_T`` is then exactly uniform; we start the reverse chain from the uniform ``p(x_T) = B(0.5)``
  (= ``q(x_T)``, so the prior term vanishes) where [SD15, App. D.1.2] started from ``B(0.2)`` (the
  data's mean), which their approximate edge terms do not penalise.

Models (torch, imported lazily: importing this module does not import torch)
------------------------------------------------------------------------------
* :class:`GaussianSD15` [SD15, App. D.1.1 and D.2.1]: a shared trunk (MLP on ``x_t`` and ``t/T``)
  and one linear readout per timestep giving ``z_mu, z_Sigma``; ``Sigma = sigmoid(z_Sigma +
  logit(beta_t))`` ([SD15] eq. 64) and ``mu = sqrt(1 - beta_t) x_t + sqrt(beta_t) z_mu``, both
  perturbations of the forward kernel. ([SD15] eq. 65, ``mu = (x_t - z_mu)(1 - Sigma) + z_mu``,
  needs ``z_mu ~ 1/Sigma`` to move the mean by ``sqrt(beta_t)`` when ``beta_t`` is small and trained
  much more slowly here.) [SD15] used a 16-unit radial-basis-function trunk; ours is an MLP that
  also sees ``t/T``.
* :class:`BinomialSD15` [SD15, App. D.1.2]: ``p(x_{t-1} = 1 | x_t) = sigmoid(f_theta(x_t, t) +
  l_null(x_t, t))``, an MLP with sinusoidal time features and a shared readout, added to the logit
  of the exact reverse kernel of independent bits with the data's mean
  (:func:`physdiff.binomial.independent_reverse_rate`), so an untrained model is the null model.
  [SD15] used three sigmoid layers of 50 units and one readout per timestep.

References
----------
[SD15] Sohl-Dickstein, Weiss, Maheswaranathan, Ganguli (2015), Deep Unsupervised Learning using
    Nonequilibrium Thermodynamics, arXiv:1503.03585.
[Ho20] Ho, Jain, Abbeel (2020), Denoising Diffusion Probabilistic Models, arXiv:2006.11239.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, NamedTuple

import numpy as np
from scipy.special import log_expit, logsumexp, xlogy

from ._util import SeedLike, as_generator, as_samples, check_positive_int, check_real, torch_threads
from .binomial import _as_bits, _check_betas, binomial_betas
from .schedules import Schedule

__all__ = [
    "BoundK",
    "gaussian_betas",
    "bound_K_gaussian",
    "bound_K_binomial",
    "ddpm_mean_var",
    "ddpm_schedule",
    "ddpm_bound_K",
    "train_eps_ddpm",
    "unit_variance",
    "null_log_likelihood_gaussian",
    "null_log_likelihood_binomial",
    "swiss_roll_log_density",
    "swiss_roll_eps",
    "valid_heartbeat",
    "GaussianSD15",
    "BinomialSD15",
    "train_gaussian_sd15",
    "train_binomial_sd15",
]

LOG2 = math.log(2.0)
_EPS_BETA = 1e-6


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
        numpy arrays or torch tensors. For a DDPM noise predictor use :func:`ddpm_mean_var`.
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


def ddpm_mean_var(eps_fn: Callable, schedule_or_betas, sigma: str = "beta") -> Callable:
    """Turn a noise predictor ``eps_fn(x_t, t)`` into ``mean_var_fn`` for :func:`bound_K_gaussian`.

    ``mean = (x_t - beta_t / sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_t)`` [Ho20, eq. 11] and ``var =
    beta_t`` (``sigma="beta"``) or ``beta_tilde_t = (1 - alpha_bar_{t-1})/(1 - alpha_bar_t) beta_t``
    (``sigma="posterior"``) [Ho20, Sec. 3.2]; since ``beta_tilde_1 = 0`` would make the bound
    ``-inf``, the posterior choice uses ``beta_1`` at ``t = 1``.

    Parameters
    ----------
    eps_fn : callable ``(x_t, t) -> eps``
        E.g. ``DDPM.eps`` of :mod:`physdiff.ddpm`; numpy or torch output.
    schedule_or_betas : Schedule or array_like (T+1,)
        The schedule the model was trained with (``beta_t < 1``).
    sigma : {"beta", "posterior"}

    Returns
    -------
    callable ``(x_t, t) -> (mean ndarray (n, d), var float)``

    Raises
    ------
    ValueError
        Unknown ``sigma`` or a schedule with ``beta_t = 1``.
    """
    if sigma not in ("beta", "posterior"):
        raise ValueError(f"sigma must be 'beta' or 'posterior', got {sigma!r}")
    betas = _gaussian_betas_array(schedule_or_betas)
    if np.any(betas[1:] >= 1.0):
        raise ValueError("an eps-parametrised reverse mean needs beta_t < 1 at every step")
    co = _GaussCoefs.build(betas)

    def mean_var_fn(x_t, t):
        eps = _to_numpy(eps_fn(x_t, t))
        b = co.betas[t]
        mean = (np.asarray(x_t, dtype=np.float64) - b / math.sqrt(1.0 - co.alpha_bar[t]) * eps) / math.sqrt(1.0 - b)
        var = b if (sigma == "beta" or t == 1) else co.post_var[t]
        return mean, var

    return mean_var_fn


def ddpm_schedule(schedule_or_betas, max_beta: float = 0.999) -> Schedule:
    """A Gaussian forward schedule as a :class:`~physdiff.schedules.Schedule` that an eps-trained
    DDPM can use: every ``beta_t`` clipped at ``max_beta``.

    [SD15]-style schedules (:func:`gaussian_betas`) end with ``beta_T = 1``: ``alpha_bar_T = 0``,
    ``q(x_T) = N(0, I)`` exactly and the prior term of K vanishes. The eps-parametrised reverse
    mean ``(x_t - beta_t / sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_t)`` [Ho20, eq. 11] divides by
    ``sqrt(alpha_T) = 0`` there, and :class:`~physdiff.schedules.Schedule` (hence
    :func:`physdiff.ddpm.train`) needs ``beta_t < 1``. Clipping at ``max_beta`` is what [ND21]
    (eq. 17, ``max_beta = 0.999``) do for the cosine schedule, which also reaches ``alpha_bar = 0``:
    the steps below the clip are unchanged, ``alpha_bar_T`` becomes ``alpha_bar_{T-1} (1 - max_beta)``,
    and the prior term of K is ``-KL(N(s x0, (1-s^2) I) || N(0, I)) = -alpha_bar_T |x0|^2 / 2 +
    O(alpha_bar_T^2)`` nats (``s^2 = alpha_bar_T``), e.g. -3e-4 bits for :func:`gaussian_betas` ``(40)``
    on unit-variance 2-D data.

    Parameters
    ----------
    schedule_or_betas : Schedule or array_like, shape (T+1,)
        ``betas[0] = 0``, ``0 < betas[t] <= 1``.
    max_beta : float in (0, 1)

    Returns
    -------
    Schedule
        ``name="custom"``; ``params`` records ``max_beta``.

    Raises
    ------
    ValueError
        Bad betas or ``max_beta``.
    """
    betas = _gaussian_betas_array(schedule_or_betas).copy()
    max_beta = check_real("max_beta", max_beta, lo=0.0, hi=1.0, lo_open=True, hi_open=True)
    betas[1:] = np.minimum(betas[1:], max_beta)
    return Schedule(betas, name="custom", params={"max_beta": max_beta})


def ddpm_bound_K(eps_fn: Callable, x0, schedule: Schedule, sigmas=("beta", "posterior"), n_mc: int = 1,
                 seed: SeedLike = None) -> dict:
    """The bound K [SD15, eq. 14] of an eps-parametrised DDPM, for each fixed reverse variance.

    ``K = bound_K_gaussian(ddpm_mean_var(eps_fn, schedule, sigma), x0, schedule)`` for every ``sigma``
    in ``sigmas`` (``sigma_t^2 = beta_t`` or ``beta_tilde_t`` [Ho20, Sec. 3.2]), all on the SAME draws
    of ``x_t`` (``eps_fn`` is called once per step), so their differences carry little Monte-Carlo
    noise. With the variance fixed, ``-KL_t`` (t >= 2) is ``-w_t E|eps - eps_theta|^2`` (summed over
    the d features) plus a constant, ``w_t`` the weight of [Ho20] eq. 12
    (:func:`physdiff.ddpm.loss_weights`) with the same ``sigma``: the weighted loss IS this bound, up
    to constants.

    Parameters
    ----------
    eps_fn : callable ``(x_t, t) -> eps``
        E.g. :meth:`physdiff.ddpm.DDPM.eps`, or an exact predictor such as :func:`swiss_roll_eps`.
    x0 : array_like, shape (n, d)
    schedule : Schedule
        The schedule ``eps_fn`` belongs to (``beta_t < 1``; :func:`ddpm_schedule`).
    sigmas : sequence of {"beta", "posterior"}
    n_mc : int >= 1
    seed : int, numpy.random.Generator or None

    Returns
    -------
    dict
        ``{sigma: BoundK}`` in bits per sample.

    Raises
    ------
    ValueError
        An unknown sigma, an empty ``sigmas``, or anything :func:`bound_K_gaussian` rejects.
    """
    sigmas = tuple(sigmas)
    if not sigmas or any(s not in ("beta", "posterior") for s in sigmas):
        raise ValueError(f"sigmas must be a non-empty sequence of 'beta' / 'posterior', got {sigmas!r}")
    last: list = [None, None, None]

    def eps_once(x_t, t):   # every sigma sees the same x_t at step t: evaluate eps_fn once
        if last[0] != t or last[1] is not x_t:
            last[:] = [t, x_t, _to_numpy(eps_fn(x_t, t))]
        return last[2]

    fns = [ddpm_mean_var(eps_once, schedule, s) for s in sigmas]
    return dict(zip(sigmas, _bound_K_gaussian_many(fns, x0, schedule, n_mc, seed)))


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
        # forward posterior q(x_{t-1}=1 | x_t, x0)
        a = xf * gamma[t - 1] + 0.5 * (1.0 - gamma[t - 1])
        k1 = np.where(x_t == 1, 1.0 - 0.5 * b[t], 0.5 * b[t])
        k0 = np.where(x_t == 1, 0.5 * b[t], 1.0 - 0.5 * b[t])
        q = k1 * a / (k1 * a + k0 * (1.0 - a))
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


# ---------------------------------------------------------------------------------------------
# data helpers: scaling, null models, the Swiss roll's exact density, heartbeat validity
# ---------------------------------------------------------------------------------------------


def unit_variance(x) -> tuple[np.ndarray, np.ndarray, float]:
    """Centre ``x`` and scale it by one constant so that the mean per-feature variance is 1.

    [SD15] Table 1: "all datasets except for Binary Heartbeat were scaled by a constant to give
    them variance 1 before computing log likelihood". A log-density in the scaled units is the raw
    one plus ``d * log(scale)``.

    Parameters
    ----------
    x : array_like, shape (n, d), n >= 2

    Returns
    -------
    x_scaled : ndarray, float64, shape (n, d)
        ``(x - shift) / scale``.
    shift : ndarray, float64, shape (d,)
    scale : float

    Raises
    ------
    ValueError
        Bad ``x``, fewer than 2 samples, or zero variance.
    """
    x = as_samples("x", x).astype(np.float64)
    if x.shape[0] < 2:
        raise ValueError("x needs at least 2 samples to estimate a variance")
    shift = x.mean(axis=0)
    scale = float(np.sqrt(x.var(axis=0).mean()))
    if scale == 0.0:
        raise ValueError("x has zero variance; nothing to scale")
    return (x - shift) / scale, shift, scale


def null_log_likelihood_gaussian(x) -> float:
    """``L_null = E log2 N(x; 0, I)`` in bits per sample: [SD15] Table 1's null model ``pi(x0)``.

    For data scaled with :func:`unit_variance` in ``d`` dimensions it is ``-(d/2) log2(2 pi e)``
    (-4.094 bits for d = 2). Raises ``ValueError`` for bad ``x``.
    """
    x = as_samples("x", x).astype(np.float64)
    d = x.shape[1]
    return float(np.mean(-0.5 * (d * np.log(2 * np.pi) + np.sum(x**2, axis=1))) / LOG2)


def null_log_likelihood_binomial(x, p1=None) -> float:
    """``L_null = E sum_j log2 B(x_j; p1_j)`` in bits per sequence [SD15] Table 1 (binary data).

    ``p1`` defaults to the data's mean of each bit (0.2 for the heartbeat, giving
    ``20 (0.2 log2 0.2 + 0.8 log2 0.8) = -14.44`` bits). Raises ``ValueError`` for non-binary ``x``
    or ``p1`` outside [0, 1].
    """
    x = _as_bits("x", x).astype(np.float64)
    p = x.mean(axis=0) if p1 is None else np.broadcast_to(np.asarray(p1, dtype=np.float64), (x.shape[1],))
    if np.any(p < 0) or np.any(p > 1):
        raise ValueError("p1 must hold probabilities in [0, 1]")
    ll = xlogy(x, p) + xlogy(1.0 - x, 1.0 - p)
    return float(ll.sum(axis=1).mean() / LOG2)


def swiss_roll_log_density(x, turns: float = 2.0, noise: float = 0.1, n_grid: int | None = None) -> np.ndarray:
    """Exact log-density (nats) of :func:`physdiff.datasets.swiss_roll`'s distribution at ``x``.

    The data are ``(c(theta) + noise xi) / 12`` with ``c(theta) = (5 + theta)(cos theta, sin
    theta)``, ``theta ~ U[0, turns pi]``, ``xi ~ N(0, I_2)`` ([Thesis] Table 2), so::

        q(x) = (1 / (turns pi)) int_0^{turns pi} dtheta N(x; c(theta)/12, (noise/12)^2 I_2),

    computed by the trapezoid rule in log-sum-exp form on a grid fine enough that the Gaussian's
    width along the curve holds >= 8 nodes. ``E log q`` is the best K any model can reach on
    these data (in the raw units; add ``2 log(scale)`` after :func:`unit_variance`).

    Parameters
    ----------
    x : array_like, shape (n, 2)
    turns : float > 0
    noise : float > 0
        As in :func:`physdiff.datasets.swiss_roll` (noise std in units of r, before the /12).
    n_grid : int >= 16, optional
        Quadrature nodes (default: automatic).

    Returns
    -------
    ndarray, float64, shape (n,)

    Raises
    ------
    ValueError
        Bad ``x``, ``turns``, ``noise`` (noise must be > 0: the noiseless roll has no density).
    """
    x = as_samples("x", x, d=2).astype(np.float64)
    turns = check_real("turns", turns, lo=0.0, lo_open=True)
    noise = check_real("noise", noise, lo=0.0, lo_open=True)
    theta_logw, cx, cy = _swiss_roll_curve(turns, noise, n_grid)
    s2 = (noise / 12.0) ** 2
    out = np.empty(x.shape[0])
    chunk = max(1, 4_000_000 // cx.size)
    for lo in range(0, x.shape[0], chunk):
        xx = x[lo:lo + chunk]
        d2 = (xx[:, :1] - cx[None, :]) ** 2 + (xx[:, 1:] - cy[None, :]) ** 2
        out[lo:lo + chunk] = logsumexp(theta_logw[None, :] - d2 / (2 * s2), axis=1) - np.log(2 * np.pi * s2)
    return out


def _swiss_roll_curve(turns: float, noise: float, n_grid: int | None):
    """Trapezoid nodes on the roll's centre line: log-weights of ``theta ~ U[0, turns pi]`` and the
    points ``c(theta)/12`` (raw units), with >= 8 nodes per noise width along the curve."""
    span = turns * np.pi
    if n_grid is None:
        speed = math.hypot(1.0, 5.0 + span)            # |dc/dtheta| <= sqrt(1 + r_max^2)
        n_grid = int(math.ceil(8 * span * speed / noise)) + 1
        n_grid = max(n_grid, 64)
    n_grid = check_positive_int("n_grid", n_grid, minimum=16)
    theta = np.linspace(0.0, span, n_grid)
    w = np.full(n_grid, span / (n_grid - 1))
    w[0] = w[-1] = 0.5 * span / (n_grid - 1)
    r = 5.0 + theta
    return np.log(w / span), r * np.cos(theta) / 12.0, r * np.sin(theta) / 12.0


def swiss_roll_eps(x_t, alpha_bar: float, turns: float = 2.0, noise: float = 0.1, shift=0.0,
                   scale: float = 1.0, n_grid: int | None = None) -> np.ndarray:
    """Exact noise predictor ``eps*(x_t) = -sqrt(1 - alpha_bar) grad log q_t(x_t)`` of the diffused
    Swiss roll, in the units ``y = (x - shift) / scale`` (e.g. after :func:`unit_variance`).

    The data are ``y0 = mu(theta) + sigma_y xi`` with ``mu(theta) = (c(theta)/12 - shift) / scale``,
    ``sigma_y = noise / (12 scale)``, ``theta ~ U[0, turns pi]`` (:func:`swiss_roll_log_density`).
    Given ``theta``, ``x_t = s y0 + sqrt(Delta) eps`` is ``N(s mu, v I)`` with ``s = sqrt(alpha_bar)``,
    ``Delta = 1 - alpha_bar``, ``v = s^2 sigma_y^2 + Delta`` [Ho20, eq. 4], so ``q_t`` is a continuous
    mixture of isotropic Gaussians and (Tweedie; REFERENCES.md sec. 1)::

        eps*(x) = sqrt(Delta) / v * (x - s E[mu(theta) | x_t = x]),
        p(theta | x) ∝ N(x; s mu(theta), v I),

    the posterior average taken by the trapezoid rule of :func:`swiss_roll_log_density` (the
    posterior along the curve is never narrower than the data's width, which that grid resolves).
    This is the optimum of ``L_simple`` [Ho20, eq. 14] at every step: the best any eps-trained DDPM
    can do.

    Parameters
    ----------
    x_t : array_like, shape (n, 2)
    alpha_bar : float in (0, 1)
    turns, noise : float > 0
        As in :func:`physdiff.datasets.swiss_roll`.
    shift : float or array_like (2,)
    scale : float > 0
        The units: ``y = (x_raw - shift) / scale`` (:func:`unit_variance` returns both).
    n_grid : int >= 16, optional

    Returns
    -------
    ndarray, float64, shape (n, 2)

    Raises
    ------
    ValueError
        Bad ``x_t``, ``alpha_bar`` outside (0, 1), bad ``turns``, ``noise`` or ``scale``.
    """
    x = as_samples("x_t", x_t, d=2).astype(np.float64)
    ab = check_real("alpha_bar", alpha_bar, lo=0.0, hi=1.0, lo_open=True, hi_open=True)
    turns = check_real("turns", turns, lo=0.0, lo_open=True)
    noise = check_real("noise", noise, lo=0.0, lo_open=True)
    scale = check_real("scale", scale, lo=0.0, lo_open=True)
    shift = np.broadcast_to(np.asarray(shift, dtype=np.float64), (2,))
    logw, cx, cy = _swiss_roll_curve(turns, noise, n_grid)
    mx, my = (cx - shift[0]) / scale, (cy - shift[1]) / scale
    s, delta = math.sqrt(ab), 1.0 - ab
    v = ab * (noise / (12.0 * scale)) ** 2 + delta
    out = np.empty_like(x)
    chunk = max(1, 4_000_000 // cx.size)
    for lo in range(0, x.shape[0], chunk):
        xx = x[lo:lo + chunk]
        d2 = (xx[:, :1] - s * mx[None, :]) ** 2 + (xx[:, 1:] - s * my[None, :]) ** 2
        logp = logw[None, :] - d2 / (2 * v)
        p = np.exp(logp - logp.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        mean = np.stack([p @ mx, p @ my], axis=1)
        out[lo:lo + chunk] = math.sqrt(delta) / v * (xx - s * mean)
    return out


def valid_heartbeat(x, period: int = 5) -> np.ndarray:
    """Whether each sequence is a valid heartbeat: exactly the 1s of ``(j - phase) % period == 0``.

    A valid sequence has a 1 in every ``period``-th bin with one consistent phase and 0 elsewhere
    ([SD15] Sec. 3.1.2; :func:`physdiff.datasets.binary_heartbeat`).

    Parameters
    ----------
    x : array_like of 0/1, shape (n, length)
    period : int, 1 <= period <= length

    Returns
    -------
    ndarray, bool, shape (n,)

    Raises
    ------
    ValueError
        Non-binary ``x`` or a bad ``period``.
    """
    x = _as_bits("x", x)
    period = check_positive_int("period", period)
    length = x.shape[1]
    if period > length:
        raise ValueError(f"period ({period}) must be <= the sequence length ({length})")
    j = np.arange(length)
    patterns = ((j[None, :] - np.arange(period)[:, None]) % period == 0).astype(np.int8)  # (period, length)
    return np.any(np.all(x[:, None, :] == patterns[None, :, :], axis=2), axis=1)


# ---------------------------------------------------------------------------------------------
# torch models
# ---------------------------------------------------------------------------------------------


def _torch():
    import torch

    return torch


def _torch_seed(rng: np.random.Generator) -> int:
    return int(rng.integers(0, 2**63 - 1))


def _init_linear(torch, gen, fan_in, fan_out, zero=False):
    """Weights (fan_in, fan_out) and bias, PyTorch's default uniform init (or zeros)."""
    if zero:
        return (torch.zeros(fan_in, fan_out, dtype=torch.float32),
                torch.zeros(fan_out, dtype=torch.float32))
    bound = 1.0 / math.sqrt(fan_in)
    W = (torch.rand(fan_in, fan_out, generator=gen) * 2 - 1) * bound
    b = (torch.rand(fan_out, generator=gen) * 2 - 1) * bound
    return W, b


@dataclass
class GaussianSD15:
    """[SD15]'s Gaussian reverse model: learned mean and diagonal variance (module docstring).

    ``p(x_{t-1} | x_t) = N(mu, diag(Sigma))`` with ``Sigma = sigmoid(z_Sigma + logit(beta_t))``
    [SD15, eq. 64] and ``mu = sqrt(1 - beta_t) x_t + sqrt(beta_t) z_mu``; ``(z_mu, z_Sigma) =
    W_t h(x_t, t/T) + b_t``, a shared softplus MLP trunk ``h`` and a readout per timestep
    [SD15, App. D.1.1]. Build and train with :func:`train_gaussian_sd15`.

    Attributes
    ----------
    betas : ndarray float64 (T+1,)
        The forward schedule (:func:`gaussian_betas`).
    d, hidden : int
    params : dict of torch tensors (float32)
    history : dict
        ``step`` and ``K_bits`` (the training-batch K, bits per sample) logged during training,
        ``seconds`` of training.
    """

    betas: np.ndarray
    d: int
    hidden: int
    params: dict
    history: dict = field(default_factory=dict)

    @property
    def T(self) -> int:
        return int(self.betas.size - 1)

    def _forward(self, x, t_idx):
        """x (m, d) float32 tensor, t_idx (m,) long tensor in 1..T -> (mu, Sigma), (m, d) each."""
        torch = _torch()
        P = self.params
        T = self.T
        inp = torch.cat([x, (t_idx.to(x.dtype) / T)[:, None]], dim=1)
        h = torch.nn.functional.softplus(inp @ P["W1"] + P["b1"])
        h = torch.nn.functional.softplus(h @ P["W2"] + P["b2"])
        W = P["Wt"][t_idx - 1]                       # (m, hidden, 2d)
        z = torch.einsum("mh,mhk->mk", h, W) + P["bt"][t_idx - 1]
        z_mu, z_s = z[:, :self.d], z[:, self.d:]
        beta = torch.as_tensor(np.clip(self.betas, _EPS_BETA, 1 - _EPS_BETA), dtype=x.dtype)[t_idx][:, None]
        sigma = torch.sigmoid(z_s + torch.log(beta) - torch.log1p(-beta))
        mu = torch.sqrt(1.0 - beta) * x + torch.sqrt(beta) * z_mu
        return mu, sigma

    def mean_var(self, x_t, t: int):
        """Reverse mean and diagonal variance at step ``t`` (numpy in and out), for
        :func:`bound_K_gaussian`: ``x_t`` (n, d) -> ``(mu, Sigma)`` float64 (n, d) each."""
        torch = _torch()
        x = torch.as_tensor(np.asarray(x_t, dtype=np.float32))
        with torch.no_grad():
            mu, sigma = self._forward(x, torch.full((x.shape[0],), int(t), dtype=torch.long))
        return mu.double().numpy(), sigma.double().numpy()

    def sample(self, n: int, seed: SeedLike = None, return_trajectory: bool = False):
        """Ancestral samples: ``x_T ~ N(0, I)``, then ``x_{t-1} ~ N(mu, diag Sigma)`` for t = T..1.

        Returns float32 (n, d), or with ``return_trajectory`` also the path (T+1, n, d) indexed by
        step. Raises ``ValueError`` for ``n < 1``.
        """
        n = check_positive_int("n", n)
        torch = _torch()
        gen = torch.Generator().manual_seed(_torch_seed(as_generator(seed)))
        x = torch.randn(n, self.d, generator=gen)
        path = [x] if return_trajectory else None
        with torch.no_grad():
            for t in range(self.T, 0, -1):
                mu, sigma = self._forward(x, torch.full((n,), t, dtype=torch.long))
                x = mu + sigma.sqrt() * torch.randn(n, self.d, generator=gen)
                if return_trajectory:
                    path.append(x)
        out = x.numpy().astype(np.float32)
        if return_trajectory:
            return out, torch.stack(path[::-1]).numpy().astype(np.float32)
        return out

    def bound_K(self, x0, n_mc: int = 1, seed: SeedLike = None) -> BoundK:
        """:func:`bound_K_gaussian` of this model on ``x0`` (bits per sample)."""
        return bound_K_gaussian(self.mean_var, x0, self.betas, n_mc=n_mc, seed=seed)


def train_gaussian_sd15(x0, T: int = 40, hidden: int = 128, steps: int = 3000, batch: int = 128,
                        lr: float = 2e-3, betas=None, seed: SeedLike = None, log_every: int = 100,
                        progress: bool = False,
                        num_threads: int | None = 1) -> GaussianSD15:
    """Train [SD15]'s Gaussian model by maximising the bound K (Adam, cosine learning-rate decay).

    Each step draws ``batch`` data points and, for EVERY ``t = 1..T``, an independent ``x_t ~
    q(x_t | x0)``; the loss is ``-K`` of the batch (nats per sample, the prior term included; it is
    0 for :func:`gaussian_betas`), i.e. the exact-KL objective of [SD15] eq. 14 (see the module
    docstring) with closed-form KL divergences.

    Parameters
    ----------
    x0 : array_like, shape (n, d)
        Training data ([SD15] scale it to unit variance first: :func:`unit_variance`).
    T : int >= 2
        Steps (40 in [SD15]); ignored if ``betas`` is given.
    hidden : int
        Width of the two trunk layers.
    steps, batch : int
        Optimiser steps and data points per step.
    lr : float > 0
        Adam's initial learning rate (cosine-decayed to 0).
    betas : array_like (T+1,), optional
        Forward schedule (default :func:`gaussian_betas` ``(T)``).
    seed : int, numpy.random.Generator or None
        Seeds initialisation, batches and noise.
    log_every : int
        Record the batch K (bits) every ``log_every`` steps in ``model.history``.
    progress : bool
        Show a tqdm bar.
    num_threads : int or None
        torch intra-op threads during training (restored afterwards); these small models run
        fastest on 1. None leaves torch's setting.

    Returns
    -------
    GaussianSD15

    Raises
    ------
    ValueError
        Bad data or hyper-parameters.
    """
    with torch_threads(num_threads):
        return _train_gaussian_sd15(x0, T=T, hidden=hidden, steps=steps, batch=batch, lr=lr, betas=betas,
                                    seed=seed, log_every=log_every, progress=progress)


def _train_gaussian_sd15(x0, T: int = 40, hidden: int = 128, steps: int = 3000, batch: int = 128,
                         lr: float = 2e-3, betas=None, seed: SeedLike = None, log_every: int = 100,
                        progress: bool = False) -> GaussianSD15:
    torch = _torch()
    x0 = as_samples("x0", x0).astype(np.float32)
    betas = gaussian_betas(T) if betas is None else _gaussian_betas_array(betas)
    T = betas.size - 1
    hidden = check_positive_int("hidden", hidden)
    steps = check_positive_int("steps", steps)
    batch = check_positive_int("batch", batch)
    lr = check_real("lr", lr, lo=0.0, lo_open=True)
    log_every = check_positive_int("log_every", log_every)
    rng = as_generator(seed)
    gen = torch.Generator().manual_seed(_torch_seed(rng))
    n, d = x0.shape
    P = {}
    P["W1"], P["b1"] = _init_linear(torch, gen, d + 1, hidden)
    P["W2"], P["b2"] = _init_linear(torch, gen, hidden, hidden)
    P["Wt"] = torch.zeros(T, hidden, 2 * d)
    P["bt"] = torch.zeros(T, 2 * d)
    for v in P.values():
        v.requires_grad_(True)
    model = GaussianSD15(betas=betas, d=d, hidden=hidden, params=P)
    co = _GaussCoefs.build(betas)
    f32 = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float32)  # noqa: E731
    sab, s1ab = f32(np.sqrt(co.alpha_bar[1:])), f32(np.sqrt(1 - co.alpha_bar[1:]))
    c0, ct, pv = f32(co.post_c0[1:]), f32(co.post_ct[1:]), f32(co.post_var[1:])
    pv = torch.clamp(pv, min=1e-30)
    abT = float(co.alpha_bar[T])
    t_all = torch.arange(1, T + 1)
    data = torch.as_tensor(x0)
    opt = torch.optim.Adam(list(P.values()), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    hist_step, hist_K = [], []
    it = range(steps)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc="SD15 Gaussian", leave=False)
    t0 = time.perf_counter()
    for step in it:
        idx = torch.randint(0, n, (batch,), generator=gen)
        xb = data[idx]                                            # (B, d)
        eps = torch.randn(batch, T, d, generator=gen)
        x_t = sab[None, :, None] * xb[:, None, :] + s1ab[None, :, None] * eps   # (B, T, d)
        tt = t_all.repeat(batch)
        mu, sig = model._forward(x_t.reshape(-1, d), tt)
        mu, sig = mu.reshape(batch, T, d), sig.reshape(batch, T, d)
        # t = 1: log N(x0; mu, Sigma)
        ll1 = -0.5 * (torch.log(2 * math.pi * sig[:, 0]) + (xb - mu[:, 0]) ** 2 / sig[:, 0]).sum(1)
        mq = c0[None, 1:, None] * xb[:, None, :] + ct[None, 1:, None] * x_t[:, 1:]
        s = pv[None, 1:, None]
        kl = 0.5 * (torch.log(sig[:, 1:] / s) + (s + (mq - mu[:, 1:]) ** 2) / sig[:, 1:] - 1.0).sum((1, 2))
        prior = -0.5 * ((1 - abT) + abT * xb**2 - 1 - math.log(max(1 - abT, 1e-300))).sum(1)
        K = ll1 - kl + prior
        loss = -K.mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % log_every == 0 or step == steps - 1:
            hist_step.append(step)
            hist_K.append(float(K.detach().mean()) / LOG2)
    for v in P.values():
        v.requires_grad_(False)
    model.history = {"step": np.array(hist_step), "K_bits": np.array(hist_K),
                     "seconds": time.perf_counter() - t0}
    return model


def _time_features(torch, t_idx, T, n_freq):
    """Sinusoidal features of t/T in [0, 1]: (m, 2 n_freq + 1)."""
    s = (t_idx.to(torch.float32) / T)[:, None]
    k = torch.arange(n_freq, dtype=torch.float32)[None, :]
    ang = math.pi * (2.0 ** k) * s
    return torch.cat([s, torch.sin(ang), torch.cos(ang)], dim=1)


@dataclass
class BinomialSD15:
    """[SD15]'s binomial reverse model: ``p(x_{t-1}=1 | x_t) = sigmoid(f_theta(x_t, t) + l_null)``.

    ``f_theta`` is an MLP (3 softplus layers) on ``2 x_t - 1`` and sinusoidal features of ``t/T``
    with a shared readout; ``l_null`` is the logit of the exact reverse kernel of independent bits
    with the training data's mean ``p1`` (:func:`physdiff.binomial.independent_reverse_rate`), so a
    model with ``f_theta = 0`` is the null model of [SD15] Table 1. Build and train with
    :func:`train_binomial_sd15`.

    Attributes
    ----------
    betas : ndarray float64 (T+1,)
    d, hidden, n_freq : int
    p1 : ndarray float64 (d,)
        The training data's mean of each bit.
    params : dict of torch tensors
    history : dict
        ``step``, ``K_bits`` (training-batch estimate, bits per sequence) and ``seconds``.
    """

    betas: np.ndarray
    d: int
    hidden: int
    n_freq: int
    p1: np.ndarray
    params: dict
    history: dict = field(default_factory=dict)

    @property
    def T(self) -> int:
        return int(self.betas.size - 1)

    def _tables(self):
        torch = _torch()
        if not hasattr(self, "_tab"):
            gamma = np.cumprod(1.0 - self.betas)
            self._tab = (torch.as_tensor(self.betas, dtype=torch.float32),
                         torch.as_tensor(np.clip(gamma, 0.0, 1.0), dtype=torch.float32),
                         torch.as_tensor(self.p1, dtype=torch.float32))
        return self._tab

    def _null_logit(self, x, t_idx):
        torch = _torch()
        b, g, p1 = self._tables()
        bt = b[t_idx][:, None]
        a = p1[None, :] * g[t_idx - 1][:, None] + 0.5 * (1 - g[t_idx - 1][:, None])
        k1 = torch.where(x > 0.5, 1 - 0.5 * bt, 0.5 * bt)
        k0 = torch.where(x > 0.5, 0.5 * bt, 1 - 0.5 * bt)
        tiny = 1e-30
        return torch.log(k1 * a + tiny) - torch.log(k0 * (1 - a) + tiny)

    def _logit(self, x, t_idx):
        """x (m, d) float 0/1 tensor, t_idx (m,) long in 1..T -> logits (m, d)."""
        torch = _torch()
        P = self.params
        inp = torch.cat([2 * x - 1, _time_features(torch, t_idx, self.T, self.n_freq)], dim=1)
        h = torch.nn.functional.softplus(inp @ P["W1"] + P["b1"])
        h = torch.nn.functional.softplus(h @ P["W2"] + P["b2"])
        h = torch.nn.functional.softplus(h @ P["W3"] + P["b3"])
        return h @ P["W4"] + P["b4"] + self._null_logit(x, t_idx)

    def logit(self, x_t, t: int) -> np.ndarray:
        """Logit of ``p(x_{t-1}=1 | x_t)`` at step ``t`` (numpy (n, d) in, float64 (n, d) out),
        for ``bound_K_binomial(..., output="logit")``."""
        torch = _torch()
        x = torch.as_tensor(np.asarray(x_t, dtype=np.float32))
        with torch.no_grad():
            return self._logit(x, torch.full((x.shape[0],), int(t), dtype=torch.long)).double().numpy()

    def sample(self, n: int, seed: SeedLike = None) -> np.ndarray:
        """Ancestral samples from ``x_T ~ B(0.5)^d``: int8 (n, d) in {0, 1}. ``ValueError`` if n < 1."""
        n = check_positive_int("n", n)
        torch = _torch()
        gen = torch.Generator().manual_seed(_torch_seed(as_generator(seed)))
        x = (torch.rand(n, self.d, generator=gen) < 0.5).to(torch.float32)
        with torch.no_grad():
            for t in range(self.T, 0, -1):
                p = torch.sigmoid(self._logit(x, torch.full((n,), t, dtype=torch.long)))
                x = (torch.rand(n, self.d, generator=gen) < p).to(torch.float32)
        return x.numpy().astype(np.int8)

    def bound_K(self, x0, n_mc: int = 1, seed: SeedLike = None) -> BoundK:
        """:func:`bound_K_binomial` of this model on ``x0`` (bits per sequence)."""
        return bound_K_binomial(self.logit, x0, self.betas, n_mc=n_mc, seed=seed, output="logit")


def train_binomial_sd15(x0, T: int = 2000, hidden: int = 128, steps: int = 4000, batch: int = 256,
                        lr: float = 2e-3, n_freq: int = 8, seed: SeedLike = None, log_every: int = 100,
                        progress: bool = False,
                        num_threads: int | None = 1) -> BinomialSD15:
    """Train [SD15]'s binomial model on binary data by maximising the bound K.

    Each step draws ``batch`` sequences and one step ``t`` per sequence, stratified over ``1..T``;
    ``x_t ~ q(x_t | x0)`` in closed form; the loss ``T * mean_t KL(q(x_{t-1}|x_t,x0) ||
    p(x_{t-1}|x_t))`` is an unbiased estimate of ``-K`` (nats per sequence; the prior term is 0
    because ``beta_T = 1`` and ``p(x_T) = B(0.5)``).

    Parameters
    ----------
    x0 : array_like of 0/1, shape (n, d)
        Training sequences (e.g. :func:`physdiff.datasets.binary_heartbeat`).
    T : int >= 1
        Steps of :func:`physdiff.binomial.binomial_betas` (2000 in [SD15]).
    hidden, n_freq : int
        MLP width; number of sinusoidal time frequencies.
    steps, batch : int
    lr : float > 0
        Adam's initial learning rate, cosine-decayed to 0.
    seed : int, numpy.random.Generator or None
    log_every : int
    progress : bool
        Show a tqdm bar.
    num_threads : int or None
        torch intra-op threads during training (restored afterwards); these small models run
        fastest on 1. None leaves torch's setting.

    Returns
    -------
    BinomialSD15

    Raises
    ------
    ValueError
        Non-binary data or bad hyper-parameters.
    """
    with torch_threads(num_threads):
        return _train_binomial_sd15(x0, T=T, hidden=hidden, steps=steps, batch=batch, lr=lr,
                                    n_freq=n_freq, seed=seed, log_every=log_every, progress=progress)


def _train_binomial_sd15(x0, T: int = 2000, hidden: int = 128, steps: int = 4000, batch: int = 256,
                        lr: float = 2e-3, n_freq: int = 8, seed: SeedLike = None, log_every: int = 100,
                        progress: bool = False) -> BinomialSD15:
    torch = _torch()
    x0 = _as_bits("x0", x0)
    betas = binomial_betas(T)
    hidden = check_positive_int("hidden", hidden)
    n_freq = check_positive_int("n_freq", n_freq)
    steps = check_positive_int("steps", steps)
    batch = check_positive_int("batch", batch)
    lr = check_real("lr", lr, lo=0.0, lo_open=True)
    log_every = check_positive_int("log_every", log_every)
    rng = as_generator(seed)
    gen = torch.Generator().manual_seed(_torch_seed(rng))
    n, d = x0.shape
    p1 = x0.mean(axis=0).astype(np.float64)
    n_in = d + 2 * n_freq + 1
    P = {}
    P["W1"], P["b1"] = _init_linear(torch, gen, n_in, hidden)
    P["W2"], P["b2"] = _init_linear(torch, gen, hidden, hidden)
    P["W3"], P["b3"] = _init_linear(torch, gen, hidden, hidden)
    P["W4"], P["b4"] = _init_linear(torch, gen, hidden, d, zero=True)
    for v in P.values():
        v.requires_grad_(True)
    model = BinomialSD15(betas=betas, d=d, hidden=hidden, n_freq=n_freq, p1=p1, params=P)
    b, g, _ = model._tables()
    data = torch.as_tensor(x0, dtype=torch.float32)
    opt = torch.optim.Adam(list(P.values()), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    hist_step, hist_K = [], []
    it = range(steps)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc="SD15 binomial", leave=False)
    t0 = time.perf_counter()
    for step in it:
        idx = torch.randint(0, n, (batch,), generator=gen)
        xb = data[idx]
        u = (torch.arange(batch, dtype=torch.float64) + torch.rand(batch, generator=gen, dtype=torch.float64)) / batch
        t_idx = torch.clamp((u * T).long() + 1, 1, T)[torch.randperm(batch, generator=gen)]
        gt = g[t_idx][:, None]
        x_t = (torch.rand(batch, d, generator=gen) < xb * gt + 0.5 * (1 - gt)).to(torch.float32)
        bt = b[t_idx][:, None]
        gp = g[t_idx - 1][:, None]
        a = xb * gp + 0.5 * (1 - gp)
        k1 = torch.where(x_t > 0.5, 1 - 0.5 * bt, 0.5 * bt)
        k0 = torch.where(x_t > 0.5, 0.5 * bt, 1 - 0.5 * bt)
        q = k1 * a / (k1 * a + k0 * (1 - a))
        lg = model._logit(x_t, t_idx)
        kl = (torch.xlogy(q, q) + torch.xlogy(1 - q, 1 - q)
              - q * torch.nn.functional.logsigmoid(lg) - (1 - q) * torch.nn.functional.logsigmoid(-lg)).sum(1)
        loss = T * kl.mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % log_every == 0 or step == steps - 1:
            hist_step.append(step)
            hist_K.append(-float(loss.detach()) / LOG2)
    for v in P.values():
        v.requires_grad_(False)
    model.history = {"step": np.array(hist_step), "K_bits": np.array(hist_K),
                     "seconds": time.perf_counter() - t0}
    return model


def train_eps_ddpm(x0, schedule_or_betas, *, hidden: int = 256, epochs: int = 100, batch: int = 100,
                   lr: float = 1e-2, seed: int = 0, max_beta: float = 0.999, sigma: str = "beta",
                   progress: bool = False, log: Callable | None = None, num_threads: int | None = 1):
    """Train the per-timestep eps-predicting DDPM of :mod:`physdiff.ddpm` on a Gaussian schedule.

    The [Thesis] model (one Linear-ReLU-Linear net per step, ``L_simple`` [Ho20, eq. 14], one Adam
    per net) on ``ddpm_schedule(schedule_or_betas, max_beta)``, so that its bound K
    (:func:`ddpm_bound_K`) can be set beside [SD15]'s mean-and-variance model trained on K itself
    with the same steps.

    Parameters
    ----------
    x0 : array_like, shape (n, d)
        Training data (e.g. unit-variance Swiss roll).
    schedule_or_betas : Schedule or array_like (T+1,)
        E.g. :func:`gaussian_betas` ``(40)``; ``beta_t`` is clipped at ``max_beta``.
    hidden, epochs, batch, lr : TrainConfig fields (see :class:`physdiff.ddpm.TrainConfig`).
    seed : int >= 0
        Initialisation, minibatch orders and noise.
    max_beta : float in (0, 1)
    sigma : {"beta", "posterior"}
        The model's default sampling variance (the bound is computed for both).
    progress : bool
    log : callable or None
        Status lines (None: silent).
    num_threads : int or None
        torch intra-op threads during training (restored afterwards); None leaves torch's setting.

    Returns
    -------
    physdiff.ddpm.DDPM
        Its ``schedule`` is the clipped one.

    Raises
    ------
    ValueError
        Bad data, schedule or hyper-parameters.
    """
    from .ddpm import TrainConfig, train

    sched = ddpm_schedule(schedule_or_betas, max_beta)
    config = TrainConfig(schedule={"name": "custom", "betas": sched.betas[1:].tolist()}, T=sched.T,
                         hidden=hidden, lr=lr, epochs=epochs, batch=batch, seed=seed, device="cpu", sigma=sigma)
    with torch_threads(num_threads):
        return train(np.asarray(x0, dtype=np.float32), config, progress=progress, log=log)
