"""The reverse (generative) chain for any noise predictor, learned or exact.

Everything here takes an ``eps_fn(x_t, t) -> eps`` callable: a trained :class:`physdiff.ddpm.DDPM`
(``model.eps``), or an exact score converted with :func:`eps_from_score`. Sampling, trajectories
and the cloning experiment therefore run identically on the learned and the exact score, so the
two are compared like with like (DESIGN.md). Arrays may be numpy arrays or torch tensors; the
chain's noise comes from the matching library, seeded from ``seed``.

References
----------
[Ho20] Ho, Jain, Abbeel (2020), arXiv:2006.11239, Algorithm 2.
[BBBM24] Biroli, Bonnaire, de Bortoli, Mezard (2024), arXiv:2402.18491, Sec. "Speciation".
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from ._util import SeedLike, as_generator, check_positive_int
from .schedules import Schedule

__all__ = ["reverse_chain", "eps_from_score", "reverse_step", "NoiseSource"]

EpsFn = Callable[[object, int], object]


def _is_torch(x) -> bool:
    return type(x).__module__.split(".")[0] == "torch"


class NoiseSource:
    """Standard-normal noise shaped like ``x``, from numpy or torch to match ``x``, seeded once.

    For numpy arrays it draws from ``numpy.random.Generator``; for torch tensors from a
    ``torch.Generator`` on the tensor's device, itself seeded from ``seed``.
    """

    def __init__(self, like, seed: SeedLike = None):
        self._rng = as_generator(seed)
        self._torch_gen = None
        if _is_torch(like):
            import torch

            self._torch_gen = torch.Generator(device=like.device)
            self._torch_gen.manual_seed(int(self._rng.integers(0, 2**63 - 1)))

    def normal(self, like):
        """Array of i.i.d. N(0, 1) values with the shape, dtype and device of ``like``."""
        if self._torch_gen is not None:
            import torch

            return torch.randn(like.shape, generator=self._torch_gen, device=like.device, dtype=like.dtype)
        return self._rng.standard_normal(like.shape).astype(like.dtype, copy=False)


def eps_from_score(score_fn: Callable, schedule: Schedule) -> EpsFn:
    """Turn ``score_fn(x_t, alpha_bar) -> score`` into ``eps_fn(x_t, t)``.

    Uses ``eps = -sqrt(1 - alpha_bar_t) * score`` (Tweedie; DESIGN.md "Score"). ``score_fn`` takes
    the ``alpha_bar`` value of the step, as the :mod:`physdiff.theory` functions do, e.g.
    ``lambda x, ab: theory.curie_weiss.score(x, ab, beta=1.5)``.
    """

    def eps_fn(x_t, t):
        ab = float(schedule.alpha_bar[t])
        return -np.sqrt(1.0 - ab) * score_fn(x_t, ab)

    return eps_fn


def reverse_step(x_t, eps, t: int, schedule: Schedule, noise=None, sigma: str = "beta"):
    """One ancestral step ``x_t -> x_{t-1}`` [Ho20, Algorithm 2, line 4].

    ``x_{t-1} = (x_t - beta_t / sqrt(1 - alpha_bar_t) * eps) / sqrt(alpha_t) + sigma_t z``, with
    ``sigma_t^2 = beta_t`` (``sigma="beta"``) or ``beta_tilde_t`` (``sigma="posterior"``) and no noise
    at ``t = 1``. ``noise`` is the standard-normal ``z`` (ignored at ``t = 1``).
    """
    beta = float(schedule.betas[t])
    mean = (x_t - (beta / np.sqrt(1.0 - schedule.alpha_bar[t])) * eps) / np.sqrt(schedule.alphas[t])
    if t > 1 and noise is not None:
        return mean + float(np.sqrt(schedule.sigma2(sigma)[t])) * noise
    return mean


def reverse_chain(eps_fn: EpsFn, x_T, schedule: Schedule, t_start: int | None = None, t_stop: int = 0,
                  seed: SeedLike = None, sigma: str = "beta", record: Sequence[int] | None = None,
                  progress: bool = False):
    """Run the ancestral reverse chain from step ``t_start`` down to ``t_stop``.

    Parameters
    ----------
    eps_fn : callable
        ``eps_fn(x_t, t) -> eps`` with ``x_t`` of shape (n, d) and ``t`` an int step; returns an array
        of the same shape and kind (numpy or torch) as ``x_t``.
    x_T : array (n, d), numpy or torch, float
        State at step ``t_start`` (typically ``N(0, I)`` noise for ``t_start = T``).
    schedule : Schedule
    t_start : int, optional
        Step of ``x_T``; default ``schedule.T``.
    t_stop : int
        Last step reached (default 0, the data). ``0 <= t_stop <= t_start``.
    seed : int, Generator or None
        Seed of the chain's noise.
    sigma : {"beta", "posterior"}
        Reverse-step variance [Ho20, Sec. 3.2].
    record : sequence of int, optional
        Steps (each in ``[t_stop, t_start]``) at which to record the state.
    progress : bool
        Show a tqdm progress bar over the steps.

    Returns
    -------
    x : array (n, d)
        State at ``t_stop``.
    trajectory : array (len(record), n, d)
        Only if ``record`` is given: the state at each recorded step, in the order of ``record``.

    Raises
    ------
    ValueError
        ``x_T`` not 2-D, steps out of range, or an unknown ``sigma``.
    """
    if getattr(x_T, "ndim", None) != 2:
        raise ValueError(f"x_T must have shape (n, d), got {getattr(x_T, 'shape', type(x_T))}")
    T = schedule.T
    t_start = T if t_start is None else check_positive_int("t_start", t_start, minimum=0)
    if t_start > T:
        raise ValueError(f"t_start={t_start} exceeds the schedule's T={T}")
    t_stop = check_positive_int("t_stop", t_stop, minimum=0)
    if t_stop > t_start:
        raise ValueError(f"t_stop={t_stop} must be <= t_start={t_start}")
    schedule.sigma2(sigma)  # validates sigma
    rec_steps = None if record is None else [int(r) for r in record]
    if rec_steps is not None:
        bad = [r for r in rec_steps if not t_stop <= r <= t_start]
        if bad:
            raise ValueError(f"record steps {bad} are outside [t_stop={t_stop}, t_start={t_start}]")
    torch_mode = _is_torch(x_T)
    x = x_T.clone() if torch_mode else np.array(x_T, copy=True)
    if not torch_mode and x.dtype.kind != "f":
        x = x.astype(np.float32)
    noise = NoiseSource(x, seed)
    recorded: dict[int, object] = {}

    def _keep(t):
        if rec_steps is not None and t in rec_steps:
            recorded[t] = x.clone() if torch_mode else x.copy()

    _keep(t_start)
    steps = range(t_start, t_stop, -1)
    if progress:
        from tqdm.auto import tqdm

        steps = tqdm(steps, desc="reverse chain", unit="step", leave=False)
    for t in steps:
        eps = eps_fn(x, t)
        z = noise.normal(x) if t > 1 else None
        x = reverse_step(x, eps, t, schedule, z, sigma)
        _keep(t - 1)
    if rec_steps is None:
        return x
    if torch_mode:
        import torch

        traj = torch.stack([recorded[r] for r in rec_steps])
    else:
        traj = np.stack([recorded[r] for r in rec_steps])
    return x, traj
