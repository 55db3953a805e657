"""Does a per-timestep Linear-ReLU-Linear DDPM learn the physics of Curie-Weiss data, and where
does it not?

    physdiff study phase-transition --out runs/pt                           # trains a quick N = 64 model
    physdiff train curie-weiss --N 64 --beta 1.5 --out runs/cw64
    physdiff study phase-transition --checkpoint runs/cw64 --out runs/pt    # analyses a checkpoint

The learned score is compared with the exact finite-N score (:func:`physdiff.theory.curie_weiss.score`)
on fresh forward samples; the potential of ``mu = sum_i x_i / sqrt(N)`` it implies is estimated
(:func:`physdiff.metrics.binned_potentials`) and set against the exact ``V(mu, t)``, with the number
and depth of its wells; the nets' Jacobian asymmetry and their energy along the magnetization axis
are measured [KM13]; the cloning experiment is run with the learned, a linear and the exact score
against the exact theory and a Gaussian of the same covariance [BBBM24]; and the generated state
weights and memorisation are counted. A linear model (``--activation linear``) cannot form the
double well [Thesis, Annex II]: with an empty ``checkpoint`` one is trained here too (``linear``),
with a checkpoint ``CK`` a sibling ``CK_linear`` is used when present (or ``linear_checkpoint``).
Formulas: ``docs/theory.md``, "Speciation, cloning and collapse".

References
----------
[BM23] Biroli & Mezard (2023), arXiv:2306.03518: Curie-Weiss data, exact and large-N score.
[BBBM24] Biroli, Bonnaire, de Bortoli & Mezard (2024), arXiv:2402.18491: ``t_S = (1/2) log Lambda``,
    the cloning observable ``phi(t)``, the collapse time ``t_C``.
[RA23] Raya & Ambrogioni (2023), arXiv:2305.19693: potentials of the generative process.
[KM13] Kamyshanska & Memisevic (2013/2015): energies of single-hidden-layer autoencoders; untied
    weights are a gradient field only if the Jacobian is symmetric.
[Thesis] Bustinduy de la Guerra (2024): one Linear-ReLU-Linear autoencoder per timestep; Annex II.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import xarray as xr

from .. import datasets, forward, metrics
from .._util import check_positive_int, check_real
from ..reverse import crossing_time
from ..theory import autoencoder as ae_theory
from ..theory import curie_weiss as cw
from ..theory import gaussian
from . import _curie_weiss as C
from . import register

__all__ = ["Params", "run", "plot", "TINY"]

#: Overrides for a run of a few seconds on one core (tests).
TINY = dict(N=16, linear=False, n_train=300, epochs=2, T=25, hidden=16, n_eval=8, n_potential=800, n_pairs=60,
            n_pairs_exact=40, n_generate=100, n_trajectories=10)

LINEAR_SUFFIXES = ("_linear", "-linear", "_lin", "-lin")
_NAMES = ("learned", "exact", "linear")


@register("phase-transition", title="Curie-Weiss DDPM: learned vs exact score, potentials, cloning, state weights")
@dataclass(frozen=True)
class Params:
    """Parameters of the phase-transition study (defaults: the quick settings)."""

    checkpoint: str = field(default="", metadata={
        "help": "Curie-Weiss checkpoint dir; empty: train a quick model here"})
    linear_checkpoint: str = field(default="", metadata={
        "help": "linear-model checkpoint; empty: the sibling CHECKPOINT_linear if present"})
    linear: bool = field(default=True, metadata={"help": "with an empty checkpoint, also train a linear model"})
    N: int = field(default=64, metadata={"help": "spins (with a checkpoint: its N)", "coord": True})
    beta: float = field(default=1.5, metadata={"help": "inverse temperature (with a checkpoint: its beta)",
                                               "coord": True})
    h: float = field(default=0.0, metadata={"help": "per-spin field (with a checkpoint: its h)", "coord": True})
    n_train: int = field(default=4000, metadata={"help": "training configurations (when training here)"})
    epochs: int = field(default=0, metadata={
        "help": "Adam epochs after the least-squares start (when training here; 0 is the quick preset's, which "
                "breaks the symmetry on time)"})
    T: int = field(default=100, metadata={"help": "diffusion steps (when training here)"})
    hidden: int = field(default=160, metadata={"help": "hidden units per net (when training here)"})
    n_eval: int = field(default=400, metadata={"help": "forward samples per step for the score comparison"})
    n_potential: int = field(default=10000, metadata={"help": "forward samples per time for the potentials"})
    n_pairs: int = field(default=2000, metadata={"help": "clone pairs per learned model"})
    n_pairs_exact: int = field(default=1000, metadata={"help": "clone pairs with the exact score"})
    n_generate: int = field(default=2000, metadata={"help": "samples for state weights and memorisation"})
    n_trajectories: int = field(default=200, metadata={"help": "learned reverse trajectories recorded"})
    seed: int = field(default=0, metadata={"help": "random seed (training and measurements)", "coord": True})
    device: str = field(default="cpu", metadata={"help": "torch device: cpu, auto or cuda[:N]"})

    def __post_init__(self):
        check_positive_int("N", self.N, minimum=2)
        check_real("beta", self.beta, lo=0.0)
        check_real("h", self.h)
        for name in ("n_train", "hidden", "n_eval", "n_potential", "n_pairs", "n_pairs_exact",
                     "n_generate", "n_trajectories"):
            check_positive_int(name, getattr(self, name), minimum=2 if name.startswith("n_") else 1)
        check_positive_int("epochs", self.epochs, minimum=0)
        check_positive_int("T", self.T, minimum=21)  # the rescaled linear schedule needs T > 20
        check_positive_int("seed", self.seed, minimum=0)
        for name in ("checkpoint", "linear_checkpoint"):
            path = getattr(self, name)
            if path and not (Path(path) / "config.json").is_file():
                raise FileNotFoundError(f"{name}: no checkpoint at {path} (expected {Path(path) / 'config.json'}); "
                                        "train one with `physdiff train curie-weiss --N 64 --beta 1.5 --out DIR`")
        if self.checkpoint:
            # N, beta, h label the outputs (scalar coordinates): they must be the checkpoint's
            data = json.loads((Path(self.checkpoint) / "config.json").read_text()).get("data", {})
            law = (data.get("N"), data.get("beta"), data.get("h", 0.0))
            if law[0] is not None and (law[0] != self.N or not math.isclose(law[1], self.beta)
                                       or not math.isclose(law[2], self.h, abs_tol=1e-15)):
                raise ValueError(f"checkpoint {self.checkpoint} was trained on N={law[0]}, beta={law[1]}, h={law[2]}; "
                                 f"pass the same N, beta, h (got N={self.N}, beta={self.beta}, h={self.h})")


# ---------------------------------------------------------------------------------------------
# models
# ---------------------------------------------------------------------------------------------

def _models(p: Params, progress: bool):
    """``(model, linear model or None, training set or None)``, loaded or trained here."""
    from .. import ddpm

    if not p.checkpoint:
        kw = dict(N=p.N, beta=p.beta, h=p.h, n_train=p.n_train, seed=p.seed, device=p.device, progress=progress,
                  epochs=p.epochs, T=p.T, hidden=p.hidden)
        model, x0 = C.train(**kw)
        lin = C.train(**kw, activation="linear")[0] if p.linear else None
        return model, lin, x0
    model = ddpm.load(p.checkpoint, device=p.device)
    law = C.data_law(model)
    lin_path = p.linear_checkpoint or next((str(Path(p.checkpoint + s)) for s in LINEAR_SUFFIXES
                                            if (Path(p.checkpoint + s) / "config.json").is_file()), "")
    lin = ddpm.load(lin_path, device=p.device) if lin_path else None
    if lin is not None and C.data_law(lin) != law:
        raise ValueError(f"linear_checkpoint {lin_path} was trained on N, beta, h = {C.data_law(lin)}, not {law}")
    return model, lin, C.training_set(model)


# ---------------------------------------------------------------------------------------------
# compute steps, one Dataset each
# ---------------------------------------------------------------------------------------------

def _score_dataset(model, N, beta, h, n_eval, rng) -> xr.Dataset:
    """Learned vs exact score on fresh forward samples at every step, split along ``u = 1/sqrt(N)``."""
    sched = model.schedule
    steps = np.arange(1, sched.T + 1)
    a = datasets.curie_weiss(n_eval * steps.size, N, beta, h, seed=rng)
    x_all = forward.diffuse(a, sched, np.repeat(steps, n_eval), seed=rng)[0].reshape(steps.size, n_eval, N)
    L = np.stack([C.learned_score(model, x_all[k], int(t)) for k, t in enumerate(steps)])
    E = np.stack([cw.score(x_all[k].astype(np.float64), float(sched.alpha_bar[t]), beta, h)
                  for k, t in enumerate(steps)])
    u = np.full(N, 1.0 / math.sqrt(N))
    diff = L - E
    err2, e2 = np.sum(diff**2, axis=-1), np.sum(E**2, axis=-1)
    dpar, lp, ep = diff @ u, L @ u, E @ u
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.nanmean(np.sum(L * E, axis=-1) / (np.linalg.norm(L, axis=-1) * np.linalg.norm(E, axis=-1)), axis=1)
        data = {
            "mse": ("step", err2.mean(1) / N, "mean squared error of the score per coordinate"),
            "mse_parallel": ("step", (dpar**2).mean(1) / N, "part of mse along u = 1/sqrt(N)"),
            "mse_orthogonal": ("step", (err2 - dpar**2).mean(1) / N, "part of mse orthogonal to u"),
            "relative_error": ("step", err2.mean(1) / e2.mean(1), "mean |s - s*|^2 / mean |s*|^2"),
            "relative_error_parallel": ("step", (dpar**2).mean(1) / (ep**2).mean(1),
                                        "mean (u.(s - s*))^2 / mean (u.s*)^2"),
            "relative_error_orthogonal": ("step", (err2 - dpar**2).mean(1) / (e2 - ep**2).mean(1),
                                          "relative error orthogonal to u"),
            "cosine": ("step", cos, "mean cosine between learned and exact score"),
            "cosine_parallel": ("step", (lp * ep).mean(1) / np.sqrt((lp**2).mean(1) * (ep**2).mean(1)),
                                "mean (u.s)(u.s*) / sqrt(mean (u.s)^2 mean (u.s*)^2)")}
    return xr.Dataset({k: C.var(d, v, long) for k, (d, v, long) in data.items()},
                      coords=C.step_coords(sched, steps), attrs={"n_eval": n_eval})


def _add_well_numbers(ds: xr.Dataset, dim: str, rows: dict) -> None:
    """``n_minima_<name>``, ``well_depth_<name>``, ``well_depth_stderr_<name>``, ``well_position_<name>``."""
    longs = ("interior minima of prominence above twice the error", "V(mu ~ 0) - min V", "standard error of V at "
             "the minimum", "|mu| at the minimum")
    for name, nums in rows.items():
        nums = np.asarray(nums, dtype=np.float64)
        for j, (var, long) in enumerate(zip(("n_minima", "well_depth", "well_depth_stderr", "well_position"), longs)):
            vals = nums[:, j].astype(np.int64) if var == "n_minima" else nums[:, j]
            ds[f"{var}_{name}"] = C.var(dim, vals, f"{long} ({name})")


def _potential_dataset(model, lin, N, beta, h, n_potential, rng) -> xr.Dataset:
    """Binned ``V(mu, t)`` of each score at 7 times around ``t_S`` with their well numbers."""
    sched = model.schedule
    t_S = cw.speciation_time(N, beta, h)
    taus = t_S + np.array([-1.0, -0.5, -0.25, 0.0, 0.25, 0.5, 1.0])
    steps = sorted({max(1, sched.step_at_time(tau)) for tau in taus if tau > 0})
    exact = lambda x, t: cw.score(np.asarray(x, dtype=np.float64), float(sched.alpha_bar[t]), beta, h)  # noqa: E731
    fns = {"learned": lambda x, t: C.learned_score(model, x, t), "exact": exact}
    if lin is not None:
        fns["linear"] = lambda x, t: C.learned_score(lin, x, t)
    pot = metrics.binned_potentials(fns, sched, N, beta, h, steps=steps, n_samples=n_potential, seed=rng)
    Lam = cw.top_eigenvalue(N, beta, h)
    pot["V_gaussian_fine"] = C.var(("step", "mu_fine"), ae_theory.linear_potential_mu(
        pot["mu_fine"].values[None, :], pot["alpha_bar"].values[:, None], Lam),
        "potential of a Gaussian with the data covariance (the best linear model)")
    # the exact V on its fine grid; the estimates on well-populated bins (count >= 100)
    well = pot["count"].values >= 100
    rows = {"theory": [metrics.well_numbers(pot["mu_fine"].values, V) for V in pot["V_theory_fine"].values]}
    for name in fns:
        rows[name] = [metrics.well_numbers(pot["mu"].values[k][well[k]], pot[f"V_{name}"].values[k][well[k]],
                                           pot[f"V_{name}_stderr"].values[k][well[k]]) for k in range(len(steps))]
    _add_well_numbers(pot, "step", rows)
    return pot


def _jacobian_asymmetry(model, x_by_step: dict) -> np.ndarray:
    """Mean ``|J - J^T|_F / |J|_F`` of each net's Jacobian ``d eps_t / dx`` [KM13] (0: an energy exists)."""
    net = model.model
    W = [p.detach().cpu().double().numpy() for p in (net.W1, net.b1, net.W2, net.b2)]
    return np.asarray([ae_theory.jacobian_asymmetry(np.asarray(x, dtype=np.float64), *(w[int(t) - 1] for w in W),
                                                    activation=net.activation) for t, x in x_by_step.items()])


def _axis_energy(score_fn, steps, mu, N: int) -> np.ndarray:
    """``E_t(mu) = -int_0^mu u.score_t(m u) dm`` along ``x = mu u``, 0 at the grid point nearest 0
    (:func:`physdiff.theory.autoencoder.energy_along_path`); (len(steps), len(mu))."""
    u = np.full(N, 1.0 / math.sqrt(N))
    x = (mu[:, None] * u[None, :]).astype(np.float32).astype(np.float64)
    i0 = int(np.argmin(np.abs(mu)))
    out = np.empty((len(steps), mu.size))
    for k, t in enumerate(steps):
        E = ae_theory.energy_along_path(x, lambda y, t=int(t): score_fn(y, t))
        out[k] = -(E - E[i0])
    return out


def _autoencoder_dataset(model, lin, N, beta, h, energy_steps, rng) -> xr.Dataset:
    """Jacobian asymmetry per step and the axis energies of the nets against the exact one."""
    sched = model.schedule
    steps = np.arange(1, sched.T + 1)
    probe = datasets.curie_weiss(32 * steps.size, N, beta, h, seed=rng)
    xp = forward.diffuse(probe, sched, np.repeat(steps, 32), seed=rng)[0]
    x_by = {int(t): xp[k * 32:(k + 1) * 32] for k, t in enumerate(steps)}
    mu = np.linspace(-6.0, 6.0, 121)
    E_steps = np.asarray(energy_steps)
    ab = sched.alpha_bar[E_steps]
    u = np.full(N, 1.0 / math.sqrt(N))
    logp = np.stack([cw.log_density(mu[:, None] * u[None, :], float(a), beta, h) for a in ab])
    i0 = int(np.argmin(np.abs(mu)))
    E = {"learned": _axis_energy(lambda x, t: C.learned_score(model, x, t), E_steps, mu, N),
         "exact": -(logp - logp[:, i0:i0 + 1])}
    data = {"jacobian_asymmetry": C.var("step", _jacobian_asymmetry(model, x_by), "|J - J^T| / |J| of the ReLU nets")}
    if lin is not None:
        E["linear"] = _axis_energy(lambda x, t: C.learned_score(lin, x, t), E_steps, mu, N)
        data["jacobian_asymmetry_linear"] = C.var("step", _jacobian_asymmetry(lin, x_by), "|J - J^T| / |J| of the "
                                                  "linear nets")
    for name, v in E.items():
        data[f"E_{name}"] = C.var(("energy_step", "mu"), v, f"energy along the magnetization axis ({name})")
    data["E_gaussian"] = C.var(("energy_step", "mu"), ae_theory.linear_potential_mu(mu[None, :], ab[:, None],
                               cw.top_eigenvalue(N, beta, h)), "energy of a Gaussian with the data covariance")
    coords = C.step_coords(sched, steps) | {
        "energy_step": ("energy_step", E_steps, {**C.ONE, "long_name": "diffusion step of the axis energies"}),
        "energy_time": ("energy_step", sched.physical_time[E_steps], {**C.ONE, "long_name": "physical time"}),
        "mu": ("mu", mu, {**C.ONE, "long_name": "mu along x = mu u, u = 1/sqrt(N)"})}
    ds = xr.Dataset(data, coords=coords)
    _add_well_numbers(ds, "energy_step", {n: [metrics.well_numbers(mu, e) for e in v] for n, v in E.items()})
    return ds


def _speciation_dataset(model, lin, N, beta, h, p: Params, rng) -> xr.Dataset:
    """Cloning with the learned, linear and exact score (same steps) vs theory and a Gaussian."""
    sched = model.schedule
    steps, t_classify = C.branch_steps(sched, N, beta, h)
    res = {"learned": C.model_cloning(model, steps, t_classify, p.n_pairs, seed=rng),
           "exact": C.exact_cloning(sched, N, beta, h, steps, t_classify, p.n_pairs_exact, seed=rng)}
    if lin is not None:
        res["linear"] = C.model_cloning(lin, steps, t_classify, p.n_pairs, seed=rng)
    tb = sched.physical_time[steps]
    t_curve = np.linspace(max(tb.min() - 0.3, 0.02), tb.max() + 0.3, 25)
    if N <= 200:
        phi_c, phi_c_err = gaussian.phi_curie_weiss_mc(t_curve, N, beta, h, n_samples=4000, seed=rng)
    else:
        phi_c, phi_c_err = gaussian.phi_curie_weiss(t_curve, N, beta, h), np.zeros_like(t_curve)
    Lam = cw.top_eigenvalue(N, beta, h)
    data = {"phi_theory": C.var("time_curve", phi_c, "exact phi(t) of Curie-Weiss data"),
            "phi_theory_stderr": C.var("time_curve", phi_c_err, "Monte Carlo error of phi_theory (0: quadrature)"),
            "phi_gaussian": C.var("time_curve", gaussian.phi_gaussian(t_curve, Lam),
                                  "phi of a Gaussian with the same Lambda"),
            "speciation_time_phi_theory": C.var((), crossing_time(t_curve, phi_c, missing="nan"),
                                                "crossing of 0.7752 by phi_theory"),
            "speciation_time_gaussian": C.var((), gaussian.speciation_time_gaussian(Lam),
                                              "crossing of 0.7752 by phi_gaussian"),
            "speciation_time_theory": C.var((), 0.5 * math.log(Lam), "(1/2) log Lambda")}
    for name, r in res.items():
        sfx = "" if name == "learned" else f"_{name}"
        data |= {f"phi{sfx}": C.var("step", r["phi"], f"share of clone pairs with the same sign of M ({name} score)"),
                 f"phi{sfx}_stderr": C.var("step", r["phi_stderr"], f"binomial standard error of phi ({name})"),
                 f"speciation_time{sfx}": C.var((), r["speciation_time"], f"crossing of 0.7752 by phi ({name})"),
                 f"speciation_time{sfx}_stderr": C.var((), r["speciation_time_stderr"],
                                                       f"bootstrap standard error of the crossing ({name})"),
                 f"baseline{sfx}": C.var((), r["baseline"], f"p^2 + (1-p)^2 of the originals ({name})")}
    coords = C.step_coords(sched, steps, "branch step") | {
        "step_ratio": ("step", np.asarray(steps) / max(sched.step_at_time(0.5 * math.log(Lam)), 1),
                       {**C.ONE, "long_name": "branch step over the step of (1/2) log Lambda"}),
        "time_curve": ("time_curve", t_curve, {**C.ONE, "long_name": "physical time of the theory curves"})}
    return xr.Dataset(data, coords=coords, attrs={"t_classify": t_classify, "level": gaussian.PHI_SPECIATION,
                                                  "n_pairs": p.n_pairs, "n_pairs_exact": p.n_pairs_exact})


def _trajectories_dataset(model, N, n, rng) -> xr.Dataset:
    T = model.schedule.T
    rec = np.unique(np.r_[np.arange(0, T + 1, max(1, T // 100)), T])[::-1]
    _, traj = model.sample(n, seed=rng, return_trajectory=True, record=rec)
    mu = traj.astype(np.float64).sum(axis=2).T / math.sqrt(N)
    return xr.Dataset({"mu": C.var(("trajectory", "step"), mu,
                                   "mu = sum_i x_i / sqrt(N) along learned reverse chains")},
                      coords=C.step_coords(model.schedule, rec))


def run(params: Params, progress: bool = False) -> dict[str, xr.Dataset]:
    """Train or load the models, then compare scores, potentials, energies, cloning, state weights.

    Returns
    -------
    dict
        ``score`` (learned vs exact score per step), ``potential`` (binned ``V(mu, t)`` per score
        with the exact theory and well numbers), ``autoencoder`` (Jacobian asymmetry, axis energies),
        ``speciation`` (``phi`` of the learned, linear and exact score, theory curves, crossings
        with bootstrap errors), ``trajectories`` (learned ``mu(trajectory, step)``),
        ``state_weights`` and ``memorization`` (one row, ``model``).
    """
    p = params
    rng = np.random.default_rng(p.seed)
    model, lin, x0 = _models(p, progress)
    N, beta, h = C.data_law(model)
    pot = _potential_dataset(model, lin, N, beta, h, p.n_potential, rng)
    out = {"score": _score_dataset(model, N, beta, h, p.n_eval, rng), "potential": pot,
           "autoencoder": _autoencoder_dataset(model, lin, N, beta, h, pot["step"].values, rng),
           "speciation": _speciation_dataset(model, lin, N, beta, h, p, rng),
           "trajectories": _trajectories_dataset(model, N, p.n_trajectories, rng)}
    out["state_weights"], out["memorization"] = C.state_weight_datasets([model], [x0], n_generate=p.n_generate,
                                                                        seed=rng)
    src = p.checkpoint or "trained by the study"
    for ds in out.values():
        ds.attrs["checkpoint"] = src
    return out


# ---------------------------------------------------------------------------------------------
# figures
# ---------------------------------------------------------------------------------------------

_SHORT = {"theory": "exact", "exact": "exact score", "learned": "ReLU", "linear": "linear"}


def _well_label(ds: xr.Dataset, k: int, names) -> str:
    names = [n for n in names if f"n_minima_{n}" in ds]
    mins = "/".join(str(int(ds[f"n_minima_{n}"].values[k])) for n in names)
    deps = "/".join("-" if not np.isfinite(v) else f"{v:.2f}" for v in (float(ds[f"well_depth_{n}"].values[k])
                                                                      for n in names))
    return f"minima {mins}, depth {deps}\n({'/'.join(_SHORT[n] for n in names)})"


def _panels(n: int, extra: int = 0):
    from matplotlib.figure import Figure

    cols = min(4, n + extra)
    rows = -(-(n + extra) // cols)
    fig = Figure(figsize=(3.6 * cols, 3.0 * rows))
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax in axes[n + extra:]:
        ax.axis("off")
    return fig, axes


def _plot_potentials(ds: xr.Dataset, t_S: float):
    n = ds.sizes["step"]
    fig, axes = _panels(n)
    styles = {"exact": dict(fmt="s", color="0.5"), "learned": dict(fmt="o", color="C3"),
              "linear": dict(fmt="^", color="C0")}
    for k, ax in enumerate(axes[:n]):
        ax.plot(ds["mu_fine"], ds["V_theory_fine"].values[k], "k-", lw=1, label="exact V")
        if "V_linear" in ds:
            ax.plot(ds["mu_fine"], ds["V_gaussian_fine"].values[k], "C0--", lw=0.8, label="Gaussian (best linear)")
        for name, style in styles.items():
            if f"V_{name}" in ds:
                ax.errorbar(ds["mu"].values[k], ds[f"V_{name}"].values[k], yerr=ds[f"V_{name}_stderr"].values[k],
                            ms=2.5, lw=0.7, label=f"{_SHORT[name]} (binned)", **style)
        tau = float(ds["time"][k])
        ax.set_title(f"t = {tau:.2f}  (t - t_S = {tau - t_S:+.2f})", fontsize=8)
        ax.set_xlabel(r"$\mu$", fontsize=8)
        finite = ds["V_theory"].values[k][np.isfinite(ds["V_theory"].values[k])]
        if finite.size:
            ax.set_ylim(min(finite.min(), 0) - 0.5, max(finite.max(), 1) + 0.5)
        ax.text(0.5, 0.97, _well_label(ds, k, ("theory", "learned", "linear")), transform=ax.transAxes, ha="center",
                va="top", fontsize=6.5, bbox=dict(boxstyle="round", fc="white", ec="0.7", alpha=0.85))
    axes[0].legend(fontsize=6, loc="lower left")
    fig.suptitle(f"density potential V = -log P_t(mu) from each score, binned along mu; t_S = {t_S:.2f}", fontsize=9)
    fig.tight_layout()
    return fig


def _plot_autoencoder(ds: xr.Dataset, t_S: float):
    nE = ds.sizes["energy_step"]
    fig, axes = _panels(nE, extra=1)
    a = axes[0]
    a.plot(ds["time"], ds["jacobian_asymmetry"], color="C3", label="ReLU nets")
    if "jacobian_asymmetry_linear" in ds:
        a.plot(ds["time"], ds["jacobian_asymmetry_linear"], color="C0", label="linear nets")
    a.axvline(t_S, color="k", ls="--", lw=1)
    a.set_xscale("log")
    a.set_xlabel("physical time t", fontsize=8)
    a.set_title("Jacobian asymmetry |J - J^T|/|J| (0: an energy exists)", fontsize=8)
    a.legend(fontsize=7)
    names = [n for n in _NAMES if f"E_{n}" in ds]
    for k in range(nE):
        b = axes[k + 1]
        for name, style in (("exact", "k-"), ("learned", "C3--"), ("linear", "C0:")):
            if f"E_{name}" in ds:
                b.plot(ds["mu"], ds[f"E_{name}"].values[k], style, lw=1.3, label=_SHORT[name])
        tau = float(ds["energy_time"][k])
        b.set_title(f"t = {tau:.2f}  (t - t_S = {tau - t_S:+.2f})", fontsize=8)
        b.set_xlabel(r"$\mu$ (x = $\mu$ u)", fontsize=8)
        lo = min(float(np.nanmin(ds[f"E_{n}"].values[k])) for n in names)
        b.set_ylim(lo - 0.5, lo + 12)
        b.text(0.5, 0.97, _well_label(ds, k, names), transform=b.transAxes, ha="center", va="top", fontsize=6.5,
               bbox=dict(boxstyle="round", fc="white", ec="0.7", alpha=0.85))
    axes[1].legend(fontsize=6, loc="lower left")
    fig.suptitle(f"energy of the score field along the magnetization axis; t_S = {t_S:.2f}", fontsize=9)
    fig.tight_layout()
    return fig


def _plot_cloning(ds: xr.Dataset):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.2, 4))
    ax = fig.subplots()
    tau = ds["time"].values
    for sfx, style, lab in (("", dict(fmt="o", color="C3"), "ReLU model"), ("_exact", dict(fmt="s", color="0.4"),
                            "exact score"), ("_linear", dict(fmt="^", color="C0"), "linear model")):
        if f"phi{sfx}" in ds:
            ax.errorbar(tau, ds[f"phi{sfx}"], yerr=ds[f"phi{sfx}_stderr"], ms=3, capsize=2, label=lab, **style)
    ax.plot(ds["time_curve"], ds["phi_theory"], "k-", lw=1, label="theory")
    ax.plot(ds["time_curve"], ds["phi_gaussian"], "C0--", lw=0.8,
            label=f"Gaussian with the same Lambda (crosses at {float(ds['speciation_time_gaussian']):.2f})")
    ax.axhline(float(ds.attrs["level"]), color="0.5", lw=0.8, ls=":")
    ax.axvline(float(ds["speciation_time_theory"]), color="k", ls="--", lw=1,
               label=f"(1/2) log Lambda = {float(ds['speciation_time_theory']):.2f}")
    if np.isfinite(float(ds["speciation_time"])):
        ax.axvline(float(ds["speciation_time"]), color="C3", ls="--", lw=1,
                   label=f"learned t_S = {float(ds['speciation_time']):.2f}")
    ax.set_xlabel("physical time t of the branching")
    ax.set_ylabel(r"$\phi(t)$ = P(same sign of M)")
    ax.legend(fontsize=7)
    ax.set_title("cloning: learned vs exact score", fontsize=9)
    return fig


def plot(datasets: dict[str, xr.Dataset]) -> dict:
    """Figures: ``score``, ``potential``, ``autoencoder``, ``cloning``, ``trajectories``, ``state_weights``."""
    from .. import plotting  # here: matplotlib.pyplot takes 0.3 s to import, which every CLI start paid

    t_S = float(datasets["speciation"]["speciation_time_theory"])
    return {"score": plotting.plot_score_comparison(datasets["score"], speciation_time=t_S),
            "potential": _plot_potentials(datasets["potential"], t_S),
            "autoencoder": _plot_autoencoder(datasets["autoencoder"], t_S),
            "cloning": _plot_cloning(datasets["speciation"]),
            "trajectories": plotting.plot_magnetization_trajectories(
                datasets["trajectories"].isel(step=slice(None, -1)), speciation_time=t_S),
            "state_weights": C.plot_state_weights(datasets["state_weights"], datasets["memorization"])}
