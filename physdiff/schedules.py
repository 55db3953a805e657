"""Noise schedules of the discrete forward (Ornstein-Uhlenbeck) chain.

Conventions (docs/theory.md, "The forward process and noise schedules"): steps are ``t = 0..T``;
every array of a :class:`Schedule` has length ``T + 1`` and is indexed by the step, with
``betas[0] = 0`` so that ``alpha_bar[0] = 1`` (``x0`` is data). The forward step is
``x_t = sqrt(alphas[t]) x_{t-1} + sqrt(betas[t]) xi`` [Ho20, eq. 2] and its closed form
``x_t = sqrt(alpha_bar[t]) x0 + sqrt(1 - alpha_bar[t]) eps`` [Ho20, eq. 4].

The chain samples the OU process ``dx = -x dtau + sqrt(2) dW`` at the physical time
``tau_t = -log(alpha_bar[t]) / 2`` [BBBM24], which :attr:`Schedule.physical_time` gives.

References
----------
[Ho20] Ho, Jain, Abbeel (2020), Denoising Diffusion Probabilistic Models, arXiv:2006.11239.
[ND21] Nichol, Dhariwal (2021), Improved Denoising Diffusion Probabilistic Models, arXiv:2102.09672.
[BBBM24] Biroli, Bonnaire, de Bortoli, Mezard (2024), Dynamical regimes of diffusion models,
arXiv:2402.18491.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._util import check_positive_int, check_real

__all__ = ["Schedule", "make_schedule", "SCHEDULES", "map_steps"]


def _readonly(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a, dtype=np.float64)
    a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False)
class Schedule:
    """A noise schedule: ``betas`` and everything derived from them, indexed by step ``t = 0..T``.

    Build one with :func:`make_schedule` or :meth:`Schedule.from_betas`.

    Attributes
    ----------
    T : int
        Number of diffusion steps.
    betas : ndarray, float64, shape (T+1,)
        Per-step noise variances; ``betas[0] = 0`` and ``0 < betas[t] < 1`` for ``t >= 1``.
    alphas : ndarray, float64, shape (T+1,)
        ``1 - betas``.
    alpha_bar : ndarray, float64, shape (T+1,)
        ``alpha_bar[t] = prod_{s<=t} alphas[s]``; ``alpha_bar[0] = 1``, strictly decreasing.
    physical_time : ndarray, float64, shape (T+1,)
        OU time ``tau_t = -log(alpha_bar[t]) / 2`` of ``dx = -x dtau + sqrt(2) dW`` (dimensionless).
    posterior_variance : ndarray, float64, shape (T+1,)
        ``beta_tilde[t] = (1 - alpha_bar[t-1]) / (1 - alpha_bar[t]) * betas[t]`` [Ho20, eq. 7],
        the variance of ``q(x_{t-1} | x_t, x0)``; ``beta_tilde[0] = beta_tilde[1] = 0``.
    name : str
        The constructor's name (``"linear"``, ..., or ``"custom"``).
    params : dict
        The constructor's keyword parameters, enough to rebuild the schedule with
        ``make_schedule(name, T, **params)``.
    """

    betas: np.ndarray
    name: str = "custom"
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        betas = np.asarray(self.betas, dtype=np.float64)
        if betas.ndim != 1 or betas.size < 2:
            raise ValueError(f"betas must be a 1-D array of length T+1 >= 2, got shape {betas.shape}")
        if not np.all(np.isfinite(betas)):
            raise ValueError("betas contains NaN or inf")
        if betas[0] != 0.0:
            raise ValueError(f"betas[0] must be 0 (step 0 is the data), got {betas[0]}")
        inner = betas[1:]
        if np.any(inner <= 0.0) or np.any(inner >= 1.0):
            bad = np.flatnonzero((inner <= 0.0) | (inner >= 1.0)) + 1
            raise ValueError(
                f"betas[t] must lie in the open interval (0, 1) for t >= 1; steps {bad[:5].tolist()} "
                f"are outside (values {betas[bad[:5]].tolist()}); lower beta_end or raise T"
            )
        alphas = 1.0 - betas
        # log-space cumulative product: exact to rounding even when alpha_bar underflows float32.
        alpha_bar = np.exp(np.cumsum(np.log(alphas)))
        if not np.all(np.diff(alpha_bar) < 0.0):
            raise ValueError("alpha_bar must be strictly decreasing; betas underflow to alpha_bar == const")
        if alpha_bar[-1] <= 0.0:
            raise ValueError("alpha_bar underflows to 0 before step T; use fewer or smaller betas")
        with np.errstate(divide="ignore", invalid="ignore"):
            post = np.zeros_like(betas)
            post[1:] = (1.0 - alpha_bar[:-1]) / (1.0 - alpha_bar[1:]) * betas[1:]
        object.__setattr__(self, "betas", _readonly(betas))
        object.__setattr__(self, "alphas", _readonly(alphas))
        object.__setattr__(self, "alpha_bar", _readonly(alpha_bar))
        object.__setattr__(self, "physical_time", _readonly(-0.5 * np.log(alpha_bar)))
        object.__setattr__(self, "posterior_variance", _readonly(post))
        object.__setattr__(self, "params", dict(self.params))

    # declared for type checkers and documentation; set in __post_init__
    alphas: np.ndarray = field(init=False, repr=False)
    alpha_bar: np.ndarray = field(init=False, repr=False)
    physical_time: np.ndarray = field(init=False, repr=False)
    posterior_variance: np.ndarray = field(init=False, repr=False)

    @classmethod
    def from_betas(cls, betas, name: str = "custom", params: dict | None = None) -> "Schedule":
        """Build a schedule from ``betas`` of length ``T`` (steps 1..T) or ``T+1`` (with ``betas[0]=0``)."""
        b = np.asarray(betas, dtype=np.float64)
        if b.ndim == 1 and b.size >= 1 and b[0] != 0.0:
            b = np.concatenate([[0.0], b])
        return cls(b, name=name, params=params or {})

    @property
    def T(self) -> int:
        """Number of diffusion steps."""
        return int(self.betas.size - 1)

    def sigma2(self, kind: str = "beta") -> np.ndarray:
        """Variance of the reverse step's noise, shape (T+1,) [Ho20, Sec. 3.2].

        ``kind="beta"``: ``sigma_t^2 = beta_t``; ``kind="posterior"``: ``sigma_t^2 = beta_tilde_t``.
        Raises ``ValueError`` for any other kind.
        """
        if kind == "beta":
            return self.betas
        if kind == "posterior":
            return self.posterior_variance
        raise ValueError(f"sigma kind must be 'beta' or 'posterior', got {kind!r}")

    def step_at_time(self, tau: float) -> int:
        """First step ``t`` whose physical time is >= ``tau`` (``T`` if ``tau`` is never reached).

        With ``tau = log(Lambda)/2`` this is the speciation step, the first ``t`` with
        ``alpha_bar[t] <= 1/Lambda`` [BBBM24].
        """
        idx = int(np.searchsorted(self.physical_time, float(tau), side="left"))
        return min(idx, self.T)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable description; ``make_schedule(**d)`` or ``from_dict`` rebuilds it."""
        if self.name == "custom":
            return {"name": "custom", "T": self.T, "betas": self.betas[1:].tolist()}
        return {"name": self.name, "T": self.T, **self.params}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Schedule":
        """Inverse of :meth:`to_dict`."""
        d = dict(d)
        name = d.pop("name")
        T = d.pop("T")
        if name == "custom":
            return cls.from_betas(d["betas"])
        return make_schedule(name, T, **d)

    def __repr__(self) -> str:
        p = ", ".join(f"{k}={v}" for k, v in self.params.items())
        return (f"Schedule({self.name!r}, T={self.T}{', ' + p if p else ''}; "
                f"alpha_bar[T]={self.alpha_bar[-1]:.3g}, tau[T]={self.physical_time[-1]:.3f})")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Schedule) and np.array_equal(self.betas, other.betas)

    __hash__ = None  # mutable-looking arrays: not hashable


def _linear(T, beta_start=1e-4, beta_end=0.02):
    return np.linspace(beta_start, beta_end, T)


def _quadratic(T, beta_start=1e-4, beta_end=0.02):
    return np.linspace(np.sqrt(beta_start), np.sqrt(beta_end), T) ** 2


def _sigmoid(T, beta_start=1e-4, beta_end=0.02):
    s = 1.0 / (1.0 + np.exp(-np.linspace(-6.0, 6.0, T)))
    return beta_start + (beta_end - beta_start) * s


def _cosine(T, s=0.008, max_beta=0.999):
    # [ND21, eq. 17]: alpha_bar(t) = f(t)/f(0), f(t) = cos^2((t/T + s)/(1 + s) * pi/2);
    # betas = 1 - alpha_bar(t)/alpha_bar(t-1), clipped at max_beta.
    t = np.arange(T + 1, dtype=np.float64)
    f = np.cos((t / T + s) / (1.0 + s) * np.pi / 2.0) ** 2
    return np.minimum(1.0 - f[1:] / f[:-1], max_beta)


SCHEDULES = {"linear": _linear, "cosine": _cosine, "quadratic": _quadratic, "sigmoid": _sigmoid}


def make_schedule(name: str, T: int, **params) -> Schedule:
    """Build a named noise schedule with ``T`` steps.

    Parameters
    ----------
    name : {"linear", "cosine", "quadratic", "sigmoid"}
        ``"linear"``: ``betas`` evenly spaced from ``beta_start`` to ``beta_end`` (defaults 1e-4 and
        0.02, [Ho20, Sec. 4]); ``"quadratic"``: evenly spaced in ``sqrt(beta)``; ``"sigmoid"``: a
        logistic ramp over [-6, 6] between the same end points; ``"cosine"``: [ND21, eq. 17] with
        offset ``s=0.008`` and betas clipped at ``max_beta=0.999``.
    T : int
        Number of steps, >= 1.
    **params
        The constructor's parameters above.

    Returns
    -------
    Schedule
        Arrays of length ``T+1``, float64.

    Raises
    ------
    ValueError
        Unknown name or parameter, ``T < 1``, ``betas`` outside (0, 1), or ``alpha_bar`` not
        strictly decreasing.
    """
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; choose one of {sorted(SCHEDULES)}")
    T = check_positive_int("T", T)
    fn = SCHEDULES[name]
    allowed = fn.__code__.co_varnames[1:fn.__code__.co_argcount]
    unknown = set(params) - set(allowed)
    if unknown:
        raise ValueError(f"unknown parameter(s) {sorted(unknown)} for schedule {name!r}; allowed: {list(allowed)}")
    for k, v in params.items():
        params[k] = check_real(k, v)
    if name != "cosine":
        lo, hi = params.get("beta_start", 1e-4), params.get("beta_end", 0.02)
        if not (0.0 < lo < 1.0 and 0.0 < hi < 1.0):
            raise ValueError(f"beta_start and beta_end must lie in (0, 1), got {lo} and {hi}")
    betas = fn(T, **params)
    return Schedule.from_betas(np.concatenate([[0.0], betas]), name=name, params=params)


def map_steps(schedule: Schedule, steps, reference: Schedule | None = None) -> dict:
    """The steps of ``schedule`` at the physical times of ``steps`` of another schedule.

    Step ``k`` of ``reference`` sits at physical time ``tau = -(1/2) log alpha_bar_ref[k]``
    [BBBM24]; the matched step of ``schedule`` is the one whose physical time is nearest to
    ``tau`` (of the bracket given by :meth:`Schedule.step_at_time` and the step before it). A
    model trained with another schedule (fewer steps, rescaled betas) is thereby run at the same
    noise level as a step quoted in the reference's units; counting steps instead would be wrong
    wherever ``log(1 - beta) != -beta``. See ``docs/theory.md``, "MNIST studies".

    Parameters
    ----------
    schedule : Schedule
        The schedule to map onto (a model's).
    steps : int or sequence of int
        Steps of ``reference`` in ``0..reference.T`` (0 is the data).
    reference : Schedule, optional
        The schedule the steps are counted in; default the linear 1e-4..0.02 schedule with
        ``T = 1000`` of [Ho20] and of the thesis.

    Returns
    -------
    dict of ndarray, each (k,)
        ``step`` (int64, as given), ``alpha_bar`` and ``time`` (float64, of the reference step),
        ``model_step`` (int64), ``model_alpha_bar`` and ``model_time`` (float64).

    Raises
    ------
    ValueError
        ``steps`` empty, not integers, or outside ``0..reference.T``.
    """
    ref = make_schedule("linear", 1000, beta_start=1e-4, beta_end=0.02) if reference is None else reference
    k = np.atleast_1d(np.asarray(steps))
    if k.size == 0 or k.ndim != 1 or k.dtype.kind not in "iu":
        raise ValueError(f"steps must be a non-empty list of integers, got {steps!r}")
    k = k.astype(np.int64)
    if k.min() < 0 or k.max() > ref.T:
        raise ValueError(f"steps must lie in 0..{ref.T}, got range [{k.min()}, {k.max()}]")
    tau = ref.physical_time[k]
    pt = schedule.physical_time
    hi = np.array([schedule.step_at_time(x) for x in tau], dtype=np.int64)
    lo = np.maximum(hi - 1, 0)
    model = np.where(np.abs(pt[lo] - tau) <= np.abs(pt[hi] - tau), lo, hi)
    return {"step": k, "alpha_bar": ref.alpha_bar[k], "time": tau, "model_step": model,
            "model_alpha_bar": schedule.alpha_bar[model], "model_time": pt[model]}
