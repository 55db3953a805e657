"""Data helpers of [SD15] Table 1: unit-variance scaling, the null models' log-likelihoods, and the
validity of binary-heartbeat sequences.

References
----------
[SD15] Sohl-Dickstein et al. (2015), arXiv:1503.03585, Table 1 and Sec. 3.1.2.
"""

from __future__ import annotations

import numpy as np
from scipy.special import xlogy

from .._util import as_samples, check_positive_int
from ..binomial import _as_bits
from .bound import LOG2

__all__ = ["unit_variance", "null_log_likelihood_gaussian", "null_log_likelihood_binomial", "valid_heartbeat"]


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
