"""State weights against the number of training samples ``P`` (``studies/state_weights.py``;
issue 5, REFERENCES.md secs. 2 and 5).

With a field ``h = H / N`` the two ferromagnetic states of Curie-Weiss data keep O(1) relative
weights, ``P(M > 0) / P(M < 0) -> exp(2 H m*)`` [BM23]. A diffusion model fixes the state of a
sample around the speciation time ``t_S = (1/2) log Lambda``, where the only trace of the field is
a small asymmetry of the score along the magnetization; Biroli and Mezard argue that learning it
needs ``P >> N`` samples. :func:`state_weight_scan` trains one quick-preset DDPM per ``P`` on exact
samples (:func:`physdiff.experiments.train.train_job`, so every checkpoint can also be passed to
``physdiff study phase-transition``), generates samples from each and counts the share of the ``+``
state and the memorised samples (:func:`physdiff.experiments.phase_transition.state_weights_and_memorization`,
the study's sections 5-6).

Every model gets the same number of optimizer steps (not the same number of epochs): with a
fixed number of epochs a model trained on ``P = 16`` configurations would take 30 Adam steps and be
judged on its optimiser, not on its data; with a fixed number of steps the optimisation budget is
equal and small ``P`` means many passes over few configurations, which is the regime where a
model can memorise them (the thing to measure).

References
----------
[BM23] Biroli & Mezard (2023), arXiv:2306.03518.
[BBBM24] Biroli, Bonnaire, de Bortoli & Mezard (2024), arXiv:2402.18491: collapse time ``t_C``.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from .. import results
from .._util import check_positive_int, torch_threads
from ._io import prepare_out

__all__ = ["state_weight_scan", "epochs_for_steps", "train_or_reuse", "format_table", "OUTPUTS"]

OUTPUTS = ("state_weights.nc", "state_weights.png", "memorization.nc")


def epochs_for_steps(steps: int, P: int, batch: int) -> int:
    """Epochs giving at least ``steps`` optimizer steps on ``P`` points in minibatches of
    ``min(batch, P)`` (``ceil(steps / ceil(P / min(batch, P)))``, at least 1)."""
    steps = check_positive_int("steps", steps)
    P = check_positive_int("P", P)
    batch = check_positive_int("batch", batch)
    per_epoch = math.ceil(P / min(batch, P))
    return max(1, math.ceil(steps / per_epoch))


def train_or_reuse(out, *, N: int, beta: float, h: float, P: int, seed: int, epochs: int, preset: str = "quick",
                   device: str = "cpu", force: bool = False, retrain: bool = False, progress: bool = False,
                   log=print, command: str | None = None, **overrides) -> tuple[Path, bool]:
    """Train a Curie-Weiss DDPM into ``out`` with :func:`~physdiff.experiments.train.train_job`,
    or reuse the finished checkpoint there if it was trained with the same data law, ``P``,
    seed, epochs and ``overrides`` (unless ``retrain``). A different checkpoint there is
    overwritten only with ``force``.

    Returns
    -------
    (path, reused) : (Path, bool)

    Raises
    ------
    FileExistsError
        ``out`` holds a different or unfinished checkpoint (or ``retrain`` is set) and ``force`` is
        False.
    """
    from .. import ddpm
    from .train import train_job

    out = Path(out)
    cfg_path = out / "config.json"
    if cfg_path.is_file():
        cfg = json.loads(cfg_path.read_text())
        c, d = cfg.get("config", {}), cfg.get("data", {})
        want = ddpm.get_config("curie-weiss", preset, epochs=int(epochs), seed=int(seed), **overrides).to_dict()
        same = (cfg.get("trained") and d.get("dataset") == "curie-weiss" and d.get("N") == N
                and math.isclose(d.get("beta", math.nan), beta) and math.isclose(d.get("h", math.nan), h, abs_tol=1e-15)
                and d.get("n_train") == P and all(c.get(k) == v for k, v in want.items() if k != "device"))
        if same and not retrain:
            log(f"reusing the checkpoint in {out} (P = {P}, seed {seed}, {epochs} epochs)")
            return out, True
        if not force:
            what = "a checkpoint" if same else "a checkpoint with another configuration (or an unfinished one)"
            raise FileExistsError(f"{out} holds {what}; pass --force to retrain it, or choose another --out")
    train_job("curie-weiss", out, preset=preset, seed=seed, device=device, force=True, progress=progress,
              overrides={"epochs": epochs, **overrides}, command=command, log=log, N=N, beta=beta, h=h,
              n_train=P)
    return out, False


def _train_all(out: Path, P_values, *, N, beta, h, seed, steps, epochs, batch, preset, device, force, retrain,
               progress, log, command, overrides):
    """Train (or reuse) one checkpoint per P into ``out/P<P>``; returns paths, loaded models and
    ``(P, epochs, optimizer steps)`` per P."""
    from .. import ddpm

    paths, models, plan = [], [], []
    for P in P_values:
        E = epochs if epochs is not None else epochs_for_steps(steps, P, batch)
        n_steps = E * math.ceil(P / min(batch, P))
        t0 = time.perf_counter()
        path, reused = train_or_reuse(out / f"P{P}", N=N, beta=beta, h=h, P=P, seed=seed, epochs=E, preset=preset,
                                      device=device, force=force, retrain=retrain, progress=progress, log=log,
                                      command=command, **overrides)
        log(f"P = {P}: {E} epochs, {n_steps} optimizer steps, {'reused' if reused else 'trained'} in "
            f"{time.perf_counter() - t0:.1f} s")
        paths.append(path)
        models.append(ddpm.load(path, device=device))
        plan.append((P, E, n_steps))
    return paths, models, plan


def state_weight_scan(out, *, N: int = 64, beta: float = 1.5, H: float = 0.5,
                      P_values: Sequence[int] = (16, 64, 256, 1024, 4096), seed: int = 0, steps: int | None = None,
                      epochs: int | None = None, n_generate: int = 4000, preset: str = "quick", device: str = "cpu",
                      overrides: dict | None = None, num_threads: int | None = 1, force: bool = False,
                      retrain: bool = False, progress: bool = False, log=print, command: str | None = None) -> dict:
    """Train one DDPM per training-set size ``P`` and measure the state weights and memorisation.

    Writes into ``out``: one checkpoint directory ``P<P>/`` per ``P`` (the ``physdiff train``
    outputs; reused when already there with the same settings), and

    ``state_weights.nc/.png``
        Per ``P``: share of generated samples with ``M > 0`` and the ratio share(+)/share(-) with
        binomial (delta-method) standard errors; the training set's own share and ratio; the exact
        finite-N ``P(M > 0)`` and the large-N ``exp(2 H m*)`` as attrs (see
        :func:`~physdiff.experiments.phase_transition.state_weights_and_memorization`). Variables
        ``epochs`` and ``optimizer_steps`` record the training of each model.
    ``memorization.nc``
        Per ``P``: share of generated samples that copy a training configuration and the mean
        largest overlap with the training set (with fresh-sample baselines), and ``t_C(P)``.

    Parameters
    ----------
    out : path
    N : int >= 2
        Spins.
    beta : float
        Inverse temperature (> 1 for two states).
    H : float
        Total field; the per-spin field is ``h = H / N``. ``H = 0.5`` at ``beta = 1.5`` gives a
        ratio ``exp(2 H m*) = 2.36`` (share 0.70) at large N.
    P_values : sequence of int >= 1
        Training-set sizes.
    seed : int
        Seed of the data, the training and the measurements (the same for every ``P``).
    steps : int, optional
        Optimizer steps per model (default: the preset's epochs times its minibatches per epoch at
        its own ``n_train``, 30 x 63 = 1890 for the quick preset); each model trains
        :func:`epochs_for_steps` epochs.
    epochs : int, optional
        Instead of ``steps``: the same number of epochs for every ``P`` (then small ``P`` gets few
        optimizer steps).
    n_generate : int
        Samples generated per model.
    preset, device : str
        Training preset and torch device.
    overrides : dict, optional
        Other TrainConfig fields for every model (e.g. ``{"T": 20, "hidden": 16}`` for a test).
    num_threads : int or None
        Torch CPU threads for training and sampling (default 1: these nets are small; measured on 2
        shared cores, one thread trained 7x faster in wall time than two, with a tenth of the CPU
        time; None leaves torch's setting).
    force : bool
        Overwrite existing outputs, and checkpoints trained with other settings.
    retrain : bool
        Retrain (with ``force``) even the checkpoints that match and would be reused.
    progress, log, command
        Progress bars; printer; command line for provenance.

    Returns
    -------
    dict
        ``rows``: one dict per ``P`` (``P``, ``epochs``, ``optimizer_steps``, ``share_plus``,
        ``share_plus_stderr``, ``ratio``, ``ratio_stderr``, ``share_plus_train``,
        ``memorized_share``, ``memorized_share_baseline``, ``collapse_time``), ``share_plus_exact``,
        ``ratio_exact``, ``ratio_large_N``, ``speciation_time``, ``seconds``.

    Raises
    ------
    ValueError
        Bad ``N``, ``P_values`` or both ``steps`` and ``epochs`` given.
    FileExistsError
        Outputs exist and ``force`` is False.
    """
    from .. import ddpm
    from .phase_transition import plot_state_weights, state_weights_and_memorization

    N = check_positive_int("N", N, minimum=2)
    P_values = sorted({check_positive_int("P", int(P)) for P in P_values})
    if not P_values:
        raise ValueError("give at least one training-set size P")
    if steps is not None and epochs is not None:
        raise ValueError("give steps (the same number of optimizer steps for every P) or epochs, not both")
    n_generate = check_positive_int("n_generate", n_generate, minimum=2)
    if not math.isfinite(H):
        raise ValueError(f"H must be finite, got {H}")
    out = prepare_out(out, OUTPUTS, force=force)
    h = float(H) / N
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    if {"epochs", "seed", "n_train"} & set(overrides):
        raise ValueError("epochs, seed and n_train are set by the scan itself; pass them as epochs/steps, seed, "
                         "P_values")
    cfg = ddpm.get_config("curie-weiss", preset, **overrides)
    if epochs is None:
        steps = steps if steps is not None else cfg.epochs * math.ceil((cfg.n_train or 4000) / cfg.batch)
        steps = check_positive_int("steps", steps)
    else:
        epochs = check_positive_int("epochs", epochs)
    clock = time.perf_counter()
    with torch_threads(num_threads):
        paths, models, plan = _train_all(out, P_values, N=N, beta=beta, h=h, seed=seed, steps=steps, epochs=epochs,
                                         batch=cfg.batch, preset=preset, device=device, force=force, retrain=retrain,
                                         progress=progress, log=log, command=command, overrides=overrides)
        base = results.provenance(seed=seed, command=command, N=N, beta=beta, h=h, H=float(H), preset=preset,
                                  optimizer_steps_target=steps if epochs is None else "none",
                                  epochs_fixed=epochs if epochs is not None else "none",
                                  training="fixed optimizer steps" if epochs is None else "fixed epochs")
        sw, mem = state_weights_and_memorization(models, [str(p) for p in paths], n_generate=n_generate,
                                                 seed=np.random.default_rng([seed, 0x5A7E]), attrs=base, log=log)
    by_P = {P: (E, n) for P, E, n in plan}
    sw["epochs"] = ("checkpoint", np.asarray([by_P[int(P)][0] for P in sw["P"].values]))
    sw["optimizer_steps"] = ("checkpoint", np.asarray([by_P[int(P)][1] for P in sw["P"].values]))
    results.write_dataset(sw, out / "state_weights.nc")
    plot_state_weights(sw, out / "state_weights.png", mem)
    results.write_dataset(mem, out / "memorization.nc")
    rows = []
    for k in range(sw.sizes["checkpoint"]):
        r = {v: sw[v].values[k].item() for v in ("P", "epochs", "optimizer_steps", "share_plus", "share_plus_stderr",
                                                 "ratio", "ratio_stderr", "share_plus_train", "ratio_train", "z_exact")}
        r |= {v: mem[v].values[k].item() for v in ("memorized_share", "memorized_share_baseline",
                                                  "memorized_share_reference", "rare_copy_share",
                                                  "rare_copy_share_reference", "rare_copy_share_baseline",
                                                  "overlap_max_mean", "overlap_max_mean_baseline",
                                                  "overlap_max_mean_reference", "collapse_time")}
        rows.append(r)
    summary = {"rows": rows, "share_plus_exact": sw.attrs["share_plus_exact"], "ratio_exact": sw.attrs["ratio_exact"],
               "ratio_large_N": sw.attrs["ratio_large_N"], "speciation_time": mem.attrs["speciation_time"],
               "seconds": round(time.perf_counter() - clock, 1)}
    log(f"state weights, N = {N}, beta = {beta}, H = {H} (h = {h:.4g}): "
        f"exact P(M>0) = {summary['share_plus_exact']:.4f}, "
        f"ratio {summary['ratio_exact']:.3f} (large N exp(2 H m*) = {summary['ratio_large_N']:.3f}); "
        f"t_S = {summary['speciation_time']:.3f}")
    log(format_table(rows))
    return summary


def format_table(rows: Sequence[dict]) -> str:
    """A plain-text table of :func:`state_weight_scan`'s rows."""
    head = (f"{'P':>6} {'epochs':>6} {'steps':>6} {'share(+)':>15} {'ratio +/-':>15} {'train ratio':>11} "
            f"{'z vs exact':>10} {'copies':>7} {'ref':>6} {'fresh':>6} {'rare':>6} {'ref':>6} {'max q':>6} "
            f"{'ref q':>6} {'t_C':>6}")
    lines = [head]
    for r in rows:
        lines.append(f"{r['P']:>6d} {r['epochs']:>6d} {r['optimizer_steps']:>6d} "
                     f"{r['share_plus']:>8.3f}+-{r['share_plus_stderr']:.3f} "
                     f"{r['ratio']:>8.3f}+-{r['ratio_stderr']:.3f} "
                     f"{r['ratio_train']:>11.3f} {r['z_exact']:>+10.2f} {r['memorized_share']:>7.3f} "
                     f"{r['memorized_share_reference']:>6.3f} {r['memorized_share_baseline']:>6.3f} "
                     f"{r['rare_copy_share']:>6.3f} {r['rare_copy_share_reference']:>6.3f} "
                     f"{r['overlap_max_mean']:>6.3f} {r['overlap_max_mean_reference']:>6.3f} "
                     f"{r['collapse_time']:>6.3f}")
    lines.append("copies: share of samples equal (in sign) to a training configuration; ref: to a configuration of an "
                 "independent exact set of P; fresh: fresh exact samples against the training set; rare: copies of "
                 "training configurations a with P q(a) < 0.01 (ref: of such configurations of the independent set); "
                 "max q: mean largest overlap with the training set (ref q: with the independent set)")
    return "\n".join(lines)
