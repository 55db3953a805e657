"""Inpainting of a destroyed square patch of held-out MNIST digits, by method [Thesis].

Each held-out image (MNIST test split, the model's digits) gets a ``patch x patch`` square
destroyed (:func:`patch_mask`; the thesis used 14 and 18) and ``n_inpaint`` inpaintings by
:meth:`physdiff.ddpm.DDPM.inpaint` per method: ``"marginal"`` (known pixels re-imposed at each
step from the forward marginal ``q(x_t | x0)`` [Lug22, eq. 8]) and ``"clamp"`` (known pixels held
at the data at every step [SD15, sec. 2.5]); both use the same seed (common random numbers). Two
trivial fills are the baselines: the patch of the training mean image and the patch of the
training image nearest on the known pixels.

References
----------
[SD15] Sohl-Dickstein et al. (2015), arXiv:1503.03585, sec. 2.5.
[Lug22] Lugmayr et al. (2022), RePaint, arXiv:2201.09865, eq. 8.
[Thesis] Bustinduy de la Guerra (2024), Out-of-Equilibrium Machine Learning (UCM).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import xarray as xr

from .._util import check_positive_int
from . import register
from ._mnist import (IMAGE_SHAPE, MNISTModelParams, binomial_stderr, classifier, cluster_stderr, examples,
                     mnist_setup, select_images, var)

__all__ = ["Params", "run", "plot", "TINY", "patch_mask"]

METHODS = ("marginal", "clamp")


@register("inpainting", title="Inpainting a destroyed patch of held-out MNIST digits (marginal and clamp)")
@dataclass(frozen=True)
class Params(MNISTModelParams):
    """Parameters of the inpainting study (defaults: the quick settings)."""

    patch: int = field(default=14, metadata={"help": "side of the destroyed square (the thesis: 14 or 18)"})
    position: tuple[int, ...] = field(default=(), metadata={
        "help": "top-left corner (row col) of the square; empty: centred"})
    methods: str = field(default="marginal,clamp", metadata={"help": "comma-separated: marginal, clamp"})
    n_images: int = field(default=200, metadata={
        "help": "held-out images (test split), split evenly over the digits; 0: all 2115"})
    n_inpaint: int = field(default=8, metadata={"help": "inpaintings per image and method"})
    n_show: int = field(default=6, metadata={"help": "example images in the figure"})
    sigma: str = field(default="", metadata={"help": "reverse-step variance: beta or posterior; empty: the model's"})
    seed: int = field(default=0, metadata={"help": "random seed", "coord": True})

    def __post_init__(self):
        super().__post_init__()
        if len(self.position) not in (0, 2):
            raise ValueError(f"position must be empty or (row, col), got {self.position}")
        patch_mask(self.patch, self.position or None)
        methods = self.methods.split(",")
        if not self.methods or any(m not in METHODS for m in methods) or len(set(methods)) != len(methods):
            raise ValueError(f"methods must be distinct methods from {METHODS}, comma-separated, got {self.methods!r}")
        check_positive_int("n_images", self.n_images, minimum=0)
        check_positive_int("n_inpaint", self.n_inpaint)
        check_positive_int("n_show", self.n_show)
        check_positive_int("seed", self.seed, minimum=0)
        if self.sigma not in ("", "beta", "posterior"):
            raise ValueError(f"sigma must be 'beta', 'posterior' or empty, got {self.sigma!r}")


#: A run of a few seconds on one core (tests).
TINY = dict(n_train=400, T=25, hidden=32, epochs=1, classifier_images=2000,
            classifier_epochs=1, n_images=4, n_inpaint=2, n_show=2)


def patch_mask(patch: int = 14, position=None, shape: tuple[int, int] = IMAGE_SHAPE) -> np.ndarray:
    """The known-pixel mask of an image with a square ``patch x patch`` region destroyed.

    Parameters
    ----------
    patch : int >= 1
        Side of the destroyed square (the thesis: 14 or 18).
    position : (row, col), optional
        Top-left corner of the square; default centred, ``((rows - patch) // 2, (cols - patch) // 2)``.
    shape : (rows, cols)

    Returns
    -------
    ndarray, bool, shape (rows * cols,)
        True where the pixel is KNOWN (outside the square), row-major.

    Raises
    ------
    ValueError
        A patch that does not fit in the image at ``position``.
    """
    rows, cols = shape
    patch = check_positive_int("patch", patch)
    if patch >= min(rows, cols):
        raise ValueError(f"patch must be smaller than the image ({rows}x{cols}), got {patch}")
    if position is None:
        position = ((rows - patch) // 2, (cols - patch) // 2)
    r0, c0 = (int(v) for v in position)
    if not (0 <= r0 <= rows - patch and 0 <= c0 <= cols - patch):
        raise ValueError(f"a {patch}x{patch} patch at (row, col) = ({r0}, {c0}) does not fit in {rows}x{cols}; "
                         f"position must lie in 0..{rows - patch} and 0..{cols - patch}")
    known = np.ones(shape, dtype=bool)
    known[r0:r0 + patch, c0:c0 + patch] = False
    return known.reshape(-1)


def _fills(p, setup, x0, known, sigma) -> tuple[dict, dict]:
    """Draws of every method ``(n, n_inpaint, d)`` and the two baseline fills ``(n, 1, d)``."""
    from .. import metrics

    rep = np.repeat(x0, p.n_inpaint, axis=0)
    draws = {}
    for m in p.methods.split(","):
        x = setup.model.inpaint(rep, known, seed=np.random.default_rng([p.seed, 3]), sigma=sigma, method=m)
        draws[m] = x.reshape(x0.shape[0], p.n_inpaint, -1)
    mean_img = setup.x_train.mean(axis=0, dtype=np.float64).astype(np.float32)
    nn_idx, _ = metrics.nearest_index(x0[:, known], setup.x_train[:, known])
    base = {"train_mean": np.where(known, x0, mean_img[None, :])[:, None],
            "nearest_train": np.where(known, x0, setup.x_train[nn_idx])[:, None]}
    return draws, base


def run(params: Params, progress: bool = False) -> dict[str, xr.Dataset]:
    """Inpainting of held-out images by every method, against the two baseline fills.

    Per fill: the share the classifier labels as the original's digit (binomial and between-image
    standard errors), the share labelled as a training digit, the RMSE inside the patch against
    the original ``sqrt(mean_patch (x - x0)^2)`` (between-image error), and the mean distance
    between two inpaintings of one image inside the patch (diversity; 0 for the baselines).

    Returns
    -------
    dict
        ``{"inpainting": Dataset}``: dims ``fill`` (the methods, then ``train_mean`` and
        ``nearest_train``), ``image`` (coords ``label``, ``heldout_index``), ``sample``, ``digit``,
        ``example``, ``row``, ``col``; ``predicted(fill, image, sample)`` and ``rmse(fill, image,
        sample)`` (a baseline fills sample 0 only, NaN / -1 elsewhere), the per-fill summaries,
        ``known(row, col)`` and example fills.

    Raises
    ------
    ValueError, FileNotFoundError
        As :func:`physdiff.studies._mnist.mnist_setup`.
    """
    p = params
    setup = mnist_setup(p, progress)
    sigma = setup.model._sigma(p.sigma or None)
    known = patch_mask(p.patch, p.position or None)
    pick = select_images(setup.y_held, p.n_images, setup.digits, [p.seed, 1])
    x0, y0 = setup.x_held[pick], setup.y_held[pick]
    draws, base = _fills(p, setup, x0, known, sigma)
    clf = classifier(p)
    fills = {**draws, **base}
    n, S = x0.shape[0], p.n_inpaint
    predicted = np.full((len(fills), n, S), -1, dtype=np.int64)
    rmse = np.full((len(fills), n, S), np.nan, dtype=np.float32)
    for f, x in enumerate(fills.values()):
        k = x.shape[1]
        predicted[f, :, :k] = clf.predict(np.clip(x.reshape(-1, 784), -1, 1)).reshape(n, k)
        rmse[f, :, :k] = np.sqrt(np.mean((x[..., ~known] - x0[:, None, ~known]) ** 2, axis=-1))
    ex = examples(y0, setup.digits, p.n_show)
    ds = _dataset(p, setup, fills, predicted, rmse, pick, known, ex)
    ds["classifier_test_accuracy"] = var((), float(getattr(clf, "test_accuracy", math.nan)), "1",
                                         "digit classifier's accuracy on the MNIST test split")
    ds.attrs.update(model=setup.source, T=int(setup.model.T), digits=list(map(int, setup.digits)), sigma=sigma,
                    n_train=int(len(setup.x_train)))
    return {"inpainting": ds}


def _dataset(p, setup, fills, predicted, rmse, pick, known, ex) -> xr.Dataset:
    """The ``inpainting`` Dataset."""
    y0, digits = setup.y_held[pick], setup.digits
    names = list(fills)
    k = [x.shape[1] for x in fills.values()]  # draws per fill
    corr = [predicted[f, :, :k[f]] == y0[:, None] for f in range(len(names))]
    ind = [np.isin(predicted[f, :, :k[f]], digits) for f in range(len(names))]
    rms = [rmse[f, :, :k[f]] for f in range(len(names))]
    div = []
    for x in fills.values():
        i, j = np.triu_indices(x.shape[1], k=1)
        div.append(float(np.linalg.norm(x[:, i][..., ~known] - x[:, j][..., ~known], axis=-1).mean()) if i.size
                   else 0.0)
    data = {
        "share_original": var("fill", [float(c.mean()) for c in corr], "1", "share classified as the original's digit"),
        "share_original_stderr": var("fill", [binomial_stderr(float(c.mean()), c.size) for c in corr], "1",
                                     "binomial standard error of share_original (all draws)"),
        "share_original_stderr_images": var("fill", [cluster_stderr(c.mean(axis=1)) for c in corr], "1",
                                            "standard error of share_original with images as the units"),
        "share_original_by_digit": var(("fill", "digit"), [[float(c[y0 == d].mean()) if np.any(y0 == d) else math.nan
                                                            for d in digits] for c in corr], "1",
                                       "share_original per digit of the original"),
        "share_in_digits": var("fill", [float(c.mean()) for c in ind], "1", "share classified as a training digit"),
        "rmse_patch": var("fill", [float(r.mean(dtype=np.float64)) for r in rms], "1",
                          "RMSE inside the patch against the original (pixels in [-1, 1])"),
        "rmse_patch_stderr_images": var("fill", [cluster_stderr(r.mean(axis=1)) for r in rms], "1",
                                        "standard error of rmse_patch with images as the units"),
        "patch_diversity": var("fill", div, "1", "mean distance between two fills of one image inside the patch"),
        "predicted": var(("fill", "image", "sample"), predicted, "1", "classifier's digit of each fill (-1: none)"),
        "rmse": var(("fill", "image", "sample"), rmse, "1", "RMSE inside the patch of each fill (NaN: none)"),
        "known": var(("row", "col"), known.reshape(IMAGE_SHAPE), "1", "pixel known (outside the patch)"),
        "example_original": var(("example", "row", "col"), setup.x_held[pick][ex].reshape(-1, *IMAGE_SHAPE), "1",
                                "example originals (pixels in [-1, 1])"),
        "example_fill": var(("fill", "example", "row", "col"),
                            np.stack([x[ex, 0] for x in fills.values()]).reshape(len(names), ex.size, *IMAGE_SHAPE),
                            "1", "first fill of each example (pixels in [-1, 1])"),
    }
    r0, c0 = np.argwhere(~known.reshape(IMAGE_SHAPE))[0]
    coords = {"fill": names, "image": np.arange(len(pick)), "label": ("image", y0), "heldout_index": ("image", pick),
              "sample": np.arange(p.n_inpaint), "digit": np.asarray(digits, dtype=np.int64),
              "example": np.arange(ex.size), "example_label": ("example", y0[ex]), "example_image": ("example", ex)}
    ds = xr.Dataset(data, coords=coords)
    ds.attrs.update(patch=int(p.patch), position=[int(r0), int(c0)])
    return ds


def plot(datasets: dict[str, xr.Dataset]) -> dict:
    """``{"inpainting": Figure}``: per example image, the original, the masked image and every fill."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    ds = datasets["inpainting"]
    fills = [str(f) for f in ds["fill"].values]
    E, cols = ds.sizes["example"], 2 + len(fills)
    fig = Figure(figsize=(cols * 1.2 + 0.3, E * 1.2 + 1.0))
    axes = fig.subplots(E, cols, squeeze=False)
    known = ds["known"].values
    p = int(ds.attrs["patch"])
    r0, c0 = (int(v) for v in np.atleast_1d(ds.attrs["position"]))
    for e in range(E):
        orig = ds["example_original"].values[e]
        ims = [orig, np.where(known, orig, 0.0)] + [ds["example_fill"].values[f, e] for f in range(len(fills))]
        for j, im in enumerate(ims):
            ax = axes[e, j]
            ax.imshow(np.clip(im, -1, 1), cmap="gray", vmin=-1, vmax=1)
            ax.add_patch(Rectangle((c0 - 0.5, r0 - 0.5), p, p, fill=False, ec="C3", lw=0.6))
            ax.set_xticks([])
            ax.set_yticks([])
            if e == 0 and j < 2:
                ax.set_title(["original", "masked"][j], fontsize=7)
            elif e == 0:
                f = fills[j - 2]
                ax.set_title(f"{f}\ndigit {float(ds['share_original'].sel(fill=f)):.2f}\n"
                             f"RMSE {float(ds['rmse_patch'].sel(fill=f)):.2f}", fontsize=6)
    fig.suptitle(f"inpainting a {p}x{p} patch (model T={ds.attrs.get('T')}, {ds.sizes['image']} held-out images)\n"
                 "share classified as the original digit; RMSE inside the patch", fontsize=7)
    fig.subplots_adjust(wspace=0.05, hspace=0.08)
    return {"inpainting": fig}
