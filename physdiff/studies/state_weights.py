"""State weights of Curie-Weiss DDPMs against the number of training samples ``P``.

    physdiff study state-weights --out runs/state_weights            # N = 64, H = 0.5, P = 16..4096

With a field ``h = H / N`` the two ferromagnetic states keep O(1) relative weights,
``P(M > 0) / P(M < 0) -> exp(2 H m*)`` (2.36 at beta = 1.5, H = 0.5) [BM23]. A diffusion model fixes
the state of a sample around the speciation time ``t_S = (1/2) log Lambda``, where the only trace
of the field is a small asymmetry of the score along the magnetization; Biroli and Mezard argue
that learning it needs ``P >> N`` samples. One quick-preset DDPM is trained per ``P`` on exact
samples; each generates ``n_generate`` samples, whose share of the ``+`` state is set against the
exact finite-N and large-N values, and whose copies of training configurations measure
memorisation against two controls (:func:`physdiff.metrics.curie_weiss_memorization`), with the
collapse time ``t_C(P)`` [BBBM24].

At the quick preset every model is the least-squares fit of its nets on its ``P`` configurations
(``init="lstsq"``, no Adam steps). With ``--steps`` every model gets the same number of optimizer
steps after that start, not the same number of epochs: with a fixed
number of epochs a model trained on ``P = 16`` configurations would take 30 Adam steps and be
judged on its optimiser, not on its data; with a fixed number of steps small ``P`` means many
passes over few configurations, the regime where a model can memorise them (the thing to measure).

References
----------
[BM23] Biroli & Mezard (2023), arXiv:2306.03518.
[BBBM24] Biroli, Bonnaire, de Bortoli & Mezard (2024), arXiv:2402.18491: collapse time ``t_C``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import xarray as xr

from .._util import check_positive_int, check_real
from . import _curie_weiss as C
from . import register

__all__ = ["Params", "run", "plot", "TINY", "epochs_for_steps"]

#: Overrides for a run of a few seconds on one core (tests).
TINY = dict(N=8, P=(16, 64), steps=6, n_generate=200, T=25, hidden=16)


@register("state-weights", title="Curie-Weiss state weights and memorisation against the training-set size P")
@dataclass(frozen=True)
class Params:
    """Parameters of the state-weights study (defaults: the quick settings)."""

    N: int = field(default=64, metadata={"help": "number of spins", "coord": True})
    beta: float = field(default=1.5, metadata={"help": "inverse temperature", "coord": True})
    H: float = field(default=0.5, metadata={"help": "total field; per-spin h = H / N", "coord": True})
    P: tuple[int, ...] = field(default=(16, 64, 256, 1024, 4096), metadata={"help": "training-set sizes"})
    steps: int = field(default=0, metadata={"help": "optimizer steps per model (0: the quick preset's epochs x 63 "
                                                    "minibatches; none at its 0 epochs, the least-squares fit only)"})
    epochs: int = field(default=0, metadata={"help": "the same number of epochs for every P instead of steps (0: off)"})
    n_generate: int = field(default=4000, metadata={"help": "generated samples per model"})
    T: int = field(default=100, metadata={"help": "diffusion steps of the models"})
    hidden: int = field(default=160, metadata={"help": "hidden units per net"})
    seed: int = field(default=0, metadata={"help": "seed of the data, the training and the measurements",
                                           "coord": True})
    device: str = field(default="cpu", metadata={"help": "torch device: cpu, auto or cuda[:N]"})

    def __post_init__(self):
        check_positive_int("N", self.N, minimum=2)
        check_real("beta", self.beta, lo=0.0)
        check_real("H", self.H)
        if not self.P:
            raise ValueError("P must list at least one training-set size")
        for P in self.P:
            check_positive_int("P", P, minimum=2)
        check_positive_int("steps", self.steps, minimum=0)
        check_positive_int("epochs", self.epochs, minimum=0)
        if self.steps and self.epochs:
            raise ValueError("give steps (the same number of optimizer steps for every P) or epochs, not both")
        check_positive_int("n_generate", self.n_generate, minimum=2)
        check_positive_int("T", self.T, minimum=21)  # the rescaled linear schedule needs T > 20
        check_positive_int("hidden", self.hidden)
        check_positive_int("seed", self.seed, minimum=0)


def epochs_for_steps(steps: int, P: int, batch: int) -> int:
    """Epochs giving at least ``steps`` optimizer steps on ``P`` points in minibatches of
    ``min(batch, P)``: ``ceil(steps / ceil(P / min(batch, P)))``, at least 1."""
    steps, P, batch = (check_positive_int(n, v) for n, v in (("steps", steps), ("P", P), ("batch", batch)))
    return max(1, math.ceil(steps / math.ceil(P / min(batch, P))))


def _plan(p: Params) -> list[tuple[int, int, int]]:
    """``(P, epochs, optimizer steps)`` per training-set size, sorted by ``P``."""
    from .. import ddpm

    cfg = ddpm.get_config("curie-weiss", "quick")
    steps = p.steps or cfg.epochs * math.ceil((cfg.n_train or 4000) / cfg.batch)
    plan = []
    for P in sorted(set(p.P)):
        E = p.epochs or (epochs_for_steps(steps, P, cfg.batch) if steps else 0)
        plan.append((P, E, E * math.ceil(P / min(cfg.batch, P))))
    return plan


def run(params: Params, progress: bool = False) -> dict[str, xr.Dataset]:
    """Train one model per ``P`` and measure its state weights and memorisation.

    Returns
    -------
    dict
        ``state_weights`` (per model, sorted by ``P``: ``share_plus``, ``ratio`` with errors, the
        training set's own share, ``z_exact``, ``epochs``, ``optimizer_steps``; the exact and large-N
        values as attrs) and ``memorization`` (copies of training configurations, of rare ones, mean
        largest overlap, each with fresh-sample and independent-set controls; ``collapse_time``).
    """
    p = params
    h = p.H / p.N
    plan = _plan(p)
    models, train_sets = [], []
    for P, E, _ in plan:
        model, x0 = C.train(N=p.N, beta=p.beta, h=h, n_train=P, seed=p.seed, device=p.device, progress=progress,
                            epochs=E, T=p.T, hidden=p.hidden)
        models.append(model)
        train_sets.append(x0)
    sw, mem = C.state_weight_datasets(models, train_sets, n_generate=p.n_generate,
                                      seed=np.random.default_rng([p.seed, 0x5A7E]))
    sw["epochs"] = C.var("model", np.asarray([E for _, E, _ in plan]), "training epochs of the model")
    sw["optimizer_steps"] = C.var("model", np.asarray([n for _, _, n in plan]), "optimizer steps of the model")
    sw.attrs["training"] = "fixed epochs" if p.epochs else "fixed optimizer steps"
    return {"state_weights": sw, "memorization": mem}


def plot(datasets: dict[str, xr.Dataset]) -> dict:
    """One figure, ``state_weights``: shares, ratios and memorisation against ``P``."""
    return {"state_weights": C.plot_state_weights(datasets["state_weights"], datasets["memorization"])}
