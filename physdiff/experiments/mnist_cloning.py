"""The cloning (speciation) experiment on MNIST with a trained two-digit DDPM (issue 5, item 3;
``studies/mnist_cloning.py``).

One reverse trajectory starts at ``x_T ~ N(0, I)``; at a branch step ``t_b`` it is copied and the
copy finishes with independent noise; ``phi(t)`` is the probability that the two endpoints are the
same digit, as judged by a CNN classifier trained here on the 10 000 MNIST test images
(:func:`physdiff.metrics.train_mnist_classifier`). [BBBM24] predict that the classes separate
("speciate") at ``t_S = (1/2) log Lambda``, ``Lambda`` the largest eigenvalue of the covariance of
the training data, in the Ornstein-Uhlenbeck time ``t = -(1/2) log alpha_bar`` (REFERENCES.md
secs. 1 and 5). The study measures ``phi`` with the model (:func:`physdiff.reverse.cloning`, the
same reverse code as sampling, branching at every step by default) and sets it against

- ``(1/2) log Lambda`` computed on exactly the images the model was trained on (regenerated with
  :func:`physdiff.experiments.train.load_training_data` and checked against the checkpoint's
  sha256), in the model's units (pixels in [-1, 1]);
- the two-cluster theory :func:`physdiff.theory.gaussian.phi_two_clusters` with the class means
  and the within-class spread of the training images along the axis joining the means;
- the cloning probability of the exact score of the training set (the empirical mixture of
  REFERENCES.md sec. 5), ``E_{x_t}[sum_c P(c | x_t)^2]``, by Monte Carlo
  (:func:`phi_empirical_mixture`).

Level of the crossing. [BBBM24] define the measured speciation time as the crossing of the
universal large-dimension value ``phi(t_S) = 0.7752`` (:data:`physdiff.theory.gaussian.PHI_SPECIATION`:
two clusters at ``+-m`` with ``m e^{-t_S} / sqrt(Gamma) = 1``). That value assumes ``|m|^2 >> gamma``,
the within-cluster variance along the cluster axis; for MNIST 0 vs 1 at ``t_S`` the cluster
variance still adds ``gamma e^{-2 t_S} = gamma / Lambda`` (about 0.1) to ``Gamma`` and the class
weights are not exactly 1/2, so the two-cluster theory with the measured geometry crosses 0.7752 a
little before ``(1/2) log Lambda`` and takes a slightly lower value there. The study reports the
crossing of 0.7752 (the paper's level, primary) and of the "matched" level
``phi_two_clusters(t_S)``, the value the two-cluster theory of these very clusters takes at
``(1/2) log Lambda``; both crossings, their bootstrap errors and the theory's own crossings go into
``speciation.nc``.

References
----------
[BBBM24] Biroli, Bonnaire, de Bortoli, Mezard (2024), Dynamical regimes of diffusion models,
arXiv:2402.18491 (Nat. Commun. 15:9957): speciation time ``t_S = (1/2) log Lambda``, the cloning
observable ``phi(t)``, its two-cluster theory and the empirical (exact) score of a training set.
[Ho20] Ho, Jain, Abbeel (2020), arXiv:2006.11239, Algorithm 2 (the reverse chain).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import xarray as xr
from scipy import linalg, special

from .. import plotting, results
from .._util import SeedLike, as_generator, as_samples, check_positive_int
from ..reverse import cloning, reverse_chain
from ..theory import gaussian
from ._io import prepare_out
from .curie_weiss import PHI_LEVEL, _crossing_with_error

__all__ = ["mnist_cloning_study", "covariance_top_eigenvalue", "two_cluster_geometry", "phi_empirical_mixture",
           "measure_cloning", "crossing_with_error", "mnist_training_set", "OUTPUTS"]

OUTPUTS = ("speciation.nc", "cloning.png")


# ---------------------------------------------------------------------------------------------
# data geometry: Lambda and the two clusters
# ---------------------------------------------------------------------------------------------

def covariance_top_eigenvalue(x) -> tuple[float, np.ndarray]:
    """Largest eigenvalue ``Lambda`` of the covariance of data ``x`` and its unit eigenvector.

    The covariance is that of the empirical distribution of the rows,
    ``C = (1/n) sum_i (x_i - xbar)(x_i - xbar)^T`` (no Bessel correction: it is the covariance of
    the distribution the model was trained to reproduce, whose diffused score is the empirical
    mixture score; the ``n/(n-1)`` factor moves ``(1/2) log Lambda`` by ``1/(2n)``). ``Lambda``
    enters the speciation time ``t_S = (1/2) log Lambda`` of [BBBM24] (REFERENCES.md sec. 5).
    Computed in float64 with :func:`scipy.linalg.eigh` (only the top eigenpair).

    Parameters
    ----------
    x : array_like, shape (n, d), n >= 2
        Data in the units the model sees (MNIST: pixels in [-1, 1], which gives about 4 times the
        [0, 1] value).

    Returns
    -------
    Lambda : float
        In squared data units.
    v : ndarray, float64, shape (d,)
        Unit eigenvector (sign fixed so that its largest-magnitude entry is positive).

    Raises
    ------
    ValueError
        ``x`` not 2-D, fewer than 2 rows, or non-finite.
    """
    x = as_samples("x", x, dtype=np.float64)
    if x.shape[0] < 2:
        raise ValueError(f"x needs at least 2 rows to have a covariance, got {x.shape[0]}")
    d = x.shape[1]
    C = np.cov(x, rowvar=False, bias=True).reshape(d, d)
    lam, V = linalg.eigh(C, subset_by_index=[d - 1, d - 1])
    v = V[:, 0]
    v = v if v[np.argmax(np.abs(v))] >= 0 else -v
    return float(lam[0]), v


def two_cluster_geometry(x, labels, classes: Sequence) -> dict:
    """The two-cluster description of two-class data, for :func:`~physdiff.theory.gaussian.phi_two_clusters`.

    With class means ``mu_a``, ``mu_b`` (``classes = (a, b)``; ``b`` is the ``+`` cluster), the
    cluster axis is ``u = (mu_b - mu_a) / |mu_b - mu_a|`` and each cluster sits at distance
    ``m_norm = |mu_b - mu_a| / 2`` from their midpoint. ``gamma_c = Var(u.x | c)`` is the spread
    of class ``c`` along the axis and ``gamma = w_a gamma_a + w_b gamma_b`` the pooled one, the
    ``gamma`` of [BBBM24]'s two-cluster theory (which assumes equal spreads; ``gamma_a`` and
    ``gamma_b`` show how far that holds). By the law of total variance the covariance along
    ``u`` is ``u.C.u = 4 w_a w_b m_norm^2 + gamma`` (``lambda_axis``), which equals the top
    eigenvalue ``Lambda`` when ``u`` is the top eigenvector (``overlap = |u.v| = 1``).

    Parameters
    ----------
    x : array_like (n, d)
        Data.
    labels : array_like (n,)
        Class of each row; every row must be in ``classes``.
    classes : sequence of two labels ``(a, b)``

    Returns
    -------
    dict
        ``m_norm``, ``gamma``, ``gamma_minus`` (class ``a``), ``gamma_plus`` (class ``b``),
        ``weight_plus`` (share of class ``b``), ``lambda_axis`` (floats), ``axis`` (ndarray (d,)),
        ``Lambda`` and ``overlap`` (``|u.v|`` with the top covariance eigenvector ``v``).

    Raises
    ------
    ValueError
        Shapes differ, not exactly two classes, a class with fewer than 2 rows, a row of another
        class, or coinciding class means.
    """
    x = as_samples("x", x, dtype=np.float64)
    labels = np.asarray(labels)
    if labels.shape != (x.shape[0],):
        raise ValueError(f"labels must have shape ({x.shape[0]},), got {labels.shape}")
    classes = list(classes)
    if len(classes) != 2 or classes[0] == classes[1]:
        raise ValueError(f"classes must be two distinct labels, got {classes}")
    a, b = (labels == classes[0]), (labels == classes[1])
    if not np.all(a | b):
        raise ValueError(f"labels hold values outside classes {classes}: {sorted(set(np.unique(labels)) - set(classes))}")
    if a.sum() < 2 or b.sum() < 2:
        raise ValueError(f"each class needs at least 2 rows, got {int(a.sum())} and {int(b.sum())}")
    mu_a, mu_b = x[a].mean(axis=0), x[b].mean(axis=0)
    diff = mu_b - mu_a
    dist = float(np.linalg.norm(diff))
    if dist == 0.0:
        raise ValueError("the two class means coincide: there is no cluster axis")
    u = diff / dist
    g_a, g_b = float(np.var(x[a] @ u)), float(np.var(x[b] @ u))
    w = float(b.mean())
    gamma = (1.0 - w) * g_a + w * g_b
    Lam, v = covariance_top_eigenvalue(x)
    return {"m_norm": dist / 2.0, "gamma": gamma, "gamma_minus": g_a, "gamma_plus": g_b, "weight_plus": w,
            "lambda_axis": 4.0 * w * (1.0 - w) * (dist / 2.0) ** 2 + gamma, "axis": u, "Lambda": Lam,
            "overlap": float(abs(u @ v))}


# ---------------------------------------------------------------------------------------------
# phi of the exact (empirical-mixture) score of a training set
# ---------------------------------------------------------------------------------------------

def phi_empirical_mixture(t, x_train, labels, *, n_samples: int = 2000, seed: SeedLike = None,
                          chunk: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """Cloning probability of the exact score of a training set, by Monte Carlo over ``x_t``.

    The exact score of ``P`` training points ``x_j`` is that of the empirical mixture
    ``p_t(x) = (1/P) sum_j N(x; s x_j, Delta I)`` (REFERENCES.md sec. 5). For exact reverse dynamics
    the clones' endpoints are independent draws from the posterior over training points,
    ``w_j(x_t) ∝ exp(-|x_t - s x_j|^2 / (2 Delta))``, so with ``P(c | x_t) = sum_{j in c} w_j``

        phi(t) = E_{x_t ~ p_t}[ sum_c P(c | x_t)^2 ]                    [BBBM24]

    (:mod:`physdiff.theory.gaussian`). ``x_t = s x_j + sqrt(Delta) xi`` is sampled exactly (``j``
    uniform, ``xi ~ N(0, I)``) and ``P(c | x_t)`` computed exactly (softmax in log space), so the
    estimator is Rao-Blackwellised. This "exact" score memorises below the collapse time, which
    does not move the speciation time while ``t_C < t_S`` [BBBM24].

    Parameters
    ----------
    t : float or array_like (K,)
        Physical times ``t = -(1/2) log alpha_bar > 0``.
    x_train : array_like (P, d)
        Training points.
    labels : array_like (P,)
        Class of each training point (any comparable values).
    n_samples : int >= 2
        Monte Carlo samples per time.
    seed : int, Generator or None
        Equal seeds give equal results.
    chunk : int >= 1
        Samples per batch (memory ``chunk x P`` float64).

    Returns
    -------
    phi : ndarray float64, shape ``t.shape``
    stderr : ndarray float64, shape ``t.shape``
        Standard error of each estimate.

    Raises
    ------
    ValueError
        Non-positive or non-finite times, bad shapes, ``n_samples < 2``.

    Notes
    -----
    Cost ``O(n_samples P d)`` per time (one matrix product).
    """
    tt = np.asarray(t, dtype=np.float64)
    if not np.all(np.isfinite(tt)) or np.any(tt <= 0.0):
        raise ValueError("t must hold finite physical times > 0 (at t = 0 the posterior is a point mass)")
    x = as_samples("x_train", x_train, dtype=np.float64)
    labels = np.asarray(labels)
    if labels.shape != (x.shape[0],):
        raise ValueError(f"labels must have shape ({x.shape[0]},), got {labels.shape}")
    n_samples = check_positive_int("n_samples", n_samples, minimum=2)
    chunk = check_positive_int("chunk", chunk)
    rng = as_generator(seed)
    classes, cls = np.unique(labels, return_inverse=True)
    onehot = np.zeros((x.shape[0], classes.size))
    onehot[np.arange(x.shape[0]), cls] = 1.0
    sq = 0.5 * np.sum(x * x, axis=1)
    phi, err = np.empty(tt.shape), np.empty(tt.shape)
    for idx, ti in np.ndenumerate(tt):
        s = math.exp(-ti)
        delta = -math.expm1(-2.0 * ti)
        vals = np.empty(n_samples)
        for start in range(0, n_samples, chunk):
            n = min(chunk, n_samples - start)
            j = rng.integers(0, x.shape[0], size=n)
            xt = s * x[j] + math.sqrt(delta) * rng.standard_normal((n, x.shape[1]))
            # log w_j = (s x_t.x_j - s^2 |x_j|^2 / 2) / Delta + const(x_t)
            logw = (s * (xt @ x.T) - s * s * sq[None, :]) / delta
            logw -= special.logsumexp(logw, axis=1, keepdims=True)
            pc = np.exp(logw) @ onehot  # (n, classes)
            vals[start:start + n] = np.sum(pc * pc, axis=1)
        phi[idx] = vals.mean()
        err[idx] = vals.std(ddof=1) / math.sqrt(n_samples)
    return phi, err


# ---------------------------------------------------------------------------------------------
# the cloning measurement
# ---------------------------------------------------------------------------------------------

def measure_cloning(eps_fn: Callable, schedule, classify: Callable, branch_steps: Sequence[int], n_pairs: int,
                    d: int, *, seed: SeedLike = None, x_T=None, sigma: str = "beta",
                    decode: Callable | None = None) -> dict:
    """``phi(t)`` with standard errors from :func:`physdiff.reverse.cloning`, classes decoded.

    Runs the cloning experiment (``n_pairs`` reverse trajectories from ``N(0, I)``, a clone at
    every branch step finished with independent noise, every endpoint classified at step 0) and
    computes ``phi[k]``, the share of pairs (original, clone at ``branch_steps[k]``) in the same
    class [BBBM24], with its binomial standard error ``sqrt(phi (1 - phi) / n)``.

    ``classify`` may return codes that carry more than the class; ``decode(codes) -> (cls,
    valid)`` turns them into the class and a flag for endpoints that are a clean member of one of
    the classes (for MNIST: the classifier's top digit is one of the two). ``phi`` counts every
    pair; ``phi_valid`` only pairs whose two endpoints are valid.

    Parameters
    ----------
    eps_fn : callable ``eps_fn(x_t, t) -> eps``
        Numpy or torch (match ``x_T``).
    schedule : Schedule
    classify : callable ``classify(x0) -> codes (n,)``
        Integer codes.
    branch_steps : sequence of int in ``1..T``
    n_pairs, d : int
    seed : int, Generator or None
    x_T : array (n_pairs, d), optional
        Start states (a torch tensor to run a torch model); default numpy ``N(0, I)``.
    sigma : {"beta", "posterior"}
        Reverse-step variance.
    decode : callable, optional
        ``decode(codes) -> (cls, valid)``, arrays of the codes' shape; default: the codes are the
        classes, all valid.

    Returns
    -------
    dict
        ``branch_steps`` (int64 (K,)), ``physical_time``, ``alpha_bar`` (float64 (K,)), ``phi``,
        ``phi_stderr``, ``phi_valid``, ``phi_valid_stderr`` (float64 (K,)), ``n_valid`` (int64 (K,)),
        ``label`` (class of each original, (n_pairs,)), ``clone_label`` ((K, n_pairs)), ``code``,
        ``clone_code`` (the raw codes), ``valid``, ``clone_valid`` (bool), ``invalid_share`` (share
        of all ``(K + 1) n_pairs`` endpoints not valid), ``class_share`` (share of the originals in
        each of ``classes``), ``classes``, ``baseline`` (``sum_c p_c^2``: ``phi`` of clones that
        share nothing) and ``n_pairs``.

    Raises
    ------
    ValueError
        As :func:`physdiff.reverse.cloning`; ``decode`` returning the wrong shapes.
    """
    res = cloning(eps_fn, schedule, classify, branch_steps, n_pairs, d, seed=seed, x_T=x_T, sigma=sigma,
                  return_details=True)
    code, clone_code = np.asarray(res.labels), np.asarray(res.clone_labels)
    if decode is None:
        lab, val = code, np.ones(code.shape, dtype=bool)
        clab, cval = clone_code, np.ones(clone_code.shape, dtype=bool)
    else:
        lab, val = (np.asarray(a) for a in decode(code))
        clab, cval = (np.asarray(a) for a in decode(clone_code))
        if lab.shape != code.shape or val.shape != code.shape or clab.shape != clone_code.shape \
                or cval.shape != clone_code.shape:
            raise ValueError("decode(codes) must return (classes, valid) of the codes' shape")
        val, cval = val.astype(bool), cval.astype(bool)
    same = clab == lab[None, :]
    n = res.n_pairs
    phi = same.mean(axis=1, dtype=np.float64)
    both = cval & val[None, :]
    n_valid = both.sum(axis=1).astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        phi_valid = np.where(n_valid > 0, (same & both).sum(axis=1) / np.maximum(n_valid, 1), np.nan)
        phi_valid_err = np.sqrt(phi_valid * (1.0 - phi_valid) / n_valid)
    classes, counts = np.unique(lab, return_counts=True)
    share = counts / n
    return {"branch_steps": res.branch_steps, "physical_time": res.physical_time, "alpha_bar": res.alpha_bar,
            "phi": phi, "phi_stderr": np.sqrt(phi * (1.0 - phi) / n), "phi_valid": phi_valid,
            "phi_valid_stderr": phi_valid_err, "n_valid": n_valid, "label": lab, "clone_label": clab,
            "code": code, "clone_code": clone_code, "valid": val, "clone_valid": cval,
            "invalid_share": float(1.0 - (val.sum() + cval.sum()) / (n * (1 + cval.shape[0]))),
            "classes": classes, "class_share": share, "baseline": float(np.sum(share**2)), "n_pairs": n}


def crossing_with_error(t, phi, stderr, rng: SeedLike = None, level: float = PHI_LEVEL, n_boot: int = 400):
    """Where ``phi`` first falls through ``level`` (linear interpolation in ``t``), and its
    parametric-bootstrap standard error.

    This is :func:`physdiff.experiments.curie_weiss._crossing_with_error` (crossing of 0.7752,
    replicates ``phi + stderr * N(0, 1)`` clipped to [0, 1]) at any ``level``: the crossing of
    ``level`` by ``phi`` is the crossing of 0.7752 by ``phi + (0.7752 - level)`` (a shift keeps the
    order and the linear interpolation between the bracketing points, which lie well inside
    (0, 1)). ``t`` may be physical times or step ratios ``k / k_S``.

    Returns
    -------
    (t_cross, error) : floats; ``(nan, nan)`` when ``phi`` never falls through ``level``.
    """
    shift = PHI_LEVEL - float(level)
    return _crossing_with_error(np.asarray(t, dtype=np.float64), np.asarray(phi, dtype=np.float64) + shift,
                                np.asarray(stderr, dtype=np.float64), as_generator(rng), n_boot=n_boot)


# ---------------------------------------------------------------------------------------------
# the training images of a checkpoint
# ---------------------------------------------------------------------------------------------

def mnist_training_set(model, data_dir=None) -> tuple[np.ndarray, np.ndarray, str]:
    """The MNIST images (and labels) a checkpoint was trained on, checked against its sha256.

    Regenerated with :func:`physdiff.experiments.train.load_training_data` from the checkpoint's
    metadata (``digits``, ``holdout``; a checkpoint written before held-out splits existed has no
    ``holdout`` and was trained on every image) and the training seed ``model.config.seed``.

    Returns
    -------
    x : ndarray float32 (P, 784), pixels in [-1, 1]
    labels : ndarray int64 (P,), the true digits
    status : str
        ``"sha256 verified"`` or ``"no fingerprint in the checkpoint: not verified"``.

    Raises
    ------
    ValueError
        Not an MNIST checkpoint, not two digits, or the regenerated images do not match the
        checkpoint's sha256 (other MNIST files, or a different seed / held-out split).
    FileNotFoundError
        The MNIST test files are missing (the message says where it looked).
    """
    import hashlib

    from .. import datasets
    from .train import load_training_data

    data = getattr(model, "data", {}) or {}
    if data.get("dataset") != "mnist":
        raise ValueError("the MNIST cloning study needs a checkpoint trained on MNIST digits "
                         "(`physdiff train mnist --digits 0 1 --out runs/mnist`); this one has "
                         f"dataset={data.get('dataset')!r}")
    digits = [int(v) for v in data.get("digits") or []]
    if len(digits) != 2:
        raise ValueError(f"the cloning study compares two classes; this checkpoint was trained on digits {digits} "
                         "(train one with `--digits 0 1`)")
    seed = getattr(getattr(model, "config", None), "seed", None)
    holdout = float(data.get("holdout", 0.0))
    x, meta = load_training_data("mnist", seed=0 if seed is None else int(seed), digits=digits,
                                 data_dir=data_dir, holdout=holdout)
    _, y = datasets.load_mnist(data_dir, split="test", digits=digits)
    y = np.delete(y, np.asarray(meta["holdout_indices"], dtype=np.int64)).astype(np.int64)
    want = data.get("sha256")
    if want is None:
        return x, y, "no fingerprint in the checkpoint: not verified"
    got = hashlib.sha256(np.ascontiguousarray(x, dtype=np.float32).tobytes()).hexdigest()
    if got != want:
        raise ValueError(f"the regenerated training images (n={len(x)}, digits {digits}, holdout {holdout}, seed "
                         f"{seed}) do not match the checkpoint's sha256: are these the MNIST test files it was "
                         "trained on (--data-dir)? Lambda must be computed on exactly the training set")
    return x, y, "sha256 verified"


# ---------------------------------------------------------------------------------------------
# the study
# ---------------------------------------------------------------------------------------------

def _digit_codes(clf, digits: Sequence[int]):
    """``classify`` and ``decode`` for :func:`measure_cloning` from an MNIST classifier.

    The code of an image is ``2 * digit + cls``: ``digit`` the classifier's top class among all
    ten, ``cls`` (0 or 1) which of ``digits`` has the larger probability (the label restricted to
    the two digits). Valid: ``digit`` is one of ``digits``. Images are clipped to [-1, 1], the
    classifier's input range, before classification.
    """
    a, b = int(digits[0]), int(digits[1])

    def classify(x0):
        x = x0.detach().cpu().numpy() if hasattr(x0, "detach") else np.asarray(x0)
        p = clf.predict_proba(np.clip(x.astype(np.float32, copy=False), -1.0, 1.0))
        return 2 * p.argmax(axis=1).astype(np.int64) + (p[:, b] > p[:, a]).astype(np.int64)

    def decode(codes):
        codes = np.asarray(codes)
        return codes % 2, np.isin(codes // 2, [a, b])

    return classify, decode


def _torch_normal(rng: np.random.Generator, n: int, d: int, model):
    import torch

    return torch.from_numpy(rng.standard_normal((n, d)).astype(np.float32)).to(model.device)


def _counting(eps_fn, total: int, progress: bool):
    """``eps_fn`` wrapped with a tqdm bar over its calls (or ``eps_fn`` itself without progress)."""
    if not progress:
        return eps_fn, None
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc="cloning (net evaluations)", unit="eval", leave=False)

    def fn(x, t):
        bar.update(1)
        return eps_fn(x, t)

    return fn, bar


def _example_clones(model, steps: Sequence[int], n_examples: int, rng: np.random.Generator, sigma: str) -> np.ndarray:
    """Pairs of clones of ``n_examples`` reverse trajectories split at each of ``steps``:
    float32 (n_examples, len(steps), 2, d)."""
    d = model.d
    x_T = _torch_normal(rng, n_examples, d, model)
    seed = int(rng.integers(0, 2**63 - 1))
    _, rec = reverse_chain(model.eps_fn, x_T, model.schedule, seed=seed, sigma=sigma, record=list(steps))
    out = np.empty((n_examples, len(steps), 2, d), dtype=np.float32)
    for k, tb in enumerate(steps):
        xb = rec[k].repeat(2, 1)  # rows i and n_examples + i share the state at step tb
        x0 = reverse_chain(model.eps_fn, xb, model.schedule, t_start=int(tb), t_stop=0,
                           seed=int(rng.integers(0, 2**63 - 1)), sigma=sigma)
        x0 = x0.cpu().numpy()
        out[:, k, 0], out[:, k, 1] = x0[:n_examples], x0[n_examples:]
    return out


def mnist_cloning_study(checkpoint, out, *, n_pairs: int = 4000, seed: int = 0, data_dir=None,
                        branch_steps: Sequence[int] | None = None, n_mc: int = 2000, n_examples: int = 6,
                        classifier_epochs: int = 5, device: str | None = "cpu", force: bool = False,
                        progress: bool = False, log=print, command: str | None = None) -> dict:
    """The cloning experiment on a two-digit MNIST DDPM: ``phi(t)``, the measured speciation time
    and ``(1/2) log Lambda`` of the training images [BBBM24]; writes ``speciation.nc`` and
    ``cloning.png`` into ``out``.

    Steps: (1) regenerate the training images from the checkpoint's metadata and verify their
    sha256 (:func:`mnist_training_set`); ``Lambda`` (:func:`covariance_top_eigenvalue`),
    ``t_S = (1/2) log Lambda`` and the two-cluster geometry (:func:`two_cluster_geometry`).
    (2) Train the CNN classifier on all 10 000 MNIST test images (as ``physdiff train``'s quality
    check does). (3) Clone ``n_pairs`` reverse trajectories of the model at every branch step and
    classify all endpoints at step 0 (:func:`measure_cloning`; the model's own reverse variance
    ``config.sigma``); the class of an endpoint is the classifier's label restricted to the two
    digits (the more probable of the two); endpoints whose top digit among all ten is neither are
    kept in ``phi`` with that restricted label and counted (``neither_share``), and ``phi_valid``
    repeats ``phi`` on the pairs whose endpoints both are one of the two digits. (4) Crossings of
    0.7752 and of the matched level (see the module docstring) in physical time and in step ratio
    ``k / k_S`` (``k_S`` the first step with ``alpha_bar <= 1/Lambda``), with bootstrap errors
    (:func:`crossing_with_error`). (5) References: the two-cluster theory and the exact
    (empirical-mixture) score of the training images (:func:`phi_empirical_mixture`). (6) A few
    example trajectories split into two clones at times around ``t_S``.

    Parameters
    ----------
    checkpoint : path
        Directory of a DDPM trained on two MNIST digits (``physdiff train mnist``).
    out : path
        Output directory (created; existing outputs are refused unless ``force``).
    n_pairs : int
        Clone pairs ([BBBM24] used >= 4000 trajectories; binomial error <= 0.008 on ``phi``).
    seed : int
        Seeds the classifier's training, the trajectories, the Monte Carlo and the bootstrap.
    data_dir : path, optional
        Folder of the MNIST IDX files (as for :func:`physdiff.datasets.load_mnist`).
    branch_steps : sequence of int in 1..T, optional
        Default: every step ``1..T``. Cost: ``(T + sum of branch steps)`` net evaluations on
        ``n_pairs`` states (1325 for T = 50 and every step).
    n_mc : int
        Monte Carlo samples per step for the empirical-mixture ``phi``.
    n_examples : int
        Example trajectories drawn as clone pairs in the figure (0: none).
    classifier_epochs : int
        Epochs of the CNN classifier (5 gives ~97-98 % held-out accuracy).
    device : str or None
        Torch device of the model (default ``"cpu"``; None: the checkpoint's own).
    force, progress, log, command
        Overwrite outputs; a progress bar over the net evaluations; the printer; the command line
        stored in the provenance attrs.

    Returns
    -------
    dict
        Headline numbers: ``Lambda``, ``speciation_time_theory`` (``(1/2) log Lambda``),
        ``speciation_time`` and ``speciation_time_error`` (crossing of 0.7752), the same at the
        matched level and in step ratio, the theory curves' crossings, ``neither_share``,
        ``classifier_accuracy``, ``seconds``.

    Raises
    ------
    FileNotFoundError
        No checkpoint at ``checkpoint``, or the MNIST files are missing.
    FileExistsError
        Outputs exist and ``force`` is False.
    ValueError
        A checkpoint not trained on two MNIST digits, training images that do not match its
        sha256, bad ``n_pairs`` / ``branch_steps`` / ``n_mc``.
    """
    from .. import datasets, ddpm, metrics

    ck = Path(checkpoint)
    if not (ck / "config.json").is_file():
        raise FileNotFoundError(f"no checkpoint at {ck} (expected {ck / 'config.json'}); train one with "
                                "`physdiff train mnist --digits 0 1 --out runs/mnist`")
    n_pairs = check_positive_int("n_pairs", n_pairs)
    n_mc = check_positive_int("n_mc", n_mc, minimum=2)
    n_examples = check_positive_int("n_examples", n_examples, minimum=0)
    classifier_epochs = check_positive_int("classifier_epochs", classifier_epochs)
    model = ddpm.load(ck, device=device)
    sched, T, d = model.schedule, model.T, model.d
    branch = np.arange(1, T + 1) if branch_steps is None else np.unique(np.asarray(branch_steps, dtype=np.int64))
    if branch.size < 2 or branch.min() < 1 or branch.max() > T:
        raise ValueError(f"branch_steps must hold at least 2 distinct steps in 1..{T}")
    x_train, y_train, data_status = mnist_training_set(model, data_dir)  # ValueError if not MNIST
    digits = [int(v) for v in model.data["digits"]]
    out = prepare_out(out, OUTPUTS, force=force)
    clock = time.perf_counter()
    rng = np.random.default_rng(seed)
    sigma = model.config.sigma

    # 1. Lambda and the two clusters, on exactly the training images, pixels in [-1, 1]
    geo = two_cluster_geometry(x_train, y_train, digits)
    Lam = geo["Lambda"]
    t_S = 0.5 * math.log(Lam)
    k_S = sched.step_at_time(t_S)
    level_matched = float(gaussian.phi_two_clusters(t_S, geo["m_norm"], geo["gamma"], geo["weight_plus"]))
    log(f"{len(x_train)} training images of digits {digits} ({data_status}): Lambda = {Lam:.3f}, "
        f"(1/2) log Lambda = {t_S:.4f} (first step with alpha_bar <= 1/Lambda: {k_S} of {T}, "
        f"t = {sched.physical_time[k_S]:.3f}); class axis: |m| = {geo['m_norm']:.3f}, spread "
        f"{geo['gamma_minus']:.2f} / {geo['gamma_plus']:.2f} (pooled {geo['gamma']:.2f}), overlap with the top "
        f"eigenvector {geo['overlap']:.4f}")

    # 2. the classifier, on all ten digits of the MNIST test split
    x_all, y_all = datasets.load_mnist(data_dir, split="test")
    clf = metrics.train_mnist_classifier(x_all, y_all, seed=seed, epochs=classifier_epochs)
    clf_train_acc = float(np.mean(np.asarray(digits)[(clf.predict_proba(x_train)[:, digits]).argmax(axis=1)] == y_train))
    log(f"classifier: held-out accuracy {clf.holdout_accuracy:.4f} (10 digits), {clf_train_acc:.4f} on the model's "
        f"training images restricted to {digits} ({time.perf_counter() - clock:.1f} s)")
    del x_all, y_all

    # 3. cloning with the model
    classify, decode = _digit_codes(clf, digits)
    eps_fn, bar = _counting(model.eps_fn, int(T + branch.sum()), progress)
    x_T = _torch_normal(rng, n_pairs, d, model)
    try:
        det = measure_cloning(eps_fn, sched, classify, branch, n_pairs, d, seed=rng, x_T=x_T, sigma=sigma,
                              decode=decode)
    finally:
        if bar is not None:
            bar.close()
    del x_T
    tb = det["physical_time"]
    ratio = det["branch_steps"] / max(k_S, 1)
    t_cloning = time.perf_counter() - clock
    log(f"cloning: {n_pairs} pairs x {branch.size} branch steps done ({t_cloning:.1f} s); share of endpoints "
        f"classified neither {digits[0]} nor {digits[1]}: {det['invalid_share']:.4f}")

    # 4. crossings, with parametric-bootstrap errors
    cross = {}
    for name, lev in (("", PHI_LEVEL), ("_matched", level_matched)):
        cross[f"speciation_time{name}"] = crossing_with_error(tb, det["phi"], det["phi_stderr"], rng, level=lev)
        cross[f"step_ratio_crossing{name}"] = crossing_with_error(ratio, det["phi"], det["phi_stderr"], rng, level=lev)
    ok = np.isfinite(det["phi_valid"])
    cross["speciation_time_valid"] = (crossing_with_error(tb[ok], det["phi_valid"][ok], det["phi_valid_stderr"][ok],
                                                          rng) if ok.sum() >= 2 else (math.nan, math.nan))

    # 5. references: two-cluster theory, exact (empirical-mixture) score of the training images
    phi_2c = gaussian.phi_two_clusters(tb, geo["m_norm"], geo["gamma"], geo["weight_plus"])
    t_curve = np.linspace(max(float(tb.min()), 1e-3), float(tb.max()), 300)
    phi_2c_curve = gaussian.phi_two_clusters(t_curve, geo["m_norm"], geo["gamma"], geo["weight_plus"])
    phi_emp, phi_emp_err = phi_empirical_mixture(tb, x_train, y_train, n_samples=n_mc, seed=rng)

    def _theory_cross(t, p, lev):
        try:
            return gaussian.speciation_time_phi(t, p, lev)
        except ValueError:
            return math.nan

    t_2c = _theory_cross(t_curve, phi_2c_curve, PHI_LEVEL)
    t_emp, t_emp_err = crossing_with_error(tb, phi_emp, phi_emp_err, rng)
    log(f"references ({time.perf_counter() - clock:.1f} s): two-cluster theory crosses {PHI_LEVEL} at {t_2c:.4f} "
        f"and is {level_matched:.4f} at (1/2) log Lambda; exact empirical-mixture score crosses at "
        f"{t_emp:.4f} +- {t_emp_err:.4f}")

    # 6. example clone pairs around t_S
    ex_steps = sorted({max(1, min(T, sched.step_at_time(t_S + dt))) for dt in (-1.0, -0.5, 0.0, 0.5, 1.0)},
                      reverse=True)
    examples = (_example_clones(model, ex_steps, n_examples, rng, sigma) if n_examples
                else np.zeros((0, len(ex_steps), 2, d), dtype=np.float32))
    ex_codes = classify(examples.reshape(-1, d)) if n_examples else np.zeros(0, dtype=np.int64)
    ex_cls, _ = decode(ex_codes)
    ex_labels = np.asarray(digits)[ex_cls].reshape(examples.shape[:3]) if n_examples else np.zeros(examples.shape[:3])

    # 7. the Dataset
    dig = np.asarray(digits)
    t_meas, t_err = cross["speciation_time"]
    base = results.provenance(seed=seed, command=command, checkpoint=str(ck), dataset="mnist", digits=digits,
                              T=T, sigma=sigma, n_pairs=n_pairs, n_train=int(len(x_train)), training_data=data_status,
                              Lambda=Lam, speciation_time_theory=t_S, speciation_step=k_S, level=PHI_LEVEL,
                              level_matched=level_matched, baseline=det["baseline"],
                              class_share=det["class_share"].tolist(), m_norm=geo["m_norm"], gamma=geo["gamma"],
                              gamma_per_class=[geo["gamma_minus"], geo["gamma_plus"]],
                              weight_plus=geo["weight_plus"], lambda_axis=geo["lambda_axis"],
                              axis_overlap=geo["overlap"], classifier_holdout_accuracy=clf.holdout_accuracy,
                              classifier_accuracy_training_images=clf_train_acc,
                              classifier_epochs=classifier_epochs, n_mc=n_mc,
                              title=f"cloning on MNIST {digits[0]} vs {digits[1]} ({ck.name}, T={T}, {n_pairs} pairs)",
                              classes=(f"classifier label restricted to {digits} (the more probable of the two); "
                                       "endpoints whose top digit among all ten is neither are kept with that label "
                                       "and counted in neither_share; phi_valid uses only pairs with both valid"))
    sp = results.speciation_dataset(det["phi"], t=det["branch_steps"], alpha_bar=det["alpha_bar"],
                                    phi_stderr=det["phi_stderr"], phi_theory=phi_2c, speciation_time=t_meas,
                                    attrs=base)
    scalars = {"speciation_time_error": t_err, "speciation_time_theory": t_S, "Lambda": Lam,
               "level": PHI_LEVEL, "level_matched": level_matched, "neither_share": det["invalid_share"],
               "speciation_time_matched": cross["speciation_time_matched"][0],
               "speciation_time_matched_error": cross["speciation_time_matched"][1],
               "step_ratio_crossing": cross["step_ratio_crossing"][0],
               "step_ratio_crossing_error": cross["step_ratio_crossing"][1],
               "step_ratio_crossing_matched": cross["step_ratio_crossing_matched"][0],
               "step_ratio_crossing_matched_error": cross["step_ratio_crossing_matched"][1],
               "speciation_time_valid": cross["speciation_time_valid"][0],
               "speciation_time_valid_error": cross["speciation_time_valid"][1],
               "speciation_time_two_clusters": t_2c,
               "speciation_time_empirical": t_emp, "speciation_time_empirical_error": t_emp_err,
               "baseline": det["baseline"]}
    sp = sp.assign({k: ((), float(v)) for k, v in scalars.items()})
    sp = sp.assign(
        phi_valid=("t", det["phi_valid"]), phi_valid_stderr=("t", det["phi_valid_stderr"]),
        n_valid=("t", det["n_valid"]), phi_empirical=("t", phi_emp), phi_empirical_stderr=("t", phi_emp_err),
        step_ratio=("t", ratio),
        neither_share_clones=("t", 1.0 - det["clone_valid"].mean(axis=1)),
        phi_two_clusters_curve=("t_curve", phi_2c_curve),
        label=("pair", dig[det["label"]].astype(np.int8)),
        digit=("pair", (det["code"] // 2).astype(np.int8)),
        clone_label=(("t", "pair"), dig[det["clone_label"]].astype(np.int8)),
        clone_digit=(("t", "pair"), (det["clone_code"] // 2).astype(np.int8)),
        example=(("example", "example_t", "clone", "row", "col"), examples.reshape(*examples.shape[:3], 28, 28)),
        example_label=(("example", "example_t", "clone"), ex_labels.astype(np.int8)))
    sp = sp.assign_coords(t_curve=t_curve, pair=np.arange(n_pairs), example_t=np.asarray(ex_steps),
                          example_physical_time=("example_t", sched.physical_time[ex_steps]))
    docs = {"phi": "share of pairs whose two endpoints get the same restricted label",
            "phi_theory": "two-cluster theory phi_two_clusters(t; m_norm, gamma, weight_plus) [BBBM24]",
            "phi_valid": "phi over the pairs whose two endpoints are both one of the two digits",
            "phi_empirical": "phi of the exact score of the training images (empirical mixture), Monte Carlo",
            "label": "restricted label of each original endpoint (a digit)",
            "digit": "classifier's top digit among all ten of each original endpoint",
            "clone_label": "restricted label of the clone branched at step t",
            "clone_digit": "top digit among all ten of the clone branched at step t",
            "speciation_time": f"physical time where phi falls through {PHI_LEVEL} (linear interpolation)",
            "speciation_time_matched": "the same at level_matched = phi_two_clusters((1/2) log Lambda)",
            "step_ratio": "branch step k over k_S, the first step with alpha_bar <= 1/Lambda",
            "example": "clone pairs of example trajectories split at step example_t, pixels in [-1, 1]"}
    for k, v in docs.items():
        sp[k].attrs["description"] = v
    results.write_dataset(sp, out / "speciation.nc")
    _plot(sp, out / "cloning.png")
    seconds = round(time.perf_counter() - clock, 1)
    summary = {"Lambda": Lam, "speciation_time_theory": t_S, "speciation_step": k_S,
               "speciation_time": t_meas, "speciation_time_error": t_err,
               "speciation_time_matched": cross["speciation_time_matched"][0],
               "speciation_time_matched_error": cross["speciation_time_matched"][1],
               "level_matched": level_matched,
               "step_ratio_crossing": cross["step_ratio_crossing"][0],
               "step_ratio_crossing_error": cross["step_ratio_crossing"][1],
               "speciation_time_valid": cross["speciation_time_valid"][0],
               "speciation_time_two_clusters": t_2c, "speciation_time_empirical": t_emp,
               "speciation_time_empirical_error": t_emp_err, "neither_share": det["invalid_share"],
               "baseline": det["baseline"], "class_share": det["class_share"].tolist(),
               "classifier_accuracy": clf.holdout_accuracy, "n_pairs": n_pairs, "n_train": int(len(x_train)),
               "cloning_seconds": round(t_cloning, 1), "seconds": seconds}
    log(f"speciation: (1/2) log Lambda = {t_S:.4f}; phi = {PHI_LEVEL} crossing: model {t_meas:.4f} +- {t_err:.4f} "
        f"(step ratio {summary['step_ratio_crossing']:.3f} +- {summary['step_ratio_crossing_error']:.3f}), "
        f"two-cluster theory {t_2c:.4f}, exact empirical score {t_emp:.4f} +- {t_emp_err:.4f}; matched level "
        f"{level_matched:.4f}: model {summary['speciation_time_matched']:.4f} +- "
        f"{summary['speciation_time_matched_error']:.4f}; neither {digits[0]} nor {digits[1]}: "
        f"{det['invalid_share']:.4f} of endpoints ({seconds} s)")
    return summary


# ---------------------------------------------------------------------------------------------
# figure
# ---------------------------------------------------------------------------------------------

def _plot(ds: xr.Dataset, path) -> Path:
    import matplotlib.pyplot as plt

    n_ex, n_t = ds.sizes["example"], ds.sizes["example_t"]
    fig = plt.figure(figsize=(13.0 if n_ex else 7.0, 5.2))
    gs = fig.add_gridspec(max(n_ex, 1), 1 + n_t if n_ex else 1,
                          width_ratios=[n_t * 1.25] + [1] * n_t if n_ex else [1], wspace=0.08, hspace=0.08)
    ax = fig.add_subplot(gs[:, 0])
    tau = ds["physical_time"].values
    ax.errorbar(tau, ds["phi"], yerr=ds["phi_stderr"], fmt="o", ms=3, capsize=2, color="C3", zorder=3,
                label=f"model, {ds.attrs.get('n_pairs')} pairs")
    ax.plot(tau, ds["phi_valid"], "x", ms=3, color="C1", label="model, pairs of clean 0/1 only")
    ax.fill_between(tau, ds["phi_empirical"] - 2 * ds["phi_empirical_stderr"],
                    ds["phi_empirical"] + 2 * ds["phi_empirical_stderr"], color="C0", alpha=0.3, lw=0)
    ax.plot(tau, ds["phi_empirical"], "C0-", lw=1, label="exact score of the training images")
    ax.plot(ds["t_curve"], ds["phi_two_clusters_curve"], "k-", lw=1, label="two-cluster theory")
    ax.axhline(float(ds["level"]), color="0.4", ls=":", lw=0.8)
    ax.axhline(float(ds["level_matched"]), color="0.6", ls="-.", lw=0.6)
    ax.axhline(float(ds["baseline"]), color="0.7", ls="--", lw=0.6, label="baseline $p^2+(1-p)^2$")
    t_S = float(ds["speciation_time_theory"])
    ax.axvline(t_S, color="k", ls="--", lw=1, label=f"(1/2) log Lambda = {t_S:.2f}")
    t_m, e_m = float(ds["speciation_time"]), float(ds["speciation_time_error"])
    if np.isfinite(t_m):
        ax.axvline(t_m, color="C3", ls="--", lw=1, label=f"measured ({float(ds['level']):.4f}): {t_m:.2f} ± {e_m:.2f}")
        ax.axvspan(t_m - e_m, t_m + e_m, color="C3", alpha=0.12, lw=0)
    ax.set_xlabel("physical time t of the branching (-(1/2) log alpha_bar)")
    ax.set_ylabel(r"$\phi(t)$ = P(clones end in the same class)")
    ax.set_xlim(0, min(float(tau.max()), 2.0 * t_S + 1.0))
    order = np.argsort(tau)
    steps = ds["t"].values.astype(np.float64)[order]
    sec = ax.secondary_xaxis("top", functions=(lambda v: np.interp(v, tau[order], steps),
                                               lambda k: np.interp(k, steps, tau[order])))
    sec.set_xlabel("branch step k", fontsize=8)
    sec.tick_params(labelsize=7)
    ax.legend(fontsize=7, loc="lower left")
    ax.set_title(ds.attrs.get("title", "cloning"), fontsize=9, pad=20)
    for i in range(n_ex):
        for k in range(n_t):
            a = fig.add_subplot(gs[i, 1 + k])
            pair = ds["example"].values[i, k]  # (2, 28, 28)
            img = np.concatenate([pair[0], np.full((28, 2), 1.0), pair[1]], axis=1)
            a.imshow(np.clip(img, -1, 1), cmap="gray_r", vmin=-1, vmax=1)
            a.set_xticks([])
            a.set_yticks([])
            lab = ds["example_label"].values[i, k]
            for sp_ in a.spines.values():
                sp_.set_color("C2" if lab[0] == lab[1] else "C3")
                sp_.set_linewidth(1.5)
            if i == 0:
                a.set_title(f"t = {float(ds['example_physical_time'][k]):.2f}", fontsize=7)
    if n_ex:
        fig.text(0.98, 0.01, "example trajectories split into two clones at time t (green frame: same class)",
                 fontsize=7, ha="right")
    return plotting.save_figure(fig, path)
