"""Cloning (speciation) of a two-digit MNIST DDPM against ``(1/2) log Lambda`` of its training images.

One reverse trajectory starts at ``x_T ~ N(0, I)``; at a branch step it is copied and the copy
finishes with independent noise; ``phi(t)`` is the probability that the two endpoints are the same
digit, as judged by the MNIST classifier of :func:`physdiff.metrics.mnist_classifier`. [BBBM24]
predict that the classes separate ("speciate") at ``t_S = (1/2) log Lambda``, ``Lambda`` the top
eigenvalue of the covariance of the training data, in the physical time ``t = -(1/2) log
alpha_bar``. The study measures ``phi`` with the model (:func:`physdiff.reverse.cloning`) and sets
it against

- ``(1/2) log Lambda`` of exactly the model's training images, in its units (pixels in [-1, 1]);
- the two-cluster theory :func:`physdiff.theory.gaussian.phi_two_clusters` with the class means and
  the within-class spread of the training images along the axis joining the means;
- ``phi`` of the exact score of the training set (the empirical mixture),
  ``E_{x_t}[sum_c P(c | x_t)^2]``, by Monte Carlo (:func:`phi_empirical_mixture`).

The measured speciation time is the crossing of the universal value ``phi(t_S) = 0.7752`` [BBBM24]
and, as a check of that level's assumptions (``|m|^2 >> gamma``, equal class weights), of the
"matched" level: the value the two-cluster theory of these very clusters takes at ``(1/2) log
Lambda``. See ``docs/theory.md``, "Speciation, cloning and collapse" and "MNIST studies".

References
----------
[BBBM24] Biroli, Bonnaire, de Bortoli, Mezard (2024), Dynamical regimes of diffusion models,
arXiv:2402.18491 (Nat. Commun. 15:9957).
[Ho20] Ho, Jain, Abbeel (2020), arXiv:2006.11239, Algorithm 2 (the reverse chain).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import xarray as xr
from scipy import linalg

from .._util import SeedLike, as_generator, as_samples, check_positive_int
from . import register
from ..theory.gaussian import phi_empirical_mixture
from ._mnist import MNISTModelParams, classifier, mnist_setup, var

__all__ = ["Params", "run", "plot", "TINY", "covariance_top_eigenvalue", "two_cluster_geometry", "decoded_phi"]


@register("mnist-cloning", title="Cloning on MNIST 0 vs 1: learned phi(t) and t_S against (1/2) log Lambda")
@dataclass(frozen=True)
class Params(MNISTModelParams):
    """Parameters of the MNIST cloning study (defaults: the quick settings)."""

    n_pairs: int = field(default=4000, metadata={"help": "clone pairs ([BBBM24] used >= 4000)"})
    branch_steps: tuple[int, ...] = field(default=(), metadata={
        "help": "branch steps of the model's schedule; empty: n_branch steps around (1/2) log Lambda"})
    n_branch: int = field(default=15, metadata={
        "help": "with branch_steps empty: branch times t_S - 1.5 ... t_S + 2 (physical time); 0: every step"})
    n_mc: int = field(default=2000, metadata={"help": "Monte Carlo samples per step for the exact-score phi"})
    n_examples: int = field(default=6, metadata={"help": "example trajectories drawn as clone pairs (0: none)"})
    seed: int = field(default=0, metadata={"help": "random seed", "coord": True})

    def __post_init__(self):
        super().__post_init__()
        check_positive_int("n_pairs", self.n_pairs)
        check_positive_int("n_mc", self.n_mc, minimum=2)
        check_positive_int("n_examples", self.n_examples, minimum=0)
        check_positive_int("n_branch", self.n_branch, minimum=0)
        if self.n_branch == 1:
            raise ValueError("n_branch must be 0 (every step) or at least 2")
        check_positive_int("seed", self.seed, minimum=0)
        if len(self.digits) != 2:
            raise ValueError(f"digits must be two digits (the two classes), got {self.digits}")
        if self.branch_steps and (len(set(self.branch_steps)) < 2 or min(self.branch_steps) < 1):
            raise ValueError(f"branch_steps must hold at least 2 distinct steps >= 1, got {self.branch_steps}")


#: A run of a few seconds on one core (tests).
TINY = dict(n_train=400, T=25, hidden=32, epochs=1, classifier_images=2000,
            classifier_epochs=1, n_pairs=24, n_mc=16, n_examples=2, n_branch=0)


# ---------------------------------------------------------------------------------------------
# data geometry: Lambda and the two clusters
# ---------------------------------------------------------------------------------------------

def covariance_top_eigenvalue(x) -> tuple[float, np.ndarray]:
    """Largest eigenvalue ``Lambda`` of the covariance of data ``x`` and its unit eigenvector.

    The covariance of the empirical distribution of the rows, ``C = (1/n) sum_i (x_i - xbar)(x_i -
    xbar)^T`` (no Bessel correction: it is the distribution whose diffused score is the empirical
    mixture score). ``Lambda`` gives the speciation time ``t_S = (1/2) log Lambda`` [BBBM24].
    float64, :func:`scipy.linalg.eigh` (top eigenpair only).

    Parameters
    ----------
    x : array_like, shape (n, d), n >= 2
        Data in the units the model sees (MNIST: pixels in [-1, 1], about 4 times the [0, 1] value).

    Returns
    -------
    Lambda : float
        In squared data units.
    v : ndarray, float64, shape (d,)
        Unit eigenvector, sign fixed so that its largest-magnitude entry is positive.

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
    lam, V = linalg.eigh(C, subset_by_index=[d - 1, d - 1], driver="evr")
    v = V[:, 0]
    return float(lam[0]), (v if v[np.argmax(np.abs(v))] >= 0 else -v)


def two_cluster_geometry(x, labels, classes: Sequence) -> dict:
    """Two-class data described as two clusters, for :func:`~physdiff.theory.gaussian.phi_two_clusters`.

    With class means ``mu_a``, ``mu_b`` (``classes = (a, b)``; ``b`` is the ``+`` cluster), the
    cluster axis is ``u = (mu_b - mu_a) / |mu_b - mu_a|`` and each cluster sits at ``m_norm =
    |mu_b - mu_a| / 2`` from their midpoint. ``gamma_c = Var(u.x | c)`` is the spread of class ``c``
    along the axis and ``gamma = w_a gamma_a + w_b gamma_b`` the pooled one [BBBM24]. By the law
    of total variance ``u.C.u = 4 w_a w_b m_norm^2 + gamma`` (``lambda_axis``), equal to ``Lambda``
    when ``u`` is the top eigenvector (``overlap = |u.v| = 1``).

    Parameters
    ----------
    x : array_like, shape (n, d)
    labels : array_like, shape (n,)
        Class of each row; every row must be in ``classes``.
    classes : sequence of two labels ``(a, b)``

    Returns
    -------
    dict
        ``m_norm``, ``gamma``, ``gamma_minus`` (class ``a``), ``gamma_plus`` (class ``b``),
        ``weight_plus`` (share of class ``b``), ``lambda_axis``, ``Lambda``, ``overlap`` (floats)
        and ``axis`` (ndarray (d,)).

    Raises
    ------
    ValueError
        Shapes differ, not two distinct classes, a class with fewer than 2 rows, a row of another
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
        other = sorted(set(np.unique(labels).tolist()) - set(classes))
        raise ValueError(f"labels hold values outside classes {classes}: {other}")
    if a.sum() < 2 or b.sum() < 2:
        raise ValueError(f"each class needs at least 2 rows, got {int(a.sum())} and {int(b.sum())}")
    diff = x[b].mean(axis=0) - x[a].mean(axis=0)
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

# ---------------------------------------------------------------------------------------------
# the measurement
# ---------------------------------------------------------------------------------------------

def _digit_codes(clf, digits):
    """``classify`` and ``decode`` from a digit classifier: the code of an image is ``2 * digit +
    cls``, ``digit`` the top class among all ten and ``cls`` which of ``digits`` is the more probable
    (the label restricted to the two); valid: ``digit`` is one of ``digits``. Images are clipped to
    [-1, 1], the classifier's input range."""
    a, b = int(digits[0]), int(digits[1])

    def classify(x0):
        x = x0.detach().cpu().numpy() if hasattr(x0, "detach") else np.asarray(x0)
        p = clf.predict_proba(np.clip(x.astype(np.float32, copy=False), -1.0, 1.0))
        return 2 * p.argmax(axis=1).astype(np.int64) + (p[:, b] > p[:, a]).astype(np.int64)

    def decode(codes):
        codes = np.asarray(codes)
        return codes % 2, np.isin(codes // 2, [a, b])

    return classify, decode


def decoded_phi(res, decode) -> dict:
    """``phi`` over pairs of two valid endpoints, from a :class:`~physdiff.reverse.CloningResult`
    whose labels are codes.

    ``decode(codes) -> (cls, valid)`` turns the codes into the class and a flag for endpoints that
    are a clean member of one of the classes (MNIST: the classifier's top digit is one of the two).

    Returns
    -------
    dict
        ``label`` (n_pairs,), ``clone_label`` (K, n_pairs), ``clone_valid`` (K, n_pairs, bool),
        ``phi_valid``, ``phi_valid_stderr`` (float64 (K,), NaN where no pair is valid), ``n_valid``
        (int64 (K,)) and ``invalid_share`` (share of all ``(K + 1) n_pairs`` endpoints not valid).
    """
    code, clone_code = np.asarray(res.labels), np.asarray(res.clone_labels)
    (lab, val), (clab, cval) = decode(code), decode(clone_code)
    same = clab == lab[None, :]
    both = cval & val[None, :]
    n_valid = both.sum(axis=1).astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        phi_valid = np.where(n_valid > 0, (same & both).sum(axis=1) / np.maximum(n_valid, 1), np.nan)
        phi_valid_err = np.sqrt(phi_valid * (1.0 - phi_valid) / n_valid)
    n = code.size
    return {"label": lab, "clone_label": clab, "clone_valid": cval, "phi_valid": phi_valid,
            "phi_valid_stderr": phi_valid_err, "n_valid": n_valid,
            "invalid_share": float(1.0 - (val.sum() + cval.sum()) / (n * (1 + cval.shape[0])))}


def _measure(model, clf, digits, branch, p, rng) -> dict:
    """Cloning with the model, endpoints classified by digit."""
    import torch

    from ..reverse import cloning

    classify, decode = _digit_codes(clf, digits)
    x_T = torch.from_numpy(rng.standard_normal((p.n_pairs, model.d)).astype(np.float32)).to(model.device)
    res = cloning(model.eps_fn, model.schedule, classify, branch, p.n_pairs, model.d, seed=rng, x_T=x_T,
                  sigma=model.config.sigma)
    return {"res": res, "code": np.asarray(res.labels), "clone_code": np.asarray(res.clone_labels),
            "decode": decode, "classify": classify, **decoded_phi(res, decode)}


def _crossings(det, k_S, level_matched, seed) -> dict:
    """Crossings of 0.7752 and of the matched level, in physical time and step ratio, with errors."""
    from ..reverse import crossing_time
    from ..theory.gaussian import PHI_SPECIATION

    res = det["res"]
    tb, ratio = res.physical_time, res.branch_steps / max(k_S, 1)
    out = {}
    for suffix, lev in (("", PHI_SPECIATION), ("_matched", level_matched)):
        for name, x in (("speciation_time", tb), ("step_ratio_crossing", ratio)):
            out[name + suffix] = crossing_time(x, res.phi, lev, stderr=res.phi_stderr, seed=seed, missing="nan")
    ok = np.isfinite(det["phi_valid"])
    out["speciation_time_valid"] = (crossing_time(tb[ok], det["phi_valid"][ok], PHI_SPECIATION,
                                                  stderr=det["phi_valid_stderr"][ok], seed=seed, missing="nan")
                                    if ok.sum() >= 2 else (math.nan, math.nan))
    return out


def _example_clones(model, steps, n_examples: int, rng) -> np.ndarray:
    """Pairs of clones of ``n_examples`` reverse trajectories split at each of ``steps``:
    float32 (n_examples, len(steps), 2, d)."""
    import torch

    from ..reverse import reverse_chain

    sigma, d = model.config.sigma, model.d
    x_T = torch.from_numpy(rng.standard_normal((n_examples, d)).astype(np.float32)).to(model.device)
    _, rec = reverse_chain(model.eps_fn, x_T, model.schedule, seed=int(rng.integers(2**63 - 1)), sigma=sigma,
                           record=list(steps))
    out = np.empty((n_examples, len(steps), 2, d), dtype=np.float32)
    for k, tb in enumerate(steps):
        x0 = reverse_chain(model.eps_fn, rec[k].repeat(2, 1), model.schedule, t_start=int(tb), t_stop=0,
                           seed=int(rng.integers(2**63 - 1)), sigma=sigma).cpu().numpy()
        out[:, k, 0], out[:, k, 1] = x0[:n_examples], x0[n_examples:]
    return out


#: Branch times of the default grid, relative to (1/2) log Lambda: phi is near 1 below, near its
#: baseline above, and a clone costs as many net evaluations as its branch step.
BRANCH_SPAN = (-1.5, 2.0)


def _branch_steps(p: Params, schedule, t_S: float) -> np.ndarray:
    """Increasing branch steps: ``p.branch_steps``, else ``p.n_branch`` steps around ``t_S``
    (:func:`physdiff.reverse.cloning_branch_steps`), else (``n_branch = 0``) every step."""
    from ..reverse import cloning_branch_steps

    T = schedule.T
    if p.branch_steps:
        branch = np.unique(np.asarray(p.branch_steps, dtype=np.int64))
        if branch.max() > T:
            raise ValueError(f"branch_steps must lie in 1..{T} (the model's T), got {p.branch_steps}")
        return branch
    if p.n_branch == 0:
        return np.arange(1, T + 1)
    return np.asarray(sorted(cloning_branch_steps(schedule, t_S, span=BRANCH_SPAN, n_branch=p.n_branch)))


def run(params: Params, progress: bool = False) -> dict[str, xr.Dataset]:
    """The cloning experiment on a two-digit MNIST DDPM.

    Steps: (1) the model and exactly its training images; ``Lambda`` and the two-cluster geometry
    (:func:`two_cluster_geometry`). (2) The digit classifier. (3) ``n_pairs`` reverse trajectories
    cloned at every branch step (the model's own reverse variance); the class of an endpoint is the
    classifier's label restricted to the two digits; endpoints whose top digit among all ten is
    neither are kept and counted (``neither_share``), and ``phi_valid`` repeats ``phi`` on pairs of
    two valid endpoints. (4) Crossings of 0.7752 and of the matched level in physical time and in
    step ratio ``k / k_S`` (``k_S`` the first step with ``alpha_bar <= 1/Lambda``), with bootstrap
    errors (:func:`physdiff.reverse.crossing_time`). (5) The two-cluster theory and the exact score
    of the training images (:func:`phi_empirical_mixture`). (6) Example clone pairs around ``t_S``.

    Returns
    -------
    dict
        ``{"speciation": Dataset}``: dims ``step`` (branch steps; coords ``time``, ``alpha_bar``,
        ``step_ratio``), ``pair``, ``time_curve``, ``example``, ``example_step``, ``clone``, ``row``,
        ``col``; ``phi(step)`` with errors, ``phi_valid``, ``phi_empirical``, the two-cluster curve,
        the endpoints' labels and the scalar results (``Lambda``, ``speciation_time`` ...).

    Raises
    ------
    ValueError, FileNotFoundError
        As :func:`physdiff.studies._mnist.mnist_setup`; a checkpoint not trained on two digits;
        branch steps outside ``1..T``.
    """
    from .. import ddpm
    from ..reverse import crossing_time
    from ..theory import gaussian

    p = params
    if p.branch_steps and not p.checkpoint:  # before the training: the T of the model trained here
        T = ddpm.get_config("mnist", p.preset, T=p.T or None).T
        if max(p.branch_steps) > T:
            raise ValueError(f"branch_steps must lie in 1..{T} (the model's T), got {p.branch_steps}")
    setup = mnist_setup(p, progress)
    model, digits = setup.model, setup.digits
    if len(digits) != 2:
        raise ValueError(f"the cloning study compares two classes; the model was trained on digits {digits}")
    sched, T = model.schedule, model.T
    geo = two_cluster_geometry(setup.x_train, setup.y_train, digits)
    t_S = 0.5 * math.log(geo["Lambda"])
    k_S = sched.step_at_time(t_S)
    branch = _branch_steps(p, sched, t_S)
    rng = np.random.default_rng(p.seed)
    level_matched = float(gaussian.phi_two_clusters(t_S, geo["m_norm"], geo["gamma"], geo["weight_plus"]))
    clf = classifier(p)
    det = _measure(model, clf, digits, branch, p, rng)
    cross = _crossings(det, k_S, level_matched, rng)
    tb = det["res"].physical_time
    t_curve = np.linspace(max(float(tb.min()), 1e-3), float(tb.max()), 300)
    phi_2c = gaussian.phi_two_clusters(t_curve, geo["m_norm"], geo["gamma"], geo["weight_plus"])
    cross["speciation_time_two_clusters"] = (crossing_time(t_curve, phi_2c, missing="nan"), math.nan)
    phi_emp = phi_empirical_mixture(tb, setup.x_train, setup.y_train, n_samples=p.n_mc, seed=rng)
    cross["speciation_time_empirical"] = crossing_time(tb, phi_emp[0], stderr=phi_emp[1], seed=rng, missing="nan")
    ex_steps = sorted({max(1, min(T, sched.step_at_time(t_S + dt))) for dt in (-1.0, -0.5, 0.0, 0.5, 1.0)},
                      reverse=True)
    examples = (_example_clones(model, ex_steps, p.n_examples, rng) if p.n_examples
                else np.zeros((0, len(ex_steps), 2, model.d), dtype=np.float32))
    ds = _dataset(p, setup, geo, det, cross, dict(t_S=t_S, k_S=k_S, level_matched=level_matched, t_curve=t_curve,
                                                   phi_2c=phi_2c, phi_emp=phi_emp, ex_steps=ex_steps,
                                                   examples=examples, clf=clf))
    return {"speciation": ds}


_SCALARS = {  # name: (units, long_name)
    "Lambda": ("1", "top eigenvalue of the training images' covariance (pixels in [-1, 1])"),
    "speciation_time_theory": ("1", "(1/2) log Lambda, the speciation time of [BBBM24] in physical time"),
    "speciation_step": ("1", "first step with alpha_bar <= 1/Lambda"),
    "level": ("1", "phi at the speciation time in large dimension (0.7752)"),
    "level_matched": ("1", "two-cluster theory of these clusters at (1/2) log Lambda"),
    "baseline": ("1", "phi of clones that share nothing, sum_c p_c^2"),
    "neither_share": ("1", "share of endpoints whose top digit is neither of the two"),
    "m_norm": ("1", "distance of each class mean from their midpoint"),
    "gamma": ("1", "pooled within-class variance along the class axis"),
    "weight_plus": ("1", "share of the second digit in the training images"),
    "axis_overlap": ("1", "|u.v| of the class axis and the top covariance eigenvector"),
    "classifier_test_accuracy": ("1", "digit classifier's accuracy on the MNIST test split"),
}
_CROSSINGS = {
    "speciation_time": "physical time where phi falls through 0.7752",
    "speciation_time_matched": "physical time where phi falls through level_matched",
    "step_ratio_crossing": "branch step over k_S where phi falls through 0.7752",
    "step_ratio_crossing_matched": "branch step over k_S where phi falls through level_matched",
    "speciation_time_valid": "physical time where phi_valid falls through 0.7752",
    "speciation_time_two_clusters": "physical time where the two-cluster theory falls through 0.7752",
    "speciation_time_empirical": "physical time where the exact score's phi falls through 0.7752",
}


def _dataset(p, setup, geo, det, cross, ref) -> xr.Dataset:
    """The ``speciation`` Dataset."""
    from ..theory.gaussian import PHI_SPECIATION

    res, dig = det["res"], np.asarray(setup.digits)
    scal = {"Lambda": geo["Lambda"], "speciation_time_theory": ref["t_S"], "speciation_step": ref["k_S"],
            "level": PHI_SPECIATION, "level_matched": ref["level_matched"], "baseline": res.baseline,
            "neither_share": det["invalid_share"], "m_norm": geo["m_norm"], "gamma": geo["gamma"],
            "weight_plus": geo["weight_plus"], "axis_overlap": geo["overlap"],
            "classifier_test_accuracy": float(getattr(ref["clf"], "test_accuracy", math.nan))}
    data = {k: var((), v, *_SCALARS[k]) for k, v in scal.items()}
    for k, (val, err) in cross.items():
        units = "1"
        data[k] = var((), val, units, _CROSSINGS[k])
        if k != "speciation_time_two_clusters":
            data[k + "_error"] = var((), err, units, "bootstrap standard error of " + k)
    phi_emp, phi_emp_err = ref["phi_emp"]
    ex_lab = det["decode"](det["classify"](ref["examples"].reshape(-1, 784)))[0] if p.n_examples else np.zeros(0)
    data.update(
        phi=var("step", res.phi, "1", "share of clone pairs whose endpoints get the same restricted label"),
        phi_stderr=var("step", res.phi_stderr, "1", "binomial standard error of phi"),
        phi_valid=var("step", det["phi_valid"], "1", "phi over pairs whose two endpoints are both one of the digits"),
        phi_valid_stderr=var("step", det["phi_valid_stderr"], "1", "binomial standard error of phi_valid"),
        n_valid=var("step", det["n_valid"], "1", "pairs entering phi_valid"),
        phi_empirical=var("step", phi_emp, "1", "phi of the exact score of the training images (Monte Carlo)"),
        phi_empirical_stderr=var("step", phi_emp_err, "1", "Monte Carlo standard error of phi_empirical"),
        phi_two_clusters=var("time_curve", ref["phi_2c"], "1", "two-cluster theory phi(t) [BBBM24]"),
        label=var("pair", dig[det["label"]].astype(np.int8), "1", "restricted label of each original endpoint"),
        digit=var("pair", (det["code"] // 2).astype(np.int8), "1", "top digit (of ten) of each original endpoint"),
        clone_label=var(("step", "pair"), dig[det["clone_label"]].astype(np.int8), "1",
                        "restricted label of the clone branched at step"),
        clone_digit=var(("step", "pair"), (det["clone_code"] // 2).astype(np.int8), "1",
                        "top digit (of ten) of the clone branched at step"),
        example_image=var(("example", "example_step", "clone", "row", "col"),
                    ref["examples"].reshape(*ref["examples"].shape[:3], 28, 28), "1",
                    "clone pairs of example trajectories split at example_step (pixels in [-1, 1])"),
        example_label=var(("example", "example_step", "clone"),
                          dig[np.asarray(ex_lab, dtype=np.int64)].reshape(ref["examples"].shape[:3]).astype(np.int8),
                          "1", "restricted label of each example endpoint"))
    sched = setup.model.schedule
    coords = {"step": ("step", res.branch_steps, {"long_name": "branch step of the model's chain", "units": "1"}),
              "time": ("step", res.physical_time, {"long_name": "physical time -(1/2) log alpha_bar", "units": "1"}),
              "alpha_bar": ("step", res.alpha_bar, {"long_name": "alpha_bar of the branch step", "units": "1"}),
              "step_ratio": ("step", res.branch_steps / max(ref["k_S"], 1), {"long_name": "branch step over k_S",
                                                                              "units": "1"}),
              "time_curve": ("time_curve", ref["t_curve"], {"long_name": "physical time", "units": "1"}),
              "pair": np.arange(p.n_pairs),
              "example_step": ("example_step", np.asarray(ref["ex_steps"]), {"long_name": "split step", "units": "1"}),
              "example_time": ("example_step", sched.physical_time[ref["ex_steps"]],
                               {"long_name": "physical time of the split", "units": "1"})}
    ds = xr.Dataset(data, coords=coords)
    ds.attrs.update(model=setup.source, T=int(setup.model.T), digits=list(map(int, setup.digits)),
                    n_train=int(len(setup.x_train)), n_pairs=int(p.n_pairs))
    return ds


# ---------------------------------------------------------------------------------------------
# figure
# ---------------------------------------------------------------------------------------------

def _plot_phi(ds: xr.Dataset, ax) -> None:
    tau = ds["time"].values
    ax.errorbar(tau, ds["phi"], yerr=ds["phi_stderr"], fmt="o", ms=3, capsize=2, color="C3", zorder=3,
                label=f"model, {ds.sizes['pair']} pairs")
    ax.plot(tau, ds["phi_valid"], "x", ms=3, color="C1", label="model, pairs of clean digits only")
    lo = ds["phi_empirical"] - 2 * ds["phi_empirical_stderr"]
    ax.fill_between(tau, lo, ds["phi_empirical"] + 2 * ds["phi_empirical_stderr"], color="C0", alpha=0.3, lw=0)
    ax.plot(tau, ds["phi_empirical"], "C0-", lw=1, label="exact score of the training images")
    ax.plot(ds["time_curve"], ds["phi_two_clusters"], "k-", lw=1, label="two-cluster theory")
    ax.axhline(float(ds["level"]), color="0.4", ls=":", lw=0.8)
    ax.axhline(float(ds["level_matched"]), color="0.6", ls="-.", lw=0.6)
    ax.axhline(float(ds["baseline"]), color="0.7", ls="--", lw=0.6, label="baseline $p^2+(1-p)^2$")
    t_S = float(ds["speciation_time_theory"])
    ax.axvline(t_S, color="k", ls="--", lw=1, label=f"(1/2) log Lambda = {t_S:.2f}")
    t_m, e_m = float(ds["speciation_time"]), float(ds["speciation_time_error"])
    if np.isfinite(t_m):
        ax.axvline(t_m, color="C3", ls="--", lw=1, label=f"measured: {t_m:.2f} ± {e_m:.2f}")
        ax.axvspan(t_m - e_m, t_m + e_m, color="C3", alpha=0.12, lw=0)
    ax.set_xlabel("physical time t of the branching (-(1/2) log alpha_bar)")
    ax.set_ylabel(r"$\phi(t)$ = P(clones end in the same class)")
    ax.set_xlim(0, min(float(tau.max()), 2.0 * t_S + 1.0))
    ax.legend(fontsize=7, loc="lower left")


def _plot_examples(ds: xr.Dataset, fig, gs) -> None:
    for i in range(ds.sizes["example"]):
        for k in range(ds.sizes["example_step"]):
            a = fig.add_subplot(gs[i, 1 + k])
            pair = ds["example_image"].values[i, k]
            a.imshow(np.clip(np.concatenate([pair[0], np.ones((28, 2)), pair[1]], axis=1), -1, 1),
                     cmap="gray_r", vmin=-1, vmax=1)
            a.set_xticks([])
            a.set_yticks([])
            lab = ds["example_label"].values[i, k]
            for sp in a.spines.values():
                sp.set_color("C2" if lab[0] == lab[1] else "C3")
                sp.set_linewidth(1.5)
            if i == 0:
                a.set_title(f"t = {float(ds['example_time'][k]):.2f}", fontsize=7)


def plot(datasets: dict[str, xr.Dataset]) -> dict:
    """``{"cloning": Figure}``: phi(t) of the model, of the exact score and of the two-cluster theory,
    beside example clone pairs (green frame: same class)."""
    from matplotlib.figure import Figure

    ds = datasets["speciation"]
    n_ex, n_t = ds.sizes["example"], ds.sizes["example_step"]
    fig = Figure(figsize=(13.0 if n_ex else 7.0, 5.2))
    gs = fig.add_gridspec(max(n_ex, 1), 1 + n_t if n_ex else 1,
                          width_ratios=[n_t * 1.25] + [1] * n_t if n_ex else [1], wspace=0.08, hspace=0.08)
    ax = fig.add_subplot(gs[:, 0])
    _plot_phi(ds, ax)
    ax.set_title(f"cloning on MNIST {ds.attrs.get('digits')} (T = {ds.attrs.get('T')})", fontsize=9)
    _plot_examples(ds, fig, gs)
    return {"cloning": fig}
