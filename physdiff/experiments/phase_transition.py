"""The phase-transition study: does a per-timestep Linear-ReLU-Linear DDPM learn the physics of
Curie-Weiss data, and where does it not? (``physdiff study phase-transition CHECKPOINT_DIR``;
``studies/phase_transition.py``; issue 5, REFERENCES.md secs. 3-6.)

The learned score of a checkpoint trained on Curie-Weiss spins (``physdiff train curie-weiss``) is
compared with the exact finite-N score (:func:`physdiff.theory.curie_weiss.score`) on fresh forward
samples; the potential of ``mu = sum_i x_i / sqrt(N)`` it implies is estimated and set against the
exact ``V(mu, t)``; the nets' Jacobian asymmetry and their energy along the magnetization axis are
measured (and a linear model's, which cannot form the double well); the cloning experiment is run
with the learned and the exact score; and the generated state weights and memorisation are
counted.

Producing the checkpoints is the user's job::

    physdiff train curie-weiss --N 64 --beta 1.5 --out runs/cw64
    physdiff train curie-weiss --N 64 --beta 1.5 --activation linear --out runs/cw64_linear
    physdiff study phase-transition runs/cw64 --out runs/pt          # finds runs/cw64_linear itself

For the state-weight / memorisation scan over the number of training configurations ``P``, train
one checkpoint per ``P`` (``--n-train P``, same ``--N --beta --h``) and pass them all::

    for P in 250 1000 4000 16000; do physdiff train curie-weiss --N 64 --beta 1.5 --h 0.01 \\
        --n-train $P --out runs/cw64_P$P; done
    physdiff study phase-transition runs/cw64_P250 runs/cw64_P1000 runs/cw64_P4000 runs/cw64_P16000 --out runs/ptP

Sections 1-4 use the first checkpoint; sections 5-6 use every one.

References
----------
[BM23] Biroli & Mezard (2023), arXiv:2306.03518: Curie-Weiss data, exact and large-N score.
[BBBM24] Biroli, Bonnaire, de Bortoli & Mezard (2024), arXiv:2402.18491: speciation time
``t_S = (1/2) log Lambda``, the cloning observable ``phi(t)`` and the collapse time ``t_C``.
[RA23] Raya & Ambrogioni (2023), arXiv:2305.19693: potentials of the generative process.
[KM13] Kamyshanska & Memisevic (2013/2015): energies of single-hidden-layer autoencoders; untied
weights are a gradient field only if the Jacobian is symmetric.
[Thesis] Bustinduy de la Guerra (2024): one Linear-ReLU-Linear autoencoder per timestep; Annex II
(a linear model cannot reverse non-Gaussian data).
"""

from __future__ import annotations

import hashlib
import math
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import xarray as xr
from scipy.integrate import cumulative_trapezoid

from .. import datasets, forward, plotting, results
from .._util import SeedLike, as_generator, check_positive_int
from ..reverse import cloning, eps_from_score
from ..theory import autoencoder as ae_theory
from ..theory import curie_weiss as cw
from ..theory import gaussian
from ._io import prepare_out
from .curie_weiss import PHI_LEVEL, _crossing_with_error

__all__ = ["phase_transition_study", "score_comparison", "potential_from_projected_score",
           "binned_potentials", "axis_potentials", "jacobian_asymmetry_per_step", "collapse_time",
           "find_linear_sibling", "OUTPUTS"]

OUTPUTS = ("score.nc", "score.png", "potential.nc", "potential.png", "autoencoder.nc", "autoencoder.png",
           "speciation.nc", "cloning.png", "trajectories.nc", "trajectories.png", "state_weights.nc",
           "state_weights.png", "memorization.nc")

LINEAR_SUFFIXES = ("_linear", "-linear", "_lin", "-lin")


# ---------------------------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------------------------

def _cw_params(model) -> tuple[int, float, float]:
    """``(N, beta, h)`` from a model's training metadata; ValueError if it is not Curie-Weiss."""
    data = getattr(model, "data", {}) or {}
    if data.get("dataset") != "curie-weiss" or any(k not in data for k in ("N", "beta")):
        raise ValueError("the phase-transition study needs a checkpoint trained on Curie-Weiss data "
                         "(`physdiff train curie-weiss --N 64 --beta 1.5 --out runs/cw64`); this one has "
                         f"dataset={data.get('dataset')!r}")
    return int(data["N"]), float(data["beta"]), float(data.get("h", 0.0))


def _is_torch_model(model) -> bool:
    return type(getattr(model, "model", None)).__module__.split(".")[0] == "physdiff" and hasattr(model, "device")


def _x_T(model, rng: np.random.Generator, n: int, d: int):
    """Start states N(0, I): a float32 torch tensor on a DDPM's device, else float64 numpy."""
    x = rng.standard_normal((n, d))
    if _is_torch_model(model):
        import torch

        return torch.from_numpy(x.astype(np.float32)).to(model.device)
    return x


def _sign_labels(x) -> np.ndarray:
    """Class of a state: 1 if its magnetization is > 0 else 0 (numpy or torch in, numpy out)."""
    m = x.sum(1) > 0
    if hasattr(m, "cpu"):
        m = m.cpu().numpy()
    return np.asarray(m, dtype=np.int64)


def _learned_score(model, x: np.ndarray, t: int) -> np.ndarray:
    """``-eps_theta(x, t) / sqrt(1 - alpha_bar_t)`` in float64 (DESIGN.md "Score")."""
    ab = float(model.schedule.alpha_bar[t])
    return -np.asarray(model.eps(x, int(t)), dtype=np.float64) / math.sqrt(1.0 - ab)


def _plus_probability(N: int, beta: float, h: float) -> float:
    """Exact ``P(M > 0) + P(M = 0)/2`` of the Curie-Weiss law (REFERENCES.md sec. 2)."""
    M, P = cw.magnetization_distribution(N, beta, h)
    return float(P[M > 0].sum() + 0.5 * P[M == 0].sum())


# ---------------------------------------------------------------------------------------------
# 1. score comparison
# ---------------------------------------------------------------------------------------------

def score_comparison(model, N: int, beta: float, h: float = 0.0, *, steps: Sequence[int] | None = None,
                     n_eval: int = 400, seed: SeedLike = None, attrs: dict | None = None) -> xr.Dataset:
    """Learned score against the exact Curie-Weiss score on fresh forward samples, step by step.

    For each step ``t`` in ``steps``, ``n_eval`` fresh exact spin configurations
    (:func:`physdiff.datasets.curie_weiss`) are diffused with the closed-form jump
    (:func:`physdiff.forward.diffuse`, [Ho20] eq. 4); on those ``x_t`` the learned score
    ``-eps_theta / sqrt(1 - alpha_bar)`` is compared with the exact one (Tweedie's formula with the
    exact posterior mean, REFERENCES.md sec. 3, [BM23]).

    Parameters
    ----------
    model : object
        Has ``schedule`` (:class:`~physdiff.schedules.Schedule`) and ``eps(x_t, t) -> eps`` taking a
        float32 numpy array (n, N) and an int step (a :class:`physdiff.ddpm.DDPM`, or any stand-in).
    N : int >= 2
        Spins (the model's dimension).
    beta, h : float
        Inverse temperature and per-spin field of the data.
    steps : sequence of int in 1..T, optional
        Default: every step ``1..T``.
    n_eval : int >= 2
        Samples per step.
    seed : int, Generator or None
        Equal seeds give equal results.
    attrs : dict, optional
        Extra Dataset attrs.

    Returns
    -------
    xarray.Dataset, dims ``t``
        The :func:`physdiff.results.score_comparison_dataset` variables ``mse``, ``relative_error``,
        ``cosine``, ``mse_parallel``, ``mse_orthogonal`` (split along ``u = 1/sqrt(N)``, the
        magnetization direction, and its orthogonal complement), plus ``relative_error_parallel``
        (``mean (u.(s - s*))^2 / mean (u.s*)^2``), ``relative_error_orthogonal`` (the same with the
        orthogonal projections) and ``cosine_parallel`` (``mean sign-agreement`` weighted:
        ``mean (u.s)(u.s*) / sqrt(mean (u.s)^2 mean (u.s*)^2)``). Attrs ``t_max_relative_error``,
        ``physical_time_max_relative_error`` (the step of the largest total relative error) and
        the same for the parallel one.

    Raises
    ------
    ValueError
        Bad ``N``, ``n_eval`` or steps outside ``1..T``.
    """
    N = check_positive_int("N", N, minimum=2)
    n_eval = check_positive_int("n_eval", n_eval, minimum=2)
    sched = model.schedule
    steps = np.arange(1, sched.T + 1) if steps is None else np.asarray(steps, dtype=np.int64).reshape(-1)
    if steps.size == 0 or steps.min() < 1 or steps.max() > sched.T:
        raise ValueError(f"steps must be a non-empty list of steps in 1..{sched.T}")
    rng = as_generator(seed)
    a = datasets.curie_weiss(n_eval * steps.size, N, beta, h, seed=rng)
    x_all, _ = forward.diffuse(a, sched, np.repeat(steps, n_eval), seed=rng)
    x_all = x_all.reshape(steps.size, n_eval, N)
    learned = np.empty(x_all.shape)
    exact = np.empty(x_all.shape)
    for k, t in enumerate(steps):
        ab = float(sched.alpha_bar[t])
        learned[k] = _learned_score(model, x_all[k], int(t))
        exact[k] = cw.score(x_all[k].astype(np.float64), ab, beta, h)
    u = np.full(N, 1.0 / math.sqrt(N))
    ds = results.score_comparison_dataset(learned, exact, t=steps, alpha_bar=sched.alpha_bar[steps], direction=u,
                                          attrs=dict(attrs or {}) | {"n_eval": n_eval})
    lp, ep = learned @ u, exact @ u  # (n_t, n)
    diff = learned - exact
    dpar = diff @ u
    e_orth2 = np.sum(exact**2, axis=-1) - ep**2
    d_orth2 = np.sum(diff**2, axis=-1) - dpar**2
    with np.errstate(invalid="ignore", divide="ignore"):
        ds["relative_error_parallel"] = ("t", np.mean(dpar**2, axis=1) / np.mean(ep**2, axis=1))
        ds["relative_error_orthogonal"] = ("t", np.mean(d_orth2, axis=1) / np.mean(e_orth2, axis=1))
        ds["cosine_parallel"] = ("t", np.mean(lp * ep, axis=1)
                                 / np.sqrt(np.mean(lp**2, axis=1) * np.mean(ep**2, axis=1)))
    for name, var in (("", "relative_error"), ("_parallel", "relative_error_parallel")):
        k = int(np.nanargmax(ds[var].values))
        ds.attrs[f"t_max_relative_error{name}"] = int(steps[k])
        ds.attrs[f"physical_time_max_relative_error{name}"] = float(sched.physical_time[steps[k]])
        ds.attrs[f"max_relative_error{name}"] = float(ds[var].values[k])
    return ds


# ---------------------------------------------------------------------------------------------
# 2. potentials of mu from the projected score
# ---------------------------------------------------------------------------------------------

def potential_from_projected_score(mu, g, edges, *, min_count: int = 20) -> dict:
    """Potential ``V(mu) = -log P_t(mu)`` from samples of ``mu`` and of the projected score ``g``.

    For ``mu = u.x`` (``u`` a unit vector) the marginal density obeys
    ``d/dmu log P_t(mu) = E[u . grad log p_t(x) | u.x = mu]`` (differentiate
    ``P_t(mu) = int p_t(x) delta(mu - u.x) dx``), so binning samples in ``mu`` and averaging
    ``g = u . score(x)`` per bin estimates ``-dV/dmu``; the cumulative trapezoid rule
    (:func:`scipy.integrate.cumulative_trapezoid`) over the bins' mean ``mu`` gives ``V`` up to a
    constant, fixed here by ``V = 0`` at the bin nearest ``mu = 0``. Applied to the exact score it
    reproduces the exact ``V(mu, t)`` of REFERENCES.md sec. 4 (up to the statistical error and an
    ``O(width^2)`` quadrature error); applied to a learned score it gives the potential the model
    implies along ``u``.

    Parameters
    ----------
    mu, g : array_like (n,)
        Projections ``u.x`` and ``u.score(x)`` of the same samples.
    edges : array_like (B+1,)
        Increasing bin edges.
    min_count : int >= 2
        Bins with fewer samples are dropped; ``V`` is built on the contiguous run of kept bins that
        holds the most samples (NaN elsewhere).

    Returns
    -------
    dict of ndarray float64 (B,)
        ``mu`` (mean of ``mu`` in each bin), ``dVdmu`` (``-mean g``), ``dVdmu_stderr``, ``count``
        (int64), ``V``, ``V_stderr`` (the propagated standard error of ``V - V(anchor)``, bins being
        independent), and ``anchor`` (index of the bin where ``V = 0``, int).

    Raises
    ------
    ValueError
        Shapes differ, edges not increasing, or no bin holds ``min_count`` samples.
    """
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
    # contiguous runs of kept bins; take the one with the most samples
    runs, start = [], None
    for b in range(B + 1):
        if b < B and keep[b]:
            start = b if start is None else start
        elif start is not None:
            runs.append((start, b))
            start = None
    lo, hi = max(runs, key=lambda r: count[r[0]:r[1]].sum())
    V = np.full(B, np.nan)
    V_err = np.full(B, np.nan)
    xs, ys, es = mbar[lo:hi], -gbar[lo:hi], gerr[lo:hi]
    anchor = lo + int(np.argmin(np.abs(xs)))
    if hi - lo >= 2:
        cum = cumulative_trapezoid(ys, xs, initial=0.0)
        V[lo:hi] = cum - cum[anchor - lo]
        dx = np.diff(xs)
        for k in range(lo, hi):
            a_, b_ = sorted((anchor - lo, k - lo))
            c = np.zeros(hi - lo)
            if b_ > a_:
                c[a_:b_] += dx[a_:b_] / 2
                c[a_ + 1:b_ + 1] += dx[a_:b_] / 2
            V_err[k] = math.sqrt(float(np.sum(c**2 * es**2)))
    else:
        V[anchor], V_err[anchor] = 0.0, 0.0
    return {"mu": mbar, "dVdmu": -gbar, "dVdmu_stderr": gerr, "count": count.astype(np.int64),
            "V": V, "V_stderr": V_err, "anchor": anchor}


def binned_potentials(score_fns: dict, schedule, N: int, beta: float, h: float = 0.0, *,
                      steps: Sequence[int], n_samples: int = 10000, edges=None, min_count: int = 20,
                      seed: SeedLike = None, attrs: dict | None = None) -> xr.Dataset:
    """The mu-binned potential estimator (:func:`potential_from_projected_score`) for several
    scores on the same forward samples, against the exact ``V(mu, t)``.

    Parameters
    ----------
    score_fns : dict name -> callable
        ``score_fn(x_t, t) -> score`` (numpy float arrays (n, N), int step), e.g. ``{"learned": ...,
        "exact": ...}``; each gives variables ``V_<name>(t, bin)``, ``V_<name>_stderr`` and
        ``dVdmu_<name>``.
    schedule : Schedule
    N, beta, h : the Curie-Weiss data.
    steps : sequence of int in 1..T
        Steps at which to estimate.
    n_samples : int
        Forward samples per step (fresh exact spins, closed-form jump).
    edges : array_like, optional
        Bin edges in ``mu`` (default 61 edges on [-6, 6]).
    min_count : int
    seed : int, Generator or None
    attrs : dict, optional

    Returns
    -------
    xarray.Dataset
        Dims ``(t, bin)``: ``mu`` (bin means), ``count``, the estimator variables per score, and
        ``V_theory`` (exact ``-log P_t(mu)`` at the bin means, shifted to 0 at each row's anchor bin,
        as the estimates are; REFERENCES.md sec. 4); dims ``(t, mu_fine)``: ``V_theory_fine`` (shifted
        to 0 at ``mu = 0``). Coords ``alpha_bar(t)``, ``physical_time(t)``.
    """
    N = check_positive_int("N", N, minimum=2)
    n_samples = check_positive_int("n_samples", n_samples, minimum=2)
    steps = np.asarray(steps, dtype=np.int64).reshape(-1)
    edges = np.linspace(-6.0, 6.0, 61) if edges is None else np.asarray(edges, dtype=np.float64)
    B = edges.size - 1
    rng = as_generator(seed)
    u = np.full(N, 1.0 / math.sqrt(N))
    mu_fine = np.linspace(edges[0], edges[-1], 241)
    out = {"mu": np.full((steps.size, B), np.nan), "count": np.zeros((steps.size, B), dtype=np.int64),
           "V_theory": np.full((steps.size, B), np.nan)}
    for name in score_fns:
        for suffix in ("", "_stderr"):
            out[f"V_{name}{suffix}"] = np.full((steps.size, B), np.nan)
        out[f"dVdmu_{name}"] = np.full((steps.size, B), np.nan)
    V_fine = np.empty((steps.size, mu_fine.size))
    for k, t in enumerate(steps):
        t = int(t)
        ab = float(schedule.alpha_bar[t])
        a = datasets.curie_weiss(n_samples, N, beta, h, seed=rng)
        x, _ = forward.diffuse(a, schedule, t, seed=rng)
        mu = x.astype(np.float64) @ u
        ref = None
        for name, fn in score_fns.items():
            g = np.asarray(fn(x, t), dtype=np.float64) @ u
            est = potential_from_projected_score(mu, g, edges, min_count=min_count)
            out[f"V_{name}"][k] = est["V"]
            out[f"V_{name}_stderr"][k] = est["V_stderr"]
            out[f"dVdmu_{name}"][k] = est["dVdmu"]
            ref = est
        out["mu"][k] = ref["mu"]
        out["count"][k] = ref["count"]
        valid = np.isfinite(ref["mu"])
        Vt = cw.potential(ref["mu"][valid], ab, N, beta, h, kind="density")
        anchor_V = cw.potential(ref["mu"][ref["anchor"]], ab, N, beta, h, kind="density")
        out["V_theory"][k, valid] = Vt - anchor_V
        vf = cw.potential(mu_fine, ab, N, beta, h, kind="density")
        V_fine[k] = vf - cw.potential(0.0, ab, N, beta, h, kind="density")
    data = {k: (("t", "bin"), v) for k, v in out.items()}
    data["V_theory_fine"] = (("t", "mu_fine"), V_fine)
    ab = schedule.alpha_bar[steps]
    return xr.Dataset(data, coords={"t": steps, "bin": np.arange(B), "mu_fine": mu_fine,
                                    "bin_edge_lo": ("bin", edges[:-1]), "bin_edge_hi": ("bin", edges[1:]),
                                    "alpha_bar": ("t", ab), "physical_time": ("t", -0.5 * np.log(ab))},
                      attrs=dict(attrs or {}) | {"n_samples": n_samples, "min_count": min_count,
                                                 "kind": "density potential V = -log P_t(mu)"})


# ---------------------------------------------------------------------------------------------
# 3. autoencoder energies
# ---------------------------------------------------------------------------------------------

def jacobian_asymmetry_per_step(model, x_by_step: dict) -> np.ndarray:
    """Mean ``|J - J^T|_F / |J|_F`` of each net's Jacobian ``J = d eps_t / d x`` [KM13].

    Net ``t`` of a :class:`physdiff.ddpm.DDPM` is ``eps_t(x) = act(x W1 + b1) W2 + b2``; its Jacobian
    asymmetry is :func:`physdiff.theory.autoencoder.jacobian_asymmetry` on that net's weights. An
    untied autoencoder is a gradient field (has an energy) only where ``J`` is symmetric
    (REFERENCES.md sec. 6): 0 means conservative.

    Parameters
    ----------
    model : DDPM
        Its ``model`` holds the stacked ``W1`` (T, d, H), ``b1``, ``W2``, ``b2`` and ``activation``.
    x_by_step : dict int -> ndarray (n, d)
        States at which net ``t`` is probed (typically forward samples at step ``t``).

    Returns
    -------
    ndarray float64 (len(x_by_step),)
        In the order of the dict's keys (NaN where ``J = 0`` at every probe point).
    """
    from ..theory import autoencoder as ae

    net = model.model
    W = [p.detach().cpu().double().numpy() for p in (net.W1, net.b1, net.W2, net.b2)]
    return np.asarray([ae.jacobian_asymmetry(np.asarray(x, dtype=np.float64), *(w[int(t) - 1] for w in W),
                                             activation=net.activation)
                       for t, x in x_by_step.items()])


def axis_potentials(score_fn: Callable, steps: Sequence[int], mu, N: int) -> np.ndarray:
    """Potential of a score field along the magnetization axis ``x = mu u``, ``u = 1/sqrt(N)``.

    ``W_t(mu) = -int_0^mu u . score_t(m u) dm``: minus the line integral of the field
    (:func:`physdiff.theory.autoencoder.energy_along_path`, trapezoid rule on the grid ``mu``),
    shifted to 0 at the grid point nearest 0. For an exact score this is
    ``-[log p_t(mu u) - log p_t(0)]`` (the density along the axis, not the marginal ``V`` of
    ``mu``); for an autoencoder it is the [KM13] energy (with the ``V = -E`` sign of REFERENCES.md
    sec. 4) restricted to that line, path-independent only where the Jacobian is symmetric.

    Parameters
    ----------
    score_fn : callable ``(x (n, N) float32, t) -> score (n, N)``
    steps : sequence of int
    mu : array (K,), increasing
    N : int

    Returns
    -------
    ndarray float64 (len(steps), K)
    """
    from ..theory import autoencoder as ae

    mu = np.asarray(mu, dtype=np.float64)
    u = np.full(N, 1.0 / math.sqrt(N))
    x = (mu[:, None] * u[None, :]).astype(np.float32).astype(np.float64)
    i0 = int(np.argmin(np.abs(mu)))
    out = np.empty((len(steps), mu.size))
    for k, t in enumerate(steps):
        E = ae.energy_along_path(x, lambda y, t=int(t): np.asarray(score_fn(y.astype(np.float32), t), dtype=np.float64))
        out[k] = -(E - E[i0])
    return out


def find_linear_sibling(checkpoint) -> Path | None:
    """A sibling checkpoint of a linear model: ``<checkpoint><suffix>`` for a suffix in
    ``LINEAR_SUFFIXES`` (``runs/cw64`` -> ``runs/cw64_linear``) holding a ``config.json``; else None."""
    ck = Path(checkpoint)
    for suf in LINEAR_SUFFIXES:
        cand = ck.parent / (ck.name + suf)
        if (cand / "config.json").is_file():
            return cand
    return None


# ---------------------------------------------------------------------------------------------
# 5-6. state weights, memorisation
# ---------------------------------------------------------------------------------------------

def collapse_time(P: int, N: int, sigma2: float) -> float:
    """Collapse (memorisation) time ``t_C`` of [BBBM24]: ``f(t_C) = log(P) / N`` with the
    Gaussian-mixture excess entropy ``f(t) = (1/2) log(1 + sigma^2 e^{-2t} / Delta)``
    (REFERENCES.md sec. 5). Solving in closed form, with ``c = P^{2/N} - 1``:
    ``t_C = (1/2) log(1 + sigma^2 / c)``.

    Parameters
    ----------
    P : int >= 1
        Training points.
    N : int >= 1
        Dimension.
    sigma2 : float > 0
        Per-dimension variance of a cluster (for Curie-Weiss at ``beta > 1``: ``1 - m*^2``).

    Returns
    -------
    float
        Physical time; ``inf`` for ``P = 1``.
    """
    P = check_positive_int("P", P)
    N = check_positive_int("N", N)
    if not sigma2 > 0:
        raise ValueError(f"sigma2 must be > 0, got {sigma2}")
    c = math.expm1(2.0 * math.log(P) / N)
    return math.inf if c == 0 else 0.5 * math.log1p(sigma2 / c)


def _n_minima(V: np.ndarray, tol: float = 1e-3) -> int:
    """Number of interior local minima of a sampled potential that are at least ``tol`` deep on
    both sides (a double well has 2)."""
    V = np.asarray(V, dtype=np.float64)
    n, i = 0, 1
    while i < V.size - 1:
        if V[i] < V[i - 1] and V[i] <= V[i + 1]:
            j = i
            while j + 1 < V.size and V[j + 1] == V[i]:
                j += 1
            if V[: i].max() - V[i] > tol and V[j:].max() - V[i] > tol:
                n += 1
            i = j + 1
        else:
            i += 1
    return n


def _training_set(model):
    """Regenerate a Curie-Weiss training set as ``physdiff train`` does and check its sha256."""
    N, beta, h = _cw_params(model)
    n = model.data.get("n_train", model.data.get("n"))
    seed = getattr(getattr(model, "config", None), "seed", None)
    want = model.data.get("sha256")
    if n is None or seed is None or want is None:
        return None, "the checkpoint lacks n_train, the seed or the data fingerprint"
    x = datasets.curie_weiss(int(n), N, beta, h, seed=int(seed))
    got = hashlib.sha256(np.ascontiguousarray(x, dtype=np.float32).tobytes()).hexdigest()
    if got != want:
        return None, ("the regenerated training set does not match the checkpoint's sha256 (it was not "
                      "made by `physdiff train curie-weiss` with this seed); memorisation cannot be checked")
    return x, "ok"


def _match_share(samples: np.ndarray, train: np.ndarray) -> float:
    """Share of ``samples`` whose sign configuration equals some training configuration."""
    keys = {r.tobytes() for r in np.packbits(train > 0, axis=1)}
    packed = np.packbits(np.asarray(samples) > 0, axis=1)
    return float(np.mean([r.tobytes() in keys for r in packed]))


# ---------------------------------------------------------------------------------------------
# the study
# ---------------------------------------------------------------------------------------------

def phase_transition_study(checkpoint, out, *, linear=None, seed: int = 0, n_eval: int = 400,
                           n_potential: int = 10000, n_pairs: int = 2000, n_pairs_exact: int = 1000,
                           n_generate: int = 2000, n_trajectories: int = 200, device: str | None = "cpu",
                           force: bool = False, progress: bool = True, log=print,
                           command: str | None = None) -> dict:
    """Run the phase-transition study on a trained Curie-Weiss checkpoint; write Datasets + figures.

    Outputs in ``out`` (see the module docstring for how to make the checkpoints):

    ``score.nc/.png``
        Learned vs exact score per step (:func:`score_comparison`): ``mse``, ``relative_error``,
        ``cosine`` and their split along ``u = 1/sqrt(N)`` and orthogonal to it; ``t_S`` marked.
    ``potential.nc/.png``
        Density potential ``V(mu, t) = -log P_t(mu)`` at 7 times around ``t_S``: the mu-binned
        estimate from the learned score, the same estimator on the exact score (a check), the
        exact theory, and the linear model's estimate and closed form ``mu^2 / (2 (alpha_bar Lambda +
        Delta))`` when a linear model is there (:func:`binned_potentials`).
    ``autoencoder.nc/.png``
        Per-step Jacobian asymmetry of the nets (ReLU, and linear if present) and their energy along
        the magnetization axis against the exact ``-log p_t(mu u)`` (:func:`axis_potentials`).
    ``speciation.nc``, ``cloning.png``
        Cloning ``phi(t)`` with the learned model and with the exact score (the same reverse code,
        :func:`physdiff.reverse.cloning`) vs theory (:func:`~physdiff.theory.gaussian.phi_curie_weiss_mc`
        for ``N <= 200``, else :func:`~physdiff.theory.gaussian.phi_curie_weiss`); measured
        speciation times (crossing of 0.7752 [BBBM24]) with bootstrap errors.
    ``trajectories.nc/.png``
        Reverse magnetization trajectories of the learned model.
    ``state_weights.nc/.png``
        Share of generated samples with ``M > 0`` vs the exact ``P(M > 0)`` and the large-N
        ``1 / (1 + exp(-2 H m*))``, ``H = h N`` [REFERENCES.md sec. 2], per checkpoint (against ``P``).
    ``memorization.nc``
        Share of generated samples whose sign configuration is a training configuration, against
        the same share for fresh exact samples (coincidences the data law itself produces), and the
        collapse time ``t_C`` (:func:`collapse_time`, ``sigma^2 = 1 - m*^2``) vs ``t_S``.

    Parameters
    ----------
    checkpoint : path or sequence of paths
        Checkpoint directories of Curie-Weiss DDPMs (``physdiff train curie-weiss``). With several,
        all must share ``N``, ``beta``, ``h``; sections 1-4 use the first.
    out : path
        Output directory (created; existing outputs are refused unless ``force``).
    linear : path, optional
        Checkpoint of a linear model (``--activation linear``) on the same data; default: a
        sibling found by :func:`find_linear_sibling`.
    seed : int
        Seed of every random draw of the study.
    n_eval : int
        Forward samples per step for the score comparison.
    n_potential : int
        Forward samples per time for the potentials.
    n_pairs, n_pairs_exact : int
        Clone pairs for the learned and for the exact-score cloning (the exact score costs about
        0.1-0.3 ms per sample at N = 64 on one CPU core).
    n_generate : int
        Samples generated per checkpoint for state weights and memorisation.
    n_trajectories : int
        Learned reverse trajectories recorded.
    device : str or None
        Torch device for the models (default ``"cpu"``; None: the checkpoint's own).
    force, progress, log, command
        Overwrite outputs; progress bars; the printer; the command line for provenance.

    Returns
    -------
    dict
        Headline numbers: ``speciation_time_theory`` ((1/2) log Lambda), ``speciation_time_phi_theory``,
        ``speciation_time_learned`` (+ ``_error``), ``speciation_time_exact`` (+ ``_error``),
        ``t_max_relative_error`` (step), ``physical_time_max_relative_error``, ``share_plus`` and
        ``share_plus_exact``, ``memorized_share``, ``memorized_share_baseline``, ``collapse_time``,
        ``jacobian_asymmetry_mean``, and timings.

    Raises
    ------
    FileNotFoundError
        A checkpoint is missing.
    FileExistsError
        Outputs exist and ``force`` is False.
    ValueError
        A checkpoint not trained on Curie-Weiss data, or checkpoints of different ``N``, ``beta``, ``h``.
    """
    from .. import ddpm

    ckpts = [Path(checkpoint)] if isinstance(checkpoint, (str, Path)) else [Path(c) for c in checkpoint]
    if not ckpts:
        raise ValueError("give at least one checkpoint directory")
    for c in ckpts:
        if not (c / "config.json").is_file():
            raise FileNotFoundError(f"no checkpoint at {c} (expected {c / 'config.json'}); train one with "
                                    "`physdiff train curie-weiss --N 64 --beta 1.5 --out runs/cw64`")
    models = [ddpm.load(c, device=device) for c in ckpts]
    N, beta, h = _cw_params(models[0])
    for c, m in zip(ckpts[1:], models[1:]):
        if _cw_params(m) != (N, beta, h):
            raise ValueError(f"{c} was trained on N, beta, h = {_cw_params(m)}, {ckpts[0]} on {(N, beta, h)}; "
                             "a P scan needs the same data law")
    model = models[0]
    lin_path = Path(linear) if linear is not None else find_linear_sibling(ckpts[0])
    lin_model = None
    if lin_path is not None:
        if not (lin_path / "config.json").is_file():
            raise FileNotFoundError(f"no linear checkpoint at {lin_path}; train it with `physdiff train "
                                    f"curie-weiss --N {N} --beta {beta} --activation linear --out {lin_path}`")
        lin_model = ddpm.load(lin_path, device=device)
        if _cw_params(lin_model) != (N, beta, h):
            raise ValueError(f"linear checkpoint {lin_path} has N, beta, h = {_cw_params(lin_model)}, not {(N, beta, h)}")
    out = prepare_out(out, OUTPUTS, force=force)
    rng = np.random.default_rng(seed)
    sched = model.schedule
    T = sched.T
    Lam = cw.top_eigenvalue(N, beta, h)
    t_S = 0.5 * math.log(Lam)
    m_star = cw.m_star(beta, h)
    base = results.provenance(seed=seed, command=command, N=N, beta=beta, h=h, T=T, checkpoint=str(ckpts[0]),
                              speciation_time=t_S, Lambda=Lam)
    summary: dict = {"N": N, "beta": beta, "h": h, "T": T, "speciation_time_theory": t_S}
    clock = time.perf_counter()
    learned_fn = lambda x, t: _learned_score(model, x, t)  # noqa: E731
    exact_fn = lambda x, t: cw.score(np.asarray(x, dtype=np.float64), float(sched.alpha_bar[t]), beta, h)  # noqa: E731

    # 1. score comparison on every step
    sc = score_comparison(model, N, beta, h, n_eval=n_eval, seed=rng,
                          attrs=base | {"title": f"learned vs exact score, N={N}, beta={beta}, h={h}"})
    results.write_dataset(sc, out / "score.nc")
    plotting.plot_score_comparison(sc, out / "score.png", speciation_time=t_S)
    for k in ("t_max_relative_error", "physical_time_max_relative_error", "max_relative_error",
              "t_max_relative_error_parallel", "physical_time_max_relative_error_parallel",
              "max_relative_error_parallel"):
        summary[k] = sc.attrs[k]
    near = int(np.argmin(np.abs(sc["physical_time"].values - t_S)))
    summary["relative_error_at_t_S"] = float(sc["relative_error"].values[near])
    summary["relative_error_parallel_at_t_S"] = float(sc["relative_error_parallel"].values[near])
    log(f"score comparison written ({time.perf_counter() - clock:.1f} s): largest relative error "
        f"{summary['max_relative_error']:.3g} at step {summary['t_max_relative_error']} "
        f"(t = {summary['physical_time_max_relative_error']:.3f}); t_S = {t_S:.3f}")

    # 2. potentials along mu around t_S
    taus = t_S + np.array([-1.0, -0.5, -0.25, 0.0, 0.25, 0.5, 1.0])
    pot_steps = sorted({max(1, sched.step_at_time(tau)) for tau in taus if tau > 0})
    fns = {"learned": learned_fn, "exact": exact_fn}
    if lin_model is not None:
        fns["linear"] = lambda x, t: _learned_score(lin_model, x, t)
    pot = binned_potentials(fns, sched, N, beta, h, steps=pot_steps, n_samples=n_potential, seed=rng,
                            attrs=base | {"linear_checkpoint": str(lin_path) if lin_path else "none"})
    ab_p = pot["alpha_bar"].values[:, None]
    # a Gaussian p_t with the data covariance (what an optimal linear model learns): REFERENCES.md sec. 6
    pot["V_gaussian_fine"] = (("t", "mu_fine"), ae_theory.linear_potential_mu(pot["mu_fine"].values[None, :], ab_p, Lam))
    results.write_dataset(pot, out / "potential.nc")
    _plot_potentials(pot, out / "potential.png", t_S)
    resid = np.abs(pot["V_learned"] - pot["V_theory"]).where(pot["count"] >= 100)
    summary["potential_max_abs_error_learned"] = float(resid.max())
    log(f"potentials written ({time.perf_counter() - clock:.1f} s)")

    # 3. autoencoder energies: Jacobian asymmetry per step, energy along the magnetization axis
    jac_steps = np.arange(1, T + 1)
    probe = datasets.curie_weiss(32 * T, N, beta, h, seed=rng)
    xp, _ = forward.diffuse(probe, sched, np.repeat(jac_steps, 32), seed=rng)
    x_by = {int(t): xp[k * 32:(k + 1) * 32] for k, t in enumerate(jac_steps)}
    ae = {"jacobian_asymmetry": ("t", jacobian_asymmetry_per_step(model, x_by))}
    mu_axis = np.linspace(-6.0, 6.0, 121)
    E_steps = np.asarray(pot_steps)
    ab_e = sched.alpha_bar[E_steps]
    ae_e = {"E_learned": axis_potentials(learned_fn, E_steps, mu_axis, N)}
    u = np.full(N, 1.0 / math.sqrt(N))
    logp = np.stack([cw.log_density(mu_axis[:, None] * u[None, :], float(a), beta, h) for a in ab_e])
    i0 = int(np.argmin(np.abs(mu_axis)))
    ae_e["E_exact"] = -(logp - logp[:, i0:i0 + 1])
    ae_e["E_gaussian"] = ae_theory.linear_potential_mu(mu_axis[None, :], ab_e[:, None], Lam)
    if lin_model is not None:
        ae["jacobian_asymmetry_linear"] = ("t", jacobian_asymmetry_per_step(lin_model, x_by))
        ae_e["E_linear"] = axis_potentials(fns["linear"], E_steps, mu_axis, N)
    aed = xr.Dataset(ae | {k: (("t_energy", "mu"), v) for k, v in ae_e.items()},
                     coords={"t": jac_steps, "alpha_bar": ("t", sched.alpha_bar[jac_steps]),
                             "physical_time": ("t", sched.physical_time[jac_steps]), "t_energy": E_steps,
                             "physical_time_energy": ("t_energy", sched.physical_time[E_steps]), "mu": mu_axis},
                     attrs=base | {"energy": "E_t(mu) = -int_0^mu u.score_t(m u) dm along x = mu u, u = 1/sqrt(N)",
                                   "linear_checkpoint": str(lin_path) if lin_path else "none"})
    results.write_dataset(aed, out / "autoencoder.nc")
    _plot_autoencoder(aed, out / "autoencoder.png", t_S)
    summary["jacobian_asymmetry_mean"] = float(np.mean(aed["jacobian_asymmetry"]))
    summary["learned_double_well"] = bool(any(_n_minima(E) >= 2 for E in aed["E_learned"].values))
    summary["exact_double_well"] = bool(any(_n_minima(E) >= 2 for E in aed["E_exact"].values))
    if lin_model is not None:
        summary["linear_double_well"] = bool(any(_n_minima(E) >= 2 for E in aed["E_linear"].values))
    log(f"autoencoder energies written ({time.perf_counter() - clock:.1f} s)")

    # 4. cloning with the learned and the exact score; learned reverse trajectories
    # classes are read off at t_classify, where the exact double well is frozen: wells at
    # +-s m* sqrt(N) at >= 5 noise widths sqrt(Delta) from 0 (used for both scores alike)
    sep = 25.0 / max(N * m_star**2, 1e-12)  # s^2 / Delta at which the wells are 5 widths out
    t_cls_tau = 0.5 * math.log1p(1.0 / sep) if m_star > 0 and sep > 0 else 0.0
    t_classify = min(sched.step_at_time(t_cls_tau), max(sched.step_at_time(t_S - 0.9) - 1, 0))
    branch = sorted({sched.step_at_time(tau) for tau in t_S + np.linspace(-0.9, 1.2, 10) if tau > 0}
                    - set(range(t_classify + 1)), reverse=True)
    eps_exact = eps_from_score(lambda x, ab: cw.score(x, ab, beta, h), sched)
    det_l = cloning(model.eps_fn, sched, _sign_labels, branch, n_pairs, N, seed=rng,
                    x_T=_x_T(model, rng, n_pairs, N), return_details=True, t_classify=t_classify)
    log(f"learned cloning done ({time.perf_counter() - clock:.1f} s)")
    det_e = cloning(eps_exact, sched, _sign_labels, branch, n_pairs_exact, N, seed=rng, return_details=True,
                    t_classify=t_classify)
    log(f"exact-score cloning done ({time.perf_counter() - clock:.1f} s)")
    tb = sched.physical_time[branch]
    t_curve = np.linspace(max(tb.min() - 0.3, 0.02), tb.max() + 0.3, 25)
    if N <= 200:
        phi_curve, phi_curve_err = gaussian.phi_curie_weiss_mc(t_curve, N, beta, h, n_samples=4000, seed=rng)
        theory_kind = "phi_curie_weiss_mc (exact, Monte Carlo)"
    else:
        phi_curve, phi_curve_err = gaussian.phi_curie_weiss(t_curve, N, beta, h), np.zeros_like(t_curve)
        theory_kind = "phi_curie_weiss (mu observer)"
    t_l, t_l_err = _crossing_with_error(tb, det_l["phi"], det_l["phi_stderr"], rng)
    t_e, t_e_err = _crossing_with_error(tb, det_e["phi"], det_e["phi_stderr"], rng)
    try:
        t_th = gaussian.speciation_time_phi(t_curve, phi_curve, PHI_LEVEL)
    except ValueError:
        t_th = float("nan")
    sp = xr.Dataset(
        {"phi": ("t", det_l["phi"]), "phi_stderr": ("t", det_l["phi_stderr"]),
         "phi_exact": ("t", det_e["phi"]), "phi_exact_stderr": ("t", det_e["phi_stderr"]),
         "phi_curve": ("t_curve", phi_curve), "phi_curve_stderr": ("t_curve", phi_curve_err),
         "speciation_time": ((), t_l), "speciation_time_error": ((), t_l_err),
         "speciation_time_exact": ((), t_e), "speciation_time_exact_error": ((), t_e_err),
         "speciation_time_phi_theory": ((), t_th),
         "step_ratio": ("t", np.asarray(branch) / max(sched.step_at_time(t_S), 1))},
        coords={"t": np.asarray(branch), "alpha_bar": ("t", sched.alpha_bar[branch]),
                "physical_time": ("t", tb), "t_curve": t_curve},
        attrs=base | {"speciation_time_theory": t_S, "n_pairs": n_pairs, "n_pairs_exact": n_pairs_exact,
                      "t_classify": t_classify, "level": PHI_LEVEL, "baseline": det_l["baseline"],
                      "baseline_exact": det_e["baseline"], "theory": theory_kind,
                      "title": f"cloning: learned vs exact score, N={N}, beta={beta}"})
    results.write_dataset(sp, out / "speciation.nc")
    _plot_cloning(sp, out / "cloning.png")
    summary.update(speciation_time_learned=t_l, speciation_time_learned_error=t_l_err,
                   speciation_time_exact=t_e, speciation_time_exact_error=t_e_err,
                   speciation_time_phi_theory=t_th)
    rec = np.unique(np.r_[np.arange(0, T + 1, max(1, T // 100)), T])[::-1]
    _, traj = model.sample(n_trajectories, seed=rng, return_trajectory=True, steps=rec)
    mu_traj = traj.astype(np.float64).sum(axis=2).T / math.sqrt(N)
    del traj
    tr = xr.Dataset({"mu": (("traj", "t"), mu_traj)},
                    coords={"t": rec, "alpha_bar": ("t", sched.alpha_bar[rec]),
                            "physical_time": ("t", sched.physical_time[rec])},
                    attrs=base | {"title": f"learned reverse trajectories, N={N}, beta={beta}"})
    results.write_dataset(tr, out / "trajectories.nc")
    plotting.plot_magnetization_trajectories(tr.isel(t=slice(None, -1)), out / "trajectories.png",
                                             speciation_time=t_S)
    log(f"speciation written ({time.perf_counter() - clock:.1f} s): phi = {PHI_LEVEL} crossing learned "
        f"{t_l:.3f} +- {t_l_err:.3f}, exact score {t_e:.3f} +- {t_e_err:.3f}, theory {t_th:.3f}; "
        f"(1/2) log Lambda = {t_S:.3f}")

    # 5-6. state weights and memorisation, per checkpoint
    p_plus = _plus_probability(N, beta, h)
    H = h * N
    p_plus_large_N = 1.0 / (1.0 + math.exp(-2.0 * H * m_star))
    sigma2 = 1.0 - m_star**2 if m_star > 0 else 1.0
    rows = []
    for c, m in zip(ckpts, models):
        x = m.sample(n_generate, seed=rng)
        share = float(np.mean(x.sum(axis=1) > 0))
        train, status = _training_set(m)
        P = int(m.data.get("n_train", m.data.get("n", 0)) or 0)
        if train is not None:
            mem = _match_share(x, train)
            fresh = datasets.curie_weiss(n_generate, N, beta, h, seed=rng)
            mem0 = _match_share(fresh, train)
        else:
            mem = mem0 = float("nan")
            log(f"{c}: {status}")
        rows.append(dict(P=P, share_plus=share, share_plus_stderr=math.sqrt(max(share * (1 - share), 1e-300) / n_generate),
                         memorized_share=mem, memorized_share_baseline=mem0,
                         collapse_time=collapse_time(max(P, 1), N, sigma2), memorization_checked=int(train is not None)))
    order = np.argsort([r["P"] for r in rows], kind="stable")
    rows = [rows[i] for i in order]
    cks = [str(ckpts[i]) for i in order]
    col = lambda k: np.asarray([r[k] for r in rows])  # noqa: E731
    sw = xr.Dataset({"share_plus": ("checkpoint", col("share_plus")),
                     "share_plus_stderr": ("checkpoint", col("share_plus_stderr")),
                     "P": ("checkpoint", col("P"))},
                    coords={"checkpoint": np.arange(len(rows)), "path": ("checkpoint", cks)},
                    attrs=base | {"share_plus_exact": p_plus, "share_plus_large_N": p_plus_large_N, "H": H,
                                  "m_star": m_star, "n_generate": n_generate})
    results.write_dataset(sw, out / "state_weights.nc")
    _plot_state_weights(sw, out / "state_weights.png")
    mem = xr.Dataset({k: ("checkpoint", col(k)) for k in ("P", "memorized_share", "memorized_share_baseline",
                                                          "collapse_time", "memorization_checked")},
                     coords={"checkpoint": np.arange(len(rows)), "path": ("checkpoint", cks)},
                     attrs=base | {"sigma2": sigma2, "n_generate": n_generate,
                                   "definition": "share of generated samples whose sign configuration equals a "
                                                 "training configuration; baseline: the same for fresh exact samples"})
    results.write_dataset(mem, out / "memorization.nc")
    first = rows[list(order).index(0)]
    summary.update(share_plus=first["share_plus"], share_plus_stderr=first["share_plus_stderr"],
                   share_plus_exact=p_plus, share_plus_large_N=p_plus_large_N,
                   memorized_share=first["memorized_share"], memorized_share_baseline=first["memorized_share_baseline"],
                   collapse_time=first["collapse_time"], n_train=first["P"],
                   seconds=round(time.perf_counter() - clock, 1))
    log(f"state weights: share(M>0) = {first['share_plus']:.3f} +- {first['share_plus_stderr']:.3f} "
        f"(exact {p_plus:.3f}); memorised {first['memorized_share']:.3f} vs fresh-sample baseline "
        f"{first['memorized_share_baseline']:.3f}; t_C = {first['collapse_time']:.3f} vs t_S = {t_S:.3f} "
        f"({time.perf_counter() - clock:.1f} s)")
    return summary


# ---------------------------------------------------------------------------------------------
# figures
# ---------------------------------------------------------------------------------------------

def _plot_potentials(ds: xr.Dataset, path, t_S: float):
    import matplotlib.pyplot as plt

    n = ds.sizes["t"]
    cols = min(4, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.0 * rows), squeeze=False)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    for k, ax in enumerate(axes.ravel()[:n]):
        mu = ds["mu"].values[k]
        ax.plot(ds["mu_fine"], ds["V_theory_fine"].values[k], "k-", lw=1, label="exact V")
        for name, style in (("exact", dict(fmt="s", color="0.5", ms=2.5)), ("learned", dict(fmt="o", color="C3", ms=2.5)),
                            ("linear", dict(fmt="^", color="C0", ms=2.5))):
            if f"V_{name}" in ds:
                ax.errorbar(mu, ds[f"V_{name}"].values[k], yerr=ds[f"V_{name}_stderr"].values[k], lw=0.7,
                            label=f"{name} score (binned)", **style)
        if "V_linear" in ds:
            ax.plot(ds["mu_fine"], ds["V_gaussian_fine"].values[k], "C0--", lw=0.8, label="Gaussian (linear) V")
        ax.set_title(f"t = {float(ds['physical_time'][k]):.2f}  (t - t_S = {float(ds['physical_time'][k]) - t_S:+.2f})",
                     fontsize=8)
        ax.set_xlabel(r"$\mu$", fontsize=8)
        finite = ds["V_theory"].values[k][np.isfinite(ds["V_theory"].values[k])]
        if finite.size:
            ax.set_ylim(min(finite.min(), 0) - 0.5, max(finite.max(), 1) + 0.5)
    axes[0][0].legend(fontsize=6)
    fig.suptitle(f"density potential V = -log P_t(mu) (N={ds.attrs.get('N')}, beta={ds.attrs.get('beta')}); "
                 f"t_S = {t_S:.2f}", fontsize=9)
    fig.tight_layout()
    return plotting.save_figure(fig, path)


def _plot_autoencoder(ds: xr.Dataset, path, t_S: float):
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    a.plot(ds["physical_time"], ds["jacobian_asymmetry"], label="ReLU nets")
    if "jacobian_asymmetry_linear" in ds:
        a.plot(ds["physical_time"], ds["jacobian_asymmetry_linear"], label="linear nets")
    a.axvline(t_S, color="k", ls="--", lw=1)
    a.set_xscale("log")
    a.set_xlabel("physical time t")
    a.set_ylabel(r"$|J - J^T| / |J|$")
    a.legend(fontsize=8)
    colors = plt.cm.viridis(np.linspace(0, 0.95, ds.sizes["t_energy"]))
    for k in range(ds.sizes["t_energy"]):
        lab = f"t = {float(ds['physical_time_energy'][k]):.2f}"
        b.plot(ds["mu"], ds["E_exact"].values[k], color=colors[k], lw=1.5, label=lab)
        b.plot(ds["mu"], ds["E_learned"].values[k], color=colors[k], lw=1, ls="--")
        if "E_linear" in ds:
            b.plot(ds["mu"], ds["E_linear"].values[k], color=colors[k], lw=1, ls=":")
    b.set_xlabel(r"$\mu$ (x = $\mu$ u)")
    b.set_ylabel("energy along the magnetization axis")
    b.set_ylim(-4, 12)
    b.legend(fontsize=6, title="solid exact, dashed ReLU, dotted linear", title_fontsize=6)
    fig.tight_layout()
    return plotting.save_figure(fig, path)


def _plot_cloning(ds: xr.Dataset, path):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.2, 4))
    tau = ds["physical_time"].values
    ax.errorbar(tau, ds["phi"], yerr=ds["phi_stderr"], fmt="o", ms=3, capsize=2, color="C3", label="learned model")
    ax.errorbar(tau, ds["phi_exact"], yerr=ds["phi_exact_stderr"], fmt="s", ms=3, capsize=2, color="0.4",
                label="exact score")
    ax.plot(ds["t_curve"], ds["phi_curve"], "k-", lw=1, label="theory")
    ax.axhline(float(ds.attrs["level"]), color="0.5", lw=0.8, ls=":")
    ax.axvline(float(ds.attrs["speciation_time_theory"]), color="k", ls="--", lw=1,
               label=f"(1/2) log Lambda = {float(ds.attrs['speciation_time_theory']):.2f}")
    if np.isfinite(float(ds["speciation_time"])):
        ax.axvline(float(ds["speciation_time"]), color="C3", ls="--", lw=1,
                   label=f"learned t_S = {float(ds['speciation_time']):.2f}")
    ax.set_xlabel("physical time t of the branching")
    ax.set_ylabel(r"$\phi(t)$ = P(same sign of M)")
    ax.legend(fontsize=7)
    ax.set_title(ds.attrs.get("title", ""), fontsize=9)
    return plotting.save_figure(fig, path)


def _plot_state_weights(ds: xr.Dataset, path):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    P = ds["P"].values
    ax.errorbar(P, ds["share_plus"], yerr=ds["share_plus_stderr"], fmt="o", color="C3", label="generated")
    ax.axhline(float(ds.attrs["share_plus_exact"]), color="k", lw=1, label="exact P(M>0)")
    ax.axhline(float(ds.attrs["share_plus_large_N"]), color="k", lw=1, ls=":", label="large N: 1/(1+exp(-2 H m*))")
    if len(P) > 1:
        ax.set_xscale("log")
    ax.set_xlabel("training configurations P")
    ax.set_ylabel("share of samples with M > 0")
    ax.legend(fontsize=7)
    ax.set_title(f"state weights, N={ds.attrs.get('N')}, beta={ds.attrs.get('beta')}, H = hN = {ds.attrs.get('H'):.3g}",
                 fontsize=9)
    return plotting.save_figure(fig, path)
