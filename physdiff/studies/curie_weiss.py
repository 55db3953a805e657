"""Curie-Weiss data with the exact score: potentials, forward histograms, reverse trajectories,
cloning against the exact finite-N theory, and the speciation time against N.

    physdiff study curie-weiss --N 1000 --beta 1.5 --out runs/cw

Everything here uses the exact finite-N law and score (:mod:`physdiff.theory.curie_weiss`), no
trained model: the density and drift potentials ``V(mu, t)`` and ``U(mu, t)`` of
``mu = sum_i x_i / sqrt(N)`` around ``t_S = (1/2) log Lambda`` (exact and large-N), histograms of
``mu`` along the forward chain against the exact ``P_t(mu)``, exact-score reverse trajectories,
the cloning probability ``phi(t)`` measured with :func:`physdiff.reverse.cloning` against
:func:`physdiff.theory.gaussian.phi_curie_weiss`, with the crossing of 0.7752 and its bootstrap
error, and ``t_S(N)`` for ``beta`` = 0.5 and the given ``beta`` (``(1/2) log N + O(1)`` in the
ordered phase). Formulas: ``docs/theory.md``, "Speciation, cloning and collapse".

References
----------
[BM23] Biroli, Mezard (2023), Generative diffusion in very large dimensions, arXiv:2306.03518.
[BBBM24] Biroli, Bonnaire, de Bortoli, Mezard (2024), Dynamical regimes of diffusion models,
    arXiv:2402.18491.
[RA23] Raya, Ambrogioni (2023), Spontaneous symmetry breaking in generative diffusion models,
    arXiv:2305.19693.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import xarray as xr

from .. import forward, spins
from .._util import check_positive_int, check_real
from ..reverse import cloning, cloning_branch_steps, crossing_time, eps_from_score, reverse_chain
from ..schedules import make_schedule
from ..theory import curie_weiss as cw
from ..theory import gaussian
from . import register

__all__ = ["Params", "run", "plot", "TINY", "study_schedule"]

#: Overrides for a run of a few seconds on one core (tests).
TINY = dict(N=32, T=30, n_pairs=60, n_forward=500, n_trajectories=10)

_ONE = {"units": "1"}
_KINDS = ("covariance", "density", "drift")


@register("curie-weiss", title="Curie-Weiss model: exact potentials, cloning and speciation time")
@dataclass(frozen=True)
class Params:
    """Parameters of the Curie-Weiss study (defaults: the quick settings, ~4 min on 2 cores)."""

    N: int = field(default=1000, metadata={"help": "number of spins", "coord": True})
    beta: float = field(default=1.5, metadata={"help": "inverse temperature", "coord": True})
    h: float = field(default=0.0, metadata={"help": "per-spin field", "coord": True})
    T: int = field(default=100, metadata={"help": "steps of the chains (linear schedule rescaled to end at t = 5.06)"})
    n_pairs: int = field(default=1500, metadata={"help": "clone pairs of the cloning experiment (>= 4000 in BBBM24)"})
    n_forward: int = field(default=10000, metadata={"help": "configurations pushed through the forward chain"})
    n_trajectories: int = field(default=200, metadata={"help": "exact-score reverse trajectories recorded"})
    seed: int = field(default=0, metadata={"help": "random seed", "coord": True})

    def __post_init__(self):
        check_positive_int("N", self.N, minimum=2)
        check_real("beta", self.beta, lo=0.0)
        check_real("h", self.h)
        check_positive_int("T", self.T, minimum=10)
        for name in ("n_pairs", "n_forward", "n_trajectories"):
            check_positive_int(name, getattr(self, name), minimum=2)
        check_positive_int("seed", self.seed, minimum=0)


def study_schedule(T: int):
    """Ho et al.'s linear schedule (1e-4..0.02 at T = 1000) rescaled to ``T`` steps, so that it
    always ends at physical time ~5.06 (``alpha_bar_T ~ 4e-5``)."""
    return make_schedule("linear", T, beta_start=min(1e-4 * 1000 / T, 0.5), beta_end=min(0.02 * 1000 / T, 0.5))


def _sign_class(x) -> np.ndarray:
    """Class of a state: 1 if its magnetization is > 0, else 0."""
    return (x.sum(axis=1) > 0).astype(np.int64)


def _step_coords(schedule, steps, what: str = "diffusion step") -> dict:
    steps = np.asarray(steps, dtype=np.int64)
    return {"step": ("step", steps, {**_ONE, "long_name": what}),
            "time": ("step", schedule.physical_time[steps],
                     {**_ONE, "long_name": "physical time -(1/2) log alpha_bar"}),
            "alpha_bar": ("step", schedule.alpha_bar[steps], {**_ONE, "long_name": "alpha_bar of the step"})}


def _potentials(p: Params, t_S: float) -> xr.Dataset:
    taus = t_S + np.array([-1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0])
    taus = taus[taus > 0.02]
    ab = np.exp(-2.0 * taus)
    mu = np.linspace(-6.0, 6.0, 481)
    dims = ("time", "mu")
    data = {"V": (dims, cw.potential(mu, ab, p.N, p.beta, p.h, kind="density"),
                  {**_ONE, "long_name": "density potential V = -log P_t(mu), exact finite N"}),
            "U": (dims, cw.potential(mu, ab, p.N, p.beta, p.h, kind="drift"),
                  {**_ONE, "long_name": "drift potential U = -mu^2/2 - 2 log P_t(mu), exact finite N"})}
    if p.h == 0:
        data["V_asymptotic"] = (dims, cw.potential_asymptotic(mu, ab, p.N, p.beta, kind="density"),
                                {**_ONE, "long_name": "density potential, large-N form"})
        data["U_asymptotic"] = (dims, cw.potential_asymptotic(mu, ab, p.N, p.beta, kind="drift"),
                                {**_ONE, "long_name": "drift potential, large-N form"})
    coords = {"time": ("time", taus, {**_ONE, "long_name": "physical time"}),
              "alpha_bar": ("time", ab, {**_ONE, "long_name": "alpha_bar = exp(-2 time)"}),
              "mu": ("mu", mu, {**_ONE, "long_name": "mu = sum_i x_i / sqrt(N)"})}
    return xr.Dataset(data, coords=coords)


def _forward(p: Params, sched, t_S: float, rng) -> xr.Dataset:
    steps = sorted({sched.step_at_time(tau) for tau in (0.5 * t_S, t_S - 0.5, t_S, t_S + 1.0)})
    a = spins.sample_curie_weiss(p.N, p.beta, p.h, n_samples=p.n_forward, seed=rng)
    mus = forward.trajectory(a.astype(np.float32), sched, steps, seed=rng).sum(axis=2) / math.sqrt(p.N)
    edges = np.linspace(-6.0, 6.0, 61)
    # normalised by all samples (not only those inside the range): an estimate of P_t(mu) itself
    hist = np.stack([np.histogram(m, bins=edges)[0] for m in mus]) / (p.n_forward * np.diff(edges)[0])
    mu = np.linspace(-6.0, 6.0, 481)
    P_exact = np.exp(-cw.potential(mu, sched.alpha_bar[steps], p.N, p.beta, p.h, kind="density"))
    return xr.Dataset(
        {"hist": (("step", "bin"), hist, {**_ONE, "long_name": "histogram density of mu along the forward chain"}),
         "P_exact": (("step", "mu"), P_exact, {**_ONE, "long_name": "exact density P_t(mu)"}),
         "mu_mean": ("step", mus.mean(axis=1), {**_ONE, "long_name": "sample mean of mu"}),
         "mu_var": ("step", mus.var(axis=1), {**_ONE, "long_name": "sample variance of mu"})},
        coords=_step_coords(sched, steps) | {
            "bin_center": ("bin", 0.5 * (edges[1:] + edges[:-1]), {**_ONE, "long_name": "centre of the mu bin"}),
            "mu": ("mu", mu, {**_ONE, "long_name": "mu = sum_i x_i / sqrt(N)"})},
        attrs={"n_samples": p.n_forward})


def _trajectories(p: Params, sched, eps_fn, rng, progress: bool) -> xr.Dataset:
    rec = np.unique(np.r_[np.arange(0, p.T + 1, max(1, p.T // 200)), p.T])[::-1]
    x_T = rng.standard_normal((p.n_trajectories, p.N))
    _, xs = reverse_chain(eps_fn, x_T, sched, seed=rng, record=rec, progress=progress)
    mu = xs.sum(axis=2).T / math.sqrt(p.N)
    return xr.Dataset({"mu": (("trajectory", "step"), mu,
                              {**_ONE, "long_name": "mu = sum_i x_i / sqrt(N) along exact-score reverse chains"})},
                      coords=_step_coords(sched, rec))


def _speciation(p: Params, sched, eps_fn, times: dict, rng) -> xr.Dataset:
    t_S = times["covariance"]
    # classes (the sign of M) are frozen well below t_S: at t_S - 2 the double well has its minima
    # at mu ~ +-e^2 ~ +-7.4 standard deviations, so the clones are classified there
    t_classify = sched.step_at_time(max(t_S - 2.0, 0.0))
    branch = cloning_branch_steps(sched, t_S, span=(-1.0, 1.25), n_branch=10, t_classify=t_classify)
    res = cloning(eps_fn, sched, _sign_class, branch, p.n_pairs, p.N, seed=rng, t_classify=t_classify)
    t_x, t_err = res.speciation_time(seed=rng, missing="nan")
    ratio = res.branch_steps / max(sched.step_at_time(t_S), 1)
    k_x, k_err = crossing_time(ratio, res.phi, stderr=res.phi_stderr, seed=rng, missing="nan")
    t_curve = np.linspace(max(res.physical_time.min() - 0.5, 0.05), res.physical_time.max() + 0.5, 200)
    phi_curve = gaussian.phi_curie_weiss(t_curve, p.N, p.beta, p.h)
    scalar = lambda v, name: ((), float(v), {**_ONE, "long_name": name})  # noqa: E731
    data = {
        "phi": ("step", res.phi, {**_ONE, "long_name": "share of clone pairs ending with the same sign of M"}),
        "phi_stderr": ("step", res.phi_stderr, {**_ONE, "long_name": "binomial standard error of phi"}),
        "phi_theory": ("step", gaussian.phi_curie_weiss(res.physical_time, p.N, p.beta, p.h),
                       {**_ONE, "long_name": "exact finite-N phi seen along mu"}),
        "phi_curve": ("time_curve", phi_curve, {**_ONE, "long_name": "exact finite-N phi seen along mu"}),
        "speciation_time": scalar(t_x, "physical time where phi falls through 0.7752 (measured)"),
        "speciation_time_stderr": scalar(t_err, "parametric-bootstrap standard error of speciation_time"),
        "speciation_step_ratio": scalar(k_x, "step ratio k / k_S where phi falls through 0.7752 (measured)"),
        "speciation_step_ratio_stderr": scalar(k_err, "parametric-bootstrap standard error of speciation_step_ratio"),
        "speciation_time_phi_theory": scalar(crossing_time(t_curve, phi_curve, missing="nan"),
                                             "crossing of 0.7752 by the theory curve"),
        "baseline": scalar(res.baseline, "phi of clones that share nothing, p^2 + (1-p)^2"),
        "share_plus": scalar(np.mean(res.labels == 1), "share of originals ending with M > 0"),
    }
    for kind, long in (("covariance", "(1/2) log Lambda, Lambda the top eigenvalue of the data covariance"),
                       ("density", "time where V''(0) = 0"), ("drift", "time where U''(0) = 0")):
        data[f"speciation_time_{kind}"] = scalar(times[kind], f"speciation time: {long}")
    coords = _step_coords(sched, res.branch_steps, "branch step") | {
        "step_ratio": ("step", ratio, {**_ONE, "long_name": "branch step over the step k_S of (1/2) log Lambda"}),
        "time_curve": ("time_curve", t_curve, {**_ONE, "long_name": "physical time of the theory curve"})}
    return xr.Dataset(data, coords=coords, attrs={"n_pairs": p.n_pairs, "t_classify": int(t_classify),
                                                  "level": gaussian.PHI_SPECIATION})


def _speciation_vs_N(p: Params) -> xr.Dataset:
    Ns = np.unique(np.round(np.logspace(2, 4, 9)).astype(np.int64))
    betas = np.asarray(sorted({0.5, float(p.beta)}))
    ts = np.array([[[cw.speciation_time(int(n), float(b), p.h, kind=k) for k in _KINDS] for n in Ns] for b in betas])
    return xr.Dataset(
        {"speciation_time_grid": (("beta_grid", "N_grid", "kind"), ts,
                                  {**_ONE, "long_name": "speciation time of each kind, exact finite N"})},
        coords={"beta_grid": ("beta_grid", betas, {**_ONE, "long_name": "inverse temperature"}),
                "N_grid": ("N_grid", Ns, {**_ONE, "long_name": "number of spins"}),
                "kind": ("kind", list(_KINDS))})


def run(params: Params, progress: bool = False) -> dict[str, xr.Dataset]:
    """Potentials, forward histograms, reverse trajectories, cloning and t_S(N) with the exact score.

    Returns
    -------
    dict
        ``potential`` (``V``, ``U`` and their large-N forms on (time, mu)), ``forward``
        (``hist(step, bin)`` vs ``P_exact(step, mu)``), ``trajectories`` (``mu(trajectory, step)``),
        ``speciation`` (``phi(step)`` with errors and theory, the measured crossing of 0.7752 with its
        bootstrap error, the three theoretical speciation times), ``speciation_vs_N``
        (``speciation_time_grid(beta_grid, N_grid, kind)``).
    """
    p = params
    rng = np.random.default_rng(p.seed)
    sched = study_schedule(p.T)
    times = {k: cw.speciation_time(p.N, p.beta, p.h, kind=k) for k in _KINDS}
    eps_fn = eps_from_score(lambda x, alpha_bar: cw.score(x, alpha_bar, p.beta, p.h), sched)
    return {"potential": _potentials(p, times["covariance"]),
            "forward": _forward(p, sched, times["covariance"], rng),
            "trajectories": _trajectories(p, sched, eps_fn, rng, progress),
            "speciation": _speciation(p, sched, eps_fn, times, rng),
            "speciation_vs_N": _speciation_vs_N(p)}


def plot(datasets: dict[str, xr.Dataset]) -> dict:
    """Figures: ``potential``, ``forward``, ``trajectories``, ``cloning``, ``speciation_vs_N``."""
    from .. import plotting  # here: matplotlib.pyplot takes 0.3 s to import, which every CLI start paid

    sp = datasets["speciation"]
    t_S = float(sp["speciation_time_covariance"])
    figs = {"potential": plotting.plot_potential(datasets["potential"], speciation_time=t_S),
            "forward": plotting.plot_histograms(datasets["forward"]),
            "trajectories": plotting.plot_magnetization_trajectories(
                datasets["trajectories"].isel(step=slice(None, -1)), speciation_time=t_S),
            "cloning": plotting.plot_speciation(sp, speciation_time_theory=t_S)}
    sN = datasets["speciation_vs_N"]
    sN = sN.drop_vars([v for v in ("N", "beta") if v in sN.coords]).rename(
        {"N_grid": "N", "beta_grid": "beta", "speciation_time_grid": "speciation_time"})
    figs["speciation_vs_N"] = plotting.plot_speciation_vs_N(sN)
    return figs
