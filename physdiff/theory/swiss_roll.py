"""The thesis' Swiss roll: its exact density and the exact noise predictor of the diffused roll.

The data of :func:`physdiff.datasets.swiss_roll` are ``x0 = (c(theta) + noise xi) / 12`` with the
centre line ``c(theta) = (5 + theta)(cos theta, sin theta)``, ``theta ~ U[0, turns pi]`` and
``xi ~ N(0, I_2)`` ([Thesis] Table 2), so ``q(x0)`` is a continuous mixture of isotropic Gaussians
along the curve, and so is every diffused marginal ``q_t`` (``docs/theory.md``, "The Swiss roll").
Both integrals over ``theta`` are taken by the trapezoid rule in log-sum-exp form, on a grid that
puts >= 8 nodes in the Gaussian's width along the curve. numpy + scipy only.

References
----------
[Thesis] Bustinduy de la Guerra (2024), Out-of-Equilibrium Machine Learning (UCM), Table 2.
[SD15] Sohl-Dickstein, Weiss, Maheswaranathan, Ganguli (2015), arXiv:1503.03585, Table 1.
[Ho20] Ho, Jain, Abbeel (2020), Denoising Diffusion Probabilistic Models, arXiv:2006.11239.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import logsumexp

from .._util import as_samples, check_positive_int, check_real

__all__ = ["swiss_roll_curve", "swiss_roll_log_density", "swiss_roll_eps"]


def swiss_roll_curve(theta) -> np.ndarray:
    """Points of the roll's centre line, ``c(theta) / 12 = (5 + theta)(cos theta, sin theta) / 12``.

    Parameters
    ----------
    theta : array_like of float, shape (m,)
        Angles in radians (the data use ``[0, turns pi]``).

    Returns
    -------
    ndarray, float64, shape (m, 2)
        In the units of :func:`physdiff.datasets.swiss_roll` (after the division by 12).

    Raises
    ------
    ValueError
        ``theta`` not 1-D or not finite.
    """
    theta = np.asarray(theta, dtype=np.float64)
    if theta.ndim != 1 or not np.all(np.isfinite(theta)):
        raise ValueError(f"theta must be a finite 1-D array of angles, got shape {theta.shape}")
    r = 5.0 + theta
    return np.stack([r * np.cos(theta), r * np.sin(theta)], axis=1) / 12.0


def swiss_roll_log_density(x, turns: float = 2.0, noise: float = 0.1, n_grid: int | None = None) -> np.ndarray:
    """Exact log-density (nats) of :func:`physdiff.datasets.swiss_roll`'s distribution at ``x``.

    The data are ``(c(theta) + noise xi) / 12`` with ``c(theta) = (5 + theta)(cos theta, sin
    theta)``, ``theta ~ U[0, turns pi]``, ``xi ~ N(0, I_2)`` ([Thesis] Table 2), so::

        q(x) = (1 / (turns pi)) int_0^{turns pi} dtheta N(x; c(theta)/12, (noise/12)^2 I_2),

    computed by the trapezoid rule in log-sum-exp form on a grid fine enough that the Gaussian's
    width along the curve holds >= 8 nodes. ``E log q`` is the best K any model can reach on
    these data (in the raw units; add ``2 log(scale)`` after :func:`physdiff.sd15.unit_variance`).

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
    theta_logw, cx, cy = _quadrature(turns, noise, n_grid)
    s2 = (noise / 12.0) ** 2
    out = np.empty(x.shape[0])
    chunk = max(1, 4_000_000 // cx.size)
    for lo in range(0, x.shape[0], chunk):
        xx = x[lo:lo + chunk]
        d2 = (xx[:, :1] - cx[None, :]) ** 2 + (xx[:, 1:] - cy[None, :]) ** 2
        out[lo:lo + chunk] = logsumexp(theta_logw[None, :] - d2 / (2 * s2), axis=1) - np.log(2 * np.pi * s2)
    return out


def _quadrature(turns: float, noise: float, n_grid: int | None):
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
    c = swiss_roll_curve(theta)
    return np.log(w / span), c[:, 0], c[:, 1]


def swiss_roll_eps(x_t, alpha_bar: float, turns: float = 2.0, noise: float = 0.1, shift=0.0,
                   scale: float = 1.0, n_grid: int | None = None) -> np.ndarray:
    """Exact noise predictor ``eps*(x_t) = -sqrt(1 - alpha_bar) grad log q_t(x_t)`` of the diffused
    Swiss roll, in the units ``y = (x - shift) / scale`` (e.g. after :func:`physdiff.sd15.unit_variance`).

    The data are ``y0 = mu(theta) + sigma_y xi`` with ``mu(theta) = (c(theta)/12 - shift) / scale``,
    ``sigma_y = noise / (12 scale)``, ``theta ~ U[0, turns pi]`` (:func:`swiss_roll_log_density`).
    Given ``theta``, ``x_t = s y0 + sqrt(Delta) eps`` is ``N(s mu, v I)`` with ``s = sqrt(alpha_bar)``,
    ``Delta = 1 - alpha_bar``, ``v = s^2 sigma_y^2 + Delta`` [Ho20, eq. 4], so ``q_t`` is a continuous
    mixture of isotropic Gaussians and (Tweedie; ``docs/theory.md``, "The Swiss roll")::

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
        The units: ``y = (x_raw - shift) / scale`` (:func:`physdiff.sd15.unit_variance` returns both).
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
    logw, cx, cy = _quadrature(turns, noise, n_grid)
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
