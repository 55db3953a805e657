"""Sampling the Curie-Weiss model: an exact O(N) sampler and single-spin-flip MCMC (numba).

The Curie-Weiss law on spins ``a in {-1, +1}^N`` is

    q(a) ∝ exp(beta M^2 / (2N) + h M),      M = sum_i a_i,

with ``beta`` the inverse temperature and ``h`` a per-spin field ([BM23]; docs/theory.md,
"The Curie-Weiss model").
``q`` depends on ``a`` only through ``M``, so an exact sample is: draw ``M`` from its exact law
``P(M) ∝ C(N, (N+M)/2) exp(beta M^2/(2N) + h M)`` (:func:`physdiff.theory.curie_weiss.
magnetization_distribution`), then put the ``(N+M)/2`` up-spins on a uniformly random subset of
sites. It has no autocorrelation and costs O(N) per sample at every ``beta``.

Heat-bath (Glauber) and Metropolis single-spin-flip Markov chains are provided as the textbook
cross-check. For ``beta > 1`` and large ``N`` they do not tunnel between the ``±m*`` states in any
reasonable time (the free-energy barrier grows like ``N``): a chain started in one state stays there,
which is why the exact sampler is the default.

Randomness: every sample (chain) gets its own random stream, seeded from
:func:`physdiff._util.stream_seeds` and re-seeded inside the ``prange`` body, so the output for a
given ``seed`` does not depend on the number of numba threads.

References
----------
[BM23] Biroli, Mezard (2023), Generative diffusion in very large dimensions, arXiv:2306.03518.
[BBBM24] Biroli, Bonnaire, de Bortoli, Mezard (2024), Dynamical regimes of diffusion models,
    arXiv:2402.18491.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange
from scipy.special import expit

from ._util import SeedLike, as_samples, check_positive_int, check_real, stream_seeds
from .theory.curie_weiss import magnetization_distribution

__all__ = ["sample_curie_weiss", "magnetization", "heat_bath_chain"]

METHODS = ("exact", "heat-bath", "metropolis")
INITS = ("random", "up", "down")
DEFAULT_SWEEPS = 1000

_INIT_CODE = {"random": 0, "up": 1, "down": 2}


# --------------------------------------------------------------------------------------------
# seeds
# --------------------------------------------------------------------------------------------

def _kernel_seeds(seed: SeedLike, n: int) -> np.ndarray:
    """``n`` DISTINCT 32-bit seeds, one per sample, from :func:`stream_seeds`.

    numba's ``np.random.seed`` takes a ``uint32`` (it truncates wider seeds), so 63-bit stream
    seeds reduced mod 2**32 collide with probability ~ n^2 / 2^33 (likely from n ~ 10^5 on), and
    two samples would then be identical. Colliding entries are redrawn, deterministically, from a
    generator seeded by ``(seeds[0], n)``, until all are distinct.
    """
    seeds = stream_seeds(seed, n)
    s32 = (seeds & 0xFFFFFFFF).astype(np.uint32)
    rng = None
    while True:
        _, first = np.unique(s32, return_index=True)
        if first.size == n:
            return s32
        dup = np.ones(n, dtype=bool)
        dup[first] = False
        if rng is None:
            rng = np.random.default_rng([int(seeds[0]), n])
        s32[dup] = rng.integers(0, 2**32, size=int(dup.sum()), dtype=np.uint32)


# --------------------------------------------------------------------------------------------
# numba kernels
# --------------------------------------------------------------------------------------------

@njit(parallel=True, cache=True)
def _exact_kernel(out, seeds, cdf):  # pragma: no cover - compiled
    n, N = out.shape
    for i in prange(n):
        np.random.seed(seeds[i])
        # number of up spins k = (N + M) / 2 by inverse CDF
        k = np.searchsorted(cdf, np.random.random(), side="right")
        if k > N:
            k = N
        if 2 * k <= N:
            minority, majority, kk = 1, -1, k
        else:
            minority, majority, kk = -1, 1, N - k
        row = out[i]
        for j in range(N):
            row[j] = majority
        # partial Fisher-Yates: the first kk entries of perm are a uniform kk-subset of sites
        perm = np.arange(N)
        for j in range(kk):
            r = j + np.random.randint(0, N - j)
            site = perm[r]
            perm[r] = perm[j]
            perm[j] = site
            row[site] = minority


@njit(cache=True)
def _init_spins(row, init_code):  # pragma: no cover - compiled
    N = row.shape[0]
    M = 0
    for j in range(N):
        if init_code == 0:
            s = 1 if np.random.random() < 0.5 else -1
        elif init_code == 1:
            s = 1
        else:
            s = -1
        row[j] = s
        M += s
    return M


@njit(cache=True)
def _mcmc_sweeps(row, M, n_sweeps, table, metropolis, record):  # pragma: no cover - compiled
    """``n_sweeps`` sweeps of N random-site single-spin updates; ``M`` tracked incrementally.

    ``table[., idx]`` is indexed by the field of the other spins, ``M - a_j = 2 idx - (N - 1)``.
    Heat bath: ``table[0, idx] = P(a_j = +1 | rest)``. Metropolis: ``table[0, idx]`` and
    ``table[1, idx]`` are the acceptance probabilities of flipping ``a_j = +1`` and ``a_j = -1``.
    If ``record`` is non-empty, ``record[t + 1]`` receives ``M`` after sweep ``t``.
    """
    N = row.shape[0]
    do_record = record.shape[0] > 0
    for t in range(n_sweeps):
        for _ in range(N):
            j = np.random.randint(0, N)
            s = np.int64(row[j])
            idx = (M - s + N - 1) // 2
            if metropolis:
                acc = table[(1 - s) // 2, idx]
                if acc >= 1.0 or np.random.random() < acc:
                    row[j] = -s
                    M -= 2 * s
            else:
                new = 1 if np.random.random() < table[0, idx] else -1
                if new != s:
                    row[j] = new
                    M += 2 * new
        if do_record:
            record[t + 1] = M
    return M


@njit(parallel=True, cache=True)
def _mcmc_kernel(out, seeds, n_sweeps, table, metropolis, init_code):  # pragma: no cover
    no_record = np.zeros(0, dtype=np.int64)
    for i in prange(out.shape[0]):
        np.random.seed(seeds[i])
        row = out[i]
        M = _init_spins(row, init_code)
        _mcmc_sweeps(row, M, n_sweeps, table, metropolis, no_record)


@njit(cache=True)
def _chain_kernel(N, seed, n_sweeps, table, init_code):  # pragma: no cover - compiled
    np.random.seed(seed)
    row = np.empty(N, dtype=np.int8)
    record = np.empty(n_sweeps + 1, dtype=np.int64)
    M = _init_spins(row, init_code)
    record[0] = M
    _mcmc_sweeps(row, M, n_sweeps, table, False, record)
    return record


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------

def _check_model(N, beta, h):
    N = check_positive_int("N", N)
    beta = check_real("beta", beta, lo=0.0)
    h = check_real("h", h)
    return N, beta, h


def _check_init(init) -> int:
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {init!r}")
    return _INIT_CODE[init]


def _mcmc_table(N: int, beta: float, h: float, metropolis: bool) -> np.ndarray:
    """Update probabilities, float64 (2, N), as a function of the other spins' sum.

    The local field on spin j is ``H = beta (M - a_j) / N + h``; flipping ``a_j = s`` changes
    ``log q`` by ``-2 s H`` (from q(a) ∝ exp(beta M^2/(2N) + h M); docs/theory.md, "The Curie-Weiss
    model").
    """
    m_rest = 2.0 * np.arange(N) - (N - 1)          # M - a_j = -(N-1), ..., N-1
    field = beta * m_rest / N + h
    table = np.empty((2, N), dtype=np.float64)
    if metropolis:
        table[0] = np.exp(np.minimum(0.0, -2.0 * field))    # flip +1 -> -1
        table[1] = np.exp(np.minimum(0.0, 2.0 * field))     # flip -1 -> +1
    else:
        table[0] = expit(2.0 * field)                        # P(a_j = +1 | rest)
        table[1] = 1.0 - table[0]
    return table


# --------------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------------

def sample_curie_weiss(N: int, beta: float, h: float = 0.0, n_samples: int = 1,
                       seed: SeedLike = None, method: str = "exact",
                       n_sweeps: int | None = None, init: str | None = None) -> np.ndarray:
    """Draw spin configurations from the Curie-Weiss law ``q(a) ∝ exp(beta M^2/(2N) + h M)``.

    ``method="exact"`` (default; docs/theory.md, "The Curie-Weiss model"): for each sample draw
    ``M`` from its exact law ``P(M) ∝ C(N, (N+M)/2) exp(beta M^2/(2N) + h M)`` by inverse CDF,
    then set a uniformly random subset of ``(N+M)/2`` spins to +1 (partial Fisher-Yates). Samples
    are independent and exact at every ``beta``; O(N) per sample.

    ``method="heat-bath"`` or ``"metropolis"``: one independent single-spin-flip Markov chain per
    sample, ``n_sweeps`` sweeps of ``N`` random-site updates each, started from ``init``; the
    sample is the chain's last state. A cross-check only: for ``beta > 1`` a chain does not tunnel
    between the ``±m*`` states (from ``init="up"`` every sample has ``M > 0``), so the result is
    NOT a sample of ``q`` unless ``h`` breaks the symmetry strongly enough.

    Parameters
    ----------
    N : int >= 1
        Number of spins.
    beta : float >= 0
        Inverse temperature (dimensionless).
    h : float, default 0
        Per-spin external field (dimensionless).
    n_samples : int >= 1, default 1
        Number of samples (independent chains for MCMC).
    seed : int, numpy.random.Generator or None
        Equal seeds give equal samples, whatever the number of numba threads.
    method : {"exact", "heat-bath", "metropolis"}, default "exact"
    n_sweeps : int >= 0, optional
        MCMC only: sweeps per chain (default 1000). One sweep is ``N`` attempted updates.
    init : {"random", "up", "down"}, optional
        MCMC only: initial state, independent ±1 spins (default), all +1 or all -1.

    Returns
    -------
    ndarray, int8, shape (n_samples, N)
        Spins in ``{-1, +1}``.

    Raises
    ------
    ValueError
        ``N < 1``, ``n_samples < 1``, ``beta < 0``, NaN/inf ``beta`` or ``h``, an unknown
        ``method`` or ``init``, ``n_sweeps < 0``, or ``n_sweeps``/``init`` given with
        ``method="exact"``.

    See Also
    --------
    physdiff.theory.curie_weiss.magnetization_distribution : the exact law of ``M``.
    heat_bath_chain : the magnetization time series of one chain.

    Examples
    --------
    >>> a = sample_curie_weiss(100, 1.5, n_samples=4, seed=0)
    >>> a.shape, a.dtype
    ((4, 100), dtype('int8'))
    """
    N, beta, h = _check_model(N, beta, h)
    n_samples = check_positive_int("n_samples", n_samples)
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    out = np.empty((n_samples, N), dtype=np.int8)

    if method == "exact":
        if n_sweeps is not None or init is not None:
            raise ValueError("n_sweeps and init apply to the MCMC methods ('heat-bath', "
                             "'metropolis') only; drop them for method='exact'")
        seeds = _kernel_seeds(seed, n_samples)
        _, P = magnetization_distribution(N, beta, h)
        cdf = np.cumsum(P)
        cdf /= cdf[-1]
        _exact_kernel(out, seeds, cdf)
        return out

    n_sweeps = DEFAULT_SWEEPS if n_sweeps is None else check_positive_int("n_sweeps", n_sweeps, 0)
    init_code = _check_init("random" if init is None else init)
    metropolis = method == "metropolis"
    table = _mcmc_table(N, beta, h, metropolis)
    seeds = _kernel_seeds(seed, n_samples)
    _mcmc_kernel(out, seeds, n_sweeps, table, metropolis, init_code)
    return out


def heat_bath_chain(N: int, beta: float, h: float = 0.0, n_sweeps: int = DEFAULT_SWEEPS,
                    seed: SeedLike = None, *, init: str = "random") -> np.ndarray:
    """Magnetization time series ``M(t)`` of one heat-bath (Glauber) chain, for autocorrelations.

    Each sweep is ``N`` random-site updates ``a_j <- +1`` with probability
    ``1 / (1 + exp(-2 H_j))``, ``H_j = beta (M - a_j) / N + h`` (the conditional law of ``a_j`` under
    ``q(a) ∝ exp(beta M^2/(2N) + h M)``, docs/theory.md, "The Curie-Weiss model"). The chain
    satisfies detailed balance with respect to ``q``.

    Parameters
    ----------
    N : int >= 1
        Number of spins.
    beta : float >= 0
        Inverse temperature.
    h : float, default 0
        Per-spin external field.
    n_sweeps : int >= 0, default 1000
        Number of sweeps (time unit: one sweep = ``N`` attempted updates).
    seed : int, numpy.random.Generator or None
        Equal seeds give equal series.
    init : {"random", "up", "down"}, default "random"
        Initial state: independent ±1 spins, all +1 or all -1.

    Returns
    -------
    ndarray, int64, shape (n_sweeps + 1,)
        ``M`` at the start (index 0) and after each sweep; ``m = M / N``.

    Raises
    ------
    ValueError
        ``N < 1``, ``beta < 0``, NaN/inf ``beta`` or ``h``, ``n_sweeps < 0``, unknown ``init``.

    Notes
    -----
    The kernel runs in the calling thread and re-seeds that thread's numba random state.
    """
    N, beta, h = _check_model(N, beta, h)
    n_sweeps = check_positive_int("n_sweeps", n_sweeps, 0)
    init_code = _check_init(init)
    table = _mcmc_table(N, beta, h, metropolis=False)
    seed32 = _kernel_seeds(seed, 1)[0]
    return _chain_kernel(N, seed32, n_sweeps, table, init_code)


def magnetization(spins) -> np.ndarray:
    """Magnetization per spin ``m = M / N = mean_i a_i`` of each sample.

    Parameters
    ----------
    spins : array_like, shape (n, N) or (N,)
        Spin configurations (any real dtype; typically int8 in ``{-1, +1}``, or float32 once
        diffused).

    Returns
    -------
    ndarray, float64, shape (n,)

    Raises
    ------
    ValueError
        Wrong number of dimensions, empty input, or NaN/inf values.
    """
    a = as_samples("spins", spins)
    return a.mean(axis=1, dtype=np.float64)
