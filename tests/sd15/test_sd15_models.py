"""Short training runs of the [SD15] models and of the eps-trained DDPM: K improves towards the
exact entropy, never above it (5 standard errors), and training is reproducible."""

import math

import numpy as np

from physdiff.datasets import binary_heartbeat, swiss_roll
from physdiff.sd15 import (ddpm_bound_K, gaussian_betas, train_binomial_sd15, train_eps_ddpm, train_gaussian_sd15,
                           valid_heartbeat)

Z = 5.0


def test_gaussian_training_improves_K_and_is_reproducible():
    # narrow Gaussian data N(0, 0.1^2 I_2): the untrained model is far off, the optimum is -H
    rng = np.random.default_rng(0)
    x, held = 0.1 * rng.standard_normal((5000, 2)), 0.1 * rng.standard_normal((2000, 2))
    exact = -math.log2(2 * math.pi * math.e * 0.01)                 # -H in bits, = 2.55
    betas = gaussian_betas(10, kind="sd15")
    m0 = train_gaussian_sd15(x, betas=betas, hidden=32, steps=1, batch=64, seed=0)
    m1 = train_gaussian_sd15(x, betas=betas, hidden=32, steps=300, batch=64, lr=5e-3, seed=0)
    K0, K1 = m0.bound_K(held, seed=2), m1.bound_K(held, seed=2)
    assert K1.bits > K0.bits + 10 * max(K0.stderr, K1.stderr), (K0, K1)
    assert exact - 0.3 < K1.bits < exact + Z * K1.stderr, (K1, exact)
    x = swiss_roll(500, turns=2, seed=0)
    again = train_gaussian_sd15(x, betas=betas, hidden=32, steps=5, batch=64, seed=0)
    twice = train_gaussian_sd15(x, betas=betas, hidden=32, steps=5, batch=64, seed=0)
    for k in again.params:
        np.testing.assert_array_equal(again.params[k].numpy(), twice.params[k].numpy())
    s = m1.sample(50, seed=1)
    assert s.shape == (50, 2) and np.isfinite(s).all()
    np.testing.assert_array_equal(s, m1.sample(50, seed=1))


def test_binomial_training_improves_K_towards_exact_entropy():
    x = binary_heartbeat(2000, length=10, period=2, seed=0)
    held = binary_heartbeat(300, length=10, period=2, seed=1)
    m0 = train_binomial_sd15(x, T=20, hidden=32, steps=1, batch=64, seed=0)
    m1 = train_binomial_sd15(x, T=20, hidden=32, steps=400, batch=128, lr=5e-3, seed=0)
    K0, K1 = m0.bound_K(held, seed=2), m1.bound_K(held, seed=2)
    assert K1.bits > K0.bits + 10 * max(K0.stderr, K1.stderr), (K0, K1)
    assert K1.bits < -1.0 + Z * K1.stderr            # K <= log2 p = -log2(period) = -1 bit
    s = m1.sample(200, seed=3)
    assert s.dtype == np.int8 and s.shape == (200, 10)
    assert valid_heartbeat(s, period=2).mean() > 0.5


def test_train_eps_ddpm_bound_improves_towards_the_entropy():
    rng = np.random.default_rng(0)
    x, held = rng.standard_normal((2000, 2)), rng.standard_normal((2000, 2))
    betas = gaussian_betas(8)
    m0 = train_eps_ddpm(x, betas, hidden=16, epochs=1, batch=100, lr=1e-3, seed=0)
    m1 = train_eps_ddpm(x, betas, hidden=16, epochs=15, batch=100, lr=1e-2, seed=0)
    assert m1.schedule.betas[-1] == 0.999 and m1.T == 8
    K0 = ddpm_bound_K(m0.eps, held, m0.schedule, seed=2)
    K1 = ddpm_bound_K(m1.eps, held, m1.schedule, seed=2)
    H = math.log2(2 * math.pi * math.e)
    for s in ("beta", "posterior"):
        assert K1[s].bits > K0[s].bits + 5 * K1[s].stderr, (s, K0[s], K1[s])
        assert K1[s].bits < -H + Z * K1[s].stderr                 # a lower bound on E log2 p = -H
