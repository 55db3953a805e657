"""The reverse (generative) chain for any noise predictor, learned or exact.

Everything here takes an ``eps_fn(x_t, t) -> eps`` callable: a trained :class:`physdiff.ddpm.DDPM`
(``model.eps``), or an exact score converted with :func:`eps_from_score`. Sampling (ancestral or
DDIM, over every trained step or a subsequence, with optional x0 clipping), trajectories and the
cloning experiment therefore run identically on the learned and the exact score, so the two are
compared like with like. Arrays may be numpy arrays or torch tensors; the
chain's noise comes from the matching library, seeded from ``seed``.

References
----------
[Ho20] Ho, Jain, Abbeel (2020), arXiv:2006.11239, Algorithm 2.
[SME21] Song, Meng, Ermon (2021), Denoising Diffusion Implicit Models, arXiv:2010.02502 (ICLR),
    eq. 12 (the generalised step), eq. 16 (sigma(eta)), sec. 4.2 (sampling on a subsequence).
[BBBM24] Biroli, Bonnaire, de Bortoli, Mezard (2024), arXiv:2402.18491, Sec. "Speciation".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Callable, Sequence

import numpy as np

from ._util import SeedLike, as_generator, check_positive_int, check_real
from .schedules import Schedule
from .theory.gaussian import PHI_SPECIATION

__all__ = ["reverse_chain", "eps_from_score", "reverse_step", "ddim_step", "sampling_steps", "SAMPLERS",
           "NoiseSource", "cloning", "CloningResult",
           "crossing_time", "cloning_branch_steps"]

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

    Uses ``eps = -sqrt(1 - alpha_bar_t) * score`` (Tweedie; ``docs/theory.md``). ``score_fn`` takes
    the ``alpha_bar`` value of the step, as the :mod:`physdiff.theory` functions do, e.g.
    ``lambda x, ab: theory.curie_weiss.score(x, ab, beta=1.5)``.
    """

    def eps_fn(x_t, t):
        ab = float(schedule.alpha_bar[t])
        # a Python float keeps the dtype of x_t (a numpy float64 scalar would promote float32)
        return -math.sqrt(1.0 - ab) * score_fn(x_t, ab)

    return eps_fn


SAMPLERS = ("ancestral", "ddim")


def reverse_step(x_t, eps, t: int, schedule: Schedule, noise=None, sigma: str = "beta", t_prev: int | None = None):
    """One ancestral step ``x_t -> x_{t_prev}`` (default ``t_prev = t - 1``) [Ho20, Algorithm 2, line 4].

    ``x_{t-1} = (x_t - beta_t / sqrt(1 - alpha_bar_t) * eps) / sqrt(alpha_t) + sigma_t z``, with
    ``sigma_t^2 = beta_t`` (``sigma="beta"``) or ``beta_tilde_t = (1 - alpha_bar_{t-1}) / (1 -
    alpha_bar_t) beta_t`` (``sigma="posterior"``) and no noise into step 0. A jump over several
    trained steps (``t_prev < t - 1``, strided sampling) is the same step of the Markov chain that
    has the subsequence's effective ``alpha_t = alpha_bar_t / alpha_bar_{t_prev}`` and
    ``beta_t = 1 - alpha_t``; ``eps`` is the prediction at step ``t`` (its own ``alpha_bar_t``).
    ``noise`` is the standard-normal ``z`` (ignored into step 0). ``x_t``, ``eps`` and ``noise`` are
    arrays of one kind (numpy or torch); the result keeps their dtype.

    Raises ``ValueError`` unless ``1 <= t <= T`` and ``0 <= t_prev < t``.
    """
    t, t_prev = _check_jump(t, t_prev, schedule)
    # Python floats throughout: numpy float64 scalars would promote float32 arrays (NEP 50)
    ab, ab_prev = float(schedule.alpha_bar[t]), float(schedule.alpha_bar[t_prev])
    sigma2 = schedule.sigma2(sigma)  # validates sigma
    if t_prev == t - 1:  # the trained step itself: exactly [Ho20]'s coefficients
        beta, alpha, var = float(schedule.betas[t]), float(schedule.alphas[t]), float(sigma2[t])
    else:
        alpha = ab / ab_prev
        beta = 1.0 - alpha
        var = beta if sigma == "beta" else (1.0 - ab_prev) / (1.0 - ab) * beta
    mean = (x_t - beta / math.sqrt(1.0 - ab) * eps) / math.sqrt(alpha)
    if t_prev > 0 and noise is not None:
        return mean + math.sqrt(var) * noise
    return mean


def ddim_step(x_t, eps, t: int, t_prev: int, schedule: Schedule, eta: float = 0.0, noise=None):
    """One DDIM step ``x_t -> x_{t_prev}`` [SME21, eq. 12 with sigma of eq. 16].

    ``x_{t'} = sqrt(alpha_bar_{t'}) x0_hat + sqrt(1 - alpha_bar_{t'} - sigma^2) eps + sigma z`` with
    ``x0_hat = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t)`` and
    ``sigma = eta sqrt((1 - alpha_bar_{t'}) / (1 - alpha_bar_t)) sqrt(1 - alpha_bar_t / alpha_bar_{t'})``.
    ``eta = 0`` is the deterministic DDIM; ``eta = 1`` is the ancestral step with the posterior
    variance ``beta_tilde`` (:func:`reverse_step`, ``sigma="posterior"``). ``noise`` (the ``z``) is
    needed only when ``sigma > 0``. Arrays of one kind (numpy or torch); the result keeps their dtype.

    Raises ``ValueError`` for steps out of range or ``eta`` outside ``[0, 1]``.
    """
    t, t_prev = _check_jump(t, t_prev, schedule)
    eta = check_real("eta", eta, lo=0.0, hi=1.0)
    ab, ab_prev = float(schedule.alpha_bar[t]), float(schedule.alpha_bar[t_prev])
    var = eta**2 * (1.0 - ab_prev) / (1.0 - ab) * (1.0 - ab / ab_prev)
    x0 = (x_t - math.sqrt(1.0 - ab) * eps) / math.sqrt(ab)
    out = math.sqrt(ab_prev) * x0 + math.sqrt(max(1.0 - ab_prev - var, 0.0)) * eps
    if var > 0.0:
        if noise is None:
            raise ValueError(f"ddim_step with eta={eta} > 0 needs noise")
        out = out + math.sqrt(var) * noise
    return out


def _check_jump(t, t_prev, schedule: Schedule) -> tuple[int, int]:
    if isinstance(t, bool) or not isinstance(t, (int, np.integer)) or not 1 <= t <= schedule.T:
        raise ValueError(f"t must be an integer step in [1, T={schedule.T}], got {t!r}")
    t = int(t)
    if t_prev is None:
        return t, t - 1
    if isinstance(t_prev, bool) or not isinstance(t_prev, (int, np.integer)) or not 0 <= t_prev < t:
        raise ValueError(f"t_prev must be an integer step in [0, t={t}), got {t_prev!r}")
    return t, int(t_prev)


def sampling_steps(schedule: Schedule, steps=None, t_start: int | None = None, t_stop: int = 0) -> np.ndarray:
    """The decreasing sequence of trained steps a reverse chain visits, from ``t_start`` to ``t_stop``.

    Parameters
    ----------
    schedule : Schedule
    steps : None, int or sequence of int
        ``None``: every step (``t_start, t_start - 1, ..., t_stop``). An int ``K`` in
        ``[1, t_start - t_stop]``: ``K`` jumps between ``K + 1`` steps evenly spaced from ``t_stop``
        to ``t_start`` (rounded to integers) [SME21, sec. 4.2]. A sequence: those steps (each in
        ``[t_stop, t_start]``, any order, repeats ignored), with ``t_start`` and ``t_stop`` added.
    t_start : int, optional
        Default ``schedule.T``.
    t_stop : int

    Returns
    -------
    ndarray, int64, strictly decreasing, first ``t_start``, last ``t_stop``.

    Raises
    ------
    ValueError
        Bad ``t_start`` / ``t_stop``, ``steps`` not an int in range or not integer steps in range.
    """
    T = schedule.T
    t_start = T if t_start is None else check_positive_int("t_start", t_start, minimum=0)
    if t_start > T:
        raise ValueError(f"t_start={t_start} exceeds the schedule's T={T}")
    t_stop = check_positive_int("t_stop", t_stop, minimum=0)
    if t_stop > t_start:
        raise ValueError(f"t_stop={t_stop} must be <= t_start={t_start}")
    span = t_start - t_stop
    if steps is None:
        return np.arange(t_start, t_stop - 1, -1, dtype=np.int64)
    if isinstance(steps, (int, np.integer)) and not isinstance(steps, bool):
        if not 1 <= steps <= max(span, 1):
            raise ValueError(f"steps must be an int in [1, {max(span, 1)}] (the trained steps between "
                             f"t_stop={t_stop} and t_start={t_start}), got {steps}")
        seq = np.round(np.linspace(t_stop, t_start, int(steps) + 1)).astype(np.int64)
    else:
        seq = np.asarray(steps)
        if seq.ndim != 1 or (seq.size and seq.dtype.kind not in "iu"):
            raise ValueError(f"steps must be None, an int or a 1-D sequence of integer steps, got {steps!r}")
        bad = seq[(seq < t_stop) | (seq > t_start)]
        if bad.size:
            raise ValueError(f"steps {bad.tolist()} are outside [t_stop={t_stop}, t_start={t_start}]")
        seq = np.concatenate([seq.astype(np.int64), [t_start, t_stop]])
    return np.unique(seq)[::-1].copy()


def _check_clip(clip) -> tuple[float, float] | None:
    if clip is None:
        return None
    if np.ndim(clip) == 0:
        c = check_real("clip", clip, lo=0.0, lo_open=True)
        return -c, c
    lo, hi = (float(v) for v in clip)  # a pair
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"clip must be None, a float c > 0 (for [-c, c]) or a pair lo < hi, got {clip!r}")
    return lo, hi


def _clipped_eps(x_t, eps, ab: float, lo: float, hi: float):
    """The eps of the clipped prediction: ``(x_t - sqrt(ab) clip(x0_hat)) / sqrt(1 - ab)``."""
    x0 = (x_t - math.sqrt(1.0 - ab) * eps) / math.sqrt(ab)
    x0 = x0.clamp(lo, hi) if _is_torch(x0) else np.clip(x0, lo, hi)
    return (x_t - math.sqrt(ab) * x0) / math.sqrt(1.0 - ab)


def reverse_chain(eps_fn: EpsFn, x_T, schedule: Schedule, t_start: int | None = None, t_stop: int = 0,
                  seed: SeedLike = None, sigma: str = "beta", record: Sequence[int] | None = None,
                  progress: bool = False, *, sampler: str = "ancestral", steps=None, eta: float = 0.0,
                  clip=None):
    """Run the reverse chain from step ``t_start`` down to ``t_stop``: ancestral or DDIM, full or strided.

    With the defaults this is the ancestral chain over every trained step [Ho20, Algorithm 2]
    (:func:`reverse_step`). ``steps`` restricts it to a subsequence of the trained steps
    (:func:`sampling_steps`): the eps prediction at each visited step ``t`` is the one of step ``t``
    (its own ``alpha_bar_t``), and a jump ``t -> t'`` uses the subsequence's effective
    ``beta = 1 - alpha_bar_t / alpha_bar_{t'}``. ``sampler="ddim"`` takes DDIM steps instead
    (:func:`ddim_step`) [SME21, eq. 12]. ``clip`` clips the predicted ``x0_hat`` at every step and
    continues with the eps of the clipped prediction (images in ``[-1, 1]``: ``clip=1``).
    See ``docs/theory.md``, "Sample-quality metrics and samplers".

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
        Reverse-step variance of the ancestral sampler [Ho20, Sec. 3.2].
    record : sequence of int, optional
        Steps at which to record the state; each must be one of the visited steps.
    progress : bool
        Show a tqdm progress bar over the steps.
    sampler : {"ancestral", "ddim"}
    steps : None, int or sequence of int
        The steps visited (:func:`sampling_steps`); ``None``: all.
    eta : float in [0, 1]
        DDIM noise scale (0: deterministic); ignored by the ancestral sampler.
    clip : None, float > 0 or (lo, hi)
        Range of the predicted ``x0_hat`` (a float ``c`` means ``[-c, c]``).

    Returns
    -------
    x : array (n, d)
        State at ``t_stop``.
    trajectory : array (len(record), n, d)
        Only if ``record`` is given: the state at each recorded step, in the order of ``record``.

    Raises
    ------
    ValueError
        ``x_T`` not 2-D, steps out of range, a recorded step that is not visited, an unknown
        ``sigma`` or ``sampler``, ``eta`` outside ``[0, 1]`` or a bad ``clip``.
    """
    if getattr(x_T, "ndim", None) != 2:
        raise ValueError(f"x_T must have shape (n, d), got {getattr(x_T, 'shape', type(x_T))}")
    seq = sampling_steps(schedule, steps, t_start, t_stop)
    t_start, t_stop = int(seq[0]), int(seq[-1])
    schedule.sigma2(sigma)  # validates sigma
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
    eta = check_real("eta", eta, lo=0.0, hi=1.0)
    bounds = _check_clip(clip)
    rec_steps = None if record is None else [int(r) for r in record]
    if rec_steps is not None:
        bad = [r for r in rec_steps if not t_stop <= r <= t_start]
        if bad:
            raise ValueError(f"record steps {bad} are outside [t_stop={t_stop}, t_start={t_start}]")
        skipped = sorted(set(rec_steps) - set(seq.tolist()))
        if skipped:
            raise ValueError(f"record steps {skipped} are not among the sampling steps")
    torch_mode = _is_torch(x_T)
    x = x_T.clone() if torch_mode else np.array(x_T, copy=True)
    if not torch_mode and x.dtype.kind != "f":
        x = x.astype(np.float32)
    noise = NoiseSource(x, seed)
    noisy = sampler == "ancestral" or eta > 0
    recorded: dict[int, object] = {}

    def _keep(t):
        if rec_steps is not None and t in rec_steps:
            recorded[t] = x.clone() if torch_mode else x.copy()

    _keep(t_start)
    jumps = list(zip(seq[:-1].tolist(), seq[1:].tolist()))
    if progress:
        from tqdm.auto import tqdm

        jumps = tqdm(jumps, desc="reverse chain", unit="step", leave=False)
    for t, t_prev in jumps:
        eps = eps_fn(x, t)
        if bounds is not None:
            eps = _clipped_eps(x, eps, float(schedule.alpha_bar[t]), *bounds)
        z = noise.normal(x) if (noisy and t_prev > 0) else None
        if sampler == "ancestral":
            x = reverse_step(x, eps, t, schedule, z, sigma, t_prev=t_prev)
        else:
            x = ddim_step(x, eps, t, t_prev, schedule, eta, z)
        _keep(t_prev)
    if rec_steps is None:
        return x
    if torch_mode:
        import torch

        traj = torch.stack([recorded[r] for r in rec_steps])
    else:
        traj = np.stack([recorded[r] for r in rec_steps])
    return x, traj


def _to_numpy(a) -> np.ndarray:
    if _is_torch(a):
        return a.detach().cpu().numpy()
    return np.asarray(a)


def crossing_time(t, phi, level: float = PHI_SPECIATION, stderr=None, seed: SeedLike = None, *,
                  n_boot: int = 400, missing: str = "raise"):
    """Where ``phi(t)`` first falls through ``level``, linearly interpolated, with its error.

    The measured speciation time of [BBBM24] is the crossing of ``phi = 0.7752``, the universal
    large-N value at ``t_S`` (:data:`physdiff.theory.gaussian.PHI_SPECIATION`, the default
    ``level``); see ``docs/theory.md``, "Speciation, cloning and collapse". The function only
    interpolates: pass physical times ``t = -log(alpha_bar) / 2`` to get a physical time, step
    ratios ``k / k_S`` to get a step ratio. With ``stderr`` the standard error of the crossing is a
    parametric bootstrap: ``n_boot`` replicates ``clip(phi + stderr * g, 0, 1)``, ``g ~ N(0, I)``,
    each interpolated the same way; replicates that do not cross inside the grid are dropped.

    Parameters
    ----------
    t : array_like, shape (K,)
        Times (any order, sorted internally), distinct and finite.
    phi : array_like, shape (K,)
        Cloning probabilities at those times.
    level : float in (0, 1)
        Crossing level; default :data:`~physdiff.theory.gaussian.PHI_SPECIATION`.
    stderr : array_like, shape (K,), optional
        Standard errors of ``phi`` (e.g. :attr:`CloningResult.phi_stderr`). Without it no error is
        computed.
    seed : int, numpy.random.Generator or None
        Seeds the bootstrap.
    n_boot : int >= 2
        Bootstrap replicates.
    missing : {"raise", "nan"}
        What to do when ``phi`` never falls through ``level`` on the grid: raise ``ValueError``, or
        return NaN (and a NaN error).

    Returns
    -------
    float
        The crossing time, if ``stderr`` is None.
    (float, float)
        The crossing time and its bootstrap standard error, if ``stderr`` is given (the error is
        NaN when fewer than 2 replicates cross).

    Raises
    ------
    ValueError
        Shapes differ, fewer than 2 points, repeated or non-finite times, negative ``stderr``, a
        ``level`` outside (0, 1), or no crossing on the grid with ``missing="raise"`` (extend the
        grid to earlier or later times).
    """
    level = check_real("level", level, lo=0.0, hi=1.0, lo_open=True, hi_open=True)
    if missing not in ("raise", "nan"):
        raise ValueError(f"missing must be 'raise' or 'nan', got {missing!r}")
    tt = np.asarray(t, dtype=np.float64)
    pp = np.asarray(phi, dtype=np.float64)
    if tt.ndim != 1 or pp.shape != tt.shape or tt.size < 2:
        raise ValueError(f"t and phi must be 1-D of the same length >= 2, got shapes {tt.shape} and {pp.shape}")
    if not (np.all(np.isfinite(tt)) and np.all(np.isfinite(pp))):
        raise ValueError("t and phi must be finite")
    order = np.argsort(tt, kind="stable")
    tt, pp = tt[order], pp[order]
    if np.any(np.diff(tt) == 0.0):
        raise ValueError("t contains repeated times; average phi over repeats first")
    se = None
    if stderr is not None:
        se = np.asarray(stderr, dtype=np.float64)
        if se.shape != tt.shape or not np.all(np.isfinite(se)) or np.any(se < 0):
            raise ValueError(f"stderr must hold {tt.size} finite values >= 0, got shape {se.shape}")
        se = se[order]
        n_boot = check_positive_int("n_boot", n_boot, minimum=2)
    t0 = _first_crossing(tt, pp, level)
    if np.isnan(t0):
        if missing == "raise":
            raise ValueError(f"phi never falls through level={level} on this grid (phi ranges over "
                             f"[{pp.min():.4f}, {pp.max():.4f}]); extend the grid of times")
        return t0 if se is None else (t0, math.nan)
    if se is None:
        return t0
    rng = as_generator(seed)
    reps = np.clip(pp[None, :] + se[None, :] * rng.standard_normal((n_boot, tt.size)), 0.0, 1.0)
    boots = np.array([_first_crossing(tt, r, level) for r in reps])
    boots = boots[np.isfinite(boots)]
    return t0, (float(np.std(boots, ddof=1)) if boots.size >= 2 else math.nan)


def _first_crossing(tt: np.ndarray, pp: np.ndarray, level: float) -> float:
    """First ``t`` (sorted ``tt``) where ``pp`` goes from ``>= level`` to ``< level``; NaN if none."""
    down = np.flatnonzero((pp[:-1] >= level) & (pp[1:] < level))
    if down.size == 0:
        return math.nan
    i = int(down[0])
    frac = (pp[i] - level) / (pp[i] - pp[i + 1])
    return float(tt[i] + frac * (tt[i + 1] - tt[i]))


@dataclass(frozen=True)
class CloningResult:
    """Outcome of :func:`cloning`; arrays are numpy.

    Fields are attributes and also mapping keys (``res.phi`` or ``res["phi"]``; ``keys()``,
    ``as_dict()``).

    Attributes
    ----------
    phi : ndarray, float64, (K,)
        Share of pairs whose original and clone end in the same class, per branch step (in the order
        of ``branch_steps``).
    phi_stderr : ndarray, float64, (K,)
        Binomial standard error ``sqrt(phi (1 - phi) / n_pairs)``.
    branch_steps : ndarray, int64, (K,)
        The branch steps, as given.
    physical_time : ndarray, float64, (K,)
        ``-log(alpha_bar[t_b]) / 2`` of each branch step.
    alpha_bar : ndarray, float64, (K,)
        ``alpha_bar[t_b]``.
    n_pairs : int
        Number of original trajectories.
    labels : ndarray, (n_pairs,)
        Class of each original's endpoint.
    clone_labels : ndarray, (K, n_pairs)
        Class of each clone's endpoint.
    classes : ndarray
        The distinct classes of the originals, sorted.
    class_share : ndarray, float64, same length as ``classes``
        Share ``p_c`` of the originals in each class (for two classes ``p`` and ``1 - p``).
    baseline : float
        ``sum_c p_c^2`` (``p^2 + (1-p)^2`` for two classes): ``phi`` of clones that share nothing.
    """

    phi: np.ndarray
    phi_stderr: np.ndarray
    branch_steps: np.ndarray
    physical_time: np.ndarray
    alpha_bar: np.ndarray
    n_pairs: int
    labels: np.ndarray
    clone_labels: np.ndarray
    classes: np.ndarray
    class_share: np.ndarray
    baseline: float

    def keys(self) -> list[str]:
        """Field names, for dict-style use."""
        return [f.name for f in fields(self)]

    def __getitem__(self, key: str):
        if key not in self.keys():
            raise KeyError(f"{key!r}; CloningResult has {self.keys()}")
        return getattr(self, key)

    def as_dict(self) -> dict:
        """The fields as a plain dict."""
        return {k: getattr(self, k) for k in self.keys()}

    def speciation_time(self, level: float = PHI_SPECIATION, seed: SeedLike = None, *, n_boot: int = 400,
                        missing: str = "raise") -> tuple[float, float]:
        """Physical time where ``phi`` falls through ``level`` (default 0.7752) and its standard
        error [BBBM24].

        :func:`crossing_time` on ``(physical_time, phi)`` with the binomial ``phi_stderr``
        (parametric bootstrap of ``n_boot`` replicates seeded by ``seed``). Raises ``ValueError`` if
        the branch steps do not bracket the crossing (``missing="nan"``: returns NaNs instead).

        Returns
        -------
        (speciation_time, speciation_time_stderr) : (float, float)
        """
        return crossing_time(self.physical_time, self.phi, level, self.phi_stderr, seed, n_boot=n_boot,
                             missing=missing)


def cloning_branch_steps(schedule: Schedule, t_center: float, *, span: tuple[float, float] = (-0.9, 1.2),
                         n_branch: int = 10, t_classify: int = 0) -> list[int]:
    """Branch steps for :func:`cloning` around a physical time (typically ``t_S``).

    The steps nearest ``t_center + linspace(span[0], span[1], n_branch)`` in physical time
    (:meth:`Schedule.step_at_time`), keeping positive times and steps above ``t_classify``; steps
    that coincide are merged.

    Parameters
    ----------
    schedule : Schedule
    t_center : float
        Physical time at the centre of the grid, e.g. ``(1/2) log Lambda`` [BBBM24].
    span : (float, float)
        Offsets of the first and last branch time from ``t_center``.
    n_branch : int >= 2
        Branch times requested.
    t_classify : int >= 0
        Every branch step is above it (see :func:`cloning`).

    Returns
    -------
    list of int
        Decreasing steps in ``[t_classify + 1, T]``.

    Raises
    ------
    ValueError
        ``n_branch < 2``, a ``span`` that is not increasing, or no step left (a schedule with more
        steps is needed).
    """
    n_branch = check_positive_int("n_branch", n_branch, minimum=2)
    t_classify = check_positive_int("t_classify", t_classify, minimum=0)
    lo, hi = (float(v) for v in span)
    if not lo < hi:
        raise ValueError(f"span must be increasing (first, last offset), got {span}")
    taus = float(t_center) + np.linspace(lo, hi, n_branch)
    steps = sorted({schedule.step_at_time(tau) for tau in taus if tau > 0} - set(range(t_classify + 1)),
                   reverse=True)
    if not steps:
        raise ValueError(f"no branch step above t_classify={t_classify} in a schedule of T={schedule.T} steps "
                         f"around t = {t_center:.3f}; use a schedule with more steps")
    return steps


def cloning(eps_fn: EpsFn, schedule: Schedule, classify: Callable, branch_steps: Sequence[int],
            n_pairs: int, d: int, seed: SeedLike = None, x_T=None, sigma: str = "beta",
            t_classify: int = 0) -> CloningResult:
    """The cloning experiment: probability ``phi(t)`` that two clones end in the same class [BBBM24].

    ``n_pairs`` reverse trajectories start at step ``T`` from ``N(0, I)`` (or from ``x_T``). At each
    branch step ``t_b`` (processed in decreasing order whatever the order given) the current states
    ``x_{t_b}`` are copied; each copy is finished from ``t_b`` down to 0 with noise independent of
    the original's, while the original goes on. At the end every endpoint is classified, and
    ``phi[k]`` is the share of pairs (original, clone at ``branch_steps[k]``) in the same class.
    Stepping uses :func:`reverse_chain`, the same code as sampling, so a learned and an exact
    ``eps`` are compared like with like. For exact reverse dynamics ``phi`` estimates
    ``E_{x_t}[sum_c P(c | x_t)^2]`` (:mod:`physdiff.theory.gaussian`); branching at ``T`` gives the
    baseline ``sum_c p_c^2`` and branching at step 1 gives exactly 1 (the last step is noiseless).
    :meth:`CloningResult.speciation_time` gives the crossing of 0.7752 with its error
    (:func:`crossing_time`); ``docs/theory.md``, "Speciation, cloning and collapse".

    Parameters
    ----------
    eps_fn : callable
        ``eps_fn(x_t, t) -> eps`` for ``x_t`` of shape (n_pairs, d) (numpy or torch) and an int step.
    schedule : Schedule
    classify : callable
        ``classify(x0) -> labels`` of shape (n,), integers (or any comparable values); ``x0`` is of
        the same kind (numpy or torch) as the chain. Torch labels are moved to numpy.
    branch_steps : sequence of int, (K,)
        Steps ``t_b`` in ``[1, T]``, any order; a repeated step shares one clone.
    n_pairs : int >= 1
        Number of original trajectories (pairs).
    d : int >= 1
        Dimension of a state.
    seed : int, numpy.random.Generator or None
        Seeds the start ``N(0, I)`` (when ``x_T`` is None) and every segment's noise: equal seeds give
        equal results, for numpy and for torch.
    x_T : array (n_pairs, d), numpy or torch, optional
        Starting states at step ``T``; default float64 numpy ``N(0, I)`` drawn from ``seed``. Pass a
        torch tensor (on the model's device, in its dtype) to run a torch ``eps_fn``.
    sigma : {"beta", "posterior"}
        Reverse-step variance [Ho20, Sec. 3.2].
    t_classify : int
        Step at which the endpoints are classified (default 0, the data). A later step saves the
        finishing steps below it and is exact when the classes are frozen by then (e.g. the sign
        of the magnetization well below the speciation time, where the double-well barrier makes
        a later change of sign vanishingly rare); every branch step must be > ``t_classify``.

    Returns
    -------
    CloningResult
        ``phi`` and ``phi_stderr`` (float64 (K,), in the order of ``branch_steps``), the labels,
        the class shares and the baseline.

    Raises
    ------
    ValueError
        ``n_pairs`` or ``d`` < 1, branch steps empty, non-integer or outside ``[1, T]``, ``x_T`` of
        the wrong shape, an unknown ``sigma``, or labels of the wrong shape.

    Notes
    -----
    Cost: ``T + sum_k t_b[k]`` evaluations of ``eps_fn`` on ``n_pairs`` states; memory: two batches.
    """
    n_pairs = check_positive_int("n_pairs", n_pairs)
    d = check_positive_int("d", d)
    T = schedule.T
    schedule.sigma2(sigma)  # validates sigma
    steps = np.atleast_1d(np.asarray(branch_steps))
    if steps.ndim != 1 or steps.size == 0:
        raise ValueError(f"branch_steps must be a non-empty 1-D sequence of steps, got shape {steps.shape}")
    if steps.dtype.kind not in "iu":
        if steps.dtype.kind == "f" and np.all(np.isfinite(steps)) and np.all(steps == np.round(steps)):
            steps = steps.astype(np.int64)
        else:
            raise ValueError(f"branch_steps must be integers in [1, T={T}], got {steps.tolist()}")
    steps = steps.astype(np.int64)
    bad = steps[(steps < 1) | (steps > T)]
    if bad.size:
        raise ValueError(f"branch_steps {bad.tolist()} are outside [1, T={T}]; "
                         "step 0 is the data, there is nothing left to branch")
    t_classify = check_positive_int("t_classify", t_classify, minimum=0)
    if np.any(steps <= t_classify):
        raise ValueError(f"branch_steps {steps[steps <= t_classify].tolist()} are not above t_classify={t_classify}")
    rng = as_generator(seed)
    if x_T is None:
        x = rng.standard_normal((n_pairs, d))
    else:
        if tuple(getattr(x_T, "shape", ())) != (n_pairs, d):
            raise ValueError(f"x_T must have shape (n_pairs, d) = ({n_pairs}, {d}), "
                             f"got {getattr(x_T, 'shape', type(x_T))}")
        x = x_T

    def labels_of(x0):
        lab = _to_numpy(classify(x0))
        if lab.shape != (n_pairs,):
            raise ValueError(f"classify must return labels of shape (n,) = ({n_pairs},), got {lab.shape}")
        return lab

    def child_seed():
        return int(rng.integers(0, 2**63 - 1))

    order = np.unique(steps)[::-1]  # distinct steps, decreasing
    clone_of_step = {}
    t_now = T
    for t_b in order:
        t_b = int(t_b)
        x = reverse_chain(eps_fn, x, schedule, t_start=t_now, t_stop=t_b, seed=child_seed(), sigma=sigma)
        t_now = t_b
        clone = reverse_chain(eps_fn, x, schedule, t_start=t_b, t_stop=t_classify, seed=child_seed(), sigma=sigma)
        clone_of_step[t_b] = labels_of(clone)
        del clone
    x = reverse_chain(eps_fn, x, schedule, t_start=t_now, t_stop=t_classify, seed=child_seed(), sigma=sigma)
    labels = labels_of(x)
    clone_labels = np.stack([clone_of_step[int(t_b)] for t_b in steps])
    phi = np.mean(clone_labels == labels[None, :], axis=1, dtype=np.float64)
    classes, counts = np.unique(labels, return_counts=True)
    share = counts / n_pairs
    return CloningResult(
        phi=phi,
        phi_stderr=np.sqrt(phi * (1.0 - phi) / n_pairs),
        branch_steps=steps,
        physical_time=schedule.physical_time[steps].copy(),
        alpha_bar=schedule.alpha_bar[steps].copy(),
        n_pairs=n_pairs,
        labels=labels,
        clone_labels=clone_labels,
        classes=classes,
        class_share=share,
        baseline=float(np.sum(share**2)),
    )
