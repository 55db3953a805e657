"""Binomial diffusion [SD15, Table App.1]: schedule, closed-form marginals, the numba chain and the
forward posterior. Statistical checks allow 5 standard errors."""

import itertools

import numba
import numpy as np
import pytest

from physdiff.binomial import (binomial_betas, binomial_diffuse, binomial_trajectory, independent_reverse_rate,
                               marginal_rate, posterior_rate, signal_fraction)

Z = 5.0


def kernel(x_prev, x_t, beta):
    """q(x_t | x_{t-1}) of one bit, straight from [SD15] Table App.1."""
    p1 = x_prev * (1 - beta) + 0.5 * beta
    return p1 if x_t == 1 else 1 - p1


def check_rate(x, p):
    """Column means of 0/1 samples x (m, d) equal p (d,) within 5 sigma."""
    m = x.shape[0]
    se = np.sqrt(p * (1 - p) / m)
    np.testing.assert_array_less(np.abs(x.mean(0) - p), Z * se + 1e-12)


def test_betas_erase_constant_fraction():
    T = 7
    b = binomial_betas(T)
    assert b.shape == (T + 1,) and b[0] == 0 and b[T] == 1
    np.testing.assert_allclose(b[1:], 1.0 / (T - np.arange(1, T + 1) + 1))
    np.testing.assert_allclose(signal_fraction(b), 1 - np.arange(T + 1) / T, atol=1e-15)


def test_marginal_rate_closed_form_matches_step_by_step_enumeration():
    T = 5
    b = binomial_betas(T)
    for x0 in (0, 1):
        dist = np.array([1 - x0, x0], dtype=float)  # P(x = 0), P(x = 1)
        for t in range(1, T + 1):
            M = np.array([[kernel(xp, xt, b[t]) for xt in (0, 1)] for xp in (0, 1)])
            dist = dist @ M
            np.testing.assert_allclose(marginal_rate([[x0]], b, t)[0, 0], dist[1], rtol=1e-13)


@pytest.mark.parametrize("t", [0, 1, 3, 6, 10])
def test_diffuse_marginals(t):
    b = binomial_betas(10)
    x0 = np.tile([0, 1, 1, 0, 1], (40000, 1))
    x_t = binomial_diffuse(x0, b, t, seed=5)
    assert x_t.dtype == np.int8 and x_t.shape == x0.shape
    p = marginal_rate(x0[:1], b, t)[0]
    if t == 0:
        np.testing.assert_array_equal(x_t, x0)
    else:
        check_rate(x_t, p)


def test_trajectory_marginals_and_transitions():
    T = 12
    b = binomial_betas(T)
    x0 = np.tile([1, 0, 1], (30000, 1)).astype(bool)
    steps = [0, 2, 3, 7, 12]
    path = binomial_trajectory(x0, b, steps, seed=11)
    assert path.shape == (5, 30000, 3) and path.dtype == np.int8
    np.testing.assert_array_equal(path[0], x0)
    for k, t in enumerate(steps[1:], start=1):
        check_rate(path[k], marginal_rate(x0[:1], b, t)[0])   # chain agrees with the closed form
    # one-step transition 2 -> 3: P(x_3 = 1 | x_2 = s) = s (1 - beta_3) + beta_3 / 2
    for s in (0, 1):
        sel = path[1] == s
        got = path[2][sel]
        p = s * (1 - b[3]) + 0.5 * b[3]
        assert abs(got.mean() - p) < Z * np.sqrt(p * (1 - p) / got.size)
    # x_T is uniform and independent of x0 (beta_T = 1)
    check_rate(path[4], np.full(3, 0.5))


def test_trajectory_reproducible_and_thread_independent():
    b = binomial_betas(50)
    x0 = np.random.default_rng(0).integers(0, 2, size=(3000, 7))
    a = binomial_trajectory(x0, b, [5, 50, 20], seed=3)
    old = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        c = binomial_trajectory(x0, b, [5, 50, 20], seed=3)
    finally:
        numba.set_num_threads(old)
    np.testing.assert_array_equal(a, c)
    assert not np.array_equal(a, binomial_trajectory(x0, b, [5, 50, 20], seed=4))
    np.testing.assert_array_equal(binomial_diffuse(x0, b, 9, seed=1), binomial_diffuse(x0, b, 9, seed=1))


def test_posterior_rate_is_bayes_rule():
    T = 6
    b = binomial_betas(T)
    for x0, x_t, t in itertools.product((0, 1), (0, 1), range(1, T + 1)):
        a = marginal_rate([[x0]], b, t - 1)[0, 0]
        num = kernel(1, x_t, b[t]) * a
        den = num + kernel(0, x_t, b[t]) * (1 - a)
        np.testing.assert_allclose(posterior_rate([[x_t]], [[x0]], b, t)[0, 0], num / den, rtol=1e-13)
    # t = 1: the point mass on x0
    x0 = np.array([[0, 1, 1]])
    np.testing.assert_array_equal(posterior_rate([[1, 0, 1]], x0, b, 1), x0)


def test_independent_reverse_rate_is_exact_reverse_of_independent_bits():
    T, p1 = 5, 0.3
    b = binomial_betas(T)
    for t in range(1, T + 1):
        a = p1 * signal_fraction(b)[t - 1] + 0.5 * (1 - signal_fraction(b)[t - 1])   # q(x_{t-1} = 1)
        for x_t in (0, 1):
            joint1 = a * kernel(1, x_t, b[t])
            joint0 = (1 - a) * kernel(0, x_t, b[t])
            np.testing.assert_allclose(independent_reverse_rate([[x_t]], b, t, p1)[0, 0],
                                       joint1 / (joint1 + joint0), rtol=1e-13)


def test_validation():
    b = binomial_betas(4)
    with pytest.raises(ValueError, match="only 0 and 1"):
        binomial_diffuse([[0, 2]], b, 1)
    with pytest.raises(ValueError, match="betas\\[0\\]"):
        binomial_diffuse([[0, 1]], [0.1, 0.5], 1)
    with pytest.raises(ValueError, match="0..T"):
        binomial_diffuse([[0, 1]], b, 5)
    with pytest.raises(ValueError, match="1-D"):
        binomial_trajectory([[0, 1]], b, 2)
    with pytest.raises(ValueError, match=">= 1"):
        binomial_betas(0)
    with pytest.raises(ValueError, match="t must be >= 1"):
        posterior_rate([[0]], [[1]], b, 0)
