"""[SD15]'s Gaussian reverse model, with a learned mean AND diagonal variance, trained on the bound K
(Swiss roll; [SD15] App. D.1.1 and D.2.1). torch is imported on first use.

References
----------
[SD15] Sohl-Dickstein et al. (2015), arXiv:1503.03585, eqs. 14 and 64, App. D.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from .._util import SeedLike, as_generator, as_samples, check_positive_int, check_real, torch_threads
from ._nn import _init_linear, _torch, _torch_seed
from .bound import LOG2, BoundK, _GaussCoefs, _gaussian_betas_array, bound_K_gaussian, gaussian_betas

__all__ = ["GaussianSD15", "train_gaussian_sd15"]

_EPS_BETA = 1e-6


@dataclass
class GaussianSD15:
    """[SD15]'s Gaussian reverse model: learned mean and diagonal variance (module docstring).

    ``p(x_{t-1} | x_t) = N(mu, diag(Sigma))`` with ``Sigma = sigmoid(z_Sigma + logit(beta_t))``
    [SD15, eq. 64] and ``mu = sqrt(1 - beta_t) x_t + sqrt(beta_t) z_mu``; ``(z_mu, z_Sigma) =
    W_t h(x_t, t/T) + b_t``, a shared softplus MLP trunk ``h`` and a readout per timestep
    [SD15, App. D.1.1]. Build and train with :func:`train_gaussian_sd15`.

    Attributes
    ----------
    betas : ndarray float64 (T+1,)
        The forward schedule (:func:`gaussian_betas`).
    d, hidden : int
    params : dict of torch tensors (float32)
    history : dict
        ``step`` and ``K_bits`` (the training-batch K, bits per sample) logged during training,
        ``seconds`` of training.
    """

    betas: np.ndarray
    d: int
    hidden: int
    params: dict
    history: dict = field(default_factory=dict)

    @property
    def T(self) -> int:
        return int(self.betas.size - 1)

    def _forward(self, x, t_idx):
        """x (m, d) float32 tensor, t_idx (m,) long tensor in 1..T -> (mu, Sigma), (m, d) each."""
        torch = _torch()
        P = self.params
        T = self.T
        inp = torch.cat([x, (t_idx.to(x.dtype) / T)[:, None]], dim=1)
        h = torch.nn.functional.softplus(inp @ P["W1"] + P["b1"])
        h = torch.nn.functional.softplus(h @ P["W2"] + P["b2"])
        W = P["Wt"][t_idx - 1]                       # (m, hidden, 2d)
        z = torch.einsum("mh,mhk->mk", h, W) + P["bt"][t_idx - 1]
        z_mu, z_s = z[:, :self.d], z[:, self.d:]
        beta = torch.as_tensor(np.clip(self.betas, _EPS_BETA, 1 - _EPS_BETA), dtype=x.dtype)[t_idx][:, None]
        sigma = torch.sigmoid(z_s + torch.log(beta) - torch.log1p(-beta))
        mu = torch.sqrt(1.0 - beta) * x + torch.sqrt(beta) * z_mu
        return mu, sigma

    def mean_var(self, x_t, t: int):
        """Reverse mean and diagonal variance at step ``t`` (numpy in and out), for
        :func:`bound_K_gaussian`: ``x_t`` (n, d) -> ``(mu, Sigma)`` float64 (n, d) each."""
        torch = _torch()
        x = torch.as_tensor(np.asarray(x_t, dtype=np.float32))
        with torch.no_grad():
            mu, sigma = self._forward(x, torch.full((x.shape[0],), int(t), dtype=torch.long))
        return mu.double().numpy(), sigma.double().numpy()

    def sample(self, n: int, seed: SeedLike = None, return_trajectory: bool = False):
        """Ancestral samples: ``x_T ~ N(0, I)``, then ``x_{t-1} ~ N(mu, diag Sigma)`` for t = T..1.

        Returns float32 (n, d), or with ``return_trajectory`` also the path (T+1, n, d) indexed by
        step. Raises ``ValueError`` for ``n < 1``.
        """
        n = check_positive_int("n", n)
        torch = _torch()
        gen = torch.Generator().manual_seed(_torch_seed(as_generator(seed)))
        x = torch.randn(n, self.d, generator=gen)
        path = [x] if return_trajectory else None
        with torch.no_grad():
            for t in range(self.T, 0, -1):
                mu, sigma = self._forward(x, torch.full((n,), t, dtype=torch.long))
                x = mu + sigma.sqrt() * torch.randn(n, self.d, generator=gen)
                if return_trajectory:
                    path.append(x)
        out = x.numpy().astype(np.float32)
        if return_trajectory:
            return out, torch.stack(path[::-1]).numpy().astype(np.float32)
        return out

    def bound_K(self, x0, n_mc: int = 1, seed: SeedLike = None) -> BoundK:
        """:func:`bound_K_gaussian` of this model on ``x0`` (bits per sample)."""
        return bound_K_gaussian(self.mean_var, x0, self.betas, n_mc=n_mc, seed=seed)


def train_gaussian_sd15(x0, T: int = 40, hidden: int = 128, steps: int = 3000, batch: int = 128,
                        lr: float = 2e-3, betas=None, seed: SeedLike = None, log_every: int = 100,
                        progress: bool = False,
                        num_threads: int | None = 1) -> GaussianSD15:
    """Train [SD15]'s Gaussian model by maximising the bound K (Adam, cosine learning-rate decay).

    Each step draws ``batch`` data points and, for EVERY ``t = 1..T``, an independent ``x_t ~
    q(x_t | x0)``; the loss is ``-K`` of the batch (nats per sample, the prior term included; it is
    0 for :func:`gaussian_betas`), i.e. the exact-KL objective of [SD15] eq. 14 (see the module
    docstring) with closed-form KL divergences.

    Parameters
    ----------
    x0 : array_like, shape (n, d)
        Training data ([SD15] scale it to unit variance first: :func:`unit_variance`).
    T : int >= 2
        Steps (40 in [SD15]); ignored if ``betas`` is given.
    hidden : int
        Width of the two trunk layers.
    steps, batch : int
        Optimiser steps and data points per step.
    lr : float > 0
        Adam's initial learning rate (cosine-decayed to 0).
    betas : array_like (T+1,), optional
        Forward schedule (default :func:`gaussian_betas` ``(T)``).
    seed : int, numpy.random.Generator or None
        Seeds initialisation, batches and noise.
    log_every : int
        Record the batch K (bits) every ``log_every`` steps in ``model.history``.
    progress : bool
        Show a tqdm bar.
    num_threads : int or None
        torch intra-op threads during training (restored afterwards); these small models run
        fastest on 1. None leaves torch's setting.

    Returns
    -------
    GaussianSD15

    Raises
    ------
    ValueError
        Bad data or hyper-parameters.
    """
    with torch_threads(num_threads):
        return _train_gaussian_sd15(x0, T=T, hidden=hidden, steps=steps, batch=batch, lr=lr, betas=betas,
                                    seed=seed, log_every=log_every, progress=progress)


def _train_gaussian_sd15(x0, T: int = 40, hidden: int = 128, steps: int = 3000, batch: int = 128,
                         lr: float = 2e-3, betas=None, seed: SeedLike = None, log_every: int = 100,
                        progress: bool = False) -> GaussianSD15:
    torch = _torch()
    x0 = as_samples("x0", x0).astype(np.float32)
    betas = gaussian_betas(T) if betas is None else _gaussian_betas_array(betas)
    T = betas.size - 1
    hidden = check_positive_int("hidden", hidden)
    steps = check_positive_int("steps", steps)
    batch = check_positive_int("batch", batch)
    lr = check_real("lr", lr, lo=0.0, lo_open=True)
    log_every = check_positive_int("log_every", log_every)
    rng = as_generator(seed)
    gen = torch.Generator().manual_seed(_torch_seed(rng))
    n, d = x0.shape
    P = {}
    P["W1"], P["b1"] = _init_linear(torch, gen, d + 1, hidden)
    P["W2"], P["b2"] = _init_linear(torch, gen, hidden, hidden)
    P["Wt"] = torch.zeros(T, hidden, 2 * d)
    P["bt"] = torch.zeros(T, 2 * d)
    for v in P.values():
        v.requires_grad_(True)
    model = GaussianSD15(betas=betas, d=d, hidden=hidden, params=P)
    co = _GaussCoefs.build(betas)
    f32 = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float32)  # noqa: E731
    sab, s1ab = f32(np.sqrt(co.alpha_bar[1:])), f32(np.sqrt(1 - co.alpha_bar[1:]))
    c0, ct, pv = f32(co.post_c0[1:]), f32(co.post_ct[1:]), f32(co.post_var[1:])
    pv = torch.clamp(pv, min=1e-30)
    abT = float(co.alpha_bar[T])
    t_all = torch.arange(1, T + 1)
    data = torch.as_tensor(x0)
    opt = torch.optim.Adam(list(P.values()), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    hist_step, hist_K = [], []
    it = range(steps)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc="SD15 Gaussian", leave=False)
    t0 = time.perf_counter()
    for step in it:
        idx = torch.randint(0, n, (batch,), generator=gen)
        xb = data[idx]                                            # (B, d)
        eps = torch.randn(batch, T, d, generator=gen)
        x_t = sab[None, :, None] * xb[:, None, :] + s1ab[None, :, None] * eps   # (B, T, d)
        tt = t_all.repeat(batch)
        mu, sig = model._forward(x_t.reshape(-1, d), tt)
        mu, sig = mu.reshape(batch, T, d), sig.reshape(batch, T, d)
        # t = 1: log N(x0; mu, Sigma)
        ll1 = -0.5 * (torch.log(2 * math.pi * sig[:, 0]) + (xb - mu[:, 0]) ** 2 / sig[:, 0]).sum(1)
        mq = c0[None, 1:, None] * xb[:, None, :] + ct[None, 1:, None] * x_t[:, 1:]
        s = pv[None, 1:, None]
        kl = 0.5 * (torch.log(sig[:, 1:] / s) + (s + (mq - mu[:, 1:]) ** 2) / sig[:, 1:] - 1.0).sum((1, 2))
        prior = -0.5 * ((1 - abT) + abT * xb**2 - 1 - math.log(max(1 - abT, 1e-300))).sum(1)
        K = ll1 - kl + prior
        loss = -K.mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % log_every == 0 or step == steps - 1:
            hist_step.append(step)
            hist_K.append(float(K.detach().mean()) / LOG2)
    for v in P.values():
        v.requires_grad_(False)
    model.history = {"step": np.array(hist_step), "K_bits": np.array(hist_K),
                     "seconds": time.perf_counter() - t0}
    return model
