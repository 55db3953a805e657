"""init='lstsq': the Gaussian start plus data-aligned spare units with a least-squares second layer."""

import numpy as np
import pytest
import torch

from physdiff import ddpm
from physdiff.ddpm.lstsq import init_lstsq
from physdiff.schedules import make_schedule

D, M, SIGMA = 4, 1.0, 0.3  # two clusters +-M u in D dimensions, spread SIGMA


def _two_clusters(n, seed):
    rng = np.random.default_rng(seed)
    u = np.ones(D) / np.sqrt(D)
    c = rng.choice([-1.0, 1.0], n)
    return (c[:, None] * M * u + SIGMA * rng.standard_normal((n, D))), u


def _exact_eps(x, ab, u):
    """eps* = (x_t - s E[x0 | x_t]) / sqrt(Delta) for x0 = c M u + SIGMA z, c = +-1 equally likely:
    E[c | x_t] = tanh(s M u.x_t / v), E[x0 | x_t, c] = c M u + (s SIGMA^2 / v)(x_t - s c M u), v = s^2 SIGMA^2 + Delta."""
    s, delta = np.sqrt(ab), 1.0 - ab
    v = s * s * SIGMA**2 + delta
    c = np.tanh(s * M * (x @ u) / v)
    post = c[:, None] * M * u * (1.0 - s * s * SIGMA**2 / v) + (s * SIGMA**2 / v) * x
    return (x - s * post) / np.sqrt(delta)


def test_lstsq_start_learns_the_two_cluster_switch_that_the_gaussian_start_misses():
    x0, u = _two_clusters(4000, 0)
    sched = make_schedule("linear", 20, beta_start=0.01, beta_end=0.3)
    ab = sched.alpha_bar[1:]
    gauss = ddpm.StackedAutoencoders(20, D, hidden=40, seed=0, dtype=torch.float64)
    gauss.init_gaussian(x0.mean(0), np.cov(x0, rowvar=False), ab, bound=float(np.abs(x0).max()))
    fitted = ddpm.StackedAutoencoders(20, D, hidden=40, seed=0, dtype=torch.float64)
    init_lstsq(fitted, x0, ab, seed=0)
    xf, _ = _two_clusters(3000, 1)
    rng = np.random.default_rng(2)
    for t in (4, 8, 12):  # s^2 M^2 / Delta from ~4 down to ~0.5: the class switch is sharp, then soft
        a = ab[t - 1]
        x = np.sqrt(a) * xf + np.sqrt(1 - a) * rng.standard_normal(xf.shape)
        exact = _exact_eps(x, a, u)
        err = {name: np.mean((net.eps(torch.as_tensor(x), t).numpy() - exact) ** 2)
               for name, net in (("gaussian", gauss), ("lstsq", fitted))}
        # the Gaussian start's error is the whole non-Gaussian part (~1e-1 here); the fit's is set by
        # 36 random units and a finite training set: 0.02-0.12 of it over seeds 0-3
        assert err["lstsq"] < 0.2 * err["gaussian"], (t, err)


def test_lstsq_start_on_gaussian_data_stays_at_the_gaussian_optimum():
    # the residual of the exact Gaussian predictor is independent noise: the fitted readout is ~0 and
    # the loss stays the irreducible one within the fit's statistical error (k / rows ~ 1e-3)
    rng = np.random.default_rng(3)
    x0 = rng.standard_normal((5000, 3)) * [2.0, 0.5, 1.0] + [1.0, -1.0, 0.0]
    sched = make_schedule("linear", 10, beta_start=0.01, beta_end=0.3)
    cfg = ddpm.TrainConfig(T=10, hidden=16, epochs=1, batch=100, lr=1e-6, init="lstsq", device="cpu",
                           schedule={"name": "linear", "beta_start": 0.01, "beta_end": 0.3})
    model = ddpm.train(x0, cfg, progress=False, log=None)
    lam = np.linalg.eigvalsh(np.cov(x0, rowvar=False))
    ab = sched.alpha_bar[1:, None]
    irreducible = 1 - (1 - ab[:, 0]) / 3 * np.sum(1 / (ab * lam + (1 - ab)), axis=1)
    # one epoch's mean loss over 5000 x 3 squared errors: relative error ~ sqrt(2 / 15000) ~ 1.2 %
    np.testing.assert_allclose(model.loss_history[0], irreducible, rtol=0.06)


def test_lstsq_start_is_reproducible_and_seeded():
    x0, _ = _two_clusters(500, 4)
    ab = make_schedule("linear", 5, beta_start=0.01, beta_end=0.3).alpha_bar[1:]
    nets = []
    for seed in (0, 0, 1):
        net = ddpm.StackedAutoencoders(5, D, hidden=12, seed=0)
        init_lstsq(net, x0, ab, seed=seed)
        nets.append(net.state_dict())
    for name in ("W1", "b1", "W2", "b2"):
        assert torch.equal(nets[0][name], nets[1][name])
    assert not torch.equal(nets[0]["W2"], nets[2]["W2"])


def test_lstsq_start_does_not_depend_on_the_number_of_threads():
    # a fit large enough for torch to split its matmuls over threads (9 blocks of rows, 116 spare units)
    rng = np.random.default_rng(7)
    x0 = np.tanh(rng.standard_normal((25_000, 84)) @ rng.standard_normal((84, 84)) * 0.3)
    ab = np.array([0.95, 0.4])
    states = []
    for threads in (1, 2):
        torch.set_num_threads(threads)  # the autouse fixture restores the count
        net = ddpm.StackedAutoencoders(2, 84, hidden=200, seed=0)
        init_lstsq(net, x0, ab, seed=3, draws=3)
        assert torch.get_num_threads() == threads  # the fit's one-thread ops are undone
        states.append(net.state_dict())
    for name in ("W1", "b1", "W2", "b2"):
        assert torch.equal(states[0][name], states[1][name]), name


def test_lstsq_start_refuses_what_it_cannot_fit():
    x0, _ = _two_clusters(100, 5)
    ab = np.array([0.9, 0.5])
    with pytest.raises(ValueError, match="hidden >= d"):
        init_lstsq(ddpm.StackedAutoencoders(2, D, hidden=3), x0, ab)
    with pytest.raises(ValueError, match="ridge must be"):
        init_lstsq(ddpm.StackedAutoencoders(2, D, hidden=8), x0, ab, ridge=-1.0)
    with pytest.raises(ValueError, match="d=3 features"):
        init_lstsq(ddpm.StackedAutoencoders(2, D, hidden=8), x0[:, :3], ab)


def test_lstsq_start_of_linear_nets_is_the_gaussian_start():
    # a linear net's least-squares optimum is the Gaussian fit's eps (the best linear predictor)
    x0, _ = _two_clusters(300, 6)
    ab = np.array([0.9, 0.5])
    a = ddpm.StackedAutoencoders(2, D, hidden=8, activation="linear", seed=0)
    init_lstsq(a, x0, ab, seed=0)
    b = ddpm.StackedAutoencoders(2, D, hidden=8, activation="linear", seed=0)
    b.init_gaussian(x0.mean(0), np.cov(x0, rowvar=False), ab, bound=float(np.abs(x0).max()))
    for name in ("W1", "b1", "W2", "b2"):
        assert torch.equal(getattr(a, name), getattr(b, name))
