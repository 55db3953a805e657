"""Forward (noising) Ornstein-Uhlenbeck chain: the closed-form jump and the step-by-step chain.

Conventions (docs/theory.md, "The forward process and noise schedules"): steps are ``t = 0..T``
and ``x0`` is data. A :class:`~physdiff.schedules.Schedule` holds ``betas``, ``alphas = 1 - betas``
and ``alpha_bar[t] = prod_{s<=t} alphas[s]``, all of length ``T + 1`` with ``betas[0] = 0`` and
``alpha_bar[0] = 1``.

* :func:`diffuse` jumps straight from ``x0`` to step ``t`` [Ho20, eq. 4]::

      x_t = sqrt(alpha_bar[t]) x0 + sqrt(1 - alpha_bar[t]) eps,     eps ~ N(0, I)

* :func:`trajectory` runs the Markov chain one step at a time [Ho20, eq. 2]::

      x_t = sqrt(alphas[t]) x_{t-1} + sqrt(betas[t]) xi_t,          xi_t ~ N(0, I)

  and records the states at chosen steps. Both give the same law of ``x_t`` given ``x0``
  (the chain is the discretely sampled OU process ``dx = -x dtau + sqrt(2) dW`` at
  ``tau = -log(alpha_bar[t]) / 2`` [BBBM24]); only the chain gives the joint law across steps.

Randomness and threads
----------------------
The kernels are numba ``@njit(parallel=True)`` loops over *noise streams* with ``prange``. A
stream is a fixed block of consecutive samples (rows); its size depends only on the number of
features ``d`` (and, for :func:`trajectory`, on the number of steps run), never on the number of
threads. Every stream gets its own 63-bit seed, drawn from ``seed`` with
:func:`physdiff._util.stream_seeds`, and its own generator state (xoshiro256** seeded by
SplitMix64, standard normals by a 256-layer ziggurat: :mod:`physdiff._rng`), created at the start
of its ``prange`` iteration and never shared. Each stream's noise is therefore fixed by ``seed``
and the output is bit-for-bit identical for any ``numba.set_num_threads``. All 64 bits of a stream
seed are used, and distinct seeds give distinct generator states (SplitMix64 is a bijection), so
two streams share their noise only if two 63-bit seeds coincide (probability ~ n_streams**2 /
2**64). (Blocks of at least ``_STREAM_ELEMS`` numbers, rather than one stream per sample, keep the
~0.1 microsecond cost of creating a stream negligible when ``d`` is small; for
``d >= _STREAM_ELEMS`` a stream is exactly one sample. A :func:`trajectory` stream advances its
whole block, at least ``_STEP_ELEMS`` numbers, one step at a time.) The noise is drawn in blocks
with :func:`physdiff._rng.fill_normal`, which keeps the generator in registers.

References
----------
[Ho20] Ho, Jain, Abbeel (2020), Denoising Diffusion Probabilistic Models, arXiv:2006.11239.
[BBBM24] Biroli, Bonnaire, de Bortoli, Mezard (2024), Dynamical regimes of diffusion models,
arXiv:2402.18491.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ._rng import fill_normal, seed_state
from ._util import SeedLike, as_generator, check_finite, stream_seeds
from .schedules import Schedule

__all__ = ["diffuse", "trajectory"]

#: Minimum number of normal draws per noise stream (see the module docstring).
_STREAM_ELEMS = 1024
#: Minimum number of rows * features a :func:`trajectory` stream advances per step, so that the
#: per-step cost of a block (one ``fill_normal`` call) stays small when ``d`` is small.
_STEP_ELEMS = 256

_UINT32_MASK = np.int64(0xFFFFFFFF)


# ---------------------------------------------------------------------------------------------
# numba kernels
# ---------------------------------------------------------------------------------------------


@njit(parallel=True, cache=True)
def _diffuse_kernel(x0, coef_x, coef_eps, seeds, rows_per_stream, x_t, eps):  # pragma: no cover
    n, d = x0.shape
    for k in prange(seeds.size):
        lo = k * rows_per_stream
        hi = min(lo + rows_per_stream, n)
        state = seed_state(seeds[k])  # this stream's own generator (physdiff._rng)
        noise = np.empty((hi - lo) * d, dtype=np.float64)
        fill_normal(state, noise)  # the block's noise, row-major
        p = 0
        for i in range(lo, hi):
            a = coef_x[i]
            b = coef_eps[i]
            for j in range(d):
                e = noise[p]
                p += 1
                eps[i, j] = e
                x_t[i, j] = a * x0[i, j] + b * e


@njit(parallel=True, cache=True)
def _trajectory_kernel(x0, sqrt_alphas, sqrt_betas, t_max, slot_start, slot_out, seeds,
                       rows_per_stream, out):  # pragma: no cover
    # slot_out[slot_start[t]:slot_start[t+1]] are the output indices that record step t.
    # A stream advances its whole block of rows one step at a time: x and noise are the block's
    # states and fresh noise, row-major, in float64 whatever the output dtype.
    n, d = x0.shape
    for k in prange(seeds.size):
        lo = k * rows_per_stream
        hi = min(lo + rows_per_stream, n)
        m = (hi - lo) * d
        state = seed_state(seeds[k])  # this stream's own generator (physdiff._rng)
        x = np.empty(m, dtype=np.float64)
        noise = np.empty(m, dtype=np.float64)
        p = 0
        for i in range(lo, hi):
            for j in range(d):
                x[p] = x0[i, j]
                p += 1
        for t in range(t_max + 1):
            if t > 0:
                a = sqrt_alphas[t]
                b = sqrt_betas[t]
                fill_normal(state, noise)
                for p in range(m):
                    x[p] = a * x[p] + b * noise[p]
            for q in range(slot_start[t], slot_start[t + 1]):
                o = slot_out[q]
                if t == 0:  # step 0 is x0 itself, copied exactly
                    for i in range(lo, hi):
                        for j in range(d):
                            out[o, i, j] = x0[i, j]
                else:
                    p = 0
                    for i in range(lo, hi):
                        for j in range(d):
                            out[o, i, j] = x[p]
                            p += 1


# ---------------------------------------------------------------------------------------------
# validation and seeding helpers
# ---------------------------------------------------------------------------------------------


def _check_schedule(schedule) -> Schedule:
    if not isinstance(schedule, Schedule):
        raise TypeError(
            f"schedule must be a physdiff.schedules.Schedule, got {type(schedule).__name__}; "
            "build one with physdiff.schedules.make_schedule(name, T)"
        )
    return schedule


def _as_x0(x0) -> np.ndarray:
    """``x0`` as a C-contiguous float32/float64 array of shape (n, d), validated."""
    arr = np.asarray(x0)
    if arr.ndim != 2:
        raise ValueError(
            f"x0 must have shape (n, d) (n samples, d features), got shape {arr.shape}; "
            "use x0[None, :] for a single sample or x0[:, None] for scalar data"
        )
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"x0 is empty (shape {arr.shape}); pass at least one sample and one feature")
    kind = arr.dtype.kind
    if kind == "f":
        dtype = np.float64 if arr.dtype.itemsize >= 8 else np.float32
    elif kind in "iub":
        dtype = np.float32  # spins (int8) and other integer data diffuse in float32
    else:
        raise ValueError(f"x0 must hold real numbers (float or integer), got dtype {arr.dtype}")
    arr = np.ascontiguousarray(arr, dtype=dtype)
    check_finite("x0", arr)
    return arr


def _as_step_array(name: str, value, T: int) -> np.ndarray:
    """Integer steps as an int64 array (same shape as ``value``), each in ``0..T``."""
    if isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be an integer step in 0..{T}, got {value!r}")
    arr = np.asarray(value)
    if arr.size == 0 and arr.dtype.kind in "fiu":  # [] arrives as float64
        arr = arr.astype(np.int64)
    if arr.dtype.kind not in "iu":
        raise ValueError(f"{name} must hold integer steps in 0..{T}, got dtype {arr.dtype} ({value!r:.60})")
    arr = arr.astype(np.int64, copy=False)
    if arr.size and (arr.min() < 0 or arr.max() > T):
        bad = arr[(arr < 0) | (arr > T)]
        raise ValueError(
            f"{name} must lie in 0..T = 0..{T} (0 is the data, T the last step), "
            f"got {bad.ravel()[:5].tolist()}"
        )
    return arr


def _rows_per_stream(work_per_row: int, elems: int = _STREAM_ELEMS) -> int:
    """Rows per noise stream: enough for ``elems`` units of work, at least one."""
    return max(1, -(-int(elems) // max(1, int(work_per_row))))


def _stream_seeds32(seed: SeedLike, n_streams: int) -> np.ndarray:
    """``n_streams`` pairwise-distinct uint32 seeds drawn from ``seed`` (deterministic).

    No longer used by the kernels here (they seed :mod:`physdiff._rng` generators with the full
    63-bit :func:`~physdiff._util.stream_seeds`); kept for callers of numba's legacy
    ``np.random.seed``. That one keeps only 32 bits, so 63-bit seeds from
    :func:`~physdiff._util.stream_seeds` are reduced mod 2**32 and any repeat (probability
    ~ n_streams**2 / 2**33) is replaced by a fresh draw from the same generator.
    """
    rng = as_generator(seed)
    seeds = stream_seeds(rng, n_streams) & _UINT32_MASK
    while True:
        _, first = np.unique(seeds, return_index=True)
        if first.size == seeds.size:
            break
        repeat = np.ones(seeds.size, dtype=bool)
        repeat[first] = False
        seeds[repeat] = stream_seeds(rng, int(repeat.sum())) & _UINT32_MASK
    return seeds.astype(np.uint32)


# ---------------------------------------------------------------------------------------------
# public API
# ---------------------------------------------------------------------------------------------


def diffuse(x0, schedule: Schedule, t, seed: SeedLike = None) -> tuple[np.ndarray, np.ndarray]:
    """Jump from data ``x0`` to step ``t`` of the forward chain in one draw [Ho20, eq. 4].

    ``x_t = sqrt(alpha_bar[t]) * x0 + sqrt(1 - alpha_bar[t]) * eps`` with ``eps ~ N(0, I)``, the
    exact law of the forward chain at step ``t`` given ``x0`` (docs/theory.md, "The forward
    process and noise schedules"). This is what DDPM training samples [Ho20, Algorithm 1];
    ``eps`` is the regression target.

    Parameters
    ----------
    x0 : array_like, shape (n, d)
        Data: ``n`` samples of ``d`` features. float32 and float64 are kept; integer data (e.g.
        ``int8`` spins in {-1, +1}) and bool become float32, float16 becomes float32.
    schedule : Schedule
        The noise schedule (:func:`physdiff.schedules.make_schedule`).
    t : int or array_like of int, shape (n,)
        The step, ``0 <= t <= schedule.T``: one for all samples, or one per sample. ``t = 0``
        returns ``x0`` itself (``alpha_bar[0] = 1``).
    seed : int, numpy.random.Generator or None
        Source of the noise. Equal seeds give equal output whatever the number of numba threads;
        ``eps`` does not depend on ``t`` (the same seed and ``x0`` shape give the same ``eps``).

    Returns
    -------
    x_t : ndarray, shape (n, d), dtype of ``x0`` (float32 or float64, see above)
        The noised data.
    eps : ndarray, shape (n, d), same dtype
        The standard-normal noise used.

    Raises
    ------
    ValueError
        ``x0`` not 2-D, empty, non-numeric or holding NaN/inf; ``t`` not integer, of a shape
        other than () or (n,), or outside ``0..T``.
    TypeError
        ``schedule`` is not a :class:`~physdiff.schedules.Schedule`, or ``seed`` is of a wrong type.

    Examples
    --------
    >>> from physdiff.schedules import make_schedule
    >>> s = make_schedule("linear", 1000)
    >>> x_t, eps = diffuse(np.zeros((4, 3)), s, t=[0, 10, 500, 1000], seed=0)
    >>> x_t.shape, eps.dtype
    ((4, 3), dtype('float64'))
    """
    schedule = _check_schedule(schedule)
    x0 = _as_x0(x0)
    n, d = x0.shape
    steps = _as_step_array("t", t, schedule.T)
    if steps.ndim == 0:
        steps = np.full(n, steps, dtype=np.int64)
    elif steps.shape != (n,):
        raise ValueError(f"t must be an int or an array of shape (n,) = ({n},), got shape {steps.shape}")
    alpha_bar = schedule.alpha_bar[steps]
    coef_x = np.sqrt(alpha_bar)
    coef_eps = np.sqrt(1.0 - alpha_bar)
    rows = _rows_per_stream(d)
    seeds = stream_seeds(seed, -(-n // rows))
    x_t = np.empty_like(x0)
    eps = np.empty_like(x0)
    _diffuse_kernel(x0, coef_x, coef_eps, seeds, np.int64(rows), x_t, eps)
    return x_t, eps


def _record_slots(steps: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
    """CSR map from step to output slots for a chain that records ``steps`` (any order, repeats):
    the slots ``slot_out[slot_start[t]:slot_start[t + 1]]`` receive the state at step ``t``.
    Returns ``(t_max, slot_start (t_max + 2,), slot_out (len(steps),))``, int64."""
    t_max = int(steps.max())
    slot_out = np.argsort(steps, kind="stable").astype(np.int64)
    slot_start = np.zeros(t_max + 2, dtype=np.int64)
    np.cumsum(np.bincount(steps, minlength=t_max + 1), out=slot_start[1:])
    return t_max, slot_start, slot_out


def trajectory(x0, schedule: Schedule, steps, seed: SeedLike = None) -> np.ndarray:
    """Run the forward Markov chain step by step from ``x0`` and record chosen steps [Ho20, eq. 2].

    ``x_t = sqrt(alphas[t]) * x_{t-1} + sqrt(betas[t]) * xi_t`` with fresh ``xi_t ~ N(0, I)`` at
    every step ``t = 1..max(steps)``. The marginal law at each step equals that of
    :func:`diffuse` [Ho20, eq. 4]; the recorded states are jointly distributed as one path of the
    chain (the OU process at physical times ``schedule.physical_time[steps]`` [BBBM24]). The chain
    runs in float64 whatever the output dtype. Memory beyond the output is
    O(d + _STREAM_ELEMS) float64 numbers per thread.

    Parameters
    ----------
    x0 : array_like, shape (n, d)
        Data, as for :func:`diffuse` (float32/float64 kept; integers and bool become float32).
    schedule : Schedule
        The noise schedule.
    steps : sequence or array of int, shape (k,)
        Steps to record, each in ``0..schedule.T``, in any order, repeats allowed; step 0 records
        ``x0`` itself. ``out[i]`` is the state at ``steps[i]``.
    seed : int, numpy.random.Generator or None
        Source of the noise. Equal seeds give equal output whatever the number of numba threads.

    Returns
    -------
    ndarray, shape (len(steps), n, d), dtype of ``x0`` (float32 or float64)
        The states of one path per sample at the requested steps.

    Raises
    ------
    ValueError
        ``x0`` not 2-D, empty, non-numeric or holding NaN/inf; ``steps`` not a 1-D sequence of
        integers in ``0..T``.
    TypeError
        ``schedule`` is not a :class:`~physdiff.schedules.Schedule`, or ``seed`` is of a wrong type.

    Examples
    --------
    >>> from physdiff.schedules import make_schedule
    >>> s = make_schedule("linear", 1000)
    >>> path = trajectory(np.ones((2, 5), np.float32), s, steps=[0, 100, 1000], seed=0)
    >>> path.shape, path.dtype, bool((path[0] == 1).all())
    ((3, 2, 5), dtype('float32'), True)
    """
    schedule = _check_schedule(schedule)
    x0 = _as_x0(x0)
    n, d = x0.shape
    if np.ndim(steps) != 1:
        raise ValueError(
            f"steps must be a 1-D sequence of integer steps, got shape {np.shape(steps)}; "
            "use steps=[t] for a single step"
        )
    steps = _as_step_array("steps", steps, schedule.T)
    out = np.empty((steps.size, n, d), dtype=x0.dtype)
    if steps.size == 0:
        return out
    t_max, slot_start, slot_out = _record_slots(steps)
    sqrt_alphas = np.sqrt(schedule.alphas)
    sqrt_betas = np.sqrt(schedule.betas)
    rows = max(_rows_per_stream(d * max(1, t_max)), _rows_per_stream(d, _STEP_ELEMS))
    seeds = stream_seeds(seed, -(-n // rows))
    _trajectory_kernel(x0, sqrt_alphas, sqrt_betas, np.int64(t_max), slot_start, slot_out,
                       seeds, np.int64(rows), out)
    return out
