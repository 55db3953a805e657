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
"""

from __future__ import annotations

import math
import time

import numpy as np
from scipy.spatial.distance import cdist
from scipy.stats import binom

from ._util import SeedLike, as_generator, as_samples, check_positive_int, check_real, resolve_device, torch_threads

__all__ = [
    "sliced_wasserstein",
    "energy_distance",
    "swiss_roll_quality",
    "MNISTClassifier",
    "train_mnist_classifier",
    "nearest_neighbours",
    "mnist_quality",
    "curie_weiss_quality",
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


def _build_cnn():
    from torch import nn

    return nn.Sequential(
        nn.Unflatten(1, (1, 28, 28)),
        nn.Conv2d(1, 8, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(16 * 7 * 7, 10),
    )


class MNISTClassifier:
    """A small CNN trained by :func:`train_mnist_classifier` on images in ``[-1, 1]``.

    Attributes
    ----------
    module : torch.nn.Module
        Conv(1->8, 5x5)-ReLU-MaxPool-Conv(8->16, 5x5)-ReLU-MaxPool-Linear(784->10); input
        ``(n, 784)``, output logits ``(n, 10)``.
    device : torch.device
    holdout_accuracy : float
        Accuracy on the held-out split (NaN when nothing was held out).
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

    def __init__(self, module, device, holdout_accuracy: float, n_train: int, n_holdout: int,
                 train_time_s: float, num_threads: int | None = 1):
        self.num_threads = num_threads
        self.module = module
        self.device = device
        self.holdout_accuracy = holdout_accuracy
        self.n_train = n_train
        self.n_holdout = n_holdout
        self.train_time_s = train_time_s

    def __repr__(self) -> str:
        return (f"MNISTClassifier(n_train={self.n_train}, n_holdout={self.n_holdout}, "
                f"holdout_accuracy={self.holdout_accuracy:.4f}, train_time_s={self.train_time_s:.1f})")

    def _logits(self, x: np.ndarray, batch_size: int = 2048) -> np.ndarray:
        import torch

        self.module.eval()
        out = []
        with torch.no_grad(), torch_threads(self.num_threads):
            for i in range(0, x.shape[0], batch_size):
                xb = torch.from_numpy(np.ascontiguousarray(x[i:i + batch_size])).to(self.device)
                out.append(self.module(xb).double().cpu().numpy())
        return np.concatenate(out, axis=0)

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


def mnist_quality(samples, classifier: MNISTClassifier | None, train_x, digits,
                  heldout_x=None, copy_threshold: float = 1.0 / 3.0) -> dict:
    """Quality of generated MNIST digits: classes, confidence and memorisation.

    - Classes: the share of samples that ``classifier`` assigns to one of ``digits``, the share of
      each class, and the mean top probability (confidence).
    - Memorisation [Yoon23]: for each sample, the Euclidean distances ``d1 <= d2`` to its nearest and
      second-nearest training image; it is a copy if ``d1 / d2 < copy_threshold`` (1/3 in [Yoon23]),
      or ``d1 = 0``. As context, the median ``d1`` of the samples and, if ``heldout_x`` is given,
      that of real held-out images (which are not copies by construction).

    Parameters
    ----------
    samples : array_like, shape (n, 784), images in ``[-1, 1]``
    classifier : MNISTClassifier or None
        ``None`` skips the class metrics (they are then NaN).
    train_x : array_like, shape (P, 784), P >= 2
        The images the generative model was trained on.
    digits : iterable of int in 0..9
        The digits the generative model was trained on.
    heldout_x : array_like, shape (n', 784), optional
        Real images not in ``train_x``.
    copy_threshold : float in (0, 1]

    Returns
    -------
    dict
        ``n`` (int); ``share_in_digits``, ``confidence`` (floats); ``class_share`` (float64 (10,),
        the share of samples per predicted digit); ``copy_share``, ``median_d1``,
        ``median_d1_heldout`` (NaN without ``heldout_x``), ``copy_share_heldout`` (idem) (floats);
        ``d1``, ``d2`` (float64 (n,)).

    Raises
    ------
    ValueError
        Bad shapes, non-finite input, bad ``digits`` or ``copy_threshold``.
    """
    from .datasets import _check_digits

    samples = _check_images("samples", samples)
    train_x = _check_images("train_x", train_x)
    wanted = _check_digits(digits)
    if wanted is None:
        raise ValueError("digits must list the digits the model was trained on, e.g. [0, 1]")
    copy_threshold = check_real("copy_threshold", copy_threshold, lo=0.0, hi=1.0, lo_open=True)
    n = samples.shape[0]

    out: dict = {"n": n}
    if classifier is not None:
        proba = classifier.predict_proba(samples)
        pred = proba.argmax(axis=1)
        out["share_in_digits"] = float(np.mean(np.isin(pred, wanted)))
        out["class_share"] = np.bincount(pred, minlength=10) / n
        out["confidence"] = float(proba.max(axis=1).mean())
    else:
        out["share_in_digits"] = math.nan
        out["class_share"] = np.full(10, math.nan)
        out["confidence"] = math.nan

    def _copies(d):
        return (d[:, 0] == 0.0) | (d[:, 0] < copy_threshold * d[:, 1])

    nn = nearest_neighbours(samples, train_x, k=2)
    out["d1"], out["d2"] = nn[:, 0], nn[:, 1]
    out["copy_share"] = float(np.mean(_copies(nn)))
    out["median_d1"] = float(np.median(nn[:, 0]))
    if heldout_x is not None:
        nh = nearest_neighbours(_check_images("heldout_x", heldout_x), train_x, k=2)
        out["median_d1_heldout"] = float(np.median(nh[:, 0]))
        out["copy_share_heldout"] = float(np.mean(_copies(nh)))
    else:
        out["median_d1_heldout"] = math.nan
        out["copy_share_heldout"] = math.nan
    return out


# --------------------------------------------------------------------------------------------
# Curie-Weiss
# --------------------------------------------------------------------------------------------

def curie_weiss_quality(samples, N: int, beta: float, h: float = 0.0, train=None) -> dict:
    """Magnetization law and memorisation of Curie-Weiss samples.

    Each sample is mapped to spins ``a = sign(x)`` (``x >= 0`` -> +1) and ``M = sum_i a_i``. Its
    histogram is compared with the exact ``P(M) ∝ C(N, (N+M)/2) exp(beta M^2/(2N) + h M)``
    (REFERENCES.md sec. 2; :func:`physdiff.theory.curie_weiss.magnetization_distribution`) by the
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
