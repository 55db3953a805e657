"""Training of the per-timestep autoencoder DDPM, batched over timesteps.

[Thesis] trains ``T`` independent nets, one per step, each with its own ``torch.optim.Adam``, one
after another. Here a chunk of ``C`` nets trains at once: their weights are stacked tensors
(:class:`.model.StackedAutoencoders`), each step of the loop feeds every net of the chunk its own
minibatch (``torch.baddbmm``), and the loss is the SUM over the chunk's timesteps of each
timestep's mean loss. Its gradient with respect to net ``t``'s weights is then exactly net ``t``'s
own gradient (written out with batched matmuls into reused buffers, ``_Step``), and since Adam is
elementwise, one Adam over the stacked tensors is exactly ``C`` independent Adams. (A MEAN over
timesteps would divide every gradient by ``C``; Adam is nearly invariant to that, but not exactly:
``eps`` is not rescaled.) Per-timestep learning rates (the
thesis' 1e-4 for the first 4 steps, 2e-4 after) need an Adam with one ``lr`` per timestep:
:class:`StackedAdam` implements torch's bias-corrected update with a learning rate per net.

Randomness: net ``t`` in epoch ``e`` draws its minibatch order (a permutation of the data) and its
noise from a ``torch.Generator`` seeded from ``(config.seed, t, e)``. The result therefore does not
depend on the chunk size (up to float rounding of the batched matmuls) nor on how many epochs of
randomness a chunk draws at once, and a run resumed from a checkpoint saved at an epoch boundary
continues exactly as the uninterrupted run.

References
----------
[Ho20] Ho, Jain, Abbeel (2020), arXiv:2006.11239: Algorithm 1; eq. 12 (weighted loss); eq. 14
(L_simple).
[Thesis] Bustinduy de la Guerra (2024), Out-of-Equilibrium Machine Learning, eq. 19 and Table 2.
[KB15] Kingma, Ba (2015), Adam, arXiv:1412.6980, Algorithm 1 (as implemented by torch.optim.Adam).
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch.optim.adam import adam

from .._util import PhysdiffError, as_samples, check_real, map_threads, resolve_device
from ..schedules import Schedule
from . import fused as _fused
from .distributed import shard_chunks
from .checkpoint import TrainingCheckpoint
from .config import INITS, LOSSES, SIGMAS, TrainConfig
from .lstsq import init_lstsq
from .model import StackedAutoencoders, _seed_for, apply_nets
from .sample import DDPM, load

__all__ = ["TrainConfig", "PRESETS", "get_config", "initial_nets", "train", "train_snapshots", "StackedAdam",
           "loss_weights", "resolve_device"]

# TrainConfig, LOSSES, SIGMAS and INITS live in .config (imported by .sample and .checkpoint too) and are
# re-exported here.

ADAM_BETAS = (0.9, 0.999)  # torch.optim.Adam defaults [KB15]
ADAM_EPS = 1e-8


_THESIS_SCHEDULE = {"name": "linear", "beta_start": 1e-4, "beta_end": 0.02}


def _rescaled(T_ref: int = 1000) -> dict:
    # Ho et al.'s linear 1e-4..0.02 over 1000 steps, with betas scaled by 1000/T: alpha_bar_T stays
    # ~4e-5 (physical time ~5) however few steps are used, so the chain still starts from N(0, I).
    return {"name": "linear", "beta_start": 1e-4, "beta_end": 0.02, "reference_T": T_ref}


#: Hyper-parameter presets: ``PRESETS[dataset][preset]`` with datasets "mnist", "swiss-roll-2",
#: "swiss-roll-3", "curie-weiss" and presets "quick" (2 CPU cores, minutes) and "thesis"
#: ([Thesis] Table 2; meant for a GPU).
PRESETS: dict[str, dict[str, TrainConfig]] = {
    "mnist": {
        # QUICK: T = 100 steps of the rescaled linear schedule (betas 0.001..0.2, alpha_bar_T ~ 4e-5),
        # hidden 2400, init = "lstsq" and no Adam epochs: every net is the exact eps of the data's
        # Gaussian fit on 784 units plus 1616 units along data-aligned directions whose second layer
        # is the least-squares fit on 50 660 noisings of the train split's 12 665 zeros and ones
        # (ddpm/lstsq.py; docs/symmetry-breaking.md). Measured from a fresh clone on 2 quiet CPU cores:
        # 326 s of training (1.5 GB checkpoint); its 256 samples: 96.9 % classified 0 or 1 with
        # p >= 0.9 (real test digits 98.3 %), Frechet ratio 2.98, precision 0.79, recall 0.79 (real
        # 0.91 / 0.89), 49 % zeros, no copies; learned speciation time 2.07 +- 0.04 (exact score of the
        # training set 2.06). Three other sampling seeds: 96.9 %, Frechet ratios 2.5-2.7.
        # Fewer units or steps (same measure): T = 50, hidden 1600: 108 s, Frechet ratio 5.4;
        # T = 100, hidden 1600: 232 s, 3.5; T = 50, hidden 2400: 199 s, 4.2. Adam after the fit does
        # not help at this budget: one epoch at lr 1e-4 (80 s at T = 50) raised the Frechet ratio
        # 5.4 -> 7.6 and pushed the zeros to 38 %; at lr 1e-5 nothing changed. The previous preset
        # (init "gaussian", T = 50, hidden 1600, 8 epochs at lr 1e-4: 26 min) gave 59 % and 36.
        # sigma = "posterior" (beta_tilde) for sampling.
        "quick": TrainConfig(schedule=_rescaled(), T=100, hidden=2400, activation="relu", loss="simple",
                             lr=1e-4, lr_first=1e-5, lr_first_steps=3, epochs=0, batch=64, seed=0,
                             sigma="posterior", init="lstsq"),
        # [Thesis] Table 2: T=1000 linear 1e-4..0.02, hidden 1700, batch 50, Adam 1e-4 for the first
        # 4 steps and 2e-4 after, 300 epochs (12 500 training images of two digits).
        "thesis": TrainConfig(schedule=dict(_THESIS_SCHEDULE), T=1000, hidden=1700, activation="relu",
                              loss="simple", lr=2e-4, lr_first=1e-4, lr_first_steps=4, epochs=300,
                              batch=50, seed=0),
    },
    "swiss-roll-2": {
        # QUICK: T = 100 rescaled steps (betas 0.001..0.2), hidden 256, 10 000 points (the thesis'
        # count), 100 epochs of batch 100 at the thesis' lr 0.01. Measured on 2 quiet CPU cores:
        # 100 s of training (1 min 44 s end to end); sliced-Wasserstein distance to fresh spiral data
        # over that between two fresh draws of the same size: 1.11 with 256 samples, 1.78 with 2000.
        # (hidden 128, 40 epochs, 5000 points: 10 s, 1.02 / 2.00.) All 100 nets train as one chunk.
        "quick": TrainConfig(schedule=_rescaled(), T=100, hidden=256, lr=1e-2, epochs=100, batch=100,
                             seed=0, n_train=10_000),
        # [Thesis] Table 2, spiral theta in [0, 2 pi]: hidden 900, batch 100, lr 0.01, 20 epochs,
        # 10 000 points; T = 1000 with the linear 1e-4..0.02 schedule (as for MNIST).
        "thesis": TrainConfig(schedule=dict(_THESIS_SCHEDULE), T=1000, hidden=900, lr=1e-2, epochs=20,
                              batch=100, seed=0, n_train=10_000),
    },
    "swiss-roll-3": {
        # QUICK: as swiss-roll-2 with the thesis' lr ratio (0.005 for 3 pi); not separately measured.
        "quick": TrainConfig(schedule=_rescaled(), T=100, hidden=128, lr=5e-3, epochs=40, batch=100,
                             seed=0, n_train=5000),
        # [Thesis] Table 2, spiral theta in [0, 3 pi]: hidden 1000, batch 50, lr 0.005, 30 epochs,
        # 20 000 points. 109 s on 2 quiet CPU cores (the fused path; about 55 min for the thesis'
        # sequential loop, benchmarks/bench_train.py).
        "thesis": TrainConfig(schedule=dict(_THESIS_SCHEDULE), T=1000, hidden=1000, lr=5e-3, epochs=30,
                              batch=50, seed=0, n_train=20_000),
    },
    "curie-weiss": {
        # QUICK (measured on N = 64, beta = 1.5, P = 4000; docs/symmetry-breaking.md): T = 100 rescaled
        # steps, hidden 160, init = "lstsq" and no Adam epochs: every net is the Gaussian fit's exact eps
        # plus 96 spare units along data-aligned directions whose second layer is the least-squares fit
        # (ddpm/lstsq.py). Measured: cloning crossing 1.893 (exact score 1.89), error along u near t_S
        # 0.02 of the Gaussian model's, V(mu, t = 1.46) two wells 0.51 deep (exact 0.55), 94.4 % of the
        # samples within 0.2 of m* (exact 94.7 %); 2.8 s of training on 2 quiet cores. 10 Adam epochs
        # at lr 3e-4 after the fit give 1.876 / 1.869 (seeds 0 / 1) with the error along u back up to
        # 0.31; the previous preset (init "gaussian", 120 epochs, ~4 min) 1.84 / 1.85. init = "lstsq"
        # needs hidden >= N: pass --hidden for N > 160.
        "quick": TrainConfig(schedule=_rescaled(), T=100, hidden=160, lr=3e-4, epochs=0, batch=64,
                             seed=0, n_train=4000, init="lstsq"),
        # Not in the thesis: the thesis' schedule, hidden ~ 2.5 N for N ~ 100, long training.
        "thesis": TrainConfig(schedule=dict(_THESIS_SCHEDULE), T=1000, hidden=256, lr=1e-3, epochs=100,
                              batch=64, seed=0, n_train=20_000),
    },
}


def get_config(dataset: str, preset: str = "quick", **overrides) -> TrainConfig:
    """The preset ``PRESETS[dataset][preset]`` with ``overrides`` applied (None values ignored).

    Parameters
    ----------
    dataset : {"mnist", "swiss-roll-2", "swiss-roll-3", "curie-weiss"}
    preset : {"quick", "thesis"}
    **overrides
        TrainConfig fields, e.g. ``epochs=5``, ``T=200`` (a preset with ``reference_T`` in its
        schedule rescales its betas to the new ``T``).

    Raises
    ------
    ValueError
        Unknown dataset, preset or field (the message names the valid ones), or invalid values.
    """
    if dataset not in PRESETS:
        raise ValueError(f"unknown dataset {dataset!r}; valid datasets: {sorted(PRESETS)}")
    if preset not in PRESETS[dataset]:
        raise ValueError(f"unknown preset {preset!r} for {dataset!r}; valid presets: {sorted(PRESETS[dataset])}")
    base = PRESETS[dataset][preset]
    return base.replace(**{k: v for k, v in overrides.items() if v is not None})


# --------------------------------------------------------------------------------------------------
# loss and optimiser


def loss_weights(schedule: Schedule, loss: str = "simple", sigma: str = "beta") -> np.ndarray:
    """Per-timestep loss weights ``w_t``, float64 (T,), index ``t - 1`` for step ``t``.

    ``loss="simple"``: ``w_t = 1`` [Ho20, eq. 14]. ``loss="weighted"``:
    ``w_t = beta_t^2 / (2 sigma_t^2 alpha_t (1 - alpha_bar_t))`` [Ho20, eq. 12; Thesis eq. 19], with
    ``sigma_t^2 = beta_t`` (``sigma="beta"``) or the posterior variance ``beta_tilde_t``
    (``sigma="posterior"``). ``beta_tilde_1 = 0`` would make ``w_1`` infinite; at ``t = 1`` the
    posterior choice uses ``sigma_1^2 = beta_1`` instead (its reverse step adds no noise anyway).

    With one net and one Adam per timestep, a constant ``w_t`` barely matters: Adam's update is
    invariant to the scale of the loss up to its ``eps`` ([KB15]).

    Raises ``ValueError`` for an unknown ``loss`` or ``sigma``.
    """
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    T = schedule.T
    if loss == "simple":
        return np.ones(T)
    s2 = np.array(schedule.sigma2(sigma)[1:], dtype=np.float64)
    b = schedule.betas[1:]
    s2 = np.where(s2 > 0.0, s2, b)
    return b**2 / (2.0 * s2 * schedule.alphas[1:] * (1.0 - schedule.alpha_bar[1:]))


class StackedAdam:
    """Adam over stacked per-timestep tensors, with one learning rate per timestep.

    Exactly ``torch.optim.Adam`` (``amsgrad=False``, no weight decay; Kingma & Ba 2015 in torch's
    bias-corrected form)::

        m <- beta1 m + (1 - beta1) g;      v <- beta2 v + (1 - beta2) g^2
        p <- p - (lr_t / (1 - beta1^k)) m / (sqrt(v) / sqrt(1 - beta2^k) + eps)

    applied elementwise, with ``lr_t`` broadcast along the leading (timestep) axis. Since every
    operation is elementwise, this is ``C`` independent Adams, one per net. Each step is torch's
    own Adam arithmetic, the public functional ``torch.optim.adam.adam`` that
    ``torch.optim.Adam.step`` calls, once per run of consecutive timesteps that share a learning
    rate, over views of the stacked tensors and of stacked moments (which can so be saved and
    restored as a whole). Calling it directly skips the optimiser object: its bookkeeping (about
    10 us per call) and, at the first one constructed in a process, torch's import of
    ``torch._dynamo`` (0.8 s).

    Parameters
    ----------
    params : list of Tensor, each (C, ...)
        Updated in place.
    lr : array-like (C,)
        Learning rate of each timestep (> 0).
    betas, eps : Adam constants (torch's defaults).
    fused : bool or None
        torch's fused Adam kernel (one pass over memory; several times faster on CPU) or its
        single-tensor arithmetic (``foreach=False``). None: fused where torch supports it for the
        parameters' device and dtype.

    Raises
    ------
    ValueError
        ``lr`` of the wrong length, non-finite or not positive.
    """

    def __init__(self, params, lr, betas=ADAM_BETAS, eps: float = ADAM_EPS, fused: bool | None = None):
        self.params = [p.detach() for p in params]
        C = self.params[0].shape[0]
        lr = np.asarray(lr, dtype=np.float64).reshape(-1)
        if lr.size != C:
            raise ValueError(f"lr must have one value per timestep ({C}), got {lr.size}")
        if not np.all(np.isfinite(lr)) or np.any(lr <= 0):
            raise ValueError(f"learning rates must be finite and > 0, got {lr}")
        self.lr = lr
        self.betas = (float(betas[0]), float(betas[1]))
        self.eps = float(eps)
        self.step_count = 0
        self.exp_avg = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]
        self.fused = _fused_adam_supported(self.params[0]) if fused is None else bool(fused)
        # runs of consecutive timesteps sharing one learning rate: (a, b, per-parameter step counts)
        cuts = np.flatnonzero(np.diff(lr)) + 1
        edges = [0, *cuts.tolist(), C]
        self._groups = [(a, b, [self._step_tensor(p, 0) for p in self.params]) for a, b in zip(edges[:-1], edges[1:])]

    def _step_tensor(self, p: torch.Tensor, k: int) -> torch.Tensor:
        # torch's Adam keeps its step count as a float32 tensor (on the device when fused)
        return torch.tensor(float(k), dtype=torch.float32, device=p.device if self.fused else "cpu")

    @torch.no_grad()
    def step(self, grads) -> None:
        """One Adam step with ``grads`` (same shapes as ``params``). A ``None`` gradient leaves its
        parameter to a later call: one step may be split into calls over disjoint parameters (each
        parameter steps once; ``step_count`` counts the steps of the first parameter)."""
        grads = list(grads)
        if grads[0] is not None:
            self.step_count += 1
        live = [i for i, g in enumerate(grads) if g is not None]
        for a, b, steps in self._groups:
            adam([self.params[i][a:b] for i in live], [grads[i][a:b] for i in live],
                 [self.exp_avg[i][a:b] for i in live], [self.exp_avg_sq[i][a:b] for i in live], [],
                 [steps[i] for i in live], foreach=None if self.fused else False, fused=self.fused or None,
                 amsgrad=False, beta1=self.betas[0], beta2=self.betas[1], lr=float(self.lr[a]), weight_decay=0.0,
                 eps=self.eps, maximize=False)

    def state_tensors(self, names) -> dict[str, torch.Tensor]:
        """The moments as ``{"exp_avg.<name>": ..., "exp_avg_sq.<name>": ...}``."""
        out = {}
        for name, m, v in zip(names, self.exp_avg, self.exp_avg_sq):
            out[f"exp_avg.{name}"] = m
            out[f"exp_avg_sq.{name}"] = v
        return out

    def load_state_tensors(self, names, tensors: dict, step_count: int) -> None:
        """Restore moments saved by :meth:`state_tensors` and the step count."""
        for i, name in enumerate(names):
            for key, store in (("exp_avg", self.exp_avg), ("exp_avg_sq", self.exp_avg_sq)):
                src = tensors[f"{key}.{name}"]
                if tuple(src.shape) != tuple(store[i].shape):
                    raise PhysdiffError(f"resume state {key}.{name} has shape {tuple(src.shape)}, "
                                        f"expected {tuple(store[i].shape)}; the checkpoint does not "
                                        "match this configuration")
                store[i].copy_(src)
        self.step_count = int(step_count)
        for _, _, steps in self._groups:
            for t in steps:
                t.fill_(float(self.step_count))


def _fused_adam_supported(p: torch.Tensor) -> bool:
    """Whether torch's fused Adam runs for tensors like ``p`` (device, dtype)."""
    return _fused_adam_probe(p.device, p.dtype)


@functools.lru_cache(maxsize=None)
def _fused_adam_probe(device: torch.device, dtype: torch.dtype) -> bool:
    try:
        z = torch.zeros(1, device=device, dtype=dtype)
        adam([z], [torch.zeros_like(z)], [torch.zeros_like(z)], [torch.zeros_like(z)], [],
             [torch.zeros((), dtype=torch.float32, device=device)], fused=True, amsgrad=False, beta1=0.9,
             beta2=0.999, lr=1e-3, weight_decay=0.0, eps=1e-8, maximize=False)
        return True
    except (RuntimeError, NotImplementedError, TypeError, ValueError):
        return False


# --------------------------------------------------------------------------------------------------
# training


def _fingerprint(x0: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(x0, dtype=np.float32).tobytes()).hexdigest()


_CACHE_BUDGET = 16 << 20  # bytes of one step's working set on the CPU (see _auto_chunk)
_RANDOMNESS_BUDGET = 128 << 20  # bytes of epoch randomness a chunk draws at once on the CPU (see _epochs_per_draw)


def _step_bytes(C: int, d: int, H: int, B: int) -> int:
    """Bytes one training step of ``C`` nets reads and writes: weights, gradients and the two Adam
    moments, and the activations of the forward and backward passes (float32)."""
    return 4 * C * (4 * (2 * d * H + H + d) + 8 * B * d + 4 * B * H)


def _auto_chunk(T: int, n: int, d: int, H: int, B: int, device: torch.device, fused: bool = False) -> int:
    """Nets per chunk so that a chunk's tensors fit a memory budget (256 MiB CPU, 2 GiB CUDA) and,
    on the CPU's batched path, one step's working set fits a cache budget.

    On the CPU a step of the batched matmuls (``fused`` False) reads and writes every net's weights,
    gradients, Adam moments and activations: a chunk whose step fits in ``_CACHE_BUDGET`` (16 MiB,
    half a server's L3) keeps them in cache from one op to the next (Curie-Weiss' preset, d = 64,
    H = 160, 100 nets, 4 epochs on 2 cores, medians of 4 alternating runs: chunks of 100 2.00 s, 50
    1.79 s, 34 1.73 s, 26 1.66-1.72 s, 20 1.71 s, 16 1.87 s, 8 2.17 s). Nets of which fewer than two
    fit (MNIST's: 40 MB each) keep the memory rule's chunk. The budget is a constant, not the
    machine's cache, so the chunk (and a run's bytes) does not depend on the machine. The fused epoch
    of small nets keeps one net at a time in cache and takes the memory budget's chunk.

    A chunk smaller than ``T`` is then rounded down to an even number of nets: torch's CPU ``bmm``
    shares the chunk's matrices out among the threads, and an odd number leaves a core idle (2
    cores, the thesis' MNIST nets: a bare ``bmm`` of 3 nets ran at 132 GFLOP/s, of 2 or 4 at
    166-171; an epoch of 6 nets 10.1 s in chunks of 3, 8.2 s in chunks of 2). The rule does not
    look at the number of threads, so a run's bytes do not depend on it.
    """
    step = _step_bytes(1, d, H, B)
    per_net = step + 4 * (n * d + 2 * n)  # + the epoch's noise and permutation
    budget = (2 << 30) if device.type == "cuda" else (256 << 20)
    C = int(max(1, min(T, budget // per_net)))
    fit = _CACHE_BUDGET // step
    if device.type == "cpu" and not fused and fit >= 2:  # nets too large for it keep the memory rule
        C = min(C, fit)
    if device.type == "cpu" and 2 < C < T:
        C -= C % 2
    return C


def _chunk_bounds(T: int, C: int) -> list[tuple[int, int]]:
    return [(a, min(a + C, T)) for a in range(0, T, C)]


def _randomness(seed: int, steps, epochs: range, n: int, d: int, device, gen, out=None) -> tuple:
    """Permutations (K, C, n) and noise (K, C, n, d) of the ``K`` epochs ``epochs`` for the nets of
    ``steps`` (1-based).

    Net ``t`` draws each epoch ``e`` from a generator seeded with ``(seed, t, e)``: first its
    permutation of the data, then its noise, whatever the chunk it is trained in and however many
    epochs are drawn at once. ``gen``: a ``torch.Generator`` or a list of them; with several, the
    nets are drawn side by side in threads, one generator each (torch's draws are serial; the bytes
    are the same, since every net re-seeds its generator). ``out``: the two tensors to fill (a chunk
    reuses them over its epochs: a fresh 100 MB of noise per epoch was page-faulted in each time,
    62 against 38 ms per Curie-Weiss epoch of 100 nets).
    """
    gens = list(gen) if isinstance(gen, (list, tuple)) else [gen]
    C, K = len(steps), len(epochs)
    if out is None:
        out = (torch.empty((K, C, n), dtype=torch.long, device=device),
               torch.empty((K, C, n, d), dtype=torch.float32, device=device))
    perms, noise = out

    def draw(rows, g: torch.Generator) -> None:
        for i in rows:
            for k, e in enumerate(epochs):
                g.manual_seed(_seed_for(seed, int(steps[i]), e + 1))
                torch.randperm(n, generator=g, device=device, out=perms[k, i])
                torch.randn((n, d), generator=g, device=device, out=noise[k, i])

    workers = max(1, min(len(gens), C))
    map_threads(lambda w: draw(range(w, C, workers), gens[w]), range(workers), workers)
    return perms, noise


def _epochs_per_draw(C: int, n: int, d: int, device: torch.device) -> int:
    """Epochs of randomness a chunk draws at once: on the CPU as many as fit ``_RANDOMNESS_BUDGET``.

    The draws run on Python threads after the chunk's torch ops, whose OpenMP threads keep spinning
    for a few milliseconds and take a core from them (2 cores: 42 ms per Curie-Weiss epoch of 100
    nets drawn alone, 63 ms right after a matmul); drawing several epochs at a time pays that once
    for all of them. On CUDA one epoch at a time (one generator, no threads).
    """
    if device.type != "cpu":
        return 1
    return max(1, _RANDOMNESS_BUDGET // (C * n * (8 + 4 * d)))


def _resumed(resume, config: TrainConfig, fingerprint: str, device, say) -> tuple:
    """(model, config, optimiser state) of an interrupted run loaded from ``resume`` (same config and data)."""
    ddpm = load(resume, device=device, allow_partial=True)
    diff = {k for k, v in ddpm.config.to_dict().items() if k != "device" and config.to_dict()[k] != v}
    if config.seed is None:
        diff.discard("seed")
    if diff:
        raise ValueError(f"cannot resume from {resume}: its config differs in {sorted(diff)}; pass the "
                         "same config (or start a fresh run)")
    if ddpm.data.get("sha256") != fingerprint:
        raise ValueError(f"cannot resume from {resume}: it was trained on different data (n={ddpm.data.get('n')}, "
                         f"d={ddpm.data.get('d')}); pass the same x0")
    config = ddpm.config.replace(device=config.device)
    ddpm.config = config
    say(f"resuming from {resume}: {int(ddpm.epochs_done.min())}..{int(ddpm.epochs_done.max())} of "
        f"{config.epochs} epochs done")
    return ddpm, config, ddpm._train_state or {}


def initial_nets(x0, config: TrainConfig, device=None, progress: bool = False) -> StackedAutoencoders:
    """The nets :func:`train` starts from for data ``x0`` (n, d) and ``config`` (its ``init``, ``seed``).

    ``"random"``: ``nn.Linear``-like; ``"gaussian"``: :meth:`StackedAutoencoders.init_gaussian` with the
    data's mean, covariance and bound; ``"lstsq"``: :func:`physdiff.ddpm.lstsq.init_lstsq` (a tqdm
    bar over its nets if ``progress``). Raises
    ``ValueError`` where the start cannot be built (``hidden < d`` for the last two).
    """
    x0 = np.asarray(x0)
    seed = 0 if config.seed is None else config.seed
    model = StackedAutoencoders(config.T, x0.shape[1], config.hidden, config.activation, seed=seed, device=device)
    alpha_bar = config.make_schedule().alpha_bar[1:]
    if config.init == "gaussian":
        x64 = x0.astype(np.float64)
        model.init_gaussian(x64.mean(axis=0), np.cov(x64, rowvar=False).reshape(x0.shape[1], -1), alpha_bar,
                            bound=float(np.abs(x64).max()))
    elif config.init == "lstsq":
        init_lstsq(model, x0, alpha_bar, seed=seed, progress=progress)
    return model


def _fresh(x0: np.ndarray, config: TrainConfig, metadata, fingerprint: str, device, progress: bool) -> DDPM:
    """A new, untrained model for data ``x0`` (initialised by ``config.init``), its data metadata checked."""
    n, d = x0.shape
    if config.seed is None:
        config = config.replace(seed=int(np.random.default_rng().integers(0, 2**31 - 1)))
    meta = dict(metadata or {})
    image_shape = meta.get("image_shape")
    if image_shape is not None:
        image_shape = [int(s) for s in image_shape]
        if int(np.prod(image_shape)) != d:
            raise ValueError(f"metadata image_shape {image_shape} does not multiply to d={d}")
        meta["image_shape"] = image_shape
    try:
        json.dumps(meta)
    except TypeError as exc:
        raise ValueError(f"metadata must be JSON-serialisable: {exc}") from None
    data = {**meta, "n": int(n), "d": int(d), "sha256": fingerprint}
    schedule = config.make_schedule()
    t0 = time.monotonic()
    model = initial_nets(x0, config, device, progress)
    return DDPM(model, schedule, config, data=data, loss_history=np.full((config.epochs, config.T), np.nan),
                epochs_done=np.zeros(config.T, dtype=np.int64), train_seconds=time.monotonic() - t0)


@dataclass
class _Run:
    """What every chunk of one training run shares (see :func:`train`)."""

    ddpm: DDPM
    x0: torch.Tensor
    sqrt_ab: torch.Tensor
    sqrt_1mab: torch.Tensor
    weights: torch.Tensor
    make_optimizer: Callable
    use_fused: bool
    lrs: np.ndarray
    gen: list  # torch.Generators of the epoch randomness, one per drawing thread
    B: int
    checkpoint_every: float
    on_epoch: Callable | None
    bar: object = None
    ckpt: TrainingCheckpoint | None = None
    t_start: float = 0.0
    last_save: float = 0.0

    def clock_in(self) -> None:
        """Add the time since the last call to the model's training time."""
        now = time.monotonic()
        self.ddpm.train_seconds += now - self.t_start
        self.t_start = now


_NAMES = ("W1", "b1", "W2", "b2")


def _step_weights(weights, schedule: Schedule, config: TrainConfig, device) -> torch.Tensor:
    """The per-timestep loss weights ``w_t`` (T,): ``weights`` validated, or those of ``config.loss``."""
    T = config.T
    if weights is None:
        weights = loss_weights(schedule, config.loss, config.sigma)
    else:
        weights = np.asarray(weights, dtype=np.float64)
        if weights.shape != (T,) or not np.all(np.isfinite(weights)) or np.any(weights <= 0):
            raise ValueError(f"weights must be {T} finite positive numbers (one per step), got shape "
                             f"{weights.shape}")
    return torch.as_tensor(weights, dtype=torch.float32, device=device)


def _minibatch_epoch(run: _Run, params, opt, perms, noise, a: int, b: int, steps, epoch: int) -> torch.Tensor:
    """One epoch of nets ``a..b-1`` with torch ops, one Adam step per minibatch; returns each net's
    summed weighted loss (b - a,) float64. Raises PhysdiffError on a non-finite loss.

    The forward pass and the gradients of ``L_t = w_t mean (eps_theta(x_t) - eps)^2`` are written
    out (``_Step``) into buffers allocated once per epoch. With autograd every step allocated fresh
    gradient tensors (2 x 21 MB for four MNIST nets), which glibc may hand back to the kernel and
    re-fault, page by page, at the next step; whether it does depends on the process's allocation
    history (``benchmarks/bench_train.py``'s MNIST run: 5.4 s of system time in 8 s, 0.61 -> 0.68 of
    bare bmm with the buffers; a thesis-shaped run from a fresh process: unchanged). Where a step
    does not fit in cache, each layer's gradient goes to Adam as soon as it is computed, while it
    is still in cache (thesis-shaped epoch, chunks of 2: 8.2 -> 8.0 s; same bytes)."""
    n, B = run.x0.shape[0], run.B
    w_c = run.weights[a:b]
    sa, s1 = run.sqrt_ab[a:b].view(-1, 1, 1), run.sqrt_1mab[a:b].view(-1, 1, 1)
    loss_sum = torch.zeros(b - a, dtype=torch.float64, device=run.x0.device)
    step = _Step(params, B, run.ddpm.config.activation)
    # a step that does not fit in cache hands Adam each layer while it is in cache; one that fits
    # (the small nets' chunks) is one call cheaper whole (Curie-Weiss preset: 1.74 -> 1.68 s for 4
    # epochs). A custom optimiser always gets whole steps (its documented interface).
    per_layer = type(opt) is StackedAdam and _step_bytes(b - a, run.x0.shape[1], step.W1.shape[2], B) > _CACHE_BUDGET
    for k in range(math.ceil(n / B)):
        lo, hi = k * B, min((k + 1) * B, n)
        per_t = step.forward(run.x0, perms[:, lo:hi], noise[:, lo:hi], sa, s1, w_c)
        if not bool(torch.isfinite(per_t).all()):
            bad = (steps[~torch.isfinite(per_t).cpu()]).tolist()
            raise PhysdiffError(
                f"training diverged: non-finite loss at epoch {epoch + 1}, minibatch {k + 1}, "
                f"timesteps t={bad[:10]}{'...' if len(bad) > 10 else ''} (lr={run.lrs[a:b].max():g}); "
                "lower the learning rate (config.lr / lr_first) or check the data scale")
        step.backward(opt.step, per_layer)
        loss_sum += (w_c * per_t).double() * (hi - lo)
    return loss_sum


class _Step:
    """Forward pass and gradients of one minibatch step of ``C`` stacked nets, in reused buffers.

    With ``x`` (C, m, d) the noised minibatch, ``z = x W1 + b1``, ``h = act(z)``, ``r = h W2 + b2 -
    eps`` and ``L_c = w_c |r_c|^2 / (m d)``: ``g = dL/dr = 2 w r / (m d)``, ``dW2 = h^T g``,
    ``db2 = sum_m g``, ``dz = (g W2^T) * act'(z)``, ``dW1 = x^T dz``, ``db1 = sum_m dz`` [Ho20, eq. 14;
    the chain rule autograd would apply] (ReLU: ``act'(z) = 1`` where ``h > 0``, as torch's).
    """

    def __init__(self, params, B: int, activation: str):
        W1, b1, W2, b2 = (p.detach() for p in params)
        self.W1, self.b1, self.W2, self.b2 = W1, b1, W2, b2
        C, d, H = W1.shape
        self.relu = activation == "relu"
        new = functools.partial(torch.empty, dtype=W1.dtype, device=W1.device)
        self.x, self.r, self.z, self.dz = new(C * B * d), new(C * B * d), new(C * B * H), new(C * B * H)
        self.mask = new(C * B * H) if self.relu else None
        self.tmp = new(C * B * d)
        self.grads = [torch.empty_like(W1), torch.empty_like(b1), torch.empty_like(W2), torch.empty_like(b2)]

    @torch.no_grad()
    def forward(self, x0, idx, eps, sa, s1, w) -> torch.Tensor:
        """The forward pass of the minibatch ``x0[idx]`` (idx (C, m)) with noise ``eps`` (C, m, d)
        and the output gradient ``g``; returns each net's mean squared error (C,)."""
        C, m = idx.shape
        d, H = self.W1.shape[1], self.W1.shape[2]
        x = torch.index_select(x0, 0, idx.reshape(-1), out=self.x[:C * m * d].view(C * m, d)).view(C, m, d)
        tmp = self.tmp[:C * m * d].view(C, m, d)  # scratch for s1 eps, then r^2
        x.mul_(sa).add_(torch.mul(s1, eps, out=tmp))
        h = self.z[:C * m * H].view(C, m, H)  # act(x W1 + b1), written by apply_nets
        r = apply_nets(x, self.W1, self.b1, self.W2, self.b2, "relu" if self.relu else "linear",
                       out=(h, self.r[:C * m * d].view(C, m, d))).sub_(eps)
        per_t = torch.square(r, out=tmp).mean(dim=(1, 2))
        self._xhg = x, h, r.mul_((2.0 / (m * d)) * w.view(-1, 1, 1))
        return per_t

    @torch.no_grad()
    def backward(self, update: Callable, per_layer: bool) -> None:
        """The gradients of the last :meth:`forward`, handed to ``update`` (the optimiser's step):
        ``update([dW1, db1, dW2, db2])`` at the end, or with ``per_layer`` each layer as soon as it
        is computed: ``update([None, None, dW2, db2])`` (after ``dz``, which needs the old ``W2``),
        then ``update([dW1, db1, None, None])``, so that the optimiser reads a layer's gradient while
        it is still in cache (MNIST: 2 x 5.3 MB per net), not after the other layer's."""
        x, h, g = self._xhg
        C, m, H = h.shape
        gW1, gb1, gW2, gb2 = self.grads
        dz = torch.bmm(g, self.W2.transpose(1, 2), out=self.dz[:C * m * H].view(C, m, H))
        if self.relu:  # act'(z) = sign(h): 1 or 0 (20x faster than masked_fill_ on the CPU; same values)
            dz.mul_(torch.sign(h, out=self.mask[:C * m * H].view(C, m, H)))
        torch.bmm(h.transpose(1, 2), g, out=gW2)
        torch.sum(g, dim=1, out=gb2)
        if per_layer:
            update([None, None, gW2, gb2])
        torch.bmm(x.transpose(1, 2), dz, out=gW1)
        torch.sum(dz, dim=1, out=gb1)
        update([gW1, gb1, None, None] if per_layer else self.grads)
        self._xhg = None


def _chunk_optimizer(run: _Run, params, a: int, b: int, e0: int, state: dict):
    """The chunk's optimiser, with its state restored when the chunk is part-trained (resume)."""
    opt = run.make_optimizer(params, run.lrs[a:b])
    if e0 > 0:
        if not state or (state["chunk"][0], state["chunk"][1]) != (a, b):
            raise PhysdiffError(f"checkpoint has nets {a + 1}..{b} part-trained ({e0} epochs) but no "
                                "optimiser state for them; it is corrupt, start a fresh run")
        opt.load_state_tensors(_NAMES, state["tensors"], state["adam_step"])
    return opt


def _progress_bar(ddpm: DDPM, bounds):
    """A tqdm bar over the net-epochs of the chunks in ``bounds``, started at those already done."""
    from tqdm.auto import tqdm

    mine = np.zeros(ddpm.T, dtype=bool)
    for a, b in bounds:
        mine[a:b] = True
    total = int(mine.sum()) * ddpm.config.epochs
    remaining = int((ddpm.config.epochs - ddpm.epochs_done[mine]).sum())
    return tqdm(total=total, initial=total - remaining, unit="net-epoch", desc=f"training {int(mine.sum())} nets",
                dynamic_ncols=True)


def _train_chunk(run: _Run, a: int, b: int, state: dict) -> dict:
    """Train nets ``a..b-1`` for the epochs they still need, checkpointing as :func:`train` says;
    returns the (consumed) resume state."""
    ddpm, config = run.ddpm, run.ddpm.config
    E, n, d = config.epochs, run.x0.shape[0], ddpm.d
    done = ddpm.epochs_done[a:b]
    if not np.all(done == done[0]):
        raise PhysdiffError(f"checkpoint has unequal epochs done within nets {a + 1}..{b}; "
                            "resume with the same config.chunk")
    e0 = int(done[0])
    if e0 >= E:
        return state
    params = [getattr(ddpm.model, nm).detach()[a:b].requires_grad_(True) for nm in _NAMES]
    opt = _chunk_optimizer(run, params, a, b, e0, state)
    steps = torch.arange(a + 1, b + 1)
    fuse = run.use_fused and type(opt) is StackedAdam
    K = min(_epochs_per_draw(b - a, n, d, run.x0.device), E - e0)
    drawn = (torch.empty((K, b - a, n), dtype=torch.long, device=run.x0.device),
             torch.empty((K, b - a, n, d), dtype=torch.float32, device=run.x0.device))
    for epoch in range(e0, E):
        k = (epoch - e0) % K
        if k == 0:  # the randomness of the next K epochs (fewer at the end)
            block = range(epoch, min(epoch + K, E))
            _randomness(config.seed, steps.tolist(), block, n, d, run.x0.device, run.gen,
                        (drawn[0][:len(block)], drawn[1][:len(block)]))
        perms, noise = drawn[0][k], drawn[1][k]
        if fuse:
            sa, s1 = run.sqrt_ab[a:b].view(-1, 1, 1), run.sqrt_1mab[a:b].view(-1, 1, 1)
            loss_sum = _fused.train_epoch(params, opt, run.x0, perms, noise, sa, s1, run.weights[a:b], run.B,
                                          config.activation, steps.tolist(), epoch)
        else:
            loss_sum = _minibatch_epoch(run, params, opt, perms, noise, a, b, steps, epoch)
        ddpm.loss_history[epoch, a:b] = (loss_sum / n).cpu().numpy()
        ddpm.epochs_done[a:b] = epoch + 1
        if run.bar is not None:
            run.bar.update(b - a)
            run.bar.set_postfix(t=f"{a + 1}-{b}", loss=f"{float(loss_sum.mean()) / n:.4g}")
        if run.ckpt is not None and time.monotonic() - run.last_save >= run.checkpoint_every and epoch + 1 < E:
            # the running chunk: weights and Adam state, at this epoch boundary
            ddpm._train_state = {"chunk": [a, b], "adam_step": opt.step_count, "tensors": opt.state_tensors(_NAMES)}
            run.clock_in()
            run.ckpt.running(ddpm)
            ddpm._train_state = None
            run.last_save = time.monotonic()
        if run.on_epoch is not None:
            run.on_epoch(ddpm, steps.tolist(), epoch)
    del opt, params
    if run.ckpt is not None:  # a finished chunk is saved at once, without its optimiser state
        run.clock_in()
        run.ckpt.chunk_done(ddpm, a, b)
        run.last_save = time.monotonic()
    return {}


def train(x0, config: TrainConfig, *, progress: bool = True, resume=None, log: Callable | None = print,
          checkpoint=None, checkpoint_every: float = 60.0, on_epoch: Callable | None = None,
          metadata: dict | None = None, weights=None, optimizer: Callable | None = None, shard=None):
    """Train the ``T`` per-timestep autoencoders of a DDPM on data ``x0`` [Ho20, Algorithm 1].

    For every net ``t`` and epoch: a fresh permutation of the data into minibatches of
    ``config.batch``; for each minibatch fresh noise ``eps ~ N(0, I)``,
    ``x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps`` (the closed-form jump [Ho20, eq. 4]),
    and one Adam step on ``w_t * mean (eps - eps_theta_t(x_t))^2`` [Ho20, eqs. 12 and 14]. Nets are
    trained ``config.chunk`` at a time with batched matmuls (see the module docstring).

    Parameters
    ----------
    x0 : array (n, d), float, n >= 2
        Training data (cast to float32), e.g. images in [-1, 1] or spins in {-1, +1}. A 1-D array
        is refused (reshape n scalar samples to ``(n, 1)``).
    config : TrainConfig
    progress : bool
        Show a tqdm progress bar (over net-epochs).
    resume : path, optional
        A checkpoint directory written by a previous, interrupted run with the same config and data
        (see ``checkpoint``; partial checkpoints are accepted); training continues from where it
        stopped and gives the uninterrupted run's weights bit for bit (same device and chunk size).
        ``config.device`` may differ.
    log : callable or None
        Receives one-line status messages (default ``print``); None for silence.
    checkpoint : path, optional
        Directory of the training checkpoint (see :mod:`.checkpoint`), kept up to date without
        loss: the initial model at the start, each finished chunk of nets at once (weights only),
        the running chunk (weights and Adam moments) at the first epoch boundary after every
        ``checkpoint_every`` seconds, and one consolidated model at the end. A run killed at any
        moment loses at most one interval of one chunk; pass the directory as ``resume`` (it may
        be the same as ``checkpoint``) to continue.
    checkpoint_every : float >= 0
        Seconds between checkpoints of the running chunk (0: after every epoch).
    on_epoch : callable, optional
        Called as ``on_epoch(ddpm, t_steps, epoch)`` after every epoch of every chunk (and after the
        checkpoint), ``t_steps`` the 1-based steps of the chunk; it may raise to stop training.
    metadata : dict, optional
        JSON-serialisable description of the data stored with the model (e.g. ``dataset``,
        ``digits``, ``image_shape``, ``N``, ``beta``); ``image_shape`` must multiply to ``d``.
    weights : array (T,) of float > 0, optional
        Per-timestep loss weights ``w_t`` replacing those of ``config.loss`` (:func:`loss_weights`),
        for studies of the weighting (the ``variants`` study).
    optimizer : callable, optional
        ``optimizer(params, lrs)`` returning an object with :class:`StackedAdam`'s interface
        (``step``, ``state_tensors``, ``load_state_tensors``) for the stacked parameters of a chunk
        and their per-step learning rates; default :class:`StackedAdam`. Neither ``weights`` nor
        ``optimizer`` is recorded in checkpoints: to ``resume`` such a run, pass them again.
    shard : physdiff.ddpm.distributed.Shard, optional
        Train only this rank's share of the chunks (:func:`~physdiff.ddpm.distributed.shard_chunks`);
        the other nets keep their initial weights and ``epochs_done == 0``, and
        :func:`~physdiff.ddpm.distributed.merge_shards` joins the ranks' models into the one a
        single process would have trained.

    Returns
    -------
    DDPM
        The trained model; ``ddpm.loss_history`` (epochs, T) holds the per-epoch mean loss of every
        net.

    Raises
    ------
    ValueError
        ``x0`` not 2-D, empty or non-finite; a bad config; a resume checkpoint whose config or data
        differ.
    PhysdiffError
        A NaN or inf loss (training stops at once; lower the learning rate), or a corrupt resume
        checkpoint.
    FileNotFoundError
        ``resume`` does not exist.
    """
    if not isinstance(config, TrainConfig):
        raise ValueError(f"config must be a TrainConfig (see physdiff.ddpm.get_config), got {type(config).__name__}")
    if np.ndim(x0) != 2:
        raise ValueError(f"x0 must have shape (n, d), got shape {np.shape(x0)}; for n samples of one feature "
                         "pass x0.reshape(-1, 1), for one image per row x0.reshape(len(x0), -1)")
    x0 = as_samples("x0", x0)
    if x0.shape[0] < 2:
        raise ValueError(f"x0 must hold n >= 2 samples (rows), got shape {x0.shape}: one sample is no "
                         "distribution to learn")
    if x0.dtype.kind not in "fiu":
        raise ValueError(f"x0 must be numeric, got dtype {x0.dtype}")
    x0 = np.ascontiguousarray(x0, dtype=np.float32)
    if not np.isfinite(x0).all():
        raise ValueError("x0 overflows float32 (inf after the cast); rescale the data")
    check_real("checkpoint_every", checkpoint_every, lo=0.0)
    say = log if log is not None else (lambda *_: None)
    n, d = x0.shape
    device = resolve_device(config.device)
    fingerprint = _fingerprint(x0)

    if resume is not None:
        ddpm, config, state = _resumed(resume, config, fingerprint, device, say)
    else:
        if config.init == "lstsq":
            say(f"fitting the least-squares start of {config.T} nets (init='lstsq')")
        ddpm, state = _fresh(x0, config, metadata, fingerprint, device, progress), {}
        config = ddpm.config
    if ddpm.d != d:
        raise ValueError(f"x0 has d={d} features but the model has d={ddpm.d}")
    schedule = ddpm.schedule
    T, E = config.T, config.epochs
    B = min(config.batch, n)
    if B < config.batch:
        say(f"note: only n={n} training points; using minibatches of {B} instead of {config.batch}")
    use_fused = _fused.use_fused(device, d, config.hidden, B)  # small nets: one kernel per epoch
    C = config.chunk or _auto_chunk(T, n, d, config.hidden, B, device, fused=use_fused)
    if shard is not None and not config.chunk:
        C = min(C, -(-T // shard.size))  # every rank gets work
    bounds = shard_chunks(_chunk_bounds(T, C), shard)  # all chunks, or this rank's share
    if state and (state["chunk"][0], state["chunk"][1]) not in bounds:
        raise PhysdiffError(f"resume state is for nets {state['chunk']}, which is not a chunk of size {C}; "
                            "resume with the same config.chunk")

    ab = torch.tensor(np.array(schedule.alpha_bar[1:]), dtype=torch.float64)
    run = _Run(ddpm=ddpm, x0=torch.from_numpy(x0).to(device), sqrt_ab=ab.sqrt().to(device=device, dtype=torch.float32),
               sqrt_1mab=(1.0 - ab).sqrt().to(device=device, dtype=torch.float32),
               weights=_step_weights(weights, schedule, config, device),
               make_optimizer=StackedAdam if optimizer is None else optimizer,
               use_fused=use_fused,
               lrs=config.lr_per_step(), B=B, gen=[torch.Generator(device=device) for _ in range(
                   torch.get_num_threads() if device.type == "cpu" else 1)],
               checkpoint_every=checkpoint_every, on_epoch=on_epoch)

    say(f"training {T} nets (d={d}, hidden={config.hidden}, {config.activation}) on n={n} points: "
        f"{E} epochs x {math.ceil(n / B)} minibatches of {B}, {len(bounds)} chunk(s) of <= {C} nets, device {device}")
    if progress and E:
        run.bar = _progress_bar(ddpm, bounds)
    if checkpoint is not None:
        run.ckpt = TrainingCheckpoint(checkpoint)
        run.ckpt.start(ddpm, resumed_here=resume is not None and Path(resume).resolve() == Path(checkpoint).resolve())
    run.t_start = run.last_save = time.monotonic()
    try:
        for a, b in bounds:
            state = _train_chunk(run, a, b, state)
    finally:
        if run.bar is not None:
            run.bar.close()
    ddpm.train_seconds += time.monotonic() - run.t_start
    ddpm._train_state = None
    if run.ckpt is not None:
        run.ckpt.finish(ddpm)
    final = (f"final mean loss {np.nanmean(ddpm.loss_history[-1]):.4g}" if E
             else f"no Adam epochs (init {config.init!r})")
    say(f"trained {T} nets in {ddpm.train_seconds:.1f} s; {final}")
    return ddpm


def train_snapshots(x0, config: TrainConfig, epochs: Sequence[int], *, progress: bool = True,
                    log: Callable | None = print, metadata: dict | None = None, weights=None,
                    optimizer: Callable | None = None, on_epoch: Callable | None = None) -> dict[int, DDPM]:
    """The models after each number of epochs in ``epochs``, kept from ONE run of ``max(epochs)`` epochs.

    For scans over training time (how the learned speciation time moves with Adam epochs, ...). The
    copy kept after ``e`` epochs is bit for bit the model ``train(x0, config.replace(epochs=e))``
    returns (``e = 0``: the start alone): net ``t`` draws its permutation and noise of epoch ``k``
    from a generator seeded by ``(config.seed, t, k)``, its learning rate depends on ``t`` and not
    on the number of epochs, and so does the chunking, so the first ``e`` epochs of a longer run are
    an ``e``-epoch run (tested). The scan then costs one start and ``max(epochs)`` epochs instead of
    ``len(epochs)`` starts and ``sum(epochs)`` epochs.

    Parameters
    ----------
    x0, config, progress, log, metadata, weights, optimizer, on_epoch
        As :func:`train`; ``config.epochs`` is replaced by ``max(epochs)``. (No checkpoint or resume:
        the copies live in memory.)
    epochs : sequence of int >= 0
        Numbers of epochs after which a copy is kept (repeats merged). 0 needs a start other than
        ``init="random"``, as for :func:`train`.

    Returns
    -------
    dict
        ``{e: DDPM}`` in increasing ``e``: each copy has ``config.epochs = e``, the first ``e`` rows
        of the run's ``loss_history`` and, as ``train_seconds``, the seconds of the shared run until
        the copy was complete. The model of the largest ``e`` is the run's own.

    Raises
    ------
    ValueError
        ``epochs`` empty, or an entry that is not an integer >= 0; a config refused for one of the
        ``e`` (see :class:`TrainConfig`); as :func:`train`.
    PhysdiffError
        As :func:`train` (a non-finite loss stops the run; nothing is returned).
    """
    if not isinstance(config, TrainConfig):
        raise ValueError(f"config must be a TrainConfig (see physdiff.ddpm.get_config), got {type(config).__name__}")
    wanted = sorted({_epochs_entry(e) for e in epochs})
    if not wanted:
        raise ValueError("epochs must hold at least one number of epochs")
    configs = {e: config.replace(epochs=e) for e in wanted}  # each validated before any work
    make_optimizer = StackedAdam if optimizer is None else optimizer
    t0 = time.monotonic()
    starts: list = []     # each chunk's parameters before its first step, in chunk order
    kept: dict = {e: [] for e in wanted[:-1] if e > 0}
    seconds: dict = {}
    keep_start = wanted[0] == 0 and len(wanted) > 1

    def chunk_optimizer(params, lrs):  # called once per chunk, before its first step
        if keep_start:
            starts.append([q.detach().clone() for q in params])
        seconds.setdefault(0, time.monotonic() - t0)
        return make_optimizer(params, lrs)

    def keep(ddpm: DDPM, steps, epoch: int) -> None:
        if epoch + 1 in kept:
            a, b = steps[0] - 1, steps[-1]
            kept[epoch + 1].append([getattr(ddpm.model, nm).detach()[a:b].clone() for nm in _NAMES])
            seconds[epoch + 1] = time.monotonic() - t0
        if on_epoch is not None:
            on_epoch(ddpm, steps, epoch)

    final = train(x0, configs[wanted[-1]], progress=progress, log=log, metadata=metadata, weights=weights,
                  optimizer=chunk_optimizer, on_epoch=keep)
    out = {}
    for e in wanted[:-1]:
        parts = starts if e == 0 else kept[e]
        model = copy.deepcopy(final.model)
        with torch.no_grad():
            for i, nm in enumerate(_NAMES):
                getattr(model, nm).copy_(torch.cat([part[i] for part in parts]))
        out[e] = DDPM(model, final.schedule, final.config.replace(epochs=e), data=dict(final.data),
                      loss_history=final.loss_history[:e].copy(), epochs_done=np.full(final.T, e, dtype=np.int64),
                      train_seconds=seconds[e])
    out[wanted[-1]] = final
    return out


def _epochs_entry(e) -> int:
    """One entry of ``train_snapshots``' ``epochs``: an integer >= 0."""
    if isinstance(e, bool) or not isinstance(e, (int, np.integer)) or e < 0:
        raise ValueError(f"epochs must hold integers >= 0, got {e!r}")
    return int(e)
