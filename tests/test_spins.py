"""Tests of physdiff.spins: exact Curie-Weiss sampling and single-spin-flip MCMC.

Distribution tests are chi-square goodness-of-fit tests against exact laws (bins with an expected
count below 5 merged), accepted at p > 1e-4; moment tests use 5-sigma tolerances. Seeds are
fixed, so the tests are deterministic.
"""

from __future__ import annotations

import itertools

import numba
import numpy as np
import pytest
from scipy import stats
from scipy.special import expit, logsumexp

from physdiff.spins import _kernel_seeds, heat_bath_chain, magnetization, sample_curie_weiss
from physdiff.theory.curie_weiss import magnetization_distribution

P_MIN = 1e-4


def chisquare_p(observed: np.ndarray, expected_prob: np.ndarray) -> float:
    """p-value of a chi-square test of counts against probabilities, merging bins with n*p < 5."""
    observed = np.asarray(observed, dtype=np.float64)
    expected = np.asarray(expected_prob, dtype=np.float64) * observed.sum()
    obs_m, exp_m = [], []
    o_acc = e_acc = 0.0
    for o, e in zip(observed, expected):
        o_acc += o
        e_acc += e
        if e_acc >= 5.0:
            obs_m.append(o_acc)
            exp_m.append(e_acc)
            o_acc = e_acc = 0.0
    if e_acc > 0 or o_acc > 0:               # leftover tail joins the last bin
        obs_m[-1] += o_acc
        exp_m[-1] += e_acc
    obs_m, exp_m = np.array(obs_m), np.array(exp_m)
    assert obs_m.size >= 2, "too few bins for a chi-square test"
    exp_m *= obs_m.sum() / exp_m.sum()       # exact sum match for scipy
    return stats.chisquare(obs_m, exp_m).pvalue


def m_counts(spins: np.ndarray) -> np.ndarray:
    """Counts of k = (N + M)/2 = number of up spins, k = 0..N (the index of magnetization_distribution)."""
    N = spins.shape[1]
    k = (spins == 1).sum(axis=1)
    return np.bincount(k, minlength=N + 1)


# --------------------------------------------------------------------------------------------
# exact sampler
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("N, beta, h", [
    (1, 0.7, 0.3),
    (7, 0.5, 0.0),
    (30, 1.0, 0.0),
    (50, 1.5, 0.0),
    (50, 1.5, 0.05),
    (100, 0.3, 0.2),
    (200, 2.0, -0.01),
])
def test_exact_magnetization_law(N, beta, h):
    spins = sample_curie_weiss(N, beta, h, n_samples=40_000, seed=11)
    _, P = magnetization_distribution(N, beta, h)
    assert chisquare_p(m_counts(spins), P) > P_MIN


def test_exact_chisquare_has_power():
    # the same test rejects a slightly wrong temperature or field: the test above is not vacuous
    spins = sample_curie_weiss(50, 1.2, 0.0, n_samples=40_000, seed=3)
    assert chisquare_p(m_counts(spins), magnetization_distribution(50, 1.3, 0.0)[1]) < 1e-10
    assert chisquare_p(m_counts(spins), magnetization_distribution(50, 1.2, 0.02)[1]) < 1e-10


def test_exact_brute_force_configurations_N4():
    # frequencies of all 16 configurations vs q(a) ∝ exp(beta M^2/(2N) + h M) by enumeration
    N, beta, h = 4, 1.3, 0.2
    configs = np.array(list(itertools.product([-1, 1], repeat=N)), dtype=np.int8)
    M = configs.sum(axis=1).astype(np.float64)
    logq = beta * M**2 / (2 * N) + h * M
    q = np.exp(logq - logsumexp(logq))
    spins = sample_curie_weiss(N, beta, h, n_samples=160_000, seed=5)
    code = ((spins == 1) * (1 << np.arange(N - 1, -1, -1))).sum(axis=1)  # same order as product
    counts = np.bincount(code, minlength=2**N)
    assert chisquare_p(counts, q) > P_MIN


def test_exact_reference_law_N4():
    # docs/theory.md, "The Curie-Weiss model": P(M), N=4, beta=1, h=0
    ref = np.array([0.2175307, 0.1941506, 0.1766374, 0.1941506, 0.2175307])
    n = 200_000
    spins = sample_curie_weiss(4, 1.0, n_samples=n, seed=9)
    freq = m_counts(spins) / n
    assert np.all(np.abs(freq - ref) < 5 * np.sqrt(ref * (1 - ref) / n))


def test_exact_exchangeable_marginals_and_pairs():
    # every spin has mean E[M]/N; every pair has <a_i a_j> = (E[M^2] - N) / (N (N - 1))
    N, beta, h, n = 12, 0.8, 0.1, 100_000
    Ms, P = magnetization_distribution(N, beta, h)
    m = (P * Ms).sum() / N
    c = ((P * Ms.astype(float) ** 2).sum() - N) / (N * (N - 1))
    a = sample_curie_weiss(N, beta, h, n_samples=n, seed=21).astype(np.float64)
    means = a.mean(axis=0)
    assert np.all(np.abs(means - m) < 5 * np.sqrt((1 - m**2) / n))
    pairs = (a.T @ a / n)[np.triu_indices(N, k=1)]
    assert np.all(np.abs(pairs - c) < 5 * np.sqrt((1 - c**2) / n))


def test_exact_single_spin_and_limits():
    # N = 1: P(a = +1) = expit(2h) (the beta M^2/(2N) term is constant)
    n = 50_000
    p = expit(2 * 0.4)
    up = (sample_curie_weiss(1, 3.0, 0.4, n_samples=n, seed=2) == 1).mean()
    assert abs(up - p) < 5 * np.sqrt(p * (1 - p) / n)
    # beta = 0: independent spins with mean tanh(h)
    a = sample_curie_weiss(64, 0.0, -0.3, n_samples=5_000, seed=4)
    assert abs(a.mean() - np.tanh(-0.3)) < 5 * np.sqrt((1 - np.tanh(0.3) ** 2) / a.size)
    # very low temperature: no overflow, fully ordered, both signs at h = 0
    m = magnetization(sample_curie_weiss(1000, 50.0, n_samples=400, seed=6))
    assert np.all(np.abs(m) == 1.0)
    assert 0.3 < (m > 0).mean() < 0.7


# --------------------------------------------------------------------------------------------
# MCMC cross-checks
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["heat-bath", "metropolis"])
@pytest.mark.parametrize("h", [0.0, 0.1])
def test_mcmc_matches_exact_law_high_temperature(method, h):
    # beta = 0.5: tau ~ 1/(1 - beta) = 2 sweeps, so 60 sweeps from a random start equilibrate
    N, beta = 40, 0.5
    spins = sample_curie_weiss(N, beta, h, n_samples=4_000, seed=31, method=method, n_sweeps=60)
    _, P = magnetization_distribution(N, beta, h)
    assert chisquare_p(m_counts(spins), P) > P_MIN


@pytest.mark.parametrize("method", ["heat-bath", "metropolis"])
def test_mcmc_low_temperature_samples_one_state(method):
    # beta = 1.5, N = 200: started "up" the chains equilibrate INSIDE the + state: their M follows
    # the exact law conditioned on M > 0. The barrier log P(M*)/P(0) is 23.7 at N = 200 (at N = 100
    # it is only 12.2, and about one of 2000 chains of 60 sweeps does cross it)
    N, beta = 200, 1.5
    spins = sample_curie_weiss(N, beta, n_samples=2_000, seed=41, method=method,
                               n_sweeps=60, init="up")
    counts = m_counts(spins)
    Ms, P = magnetization_distribution(N, beta)
    assert counts[Ms <= 0].sum() == 0
    P_plus = np.where(Ms > 0, P, 0.0)
    assert chisquare_p(counts[Ms > 0], P_plus[Ms > 0] / P_plus.sum()) > P_MIN


def test_heat_bath_does_not_tunnel():
    # beta = 1.5, N = 200: the sign of M never flips over 2000 sweeps (up) or ever (down) ...
    N, beta = 200, 1.5
    for i in range(4):
        M_up = heat_bath_chain(N, beta, n_sweeps=2_000, seed=100 + i, init="up")
        assert M_up.min() > 0
        M_down = heat_bath_chain(N, beta, n_sweeps=2_000, seed=200 + i, init="down")
        assert M_down.max() < 0
    # ... while the exact law is symmetric: the exact sampler gives both signs half the time
    n = 4_000
    up_frac = (magnetization(sample_curie_weiss(N, beta, n_samples=n, seed=7)) > 0).mean()
    assert abs(up_frac - 0.5) < 5 * 0.5 / np.sqrt(n)
    # the chain's time average is the conditional mean E[M | M > 0] (5 sigma, 2 tau_int margin)
    Ms, P = magnetization_distribution(N, beta)
    P_plus = np.where(Ms > 0, P, 0.0) / P[Ms > 0].sum()
    mean_plus = (P_plus * Ms).sum()
    sd_plus = np.sqrt((P_plus * (Ms - mean_plus) ** 2).sum())
    series = heat_bath_chain(N, beta, n_sweeps=4_000, seed=8, init="up")[100:]
    tau_bound = 10.0                       # generous bound on tau_int of M inside a state
    assert abs(series.mean() - mean_plus) < 5 * sd_plus * np.sqrt(2 * tau_bound / series.size)


def test_heat_bath_chain_series():
    N = 51
    M = heat_bath_chain(N, 0.9, 0.05, n_sweeps=300, seed=1, init="down")
    assert M.shape == (301,) and M.dtype == np.int64
    assert M[0] == -N
    assert np.all(np.abs(M) <= N) and np.all((M + N) % 2 == 0)
    assert np.array_equal(M, heat_bath_chain(N, 0.9, 0.05, n_sweeps=300, seed=1, init="down"))
    assert heat_bath_chain(N, 0.9, n_sweeps=0, seed=1, init="up").tolist() == [N]


# --------------------------------------------------------------------------------------------
# dtype, values, seeds
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["exact", "heat-bath", "metropolis"])
def test_dtype_values_and_reproducibility(method):
    kw = {} if method == "exact" else {"n_sweeps": 5}
    a = sample_curie_weiss(33, 1.2, 0.1, n_samples=50, seed=123, method=method, **kw)
    assert a.dtype == np.int8 and a.shape == (50, 33)
    assert set(np.unique(a).tolist()) <= {-1, 1}
    b = sample_curie_weiss(33, 1.2, 0.1, n_samples=50, seed=123, method=method, **kw)
    c = sample_curie_weiss(33, 1.2, 0.1, n_samples=50, seed=124, method=method, **kw)
    d = sample_curie_weiss(33, 1.2, 0.1, n_samples=50, seed=np.random.default_rng(123),
                           method=method, **kw)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert np.array_equal(a, d)         # an int seed and default_rng(seed) draw the same streams
    assert len({row.tobytes() for row in a}) > 40     # samples differ from each other


@pytest.mark.parametrize("method", ["exact", "heat-bath", "metropolis"])
def test_independent_of_thread_count(method):
    kw = {} if method == "exact" else {"n_sweeps": 20}
    old = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = sample_curie_weiss(64, 1.1, n_samples=257, seed=77, method=method, **kw)
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        two = sample_curie_weiss(64, 1.1, n_samples=257, seed=77, method=method, **kw)
    finally:
        numba.set_num_threads(old)
    assert np.array_equal(one, two)


def test_kernel_seeds_distinct():
    # numba seeds with 32 bits: 200 000 truncated stream seeds collide (~4.7 expected pairs);
    # the repaired seeds are distinct and deterministic
    s = _kernel_seeds(0, 200_000)
    assert s.dtype == np.uint32 and np.unique(s).size == s.size
    assert np.array_equal(s, _kernel_seeds(0, 200_000))


# --------------------------------------------------------------------------------------------
# magnetization, validation
# --------------------------------------------------------------------------------------------

def test_magnetization():
    a = np.array([[1, 1, -1, 1], [-1, -1, -1, -1]], dtype=np.int8)
    m = magnetization(a)
    assert m.dtype == np.float64 and np.allclose(m, [0.5, -1.0])
    assert np.allclose(magnetization(np.array([1, -1, 1], dtype=np.int8)), [1 / 3])
    with pytest.raises(ValueError):
        magnetization(np.array([[0.5, np.nan]]))
    with pytest.raises(ValueError):
        magnetization(np.zeros((2, 2, 2)))


@pytest.mark.parametrize("kwargs", [
    dict(N=0, beta=1.0),
    dict(N=2.5, beta=1.0),
    dict(N=10, beta=-0.1),
    dict(N=10, beta=float("nan")),
    dict(N=10, beta=1.0, h=float("nan")),
    dict(N=10, beta=1.0, h=float("inf")),
    dict(N=10, beta=1.0, n_samples=0),
    dict(N=10, beta=1.0, method="gibbs"),
    dict(N=10, beta=1.0, method="heat-bath", n_sweeps=-1),
    dict(N=10, beta=1.0, method="metropolis", init="sideways"),
    dict(N=10, beta=1.0, method="exact", n_sweeps=10),
    dict(N=10, beta=1.0, method="exact", init="up"),
])
def test_validation(kwargs):
    with pytest.raises(ValueError):
        sample_curie_weiss(**kwargs)


def test_chain_validation():
    with pytest.raises(ValueError):
        heat_bath_chain(0, 1.0)
    with pytest.raises(ValueError):
        heat_bath_chain(10, float("nan"))
    with pytest.raises(ValueError):
        heat_bath_chain(10, 1.0, n_sweeps=-5)
    with pytest.raises(ValueError):
        heat_bath_chain(10, 1.0, init="left")
