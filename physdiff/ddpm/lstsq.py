"""``init="lstsq"``: start every net at the least-squares fit of its noise predictor on data-aligned units.

Gradient descent learns the non-Gaussian part of a data set slowly: from the Gaussian start
(:meth:`StackedAutoencoders.init_gaussian`) the spare units must first turn towards the few
directions that carry it (the class direction of MNIST 0/1, ``u = (1, ..., 1)/sqrt(N)`` of
Curie-Weiss), a plateau that is longest near the speciation time, where that part is weakest
(``docs/symmetry-breaking.md``). This start skips it. For step ``t``, with
``s = sqrt(alpha_bar_t)``, ``Delta = 1 - alpha_bar_t`` and the data covariance ``C = sum_k lambda_k
v_k v_k^T``:

1. The first ``d`` units realise the Gaussian fit's exact ``eps`` (``init_gaussian``).
2. Each of the ``H - d`` spare units gets a random direction ``w = V z / |V z|`` with
   ``z_k ~ N(0, s^2 lambda_k^2 / (s^2 lambda_k + Delta))``, the covariance of the Wiener estimate
   ``E[x0 | x_t]`` of the Gaussian fit: directions the noise has not yet drowned are drawn often,
   the others rarely, so the units follow the resolvable structure at every ``t`` (the top
   principal direction near the speciation time, many directions at small ``t``). Its kink
   ``relu(w . x_t + b)`` sits at a random quantile ``q ~ U(0.02, 0.98)`` of ``w . x_t`` over noised
   training points, so every unit bends inside the data.
3. With the first layer fixed, the loss ``mean |eps - eps_theta(x_t)|^2`` is quadratic in the second
   layer: the spare units' ``W2`` and the bias ``b2`` are its ridge least-squares minimiser on
   ``draws`` noisings of the training set (the residual of the Gaussian part as target; ridge
   ``1e-4 tr(G) / k`` on the Gram matrix ``G`` of the ``k`` spare features: small, ten times larger
   gave worse MNIST samples).

Training then continues from there with Adam. The start is the classical random-features model
(Rahimi and Recht 2007) with data-dependent directions, fitted exactly; see ``docs/theory.md``,
"Starting the nets: the Gaussian and the least-squares starts".

Every step draws its directions, kinks and noise from its own ``numpy`` stream seeded by
``(seed, t)`` and is fitted by one thread (nets side by side on the CPU's threads), so the start of
a net does not depend on the other nets, on chunking or on the number of threads (tested; the
float32 products are summed per block of rows in a fixed order).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from .._util import map_threads, torch_threads
from .model import StackedAutoencoders

__all__ = ["init_lstsq"]

_QUANTILES = (0.02, 0.98)  # range of the kink quantiles
_KINK_SAMPLE = 2000        # noised training points used to place the kinks
_ROW_BLOCK = 8192          # rows per block of the normal equations (bounds memory)
_RIDGE = 1e-4              # relative ridge of the normal equations


def _rng(seed: int, t: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(entropy=int(seed), spawn_key=(7, int(t))))


def _spare_units(x0: np.ndarray, lam: np.ndarray, V: np.ndarray, ab: float, k: int,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Directions (d, k) and biases (k,) of the spare units at ``alpha_bar = ab`` (steps 2 above)."""
    n, d = x0.shape
    s, delta = math.sqrt(ab), 1.0 - ab
    wiener = s * s * lam ** 2 / (s * s * lam + delta)
    W = V @ (rng.standard_normal((d, k)) * np.sqrt(wiener)[:, None])
    W /= np.maximum(np.linalg.norm(W, axis=0), 1e-300)
    m = min(n, _KINK_SAMPLE)
    rows = rng.choice(n, m, replace=False)
    proj = np.sort((s * x0[rows] + math.sqrt(delta) * rng.standard_normal((m, d))) @ W, axis=0)
    q = rng.uniform(*_QUANTILES, size=k)
    b = -proj[np.minimum((q * m).astype(np.int64), m - 1), np.arange(k)]
    return W, b


@torch.no_grad()
def _fit_readout(model: StackedAutoencoders, i: int, x0: torch.Tensor, ab: float, draws: int,
                 rng: np.random.Generator, ridge: float) -> None:
    """Ridge least-squares second layer of the spare units of net ``i`` (step 3 above), in place."""
    d, k = model.d, model.hidden - model.d
    s, sd = math.sqrt(ab), math.sqrt(1.0 - ab)
    W1, b1, W2, b2 = model.W1[i], model.b1[i], model.W2[i], model.b2[i]
    G = torch.zeros(k + 1, k + 1, dtype=torch.float64, device=x0.device)
    FR = torch.zeros(k + 1, d, dtype=torch.float64, device=x0.device)
    rows = 0
    for _ in range(draws):
        for a in range(0, x0.shape[0], _ROW_BLOCK):
            xb = x0[a:a + _ROW_BLOCK]
            eps = torch.from_numpy(rng.standard_normal(tuple(xb.shape), dtype=np.float32)).to(xb)
            x_t = s * xb + sd * eps
            # the first d units have W1 = I (init_gaussian): their activations without a matmul
            resid = eps - torch.addmm(b2, torch.relu(x_t + b1[:d]), W2[:d])  # what the Gaussian part misses
            h = torch.relu(torch.addmm(b1[d:], x_t, W1[:, d:]))
            F = torch.cat([h, torch.ones(len(xb), 1, dtype=h.dtype, device=h.device)], 1)
            G += (F.T @ F).double()           # float32 products within a block, float64 across blocks
            FR += (F.T @ resid).double()
            rows += len(xb)
    G /= rows
    FR /= rows
    G[range(k), range(k)] += ridge * float(torch.diagonal(G)[:k].sum()) / max(k, 1)
    sol = torch.linalg.solve(G, FR)
    W2[d:] = sol[:k].to(W2.dtype)
    b2 += sol[k].to(b2.dtype)


def init_lstsq(model: StackedAutoencoders, x0, alpha_bar, *, seed: int = 0, draws: int | None = None,
               ridge: float = _RIDGE, progress: bool = False) -> None:
    """Initialise every net of ``model`` by the three steps of the module docstring, in place.

    Parameters
    ----------
    model : StackedAutoencoders
        ``T`` nets with ``hidden >= d``. With linear units the start is the Gaussian one, which is
        already the least-squares optimum of a linear net [Thesis, Annex II].
    x0 : array (n, d)
        Training data (cast to the model's dtype for the fit; mean and covariance in float64).
    alpha_bar : array (T,)
        ``alpha_bar`` of steps ``1..T``.
    seed : int
        Seed of the directions, kinks and noise (one stream per step).
    draws : int, optional
        Noisings of the training set in each fit; default ``ceil(40 000 / n)`` clipped to 1..10,
        so that every fit sees 40 000 rows or more (or 10 noisings of a small set).
    ridge : float >= 0
        Ridge of the normal equations relative to the mean diagonal of their Gram matrix.
    progress : bool
        A tqdm bar over the nets.

    Raises
    ------
    ValueError
        ``hidden < d``, or shapes that do not match.

    Notes
    -----
    Cost per net: ``draws * n * (4 (H - d) d + 2 (H - d)^2)`` flops, about four epochs of Adam
    on the same net for MNIST 0/1 at ``H = 2400`` (``draws = 4``: 3.5 s per net on two quiet CPU
    cores); the ``d`` Gaussian units cost no matmul.
    """
    x64 = np.asarray(x0, dtype=np.float64)
    n, d = x64.shape
    if d != model.d:
        raise ValueError(f"x0 has d={d} features but the model has d={model.d}")
    alpha_bar = np.asarray(alpha_bar, dtype=np.float64)
    cov = np.cov(x64, rowvar=False).reshape(d, d)
    model.init_gaussian(x64.mean(axis=0), cov, alpha_bar, bound=float(np.abs(x64).max()))  # checks hidden >= d
    k = model.hidden - d
    if k == 0 or model.activation == "linear":  # linear nets: the Gaussian start is the least-squares optimum
        return
    draws = int(np.clip(math.ceil(40_000 / n), 1, 10)) if draws is None else int(draws)
    if not (ridge >= 0 and math.isfinite(ridge)):
        raise ValueError(f"ridge must be a finite number >= 0, got {ridge}")
    lam, V = np.linalg.eigh(0.5 * (cov + cov.T))
    lam = np.clip(lam, 0.0, None)
    xt = torch.from_numpy(np.ascontiguousarray(x64, dtype=np.float32)).to(model.W1)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(alpha_bar), unit="net", desc="least-squares start", dynamic_ncols=True)

    def fit(i: int) -> None:
        rng = _rng(seed, i + 1)
        W, b = _spare_units(x64, lam, V, float(alpha_bar[i]), k, rng)
        with torch.no_grad():
            model.W1[i, :, d:] = torch.from_numpy(W).to(model.W1)
            model.b1[i, d:] = torch.from_numpy(b).to(model.b1)
        _fit_readout(model, i, xt, float(alpha_bar[i]), draws, rng, ridge)
        if bar is not None:
            bar.update()

    # On the CPU the nets are fitted side by side, one per torch thread, each with single-threaded
    # ops, so a net's bytes cannot depend on the number of threads (torch's multi-threaded products
    # of MNIST's size round differently from single-threaded ones). numpy's BLAS gets one thread
    # too: a multi-threaded one leaves its threads spinning after each call, on the cores torch
    # needs next. Measured on 2 quiet cores: Curie-Weiss preset (100 nets, N = 64, P = 4000; small
    # products, serial numpy draws) 10.2 s with both libraries threaded, 4.3 s with the BLAS limit,
    # 2.7 s side by side; MNIST 0/1 (d = 784, H = 2400) the same time as threaded products.
    workers = min(torch.get_num_threads(), len(alpha_bar)) if model.W1.device.type == "cpu" else 1
    with threadpool_limits(limits=1, user_api="blas"), torch_threads(1 if workers > 1 else None):
        map_threads(fit, range(len(alpha_bar)), workers)
    if bar is not None:
        bar.close()
