"""Shared steps of the studies of DDPMs trained on Curie-Weiss spins (phase-transition,
state-weights, speciation-scan): training a quick model, the learned score, cloning classified by
the sign of the magnetization, and the state-weight / memorisation Datasets. Not a study.
"""

from __future__ import annotations

import math

import numpy as np
import xarray as xr

from .. import datasets, metrics
from .._util import SeedLike, as_generator
from ..reverse import cloning, cloning_branch_steps
from ..theory import curie_weiss as cw
from ..theory import gaussian

ONE = {"units": "1"}


def var(dims, data, long_name: str, units: str = "1") -> tuple:
    """An xarray variable tuple with ``units`` and ``long_name``."""
    return (dims, data, {"units": units, "long_name": long_name})


def step_coords(schedule, steps, what: str = "diffusion step") -> dict:
    """Coordinates ``step``, ``time(step)`` and ``alpha_bar(step)`` of a Dataset."""
    steps = np.asarray(steps, dtype=np.int64)
    return {"step": ("step", steps, {**ONE, "long_name": what}),
            "time": ("step", schedule.physical_time[steps], {**ONE, "long_name": "physical time -(1/2) log alpha_bar"}),
            "alpha_bar": ("step", schedule.alpha_bar[steps], {**ONE, "long_name": "alpha_bar of the step"})}


def data_law(model) -> tuple[int, float, float]:
    """``(N, beta, h)`` from a model's training metadata; ValueError if it is not Curie-Weiss."""
    data = getattr(model, "data", {}) or {}
    if data.get("dataset") != "curie-weiss" or any(k not in data for k in ("N", "beta")):
        raise ValueError("the checkpoint must be trained on Curie-Weiss data "
                         "(`physdiff train curie-weiss --N 64 --beta 1.5 --out runs/cw64`); this one has "
                         f"dataset={data.get('dataset')!r}")
    return int(data["N"]), float(data["beta"]), float(data.get("h", 0.0))


def train(*, N: int, beta: float, h: float, n_train: int, seed: int, device: str = "cpu", progress: bool = False,
          **overrides):
    """A quick-preset Curie-Weiss DDPM trained here (``overrides``: TrainConfig fields, None ignored).

    Returns ``(model, x0)``, ``x0`` the float32 training set (``n_train``, ``N``).
    """
    from .. import ddpm

    x0, meta, cfg = _training_setup(N, beta, h, n_train, seed, device, overrides)
    return ddpm.train(x0, cfg, progress=progress, log=None, metadata=meta), x0


def train_snapshots(*, N: int, beta: float, h: float, n_train: int, seed: int, epochs, device: str = "cpu",
                    progress: bool = False, **overrides) -> dict:
    """As :func:`train`, the models after each number of epochs in ``epochs`` from one training run
    (:func:`physdiff.ddpm.train_snapshots`: each the model of a separate run, bit for bit).

    Returns ``{epochs: model}``.
    """
    from .. import ddpm

    x0, meta, cfg = _training_setup(N, beta, h, n_train, seed, device, overrides)
    return ddpm.train_snapshots(x0, cfg, epochs, progress=progress, log=None, metadata=meta)


def _training_setup(N, beta, h, n_train, seed, device, overrides) -> tuple:
    """``(x0, metadata, config)`` of a quick-preset model trained here (see :func:`train`)."""
    from .. import ddpm

    x0, meta = datasets.load_training_data("curie-weiss", seed=seed, N=N, beta=beta, h=h, n_train=n_train)
    return x0, meta, ddpm.get_config("curie-weiss", "quick", seed=seed, device=device, **overrides)


def training_set(model) -> np.ndarray | None:
    """The training set of a checkpoint, rebuilt from its metadata and verified; None if that fails."""
    try:
        return datasets.training_set(model.data, seed=getattr(getattr(model, "config", None), "seed", None))
    except (ValueError, KeyError):
        return None


def learned_score(model, x, t: int) -> np.ndarray:
    """``-eps_theta(x, t) / sqrt(1 - alpha_bar_t)`` in float64."""
    ab = float(model.schedule.alpha_bar[t])
    return -np.asarray(model.eps(np.asarray(x, dtype=np.float32), int(t)), dtype=np.float64) / math.sqrt(1.0 - ab)


def sign_labels(x) -> np.ndarray:
    """Class of a state: 1 if its magnetization is > 0 else 0 (numpy or torch in, numpy out)."""
    m = x.sum(1) > 0
    if hasattr(m, "cpu"):
        m = m.cpu().numpy()
    return np.asarray(m, dtype=np.int64)


def branch_steps(schedule, N: int, beta: float, h: float = 0.0, *, n_branch: int = 10,
                 span: tuple[float, float] = (-0.9, 1.2)) -> tuple[list[int], int]:
    """Branch steps around ``t_S = (1/2) log Lambda`` and the step where clones are classified.

    Classes (the sign of ``M``) are read off where the exact double well is frozen: the wells at
    ``+-s m* sqrt(N)`` lie at least 5 noise widths ``sqrt(Delta)`` from 0, i.e.
    ``s^2 / Delta >= 25 / (N m*^2)`` (and at most one step below ``t_S + span[0]``); below it a
    change of sign needs a jump over a barrier of more than 12 in units of the log density.
    """
    t_S = 0.5 * math.log(cw.top_eigenvalue(N, beta, h))
    m_star = cw.m_star(beta, h)
    t_cls = 0.5 * math.log1p(N * m_star**2 / 25.0) if m_star > 0 else 0.0
    t_classify = min(schedule.step_at_time(t_cls), max(schedule.step_at_time(t_S + span[0]) - 1, 0))
    steps = cloning_branch_steps(schedule, t_S, span=span, n_branch=n_branch, t_classify=t_classify)
    return steps, int(t_classify)


def sign_cloning(eps_fn, schedule, N: int, steps, t_classify: int, n_pairs: int, seed: SeedLike = None,
                 x_T=None) -> dict:
    """:func:`physdiff.reverse.cloning` classified by the sign of ``M``, with the crossing of 0.7752.

    Returns a dict: ``phi``, ``phi_stderr`` (in the order of ``steps``), ``speciation_time`` and
    ``speciation_time_stderr`` (NaN when ``phi`` does not cross inside the steps), ``baseline``,
    ``share_plus`` (originals ending with ``M > 0``).
    """
    rng = as_generator(seed)
    res = cloning(eps_fn, schedule, sign_labels, steps, n_pairs, N, seed=rng, x_T=x_T, t_classify=t_classify)
    t_x, t_err = res.speciation_time(seed=rng, missing="nan")
    return {"phi": res.phi, "phi_stderr": res.phi_stderr, "speciation_time": t_x, "speciation_time_stderr": t_err,
            "baseline": res.baseline, "share_plus": float(np.mean(res.labels == 1))}


def model_cloning(model, steps, t_classify: int, n_pairs: int, seed: SeedLike = None) -> dict:
    """:func:`sign_cloning` of a DDPM, run in torch on the model's device from ``N(0, I)``."""
    import torch

    rng = as_generator(seed)
    x_T = torch.from_numpy(rng.standard_normal((n_pairs, model.d)).astype(np.float32)).to(model.device)
    return sign_cloning(model.eps_fn, model.schedule, model.d, steps, t_classify, n_pairs, seed=rng, x_T=x_T)


def exact_cloning(schedule, N: int, beta: float, h: float, steps, t_classify: int, n_pairs: int,
                  seed: SeedLike = None) -> dict:
    """:func:`sign_cloning` with the exact finite-N Curie-Weiss score, float64 numpy."""
    from ..reverse import eps_from_score

    eps = eps_from_score(lambda x, ab: cw.score(x, ab, beta, h), schedule)
    return sign_cloning(eps, schedule, N, steps, t_classify, n_pairs, seed=seed)


_SW_NAMES = {
    "share_plus": "share of generated samples with M > 0",
    "share_plus_stderr": "binomial standard error of share_plus",
    "ratio": "share(+) / share(-) of generated samples",
    "ratio_stderr": "delta-method standard error of ratio",
    "share_plus_data_spread": "standard deviation of the share of M > 0 in a training set of P exact samples",
    "z_exact": "(share_plus - exact) / sqrt(stderr^2 + p (1 - p) / P)",
    "share_plus_train": "share of M > 0 in the training set",
}
_MEM_NAMES = {
    "copy_share": "share of generated samples whose sign configuration is a training configuration",
    "copy_share_stderr": "binomial standard error of copy_share",
    "copy_share_baseline": "copy_share of fresh exact samples against the training set",
    "copy_share_reference": "copy_share of the generated samples against an independent exact set of P",
    "rare_copy_share": "share of samples copying a training configuration a with P q(a) < 0.01",
    "rare_copy_share_stderr": "binomial standard error of rare_copy_share",
    "rare_copy_share_baseline": "rare_copy_share of fresh exact samples",
    "rare_copy_share_reference": "rare_copy_share against an independent exact set of P",
    "rare_share": "share of samples with a configuration a with P q(a) < 0.01",
    "overlap_max_mean": "mean over samples of the largest overlap sign(x).a / N with the training set",
    "overlap_max_mean_baseline": "overlap_max_mean of fresh exact samples",
    "overlap_max_mean_reference": "overlap_max_mean against an independent exact set of P",
    "collapse_time": "collapse time t_C(P) of P Gaussian points of variance 1 - m*^2 in N dimensions",
    "memorization_checked": "1 if the training set was rebuilt and verified, else 0",
}


def state_weight_datasets(models, train_sets, *, n_generate: int,
                          seed: SeedLike = None) -> tuple[xr.Dataset, xr.Dataset]:
    """State weights and memorisation of Curie-Weiss models (same ``N``, ``beta``, ``h``), one row
    per model along the dimension ``model`` (sorted by ``P``, the training-set size).

    Each model generates ``n_generate`` samples: :func:`physdiff.metrics.state_weights` against the
    exact and large-N weights, and :func:`physdiff.metrics.curie_weiss_memorization` against the
    training set (``train_sets[i]``; None: memorisation not checked, NaN) with fresh exact samples
    and an independent exact set of ``P`` as controls; the collapse time
    :func:`physdiff.theory.gaussian.collapse_time` with ``sigma2 = 1 - m*^2``.
    """
    N, beta, h = data_law(models[0])
    rng = as_generator(seed)
    m_star = cw.m_star(beta, h)
    sigma2 = 1.0 - m_star**2 if m_star > 0 else 1.0
    rows = []
    for model, train in zip(models, train_sets):
        x = model.sample(n_generate, seed=rng)
        x = x.cpu().numpy() if hasattr(x, "cpu") else np.asarray(x)
        P = int(model.data.get("n_train", model.data.get("n", 0)) or 0)
        row = metrics.state_weights(x, N, beta, h, P=max(P, 1)) | {
            "P": P, "collapse_time": gaussian.collapse_time(max(P, 1), N, sigma2),
            "memorization_checked": int(train is not None)}
        if train is not None:
            fresh = datasets.curie_weiss(n_generate, N, beta, h, seed=rng)
            reference = datasets.curie_weiss(len(train), N, beta, h, seed=rng)
            row |= metrics.curie_weiss_memorization(x, train, beta=beta, h=h, fresh=fresh, reference=reference)
        else:
            row |= {k: math.nan for k in (*_MEM_NAMES, "share_plus_train") if k not in row}
        rows.append(row)
    rows = [rows[i] for i in np.argsort([r["P"] for r in rows], kind="stable")]
    col = lambda k: np.asarray([r[k] for r in rows])  # noqa: E731
    ratio_train = col("share_plus_train") / (1 - col("share_plus_train"))
    coords = {"model": ("model", np.arange(len(rows)), {**ONE, "long_name": "model index, sorted by P"}),
              "P": ("model", col("P"), {**ONE, "long_name": "training configurations P"})}
    sw = xr.Dataset({k: var("model", col(k), long) for k, long in _SW_NAMES.items()}
                    | {"ratio_train": var("model", ratio_train, "share(+) / share(-) in the training set")},
                    coords=coords,
                    attrs={k: rows[0][k] for k in ("share_plus_exact", "ratio_exact", "share_plus_large_N",
                                                   "ratio_large_N", "H", "m_star")} | {"n_generate": n_generate})
    mem = xr.Dataset({k: var("model", col(k), long) for k, long in _MEM_NAMES.items()}, coords=coords,
                     attrs={"sigma2": sigma2, "n_generate": n_generate,
                            "speciation_time_theory": 0.5 * math.log(cw.top_eigenvalue(N, beta, h))})
    return sw, mem


def plot_state_weights(sw: xr.Dataset, mem: xr.Dataset):
    """Share of ``M > 0``, the ratio share(+)/share(-) and the memorisation measures against ``P``."""
    from matplotlib.figure import Figure

    P = sw["P"].values
    fig = Figure(figsize=(13, 3.7))
    a, b, c = fig.subplots(1, 3)
    p_ex = float(sw.attrs["share_plus_exact"])
    a.errorbar(P, sw["share_plus"], yerr=sw["share_plus_stderr"], fmt="o", ms=4, capsize=2, color="C3",
               label="generated")
    a.plot(P, sw["share_plus_train"], "x", color="C0", label="training set")
    a.fill_between(P, p_ex - sw["share_plus_data_spread"], p_ex + sw["share_plus_data_spread"], color="0.85",
                   label=r"$\pm$ sd of a training set of P")
    a.axhline(p_ex, color="k", lw=1, label="exact P(M>0), this N")
    a.axhline(float(sw.attrs["share_plus_large_N"]), color="k", lw=1, ls=":", label="large N: 1/(1+exp(-2Hm*))")
    a.set_ylabel("share of samples with M > 0")
    b.errorbar(P, sw["ratio"], yerr=sw["ratio_stderr"], fmt="o", ms=4, capsize=2, color="C3", label="generated")
    b.plot(P, sw["ratio_train"], "x", color="C0", label="training set")
    b.axhline(float(sw.attrs["ratio_exact"]), color="k", lw=1, label="exact, this N")
    b.axhline(float(sw.attrs["ratio_large_N"]), color="k", lw=1, ls=":", label="exp(2 H m*)")
    b.set_ylabel("share(+) / share(-)")
    c.errorbar(P, mem["rare_copy_share"], yerr=mem["rare_copy_share_stderr"], fmt="o", ms=4, capsize=2, color="C3",
               label="copies of a rare training config")
    c.plot(P, mem["rare_copy_share_reference"], "D", ms=3, color="C0",
           label="copies of a rare config of an independent set")
    c.plot(P, mem["copy_share"], "o", ms=3, mfc="none", color="C3", label="copies of any training config")
    c.plot(P, mem["copy_share_baseline"], "s", ms=3, color="0.5", label="fresh exact samples: copies")
    c.plot(P, mem["overlap_max_mean"], "^-", ms=3, lw=0.8, color="C3", label="mean max overlap")
    c.plot(P, mem["overlap_max_mean_reference"], "^:", ms=3, lw=0.8, color="C0", label="... with an independent set")
    c.set_ylabel("memorisation")
    c.set_ylim(-0.03, 1.03)
    tc = mem["collapse_time"].values
    c.set_title(f"t_C(P) from {tc.max():.2f} to {tc.min():.2f} vs t_S = "
                f"{float(mem.attrs['speciation_time_theory']):.2f}", fontsize=8)
    for ax in (a, b, c):
        ax.legend(fontsize=6)
        if len(P) > 1:
            ax.set_xscale("log")
        ax.set_xlabel("training configurations P")
    fig.suptitle(f"state weights, H = hN = {float(sw.attrs['H']):.3g}, {int(sw.attrs['n_generate'])} samples per model",
                 fontsize=9)
    fig.tight_layout()
    return fig
