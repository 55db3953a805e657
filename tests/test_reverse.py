"""The reverse chain [Ho20, Alg. 2] and the cloning experiment [BBBM24] with exact scores.

For Gaussian data the exact-score ancestral step is affine, ``x_{t-1} = A_t x_t + b_t + sigma_t z``,
so the law of the chain's output is Gaussian with a mean and variance given by an exact recursion:
that recursion measures the discretisation error (plus the N(0, I) start), and the samples are
checked against it within statistical tolerance.
"""

import numpy as np
import pytest

from physdiff.reverse import (CloningResult, cloning, cloning_branch_steps, crossing_time, eps_from_score, reverse_chain,
                              reverse_step)
from physdiff.reverse import ddim_step, sampling_steps
from physdiff.schedules import make_schedule
from physdiff.theory.gaussian import PHI_SPECIATION, phi_two_clusters, score_gaussian, score_two_gaussians

SCHED = make_schedule("linear", 1000)
MU0 = np.array([1.0, -0.5, 0.0])
SIG0 = np.array([0.5, 2.0, 1.0])


def _exact_output_law(schedule, mu0, sig0, sigma="beta"):
    """Mean and variance of the chain's output for N(mu0, sig0^2) data, started from N(0, 1)."""
    m, v = np.zeros_like(mu0), np.ones_like(mu0)
    s2 = schedule.sigma2(sigma)
    for t in range(schedule.T, 0, -1):
        b, ab = schedule.betas[t], schedule.alpha_bar[t]
        var_t = ab * sig0**2 + 1 - ab
        A = (1 - b / var_t) / np.sqrt(1 - b)
        B = b * np.sqrt(ab) * mu0 / (var_t * np.sqrt(1 - b))
        m, v = A * m + B, A * A * v + (s2[t] if t > 1 else 0.0)
    return m, v


def _gauss_eps(schedule=SCHED):
    return eps_from_score(lambda x, ab: score_gaussian(x, ab, MU0, SIG0**2), schedule)


@pytest.mark.parametrize("sigma", ["beta", "posterior"])
def test_reverse_chain_exact_gaussian_score_reproduces_data(sigma):
    n = 12_000
    m_pred, v_pred = _exact_output_law(SCHED, MU0, SIG0, sigma)
    # discretisation error of T = 1000 (linear 1e-4..0.02), from the exact recursion: ~1e-4 in the
    # mean; in the variance < 0.5% with sigma_t^2 = beta_t and 1.6% low with beta_tilde_t (the
    # posterior variance is exact for a point mass and too small for spread-out data [Ho20 3.2])
    np.testing.assert_allclose(m_pred, MU0, atol=2e-4 * SIG0.max())
    np.testing.assert_allclose(v_pred / SIG0**2, 1.0, atol=5e-3 if sigma == "beta" else 2e-2)
    x_T = np.random.default_rng(0).standard_normal((n, 3))
    x0 = reverse_chain(_gauss_eps(), x_T, SCHED, seed=1, sigma=sigma)
    assert x0.shape == (n, 3) and x0.dtype == np.float64
    # 5 sigma: SE(mean) = sd / sqrt(n), SE(var) = var sqrt(2 / (n - 1))
    assert np.all(np.abs(x0.mean(0) - m_pred) < 5 * np.sqrt(v_pred / n))
    assert np.all(np.abs(x0.var(0, ddof=1) - v_pred) < 5 * v_pred * np.sqrt(2 / (n - 1)))


def test_reverse_chain_full_covariance():
    cov = np.array([[1.0, 0.6], [0.6, 0.5]])
    mean = np.array([0.3, -0.2])
    n = 12_000
    eps = eps_from_score(lambda x, ab: score_gaussian(x, ab, mean, cov), SCHED)
    x0 = reverse_chain(eps, np.random.default_rng(2).standard_normal((n, 2)), SCHED, seed=3)
    # statistical tolerance (5 sigma of the Wishart fluctuation) plus the 0.5% discretisation bias
    se = np.sqrt((cov**2 + np.outer(np.diag(cov), np.diag(cov))) / n)
    np.testing.assert_array_less(np.abs(np.cov(x0.T) - cov), 5 * se + 5e-3 * np.abs(cov))
    np.testing.assert_array_less(np.abs(x0.mean(0) - mean), 5 * np.sqrt(np.diag(cov) / n))


def test_reverse_chain_record_seed_and_dtype():
    sched = make_schedule("linear", 50)
    eps = _gauss_eps(sched)
    x_T = np.random.default_rng(4).standard_normal((16, 3))
    record = [50, 10, 30, 0, 10]
    x, traj = reverse_chain(eps, x_T, sched, seed=5, record=record)
    assert traj.shape == (5, 16, 3)
    np.testing.assert_array_equal(traj[0], x_T)
    np.testing.assert_array_equal(traj[3], x)
    np.testing.assert_array_equal(traj[1], traj[4])
    # the recorded states are the chain's: stopping at step 30 (same noise: same seed) gives traj[2]
    np.testing.assert_array_equal(reverse_chain(eps, x_T, sched, t_stop=30, seed=5), traj[2])
    # continuing from a recorded state with t_start gives a valid chain too
    assert reverse_chain(eps, traj[2], sched, t_start=30, seed=6).shape == (16, 3)
    # same seed, same output; another seed, another output; x_T is not modified
    x2 = reverse_chain(eps, x_T, sched, seed=5)
    np.testing.assert_array_equal(x, x2)
    assert not np.array_equal(x, reverse_chain(eps, x_T, sched, seed=6))
    np.testing.assert_array_equal(x_T, np.random.default_rng(4).standard_normal((16, 3)))
    # float32 in, float32 out (numpy float64 scalars must not promote the state)
    x32 = reverse_chain(eps_from_score(lambda x, ab: (-x / 1.0).astype(x.dtype), sched),
                        x_T.astype(np.float32), sched, seed=5)
    assert x32.dtype == np.float32


def test_reverse_chain_torch():
    torch = pytest.importorskip("torch")
    sched = make_schedule("linear", 100)
    mu0, var0 = 0.5, 0.25

    def eps(x, t):  # exact eps of N(mu0, var0) data, in torch
        ab = float(sched.alpha_bar[t])
        return (1 - ab) ** 0.5 * (x - ab**0.5 * mu0) / (ab * var0 + 1 - ab)

    x_T = torch.randn(64, 2, generator=torch.Generator().manual_seed(0))
    x, traj = reverse_chain(eps, x_T, sched, seed=7, record=[100, 50, 0])
    assert isinstance(x, torch.Tensor) and x.dtype == torch.float32 and traj.shape == (3, 64, 2)
    assert torch.equal(traj[0], x_T) and torch.equal(traj[2], x)
    assert torch.equal(x, reverse_chain(eps, x_T, sched, seed=7))
    assert not torch.equal(x, reverse_chain(eps, x_T, sched, seed=8))


def test_reverse_chain_validation():
    sched = make_schedule("linear", 20)
    eps = _gauss_eps(sched)
    x = np.zeros((4, 3))
    for kwargs, match in [(dict(t_start=21), "exceeds"), (dict(t_start=-1), "t_start"),
                          (dict(t_stop=-1), "t_stop"), (dict(t_start=5, t_stop=6), "t_stop"),
                          (dict(t_start=2.5), "t_start"), (dict(record=[21]), "record"),
                          (dict(t_stop=5, record=[3]), "record"), (dict(sigma="ddim"), "sigma")]:
        with pytest.raises(ValueError, match=match):
            reverse_chain(eps, x, sched, **kwargs)
    with pytest.raises(ValueError, match="shape"):
        reverse_chain(eps, np.zeros(3), sched)
    with pytest.raises(ValueError, match="step"):
        reverse_step(x, x, 0, sched)
    # t_start = t_stop: nothing to do, a copy comes back
    y = reverse_chain(eps, x + 1, sched, t_start=7, t_stop=7)
    np.testing.assert_array_equal(y, x + 1)


# ------------------------------------------------------------------------------------------------
# samplers: ancestral and DDIM, full and strided, x0 clipping
# ------------------------------------------------------------------------------------------------


def _exact_sampler_law(schedule, mu0, sig0, sampler="ancestral", sigma="beta", eta=0.0, steps=None):
    """Mean and variance of any sampler's output for N(mu0, sig0^2) data and the exact eps.

    With the exact eps of Gaussian data, ``eps = e1 x + e0`` at every step, so each jump (ancestral
    with the effective beta of the subsequence [Ho20, Alg. 2], or DDIM [SME21, eq. 12]) is affine
    plus Gaussian noise, and the output law follows from the start N(0, 1) by a recursion.
    """
    m, v = np.zeros_like(mu0), np.ones_like(mu0)
    seq = sampling_steps(schedule, steps)
    for s, r in zip(seq[:-1], seq[1:]):
        ab, abr = schedule.alpha_bar[s], schedule.alpha_bar[r]
        var_s = ab * sig0**2 + 1 - ab
        e1, e0 = np.sqrt(1 - ab) / var_s, -np.sqrt(1 - ab) * np.sqrt(ab) * mu0 / var_s
        if sampler == "ancestral":
            beta = 1 - ab / abr
            A = (1 - beta / np.sqrt(1 - ab) * e1) / np.sqrt(1 - beta)
            B = -beta / np.sqrt(1 - ab) * e0 / np.sqrt(1 - beta)
            var = beta if sigma == "beta" else (1 - abr) / (1 - ab) * beta
        else:
            var = eta**2 * (1 - abr) / (1 - ab) * (1 - ab / abr)
            c1, c0 = (1 - np.sqrt(1 - ab) * e1) / np.sqrt(ab), -np.sqrt(1 - ab) * e0 / np.sqrt(ab)
            k = np.sqrt(max(1 - abr - var, 0.0))
            A, B = np.sqrt(abr) * c1 + k * e1, np.sqrt(abr) * c0 + k * e0
        m, v = A * m + B, A * A * v + (var if r > 0 else 0.0)
    return m, v


SAMPLER_CASES = [("ancestral", "beta", 0.0), ("ancestral", "posterior", 0.0), ("ddim", "beta", 0.0),
                 ("ddim", "beta", 1.0)]


@pytest.mark.parametrize("steps", [None, 50])
@pytest.mark.parametrize("sampler, sigma, eta", SAMPLER_CASES)
def test_samplers_reproduce_the_exact_gaussian_law(sampler, sigma, eta, steps):
    n = 12_000
    m_pred, v_pred = _exact_sampler_law(SCHED, MU0, SIG0, sampler, sigma, eta, steps)
    x_T = np.random.default_rng(0).standard_normal((n, 3))
    x0 = reverse_chain(_gauss_eps(), x_T, SCHED, seed=1, sigma=sigma, sampler=sampler, eta=eta, steps=steps)
    # the samples follow the chain's exact law: 5 sigma, SE(mean) = sd / sqrt(n), SE(var) = var sqrt(2 / (n - 1))
    assert np.all(np.abs(x0.mean(0) - m_pred) < 5 * np.sqrt(v_pred / n))
    assert np.all(np.abs(x0.var(0, ddof=1) - v_pred) < 5 * v_pred * np.sqrt(2 / (n - 1)))
    # and that law is the data's up to the discretisation error. The mean: a deterministic chain
    # keeps the start's error sqrt(alpha_bar_T) mu0 (4e-5 ** 0.5 = 0.0063), the noisy ones forget it.
    np.testing.assert_allclose(m_pred, MU0, atol=np.sqrt(SCHED.alpha_bar[-1]) * np.abs(MU0).max() + 2e-4)
    if steps is None:  # the full chains: < 2% in the variance (posterior variance: 1.6% low)
        np.testing.assert_allclose(v_pred / SIG0**2, 1.0, atol=2e-2)
    else:  # strided: first order in the step, so 4x the steps cut the variance error by ~4
        err = np.abs(v_pred / SIG0**2 - 1)
        _, v_fine = _exact_sampler_law(SCHED, MU0, SIG0, sampler, sigma, eta, 4 * steps)
        err_fine = np.abs(v_fine / SIG0**2 - 1)
        assert np.all(err < 0.25) and np.all(err_fine < 0.35 * err + 1e-3)


def test_ddim_eta0_is_deterministic_and_eta1_is_ancestral_posterior():
    eps = _gauss_eps()
    x_T = np.random.default_rng(3).standard_normal((200, 3))
    a = reverse_chain(eps, x_T, SCHED, seed=1, sampler="ddim", steps=40)
    np.testing.assert_array_equal(a, reverse_chain(eps, x_T, SCHED, seed=2, sampler="ddim", steps=40))
    assert not np.allclose(a, reverse_chain(eps, x_T + 0.1, SCHED, seed=1, sampler="ddim", steps=40))
    # eta = 1 has the posterior variance and the same mean [SME21, sec. 4.1]: the same noise, the same chain
    for steps in (None, 40):
        d1 = reverse_chain(eps, x_T, SCHED, seed=5, sampler="ddim", eta=1.0, steps=steps)
        anc = reverse_chain(eps, x_T, SCHED, seed=5, sigma="posterior", steps=steps)
        np.testing.assert_allclose(d1, anc, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("sampler, sigma, eta", SAMPLER_CASES)
def test_strided_with_every_step_is_the_full_chain(sampler, sigma, eta):
    sched = make_schedule("linear", 60)
    eps = _gauss_eps(sched)
    x_T = np.random.default_rng(4).standard_normal((32, 3))
    full = reverse_chain(eps, x_T, sched, seed=9, sigma=sigma, sampler=sampler, eta=eta)
    for steps in (60, list(range(61)), np.arange(60, -1, -1)):
        np.testing.assert_array_equal(
            reverse_chain(eps, x_T, sched, seed=9, sigma=sigma, sampler=sampler, eta=eta, steps=steps), full)
    np.testing.assert_array_equal(sampling_steps(sched, 4), [60, 45, 30, 15, 0])
    np.testing.assert_array_equal(sampling_steps(sched, [10, 3, 10], t_start=40, t_stop=2), [40, 10, 3, 2])
    # the visited steps can be recorded; a skipped step cannot
    x, traj = reverse_chain(eps, x_T, sched, seed=9, sampler=sampler, steps=4, record=[60, 30, 0])
    np.testing.assert_array_equal(traj[2], x)
    with pytest.raises(ValueError, match="not among"):
        reverse_chain(eps, x_T, sched, sampler=sampler, steps=4, record=[20])


@pytest.mark.parametrize("sampler", ["ancestral", "ddim"])
def test_x0_clipping(sampler):
    sched = make_schedule("linear", 100)
    eps = _gauss_eps(sched)  # data of mean (1, -0.5, 0), sd up to 2: far outside [-1, 1]
    x_T = np.random.default_rng(6).standard_normal((500, 3))
    free = reverse_chain(eps, x_T, sched, seed=2, sampler=sampler)
    assert np.abs(free).max() > 2
    # the last step returns the clipped x0 prediction itself
    for clip, (lo, hi) in [(1.0, (-1, 1)), ((-0.5, 2.0), (-0.5, 2.0))]:
        x = reverse_chain(eps, x_T, sched, seed=2, sampler=sampler, clip=clip)
        assert x.min() >= lo - 1e-9 and x.max() <= hi + 1e-9
    # a range that never binds changes nothing but rounding
    np.testing.assert_allclose(reverse_chain(eps, x_T, sched, seed=2, sampler=sampler, clip=1e6), free,
                               rtol=1e-7, atol=1e-7)


def test_samplers_torch_match_numpy():
    torch = pytest.importorskip("torch")
    sched = make_schedule("linear", 100)

    def eps(x, t):  # exact eps of N(0.5, 0.25) data: works on numpy and torch alike
        ab = float(sched.alpha_bar[t])
        return (1 - ab) ** 0.5 * (x - ab**0.5 * 0.5) / (ab * 0.25 + 1 - ab)

    x_T = np.random.default_rng(0).standard_normal((64, 2))
    for kw in (dict(sampler="ddim", steps=10, clip=1.0), dict(steps=10, clip=1.0)):
        xt = reverse_chain(eps, torch.from_numpy(x_T), sched, seed=1, **kw)
        assert isinstance(xt, torch.Tensor) and xt.dtype == torch.float64
        if kw.get("sampler") == "ddim":  # no noise: numpy and torch agree
            np.testing.assert_allclose(xt.numpy(), reverse_chain(eps, x_T, sched, seed=1, **kw), rtol=1e-12)


def test_sampler_validation():
    sched = make_schedule("linear", 20)
    eps = _gauss_eps(sched)
    x = np.zeros((4, 3))
    for kwargs, match in [(dict(sampler="euler"), "sampler"), (dict(sampler="ddim", eta=1.5), "eta"),
                          (dict(steps=0), "steps"), (dict(steps=21), "steps"), (dict(steps=[25]), "steps"),
                          (dict(steps=[2.5]), "steps"), (dict(clip=0.0), "clip"), (dict(clip=(1, -1)), "clip")]:
        with pytest.raises(ValueError, match=match):
            reverse_chain(eps, x, sched, **kwargs)
    with pytest.raises(ValueError, match="t_prev"):
        reverse_step(x, x, 5, sched, t_prev=5)
    with pytest.raises(ValueError, match="noise"):
        ddim_step(x, x, 5, 2, sched, eta=0.5)


# ------------------------------------------------------------------------------------------------
# cloning
# ------------------------------------------------------------------------------------------------

M_NORM, SIGMA = 3.0, 0.3  # two clusters at +-3 (d = 1), misclassified at t = 0 with prob ~1e-23


def _two_cluster_eps(schedule=SCHED):
    return eps_from_score(lambda x, ab: score_two_gaussians(x, ab, M_NORM, SIGMA), schedule)


def _classify(x0):
    return (x0[:, 0] > 0).astype(np.int64)


def test_cloning_matches_two_cluster_theory():
    n = 10_000
    steps = [SCHED.step_at_time(tau) for tau in (1.6, 0.6, 1.1)] + [1, SCHED.T]
    res = cloning(_two_cluster_eps(), SCHED, _classify, steps, n, 1, seed=0)
    assert isinstance(res, CloningResult)
    theory = phi_two_clusters(res.physical_time, M_NORM, SIGMA**2)
    se = np.sqrt(theory * (1 - theory) / n)
    # discretisation error of T = 1000, measured with 4e5 pairs: < 2e-3, far below 5 SE (~0.02)
    assert np.all(np.abs(res.phi[:3] - theory[:3]) < 5 * se[:3]), (res.phi, theory)
    assert res.phi[3] == 1.0  # branching at step 1: the last step is noiseless, clones coincide
    # branching at T: clones share (almost) nothing, phi ~ the class-imbalance baseline
    assert abs(res.phi[4] - res.baseline) < 5 * np.sqrt(0.25 / n)
    assert abs(res.class_share[0] - 0.5) < 5 * np.sqrt(0.25 / n)
    # details
    np.testing.assert_array_equal(res.branch_steps, steps)
    np.testing.assert_allclose(res.phi_stderr, np.sqrt(res.phi * (1 - res.phi) / n))
    np.testing.assert_array_equal(res.alpha_bar, SCHED.alpha_bar[steps])
    assert res.clone_labels.shape == (5, n) and res.labels.shape == (n,)
    assert res.baseline == pytest.approx(np.sum(res.class_share**2))
    np.testing.assert_array_equal(res["phi"], res.phi)
    assert set(res.keys()) >= {"phi", "phi_stderr", "baseline", "physical_time"}
    # the crossing of 0.7752 lies between the branch times that bracket it, with a bootstrap error
    t_x, t_err = res.speciation_time(seed=0)
    assert 1.1 < t_x < 1.6 and PHI_SPECIATION == pytest.approx(0.7752, abs=1e-4)
    assert 0.0 < t_err < 0.1
    assert t_x == crossing_time(res.physical_time, res.phi)


def test_cloning_seed_order_and_validation():
    sched = make_schedule("linear", 60)
    eps = _two_cluster_eps(sched)
    phi = cloning(eps, sched, _classify, [40, 10, 25], 300, 1, seed=1).phi
    assert phi.shape == (3,) and phi.dtype == np.float64
    np.testing.assert_array_equal(phi, cloning(eps, sched, _classify, [40, 10, 25], 300, 1, seed=1).phi)
    # the order of branch_steps only permutes the output (the steps are processed in decreasing t)
    np.testing.assert_array_equal(cloning(eps, sched, _classify, [10, 25, 40], 300, 1, seed=1).phi, phi[[1, 2, 0]])
    # a given x_T and a Generator seed
    x_T = np.random.default_rng(9).standard_normal((300, 1))
    a = cloning(eps, sched, _classify, [30], 300, 1, seed=np.random.default_rng(3), x_T=x_T)
    b = cloning(eps, sched, _classify, [30], 300, 1, seed=np.random.default_rng(3), x_T=x_T)
    np.testing.assert_array_equal(a.phi, b.phi)
    for args, match in [(([0], 10, 1), r"outside \[1, T"), (([61], 10, 1), "outside"), (([], 10, 1), "non-empty"),
                        (([2.5], 10, 1), "integers"), (([5], 0, 1), "n_pairs"), (([5], 10, 0), "d")]:
        with pytest.raises(ValueError, match=match):
            cloning(eps, sched, _classify, *args)
    with pytest.raises(ValueError, match="x_T"):
        cloning(eps, sched, _classify, [5], 10, 1, x_T=np.zeros((10, 2)))
    with pytest.raises(ValueError, match="classify"):
        cloning(eps, sched, lambda x: np.zeros(3, int), [5], 10, 1)
    with pytest.raises(ValueError, match="sigma"):
        cloning(eps, sched, _classify, [5], 10, 1, sigma="bad")


def test_cloning_torch():
    torch = pytest.importorskip("torch")
    sched = make_schedule("linear", 60)

    def eps(x, t):  # exact eps of the two clusters, in torch
        ab = float(sched.alpha_bar[t])
        s, v = ab**0.5, ab * SIGMA**2 + 1 - ab
        return (1 - ab) ** 0.5 * (x - s * M_NORM * torch.tanh(s * M_NORM * x / v)) / v

    seen = []

    def classify(x0):
        seen.append(type(x0))
        return (x0[:, 0] > 0).long()

    x_T = torch.randn(200, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    a = cloning(eps, sched, classify, [50, 1], 200, 1, seed=4, x_T=x_T)
    b = cloning(eps, sched, classify, [50, 1], 200, 1, seed=4, x_T=x_T)
    np.testing.assert_array_equal(a.phi, b.phi)
    assert a.phi[1] == 1.0 and all(tp is torch.Tensor for tp in seen)
    assert isinstance(a.labels, np.ndarray)


# ------------------------------------------------------------------------------------------------
# crossing of phi = 0.7752
# ------------------------------------------------------------------------------------------------

def test_crossing_time_interpolates_and_validates():
    m_norm = 20.0
    t = np.linspace(2.0, 4.0, 101)
    phi = phi_two_clusters(t, m_norm, 1.0)
    # the two-cluster phi crosses PHI_SPECIATION exactly at t = log(m_norm) (r = 1)
    assert crossing_time(t, phi) == pytest.approx(np.log(m_norm), abs=1e-5)
    perm = np.random.default_rng(0).permutation(t.size)
    assert crossing_time(t[perm], phi[perm]) == crossing_time(t, phi)
    assert crossing_time([0.0, 1.0], [0.9, 0.5], level=0.7) == pytest.approx(0.5)
    assert np.isnan(crossing_time(t[:50], phi[:50], missing="nan"))
    assert all(np.isnan(crossing_time(t[:50], phi[:50], stderr=np.full(50, 0.01), missing="nan")))
    for args, kw, match in [((t[:50], phi[:50]), {}, "never falls"), (([0.0, 0.0, 1.0], [0.9, 0.8, 0.5]), {}, "repeated"),
                            (([0.0, 1.0], [0.9]), {}, "same length"), (([0.0, 1.0], [0.9, 0.5]), {"level": 1.2}, "level"),
                            (([0.0, 1.0], [0.9, 0.5]), {"stderr": [0.1, -1.0]}, "stderr"),
                            (([0.0, 1.0], [0.9, 0.5]), {"missing": "zero"}, "missing")]:
        with pytest.raises(ValueError, match=match):
            crossing_time(*args, **kw)


def test_crossing_time_bootstrap_error_matches_the_delta_method():
    # phi linear in t with slope -a: the crossing moves by d phi / a, so for small errors its standard
    # error is the interpolation of the two bracketing errors divided by a (delta method)
    t = np.linspace(0.0, 1.0, 11)
    a = 0.5
    phi = 0.95 - a * t
    se = np.full(t.size, 0.004)
    t0, err = crossing_time(t, phi, stderr=se, seed=1, n_boot=4000)
    assert t0 == pytest.approx((0.95 - PHI_SPECIATION) / a, abs=1e-12)
    frac = (t0 - 0.3) / 0.1
    expected = np.hypot((1 - frac) * 0.004, frac * 0.004) / a
    # bootstrap standard deviation of 4000 replicates: relative error ~ 1 / sqrt(2 * 4000) = 1.1 %
    assert err == pytest.approx(expected, rel=5 * 0.011)
    assert crossing_time(t, phi, stderr=se, seed=1, n_boot=100) == crossing_time(t, phi, stderr=se, seed=1, n_boot=100)


def test_cloning_branch_steps():
    steps = cloning_branch_steps(SCHED, 1.5, span=(-1.0, 1.0), n_branch=5, t_classify=3)
    assert steps == sorted(steps, reverse=True) and min(steps) > 3
    np.testing.assert_allclose(SCHED.physical_time[steps], [2.5, 2.0, 1.5, 1.0, 0.5], atol=0.02)
    with pytest.raises(ValueError, match="span"):
        cloning_branch_steps(SCHED, 1.5, span=(1.0, -1.0))
    with pytest.raises(ValueError, match="no branch step"):
        cloning_branch_steps(make_schedule("linear", 3), 0.01, span=(-0.5, 0.005), n_branch=2, t_classify=3)
