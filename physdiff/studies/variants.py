"""Loss weighting, noise schedule and number of steps of the per-timestep DDPM: every variant trained
on the same data with the same seed, with an SGD control for Adam's scale invariance.

    physdiff study variants --out runs/variants                                 # quick, Swiss roll
    physdiff study variants --variants simple,weighted --epochs 20 --out runs/v

Variants (:data:`VARIANTS`; each is the base config with a few fields changed):

``simple``           the base: [Ho20]'s linear schedule rescaled to ``T = 100`` steps (betas 1e-3..0.2,
                     ``alpha_bar_T = 2.0e-5``, as the quick presets), ``L_simple`` [Ho20, eq. 14];
``weighted``         the same with the weighted loss ``w_t |eps - eps_theta|^2``,
                     ``w_t = beta_t^2 / (2 sigma_t^2 alpha_t (1 - alpha_bar_t))`` [Ho20, eq. 12]
                     (``sigma_t^2 = beta_t``: ``w_t`` from 0.50 to 0.125, a span of 9.6);
``cosine``           the cosine schedule [ND21, eq. 17], ``T = 100``, ``L_simple`` (``alpha_bar_T = 2.4e-7``);
``cosine-weighted``  cosine with the weighted loss (``w_t`` from 0.50 to 500: a span of 1.6e4);
``T40``, ``T1000``   the linear schedule with 40 and 1000 steps, betas scaled by ``1000 / T`` so that
                     the chain still ends near N(0, I): ``alpha_bar_T = 4.2e-6`` and ``4.0e-5``
                     (physical time 6.2 and 5.1); ``T = 1000`` is [Ho20]'s own 1e-4..0.02;
``pow2-weighted``    the weights of ``weighted`` rounded to powers of two: float32 scales ``w g``, ``m``
                     and ``v`` EXACTLY, so this run differs from ``simple`` only through Adam's ``eps``;
``jitter``           ``L_simple`` times ``1 + 2^-20``: Adam removes the scale, so it differs from
                     ``simple`` only by float32 rounding (the floor that any perturbation reaches);
``sgd``, ``sgd-weighted``  the control: the base and weighted runs with plain SGD instead of Adam.

Why the weighting barely matters here
------------------------------------
(``docs/theory.md``, "Sohl-Dickstein et al. 2015: the bound K": one Adam per timestep cancels the
weights.)
The trainer (:func:`physdiff.ddpm.train`) gives EVERY net every minibatch: net ``t`` draws its own
permutation of the data and its own noise from a generator seeded by ``(seed, t, epoch)``, whatever
the loss, and the loss is the SUM over timesteps of ``w_t`` times each net's mean loss; so net ``t``'s
gradient is exactly ``w_t`` times its ``L_simple`` gradient, with the same initial weights and the
same data and noise in both runs. Adam [KB15] is elementwise, and its step ``lr m_hat / (sqrt(v_hat)
+ eps)`` with ``g -> w g`` is ``lr m_hat / (sqrt(v_hat) + eps / w)``: unchanged except through
``eps`` (1e-8). Weighted and unweighted training therefore take the same steps up to a relative
``eps / (w sqrt(v_hat))`` and float rounding. The study measures the per-timestep relative distance
between the two parameter vectors after every epoch (``param_rel_diff_epoch``) and at the end
(``param_rel_diff``), beside the weights (``loss_weight``). Training is chaotic: any difference,
even one float32 rounding (``jitter``), grows epoch after epoch, so the distance of the Adam pairs is
to be read against the ``jitter`` and ``pow2-weighted`` pairs. The control breaks the invariance:
SGD's step ``lr w_t g`` turns the weight into a per-timestep learning rate. With a single network
shared by all timesteps and ``t`` drawn per example [Ho20, Algorithm 1] the weights would change
which timesteps dominate the shared gradient; that is where [Ho20] found ``L_simple`` better, and it
does not apply here.

Quality numbers per variant: the sliced-Wasserstein and energy distances of ``n_samples`` samples to
fresh spiral data over those between two fresh draws (:func:`physdiff.metrics.swiss_roll_quality`),
the held-out ``L_simple`` per step (``heldout_mse``) and the bound K [SD15, eq. 14] of the model in
bits per sample (:func:`physdiff.sd15.ddpm_bound_K`, on held-out data, in the data's own units).
``--dataset mnist`` trains on the MNIST train split's zeros and ones and evaluates on the test
split's (untuned: pass e.g. ``--hidden 1600 --lr 1e-4 --sgd-lr 0.01 --epochs 5 --n-train 0
--n-samples 256 --n-eval 200 --chunk 0``).

References
----------
[Ho20] Ho, Jain, Abbeel (2020), arXiv:2006.11239: Algorithm 1, eqs. 12 and 14, Sec. 3.2.
[ND21] Nichol, Dhariwal (2021), arXiv:2102.09672: cosine schedule, eq. 17.
[KB15] Kingma, Ba (2015), Adam, arXiv:1412.6980, Algorithm 1.
[SD15] Sohl-Dickstein et al. (2015), arXiv:1503.03585: the bound K, eq. 14.
[Thesis] Bustinduy de la Guerra (2024): weighted vs unweighted loss, the per-timestep model.
"""

from __future__ import annotations

import functools
import json
import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import xarray as xr

from .._util import check_positive_int, check_real
from . import register

__all__ = ["Params", "run", "plot", "TINY", "VARIANTS", "DEFAULT_VARIANTS", "param_rel_diff"]

#: Variant name -> ``{"overrides": TrainConfig fields, "optimizer": "adam" | "sgd", "weights": None |
#: "pow2" | "jitter", "label": str}``.
VARIANTS: dict[str, dict] = {
    "simple": {"overrides": {}, "label": "linear T=100, L_simple"},
    "weighted": {"overrides": {"loss": "weighted"}, "label": "linear T=100, weighted"},
    "cosine": {"overrides": {"schedule": {"name": "cosine"}}, "label": "cosine T=100, L_simple"},
    "cosine-weighted": {"overrides": {"schedule": {"name": "cosine"}, "loss": "weighted"},
                        "label": "cosine T=100, weighted"},
    "T40": {"overrides": {"T": 40}, "label": "linear T=40, L_simple"},
    "T1000": {"overrides": {"T": 1000}, "label": "linear T=1000, L_simple"},
    "pow2-weighted": {"overrides": {"loss": "weighted"}, "weights": "pow2",
                      "label": "linear T=100, eq. 12 weights rounded to 2^k"},
    "jitter": {"overrides": {}, "weights": "jitter", "label": "linear T=100, L_simple x (1 + 2^-20)"},
    "sgd": {"overrides": {}, "optimizer": "sgd", "label": "SGD: linear T=100, L_simple"},
    "sgd-weighted": {"overrides": {"loss": "weighted"}, "optimizer": "sgd", "label": "SGD: linear T=100, weighted"},
}
DEFAULT_VARIANTS = ("simple", "weighted", "pow2-weighted", "jitter", "cosine", "cosine-weighted", "T40", "T1000",
                    "sgd", "sgd-weighted")
JITTER = 1.0 + 2.0**-20
DATASETS = {"swiss-roll": "swiss-roll-2", "mnist": "mnist"}   # dataset -> ddpm.get_config preset key
#: Parameters are recorded after every epoch for variants with at most this many steps (memory:
#: epochs x T x (2 d H + H + d) float32 each).
EPOCH_TRACK_MAX_T = 200
SIGMAS = ("beta", "posterior")

#: Overrides for a run of a few seconds on one core (tests).
TINY = dict(variants="simple,weighted,sgd", n_train=200, epochs=2, hidden=8, n_samples=50, n_eval=40)


@register("variants", title="Loss weighting, schedule and T of the per-timestep DDPM, with an SGD control")
@dataclass(frozen=True)
class Params:
    """Parameters of the variants study (defaults: the quick Swiss-roll settings, ~3.5 min on 2 quiet
    cores with ``--threads 1``)."""

    variants: str = field(default=",".join(DEFAULT_VARIANTS),
                          metadata={"help": f"comma-separated variants, of: {', '.join(VARIANTS)}"})
    dataset: str = field(default="swiss-roll", metadata={"help": "swiss-roll or mnist (digits 0 and 1, untuned)"})
    n_train: int = field(default=5000, metadata={"help": "training points (0: the whole MNIST train split)"})
    epochs: int = field(default=40, metadata={"help": "epochs of every variant"})
    hidden: int = field(default=128, metadata={"help": "hidden units per net"})
    batch: int = field(default=100, metadata={"help": "minibatch"})
    lr: float = field(default=1e-2, metadata={"help": "Adam learning rate (the thesis' Swiss-roll value)"})
    sgd_lr: float = field(default=0.1, metadata={"help": "SGD learning rate of the control (Adam's would make "
                                                         "SGD's steps ~100x too small)"})
    n_samples: int = field(default=2000, metadata={"help": "samples per variant for the quality numbers"})
    n_eval: int = field(default=2000, metadata={"help": "held-out points for L_simple and K"})
    chunk: int = field(default=50, metadata={"help": "nets per batched matmul (0: the trainer's choice)"})
    bound: bool = field(default=True, metadata={"help": "compute the bound K of every variant"})
    turns: float = field(default=2.0, metadata={"help": "Swiss roll turns: 2 (the thesis' 2 pi roll) or 3"})
    data_dir: str = field(default="", metadata={"help": "MNIST directory (empty: the default search path)"})
    seed: int = field(default=0, metadata={"help": "random seed (data, training, sampling)", "coord": True})
    device: str = field(default="cpu", metadata={"help": "torch device of training: cpu, auto, cuda[:N]"})

    def __post_init__(self):
        names = self.variant_names
        unknown = [v for v in names if v not in VARIANTS]
        if unknown:
            raise ValueError(f"variants: unknown {', '.join(map(repr, unknown))}; known: {', '.join(VARIANTS)}")
        if not names or len(set(names)) != len(names):
            raise ValueError(f"variants must name distinct variants, got {self.variants!r}")
        if self.dataset not in DATASETS:
            raise ValueError(f"dataset must be one of {', '.join(DATASETS)}, got {self.dataset!r}")
        for name in ("epochs", "hidden", "batch", "n_samples", "n_eval"):
            check_positive_int(name, getattr(self, name))
        for name in ("n_train", "chunk", "seed"):
            check_positive_int(name, getattr(self, name), minimum=0)
        if self.dataset == "swiss-roll" and self.n_train < 2:
            raise ValueError(f"n_train must be >= 2 for the Swiss roll, got {self.n_train}")
        check_real("lr", self.lr, lo=0.0, lo_open=True)
        check_real("sgd_lr", self.sgd_lr, lo=0.0, lo_open=True)
        if self.dataset == "swiss-roll" and self.turns not in (2.0, 3.0):
            raise ValueError(f"turns must be 2 or 3 (the thesis' rolls, whose noise is known), got {self.turns}")
        if not isinstance(self.device, str) or not self.device:
            raise ValueError(f"device must be a torch device name (cpu, auto, cuda), got {self.device!r}")

    @property
    def variant_names(self) -> list[str]:
        return [v.strip() for v in self.variants.split(",") if v.strip()]


# ---------------------------------------------------------------------------------------------
# the control optimiser and the loss weights
# ---------------------------------------------------------------------------------------------

class _StackedSGD:
    """Plain SGD over stacked per-timestep tensors, ``p <- p - lr_t g`` (the control of the study).

    The interface of :class:`physdiff.ddpm.StackedAdam` (``step(grads)``, ``step_count``,
    ``state_tensors``), so :func:`physdiff.ddpm.train` runs it unchanged. Unlike Adam it is NOT
    invariant to a per-timestep loss weight: the weight multiplies the step.

    Parameters
    ----------
    params : list of Tensor, each (C, ...)
    lr : array-like (C,)
        Learning rate per timestep (> 0).
    """

    def __init__(self, params, lr, **_ignored):
        import torch

        self.params = list(params)
        lr = np.asarray(lr, dtype=np.float64).reshape(-1)
        if lr.size != self.params[0].shape[0] or not np.all(np.isfinite(lr)) or np.any(lr <= 0):
            raise ValueError(f"lr must hold one finite value > 0 per timestep ({self.params[0].shape[0]}), got {lr}")
        self.lr = torch.as_tensor(lr, dtype=self.params[0].dtype, device=self.params[0].device)
        self.step_count = 0

    def step(self, grads) -> None:
        """One step ``p -= lr_t g`` (broadcast along the timestep axis)."""
        import torch

        self.step_count += 1
        with torch.no_grad():
            for p, g in zip(self.params, grads):
                p.sub_(self.lr.view(-1, *([1] * (p.ndim - 1))) * g)

    def state_tensors(self, names) -> dict:
        """SGD has no state (for the trainer's checkpoints)."""
        return {}

    def load_state_tensors(self, names, tensors, step_count: int) -> None:
        self.step_count = int(step_count)


def _loss_weights(kind: str | None, schedule, config) -> np.ndarray:
    """The per-step loss weights of a variant: the config's (``None``), [Ho20] eq. 12 rounded to powers
    of two (``"pow2"``, exact float scaling), or ``1 + 2^-20`` (``"jitter"``)."""
    from ..ddpm import loss_weights

    if kind is None:
        return loss_weights(schedule, config.loss, config.sigma)
    if kind == "pow2":
        return 2.0 ** np.round(np.log2(loss_weights(schedule, "weighted", config.sigma)))
    if kind == "jitter":
        return np.full(schedule.T, JITTER)
    raise ValueError(f"weights must be None, 'pow2' or 'jitter', got {kind!r}")


# ---------------------------------------------------------------------------------------------
# measurements
# ---------------------------------------------------------------------------------------------

def _record_epoch(hist: np.ndarray, ddpm_model, steps, epoch: int) -> None:
    """``on_epoch`` hook of :func:`physdiff.ddpm.train`: store the chunk's parameters (float32, exact)."""
    a, b = steps[0] - 1, steps[-1]
    hist[epoch, a:b] = np.concatenate([getattr(ddpm_model.model, nm).detach()[a:b].cpu().numpy().reshape(b - a, -1)
                                       for nm in ("W1", "b1", "W2", "b2")], axis=1)


def _flat_params(model) -> np.ndarray:
    """The nets' parameters as float64 (T, P): W1, b1, W2, b2 of each net, flattened."""
    T = model.T
    return np.concatenate([getattr(model, nm).detach().cpu().double().numpy().reshape(T, -1)
                           for nm in ("W1", "b1", "W2", "b2")], axis=1)


def _initial_params(config, x0: np.ndarray) -> np.ndarray:
    """The parameters :func:`physdiff.ddpm.train` starts from for ``config`` and ``x0`` (T, P)."""
    from ..ddpm import initial_nets

    return _flat_params(initial_nets(x0, config))


def param_rel_diff(a: np.ndarray, b: np.ndarray, init: np.ndarray | None = None) -> np.ndarray:
    """Per-timestep relative distance between two parameter sets, float64 (T,).

    ``|a_t - b_t| / |b_t - init_t|`` (the difference over the distance training moved ``b``) when
    ``init`` is given, else ``|a_t - b_t| / |b_t|``; Euclidean norms over each net's parameters.

    Parameters
    ----------
    a, b : array (T, P)
    init : array (T, P), optional

    Raises
    ------
    ValueError
        Shapes differ.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2 or (init is not None and np.shape(init) != a.shape):
        raise ValueError(f"parameter arrays must share one (T, P) shape, got {a.shape}, {b.shape}"
                         f"{'' if init is None else ', ' + str(np.shape(init))}")
    ref = b if init is None else b - np.asarray(init, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.linalg.norm(a - b, axis=1) / np.linalg.norm(ref, axis=1)


def _heldout_mse(model, x: np.ndarray, seed) -> np.ndarray:
    """``L_simple`` of every net on held-out data, per step (T,): ``mean |eps - eps_theta(x_t)|^2 / d``."""
    sched = model.schedule
    rng = np.random.default_rng(seed)
    out = np.empty(sched.T)
    for t in range(1, sched.T + 1):
        eps = rng.standard_normal(x.shape)
        x_t = math.sqrt(sched.alpha_bar[t]) * x + math.sqrt(1.0 - sched.alpha_bar[t]) * eps
        out[t - 1] = float(np.mean((model.eps(x_t.astype(np.float32), t) - eps) ** 2))
    return out


# ---------------------------------------------------------------------------------------------
# the study
# ---------------------------------------------------------------------------------------------

@dataclass
class _Data:
    x0: np.ndarray                 # training data (n, d)
    x_eval: np.ndarray             # held-out data for L_simple and K
    exact_ll: float                # exact E log2 q(x0) on x_eval (NaN if unknown)
    quality: Callable              # samples -> dict of quality numbers


def _load_data(p: Params) -> _Data:
    from .. import datasets, metrics

    if p.dataset == "swiss-roll":
        from ..theory.swiss_roll import swiss_roll_log_density

        x0 = datasets.swiss_roll(p.n_train, turns=p.turns, seed=p.seed)
        x_eval = datasets.swiss_roll(p.n_eval, turns=p.turns, seed=np.random.default_rng([p.seed, 1]))
        noise = {2.0: 0.1, 3.0: 1.0}.get(float(p.turns))    # the thesis' noise (datasets.swiss_roll's default)
        # the exact E log2 q(x0) on the held-out points: the upper limit of every K (same units)
        exact = (float(np.mean(swiss_roll_log_density(x_eval, p.turns, noise)) / math.log(2.0))
                 if noise is not None else float("nan"))
        return _Data(x0, x_eval, exact, lambda x: metrics.swiss_roll_quality(x, turns=p.turns, seed=p.seed))
    data_dir = p.data_dir or None
    x0, _ = datasets.load_mnist(data_dir, split="train", digits=[0, 1])
    x_held = datasets.load_mnist(data_dir, split="test", digits=[0, 1])[0]
    if p.n_train:
        x0 = x0[: p.n_train]
    clf = metrics.mnist_classifier(data_dir)        # the cached quality classifier, one for every variant
    return _Data(x0, x_held[: p.n_eval], float("nan"),
                 lambda x: metrics.mnist_quality(x, clf, x0, [0, 1], heldout_x=x_held, seed=p.seed))


def _configs(p: Params) -> dict:
    """Each variant's TrainConfig: the quick preset with the study's settings and its overrides."""
    from .. import ddpm

    base = ddpm.get_config(DATASETS[p.dataset], "quick", seed=p.seed, device=p.device, epochs=p.epochs,
                           hidden=p.hidden, batch=p.batch, lr=p.lr, chunk=p.chunk or None)
    configs = {}
    for name in p.variant_names:
        spec = VARIANTS[name]
        cfg = base.replace(**spec["overrides"])
        if spec.get("optimizer") == "sgd":
            cfg = cfg.replace(lr=p.sgd_lr, lr_first=None)
        configs[name] = cfg
    return configs


def _train_variant(name: str, config, data: _Data, p: Params, progress: bool) -> dict:
    """Train one variant; its quality numbers, per-step curves, parameters and samples."""
    from .. import ddpm, sd15

    spec = VARIANTS[name]
    history = None
    on_epoch = None
    if config.T <= EPOCH_TRACK_MAX_T:
        d = data.x0.shape[1]
        history = np.full((config.epochs, config.T, 2 * d * config.hidden + config.hidden + d), np.nan,
                          dtype=np.float32)
        on_epoch = functools.partial(_record_epoch, history)
    schedule = config.make_schedule()
    w = _loss_weights(spec.get("weights"), schedule, config)
    t0 = time.perf_counter()
    model = ddpm.train(data.x0, config, progress=progress, log=None, metadata={"dataset": p.dataset},
                       on_epoch=on_epoch, weights=w, optimizer=_StackedSGD if spec.get("optimizer") == "sgd" else None)
    seconds = time.perf_counter() - t0
    # the same sampling noise for every variant (common random numbers): equal models, equal samples
    x = model.sample(p.n_samples, seed=np.random.default_rng([p.seed, 2]))
    x = np.where(np.isfinite(x), x, np.nan).astype(np.float32)
    row = {}
    if np.all(np.isfinite(x)):
        row = {k: float(v) for k, v in data.quality(x).items() if np.ndim(v) == 0 and k != "n"}
    K = np.full((len(SIGMAS), 2), np.nan)
    if p.bound:
        res = sd15.ddpm_bound_K(model.eps, data.x_eval, model.schedule, seed=np.random.default_rng([p.seed, 4]))
        K = np.array([[res[s].bits, res[s].stderr] for s in SIGMAS])
    sched = model.schedule
    return {"row": row, "K": K, "seconds": seconds, "samples": x, "params": _flat_params(model.model),
            "history": history, "loss_weight": w, "heldout_mse": _heldout_mse(model, data.x_eval, seed=p.seed + 3),
            "train_mse": model.loss_history[-1] / w, "alpha_bar": sched.alpha_bar[1:],
            "time": sched.physical_time[1:]}


def _pair_key(config, optimizer: str) -> str:
    return json.dumps([config.replace(loss="simple").to_dict(), optimizer], sort_keys=True)


def _pairs(names: list[str], configs: dict) -> list[tuple[str, str]]:
    """(reference, other): a variant that differs from a plain ``L_simple`` one only in its loss
    weights (same config but the loss, same optimiser), with that reference."""
    def opt(n):
        return VARIANTS[n].get("optimizer", "adam")

    by_key = {}
    for n in names:
        if configs[n].loss == "simple" and VARIANTS[n].get("weights") is None:
            by_key.setdefault(_pair_key(configs[n], opt(n)), n)
    pairs = []
    for n in names:
        ref = by_key.get(_pair_key(configs[n], opt(n)))
        if ref is not None and ref != n:
            pairs.append((ref, n))
    return pairs


def _pair_measures(ref: str, other: str, trained: dict, init: np.ndarray) -> dict:
    a, b = trained[other], trained[ref]
    ep = np.full(b["history"].shape[0] if b["history"] is not None else 1, np.nan)
    if a["history"] is not None and b["history"] is not None:
        ep = np.array([np.median(param_rel_diff(a["history"][e], b["history"][e], init)) for e in range(ep.size)])
    return {"rel": param_rel_diff(a["params"], b["params"], init), "rel_norm": param_rel_diff(a["params"], b["params"]),
            "epoch": ep}


def run(params: Params, progress: bool = False) -> dict[str, xr.Dataset]:
    """Train every variant on the same data with the same seed; quality, K, and the pairs' distances.

    Returns
    -------
    dict
        ``{"variants": ds}``: dims ``variant``, ``step`` (1..max T; NaN beyond a variant's own T),
        ``pair``, ``epoch``, ``sample``, ``feature``, ``sigma``. Per variant: coords ``label``, ``T``,
        ``schedule``, ``loss``, ``optimizer``, ``weights``; quality numbers (Swiss roll:
        ``sliced_wasserstein``, ``sliced_wasserstein_baseline``, ``sliced_wasserstein_ratio``,
        ``energy_distance``, ``energy_distance_baseline``, ``energy_distance_ratio``; MNIST:
        :func:`physdiff.metrics.mnist_quality`'s scalars), ``K(variant, sigma)``, ``K_stderr``
        (bits per sample on held-out data, ``sigma^2 = beta_t`` or ``beta_tilde_t``); per step
        ``loss_weight``, ``heldout_mse``, ``train_mse`` (last epoch's ``L_simple``), coords
        ``alpha_bar`` and ``time`` (physical time); samples ``x(variant, sample, feature)``. Per
        pair: coords ``pair_reference``, ``pair_other``; ``param_rel_diff(pair, step)``
        (``|theta_w - theta_s| / |theta_s - theta_init|`` per net at the end),
        ``param_rel_diff_norm(pair, step)`` (over ``|theta_s|``), ``param_rel_diff_epoch(pair,
        epoch)`` (median over steps after every epoch; variants with ``T <= 200``). Scalar
        ``exact_log_likelihood`` (Swiss roll). Attr ``train_seconds`` (per variant).
    """
    p = params
    names = p.variant_names
    data = _load_data(p)
    configs = _configs(p)
    trained = {n: _train_variant(n, configs[n], data, p, progress) for n in names}
    pairs = _pairs(names, configs)
    inits = {}
    measures = {}
    for ref, other in pairs:
        if ref not in inits:
            inits[ref] = _initial_params(configs[ref], data.x0)
        measures[(ref, other)] = _pair_measures(ref, other, trained, inits[ref])
    return {"variants": _dataset(p, names, configs, trained, pairs, measures, data.exact_ll)}


# ---------------------------------------------------------------------------------------------
# the Dataset
# ---------------------------------------------------------------------------------------------

_QUALITY_NAMES = {
    "sliced_wasserstein": "sliced 2-Wasserstein distance of the samples to fresh data",
    "sliced_wasserstein_baseline": "sliced 2-Wasserstein distance between two fresh draws of the data",
    "sliced_wasserstein_ratio": "sliced_wasserstein / sliced_wasserstein_baseline",
    "energy_distance": "energy distance of the samples to fresh data",
    "energy_distance_baseline": "energy distance between two fresh draws of the data",
    "energy_distance_ratio": "energy_distance / energy_distance_baseline",
}


def _attrs(units: str, long_name: str, **kw) -> dict:
    return {"units": units, "long_name": long_name, **kw}


def _per_variant_vars(names, trained, T_max: int) -> dict:
    def pad(v):
        a = np.full(T_max, np.nan)
        a[: len(v)] = v
        return a

    keys = sorted({k for n in names for k in trained[n]["row"]})
    data = {k: ("variant", np.array([trained[n]["row"].get(k, np.nan) for n in names]),
                _attrs("1", _QUALITY_NAMES.get(k, k.replace("_", " ")))) for k in keys}
    K = np.stack([trained[n]["K"] for n in names])
    data["K"] = (("variant", "sigma"), K[:, :, 0], _attrs("bit", "bound K per sample on held-out data (data units)"))
    data["K_stderr"] = (("variant", "sigma"), K[:, :, 1], _attrs("bit", "Monte-Carlo standard error of K"))
    data["loss_weight"] = (("variant", "step"), np.stack([pad(trained[n]["loss_weight"]) for n in names]),
                           _attrs("1", "loss weight w_t", formula="1 (L_simple) or beta_t^2 / (2 sigma_t^2 alpha_t "
                                  "(1 - alpha_bar_t)) [Ho20 eq. 12] (pow2: rounded to 2^k; jitter: 1 + 2^-20)"))
    data["heldout_mse"] = (("variant", "step"), np.stack([pad(trained[n]["heldout_mse"]) for n in names]),
                           _attrs("1", "held-out L_simple: mean over x0, eps and features of (eps - eps_theta)^2"))
    data["train_mse"] = (("variant", "step"), np.stack([pad(trained[n]["train_mse"]) for n in names]),
                         _attrs("1", "last epoch's training L_simple"))
    data["x"] = (("variant", "sample", "feature"), np.stack([trained[n]["samples"] for n in names]),
                 _attrs("1", "samples of each variant (data units)"))
    coords = {"alpha_bar": (("variant", "step"), np.stack([pad(trained[n]["alpha_bar"]) for n in names]),
                            _attrs("1", "alpha_bar_t")),
              "time": (("variant", "step"), np.stack([pad(trained[n]["time"]) for n in names]),
                       _attrs("1", "physical time -log(alpha_bar_t)/2"))}
    return data, coords


def _pair_vars(pairs, measures, T_max: int) -> tuple[dict, dict]:
    if not pairs:
        return {}, {}

    def pad(v):
        a = np.full(T_max, np.nan)
        a[: len(v)] = v
        return a

    ms = [measures[pr] for pr in pairs]
    E = max(m["epoch"].size for m in ms)
    data = {
        "param_rel_diff": (("pair", "step"), np.stack([pad(m["rel"]) for m in ms]),
                           _attrs("1", "|theta_other - theta_reference| / |theta_reference - theta_init| per net")),
        "param_rel_diff_norm": (("pair", "step"), np.stack([pad(m["rel_norm"]) for m in ms]),
                                _attrs("1", "|theta_other - theta_reference| / |theta_reference| per net")),
        "param_rel_diff_epoch": (("pair", "epoch"),
                                 np.stack([np.pad(m["epoch"], (0, E - m["epoch"].size), constant_values=np.nan)
                                           for m in ms]),
                                 _attrs("1", "median over steps of param_rel_diff after each epoch")),
    }
    coords = {"pair": [f"{o} vs {r}" for r, o in pairs], "pair_reference": ("pair", [r for r, _ in pairs]),
              "pair_other": ("pair", [o for _, o in pairs]),
              "epoch": ("epoch", np.arange(1, E + 1), _attrs("1", "training epoch"))}
    return data, coords


def _dataset(p: Params, names, configs, trained, pairs, measures, exact_ll: float) -> xr.Dataset:
    from ..ddpm.train import ADAM_EPS

    T_max = max(configs[n].T for n in names)
    data, coords = _per_variant_vars(names, trained, T_max)
    pdata, pcoords = _pair_vars(pairs, measures, T_max)
    data.update(pdata)
    data["exact_log_likelihood"] = ((), exact_ll, _attrs("bit", "exact E log2 q(x0) on the held-out data "
                                                         "(upper limit of K; NaN if unknown)"))
    coords.update(pcoords)
    coords.update({
        "variant": names, "step": ("step", np.arange(1, T_max + 1), _attrs("1", "diffusion step t")),
        "sigma": ("sigma", list(SIGMAS), {"long_name": "reverse variance sigma_t^2: beta_t or beta_tilde_t"}),
        "label": ("variant", [VARIANTS[n]["label"] for n in names]),
        "T": ("variant", np.array([configs[n].T for n in names], dtype=np.int64), _attrs("1", "number of steps")),
        "schedule": ("variant", [configs[n].schedule["name"] for n in names]),
        "loss": ("variant", [configs[n].loss for n in names]),
        "optimizer": ("variant", [VARIANTS[n].get("optimizer", "adam") for n in names]),
        "weights": ("variant", [VARIANTS[n].get("weights") or ("eq12" if configs[n].loss == "weighted" else "none")
                                for n in names])})
    attrs = {"dataset": p.dataset, "turns": p.turns, "adam_eps": ADAM_EPS,
             "train_seconds": [float(trained[n]["seconds"]) for n in names],
             "K_units": "bits per sample, in the data's own units (not unit variance)"}
    return xr.Dataset(data, coords=coords, attrs=attrs)


# ---------------------------------------------------------------------------------------------
# figures
# ---------------------------------------------------------------------------------------------

def plot(datasets: dict[str, xr.Dataset]) -> dict:
    """``variants_quality`` (bars per variant, held-out ``L_simple`` against physical time),
    ``variants_invariance`` (the weights and parameter distances of each pair) and
    ``variants_samples`` (each variant's samples over the data's curve, or images for MNIST)."""
    ds = datasets["variants"]
    return {"variants_quality": _plot_quality(ds), "variants_invariance": _plot_invariance(ds),
            "variants_samples": _plot_samples(ds)}


def _variant_colors(ds: xr.Dataset) -> list[str]:
    return ["C3" if o == "sgd" else ("C1" if lo == "weighted" else "C0")
            for o, lo in zip(ds["optimizer"].values, ds["loss"].values)]


def _bar_panel(ax, ds: xr.Dataset, key: str, values, names, colors, first: bool) -> None:
    y = np.arange(len(names))
    ax.barh(y, np.where(np.isfinite(values), values, 0.0), color=colors)
    ax.set_yticks(y)
    ax.set_yticklabels(names if first else [], fontsize=8)
    ax.set_title(key.replace("_", " "), fontsize=9)
    if key == "K (beta)":
        ax.errorbar(values, y, xerr=ds["K_stderr"].sel(sigma="beta").values, fmt="none", ecolor="k", lw=0.8)
        ll = float(ds["exact_log_likelihood"])
        if np.isfinite(ll):
            ax.axvline(ll, c="r", lw=0.8, ls=":")
            ax.set_title(f"K bits (red: exact E log2 q = {ll:.2f})", fontsize=9)
    if key.endswith("ratio"):
        ax.axvline(1.0, c="k", lw=0.8, ls=":")
    ax.invert_yaxis()


def _plot_quality(ds: xr.Dataset):
    from matplotlib.figure import Figure

    names = [str(v) for v in ds["variant"].values]
    panels = {k: ds[k].values for k in ("sliced_wasserstein_ratio", "energy_distance_ratio") if k in ds}
    if np.any(np.isfinite(ds["K"].values)):
        panels["K (beta)"] = ds["K"].sel(sigma="beta").values
    panels["mean held-out L_simple"] = ds["heldout_mse"].mean("step").values
    fig = Figure(figsize=(4.2 * (len(panels) + 1), 4.2))
    axes = fig.subplots(1, len(panels) + 1)
    colors = _variant_colors(ds)
    for i, (key, values) in enumerate(panels.items()):
        _bar_panel(axes[i], ds, key, values, names, colors, first=i == 0)
    ax = axes[-1]
    for i, nm in enumerate(names):
        T = int(ds["T"].values[i])
        ax.plot(ds["time"].values[i, :T], ds["heldout_mse"].values[i, :T], lw=0.9, label=nm, color=f"C{i % 10}",
                ls="--" if ds["optimizer"].values[i] == "sgd" else "-")
    ax.set_xlabel("physical time  -log(alpha_bar)/2")
    ax.set_ylabel("held-out L_simple per step")
    ax.set_xscale("log")
    ax.legend(fontsize=6)
    fig.suptitle(f"variants on {ds.attrs.get('dataset')} (same data and seed); blue L_simple, orange weighted, "
                 "red SGD", fontsize=9)
    return fig


def _plot_invariance(ds: xr.Dataset):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(17, 4.4))
    ax = fig.subplots(1, 3)
    fig.subplots_adjust(wspace=0.35)
    if "pair" not in ds.dims:
        for a in ax:
            a.text(0.5, 0.5, "no weighted/unweighted pair among the variants", ha="center", transform=a.transAxes)
        return fig
    vidx = {v: i for i, v in enumerate(ds["variant"].values)}
    for j, pname in enumerate(ds["pair"].values):
        i = vidx[ds["pair_other"].values[j]]
        T = int(ds["T"].values[i])
        t = ds["step"].values[:T]
        w = ds["loss_weight"].values[i, :T]
        style = dict(color=f"C{j % 10}", ls="--" if ds["optimizer"].values[i] == "sgd" else "-")
        ax[0].plot(t, w, label=f"{ds['pair_other'].values[j]} (span x{np.nanmax(w) / np.nanmin(w):.3g})", **style)
        ax[1].plot(t, ds["param_rel_diff"].values[j, :T], label=pname, **style)
        ax[2].plot(ds["epoch"].values, ds["param_rel_diff_epoch"].values[j], marker=".", label=pname, **style)
    ax[0].set_yscale("log")
    ax[0].set_xlabel("step t")
    ax[0].set_ylabel("loss weight w_t  (eq12: [Ho20] eq. 12)")
    for a in ax:
        a.legend(fontsize=7)
    for a in ax[1:]:
        a.set_yscale("log")
    ax[1].set_xlabel("step t")
    ax[1].set_ylabel("|theta_w - theta_s| / |theta_s - theta_init|, end of training")
    ax[1].set_title(f"same init, data, noise (Adam eps {ds.attrs.get('adam_eps', 1e-8):g}; dashed: SGD)", fontsize=9)
    ax[2].set_xlabel("epoch")
    ax[2].set_ylabel("median over t of the same")
    ax[2].set_title("growth over training; 'jitter' = rounding only", fontsize=9)
    return fig


def _plot_samples(ds: xr.Dataset):
    from matplotlib.figure import Figure

    names = [str(v) for v in ds["variant"].values]
    cols = min(4, len(names))
    rows = math.ceil(len(names) / cols)
    fig = Figure(figsize=(3.3 * cols, 3.3 * rows))
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    images = ds.sizes["feature"] == 784
    for ax, (i, nm) in zip(axes, enumerate(names)):
        xs = ds["x"].values[i]
        if images:    # the first 16 samples as a 4 x 4 mosaic
            k = min(16, xs.shape[0])
            tiles = np.full((16, 28, 28), np.nan)
            tiles[:k] = xs[:k].reshape(k, 28, 28)
            ax.imshow(tiles.reshape(4, 4, 28, 28).transpose(0, 2, 1, 3).reshape(112, 112), cmap="gray", vmin=-1, vmax=1)
        else:
            _swiss_roll_panel(ax, xs, float(ds.attrs.get("turns", 2.0)))
        r = ds["sliced_wasserstein_ratio"].values[i] if "sliced_wasserstein_ratio" in ds else float("nan")
        ax.set_title(f"{nm}\nSW ratio {r:.2f}" if np.isfinite(r) else nm, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes[len(names):]:
        ax.axis("off")
    return fig


def _swiss_roll_panel(ax, xs: np.ndarray, turns: float) -> None:
    from ..theory.swiss_roll import swiss_roll_curve

    curve = swiss_roll_curve(np.linspace(0.0, turns * np.pi, 400))
    ax.plot(curve[:, 0], curve[:, 1], c="0.6", lw=1)
    ax.scatter(xs[:, 0], xs[:, 1], s=1, c="C3", rasterized=True)
    lim = 1.15 * float(np.nanmax(np.abs(curve)))
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
