"""Loss weighting, noise schedule and number of steps of the per-timestep DDPM: one study that trains
every variant on the same data with the same seed and tabulates their quality (issue 4, item 3).

    python studies/variants.py --out runs/variants

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

Why the weighting barely matters here (REFERENCES.md sec. 1)
------------------------------------------------------------
The trainer (:func:`physdiff.ddpm.train`) gives EVERY net every minibatch: net ``t`` draws its own
permutation of the data and its own noise from a generator seeded by ``(seed, t, epoch)``, whatever
the loss, and the loss is the SUM over timesteps of ``w_t`` times each net's mean loss; so net ``t``'s
gradient is exactly ``w_t`` times its ``L_simple`` gradient, with the same initial weights and the
same data and noise in both runs. Adam [KB15] is elementwise (one Adam per net, or one over all the
stacked nets: the same thing), and its step ``lr m_hat / (sqrt(v_hat) + eps)`` with ``g -> w g`` is
``lr m_hat / (sqrt(v_hat) + eps / w)``: unchanged except through ``eps`` (1e-8). Weighted and
unweighted training therefore take the same steps up to a relative ``eps / (w sqrt(v_hat))`` and
float rounding. The study measures the per-timestep relative distance between the two parameter
vectors after every epoch (``param_rel_diff_epoch``) and at the end (``param_rel_diff``), beside
the span of the weights (``weight_span``). Training is chaotic: any difference, even one float32
rounding (``jitter``), grows epoch after epoch, so the end-of-training distance of the Adam pairs
is to be read against the ``jitter`` and ``pow2-weighted`` pairs, which differ from ``simple`` by
rounding alone and by ``eps`` alone. The control breaks the invariance: SGD's step ``lr w_t g``
turns the weight into a per-timestep learning rate. With a single network shared by all timesteps and ``t``
drawn per example [Ho20, Algorithm 1] the weights would change which timesteps dominate the
shared gradient; that is where [Ho20] found ``L_simple`` better, and it does not apply here.

Quality numbers per variant: the sliced-Wasserstein and energy distances of ``n_samples`` samples to
fresh spiral data over those between two fresh draws (:func:`physdiff.metrics.swiss_roll_quality`),
the held-out ``L_simple`` per step (``heldout_mse``) and the bound K [SD15, eq. 14] of the model in
bits per sample (:func:`physdiff.sd15.ddpm_bound_K`, on held-out data, in the data's own units).

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
import importlib
import json
import math
import time
from typing import Callable, Sequence

import numpy as np
import xarray as xr

from .. import results
from .._util import check_positive_int, torch_threads
from ._io import prepare_out

__all__ = ["variants_study", "VARIANTS", "DEFAULT_VARIANTS", "QUICK", "OUTPUTS", "param_rel_diff",
           "StackedSGD"]

OUTPUTS = ("variants.nc", "variants_quality.png", "variants_invariance.png", "variants_samples.png")

#: Variant name -> ``{"overrides": TrainConfig fields, "optimizer": "adam" | "sgd", "label": str}``.
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
WEIGHTS = ("eq12", "pow2", "jitter")  # how "weights" transforms the trainer's loss_weights
JITTER = 1.0 + 2.0**-20

#: The quick (default) settings for the Swiss roll: the whole study (10 variants: 8 with T = 100,
#: one T = 40, one T = 1000) in well under 15 minutes on 2 CPU cores. ``sgd_lr`` is SGD's learning rate
#: (Adam's would make SGD's steps ~100x too small: Adam's step is ~lr per weight, SGD's lr |g|).
QUICK = {
    # chunk 50: on a CPU, 50 nets per batched matmul keep the activations in cache; the trainer's
    # memory-based choice (890 nets for d = 2, hidden 128) made T = 1000 ~2x slower per net.
    "swiss-roll": {"n_train": 5000, "epochs": 40, "hidden": 128, "batch": 100, "lr": 1e-2, "sgd_lr": 0.1,
                   "n_samples": 2000, "n_eval": 2000, "chunk": 50},
    # MNIST (digits 0 and 1, the mnist quick preset's T = 50, hidden 1600, Gaussian init): NOT tuned
    # and not timed; the quality numbers are experiments.train.quality's.
    "mnist": {"n_train": None, "epochs": 5, "hidden": 1600, "batch": 64, "lr": 1e-4, "sgd_lr": 1e-2,
              "n_samples": 256, "n_eval": 200, "chunk": None},
}

_PRESET_KEY = {"swiss-roll": "swiss-roll-2", "mnist": "mnist"}


# ---------------------------------------------------------------------------------------------
# the control optimiser
# ---------------------------------------------------------------------------------------------

class StackedSGD:
    """Plain SGD over stacked per-timestep tensors, ``p <- p - lr_t g`` (the control of the study).

    The same interface as :class:`physdiff.ddpm.StackedAdam` (``step(grads)``, ``step_count``,
    ``state_tensors``), so :func:`physdiff.ddpm.train` can run it unchanged. Unlike Adam it is NOT
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


def _weights_fn(kind: str | None, original: Callable) -> Callable:
    """The trainer's ``loss_weights`` for a variant's ``weights`` entry (None: unchanged)."""
    if kind is None or kind == "eq12":
        return original
    if kind == "pow2":   # [Ho20] eq. 12 weights rounded to the nearest power of two (exact float scaling)
        return lambda schedule, loss="weighted", sigma="beta": 2.0 ** np.round(np.log2(original(schedule, "weighted",
                                                                                                  sigma)))
    if kind == "jitter":
        return lambda schedule, loss="simple", sigma="beta": np.full(schedule.T, JITTER)
    raise ValueError(f"weights must be one of {WEIGHTS} or None, got {kind!r}")


def _train_kwargs(kind: str, weights: str | None, schedule, config) -> dict:
    """``ddpm.train`` keywords for a variant: the optimiser (Adam: the trainer's own; SGD:
    :class:`StackedSGD`) and the loss weights of ``weights`` (see :data:`WEIGHTS`; None: the config's)."""
    if kind not in ("adam", "sgd"):
        raise ValueError(f"optimizer must be 'adam' or 'sgd', got {kind!r}")
    from ..ddpm.train import loss_weights

    w = _weights_fn(weights, loss_weights)(schedule, config.loss, config.sigma)
    return {"weights": w, "optimizer": StackedSGD if kind == "sgd" else None}


# ---------------------------------------------------------------------------------------------
# measurements
# ---------------------------------------------------------------------------------------------

#: Parameters are recorded after every epoch for variants with at most this many steps (memory:
#: epochs x T x (2 d H + H + d) float32 each).
EPOCH_TRACK_MAX_T = 200


def _n_params(d: int, hidden: int) -> int:
    return 2 * d * hidden + hidden + d


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
    from ..ddpm import StackedAutoencoders

    model = StackedAutoencoders(config.T, x0.shape[1], config.hidden, config.activation, seed=config.seed)
    if config.init == "gaussian":
        x64 = x0.astype(np.float64)
        model.init_gaussian(x64.mean(axis=0), np.cov(x64, rowvar=False), config.make_schedule().alpha_bar[1:],
                            bound=float(np.abs(x64).max()))
    return _flat_params(model)


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


def _heldout_mse(model, x: np.ndarray, seed: int) -> np.ndarray:
    """``L_simple`` of every net on held-out data, per step (T,): ``mean |eps - eps_theta(x_t)|^2 / d``."""
    sched = model.schedule
    rng = np.random.default_rng(seed)
    out = np.empty(sched.T)
    for t in range(1, sched.T + 1):
        eps = rng.standard_normal(x.shape)
        x_t = math.sqrt(sched.alpha_bar[t]) * x + math.sqrt(1.0 - sched.alpha_bar[t]) * eps
        out[t - 1] = float(np.mean((model.eps(x_t.astype(np.float32), t) - eps) ** 2))
    return out


def _variant_spec(v) -> tuple[str, dict]:
    if isinstance(v, str):
        if v not in VARIANTS:
            raise ValueError(f"unknown variant {v!r}; known: {sorted(VARIANTS)} (or pass a dict "
                             "{'name': ..., 'overrides': {...}, 'optimizer': 'adam'|'sgd'})")
        return v, dict(VARIANTS[v])
    if isinstance(v, dict) and "name" in v:
        spec = {"overrides": dict(v.get("overrides", {})), "optimizer": v.get("optimizer", "adam"),
                "weights": v.get("weights"), "label": v.get("label", v["name"])}
        _weights_fn(spec["weights"], lambda *a: None)  # validates
        return str(v["name"]), spec
    raise ValueError(f"a variant is a name in {sorted(VARIANTS)} or a dict with 'name', got {v!r}")


def _pair_key(config, optimizer: str) -> str:
    return json.dumps([config.replace(loss="simple").to_dict(), optimizer], sort_keys=True)


# ---------------------------------------------------------------------------------------------
# the study
# ---------------------------------------------------------------------------------------------

def variants_study(out, *, dataset: str = "swiss-roll", variants: Sequence = DEFAULT_VARIANTS, seed: int = 0,
                   n_train: int | None = None, epochs: int | None = None, hidden: int | None = None,
                   batch: int | None = None, lr: float | None = None, sgd_lr: float | None = None,
                   n_samples: int | None = None, n_eval: int | None = None, bound: bool = True,
                   turns: float = 2.0, data_dir=None, device: str = "cpu", num_threads: int | None = 1,
                   force: bool = False, progress: bool = False, log: Callable | None = print,
                   command: str | None = None) -> dict:
    """Train every variant on the same data with the same seed; write ``variants.nc`` and figures.

    Every variant starts from the base config (``physdiff.ddpm.get_config(<dataset>, "quick")`` with
    the settings below), changes the fields its :data:`VARIANTS` entry names, and is trained by
    :func:`physdiff.ddpm.train` on the same ``x0`` with the same ``seed`` (hence, for equal ``T``, the
    same initial weights, minibatch orders and noise). See the module docstring for the variants
    and for the scale invariance of Adam that the weighted/unweighted pairs measure.

    Outputs in ``out``:

    ``variants.nc``
        Dims ``variant``, ``t`` (1..max T; NaN beyond a variant's own T), ``pair``, ``sample``,
        ``feature``. Per variant: coords ``label``, ``T``, ``schedule``, ``loss``, ``optimizer``;
        quality numbers (swiss roll: ``sliced_wasserstein``, ``sliced_wasserstein_baseline``,
        ``sliced_wasserstein_ratio``, ``energy_distance``, ``energy_distance_baseline``,
        ``energy_distance_ratio``; MNIST: :func:`physdiff.experiments.train.quality`'s scalars),
        ``K_bits``, ``K_stderr``, ``K_posterior_bits``, ``K_posterior_stderr`` (the bound K of the
        model with ``sigma^2 = beta`` and ``beta_tilde``, bits per sample on held-out data),
        ``heldout_mse_mean``, ``train_seconds``; per step ``loss_weight(variant, t)``,
        ``heldout_mse(variant, t)``, ``train_mse(variant, t)`` (last epoch's ``L_simple``),
        ``alpha_bar(variant, t)``, ``physical_time(variant, t)``; samples ``x(variant, sample,
        feature)``; coord ``weights`` (``none``, ``eq12``, ``pow2``, ``jitter``). Per pair (a variant
        that differs from a plain ``L_simple`` one only in its loss weights, same optimiser): coords
        ``pair_simple``, ``pair_weighted``; ``weight_span(pair)`` (max/min of ``w_t``),
        ``param_rel_diff(pair, t)`` (``|theta_w - theta_s| / |theta_s - theta_init|`` per net at the
        end), ``param_rel_diff_norm(pair, t)`` (over ``|theta_s|``), ``param_rel_diff_median(pair)``,
        ``param_rel_diff_max(pair)``, ``param_rel_diff_epoch(pair, epoch)`` (median over ``t`` after
        every epoch; variants with ``T <= 200``) and ``param_rel_diff_first_epoch(pair)``.
    ``variants_quality.png``
        Quality per variant (bars) and held-out ``L_simple`` against physical time.
    ``variants_invariance.png``
        Per step: the loss weights and the relative parameter difference of each pair.
    ``variants_samples.png``
        Samples of every variant over the data (Swiss roll).

    Parameters
    ----------
    out : path
        Output directory (created; existing outputs are refused unless ``force``).
    dataset : {"swiss-roll", "mnist"}
        MNIST uses digits 0 and 1 of the test split in ``data_dir`` (untuned, slow).
    variants : sequence of str or dict
        Names in :data:`VARIANTS`, or ``{"name": ..., "overrides": {TrainConfig fields},
        "optimizer": "adam" | "sgd", "weights": None | "pow2" | "jitter", "label": ...}``.
    seed : int >= 0
        The data, every variant's training, sampling and evaluation.
    n_train, epochs, hidden, batch, lr, sgd_lr, n_samples, n_eval : optional
        Override :data:`QUICK` ``[dataset]``: training points, epochs, hidden units, minibatch,
        Adam's learning rate, SGD's learning rate, samples for the quality numbers, held-out points
        for ``heldout_mse`` and K. Quick Swiss-roll defaults: 5000 points, 40 epochs (2000 Adam
        steps per net), hidden 128, batch 100, lr 0.01 (the thesis'), SGD lr 0.1, 2000 samples,
        2000 held-out points; every net trained in chunks of 50.
    bound : bool
        Compute K (for MNIST it costs ``T`` passes over ``n_eval`` images per variance).
    turns : float
        Swiss roll turns (2: the thesis' 2 pi roll).
    data_dir : path, optional
        MNIST directory.
    device : str
        Torch device of training.
    num_threads : int or None
        torch CPU threads while the study runs (restored afterwards). 1 by default: these small
        batched matmuls gain little from a second thread on a quiet 2-core machine and lose up to 4x
        on a shared, loaded one. None leaves torch's setting.
    force, progress, log, command
        Overwrite outputs; progress bars; the printer (None: silent); the command for provenance.

    Returns
    -------
    dict
        ``{"variants": {name: {quality numbers, K_bits, ..., train_seconds}}, "pairs": {pair name:
        {"weight_span", "param_rel_diff_median", "param_rel_diff_max", "param_rel_diff_first_epoch"}},
        "seconds": total}``.

    Raises
    ------
    ValueError
        Unknown dataset or variant, bad settings, or two variants with one name.
    FileExistsError
        Outputs exist and ``force`` is False.
    FileNotFoundError
        MNIST not found in ``data_dir``.
    """
    if num_threads is not None:
        check_positive_int("num_threads", num_threads)
    with torch_threads(num_threads):
        return _variants_study(out, dataset=dataset, variants=variants, seed=seed, n_train=n_train, epochs=epochs,
                               hidden=hidden, batch=batch, lr=lr, sgd_lr=sgd_lr, n_samples=n_samples, n_eval=n_eval,
                               bound=bound, turns=turns, data_dir=data_dir, device=device, force=force,
                               progress=progress, log=log, command=command)


def _variants_study(out, *, dataset, variants, seed, n_train, epochs, hidden, batch, lr, sgd_lr, n_samples, n_eval,
                    bound, turns, data_dir, device, force, progress, log, command) -> dict:
    from .. import ddpm, sd15
    from .train import load_training_data, quality

    if dataset not in QUICK:
        raise ValueError(f"dataset must be one of {sorted(QUICK)}, got {dataset!r}")
    seed = check_positive_int("seed", seed, minimum=0)
    q = dict(QUICK[dataset])
    for k, v in (("n_train", n_train), ("epochs", epochs), ("hidden", hidden), ("batch", batch), ("lr", lr),
                 ("sgd_lr", sgd_lr), ("n_samples", n_samples), ("n_eval", n_eval)):
        if v is not None:
            q[k] = v
    for k in ("epochs", "hidden", "batch", "n_samples", "n_eval"):
        check_positive_int(k, q[k])
    specs = [_variant_spec(v) for v in variants]
    names = [n for n, _ in specs]
    if not names or len(set(names)) != len(names):
        raise ValueError(f"variants must be non-empty with distinct names, got {names}")
    say = log if log is not None else (lambda *_: None)
    base = ddpm.get_config(_PRESET_KEY[dataset], "quick", seed=seed, device=device, epochs=q["epochs"],
                           hidden=q["hidden"], batch=q["batch"], lr=q["lr"], chunk=q.get("chunk"))
    configs = {n: base.replace(**s["overrides"]) for n, s in specs}
    sgd_lr_v = float(q["sgd_lr"])
    for n, s in specs:
        if s.get("optimizer", "adam") == "sgd":
            configs[n] = configs[n].replace(lr=sgd_lr_v, lr_first=None)
    out = prepare_out(out, OUTPUTS, force=force)

    clock = time.perf_counter()
    if dataset == "swiss-roll":
        n = q["n_train"] or base.n_train
        x0, meta = load_training_data("swiss-roll", seed=seed, turns=turns, n_train=n)
        from ..datasets import swiss_roll

        x_eval = swiss_roll(q["n_eval"], turns=turns, seed=np.random.default_rng([seed, 1]))
        noise = importlib.import_module("physdiff.datasets")._SWISS_ROLL_NOISE.get(float(turns))
        # the exact E log2 q(x0) on the held-out points: the upper limit of every K (same units)
        exact_ll = (float(np.mean(sd15.swiss_roll_log_density(x_eval, turns, noise)) / math.log(2.0))
                    if noise is not None else float("nan"))
    else:
        x0, meta = load_training_data("mnist", seed=seed, data_dir=data_dir, holdout=0.1)
        from .train import heldout_images

        x_eval = heldout_images(meta, data_dir=data_dir)[0][: q["n_eval"]]
        exact_ll = float("nan")
        if q["n_train"]:
            x0 = x0[: q["n_train"]]
    say(f"variants study on {x0.shape[0]} x {x0.shape[1]} {dataset} points, seed {seed}: "
        f"epochs={q['epochs']} hidden={q['hidden']} batch={q['batch']} lr={q['lr']} (SGD {sgd_lr_v}); "
        f"{len(names)} variants: {', '.join(names)}")

    if dataset == "mnist":
        from .. import datasets, metrics

        x_all, y_all = datasets.load_mnist(data_dir, split="test")
        clf = metrics.train_mnist_classifier(x_all, y_all, seed=seed)   # one classifier for every variant

        def quality_of(x):
            return metrics.mnist_quality(x, clf, x0, meta["digits"])
    else:
        def quality_of(x):
            return quality(x, x0, meta, seed=seed, log=say)

    rows: dict[str, dict] = {}
    per_t: dict[str, dict] = {}
    params: dict[str, np.ndarray] = {}
    samples = {}
    history: dict[str, np.ndarray] = {}   # parameters after every epoch (T <= EPOCH_TRACK_MAX_T)
    for k, (name, spec) in enumerate(specs):
        config = configs[name]
        opt = spec.get("optimizer", "adam")
        on_epoch = None
        if config.T <= EPOCH_TRACK_MAX_T:
            history[name] = np.full((config.epochs, config.T, _n_params(x0.shape[1], config.hidden)), np.nan,
                                    dtype=np.float32)
            on_epoch = functools.partial(_record_epoch, history[name])
        t0 = time.perf_counter()
        model = ddpm.train(x0, config, progress=progress, log=None, metadata={"dataset": dataset},
                           on_epoch=on_epoch, **_train_kwargs(opt, spec.get("weights"), config.make_schedule(), config))
        t_train = time.perf_counter() - t0
        sched = model.schedule
        w = _weights_fn(spec.get("weights"), ddpm.loss_weights)(sched, config.loss, config.sigma)
        params[name] = _flat_params(model.model)
        # the same sampling noise for every variant (common random numbers): equal models, equal samples
        x = model.sample(q["n_samples"], seed=np.random.default_rng([seed, 2]))
        ok = bool(np.all(np.isfinite(x)))
        x = np.where(np.isfinite(x), x, np.nan).astype(np.float32)
        row = {"train_seconds": t_train, "final_train_loss": float(np.nanmean(model.loss_history[-1]))}
        if ok:
            qual = quality_of(x)
            row.update({kk: float(vv) for kk, vv in qual.items() if np.ndim(vv) == 0 and kk != "n"})
        else:
            say(f"  {name}: samples diverged (non-finite); quality numbers are NaN")
        mse = _heldout_mse(model, x_eval, seed=seed + 3)
        row["heldout_mse_mean"] = float(np.mean(mse))
        if bound:
            Ks = sd15.ddpm_bound_K(model.eps, x_eval, sched, seed=np.random.default_rng([seed, 4]))
            row.update(K_bits=Ks["beta"].bits, K_stderr=Ks["beta"].stderr, K_posterior_bits=Ks["posterior"].bits,
                       K_posterior_stderr=Ks["posterior"].stderr)
        rows[name] = row
        per_t[name] = {"loss_weight": w, "heldout_mse": mse, "train_mse": model.loss_history[-1] / w,
                       "alpha_bar": sched.alpha_bar[1:], "physical_time": sched.physical_time[1:]}
        samples[name] = x
        shown = {kk: row[kk] for kk in ("sliced_wasserstein_ratio", "energy_distance_ratio", "K_bits") if kk in row}
        say(f"  [{k + 1}/{len(specs)}] {name:16s} trained in {t_train:6.1f} s; held-out L_simple "
            f"{row['heldout_mse_mean']:.4f}; " + ", ".join(f"{kk} {vv:.4g}" for kk, vv in shown.items()))
        del model

    # pairs: a variant that differs from a plain L_simple one only in its loss weights (same config
    # but the loss, same optimiser), against that reference
    by_key = {}
    for name, spec in specs:
        if configs[name].loss == "simple" and spec.get("weights") is None:
            by_key.setdefault(_pair_key(configs[name], spec.get("optimizer", "adam")), name)
    pairs = []
    for name, spec in specs:
        ref = by_key.get(_pair_key(configs[name], spec.get("optimizer", "adam")))
        if ref is not None and ref != name:
            pairs.append((ref, name))
    pair_rows = {}
    pair_t = {}
    for s_name, w_name in pairs:
        init = _initial_params(configs[s_name], x0)
        rd = param_rel_diff(params[w_name], params[s_name], init)
        rn = param_rel_diff(params[w_name], params[s_name])
        w = per_t[w_name]["loss_weight"]
        pname = f"{w_name} vs {s_name}"
        ep = np.full(configs[s_name].epochs, np.nan)
        if s_name in history and w_name in history:
            for e in range(ep.size):
                ep[e] = np.median(param_rel_diff(history[w_name][e], history[s_name][e], init))
        pair_rows[pname] = {"weight_span": float(w.max() / w.min()), "param_rel_diff_median": float(np.median(rd)),
                            "param_rel_diff_max": float(np.max(rd)), "param_rel_diff_first_epoch": float(ep[0])}
        pair_t[pname] = (rd, rn, ep)
        say(f"  {pname}: weights span x{pair_rows[pname]['weight_span']:.3g}; relative parameter difference "
            f"|theta_w - theta_s| / |theta_s - theta_init|: median over t {np.median(rd):.3g} (max {np.max(rd):.3g}); "
            f"after the first epoch {ep[0]:.3g}")

    ds = _dataset(specs, configs, rows, per_t, samples, pairs, pair_rows, pair_t,
                  attrs=results.provenance(seed=seed, command=command, dataset=dataset, turns=turns,
                                           n_train=int(x0.shape[0]), n_eval=int(x_eval.shape[0]),
                                           epochs=q["epochs"], hidden=q["hidden"], batch=q["batch"], lr=q["lr"],
                                           sgd_lr=sgd_lr_v, n_samples=q["n_samples"], base_config=base.to_dict(),
                                           adam_eps=importlib.import_module("physdiff.ddpm.train").ADAM_EPS,
                                           K_units="bits per sample, in the data's own units (not unit variance)",
                                           exact_log_likelihood_bits=exact_ll))
    results.write_dataset(ds, out / "variants.nc")
    _plot_quality(ds, out / "variants_quality.png")
    _plot_invariance(ds, out / "variants_invariance.png")
    _plot_samples(ds, x0, out / "variants_samples.png")
    total = time.perf_counter() - clock
    say(f"variants study done in {total:.1f} s; outputs in {out}")
    return {"variants": rows, "pairs": pair_rows, "seconds": total}


def _dataset(specs, configs, rows, per_t, samples, pairs, pair_rows, pair_t, attrs) -> xr.Dataset:
    names = [n for n, _ in specs]
    T_max = max(configs[n].T for n in names)

    def pad(v):
        a = np.full(T_max, np.nan)
        a[: len(v)] = v
        return a

    keys = sorted({k for r in rows.values() for k in r})
    data = {k: ("variant", np.array([rows[n].get(k, np.nan) for n in names], dtype=np.float64)) for k in keys}
    for k in ("loss_weight", "heldout_mse", "train_mse", "alpha_bar", "physical_time"):
        data[k] = (("variant", "t"), np.stack([pad(per_t[n][k]) for n in names]))
    data["x"] = (("variant", "sample", "feature"), np.stack([samples[n] for n in names]))
    pnames = [f"{w} vs {s}" for s, w in pairs]
    coords = {"variant": names, "t": np.arange(1, T_max + 1),
              "label": ("variant", [s.get("label", n) for n, s in specs]),
              "T": ("variant", np.array([configs[n].T for n in names], dtype=np.int64)),
              "schedule": ("variant", [configs[n].schedule["name"] for n in names]),
              "loss": ("variant", [configs[n].loss for n in names]),
              "optimizer": ("variant", [s.get("optimizer", "adam") for _, s in specs]),
              "weights": ("variant", [s.get("weights") or ("eq12" if configs[n].loss == "weighted" else "none")
                                      for n, s in specs])}
    if pairs:
        coords.update({"pair": pnames, "pair_simple": ("pair", [s for s, _ in pairs]),
                       "pair_weighted": ("pair", [w for _, w in pairs])})
        for k in ("weight_span", "param_rel_diff_median", "param_rel_diff_max"):
            data[k] = ("pair", np.array([pair_rows[p][k] for p in pnames]))
        data["param_rel_diff"] = (("pair", "t"), np.stack([pad(pair_t[p][0]) for p in pnames]))
        data["param_rel_diff_norm"] = (("pair", "t"), np.stack([pad(pair_t[p][1]) for p in pnames]))
        E = max(len(pair_t[p][2]) for p in pnames)
        data["param_rel_diff_epoch"] = (("pair", "epoch"), np.stack([np.pad(pair_t[p][2], (0, E - len(pair_t[p][2])),
                                                                            constant_values=np.nan) for p in pnames]))
        data["param_rel_diff_first_epoch"] = ("pair", np.array([pair_rows[p]["param_rel_diff_first_epoch"]
                                                                for p in pnames]))
        coords["epoch"] = np.arange(1, E + 1)
    ds = xr.Dataset(data, coords=coords, attrs=attrs)
    ds["loss_weight"].attrs["formula"] = ("1 (L_simple) or beta_t^2 / (2 sigma_t^2 alpha_t (1 - alpha_bar_t)) "
                                          "[Ho20 eq. 12] (pow2: rounded to 2^k; jitter: 1 + 2^-20)")
    ds["heldout_mse"].attrs["formula"] = "mean over held-out x0, eps and features of (eps - eps_theta(x_t, t))^2"
    if pairs:
        ds["param_rel_diff"].attrs["formula"] = "|theta_weighted - theta_simple| / |theta_simple - theta_init| per net"
        ds["param_rel_diff_epoch"].attrs["formula"] = "median over t of param_rel_diff after each epoch"
    return ds


# ---------------------------------------------------------------------------------------------
# figures
# ---------------------------------------------------------------------------------------------

def _plot_quality(ds: xr.Dataset, path) -> None:
    import matplotlib.pyplot as plt

    from ..plotting import save_figure

    names = list(ds["variant"].values)
    panels = [k for k in ("sliced_wasserstein_ratio", "energy_distance_ratio", "K_bits", "heldout_mse_mean")
              if k in ds]
    fig, axes = plt.subplots(1, len(panels) + 1, figsize=(4.2 * (len(panels) + 1), 4.2))
    y = np.arange(len(names))
    colors = ["C3" if o == "sgd" else ("C1" if lo == "weighted" else "C0")
              for o, lo in zip(ds["optimizer"].values, ds["loss"].values)]
    for ax, k in zip(axes, panels):
        v = ds[k].values
        ax.barh(y, np.where(np.isfinite(v), v, 0.0), color=colors)
        err = k.replace("_bits", "_stderr")
        if k == "K_bits" and err in ds:
            ax.errorbar(v, y, xerr=ds[err].values, fmt="none", ecolor="k", lw=0.8)
        ax.set_yticks(y)
        ax.set_yticklabels(names if ax is axes[0] else [], fontsize=8)
        ax.set_title(k.replace("_", " "), fontsize=9)
        ll = float(ds.attrs.get("exact_log_likelihood_bits", np.nan))
        if k == "K_bits" and np.isfinite(ll):
            ax.axvline(ll, c="r", lw=0.8, ls=":")
            ax.set_title(f"K bits (red: exact E log2 q = {ll:.2f})", fontsize=9)
        if k.endswith("ratio"):
            ax.axvline(1.0, c="k", lw=0.8, ls=":")
        ax.invert_yaxis()
    ax = axes[-1]
    for i, nm in enumerate(names):
        T = int(ds["T"].values[i])
        ax.plot(ds["physical_time"].values[i, :T], ds["heldout_mse"].values[i, :T], lw=0.9, label=nm,
                color=f"C{i % 10}", ls="--" if ds["optimizer"].values[i] == "sgd" else "-")
    ax.set_xlabel("physical time  -log(alpha_bar)/2")
    ax.set_ylabel("held-out L_simple per step")
    ax.set_xscale("log")
    ax.legend(fontsize=6)
    fig.suptitle(f"variants on {ds.attrs.get('dataset')} (same data, seed {ds.attrs.get('seed')}); "
                 "blue L_simple, orange weighted, red SGD", fontsize=9)
    save_figure(fig, path)


def _plot_invariance(ds: xr.Dataset, path) -> None:
    import matplotlib.pyplot as plt

    from ..plotting import save_figure

    fig, ax = plt.subplots(1, 3, figsize=(17, 4.4))
    fig.subplots_adjust(wspace=0.35)
    if "pair" not in ds.dims:
        for a in ax:
            a.text(0.5, 0.5, "no weighted/unweighted pair among the variants", ha="center", transform=a.transAxes)
        save_figure(fig, path)
        return
    vidx = {v: i for i, v in enumerate(ds["variant"].values)}
    for j, p in enumerate(ds["pair"].values):
        i = vidx[str(ds["pair_weighted"].values[j])]
        T = int(ds["T"].values[i])
        t = np.arange(1, T + 1)
        ls = "--" if ds["optimizer"].values[i] == "sgd" else "-"
        c = f"C{j % 10}"
        ax[0].plot(t, ds["loss_weight"].values[i, :T], color=c, ls=ls,
                   label=f"{ds['pair_weighted'].values[j]} (span x{float(ds['weight_span'].values[j]):.3g})")
        ax[1].plot(t, ds["param_rel_diff"].values[j, :T], color=c, ls=ls, label=p)
        ax[2].plot(ds["epoch"].values, ds["param_rel_diff_epoch"].values[j], color=c, ls=ls, marker=".", label=p)
    ax[0].set_yscale("log")
    ax[0].set_xlabel("step t")
    ax[0].set_ylabel("loss weight w_t  (eq12: [Ho20] eq. 12)")
    ax[0].legend(fontsize=7)
    for a in ax[1:]:
        a.set_yscale("log")
        a.legend(fontsize=7)
    ax[1].set_xlabel("step t")
    ax[1].set_ylabel("|theta_w - theta_s| / |theta_s - theta_init|, end of training")
    ax[1].set_title(f"same init, data, noise (Adam eps {ds.attrs.get('adam_eps', 1e-8):g}; dashed: SGD)", fontsize=9)
    ax[2].set_xlabel("epoch")
    ax[2].set_ylabel("median over t of the same")
    ax[2].set_title("growth over training; 'jitter' = rounding only", fontsize=9)
    save_figure(fig, path)


def _plot_samples(ds: xr.Dataset, x0: np.ndarray, path) -> None:
    import matplotlib.pyplot as plt

    from ..plotting import save_figure

    names = list(ds["variant"].values)
    if ds.sizes["feature"] != 2:
        fig, ax = plt.subplots(1, 1, figsize=(4, 2))
        ax.text(0.5, 0.5, "samples are not 2-D: see variants.nc", ha="center", transform=ax.transAxes)
        ax.axis("off")
        save_figure(fig, path)
        return
    cols = min(4, len(names))
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.3 * cols, 3.3 * rows), squeeze=False)
    lim = 1.15 * float(np.abs(x0).max())
    for ax, (i, nm) in zip(axes.ravel(), enumerate(names)):
        ax.scatter(x0[:3000, 0], x0[:3000, 1], s=1, c="0.8", rasterized=True)
        xs = ds["x"].values[i]
        ax.scatter(xs[:, 0], xs[:, 1], s=1, c="C3", rasterized=True)
        r = ds["sliced_wasserstein_ratio"].values[i] if "sliced_wasserstein_ratio" in ds else float("nan")
        ax.set_title(f"{nm}\nSW ratio {r:.2f}", fontsize=8)
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes.ravel()[len(names):]:
        ax.axis("off")
    save_figure(fig, path)
