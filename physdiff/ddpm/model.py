"""``StackedAutoencoders``: one Linear-ReLU-Linear noise predictor per timestep, stored as stacked tensors.

The reverse process of [Thesis] is not one time-conditioned network but ``T`` independent
single-hidden-layer autoencoders ``eps_t(x) = W2_t^T act(W1_t^T x + b1_t) + b2_t``, one per step
``t = 1..T``; the net of step ``t`` only ever sees ``x_t``. Stacking their weights along a leading
axis (index ``t - 1`` for step ``t``) lets many timesteps run in one batched matmul
(``torch.baddbmm``), which is what makes training all ``T`` nets fast (see :mod:`.train`).

References
----------
[Thesis] Bustinduy de la Guerra (2024), Out-of-Equilibrium Machine Learning (UCM), Sec. on the DDPM
architecture: one autoencoder Linear(d, H) -> ReLU -> Linear(H, d) per timestep, predicting eps.
[Ho20] Ho, Jain, Abbeel (2020), arXiv:2006.11239: the eps-parametrisation (eq. 11).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from .._util import check_positive_int

__all__ = ["StackedAutoencoders", "ACTIVATIONS"]

ACTIVATIONS = ("relu", "linear")

#: Names and (per-timestep) shapes of the stacked parameters, in a fixed order.
PARAM_NAMES = ("W1", "b1", "W2", "b2")


def _seed_for(seed: int, *key: int) -> int:
    """A 63-bit torch seed derived from ``seed`` and an integer ``key`` (numpy SeedSequence)."""
    ss = np.random.SeedSequence(entropy=int(seed), spawn_key=tuple(int(k) for k in key))
    return int(ss.generate_state(1, np.uint64)[0] & np.uint64(2**63 - 1))


class StackedAutoencoders(nn.Module):
    """``T`` independent single-hidden-layer autoencoders, one per diffusion step, as stacked tensors.

    Net ``t`` (for step ``t = 1..T``, stored at index ``t - 1``) maps ``x_t`` (d,) to a prediction of
    the noise ``eps`` (d,): ``eps_t(x) = act(x @ W1[t-1] + b1[t-1]) @ W2[t-1] + b2[t-1]``, i.e.
    ``nn.Linear(d, H) -> act -> nn.Linear(H, d)`` with ``W1[t-1] = linear1.weight.T`` and
    ``W2[t-1] = linear2.weight.T`` [Thesis].

    Parameters
    ----------
    T : int
        Number of diffusion steps (of nets), >= 1.
    d : int
        Data dimension (features), >= 1.
    hidden : int
        Hidden units ``H`` of each net, >= 1.
    activation : {"relu", "linear"}
        Hidden non-linearity. ``"linear"`` (no non-linearity) gives the linear model of the
        thesis' Annex II, which can only represent a Gaussian ``p_t``.
    seed : int, optional
        Seed of the initialisation (default 0). Each net is initialised like ``nn.Linear``:
        weights and biases uniform in ``(-1/sqrt(fan_in), 1/sqrt(fan_in))``, from its own stream
        derived from ``(seed, t)``, so net ``t``'s initial weights do not depend on ``T``.
    device : str or torch.device, optional
        Where the parameters live (default CPU).
    dtype : torch.dtype
        Parameter dtype (default float32).

    Attributes
    ----------
    W1 : Parameter (T, d, H)
    b1 : Parameter (T, H)
    W2 : Parameter (T, H, d)
    b2 : Parameter (T, d)

    Raises
    ------
    ValueError
        Non-positive sizes or an unknown activation.
    """

    def __init__(self, T: int, d: int, hidden: int, activation: str = "relu", *, seed: int | None = 0,
                 device=None, dtype: torch.dtype = torch.float32):
        super().__init__()
        self.T = check_positive_int("T", T)
        self.d = check_positive_int("d", d)
        self.hidden = check_positive_int("hidden", hidden)
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
        self.activation = activation
        self.W1 = nn.Parameter(torch.empty(T, d, hidden, device=device, dtype=dtype))
        self.b1 = nn.Parameter(torch.empty(T, hidden, device=device, dtype=dtype))
        self.W2 = nn.Parameter(torch.empty(T, hidden, d, device=device, dtype=dtype))
        self.b2 = nn.Parameter(torch.empty(T, d, device=device, dtype=dtype))
        self.reset_parameters(0 if seed is None else seed)

    @classmethod
    def from_tensors(cls, W1: torch.Tensor, b1: torch.Tensor, W2: torch.Tensor, b2: torch.Tensor,
                     activation: str = "relu") -> "StackedAutoencoders":
        """Wrap existing weights (no initialisation, no copy): ``W1`` (T, d, H), ``b1`` (T, H),
        ``W2`` (T, H, d), ``b2`` (T, d), all on one device with one dtype.

        Raises ``ValueError`` on inconsistent shapes, devices or dtypes, or an unknown activation.
        """
        if W1.ndim != 3:
            raise ValueError(f"W1 must have shape (T, d, H), got {tuple(W1.shape)}")
        T, d, H = W1.shape
        expected = {"W1": (T, d, H), "b1": (T, H), "W2": (T, H, d), "b2": (T, d)}
        for name, w in zip(PARAM_NAMES, (W1, b1, W2, b2)):
            if tuple(w.shape) != expected[name]:
                raise ValueError(f"{name} must have shape {expected[name]}, got {tuple(w.shape)}")
            if w.device != W1.device or w.dtype != W1.dtype:
                raise ValueError(f"{name} is on {w.device} / {w.dtype}, W1 on {W1.device} / {W1.dtype}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
        self = cls.__new__(cls)
        nn.Module.__init__(self)
        self.T, self.d, self.hidden, self.activation = int(T), int(d), int(H), activation
        for name, w in zip(PARAM_NAMES, (W1, b1, W2, b2)):
            setattr(self, name, nn.Parameter(w.detach()))
        return self

    @torch.no_grad()
    def reset_parameters(self, seed: int = 0) -> None:
        """Initialise every net like ``nn.Linear``: uniform in ``+-1/sqrt(fan_in)`` (fan_in = d, then H).

        Drawn on the CPU from a ``torch.Generator`` seeded per timestep from ``(seed, t)``, then
        copied to the parameters' device, so the initial weights are the same on every device.
        """
        b_in, b_out = 1.0 / math.sqrt(self.d), 1.0 / math.sqrt(self.hidden)
        g = torch.Generator(device="cpu")
        for i in range(self.T):
            g.manual_seed(_seed_for(seed, 0, i + 1))
            for p, bound in ((self.W1, b_in), (self.b1, b_in), (self.W2, b_out), (self.b2, b_out)):
                w = torch.empty(p.shape[1:], dtype=p.dtype).uniform_(-bound, bound, generator=g)
                p[i].copy_(w)

    @torch.no_grad()
    def init_gaussian(self, mean, cov, alpha_bar, bound: float, n_sigma: float = 8.0) -> None:
        """Start every net as the exact noise predictor of Gaussian data ``N(mean, cov)``.

        For ``x0 ~ N(mean, C)`` the optimal predictor at step ``t`` is affine,
        ``eps*(x) = A_t (x - s mean)`` with ``A_t = sqrt(Delta) (s^2 C + Delta I)^{-1}``,
        ``s = sqrt(alpha_bar_t)``, ``Delta = 1 - alpha_bar_t`` (Tweedie with the Gaussian posterior;
        the same ``A`` as :func:`physdiff.theory.autoencoder.linear_denoiser_optimum`). A
        Linear-ReLU-Linear net realises it exactly with ``d`` shifted units,
        ``relu(x + c) = x + c`` for ``x > -c``: ``W1[:, :d] = I``, ``b1[:d] = c``, ``W2[:d] = A_t``,
        ``b2 = -(c + s mean) A_t``, with ``c = s * bound + n_sigma * sqrt(Delta)`` beyond the range of
        ``x_t``. The other ``H - d`` units keep their random first layer and get a zero second layer,
        so they start silent and learn the non-Gaussian part of the data. The model starts as the
        linear (Gaussian) DDPM of the thesis' Annex II and training departs from it.

        Parameters
        ----------
        mean : array (d,)
        cov : array (d, d), symmetric positive semi-definite
        alpha_bar : array (T,)
            ``alpha_bar`` of steps ``1..T``.
        bound : float
            ``max |x0|`` over the data.

        Raises
        ------
        ValueError
            ``hidden < d`` (the affine map needs ``d`` units), or shapes that do not match.
        """
        d, H, T = self.d, self.hidden, self.T
        if H < d:
            raise ValueError(f"init='gaussian' needs hidden >= d to represent the affine predictor; "
                             f"got hidden={H} < d={d}")
        mean = np.asarray(mean, dtype=np.float64)
        cov = np.asarray(cov, dtype=np.float64)
        alpha_bar = np.asarray(alpha_bar, dtype=np.float64)
        if mean.shape != (d,) or cov.shape != (d, d) or alpha_bar.shape != (T,):
            raise ValueError(f"expected mean ({d},), cov ({d}, {d}), alpha_bar ({T},); got {mean.shape}, "
                             f"{cov.shape}, {alpha_bar.shape}")
        lam, U = np.linalg.eigh(0.5 * (cov + cov.T))
        lam = np.clip(lam, 0.0, None)
        eye = torch.eye(d, dtype=self.W1.dtype)
        for i, ab in enumerate(alpha_bar):
            s, delta = np.sqrt(ab), 1.0 - ab
            A = (U * (np.sqrt(delta) / (s * s * lam + delta))) @ U.T
            c = s * bound + n_sigma * np.sqrt(delta)
            self.W1[i, :, :d].copy_(eye)
            self.b1[i, :d].fill_(c)
            self.W2[i, :d, :].copy_(torch.as_tensor(A, dtype=self.W2.dtype))
            self.W2[i, d:, :].zero_()
            self.b2[i].copy_(torch.as_tensor(-(c + s * mean) @ A, dtype=self.b2.dtype))

    def extra_repr(self) -> str:
        return f"T={self.T}, d={self.d}, hidden={self.hidden}, activation={self.activation!r}"

    def _act(self, z: torch.Tensor) -> torch.Tensor:
        return torch.relu(z) if self.activation == "relu" else z

    def forward(self, x: torch.Tensor, t_idx: torch.Tensor | slice) -> torch.Tensor:
        """Noise predictions of a chunk of nets, each on its own batch.

        Parameters
        ----------
        x : Tensor (C, B, d)
            ``x[c]`` is a batch of ``B`` states for the ``c``-th net of the chunk.
        t_idx : LongTensor (C,) or slice
            ZERO-BASED net indices (``t - 1`` for step ``t``); a slice selects a contiguous block
            without copying the weights (what the trainer uses).

        Returns
        -------
        Tensor (C, B, d)
            ``eps`` predicted by net ``t_idx[c]`` for ``x[c]``.
        """
        W1, b1, W2, b2 = self.W1[t_idx], self.b1[t_idx], self.W2[t_idx], self.b2[t_idx]
        return apply_nets(x, W1, b1, W2, b2, self.activation)

    @torch.no_grad()
    def eps(self, x: torch.Tensor, t) -> torch.Tensor:
        """Per-sample noise prediction: sample ``i`` goes through the net of its step ``t[i]``.

        Parameters
        ----------
        x : Tensor (n, d)
        t : int or LongTensor / int array (n,)
            ONE-BASED diffusion steps in ``1..T``.

        Returns
        -------
        Tensor (n, d)
            Same dtype as the parameters. Samples are grouped by step, so a batch that shares one
            ``t`` (the reverse chain) costs a single matmul pair.

        Raises
        ------
        ValueError
            Wrong shapes or steps outside ``1..T``.
        """
        if x.ndim != 2 or x.shape[1] != self.d:
            raise ValueError(f"x must have shape (n, {self.d}), got {tuple(x.shape)}")
        n = x.shape[0]
        if isinstance(t, (int, np.integer)):
            t_int = int(t)
            if not 1 <= t_int <= self.T:
                raise ValueError(f"step t must lie in 1..{self.T}, got {t_int}")
            i = t_int - 1
            return apply_nets(x[None], self.W1[i:i + 1], self.b1[i:i + 1], self.W2[i:i + 1],
                              self.b2[i:i + 1], self.activation)[0]
        t_arr = torch.as_tensor(np.asarray(t) if not isinstance(t, torch.Tensor) else t).reshape(-1)
        if t_arr.numel() != n:
            raise ValueError(f"t must be an int or have one step per sample ({n}), got {t_arr.numel()}")
        if t_arr.dtype.is_floating_point or t_arr.dtype == torch.bool:
            raise ValueError(f"t must hold integer steps, got dtype {t_arr.dtype}")
        t_arr = t_arr.to(torch.long)
        if n and (int(t_arr.min()) < 1 or int(t_arr.max()) > self.T):
            raise ValueError(f"steps t must lie in 1..{self.T}, got range "
                             f"[{int(t_arr.min())}, {int(t_arr.max())}]")
        out = torch.empty_like(x)
        t_dev = t_arr.to(x.device)
        for step in torch.unique(t_arr).tolist():
            mask = t_dev == step
            out[mask] = self.eps(x[mask], int(step))
        return out


def apply_nets(x: torch.Tensor, W1: torch.Tensor, b1: torch.Tensor, W2: torch.Tensor, b2: torch.Tensor,
               activation: str = "relu", out: tuple | None = None) -> torch.Tensor:
    """Batched forward of ``C`` nets: ``act(x @ W1 + b1) @ W2 + b2`` with ``torch.baddbmm``.

    Shapes: ``x`` (C, B, d), ``W1`` (C, d, H), ``b1`` (C, H), ``W2`` (C, H, d), ``b2`` (C, d);
    returns (C, B, d). ``out``: optional buffers ``(hidden (C, B, H), output (C, B, d))`` written in
    place (no autograd through them); the first then holds the activations ``act(x @ W1 + b1)``.
    """
    hidden, output = out if out is not None else (None, None)
    z = torch.baddbmm(b1.unsqueeze(1), x, W1, out=hidden)
    if activation == "relu":
        z = z.relu_() if out is not None else torch.relu(z)
    return torch.baddbmm(b2.unsqueeze(1), z, W2, out=output)
