"""Cloning of a two-Gaussian mixture driven by its exact score: [BBBM24] Fig. 2.

Data: ``x0 ~ (1/2) N(m, sigma^2 I) + (1/2) N(-m, sigma^2 I)`` with ``m = (1, ..., 1)`` in ``d``
dimensions, so ``|m|^2 = d`` and the top eigenvalue of the data covariance is
``Lambda = d + sigma^2``. The reverse chain runs with the exact eps of the diffused mixture
(:func:`physdiff.theory.gaussian.score_two_gaussians` through
:func:`physdiff.reverse.eps_from_score`); clones are branched at physical times
``t_S + offset`` around the speciation time ``t_S = (1/2) log Lambda`` and the class of an
endpoint is the sign of ``m . x0`` (:func:`physdiff.reverse.cloning`). The measured ``phi(t)`` is
compared with the two-cluster theory :func:`physdiff.theory.gaussian.phi_two_clusters`
(``m_norm = sqrt(d)``, ``gamma = sigma^2``), exact in every dimension for exact reverse dynamics,
and its crossing of ``PHI_SPECIATION`` with ``(1/2) log Lambda``. ``docs/theory.md``,
"Speciation, cloning and collapse" and "Two Gaussians in d dimensions".

The schedule is the Ornstein-Uhlenbeck process in ``T`` equal steps of physical time up to
``t_max``: ``alpha_bar[t] = exp(-2 t t_max / T)``.

References
----------
[BBBM24] Biroli, Bonnaire, de Bortoli, Mezard (2024), Dynamical regimes of diffusion models,
arXiv:2402.18491, Fig. 2 and Methods (cloning).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import xarray as xr

from .. import reverse
from .._util import stream_seeds
from ..schedules import Schedule
from ..theory.gaussian import PHI_SPECIATION, phi_two_clusters, score_two_gaussians
from . import register

TINY = dict(d=(16, 64), n_pairs=300, T=120, t_max=4.5, offsets=(-1.0, -0.4, 0.0, 0.4, 1.0))


@register("two-cluster-cloning", title="Cloning of a two-Gaussian mixture with its exact score "
                                       "(Biroli et al. 2024, Fig. 2)")
@dataclass(frozen=True)
class Params:
    """Parameters of the two-cluster cloning study (defaults: a run of a few minutes on 2 cores)."""

    d: tuple[int, ...] = field(default=(256, 1024, 4096), metadata={"help": "dimensions of the data"})
    sigma: float = field(default=1.0, metadata={"help": "standard deviation of each cluster", "coord": True})
    n_pairs: int = field(default=600, metadata={"help": "clone pairs per dimension"})
    T: int = field(default=300, metadata={"help": "steps of the reverse chain"})
    t_max: float = field(default=6.5, metadata={"help": "physical time at step T"})
    offsets: tuple[float, ...] = field(default=(-1.2, -0.8, -0.4, -0.2, 0.0, 0.2, 0.4, 0.8, 1.2),
                                       metadata={"help": "branch times relative to (1/2) log Lambda"})
    seed: int = field(default=0, metadata={"help": "random seed", "coord": True})

    def __post_init__(self):
        if not self.d or any(int(v) != v or v < 1 for v in self.d):
            raise ValueError(f"d must be one or more integers >= 1, got {self.d}")
        if len(set(self.d)) != len(self.d):
            raise ValueError(f"d must not repeat a dimension, got {self.d}")
        if not np.isfinite(self.sigma) or self.sigma <= 0:
            raise ValueError(f"sigma must be > 0, got {self.sigma}")
        for name in ("n_pairs", "T"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not np.isfinite(self.t_max) or self.t_max <= 0:
            raise ValueError(f"t_max must be > 0, got {self.t_max}")
        if not self.offsets or len(set(self.offsets)) != len(self.offsets):
            raise ValueError(f"offsets must be one or more distinct values, got {self.offsets}")
        dt = self.t_max / self.T
        lo = speciation_time(min(self.d), self.sigma) + min(self.offsets)
        hi = speciation_time(max(self.d), self.sigma) + max(self.offsets)
        if lo < dt:
            raise ValueError(f"offsets reach t = {lo:.3f} < t_max / T = {dt:.3f} for d = {min(self.d)}; "
                             "raise min(offsets) or T")
        if hi > self.t_max:
            raise ValueError(f"t_max must be >= {hi:.3f} ((1/2) log Lambda + max(offsets) for d = {max(self.d)}), "
                             f"got {self.t_max}")


def speciation_time(d: int, sigma: float) -> float:
    """``t_S = (1/2) log Lambda`` with ``Lambda = d + sigma^2`` [BBBM24]."""
    return 0.5 * float(np.log(d + sigma**2))


def ou_schedule(T: int, t_max: float) -> Schedule:
    """``T`` equal steps of physical time up to ``t_max``: ``betas = 1 - exp(-2 t_max / T)``."""
    return Schedule.from_betas(np.full(T, -np.expm1(-2.0 * t_max / T)), name="ou-uniform",
                               params={"t_max": t_max})


def _clone_one(d: int, p: Params, schedule: Schedule, seed: int):
    m = np.ones(d)

    def score(x, alpha_bar):
        return score_two_gaussians(x, alpha_bar, m, p.sigma)

    t_s = speciation_time(d, p.sigma)
    steps = [schedule.step_at_time(t_s + o) for o in p.offsets]
    res = reverse.cloning(reverse.eps_from_score(score, schedule), schedule, lambda x0: np.sign(x0 @ m),
                          steps, p.n_pairs, d, seed=seed)
    t_meas, t_err = res.speciation_time(seed=seed, missing="nan")
    return res, t_meas, t_err


def run(params: Params, progress: bool = False) -> dict[str, xr.Dataset]:
    """Cloning at every ``d``: ``cloning(d, offset)``, ``speciation(d)`` and the ``theory(d, time)`` curve."""
    from tqdm.auto import tqdm

    p = params
    schedule = ou_schedule(p.T, p.t_max)
    seeds = stream_seeds(p.seed, len(p.d))
    k = len(p.offsets)
    phi, err, theory, step, time = (np.empty((len(p.d), k)) for _ in range(5))
    t_meas, t_err, t_theory = (np.empty(len(p.d)) for _ in range(3))
    t_grid = np.linspace(0.0, p.t_max, 401)
    curve = np.empty((len(p.d), t_grid.size))
    for i, d in enumerate(tqdm(p.d, desc="two-cluster cloning", disable=not progress)):
        res, t_meas[i], t_err[i] = _clone_one(d, p, schedule, int(seeds[i]))
        phi[i], err[i], step[i], time[i] = res.phi, res.phi_stderr, res.branch_steps, res.physical_time
        theory[i] = phi_two_clusters(res.physical_time, np.sqrt(d), p.sigma**2)
        curve[i] = phi_two_clusters(t_grid, np.sqrt(d), p.sigma**2)
        t_theory[i] = reverse.crossing_time(t_grid, curve[i])
    half_log = np.array([speciation_time(d, p.sigma) for d in p.d])
    coords = {"d": ("d", np.asarray(p.d, dtype=np.int64), {"long_name": "dimension of the data", "units": "1"})}
    one = {"units": "1"}
    cloning_ds = xr.Dataset(
        {"phi": (("d", "offset"), phi, {**one, "long_name": "probability that two clones end in the same class"}),
         "phi_stderr": (("d", "offset"), err, {**one, "long_name": "binomial standard error of phi"}),
         "phi_theory": (("d", "offset"), theory, {**one, "long_name": "phi of the two-cluster theory"})},
        coords={**coords,
                "offset": ("offset", np.asarray(p.offsets, dtype=np.float64),
                           {**one, "long_name": "requested branch time minus (1/2) log Lambda"}),
                "step": (("d", "offset"), step.astype(np.int64), {**one, "long_name": "branch step"}),
                "time": (("d", "offset"), time, {**one, "long_name": "physical time of the branch step"})})
    speciation_ds = xr.Dataset(
        {"speciation_time": ("d", t_meas, {**one, "long_name": f"measured crossing of phi = {PHI_SPECIATION:.4f}"}),
         "speciation_time_stderr": ("d", t_err, {**one, "long_name": "bootstrap standard error of the crossing"}),
         "speciation_time_theory": ("d", t_theory, {**one, "long_name": "crossing of the two-cluster theory"}),
         "half_log_lambda": ("d", half_log, {**one, "long_name": "(1/2) log Lambda, Lambda = d + sigma^2"})},
        coords=coords)
    theory_ds = xr.Dataset(
        {"phi_theory": (("d", "time"), curve, {**one, "long_name": "phi of the two-cluster theory"})},
        coords={**coords, "time": ("time", t_grid, {**one, "long_name": "physical time"})})
    return {"cloning": cloning_ds, "speciation": speciation_ds, "theory": theory_ds}


def plot(datasets: dict[str, xr.Dataset]) -> dict:
    """``cloning``: phi against t - (1/2) log Lambda for every d, theory as lines; ``speciation``:
    measured and theoretical crossings against d."""
    import matplotlib.pyplot as plt

    cl, sp, th = datasets["cloning"], datasets["speciation"], datasets["theory"]
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, d in enumerate(cl["d"].values):
        t_s = float(sp["half_log_lambda"][i])
        ax.errorbar(cl["time"][i] - t_s, cl["phi"][i], yerr=cl["phi_stderr"][i], fmt="o", ms=3, capsize=2,
                    color=f"C{i}", label=f"d = {d}")
        ax.plot(th["time"] - t_s, th["phi_theory"][i], color=f"C{i}", lw=1)
    ax.axhline(PHI_SPECIATION, color="0.5", lw=0.8, ls=":")
    ax.axvline(0.0, color="k", lw=0.8, ls="--")
    ax.set_xlim(float(cl["offset"].min()) - 0.3, float(cl["offset"].max()) + 0.3)
    ax.set_xlabel(r"$t - \frac{1}{2}\log\Lambda$")
    ax.set_ylabel(r"$\phi(t)$")
    ax.set_title("two-cluster cloning, exact score (lines: theory)", fontsize=9)
    ax.legend(fontsize=8)

    fig2, ax2 = plt.subplots(figsize=(5, 3.5))
    d = sp["d"].values
    ax2.errorbar(d, sp["speciation_time"], yerr=sp["speciation_time_stderr"], fmt="o", capsize=2, label="measured")
    ax2.plot(d, sp["speciation_time_theory"], "k-", lw=1, label="theory crossing")
    ax2.plot(d, sp["half_log_lambda"], "k--", lw=1, label=r"$\frac{1}{2}\log\Lambda$")
    ax2.set_xscale("log")
    ax2.set_xlabel("d")
    ax2.set_ylabel("speciation time")
    ax2.legend(fontsize=8)
    return {"cloning": fig, "speciation": fig2}
