"""Reconstruction of held-out MNIST digits from their diffused versions, over the start time [Thesis].

Each held-out image ``x0`` (MNIST test split, the model's digits) is diffused once with the closed
form ``x_t = sqrt(alpha_bar) x0 + sqrt(1 - alpha_bar) eps`` [Ho20, eq. 4] and the learned reverse
chain is run ``n_recon`` times from that ``x_t`` back to step 0 [Ho20, Algorithm 2]. Start times
are given in steps of the thesis' schedule (linear 1e-4..0.02, ``T = 1000``); a model with another
schedule runs from its own step of the same physical time (:func:`physdiff.schedules.map_steps`).
The thesis found reconstructions reliable to about ``t = 400`` of 1000.

References
----------
[Ho20] Ho, Jain, Abbeel (2020), arXiv:2006.11239: eq. 4 (closed-form jump), Algorithm 2.
[Thesis] Bustinduy de la Guerra (2024), Out-of-Equilibrium Machine Learning (UCM).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import xarray as xr

from .._util import check_positive_int, check_real
from . import register
from ._mnist import (IMAGE_SHAPE, MNISTModelParams, binomial_stderr, check_steps, classifier, cluster_stderr,
                     examples, mnist_setup, select_images, var)

__all__ = ["Params", "run", "plot", "TINY"]


@register("reconstruction", title="Reconstruction of held-out MNIST digits from x_t, over the start time")
@dataclass(frozen=True)
class Params(MNISTModelParams):
    """Parameters of the reconstruction study (defaults: the quick settings)."""

    t_start: tuple[int, ...] = field(default=tuple(range(100, 1000, 100)), metadata={
        "help": "start steps, in steps of the thesis' T = 1000 linear schedule"})
    n_images: int = field(default=200, metadata={
        "help": "held-out images (test split), split evenly over the digits; 0: all 2115"})
    n_recon: int = field(default=8, metadata={"help": "reconstructions per image"})
    n_show: int = field(default=4, metadata={"help": "reconstructions shown per example image"})
    n_examples: int = field(default=2, metadata={"help": "example images in the figure"})
    reliable_level: float = field(default=0.9, metadata={
        "help": "share of reconstructions of the original digit that counts as reliable"})
    sigma: str = field(default="", metadata={"help": "reverse-step variance: beta or posterior; empty: the model's"})
    seed: int = field(default=0, metadata={"help": "random seed", "coord": True})

    def __post_init__(self):
        super().__post_init__()
        check_steps("t_start", self.t_start)
        check_positive_int("n_images", self.n_images, minimum=0)
        for name in ("n_recon", "n_show", "n_examples"):
            check_positive_int(name, getattr(self, name))
        check_real("reliable_level", self.reliable_level, lo=0.0, hi=1.0, lo_open=True, hi_open=True)
        check_positive_int("seed", self.seed, minimum=0)
        if self.sigma not in ("", "beta", "posterior"):
            raise ValueError(f"sigma must be 'beta', 'posterior' or empty, got {self.sigma!r}")


#: A run of a few seconds on one core (tests).
TINY = dict(n_train=400, T=25, hidden=32, epochs=1, classifier_images=2000,
            classifier_epochs=1, t_start=(0, 100, 900), n_images=6, n_recon=3, n_show=2)


def _drop_below(x, y, level: float) -> float:
    """Where ``y`` first falls below ``level`` along increasing ``x``, linearly interpolated; ``x[0]``
    if already below there, NaN if never."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    below = np.flatnonzero(y < level)
    if below.size == 0:
        return math.nan
    k = int(below[0])
    if k == 0:
        return float(x[0])
    return float(x[k - 1] + (y[k - 1] - level) * (x[k] - x[k - 1]) / (y[k - 1] - y[k]))


def _reconstruct(model, x0, k_model: int, n_recon: int, sigma: str, rng) -> tuple[np.ndarray, np.ndarray]:
    """Diffuse ``x0`` to model step ``k_model`` once and run the reverse chain ``n_recon`` times from it:
    ``(x_t (n, d), reconstructions (n, n_recon, d))``, float32."""
    import torch

    from ..reverse import reverse_chain

    if k_model == 0:
        return x0.copy(), np.repeat(x0[:, None], n_recon, axis=1)
    ab = float(model.schedule.alpha_bar[k_model])
    eps = rng.standard_normal(x0.shape, dtype=np.float32)
    x_t = (math.sqrt(ab) * x0 + math.sqrt(1.0 - ab) * eps).astype(np.float32)
    start = torch.from_numpy(np.repeat(x_t, n_recon, axis=0)).to(model.device)
    rec = reverse_chain(model.eps_fn, start, model.schedule, t_start=k_model, seed=rng, sigma=sigma)
    return x_t, rec.cpu().numpy().astype(np.float32).reshape(x0.shape[0], n_recon, -1)


def _scan(p, setup, steps, pick, clf, sigma) -> dict:
    """Reconstruct at every start step; per-draw labels, distances and identity."""
    from .. import metrics

    x0 = setup.x_held[pick]
    n, K = len(pick), steps["step"].size
    ex = examples(setup.y_held[pick], setup.digits, p.n_examples)
    out = {"predicted": np.empty((K, n, p.n_recon), np.int64), "l2": np.empty((K, n, p.n_recon), np.float32),
           "nearest_is_original": np.empty((K, n, p.n_recon), bool), "l2_diffused": np.empty((K, n), np.float32),
           "l2_between_recon": np.full(K, math.nan), "example_diffused": np.empty((K, ex.size, 784), np.float32),
           "example_recon": np.empty((K, ex.size, p.n_show, 784), np.float32), "ex": ex}
    for k in range(K):
        km = int(steps["model_step"][k])
        rng = np.random.default_rng([p.seed, 2, int(steps["step"][k])])
        x_t, rec = _reconstruct(setup.model, x0, km, p.n_recon, sigma, rng)
        flat = rec.reshape(-1, 784)
        out["predicted"][k] = clf.predict(np.clip(flat, -1, 1)).reshape(n, p.n_recon)
        out["l2"][k] = np.linalg.norm(rec - x0[:, None, :], axis=-1)
        out["l2_diffused"][k] = np.linalg.norm(x_t / math.sqrt(steps["model_alpha_bar"][k]) - x0, axis=-1)
        nearest, _ = metrics.nearest_index(flat, setup.x_held)
        out["nearest_is_original"][k] = (nearest == np.repeat(pick, p.n_recon)).reshape(n, p.n_recon)
        if p.n_recon > 1:
            i, j = np.triu_indices(p.n_recon, k=1)
            out["l2_between_recon"][k] = float(np.linalg.norm(rec[:, i] - rec[:, j], axis=-1).mean())
        out["example_diffused"][k] = x_t[ex]
        out["example_recon"][k] = rec[ex, :p.n_show]
    return out


def run(params: Params, progress: bool = False) -> dict[str, xr.Dataset]:
    """Reconstruction of held-out images at every start time ``t_start``.

    Measured per start time: the share of reconstructions the classifier labels as the original's
    digit (binomial error over all draws, and the between-image one, honest when draws of one image
    are correlated), per digit too; the share labelled as either training digit; the share whose
    nearest held-out image is the original itself (identity kept, not just the class,
    :func:`physdiff.metrics.nearest_index`); the mean ``|x_rec - x0|`` with, as references,
    ``|x_t / sqrt(alpha_bar) - x0|``, the distance between two reconstructions of one image and
    between two held-out images of the same digit (:func:`physdiff.metrics.same_digit_distance`).
    "Reliable up to" is the thesis step where the original-digit share first drops below
    ``reliable_level`` (interpolated).

    Returns
    -------
    dict
        ``{"reconstruction": Dataset}``: dims ``step`` (thesis start step; coords ``time``,
        ``alpha_bar``, ``model_step``, ``model_time``), ``image``, ``recon``, ``digit``, ``example``,
        ``shown``, ``row``, ``col``; per-draw ``predicted``, ``l2``, ``nearest_is_original``; the
        summaries per step; the headline scalars (``reliable_up_to`` ...); example images.

    Raises
    ------
    ValueError, FileNotFoundError
        As :func:`physdiff.studies._mnist.mnist_setup`.
    """
    from .. import metrics
    from ..schedules import map_steps

    p = params
    setup = mnist_setup(p, progress)
    sigma = setup.model._sigma(p.sigma or None)
    steps = map_steps(setup.model.schedule, np.unique(np.asarray(p.t_start, dtype=np.int64)))
    pick = select_images(setup.y_held, p.n_images, setup.digits, [p.seed, 1])
    clf = classifier(p)
    scan = _scan(p, setup, steps, pick, clf, sigma)
    y0 = setup.y_held[pick]
    same = metrics.same_digit_distance(setup.x_held, setup.y_held)
    ds = _dataset(p, setup, steps, pick, scan, same["mean"])
    ds["share_original_of_originals"] = var((), float(np.mean(clf.predict(setup.x_held[pick]) == y0)), "1",
                                            "share of the original images classified as their digit")
    ds["classifier_test_accuracy"] = var((), float(getattr(clf, "test_accuracy", math.nan)), "1",
                                         "digit classifier's accuracy on the MNIST test split")
    ds.attrs.update(model=setup.source, T=int(setup.model.T), digits=list(map(int, setup.digits)), sigma=sigma,
                    n_heldout=int(len(setup.x_held)))
    return {"reconstruction": ds}


def _summaries(correct, in_digits, nearest, l2, y0, digits) -> dict:
    N = correct[0].size
    return {
        "share_original": var("step", correct.mean(axis=(1, 2)), "1",
                              "share of reconstructions classified as the original's digit"),
        "share_original_stderr": var("step", [binomial_stderr(float(c.mean()), N) for c in correct], "1",
                                     "binomial standard error of share_original (all draws)"),
        "share_original_stderr_images": var("step", [cluster_stderr(c.mean(axis=1)) for c in correct], "1",
                                            "standard error of share_original with images as the units"),
        "share_original_by_digit": var(("step", "digit"), [[float(c[y0 == d].mean()) if np.any(y0 == d) else math.nan
                                                            for d in digits] for c in correct], "1",
                                       "share_original per digit of the original"),
        "share_in_digits": var("step", in_digits.mean(axis=(1, 2)), "1",
                               "share of reconstructions classified as one of the training digits"),
        "share_nearest_original": var("step", nearest.mean(axis=(1, 2)), "1",
                                      "share of reconstructions whose nearest held-out image is the original"),
        "share_nearest_original_stderr_images": var("step", [cluster_stderr(c.mean(axis=1)) for c in nearest], "1",
                                                    "standard error of share_nearest_original, images as units"),
        "l2_mean": var("step", l2.mean(axis=(1, 2), dtype=np.float64), "1", "mean |x_rec - x0| (pixels in [-1, 1])"),
        "l2_mean_stderr_images": var("step", [cluster_stderr(c.mean(axis=1)) for c in l2], "1",
                                     "standard error of l2_mean with images as the units"),
    }


def _dataset(p, setup, steps, pick, scan, l2_same) -> xr.Dataset:
    """The ``reconstruction`` Dataset."""
    y0, digits, ex = setup.y_held[pick], setup.digits, scan["ex"]
    K, n = scan["l2"].shape[:2]
    correct = scan["predicted"] == y0[None, :, None]
    data = _summaries(correct, np.isin(scan["predicted"], digits), scan["nearest_is_original"], scan["l2"], y0,
                      digits)
    data.update(
        predicted=var(("step", "image", "recon"), scan["predicted"], "1", "classifier's digit of each reconstruction"),
        l2=var(("step", "image", "recon"), scan["l2"], "1", "|x_rec - x0| (pixels in [-1, 1])"),
        nearest_is_original=var(("step", "image", "recon"), scan["nearest_is_original"], "1",
                                "the reconstruction's nearest held-out image is its original"),
        l2_diffused=var(("step", "image"), scan["l2_diffused"], "1", "|x_t / sqrt(alpha_bar) - x0|"),
        l2_between_recon=var("step", scan["l2_between_recon"], "1", "mean distance between two reconstructions"),
        l2_same_digit=var((), l2_same, "1", "mean distance between two held-out images of the same digit"),
        example_original=var(("example", "row", "col"), setup.x_held[pick][ex].reshape(-1, *IMAGE_SHAPE), "1",
                             "example originals (pixels in [-1, 1])"),
        example_diffused=var(("step", "example", "row", "col"), scan["example_diffused"].reshape(K, -1, *IMAGE_SHAPE),
                             "1", "example diffused images x_t"),
        example_recon=var(("step", "example", "shown", "row", "col"),
                          scan["example_recon"].reshape(K, ex.size, p.n_show, *IMAGE_SHAPE), "1",
                          "example reconstructions"))
    ts = steps["step"].astype(np.float64)
    head = {"reliable_up_to": (_drop_below(ts, data["share_original"][1], p.reliable_level),
                               "thesis step where share_original first drops below reliable_level"),
            "identity_lost_at": (_drop_below(ts, data["share_nearest_original"][1], 0.5),
                                 "thesis step where share_nearest_original drops below 1/2"),
            "l2_above_same_digit_at": (_drop_below(ts, l2_same - data["l2_mean"][1], 0.0),
                                       "thesis step where l2_mean exceeds l2_same_digit")}
    data.update({k: var((), v, "1", ln) for k, (v, ln) in head.items()})
    data["reliable_level"] = var((), p.reliable_level, "1", "share_original counted as reliable")
    unit = {"units": "1"}
    coords = {"step": ("step", steps["step"], {"long_name": "start step of the thesis' T=1000 schedule", **unit}),
              "time": ("step", steps["time"], {"long_name": "physical time -(1/2) log alpha_bar", **unit}),
              "alpha_bar": ("step", steps["alpha_bar"], {"long_name": "alpha_bar of the start step", **unit}),
              "model_step": ("step", steps["model_step"], {"long_name": "the model's step of that time", **unit}),
              "model_time": ("step", steps["model_time"], {"long_name": "physical time of model_step", **unit}),
              "model_alpha_bar": ("step", steps["model_alpha_bar"], {"long_name": "alpha_bar of model_step", **unit}),
              "image": np.arange(n), "label": ("image", y0), "heldout_index": ("image", pick),
              "recon": np.arange(p.n_recon), "digit": np.asarray(digits, dtype=np.int64),
              "example": np.arange(ex.size), "example_label": ("example", y0[ex]), "example_image": ("example", ex),
              "shown": np.arange(p.n_show)}
    return xr.Dataset(data, coords=coords)


# ---------------------------------------------------------------------------------------------
# figures
# ---------------------------------------------------------------------------------------------

def _plot_grid(ds: xr.Dataset):
    """The thesis' figure: rows = start step; per example: original, diffused, reconstructions."""
    from matplotlib.figure import Figure

    K, E, S = ds.sizes["step"], ds.sizes["example"], ds.sizes["shown"]
    cols = E * (S + 2)
    fig = Figure(figsize=(cols * 0.75 + 1.2, K * 0.8 + 0.5))
    axes = fig.subplots(K, cols, squeeze=False)
    for k in range(K):
        for e in range(E):
            ims = [ds["example_original"].values[e], ds["example_diffused"].values[k, e],
                   *ds["example_recon"].values[k, e]]
            for j, im in enumerate(ims):
                ax = axes[k, e * (S + 2) + j]
                ax.imshow(np.clip(im, -1, 1), cmap="gray", vmin=-1, vmax=1)
                ax.set_xticks([])
                ax.set_yticks([])
                if k == 0:
                    ax.set_title(["original", "diffused"][j] if j < 2 else f"rec. {j - 1}", fontsize=6)
        axes[k, 0].set_ylabel(f"t={int(ds['step'][k])}\n(step {int(ds['model_step'][k])})", fontsize=6)
    fig.suptitle(f"reconstruction from x_t (thesis steps of T=1000; model T={ds.attrs.get('T')}); reliable up to "
                 f"t = {float(ds['reliable_up_to']):.0f}", fontsize=8)
    fig.subplots_adjust(wspace=0.05, hspace=0.05)
    return fig


def _plot_scores(ds: xr.Dataset):
    from matplotlib.figure import Figure

    t = ds["step"].values
    fig = Figure(figsize=(10, 3.8))
    a, b = fig.subplots(1, 2)
    a.errorbar(t, ds["share_original"], yerr=ds["share_original_stderr_images"], fmt="o-", ms=3, capsize=2,
               label="classified as the original's digit")
    a.errorbar(t, ds["share_nearest_original"], yerr=ds["share_nearest_original_stderr_images"], fmt="s-", ms=3,
               capsize=2, label="nearest held-out image is the original")
    a.plot(t, ds["share_in_digits"], "^:", ms=3, label="classified as a training digit")
    a.axhline(float(ds["reliable_level"]), color="0.5", lw=0.8, ls=":")
    a.axvline(400, color="k", lw=0.8, ls="--", label="thesis: reliable to ~400")
    a.set_xlabel("start step (of the thesis' T = 1000)")
    a.set_ylabel("share of reconstructions")
    a.set_ylim(-0.02, 1.02)
    a.legend(fontsize=7)
    b.errorbar(t, ds["l2_mean"], yerr=ds["l2_mean_stderr_images"], fmt="o-", ms=3, capsize=2, label="|x_rec - x0|")
    b.plot(t, ds["l2_diffused"].mean("image"), "s:", ms=3, label="|x_t / sqrt(alpha_bar) - x0|")
    b.plot(t, ds["l2_between_recon"], "^-", ms=3, label="between two reconstructions")
    b.axhline(float(ds["l2_same_digit"]), color="k", lw=1, ls="--", label="two held-out images, same digit")
    b.set_yscale("symlog", linthresh=1.0)
    b.set_xlabel("start step (of the thesis' T = 1000)")
    b.set_ylabel("mean Euclidean distance (pixels in [-1, 1])")
    b.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot(datasets: dict[str, xr.Dataset]) -> dict:
    """``{"reconstruction": Figure, "reconstruction_scores": Figure}``."""
    ds = datasets["reconstruction"]
    return {"reconstruction": _plot_grid(ds), "reconstruction_scores": _plot_scores(ds)}
