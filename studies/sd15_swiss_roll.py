"""[SD15]'s Swiss roll: Gaussian diffusion (T = 40) with a learned mean AND diagonal variance,
trained on the bound K; K in bits against [SD15] Table 1 and against the exact log-likelihood;
beside it the same bound for the eps-trained per-timestep DDPM of the thesis on the same roll.

    python studies/sd15_swiss_roll.py --out runs/sd15_swiss_roll            # quick (< 15 min, 2 cores)
    python studies/sd15_swiss_roll.py --out runs/sd15_swiss_roll --full     # longer training
    python studies/sd15_swiss_roll.py --out runs/sd15 --no-ddpm             # the SD15 model only

Writes sd15_swiss_roll.nc (samples ``x(sample, feature)``, ``K_step(t)``, ``K_train(log_step)``,
headline numbers in attrs) and sd15_swiss_roll.png. As in [SD15] the data are scaled to unit
variance before any log-likelihood is computed, so L_null = -log2(2 pi e) = -4.094 bits.

The eps-trained DDPM (one Linear-ReLU-Linear net per step, L_simple, [Ho20]/[Thesis]) is trained on
the same unit-variance training points with the same seed and the same T = 40 steps. It cannot use
the SD15 schedule as it is: that ends with beta_T = 1 (alpha_bar_T = 0), where the eps-parametrised
mean (x_t - beta_t/sqrt(1-alpha_bar_t) eps)/sqrt(alpha_t) divides by zero (and Schedule needs
beta_t < 1). It uses the same betas with the last clipped at 0.999 (as [ND21] clip the cosine
schedule; sd15.ddpm_schedule): steps 1..39 identical, alpha_bar_T = 2e-4, a prior term of -3e-4
bits. Its K is reported for both fixed reverse variances sigma_t^2 = beta_t and beta_tilde_t
(``K_step_ddpm_beta(t)``, ``K_step_ddpm_posterior(t)``), and so is the K of the EXACT noise
predictor of the roll (sd15.swiss_roll_eps) with those variances: the best any eps-trained DDPM
with a fixed isotropic variance can reach on these steps (``K_step_exact_eps_*``). Held-out
L_simple per step of the DDPM and of the exact predictor: ``mse_ddpm(t)``, ``mse_exact_eps(t)``.
DDPM samples: ``x_ddpm(sample, feature)``.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

try:
    import physdiff  # noqa: F401
except ImportError:  # running from a source checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import xarray as xr

from physdiff import sd15
from physdiff.datasets import swiss_roll
from physdiff.results import provenance, write_dataset

SD15_K, SD15_K_MINUS_NULL = 2.35, 6.45     # [SD15] Table 1, bits


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--T", type=int, default=40)
    ap.add_argument("--schedule", choices=["geometric", "sd15"], default="geometric")
    ap.add_argument("--beta-1", type=float, default=None)
    ap.add_argument("--turns", type=float, default=2.0)
    ap.add_argument("--noise", type=float, default=None, help="default: the thesis' value for --turns")
    ap.add_argument("--n-train", type=int, default=20000)
    ap.add_argument("--n-test", type=int, default=5000)
    ap.add_argument("--steps", type=int, default=None, help="optimiser steps (quick 12000, full 60000)")
    ap.add_argument("--hidden", type=int, default=None, help="trunk width (quick 128, full 256)")
    ap.add_argument("--full", action="store_true", help="longer training and a wider trunk")
    ap.add_argument("--no-ddpm", action="store_true", help="skip the eps-trained DDPM")
    ap.add_argument("--ddpm-epochs", type=int, default=None, help="DDPM epochs (quick 60, full 200)")
    ap.add_argument("--ddpm-hidden", type=int, default=256, help="DDPM hidden units per net")
    ap.add_argument("--ddpm-lr", type=float, default=3e-3, help="DDPM Adam learning rate")
    ap.add_argument("--ddpm-batch", type=int, default=100)
    ap.add_argument("--n-exact", type=int, default=2000,
                    help="held-out points for the exact-eps bound (its cost ~ n x 6000 grid nodes x T)")
    a = ap.parse_args(argv)
    steps = a.steps or (60000 if a.full else 12000)
    hidden = a.hidden or (256 if a.full else 128)
    noise = a.noise if a.noise is not None else {2.0: 0.1, 3.0: 1.0}.get(a.turns, 0.1)
    rng = np.random.default_rng(a.seed)

    raw = swiss_roll(a.n_train, turns=a.turns, noise=noise, seed=rng)
    raw_test = swiss_roll(a.n_test, turns=a.turns, noise=noise, seed=rng)
    x, shift, scale = sd15.unit_variance(raw)
    x_test = (raw_test - shift) / scale
    # exact E log2 q(x0) in the scaled units: the best K any model can reach
    lq = (sd15.swiss_roll_log_density(raw_test, a.turns, noise) + 2 * math.log(scale)) / math.log(2)
    exact, exact_se = float(lq.mean()), float(lq.std(ddof=1) / math.sqrt(lq.size))

    betas = sd15.gaussian_betas(a.T, kind=a.schedule, beta_1=a.beta_1)
    t0 = time.perf_counter()
    model = sd15.train_gaussian_sd15(x, betas=betas, hidden=hidden, steps=steps, batch=128, lr=2e-3,
                                     seed=rng, progress=sys.stderr.isatty())
    t_train = time.perf_counter() - t0
    t0 = time.perf_counter()
    K = model.bound_K(x_test, n_mc=2, seed=rng)
    t_eval = time.perf_counter() - t0
    L_null = sd15.null_log_likelihood_gaussian(x_test)
    samples, path = model.sample(3000, seed=rng, return_trajectory=True)

    ddpm = None if a.no_ddpm else _ddpm_part(a, x, x_test, betas, noise, shift, scale)

    attrs = provenance(seed=a.seed, dataset="swiss_roll", turns=a.turns, noise=noise, T=a.T,
                       schedule=a.schedule, hidden=hidden, steps=steps, data_scale=scale,
                       K_bits=K.bits, K_stderr=K.stderr, L_null_bits=L_null, K_minus_L_null=K.bits - L_null,
                       exact_log_likelihood_bits=exact, exact_log_likelihood_stderr=exact_se,
                       sd15_K_bits=SD15_K, sd15_K_minus_L_null=SD15_K_MINUS_NULL,
                       train_seconds=t_train, eval_seconds=t_eval,
                       sign_convention="K is a lower bound on E log2 p(x0) (log-likelihood, bits/sample)")
    ds = xr.Dataset(
        {"x": (("sample", "feature"), samples),
         "x_test": (("test_sample", "feature"), x_test.astype(np.float32)),
         "trajectory": (("t", "traj_sample", "feature"), path[:, :500]),
         "K_step": (("t",), K.per_step),
         "K_train": (("log_step",), model.history["K_bits"])},
        coords={"t": np.arange(a.T + 1), "log_step": model.history["step"], "betas": (("t",), betas)},
        attrs=attrs)
    if ddpm is not None:
        ds = ds.assign(ddpm["vars"]).assign_coords(betas_ddpm=(("t",), ddpm["betas"]))
        ds.attrs.update(ddpm["attrs"])
    a.out.mkdir(parents=True, exist_ok=True)
    write_dataset(ds, a.out / "sd15_swiss_roll.nc")
    _figure(ds, a.out / "sd15_swiss_roll.png")
    print(f"Swiss roll (turns={a.turns}, noise={noise}), T={a.T} {a.schedule} schedule, {steps} steps "
          f"in {t_train:.0f} s (K evaluated in {t_eval:.1f} s)")
    print(f"  K            = {K.bits:+.3f} +- {K.stderr:.3f} bits/sample   [SD15 Table 1: {SD15_K:+.2f}]")
    print(f"  K - L_null   = {K.bits - L_null:+.3f} bits                [SD15 Table 1: {SD15_K_MINUS_NULL:+.2f}]")
    print(f"  exact E log2 q(x0) = {exact:+.3f} +- {exact_se:.3f} bits (upper limit of K on these data)")
    if ddpm is not None:
        at = ddpm["attrs"]
        print(f"eps-trained per-timestep DDPM, same data, seed and T (beta_T clipped at 0.999), "
              f"{at['ddpm_epochs']} epochs in {at['ddpm_train_seconds']:.0f} s:")
        for sig, name in (("beta", "sigma^2 = beta_t      "), ("posterior", "sigma^2 = beta_tilde_t")):
            print(f"  K, {name} = {at[f'K_ddpm_{sig}_bits']:+.3f} +- {at[f'K_ddpm_{sig}_stderr']:.3f} bits;  "
                  f"exact eps: {at[f'K_exact_eps_{sig}_bits']:+.3f} +- {at[f'K_exact_eps_{sig}_stderr']:.3f}")
    print(f"  wrote {a.out / 'sd15_swiss_roll.nc'} and .png")
    return 0


def _ddpm_part(a, x, x_test, betas, noise, shift, scale) -> dict:
    """Train the eps-trained per-timestep DDPM on the same data and steps; its bound K for both fixed
    variances, the exact noise predictor's K and held-out L_simple per step, and samples."""
    epochs = a.ddpm_epochs or (200 if a.full else 60)
    rng = np.random.default_rng([a.seed, 15])          # its own stream: the SD15 numbers are unchanged
    t0 = time.perf_counter()
    model = sd15.train_eps_ddpm(x, betas, hidden=a.ddpm_hidden, epochs=epochs, batch=a.ddpm_batch, lr=a.ddpm_lr,
                                seed=a.seed)
    t_train = time.perf_counter() - t0
    sched = model.schedule
    t0 = time.perf_counter()
    K = sd15.ddpm_bound_K(model.eps, x_test, sched, n_mc=2, seed=rng)
    ab = sched.alpha_bar

    def exact_eps(x_t, t):
        return sd15.swiss_roll_eps(x_t, ab[t], a.turns, noise, shift=shift, scale=scale)

    sub = x_test[: a.n_exact]
    K_ex = sd15.ddpm_bound_K(exact_eps, sub, sched, n_mc=1, seed=rng)
    # held-out L_simple per step: the DDPM's and the exact predictor's (its irreducible part)
    mse = np.full((2, a.T + 1), np.nan)
    for t in range(1, a.T + 1):
        e = rng.standard_normal(sub.shape)
        x_t = np.sqrt(ab[t]) * sub + np.sqrt(1 - ab[t]) * e
        mse[0, t] = np.mean((model.eps(x_t.astype(np.float32), t) - e) ** 2)
        mse[1, t] = np.mean((exact_eps(x_t, t) - e) ** 2)
    t_eval = time.perf_counter() - t0
    samples = model.sample(3000, seed=rng, sigma="beta")
    samples_post = model.sample(3000, seed=rng, sigma="posterior")
    attrs = {"ddpm_epochs": epochs, "ddpm_hidden": a.ddpm_hidden, "ddpm_lr": a.ddpm_lr, "ddpm_batch": a.ddpm_batch,
             "ddpm_max_beta": 0.999, "ddpm_alpha_bar_T": float(ab[-1]), "ddpm_train_seconds": t_train,
             "ddpm_eval_seconds": t_eval, "n_exact": int(sub.shape[0]),
             "ddpm_schedule": "sd15 betas with beta_T clipped at 0.999 (beta_T = 1 cannot be eps-parametrised)"}
    vars_ = {}
    for sig in ("beta", "posterior"):
        attrs[f"K_ddpm_{sig}_bits"], attrs[f"K_ddpm_{sig}_stderr"] = K[sig].bits, K[sig].stderr
        attrs[f"K_exact_eps_{sig}_bits"], attrs[f"K_exact_eps_{sig}_stderr"] = K_ex[sig].bits, K_ex[sig].stderr
        vars_[f"K_step_ddpm_{sig}"] = (("t",), K[sig].per_step)
        vars_[f"K_step_exact_eps_{sig}"] = (("t",), K_ex[sig].per_step)
    vars_["mse_ddpm"] = (("t",), mse[0])
    vars_["mse_exact_eps"] = (("t",), mse[1])
    vars_["x_ddpm"] = (("sample", "feature"), samples)
    vars_["x_ddpm_posterior"] = (("sample", "feature"), samples_post)
    return {"vars": vars_, "attrs": attrs, "betas": np.asarray(sched.betas)}


def _figure(ds, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from physdiff.plotting import save_figure

    has_ddpm = "K_step_ddpm_beta" in ds
    fig, ax = plt.subplots(1, 6 if has_ddpm else 4, figsize=(24 if has_ddpm else 16, 3.8))
    T = ds.sizes["t"] - 1
    for k, t in enumerate([T, T // 2, 0]):
        pts = ds["trajectory"].sel(t=t).values
        ax[0].scatter(pts[:, 0], pts[:, 1], s=2, alpha=0.5, label=f"t={t}", rasterized=True)
    ax[0].set_title("reverse trajectory slices")
    ax[0].legend(markerscale=4, fontsize=7)
    ax[1].scatter(*ds["x_test"].values.T, s=1, c="0.7", label="data", rasterized=True)
    ax[1].scatter(*ds["x"].values.T, s=1, c="C3", label="samples", rasterized=True)
    ax[1].set_aspect("equal")
    ax[1].legend(markerscale=5, fontsize=7)
    ax[1].set_title("data vs samples (unit variance)")
    ax[2].plot(ds["log_step"], ds["K_train"], lw=0.8)
    ax[2].axhline(ds.attrs["exact_log_likelihood_bits"], c="k", ls="--", label="exact E log2 q")
    ax[2].axhline(ds.attrs["L_null_bits"], c="0.5", ls=":", label="L_null")
    ax[2].set_xlabel("optimiser step")
    ax[2].set_ylabel("batch K (bits)")
    ax[2].legend(fontsize=7)
    ax[3].bar(ds["t"].values[1:], ds["K_step"].values[1:], color="C0")
    ax[3].set_xlabel("step t")
    ax[3].set_ylabel("contribution to K (bits)")
    ax[3].set_title(f"K = {ds.attrs['K_bits']:.2f} bits (t=1: log p(x0|x1); t>1: -KL)", fontsize=8)
    if has_ddpm:
        ax[4].scatter(*ds["x_test"].values.T, s=1, c="0.7", rasterized=True)
        ax[4].scatter(*ds["x_ddpm"].values.T, s=1, c="C2", rasterized=True)
        ax[4].set_aspect("equal")
        ax[4].set_title("eps-trained DDPM samples (sigma^2 = beta)", fontsize=8)
        t = ds["t"].values
        a = ds.attrs
        # per-step terms of K against those of the exact eps with sigma^2 = beta: where bits are won or lost
        ref = ds["K_step_exact_eps_beta"].values
        for name, lab, c, ls in (("K_step", f"SD15 mean+var (K {a['K_bits']:+.2f})", "C0", "-"),
                                 ("K_step_ddpm_beta", f"DDPM, beta (K {a['K_ddpm_beta_bits']:+.2f})", "C2", "-"),
                                 ("K_step_ddpm_posterior", f"DDPM, beta~ (K {a['K_ddpm_posterior_bits']:+.2f})",
                                  "C2", "--"),
                                 ("K_step_exact_eps_posterior",
                                  f"exact eps, beta~ (K {a['K_exact_eps_posterior_bits']:+.2f})", "k", "--")):
            ax[5].plot(t[1:], ds[name].values[1:] - ref[1:], color=c, ls=ls, lw=1, marker=".", ms=3, label=lab)
        ax[5].axhline(0.0, c="k", lw=0.8, label=f"exact eps, beta (K {a['K_exact_eps_beta_bits']:+.2f})")
        ax[5].set_xlabel("step t")
        ax[5].set_ylabel("K term - exact-eps (beta) term (bits)")
        ax[5].set_title(f"per-step terms (exact E log2 q = {a['exact_log_likelihood_bits']:+.2f})", fontsize=8)
        ax[5].legend(fontsize=6)
    fig.subplots_adjust(wspace=0.4)
    save_figure(fig, path)


if __name__ == "__main__":
    from physdiff.experiments._io import run_script

    sys.exit(run_script(main, "sd15_swiss_roll"))
