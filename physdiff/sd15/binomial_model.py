"""[SD15]'s binomial reverse model for binary data (the heartbeat), trained on the bound K
([SD15] App. D.1.2). torch is imported on first use.

References
----------
[SD15] Sohl-Dickstein et al. (2015), arXiv:1503.03585, Table App.1, eq. 14, App. D.1.2.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from .._util import SeedLike, as_generator, check_positive_int, check_real, torch_threads
from ..binomial import _as_bits, binomial_betas
from ._nn import _init_linear, _time_features, _torch, _torch_seed
from .bound import LOG2, BoundK, bound_K_binomial

__all__ = ["BinomialSD15", "train_binomial_sd15"]


@dataclass
class BinomialSD15:
    """[SD15]'s binomial reverse model: ``p(x_{t-1}=1 | x_t) = sigmoid(f_theta(x_t, t) + l_null)``.

    ``f_theta`` is an MLP (3 softplus layers) on ``2 x_t - 1`` and sinusoidal features of ``t/T``
    with a shared readout; ``l_null`` is the logit of the exact reverse kernel of independent bits
    with the training data's mean ``p1`` (:func:`physdiff.binomial.independent_reverse_rate`), so a
    model with ``f_theta = 0`` is the null model of [SD15] Table 1. Build and train with
    :func:`train_binomial_sd15`.

    Attributes
    ----------
    betas : ndarray float64 (T+1,)
    d, hidden, n_freq : int
    p1 : ndarray float64 (d,)
        The training data's mean of each bit.
    params : dict of torch tensors
    history : dict
        ``step``, ``K_bits`` (training-batch estimate, bits per sequence) and ``seconds``.
    """

    betas: np.ndarray
    d: int
    hidden: int
    n_freq: int
    p1: np.ndarray
    params: dict
    history: dict = field(default_factory=dict)

    @property
    def T(self) -> int:
        return int(self.betas.size - 1)

    def _tables(self):
        torch = _torch()
        if not hasattr(self, "_tab"):
            gamma = np.cumprod(1.0 - self.betas)
            self._tab = (torch.as_tensor(self.betas, dtype=torch.float32),
                         torch.as_tensor(np.clip(gamma, 0.0, 1.0), dtype=torch.float32),
                         torch.as_tensor(self.p1, dtype=torch.float32))
        return self._tab

    def _null_logit(self, x, t_idx):
        torch = _torch()
        b, g, p1 = self._tables()
        bt = b[t_idx][:, None]
        a = p1[None, :] * g[t_idx - 1][:, None] + 0.5 * (1 - g[t_idx - 1][:, None])
        k1 = torch.where(x > 0.5, 1 - 0.5 * bt, 0.5 * bt)
        k0 = torch.where(x > 0.5, 0.5 * bt, 1 - 0.5 * bt)
        tiny = 1e-30
        return torch.log(k1 * a + tiny) - torch.log(k0 * (1 - a) + tiny)

    def _logit(self, x, t_idx):
        """x (m, d) float 0/1 tensor, t_idx (m,) long in 1..T -> logits (m, d)."""
        torch = _torch()
        P = self.params
        inp = torch.cat([2 * x - 1, _time_features(torch, t_idx, self.T, self.n_freq)], dim=1)
        h = torch.nn.functional.softplus(inp @ P["W1"] + P["b1"])
        h = torch.nn.functional.softplus(h @ P["W2"] + P["b2"])
        h = torch.nn.functional.softplus(h @ P["W3"] + P["b3"])
        return h @ P["W4"] + P["b4"] + self._null_logit(x, t_idx)

    def logit(self, x_t, t: int) -> np.ndarray:
        """Logit of ``p(x_{t-1}=1 | x_t)`` at step ``t`` (numpy (n, d) in, float64 (n, d) out),
        for ``bound_K_binomial(..., output="logit")``."""
        torch = _torch()
        x = torch.as_tensor(np.asarray(x_t, dtype=np.float32))
        with torch.no_grad():
            return self._logit(x, torch.full((x.shape[0],), int(t), dtype=torch.long)).double().numpy()

    def sample(self, n: int, seed: SeedLike = None) -> np.ndarray:
        """Ancestral samples from ``x_T ~ B(0.5)^d``: int8 (n, d) in {0, 1}. ``ValueError`` if n < 1."""
        n = check_positive_int("n", n)
        torch = _torch()
        gen = torch.Generator().manual_seed(_torch_seed(as_generator(seed)))
        x = (torch.rand(n, self.d, generator=gen) < 0.5).to(torch.float32)
        with torch.no_grad():
            for t in range(self.T, 0, -1):
                p = torch.sigmoid(self._logit(x, torch.full((n,), t, dtype=torch.long)))
                x = (torch.rand(n, self.d, generator=gen) < p).to(torch.float32)
        return x.numpy().astype(np.int8)

    def bound_K(self, x0, n_mc: int = 1, seed: SeedLike = None) -> BoundK:
        """:func:`bound_K_binomial` of this model on ``x0`` (bits per sequence)."""
        return bound_K_binomial(self.logit, x0, self.betas, n_mc=n_mc, seed=seed, output="logit")


def train_binomial_sd15(x0, T: int = 2000, hidden: int = 128, steps: int = 4000, batch: int = 256,
                        lr: float = 2e-3, n_freq: int = 8, seed: SeedLike = None, log_every: int = 100,
                        progress: bool = False,
                        num_threads: int | None = 1) -> BinomialSD15:
    """Train [SD15]'s binomial model on binary data by maximising the bound K.

    Each step draws ``batch`` sequences and one step ``t`` per sequence, stratified over ``1..T``;
    ``x_t ~ q(x_t | x0)`` in closed form; the loss ``T * mean_t KL(q(x_{t-1}|x_t,x0) ||
    p(x_{t-1}|x_t))`` is an unbiased estimate of ``-K`` (nats per sequence; the prior term is 0
    because ``beta_T = 1`` and ``p(x_T) = B(0.5)``).

    Parameters
    ----------
    x0 : array_like of 0/1, shape (n, d)
        Training sequences (e.g. :func:`physdiff.datasets.binary_heartbeat`).
    T : int >= 1
        Steps of :func:`physdiff.binomial.binomial_betas` (2000 in [SD15]).
    hidden, n_freq : int
        MLP width; number of sinusoidal time frequencies.
    steps, batch : int
    lr : float > 0
        Adam's initial learning rate, cosine-decayed to 0.
    seed : int, numpy.random.Generator or None
    log_every : int
    progress : bool
        Show a tqdm bar.
    num_threads : int or None
        torch intra-op threads during training (restored afterwards); these small models run
        fastest on 1. None leaves torch's setting.

    Returns
    -------
    BinomialSD15

    Raises
    ------
    ValueError
        Non-binary data or bad hyper-parameters.
    """
    with torch_threads(num_threads):
        return _train_binomial_sd15(x0, T=T, hidden=hidden, steps=steps, batch=batch, lr=lr,
                                    n_freq=n_freq, seed=seed, log_every=log_every, progress=progress)


def _train_binomial_sd15(x0, T: int = 2000, hidden: int = 128, steps: int = 4000, batch: int = 256,
                        lr: float = 2e-3, n_freq: int = 8, seed: SeedLike = None, log_every: int = 100,
                        progress: bool = False) -> BinomialSD15:
    torch = _torch()
    x0 = _as_bits("x0", x0)
    betas = binomial_betas(T)
    hidden = check_positive_int("hidden", hidden)
    n_freq = check_positive_int("n_freq", n_freq)
    steps = check_positive_int("steps", steps)
    batch = check_positive_int("batch", batch)
    lr = check_real("lr", lr, lo=0.0, lo_open=True)
    log_every = check_positive_int("log_every", log_every)
    rng = as_generator(seed)
    gen = torch.Generator().manual_seed(_torch_seed(rng))
    n, d = x0.shape
    p1 = x0.mean(axis=0).astype(np.float64)
    n_in = d + 2 * n_freq + 1
    P = {}
    P["W1"], P["b1"] = _init_linear(torch, gen, n_in, hidden)
    P["W2"], P["b2"] = _init_linear(torch, gen, hidden, hidden)
    P["W3"], P["b3"] = _init_linear(torch, gen, hidden, hidden)
    P["W4"], P["b4"] = _init_linear(torch, gen, hidden, d, zero=True)
    for v in P.values():
        v.requires_grad_(True)
    model = BinomialSD15(betas=betas, d=d, hidden=hidden, n_freq=n_freq, p1=p1, params=P)
    b, g, _ = model._tables()
    data = torch.as_tensor(x0, dtype=torch.float32)
    opt = torch.optim.Adam(list(P.values()), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    hist_step, hist_K = [], []
    it = range(steps)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc="SD15 binomial", leave=False)
    t0 = time.perf_counter()
    for step in it:
        idx = torch.randint(0, n, (batch,), generator=gen)
        xb = data[idx]
        u = (torch.arange(batch, dtype=torch.float64) + torch.rand(batch, generator=gen, dtype=torch.float64)) / batch
        t_idx = torch.clamp((u * T).long() + 1, 1, T)[torch.randperm(batch, generator=gen)]
        gt = g[t_idx][:, None]
        x_t = (torch.rand(batch, d, generator=gen) < xb * gt + 0.5 * (1 - gt)).to(torch.float32)
        bt = b[t_idx][:, None]
        gp = g[t_idx - 1][:, None]
        a = xb * gp + 0.5 * (1 - gp)
        k1 = torch.where(x_t > 0.5, 1 - 0.5 * bt, 0.5 * bt)
        k0 = torch.where(x_t > 0.5, 0.5 * bt, 1 - 0.5 * bt)
        q = k1 * a / (k1 * a + k0 * (1 - a))
        lg = model._logit(x_t, t_idx)
        kl = (torch.xlogy(q, q) + torch.xlogy(1 - q, 1 - q)
              - q * torch.nn.functional.logsigmoid(lg) - (1 - q) * torch.nn.functional.logsigmoid(-lg)).sum(1)
        loss = T * kl.mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % log_every == 0 or step == steps - 1:
            hist_step.append(step)
            hist_K.append(-float(loss.detach()) / LOG2)
    for v in P.values():
        v.requires_grad_(False)
    model.history = {"step": np.array(hist_step), "K_bits": np.array(hist_K),
                     "seconds": time.perf_counter() - t0}
    return model
