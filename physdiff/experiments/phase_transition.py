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

Several checkpoints (one per number of training configurations ``P``, ``--n-train P``, same
``--N --beta --h``) give sections 5-6 against ``P``; sections 1-4 use the first. The scan itself,
training included and with the same number of optimizer steps for every ``P``, is
:func:`physdiff.experiments.state_weights.state_weight_scan` (``studies/state_weights.py``); the
robustness of the learned speciation time over training seeds and epochs is :func:`speciation_scan`
(``studies/speciation_scan.py``). Both share this module's measurements
(:func:`state_weights_and_memorization`, :func:`learned_speciation`).

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
from .._util import SeedLike, as_generator, check_positive_int, torch_threads
from ..reverse import cloning, eps_from_score
from ..theory import autoencoder as ae_theory
from ..theory import curie_weiss as cw
from ..theory import gaussian
from ._io import prepare_out
from .curie_weiss import PHI_LEVEL, _crossing_with_error

__all__ = ["phase_transition_study", "plot_state_weights", "score_comparison", "potential_from_projected_score",
           "binned_potentials", "axis_potentials", "jacobian_asymmetry_per_step", "collapse_time",
           "find_linear_sibling", "speciation_branch_steps", "measure_speciation", "learned_speciation",
           "exact_speciation", "phi_gaussian", "speciation_time_gaussian", "speciation_scan",
           "state_weights_and_memorization", "well_numbers", "OUTPUTS", "SCAN_OUTPUTS"]

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
# 4. speciation time from the cloning experiment
# ---------------------------------------------------------------------------------------------

def phi_gaussian(t, Lam: float) -> np.ndarray:
    """Cloning probability of a centred Gaussian with variance ``Lam`` along ``u`` (what the best
    linear model learns of Curie-Weiss data, REFERENCES.md sec. 6), the class being the sign of ``u.x``.

    Diffused, ``mu_t = s mu_0 + sqrt(Delta) xi`` and the two clones' endpoints are independent draws
    of ``mu_0 | mu_t``, jointly Gaussian with correlation ``rho = Var E[mu_0|mu_t] / Lam = s^2 Lam /
    (s^2 Lam + Delta)``; for a centred Gaussian pair ``P(same sign) = 1/2 + arcsin(rho) / pi``
    (Sheppard's formula). ``s^2 = e^{-2t}``, ``Delta = 1 - e^{-2t}`` (REFERENCES.md sec. 1).

    Parameters
    ----------
    t : float or array_like, physical times >= 0
    Lam : float > 0

    Returns
    -------
    ndarray float64, shape of ``t``
    """
    t = np.asarray(t, dtype=np.float64)
    if np.any(t < 0) or not Lam > 0:
        raise ValueError("phi_gaussian needs t >= 0 and Lam > 0")
    ab = np.exp(-2.0 * t)
    return 0.5 + np.arcsin(ab * Lam / (ab * Lam + 1.0 - ab)) / math.pi


def speciation_time_gaussian(Lam: float, level: float = PHI_LEVEL) -> float:
    """Where :func:`phi_gaussian` crosses ``level``: with ``rho* = sin(pi (level - 1/2))``,
    ``alpha_bar = rho* / (Lam (1 - rho*) + rho*)`` and ``t = -(1/2) log alpha_bar`` (0 if the
    Gaussian never reaches the level)."""
    rho = math.sin(math.pi * (level - 0.5))
    ab = rho / (Lam * (1.0 - rho) + rho)
    return max(0.0, -0.5 * math.log(ab)) if ab < 1 else 0.0


def speciation_branch_steps(schedule, N: int, beta: float, h: float = 0.0, *, n_branch: int = 10,
                            span: tuple[float, float] = (-0.9, 1.2)) -> tuple[list[int], int]:
    """Branch steps around the speciation time and the step at which clones are classified.

    The branch steps are the steps nearest ``t_S + linspace(span[0], span[1], n_branch)`` in
    physical time, ``t_S = (1/2) log Lambda`` [BBBM24] (REFERENCES.md sec. 5). Classes (the sign of
    ``M``) are read off at ``t_classify``, where the exact double well is frozen: the wells at
    ``+-s m* sqrt(N)`` lie at least 5 noise widths ``sqrt(Delta)`` from 0, i.e.
    ``s^2 / Delta >= 25 / (N m*^2)`` (and at most one step below ``t_S + span[0]``). It is used for
    a learned and an exact score alike; below it a change of sign needs a jump over a barrier of
    more than 12 (in units of the log density), so stopping there changes no class of the exact
    dynamics.

    Parameters
    ----------
    schedule : Schedule
    N : int >= 2
    beta, h : float
        The data law (``h`` per spin).
    n_branch : int >= 2
        Branch times requested (steps that coincide are merged).
    span : (float, float)
        Physical-time offsets of the first and last branch time from ``t_S``.

    Returns
    -------
    branch_steps : list of int, decreasing, all > t_classify
    t_classify : int >= 0
    """
    N = check_positive_int("N", N, minimum=2)
    n_branch = check_positive_int("n_branch", n_branch, minimum=2)
    t_S = 0.5 * math.log(cw.top_eigenvalue(N, beta, h))
    m_star = cw.m_star(beta, h)
    sep = 25.0 / max(N * m_star**2, 1e-12)  # s^2 / Delta at which the wells are 5 widths out
    t_cls_tau = 0.5 * math.log1p(1.0 / sep) if m_star > 0 and sep > 0 else 0.0
    t_classify = min(schedule.step_at_time(t_cls_tau), max(schedule.step_at_time(t_S + span[0]) - 1, 0))
    branch = sorted({schedule.step_at_time(tau) for tau in t_S + np.linspace(span[0], span[1], n_branch) if tau > 0}
                    - set(range(t_classify + 1)), reverse=True)
    if not branch:
        raise ValueError(f"no branch step above t_classify={t_classify} in a schedule of T={schedule.T} steps "
                         f"(t_S = {t_S:.3f}); use a schedule with more steps")
    return branch, int(t_classify)


def measure_speciation(eps_fn: Callable, schedule, N: int, branch_steps: Sequence[int], n_pairs: int, *,
                       t_classify: int = 0, seed: SeedLike = None, x_T=None, n_boot: int = 400) -> dict:
    """The cloning experiment on ``eps_fn`` and the crossing of ``phi = 0.7752`` [BBBM24].

    Runs :func:`physdiff.reverse.cloning` (classes: the sign of ``M = sum_i x_i``) and
    interpolates the crossing of :data:`~physdiff.experiments.curie_weiss.PHI_LEVEL` in physical
    time; its standard error is a parametric bootstrap over the binomial errors of ``phi``
    (REFERENCES.md sec. 5).

    Parameters
    ----------
    eps_fn : callable ``(x_t, t) -> eps``
        A model's ``eps_fn`` (then pass ``x_T`` as a torch tensor on its device) or an exact score
        through :func:`physdiff.reverse.eps_from_score`.
    schedule : Schedule
    N : int >= 2
        Spins.
    branch_steps : sequence of int
        E.g. from :func:`speciation_branch_steps`.
    n_pairs : int >= 1
    t_classify : int
    seed : int, Generator or None
        Seeds the chain (and ``x_T`` if not given) and the bootstrap.
    x_T : array (n_pairs, N), optional
        Start states (default float64 ``N(0, I)``).
    n_boot : int
        Bootstrap replicates.

    Returns
    -------
    dict
        ``phi``, ``phi_stderr`` (float64 (K,), in the order of ``branch_steps``), ``branch_steps``
        (int64 (K,)), ``physical_time`` (K,), ``baseline`` (``p^2 + (1-p)^2``), ``share_plus``
        (share of originals with ``M > 0``), ``speciation_time`` and ``speciation_time_error``
        (NaN if ``phi`` does not cross the level inside the branch steps), ``n_pairs``.
    """
    rng = as_generator(seed)
    det = cloning(eps_fn, schedule, _sign_labels, branch_steps, n_pairs, N, seed=rng, x_T=x_T,
                  return_details=True, t_classify=t_classify)
    t_x, t_err = _crossing_with_error(det.physical_time, det.phi, det.phi_stderr, rng, n_boot=n_boot)
    return {"phi": det.phi, "phi_stderr": det.phi_stderr, "branch_steps": det.branch_steps,
            "physical_time": det.physical_time, "baseline": det.baseline,
            "share_plus": float(np.mean(det.labels == 1)), "speciation_time": t_x,
            "speciation_time_error": t_err, "n_pairs": int(n_pairs)}


def learned_speciation(model, *, n_pairs: int = 2000, seed: SeedLike = None, branch_steps=None,
                       t_classify: int | None = None) -> dict:
    """:func:`measure_speciation` for a trained Curie-Weiss model (its ``N``, ``beta``, ``h`` from
    its metadata; branch steps from :func:`speciation_branch_steps` unless given).

    Parameters
    ----------
    model : DDPM
        Trained with ``physdiff train curie-weiss`` (or a stand-in with ``schedule``, ``eps_fn``
        and ``data``); the chain runs in torch on the model's device when it is a DDPM.
    n_pairs : int
    seed : int, Generator or None
    branch_steps : sequence of int, optional
    t_classify : int, optional
        Both default to :func:`speciation_branch_steps`.

    Returns
    -------
    dict
        As :func:`measure_speciation`, plus ``t_classify``.

    Raises
    ------
    ValueError
        The model was not trained on Curie-Weiss data.
    """
    N, beta, h = _cw_params(model)
    n_pairs = check_positive_int("n_pairs", n_pairs)
    rng = as_generator(seed)
    if branch_steps is None or t_classify is None:
        b, tc = speciation_branch_steps(model.schedule, N, beta, h)
        branch_steps = b if branch_steps is None else branch_steps
        t_classify = tc if t_classify is None else t_classify
    x_T = _x_T(model, rng, n_pairs, N)
    res = measure_speciation(model.eps_fn, model.schedule, N, branch_steps, n_pairs, t_classify=t_classify,
                             seed=rng, x_T=x_T)
    return res | {"t_classify": int(t_classify)}


def exact_speciation(schedule, N: int, beta: float, h: float = 0.0, *, n_pairs: int = 1000,
                     seed: SeedLike = None, branch_steps=None, t_classify: int | None = None) -> dict:
    """:func:`measure_speciation` with the exact finite-N Curie-Weiss score
    (:func:`physdiff.theory.curie_weiss.score`, REFERENCES.md sec. 3) in float64 numpy.

    Same parameters and return value as :func:`learned_speciation`, the data law given explicitly.
    Cost: about 0.1-0.3 ms per pair and step at N = 64 on one core.
    """
    N = check_positive_int("N", N, minimum=2)
    if branch_steps is None or t_classify is None:
        b, tc = speciation_branch_steps(schedule, N, beta, h)
        branch_steps = b if branch_steps is None else branch_steps
        t_classify = tc if t_classify is None else t_classify
    eps_exact = eps_from_score(lambda x, ab: cw.score(x, ab, beta, h), schedule)
    res = measure_speciation(eps_exact, schedule, N, branch_steps, n_pairs, t_classify=t_classify, seed=seed)
    return res | {"t_classify": int(t_classify)}


SCAN_OUTPUTS = ("speciation_scan.nc", "speciation_scan.png")


def speciation_scan(out, *, N: int = 64, beta: float = 1.5, h: float = 0.0, seeds: Sequence[int] = (0, 1, 2, 3, 4),
                    epochs: Sequence[int] = (10, 30, 60), n_pairs: int = 2000, n_pairs_exact: int = 1000,
                    n_theory: int = 4000, preset: str = "quick", n_train: int | None = None, seed: int = 0,
                    device: str = "cpu", overrides: dict | None = None, num_threads: int | None = 1,
                    force: bool = False, retrain: bool = False, progress: bool = False, log=print,
                    command: str | None = None) -> dict:
    """Robustness of the learned speciation time: train one DDPM per training seed (and per number of
    epochs) and measure its cloning crossing (:func:`learned_speciation`) against the exact score's
    (:func:`exact_speciation`) and the exact theory (:func:`~physdiff.theory.gaussian.phi_curie_weiss_mc`).

    Runs: every seed in ``seeds`` at the preset's number of epochs, and ``seeds[0]`` at every
    value in ``epochs``. The training seed sets the training set (``P`` = the preset's
    ``n_train`` exact configurations), the initialisation, the minibatch order and the noise. All
    runs use the same branch steps (:func:`speciation_branch_steps`). Writes ``speciation_scan.nc``
    (``phi(run, t)`` and ``phi_stderr``, ``speciation_time(run)`` and its bootstrap error,
    ``seed(run)``, ``epochs(run)``, ``final_loss(run)`` (mean over steps of the last epoch's loss),
    ``share_plus(run)``; ``phi_exact(t)``, ``phi_theory(t)`` and the theory curve) and
    ``speciation_scan.png``; one checkpoint per run under ``out/seed<S>_epochs<E>/`` (reused when
    there with the same settings).

    Parameters
    ----------
    out : path
    N, beta, h : the Curie-Weiss data law (``h`` per spin).
    seeds : sequence of int
        Training seeds (at the preset's epochs).
    epochs : sequence of int
        Numbers of epochs tried with ``seeds[0]``.
    n_pairs, n_pairs_exact : int
        Clone pairs per learned model and for the exact score.
    n_theory : int
        Monte Carlo samples per time of the theory.
    preset : str
        Training preset (``"quick"``).
    n_train : int, optional
        Training configurations per model (default: the preset's, 4000).
    seed : int
        Seed of the measurements (cloning, bootstrap, theory).
    overrides : dict, optional
        Other TrainConfig fields for every model (e.g. ``{"T": 20, "hidden": 16}`` for a test).
    num_threads : int or None
        Torch CPU threads for training and the learned cloning (default 1: the nets are small, and
        one thread is several times faster than two on shared cores; None leaves torch's setting).
    force, retrain : bool
        Overwrite outputs (and checkpoints trained with other settings); retrain matching
        checkpoints too (:func:`~physdiff.experiments.state_weights.train_or_reuse`).
    device, progress, log, command : as for :func:`phase_transition_study`.

    Returns
    -------
    dict
        ``runs`` (one dict per run: ``seed``, ``epochs``, ``speciation_time``, ``speciation_time_error``,
        ``final_loss``), ``seed_mean``, ``seed_std`` (sample standard deviation over the seeds at the
        preset's epochs), ``seed_sem``, ``speciation_time_exact`` (+ ``_error``),
        ``speciation_time_phi_theory``, ``speciation_time_theory`` ((1/2) log Lambda), ``seconds``.

    Raises
    ------
    ValueError
        No seeds, bad ``N``; FileExistsError: outputs exist and ``force`` is False.
    """
    from .. import ddpm
    from .state_weights import train_or_reuse

    N = check_positive_int("N", N, minimum=2)
    seeds = [check_positive_int("seed", int(s), minimum=0) for s in seeds]
    if not seeds:
        raise ValueError("give at least one training seed")
    epochs = [check_positive_int("epochs", int(e)) for e in epochs]
    out = prepare_out(out, SCAN_OUTPUTS, force=force)
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    if {"epochs", "seed", "n_train"} & set(overrides):
        raise ValueError("epochs, seed and n_train are set by the scan itself; pass them as epochs, seeds, n_train")
    cfg = ddpm.get_config("curie-weiss", preset, **overrides)
    E0 = cfg.epochs
    runs = [(s, E0) for s in seeds] + [(seeds[0], e) for e in epochs if e != E0]
    P = check_positive_int("n_train", n_train) if n_train is not None else (cfg.n_train or 4000)
    clock = time.perf_counter()
    with torch_threads(num_threads):
        models = []
        for s, e in runs:
            t0 = time.perf_counter()
            path, reused = train_or_reuse(out / f"seed{s}_epochs{e}", N=N, beta=beta, h=h, P=P, seed=s, epochs=e,
                                          preset=preset, device=device, force=force, retrain=retrain,
                                          progress=progress, log=log, command=command, **overrides)
            models.append(ddpm.load(path, device=device))
            log(f"seed {s}, {e} epochs: {'reused' if reused else 'trained'} in {time.perf_counter() - t0:.1f} s")
        sched = models[0].schedule
        branch, t_classify = speciation_branch_steps(sched, N, beta, h)
        res = []
        for k, m in enumerate(models):
            r = learned_speciation(m, n_pairs=n_pairs, seed=np.random.default_rng([seed, k]), branch_steps=branch,
                                   t_classify=t_classify)
            res.append(r)
            log(f"seed {runs[k][0]}, {runs[k][1]} epochs: learned t_S = {r['speciation_time']:.3f} "
                f"+- {r['speciation_time_error']:.3f} ({time.perf_counter() - clock:.1f} s)")
        # depth of the learned double well of V(mu, t) before t_S (binned estimator, exact V for reference)
        t_S = 0.5 * math.log(cw.top_eigenvalue(N, beta, h))
        well_taus = np.asarray([t_S - 0.45, t_S - 0.2])
        well_steps = [max(1, sched.step_at_time(tau)) for tau in well_taus]
        depth = np.full((len(models), len(well_steps)), np.nan)
        n_min = np.zeros((len(models), len(well_steps)), dtype=np.int64)
        depth_exact = np.full(len(well_steps), np.nan)
        for k, m in enumerate(models):
            pot = binned_potentials({"learned": lambda x, t, m=m: _learned_score(m, x, t)}, sched, N, beta, h,
                                    steps=well_steps, n_samples=10000, seed=np.random.default_rng([seed, k, 1]))
            for j in range(len(well_steps)):
                ok = pot["count"].values[j] >= 100
                nm, dp, _, _ = well_numbers(pot["mu"].values[j][ok], pot["V_learned"].values[j][ok],
                                            pot["V_learned_stderr"].values[j][ok])
                n_min[k, j], depth[k, j] = nm, dp
                if k == 0:
                    depth_exact[j] = well_numbers(pot["mu_fine"].values, pot["V_theory_fine"].values[j])[1]
    rng = np.random.default_rng([seed, len(models)])
    ex = exact_speciation(sched, N, beta, h, n_pairs=n_pairs_exact, seed=rng, branch_steps=branch,
                          t_classify=t_classify)
    tb = sched.physical_time[branch]
    t_curve = np.linspace(max(tb.min() - 0.3, 0.02), tb.max() + 0.3, 25)
    phi_th, phi_th_err = gaussian.phi_curie_weiss_mc(tb, N, beta, h, n_samples=n_theory, seed=rng)
    phi_c, phi_c_err = gaussian.phi_curie_weiss_mc(t_curve, N, beta, h, n_samples=n_theory, seed=rng)
    try:
        t_th = gaussian.speciation_time_phi(t_curve, phi_c, PHI_LEVEL)
    except ValueError:
        t_th = float("nan")
    Lam = cw.top_eigenvalue(N, beta, h)
    ts = np.asarray([r["speciation_time"] for r in res])
    is_seed_run = np.asarray([e == E0 for _, e in runs])
    ts_seed = ts[is_seed_run]
    seed_mean = float(np.nanmean(ts_seed)) if np.isfinite(ts_seed).any() else float("nan")
    seed_std = float(np.nanstd(ts_seed, ddof=1)) if np.isfinite(ts_seed).sum() > 1 else float("nan")
    seed_sem = seed_std / math.sqrt(np.isfinite(ts_seed).sum()) if np.isfinite(seed_std) else float("nan")
    final_loss = np.asarray([float(np.nanmean(m.loss_history[-1])) for m in models])
    ds = xr.Dataset(
        {"phi": (("run", "t"), np.stack([r["phi"] for r in res])),
         "phi_stderr": (("run", "t"), np.stack([r["phi_stderr"] for r in res])),
         "speciation_time": ("run", ts), "speciation_time_error": ("run", [r["speciation_time_error"] for r in res]),
         "share_plus": ("run", [r["share_plus"] for r in res]), "final_loss": ("run", final_loss),
         "seed": ("run", [s for s, _ in runs]), "epochs": ("run", [e for _, e in runs]),
         "seed_run": ("run", is_seed_run.astype(np.int64)),
         "phi_exact": ("t", ex["phi"]), "phi_exact_stderr": ("t", ex["phi_stderr"]),
         "phi_theory": ("t", phi_th), "phi_theory_stderr": ("t", phi_th_err),
         "phi_curve": ("t_curve", phi_c), "phi_curve_stderr": ("t_curve", phi_c_err),
         "phi_gaussian_curve": ("t_curve", phi_gaussian(t_curve, Lam)),
         "speciation_time_gaussian": ((), speciation_time_gaussian(Lam)),
         "well_depth": (("run", "t_well"), depth), "n_minima": (("run", "t_well"), n_min),
         "well_depth_exact": ("t_well", depth_exact),
         "speciation_time_exact": ((), ex["speciation_time"]),
         "speciation_time_exact_error": ((), ex["speciation_time_error"]),
         "speciation_time_phi_theory": ((), t_th)},
        coords={"run": np.arange(len(runs)), "t": np.asarray(branch), "alpha_bar": ("t", sched.alpha_bar[branch]),
                "physical_time": ("t", tb), "t_curve": t_curve, "t_well": np.asarray(well_steps),
                "physical_time_well": ("t_well", sched.physical_time[well_steps])},
        attrs=results.provenance(seed=seed, command=command, N=N, beta=beta, h=h, T=sched.T, preset=preset,
                                 n_train=P, preset_epochs=E0, n_pairs=n_pairs, n_pairs_exact=n_pairs_exact,
                                 t_classify=t_classify, level=PHI_LEVEL, speciation_time_theory=t_S,
                                 seed_mean=seed_mean, seed_std=seed_std, seed_sem=seed_sem,
                                 title=f"learned speciation time over training seeds, N={N}, beta={beta}"))
    results.write_dataset(ds, out / "speciation_scan.nc")
    _plot_speciation_scan(ds, out / "speciation_scan.png")
    summary = {"runs": [{"seed": s, "epochs": e, "speciation_time": float(r["speciation_time"]),
                         "speciation_time_error": float(r["speciation_time_error"]), "final_loss": float(fl),
                         "well_depth": [float(v) for v in d], "n_minima": [int(v) for v in nm]}
                        for (s, e), r, fl, d, nm in zip(runs, res, final_loss, depth, n_min)],
               "well_depth_exact": [float(v) for v in depth_exact],
               "physical_time_well": [float(v) for v in sched.physical_time[well_steps]],
               "speciation_time_gaussian": speciation_time_gaussian(Lam),
               "seed_mean": seed_mean, "seed_std": seed_std, "seed_sem": seed_sem,
               "speciation_time_exact": ex["speciation_time"],
               "speciation_time_exact_error": ex["speciation_time_error"],
               "speciation_time_phi_theory": t_th, "speciation_time_theory": t_S,
               "seconds": round(time.perf_counter() - clock, 1)}
    tw = ", ".join(f"{v:.2f}" for v in summary["physical_time_well"])
    lines = [f"{'seed':>4} {'epochs':>6} {'final loss':>10} {'learned t_S':>16}   V well depth (minima) at t = {tw}"]
    lines += [f"{r['seed']:>4d} {r['epochs']:>6d} {r['final_loss']:>10.4f} {r['speciation_time']:>8.3f} +- "
              f"{r['speciation_time_error']:.3f}   "
              + ", ".join(f"{d:.2f} ({nm})" for d, nm in zip(r["well_depth"], r["n_minima"])) for r in summary["runs"]]
    lines.append(f"{'exact':>30}   " + ", ".join(f"{d:.2f}" for d in depth_exact))
    log("\n".join(lines))
    log(f"learned t_S over {len(ts_seed)} seeds ({E0} epochs): {seed_mean:.3f} +- {seed_std:.3f} "
        f"(sd; sem {seed_sem:.3f}); "
        f"exact score {ex['speciation_time']:.3f} +- {ex['speciation_time_error']:.3f}; theory {t_th:.3f}; "
        f"(1/2) log Lambda = {t_S:.3f}; a Gaussian with the same Lambda {speciation_time_gaussian(Lam):.3f} "
        f"({summary['seconds']:.1f} s)")
    return summary


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
    """Number of interior local minima of a sampled potential whose topographic prominence (depth
    below the lower of the two barriers that separate it from a deeper minimum or the ends,
    :func:`scipy.signal.peak_prominences` of ``-V``) exceeds ``tol`` (a double well has 2; a noisy
    single well 1)."""
    from scipy.signal import find_peaks

    V = np.asarray(V, dtype=np.float64)
    if V.size < 3:
        return 0
    peaks, _ = find_peaks(-V, prominence=tol * (1 + 1e-12) if tol > 0 else None)
    return int(peaks.size)


def well_numbers(mu, V, V_stderr=None, *, min_tol: float = 1e-3) -> tuple[int, float, float, float]:
    """Double-well numbers of a potential sampled on increasing ``mu``: ``(n_minima, depth,
    depth_stderr, position)``.

    ``n_minima`` counts interior local minima of prominence above ``tol`` (a double well has 2;
    ``tol = max(min_tol, 2 max V_stderr)`` so that statistical wiggles of an estimate do not
    count); ``depth = V(mu ~ 0) - min V`` (0 for a single well at 0; NaN if no sample point lies
    within 1.5 grid spacings of ``mu = 0``, e.g. samples of a frozen double well), with the
    standard error of ``V`` at the minimum; ``position = |mu|`` at the minimum. NaN entries of
    ``V`` are dropped.
    """
    mu = np.asarray(mu, dtype=np.float64)
    V = np.asarray(V, dtype=np.float64)
    err = np.zeros_like(V) if V_stderr is None else np.asarray(V_stderr, dtype=np.float64)
    ok = np.isfinite(V) & np.isfinite(mu) & np.isfinite(err)
    if ok.sum() < 3:
        return 0, math.nan, math.nan, math.nan
    mu, V, err = mu[ok], V[ok], err[ok]
    tol = max(min_tol, 2.0 * float(err.max()))
    k = int(np.argmin(V))
    i0 = int(np.argmin(np.abs(mu)))
    V0 = float(V[i0]) if abs(mu[i0]) <= 1.5 * float(np.median(np.diff(mu))) else math.nan
    depth = max(V0 - float(V[k]), 0.0) if math.isfinite(V0) else math.nan
    return _n_minima(V, tol), depth, float(err[k]), float(abs(mu[k]))


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


def _match_mask(samples: np.ndarray, train: np.ndarray) -> np.ndarray:
    """Per sample: does its sign configuration equal some training configuration? bool (n,)."""
    keys = {r.tobytes() for r in np.packbits(np.asarray(train) > 0, axis=1)}
    packed = np.packbits(np.asarray(samples) > 0, axis=1)
    return np.fromiter((r.tobytes() in keys for r in packed), dtype=bool, count=len(packed))


def _match_share(samples: np.ndarray, train: np.ndarray) -> float:
    """Share of ``samples`` whose sign configuration equals some training configuration."""
    return float(np.mean(_match_mask(samples, train)))


def _rare_mask(samples: np.ndarray, N: int, beta: float, h: float, P: int, level: float = 0.01) -> np.ndarray:
    """Per sample: is its sign configuration ``a`` rare, i.e. would a set of ``P`` exact samples hold
    it less than ``level`` times on average (``P q(a) < level``, ``q(a) = P(M) / C(N, (N+M)/2)``,
    REFERENCES.md sec. 2)? A copy of a rare training configuration is memorisation, not chance."""
    from scipy.special import gammaln

    M_grid, PM = cw.magnetization_distribution(N, beta, h)
    k = (M_grid + N) // 2
    with np.errstate(divide="ignore"):
        log_q = np.log(PM) - (gammaln(N + 1) - gammaln(k + 1) - gammaln(N - k + 1))
    up = (np.asarray(samples) > 0).sum(axis=1)  # number of + spins = k
    return math.log(P) + log_q[up] < math.log(level)


def _share_plus_of(x) -> float:
    """Share of configurations with ``M > 0``, those with ``M = 0`` counted one half."""
    M = np.asarray(x, dtype=np.float64).sum(axis=1)
    return float(np.mean(M > 0) + 0.5 * np.mean(M == 0))


def _max_overlap(samples: np.ndarray, train: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """Per sample, the largest overlap ``q = sign(x).a / N`` with a training configuration ``a``."""
    A = np.where(np.asarray(train) > 0, 1.0, -1.0).astype(np.float32)
    X = np.where(np.asarray(samples) > 0, 1.0, -1.0).astype(np.float32)
    out = np.empty(len(X))
    for a in range(0, len(X), chunk):
        out[a:a + chunk] = (X[a:a + chunk] @ A.T).max(axis=1) / X.shape[1]
    return out


_MEMORY_VARS = ("share_plus_train", "ratio_train", "memorized_share", "memorized_share_stderr",
                "memorized_share_baseline", "memorized_share_reference", "rare_copy_share", "rare_copy_share_stderr",
                "rare_copy_share_baseline", "rare_copy_share_reference", "rare_share", "overlap_max_mean",
                "overlap_max_mean_baseline", "overlap_max_mean_reference")


def state_weights_and_memorization(models: Sequence, labels: Sequence[str], *, n_generate: int = 2000,
                                   seed: SeedLike = None, attrs: dict | None = None,
                                   log=print) -> tuple[xr.Dataset, xr.Dataset]:
    """State weights and memorisation of Curie-Weiss models, one row per model (sorted by ``P``).

    Each model generates ``n_generate`` samples. **State weights**: the share of samples with
    ``M = sum_i x_i > 0`` and the ratio ``share(+)/share(-)``, against the exact finite-N
    ``P(M > 0)`` (``P(M = 0)`` split half/half) and the large-N ``1/(1 + exp(-2 H m*))``, ratio
    ``exp(2 H m*)``, ``H = h N`` (REFERENCES.md sec. 2; [BM23]; ``m*`` at zero field, the limit of
    ``h = H / N``). A model can at best reproduce its
    own training set, whose share of ``M > 0`` is also given, with the spread
    ``sqrt(p (1 - p) / P)`` that a training set of ``P`` exact samples has around ``p``.
    **Memorisation** (REFERENCES.md sec. 5; [BBBM24]): the share of samples whose sign configuration
    is a training configuration and the mean over samples of the largest overlap
    ``max_a sign(x).a / N`` with the training set, each against two controls: the same for
    ``n_generate`` fresh exact samples (the coincidences the data law itself produces; at N = 64,
    beta = 1.5 the fully aligned states alone make several per cent), and the same generated
    samples against an independent exact set of ``P`` configurations (the coincidences the model's
    own law of ``M`` produces: a model that puts too much weight on ``|M| = N`` "copies" any set).
    Memorisation is the excess over the second control. The cleanest count is ``rare_copy_share``:
    copies of training configurations ``a`` so improbable that ``P`` exact samples would hold them
    less than once in 100 (``P q(a) < 0.01``), which chance almost never produces and which a
    model can only get from its training set. Also the collapse time ``t_C(P)``
    (:func:`collapse_time`, cluster variance ``sigma^2 = 1 - m*^2``). The training
    set is regenerated from the checkpoint's seed and checked against its sha256; where that fails
    the memorisation variables are NaN.

    Parameters
    ----------
    models : sequence of DDPM
        Trained on Curie-Weiss data with the same ``N``, ``beta``, ``h`` (``P`` read from their
        metadata ``n_train``).
    labels : sequence of str
        One per model (e.g. its checkpoint path): the ``path`` coordinate.
    n_generate : int >= 2
        Samples per model.
    seed : int, Generator or None
    attrs : dict, optional
        Extra attrs of both Datasets (provenance).
    log : callable

    Returns
    -------
    state_weights : xarray.Dataset, dim ``checkpoint``
        ``P``, ``input_index`` (position in ``models``), ``share_plus`` (+ ``_stderr``, binomial),
        ``ratio`` = share(+)/share(-) (+ ``_stderr``, delta method ``se / (1 - p)^2``),
        ``share_plus_train``, ``ratio_train``, ``share_plus_data_spread`` (``sqrt(p (1-p) / P)``
        with the exact ``p``), ``z_exact`` (``(share - p) / sqrt(se^2 + p (1-p) / P)``: the
        generated share against the exact one in units of generation plus training-set noise);
        attrs ``share_plus_exact``, ``ratio_exact``, ``share_plus_large_N``, ``ratio_large_N``,
        ``H``, ``m_star``, ``n_generate``.
    memorization : xarray.Dataset, dim ``checkpoint``
        ``P``, ``memorized_share`` (+ ``_stderr``), ``memorized_share_baseline``,
        ``memorized_share_reference``, ``rare_copy_share`` (+ ``_stderr``, ``_baseline``,
        ``_reference``), ``rare_share``, ``overlap_max_mean``, ``overlap_max_mean_baseline``,
        ``overlap_max_mean_reference``, ``collapse_time``,
        ``memorization_checked`` (1 if the training set was regenerated); attrs ``sigma2``,
        ``speciation_time``.

    Raises
    ------
    ValueError
        No model, labels of another length, a model not trained on Curie-Weiss data or models of
        different ``N``, ``beta``, ``h``.
    """
    if len(models) == 0 or len(models) != len(labels):
        raise ValueError(f"give one label per model, got {len(models)} models and {len(labels)} labels")
    n_generate = check_positive_int("n_generate", n_generate, minimum=2)
    N, beta, h = _cw_params(models[0])
    for lab, m in zip(labels, models):
        if _cw_params(m) != (N, beta, h):
            raise ValueError(f"{lab} was trained on N, beta, h = {_cw_params(m)}, {labels[0]} on {(N, beta, h)}; "
                             "a scan in P needs the same data law")
    rng = as_generator(seed)
    m_star = cw.m_star(beta, h)
    p_plus = _plus_probability(N, beta, h)
    H = h * N
    m0 = cw.m_star(beta, 0.0)  # h = H/N -> 0 at fixed H: the large-N ratio has the zero-field m*
    p_large = 1.0 / (1.0 + math.exp(-2.0 * H * m0))
    sigma2 = 1.0 - m_star**2 if m_star > 0 else 1.0
    t_S = 0.5 * math.log(cw.top_eigenvalue(N, beta, h))
    rows = []
    for i, (lab, m) in enumerate(zip(labels, models)):
        x = m.sample(n_generate, seed=rng)
        x = x.cpu().numpy() if hasattr(x, "cpu") else np.asarray(x)
        share = float(np.mean(x.sum(axis=1) > 0))
        se = math.sqrt(max(share * (1 - share), 1e-300) / n_generate)
        P = int(m.data.get("n_train", m.data.get("n", 0)) or 0)
        train, status = _training_set(m)
        row = dict(P=P, input_index=i, share_plus=share, share_plus_stderr=se,
                   ratio=share / (1 - share) if share < 1 else math.inf,
                   ratio_stderr=se / (1 - share) ** 2 if share < 1 else math.inf,
                   share_plus_data_spread=math.sqrt(p_plus * (1 - p_plus) / max(P, 1)),
                   z_exact=(share - p_plus) / math.sqrt(se**2 + p_plus * (1 - p_plus) / max(P, 1)),
                   collapse_time=collapse_time(max(P, 1), N, sigma2), memorization_checked=int(train is not None))
        if train is not None:
            fresh = datasets.curie_weiss(n_generate, N, beta, h, seed=rng)
            reference = datasets.curie_weiss(len(train), N, beta, h, seed=rng)
            st = _share_plus_of(train)
            mem = _match_share(x, train)
            rare_x, rare_f = _rare_mask(x, N, beta, h, P), _rare_mask(fresh, N, beta, h, P)
            mrare = float(np.mean(_match_mask(x, train) & rare_x))
            row.update(share_plus_train=st, ratio_train=st / (1 - st) if st < 1 else math.inf,
                       memorized_share=mem, memorized_share_stderr=math.sqrt(max(mem * (1 - mem), 1e-300) / n_generate),
                       memorized_share_baseline=_match_share(fresh, train),
                       memorized_share_reference=_match_share(x, reference),
                       rare_copy_share=mrare,
                       rare_copy_share_stderr=math.sqrt(max(mrare * (1 - mrare), 1e-300) / n_generate),
                       rare_copy_share_baseline=float(np.mean(_match_mask(fresh, train) & rare_f)),
                       rare_copy_share_reference=float(np.mean(_match_mask(x, reference) & rare_x)),
                       rare_share=float(np.mean(rare_x)),
                       overlap_max_mean=float(_max_overlap(x, train).mean()),
                       overlap_max_mean_baseline=float(_max_overlap(fresh, train).mean()),
                       overlap_max_mean_reference=float(_max_overlap(x, reference).mean()))
        else:
            log(f"{lab}: {status}")
            row.update({k: math.nan for k in _MEMORY_VARS})
        rows.append(row)
    order = np.argsort([r["P"] for r in rows], kind="stable")
    rows = [rows[i] for i in order]
    coords = {"checkpoint": np.arange(len(rows)), "path": ("checkpoint", [str(labels[i]) for i in order])}
    col = lambda k: ("checkpoint", np.asarray([r[k] for r in rows]))  # noqa: E731
    base = dict(attrs or {})
    sw = xr.Dataset({k: col(k) for k in ("P", "input_index", "share_plus", "share_plus_stderr", "ratio",
                                         "ratio_stderr", "share_plus_train", "ratio_train",
                                         "share_plus_data_spread", "z_exact")},
                    coords=coords,
                    attrs=base | {"share_plus_exact": p_plus, "ratio_exact": p_plus / (1 - p_plus),
                                  "share_plus_large_N": p_large, "ratio_large_N": math.exp(2.0 * H * m0),
                                  "H": H, "m_star": m0, "m_star_at_h": m_star, "n_generate": n_generate,
                                  "N": N, "beta": beta, "h": h})
    mem = xr.Dataset({k: col(k) for k in ("P", *_MEMORY_VARS[2:], "collapse_time", "memorization_checked")},
                     coords=coords,
                     attrs=base | {"sigma2": sigma2, "n_generate": n_generate, "speciation_time": t_S,
                                   "N": N, "beta": beta, "h": h,
                                   "definition": "memorized_share: share of generated samples whose sign configuration "
                                                 "equals a training configuration; overlap_max_mean: mean over samples "
                                                 "of max_a sign(x).a/N over the training set; _baseline: the same for "
                                                 "fresh exact samples against the training set; _reference: the same "
                                                 "generated samples against an independent exact set of P "
                                                 "configurations (memorisation = excess over it); rare_copy_share: "
                                                 "copies of training configurations a with P q(a) < 0.01 (a set of P "
                                                 "exact samples holds them by chance less than once in 100); "
                                                 "rare_share: share of samples with such a configuration"})
    return sw, mem


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
        Delta))`` when a linear model is there (:func:`binned_potentials`); per time and per score the
        number of minima, the depth of the double well and its position (:func:`well_numbers`:
        ``n_minima_<name>``, ``well_depth_<name>``, ``well_position_<name>``, ``<name>`` in theory,
        exact, learned, linear).
    ``autoencoder.nc/.png``
        Per-step Jacobian asymmetry of the nets (ReLU, and linear if present) and their energy along
        the magnetization axis against the exact ``-log p_t(mu u)`` (:func:`axis_potentials`), with
        the same well numbers.
    ``speciation.nc``, ``cloning.png``
        Cloning ``phi(t)`` with the learned model, the linear model (if present) and the exact score
        (the same reverse code, :func:`physdiff.reverse.cloning`) vs theory
        (:func:`~physdiff.theory.gaussian.phi_curie_weiss_mc` for ``N <= 200``, else
        :func:`~physdiff.theory.gaussian.phi_curie_weiss`) and vs a Gaussian of the same covariance
        (:func:`phi_gaussian`); measured speciation times (crossing of 0.7752 [BBBM24]) with
        bootstrap errors.
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
    plotting.save_figure(plotting.plot_score_comparison(sc, speciation_time=t_S), out / "score.png")
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
    # double-well numbers per time: the exact V on its fine grid; the estimates on the well-populated
    # bins (count >= 100; NaN depth where those do not reach mu = 0, e.g. in the frozen double well)
    well = pot["count"].values >= 100
    for name in ["theory", *fns]:
        if name == "theory":
            nums = np.array([well_numbers(pot["mu_fine"].values, V) for V in pot["V_theory_fine"].values])
        else:
            nums = np.array([well_numbers(pot["mu"].values[k][well[k]], pot[f"V_{name}"].values[k][well[k]],
                                          pot[f"V_{name}_stderr"].values[k][well[k]])
                             for k in range(pot.sizes["t"])])
        for j, var in enumerate(("n_minima", "well_depth", "well_depth_stderr", "well_position")):
            pot[f"{var}_{name}"] = ("t", nums[:, j].astype(np.int64) if var == "n_minima" else nums[:, j])
    results.write_dataset(pot, out / "potential.nc")
    _plot_potentials(pot, out / "potential.png", t_S)
    resid = np.abs(pot["V_learned"] - pot["V_theory"]).where(pot["count"] >= 100)
    summary["potential_max_abs_error_learned"] = float(resid.max())
    before = pot["physical_time"].values < t_S
    for name in ["theory", *fns]:
        summary[f"potential_n_minima_{name}_before_t_S"] = [int(v) for v in pot[f"n_minima_{name}"].values[before]]
        summary[f"potential_well_depth_{name}_before_t_S"] = [round(float(v), 3)
                                                              for v in pot[f"well_depth_{name}"].values[before]]
    log("binned V(mu, t) at t = " + ", ".join(f"{v:.2f}" for v in pot["physical_time"].values) + ": "
        + "; ".join(f"{name} minima {pot[f'n_minima_{name}'].values.tolist()} depth "
                    f"{np.round(pot[f'well_depth_{name}'].values, 2).tolist()}" for name in ["theory", *fns]))
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
    for name in [k[2:] for k in ae_e if k != "E_gaussian"]:
        nums = np.array([well_numbers(mu_axis, E) for E in aed[f"E_{name}"].values])
        aed[f"n_minima_{name}"] = ("t_energy", nums[:, 0].astype(np.int64))
        aed[f"well_depth_{name}"] = ("t_energy", nums[:, 1])
        aed[f"well_position_{name}"] = ("t_energy", nums[:, 3])
    results.write_dataset(aed, out / "autoencoder.nc")
    _plot_autoencoder(aed, out / "autoencoder.png", t_S)
    log("axis energies at t = " + ", ".join(f"{v:.2f}" for v in aed["physical_time_energy"].values) + ": "
        + "; ".join(f"{name} minima {aed[f'n_minima_{name}'].values.tolist()} depth "
                    f"{np.round(aed[f'well_depth_{name}'].values, 2).tolist()}"
                    for name in [k[2:] for k in ae_e if k != "E_gaussian"]))
    summary["jacobian_asymmetry_mean"] = float(np.mean(aed["jacobian_asymmetry"]))
    summary["learned_double_well"] = bool(any(_n_minima(E) >= 2 for E in aed["E_learned"].values))
    summary["exact_double_well"] = bool(any(_n_minima(E) >= 2 for E in aed["E_exact"].values))
    if lin_model is not None:
        summary["linear_double_well"] = bool(any(_n_minima(E) >= 2 for E in aed["E_linear"].values))
    log(f"autoencoder energies written ({time.perf_counter() - clock:.1f} s)")

    # 4. cloning with the learned and the exact score (same branch steps and classification step);
    # learned reverse trajectories
    branch, t_classify = speciation_branch_steps(sched, N, beta, h)
    det_l = learned_speciation(model, n_pairs=n_pairs, seed=rng, branch_steps=branch, t_classify=t_classify)
    log(f"learned cloning done ({time.perf_counter() - clock:.1f} s)")
    det_e = exact_speciation(sched, N, beta, h, n_pairs=n_pairs_exact, seed=rng, branch_steps=branch,
                             t_classify=t_classify)
    log(f"exact-score cloning done ({time.perf_counter() - clock:.1f} s)")
    det_lin = None
    if lin_model is not None:
        det_lin = learned_speciation(lin_model, n_pairs=n_pairs, seed=rng, branch_steps=branch, t_classify=t_classify)
    tb = sched.physical_time[branch]
    t_curve = np.linspace(max(tb.min() - 0.3, 0.02), tb.max() + 0.3, 25)
    if N <= 200:
        phi_curve, phi_curve_err = gaussian.phi_curie_weiss_mc(t_curve, N, beta, h, n_samples=4000, seed=rng)
        theory_kind = "phi_curie_weiss_mc (exact, Monte Carlo)"
    else:
        phi_curve, phi_curve_err = gaussian.phi_curie_weiss(t_curve, N, beta, h), np.zeros_like(t_curve)
        theory_kind = "phi_curie_weiss (mu observer)"
    t_l, t_l_err = det_l["speciation_time"], det_l["speciation_time_error"]
    t_e, t_e_err = det_e["speciation_time"], det_e["speciation_time_error"]
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
         "phi_gaussian_curve": ("t_curve", phi_gaussian(t_curve, Lam)),
         "speciation_time_gaussian": ((), speciation_time_gaussian(Lam)),
         "step_ratio": ("t", np.asarray(branch) / max(sched.step_at_time(t_S), 1))}
        | ({"phi_linear": ("t", det_lin["phi"]), "phi_linear_stderr": ("t", det_lin["phi_stderr"]),
            "speciation_time_linear": ((), det_lin["speciation_time"]),
            "speciation_time_linear_error": ((), det_lin["speciation_time_error"])} if det_lin is not None else {}),
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
                   speciation_time_phi_theory=t_th, speciation_time_gaussian=speciation_time_gaussian(Lam))
    if det_lin is not None:
        summary.update(speciation_time_linear=det_lin["speciation_time"],
                       speciation_time_linear_error=det_lin["speciation_time_error"])
    rec = np.unique(np.r_[np.arange(0, T + 1, max(1, T // 100)), T])[::-1]
    _, traj = model.sample(n_trajectories, seed=rng, return_trajectory=True, steps=rec)
    mu_traj = traj.astype(np.float64).sum(axis=2).T / math.sqrt(N)
    del traj
    tr = xr.Dataset({"mu": (("traj", "t"), mu_traj)},
                    coords={"t": rec, "alpha_bar": ("t", sched.alpha_bar[rec]),
                            "physical_time": ("t", sched.physical_time[rec])},
                    attrs=base | {"title": f"learned reverse trajectories, N={N}, beta={beta}"})
    results.write_dataset(tr, out / "trajectories.nc")
    plotting.save_figure(plotting.plot_magnetization_trajectories(tr.isel(t=slice(None, -1)), speciation_time=t_S),
                         out / "trajectories.png")
    log(f"speciation written ({time.perf_counter() - clock:.1f} s): phi = {PHI_LEVEL} crossing learned "
        f"{t_l:.3f} +- {t_l_err:.3f}, exact score {t_e:.3f} +- {t_e_err:.3f}, theory {t_th:.3f}; "
        f"(1/2) log Lambda = {t_S:.3f}; Gaussian with the same Lambda {speciation_time_gaussian(Lam):.3f}"
        + (f"; linear model {det_lin['speciation_time']:.3f} +- {det_lin['speciation_time_error']:.3f}"
           if det_lin is not None else ""))

    # 5-6. state weights and memorisation, per checkpoint
    sw, mem = state_weights_and_memorization(models, [str(c) for c in ckpts], n_generate=n_generate, seed=rng,
                                             attrs=base, log=log)
    results.write_dataset(sw, out / "state_weights.nc")
    plot_state_weights(sw, out / "state_weights.png", mem)
    results.write_dataset(mem, out / "memorization.nc")
    k = int(np.flatnonzero(sw["input_index"].values == 0)[0])
    first = {v: sw[v].values[k].item() for v in ("share_plus", "share_plus_stderr", "P")}
    first |= {v: mem[v].values[k].item() for v in ("memorized_share", "memorized_share_baseline", "collapse_time")}
    summary.update(share_plus=first["share_plus"], share_plus_stderr=first["share_plus_stderr"],
                   share_plus_exact=sw.attrs["share_plus_exact"], share_plus_large_N=sw.attrs["share_plus_large_N"],
                   memorized_share=first["memorized_share"], memorized_share_baseline=first["memorized_share_baseline"],
                   collapse_time=first["collapse_time"], n_train=int(first["P"]),
                   seconds=round(time.perf_counter() - clock, 1))
    log(f"state weights: share(M>0) = {first['share_plus']:.3f} +- {first['share_plus_stderr']:.3f} "
        f"(exact {sw.attrs['share_plus_exact']:.3f}); memorised {first['memorized_share']:.3f} vs fresh-sample "
        f"baseline {first['memorized_share_baseline']:.3f}; t_C = {first['collapse_time']:.3f} vs t_S = {t_S:.3f} "
        f"({time.perf_counter() - clock:.1f} s)")
    return summary


# ---------------------------------------------------------------------------------------------
# figures
# ---------------------------------------------------------------------------------------------

_NAMES = {"exact": "exact score", "learned": "ReLU model", "linear": "linear model", "theory": "exact"}


def _well_label(ds: xr.Dataset, k: int, names, prefix: str = "") -> str:
    """'minima 2/1/1, depth 0.55/0.00/0.00 (exact/ReLU/linear)' for row k of a Dataset with
    ``n_minima_<name>`` and ``well_depth_<name>`` variables."""
    names = [n for n in names if f"{prefix}n_minima_{n}" in ds]
    if not names:
        return ""
    mins = "/".join(str(int(ds[f"{prefix}n_minima_{n}"].values[k])) for n in names)
    deps = "/".join("-" if not np.isfinite(v) else f"{v:.2f}"
                    for v in (float(ds[f"{prefix}well_depth_{n}"].values[k]) for n in names))
    short = {"theory": "exact", "exact": "exact", "learned": "ReLU", "linear": "linear"}
    return f"minima {mins}, depth {deps}\n({'/'.join(short[n] for n in names)})"


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
        if "V_linear" in ds:
            ax.plot(ds["mu_fine"], ds["V_gaussian_fine"].values[k], "C0--", lw=0.8, label="Gaussian V (best linear)")
        for name, style in (("exact", dict(fmt="s", color="0.5", ms=2.5)), ("learned", dict(fmt="o", color="C3", ms=2.5)),
                            ("linear", dict(fmt="^", color="C0", ms=2.5))):
            if f"V_{name}" in ds:
                ax.errorbar(mu, ds[f"V_{name}"].values[k], yerr=ds[f"V_{name}_stderr"].values[k], lw=0.7,
                            label=f"{_NAMES[name]} (binned)", **style)
        tau = float(ds["physical_time"][k])
        ax.set_title(f"t = {tau:.2f}  (t - t_S = {tau - t_S:+.2f})", fontsize=8)
        ax.set_xlabel(r"$\mu$", fontsize=8)
        finite = ds["V_theory"].values[k][np.isfinite(ds["V_theory"].values[k])]
        if finite.size:
            ax.set_ylim(min(finite.min(), 0) - 0.5, max(finite.max(), 1) + 0.5)
        lab = _well_label(ds, k, ("theory", "learned", "linear"))
        if lab:
            ax.text(0.5, 0.97, lab, transform=ax.transAxes, ha="center", va="top", fontsize=6.5,
                    bbox=dict(boxstyle="round", fc="white", ec="0.7", alpha=0.85))
    axes[0][0].legend(fontsize=6, loc="lower left")
    fig.suptitle(f"density potential V = -log P_t(mu) from each score, binned along mu = sum_i x_i / sqrt(N) "
                 f"(N={ds.attrs.get('N')}, beta={ds.attrs.get('beta')}); t_S = {t_S:.2f}", fontsize=9)
    fig.tight_layout()
    return plotting.save_figure(fig, path, dpi=90)  # < 150 kB for the README gallery


def _plot_autoencoder(ds: xr.Dataset, path, t_S: float):
    import matplotlib.pyplot as plt

    nE = ds.sizes["t_energy"]
    cols = 4
    rows = -(-(nE + 1) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.5 * cols, 3.0 * rows), squeeze=False)
    flat = axes.ravel()
    for ax in flat[nE + 1:]:
        ax.axis("off")
    a = flat[0]
    a.plot(ds["physical_time"], ds["jacobian_asymmetry"], color="C3", label="ReLU nets")
    if "jacobian_asymmetry_linear" in ds:
        a.plot(ds["physical_time"], ds["jacobian_asymmetry_linear"], color="C0", label="linear nets")
    a.axvline(t_S, color="k", ls="--", lw=1)
    a.set_xscale("log")
    a.set_xlabel("physical time t", fontsize=8)
    a.set_ylabel(r"$|J - J^T| / |J|$", fontsize=8)
    a.set_title("Jacobian asymmetry (0: an energy exists)", fontsize=8)
    a.legend(fontsize=7)
    names = ["exact", "learned"] + (["linear"] if "E_linear" in ds else [])
    for k in range(nE):
        b = flat[k + 1]
        b.plot(ds["mu"], ds["E_exact"].values[k], "k-", lw=1.4, label="exact -log p_t(mu u)")
        b.plot(ds["mu"], ds["E_learned"].values[k], "C3--", lw=1.2, label="ReLU nets")
        if "E_linear" in ds:
            b.plot(ds["mu"], ds["E_linear"].values[k], "C0:", lw=1.4, label="linear nets")
        tau = float(ds["physical_time_energy"][k])
        b.set_title(f"t = {tau:.2f}  (t - t_S = {tau - t_S:+.2f})", fontsize=8)
        b.set_xlabel(r"$\mu$ (x = $\mu$ u)", fontsize=8)
        lo = min(float(np.nanmin(ds[f"E_{n}"].values[k])) for n in names)
        b.set_ylim(lo - 0.5, lo + 12)
        lab = _well_label(ds, k, names)
        if lab:
            b.text(0.5, 0.97, lab, transform=b.transAxes, ha="center", va="top", fontsize=6.5,
                   bbox=dict(boxstyle="round", fc="white", ec="0.7", alpha=0.85))
    flat[1].legend(fontsize=6, loc="lower left")
    fig.suptitle(f"energy of the score field along the magnetization axis, E_t(mu) = -int_0^mu u.score_t(m u) dm "
                 f"(N={ds.attrs.get('N')}, beta={ds.attrs.get('beta')}); t_S = {t_S:.2f}", fontsize=9)
    fig.tight_layout()
    return plotting.save_figure(fig, path, dpi=90)  # < 150 kB for the README gallery


def _plot_cloning(ds: xr.Dataset, path):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.2, 4))
    tau = ds["physical_time"].values
    ax.errorbar(tau, ds["phi"], yerr=ds["phi_stderr"], fmt="o", ms=3, capsize=2, color="C3", label="ReLU model (learned)")
    ax.errorbar(tau, ds["phi_exact"], yerr=ds["phi_exact_stderr"], fmt="s", ms=3, capsize=2, color="0.4",
                label="exact score")
    if "phi_linear" in ds:
        ax.errorbar(tau, ds["phi_linear"], yerr=ds["phi_linear_stderr"], fmt="^", ms=3, capsize=2, color="C0",
                    label="linear model")
    ax.plot(ds["t_curve"], ds["phi_curve"], "k-", lw=1, label="theory")
    if "phi_gaussian_curve" in ds:
        ax.plot(ds["t_curve"], ds["phi_gaussian_curve"], "C0--", lw=0.8,
                label=f"Gaussian with the same Lambda (crosses at {float(ds['speciation_time_gaussian']):.2f})")
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


def plot_state_weights(ds: xr.Dataset, path, mem: xr.Dataset | None = None):
    """Figure of :func:`state_weights_and_memorization`'s Datasets against ``P``: the share of
    ``M > 0`` and the ratio share(+)/share(-) (generated, training set, exact finite N, large N),
    and, with ``mem``, the memorised share and max-overlap against their fresh-sample baselines."""
    import matplotlib.pyplot as plt

    P = ds["P"].values
    ncol = 3 if mem is not None else 2
    fig, axes = plt.subplots(1, ncol, figsize=(4.3 * ncol, 3.7))
    a, b = axes[0], axes[1]
    p_ex = float(ds.attrs["share_plus_exact"])
    a.errorbar(P, ds["share_plus"], yerr=ds["share_plus_stderr"], fmt="o", ms=4, capsize=2, color="C3",
               label="generated")
    if np.isfinite(ds["share_plus_train"].values).any():
        a.plot(P, ds["share_plus_train"], "x", color="C0", label="training set")
    if len(P) > 1:
        Pf = np.geomspace(P.min(), P.max(), 100)
        spread = np.sqrt(p_ex * (1 - p_ex) / Pf)
        a.fill_between(Pf, p_ex - spread, p_ex + spread, color="0.85", label=r"$\pm$ sd of a training set of P")
    a.axhline(p_ex, color="k", lw=1, label="exact P(M>0), this N")
    a.axhline(float(ds.attrs["share_plus_large_N"]), color="k", lw=1, ls=":", label="large N: 1/(1+exp(-2Hm*))")
    a.set_ylabel("share of samples with M > 0")
    a.legend(fontsize=6)
    b.errorbar(P, ds["ratio"], yerr=ds["ratio_stderr"], fmt="o", ms=4, capsize=2, color="C3", label="generated")
    if np.isfinite(ds["ratio_train"].values).any():
        b.plot(P, ds["ratio_train"], "x", color="C0", label="training set")
    b.axhline(float(ds.attrs["ratio_exact"]), color="k", lw=1, label="exact, this N")
    b.axhline(float(ds.attrs["ratio_large_N"]), color="k", lw=1, ls=":", label="exp(2 H m*)")
    b.set_ylabel("share(+) / share(-)")
    b.legend(fontsize=6)
    if mem is not None:
        c = axes[2]
        c.errorbar(P, mem["rare_copy_share"], yerr=mem["rare_copy_share_stderr"], fmt="o", ms=4, capsize=2,
                   color="C3", label="generated: copies of a rare training config")
        c.plot(P, mem["rare_copy_share_reference"], "D", ms=3, color="C0",
               label="generated: copies of a rare config of an independent set")
        c.plot(P, mem["memorized_share"], "o", ms=3, mfc="none", color="C3", label="generated: copies of any training config")
        c.plot(P, mem["memorized_share_baseline"], "s", ms=3, color="0.5", label="fresh exact samples: copies")
        c.plot(P, mem["overlap_max_mean"], "^-", ms=3, lw=0.8, color="C3", label="generated: mean max overlap")
        c.plot(P, mem["overlap_max_mean_reference"], "^:", ms=3, lw=0.8, color="C0",
               label="generated vs independent set: mean max overlap")
        c.plot(P, mem["overlap_max_mean_baseline"], "v--", ms=3, lw=0.8, color="0.5",
               label="fresh samples: mean max overlap")
        c.set_ylabel("memorisation")
        c.set_ylim(-0.03, 1.03)
        c.legend(fontsize=6)
        tc = mem["collapse_time"].values
        c.set_title(f"t_C(P) from {tc.max():.2f} to {tc.min():.2f} vs t_S = {float(mem.attrs['speciation_time']):.2f}",
                    fontsize=8)
    for ax in axes:
        if len(P) > 1:
            ax.set_xscale("log")
            ax.set_xticks(P, [str(int(v)) for v in P])
            ax.minorticks_off()
        ax.set_xlabel("training configurations P")
    fig.suptitle(f"state weights, N={ds.attrs.get('N')}, beta={ds.attrs.get('beta')}, "
                 f"H = hN = {float(ds.attrs.get('H')):.3g}, {int(ds.attrs['n_generate'])} samples per model",
                 fontsize=9)
    fig.tight_layout()
    return plotting.save_figure(fig, path)


def _plot_speciation_scan(ds: xr.Dataset, path):
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    tau = ds["physical_time"].values
    colors = plt.cm.Reds(np.linspace(0.45, 0.95, ds.sizes["run"]))
    for k in range(ds.sizes["run"]):
        lab = f"seed {int(ds['seed'][k])}, {int(ds['epochs'][k])} ep"
        a.plot(tau, ds["phi"].values[k], "o-", ms=2.5, lw=0.8, color=colors[k], label=lab)
    a.errorbar(tau, ds["phi_exact"], yerr=ds["phi_exact_stderr"], fmt="s", ms=3, capsize=2, color="0.3",
               label="exact score")
    a.plot(ds["t_curve"], ds["phi_curve"], "k-", lw=1, label="theory")
    a.plot(ds["t_curve"], ds["phi_gaussian_curve"], "C0--", lw=0.8, label="Gaussian, same Lambda")
    a.axhline(float(ds.attrs["level"]), color="0.5", lw=0.8, ls=":")
    a.set_xlabel("physical time t of the branching")
    a.set_ylabel(r"$\phi(t)$")
    a.legend(fontsize=6, ncol=2)
    x = np.arange(ds.sizes["run"])
    b.errorbar(x, ds["speciation_time"], yerr=ds["speciation_time_error"], fmt="o", color="C3", capsize=2,
               label="learned")
    te, tee = float(ds["speciation_time_exact"]), float(ds["speciation_time_exact_error"])
    b.axhspan(te - tee, te + tee, color="0.8", label=f"exact score {te:.2f} +- {tee:.2f}")
    b.axhline(float(ds["speciation_time_phi_theory"]), color="k", lw=1,
              label=f"theory {float(ds['speciation_time_phi_theory']):.2f}")
    b.axhline(float(ds.attrs["speciation_time_theory"]), color="k", lw=1, ls="--",
              label=f"(1/2) log Lambda = {float(ds.attrs['speciation_time_theory']):.2f}")
    b.axhline(float(ds["speciation_time_gaussian"]), color="C0", lw=1, ls="--",
              label=f"Gaussian, same Lambda: {float(ds['speciation_time_gaussian']):.2f}")
    b.set_xticks(x, [f"s{int(s)}\n{int(e)} ep" for s, e in zip(ds["seed"].values, ds["epochs"].values)], fontsize=7)
    b.set_ylabel("speciation time (phi = 0.7752 crossing)")
    b.set_title(f"seeds: {float(ds.attrs['seed_mean']):.2f} +- {float(ds.attrs['seed_std']):.2f} (sd)", fontsize=9)
    b.legend(fontsize=7, loc="center")
    fig.suptitle(ds.attrs.get("title", ""), fontsize=9)
    fig.tight_layout()
    return plotting.save_figure(fig, path)
