"""The thesis' Annex II baseline: the same DDPM with linear nets cannot turn noise into digits.

A DDPM with the MNIST model's config but ``activation="linear"`` is trained on the same images
(:func:`physdiff.baselines.train_linear_baseline`). With ``init="gaussian"`` every linear net starts
at the exact noise predictor of the data's Gaussian fit, the optimum of any affine net
(:func:`physdiff.theory.autoencoder.gaussian_optimal_loss`). The per-step loss of the untrained
Gaussian-init linear model, of the trained one and of the ReLU model is measured on the same noise
(:func:`physdiff.baselines.eps_loss`, training and held-out images) against that optimum ``L*(t)``:
the ReLU model can go below it (it learns the non-Gaussian part), no linear net can. Samples of the
three models and of the Gaussian fit itself are then compared by class, confidence, copies
[Yoon23], Wasserstein distances and pixel covariance. See ``docs/theory.md``, "MNIST studies".

References
----------
[Ho20] Ho, Jain, Abbeel (2020), arXiv:2006.11239, eq. 4 and Algorithm 1.
[Yoon23] Yoon et al. (2023): a sample is a copy if ``d1 / d2 < 1/3``.
[Thesis] Bustinduy de la Guerra (2024), Out-of-Equilibrium Machine Learning (UCM), Annex II.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import xarray as xr

from .._util import check_positive_int
from . import register
from ._mnist import IMAGE_SHAPE, MNISTModelParams, binomial_stderr, classifier, mnist_setup, mosaic, var

__all__ = ["Params", "run", "plot", "TINY"]


@register("linear-baseline", title="Linear nets cannot reverse MNIST: losses against the affine optimum, samples")
@dataclass(frozen=True)
class Params(MNISTModelParams):
    """Parameters of the linear-baseline study (defaults: the quick settings)."""

    # One epoch: the linear nets start at the affine optimum L*(t) (the Gaussian start), so Adam can
    # only show that it does not leave it; each epoch of the quick config's 100 nets of 784-2400-784
    # costs ~190 s on 2 cores.
    linear_epochs: int = field(default=1, metadata={"help": "training epochs of the linear model"})
    n_samples: int = field(default=512, metadata={"help": "samples per model"})
    n_loss_images: int = field(default=500, metadata={
        "help": "training (and held-out) images on which the per-step loss is measured"})
    sigma: str = field(default="", metadata={"help": "reverse-step variance: beta or posterior; empty: the model's"})
    seed: int = field(default=0, metadata={"help": "random seed", "coord": True})

    def __post_init__(self):
        super().__post_init__()
        check_positive_int("linear_epochs", self.linear_epochs)
        check_positive_int("n_samples", self.n_samples, minimum=2)
        check_positive_int("n_loss_images", self.n_loss_images)
        check_positive_int("seed", self.seed, minimum=0)
        if self.sigma not in ("", "beta", "posterior"):
            raise ValueError(f"sigma must be 'beta', 'posterior' or empty, got {self.sigma!r}")


#: A run of a few seconds on one core (tests).
TINY = dict(n_train=400, T=25, hidden=32, epochs=1, classifier_images=2000,
            classifier_epochs=1, linear_epochs=1, n_samples=16, n_loss_images=64)


def _pixel_wasserstein(x, y) -> float:
    """Mean over pixels of the 1-D Wasserstein-1 distance between the values a pixel takes in ``x``
    and in ``y`` (:func:`scipy.stats.wasserstein_distance`): real pixels are nearly binary, a
    Gaussian's are not."""
    from scipy.stats import wasserstein_distance

    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    return float(np.mean([wasserstein_distance(x[:, j], y[:, j]) for j in range(x.shape[1])]))


def _losses(p, setup, lin, lin_init) -> np.ndarray:
    """Monte Carlo per-step loss ``(loss_model, split, T)`` of the three models, the same noise for all."""
    from ..baselines import eps_loss

    def subset(x, key):
        return x[np.sort(np.random.default_rng([p.seed, key]).permutation(len(x))[:min(p.n_loss_images, len(x))])]

    sets = (subset(setup.x_train, 6), subset(setup.x_held, 9))
    models = [lin_init, lin, setup.model]
    return np.stack([eps_loss(models, xs, seed=np.random.default_rng([p.seed, 8, k])) for k, xs in enumerate(sets)],
                    axis=1)


def _sample_rows(p, setup, samples, clf) -> dict:
    """Quality numbers of every model's samples (rows of the ``model`` dimension)."""
    from .. import metrics

    cov = np.cov(setup.x_train.astype(np.float64), rowvar=False)
    rows = {}
    for name, smp in samples.items():
        proba = clf.predict_proba(np.clip(smp, -1, 1))
        pred = proba.argmax(axis=1)
        nn = metrics.nearest_neighbours(smp, setup.x_train, k=2)
        c = np.cov(smp.astype(np.float64), rowvar=False)
        rows[name] = {"share_in_digits": float(np.mean(np.isin(pred, setup.digits))),
                      "class_share": np.bincount(pred, minlength=10) / len(smp),
                      "confidence": float(proba.max(axis=1).mean()),
                      "copy_share": float(np.mean(metrics.copy_check(smp, setup.x_train))),
                      "median_d1": float(np.median(nn[:, 0])),
                      "sliced_wasserstein": metrics.sliced_wasserstein(smp, setup.x_held, seed=p.seed + 7),
                      "pixel_wasserstein": _pixel_wasserstein(smp, setup.x_held),
                      "cov_relative_error": float(np.linalg.norm(c - cov) / np.linalg.norm(cov)),
                      "pixels_outside": float(np.mean(np.abs(smp) > 1.0))}
    return rows


def run(params: Params, progress: bool = False) -> dict[str, xr.Dataset]:
    """Train the linear twin, measure every model's per-step loss against ``L*``, sample and compare.

    Returns
    -------
    dict
        ``{"linear_baseline": Dataset}``: dims ``model`` (``relu``, ``linear``, ``linear_init``,
        ``gaussian_fit``), ``sample``, ``row``, ``col``, ``digit`` (0..9), ``epoch``, ``step`` (coords
        ``alpha_bar``, ``time``), ``loss_model``, ``split`` (``train``, ``heldout``); ``image``, the
        per-model quality numbers, ``loss_linear(epoch, step)`` and ``loss_relu_last(step)``
        (training records), ``loss_gaussian_optimum(step)``, ``loss(loss_model, split, step)``
        (Monte Carlo) and the floors of real training images against held-out ones.

    Raises
    ------
    ValueError, FileNotFoundError
        As :func:`physdiff.studies._mnist.mnist_setup`.
    """
    from .. import metrics
    from ..baselines import gaussian_fit_samples, gaussian_init_model, train_linear_baseline
    from ..theory.autoencoder import gaussian_optimal_loss

    p = params
    setup = mnist_setup(p, progress)
    relu = setup.model
    sigma = relu._sigma(p.sigma or None)
    lin = train_linear_baseline(relu, setup.x_train, epochs=p.linear_epochs, seed=p.seed, progress=progress)
    lin_init = gaussian_init_model(setup.x_train, relu)
    L_opt = gaussian_optimal_loss(np.cov(setup.x_train.astype(np.float64), rowvar=False), relu.schedule.alpha_bar[1:])
    L_mc = _losses(p, setup, lin, lin_init)
    samples = {name: m.sample(p.n_samples, seed=np.random.default_rng([p.seed, 5]), sigma=sigma)
               for name, m in (("relu", relu), ("linear", lin), ("linear_init", lin_init))}
    samples["gaussian_fit"] = gaussian_fit_samples(setup.x_train, p.n_samples,
                                                   seed=np.random.default_rng([p.seed, 4]))
    clf = classifier(p)
    rows = _sample_rows(p, setup, samples, clf)
    floors = {"sliced_wasserstein_reference": metrics.sliced_wasserstein(setup.x_train, setup.x_held,
                                                                         seed=p.seed + 7),
              "pixel_wasserstein_reference": _pixel_wasserstein(setup.x_train, setup.x_held),
              "median_d1_heldout": float(np.median(metrics.nearest_neighbours(setup.x_held, setup.x_train, k=1))),
              "copy_share_heldout": float(np.mean(metrics.copy_check(setup.x_held, setup.x_train))),
              "classifier_test_accuracy": float(getattr(clf, "test_accuracy", math.nan))}
    ds = _dataset(p, setup, lin, samples, rows, L_opt, L_mc, floors)
    ds.attrs.update(model=setup.source, T=int(relu.T), digits=list(map(int, setup.digits)), sigma=sigma,
                    hidden=int(relu.config.hidden), linear_init=lin.config.init, n_train=int(len(setup.x_train)))
    return {"linear_baseline": ds}


_ROWS = {  # name: long_name (all dimensionless or in pixel units of [-1, 1])
    "share_in_digits": "share of samples classified as one of the training digits",
    "confidence": "mean top class probability of the samples",
    "copy_share": "share of samples that copy a training image (d1 / d2 < 1/3)",
    "median_d1": "median distance of a sample to its nearest training image",
    "sliced_wasserstein": "sliced 2-Wasserstein distance to the held-out images",
    "pixel_wasserstein": "mean per-pixel 1-Wasserstein distance to the held-out images",
    "cov_relative_error": "|C_samples - C_train|_F / |C_train|_F",
    "pixels_outside": "share of pixels with |x| > 1",
}
_FLOORS = {
    "sliced_wasserstein_reference": "sliced_wasserstein of the training images against the held-out ones",
    "pixel_wasserstein_reference": "pixel_wasserstein of the training images against the held-out ones",
    "median_d1_heldout": "median distance of a held-out image to its nearest training image",
    "copy_share_heldout": "copy_share of the held-out images",
    "classifier_test_accuracy": "digit classifier's accuracy on the MNIST test split",
}


def _last_epoch_loss(model) -> np.ndarray:
    """The last epoch's training loss per step (T,), float64; NaN for a model without Adam epochs
    (the quick preset's least-squares start)."""
    hist = np.asarray(model.loss_history, dtype=np.float64)
    return hist[-1] if len(hist) else np.full(model.T, np.nan)


def _dataset(p, setup, lin, samples, rows, L_opt, L_mc, floors) -> xr.Dataset:
    """The ``linear_baseline`` Dataset."""
    names = list(samples)
    relu = setup.model
    data = {k: var("model", [rows[m][k] for m in names], "1", ln) for k, ln in _ROWS.items()}
    data.update({k: var((), v, "1", _FLOORS[k]) for k, v in floors.items()})
    data.update(
        image=var(("model", "sample", "row", "col"),
                  np.stack([samples[m] for m in names]).reshape(len(names), p.n_samples, *IMAGE_SHAPE), "1",
                  "samples (pixels in [-1, 1])"),
        share_in_digits_stderr=var("model", [binomial_stderr(rows[m]["share_in_digits"], p.n_samples)
                                             for m in names], "1", "binomial standard error of share_in_digits"),
        class_share=var(("model", "digit"), np.stack([rows[m]["class_share"] for m in names]), "1",
                        "share of samples per predicted digit"),
        loss_linear=var(("epoch", "step"), np.asarray(lin.loss_history, dtype=np.float64), "1",
                        "training loss of the linear model per epoch"),
        loss_relu_last=var("step", _last_epoch_loss(relu), "1",
                           "last-epoch training loss of the ReLU model (NaN: no Adam epoch after its start)"),
        loss_gaussian_optimum=var("step", L_opt, "1", "least eps-loss of any affine predictor, L*(t)"),
        loss=var(("loss_model", "split", "step"), L_mc, "1", "Monte Carlo eps-loss on the same noise for every model"))
    unit = {"units": "1"}
    coords = {"model": names, "sample": np.arange(p.n_samples), "digit": np.arange(10),
              "epoch": np.arange(1, len(lin.loss_history) + 1),
              "step": ("step", np.arange(1, relu.T + 1), {"long_name": "diffusion step", **unit}),
              "alpha_bar": ("step", relu.schedule.alpha_bar[1:], {"long_name": "alpha_bar", **unit}),
              "time": ("step", relu.schedule.physical_time[1:], {"long_name": "physical time", **unit}),
              "loss_model": ["linear_init", "linear", "relu"], "split": ["train", "heldout"]}
    return xr.Dataset(data, coords=coords)


def plot(datasets: dict[str, xr.Dataset], k: int = 8) -> dict:
    """``{"linear_baseline": Figure}``: sample grids of every model, and every model's per-step loss
    over the affine optimum ``L*``."""
    from matplotlib.figure import Figure

    ds = datasets["linear_baseline"]
    names = [str(m) for m in ds["model"].values]
    fig = Figure(figsize=(2.9 * len(names) + 4.6, 3.6))
    subfigs = fig.subfigures(1, len(names) + 1, width_ratios=[1] * len(names) + [1.6], wspace=0.02)
    titles = {"relu": "ReLU nets", "linear": "linear nets, trained", "linear_init": "linear nets at the optimum",
              "gaussian_fit": "Gaussian fit N(mean, cov)"}
    kk = min(k, int(math.isqrt(ds.sizes["sample"])))
    for sf, m in zip(subfigs, names):
        ax = sf.subplots()
        ax.imshow(mosaic(ds["image"].sel(model=m).values[: kk * kk], kk), cmap="gray", vmin=-1, vmax=1)
        ax.axis("off")
        sf.suptitle(f"{titles.get(m, m)}\n0/1 share {float(ds['share_in_digits'].sel(model=m)):.2f}, "
                    f"pixel W1 {float(ds['pixel_wasserstein'].sel(model=m)):.3f}", fontsize=7)
    ax = subfigs[-1].subplots()
    tp, L_opt = ds["time"].values, ds["loss_gaussian_optimum"].values
    ax.axhline(1.0, color="k", lw=1.2, label="affine optimum L*")
    styles = {"linear_init": ("C0", ":"), "linear": ("C0", "-"), "relu": ("C3", "-")}
    for m in ds["loss_model"].values:
        for sp in ds["split"].values:
            c, ls = styles.get(str(m), ("C2", "-"))
            ax.plot(tp, ds["loss"].sel(loss_model=m, split=sp).values / L_opt, color=c,
                    ls=ls if sp == "train" else "--", lw=1, label=f"{m} ({sp} images)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("physical time t")
    ax.set_ylabel("eps-loss / L*")
    ax.legend(fontsize=6)
    ax.set_title("below 1: better than any linear net", fontsize=7)
    return {"linear_baseline": fig}
