"""[SD15]'s Swiss roll: Gaussian diffusion with a learned mean AND diagonal variance, trained on the
bound K; K in bits against [SD15] Table 1 and against the exact log-likelihood of the roll; beside it
the same bound for the eps-trained per-timestep DDPM of the thesis and for the exact noise predictor.

As in [SD15] the data are scaled to unit variance before any log-likelihood is computed
(:func:`physdiff.sd15.unit_variance`), so ``L_null = -log2(2 pi e) = -4.094`` bits. The exact
``E log2 q(x0)`` of the roll (:func:`physdiff.theory.swiss_roll.swiss_roll_log_density`) is the upper
limit of every K on these data.

The eps-trained DDPM (one Linear-ReLU-Linear net per step, ``L_simple`` [Ho20]) is trained on the
same unit-variance points with the same ``T``. The [SD15] schedules end with ``beta_T = 1``
(``alpha_bar_T = 0``), where the eps-parametrised mean divides by ``sqrt(alpha_T) = 0``; the DDPM
uses the same betas with the last clipped at 0.999 (:func:`physdiff.sd15.ddpm_schedule`; [ND21]
clip the cosine schedule so). Its K is given for both fixed reverse variances ``sigma_t^2 = beta_t``
and ``beta_tilde_t``, and so is the K of the EXACT noise predictor of the roll
(:func:`physdiff.theory.swiss_roll.swiss_roll_eps`): the best any eps-trained DDPM with a fixed
isotropic variance can reach on these steps. Formulas: ``docs/theory.md``, "Sohl-Dickstein et al.
2015: the bound K" and "The Swiss roll".

    physdiff study sd15-swiss-roll --out runs/sd15                        # quick
    physdiff study sd15-swiss-roll --steps 60000 --hidden 256 --ddpm-epochs 200 --out runs/sd15_full
    physdiff study sd15-swiss-roll --no-ddpm --out runs/sd15_only         # the SD15 model only

References
----------
[SD15] Sohl-Dickstein, Weiss, Maheswaranathan, Ganguli (2015), arXiv:1503.03585, Table 1, App. D.
[Ho20] Ho, Jain, Abbeel (2020), Denoising Diffusion Probabilistic Models, arXiv:2006.11239.
[ND21] Nichol, Dhariwal (2021), Improved DDPM, arXiv:2102.09672, eq. 17.
[Thesis] Bustinduy de la Guerra (2024), Out-of-Equilibrium Machine Learning (UCM), Table 2.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import xarray as xr

from .._util import check_positive_int, check_real
from . import register

__all__ = ["Params", "run", "plot", "TINY"]

#: [SD15] Table 1, bits per sample, on their (unit-variance) Swiss roll.
SD15_K, SD15_K_MINUS_NULL = 2.35, 6.45
SIGMAS = ("beta", "posterior")
DDPM_MAX_BETA = 0.999

#: Overrides for a run of a few seconds on one core (tests).
TINY = dict(T=6, n_train=400, n_test=100, steps=20, hidden=16, n_samples=100, ddpm_epochs=1, ddpm_hidden=8,
            n_exact=20, n_trajectories=20)


@register("sd15-swiss-roll", title="SD15 Swiss roll: the bound K of a mean+variance model and of an eps-trained DDPM")
@dataclass(frozen=True)
class Params:
    """Parameters of the SD15 Swiss-roll study (defaults: the quick settings)."""

    T: int = field(default=40, metadata={"help": "diffusion steps (40 in SD15)", "coord": True})
    schedule: str = field(default="geometric", metadata={"help": "forward schedule: geometric or sd15 "
                                                                 "(beta_t = 1/(T-t+1))"})
    beta_1: float = field(default=0.0, metadata={"help": "first step's variance; 0: the schedule's default"})
    turns: float = field(default=2.0, metadata={"help": "spiral angle range in units of pi", "coord": True})
    noise: float = field(default=0.1, metadata={"help": "noise std of the roll before the /12 (thesis: 0.1 for "
                                                        "2 turns, 1.0 for 3)"})
    n_train: int = field(default=20000, metadata={"help": "training points"})
    n_test: int = field(default=5000, metadata={"help": "held-out points for K"})
    steps: int = field(default=12000, metadata={"help": "optimiser steps of the SD15 model (60000 for a long run)"})
    hidden: int = field(default=128, metadata={"help": "trunk width of the SD15 model (256 for a long run)"})
    batch: int = field(default=128, metadata={"help": "data points per optimiser step"})
    lr: float = field(default=2e-3, metadata={"help": "Adam's initial learning rate (cosine-decayed)"})
    n_samples: int = field(default=3000, metadata={"help": "samples drawn from each model"})
    n_trajectories: int = field(default=500, metadata={"help": "reverse trajectories of the SD15 model kept"})
    ddpm: bool = field(default=True, metadata={"help": "also train the eps-trained per-timestep DDPM"})
    ddpm_epochs: int = field(default=60, metadata={"help": "DDPM epochs (200 for a long run)"})
    ddpm_hidden: int = field(default=256, metadata={"help": "DDPM hidden units per net"})
    ddpm_lr: float = field(default=3e-3, metadata={"help": "DDPM Adam learning rate"})
    ddpm_batch: int = field(default=100, metadata={"help": "DDPM minibatch"})
    n_exact: int = field(default=2000, metadata={"help": "held-out points for the exact-eps bound (cost ~ n x "
                                                         "6000 grid nodes x T)"})
    seed: int = field(default=0, metadata={"help": "random seed", "coord": True})
    device: str = field(default="cpu", metadata={"help": "torch device; the SD15 models run on the CPU only "
                                                         "('cpu' or 'auto')"})

    def __post_init__(self):
        for name in ("n_train", "n_test", "steps", "hidden", "batch", "n_samples", "n_trajectories",
                     "ddpm_epochs", "ddpm_hidden", "ddpm_batch", "n_exact"):
            check_positive_int(name, getattr(self, name))
        check_positive_int("T", self.T, minimum=2)
        check_positive_int("seed", self.seed, minimum=0)
        if self.schedule not in ("geometric", "sd15"):
            raise ValueError(f"schedule must be 'geometric' or 'sd15', got {self.schedule!r}")
        check_real("beta_1", self.beta_1, lo=0.0, hi=1.0, hi_open=True)
        check_real("turns", self.turns, lo=0.0, lo_open=True)
        check_real("noise", self.noise, lo=0.0, lo_open=True)
        check_real("lr", self.lr, lo=0.0, lo_open=True)
        check_real("ddpm_lr", self.ddpm_lr, lo=0.0, lo_open=True)
        if self.device not in ("cpu", "auto"):
            raise ValueError(f"device must be 'cpu' or 'auto' (the SD15 models run on the CPU), got {self.device!r}")


def _var(dims, data, units: str, long_name: str, **attrs) -> tuple:
    return (dims, data, {"units": units, "long_name": long_name, **attrs})


_STEP = {"long_name": "diffusion step t", "units": "1"}
_LENGTH = "1"   # positions in the unit-variance units of the data (dimensionless)


def run(params: Params, progress: bool = False) -> dict[str, xr.Dataset]:
    """Train [SD15]'s mean+variance model (and, with ``ddpm``, the eps-trained DDPM); their bounds K.

    Returns
    -------
    dict
        ``{"sd15_swiss_roll": ds}`` and, with ``ddpm``, ``{"eps_ddpm": ds2}``. ``ds``: samples
        ``x(sample, feature)``, held-out data ``x_test(test_sample, feature)``, reverse paths
        ``trajectory(step, path, feature)``, ``betas(step)``, ``K_step(step)``,
        ``K_train(iteration)``, the scalars ``K``, ``K_stderr``, ``L_null``,
        ``exact_log_likelihood``, ``exact_log_likelihood_stderr`` and the [SD15] values (bits per
        sample, unit-variance units). ``ds2``: ``K``, ``K_stderr``, ``K_step`` of the DDPM and
        ``K_exact_eps``, ``K_exact_eps_stderr``, ``K_step_exact_eps`` of the exact noise predictor,
        each over ``sigma`` (``beta``, ``posterior``); held-out ``L_simple`` per step ``mse(step)``,
        ``mse_exact_eps(step)``; samples ``x(sigma, sample, feature)``; ``alpha_bar(step)`` of the
        clipped schedule.
    """
    from .. import sd15
    from ..datasets import swiss_roll

    p = params
    rng = np.random.default_rng(p.seed)
    raw = swiss_roll(p.n_train, turns=p.turns, noise=p.noise, seed=rng)
    raw_test = swiss_roll(p.n_test, turns=p.turns, noise=p.noise, seed=rng)
    x, shift, scale = sd15.unit_variance(raw)
    x_test = (raw_test - shift) / scale
    # exact E log2 q(x0) in the scaled units: the best K any model can reach
    lq = (sd15.swiss_roll_log_density(raw_test, p.turns, p.noise) + 2 * math.log(scale)) / math.log(2)
    betas = sd15.gaussian_betas(p.T, kind=p.schedule, beta_1=p.beta_1 or None)
    t0 = time.perf_counter()
    model = sd15.train_gaussian_sd15(x, betas=betas, hidden=p.hidden, steps=p.steps, batch=p.batch, lr=p.lr,
                                     seed=rng, progress=progress)
    t_train = time.perf_counter() - t0
    K = model.bound_K(x_test, n_mc=2, seed=rng)
    samples, path = model.sample(p.n_samples, seed=rng, return_trajectory=True)
    bits = "bit"
    ds = xr.Dataset(
        {"x": _var(("sample", "feature"), samples, _LENGTH, "samples of the SD15 model (unit-variance units)"),
         "x_test": _var(("test_sample", "feature"), x_test.astype(np.float32), _LENGTH,
                        "held-out data (unit-variance units)"),
         "trajectory": _var(("step", "path", "feature"), path[:, :p.n_trajectories], _LENGTH,
                            "reverse trajectories of the SD15 model"),
         "betas": _var(("step",), betas, "1", "forward variance beta_t (betas[0] = 0)"),
         "K_step": _var(("step",), K.per_step, bits, "contribution of step t to K (0: prior; 1: log p(x0|x1); "
                        "t >= 2: -KL)"),
         "K_train": _var(("iteration",), model.history["K_bits"], bits, "training-batch K per sample"),
         "K": _var((), K.bits, bits, "bound K per sample on held-out data (lower bound on E log2 p(x0))"),
         "K_stderr": _var((), K.stderr, bits, "Monte-Carlo standard error of K"),
         "L_null": _var((), sd15.null_log_likelihood_gaussian(x_test), bits, "E log2 N(x0; 0, I)"),
         "exact_log_likelihood": _var((), float(lq.mean()), bits, "exact E log2 q(x0) of the roll"),
         "exact_log_likelihood_stderr": _var((), float(lq.std(ddof=1) / math.sqrt(lq.size)), bits,
                                             "standard error of exact_log_likelihood"),
         "K_sd15": _var((), SD15_K, bits, "K reported by Sohl-Dickstein et al. 2015, Table 1 (their roll)"),
         "K_minus_L_null_sd15": _var((), SD15_K_MINUS_NULL, bits, "K - L_null reported by Sohl-Dickstein et al. "
                                     "2015, Table 1")},
        coords={"step": ("step", np.arange(p.T + 1), _STEP),
                "iteration": ("iteration", model.history["step"], {"long_name": "optimiser step", "units": "1"})},
        attrs={"dataset": "swiss_roll", "turns": p.turns, "noise": p.noise, "schedule": p.schedule,
               "data_scale": scale, "train_seconds": t_train,
               "sign_convention": "K is a lower bound on E log2 p(x0) (a log-likelihood, bits per sample)"})
    out = {"sd15_swiss_roll": ds}
    if p.ddpm:
        out["eps_ddpm"] = _eps_ddpm(p, x, x_test, betas, shift, scale, progress)
    return out


def _eps_ddpm(p: Params, x, x_test, betas, shift, scale, progress: bool) -> xr.Dataset:
    """The eps-trained per-timestep DDPM on the same data and steps: its K for both fixed variances,
    the exact noise predictor's K, held-out ``L_simple`` per step, and samples."""
    from .. import sd15

    rng = np.random.default_rng([p.seed, 15])          # its own stream: the SD15 numbers do not depend on it
    t0 = time.perf_counter()
    model = sd15.train_eps_ddpm(x, betas, hidden=p.ddpm_hidden, epochs=p.ddpm_epochs, batch=p.ddpm_batch,
                                lr=p.ddpm_lr, seed=p.seed, max_beta=DDPM_MAX_BETA, progress=progress)
    t_train = time.perf_counter() - t0
    sched = model.schedule
    ab = sched.alpha_bar
    K = sd15.ddpm_bound_K(model.eps, x_test, sched, n_mc=2, seed=rng)

    def exact_eps(x_t, t):
        return sd15.swiss_roll_eps(x_t, ab[t], p.turns, p.noise, shift=shift, scale=scale)

    sub = x_test[: p.n_exact]
    K_ex = sd15.ddpm_bound_K(exact_eps, sub, sched, n_mc=1, seed=rng)
    mse = np.full((2, p.T + 1), np.nan)    # held-out L_simple per step: the DDPM's and the exact predictor's
    for t in range(1, p.T + 1):
        e = rng.standard_normal(sub.shape)
        x_t = np.sqrt(ab[t]) * sub + np.sqrt(1 - ab[t]) * e
        mse[0, t] = np.mean((model.eps(x_t.astype(np.float32), t) - e) ** 2)
        mse[1, t] = np.mean((exact_eps(x_t, t) - e) ** 2)
    samples = np.stack([model.sample(p.n_samples, seed=rng, sigma=s) for s in SIGMAS])
    bits = "bit"

    def over_sigma(res, what):
        return np.array([getattr(res[s], what) for s in SIGMAS])

    return xr.Dataset(
        {"x": _var(("sigma", "sample", "feature"), samples, _LENGTH, "samples of the eps-trained DDPM"),
         "alpha_bar": _var(("step",), ab, "1", "alpha_bar_t of the DDPM's schedule (beta_T clipped at 0.999)"),
         "K": _var(("sigma",), over_sigma(K, "bits"), bits, "bound K per sample of the eps-trained DDPM"),
         "K_stderr": _var(("sigma",), over_sigma(K, "stderr"), bits, "Monte-Carlo standard error of K"),
         "K_step": _var(("sigma", "step"), np.stack([K[s].per_step for s in SIGMAS]), bits,
                        "contribution of step t to K (eps-trained DDPM)"),
         "K_exact_eps": _var(("sigma",), over_sigma(K_ex, "bits"), bits, "bound K per sample of the exact noise "
                             "predictor with a fixed variance"),
         "K_exact_eps_stderr": _var(("sigma",), over_sigma(K_ex, "stderr"), bits, "standard error of K_exact_eps"),
         "K_step_exact_eps": _var(("sigma", "step"), np.stack([K_ex[s].per_step for s in SIGMAS]), bits,
                                  "contribution of step t to K (exact noise predictor)"),
         "mse": _var(("step",), mse[0], "1", "held-out L_simple per step: mean (eps - eps_theta)^2"),
         "mse_exact_eps": _var(("step",), mse[1], "1", "held-out L_simple per step of the exact noise predictor")},
        coords={"step": ("step", np.arange(p.T + 1), _STEP),
                "sigma": ("sigma", list(SIGMAS), {"long_name": "reverse variance sigma_t^2: beta_t or beta_tilde_t"})},
        attrs={"max_beta": DDPM_MAX_BETA, "n_exact": int(sub.shape[0]), "train_seconds": t_train,
               "schedule": "the SD15 study's betas with beta_T clipped at 0.999 (beta_T = 1 cannot be "
                           "eps-parametrised)"})


def plot(datasets: dict[str, xr.Dataset]) -> dict:
    """``sd15_swiss_roll``: trajectories, samples, training K, K per step; with the DDPM also
    ``eps_ddpm``: its samples and its per-step terms against those of the exact noise predictor."""
    from matplotlib.figure import Figure

    ds = datasets["sd15_swiss_roll"]
    fig = Figure(figsize=(16, 3.8))
    ax = fig.subplots(1, 4)
    T = ds.sizes["step"] - 1
    for t in (T, T // 2, 0):
        pts = ds["trajectory"].sel(step=t).values
        ax[0].scatter(pts[:, 0], pts[:, 1], s=2, alpha=0.5, label=f"t={t}", rasterized=True)
    ax[0].set_title("reverse trajectory slices")
    ax[0].legend(markerscale=4, fontsize=7)
    _scatter_over_data(ax[1], ds["x_test"].values, ds["x"].values, "C3", "data vs samples (unit variance)")
    ax[2].plot(ds["iteration"], ds["K_train"], lw=0.8)
    ax[2].axhline(float(ds["exact_log_likelihood"]), c="k", ls="--", label="exact E log2 q")
    ax[2].axhline(float(ds["L_null"]), c="0.5", ls=":", label="L_null")
    ax[2].set_xlabel("optimiser step")
    ax[2].set_ylabel("batch K (bits)")
    ax[2].legend(fontsize=7)
    ax[3].bar(ds["step"].values[1:], ds["K_step"].values[1:], color="C0")
    ax[3].set_xlabel("diffusion step t")
    ax[3].set_ylabel("contribution to K (bits)")
    ax[3].set_title(f"K = {float(ds['K']):.2f} bits (t=1: log p(x0|x1); t>1: -KL)", fontsize=8)
    fig.subplots_adjust(wspace=0.4)
    figs = {"sd15_swiss_roll": fig}
    if "eps_ddpm" in datasets:
        figs["eps_ddpm"] = _plot_ddpm(ds, datasets["eps_ddpm"])
    return figs


def _scatter_over_data(ax, data, samples, color, title):
    ax.scatter(*data.T, s=1, c="0.7", label="data", rasterized=True)
    ax.scatter(*samples.T, s=1, c=color, label="samples", rasterized=True)
    ax.set_aspect("equal")
    ax.legend(markerscale=5, fontsize=7)
    ax.set_title(title, fontsize=8)


def _plot_ddpm(ds: xr.Dataset, dd: xr.Dataset):
    """Samples of the eps-trained DDPM; per-step terms of every K minus those of the exact eps (beta)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 3.8))
    ax = fig.subplots(1, 2)
    _scatter_over_data(ax[0], ds["x_test"].values, dd["x"].sel(sigma="beta").values, "C2",
                       "eps-trained DDPM samples (sigma^2 = beta)")
    t = dd["step"].values[1:]
    ref = dd["K_step_exact_eps"].sel(sigma="beta").values[1:]
    curves = ((ds["K_step"], float(ds["K"]), "SD15 mean+var", "C0", "-"),
              (dd["K_step"].sel(sigma="beta"), float(dd["K"].sel(sigma="beta")), "DDPM, beta", "C2", "-"),
              (dd["K_step"].sel(sigma="posterior"), float(dd["K"].sel(sigma="posterior")), "DDPM, beta~", "C2", "--"),
              (dd["K_step_exact_eps"].sel(sigma="posterior"), float(dd["K_exact_eps"].sel(sigma="posterior")),
               "exact eps, beta~", "k", "--"))
    for terms, k, label, c, ls in curves:
        ax[1].plot(t, terms.values[1:] - ref, color=c, ls=ls, lw=1, marker=".", ms=3, label=f"{label} (K {k:+.2f})")
    ax[1].axhline(0.0, c="k", lw=0.8, label=f"exact eps, beta (K {float(dd['K_exact_eps'].sel(sigma='beta')):+.2f})")
    ax[1].set_xlabel("diffusion step t")
    ax[1].set_ylabel("K term - exact-eps (beta) term (bits)")
    ax[1].set_title(f"per-step terms (exact E log2 q = {float(ds['exact_log_likelihood']):+.2f})", fontsize=8)
    ax[1].legend(fontsize=6)
    fig.subplots_adjust(wspace=0.3)
    return fig
