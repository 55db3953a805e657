"""init='gaussian': every net starts as the exact noise predictor of the data's Gaussian fit."""

import numpy as np
import pytest
import torch

from physdiff import ddpm
from physdiff.schedules import make_schedule
from physdiff.theory.autoencoder import linear_denoiser_optimum
from physdiff.theory.gaussian import score_gaussian


def test_gaussian_init_is_the_exact_gaussian_eps():
    rng = np.random.default_rng(0)
    d, T = 5, 12
    L = rng.standard_normal((d, d)) * 0.5
    cov = L @ L.T + 0.1 * np.eye(d)
    mean = rng.standard_normal(d)
    sched = make_schedule("linear", T, beta_start=0.01, beta_end=0.3)
    net = ddpm.StackedAutoencoders(T, d, hidden=8, seed=1, dtype=torch.float64)
    net.init_gaussian(mean, cov, sched.alpha_bar[1:], bound=10.0)
    x = rng.standard_normal((50, d)) * 2
    for t in (1, T // 2, T):
        ab = sched.alpha_bar[t]
        eps = net.eps(torch.as_tensor(x), t).numpy()
        exact = -np.sqrt(1 - ab) * score_gaussian(x, ab, mean, cov)   # eps* = -sqrt(Delta) score
        np.testing.assert_allclose(eps, exact, rtol=1e-9, atol=1e-9)
        A = linear_denoiser_optimum(cov, ab)                          # same matrix as theory's
        np.testing.assert_allclose(eps, (x - np.sqrt(ab) * mean) @ A, rtol=1e-9, atol=1e-9)


def test_train_with_gaussian_init_starts_at_the_irreducible_gaussian_loss():
    # on Gaussian data the Gaussian init is already optimal: its loss is the irreducible
    # 1 - (Delta/d) sum_k 1/(s^2 lambda_k + Delta) of the best predictor, at every step
    rng = np.random.default_rng(1)
    x0 = (rng.standard_normal((4000, 3)) * [2.0, 0.5, 1.0] + [1.0, -1.0, 0.0]).astype(np.float32)
    cfg = ddpm.TrainConfig(T=20, hidden=6, epochs=1, batch=100, lr=1e-5, init="gaussian", device="cpu")
    model = ddpm.train(x0, cfg, progress=False, log=None)
    lam = np.linalg.eigvalsh(np.cov(x0.astype(np.float64), rowvar=False))
    ab = model.schedule.alpha_bar[1:, None]
    irreducible = 1 - (1 - ab[:, 0]) / 3 * np.sum(1 / (ab * lam + (1 - ab)), axis=1)
    # the epoch's loss is a mean over 4000 x 3 squared errors: relative error ~ sqrt(2/12000) ~ 1.3%
    np.testing.assert_allclose(model.loss_history[0], irreducible, rtol=0.08)


def test_gaussian_init_needs_hidden_at_least_d():
    net = ddpm.StackedAutoencoders(3, 4, hidden=3, seed=0)
    with pytest.raises(ValueError, match="hidden >= d"):
        net.init_gaussian(np.zeros(4), np.eye(4), np.array([0.9, 0.5, 0.1]), bound=1.0)
    with pytest.raises(ValueError, match="init must be one of"):
        ddpm.TrainConfig(init="zeros")

