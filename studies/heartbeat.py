"""[SD15]'s binary heartbeat: binomial diffusion (T = 2000) trained on the bound K; K in bits per
sequence against the exact log-likelihood log2(1/5) = -2.322 and [SD15]'s -2.414, and the share of
generated sequences that are valid heartbeats.

    python studies/heartbeat.py --out runs/heartbeat                 # quick (~5 min on 2 cores)
    python studies/heartbeat.py --out runs/heartbeat --T 200         # quicker, fewer steps
    python studies/heartbeat.py --out runs/heartbeat --full          # longer training

Writes heartbeat.nc (samples ``x(sample, feature)``, ``valid(sample)``, ``K_step(t)``,
``K_train(log_step)``, headline numbers in attrs) and heartbeat.png.
Sign convention: K is a lower bound on E log2 p(x0) (a log-likelihood, <= -H = -2.322 bits).
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
from physdiff.datasets import binary_heartbeat
from physdiff.results import provenance, write_dataset

SD15_K, SD15_K_MINUS_NULL = -2.414, 12.024     # [SD15] Table 1, bits per sequence


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--T", type=int, default=2000, help="binomial steps (2000 in [SD15])")
    ap.add_argument("--length", type=int, default=20)
    ap.add_argument("--period", type=int, default=5)
    ap.add_argument("--n-train", type=int, default=10000)
    ap.add_argument("--n-eval", type=int, default=500, help="held-out sequences for K")
    ap.add_argument("--n-samples", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=None, help="optimiser steps (quick 30000, full 150000)")
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--full", action="store_true", help="longer training")
    a = ap.parse_args(argv)
    steps = a.steps or (150000 if a.full else 30000)
    rng = np.random.default_rng(a.seed)
    x = binary_heartbeat(a.n_train, a.length, a.period, seed=rng)
    x_eval = binary_heartbeat(a.n_eval, a.length, a.period, seed=rng)
    exact = -math.log2(a.period)

    t0 = time.perf_counter()
    model = sd15.train_binomial_sd15(x, T=a.T, hidden=a.hidden, steps=steps, batch=256, lr=2e-3, seed=rng,
                                     progress=sys.stderr.isatty())
    t_train = time.perf_counter() - t0
    t0 = time.perf_counter()
    K = model.bound_K(x_eval, seed=rng)
    t_eval = time.perf_counter() - t0
    t0 = time.perf_counter()
    samples = model.sample(a.n_samples, seed=rng)
    t_sample = time.perf_counter() - t0
    valid = sd15.valid_heartbeat(samples, a.period)
    L_null = sd15.null_log_likelihood_binomial(x_eval, p1=x.mean(axis=0))

    attrs = provenance(seed=a.seed, dataset="binary_heartbeat", length=a.length, period=a.period, T=a.T,
                       hidden=a.hidden, steps=steps, K_bits=K.bits, K_stderr=K.stderr, L_null_bits=L_null,
                       K_minus_L_null=K.bits - L_null, exact_log_likelihood_bits=exact,
                       valid_share=float(valid.mean()), sd15_K_bits=SD15_K,
                       sd15_K_minus_L_null=SD15_K_MINUS_NULL, train_seconds=t_train, eval_seconds=t_eval,
                       sample_seconds=t_sample,
                       sign_convention="K is a lower bound on E log2 p(x0) (log-likelihood, bits/sequence)")
    ds = xr.Dataset(
        {"x": (("sample", "feature"), samples),
         "valid": (("sample",), valid.astype(np.int8)),
         "K_step": (("t",), K.per_step),
         "K_train": (("log_step",), model.history["K_bits"])},
        coords={"t": np.arange(a.T + 1), "log_step": model.history["step"]}, attrs=attrs)
    a.out.mkdir(parents=True, exist_ok=True)
    write_dataset(ds, a.out / "heartbeat.nc")
    _figure(ds, x_eval, a.out / "heartbeat.png")
    se = math.sqrt(valid.mean() * (1 - valid.mean()) / valid.size)
    print(f"heartbeat (length {a.length}, period {a.period}), T={a.T}, {steps} steps in {t_train:.0f} s "
          f"(K in {t_eval:.0f} s, {a.n_samples} samples in {t_sample:.0f} s)")
    print(f"  K          = {K.bits:+.3f} +- {K.stderr:.3f} bits/seq   [exact log2(1/{a.period}) = {exact:+.3f}; "
          f"SD15 Table 1: {SD15_K:+.3f}]")
    print(f"  K - L_null = {K.bits - L_null:+.3f} bits/seq        [SD15 Table 1: {SD15_K_MINUS_NULL:+.3f}]")
    print(f"  valid heartbeats: {valid.mean():.3f} +- {se:.3f} of {valid.size} samples")
    print(f"  wrote {a.out / 'heartbeat.nc'} and .png")
    return 0


def _figure(ds, x_eval, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from physdiff.plotting import save_figure

    period = int(ds.attrs["period"])
    x = ds["x"].values[:40]
    # shift every sequence so that its first pulse is in column 0, as [SD15] Fig. 2
    shifted = np.array([np.roll(r, -int(np.argmax(r))) if r.any() else r for r in x])
    fig, ax = plt.subplots(1, 3, figsize=(13, 4))
    ax[0].imshow(shifted, cmap="gray_r", aspect="auto", interpolation="nearest")
    ax[0].set_title(f"samples, shifted to the first pulse\n(valid: {ds.attrs['valid_share']:.3f})", fontsize=9)
    ax[0].set_xlabel("bin")
    ax[1].plot(ds["log_step"], ds["K_train"], lw=0.6)
    ax[1].axhline(ds.attrs["exact_log_likelihood_bits"], c="k", ls="--", label=f"exact -log2({period})")
    ax[1].axhline(ds.attrs["sd15_K_bits"], c="C3", ls=":", label="SD15")
    ax[1].set_ylim(max(ds["K_train"].min().item(), -20), 0)
    ax[1].set_xlabel("optimiser step")
    ax[1].set_ylabel("batch K (bits/seq)")
    ax[1].legend(fontsize=7)
    ax[2].plot(ds["t"][1:], ds["K_step"][1:], lw=0.6)
    ax[2].set_xlabel("step t")
    ax[2].set_ylabel("contribution to K (bits)")
    ax[2].set_title(f"K = {ds.attrs['K_bits']:.3f} +- {ds.attrs['K_stderr']:.3f} bits/seq", fontsize=9)
    fig.subplots_adjust(wspace=0.4)
    save_figure(fig, path)


if __name__ == "__main__":
    from physdiff.experiments._io import run_script

    sys.exit(run_script(main, "heartbeat"))
