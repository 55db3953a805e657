"""How robust is the learned speciation time? One quick-preset Curie-Weiss DDPM per training seed
(and per number of epochs), each with its cloning crossing of ``phi = 0.7752`` and the depth of its
learned double well, against the exact score's crossing and the exact theory.

    physdiff study speciation-scan --out runs/speciation_scan     # N = 64, seeds 0-4, epochs 10/30/60

Runs: every seed in ``seeds`` at the quick preset's epochs (0: the least-squares start alone,
``docs/symmetry-breaking.md``), and ``seeds[0]`` at every value in ``epochs`` (Adam epochs after
that start). The training seed sets the training set (``n_train`` exact configurations), the
initialisation, the minibatch order and the noise; the first seed's models are copies kept from one
run (:func:`physdiff.ddpm.train_snapshots`), bit for bit those of separate runs. All runs share the
branch steps and the classification step. Reported: ``phi(run, step)`` with binomial errors, the
crossing of 0.7752 per run with its bootstrap error (:meth:`physdiff.reverse.CloningResult.speciation_time`), the mean
and spread over seeds, the depth and number of minima of the learned ``V(mu, t)`` before ``t_S``
(:func:`physdiff.metrics.binned_potentials`), the exact score's ``phi`` and crossing, the exact
theory (:func:`physdiff.theory.gaussian.phi_curie_weiss_mc`) and a Gaussian with the same
``Lambda``. Formulas: ``docs/theory.md``, "Speciation, cloning and collapse".

References
----------
[BBBM24] Biroli, Bonnaire, de Bortoli & Mezard (2024), arXiv:2402.18491.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import xarray as xr

from .. import metrics
from .._util import check_positive_int, check_real
from ..reverse import crossing_time
from ..theory import curie_weiss as cw
from ..theory import gaussian
from . import _curie_weiss as C
from . import register

__all__ = ["Params", "run", "plot", "TINY"]

#: Overrides for a run of a few seconds on one core (tests).
TINY = dict(N=8, seeds=(3,), epochs=(2,), n_pairs=60, n_pairs_exact=40, n_theory=300, n_train=64, T=25,
            hidden=16, n_potential=1000)


@register("speciation-scan", title="Learned Curie-Weiss speciation time over training seeds and epochs")
@dataclass(frozen=True)
class Params:
    """Parameters of the speciation-scan study (defaults: the quick settings)."""

    N: int = field(default=64, metadata={"help": "number of spins", "coord": True})
    beta: float = field(default=1.5, metadata={"help": "inverse temperature", "coord": True})
    h: float = field(default=0.0, metadata={"help": "per-spin field", "coord": True})
    seeds: tuple[int, ...] = field(default=(0, 1, 2, 3, 4),
                                   metadata={"help": "training seeds (at the preset's epochs)"})
    epochs: tuple[int, ...] = field(default=(10, 30, 60), metadata={"help": "Adam epochs tried with the first seed"})
    n_pairs: int = field(default=2000, metadata={"help": "clone pairs per learned model"})
    n_pairs_exact: int = field(default=1000, metadata={"help": "clone pairs with the exact score"})
    n_theory: int = field(default=4000, metadata={"help": "Monte Carlo samples per time of the exact theory"})
    n_potential: int = field(default=10000, metadata={"help": "forward samples per time for the learned V(mu, t)"})
    n_train: int = field(default=4000, metadata={"help": "training configurations per model"})
    T: int = field(default=100, metadata={"help": "diffusion steps of the models"})
    hidden: int = field(default=160, metadata={"help": "hidden units per net"})
    seed: int = field(default=0, metadata={"help": "seed of the measurements (cloning, bootstrap, theory)",
                                           "coord": True})
    device: str = field(default="cpu", metadata={"help": "torch device: cpu, auto or cuda[:N]"})

    def __post_init__(self):
        check_positive_int("N", self.N, minimum=2)
        check_real("beta", self.beta, lo=0.0)
        check_real("h", self.h)
        if not self.seeds:
            raise ValueError("seeds must list at least one training seed")
        for s in self.seeds:
            check_positive_int("seeds", s, minimum=0)
        for e in self.epochs:
            check_positive_int("epochs", e)
        for name in ("n_pairs", "n_pairs_exact", "n_theory", "n_potential", "n_train"):
            check_positive_int(name, getattr(self, name), minimum=2)
        check_positive_int("T", self.T, minimum=21)  # the rescaled linear schedule needs T > 20
        check_positive_int("hidden", self.hidden)
        check_positive_int("seed", self.seed, minimum=0)


def _preset_epochs() -> int:
    """Epochs of every seed's run: the quick preset's (0, its least-squares start alone)."""
    from .. import ddpm

    return ddpm.get_config("curie-weiss", "quick").epochs


def _runs(p: Params, E: int) -> list[tuple[int, int]]:
    """``(training seed, epochs)`` of every run: the seeds at the preset's ``E`` epochs, then the
    first seed at the other numbers of epochs."""
    return [(s, E) for s in p.seeds] + [(p.seeds[0], e) for e in p.epochs if e != E]


def _well_depths(models, p: Params, steps) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Depth and number of minima of each model's binned ``V(mu, t)`` at ``steps`` (well-populated
    bins, count >= 100), and the exact depth."""
    depth = np.full((len(models), len(steps)), np.nan)
    n_min = np.zeros((len(models), len(steps)), dtype=np.int64)
    depth_exact = np.full(len(steps), np.nan)
    for k, m in enumerate(models):
        pot = metrics.binned_potentials({"learned": lambda x, t, m=m: C.learned_score(m, x, t)}, m.schedule, p.N,
                                        p.beta, p.h, steps=steps, n_samples=p.n_potential,
                                        seed=np.random.default_rng([p.seed, k, 1]))
        for j in range(len(steps)):
            ok = pot["count"].values[j] >= 100
            n_min[k, j], depth[k, j], _, _ = metrics.well_numbers(
                pot["mu"].values[j][ok], pot["V_learned"].values[j][ok], pot["V_learned_stderr"].values[j][ok])
            if k == 0:
                depth_exact[j] = metrics.well_numbers(pot["mu_fine"].values, pot["V_theory_fine"].values[j])[1]
    return depth, n_min, depth_exact


def _seed_stats(ts: np.ndarray) -> tuple[float, float, float]:
    """Mean, sample standard deviation and standard error over the finite values."""
    ok = ts[np.isfinite(ts)]
    mean = float(ok.mean()) if ok.size else math.nan
    sd = float(ok.std(ddof=1)) if ok.size > 1 else math.nan
    return mean, sd, sd / math.sqrt(ok.size) if ok.size > 1 else math.nan


def run(params: Params, progress: bool = False) -> dict[str, xr.Dataset]:
    """Train every run's model, measure its cloning crossing and well depth; the exact references.

    Returns
    -------
    dict
        ``{"speciation_scan": ds}``: ``phi(run, step)`` and ``phi_stderr``, ``speciation_time(run)``
        with its bootstrap error, ``training_seed(run)``, ``epochs(run)``, ``final_loss(run)``,
        ``share_plus(run)``, ``well_depth(run, well_step)``, ``n_minima(run, well_step)``; the exact
        score's ``phi_exact(step)`` and crossing; the theory ``phi_theory(time_curve)`` and
        ``phi_gaussian(time_curve)`` with their crossings; the seed mean, sd and sem.
    """
    p = params
    E = _preset_epochs()
    runs = _runs(p, E)
    wanted = {s: sorted({e for s2, e in runs if s2 == s}) for s, _ in runs}  # one training run per seed
    trained = {s: C.train_snapshots(N=p.N, beta=p.beta, h=p.h, n_train=p.n_train, seed=s, epochs=es,
                                    device=p.device, progress=progress, T=p.T, hidden=p.hidden)
               for s, es in wanted.items()}
    models = [trained[s][e] for s, e in runs]
    sched = models[0].schedule
    steps, t_classify = C.branch_steps(sched, p.N, p.beta, p.h)
    res = [C.model_cloning(m, steps, t_classify, p.n_pairs, seed=np.random.default_rng([p.seed, k]))
           for k, m in enumerate(models)]
    t_S = 0.5 * math.log(cw.top_eigenvalue(p.N, p.beta, p.h))
    well_steps = [max(1, sched.step_at_time(tau)) for tau in (t_S - 0.45, t_S - 0.2)]
    depth, n_min, depth_exact = _well_depths(models, p, well_steps)
    rng = np.random.default_rng([p.seed, len(models)])
    ex = C.exact_cloning(sched, p.N, p.beta, p.h, steps, t_classify, p.n_pairs_exact, seed=rng)
    tb = sched.physical_time[steps]
    t_curve = np.linspace(max(tb.min() - 0.3, 0.02), tb.max() + 0.3, 25)
    phi_c, phi_c_err = gaussian.phi_curie_weiss_mc(t_curve, p.N, p.beta, p.h, n_samples=p.n_theory, seed=rng)
    Lam = cw.top_eigenvalue(p.N, p.beta, p.h)
    ts = np.asarray([r["speciation_time"] for r in res])
    mean, sd, sem = _seed_stats(ts[[e == E for _, e in runs]])
    col = lambda key: np.asarray([r[key] for r in res])  # noqa: E731
    V = C.var
    data = {
        "phi": V(("run", "step"), col("phi"), "share of clone pairs with the same sign of M (learned)"),
        "phi_stderr": V(("run", "step"), col("phi_stderr"), "binomial standard error of phi"),
        "speciation_time": V("run", ts, "crossing of 0.7752 by phi (learned)"),
        "speciation_time_stderr": V("run", col("speciation_time_stderr"), "bootstrap standard error of the crossing"),
        "share_plus": V("run", col("share_plus"), "share of originals ending with M > 0"),
        "final_loss": V("run", np.asarray([float(np.nanmean(m.loss_history[-1])) if len(m.loss_history) else math.nan
                                         for m in models]),
                        "mean over steps of the last epoch's training loss"),
        "well_depth": V(("run", "well_step"), depth, "V(mu ~ 0) - min V of the learned binned potential"),
        "n_minima": V(("run", "well_step"), n_min, "minima of the learned binned potential"),
        "well_depth_exact": V("well_step", depth_exact, "V(0) - min V of the exact potential"),
        "phi_exact": V("step", ex["phi"], "phi with the exact score"),
        "phi_exact_stderr": V("step", ex["phi_stderr"], "binomial standard error of phi_exact"),
        "speciation_time_exact": V((), ex["speciation_time"], "crossing of 0.7752 by phi_exact"),
        "speciation_time_exact_stderr": V((), ex["speciation_time_stderr"], "bootstrap error of it"),
        "phi_theory": V("time_curve", phi_c, "exact phi(t) of Curie-Weiss data (Monte Carlo)"),
        "phi_theory_stderr": V("time_curve", phi_c_err, "Monte Carlo error of phi_theory"),
        "phi_gaussian": V("time_curve", gaussian.phi_gaussian(t_curve, Lam), "phi of a Gaussian with the same Lambda"),
        "speciation_time_phi_theory": V((), crossing_time(t_curve, phi_c, missing="nan"), "crossing by phi_theory"),
        "speciation_time_gaussian": V((), gaussian.speciation_time_gaussian(Lam), "crossing by phi_gaussian"),
        "speciation_time_theory": V((), t_S, "(1/2) log Lambda"),
        "seed_mean": V((), mean, "mean learned crossing over the seeds at the preset's epochs"),
        "seed_std": V((), sd, "sample standard deviation of the learned crossing over those seeds"),
        "seed_sem": V((), sem, "standard error of seed_mean")}
    coords = C.step_coords(sched, steps, "branch step") | {
        "run": ("run", np.arange(len(runs)), {**C.ONE, "long_name": "training run"}),
        "training_seed": ("run", np.asarray([s for s, _ in runs]), {**C.ONE, "long_name": "training seed"}),
        "epochs": ("run", np.asarray([e for _, e in runs]), {**C.ONE, "long_name": "training epochs"}),
        "time_curve": ("time_curve", t_curve, {**C.ONE, "long_name": "physical time of the theory curves"}),
        "well_step": ("well_step", np.asarray(well_steps), {**C.ONE, "long_name": "step of the well depths"}),
        "well_time": ("well_step", sched.physical_time[well_steps], {**C.ONE, "long_name": "physical time"})}
    return {"speciation_scan": xr.Dataset(data, coords=coords, attrs={
        "t_classify": t_classify, "level": gaussian.PHI_SPECIATION, "preset_epochs": E})}


def plot(datasets: dict[str, xr.Dataset]) -> dict:
    """One figure, ``speciation_scan``: phi per run against theory, and the crossings per run."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    ds = datasets["speciation_scan"]
    fig = Figure(figsize=(11, 4))
    a, b = fig.subplots(1, 2)
    tau = ds["time"].values
    colors = colormaps["Reds"](np.linspace(0.45, 0.95, ds.sizes["run"]))
    for k in range(ds.sizes["run"]):
        a.plot(tau, ds["phi"].values[k], "o-", ms=2.5, lw=0.8, color=colors[k],
               label=f"seed {int(ds['training_seed'][k])}, {int(ds['epochs'][k])} ep")
    a.errorbar(tau, ds["phi_exact"], yerr=ds["phi_exact_stderr"], fmt="s", ms=3, capsize=2, color="0.3",
               label="exact score")
    a.plot(ds["time_curve"], ds["phi_theory"], "k-", lw=1, label="theory")
    a.plot(ds["time_curve"], ds["phi_gaussian"], "C0--", lw=0.8, label="Gaussian, same Lambda")
    a.axhline(float(ds.attrs["level"]), color="0.5", lw=0.8, ls=":")
    a.set_xlabel("physical time t of the branching")
    a.set_ylabel(r"$\phi(t)$")
    a.legend(fontsize=6, ncol=2)
    x = np.arange(ds.sizes["run"])
    b.errorbar(x, ds["speciation_time"], yerr=ds["speciation_time_stderr"], fmt="o", color="C3", capsize=2,
               label="learned")
    te, tee = float(ds["speciation_time_exact"]), float(ds["speciation_time_exact_stderr"])
    b.axhspan(te - tee, te + tee, color="0.8", label=f"exact score {te:.2f} +- {tee:.2f}")
    for var, style, lab in (("speciation_time_phi_theory", dict(color="k"), "theory"),
                            ("speciation_time_theory", dict(color="k", ls="--"), "(1/2) log Lambda"),
                            ("speciation_time_gaussian", dict(color="C0", ls="--"), "Gaussian, same Lambda")):
        b.axhline(float(ds[var]), lw=1, label=f"{lab}: {float(ds[var]):.2f}", **style)
    b.set_xticks(x, [f"s{int(s)}\n{int(e)} ep" for s, e in zip(ds["training_seed"].values, ds["epochs"].values)],
                 fontsize=7)
    b.set_ylabel("speciation time (phi = 0.7752 crossing)")
    b.set_title(f"seeds: {float(ds['seed_mean']):.2f} +- {float(ds['seed_std']):.2f} (sd)", fontsize=9)
    b.legend(fontsize=7, loc="center")
    fig.tight_layout()
    return {"speciation_scan": fig}
