"""Binomial (bit-flip) diffusion on ``{0, 1}^d`` [SD15, Table App.1]: the forward chain and its
closed forms.

The forward kernel acts on each bit independently [SD15, Table App.1, "Forward diffusion kernel"]::

    q(x_t = 1 | x_{t-1}) = x_{t-1} (1 - beta_t) + beta_t / 2,

i.e. with probability ``beta_t`` the bit is redrawn uniformly, else it is kept. Composing ``t``
steps gives the closed form (the signal decays by ``1 - beta_s`` per step)::

    q(x_t = 1 | x0) = x0 (1 - beta_bar_t) + beta_bar_t / 2,    1 - beta_bar_t = prod_{s<=t} (1 - beta_s).

[SD15] (Sec. 2.4.1, "Setting the diffusion rate") erase a constant fraction ``1/T`` of the signal
per step, ``beta_t = 1 / (T - t + 1)``, so that ``1 - beta_bar_t = 1 - t/T`` and ``beta_T = 1``:
``x_T`` is exactly uniform and independent of the data (:func:`binomial_betas`).

Arrays follow the package's time convention (docs/design.md): ``betas`` has length ``T + 1`` with
``betas[0] = 0``, and step ``t = 0`` is the data. Because ``beta_T = 1`` is allowed here (it is not
for a Gaussian :class:`~physdiff.schedules.Schedule`), binomial schedules are plain arrays.

Randomness: :func:`binomial_trajectory` is a numba ``prange`` kernel over noise streams (blocks of
consecutive samples), each seeded from ``seed`` with the 32-bit, pairwise-distinct stream seeds of
:mod:`physdiff.forward`, so the output is identical for any number of numba threads.
:func:`binomial_diffuse` draws from a ``numpy.random.Generator``.

References
----------
[SD15] Sohl-Dickstein, Weiss, Maheswaranathan, Ganguli (2015), Deep Unsupervised Learning using
    Nonequilibrium Thermodynamics, arXiv:1503.03585.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ._util import SeedLike, as_generator, check_positive_int
from .forward import _as_step_array, _record_slots, _rows_per_stream, _stream_seeds32

__all__ = [
    "binomial_betas",
    "signal_fraction",
    "marginal_rate",
    "binomial_diffuse",
    "binomial_trajectory",
    "posterior_rate",
    "independent_reverse_rate",
]


# ---------------------------------------------------------------------------------------------
# schedule and closed forms
# ---------------------------------------------------------------------------------------------


def binomial_betas(T: int) -> np.ndarray:
    """[SD15]'s binomial diffusion rates ``beta_t = 1 / (T - t + 1)``, with ``betas[0] = 0``.

    Each step erases a constant fraction ``1/T`` of the original signal: ``prod_{s<=t}(1-beta_s)
    = 1 - t/T`` [SD15, Sec. 2.4.1]. ``beta_T = 1`` makes ``x_T`` exactly uniform.

    Parameters
    ----------
    T : int >= 1
        Number of diffusion steps (2000 for [SD15]'s heartbeat).

    Returns
    -------
    ndarray, float64, shape (T+1,)
        ``betas[t]`` for ``t = 0..T``; ``betas[0] = 0``, ``betas[T] = 1``.

    Raises
    ------
    ValueError
        ``T`` is not an integer >= 1.
    """
    T = check_positive_int("T", T)
    betas = np.zeros(T + 1, dtype=np.float64)
    t = np.arange(1, T + 1)
    betas[1:] = 1.0 / (T - t + 1.0)
    return betas


def _check_betas(betas) -> np.ndarray:
    b = np.asarray(betas, dtype=np.float64)
    if b.ndim != 1 or b.size < 2:
        raise ValueError(f"betas must be a 1-D array of length T+1 >= 2 (betas[0] = 0), got shape {b.shape}; "
                         "build one with binomial_betas(T)")
    if not np.all(np.isfinite(b)):
        raise ValueError("betas contains NaN or inf")
    if b[0] != 0.0:
        raise ValueError(f"betas[0] must be 0 (step 0 is the data), got {b[0]}; prepend a 0")
    if np.any(b[1:] <= 0.0) or np.any(b[1:] > 1.0):
        bad = np.flatnonzero((b[1:] <= 0.0) | (b[1:] > 1.0)) + 1
        raise ValueError(f"betas[t] must lie in (0, 1] for t >= 1; steps {bad[:5].tolist()} do not "
                         f"(values {b[bad[:5]].tolist()})")
    return b


def signal_fraction(betas) -> np.ndarray:
    """``gamma_t = 1 - beta_bar_t = prod_{s<=t} (1 - beta_s)``, the surviving signal, shape (T+1,).

    ``gamma_0 = 1``; for :func:`binomial_betas` ``gamma_t = 1 - t/T`` [SD15, Sec. 2.4.1].
    Raises ``ValueError`` for betas outside (0, 1] or ``betas[0] != 0``.
    """
    b = _check_betas(betas)
    return np.cumprod(1.0 - b)


def _as_bits(name: str, x) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name} must have shape (n, d) with n, d >= 1, got shape {arr.shape}; "
                         "use x[None, :] for a single sequence")
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{name} must hold 0/1 values, got dtype {arr.dtype}")
    if not np.all((arr == 0) | (arr == 1)):
        raise ValueError(f"{name} must hold only 0 and 1 (binary data); found other values, e.g. "
                         f"{arr[(arr != 0) & (arr != 1)].ravel()[:3].tolist()}")
    return np.ascontiguousarray(arr, dtype=np.int8)


def marginal_rate(x0, betas, t) -> np.ndarray:
    """``q(x_t = 1 | x0) = x0 gamma_t + (1 - gamma_t) / 2`` per bit [SD15, Table App.1 composed].

    Parameters
    ----------
    x0 : array_like of 0/1, shape (n, d)
    betas : array_like, shape (T+1,)
    t : int or array_like of int, shape (n,)
        Step(s) in ``0..T``.

    Returns
    -------
    ndarray, float64, shape (n, d)

    Raises
    ------
    ValueError
        Non-binary ``x0``, bad ``betas`` or ``t``.
    """
    x0 = _as_bits("x0", x0)
    gamma = signal_fraction(betas)
    steps = _steps_per_row(t, x0.shape[0], gamma.size - 1)
    g = gamma[steps][:, None]
    return x0 * g + 0.5 * (1.0 - g)


def _steps_per_row(t, n: int, T: int) -> np.ndarray:
    steps = _as_step_array("t", t, T)
    if steps.ndim == 0:
        return np.full(n, int(steps), dtype=np.int64)
    if steps.shape != (n,):
        raise ValueError(f"t must be an int or an array of shape (n,) = ({n},), got shape {steps.shape}")
    return steps


# ---------------------------------------------------------------------------------------------
# sampling
# ---------------------------------------------------------------------------------------------


def binomial_diffuse(x0, betas, t, seed: SeedLike = None) -> np.ndarray:
    """Jump from binary data ``x0`` to step ``t`` of the binomial chain in one draw.

    ``x_t ~ Bernoulli(x0 gamma_t + (1 - gamma_t)/2)`` independently per bit, with ``gamma_t =
    prod_{s<=t}(1 - beta_s)`` [SD15, Table App.1, forward kernel composed over ``t`` steps]: the
    exact law of the chain of :func:`binomial_trajectory` at step ``t``.

    Parameters
    ----------
    x0 : array_like of 0/1 (bool, int or float), shape (n, d)
    betas : array_like, float, shape (T+1,)
        Diffusion rates, ``betas[0] = 0``, ``0 < betas[t] <= 1`` (e.g. :func:`binomial_betas`).
    t : int or array_like of int, shape (n,)
        Step in ``0..T``, one for all or one per sample; ``t = 0`` returns ``x0``.
    seed : int, numpy.random.Generator or None

    Returns
    -------
    ndarray, int8, shape (n, d), values in {0, 1}

    Raises
    ------
    ValueError
        ``x0`` not (n, d) binary; ``betas`` not a valid schedule; ``t`` outside ``0..T`` or of a
        wrong shape.
    """
    p = marginal_rate(x0, betas, t)
    u = as_generator(seed).random(p.shape)
    return (u < p).astype(np.int8)


@njit(parallel=True, cache=True)
def _binomial_trajectory_kernel(x0, betas, t_max, slot_start, slot_out, seeds,
                                rows_per_stream, out):  # pragma: no cover - compiled
    # One uniform u per bit and step: u < beta_t means "redraw the bit uniformly", and then
    # (u < beta_t / 2) is itself a fair coin, so x_t = 1 with prob x_{t-1}(1-beta_t) + beta_t/2.
    n, d = x0.shape
    for k in prange(seeds.size):
        np.random.seed(seeds[k])
        x = np.empty(d, dtype=np.int8)
        lo = k * rows_per_stream
        hi = min(lo + rows_per_stream, n)
        for i in range(lo, hi):
            for j in range(d):
                x[j] = x0[i, j]
            for q in range(slot_start[0], slot_start[1]):
                o = slot_out[q]
                for j in range(d):
                    out[o, i, j] = x[j]
            for t in range(1, t_max + 1):
                b = betas[t]
                half = 0.5 * b
                for j in range(d):
                    u = np.random.random()
                    if u < b:
                        x[j] = 1 if u < half else 0
                for q in range(slot_start[t], slot_start[t + 1]):
                    o = slot_out[q]
                    for j in range(d):
                        out[o, i, j] = x[j]


def binomial_trajectory(x0, betas, steps, seed: SeedLike = None) -> np.ndarray:
    """Run the binomial forward chain step by step and record chosen steps [SD15, Table App.1].

    ``q(x_t = 1 | x_{t-1}) = x_{t-1} (1 - beta_t) + beta_t / 2`` independently per bit, for
    ``t = 1..max(steps)``. The marginal at each step is that of :func:`binomial_diffuse`; the
    recorded states are one joint path of the chain. numba ``prange`` over noise streams; the
    result for a given ``seed`` does not depend on the number of threads.

    Parameters
    ----------
    x0 : array_like of 0/1, shape (n, d)
    betas : array_like, float, shape (T+1,)
        Diffusion rates, ``betas[0] = 0``, ``0 < betas[t] <= 1``.
    steps : sequence of int, shape (k,)
        Steps to record, each in ``0..T``, any order, repeats allowed; ``out[i]`` is the state at
        ``steps[i]`` (step 0 is ``x0``).
    seed : int, numpy.random.Generator or None

    Returns
    -------
    ndarray, int8, shape (len(steps), n, d), values in {0, 1}

    Raises
    ------
    ValueError
        ``x0`` not (n, d) binary; bad ``betas``; ``steps`` not a 1-D sequence of integers in
        ``0..T``.
    """
    x0 = _as_bits("x0", x0)
    b = _check_betas(betas)
    T = b.size - 1
    if np.ndim(steps) != 1:
        raise ValueError(f"steps must be a 1-D sequence of integer steps, got shape {np.shape(steps)}; "
                         "use steps=[t] for a single step")
    steps = _as_step_array("steps", steps, T)
    n, d = x0.shape
    out = np.empty((steps.size, n, d), dtype=np.int8)
    if steps.size == 0:
        return out
    t_max, slot_start, slot_out = _record_slots(steps)
    rows = _rows_per_stream(d * max(1, t_max))
    seeds = _stream_seeds32(seed, -(-n // rows))
    _binomial_trajectory_kernel(x0, b, np.int64(t_max), slot_start, slot_out, seeds, np.int64(rows), out)
    return out


# ---------------------------------------------------------------------------------------------
# reverse-time closed forms
# ---------------------------------------------------------------------------------------------


def _reverse_rate(a, x_t, beta_t):
    """Bayes: P(x_{t-1}=1 | x_t) when P(x_{t-1}=1) = a and the step is the binomial kernel."""
    k1 = np.where(x_t == 1, 1.0 - 0.5 * beta_t, 0.5 * beta_t)   # q(x_t | x_{t-1} = 1)
    k0 = np.where(x_t == 1, 0.5 * beta_t, 1.0 - 0.5 * beta_t)   # q(x_t | x_{t-1} = 0)
    num = k1 * a
    return num / (num + k0 * (1.0 - a))


def posterior_rate(x_t, x0, betas, t) -> np.ndarray:
    """``q(x_{t-1} = 1 | x_t, x0)`` per bit: the forward posterior that enters the bound K.

    By Bayes' rule with ``a = q(x_{t-1} = 1 | x0) = x0 gamma_{t-1} + (1 - gamma_{t-1})/2``::

        q(x_{t-1}=1 | x_t, x0) = a k1 / (a k1 + (1 - a) k0),
        k1 = q(x_t | x_{t-1}=1),  k0 = q(x_t | x_{t-1}=0)          [SD15, Table App.1 + Bayes]

    At ``t = 1`` it is ``x0`` itself (a point mass).

    Parameters
    ----------
    x_t, x0 : array_like of 0/1, shape (n, d)
    betas : array_like, shape (T+1,)
    t : int or array_like of int, shape (n,)
        Step(s) in ``1..T``.

    Returns
    -------
    ndarray, float64, shape (n, d), in [0, 1]

    Raises
    ------
    ValueError
        Non-binary or mismatched arrays, bad ``betas``, ``t`` outside ``1..T``.
    """
    x_t = _as_bits("x_t", x_t)
    x0 = _as_bits("x0", x0)
    if x_t.shape != x0.shape:
        raise ValueError(f"x_t and x0 must have the same shape, got {x_t.shape} and {x0.shape}")
    b = _check_betas(betas)
    gamma = np.cumprod(1.0 - b)
    steps = _steps_per_row(t, x0.shape[0], b.size - 1)
    if np.any(steps < 1):
        raise ValueError("t must be >= 1 for a reverse step (there is no step before the data)")
    g = gamma[steps - 1][:, None]
    a = x0 * g + 0.5 * (1.0 - g)
    return _reverse_rate(a, x_t, b[steps][:, None])


def independent_reverse_rate(x_t, betas, t, p1) -> np.ndarray:
    """Exact reverse kernel ``q(x_{t-1} = 1 | x_t)`` when the data bits are independent.

    If ``x0_j ~ Bernoulli(p1_j)`` independently, every bit diffuses on its own and the true reverse
    kernel factorises over bits, with ``a_j = q(x_{t-1,j} = 1) = p1_j gamma_{t-1} + (1 -
    gamma_{t-1})/2`` in Bayes' rule (as :func:`posterior_rate`, with ``x0`` replaced by its mean).
    For such data the bound K of [SD15] eq. 14 with this kernel equals the exact log-likelihood
    (``-sum_j H(p1_j)``); for other data it is the "null" reverse model that reproduces the
    independent-Bernoulli fit, the baseline of [SD15] Table 1 (``K - L_null``).

    Parameters
    ----------
    x_t : array_like of 0/1, shape (n, d)
    betas : array_like, shape (T+1,)
    t : int or array_like of int, shape (n,)
        Step(s) in ``1..T``.
    p1 : float or array_like, shape (d,)
        ``P(x0_j = 1)``, in [0, 1].

    Returns
    -------
    ndarray, float64, shape (n, d)

    Raises
    ------
    ValueError
        Non-binary ``x_t``; bad ``betas``, ``t`` or ``p1``.
    """
    x_t = _as_bits("x_t", x_t)
    b = _check_betas(betas)
    p1 = np.broadcast_to(np.asarray(p1, dtype=np.float64), (x_t.shape[1],))
    if np.any(~np.isfinite(p1)) or np.any(p1 < 0) or np.any(p1 > 1):
        raise ValueError("p1 must hold probabilities in [0, 1] (the data's mean of each bit)")
    gamma = np.cumprod(1.0 - b)
    steps = _steps_per_row(t, x_t.shape[0], b.size - 1)
    if np.any(steps < 1):
        raise ValueError("t must be >= 1 for a reverse step (there is no step before the data)")
    g = gamma[steps - 1][:, None]
    a = p1[None, :] * g + 0.5 * (1.0 - g)
    return _reverse_rate(a, x_t, b[steps][:, None])
