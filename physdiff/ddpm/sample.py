"""The trained model as a noise predictor: sampling, scores, reconstruction and inpainting.

A :class:`DDPM` exposes its nets as ``eps_fn(x_t, t)``, the same door through which the exact
Curie-Weiss score enters :mod:`physdiff.reverse`; sampling therefore runs the very code that the
exact score runs (:func:`physdiff.reverse.reverse_chain`), on the model's torch device.

References
----------
[Ho20] Ho, Jain, Abbeel (2020), arXiv:2006.11239: Algorithm 2 (sampling), eq. 4 (closed-form jump).
[SME21] Song, Meng, Ermon (2021), DDIM, arXiv:2010.02502: eq. 12 (DDIM step), sec. 4.2 (strided).
[Thesis] Bustinduy de la Guerra (2024): reconstruction from a diffused image, inpainting.
[Lug22] Lugmayr et al. (2022), RePaint, arXiv:2201.09865, eq. 8 (known pixels from q(x_{t-1}|x0)).
[SD15] Sohl-Dickstein et al. (2015), arXiv:1503.03585, sec. 2.5 (multiplying distributions) and
Fig. 5 (inpainting with the known pixels clamped).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from .._util import SeedLike, as_generator, as_samples, check_positive_int, resolve_device
from ..reverse import NoiseSource, reverse_chain, reverse_step
from ..schedules import Schedule
from .checkpoint import read_checkpoint, save_checkpoint
from .config import SIGMAS, TrainConfig
from .model import PARAM_NAMES, StackedAutoencoders

__all__ = ["DDPM", "load", "INPAINT_METHODS"]

#: How :meth:`DDPM.inpaint` imposes the known entries: the forward marginal at each step's noise
#: level [Lug22], or clamped to the data [SD15].
INPAINT_METHODS = ("marginal", "clamp")


class DDPM:
    """A trained per-timestep autoencoder DDPM: nets, schedule, config and training record.

    Built by :func:`physdiff.ddpm.train` or :func:`physdiff.ddpm.load`.

    Attributes
    ----------
    model : StackedAutoencoders
        The ``T`` nets (torch, on :attr:`device`).
    schedule : Schedule
    config : TrainConfig
    data : dict
        Training-data metadata: ``n``, ``d``, ``sha256`` of the float32 data, and what the caller
        gave (``dataset``, ``image_shape``, ``digits``, ...).
    loss_history : ndarray float64 (epochs, T)
        Per-epoch mean training loss of every net (NaN where not trained yet).
    epochs_done : ndarray int64 (T,)
        Epochs completed by each net.
    train_seconds : float
        Wall time spent training (summed over resumed runs).
    """

    def __init__(self, model: StackedAutoencoders, schedule: Schedule, config: TrainConfig, *,
                 data: dict | None = None, loss_history: np.ndarray | None = None,
                 epochs_done: np.ndarray | None = None, train_seconds: float = 0.0):
        if model.T != schedule.T:
            raise ValueError(f"model has T={model.T} nets but the schedule has T={schedule.T} steps")
        self.model = model
        self.schedule = schedule
        self.config = config
        self.data = dict(data or {"n": None, "d": model.d})
        self.loss_history = (np.full((config.epochs, model.T), np.nan) if loss_history is None
                             else np.asarray(loss_history, dtype=np.float64))
        self.epochs_done = (np.full(model.T, config.epochs, dtype=np.int64) if epochs_done is None
                            else np.asarray(epochs_done, dtype=np.int64))
        self.train_seconds = float(train_seconds)
        self._train_state: dict | None = None  # Adam moments of a part-trained chunk (resume)

    # ---- properties -------------------------------------------------------------------------------
    @property
    def T(self) -> int:
        """Number of diffusion steps (nets)."""
        return self.model.T

    @property
    def d(self) -> int:
        """Data dimension."""
        return self.model.d

    @property
    def image_shape(self) -> tuple[int, ...] | None:
        """Shape of one image (e.g. (28, 28)) if the data are images, else None."""
        s = self.data.get("image_shape")
        return None if s is None else tuple(int(v) for v in s)

    @property
    def device(self) -> torch.device:
        """The torch device of the nets."""
        return self.model.W1.device

    @property
    def trained(self) -> bool:
        """Whether every net has completed ``config.epochs`` epochs."""
        return bool(np.all(self.epochs_done >= self.config.epochs))

    def to(self, device) -> "DDPM":
        """Move the nets to ``device`` (``"auto"``, ``"cpu"``, ``"cuda"``); returns self."""
        self.model.to(resolve_device(device))
        return self

    def __repr__(self) -> str:
        return (f"DDPM(T={self.T}, d={self.d}, hidden={self.model.hidden}, activation={self.model.activation!r}, "
                f"epochs={int(self.epochs_done.min())}/{self.config.epochs}, device={self.device})")

    # ---- the noise predictor ---------------------------------------------------------------------
    def _check_t(self, t, n: int):
        if isinstance(t, (int, np.integer)) and not isinstance(t, bool):
            if not 1 <= int(t) <= self.T:
                raise ValueError(f"step t must lie in 1..{self.T}, got {int(t)}")
            return int(t)
        if isinstance(t, torch.Tensor) and t.ndim == 0:
            return self._check_t(int(t), n)
        arr = np.asarray(t.cpu() if isinstance(t, torch.Tensor) else t)
        if arr.ndim == 0:
            return self._check_t(arr.item(), n) if arr.dtype.kind in "iu" else self._bad_t(arr)
        if arr.dtype.kind not in "iu":
            self._bad_t(arr)
        if arr.shape != (n,):
            raise ValueError(f"t must be an int or have shape ({n},) (one step per sample), got {arr.shape}")
        if arr.min() < 1 or arr.max() > self.T:
            raise ValueError(f"steps t must lie in 1..{self.T}, got range [{arr.min()}, {arr.max()}]")
        return arr.astype(np.int64)

    @staticmethod
    def _bad_t(arr):
        raise ValueError(f"t must be an integer step or an integer array, got dtype {arr.dtype}")

    def eps(self, x_t, t):
        """Predicted noise ``eps_theta(x_t, t)`` [Ho20, eq. 11].

        Parameters
        ----------
        x_t : array (n, d) or (d,), numpy or torch, float
            States at step ``t``.
        t : int or int array (n,)
            Steps in ``1..T`` (one per sample, or one for all).

        Returns
        -------
        array like ``x_t``
            numpy in -> numpy out (the input's float dtype; computed in float32); torch in -> torch
            out on the input's device and dtype. Shape (n, d), or (d,) for a 1-D input.

        Raises
        ------
        ValueError
            Wrong shape, non-finite numpy input, or steps outside ``1..T``.
        """
        is_torch = isinstance(x_t, torch.Tensor)
        squeeze = getattr(x_t, "ndim", None) == 1
        if is_torch:
            x = x_t[None] if squeeze else x_t
            if x.ndim != 2 or x.shape[1] != self.d:
                raise ValueError(f"x_t must have shape (n, {self.d}), got {tuple(x_t.shape)}")
            out_dtype, out_device = x.dtype, x.device
            xin = x.to(device=self.device, dtype=self.model.W1.dtype)
        else:
            x = as_samples("x_t", x_t, d=self.d)
            out_dtype = x.dtype if x.dtype.kind == "f" else np.float32
            xin = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(self.device)
        tt = self._check_t(t, x.shape[0])
        with torch.no_grad():
            e = self.model.eps(xin, tt)
        if is_torch:
            e = e.to(device=out_device, dtype=out_dtype)
        else:
            e = e.cpu().numpy().astype(out_dtype, copy=False)
        return e[0] if squeeze else e

    def score(self, x_t, t):
        """Learned score ``-eps_theta(x_t, t) / sqrt(1 - alpha_bar_t)`` (Tweedie; ``docs/theory.md``).

        Same shapes, kinds and errors as :meth:`eps`.
        """
        e = self.eps(x_t, t)
        tt = self._check_t(t, e.shape[0] if e.ndim == 2 else 1)
        ab = self.schedule.alpha_bar[tt]
        scale = 1.0 / np.sqrt(1.0 - ab)
        if np.ndim(scale):
            scale = scale[:, None]
            if isinstance(e, torch.Tensor):
                scale = torch.as_tensor(scale, dtype=e.dtype, device=e.device)
            else:
                scale = scale.astype(e.dtype)
        else:
            scale = float(scale)
        return -e * scale

    @property
    def eps_fn(self):
        """``eps_fn(x_t, t) -> eps`` for :mod:`physdiff.reverse` (numpy or torch, ``t`` an int step)."""
        return self.eps

    # ---- generation ------------------------------------------------------------------------------
    def _sigma(self, sigma):
        sigma = self.config.sigma if sigma is None else sigma
        if sigma not in SIGMAS:
            raise ValueError(f"sigma must be one of {SIGMAS} or None (the config's), got {sigma!r}")
        return sigma

    def default_trajectory_steps(self, k: int = 11) -> np.ndarray:
        """``k`` steps evenly spaced from ``T`` down to 0 (the default ``steps`` of :meth:`sample`)."""
        return np.unique(np.round(np.linspace(0, self.T, k)).astype(np.int64))[::-1].copy()

    def _noise(self, rng: np.random.Generator, n: int) -> torch.Tensor:
        return torch.from_numpy(rng.standard_normal((n, self.d), dtype=np.float32)).to(self.device)

    def sample(self, n: int, seed: SeedLike = None, return_trajectory: bool = False,
               record: Sequence[int] | None = None, sigma: str | None = None, progress: bool = False, *,
               sampler: str = "ancestral", steps=None, eta: float = 0.0, clip=None):
        """Generate ``n`` samples: ancestral [Ho20, Algorithm 2] or DDIM [SME21, eq. 12], full or strided.

        ``x_T ~ N(0, I)`` (numpy, from ``seed``), then :func:`physdiff.reverse.reverse_chain` with this
        model's :attr:`eps_fn`, run in torch on the model's device: the same code that runs an
        exact score. With ``steps`` only those trained steps are visited, each net at its own
        ``alpha_bar`` (:func:`physdiff.reverse.sampling_steps`).

        Parameters
        ----------
        n : int
            Number of samples, >= 1.
        seed : int, Generator or None
            Equal seeds give equal samples (on the same machine and device).
        return_trajectory : bool
            Also return the states at the steps ``record``.
        record : sequence of int, optional
            Visited steps to record; default :meth:`default_trajectory_steps` (11 steps from ``T``
            to 0) for the full chain, every visited step for a strided one.
        sigma : {"beta", "posterior"}, optional
            Reverse-step variance of the ancestral sampler; default ``config.sigma``.
        progress : bool
            tqdm bar over the reverse steps.
        sampler : {"ancestral", "ddim"}
        steps : None, int or sequence of int
            Trained steps visited: ``None`` all ``T``; an int ``K``: ``K`` evenly spaced jumps.
        eta : float in [0, 1]
            DDIM noise (0: deterministic given ``x_T``; 1: the ancestral chain with
            ``sigma="posterior"``).
        clip : None, float > 0 or (lo, hi)
            Clip the predicted ``x0`` at each step (images in ``[-1, 1]``: ``clip=1``).

        Returns
        -------
        x : ndarray float32 (n, d)
        trajectory : ndarray float32 (len(record), n, d)
            Only with ``return_trajectory``; in the order of ``record``.

        Raises
        ------
        ValueError
            ``n < 1``, an unknown ``sigma`` or ``sampler``, bad ``steps``, ``eta`` or ``clip``, or
            record steps that are not visited.
        """
        from ..reverse import sampling_steps

        n = check_positive_int("n", n)
        sigma = self._sigma(sigma)
        visited = sampling_steps(self.schedule, steps)  # validates steps before any work
        rng = as_generator(seed)
        if return_trajectory and record is None:
            record = self.default_trajectory_steps() if steps is None else visited
        record = None if not return_trajectory else [int(s) for s in record]
        x_T = self._noise(rng, n)
        out = reverse_chain(self.eps_fn, x_T, self.schedule, seed=rng, sigma=sigma, record=record,
                            progress=progress, sampler=sampler, steps=steps, eta=eta, clip=clip)
        if record is None:
            return out.cpu().numpy().astype(np.float32, copy=False)
        x, traj = out
        return x.cpu().numpy().astype(np.float32, copy=False), traj.cpu().numpy().astype(np.float32, copy=False)

    def _diffuse(self, x0: torch.Tensor, t: int, rng: np.random.Generator) -> torch.Tensor:
        """Closed-form jump ``sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps`` [Ho20, eq. 4]."""
        ab = float(self.schedule.alpha_bar[t])
        return float(np.sqrt(ab)) * x0 + float(np.sqrt(1.0 - ab)) * self._noise(rng, x0.shape[0])

    def reconstruct(self, x0, t_start: int, seed: SeedLike = None, sigma: str | None = None) -> np.ndarray:
        """Diffuse ``x0`` to step ``t_start`` with the closed form, then run the reverse chain back to 0.

        The thesis' reconstruction experiment: reliable up to about ``t = 400`` of 1000 for MNIST.

        Parameters
        ----------
        x0 : array (n, d) or (d,), float
        t_start : int
            In ``0..T``; ``t_start = 0`` returns ``x0`` (as float32) unchanged.
        seed : int, Generator or None
        sigma : {"beta", "posterior"}, optional

        Returns
        -------
        ndarray float32 (n, d)

        Raises
        ------
        ValueError
            Wrong shape, non-finite ``x0`` or ``t_start`` outside ``0..T``.
        """
        x0 = as_samples("x0", x0, d=self.d).astype(np.float32, copy=False)
        t_start = check_positive_int("t_start", t_start, minimum=0)
        if t_start > self.T:
            raise ValueError(f"t_start must lie in 0..{self.T}, got {t_start}")
        sigma = self._sigma(sigma)
        if t_start == 0:
            return x0.copy()
        rng = as_generator(seed)
        x_t = self._diffuse(torch.from_numpy(np.ascontiguousarray(x0)).to(self.device), t_start, rng)
        x = reverse_chain(self.eps_fn, x_t, self.schedule, t_start=t_start, seed=rng, sigma=sigma)
        return x.cpu().numpy().astype(np.float32, copy=False)

    def inpaint(self, x0, known_mask, seed: SeedLike = None, sigma: str | None = None,
                progress: bool = False, method: str = "marginal") -> np.ndarray:
        """Generate the unknown entries of ``x0`` given the known ones.

        Reverse chain from ``x_T ~ N(0, I)`` on the unknown entries. ``method`` says what the known
        entries hold along the chain:

        ``"marginal"`` (default)
            At ``T``, and after every step ``t -> t-1``, they are replaced by a forward sample of the
            known data at that step's noise level, ``sqrt(alpha_bar_{t-1}) x0 + sqrt(1 -
            alpha_bar_{t-1}) eps`` (the forward marginal ``q(x_{t-1} | x0)``) [Lug22, eq. 8, without
            resampling], so the model only ever sees states consistent with the noise level.
        ``"clamp"``
            They are clamped to the data ``x0`` at every step, from ``T`` on: the reverse kernel of
            a known entry has mean ``x0`` and variance 0, i.e. the model distribution is multiplied
            by ``r(x_t) = delta(x_known - x0_known)`` at every ``t`` [SD15, sec. 2.5 "Multiplying
            distributions, and computing posteriors", and the inpainting of its Fig. 5]. The nets
            then see clean known pixels next to noisy unknown ones, a state the forward process
            never produces.

        At step 0 the known entries are ``x0`` exactly for both. Both methods draw the same start
        noise and the same chain noise for the unknown entries from one ``seed`` (common random
        numbers), so they can be compared sample by sample.

        Parameters
        ----------
        x0 : array (n, d) or (d,), float
            Data whose unknown entries are ignored (they may hold anything finite).
        known_mask : bool array (d,) or (n, d)
            True where ``x0`` is known (kept).
        seed : int, Generator or None
        sigma : {"beta", "posterior"}, optional
        progress : bool
        method : {"marginal", "clamp"}
            How the known entries are imposed (above).

        Returns
        -------
        ndarray float32 (n, d)
            Equal to ``x0`` (as float32) wherever ``known_mask`` is True.

        Raises
        ------
        ValueError
            Wrong shapes, a non-boolean mask, non-finite ``x0`` or an unknown ``method``.
        """
        if method not in INPAINT_METHODS:
            raise ValueError(f"method must be one of {INPAINT_METHODS}, got {method!r}")
        x0 = as_samples("x0", x0, d=self.d).astype(np.float32, copy=False)
        n = x0.shape[0]
        mask = np.asarray(known_mask)
        if mask.dtype != bool:
            raise ValueError(f"known_mask must be a boolean array, got dtype {mask.dtype}")
        if mask.shape not in ((self.d,), (n, self.d)):
            raise ValueError(f"known_mask must have shape ({self.d},) or ({n}, {self.d}), got {mask.shape}")
        mask = np.broadcast_to(mask, x0.shape)
        sigma = self._sigma(sigma)
        rng = as_generator(seed)
        x0_t = torch.from_numpy(np.ascontiguousarray(x0)).to(self.device)
        m = torch.from_numpy(np.array(mask, dtype=bool)).to(self.device)
        clamp = method == "clamp"
        known_T = self._diffuse(x0_t, self.T, rng)  # drawn by both methods: same noise afterwards
        x = torch.where(m, x0_t if clamp else known_T, self._noise(rng, n))
        noise = NoiseSource(x, rng)
        steps = range(self.T, 0, -1)
        if progress:
            from tqdm.auto import tqdm

            steps = tqdm(steps, desc="inpainting", unit="step", leave=False)
        for t in steps:
            z = noise.normal(x) if t > 1 else None
            x = reverse_step(x, self.eps(x, t), t, self.schedule, z, sigma)
            known = x0_t if (t == 1 or clamp) else self._diffuse(x0_t, t - 1, rng)
            x = torch.where(m, known, x)
        out = x.cpu().numpy().astype(np.float32, copy=False)
        out[mask] = x0[mask]  # exact, whatever the float arithmetic did
        return out

    # ---- persistence ---------------------------------------------------------------------------
    def save(self, path) -> None:
        """Write the checkpoint directory ``path`` as one transaction (see :mod:`.checkpoint`).

        ``config.json`` records the SHA-256 of the weights and whether training finished."""
        save_checkpoint(self, path)


def load(path, device=None, allow_partial: bool = False) -> DDPM:
    """Load a :class:`DDPM` saved by :meth:`DDPM.save` or by training (safetensors + JSON; never pickle).

    Every weights file is checked against the SHA-256 that ``config.json`` records.

    Parameters
    ----------
    path : str or Path
        Checkpoint directory.
    device : str, optional
        ``"auto"`` (default: cuda if available), ``"cpu"``, ``"cuda"``, ``"cuda:N"``.
    allow_partial : bool
        Load a checkpoint whose training has not finished (``DDPM.trained`` is then False; the
        part-trained chunk's optimiser state is kept, so training can resume from it).

    Raises
    ------
    FileNotFoundError
        ``path`` or one of its files is missing.
    PhysdiffError
        Corrupt or inconsistent files; a weights file that is not the one saved (swapped or edited);
        a partial checkpoint without ``allow_partial=True``.
    """
    parts = read_checkpoint(path, device=device, allow_partial=allow_partial)
    t = parts["tensors"]
    model = StackedAutoencoders.from_tensors(*(t[k] for k in PARAM_NAMES), activation=parts["activation"])
    ddpm = DDPM(model, parts["schedule"], parts["config"], data=parts["data"],
                loss_history=t["loss_history"].numpy(), epochs_done=t["epochs_done"].numpy(),
                train_seconds=parts["train_seconds"])
    ddpm._train_state = parts["train_state"]
    return ddpm
