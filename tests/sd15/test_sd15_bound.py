"""The bound K of [SD15] eq. 14 (Gaussian and binomial): tightness for the true reverse kernel, an
independent enumeration oracle, the closed form of an eps-parametrised DDPM's bound, and the data
helpers. Monte-Carlo checks allow 5 standard errors."""

import itertools
import math

import numpy as np
import pytest

from physdiff.binomial import binomial_betas, independent_reverse_rate
from physdiff.datasets import binary_heartbeat, swiss_roll
from physdiff.schedules import make_schedule
from physdiff.sd15 import (bound_K_binomial, bound_K_gaussian, ddpm_bound_K, ddpm_mean_var, ddpm_schedule,
                           gaussian_betas, null_log_likelihood_binomial, null_log_likelihood_gaussian, unit_variance,
                           valid_heartbeat)

Z = 5.0
LOG2 = math.log(2)


# ------------------------------------------------------------------ Gaussian


def gaussian_true_reverse(betas, var0):
    """Exact q(x_{t-1} | x_t) for data N(0, var0 I): both Gaussian, joint closed form."""
    betas = np.asarray(betas)
    ab = np.cumprod(1 - betas)
    v = ab * var0 + 1 - ab                       # Var x_t

    def mean_var(x, t):
        c = math.sqrt(1 - betas[t]) * v[t - 1] / v[t]
        return c * np.asarray(x, dtype=np.float64), v[t - 1] - (1 - betas[t]) * v[t - 1] ** 2 / v[t]

    return mean_var, v


@pytest.mark.parametrize("kind", ["geometric", "sd15"])
def test_gaussian_bound_is_tight_for_true_reverse_kernel(kind):
    # unit-variance data and alpha_bar_T = 0: q(x_T) = p(x_T) = N(0, I) and K = -H exactly
    betas = gaussian_betas(15, kind=kind)
    assert betas[0] == 0 and betas[-1] == 1
    np.testing.assert_allclose(np.cumprod(1 - betas)[-1], 0.0, atol=1e-15)
    fn, _ = gaussian_true_reverse(betas, 1.0)
    x0 = np.random.default_rng(0).standard_normal((6000, 2))
    K = bound_K_gaussian(fn, x0, betas, seed=1)
    exact = -2 * 0.5 * math.log2(2 * math.pi * math.e)              # -H(N(0, I_2)) in bits
    assert K.per_step.shape == (16,) and K.n == 6000
    assert abs(K.per_step.sum() - K.bits) < 1e-9
    assert abs(K.bits - exact) < Z * K.stderr, (K.bits, K.stderr, exact)


def test_gaussian_bound_with_prior_mismatch_is_minus_entropy_minus_prior_kl():
    # p(x_{0..T}) = q(x_{0..T}) p(x_T)/q(x_T)  =>  K = -H(x0) - KL(q(x_T) || N(0, 1)), exactly
    sched = make_schedule("linear", 30, beta_start=1e-3, beta_end=0.1)
    var0 = 0.25
    fn, v = gaussian_true_reverse(sched.betas, var0)
    x0 = np.sqrt(var0) * np.random.default_rng(2).standard_normal((8000, 1))
    K = bound_K_gaussian(fn, x0, sched, n_mc=2, seed=3)
    vT = v[-1]
    kl_prior = 0.5 * (vT - 1 - math.log(vT))
    exact = (-0.5 * math.log(2 * math.pi * math.e * var0) - kl_prior) / LOG2
    assert K.n == 16000
    assert abs(K.bits - exact) < Z * K.stderr, (K.bits, K.stderr, exact)


def test_ddpm_mean_var_with_exact_eps_gives_true_reverse_mean():
    sched = make_schedule("linear", 20, beta_start=1e-3, beta_end=0.2)
    var0 = 2.0
    fn, v = gaussian_true_reverse(sched.betas, var0)
    ab = sched.alpha_bar

    def eps_fn(x, t):   # eps* = -sqrt(1 - ab) * score, score = -x / v_t for N(0, v_t)
        return math.sqrt(1 - ab[t]) * x / v[t]

    x = np.random.default_rng(0).standard_normal((5, 3))
    for sigma in ("beta", "posterior"):
        mv = ddpm_mean_var(eps_fn, sched, sigma=sigma)
        for t in (1, 7, 20):
            mean, var = mv(x, t)
            np.testing.assert_allclose(mean, fn(x, t)[0], rtol=1e-12)
            want = sched.betas[t] if (sigma == "beta" or t == 1) else sched.posterior_variance[t]
            assert var == pytest.approx(want)
    # with the posterior variance the bound is finite and below the tight value
    K = bound_K_gaussian(ddpm_mean_var(eps_fn, sched, "posterior"), np.sqrt(var0) * x, sched, seed=0)
    assert np.isfinite(K.bits)


def test_gaussian_bound_validation():
    betas = gaussian_betas(5)
    x0 = np.zeros((4, 2))
    with pytest.raises(ValueError, match="variance"):
        bound_K_gaussian(lambda x, t: (x, -1.0), x0, betas)
    with pytest.raises(ValueError, match="shape"):
        bound_K_gaussian(lambda x, t: (x[:, :1], 1.0), x0, betas)
    with pytest.raises(ValueError, match="kind"):
        gaussian_betas(5, kind="cosine")
    with pytest.raises(ValueError, match="beta_t < 1"):
        ddpm_mean_var(lambda x, t: x, betas)


# ------------------------------------------------------------------ binomial


def enumerated_bound_bits(rate_fn, states, probs, betas, p_T=0.5):
    """K by exact enumeration, using only the forward kernel and the model's reverse kernel:
    K = E_q[log p(x_T)] + sum_t E_{q(x_{t-1}, x_t)}[log p(x_{t-1}|x_t) - log q(x_t|x_{t-1})]."""
    d = states.shape[1]
    T = betas.size - 1
    cube = np.array(list(itertools.product((0, 1), repeat=d)), dtype=np.int8)     # (2^d, d)
    index = {tuple(s): i for i, s in enumerate(cube)}
    m = np.zeros(len(cube))
    for s, p in zip(states, probs):
        m[index[tuple(s)]] += p
    K = 0.0
    for t in range(1, T + 1):
        b = betas[t]
        p1 = cube[:, None, :] * (1 - b) + 0.5 * b                                      # prev x next
        Q = np.prod(np.where(cube[None, :, :] == 1, p1, 1 - p1), axis=2)               # q(x_t | x_{t-1})
        r = np.asarray(rate_fn(cube, t), dtype=np.float64)                             # rows: x_t
        P = np.prod(np.where(cube[None, :, :] == 1, r[:, None, :], 1 - r[:, None, :]), axis=2)  # [x_t, x_{t-1}]
        joint = m[:, None] * Q                                                         # q(x_{t-1}, x_t)
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(joint > 0, np.log(P.T) - np.log(Q), 0.0)
        K += np.sum(joint * terms)
        m = m @ Q
    pT = np.prod(np.where(cube == 1, p_T, 1 - p_T), axis=1)
    K += np.sum(m * np.log(pT))
    return K / LOG2


def test_binomial_bound_tight_for_independent_bits():
    # data with independent bits: the true reverse kernel factorises, K = -H(data) exactly
    T = 6
    betas = binomial_betas(T)
    p1 = np.array([0.2, 0.7, 0.5])
    cube = np.array(list(itertools.product((0, 1), repeat=3)), dtype=np.int8)
    probs = np.prod(np.where(cube == 1, p1, 1 - p1), axis=1)
    H = -np.sum(probs * np.log2(probs))
    rate = lambda x, t: independent_reverse_rate(x, betas, t, p1)  # noqa: E731
    assert enumerated_bound_bits(rate, cube, probs, betas) == pytest.approx(-H, abs=1e-10)
    x0 = (np.random.default_rng(0).random((20000, 3)) < p1).astype(np.int8)
    K = bound_K_binomial(rate, x0, betas, seed=1)
    assert abs(K.bits - (-H)) < Z * K.stderr, (K.bits, K.stderr, -H)


def test_binomial_bound_matches_enumeration_for_an_arbitrary_model_on_correlated_data():
    # period-2 heartbeat on d = 2 bits: {01, 10} with probability 1/2 each; H = 1 bit
    T = 5
    betas = binomial_betas(T)
    rng = np.random.default_rng(4)
    A = rng.normal(size=(T + 1, 2, 2))
    c = rng.normal(size=(T + 1, 2))

    def rate(x, t):
        return 1 / (1 + np.exp(-(np.asarray(x, float) @ A[t] + c[t])))

    def logit(x, t):
        return np.asarray(x, float) @ A[t] + c[t]

    states = np.array([[0, 1], [1, 0]], dtype=np.int8)
    exact = enumerated_bound_bits(rate, states, [0.5, 0.5], betas)
    assert exact < -1.0                                          # a lower bound on -H = -1 bit
    x0 = binary_heartbeat(20000, length=2, period=2, seed=0)
    for out, fn in (("prob", rate), ("logit", logit)):
        K = bound_K_binomial(fn, x0, betas, n_mc=1, seed=5, output=out)
        assert abs(K.bits - exact) < Z * K.stderr, (out, K.bits, K.stderr, exact)
    # a non-uniform p(x_T) enters through the prior term (here q(x_T) is uniform: KL = d KL(B(.5)||B(.2)))
    Kp = bound_K_binomial(rate, x0, betas, seed=5, p_T=0.2)
    K = bound_K_binomial(rate, x0, betas, seed=5)
    kl = 2 * (0.5 * math.log2(0.5 / 0.2) + 0.5 * math.log2(0.5 / 0.8))
    assert Kp.bits == pytest.approx(K.bits - kl, abs=1e-9)


def test_binomial_bound_validation():
    b = binomial_betas(3)
    with pytest.raises(ValueError, match="outside"):
        bound_K_binomial(lambda x, t: np.full(x.shape, 2.0), [[0, 1]], b)
    with pytest.raises(ValueError, match="output"):
        bound_K_binomial(lambda x, t: x, [[0, 1]], b, output="odds")


# ------------------------------------------------------------------ helpers


def test_heartbeat_validity_and_null_likelihood():
    x = binary_heartbeat(500, seed=0)
    assert valid_heartbeat(x).all()
    y = x.copy()
    y[:, 0] ^= 1
    assert not valid_heartbeat(y).any()
    assert not valid_heartbeat(np.zeros((1, 20), np.int8)).any()
    # [SD15] Table 1: K - L_null = 12.024 with K = -2.414, i.e. L_null = 20 (0.2 log2 0.2 + 0.8 log2 0.8)
    L = null_log_likelihood_binomial(x, p1=0.2)
    assert L == pytest.approx(20 * (0.2 * math.log2(0.2) + 0.8 * math.log2(0.8)), rel=1e-12)
    assert -2.414 - L == pytest.approx(12.024, abs=2e-3)


def test_unit_variance_and_gaussian_null():
    raw = swiss_roll(4000, turns=2, seed=1)
    x, shift, scale = unit_variance(raw)
    np.testing.assert_allclose(x.mean(0), 0, atol=1e-12)
    assert x.var(0).mean() == pytest.approx(1.0)
    # L_null = -(d/2) log2(2 pi e) for unit-variance centred data; [SD15]: 2.35 - 6.45 = -4.10 bits
    assert null_log_likelihood_gaussian(x) == pytest.approx(-math.log2(2 * math.pi * math.e), rel=1e-9)


# ------------------------------------------------------------------ the eps-trained DDPM's bound


def _gaussian_eps(var0):
    """Exact eps* = -sqrt(1 - alpha_bar) score of diffused N(0, var0 I) data (theory.gaussian)."""
    from physdiff.theory.gaussian import score_gaussian

    def make(schedule):
        ab = schedule.alpha_bar
        return lambda x, t: -math.sqrt(1 - ab[t]) * score_gaussian(np.asarray(x, np.float64), ab[t], 0.0, var0)

    return make


def _exact_eps_K_bits(schedule, var0, d, sigma):
    """K of the exact-mean, fixed-variance reverse chain on N(0, var0 I) data, closed form:
    -H - KL(q(x_T) || N(0, I)) - sum_t d/2 (log(s_t/r_t) + r_t/s_t - 1), r_t the true reverse variance
    v_{t-1} - alpha_t v_{t-1}^2 / v_t of q(x_{t-1} | x_t), s_t = sigma_t^2 (beta_1 at t = 1)."""
    ab, al = schedule.alpha_bar, schedule.alphas
    v = ab * var0 + 1 - ab
    r = v[:-1] - al[1:] * v[:-1] ** 2 / v[1:]
    s = np.array(schedule.sigma2(sigma)[1:])
    s[0] = schedule.betas[1]
    H = 0.5 * d * math.log(2 * math.pi * math.e * var0)
    kl_prior = 0.5 * d * (v[-1] - 1 - math.log(v[-1]))
    return (-H - kl_prior - np.sum(0.5 * d * (np.log(s / r) + r / s - 1))) / LOG2


def test_ddpm_schedule_clips_the_last_step_only():
    betas = gaussian_betas(40)
    sch = ddpm_schedule(betas)
    np.testing.assert_array_equal(sch.betas[:-1], betas[:-1])
    assert sch.betas[-1] == 0.999 and sch.T == 40
    assert sch.alpha_bar[-1] == pytest.approx(np.cumprod(1 - betas)[-2] * 1e-3, rel=1e-9)
    with pytest.raises(ValueError, match="max_beta"):
        ddpm_schedule(betas, max_beta=1.0)
    # the prior term is -alpha_bar_T |x0|^2 / 2 nats to first order in alpha_bar_T (unit-variance 2-D data)
    x0 = np.random.default_rng(0).standard_normal((3000, 2))
    K = bound_K_gaussian(ddpm_mean_var(_gaussian_eps(1.0)(sch), sch), x0, sch, seed=1)
    want = -sch.alpha_bar[-1] * np.mean(np.sum(x0**2, 1)) / 2 / LOG2
    assert K.per_step[0] == pytest.approx(want, rel=1e-3) and abs(want) < 1e-3


@pytest.mark.parametrize("sigma", ["beta", "posterior"])
def test_ddpm_bound_with_exact_gaussian_eps_matches_closed_form(sigma):
    # unit-variance data: the true reverse variance IS beta_t, so sigma^2 = beta_t makes K = -H exactly
    sch = ddpm_schedule(gaussian_betas(20))
    x0 = np.random.default_rng(3).standard_normal((4000, 2))
    K = ddpm_bound_K(_gaussian_eps(1.0)(sch), x0, sch, sigmas=(sigma,), seed=4)[sigma]
    want = _exact_eps_K_bits(sch, 1.0, 2, sigma)
    H = math.log2(2 * math.pi * math.e)
    if sigma == "beta":
        assert want == pytest.approx(-H, abs=1e-3)          # only the tiny prior KL of the clipped last step
    else:
        assert want < -H - 0.1                               # beta_tilde < beta: the wrong variance costs bits
    assert abs(K.bits - want) < Z * K.stderr, (K, want)


def test_ddpm_bound_with_exact_eps_approaches_the_entropy_as_T_grows():
    # N(0, 0.25 I) data: the fixed variance beta_t is wrong by O(beta_t^2) per step; the gap to -H - KL_prior
    # shrinks like 1/T (T terms ~ beta_t^2 ~ 1/T^2 each: 0.080, 0.020, 0.005 bits), the closed form
    # being checked by Monte Carlo at each T
    var0, d = 0.25, 2
    H = 0.5 * d * math.log2(2 * math.pi * math.e * var0)
    x0 = math.sqrt(var0) * np.random.default_rng(5).standard_normal((3000, d))
    gaps = []
    for T in (40, 160, 640):
        sch = make_schedule("linear", T, beta_start=1e-4 * 1000 / T, beta_end=0.02 * 1000 / T)
        K = ddpm_bound_K(_gaussian_eps(var0)(sch), x0, sch, sigmas=("beta",), seed=T)["beta"]
        want = _exact_eps_K_bits(sch, var0, d, "beta")
        assert abs(K.bits - want) < Z * K.stderr, (T, K, want)
        v = sch.alpha_bar[-1] * var0 + 1 - sch.alpha_bar[-1]
        gaps.append(-H - 0.5 * d * (v - 1 - math.log(v)) / LOG2 - want)
    assert gaps[0] > 0, gaps
    assert gaps[0] / gaps[1] == pytest.approx(4, rel=0.25) and gaps[1] / gaps[2] == pytest.approx(4, rel=0.25), gaps
