"""The Curie-Weiss study: exact potentials, forward histograms, exact-score reverse runs, cloning
and the speciation time against N (``physdiff study curie-weiss``; ``studies/curie_weiss.py``).

Every Dataset carries N, beta, h, T and the seed in its attrs (DESIGN.md schemas).

References: [BM23] Biroli & Mezard 2023 (arXiv:2306.03518); [BBBM24] Biroli, Bonnaire, de Bortoli &
Mezard 2024 (arXiv:2402.18491); [RA23] Raya & Ambrogioni 2023 (arXiv:2305.19693).
"""

from __future__ import annotations

import time

import numpy as np
import xarray as xr

from .. import forward, plotting, results, spins
from ..reverse import cloning, eps_from_score, reverse_chain
from ..schedules import make_schedule
from ..theory import curie_weiss as cw
from ..theory import gaussian
from ._io import prepare_out

__all__ = ["curie_weiss_study", "OUTPUTS"]

OUTPUTS = ("potential.nc", "potential.png", "forward.nc", "forward.png", "trajectories.nc",
           "trajectories.png", "speciation.nc", "cloning.png", "speciation_vs_N.nc", "speciation_vs_N.png")

PHI_LEVEL = 0.7752  # large-N universal phi(t_S) [BBBM24]; REFERENCES.md sec. 5


def study_schedule(T: int):
    """Ho et al.'s linear schedule (1e-4..0.02 at T = 1000) rescaled to T steps so that it always
    ends at physical time ~5.06 (``alpha_bar_T ~ 4e-5``)."""
    return make_schedule("linear", T, beta_start=min(1e-4 * 1000 / T, 0.5), beta_end=min(0.02 * 1000 / T, 0.5))


def curie_weiss_study(out, *, N: int = 1000, beta: float = 1.5, h: float = 0.0, T: int = 100,
                      n_pairs: int = 1500, n_forward: int = 10000, n_trajectories: int = 200,
                      seed: int = 0, force: bool = False, progress: bool = True, log=print,
                      command: str | None = None) -> dict:
    """Run the Curie-Weiss study and write its Datasets and figures into ``out``.

    Parameters
    ----------
    out : path
        Output directory (created; existing outputs are kept unless ``force``).
    N, beta, h : model (spins, inverse temperature, per-spin field).
    T : int
        Steps of the reverse/forward chains (linear schedule rescaled to end at t = 5.06).
    n_pairs : int
        Clone pairs of the cloning experiment. [BBBM24] used >= 4000 trajectories; the default 1500
        keeps the N = 1000 study under 5 minutes on 2 CPU cores (binomial error ~0.011 on phi).
    n_forward : int
        Spin configurations pushed through the forward chain for the histograms.
    n_trajectories : int
        Exact-score reverse trajectories whose magnetization is recorded.
    seed : int

    Returns
    -------
    dict
        The headline numbers: theoretical speciation times, the measured one and its error.
    """
    out = prepare_out(out, OUTPUTS, force=force)
    rng = np.random.default_rng(seed)
    sched = study_schedule(T)
    base = results.provenance(seed=seed, command=command, N=N, beta=beta, h=h, T=T)
    t_cov = cw.speciation_time(N, beta, h, kind="covariance")
    t_den = cw.speciation_time(N, beta, h, kind="density")
    t_drift = cw.speciation_time(N, beta, h, kind="drift")
    base.update(speciation_time_covariance=t_cov, speciation_time_density=t_den, speciation_time_drift=t_drift)
    summary = {"speciation_time_covariance": t_cov, "speciation_time_density": t_den,
               "speciation_time_drift": t_drift}
    clock = time.perf_counter()

    # 1. potentials V(mu, t), U(mu, t), exact and large-N, at times around t_S
    taus = t_cov + np.array([-1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0])
    taus = taus[taus > 0.02]
    ab = np.exp(-2 * taus)
    mu = np.linspace(-6, 6, 481)
    pot = results.potential_dataset(
        cw.potential(mu, ab, N, beta, h, kind="density"), t=np.arange(len(taus)), alpha_bar=ab, mu=mu,
        extra={"U": cw.potential(mu, ab, N, beta, h, kind="drift")}
        | ({"V_asymptotic": cw.potential_asymptotic(mu, ab, N, beta, kind="density"),
            "U_asymptotic": cw.potential_asymptotic(mu, ab, N, beta, kind="drift")} if h == 0 else {}),
        attrs=base | {"speciation_time": t_cov})
    results.write_dataset(pot, out / "potential.nc")
    plotting.save_figure(plotting.plot_potential(pot, speciation_time=t_cov), out / "potential.png")
    log(f"potentials written ({time.perf_counter() - clock:.1f} s)")

    # 2. forward chain: histograms of mu(t) from exact spins against the exact P_t(mu)
    steps = sorted({sched.step_at_time(tau) for tau in (0.5 * t_cov, t_cov - 0.5, t_cov, t_cov + 1.0)})
    a = spins.sample_curie_weiss(N, beta, h, n_samples=n_forward, seed=rng)
    traj = forward.trajectory(a.astype(np.float32), sched, steps, seed=rng)
    mus = traj.sum(axis=2) / np.sqrt(N)  # (steps, n)
    del traj
    edges = np.linspace(-6, 6, 61)
    # normalised by all samples (not only those inside the range), so it estimates P_t(mu) itself
    hist = np.stack([np.histogram(m, bins=edges)[0] for m in mus]) / (n_forward * np.diff(edges)[0])
    ab_f = sched.alpha_bar[steps]
    P_exact = np.exp(-cw.potential(mu, ab_f, N, beta, h, kind="density"))
    fwd = xr.Dataset(
        {"hist": (("t", "bin"), hist), "P_exact": (("t", "mu"), P_exact),
         "mu_samples_mean": ("t", mus.mean(axis=1)), "mu_samples_var": ("t", mus.var(axis=1))},
        coords={"t": steps, "bin_center": ("bin", 0.5 * (edges[1:] + edges[:-1])), "mu": mu,
                "alpha_bar": ("t", ab_f), "physical_time": ("t", sched.physical_time[steps])},
        attrs=base | {"n_samples": n_forward})
    results.write_dataset(fwd, out / "forward.nc")
    plotting.save_figure(plotting.plot_histograms(fwd), out / "forward.png")
    log(f"forward histograms written ({time.perf_counter() - clock:.1f} s)")

    # 3. reverse trajectories driven by the exact score
    eps_fn = eps_from_score(lambda x, alpha_bar: cw.score(x, alpha_bar, beta, h), sched)
    rec = np.unique(np.r_[np.arange(0, T + 1, max(1, T // 200)), T])[::-1]
    x_T = rng.standard_normal((n_trajectories, N))
    _, xs = reverse_chain(eps_fn, x_T, sched, seed=rng, record=rec, progress=progress)
    mu_traj = xs.sum(axis=2).T / np.sqrt(N)  # (traj, t)
    del xs
    tr = xr.Dataset(
        {"mu": (("traj", "t"), mu_traj)},
        coords={"t": rec, "alpha_bar": ("t", sched.alpha_bar[rec]), "physical_time": ("t", sched.physical_time[rec])},
        attrs=base | {"speciation_time": t_cov, "title": f"exact-score reverse trajectories, N={N}, beta={beta}"})
    results.write_dataset(tr, out / "trajectories.nc")
    plotting.save_figure(plotting.plot_magnetization_trajectories(tr.isel(t=slice(None, -1)), speciation_time=t_cov),
                          out / "trajectories.png")
    final = np.sign(mu_traj[:, -1])
    summary["share_plus"] = float(np.mean(final > 0))
    log(f"reverse trajectories written ({time.perf_counter() - clock:.1f} s)")

    # 4. cloning with the exact score against the exact finite-N theory
    # classes (the sign of M) are frozen well below t_S: the double well at t_S - 2 has its minima at
    # mu ~ ±e^2 ~ ±7.4 standard deviations, so the clones are classified there instead of at t = 0
    t_classify = sched.step_at_time(max(t_cov - 2.0, 0.0))
    branch_taus = t_cov + np.linspace(-1.0, 1.25, 10)
    branch = sorted({sched.step_at_time(tau) for tau in branch_taus if tau > 0} - set(range(t_classify + 1)),
                    reverse=True)
    det = cloning(eps_fn, sched, _sign_class, branch, n_pairs, N, seed=rng, return_details=True,
                  t_classify=t_classify)
    tb = sched.physical_time[branch]
    phi_theory = gaussian.phi_curie_weiss(tb, N, beta, h)
    t_meas, t_err = _crossing_with_error(tb, det["phi"], det["phi_stderr"], rng)
    t_curve = np.linspace(max(tb.min() - 0.5, 0.05), tb.max() + 0.5, 200)
    sp = results.speciation_dataset(det["phi"], t=np.asarray(branch), alpha_bar=sched.alpha_bar[branch],
                                     phi_stderr=det["phi_stderr"], phi_theory=phi_theory, speciation_time=t_meas,
                                     attrs=base | {"speciation_time_theory": t_cov, "n_pairs": n_pairs,
                                                   "speciation_time_error": t_err, "level": PHI_LEVEL,
                                                   "baseline": det["baseline"],
                                                   "title": f"cloning with the exact score, N={N}, beta={beta}"})
    sp = sp.assign(phi_curve=("t_curve", gaussian.phi_curie_weiss(t_curve, N, beta, h)))
    sp = sp.assign_coords(t_curve=t_curve)
    sp["speciation_time_phi_theory"] = ((), gaussian.speciation_time_phi(t_curve, sp["phi_curve"].values, PHI_LEVEL))
    sp["step_ratio"] = ("t", np.asarray(branch) / sched.step_at_time(t_cov))
    results.write_dataset(sp, out / "speciation.nc")
    plotting.save_figure(plotting.plot_speciation(sp, level=PHI_LEVEL), out / "cloning.png")
    summary.update(speciation_time_measured=t_meas, speciation_time_measured_error=t_err,
                   speciation_time_phi_theory=float(sp["speciation_time_phi_theory"]))
    log(f"cloning written ({time.perf_counter() - clock:.1f} s)")

    # 5. speciation time against N: (1/2) log N + O(1) for beta > 1, O(1) for beta < 1
    Ns = np.unique(np.round(np.logspace(2, 4, 9)).astype(int))
    betas = sorted({0.5, float(beta)})
    kinds = ["covariance", "density", "drift"]
    ts = np.array([[[cw.speciation_time(int(n), b, h, kind=k) for k in kinds] for n in Ns] for b in betas])
    sN = xr.Dataset({"speciation_time": (("beta", "N", "kind"), ts)},
                    coords={"beta": betas, "N": Ns, "kind": kinds}, attrs=base)
    results.write_dataset(sN, out / "speciation_vs_N.nc")
    plotting.save_figure(plotting.plot_speciation_vs_N(sN), out / "speciation_vs_N.png")
    log(f"speciation vs N written ({time.perf_counter() - clock:.1f} s)")

    log(f"speciation time: (1/2) log Lambda = {t_cov:.4f}; density V''(0)=0 at {t_den:.4f}; "
        f"drift U''(0)=0 at {t_drift:.4f}; phi = {PHI_LEVEL} crossing: theory "
        f"{summary['speciation_time_phi_theory']:.4f}, measured {t_meas:.4f} +- {t_err:.4f} ({n_pairs} pairs)")
    return summary


def _sign_class(x):
    """Class of a state: the sign of its magnetization (1 for M > 0, 0 for M < 0; a tie, which has
    probability zero for continuous states, goes to 0)."""
    return (x.sum(axis=1) > 0).astype(np.int64)


def _crossing(t, phi, level=PHI_LEVEL):
    """Physical time where phi (decreasing in t) crosses ``level``, linear interpolation."""
    return gaussian.speciation_time_phi(t, phi, level)


def _crossing_with_error(t, phi, stderr, rng, n_boot: int = 400):
    """The crossing of ``PHI_LEVEL`` and its parametric-bootstrap standard error."""
    try:
        t0 = _crossing(t, phi)
    except ValueError:
        return float("nan"), float("nan")
    boots = []
    for _ in range(n_boot):
        try:
            boots.append(_crossing(t, np.clip(phi + stderr * rng.standard_normal(len(phi)), 0, 1)))
        except ValueError:  # this replicate does not cross inside the branch grid
            boots.append(np.nan)
    boots = np.asarray(boots, dtype=float)
    return float(t0), float(np.nanstd(boots))
