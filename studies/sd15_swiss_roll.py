"""[SD15]'s Swiss roll: Gaussian diffusion (T = 40) with a learned mean AND diagonal variance,
trained on the bound K; K in bits against [SD15] Table 1 and against the exact log-likelihood.

    python studies/sd15_swiss_roll.py --out runs/sd15_swiss_roll            # quick (~5-10 min, 2 cores)
    python studies/sd15_swiss_roll.py --out runs/sd15_swiss_roll --full     # longer training

Writes sd15_swiss_roll.nc (samples ``x(sample, feature)``, ``K_step(t)``, ``K_train(log_step)``,
headline numbers in attrs) and sd15_swiss_roll.png. As in [SD15] the data are scaled to unit
variance before any log-likelihood is computed, so L_null = -log2(2 pi e) = -4.094 bits.
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
    a.out.mkdir(parents=True, exist_ok=True)
    write_dataset(ds, a.out / "sd15_swiss_roll.nc")
    _figure(ds, a.out / "sd15_swiss_roll.png")
    print(f"Swiss roll (turns={a.turns}, noise={noise}), T={a.T} {a.schedule} schedule, {steps} steps "
          f"in {t_train:.0f} s (K evaluated in {t_eval:.1f} s)")
    print(f"  K            = {K.bits:+.3f} +- {K.stderr:.3f} bits/sample   [SD15 Table 1: {SD15_K:+.2f}]")
    print(f"  K - L_null   = {K.bits - L_null:+.3f} bits                [SD15 Table 1: {SD15_K_MINUS_NULL:+.2f}]")
    print(f"  exact E log2 q(x0) = {exact:+.3f} +- {exact_se:.3f} bits (upper limit of K on these data)")
    print(f"  wrote {a.out / 'sd15_swiss_roll.nc'} and .png")
    return 0


def _figure(ds, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from physdiff.plotting import save_figure

    fig, ax = plt.subplots(1, 4, figsize=(16, 3.8))
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
    fig.subplots_adjust(wspace=0.4)
    save_figure(fig, path)


if __name__ == "__main__":
    sys.exit(main())
