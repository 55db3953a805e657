"""The bound K of an eps-parametrised DDPM with a fixed reverse variance, and the per-timestep DDPM
of :mod:`physdiff.ddpm` trained on an [SD15]-style Gaussian schedule, for comparison with
[SD15]'s mean-and-variance model (``docs/theory.md``, "Sohl-Dickstein et al. 2015: the bound K").

References
----------
[SD15] Sohl-Dickstein et al. (2015), arXiv:1503.03585, eq. 14.
[Ho20] Ho, Jain, Abbeel (2020), arXiv:2006.11239, eqs. 11-12, Sec. 3.2.
[ND21] Nichol, Dhariwal (2021), Improved DDPM, arXiv:2102.09672, eq. 17.
[Thesis] Bustinduy de la Guerra (2024), Out-of-Equilibrium Machine Learning (UCM).
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from .._util import SeedLike, check_real, torch_threads
from ..schedules import Schedule
from .bound import _bound_K_gaussian_many, _GaussCoefs, _gaussian_betas_array, _to_numpy

__all__ = ["ddpm_mean_var", "ddpm_schedule", "ddpm_bound_K", "train_eps_ddpm"]


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
    from ..ddpm import TrainConfig, train

    sched = ddpm_schedule(schedule_or_betas, max_beta)
    config = TrainConfig(schedule={"name": "custom", "betas": sched.betas[1:].tolist()}, T=sched.T,
                         hidden=hidden, lr=lr, epochs=epochs, batch=batch, seed=seed, device="cpu", sigma=sigma)
    with torch_threads(num_threads):
        return train(np.asarray(x0, dtype=np.float32), config, progress=progress, log=log)
