"""Sample quality: distances between point clouds, and checks for the Swiss roll, MNIST and the
Curie-Weiss model.

``import physdiff.metrics`` does not import torch; the MNIST classifier imports it on first use.

References
----------
[RPDB11] Rabin, Peyre, Delon, Bernot (2011), Wasserstein barycenter and its application to texture
    mixing, SSVM; [BRPP15] Bonneel, Rabin, Peyre, Pfister (2015), Sliced and Radon Wasserstein
    barycenters of measures, J. Math. Imaging Vis. 51: the sliced Wasserstein distance.
[SR13] Szekely, Rizzo (2013), Energy statistics: a class of statistics based on distances,
    J. Stat. Plan. Inference 143, eq. (2.1): the energy distance.
[Yoon23] Yoon, Choi, Kwon, Ryu (2023), Diffusion probabilistic models generalize when they fail to
    memorize, ICML workshop: a sample is a copy if d1/d2 < 1/3 (nearest / second-nearest
    training image).
[Thesis] Bustinduy de la Guerra (2024), Out-of-Equilibrium Machine Learning (UCM).
[Heusel17] Heusel, Ramsauer, Unterthiner, Nessler, Hochreiter (2017), GANs trained by a two
    time-scale update rule converge to a local Nash equilibrium, NeurIPS, eq. (6): the Frechet
    (Inception) distance.
[KKLLA19] Kynkaanniemi, Karras, Laine, Lehtinen, Aila (2019), Improved precision and recall metric
    for assessing generative models, NeurIPS, eqs. (1)-(3): k-NN precision and recall (k = 3).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
import warnings
from pathlib import Path

import numpy as np

from ._util import (SeedLike, as_generator, as_samples, atomic_path, check_positive_int, check_real,
                    resolve_device, torch_threads)

__all__ = [
    "sliced_wasserstein",
    "energy_distance",
    "swiss_roll_quality",
    "MNISTClassifier",
    "train_mnist_classifier",
    "mnist_classifier",
    "classifier_cache_dir",
    "nearest_neighbours",
    "frechet_distance",
    "precision_recall",
    "mnist_quality",
    "curie_weiss_quality",
    "nearest_index",
    "copy_check",
    "same_digit_distance",
]

_CHUNK_ELEMENTS = 1 << 22  # ~32 MB of float64 per work chunk


# --------------------------------------------------------------------------------------------
# Distances between point clouds
# --------------------------------------------------------------------------------------------

def _w2_squared_sorted(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Exact squared 1-D 2-Wasserstein distance between rows of sorted ``a`` (P, n) and ``b`` (P, m).

    ``W2^2 = int_0^1 (F^-1(u) - G^-1(u))^2 du`` for the empirical quantile functions, which are
    step functions with jumps at ``i/n`` and ``j/m``; the integral is a finite sum over the union of
    those break points (kept as exact integers in units of ``1/lcm(n, m)``).
    """
    n, m = a.shape[1], b.shape[1]
    if n == m:
        return np.mean((a - b) ** 2, axis=1)
    L = math.lcm(n, m)
    ka, kb = L // n, L // m
    hi = np.union1d(np.arange(1, n + 1, dtype=np.int64) * ka, np.arange(1, m + 1, dtype=np.int64) * kb)
    w = np.diff(hi, prepend=0) / L
    ia = (hi + ka - 1) // ka - 1  # quantile index of the interval (lo, hi]
    ib = (hi + kb - 1) // kb - 1
    return ((a[:, ia] - b[:, ib]) ** 2) @ w


def sliced_wasserstein(x, y, n_projections: int = 256, seed: SeedLike = None) -> float:
    """Sliced 2-Wasserstein distance between two point clouds.

    ``SW2(x, y) = ( mean_p W2^2(<theta_p, x>, <theta_p, y>) )^(1/2)`` over ``n_projections``
    directions ``theta_p`` drawn uniformly on the unit sphere [RPDB11; BRPP15 eq. (13)]. Each 1-D
    ``W2^2`` is computed exactly from the sorted projections (the integral of the squared difference
    of the two empirical quantile functions), so ``x`` and ``y`` may have different sizes. For ``d=1``
    every direction is ``±1`` and ``SW2`` is the exact ``W2``.

    For two clouds differing by a shift ``delta`` (same shape), ``E[SW2^2] = |delta|^2 / d``
    (``E[cos^2] = 1/d`` on the sphere).

    Parameters
    ----------
    x : array_like, shape (n, d)
    y : array_like, shape (m, d)
    n_projections : int >= 1
    seed : int, numpy.random.Generator or None
        Draws the directions; equal seeds give the same directions.

    Returns
    -------
    float
        In the units of ``x``.

    Raises
    ------
    ValueError
        Empty, non-finite or non-2-D input, or ``x`` and ``y`` with different ``d``.
    """
    x = as_samples("x", x, dtype=np.float64)
    y = as_samples("y", y, dtype=np.float64, d=x.shape[1])
    n_projections = check_positive_int("n_projections", n_projections)
    d = x.shape[1]
    theta = as_generator(seed).standard_normal((n_projections, d))
    theta /= np.linalg.norm(theta, axis=1, keepdims=True)
    chunk = max(1, _CHUNK_ELEMENTS // (x.shape[0] + y.shape[0]))
    total = 0.0
    for start in range(0, n_projections, chunk):
        t = theta[start:start + chunk]
        a = np.sort(x @ t.T, axis=0).T
        b = np.sort(y @ t.T, axis=0).T
        total += float(_w2_squared_sorted(a, b).sum())
    return math.sqrt(max(total / n_projections, 0.0))


def _sum_pairwise(a: np.ndarray, b: np.ndarray) -> float:
    """``sum_{i,j} |a_i - b_j|`` (Euclidean), in row chunks of ``cdist``."""
    from scipy.spatial.distance import cdist  # here: scipy.spatial and scipy.stats take 0.4 s to import

    chunk = max(1, _CHUNK_ELEMENTS // b.shape[0])
    return float(sum(cdist(a[i:i + chunk], b).sum() for i in range(0, a.shape[0], chunk)))


def energy_distance(x, y) -> float:
    """Multivariate energy distance between two point clouds.

    ``D(x, y) = ( 2 E|X - Y| - E|X - X'| - E|Y - Y'| )^(1/2)`` with Euclidean norms and the
    expectations taken over all pairs of the two empirical distributions (V-statistics, ``i = j``
    included) [SR13 eq. (2.1)]. This is the convention of ``scipy.stats.energy_distance``, which it
    equals for ``d = 1``; ``D^2 >= 0`` always, and ``D = 0`` iff the two empirical laws coincide.
    Cost ``O((n + m)^2 d)`` in chunks of bounded memory.

    Parameters
    ----------
    x : array_like, shape (n, d)
    y : array_like, shape (m, d)

    Returns
    -------
    float
        In the units of ``x`` to the power 1/2.

    Raises
    ------
    ValueError
        Empty, non-finite or non-2-D input, or different ``d``.
    """
    x = as_samples("x", x, dtype=np.float64)
    y = as_samples("y", y, dtype=np.float64, d=x.shape[1])
    n, m = x.shape[0], y.shape[0]
    d2 = (2.0 * _sum_pairwise(x, y) / (n * m) - _sum_pairwise(x, x) / n**2 - _sum_pairwise(y, y) / m**2)
    return math.sqrt(max(d2, 0.0))


def swiss_roll_quality(samples, turns: float = 2.0, noise: float | None = None,
                       seed: SeedLike = None, n_projections: int = 256) -> dict:
    """Distance of samples to the Swiss roll, against the distance between two fresh draws.

    Draws two fresh spirals ``ref`` and ``ref2`` of the size of ``samples``
    (:func:`physdiff.datasets.swiss_roll` with ``turns``, ``noise``) and reports
    ``d(samples, ref)``, the baseline ``d(ref2, ref)`` and their ratio, for the sliced 2-Wasserstein
    distance (the same directions for both) and the energy distance. A ratio near 1 means the samples
    are as close to the spiral as a finite real sample can be; both distances of a finite sample
    shrink like ``n^(-1/2)``, hence the baseline at the same size.

    Parameters
    ----------
    samples : array_like, shape (n, 2)
    turns, noise :
        As in :func:`physdiff.datasets.swiss_roll` (``noise=None``: the thesis' value).
    seed : int, numpy.random.Generator or None
    n_projections : int

    Returns
    -------
    dict
        ``n`` (int), ``sliced_wasserstein``, ``sliced_wasserstein_baseline``,
        ``sliced_wasserstein_ratio``, ``energy_distance``, ``energy_distance_baseline``,
        ``energy_distance_ratio`` (floats).

    Raises
    ------
    ValueError
        ``samples`` not of shape (n, 2) or not finite; bad ``turns`` / ``noise``.
    """
    from .datasets import swiss_roll

    samples = as_samples("samples", samples, dtype=np.float64, d=2)
    n = samples.shape[0]
    rng = as_generator(seed)
    ref = swiss_roll(n, turns=turns, noise=noise, seed=rng)
    ref2 = swiss_roll(n, turns=turns, noise=noise, seed=rng)
    proj_seed = int(rng.integers(0, 2**63 - 1))
    sw = sliced_wasserstein(samples, ref, n_projections, seed=proj_seed)
    sw0 = sliced_wasserstein(ref2, ref, n_projections, seed=proj_seed)
    ed = energy_distance(samples, ref)
    ed0 = energy_distance(ref2, ref)
    return {
        "n": n,
        "sliced_wasserstein": sw,
        "sliced_wasserstein_baseline": sw0,
        "sliced_wasserstein_ratio": sw / sw0 if sw0 > 0 else math.inf,
        "energy_distance": ed,
        "energy_distance_baseline": ed0,
        "energy_distance_ratio": ed / ed0 if ed0 > 0 else math.inf,
    }


# --------------------------------------------------------------------------------------------
# MNIST
# --------------------------------------------------------------------------------------------

def _check_images(name: str, x) -> np.ndarray:
    return as_samples(name, x, dtype=np.float32, d=784)


#: Width of the classifier's penultimate layer: the feature space of the Frechet distance and of
#: k-NN precision and recall.
FEATURE_DIM = 64

#: Bumped whenever the network or its training loop changes, so cached weights are not reused.
_CLASSIFIER_VERSION = "cnn-8-16-64-v1"


def _build_cnn():
    from torch import nn

    return nn.Sequential(
        nn.Unflatten(1, (1, 28, 28)),
        nn.Conv2d(1, 8, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(16 * 7 * 7, FEATURE_DIM), nn.ReLU(),
        nn.Linear(FEATURE_DIM, 10),
    )


class MNISTClassifier:
    """A small CNN trained by :func:`train_mnist_classifier` on images in ``[-1, 1]``.

    Attributes
    ----------
    module : torch.nn.Module
        Conv(1->8, 5x5)-ReLU-MaxPool-Conv(8->16, 5x5)-ReLU-MaxPool-Linear(784->64)-ReLU-
        Linear(64->10); input ``(n, 784)``, output logits ``(n, 10)``. The 64 activations after the
        first Linear-ReLU are the features (:meth:`features`).
    device : torch.device
    holdout_accuracy : float
        Accuracy on the held-out split (NaN when nothing was held out).
    test_accuracy : float
        Accuracy on the 10 000 images of the MNIST test split (set by :func:`mnist_classifier`;
        NaN otherwise).
    from_cache : bool
        Whether :func:`mnist_classifier` loaded the weights from its disk cache.
    settings : dict
        Training settings and data checksum (set by :func:`mnist_classifier`).
    n_train, n_holdout : int
    train_time_s : float
        Wall time of the training loop, seconds.
    num_threads : int or None
        torch CPU threads used by ``predict`` / ``predict_proba`` (None: torch's setting).
    train_indices, holdout_indices : ndarray, int64
        Rows of the ``x`` given to :func:`train_mnist_classifier` used for training / held out.
    """

    train_indices: np.ndarray = np.empty(0, dtype=np.int64)
    holdout_indices: np.ndarray = np.empty(0, dtype=np.int64)
    test_accuracy: float = math.nan
    from_cache: bool = False

    def __init__(self, module, device, holdout_accuracy: float, n_train: int, n_holdout: int,
                 train_time_s: float, num_threads: int | None = 1):
        self.num_threads = num_threads
        self.module = module
        self.device = device
        self.holdout_accuracy = holdout_accuracy
        self.n_train = n_train
        self.n_holdout = n_holdout
        self.train_time_s = train_time_s
        self.settings: dict = {}

    def __repr__(self) -> str:
        return (f"MNISTClassifier(n_train={self.n_train}, n_holdout={self.n_holdout}, "
                f"holdout_accuracy={self.holdout_accuracy:.4f}, test_accuracy={self.test_accuracy:.4f}, "
                f"train_time_s={self.train_time_s:.1f})")

    def _forward(self, x: np.ndarray, layers, batch_size: int = 2048) -> np.ndarray:
        import torch

        self.module.eval()
        out = []
        with torch.no_grad(), torch_threads(self.num_threads):
            for i in range(0, x.shape[0], batch_size):
                xb = torch.from_numpy(np.ascontiguousarray(x[i:i + batch_size])).to(self.device)
                out.append(layers(xb).double().cpu().numpy())
        if not out:
            return np.empty((0, 10))
        return np.concatenate(out, axis=0)

    def _logits(self, x: np.ndarray) -> np.ndarray:
        return self._forward(x, self.module)

    def features(self, x) -> np.ndarray:
        """Penultimate-layer activations, the feature space of :func:`frechet_distance` and
        :func:`precision_recall`.

        Parameters
        ----------
        x : array_like, shape (n, 784) (or (784,)), images in ``[-1, 1]``

        Returns
        -------
        ndarray, float64, shape (n, FEATURE_DIM); non-negative (after a ReLU).
        """
        return self._forward(_check_images("x", x), self.module[:-1])

    def predict_proba(self, x) -> np.ndarray:
        """Class probabilities.

        Parameters
        ----------
        x : array_like, shape (n, 784) (or (784,)), images in ``[-1, 1]``

        Returns
        -------
        ndarray, float64, shape (n, 10); rows sum to 1.
        """
        logits = self._logits(_check_images("x", x))
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True)

    def predict(self, x) -> np.ndarray:
        """Predicted digit, int64 of shape (n,), for images ``x`` of shape (n, 784) in ``[-1, 1]``."""
        return self._logits(_check_images("x", x)).argmax(axis=1).astype(np.int64)


def train_mnist_classifier(x, labels, seed: SeedLike = None, epochs: int = 5, device="cpu",
                           holdout: float = 0.2, batch_size: int = 128,
                           lr: float = 3e-3, num_threads: int | None = 1) -> MNISTClassifier:
    """Train a small CNN digit classifier on the MNIST images it is given (no downloaded weights).

    Adam (learning rate ``lr`` with a cosine decay to 0) on the cross-entropy, minibatches of
    ``batch_size``, for ``epochs`` passes over the training split; a random fraction ``holdout`` of
    the images is kept aside and the accuracy on it is stored in ``.holdout_accuracy``. About 3 s
    for 8 000 images and 5 epochs on one CPU core, reaching ~97% held-out accuracy on MNIST.
    Train it on all ten digits so that it can tell the digits of interest from the others.

    Parameters
    ----------
    x : array_like, shape (n, 784)
        Images in ``[-1, 1]`` (as :func:`physdiff.datasets.load_mnist` gives them).
    labels : array_like of int, shape (n,), values in 0..9
    seed : int, numpy.random.Generator or None
        Seeds the split, the initialisation and the minibatch order; torch's global random state
        is left as it was.
    epochs : int >= 1
    device : "cpu", "cuda", "cuda:<i>", "auto" or torch.device
    holdout : float in [0, 1)
        Fraction of the images held out for the accuracy.
    batch_size : int >= 1
    lr : float > 0
    num_threads : int >= 1 or None
        torch CPU threads while training and predicting, restored afterwards (``None``: leave
        torch's setting). The default 1 is deliberate: this small network gains little from
        intra-op threads, and on a busy machine two threads fighting other processes for two cores
        ran 5-20 times slower than one (measured: 4.7-9.8 s with 1 thread, 30-115 s with 2).
        Results do not depend on it.

    Returns
    -------
    MNISTClassifier

    Raises
    ------
    ValueError
        Wrong shapes, labels outside 0..9, bad hyper-parameters, CUDA requested but absent, or
        fewer than 2 training images left after the hold-out.
    """
    import torch

    x = _check_images("x", x)
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.shape[0] != x.shape[0]:
        raise ValueError(f"labels must have shape ({x.shape[0]},) to match x, got {labels.shape}")
    if labels.dtype.kind not in "iu" or labels.min() < 0 or labels.max() > 9:
        raise ValueError("labels must be integers in 0..9")
    epochs = check_positive_int("epochs", epochs)
    batch_size = check_positive_int("batch_size", batch_size)
    holdout = check_real("holdout", holdout, lo=0.0, hi=1.0, hi_open=True)
    lr = check_real("lr", lr, lo=0.0, lo_open=True)
    if num_threads is not None:
        num_threads = check_positive_int("num_threads", num_threads)
    dev = resolve_device(device)

    rng = as_generator(seed)
    perm = rng.permutation(x.shape[0])
    n_hold = int(round(holdout * x.shape[0]))
    hold, train = perm[:n_hold], perm[n_hold:]
    if train.size < 2:
        raise ValueError(f"only {train.size} training image(s) left after holding out {n_hold}; "
                         "give more images or a smaller holdout")
    torch_seed = int(rng.integers(0, 2**63 - 1))

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(torch_seed)
        module = _build_cnn()
    module = module.to(dev)
    gen = torch.Generator().manual_seed(torch_seed)
    X = torch.from_numpy(np.ascontiguousarray(x[train])).to(dev)
    Y = torch.from_numpy(labels[train].astype(np.int64)).to(dev)
    steps_per_epoch = math.ceil(train.size / batch_size)
    opt = torch.optim.Adam(module.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * steps_per_epoch)

    with torch_threads(num_threads):
        elapsed = _fit(module, opt, sched, X, Y, epochs, batch_size, gen, dev)
    module.eval()

    clf = MNISTClassifier(module, dev, math.nan, int(train.size), int(n_hold), elapsed, num_threads)
    clf.train_indices, clf.holdout_indices = train.astype(np.int64), hold.astype(np.int64)
    if n_hold:
        clf.holdout_accuracy = float(np.mean(clf.predict(x[hold]) == labels[hold]))
    return clf


def _fit(module, opt, sched, X, Y, epochs, batch_size, gen, dev) -> float:
    """The training loop of :func:`train_mnist_classifier`; returns its wall time in seconds."""
    import torch
    import torch.nn.functional as F

    n = X.shape[0]
    start = time.perf_counter()
    module.train()
    for _ in range(epochs):
        order = torch.randperm(n, generator=gen).to(dev)
        for i in range(0, n, batch_size):
            b = order[i:i + batch_size]
            loss = F.cross_entropy(module(X[b]), Y[b])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    return time.perf_counter() - start


def classifier_cache_dir() -> Path:
    """Folder of cached classifier weights: ``$PHYSDIFF_CACHE`` if set, else ``~/.cache/physdiff``."""
    env = os.environ.get("PHYSDIFF_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "physdiff"


def _sha256(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(str((a.dtype.str, a.shape)).encode())
        h.update(np.ascontiguousarray(a).data)
    return h.hexdigest()


def mnist_classifier(data_dir=None, *, epochs: int = 3, seed: int = 0, n_train: int | None = None,
                     batch_size: int = 128, lr: float = 3e-3, device="cpu", num_threads: int | None = 1,
                     cache_dir=None, retrain: bool = False) -> MNISTClassifier:
    """The MNIST digit classifier of the quality metrics, trained once and cached on disk.

    Trains :func:`train_mnist_classifier` on the MNIST train split (all ten digits, 60 000 images;
    nothing held out) and measures its accuracy on the 10 000 images of the test split. The weights
    are written (atomically, as safetensors with the settings, the accuracy and the training time
    in the header) to ``cache_dir/mnist-classifier-<key>.safetensors``, where ``key`` hashes the
    SHA-256 of the training images and labels, the training settings and the network's version; a
    later call with the same data and settings loads them instead of training (under a second).
    Measured with the defaults (3 epochs, one thread): 39 s of training on a shared 2-core machine,
    94 s under heavy load, and a test accuracy of 0.9895.

    Parameters
    ----------
    data_dir : path-like or None
        Folder of the MNIST IDX files (see :func:`physdiff.datasets.load_mnist`).
    epochs : int >= 1
    seed : int
        Seeds the initialisation and the minibatch order.
    n_train : int >= 1 or None
        Train on a seeded random subset of this many training images (tests); ``None``: all.
    batch_size, lr, device, num_threads :
        As in :func:`train_mnist_classifier`.
    cache_dir : path-like or None
        Default :func:`classifier_cache_dir`.
    retrain : bool
        Train and overwrite the cached weights even if they exist.

    Returns
    -------
    MNISTClassifier
        With ``test_accuracy``, ``settings`` and ``from_cache`` set; ``train_time_s`` is the time of
        the run that trained it.

    Raises
    ------
    ValueError
        Bad settings. FileNotFoundError: the MNIST files are missing.
    """
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    from .datasets import load_mnist

    epochs = check_positive_int("epochs", epochs)
    if n_train is not None:
        n_train = check_positive_int("n_train", n_train, minimum=2)
    seed = check_positive_int("seed", seed, minimum=0)
    x, labels = load_mnist(data_dir, split="train")
    if n_train is not None and n_train < x.shape[0]:
        keep = np.sort(np.random.default_rng([seed, 1]).choice(x.shape[0], n_train, replace=False))
        x, labels = x[keep], labels[keep]
    settings = {"version": _CLASSIFIER_VERSION, "data_sha256": _sha256(x, labels), "n_train": int(x.shape[0]),
                "epochs": epochs, "seed": seed, "batch_size": int(batch_size), "lr": float(lr)}
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    path = Path(classifier_cache_dir() if cache_dir is None else cache_dir) / f"mnist-classifier-{key}.safetensors"
    dev = resolve_device(device)

    if path.is_file() and not retrain:
        try:
            with safe_open(str(path), framework="pt", device="cpu") as f:
                meta = f.metadata()
                state = {k: f.get_tensor(k) for k in f.keys()}
            if json.loads(meta["settings"]) != settings:
                raise ValueError("settings differ")
            module = _build_cnn()
            module.load_state_dict(state)
            module = module.to(dev).eval()
            clf = MNISTClassifier(module, dev, math.nan, settings["n_train"], 0,
                                  float(meta["train_time_s"]), num_threads)
            clf.test_accuracy = float(meta["test_accuracy"])
            clf.settings, clf.from_cache = settings, True
            return clf
        except Exception as exc:  # unreadable or stale cache entry: train again and overwrite it
            warnings.warn(f"ignoring the cached MNIST classifier {path} ({exc}); training it again", stacklevel=2)

    clf = train_mnist_classifier(x, labels, seed=seed, epochs=epochs, device=dev, holdout=0.0,
                                 batch_size=batch_size, lr=lr, num_threads=num_threads)
    x_test, y_test = load_mnist(data_dir, split="test")
    clf.test_accuracy = float(np.mean(clf.predict(x_test) == y_test))
    clf.settings = settings
    state = {k: v.detach().cpu().contiguous() for k, v in clf.module.state_dict().items()}
    meta = {"settings": json.dumps(settings, sort_keys=True), "test_accuracy": repr(clf.test_accuracy),
            "train_time_s": repr(clf.train_time_s), "torch": torch.__version__}
    try:
        with atomic_path(path) as tmp:
            save_file(state, str(tmp), metadata=meta)
    except OSError as exc:  # a read-only cache only costs a retraining next time
        warnings.warn(f"could not cache the MNIST classifier in {path.parent}: {exc}", stacklevel=2)
    return clf


def nearest_neighbours(x, reference, k: int = 2) -> np.ndarray:
    """Euclidean distances from each row of ``x`` to its ``k`` nearest rows of ``reference``.

    Exact, in float64, by ``|a|^2 + |b|^2 - 2 a.b`` in chunks of bounded memory (256 x 12 000
    images of 784 pixels take well under a second).

    Parameters
    ----------
    x : array_like, shape (n, d)
    reference : array_like, shape (P, d), P >= k
    k : int >= 1

    Returns
    -------
    ndarray, float64, shape (n, k), sorted ascending along axis 1.

    Raises
    ------
    ValueError
        Bad shapes, non-finite input, or fewer than ``k`` reference rows.
    """
    x = as_samples("x", x, dtype=np.float64)
    ref = as_samples("reference", reference, dtype=np.float64, d=x.shape[1])
    k = check_positive_int("k", k)
    if ref.shape[0] < k:
        raise ValueError(f"reference has {ref.shape[0]} rows, fewer than k={k}")
    ref_sq = np.einsum("ij,ij->i", ref, ref)
    chunk = max(1, _CHUNK_ELEMENTS // ref.shape[0])
    out = np.empty((x.shape[0], k))
    for i in range(0, x.shape[0], chunk):
        a = x[i:i + chunk]
        d2 = ref_sq[None, :] - 2.0 * (a @ ref.T)
        d2 += np.einsum("ij,ij->i", a, a)[:, None]
        part = np.partition(d2, k - 1, axis=1)[:, :k] if k < ref.shape[0] else d2
        out[i:i + chunk] = np.sort(part, axis=1)[:, :k]
    return np.sqrt(np.maximum(out, 0.0))


def frechet_distance(x, y) -> float:
    """Frechet distance between Gaussian fits of two point clouds [Heusel17 eq. (6)].

    ``d^2 = |mu_x - mu_y|^2 + Tr(S_x + S_y - 2 (S_x S_y)^(1/2))`` with the sample means and
    covariances (``ddof = 1``); the matrix square root by :func:`scipy.linalg.sqrtm` (its real part;
    a tiny multiple of the identity is added to both covariances when the product is singular).
    On Inception features this is the FID; here it is used on the MNIST classifier's features.
    It is biased upwards for finite samples (of order ``d / n``), so compare it only with a distance
    between sets of the same sizes (:func:`mnist_quality` divides by one).

    Parameters
    ----------
    x : array_like, shape (n, d), n >= 2
    y : array_like, shape (m, d), m >= 2

    Returns
    -------
    float
        ``d^2`` (squared units of ``x``), >= 0.

    Raises
    ------
    ValueError
        Bad shapes, fewer than 2 rows, or non-finite input.
    """
    from scipy.linalg import LinAlgWarning, sqrtm

    x = as_samples("x", x, dtype=np.float64)
    y = as_samples("y", y, dtype=np.float64, d=x.shape[1])
    if x.shape[0] < 2 or y.shape[0] < 2:
        raise ValueError(f"x and y need at least 2 rows each, got {x.shape[0]} and {y.shape[0]}")
    mu = x.mean(0) - y.mean(0)
    sx = np.atleast_2d(np.cov(x, rowvar=False))
    sy = np.atleast_2d(np.cov(y, rowvar=False))
    with warnings.catch_warnings():
        # features that are constant in both sets (dead ReLU units) make S_x S_y singular; its
        # square root is still well defined, and the non-finite case is handled below
        warnings.simplefilter("ignore", LinAlgWarning)
        covmean = sqrtm(sx @ sy)
        if not np.all(np.isfinite(covmean)):
            off = 1e-6 * np.eye(sx.shape[0]) * max(np.trace(sx), np.trace(sy), 1e-12) / sx.shape[0]
            covmean = sqrtm((sx + off) @ (sy + off))
    d2 = float(mu @ mu + np.trace(sx) + np.trace(sy) - 2.0 * np.trace(covmean).real)
    return max(d2, 0.0)


def precision_recall(real, fake, k: int = 3) -> tuple[float, float]:
    """k-NN precision and recall of ``fake`` against ``real`` [KKLLA19].

    Each point's neighbourhood is the ball reaching its ``k``-th nearest neighbour within its own
    set (itself excluded). Precision: share of ``fake`` points inside at least one ``real`` ball
    (samples that look real). Recall: share of ``real`` points inside at least one ``fake`` ball
    (real data that the samples cover). Both lie in ``[0, 1]``; two samples of one law give values
    near 1 that fall slowly as the sets shrink, so compare with real-vs-real at the same sizes.

    Parameters
    ----------
    real : array_like, shape (n, d), n > k
    fake : array_like, shape (m, d), m > k
    k : int >= 1
        3 in [KKLLA19].

    Returns
    -------
    (precision, recall) : floats

    Raises
    ------
    ValueError
        Bad shapes, non-finite input, or a set of at most ``k`` rows.
    """
    real = as_samples("real", real, dtype=np.float64)
    fake = as_samples("fake", fake, dtype=np.float64, d=real.shape[1])
    k = check_positive_int("k", k)
    if real.shape[0] <= k or fake.shape[0] <= k:
        raise ValueError(f"real and fake need more than k={k} rows each, got {real.shape[0]} and {fake.shape[0]}")
    r_real = nearest_neighbours(real, real, k=k + 1)[:, k]  # the first neighbour is the point itself
    r_fake = nearest_neighbours(fake, fake, k=k + 1)[:, k]

    def _covered(points, centres, radii):
        from scipy.spatial.distance import cdist

        hit = np.zeros(points.shape[0], dtype=bool)
        chunk = max(1, _CHUNK_ELEMENTS // centres.shape[0])
        for i in range(0, points.shape[0], chunk):
            hit[i:i + chunk] = np.any(cdist(points[i:i + chunk], centres) <= radii[None, :], axis=1)
        return hit

    return float(_covered(fake, real, r_real).mean()), float(_covered(real, fake, r_fake).mean())


def _class_metrics(proba: np.ndarray, wanted: np.ndarray, confidence: float, suffix: str = "") -> dict:
    """Share in the wanted digits, confident share, per-digit shares and balance from probabilities."""
    n = proba.shape[0]
    pred = proba.argmax(axis=1)
    in_digits = np.isin(pred, wanted)
    class_share = np.bincount(pred, minlength=10) / n
    shares = class_share[wanted]
    return {
        "share_in_digits" + suffix: float(np.mean(in_digits)),
        "confident_share" + suffix: float(np.mean(in_digits & (proba.max(axis=1) >= confidence))),
        "class_share" + suffix: class_share,
        "digit_balance" + suffix: shares / shares.sum() if shares.sum() > 0 else np.full(wanted.size, math.nan),
        "confidence" + suffix: float(proba.max(axis=1).mean()),
    }


_FEATURE_KEYS = ("frechet_distance", "frechet_distance_real", "frechet_ratio", "precision", "recall",
                 "precision_real", "recall_real")


def _feature_metrics(classifier: MNISTClassifier, samples: np.ndarray, real: np.ndarray, k: int,
                     rng: np.random.Generator, splits: int) -> dict:
    """Frechet ratio and k-NN precision/recall of ``samples`` against disjoint real sets, averaged
    over ``splits`` random splits of ``real`` into ``B`` (the samples' size) and ``A`` (the rest)."""
    n_cmp = min(samples.shape[0], real.shape[0] // 2)
    out = {"n_compared": n_cmp, "n_reference": real.shape[0] - n_cmp}
    if n_cmp <= max(k, 1):
        return out | dict.fromkeys(_FEATURE_KEYS, math.nan)
    if n_cmp < samples.shape[0]:
        samples = samples[np.sort(rng.choice(samples.shape[0], n_cmp, replace=False))]
    f_real = classifier.features(real)
    f_s = classifier.features(samples)
    vals = []
    for _ in range(splits):
        perm = rng.permutation(real.shape[0])
        f_b, f_a = f_real[perm[:n_cmp]], f_real[perm[n_cmp:]]  # disjoint: B is the size of the samples
        vals.append((frechet_distance(f_s, f_a), frechet_distance(f_b, f_a), *precision_recall(f_a, f_s, k),
                     *precision_recall(f_a, f_b, k)))
    fd, fd0, p, r, p0, r0 = np.mean(vals, axis=0)
    out.update(frechet_distance=fd, frechet_distance_real=fd0, frechet_ratio=fd / fd0 if fd0 > 0 else math.inf,
               precision=p, recall=r, precision_real=p0, recall_real=r0)
    return {key: float(v) if key in _FEATURE_KEYS else v for key, v in out.items()}


def mnist_quality(samples, classifier: MNISTClassifier | None, train_x, digits,
                  heldout_x=None, copy_threshold: float = 1.0 / 3.0, *, confidence: float = 0.9,
                  k: int = 3, seed: SeedLike = 0, splits: int = 10) -> dict:
    """Quality of generated MNIST digits: classes, confidence, distance to real digits, copies.

    - Classes: the share of samples that ``classifier`` assigns to one of ``digits``
      (``share_in_digits``), the share assigned to one of them with probability ``>= confidence``
      (``confident_share``), the share of each class and the balance between the ``digits``.
    - Distance to real digits (needs ``heldout_x``, real images of ``digits`` not in ``train_x``,
      e.g. the test split's): ``heldout_x`` is split at random into ``B``, the size ``n'`` of the
      samples, and the rest ``A`` (if it holds fewer than ``2 n`` images, ``n' = len(heldout_x) // 2``
      and ``n'`` of the samples are drawn). In the classifier's feature space
      (:meth:`MNISTClassifier.features`), ``frechet_ratio = FD(samples, A) / FD(B, A)``
      (:func:`frechet_distance` [Heusel17]): about 1 for samples as good as real digits, whatever the
      finite-size bias. k-NN ``precision`` and ``recall`` against ``A`` [KKLLA19], beside
      ``precision_real`` / ``recall_real`` of ``B`` against ``A``. Each distance, precision and
      recall is the mean over ``splits`` random splits, and the ratio is that of the means: one
      split of 2 115 test digits into 256 and 1 859 gives ``FD(B, A)`` anywhere from 5 to 18,
      and the ratio with it.
    - Memorisation [Yoon23]: for each sample, the Euclidean distances ``d1 <= d2`` to its nearest and
      second-nearest training image; it is a copy if ``d1 / d2 < copy_threshold`` (1/3 in [Yoon23]),
      or ``d1 = 0``. As context, the median ``d1`` of the samples and, if ``heldout_x`` is given,
      that of real held-out images (which are not copies by construction).

    Parameters
    ----------
    samples : array_like, shape (n, 784), images in ``[-1, 1]``
    classifier : MNISTClassifier or None
        ``None`` skips the class and feature metrics (they are then NaN).
    train_x : array_like, shape (P, 784), P >= 2
        The images the generative model was trained on.
    digits : iterable of int in 0..9
        The digits the generative model was trained on.
    heldout_x : array_like, shape (m, 784), optional
        Real images of ``digits`` not in ``train_x``.
    copy_threshold : float in (0, 1]
    confidence : float in (0, 1]
        Probability threshold of ``confident_share`` (0.9).
    k : int >= 1
        Neighbours of precision and recall (3 in [KKLLA19]).
    seed : int, numpy.random.Generator or None
        Draws the splits of ``heldout_x`` (and the samples kept, if any are dropped).
    splits : int >= 1
        Random splits of ``heldout_x`` averaged over (10).

    Returns
    -------
    dict
        ``n`` (int); ``share_in_digits``, ``confident_share``, ``confidence`` (floats);
        ``class_share`` (float64 (10,)); ``digit_balance`` (float64 (len(digits),), the shares of
        ``digits`` among the samples classified as one of them); the same five for ``heldout_x``
        with the suffix ``_heldout``; ``frechet_distance``, ``frechet_distance_real``,
        ``frechet_ratio``, ``precision``, ``recall``, ``precision_real``, ``recall_real`` (floats),
        ``n_compared``, ``n_reference`` (ints); ``copy_share``, ``median_d1``, ``median_d1_heldout``,
        ``copy_share_heldout`` (floats); ``d1``, ``d2`` (float64 (n,)). Metrics that need the
        classifier or ``heldout_x`` are NaN without them.

    Raises
    ------
    ValueError
        Bad shapes, non-finite input, bad ``digits``, ``copy_threshold``, ``confidence`` or ``k``.
    """
    from .datasets import _check_digits

    samples = _check_images("samples", samples)
    train_x = _check_images("train_x", train_x)
    wanted = _check_digits(digits)
    if wanted is None:
        raise ValueError("digits must list the digits the model was trained on, e.g. [0, 1]")
    copy_threshold = check_real("copy_threshold", copy_threshold, lo=0.0, hi=1.0, lo_open=True)
    confidence = check_real("confidence", confidence, lo=0.0, hi=1.0, lo_open=True)
    k = check_positive_int("k", k)
    splits = check_positive_int("splits", splits)
    held = None if heldout_x is None else _check_images("heldout_x", heldout_x)
    n = samples.shape[0]

    out: dict = {"n": n}
    nan_class = {"share_in_digits": math.nan, "confident_share": math.nan, "class_share": np.full(10, math.nan),
                 "digit_balance": np.full(wanted.size, math.nan), "confidence": math.nan}
    out.update(_class_metrics(classifier.predict_proba(samples), wanted, confidence)
               if classifier is not None else nan_class)
    if classifier is not None and held is not None:
        out.update(_class_metrics(classifier.predict_proba(held), wanted, confidence, "_heldout"))
        out.update(_feature_metrics(classifier, samples, held, k, as_generator(seed), splits))
    else:
        out.update({key + "_heldout": v for key, v in nan_class.items()})
        out.update(dict.fromkeys(_FEATURE_KEYS, math.nan), n_compared=0, n_reference=0)

    def _copies(d):
        return (d[:, 0] == 0.0) | (d[:, 0] < copy_threshold * d[:, 1])

    nn = nearest_neighbours(samples, train_x, k=2)
    out["d1"], out["d2"] = nn[:, 0], nn[:, 1]
    out["copy_share"] = float(np.mean(_copies(nn)))
    out["median_d1"] = float(np.median(nn[:, 0]))
    if held is not None:
        nh = nearest_neighbours(held, train_x, k=2)
        out["median_d1_heldout"] = float(np.median(nh[:, 0]))
        out["copy_share_heldout"] = float(np.mean(_copies(nh)))
    else:
        out["median_d1_heldout"] = math.nan
        out["copy_share_heldout"] = math.nan
    return out


def mnist_speciation(model, classifier: MNISTClassifier, train_x, train_labels, digits, *, n_pairs: int = 1000,
                     n_branch: int = 7, n_mc: int = 2000, seed: SeedLike = 0) -> dict:
    """Learned and exact-score speciation times of a two-digit MNIST DDPM, by cloning [BBBM24].

    - Exact: ``phi(t) = E[sum_c P(c | x_t)^2]`` of the exact score of the training set (the
      empirical mixture; :func:`physdiff.theory.gaussian.phi_empirical_mixture`, ``n_mc`` Monte Carlo
      samples) on the model's steps with physical time in ``[0.25, 4.5]``, and the crossing of
      ``phi = 0.7752`` (:func:`physdiff.reverse.crossing_time`).
    - Learned: :func:`physdiff.reverse.cloning` with the model's own sampler (``n_pairs`` pairs,
      ``n_branch`` branch steps spanning ``-0.6 .. +0.8`` around the exact crossing), endpoints
      labelled by the more probable of ``digits`` under ``classifier``, and the same crossing.

    See ``docs/theory.md``, "Speciation, cloning and collapse". A model that fails to break the
    symmetry on time crosses late: its samples superpose the classes down to smaller ``t``.

    Parameters
    ----------
    model : physdiff.ddpm.DDPM
        Trained on ``train_x`` (images in [-1, 1], ``d = 784``).
    classifier : MNISTClassifier
    train_x : array_like, shape (P, 784)
    train_labels : array_like, shape (P,)
        Digit of each training image.
    digits : iterable of int
        The model's digits (two or more).
    n_pairs, n_branch, n_mc : int
        Clone pairs (>= 2), branch steps (>= 2), Monte Carlo samples of the exact ``phi`` (>= 2).
    seed : int, Generator or None

    Returns
    -------
    dict
        ``speciation_time``, ``speciation_time_stderr`` (learned), ``speciation_time_exact``,
        ``speciation_time_exact_stderr``, ``speciation_ratio`` (learned / exact) as floats (NaN where
        ``phi`` does not cross on its grid); ``n_pairs``.

    Raises
    ------
    ValueError
        Bad shapes or counts, fewer than two digits, labels outside ``digits``.
    """
    from .datasets import _check_digits
    from .reverse import cloning, cloning_branch_steps, crossing_time
    from .theory.gaussian import phi_empirical_mixture

    train_x = _check_images("train_x", train_x)
    labels = np.asarray(train_labels)
    if labels.shape != (train_x.shape[0],):
        raise ValueError(f"train_labels must have shape ({train_x.shape[0]},), got {labels.shape}")
    wanted = _check_digits(digits)
    if wanted is None or wanted.size < 2 or not np.isin(labels, wanted).all():
        raise ValueError(f"digits must list the two or more digits of train_labels, got {digits}")
    n_pairs = check_positive_int("n_pairs", n_pairs, minimum=2)
    n_branch = check_positive_int("n_branch", n_branch, minimum=2)
    n_mc = check_positive_int("n_mc", n_mc, minimum=2)
    rng = as_generator(seed)
    sched = model.schedule
    times = np.asarray(sched.physical_time[1:], dtype=np.float64)
    grid = times[(times >= 0.25) & (times <= 4.5)]
    phi, err = phi_empirical_mixture(grid, train_x, labels, n_samples=n_mc, seed=rng)
    exact = crossing_time(grid, phi, stderr=err, seed=rng, missing="nan")
    centre = exact[0] if np.isfinite(exact[0]) else 0.5 * math.log(np.linalg.eigvalsh(np.cov(train_x.T))[-1])
    steps = cloning_branch_steps(sched, centre, span=(-0.6, 0.8), n_branch=n_branch)

    def classify(x0):
        x = x0.detach().cpu().numpy() if hasattr(x0, "detach") else np.asarray(x0)
        p = classifier.predict_proba(np.clip(x.astype(np.float32, copy=False), -1.0, 1.0))
        return wanted[np.argmax(p[:, wanted], axis=1)]

    res = cloning(model.eps_fn, sched, classify, steps, n_pairs, model.d, seed=rng, sigma=model.config.sigma)
    learned = crossing_time(res.physical_time, res.phi, stderr=res.phi_stderr, seed=rng, missing="nan")
    return {"speciation_time": float(learned[0]), "speciation_time_stderr": float(learned[1]),
            "speciation_time_exact": float(exact[0]), "speciation_time_exact_stderr": float(exact[1]),
            "speciation_ratio": float(learned[0] / exact[0]), "n_pairs": n_pairs}


# --------------------------------------------------------------------------------------------
# Curie-Weiss
# --------------------------------------------------------------------------------------------

def curie_weiss_quality(samples, N: int, beta: float, h: float = 0.0, train=None) -> dict:
    """Magnetization law and memorisation of Curie-Weiss samples.

    Each sample is mapped to spins ``a = sign(x)`` (``x >= 0`` -> +1) and ``M = sum_i a_i``. Its
    histogram is compared with the exact ``P(M) ∝ C(N, (N+M)/2) exp(beta M^2/(2N) + h M)``
    (:func:`physdiff.theory.curie_weiss.magnetization_distribution`) by the
    total-variation distance ``TV = (1/2) sum_M |P_hat(M) - P(M)|``. Even exact samples give
    ``TV > 0``; ``tv_expected`` is its exact expectation for ``n`` exact samples,
    ``(1/2n) sum_M E|K_M - n P(M)|`` with ``K_M ~ Binomial(n, P(M))`` and de Moivre's mean absolute
    deviation ``E|K - np| = 2 (1-p) (f+1) Binom(f+1; n, p)``, ``f = floor(np)``.
    The share of the + state counts ``M > 0``, and ``M = 0`` (even N) as one half.

    Parameters
    ----------
    samples : array_like, shape (n, N)
        Spins ``±1`` or real-valued samples (their signs are used).
    N : int >= 1
    beta : float >= 0
    h : float
    train : array_like, shape (P, N), optional
        Training configurations; their signs are compared with the samples' signs.

    Returns
    -------
    dict
        ``n`` (int); ``M`` (int64 (N+1,), ``-N..N`` step 2); ``P_samples``, ``P_exact`` (float64
        (N+1,)); ``magnetization`` (int64 (n,), each sample's M); ``tv`` and ``tv_expected``
        (floats); ``plus_share``, ``plus_share_exact``, ``plus_share_stderr`` (floats, the last the
        binomial standard error ``sqrt(p(1-p)/n)`` at the exact share); ``copy_share`` (float, the
        share of samples whose sign configuration equals a training configuration exactly; NaN
        without ``train``).

    Raises
    ------
    ValueError
        ``samples`` or ``train`` not of shape (., N) or not finite; bad ``N``, ``beta``, ``h``.
    """
    from scipy.stats import binom  # here: scipy.stats takes 0.3 s to import

    from .theory.curie_weiss import magnetization_distribution

    N = check_positive_int("N", N)
    M_grid, P = magnetization_distribution(N, beta, h)
    x = as_samples("samples", samples, d=N)
    spins = np.where(x >= 0, 1, -1).astype(np.int8)
    n = spins.shape[0]
    M = spins.sum(axis=1, dtype=np.int64)
    P_hat = np.bincount((M + N) // 2, minlength=N + 1) / n

    f = np.floor(n * P)
    mad = 2.0 * (1.0 - P) * (f + 1.0) * binom.pmf(f + 1.0, n, P)

    def _plus(p):
        return float(p[M_grid > 0].sum() + 0.5 * p[M_grid == 0].sum())

    plus_exact = _plus(P)
    out = {
        "n": n,
        "M": M_grid,
        "P_samples": P_hat,
        "P_exact": P,
        "magnetization": M,
        "tv": float(0.5 * np.abs(P_hat - P).sum()),
        "tv_expected": float(0.5 * mad.sum() / n),
        "plus_share": _plus(P_hat),
        "plus_share_exact": plus_exact,
        "plus_share_stderr": math.sqrt(plus_exact * (1.0 - plus_exact) / n),
        "copy_share": math.nan,
    }
    if train is not None:
        tr = as_samples("train", train, d=N)
        train_keys = {row.tobytes() for row in np.packbits(tr >= 0, axis=1)}
        keys = np.packbits(spins > 0, axis=1)
        out["copy_share"] = float(np.mean([row.tobytes() in train_keys for row in keys]))
    return out


# --------------------------------------------------------------------------------------------
# Memorisation: nearest training image, copies, same-digit distance
# --------------------------------------------------------------------------------------------

def nearest_index(x, reference) -> tuple[np.ndarray, np.ndarray]:
    """Index of the nearest row of ``reference`` for each row of ``x``, and its Euclidean distance.

    Exact, in float64, by ``|a|^2 + |b|^2 - 2 a.b`` in chunks of bounded memory. The nearest
    training image of a sample (or of a reconstruction) is the measure of memorisation and of
    identity kept: a reconstruction whose nearest held-out image is its own original has kept
    more than the class.

    Parameters
    ----------
    x : array_like, shape (n, d)
    reference : array_like, shape (P, d), P >= 1

    Returns
    -------
    index : ndarray, int64, shape (n,)
        Ties go to the lowest index.
    distance : ndarray, float64, shape (n,)
        In the data's units.

    Raises
    ------
    ValueError
        Bad shapes or non-finite input.
    """
    x = as_samples("x", x, dtype=np.float64)
    ref = as_samples("reference", reference, dtype=np.float64, d=x.shape[1])
    ref_sq = np.einsum("ij,ij->i", ref, ref)
    chunk = max(1, _CHUNK_ELEMENTS // ref.shape[0])
    idx = np.empty(x.shape[0], dtype=np.int64)
    d2 = np.empty(x.shape[0])
    for i in range(0, x.shape[0], chunk):
        a = x[i:i + chunk]
        dd = ref_sq[None, :] - 2.0 * (a @ ref.T)
        k = np.argmin(dd, axis=1)
        idx[i:i + chunk] = k
        d2[i:i + chunk] = dd[np.arange(a.shape[0]), k] + np.einsum("ij,ij->i", a, a)
    return idx, np.sqrt(np.maximum(d2, 0.0))


def copy_check(x, train_x, threshold: float = 1.0 / 3.0) -> np.ndarray:
    """Which rows of ``x`` are copies of a training point [Yoon23].

    With ``d1 <= d2`` the distances to the nearest and second-nearest rows of ``train_x``
    (:func:`nearest_neighbours`), a row is a copy if ``d1 < threshold * d2`` or ``d1 = 0``.

    Parameters
    ----------
    x : array_like, shape (n, d)
    train_x : array_like, shape (P, d), P >= 2
    threshold : float in (0, 1]
        1/3 in [Yoon23].

    Returns
    -------
    ndarray, bool, shape (n,)

    Raises
    ------
    ValueError
        Bad shapes, fewer than 2 training rows, or ``threshold`` outside (0, 1].
    """
    threshold = check_real("threshold", threshold, lo=0.0, hi=1.0, lo_open=True)
    nn = nearest_neighbours(x, train_x, k=2)
    return (nn[:, 0] == 0.0) | (nn[:, 0] < threshold * nn[:, 1])


def same_digit_distance(x, labels) -> dict:
    """Mean Euclidean distance between two different images of the same class, per class and overall.

    The scale against which a reconstruction's distance to its original is judged: a
    reconstruction no closer than this is no more like its original than another image of the
    same digit.

    Parameters
    ----------
    x : array_like, shape (n, d)
    labels : array_like of int, shape (n,)

    Returns
    -------
    dict
        ``mean`` (float, over all same-class pairs ``i < j``; NaN if there is none) and
        ``by_class`` ({label: float}, NaN for a class with a single row).

    Raises
    ------
    ValueError
        Bad shapes or non-finite input.
    """
    from scipy.spatial.distance import cdist

    x = as_samples("x", x, dtype=np.float64)
    labels = np.asarray(labels)
    if labels.shape != (x.shape[0],):
        raise ValueError(f"labels must have shape ({x.shape[0]},), got {labels.shape}")
    total, count, by = 0.0, 0, {}
    for c in np.unique(labels):
        xi = x[labels == c]
        if xi.shape[0] < 2:
            by[int(c)] = math.nan
            continue
        iu = np.triu_indices(xi.shape[0], k=1)
        dist = cdist(xi, xi)[iu]
        by[int(c)] = float(dist.mean())
        total += float(dist.sum())
        count += dist.size
    return {"mean": total / count if count else math.nan, "by_class": by}


# --------------------------------------------------------------------------------------------
# Curie-Weiss: memorisation of spin configurations, potentials from a projected score
# (state weights, copies and double wells of models trained on Curie-Weiss spins)
# --------------------------------------------------------------------------------------------

__all__ += ["share_plus", "state_weights", "copy_mask", "rare_configuration_mask", "max_overlap",
            "curie_weiss_memorization", "projected_potential", "binned_potentials", "well_numbers"]


def _signs(name: str, x) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim != 2 or a.shape[1] < 1:
        raise ValueError(f"{name} must have shape (n, N), got {a.shape}")
    return a > 0


def share_plus(x) -> float:
    """Share of configurations with ``M = sum_i x_i > 0``, those with ``M = 0`` counted one half.

    ``x`` : array_like (n, N) of spins or real-valued samples. Returns a float in [0, 1].
    """
    M = np.asarray(x, dtype=np.float64).sum(axis=1)
    return float(np.mean(M > 0) + 0.5 * np.mean(M == 0))


def copy_mask(samples, train) -> np.ndarray:
    """Per sample: does its sign configuration (``x > 0`` -> +1) equal some training configuration?

    Parameters
    ----------
    samples : array_like (n, N)
    train : array_like (P, N)

    Returns
    -------
    ndarray, bool, (n,)
    """
    s, a = _signs("samples", samples), _signs("train", train)
    if s.shape[1] != a.shape[1]:
        raise ValueError(f"samples have N={s.shape[1]} spins, train N={a.shape[1]}")
    keys = {r.tobytes() for r in np.packbits(a, axis=1)}
    packed = np.packbits(s, axis=1)
    return np.fromiter((r.tobytes() in keys for r in packed), dtype=bool, count=len(packed))


def rare_configuration_mask(samples, N: int, beta: float, h: float, P: int, level: float = 0.01) -> np.ndarray:
    """Per sample: is its sign configuration ``a`` so improbable that a set of ``P`` exact
    Curie-Weiss samples holds it less than ``level`` times on average, ``P q(a) < level``?

    ``q(a) = P(M) / C(N, (N+M)/2)`` (every configuration of magnetization ``M`` is equally likely;
    ``docs/theory.md``, Curie-Weiss). A copy of such a training configuration is memorisation, not
    chance.

    Returns
    -------
    ndarray, bool, (n,)
    """
    from scipy.special import gammaln

    from .theory.curie_weiss import magnetization_distribution

    s = _signs("samples", samples)
    if s.shape[1] != N:
        raise ValueError(f"samples must have N={N} spins, got {s.shape[1]}")
    P = check_positive_int("P", P)
    level = check_real("level", level, lo=0.0, lo_open=True)
    M_grid, PM = magnetization_distribution(N, beta, h)
    k = (M_grid + N) // 2
    with np.errstate(divide="ignore"):
        log_q = np.log(PM) - (gammaln(N + 1) - gammaln(k + 1) - gammaln(N - k + 1))
    return math.log(P) + log_q[s.sum(axis=1)] < math.log(level)


def max_overlap(samples, train, chunk: int = 1024) -> np.ndarray:
    """Per sample, the largest overlap ``q = sign(x).a / N`` with a training configuration ``a``.

    Returns
    -------
    ndarray, float64, (n,), in [-1, 1] (1: a copy).
    """
    X = np.where(_signs("samples", samples), 1.0, -1.0).astype(np.float32)
    A = np.where(_signs("train", train), 1.0, -1.0).astype(np.float32)
    out = np.empty(len(X))
    for a in range(0, len(X), chunk):
        out[a:a + chunk] = (X[a:a + chunk] @ A.T).max(axis=1) / X.shape[1]
    return out


def _binomial_se(p: float, n: int) -> float:
    return math.sqrt(max(p * (1.0 - p), 1e-300) / n)


def curie_weiss_memorization(samples, train, *, beta: float, h: float = 0.0, fresh=None, reference=None,
                             rare_level: float = 0.01) -> dict:
    """Memorisation measures of generated Curie-Weiss samples against their training set.

    ``copy_share``: share of samples whose sign configuration is a training configuration;
    ``rare_copy_share``: copies of training configurations that ``P`` exact samples would hold
    less than once in ``1 / rare_level`` (:func:`rare_configuration_mask`), which chance almost
    never produces; ``overlap_max_mean``: mean over samples of :func:`max_overlap`. Controls:
    ``*_baseline`` the same for ``fresh`` exact samples against the training set (the
    coincidences of the data law itself), ``*_reference`` the same samples against an independent
    exact set ``reference`` of the same size (the coincidences of the model's own law of ``M``).
    Memorisation is the excess over the reference [BBBM24].

    Parameters
    ----------
    samples : array_like (n, N)
    train : array_like (P, N)
    beta, h : float
        The data law (``h`` per spin).
    fresh, reference : array_like, optional
        Fresh exact samples (n', N) and an independent exact set (P', N); their variables are NaN
        when not given.
    rare_level : float

    Returns
    -------
    dict of float
        ``copy_share`` (+ ``_stderr``, binomial, ``_baseline``, ``_reference``), ``rare_copy_share``
        (+ ``_stderr``, ``_baseline``, ``_reference``), ``rare_share`` (share of samples with a
        rare configuration), ``overlap_max_mean`` (+ ``_baseline``, ``_reference``),
        ``share_plus_train``.
    """
    x, a = np.asarray(samples), np.asarray(train)
    n, N = x.shape
    P = a.shape[0]
    rare_x = rare_configuration_mask(x, N, beta, h, P, rare_level)
    copies = copy_mask(x, a)
    out = {"copy_share": float(copies.mean()), "rare_copy_share": float(np.mean(copies & rare_x)),
           "rare_share": float(rare_x.mean()), "overlap_max_mean": float(max_overlap(x, a).mean()),
           "share_plus_train": share_plus(a)}
    out["copy_share_stderr"] = _binomial_se(out["copy_share"], n)
    out["rare_copy_share_stderr"] = _binomial_se(out["rare_copy_share"], n)
    nan = math.nan
    if fresh is not None:
        rare_f = rare_configuration_mask(fresh, N, beta, h, P, rare_level)
        cf = copy_mask(fresh, a)
        out.update(copy_share_baseline=float(cf.mean()), rare_copy_share_baseline=float(np.mean(cf & rare_f)),
                   overlap_max_mean_baseline=float(max_overlap(fresh, a).mean()))
    else:
        out.update(copy_share_baseline=nan, rare_copy_share_baseline=nan, overlap_max_mean_baseline=nan)
    if reference is not None:
        cr = copy_mask(x, reference)
        out.update(copy_share_reference=float(cr.mean()), rare_copy_share_reference=float(np.mean(cr & rare_x)),
                   overlap_max_mean_reference=float(max_overlap(x, reference).mean()))
    else:
        out.update(copy_share_reference=nan, rare_copy_share_reference=nan, overlap_max_mean_reference=nan)
    return out


def _contiguous_runs(keep: np.ndarray) -> list[tuple[int, int]]:
    runs, start = [], None
    for b in range(keep.size + 1):
        if b < keep.size and keep[b]:
            start = b if start is None else start
        elif start is not None:
            runs.append((start, b))
            start = None
    return runs


def projected_potential(mu, g, edges, *, min_count: int = 20) -> dict:
    """Potential ``V(mu) = -log P_t(mu)`` from samples of ``mu = u.x`` and of ``g = u.score(x)``.

    For a unit vector ``u``, ``d/dmu log P_t(mu) = E[u.grad log p_t(x) | u.x = mu]`` (differentiate
    ``P_t(mu) = int p_t(x) delta(mu - u.x) dx``), so binning the samples in ``mu`` and averaging
    ``g`` per bin estimates ``-dV/dmu``; the cumulative trapezoid rule over the bins' mean ``mu``
    (:func:`scipy.integrate.cumulative_trapezoid`) gives ``V`` up to a constant, fixed by ``V = 0``
    at the bin nearest ``mu = 0``. On an exact score it reproduces the exact potential (up to the
    statistical error and an ``O(width^2)`` quadrature error); on a learned score it gives the
    potential the model implies along ``u`` (``docs/theory.md``, "Speciation, cloning and
    collapse").

    Parameters
    ----------
    mu, g : array_like (n,)
        Projections of the same samples.
    edges : array_like (B+1,)
        Increasing bin edges.
    min_count : int >= 2
        Bins with fewer samples are dropped; ``V`` is built on the contiguous run of kept bins
        holding the most samples (NaN elsewhere).

    Returns
    -------
    dict of ndarray, float64 (B,)
        ``mu`` (bin means), ``dVdmu`` (``-mean g``), ``dVdmu_stderr``, ``count`` (int64), ``V``,
        ``V_stderr`` (propagated standard error of ``V - V(anchor)``, bins independent), and
        ``anchor`` (int, the bin where ``V = 0``).

    Raises
    ------
    ValueError
        Shapes differ, edges not increasing, or no bin holds ``min_count`` samples.
    """
    from scipy.integrate import cumulative_trapezoid

    mu = np.asarray(mu, dtype=np.float64).reshape(-1)
    g = np.asarray(g, dtype=np.float64).reshape(-1)
    edges = np.asarray(edges, dtype=np.float64)
    if mu.shape != g.shape:
        raise ValueError(f"mu and g must have the same length, got {mu.shape} and {g.shape}")
    if edges.ndim != 1 or edges.size < 3 or np.any(np.diff(edges) <= 0):
        raise ValueError("edges must be an increasing 1-D array of at least 3 bin edges")
    min_count = check_positive_int("min_count", min_count, minimum=2)
    B = edges.size - 1
    idx = np.digitize(mu, edges) - 1
    ok = (idx >= 0) & (idx < B)
    idx, mu, g = idx[ok], mu[ok], g[ok]
    count = np.bincount(idx, minlength=B)
    with np.errstate(invalid="ignore", divide="ignore"):
        mbar = np.bincount(idx, mu, B) / count
        gbar = np.bincount(idx, g, B) / count
        gvar = (np.bincount(idx, g * g, B) / count - gbar**2) * count / np.maximum(count - 1, 1)
        gerr = np.sqrt(np.maximum(gvar, 0.0) / count)
    keep = count >= min_count
    if not keep.any():
        raise ValueError(f"no bin holds min_count={min_count} samples; use more samples or wider bins")
    lo, hi = max(_contiguous_runs(keep), key=lambda r: count[r[0]:r[1]].sum())
    V, V_err = np.full(B, np.nan), np.full(B, np.nan)
    xs, ys, es = mbar[lo:hi], -gbar[lo:hi], gerr[lo:hi]
    a0 = int(np.argmin(np.abs(xs)))
    if hi - lo >= 2:
        cum = cumulative_trapezoid(ys, xs, initial=0.0)
        V[lo:hi] = cum - cum[a0]
        # V[k] - V[a0] = sum of trapezoids between them: weight dx/2 on each end of every interval
        w = np.zeros((hi - lo, hi - lo))
        dx = np.diff(xs)
        for k in range(hi - lo):
            i, j = sorted((a0, k))
            w[k, i:j] += dx[i:j] / 2
            w[k, i + 1:j + 1] += dx[i:j] / 2
        V_err[lo:hi] = np.sqrt(w**2 @ es**2)
    else:
        V[lo + a0], V_err[lo + a0] = 0.0, 0.0
    return {"mu": mbar, "dVdmu": -gbar, "dVdmu_stderr": gerr, "count": count.astype(np.int64),
            "V": V, "V_stderr": V_err, "anchor": lo + a0}


def binned_potentials(score_fns: dict, schedule, N: int, beta: float, h: float = 0.0, *, steps,
                      n_samples: int = 10000, edges=None, min_count: int = 20, seed: SeedLike = None):
    """:func:`projected_potential` along ``u = 1/sqrt(N)`` for several scores on the same exact
    Curie-Weiss forward samples, against the exact ``V(mu, t)``.

    Parameters
    ----------
    score_fns : dict name -> callable
        ``score_fn(x_t, step) -> score`` (numpy (n, N), int step), e.g. ``{"learned": ...,
        "exact": ...}``.
    schedule : Schedule
    N, beta, h : the data law (``h`` per spin).
    steps : sequence of int in 1..T
    n_samples : int >= 2
        Fresh exact spin configurations per step, diffused with the closed-form jump.
    edges : array_like, optional
        Bin edges in ``mu`` (default 61 edges on [-6, 6]).
    min_count : int
    seed : int, Generator or None

    Returns
    -------
    xarray.Dataset
        Dims ``(step, bin)``: ``mu`` (bin means), ``count``, ``V_theory`` (exact ``-log P_t(mu)``
        at the bin means, 0 at each row's anchor bin as the estimates are) and per score
        ``V_<name>``, ``V_<name>_stderr``, ``dVdmu_<name>``; dims ``(step, mu_fine)``:
        ``V_theory_fine`` (0 at ``mu = 0``). Coords ``time(step)``, ``alpha_bar(step)``,
        ``bin_lower(bin)``, ``bin_upper(bin)``.
    """
    import xarray as xr

    from . import datasets, forward
    from .theory import curie_weiss as cw

    N = check_positive_int("N", N, minimum=2)
    n_samples = check_positive_int("n_samples", n_samples, minimum=2)
    steps = np.asarray(steps, dtype=np.int64).reshape(-1)
    if steps.size == 0 or steps.min() < 1 or steps.max() > schedule.T:
        raise ValueError(f"steps must be a non-empty list of steps in 1..{schedule.T}")
    edges = np.linspace(-6.0, 6.0, 61) if edges is None else np.asarray(edges, dtype=np.float64)
    B = edges.size - 1
    rng = as_generator(seed)
    u = np.full(N, 1.0 / math.sqrt(N))
    mu_fine = np.linspace(edges[0], edges[-1], 241)
    shape = (steps.size, B)
    out = {"mu": np.full(shape, np.nan), "count": np.zeros(shape, dtype=np.int64), "V_theory": np.full(shape, np.nan)}
    for name in score_fns:
        for var in (f"V_{name}", f"V_{name}_stderr", f"dVdmu_{name}"):
            out[var] = np.full(shape, np.nan)
    V_fine = np.empty((steps.size, mu_fine.size))
    for k, t in enumerate(steps.tolist()):
        ab = float(schedule.alpha_bar[t])
        x, _ = forward.diffuse(datasets.curie_weiss(n_samples, N, beta, h, seed=rng), schedule, t, seed=rng)
        mu = x.astype(np.float64) @ u
        for name, fn in score_fns.items():
            est = projected_potential(mu, np.asarray(fn(x, t), dtype=np.float64) @ u, edges, min_count=min_count)
            out[f"V_{name}"][k], out[f"V_{name}_stderr"][k], out[f"dVdmu_{name}"][k] = (
                est["V"], est["V_stderr"], est["dVdmu"])
        out["mu"][k], out["count"][k] = est["mu"], est["count"]
        valid = np.isfinite(est["mu"])
        V_anchor = cw.potential(est["mu"][est["anchor"]], ab, N, beta, h, kind="density")
        out["V_theory"][k, valid] = cw.potential(est["mu"][valid], ab, N, beta, h, kind="density") - V_anchor
        V_fine[k] = cw.potential(mu_fine, ab, N, beta, h, kind="density") - cw.potential(0.0, ab, N, beta, h,
                                                                                        kind="density")
    one = {"units": "1"}
    names = {"mu": "mean of mu = sum_i x_i / sqrt(N) in the bin", "count": "forward samples in the bin",
             "V_theory": "exact density potential -log P_t(mu) at the bin means, 0 at the anchor bin"}
    for name in score_fns:
        names[f"V_{name}"] = f"density potential from the projected {name} score, 0 at the anchor bin"
        names[f"V_{name}_stderr"] = f"propagated standard error of V_{name}"
        names[f"dVdmu_{name}"] = f"-mean of u.score ({name}) in the bin"
    data = {k: (("step", "bin"), v, {**one, "long_name": names[k]}) for k, v in out.items()}
    data["V_theory_fine"] = (("step", "mu_fine"), V_fine, {**one, "long_name": "exact -log P_t(mu), 0 at mu = 0"})
    ab = schedule.alpha_bar[steps]
    coords = {"step": ("step", steps, {**one, "long_name": "diffusion step"}),
              "time": ("step", -0.5 * np.log(ab), {**one, "long_name": "physical time -(1/2) log alpha_bar"}),
              "alpha_bar": ("step", ab, {**one, "long_name": "alpha_bar of the step"}),
              "mu_fine": ("mu_fine", mu_fine, {**one, "long_name": "mu = sum_i x_i / sqrt(N)"}),
              "bin_lower": ("bin", edges[:-1], {**one, "long_name": "lower edge of the mu bin"}),
              "bin_upper": ("bin", edges[1:], {**one, "long_name": "upper edge of the mu bin"})}
    return xr.Dataset(data, coords=coords, attrs={"n_samples": n_samples, "min_count": min_count})


def well_numbers(mu, V, V_stderr=None, *, min_tol: float = 1e-3) -> tuple[int, float, float, float]:
    """Double-well numbers of a potential sampled on increasing ``mu``:
    ``(n_minima, depth, depth_stderr, position)``.

    ``n_minima`` counts interior local minima whose topographic prominence
    (:func:`scipy.signal.find_peaks` on ``-V``) exceeds ``tol = max(min_tol, 2 max V_stderr)``, so
    that statistical wiggles do not count (a double well has 2, a single well 1);
    ``depth = V(mu ~ 0) - min V`` (0 for a single well at 0; NaN when no sample point lies within
    1.5 grid spacings of ``mu = 0``), with the standard error of ``V`` at the minimum;
    ``position = |mu|`` at the minimum. NaN entries are dropped; fewer than 3 points give
    ``(0, nan, nan, nan)``.
    """
    from scipy.signal import find_peaks

    mu = np.asarray(mu, dtype=np.float64)
    V = np.asarray(V, dtype=np.float64)
    err = np.zeros_like(V) if V_stderr is None else np.asarray(V_stderr, dtype=np.float64)
    ok = np.isfinite(V) & np.isfinite(mu) & np.isfinite(err)
    if ok.sum() < 3:
        return 0, math.nan, math.nan, math.nan
    mu, V, err = mu[ok], V[ok], err[ok]
    tol = max(min_tol, 2.0 * float(err.max()))
    n_min = int(find_peaks(-V, prominence=tol * (1 + 1e-12))[0].size)
    k = int(np.argmin(V))
    i0 = int(np.argmin(np.abs(mu)))
    V0 = float(V[i0]) if abs(mu[i0]) <= 1.5 * float(np.median(np.diff(mu))) else math.nan
    depth = max(V0 - float(V[k]), 0.0) if math.isfinite(V0) else math.nan
    return n_min, depth, float(err[k]), float(abs(mu[k]))


def state_weights(samples, N: int, beta: float, h: float = 0.0, P: int | None = None) -> dict:
    """Weight of the ``M > 0`` state among Curie-Weiss samples against the exact law [BM23].

    The share ``p_hat`` of samples with ``M = sum_i x_i > 0`` and the ratio ``p_hat / (1 - p_hat)``
    (delta-method error ``se / (1 - p_hat)^2``), against the exact finite-N ``P(M > 0)``
    (``P(M = 0)`` split half/half) and the large-N ``1 / (1 + exp(-2 H m*))``, ratio
    ``exp(2 H m*)``, ``H = h N`` (``m*`` at zero field, the limit of ``h = H / N``). With ``P``
    (the training-set size) also the spread ``sqrt(p (1 - p) / P)`` of a training set of ``P``
    exact samples around ``p`` and ``z_exact = (p_hat - p) / sqrt(se^2 + p (1 - p) / P)``.

    Returns
    -------
    dict of float
        ``share_plus``, ``share_plus_stderr`` (binomial), ``ratio``, ``ratio_stderr``,
        ``share_plus_exact``, ``ratio_exact``, ``share_plus_large_N``, ``ratio_large_N``, ``H``,
        ``m_star`` (zero field), and with ``P``: ``share_plus_data_spread``, ``z_exact``.
    """
    from .theory import curie_weiss as cw

    x = np.asarray(samples, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != N:
        raise ValueError(f"samples must have shape (n, N={N}), got {x.shape}")
    n = x.shape[0]
    share = float(np.mean(x.sum(axis=1) > 0))
    se = _binomial_se(share, n)
    M, PM = cw.magnetization_distribution(N, beta, h)
    p = float(PM[M > 0].sum() + 0.5 * PM[M == 0].sum())
    H = h * N
    m0 = cw.m_star(beta, 0.0)
    out = {"share_plus": share, "share_plus_stderr": se,
           "ratio": share / (1 - share) if share < 1 else math.inf,
           "ratio_stderr": se / (1 - share) ** 2 if share < 1 else math.inf,
           "share_plus_exact": p, "ratio_exact": p / (1 - p), "share_plus_large_N": 1.0 / (1.0 + math.exp(-2 * H * m0)),
           "ratio_large_N": math.exp(2.0 * H * m0), "H": H, "m_star": m0}
    if P is not None:
        P = check_positive_int("P", P)
        out["share_plus_data_spread"] = math.sqrt(p * (1 - p) / P)
        out["z_exact"] = (share - p) / math.sqrt(se**2 + p * (1 - p) / P)
    return out
