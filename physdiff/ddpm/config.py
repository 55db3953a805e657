"""The hyper-parameters of a DDPM training run: :class:`TrainConfig` (JSON round trip).

Its own room so that :mod:`.train` (training), :mod:`.sample` (the trained model) and
:mod:`.checkpoint` (files) all import it without importing each other in a cycle.

References
----------
[Ho20] Ho, Jain, Abbeel (2020), arXiv:2006.11239: eq. 12 (weighted loss); eq. 14 (L_simple).
[Thesis] Bustinduy de la Guerra (2024), Out-of-Equilibrium Machine Learning, Table 2.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._util import check_positive_int, check_real
from ..schedules import SCHEDULES, Schedule
from .model import ACTIVATIONS

__all__ = ["TrainConfig", "LOSSES", "SIGMAS", "INITS"]

INITS = ("random", "gaussian", "lstsq")
LOSSES = ("simple", "weighted")
SIGMAS = ("beta", "posterior")


def _default_schedule() -> dict:
    return {"name": "linear", "beta_start": 1e-4, "beta_end": 0.02}


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one training run (JSON round-trip with :meth:`to_dict` / :meth:`from_dict`).

    Parameters
    ----------
    schedule : dict
        Noise schedule without ``T``: ``{"name": ..., **params}`` for
        :func:`physdiff.schedules.make_schedule` (``{"name": "custom", "betas": [...]}`` for explicit
        betas of length ``T``). An extra key ``"reference_T": R`` rescales ``beta_start`` and
        ``beta_end`` by ``R / T``, so a linear schedule with fewer steps still ends near the same
        ``alpha_bar_T`` (e.g. ``T = 100``: betas from 1e-3 to 0.2).
    T : int
        Number of diffusion steps = number of nets.
    hidden : int
        Hidden units per net.
    activation : {"relu", "linear"}
    loss : {"simple", "weighted"}
        ``"simple"``: ``mean (eps - eps_theta)^2`` [Ho20, eq. 14]; ``"weighted"``: that times
        ``beta_t^2 / (2 sigma_t^2 alpha_t (1 - alpha_bar_t))`` [Ho20, eq. 12; Thesis eq. 19]; see
        :func:`loss_weights`.
    lr : float
        Adam learning rate.
    lr_first, lr_first_steps : float or None, int
        Learning rate ``lr_first`` for steps ``t <= lr_first_steps`` (the thesis: 1e-4 for the
        first 4 steps, 2e-4 after). ``lr_first=None`` means ``lr``.
    epochs : int
        Passes of Adam over the data, for every net. 0 leaves every net at its start: with
        ``init="lstsq"`` a model fitted by least squares, with ``init="gaussian"`` the Gaussian fit's
        exact DDPM (refused with ``init="random"``).
    batch : int
        Minibatch size per net (reduced to ``n`` if the data has fewer points).
    chunk : int or None
        Nets trained at once (memory ~ linear in it); None picks one from a memory budget and,
        on the CPU, a cache budget (``physdiff.ddpm.train._auto_chunk``).
    seed : int or None
        Seed of the initialisation, minibatch orders and noise; None draws one at the start of
        training (and stores it in the trained model's config).
    device : str
        ``"auto"`` (cuda if available), ``"cpu"``, ``"cuda"``, ``"cuda:N"``.
    sigma : {"beta", "posterior"}
        Reverse-step variance ``sigma_t^2`` (``beta_t`` or ``beta_tilde_t`` [Ho20, Sec. 3.2]), used by
        sampling and by the weighted loss.
    init : {"random", "gaussian"}
        ``"random"``: every net initialised like ``nn.Linear``. ``"gaussian"``: every net starts as the
        exact noise predictor of the Gaussian fit ``N(mean, cov)`` of the training data (see
        :meth:`StackedAutoencoders.init_gaussian`), so training learns only the non-Gaussian part;
        needs ``hidden >= d``. ``"lstsq"``: the Gaussian start, plus the ``hidden - d`` spare units
        along random data-aligned directions with their second layer fitted by least squares on
        noised training data (:func:`physdiff.ddpm.lstsq.init_lstsq`), so that training starts past
        the plateau of the symmetry-breaking direction; needs ``hidden >= d`` (for linear nets it is
        the Gaussian start, already their least-squares optimum).
    n_train : int or None
        Number of training points the preset was tuned for (informational: the CLI uses it to
        generate synthetic data; :func:`train` uses every row of ``x0``).
    """

    schedule: dict = field(default_factory=_default_schedule)
    T: int = 1000
    hidden: int = 128
    activation: str = "relu"
    loss: str = "simple"
    lr: float = 1e-3
    lr_first: float | None = None
    lr_first_steps: int = 0
    epochs: int = 10
    batch: int = 64
    chunk: int | None = None
    seed: int | None = 0
    device: str = "auto"
    sigma: str = "beta"
    n_train: int | None = None
    init: str = "random"

    def __post_init__(self) -> None:
        if not isinstance(self.schedule, dict) or "name" not in self.schedule:
            raise ValueError(f"schedule must be a dict with a 'name' key, e.g. {_default_schedule()}, "
                             f"got {self.schedule!r}")
        if "T" in self.schedule:
            raise ValueError("give the number of steps as TrainConfig.T, not inside the schedule dict")
        object.__setattr__(self, "schedule", dict(self.schedule))
        check_positive_int("T", self.T)
        check_positive_int("hidden", self.hidden)
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if self.sigma not in SIGMAS:
            raise ValueError(f"sigma must be one of {SIGMAS}, got {self.sigma!r}")
        check_real("lr", self.lr, lo=0.0, lo_open=True)
        if self.lr_first is not None:
            check_real("lr_first", self.lr_first, lo=0.0, lo_open=True)
        check_positive_int("lr_first_steps", self.lr_first_steps, minimum=0)
        check_positive_int("epochs", self.epochs, minimum=0)
        check_positive_int("batch", self.batch)
        if self.chunk is not None:
            check_positive_int("chunk", self.chunk)
        if self.seed is not None:
            check_positive_int("seed", self.seed, minimum=0)
        if self.n_train is not None:
            check_positive_int("n_train", self.n_train)
        if self.init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {self.init!r}")
        if self.epochs == 0 and self.init == "random":
            raise ValueError("epochs=0 would leave the randomly initialised nets untrained; "
                             "use init='lstsq' or 'gaussian', or epochs >= 1")
        if not isinstance(self.device, str):
            raise ValueError(f"device must be a string ('auto', 'cpu', 'cuda'), got {self.device!r}")
        self.make_schedule()  # validates the schedule

    def make_schedule(self) -> Schedule:
        """The :class:`~physdiff.schedules.Schedule` of this config (``T`` steps).

        Raises ``ValueError`` if the schedule dict does not build (unknown name or parameter, betas
        outside (0, 1) after rescaling).
        """
        s = dict(self.schedule)
        name = s.pop("name")
        if name == "custom":
            betas = s.pop("betas", None)
            if betas is None or len(betas) != self.T or s:
                raise ValueError(f"a custom schedule needs exactly 'betas' of length T={self.T}")
            return Schedule.from_betas(np.concatenate([[0.0], np.asarray(betas, dtype=np.float64)]))
        if name not in SCHEDULES:
            raise ValueError(f"unknown schedule {name!r}; choose one of {sorted(SCHEDULES)} or 'custom'")
        ref = s.pop("reference_T", None)
        if ref is not None:
            ref = check_positive_int("reference_T", ref)
            if name == "cosine":
                raise ValueError("reference_T rescales beta_start/beta_end; the cosine schedule has none")
            scale = ref / self.T
            s["beta_start"] = s.get("beta_start", 1e-4) * scale
            s["beta_end"] = s.get("beta_end", 0.02) * scale
            if s["beta_end"] >= 1.0:
                raise ValueError(
                    f"T={self.T} is too few steps for this schedule: rescaled from {ref} steps its betas reach "
                    f"{s['beta_end']:.3g} >= 1; use T > {int(np.ceil(ref * s['beta_end'] / scale))} "
                    "(or give an explicit schedule)")
        from ..schedules import make_schedule

        return make_schedule(name, self.T, **s)

    def lr_per_step(self) -> np.ndarray:
        """Learning rate of each net, float64 (T,), index ``t - 1`` for step ``t``."""
        lrs = np.full(self.T, float(self.lr))
        if self.lr_first is not None and self.lr_first_steps > 0:
            lrs[: min(self.lr_first_steps, self.T)] = float(self.lr_first)
        return lrs

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict of every field."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        """Inverse of :meth:`to_dict`; ``ValueError`` on unknown keys (naming the valid ones)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown TrainConfig field(s) {sorted(unknown)}; valid: {sorted(names)}")
        return cls(**d)

    def replace(self, **changes) -> "TrainConfig":
        """A copy with ``changes`` applied (validated); ``ValueError`` on unknown fields."""
        names = {f.name for f in dataclasses.fields(self)}
        unknown = set(changes) - names
        if unknown:
            raise ValueError(f"unknown TrainConfig field(s) {sorted(unknown)}; valid: {sorted(names)}")
        return dataclasses.replace(self, **changes)
