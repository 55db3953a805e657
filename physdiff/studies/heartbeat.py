"""[SD15]'s binary heartbeat: binomial diffusion trained on the bound K, against the exact entropy.

The data are sequences of ``length`` bits with a 1 in every ``period``-th bin and a uniformly random
phase (:func:`physdiff.datasets.binary_heartbeat`): ``period`` equally likely sequences, so the exact
log-likelihood is ``-log2(period)`` bits per sequence (-2.322 for [SD15]'s period 5). The binomial
reverse model of :mod:`physdiff.sd15` is trained by maximising K on ``T`` steps of the schedule
``beta_t = 1/(T - t + 1)``; the study reports K on held-out sequences (a lower bound on the
log-likelihood: K <= -log2(period)), ``K - L_null`` against the independent-Bernoulli null model,
and the share of generated sequences that are valid heartbeats ([SD15] Table 1: K = -2.414 bits,
K - L_null = 12.024 bits). Formulas: ``docs/theory.md``, "Sohl-Dickstein et al. 2015: the bound K".

    physdiff study heartbeat --out runs/heartbeat                  # quick: 30 000 optimiser steps
    physdiff study heartbeat --steps 150000 --out runs/heartbeat   # longer training

References
----------
[SD15] Sohl-Dickstein, Weiss, Maheswaranathan, Ganguli (2015), Deep Unsupervised Learning using
    Nonequilibrium Thermodynamics, arXiv:1503.03585, Sec. 3.1.2, Table 1, App. D.1.2.
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

#: [SD15] Table 1, bits per sequence.
SD15_K, SD15_K_MINUS_NULL = -2.414, 12.024

#: Overrides for a run of a few seconds on one core (tests).
TINY = dict(T=20, length=10, period=2, n_train=400, n_eval=50, n_samples=40, steps=30, hidden=16, batch=32)


@register("heartbeat", title="SD15 binary heartbeat: binomial diffusion trained on the bound K")
@dataclass(frozen=True)
class Params:
    """Parameters of the heartbeat study (defaults: the quick settings, ~5 min on 2 cores)."""

    T: int = field(default=2000, metadata={"help": "binomial diffusion steps (2000 in SD15)", "coord": True})
    length: int = field(default=20, metadata={"help": "bins per sequence (20 in SD15)"})
    period: int = field(default=5, metadata={"help": "bins between pulses (5 in SD15)", "coord": True})
    n_train: int = field(default=10000, metadata={"help": "training sequences"})
    n_eval: int = field(default=500, metadata={"help": "held-out sequences for K"})
    n_samples: int = field(default=1000, metadata={"help": "generated sequences"})
    steps: int = field(default=30000, metadata={"help": "optimiser steps (150000 for a longer run)"})
    hidden: int = field(default=128, metadata={"help": "width of the model's MLP"})
    batch: int = field(default=256, metadata={"help": "sequences per optimiser step"})
    lr: float = field(default=2e-3, metadata={"help": "Adam's initial learning rate (cosine-decayed)"})
    seed: int = field(default=0, metadata={"help": "random seed", "coord": True})
    device: str = field(default="cpu", metadata={"help": "torch device; the SD15 models run on the CPU only "
                                                         "('cpu' or 'auto')"})

    def __post_init__(self):
        for name in ("T", "length", "period", "n_train", "n_eval", "n_samples", "steps", "hidden", "batch"):
            check_positive_int(name, getattr(self, name))
        check_positive_int("seed", self.seed, minimum=0)
        if self.period > self.length:
            raise ValueError(f"period must be <= length ({self.length}), got {self.period}")
        check_real("lr", self.lr, lo=0.0, lo_open=True)
        if self.device not in ("cpu", "auto"):
            raise ValueError(f"device must be 'cpu' or 'auto' (the SD15 models run on the CPU), got {self.device!r}")


def _var(dims, data, units: str, long_name: str, **attrs) -> tuple:
    return (dims, data, {"units": units, "long_name": long_name, **attrs})


def run(params: Params, progress: bool = False) -> dict[str, xr.Dataset]:
    """Train the binomial model, evaluate K on held-out sequences, sample and count valid ones.

    Returns
    -------
    dict
        ``{"heartbeat": ds}`` with ``x(sample, bin)`` (int8 generated sequences), ``valid(sample)``,
        ``K_step(step)`` (contribution of each step to K, bits; step 0 the prior term),
        ``K_train(iteration)`` (training-batch K), the scalars ``K``, ``K_stderr``, ``L_null``,
        ``exact_log_likelihood`` (bits per sequence) and the [SD15] values ``K_sd15``,
        ``K_minus_L_null_sd15``; attrs ``train_seconds``, ``eval_seconds``, ``sample_seconds``.
    """
    from .. import sd15
    from ..datasets import binary_heartbeat

    p = params
    rng = np.random.default_rng(p.seed)
    x = binary_heartbeat(p.n_train, p.length, p.period, seed=rng)
    x_eval = binary_heartbeat(p.n_eval, p.length, p.period, seed=rng)
    t0 = time.perf_counter()
    model = sd15.train_binomial_sd15(x, T=p.T, hidden=p.hidden, steps=p.steps, batch=p.batch, lr=p.lr,
                                     seed=rng, progress=progress)
    t_train = time.perf_counter() - t0
    t0 = time.perf_counter()
    K = model.bound_K(x_eval, seed=rng)
    t_eval = time.perf_counter() - t0
    t0 = time.perf_counter()
    samples = model.sample(p.n_samples, seed=rng)
    t_sample = time.perf_counter() - t0
    valid = sd15.valid_heartbeat(samples, p.period)
    L_null = sd15.null_log_likelihood_binomial(x_eval, p1=x.mean(axis=0))
    bits = "bit"
    ds = xr.Dataset(
        {"x": _var(("sample", "bin"), samples, "1", "generated sequence (0/1)"),
         "valid": _var(("sample",), valid.astype(np.int8), "1", "sequence is a valid heartbeat (1) or not (0)"),
         "K_step": _var(("step",), K.per_step, bits, "contribution of step t to K per sequence "
                        "(step 0: prior term; 1: log p(x0|x1); t >= 2: -KL)"),
         "K_train": _var(("iteration",), model.history["K_bits"], bits, "training-batch K per sequence"),
         "K": _var((), K.bits, bits, "bound K per sequence on held-out data (lower bound on E log2 p(x0))"),
         "K_stderr": _var((), K.stderr, bits, "Monte-Carlo standard error of K"),
         "L_null": _var((), L_null, bits, "log-likelihood of independent Bernoullis with the training mean"),
         "exact_log_likelihood": _var((), -math.log2(p.period), bits, "exact E log2 q(x0) = -log2(period)"),
         "K_sd15": _var((), SD15_K, bits, "K reported by Sohl-Dickstein et al. 2015, Table 1"),
         "K_minus_L_null_sd15": _var((), SD15_K_MINUS_NULL, bits, "K - L_null reported by Sohl-Dickstein et al. "
                                     "2015, Table 1")},
        coords={"step": ("step", np.arange(p.T + 1), {"long_name": "diffusion step t", "units": "1"}),
                "iteration": ("iteration", model.history["step"], {"long_name": "optimiser step", "units": "1"})},
        attrs={"dataset": "binary_heartbeat", "length": p.length, "period": p.period, "train_seconds": t_train, "eval_seconds": t_eval,
               "sample_seconds": t_sample,
               "sign_convention": "K is a lower bound on E log2 p(x0) (a log-likelihood, bits per sequence)"})
    return {"heartbeat": ds}


def plot(datasets: dict[str, xr.Dataset]) -> dict:
    """One figure: samples aligned on their first pulse, the training K, and K per step."""
    from matplotlib.figure import Figure

    ds = datasets["heartbeat"]
    period = int(ds.attrs["period"])
    x = ds["x"].values[:40]
    # each sequence shifted so that its first pulse is in column 0, as [SD15] Fig. 2
    shifted = np.array([np.roll(r, -int(np.argmax(r))) if r.any() else r for r in x])
    valid = ds["valid"].values
    share = float(valid.mean())
    se = math.sqrt(share * (1 - share) / valid.size)
    fig = Figure(figsize=(13, 4))
    ax = fig.subplots(1, 3)
    ax[0].imshow(shifted, cmap="gray_r", aspect="auto", interpolation="nearest")
    ax[0].set_title(f"samples, shifted to the first pulse\n(valid: {share:.3f} +- {se:.3f})", fontsize=9)
    ax[0].set_xlabel("bin")
    ax[1].plot(ds["iteration"], ds["K_train"], lw=0.6)
    ax[1].axhline(float(ds["exact_log_likelihood"]), c="k", ls="--", label=f"exact -log2({period})")
    ax[1].axhline(float(ds["K_sd15"]), c="C3", ls=":", label="SD15 Table 1")
    ax[1].set_ylim(max(float(ds["K_train"].min()), -20.0), 0)
    ax[1].set_xlabel("optimiser step")
    ax[1].set_ylabel("batch K (bits/sequence)")
    ax[1].legend(fontsize=7)
    ax[2].plot(ds["step"][1:], ds["K_step"][1:], lw=0.6)
    ax[2].set_xlabel("diffusion step t")
    ax[2].set_ylabel("contribution to K (bits)")
    ax[2].set_title(f"K = {float(ds['K']):.3f} +- {float(ds['K_stderr']):.3f} bits/sequence", fontsize=9)
    fig.subplots_adjust(wspace=0.4)
    return {"heartbeat": fig}
