"""Forward chain: closed-form jump [Ho20 eq. 4] and step-by-step Markov chain [Ho20 eq. 2].

Statistical checks use fixed seeds and tolerances of 5 standard errors of the estimator, so a
correct kernel fails with probability < 1e-6 per check.
"""

import numba
import numpy as np
import pytest
from scipy import stats

from physdiff.forward import _stream_seeds32, diffuse, trajectory
from physdiff.schedules import make_schedule

Z = 5.0  # standard errors allowed
SCHED = make_schedule("linear", 1000)
ROW = np.array([-2.0, -0.5, 0.0, 0.3, 1.7])  # one x0 row, repeated over samples


def repeated(n, dtype=np.float64):
    return np.tile(ROW, (n, 1)).astype(dtype)


def check_gaussian_moments(x, mean, var):
    """Columns of x (m, d) have mean ``mean`` (d,) and variance ``var`` (scalar): 5-sigma checks."""
    m = x.shape[0]
    x = x.astype(np.float64)
    # sample mean: SE = sqrt(var/m); sample variance of a Gaussian: SE = var*sqrt(2/(m-1))
    np.testing.assert_array_less(np.abs(x.mean(0) - mean), Z * np.sqrt(var / m) + 1e-12)
    if var > 0:
        np.testing.assert_array_less(np.abs(x.var(0, ddof=1) - var), Z * var * np.sqrt(2.0 / (m - 1)))
    else:
        np.testing.assert_array_equal(x, np.broadcast_to(mean, x.shape))


# ------------------------------------------------------------------ diffuse


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("t", [0, 1, 10, 250, 1000])
def test_diffuse_moments_and_identity(dtype, t):
    n = 20000
    x0 = repeated(n, dtype)
    x_t, eps = diffuse(x0, SCHED, t, seed=123)
    assert x_t.shape == eps.shape == x0.shape and x_t.dtype == eps.dtype == dtype
    ab = SCHED.alpha_bar[t]
    check_gaussian_moments(x_t, np.sqrt(ab) * x0[0].astype(np.float64), 1.0 - ab)
    check_gaussian_moments(eps, np.zeros(ROW.size), 1.0)
    # x_t is the closed form of the returned eps [Ho20 eq. 4], to the dtype's rounding
    rtol = 1e-6 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(x_t, np.sqrt(ab) * x0.astype(np.float64) + np.sqrt(1 - ab) * eps.astype(np.float64),
                               rtol=rtol, atol=rtol)
    if t == 0:
        np.testing.assert_array_equal(x_t, x0)


def test_diffuse_per_sample_steps():
    levels = np.array([0, 1, 50, 500, 1000])
    n_per = 8000
    t = np.tile(levels, n_per)  # interleaved, so every noise stream mixes steps
    x0 = repeated(t.size)
    x_t, eps = diffuse(x0, SCHED, t, seed=7)
    for level in levels:
        rows = t == level
        ab = SCHED.alpha_bar[level]
        check_gaussian_moments(x_t[rows], np.sqrt(ab) * ROW, 1.0 - ab)
    np.testing.assert_array_equal(x_t[t == 0], x0[t == 0])
    # eps does not depend on t: same seed with a scalar t gives the same noise
    _, eps_scalar = diffuse(x0, SCHED, 500, seed=7)
    np.testing.assert_array_equal(eps, eps_scalar)
    # numpy integer scalar and 0-d array are accepted like an int
    a = diffuse(x0[:10], SCHED, np.int32(500), seed=1)[0]
    b = diffuse(x0[:10], SCHED, np.array(500), seed=1)[0]
    np.testing.assert_array_equal(a, b)


def test_diffuse_noise_independent_across_samples_and_features():
    # d = 1: many samples share one noise stream; their draws must still be independent N(0,1)
    n = 50000
    _, eps = diffuse(np.zeros((n, 1)), SCHED, 10, seed=3)
    e = eps[:, 0]
    assert np.unique(e).size == n
    r = np.corrcoef(e[:-1], e[1:])[0, 1]
    assert abs(r) < Z / np.sqrt(n)
    assert stats.kstest(e, "norm").pvalue > 1e-4
    # d > 1: columns uncorrelated
    _, eps = diffuse(np.zeros((20000, 3)), SCHED, 10, seed=4)
    c = np.corrcoef(eps.T)[np.triu_indices(3, 1)]
    np.testing.assert_array_less(np.abs(c), Z / np.sqrt(20000))


def test_diffuse_spins_become_float32():
    rng = np.random.default_rng(0)
    spins = rng.choice(np.array([-1, 1], dtype=np.int8), size=(6, 10))
    x_t, eps = diffuse(spins, SCHED, 0, seed=0)
    assert x_t.dtype == eps.dtype == np.float32
    np.testing.assert_array_equal(x_t, spins.astype(np.float32))


# ------------------------------------------------------------------ trajectory


def test_trajectory_matches_closed_form_in_law():
    n = 4000
    steps = [0, 1, 10, 250, 499, 500, 1000]
    x0 = repeated(n)
    path = trajectory(x0, SCHED, steps, seed=11)
    assert path.shape == (len(steps), n, ROW.size) and path.dtype == np.float64
    np.testing.assert_array_equal(path[0], x0)
    x_jump, _ = diffuse(np.tile(x0, (len(steps), 1)), SCHED, np.repeat(steps, n), seed=12)
    x_jump = x_jump.reshape(len(steps), n, ROW.size)
    for k, t in enumerate(steps[1:], start=1):
        ab = SCHED.alpha_bar[t]
        check_gaussian_moments(path[k], np.sqrt(ab) * ROW, 1.0 - ab)
        # two-sample KS of the standardised states of the chain and of the closed-form jump
        za = ((path[k] - np.sqrt(ab) * ROW) / np.sqrt(1 - ab)).ravel()
        zb = ((x_jump[k] - np.sqrt(ab) * ROW) / np.sqrt(1 - ab)).ravel()
        assert stats.ks_2samp(za, zb).pvalue > 1e-4, t
        assert stats.kstest(za, "norm").pvalue > 1e-4, t


def test_trajectory_joint_law_is_markov_chain():
    # Between recorded steps s < t of one path: x_t = sqrt(ab_t/ab_s) x_s + N(0, 1 - ab_t/ab_s),
    # so Cov(x_s, x_t) = sqrt(ab_t/ab_s) (1 - ab_s); one step: x_t - sqrt(alpha_t) x_{t-1} ~ N(0, beta_t).
    n, d = 4000, 5
    path = trajectory(np.zeros((n, d)), SCHED, [100, 499, 500, 800], seed=5)
    ab = SCHED.alpha_bar
    for (i, s), (j, t) in [((0, 100), (3, 800)), ((1, 499), (3, 800))]:
        xs, xt = path[i].ravel(), path[j].ravel()
        m = xs.size
        var_s, var_t = 1 - ab[s], 1 - ab[t]
        cov = np.sqrt(ab[t] / ab[s]) * var_s
        se = np.sqrt((var_s * var_t + cov**2) / m)  # SE of a Gaussian sample covariance
        assert abs(np.mean(xs * xt) - cov) < Z * se
    incr = path[2] - np.sqrt(SCHED.alphas[500]) * path[1]
    check_gaussian_moments(incr.reshape(-1, 1), np.zeros(1), SCHED.betas[500])


def test_trajectory_step_order_and_duplicates():
    x0 = np.random.default_rng(2).standard_normal((30, 4)).astype(np.float32)
    sorted_path = trajectory(x0, SCHED, [0, 10, 1000], seed=9)
    path = trajectory(x0, SCHED, np.array([1000, 0, 10, 10, 0]), seed=9)
    assert path.dtype == np.float32
    for k, idx in enumerate([2, 0, 1, 1, 0]):
        np.testing.assert_array_equal(path[k], sorted_path[idx])
    np.testing.assert_array_equal(path[1], x0)
    assert trajectory(x0, SCHED, [], seed=0).shape == (0, 30, 4)


def test_trajectory_spins_become_float32():
    spins = np.where(np.random.default_rng(1).random((5, 7)) < 0.5, -1, 1).astype(np.int8)
    path = trajectory(spins, SCHED, [0, 3], seed=0)
    assert path.dtype == np.float32
    np.testing.assert_array_equal(path[0], spins)


# ------------------------------------------------------------------ reproducibility


def _diffuse_both(x0, seed):
    return diffuse(x0, SCHED, np.arange(x0.shape[0]) % (SCHED.T + 1), seed=seed)


@pytest.mark.parametrize("d", [1, 3, 5000])  # many rows per noise stream ... one row per stream
def test_reproducible_and_thread_count_independent(d):
    x0 = np.random.default_rng(0).standard_normal((16 if d == 5000 else 3000, d))
    steps = [0, 7, 40]
    ref_x, ref_e = _diffuse_both(x0, 42)
    ref_path = trajectory(x0, SCHED, steps, seed=42)
    # same seed -> identical; a Generator seeded alike -> identical
    np.testing.assert_array_equal(_diffuse_both(x0, 42)[1], ref_e)
    np.testing.assert_array_equal(_diffuse_both(x0, np.random.default_rng(42))[0], ref_x)
    np.testing.assert_array_equal(trajectory(x0, SCHED, steps, seed=np.random.default_rng(42)), ref_path)
    # different seeds -> different noise
    assert not np.any(_diffuse_both(x0, 43)[1] == ref_e)
    assert not np.any(trajectory(x0, SCHED, steps, seed=43)[1:] == ref_path[1:])
    # thread count does not matter
    n_threads = numba.get_num_threads()
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("numba has a single thread here")
    try:
        for threads in (1, 2):
            numba.set_num_threads(threads)
            x, e = _diffuse_both(x0, 42)
            np.testing.assert_array_equal(x, ref_x)
            np.testing.assert_array_equal(e, ref_e)
            np.testing.assert_array_equal(trajectory(x0, SCHED, steps, seed=42), ref_path)
    finally:
        numba.set_num_threads(n_threads)


def test_stream_seeds_distinct_and_deterministic():
    # 2e5 32-bit seeds collide with probability ~ 1 - exp(-n^2/2^33) ~ 0.99: repeats must be redrawn
    a = _stream_seeds32(5, 200_000)
    assert a.dtype == np.uint32 and np.unique(a).size == a.size
    np.testing.assert_array_equal(a, _stream_seeds32(5, 200_000))
    assert not np.array_equal(a[:100], _stream_seeds32(6, 100))


# ------------------------------------------------------------------ validation


@pytest.mark.parametrize("x0", [np.zeros(5), np.zeros((2, 3, 4)), np.zeros((0, 3)), np.zeros((3, 0)),
                                np.array([[0.0, np.nan]]), np.array([[np.inf, 0.0]]),
                                np.zeros((2, 2), dtype=complex), np.array([["a", "b"]])])
def test_bad_x0(x0):
    with pytest.raises(ValueError, match="x0"):
        diffuse(x0, SCHED, 1, seed=0)
    with pytest.raises(ValueError, match="x0"):
        trajectory(x0, SCHED, [1], seed=0)


@pytest.mark.parametrize("t", [-1, 1001, 1.0, 2.5, True, [1, 2], np.ones((3, 1), int), np.array([0, 1, 2000]),
                               np.array([0.0, 1.0, 2.0])])
def test_bad_t(t):
    with pytest.raises(ValueError, match="t "):
        diffuse(np.zeros((3, 2)), SCHED, t, seed=0)


@pytest.mark.parametrize("steps", [[-1], [0, 1001], 5, [[1, 2]], [0.5], np.array([1.0])])
def test_bad_steps(steps):
    with pytest.raises(ValueError, match="steps"):
        trajectory(np.zeros((3, 2)), SCHED, steps, seed=0)


def test_bad_schedule_and_seed():
    with pytest.raises(TypeError, match="make_schedule"):
        diffuse(np.zeros((3, 2)), SCHED.alpha_bar, 1)
    with pytest.raises(TypeError, match="make_schedule"):
        trajectory(np.zeros((3, 2)), "linear", [1])
    with pytest.raises(TypeError, match="seed"):
        diffuse(np.zeros((3, 2)), SCHED, 1, seed="x")
