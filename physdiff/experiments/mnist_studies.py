"""The thesis' MNIST studies on a trained per-timestep DDPM: reconstruction from a diffused image,
inpainting of a destroyed patch, and the linear-model baseline (issue 4; ``studies/reconstruction.py``,
``studies/inpainting.py``, ``studies/linear_baseline.py``).

The checkpoint is the user's job; it must keep images out of training so that reconstruction and
inpainting run on images the model never saw::

    physdiff train mnist --holdout 0.1 --out runs/mnist
    python studies/reconstruction.py runs/mnist --out runs/recon --data-dir ../shared/data/mnist
    python studies/inpainting.py runs/mnist --out runs/inpaint --data-dir ../shared/data/mnist
    python studies/linear_baseline.py runs/mnist --out runs/linear_mnist --data-dir ../shared/data/mnist

Every judgement of "which digit is this" is made by :func:`physdiff.metrics.train_mnist_classifier`
(a small CNN trained on all 10 000 MNIST test images, as ``physdiff train``'s quality numbers are).

Times are given in the thesis' units: steps of its ``T = 1000`` linear schedule (``beta`` from 1e-4
to 0.02 [Ho20]). A model with another schedule (the quick preset: ``T = 50``, betas rescaled) is run
at its own step of the same physical time ``t_phys = -(1/2) log alpha_bar`` (REFERENCES.md sec. 1,
:func:`map_thesis_steps`).

References
----------
[Ho20] Ho, Jain, Abbeel (2020), arXiv:2006.11239: eq. 4 (closed-form jump), Algorithm 2 (sampling).
[BBBM24] Biroli, Bonnaire, de Bortoli, Mezard (2024), arXiv:2402.18491: physical time of a DDPM step.
[SD15] Sohl-Dickstein et al. (2015), arXiv:1503.03585, sec. 2.5: inpainting with clamped pixels.
[Lug22] Lugmayr et al. (2022), RePaint, arXiv:2201.09865, eq. 8: known pixels from ``q(x_t | x0)``.
[Yoon23] Yoon et al. (2023): a sample is a copy if ``d1 / d2 < 1/3`` (:func:`physdiff.metrics.mnist_quality`).
[Thesis] Bustinduy de la Guerra (2024): reconstruction reliable to about ``t = 400`` of 1000;
inpainting of a 14x14 or 18x18 patch; Annex II, a linear model cannot turn noise into digits.
"""

from __future__ import annotations

import hashlib
import math
import time
from typing import Sequence

import numpy as np
import xarray as xr

from .. import datasets, metrics, plotting, results
from .._util import SeedLike, as_generator, check_positive_int, check_real
from ..schedules import Schedule, make_schedule
from ._io import prepare_out
from .train import heldout_images

__all__ = ["reconstruction_study", "inpainting_study", "linear_baseline_study", "map_thesis_steps",
           "thesis_schedule", "patch_mask", "training_images", "gaussian_optimal_loss", "eps_loss",
           "same_digit_distance", "train_linear_baseline",
           "THESIS_T", "DEFAULT_T_START", "RECONSTRUCTION_OUTPUTS", "INPAINTING_OUTPUTS",
           "LINEAR_BASELINE_OUTPUTS"]

#: Steps of the thesis' schedule (linear 1e-4..0.02 [Ho20]).
THESIS_T = 1000
#: Default reconstruction start times, in thesis steps.
DEFAULT_T_START = tuple(range(100, 1000, 100))

RECONSTRUCTION_OUTPUTS = ("reconstruction.nc", "reconstruction.png", "reconstruction_scores.png")
INPAINTING_OUTPUTS = ("inpainting.nc", "inpainting.png")
LINEAR_BASELINE_OUTPUTS = ("linear_baseline.nc", "linear_baseline.png")

IMAGE_SHAPE = (28, 28)


# ---------------------------------------------------------------------------------------------
# shared pieces
# ---------------------------------------------------------------------------------------------

def thesis_schedule(T: int = THESIS_T) -> Schedule:
    """The thesis' schedule: ``T`` (default 1000) linear betas from 1e-4 to 0.02 [Ho20, sec. 4]."""
    return make_schedule("linear", check_positive_int("T", T), beta_start=1e-4, beta_end=0.02)


def map_thesis_steps(schedule: Schedule, thesis_steps, *, reference: Schedule | None = None) -> dict:
    """The model steps at the physical times of steps of the thesis' schedule.

    Thesis step ``s`` sits at physical time ``t_phys = -(1/2) log alpha_bar_ref[s]`` (REFERENCES.md
    sec. 1, [BBBM24]); the model step is the step of ``schedule`` whose physical time is nearest
    (the bracket comes from :meth:`Schedule.step_at_time`, the first step at or after ``t_phys``, and
    the step before it). Both carry the same ``alpha_bar`` up to the model's step size.

    Parameters
    ----------
    schedule : Schedule
        The model's schedule.
    thesis_steps : int or sequence of int
        Steps in ``0..reference.T`` (0 is the data).
    reference : Schedule, optional
        The schedule the steps are counted in; default :func:`thesis_schedule` (T = 1000).

    Returns
    -------
    dict of ndarray, each (k,)
        ``thesis_step`` (int64), ``alpha_bar`` and ``physical_time`` (float64, of the thesis step),
        ``model_step`` (int64), ``model_alpha_bar``, ``model_physical_time`` (float64).

    Raises
    ------
    ValueError
        Steps that are not integers in ``0..reference.T``.
    """
    ref = thesis_schedule() if reference is None else reference
    steps = np.atleast_1d(np.asarray(thesis_steps))
    if steps.size == 0 or steps.ndim != 1 or steps.dtype.kind not in "iu":
        raise ValueError(f"thesis steps must be a non-empty list of integers, got {thesis_steps!r}")
    steps = steps.astype(np.int64)
    if steps.min() < 0 or steps.max() > ref.T:
        raise ValueError(f"thesis steps must lie in 0..{ref.T}, got range [{steps.min()}, {steps.max()}]")
    tau = ref.physical_time[steps]
    model = np.empty(steps.size, dtype=np.int64)
    for i, tt in enumerate(tau):
        hi = schedule.step_at_time(tt)
        lo = max(hi - 1, 0)
        pt = schedule.physical_time
        model[i] = lo if abs(pt[lo] - tt) <= abs(pt[hi] - tt) else hi
    return {"thesis_step": steps, "alpha_bar": ref.alpha_bar[steps], "physical_time": tau, "model_step": model,
            "model_alpha_bar": schedule.alpha_bar[model], "model_physical_time": schedule.physical_time[model]}


def _load(checkpoint, device):
    """A DDPM from a checkpoint directory (or a DDPM given as is) and its description."""
    from .. import ddpm

    if isinstance(checkpoint, ddpm.DDPM):
        return checkpoint, "<in-memory DDPM>"
    return ddpm.load(checkpoint, device=device), str(checkpoint)


def _check_mnist_model(model) -> list[int]:
    meta = model.data or {}
    if meta.get("dataset") != "mnist" or model.d != 784:
        raise ValueError("these studies need a DDPM trained on MNIST (`physdiff train mnist --holdout 0.1 --out "
                         f"runs/mnist`); this one has dataset={meta.get('dataset')!r}, d={model.d}")
    return [int(v) for v in meta["digits"]]


def training_images(model, data_dir=None) -> np.ndarray:
    """The images an MNIST checkpoint was trained on, rebuilt from the MNIST test split.

    ``physdiff train mnist`` trains on the chosen digits of the test split less the
    ``holdout_indices`` stored in the checkpoint; this rebuilds that array and checks it against the
    checkpoint's ``sha256`` fingerprint of the training data.

    Returns
    -------
    ndarray float32 (n_train, 784), pixels in [-1, 1]

    Raises
    ------
    ValueError
        Not an MNIST checkpoint, or the rebuilt images do not match the fingerprint (another data
        set or another MNIST file).
    FileNotFoundError
        The MNIST test split is not in ``data_dir``.
    """
    digits = _check_mnist_model(model)
    x, _ = datasets.load_mnist(data_dir, split="test", digits=digits)
    held = np.asarray(model.data.get("holdout_indices") or [], dtype=np.int64)
    x = np.ascontiguousarray(np.delete(x, held, axis=0), dtype=np.float32)
    want = model.data.get("sha256")
    if want is not None and hashlib.sha256(x.tobytes()).hexdigest() != want:
        raise ValueError(f"the MNIST digits {digits} less the checkpoint's held-out images do not match the "
                         "fingerprint of its training data: was it trained on this MNIST test split?")
    return x


def _classifier(classifier, seed, data_dir, log):
    """The given classifier, or a CNN trained on all 10 000 MNIST test images (5-10 s)."""
    if classifier is not None:
        return classifier
    x_all, y_all = datasets.load_mnist(data_dir, split="test")
    t0 = time.perf_counter()
    clf = metrics.train_mnist_classifier(x_all, y_all, seed=seed)
    log(f"classifier trained on {len(x_all)} MNIST images in {time.perf_counter() - t0:.1f} s "
        f"(held-out accuracy {clf.holdout_accuracy:.3f})")
    return clf


def _select_images(labels: np.ndarray, n_images: int | None, digits, rng) -> np.ndarray:
    """Indices of ``n_images`` held-out images, split as evenly as possible over ``digits`` (seeded),
    sorted; all of them when ``n_images`` is None."""
    if n_images is None:
        return np.arange(labels.size)
    n_images = check_positive_int("n_images", n_images)
    pools = [np.flatnonzero(labels == d) for d in digits]
    want = [n_images // len(digits) + (i < n_images % len(digits)) for i in range(len(digits))]
    take = []
    for pool, k in zip(pools, want):
        take.append(rng.choice(pool, size=min(k, pool.size), replace=False))
    return np.sort(np.concatenate(take)).astype(np.int64)


def _examples(labels: np.ndarray, digits, n_examples: int) -> np.ndarray:
    """Indices of figure examples: the first image of each digit in turn, ``n_examples`` in all."""
    out, seen = [], {d: 0 for d in digits}
    pools = {d: np.flatnonzero(labels == d) for d in digits}
    while len(out) < min(n_examples, labels.size):
        progressed = False
        for d in digits:
            if len(out) < n_examples and seen[d] < pools[d].size:
                out.append(int(pools[d][seen[d]]))
                seen[d] += 1
                progressed = True
        if not progressed:
            break
    return np.asarray(out, dtype=np.int64)


def _binomial_stderr(p: float, n: int) -> float:
    """Binomial standard error ``sqrt(p (1 - p) / n)`` of a share ``p`` measured on ``n`` trials."""
    return math.sqrt(max(p * (1.0 - p), 0.0) / n) if n > 0 else math.nan


def _cluster_stderr(per_image: np.ndarray) -> float:
    """Standard error of a mean over images of per-image means (several draws per image are
    correlated, so the images are the independent units): ``std(ddof=1) / sqrt(n_images)``."""
    per_image = np.asarray(per_image, dtype=np.float64)
    return float(per_image.std(ddof=1) / math.sqrt(per_image.size)) if per_image.size > 1 else math.nan


def _pairwise_sq(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances ``|a_i - b_j|^2`` (float64 (n, m))."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    d2 = np.einsum("ij,ij->i", a, a)[:, None] + np.einsum("ij,ij->i", b, b)[None, :] - 2.0 * (a @ b.T)
    return np.maximum(d2, 0.0)


def same_digit_distance(x, labels) -> dict:
    """Mean Euclidean distance between two different images of the same digit, per digit and overall.

    The scale against which a reconstruction's distance to its original is judged: a
    reconstruction no closer than this is no more like its original than another image of the digit.

    Parameters
    ----------
    x : array (n, d)
    labels : int array (n,)

    Returns
    -------
    dict
        ``mean`` (float, over all same-digit pairs ``i < j``) and ``by_digit`` ({digit: float}).
    """
    x = np.asarray(x, dtype=np.float64)
    labels = np.asarray(labels)
    total, count, by = 0.0, 0, {}
    for d in np.unique(labels):
        xi = x[labels == d]
        if xi.shape[0] < 2:
            by[int(d)] = math.nan
            continue
        dist = np.sqrt(_pairwise_sq(xi, xi))
        iu = np.triu_indices(xi.shape[0], k=1)
        by[int(d)] = float(dist[iu].mean())
        total += float(dist[iu].sum())
        count += iu[0].size
    return {"mean": total / count if count else math.nan, "by_digit": by}


def _drop_below(x, y, level: float) -> float:
    """Where ``y`` first falls below ``level`` along increasing ``x``, linearly interpolated between
    the two scan points around the drop; ``x[0]`` if already below there, NaN if never below."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    below = np.flatnonzero(y < level)
    if below.size == 0:
        return math.nan
    k = int(below[0])
    if k == 0:
        return float(x[0])
    x0, x1, y0, y1 = x[k - 1], x[k], y[k - 1], y[k]
    return float(x0 + (y0 - level) * (x1 - x0) / (y0 - y1))


def _seed_int(seed) -> int:
    """An int seed for ``numpy.random.default_rng([seed, key])`` streams (a Generator draws one)."""
    if isinstance(seed, np.random.Generator):
        return int(seed.integers(0, 2**31 - 1))
    return check_positive_int("seed", 0 if seed is None else seed, minimum=0)


def _flat_attrs(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat_attrs(v, f"{prefix}{k}_"))
        else:
            out[f"{prefix}{k}"] = v
    return out


# ---------------------------------------------------------------------------------------------
# 1. reconstruction
# ---------------------------------------------------------------------------------------------

def _heldout_setup(checkpoint, device, sigma, seed, n_images, classifier, data_dir, log):
    """What the reconstruction and inpainting studies share: the MNIST model, its held-out images
    (all, and the ``n_images`` picked per digit), and the classifier with its share of correct
    labels on the picked originals."""
    model, ck_name = _load(checkpoint, device)
    digits = _check_mnist_model(model)
    sigma = model._sigma(sigma)
    seed_i = _seed_int(seed)
    x_held, y_held = heldout_images(model.data, data_dir)
    held_idx = np.asarray(model.data["holdout_indices"], dtype=np.int64)
    pick = _select_images(y_held, n_images, digits, np.random.default_rng([seed_i, 1]))
    x0, y0 = x_held[pick], y_held[pick]
    clf = _classifier(classifier, seed_i, data_dir, log)
    share_originals = float(np.mean(clf.predict(x0) == y0))
    return model, ck_name, digits, sigma, seed_i, x_held, y_held, held_idx, pick, x0, y0, clf, share_originals


def reconstruction_study(checkpoint, out, *, t_start: Sequence[int] = DEFAULT_T_START, n_images: int | None = None,
                         n_recon: int = 8, n_show: int = 4, n_examples: int = 2, seed: SeedLike = 0,
                         data_dir=None, sigma: str | None = None, reliable_level: float = 0.9,
                         classifier=None, device: str | None = None, force: bool = False, log=print,
                         command: str | None = None) -> xr.Dataset:
    """Reconstruction of held-out MNIST images from their diffused versions, over the start time.

    For every start time ``t_start`` (thesis steps, mapped to the model's step ``t_m`` with
    :func:`map_thesis_steps`) each held-out image ``x0`` is diffused once with the closed-form jump,
    ``x_t = sqrt(alpha_bar) x0 + sqrt(1 - alpha_bar) eps`` [Ho20, eq. 4], and the learned reverse chain
    is run ``n_recon`` times from that ``x_t`` back to step 0 [Ho20, Algorithm 2] (the thesis'
    figure: one diffused image, several reconstructions). Measured per ``t_start``:

    - the share of reconstructions the classifier labels as the original's digit (binomial standard
      error over all reconstructions, and the between-image one, the honest one when reconstructions
      of one image are correlated), per digit too;
    - the share labelled as either training digit;
    - the share whose nearest held-out image is the original itself (identity kept, not just class);
    - the mean distance ``|x_rec - x0|`` and, as references, ``|x_t / sqrt(alpha_bar) - x0|`` (the
      diffused image rescaled, ``= sqrt((1 - alpha_bar) / alpha_bar) |eps|``), the mean distance
      between two reconstructions of one image, and (an attr) between two different held-out
      images of the same digit (:func:`same_digit_distance`).

    "Reliable up to" is the thesis step where the original-digit share first drops below
    ``reliable_level`` (interpolated); the step where the identity share drops below 1/2 and where
    the mean distance exceeds the same-digit distance are given too. [Thesis]: about 400 of 1000.

    Parameters
    ----------
    checkpoint : path or DDPM
        An MNIST checkpoint trained with a held-out split (``physdiff train mnist --holdout 0.1``).
    out : path
        Output directory (created); refuses to overwrite :data:`RECONSTRUCTION_OUTPUTS` unless ``force``.
    t_start : sequence of int
        Start times in thesis steps (``0..1000``), default 100, 200, ..., 900.
    n_images : int, optional
        Held-out images used, split evenly over the digits (seeded); default all of them.
    n_recon : int >= 1
        Reconstructions per image.
    n_show, n_examples : int
        Reconstructions shown per example image, and example images, in the figure.
    seed : int or Generator
        Seeds the image choice, the diffusion and the reverse chains, and the classifier; the
        stream of a ``t_start`` depends only on ``(seed, t_start)``.
    data_dir : path, optional
        Where the MNIST test split is (:func:`physdiff.datasets.load_mnist`).
    sigma : {"beta", "posterior"}, optional
        Reverse-step variance; default the checkpoint's.
    reliable_level : float in (0, 1)
    classifier : MNISTClassifier, optional
        Anything with ``predict(x (n, 784)) -> int64 (n,)``; default a CNN trained here on all
        10 000 MNIST test images.
    device : str, optional
        Where the model runs (default: the checkpoint's config, ``"auto"``).
    force : bool
    log : callable
    command : str, optional
        Recorded in the Dataset attrs (default: this process's command line).

    Returns
    -------
    xarray.Dataset
        Written to ``out/reconstruction.nc``. Dims ``t_start`` (coord: thesis step; coords
        ``model_step``, ``alpha_bar``, ``physical_time``, ``model_alpha_bar``,
        ``model_physical_time``), ``image`` (coords ``label``, ``heldout_index``), ``recon``,
        ``digit``, ``example``, ``shown``, ``row``, ``col``. Variables ``predicted(t_start, image,
        recon)`` int64, ``l2(t_start, image, recon)``, ``nearest_is_original(t_start, image, recon)``
        bool, ``l2_diffused(t_start, image)``; summaries per ``t_start``: ``share_original``
        (+ ``_stderr``, ``_stderr_images``), ``share_original_by_digit(t_start, digit)``,
        ``share_in_digits`` (+ ``_stderr``), ``share_nearest_original`` (+ ``_stderr_images``),
        ``l2_mean`` (+ ``_stderr_images``), ``l2_diffused_mean``, ``l2_between_recon``; figure data
        ``example_original(example, row, col)``, ``example_diffused(t_start, example, row, col)``,
        ``example_recon(t_start, example, shown, row, col)``. Attrs: provenance, the headline
        steps (``reliable_up_to`` ...), ``l2_same_digit``, the classifier's accuracies.

    Raises
    ------
    ValueError
        Not an MNIST checkpoint or one without held-out images; bad parameters.
    FileExistsError
        Outputs exist in ``out`` and ``force`` is False.
    """
    import torch

    from ..reverse import reverse_chain

    n_recon = check_positive_int("n_recon", n_recon)
    n_show = min(check_positive_int("n_show", n_show), n_recon)
    n_examples = check_positive_int("n_examples", n_examples)
    reliable_level = check_real("reliable_level", reliable_level, lo=0.0, hi=1.0, lo_open=True, hi_open=True)
    out = prepare_out(out, RECONSTRUCTION_OUTPUTS, force=force)
    t0_all = time.perf_counter()
    (model, ck_name, digits, sigma, seed_i, x_held, y_held, held_idx, pick, x0, y0, clf,
     share_originals) = _heldout_setup(checkpoint, device, sigma, seed, n_images, classifier, data_dir, log)
    steps = map_thesis_steps(model.schedule, np.unique(np.asarray(t_start)))
    n = x0.shape[0]
    same = same_digit_distance(x_held, y_held)
    nn_other = np.sqrt(_pairwise_sq(x_held, x_held) + np.diag(np.full(len(x_held), np.inf))).min(axis=1)
    ex = _examples(y0, digits, n_examples)
    log(f"reconstruction: {n} held-out images x {n_recon} reconstructions, model T={model.T}, "
        f"t_start (thesis steps) {steps['thesis_step'].tolist()} -> model steps {steps['model_step'].tolist()}")

    K = steps["thesis_step"].size
    predicted = np.empty((K, n, n_recon), dtype=np.int64)
    l2 = np.empty((K, n, n_recon), dtype=np.float32)
    nearest_orig = np.empty((K, n, n_recon), dtype=bool)
    l2_diff = np.empty((K, n), dtype=np.float32)
    l2_pairs = np.empty(K)
    ex_diff = np.empty((K, ex.size, 784), dtype=np.float32)
    ex_rec = np.empty((K, ex.size, n_show, 784), dtype=np.float32)
    x0_t = torch.from_numpy(np.ascontiguousarray(x0)).to(model.device)
    for k in range(K):
        ts, tm = int(steps["thesis_step"][k]), int(steps["model_step"][k])
        t1 = time.perf_counter()
        rng = np.random.default_rng([seed_i, 2, ts])
        ab = float(model.schedule.alpha_bar[tm])
        if tm == 0:
            x_t = x0_t.clone()
            rec = np.repeat(x0, n_recon, axis=0)
        else:
            eps = torch.from_numpy(rng.standard_normal(x0.shape, dtype=np.float32)).to(model.device)
            x_t = math.sqrt(ab) * x0_t + math.sqrt(1.0 - ab) * eps  # [Ho20, eq. 4]
            start = x_t.repeat_interleave(n_recon, dim=0)
            rec = reverse_chain(model.eps_fn, start, model.schedule, t_start=tm, seed=rng, sigma=sigma)
            rec = rec.cpu().numpy().astype(np.float32, copy=False)
        xt_np = x_t.cpu().numpy()
        rec3 = rec.reshape(n, n_recon, 784)
        predicted[k] = clf.predict(rec).reshape(n, n_recon)
        l2[k] = np.linalg.norm(rec3 - x0[:, None, :], axis=-1)
        l2_diff[k] = np.linalg.norm(xt_np / math.sqrt(ab) - x0, axis=-1)
        nearest_orig[k] = (np.argmin(_pairwise_sq(rec, x_held), axis=1) == np.repeat(pick, n_recon)).reshape(n, n_recon)
        if n_recon > 1:
            iu = np.triu_indices(n_recon, k=1)
            dd = np.linalg.norm(rec3[:, iu[0]] - rec3[:, iu[1]], axis=-1)
            l2_pairs[k] = float(dd.mean())
        else:
            l2_pairs[k] = math.nan
        ex_diff[k] = xt_np[ex]
        ex_rec[k] = rec3[ex, :n_show]
        p = float(np.mean(predicted[k] == y0[:, None]))
        log(f"  t_start {ts:4d}/{THESIS_T} (model step {tm:3d}/{model.T}, t_phys {steps['physical_time'][k]:.3f}): "
            f"original digit {p:.3f}, nearest held-out is the original {nearest_orig[k].mean():.3f}, "
            f"|x_rec - x0| {l2[k].mean():.2f} (diffused {l2_diff[k].mean():.2f}); {time.perf_counter() - t1:.1f} s")

    correct = predicted == y0[None, :, None]
    in_digits = np.isin(predicted, digits)
    N = n * n_recon
    data = {
        "predicted": (("t_start", "image", "recon"), predicted),
        "l2": (("t_start", "image", "recon"), l2),
        "nearest_is_original": (("t_start", "image", "recon"), nearest_orig),
        "l2_diffused": (("t_start", "image"), l2_diff),
        "share_original": ("t_start", correct.mean(axis=(1, 2))),
        "share_original_stderr": ("t_start", [_binomial_stderr(float(c.mean()), N) for c in correct]),
        "share_original_stderr_images": ("t_start", [_cluster_stderr(c.mean(axis=1)) for c in correct]),
        "share_original_by_digit": (("t_start", "digit"),
                                    np.stack([[float(c[y0 == d].mean()) if np.any(y0 == d) else math.nan
                                               for d in digits] for c in correct])),
        "share_in_digits": ("t_start", in_digits.mean(axis=(1, 2))),
        "share_in_digits_stderr": ("t_start", [_binomial_stderr(float(c.mean()), N) for c in in_digits]),
        "share_nearest_original": ("t_start", nearest_orig.mean(axis=(1, 2))),
        "share_nearest_original_stderr_images": ("t_start", [_cluster_stderr(c.mean(axis=1)) for c in nearest_orig]),
        "l2_mean": ("t_start", l2.mean(axis=(1, 2), dtype=np.float64)),
        "l2_mean_stderr_images": ("t_start", [_cluster_stderr(c.mean(axis=1)) for c in l2]),
        "l2_diffused_mean": ("t_start", l2_diff.mean(axis=1, dtype=np.float64)),
        "l2_between_recon": ("t_start", l2_pairs),
        "example_original": (("example", "row", "col"), x0[ex].reshape(-1, *IMAGE_SHAPE)),
        "example_diffused": (("t_start", "example", "row", "col"), ex_diff.reshape(K, -1, *IMAGE_SHAPE)),
        "example_recon": (("t_start", "example", "shown", "row", "col"),
                          ex_rec.reshape(K, ex.size, n_show, *IMAGE_SHAPE)),
    }
    coords = {"t_start": steps["thesis_step"], "model_step": ("t_start", steps["model_step"]),
              "alpha_bar": ("t_start", steps["alpha_bar"]), "physical_time": ("t_start", steps["physical_time"]),
              "model_alpha_bar": ("t_start", steps["model_alpha_bar"]),
              "model_physical_time": ("t_start", steps["model_physical_time"]),
              "image": np.arange(n), "label": ("image", y0), "heldout_index": ("image", held_idx[pick]),
              "recon": np.arange(n_recon), "digit": np.asarray(digits, dtype=np.int64),
              "example": np.arange(ex.size), "example_label": ("example", y0[ex]), "example_image": ("example", ex),
              "shown": np.arange(n_show),
              "row": np.arange(IMAGE_SHAPE[0]), "col": np.arange(IMAGE_SHAPE[1])}
    ds = xr.Dataset(data, coords=coords)
    ts = steps["thesis_step"].astype(np.float64)
    headline = {
        "reliable_level": reliable_level,
        "reliable_up_to": _drop_below(ts, ds["share_original"].values, reliable_level),
        "identity_lost_at": _drop_below(ts, ds["share_nearest_original"].values, 0.5),
        "l2_same_digit": same["mean"],
        "l2_above_same_digit_at": _drop_below(ts, same["mean"] - ds["l2_mean"].values, 0.0),
    }
    ds.attrs = results.provenance(
        seed=seed_i, command=command, study="reconstruction", checkpoint=ck_name, dataset="mnist", digits=digits,
        T=model.T, schedule=model.schedule.to_dict(), thesis_T=THESIS_T, sigma=sigma, n_images=n,
        n_recon=n_recon, n_heldout=int(len(x_held)), **headline,
        l2_same_digit_by_digit=[same["by_digit"].get(d, math.nan) for d in digits],
        l2_nearest_other_heldout=float(nn_other.mean()),
        classifier_holdout_accuracy=float(getattr(clf, "holdout_accuracy", math.nan)),
        share_original_of_originals=share_originals,
        note=("t_start in steps of the thesis' T=1000 linear 1e-4..0.02 schedule; the model runs at its own step "
              "of the same physical time t_phys = -(1/2) log alpha_bar (coords model_step, model_physical_time). "
              "share_original_stderr is binomial over all reconstructions; share_original_stderr_images treats "
              "images as the independent units (reconstructions of one image share x_t). reliable_up_to: thesis "
              "step where share_original first drops below reliable_level (linear interpolation; NaN: never in "
              "the scan). identity_lost_at: where the share of reconstructions whose nearest held-out image is "
              "their original drops below 1/2. l2_above_same_digit_at: where the mean |x_rec - x0| exceeds the "
              "mean distance between two held-out images of the same digit (l2_same_digit)."),
        seconds=round(time.perf_counter() - t0_all, 2))
    results.write_dataset(ds, out / "reconstruction.nc")
    _plot_reconstruction(ds, out / "reconstruction.png")
    _plot_reconstruction_scores(ds, out / "reconstruction_scores.png")
    log(f"reliable (original digit >= {reliable_level:g}) up to thesis t = {headline['reliable_up_to']:.0f}; identity "
        f"lost (nearest held-out != original for half) at t = {headline['identity_lost_at']:.0f}; |x_rec - x0| above "
        f"the same-digit distance {same['mean']:.2f} at t = {headline['l2_above_same_digit_at']:.0f}  [Thesis: ~400]")
    log(f"outputs in {out} ({time.perf_counter() - t0_all:.1f} s)")
    return ds


def _plot_reconstruction(ds: xr.Dataset, path):
    """The thesis' figure: rows = t_start; per example image: original, diffused, reconstructions."""
    import matplotlib.pyplot as plt

    K, E, S = ds.sizes["t_start"], ds.sizes["example"], ds.sizes["shown"]
    cols = E * (S + 2)
    fig, axes = plt.subplots(K, cols, figsize=(cols * 0.75 + 1.2, K * 0.8 + 0.5), squeeze=False)
    for k in range(K):
        for e in range(E):
            c0 = e * (S + 2)
            ims = [ds["example_original"].values[e], ds["example_diffused"].values[k, e],
                   *ds["example_recon"].values[k, e]]
            for j, im in enumerate(ims):
                ax = axes[k, c0 + j]
                ax.imshow(np.clip(im, -1, 1), cmap="gray", vmin=-1, vmax=1)
                ax.set_xticks([])
                ax.set_yticks([])
                if k == 0:
                    ax.set_title(["original", "diffused"][j] if j < 2 else f"rec. {j - 1}", fontsize=6)
        axes[k, 0].set_ylabel(f"t={int(ds['t_start'][k])}\n(step {int(ds['model_step'][k])})", fontsize=6)
    fig.suptitle(f"reconstruction from x_t (thesis steps of T=1000; model T={ds.attrs.get('T')}); "
                 f"reliable up to t = {ds.attrs['reliable_up_to']:.0f}", fontsize=8)
    fig.subplots_adjust(wspace=0.05, hspace=0.05)
    return plotting.save_figure(fig, path)


def _plot_reconstruction_scores(ds: xr.Dataset, path):
    import matplotlib.pyplot as plt

    t = ds["t_start"].values
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    a.errorbar(t, ds["share_original"], yerr=ds["share_original_stderr_images"], fmt="o-", ms=3, capsize=2,
               label="classified as the original's digit")
    a.errorbar(t, ds["share_nearest_original"], yerr=ds["share_nearest_original_stderr_images"], fmt="s-", ms=3,
               capsize=2, label="nearest held-out image is the original")
    a.plot(t, ds["share_in_digits"], "^:", ms=3, label="classified as a training digit")
    a.axhline(float(ds.attrs["reliable_level"]), color="0.5", lw=0.8, ls=":")
    a.axvline(400, color="k", lw=0.8, ls="--", label="thesis: reliable to ~400")
    a.set_xlabel("t_start (steps of the thesis' T = 1000)")
    a.set_ylabel("share of reconstructions")
    a.set_ylim(-0.02, 1.02)
    a.legend(fontsize=7)
    b.errorbar(t, ds["l2_mean"], yerr=ds["l2_mean_stderr_images"], fmt="o-", ms=3, capsize=2, label="|x_rec - x0|")
    b.plot(t, ds["l2_diffused_mean"], "s:", ms=3, label="|x_t / sqrt(alpha_bar) - x0|")
    b.plot(t, ds["l2_between_recon"], "^-", ms=3, label="between two reconstructions")
    b.axhline(float(ds.attrs["l2_same_digit"]), color="k", lw=1, ls="--", label="two held-out images, same digit")
    b.set_yscale("log")
    b.set_xlabel("t_start (steps of the thesis' T = 1000)")
    b.set_ylabel("mean Euclidean distance (pixels in [-1, 1])")
    b.legend(fontsize=7)
    fig.tight_layout()
    return plotting.save_figure(fig, path)


# ---------------------------------------------------------------------------------------------
# 2. inpainting
# ---------------------------------------------------------------------------------------------

def patch_mask(patch: int = 14, position: tuple[int, int] | None = None,
               shape: tuple[int, int] = IMAGE_SHAPE) -> np.ndarray:
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
    ndarray bool (rows * cols,)
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
                         f"rows and cols must lie in 0..{rows - patch} and 0..{cols - patch}")
    known = np.ones(shape, dtype=bool)
    known[r0:r0 + patch, c0:c0 + patch] = False
    return known.reshape(-1)


def inpainting_study(checkpoint, out, *, patch: int = 14, position: tuple[int, int] | None = None,
                     methods: Sequence[str] = ("marginal", "clamp"), n_images: int | None = None,
                     n_inpaint: int = 8, n_show: int = 6, seed: SeedLike = 0, data_dir=None,
                     sigma: str | None = None, classifier=None, device: str | None = None, force: bool = False,
                     log=print, command: str | None = None) -> xr.Dataset:
    """Inpainting of a destroyed square patch of held-out MNIST images, by method.

    Each held-out image gets a ``patch x patch`` square destroyed (:func:`patch_mask`) and
    ``n_inpaint`` inpaintings by :meth:`physdiff.ddpm.DDPM.inpaint` per method: ``"marginal"``
    (known pixels re-imposed at each step from the forward marginal ``q(x_t | x0)`` [Lug22, eq. 8])
    and ``"clamp"`` (known pixels clamped to the data at every step [SD15, sec. 2.5]); both methods
    use the same seed, hence the same start and chain noise (common random numbers). Two trivial
    fills are the baselines: the patch of the training mean image (``"train_mean"``) and the patch
    of the training image nearest on the known pixels (``"nearest_train"``).

    Per fill: the share the classifier labels as the original's digit (binomial and between-image
    standard errors), the share labelled as a training digit, the RMSE inside the patch against the
    original ``sqrt(mean_patch (x - x0)^2)`` (mean over images and draws, between-image error), and
    the mean distance between two inpaintings of one image inside the patch (diversity).

    Parameters
    ----------
    checkpoint : path or DDPM
        An MNIST checkpoint trained with a held-out split.
    out : path
        Output directory; refuses to overwrite :data:`INPAINTING_OUTPUTS` unless ``force``.
    patch : int
        Side of the destroyed square (14 or 18 in the thesis).
    position : (row, col), optional
        Its top-left corner; default centred.
    methods : sequence of {"marginal", "clamp"}
    n_images : int, optional
        Held-out images used (split evenly over the digits, seeded); default all.
    n_inpaint : int >= 1
        Inpaintings per image and method.
    n_show : int
        Example images in the figure.
    seed, data_dir, sigma, classifier, device, force, log, command
        As for :func:`reconstruction_study`.

    Returns
    -------
    xarray.Dataset
        Written to ``out/inpainting.nc``. Dims ``fill`` (methods then ``train_mean``,
        ``nearest_train``), ``inpaint_method``, ``image`` (coords ``label``, ``heldout_index``), ``sample``,
        ``digit``, ``example``, ``row``, ``col``. Per fill: ``share_original`` (+ ``_stderr``,
        ``_stderr_images``), ``share_in_digits`` (+ ``_stderr``), ``rmse_patch`` (+
        ``_stderr_images``), ``patch_diversity``, ``share_original_by_digit(fill, digit)``; per draw:
        ``predicted(inpaint_method, image, sample)``, ``rmse(inpaint_method, image, sample)``; baselines
        ``baseline_predicted(baseline, image)``, ``baseline_rmse(baseline, image)``; ``known(row, col)``
        (the mask); figure data ``example_original(example, row, col)``, ``example_fill(fill,
        example, row, col)`` (first draw). Attrs: provenance, patch, position, headline numbers.

    Raises
    ------
    ValueError
        Not an MNIST checkpoint or one without held-out images; unknown method; bad patch.
    FileExistsError
        Outputs exist in ``out`` and ``force`` is False.
    """
    from ..ddpm.sample import INPAINT_METHODS

    methods = list(dict.fromkeys(methods))
    if not methods or any(m not in INPAINT_METHODS for m in methods):
        raise ValueError(f"methods must be a non-empty list from {INPAINT_METHODS}, got {methods!r}")
    n_inpaint = check_positive_int("n_inpaint", n_inpaint)
    n_show = check_positive_int("n_show", n_show)
    known = patch_mask(patch, position)
    r_c = np.argwhere(~known.reshape(IMAGE_SHAPE))[0]
    position = (int(r_c[0]), int(r_c[1]))
    out = prepare_out(out, INPAINTING_OUTPUTS, force=force)
    t0_all = time.perf_counter()
    (model, ck_name, digits, sigma, seed_i, x_held, y_held, held_idx, pick, x0, y0, clf,
     share_originals) = _heldout_setup(checkpoint, device, sigma, seed, n_images, classifier, data_dir, log)
    x_train = training_images(model, data_dir)
    n = x0.shape[0]
    hole = ~known
    log(f"inpainting: {n} held-out images, a {patch}x{patch} patch at (row, col) = {position}, "
        f"{n_inpaint} draws per image, methods {methods}, model T={model.T}")

    def rmse_in_patch(x, ref):
        return np.sqrt(np.mean((x[..., hole] - ref[..., hole]) ** 2, axis=-1))

    # baselines: the training mean image's patch, and the patch of the nearest training image on the known pixels
    mean_img = x_train.mean(axis=0, dtype=np.float64).astype(np.float32)
    base_mean = np.where(known[None, :], x0, mean_img[None, :])
    nn_idx = np.argmin(_pairwise_sq(x0[:, known], x_train[:, known]), axis=1)
    base_nn = np.where(known[None, :], x0, x_train[nn_idx])
    baselines = {"train_mean": base_mean, "nearest_train": base_nn}

    M = len(methods)
    predicted = np.empty((M, n, n_inpaint), dtype=np.int64)
    rmse = np.empty((M, n, n_inpaint), dtype=np.float32)
    diversity = np.full(M, math.nan)
    first = np.empty((M, n, 784), dtype=np.float32)
    rep = np.repeat(x0, n_inpaint, axis=0)
    for j, method in enumerate(methods):
        t1 = time.perf_counter()
        x = model.inpaint(rep, known, seed=np.random.default_rng([seed_i, 3]), sigma=sigma, method=method)
        x3 = x.reshape(n, n_inpaint, 784)
        predicted[j] = clf.predict(x).reshape(n, n_inpaint)
        rmse[j] = rmse_in_patch(x3, x0[:, None, :])
        if n_inpaint > 1:
            iu = np.triu_indices(n_inpaint, k=1)
            diversity[j] = float(np.linalg.norm(x3[:, iu[0]][..., hole] - x3[:, iu[1]][..., hole], axis=-1).mean())
        first[j] = x3[:, 0]
        log(f"  {method:8s}: original digit {np.mean(predicted[j] == y0[:, None]):.3f}, RMSE in the patch "
            f"{rmse[j].mean():.3f}; {time.perf_counter() - t1:.1f} s")
    b_names = list(baselines)
    b_pred = np.stack([clf.predict(b) for b in baselines.values()])
    b_rmse = np.stack([rmse_in_patch(b, x0) for b in baselines.values()]).astype(np.float32)
    for name, p, r in zip(b_names, b_pred, b_rmse):
        log(f"  {name:8s}: original digit {np.mean(p == y0):.3f}, RMSE in the patch {r.mean():.3f} (baseline)")

    fills = methods + b_names
    # one (image, draw) array per fill; a baseline has one draw per image
    corr = [predicted[j] == y0[:, None] for j in range(M)] + [bp[:, None] == y0[:, None] for bp in b_pred]
    ind = [np.isin(predicted[j], digits) for j in range(M)] + [np.isin(bp, digits)[:, None] for bp in b_pred]
    rms = [rmse[j] for j in range(M)] + [b_rmse[i][:, None] for i in range(len(b_names))]
    ex = _examples(y0, digits, n_show)
    data = {
        "share_original": ("fill", [float(c.mean()) for c in corr]),
        "share_original_stderr": ("fill", [_binomial_stderr(float(c.mean()), c.size) for c in corr]),
        "share_original_stderr_images": ("fill", [_cluster_stderr(c.mean(axis=1)) for c in corr]),
        "share_original_by_digit": (("fill", "digit"), [[float(c[y0 == d].mean()) if np.any(y0 == d) else math.nan
                                                         for d in digits] for c in corr]),
        "share_in_digits": ("fill", [float(c.mean()) for c in ind]),
        "share_in_digits_stderr": ("fill", [_binomial_stderr(float(c.mean()), c.size) for c in ind]),
        "rmse_patch": ("fill", [float(r.mean(dtype=np.float64)) for r in rms]),
        "rmse_patch_stderr_images": ("fill", [_cluster_stderr(r.mean(axis=1)) for r in rms]),
        "patch_diversity": ("fill", list(diversity) + [0.0] * len(b_names)),
        "predicted": (("inpaint_method", "image", "sample"), predicted),
        "rmse": (("inpaint_method", "image", "sample"), rmse),
        "baseline_predicted": (("baseline", "image"), b_pred),
        "baseline_rmse": (("baseline", "image"), b_rmse),
        "known": (("row", "col"), known.reshape(IMAGE_SHAPE)),
        "example_original": (("example", "row", "col"), x0[ex].reshape(-1, *IMAGE_SHAPE)),
        "example_fill": (("fill", "example", "row", "col"),
                         np.concatenate([first[:, ex], np.stack([b[ex] for b in baselines.values()])]
                                        ).reshape(len(fills), ex.size, *IMAGE_SHAPE)),
    }
    coords = {"fill": fills, "inpaint_method": methods, "baseline": b_names, "image": np.arange(n),
              "label": ("image", y0),
              "heldout_index": ("image", held_idx[pick]), "sample": np.arange(n_inpaint),
              "digit": np.asarray(digits, dtype=np.int64), "example": np.arange(ex.size),
              "example_label": ("example", y0[ex]), "example_image": ("example", ex),
              "row": np.arange(IMAGE_SHAPE[0]), "col": np.arange(IMAGE_SHAPE[1])}
    ds = xr.Dataset(data, coords=coords)
    head = {f"{f}_{k}": float(ds[k].sel(fill=f)) for f in fills for k in ("share_original", "rmse_patch")}
    ds.attrs = results.provenance(
        seed=seed_i, command=command, study="inpainting", checkpoint=ck_name, dataset="mnist", digits=digits,
        T=model.T, sigma=sigma, patch=int(patch), position=list(position), n_images=n, n_inpaint=n_inpaint,
        n_heldout=int(len(x_held)), n_train=int(len(x_train)), share_original_of_originals=share_originals,
        classifier_holdout_accuracy=float(getattr(clf, "holdout_accuracy", math.nan)), **head,
        note=("fill 'marginal': known pixels re-imposed at each reverse step as a forward sample "
              "sqrt(alpha_bar) x0 + sqrt(1 - alpha_bar) eps [Lug22 eq. 8]; 'clamp': known pixels held at x0 at every "
              "step [SD15 sec. 2.5]; both with the same seed. Baselines: 'train_mean' fills the patch with the mean "
              "training image, 'nearest_train' with the patch of the training image nearest on the known pixels. "
              "rmse_patch: sqrt(mean over the patch of (x - x0)^2), pixels in [-1, 1]. stderr: binomial over all "
              "draws; stderr_images: images as the independent units."),
        seconds=round(time.perf_counter() - t0_all, 2))
    results.write_dataset(ds, out / "inpainting.nc")
    _plot_inpainting(ds, out / "inpainting.png")
    log(f"outputs in {out} ({time.perf_counter() - t0_all:.1f} s)")
    return ds


def _plot_inpainting(ds: xr.Dataset, path):
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    fills = list(ds["fill"].values)
    E = ds.sizes["example"]
    cols = 2 + len(fills)
    fig, axes = plt.subplots(E, cols, figsize=(cols * 1.2 + 0.3, E * 1.2 + 1.0), squeeze=False)
    known = ds["known"].values
    p = int(ds.attrs["patch"])
    r0, c0 = (int(v) for v in np.atleast_1d(ds.attrs["position"]))
    for e in range(E):
        orig = ds["example_original"].values[e]
        masked = np.where(known, orig, 0.0)
        ims = [orig, masked] + [ds["example_fill"].values[f, e] for f in range(len(fills))]
        for j, im in enumerate(ims):
            ax = axes[e, j]
            ax.imshow(np.clip(im, -1, 1), cmap="gray", vmin=-1, vmax=1)
            ax.add_patch(Rectangle((c0 - 0.5, r0 - 0.5), p, p, fill=False, ec="C3", lw=0.6))
            ax.set_xticks([])
            ax.set_yticks([])
            if e == 0:
                if j < 2:
                    ax.set_title(["original", "masked"][j], fontsize=7)
                else:
                    f = fills[j - 2]
                    ax.set_title(f"{f}\ndigit {float(ds['share_original'].sel(fill=f)):.2f}\n"
                                 f"RMSE {float(ds['rmse_patch'].sel(fill=f)):.2f}", fontsize=6)
    fig.suptitle(f"inpainting a {p}x{p} patch (model T={ds.attrs.get('T')}, {ds.attrs.get('n_images')} held-out "
                 "images)\nshare classified as the original digit; RMSE inside the patch", fontsize=7)
    fig.subplots_adjust(wspace=0.05, hspace=0.08)
    return plotting.save_figure(fig, path)


# ---------------------------------------------------------------------------------------------
# 6. the linear baseline (thesis Annex II)
# ---------------------------------------------------------------------------------------------

def gaussian_optimal_loss(cov, alpha_bar) -> np.ndarray:
    """Per-dimension loss ``E|eps - eps*(x_t)|^2 / d`` of the best affine noise predictor.

    For data of covariance ``C`` (eigenvalues ``lambda_i``), ``x_t = s x0 + sqrt(Delta) eps``, the
    best affine predictor of ``eps`` from ``x_t`` is ``eps* = sqrt(Delta) Sigma_t^{-1} (x_t - s mean)``
    with ``Sigma_t = s^2 C + Delta I`` (the Gaussian fit's exact predictor, REFERENCES.md secs. 1
    and 6; :meth:`physdiff.ddpm.StackedAutoencoders.init_gaussian`), and its mean squared error is
    ``d - Delta tr(Sigma_t^{-1})``, i.e. per dimension
    ``(1/d) sum_i s^2 lambda_i / (s^2 lambda_i + Delta)``. No linear net can go below it on data
    with that covariance; a nonlinear one can, by learning the non-Gaussian part.

    Parameters
    ----------
    cov : array (d, d), symmetric positive semi-definite
    alpha_bar : float or array (k,)

    Returns
    -------
    ndarray float64 (k,) (or a 0-d array for a scalar ``alpha_bar``)
    """
    cov = np.asarray(cov, dtype=np.float64)
    if cov.ndim != 2 or cov.shape[0] != cov.shape[1]:
        raise ValueError(f"cov must be a square matrix, got shape {cov.shape}")
    ab = np.asarray(alpha_bar, dtype=np.float64)
    if np.any(ab <= 0) or np.any(ab > 1):
        raise ValueError("alpha_bar must lie in (0, 1]")
    return _optimal_loss(np.linalg.eigvalsh(0.5 * (cov + cov.T)), ab)


def _optimal_loss(lam: np.ndarray, ab: np.ndarray) -> np.ndarray:
    """:func:`gaussian_optimal_loss` from the covariance's eigenvalues ``lam``."""
    lam = np.clip(lam, 0.0, None)
    s2 = np.asarray(ab, dtype=np.float64)[..., None]
    return np.mean(s2 * lam / (s2 * lam + (1.0 - s2)), axis=-1)


def eps_loss(model, x0, seed: SeedLike = None, batch: int = 1024) -> np.ndarray:
    """Monte Carlo estimate of a model's per-step loss ``mean (eps_theta(x_t, t) - eps)^2`` on ``x0``.

    One fresh ``eps ~ N(0, I)`` per image and step, ``x_t = sqrt(alpha_bar_t) x0 + sqrt(1 -
    alpha_bar_t) eps`` [Ho20, eq. 4, Algorithm 1]; the mean is over images and pixels (the loss
    ``physdiff.ddpm.train`` minimises, per dimension). Equal seeds give equal noise, so two models
    evaluated with one seed are compared on the same draws.

    Parameters
    ----------
    model : DDPM
    x0 : array (n, d)
    seed : int, Generator or None
    batch : int
        Images per forward pass.

    Returns
    -------
    ndarray float64 (T,)
        The loss of steps ``1..T``.
    """
    import torch

    x0 = np.ascontiguousarray(np.asarray(x0, dtype=np.float32))
    rng = as_generator(seed)
    out = np.empty(model.T)
    for t in range(1, model.T + 1):
        ab = float(model.schedule.alpha_bar[t])
        eps = rng.standard_normal(x0.shape, dtype=np.float32)
        total = 0.0
        for i in range(0, x0.shape[0], batch):
            e = torch.from_numpy(eps[i:i + batch]).to(model.device)
            x_t = math.sqrt(ab) * torch.from_numpy(x0[i:i + batch]).to(model.device) + math.sqrt(1.0 - ab) * e
            total += float((model.eps(x_t, t) - e).double().square().sum())
        out[t - 1] = total / x0.size
    return out


def train_linear_baseline(relu, x_train, *, epochs: int = 3, seed: int = 0, device: str | None = None,
                          progress: bool = False, log=print):
    """Train the linear twin of a DDPM: its config with ``activation="linear"`` (thesis Annex II).

    Same schedule, ``T``, hidden width, loss, learning rates and batch as ``relu``; ``epochs`` epochs;
    ``init="gaussian"`` whenever ``hidden >= d`` (each net then starts at the exact noise predictor
    of the data's Gaussian fit, the optimum of an affine net, REFERENCES.md sec. 6), else the
    ReLU model's init.

    Parameters
    ----------
    relu : DDPM
    x_train : array (n, d)
        The training data (normally the ReLU model's own, :func:`training_images`).
    epochs : int >= 1
    seed : int
    device : str, optional
        Default: the ReLU model's device.
    progress : bool
    log : callable or None

    Returns
    -------
    DDPM
        Nets ``eps_t(x) = (x W1 + b1) W2 + b2``: affine in ``x``.
    """
    from .. import ddpm

    epochs = check_positive_int("epochs", epochs)
    init = "gaussian" if relu.config.hidden >= relu.d else relu.config.init
    cfg = relu.config.replace(activation="linear", epochs=epochs, seed=int(seed), init=init,
                              device=str(relu.device) if device is None else device)
    if log is not None:
        log(f"training the linear model ({epochs} epochs, init {init!r}): {cfg}")
    meta = {k: v for k, v in relu.data.items() if k not in ("n", "d", "sha256")}
    return ddpm.train(x_train, cfg, progress=progress, log=log, metadata=meta)


def _gaussian_init_model(x_train: np.ndarray, like, activation: str = "linear"):
    """An untrained DDPM shaped like ``like`` (at least ``d`` hidden units) whose nets are the exact
    noise predictor of the Gaussian fit of ``x_train`` (what ``init="gaussian"`` starts from)."""
    from ..ddpm import DDPM, StackedAutoencoders

    x64 = x_train.astype(np.float64)
    net = StackedAutoencoders(like.T, like.d, max(like.config.hidden, like.d), activation,
                              seed=like.config.seed or 0, device=like.device)
    net.init_gaussian(x64.mean(axis=0), np.cov(x64, rowvar=False), like.schedule.alpha_bar[1:],
                      bound=float(np.abs(x64).max()))
    cfg = like.config.replace(activation=activation, init="gaussian", hidden=max(like.config.hidden, like.d))
    return DDPM(net, like.schedule, cfg, data=like.data)


def _gaussian_fit_samples(x: np.ndarray, n: int, rng) -> np.ndarray:
    """``n`` exact samples of the Gaussian fit ``N(mean, cov)`` of the rows of ``x`` (float32 (n, d)).

    With ``X`` the centred data (P, d), ``mean + z X / sqrt(P - 1)``, ``z ~ N(0, I_P)``, has
    covariance ``X^T X / (P - 1) = cov`` exactly (``numpy.cov``), with no factorisation of the
    (singular: MNIST's border pixels are constant) covariance.
    """
    x = np.asarray(x, dtype=np.float64)
    mean = x.mean(axis=0)
    z = rng.standard_normal((n, x.shape[0]))
    return (mean + z @ (x - mean) / math.sqrt(x.shape[0] - 1)).astype(np.float32)


def linear_baseline_study(relu_checkpoint, out, *, epochs: int = 3, n_samples: int = 512, seed: SeedLike = 0,
                          data_dir=None, sigma: str | None = None, classifier=None, device: str | None = None,
                          force: bool = False, progress: bool = False, log=print, command: str | None = None,
                          n_loss_images: int = 500, linear_model=None) -> xr.Dataset:
    """The thesis' Annex II baseline: the same DDPM with linear nets cannot turn noise into digits.

    A DDPM with the ReLU checkpoint's config but ``activation="linear"`` is trained on the same
    training images for ``epochs`` epochs. With ``init="gaussian"`` (the quick preset) every linear
    net starts at the exact noise predictor of the data's Gaussian fit, which is the optimum of any
    affine net on these data (REFERENCES.md sec. 6, :func:`gaussian_optimal_loss`): training can only
    move it about that optimum, so a few epochs suffice. To check it, the per-step loss of the
    untrained Gaussian-init linear model, of the trained one and of the ReLU model is measured on
    the same noise (:func:`eps_loss`, training and held-out images) against the closed-form optimum
    ``L*(t)``; the ReLU model can go below ``L*`` (it learns the non-Gaussian part), no linear net
    can. Then ``n_samples`` samples are drawn from the ReLU model, the trained linear model and the
    untrained Gaussian-init one (same seed: same start and chain noise), and from the Gaussian fit
    ``N(mean, cov)`` directly, and compared: share classified as a training digit (binomial
    error), class shares, mean classifier confidence, copy share and median nearest-training
    distance [Yoon23] (:func:`physdiff.metrics.mnist_quality`), the sliced 2-Wasserstein distance to
    held-out images (:func:`physdiff.metrics.sliced_wasserstein`), the mean per-pixel
    1-Wasserstein distance of the pixel-value distributions (real pixels are nearly binary; a
    Gaussian's are not), both with the floor of training against held-out images, and the relative
    Frobenius error of the samples' pixel covariance against the training data's (the linear model
    should get the second moments, not the digits).

    Parameters
    ----------
    relu_checkpoint : path or DDPM
        The ReLU MNIST checkpoint (any; a held-out split adds the held-out references).
    out : path
        Output directory; refuses to overwrite :data:`LINEAR_BASELINE_OUTPUTS` unless ``force``.
    epochs : int >= 1
        Training epochs of the linear model.
    n_samples : int >= 2
    seed, data_dir, sigma, classifier, device, force, log, command
        As for :func:`reconstruction_study`; ``seed`` also seeds the linear training.
    progress : bool
        tqdm bar while training.
    n_loss_images : int
        Training images on which the per-step loss of every model is measured (:func:`eps_loss`).
    linear_model : DDPM, optional
        An already trained linear model to use instead of training one (tests).

    Returns
    -------
    xarray.Dataset
        Written to ``out/linear_baseline.nc``. Dims ``model`` (``relu``, ``linear``, ``linear_init``,
        ``gaussian_fit``), ``sample``, ``row``, ``col``, ``digit`` (0..9), ``epoch``, ``t``,
        ``loss_model``, ``split``. Variables ``image(model, sample, row, col)``; per model
        ``share_in_digits`` (+ ``_stderr``), ``class_share(model, digit)``, ``confidence``,
        ``copy_share``, ``median_d1``, ``sliced_wasserstein``, ``pixel_wasserstein``,
        ``cov_relative_error``, ``pixels_outside``; losses
        ``loss_linear(epoch, t)``, ``loss_relu_last(t)`` (training records), ``loss_gaussian_optimum(t)``
        and ``loss(loss_model, split, t)`` (Monte Carlo, :func:`eps_loss`, for ``linear_init``,
        ``linear``, ``relu`` on ``train`` and ``heldout`` images). Attrs: provenance, training time,
        per loss model and split the least ``L/L*`` over t (and where) and ``sum L / sum L*``,
        headline numbers.

    Raises
    ------
    ValueError
        Not an MNIST checkpoint; bad parameters.
    FileExistsError
        Outputs exist in ``out`` and ``force`` is False.
    """
    epochs = check_positive_int("epochs", epochs)
    n_samples = check_positive_int("n_samples", n_samples, minimum=2)
    n_loss_images = check_positive_int("n_loss_images", n_loss_images)
    out = prepare_out(out, LINEAR_BASELINE_OUTPUTS, force=force)
    t0_all = time.perf_counter()
    relu, ck_name = _load(relu_checkpoint, device)
    digits = _check_mnist_model(relu)
    sigma = relu._sigma(sigma)
    seed_i = _seed_int(seed)
    x_train = training_images(relu, data_dir)
    try:
        x_held, _ = heldout_images(relu.data, data_dir)
    except ValueError:
        x_held = None
    clf = _classifier(classifier, seed_i, data_dir, log)

    train_s = 0.0
    if linear_model is None:
        t1 = time.perf_counter()
        lin = train_linear_baseline(relu, x_train, epochs=epochs, seed=seed_i, device=device, progress=progress,
                                    log=log)
        train_s = time.perf_counter() - t1
    else:
        lin = linear_model
        if lin.model.activation != "linear":
            raise ValueError(f"linear_model must have linear nets, got activation={lin.model.activation!r}")
    if lin.schedule != relu.schedule:
        raise ValueError("the linear model and the ReLU model must share their schedule")

    x64 = x_train.astype(np.float64)
    cov = np.cov(x64, rowvar=False)
    ab = relu.schedule.alpha_bar[1:]
    tau = relu.schedule.physical_time[1:]
    L_opt = gaussian_optimal_loss(cov, ab)
    L_lin = np.asarray(lin.loss_history, dtype=np.float64)
    L_relu = np.asarray(relu.loss_history, dtype=np.float64)[-1]

    # the same noise for every model: on (a subset of) the training images and on the held-out ones
    t1 = time.perf_counter()
    sub = np.sort(np.random.default_rng([seed_i, 6]).permutation(len(x_train))[:min(n_loss_images, len(x_train))])
    loss_sets = {"train": x_train[sub]} | ({"heldout": x_held} if x_held is not None else {})
    lin_init = _gaussian_init_model(x_train, lin)
    loss_models = {"linear_init": lin_init, "linear": lin, "relu": relu}
    L_mc = np.stack([[eps_loss(mod, xs, seed=np.random.default_rng([seed_i, 8, k])) for k, xs in
                      enumerate(loss_sets.values())] for mod in loss_models.values()])  # (model, split, T)
    loss_s = time.perf_counter() - t1
    loss_head = {}
    for i, m in enumerate(loss_models):
        for j, sp in enumerate(loss_sets):
            r = L_mc[i, j] / L_opt
            k = int(np.argmin(r))
            loss_head[f"{m}_{sp}_loss_total_ratio"] = float(L_mc[i, j].sum() / L_opt.sum())
            loss_head[f"{m}_{sp}_loss_min_ratio"] = float(r[k])
            loss_head[f"{m}_{sp}_loss_min_ratio_time"] = float(tau[k])
    log(f"per-step loss against the affine optimum L* on {len(sub)} training images ({loss_s:.1f} s): "
        "min over t of L/L* (at t_phys) and sum_t L / sum_t L*:")
    for m in loss_models:
        log(f"  {m:12s}: min {loss_head[f'{m}_train_loss_min_ratio']:.4f} (t = "
            f"{loss_head[f'{m}_train_loss_min_ratio_time']:.3f}), total {loss_head[f'{m}_train_loss_total_ratio']:.4f}")
    log(f"  linear training loss, sum_t L / sum_t L*: epoch 1 {L_lin[0].sum() / L_opt.sum():.4f}, epoch "
        f"{L_lin.shape[0]} {L_lin[-1].sum() / L_opt.sum():.4f}")

    t1 = time.perf_counter()
    samples = {"relu": relu.sample(n_samples, seed=np.random.default_rng([seed_i, 5]), sigma=sigma),
               "linear": lin.sample(n_samples, seed=np.random.default_rng([seed_i, 5]), sigma=sigma),
               "linear_init": lin_init.sample(n_samples, seed=np.random.default_rng([seed_i, 5]), sigma=sigma),
               "gaussian_fit": _gaussian_fit_samples(x64, n_samples, np.random.default_rng([seed_i, 4]))}
    sample_s = time.perf_counter() - t1
    ref = x_held if x_held is not None else x_train
    ref_name = "held-out images" if x_held is not None else "training images"
    sw_seed = seed_i + 7
    q, rows = {}, {}
    for name, smp in samples.items():
        q[name] = metrics.mnist_quality(smp, clf, x_train, digits, heldout_x=x_held)
        c = np.cov(smp.astype(np.float64), rowvar=False)
        rows[name] = {
            "sliced_wasserstein": metrics.sliced_wasserstein(smp, ref, seed=sw_seed),
            "pixel_wasserstein": _pixel_wasserstein(smp, ref),
            "cov_relative_error": float(np.linalg.norm(c - cov) / np.linalg.norm(cov)),
            "pixels_outside": float(np.mean(np.abs(smp) > 1.0)),
        }
    if x_held is not None:  # the floors: real training images against the held-out ones
        sw_ref = metrics.sliced_wasserstein(x_train, x_held, seed=sw_seed)
        pw_ref = _pixel_wasserstein(x_train, x_held)
    else:
        sw_ref = pw_ref = math.nan
    names = list(samples)
    data = {
        "image": (("model", "sample", "row", "col"),
                  np.stack([samples[m] for m in names]).reshape(len(names), n_samples, *IMAGE_SHAPE)),
        "share_in_digits": ("model", [q[m]["share_in_digits"] for m in names]),
        "share_in_digits_stderr": ("model", [_binomial_stderr(q[m]["share_in_digits"], n_samples) for m in names]),
        "class_share": (("model", "digit"), np.stack([q[m]["class_share"] for m in names])),
        "confidence": ("model", [q[m]["confidence"] for m in names]),
        "copy_share": ("model", [q[m]["copy_share"] for m in names]),
        "median_d1": ("model", [q[m]["median_d1"] for m in names]),
        "sliced_wasserstein": ("model", [rows[m]["sliced_wasserstein"] for m in names]),
        "pixel_wasserstein": ("model", [rows[m]["pixel_wasserstein"] for m in names]),
        "cov_relative_error": ("model", [rows[m]["cov_relative_error"] for m in names]),
        "pixels_outside": ("model", [rows[m]["pixels_outside"] for m in names]),
        "loss_linear": (("epoch", "t"), L_lin),
        "loss_relu_last": ("t", L_relu),
        "loss_gaussian_optimum": ("t", L_opt),
        "loss": (("loss_model", "split", "t"), L_mc),
    }
    coords = {"model": names, "sample": np.arange(n_samples), "row": np.arange(IMAGE_SHAPE[0]),
              "col": np.arange(IMAGE_SHAPE[1]), "digit": np.arange(10), "epoch": np.arange(1, L_lin.shape[0] + 1),
              "t": np.arange(1, relu.T + 1), "alpha_bar": ("t", ab), "physical_time": ("t", tau),
              "loss_model": list(loss_models), "split": list(loss_sets)}
    ds = xr.Dataset(data, coords=coords)
    keys = ("share_in_digits", "confidence", "copy_share", "median_d1", "sliced_wasserstein", "pixel_wasserstein",
            "cov_relative_error")
    head = {f"{m}_{k}": float(ds[k].sel(model=m)) for m in names for k in keys}
    ds.attrs = results.provenance(
        seed=seed_i, command=command, study="linear_baseline", checkpoint=ck_name, dataset="mnist", digits=digits,
        T=relu.T, sigma=sigma, hidden=relu.config.hidden, linear_epochs=int(L_lin.shape[0]),
        linear_init=lin.config.init, n_samples=n_samples, n_train=int(len(x_train)),
        linear_train_seconds=round(train_s, 2), sample_seconds=round(sample_s, 2),
        n_loss_images=int(len(sub)), loss_seconds=round(loss_s, 2), **loss_head,
        linear_training_loss_total_ratio_first_epoch=float(L_lin[0].sum() / L_opt.sum()),
        linear_training_loss_total_ratio_last_epoch=float(L_lin[-1].sum() / L_opt.sum()),
        relu_training_loss_total_ratio_last_epoch=float(L_relu.sum() / L_opt.sum()),
        sliced_wasserstein_reference=sw_ref, pixel_wasserstein_reference=pw_ref, wasserstein_against=ref_name,
        median_d1_heldout=float(q["relu"]["median_d1_heldout"]),
        copy_share_heldout=float(q["relu"]["copy_share_heldout"]),
        classifier_holdout_accuracy=float(getattr(clf, "holdout_accuracy", math.nan)), **head,
        note=("loss_gaussian_optimum(t) = L*(t) = (1/d) sum_i s^2 lambda_i / (s^2 lambda_i + Delta): the least "
              "eps-loss of any affine predictor on data of the training covariance. loss(loss_model, split, t): "
              "Monte Carlo loss on n_loss_images training images ('train') and on the held-out images, the same "
              "noise for every model; 'linear_init' is the untrained Gaussian-init linear model (= the optimum). "
              "*_loss_min_ratio: min over t of L/L* (below 1: the model beats every affine predictor there), at "
              "physical time *_time; *_loss_total_ratio: sum_t L / sum_t L*. loss_linear / loss_relu_last: "
              "training records (each epoch's mean while the weights move). Models sampled: relu, linear "
              "(trained), linear_init, with the same seed; gaussian_fit draws N(mean, cov) directly. "
              "sliced_wasserstein: sliced W2 to the reference images; pixel_wasserstein: mean over pixels of the "
              "W1 distance between the pixel-value distributions (real pixels are nearly binary, a Gaussian's "
              "are not); *_reference: training against held-out images (the floor). cov_relative_error: "
              "|C_samples - C_train|_F / |C_train|_F (sampling noise included; compare with gaussian_fit). "
              "median_d1: median distance of a sample to its nearest training image (median_d1_heldout: of a "
              "held-out image). pixels_outside: share of pixels with |x| > 1."),
        seconds=round(time.perf_counter() - t0_all, 2))
    results.write_dataset(ds, out / "linear_baseline.nc")
    _plot_linear_baseline(ds, out / "linear_baseline.png")
    log(f"samples ({n_samples} each; Wasserstein distances to the {ref_name}, floors {sw_ref:.3f} sliced, "
        f"{pw_ref:.3f} per pixel; median nearest-training distance of held-out images "
        f"{ds.attrs['median_d1_heldout']:.2f}):")
    for m in names:
        log(f"  {m:12s}: 0/1 share {head[f'{m}_share_in_digits']:.3f} +- "
            f"{float(ds['share_in_digits_stderr'].sel(model=m)):.3f}, confidence {head[f'{m}_confidence']:.3f}, "
            f"copies {head[f'{m}_copy_share']:.3f}, median d1 {head[f'{m}_median_d1']:.2f}, sliced W2 "
            f"{head[f'{m}_sliced_wasserstein']:.3f}, pixel W1 {head[f'{m}_pixel_wasserstein']:.3f}, "
            f"cov. error {head[f'{m}_cov_relative_error']:.3f}")
    log(f"outputs in {out} ({time.perf_counter() - t0_all:.1f} s, linear training {train_s:.1f} s)")
    return ds


def _pixel_wasserstein(x, y) -> float:
    """Mean over pixels of the 1-D Wasserstein-1 distance between the values that pixel takes in ``x``
    and in ``y`` (:func:`scipy.stats.wasserstein_distance`): how far the per-pixel marginals are."""
    from scipy.stats import wasserstein_distance

    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    return float(np.mean([wasserstein_distance(x[:, j], y[:, j]) for j in range(x.shape[1])]))


def _mosaic(images: np.ndarray, k: int, pad: int = 2) -> np.ndarray:
    """Up to ``k * k`` images (n, rows, cols), clipped to [-1, 1], tiled row-major into one array
    with ``pad`` pixels of +1 (white) between them, for a single ``imshow``."""
    n, r, c = images.shape
    out = np.ones((k * (r + pad) - pad, k * (c + pad) - pad), dtype=np.float32)
    for i, im in enumerate(images[: k * k]):
        a, b = divmod(i, k)
        out[a * (r + pad):a * (r + pad) + r, b * (c + pad):b * (c + pad) + c] = np.clip(im, -1, 1)
    return out


def _plot_linear_baseline(ds: xr.Dataset, path, k: int = 8):
    """Sample grids of every model, and every model's per-step loss over the affine optimum L*."""
    import matplotlib.pyplot as plt

    names = list(ds["model"].values)
    fig = plt.figure(figsize=(2.9 * len(names) + 4.6, 3.6))
    subfigs = fig.subfigures(1, len(names) + 1, width_ratios=[1] * len(names) + [1.6], wspace=0.02)
    titles = {"relu": "ReLU nets", "linear": f"linear nets, trained {ds.attrs.get('linear_epochs')} epoch(s)",
              "linear_init": "linear nets at the optimum", "gaussian_fit": "Gaussian fit N(mean, cov)"}
    for sf, m in zip(subfigs, names):
        ax = sf.subplots()
        ax.imshow(_mosaic(ds["image"].sel(model=m).values[: k * k], k), cmap="gray", vmin=-1, vmax=1)
        ax.axis("off")
        sf.suptitle(f"{titles.get(m, m)}\n0/1 share {float(ds['share_in_digits'].sel(model=m)):.2f}, "
                    f"pixel W1 {float(ds['pixel_wasserstein'].sel(model=m)):.3f}", fontsize=7)
    ax = subfigs[-1].subplots()
    tp = ds["physical_time"].values
    Lopt = ds["loss_gaussian_optimum"].values
    ax.axhline(1.0, color="k", lw=1.2, label="affine optimum L*")
    styles = {"linear_init": ("C0", ":"), "linear": ("C0", "-"), "relu": ("C3", "-")}
    for m in ds["loss_model"].values:
        for sp in ds["split"].values:
            c, ls = styles.get(str(m), ("C2", "-"))
            ax.plot(tp, ds["loss"].sel(loss_model=m, split=sp).values / Lopt, color=c,
                    ls=ls if sp == "train" else "--", lw=1, label=f"{m} ({sp} images)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("physical time t")
    ax.set_ylabel("eps-loss / L*")
    ax.legend(fontsize=6)
    ax.set_title("below 1: better than any linear net", fontsize=7)
    return plotting.save_figure(fig, path)
