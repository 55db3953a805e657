"""Baselines of the thesis: a single-layer perceptron classifying MNIST 0 vs 1, and the linear
reverse model (a DDPM whose nets are affine, [Thesis] Annex II) with the Gaussian fit it reaches.

[Thesis] trains a perceptron on the MNIST zeros and ones (12 665 training / 2 115 test images) and
reports 1 test error: the two digits are almost linearly separable, the point of comparison for
the generative models. This module provides the classic Rosenblatt rule and logistic regression
(numpy only), a seeded train/test split and error counts.

* Perceptron rule [Rosenblatt 1958]: for each misclassified example ``(x, y)``, ``y in {-1, +1}``,
  ``w <- w + lr * y * x`` and ``b <- b + lr * y``; examples are visited in a fresh random order each
  epoch; the returned weights are the AVERAGE over all updates' states (the averaged perceptron of
  Freund & Schapire 1999), which generalises better than the last iterate.
* Logistic rule: full-batch gradient descent on the mean cross-entropy of ``sigmoid(w.x + b)``
  with an L2 penalty ``l2 |w|^2 / 2``.

References
----------
[Thesis] Bustinduy de la Guerra (2024), Out-of-Equilibrium Machine Learning (UCM), perceptron on
    MNIST 0 vs 1. Rosenblatt (1958), Psychological Review 65, 386. Freund, Schapire (1999), Machine
    Learning 37, 277 (averaged perceptron).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import expit

from ._util import SeedLike, as_generator, as_samples, check_positive_int, check_real

__all__ = ["Perceptron", "train_perceptron", "train_test_split", "train_linear_baseline", "gaussian_init_model",
           "gaussian_fit_samples", "eps_loss"]

RULES = ("perceptron", "logistic")


@dataclass(frozen=True)
class Perceptron:
    """A trained linear classifier ``sign(x . w + b)``.

    Attributes
    ----------
    w : ndarray, float64, shape (d,)
    b : float
    classes : ndarray, int64, shape (2,)
        ``classes[0]`` is predicted for ``x . w + b < 0``, ``classes[1]`` otherwise.
    rule : str
        ``"perceptron"`` or ``"logistic"``.
    train_errors : ndarray, int64, shape (epochs,)
        Training-set errors after each epoch (of the returned, averaged weights for the perceptron).
    """

    w: np.ndarray
    b: float
    classes: np.ndarray
    rule: str
    train_errors: np.ndarray

    def decision(self, x) -> np.ndarray:
        """``x . w + b``, float64 (n,), for ``x`` of shape (n, d). ``ValueError`` on a wrong d."""
        x = as_samples("x", x, d=self.w.size)
        return x.astype(np.float64) @ self.w + self.b

    def predict(self, x) -> np.ndarray:
        """Predicted labels, int64 (n,), from :attr:`classes`."""
        return self.classes[(self.decision(x) >= 0).astype(np.int64)]

    def errors(self, x, labels) -> int:
        """Number of misclassified examples. ``ValueError`` on mismatched shapes."""
        labels = np.asarray(labels)
        if labels.shape != (np.shape(x)[0],):
            raise ValueError(f"labels must have shape (n,) = ({np.shape(x)[0]},), got {labels.shape}")
        return int(np.count_nonzero(self.predict(x) != labels))


def train_test_split(x, labels, n_train: int, seed: SeedLike = None):
    """A seeded random split: ``(x_train, y_train, x_test, y_test)``.

    Parameters
    ----------
    x : array_like, shape (n, d)
    labels : array_like, shape (n,)
    n_train : int, 1 <= n_train < n
    seed : int, numpy.random.Generator or None

    Raises
    ------
    ValueError
        Mismatched lengths or ``n_train`` out of range.
    """
    x = np.asarray(x)
    labels = np.asarray(labels)
    n = x.shape[0]
    if labels.shape != (n,):
        raise ValueError(f"labels must have shape (n,) = ({n},), got {labels.shape}")
    n_train = check_positive_int("n_train", n_train)
    if n_train >= n:
        raise ValueError(f"n_train must be < n = {n} so that a test set remains, got {n_train}")
    perm = as_generator(seed).permutation(n)
    tr, te = perm[:n_train], perm[n_train:]
    return x[tr], labels[tr], x[te], labels[te]


def train_perceptron(x, labels, *, rule: str = "perceptron", epochs: int = 20, lr: float = 1.0,
                     l2: float = 1e-4, seed: SeedLike = None) -> Perceptron:
    """Train a single-layer perceptron on two classes ([Thesis]'s MNIST 0-vs-1 baseline).

    Parameters
    ----------
    x : array_like, shape (n, d)
        Inputs (e.g. MNIST pixels in [-1, 1] from :func:`physdiff.datasets.load_mnist`).
    labels : array_like, shape (n,)
        Exactly two distinct values; the smaller one is ``classes[0]`` (target -1).
    rule : {"perceptron", "logistic"}
        Rosenblatt's rule (averaged weights) or logistic regression by gradient descent; see the
        module docstring.
    epochs : int >= 1
        Passes over the data (perceptron) or gradient steps (logistic).
    lr : float > 0
        Step size.
    l2 : float >= 0
        L2 penalty (logistic rule only).
    seed : int, numpy.random.Generator or None
        Order of the examples (perceptron rule).

    Returns
    -------
    Perceptron

    Raises
    ------
    ValueError
        Bad shapes, not exactly two classes, unknown ``rule`` or bad hyper-parameters.
    """
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
    x = as_samples("x", x).astype(np.float64)
    labels = np.asarray(labels)
    n, d = x.shape
    if labels.shape != (n,):
        raise ValueError(f"labels must have shape (n,) = ({n},), got {labels.shape}")
    classes = np.unique(labels)
    if classes.size != 2:
        raise ValueError(f"labels must hold exactly two classes, got {classes.size}: {classes[:5].tolist()}")
    epochs = check_positive_int("epochs", epochs)
    lr = check_real("lr", lr, lo=0.0, lo_open=True)
    l2 = check_real("l2", l2, lo=0.0)
    y = np.where(labels == classes[1], 1.0, -1.0)
    errs = np.empty(epochs, dtype=np.int64)

    if rule == "perceptron":
        rng = as_generator(seed)
        w = np.zeros(d)
        b = 0.0
        w_sum = np.zeros(d)     # running sums of the states, for the averaged perceptron
        b_sum = 0.0
        count = 0
        for e in range(epochs):
            for i in rng.permutation(n):
                if y[i] * (x[i] @ w + b) <= 0.0:
                    w += lr * y[i] * x[i]
                    b += lr * y[i]
                w_sum += w
                b_sum += b
                count += 1
            w_avg, b_avg = w_sum / count, b_sum / count
            errs[e] = np.count_nonzero(np.where(x @ w_avg + b_avg >= 0, 1.0, -1.0) != y)
        return Perceptron(w_avg, float(b_avg), classes.astype(np.int64), rule, errs)

    w = np.zeros(d)
    b = 0.0
    t01 = (y + 1.0) / 2.0
    for e in range(epochs):
        p = expit(x @ w + b)
        g = p - t01
        w -= lr * (x.T @ g / n + l2 * w)
        b -= lr * g.mean()
        errs[e] = np.count_nonzero(np.where(x @ w + b >= 0, 1.0, -1.0) != y)
    return Perceptron(w, float(b), classes.astype(np.int64), rule, errs)


# ----------------------------------------------------------------------------------------------
# the linear reverse model ([Thesis] Annex II): a DDPM whose nets are affine
# ----------------------------------------------------------------------------------------------

def train_linear_baseline(model, x_train, *, epochs: int = 3, seed: int = 0, device: str | None = None,
                          progress: bool = False, log=None):
    """Train the linear twin of a DDPM: its config with ``activation="linear"`` ([Thesis] Annex II).

    Same schedule, ``T``, hidden width, loss, learning rates and batch as ``model``; ``epochs``
    epochs; ``init="gaussian"`` whenever ``hidden >= d`` (each net then starts at the exact noise
    predictor of the data's Gaussian fit, the optimum of any affine net,
    :func:`physdiff.theory.autoencoder.gaussian_optimal_loss`), else ``model``'s init.

    Parameters
    ----------
    model : physdiff.ddpm.DDPM
        The (ReLU) model to copy the configuration from.
    x_train : array_like, shape (n, d)
        The training data (normally ``model``'s own).
    epochs : int >= 1
    seed : int >= 0
    device : str, optional
        Default: ``model``'s device.
    progress : bool
        tqdm bar while training.
    log : callable or None
        Status lines (None: silent).

    Returns
    -------
    physdiff.ddpm.DDPM
        Nets ``eps_t(x) = (x W1 + b1) W2 + b2``: affine in ``x``.

    Raises
    ------
    ValueError
        ``epochs < 1``, ``seed < 0``, or data that do not fit ``model`` (from :func:`physdiff.ddpm.train`).
    """
    from . import ddpm

    epochs = check_positive_int("epochs", epochs)
    seed = check_positive_int("seed", seed, minimum=0)
    init = "gaussian" if model.config.hidden >= model.d else model.config.init
    cfg = model.config.replace(activation="linear", epochs=epochs, seed=seed, init=init,
                               device=str(model.device) if device is None else device)
    meta = {k: v for k, v in (model.data or {}).items() if k not in ("n", "d", "sha256")}
    return ddpm.train(x_train, cfg, progress=progress, log=log, metadata=meta)


def gaussian_init_model(x_train, like, activation: str = "linear"):
    """An untrained DDPM shaped like ``like`` whose nets are the exact noise predictor of the
    Gaussian fit ``N(mean, cov)`` of ``x_train`` (what ``init="gaussian"`` starts from).

    Parameters
    ----------
    x_train : array_like, shape (n, d), n >= 2
    like : physdiff.ddpm.DDPM
        Gives ``T``, the schedule, the device and the config; the hidden width is at least ``d``.
    activation : {"linear", "relu"}

    Returns
    -------
    physdiff.ddpm.DDPM
        For ``"linear"`` its per-step loss is :func:`physdiff.theory.autoencoder.gaussian_optimal_loss`.
    """
    from .ddpm import DDPM, StackedAutoencoders

    x64 = as_samples("x_train", x_train, dtype=np.float64, d=like.d)
    hidden = max(like.config.hidden, like.d)
    net = StackedAutoencoders(like.T, like.d, hidden, activation, seed=like.config.seed or 0, device=like.device)
    net.init_gaussian(x64.mean(axis=0), np.cov(x64, rowvar=False), like.schedule.alpha_bar[1:],
                      bound=float(np.abs(x64).max()))
    cfg = like.config.replace(activation=activation, init="gaussian", hidden=hidden)
    return DDPM(net, like.schedule, cfg, data=like.data)


def gaussian_fit_samples(x, n: int, seed: SeedLike = None) -> np.ndarray:
    """``n`` exact samples of the Gaussian fit ``N(mean, cov)`` of the rows of ``x``.

    With ``X`` the centred data (P, d), ``mean + z X / sqrt(P - 1)``, ``z ~ N(0, I_P)``, has
    covariance ``X^T X / (P - 1) = cov`` exactly (:func:`numpy.cov`), with no factorisation of
    the (singular: MNIST's border pixels are constant) covariance.

    Parameters
    ----------
    x : array_like, shape (P, d), P >= 2
    n : int >= 1
    seed : int, Generator or None

    Returns
    -------
    ndarray, float32, shape (n, d)
    """
    x = as_samples("x", x, dtype=np.float64)
    if x.shape[0] < 2:
        raise ValueError(f"x needs at least 2 rows for a covariance, got {x.shape[0]}")
    n = check_positive_int("n", n)
    mean = x.mean(axis=0)
    z = as_generator(seed).standard_normal((n, x.shape[0]))
    return (mean + z @ (x - mean) / np.sqrt(x.shape[0] - 1)).astype(np.float32)


def eps_loss(model, x0, seed: SeedLike = None, batch: int = 1024) -> np.ndarray:
    """Monte Carlo estimate of a DDPM's per-step loss ``mean (eps_theta(x_t, t) - eps)^2`` on ``x0``.

    One fresh ``eps ~ N(0, I)`` per image and step, ``x_t = sqrt(alpha_bar_t) x0 + sqrt(1 -
    alpha_bar_t) eps`` [Ho20, eq. 4, Algorithm 1]; the mean is over images and dimensions (the
    loss :func:`physdiff.ddpm.train` minimises). Equal seeds give equal noise; a sequence of models
    (sharing one schedule) is evaluated on the very same draws, generated once.

    Parameters
    ----------
    model : physdiff.ddpm.DDPM or sequence of DDPM
    x0 : array_like, shape (n, d)
    seed : int, Generator or None
    batch : int >= 1
        Rows per forward pass.

    Returns
    -------
    ndarray, float64, shape (T,), or (len(model), T) for a sequence
        The loss of steps ``1..T`` (dimensionless).

    Raises
    ------
    ValueError
        Models with different schedules, or ``x0`` of the wrong width.
    """
    import torch

    models = list(model) if isinstance(model, (list, tuple)) else [model]
    first = models[0]
    if any(m.schedule != first.schedule for m in models):
        raise ValueError("the models of eps_loss must share one schedule")
    x0 = np.ascontiguousarray(as_samples("x0", x0, dtype=np.float32, d=first.d))
    batch = check_positive_int("batch", batch)
    rng = as_generator(seed)
    out = np.zeros((len(models), first.T))
    for t in range(1, first.T + 1):
        ab = float(first.schedule.alpha_bar[t])
        eps = rng.standard_normal(x0.shape, dtype=np.float32)
        for i in range(0, x0.shape[0], batch):
            e = torch.from_numpy(eps[i:i + batch])
            x_t = np.sqrt(ab) * torch.from_numpy(x0[i:i + batch]) + np.sqrt(1.0 - ab) * e
            for k, m in enumerate(models):
                err = torch.as_tensor(m.eps(x_t.to(m.device), t)).cpu() - e
                out[k, t - 1] += float(err.double().square().sum())
    out /= x0.size
    return out if isinstance(model, (list, tuple)) else out[0]
