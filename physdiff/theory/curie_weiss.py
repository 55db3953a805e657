"""Exact and large-N theory of the Curie-Weiss model as the data of a diffusion model.

``q(a) ∝ exp(beta M^2 / (2N) + h M)`` for spins ``a_i = ±1``, ``M = sum_i a_i``; ``beta`` is the
inverse temperature and ``h`` a per-spin field. numpy + scipy only. Formulas and reference values:
REFERENCES.md sections 2-4.

References
----------
[BM23] Biroli, Mezard (2023), Generative diffusion in very large dimensions, arXiv:2306.03518.
[BBBM24] Biroli, Bonnaire, de Bortoli, Mezard (2024), arXiv:2402.18491.
"""

from __future__ import annotations

import numpy as np
from scipy.special import gammaln, logsumexp

from .._util import check_positive_int, check_real

__all__ = ["magnetization_distribution"]


def _check_model(N, beta, h):
    N = check_positive_int("N", N)
    beta = check_real("beta", beta, lo=0.0)
    h = check_real("h", h)
    return N, beta, h


def magnetization_distribution(N: int, beta: float, h: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Exact law of the total magnetization ``M = sum_i a_i`` of the Curie-Weiss model.

    ``P(M) ∝ C(N, (N+M)/2) exp(beta M^2/(2N) + h M)`` for ``M = -N, -N+2, ..., N``, computed in log
    space (REFERENCES.md sec. 2).

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
    k = np.arange(N + 1)
    M = 2 * k - N
    logw = (gammaln(N + 1) - gammaln(k + 1) - gammaln(N - k + 1)
            + beta * M.astype(np.float64) ** 2 / (2.0 * N) + h * M)
    P = np.exp(logw - logsumexp(logw))
    return M.astype(np.int64), P
