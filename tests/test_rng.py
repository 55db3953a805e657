"""The numba random-number kernel physdiff._rng: xoshiro256** + SplitMix64, ziggurat normals.

Exactness checks compare with the published reference vectors of SplitMix64 and xoshiro256**
and with a pure-Python transcription of both. Statistical checks use fixed seeds and tolerances of
5 standard errors of the estimator, so a correct generator fails with probability < 1e-6 per check.
"""

import functools
import math

import numpy as np
import pytest
from scipy import special, stats

from physdiff import _rng
from physdiff._rng import (STATE_SIZE, fill_normal, fill_uniform, integers, next_u64, normal,
                           reseed, seed_state, uniform)

Z = 5.0  # standard errors allowed
MASK64 = (1 << 64) - 1


# ------------------------------------------------------------------ pure-Python references


def ref_splitmix64(x):
    """SplitMix64 [Steele, Lea, Flood 2014]: returns (new counter, output)."""
    x = (x + 0x9E3779B97F4A7C15) & MASK64
    z = x
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return x, z ^ (z >> 31)


def ref_xoshiro(s):
    """xoshiro256** [Blackman, Vigna 2021]: advances the list ``s`` in place, returns the output."""
    rotl = lambda x, k: ((x << k) | (x >> (64 - k))) & MASK64  # noqa: E731
    result = (rotl((s[1] * 5) & MASK64, 7) * 9) & MASK64
    t = (s[1] << 17) & MASK64
    s[2] ^= s[0]
    s[3] ^= s[1]
    s[1] ^= s[2]
    s[0] ^= s[3]
    s[2] ^= t
    s[3] = rotl(s[3], 45)
    return result


def normals(seed, n):
    out = np.empty(n)
    fill_normal(seed_state(seed), out)
    return out


@functools.lru_cache(maxsize=1)
def big_sample():
    """4e6 normals shared by the distribution tests (read-only)."""
    x = normals(2024, 4_000_000)
    x.flags.writeable = False
    return x


# ------------------------------------------------------------------ exactness


def test_splitmix64_seeding_matches_reference_vector():
    # published first outputs of SplitMix64 started at 0
    assert [int(v) for v in seed_state(0)] == [0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4,
                                               0x06C45D188009454F, 0xF88BB8A8724C81EC]
    for seed in [1, 42, 2**32 + 7, 2**63 - 1]:
        x, want = seed, []
        for _ in range(STATE_SIZE):
            x, z = ref_splitmix64(x)
            want.append(z)
        assert [int(v) for v in seed_state(seed)] == want


def test_xoshiro256starstar_matches_reference_vector():
    # reference outputs for the state {1, 2, 3, 4} (xoshiro256starstar.c; rand_xoshiro's test)
    expected = [11520, 0, 1509978240, 1215971899390074240, 1216172134540287360,
                607988272756665600, 16172922978634559625, 8476171486693032832,
                10595114339597558777, 2904607092377533576]
    state = np.array([1, 2, 3, 4], dtype=np.uint64)
    assert [int(next_u64(state)) for _ in expected] == expected
    # a seeded stream against the pure-Python transcription, 1000 outputs
    state, ref = seed_state(42), [int(v) for v in seed_state(42)]
    assert int(next_u64(state)) == 1546998764402558742  # SplitMix64(42) -> xoshiro256**, first output
    ref_xoshiro(ref)
    for _ in range(1000):
        assert int(next_u64(state)) == ref_xoshiro(ref)
    assert [int(v) for v in state] == ref


def test_uniform_is_top_53_bits():
    a, b = seed_state(9), seed_state(9)
    for _ in range(100):
        assert uniform(a) == (int(next_u64(b)) >> 11) * 2.0**-53


def test_fill_functions_equal_repeated_calls():
    # fill_normal keeps the state in registers but must give exactly the numbers of normal(),
    # including the rare wedge/tail draws (2e5 draws: ~3000 of them), and leave the same state.
    n = 200_000
    a, b = seed_state(3), seed_state(3)
    block = np.empty(n)
    fill_normal(a, block)
    one_by_one = np.array([normal(b) for _ in range(2000)])
    np.testing.assert_array_equal(block[:2000], one_by_one)
    c = seed_state(3)
    fill_normal(c, block[:1234].copy())
    fill_normal(c, block[:10].copy())  # continue the stream in two more pieces
    rest = np.empty(n - 1244)
    fill_normal(c, rest)
    np.testing.assert_array_equal(rest, block[1244:])
    np.testing.assert_array_equal(c, a)
    # float32 output receives the rounded float64 draws
    out32 = np.empty(1000, dtype=np.float32)
    fill_normal(seed_state(3), out32)
    np.testing.assert_array_equal(out32, block[:1000].astype(np.float32))
    u = np.empty(1000)
    fill_uniform(seed_state(4), u)
    s = seed_state(4)
    np.testing.assert_array_equal(u, [uniform(s) for _ in range(1000)])


def test_ziggurat_tables_have_equal_areas():
    # Marsaglia & Tsang's 256-layer construction: every layer has area V, base includes the tail
    k, w, f, r = _rng._ZIG_K, _rng._ZIG_W, _rng._ZIG_F, _rng._ZIG_R
    assert r == pytest.approx(3.6541528853610088, rel=1e-14)  # [MT00]'s r for 256 layers
    x = w * 2.0**52  # layer widths x_i (x[0] is the base strip's V / f(r))
    v = r * math.exp(-r * r / 2) + math.sqrt(math.pi / 2) * special.erfc(r / math.sqrt(2))
    assert x[255] == pytest.approx(r, rel=1e-15)
    np.testing.assert_allclose(x[0] * f[255], v, rtol=1e-13)  # base: rectangle + tail
    np.testing.assert_allclose(x[1:] * (f[:-1] - f[1:]), v, rtol=1e-9)  # layers 1..255
    np.testing.assert_allclose(f[1:], np.exp(-x[1:] ** 2 / 2), rtol=1e-15)
    assert np.all(np.diff(x[1:]) > 0)
    # k[i] / 2^52 = x_{i-1} / x_i: the part of layer i surely under the curve
    np.testing.assert_allclose(k[2:].astype(float) / 2.0**52, x[1:-1] / x[2:], rtol=1e-15)
    assert k[1] == 0 and k[0].astype(float) / 2.0**52 == pytest.approx(r / x[0], rel=1e-15)


# ------------------------------------------------------------------ the normal law


def test_normal_moments():
    x = big_sample()
    n = x.size
    mean, var = x.mean(), x.var()
    assert abs(mean) < Z * math.sqrt(1.0 / n)
    assert abs(var - 1.0) < Z * math.sqrt(2.0 / n)
    assert abs(stats.skew(x)) < Z * math.sqrt(6.0 / n)
    assert abs(stats.kurtosis(x, fisher=False) - 3.0) < Z * math.sqrt(24.0 / n)
    # 6th moment E x^6 = 15, Var x^6 = E x^12 - 225 = 10395 - 225
    assert abs(np.mean(x**6) - 15.0) < Z * math.sqrt((10395.0 - 225.0) / n)


def test_normal_ks_and_binned_chi_square():
    x = big_sample()
    assert stats.kstest(x, "norm").pvalue > 1e-4
    # chi-square on 200 equiprobable bins
    edges = stats.norm.ppf(np.linspace(0, 1, 201)[1:-1])
    counts = np.bincount(np.searchsorted(edges, x), minlength=200)
    assert stats.chisquare(counts).pvalue > 1e-4


def test_normal_chi_square_on_ziggurat_layers():
    # |x| binned on the layer edges x_1 < ... < x_255 = r, each layer cut in 4, plus the tail.
    # A wrong wedge test (e.g. accepting every wedge point) moves mass inside each layer; the
    # equiprobable bins above miss it at this sample size, these bins see it (p ~ 1e-144).
    x = np.abs(big_sample())
    xs = _rng._ZIG_W[1:] * 2.0**52
    lo = np.concatenate([[0.0], xs[:-1]])
    edges = np.append((lo[:, None] + (xs - lo)[:, None] * np.arange(4) / 4).ravel(), xs[-1])
    counts = np.bincount(np.searchsorted(edges, x, side="right") - 1, minlength=edges.size)
    p = np.diff(2.0 * stats.norm.cdf(np.append(edges, np.inf)))  # P(|x| in bin)
    assert stats.chisquare(counts, p * x.size).pvalue > 1e-4


def test_normal_tails():
    # the base-layer tail beyond r and the far tail: binomial counts within 5 sigma
    x = np.abs(big_sample())
    n = x.size
    for c in [1.0, 2.0, _rng._ZIG_R, 4.0, 4.5]:
        p = special.erfc(c / math.sqrt(2))  # P(|x| > c)
        k = np.count_nonzero(x > c)
        assert abs(k - n * p) < Z * math.sqrt(n * p * (1 - p)) + 1, c
    tail = x[x > _rng._ZIG_R]  # conditional law beyond r: KS against the truncated normal
    p_r = special.erfc(_rng._ZIG_R / math.sqrt(2))
    assert stats.kstest(tail, lambda t: 1.0 - special.erfc(np.asarray(t) / math.sqrt(2)) / p_r).pvalue > 1e-4
    # the sign is a fair coin, independently of the layer: positive fraction in the tail and overall
    for part in (big_sample(), big_sample()[np.abs(big_sample()) > _rng._ZIG_R]):
        m = part.size
        assert abs(np.count_nonzero(part > 0) - m / 2) < Z * math.sqrt(m / 4)


def test_single_normal_draws_follow_the_law():
    # normal() (the scalar entry point) on its own, not only through fill_normal
    s = seed_state(5)
    x = np.array([normal(s) for _ in range(20_000)])
    assert stats.kstest(x, "norm").pvalue > 1e-4


# ------------------------------------------------------------------ streams and seeds


def test_determinism_and_full_64_bit_seeds():
    np.testing.assert_array_equal(normals(123, 1000), normals(123, 1000))
    # int64 and uint64 spellings of a seed are the same stream; all 64 bits matter
    np.testing.assert_array_equal(seed_state(np.int64(-1)), seed_state(np.uint64(2**64 - 1)))
    base = 2**40 + 12345
    streams = [normals(s, 100) for s in (base, base + 2**32, base + 2**48, base + 2**62)]
    for i in range(len(streams)):
        for j in range(i):
            assert not np.any(streams[i] == streams[j])
    # reseed overwrites a used state exactly like a fresh one
    s = seed_state(1)
    fill_normal(s, np.empty(17))
    reseed(s, 123)
    np.testing.assert_array_equal(s, seed_state(123))


def test_adjacent_seeds_give_independent_streams():
    # 64 streams with seeds s, s+1, ..., s+63: all pairwise correlations ~ N(0, 1/n)
    k, n = 64, 20_000
    x = np.stack([normals(1000 + i, n) for i in range(k)])
    r = np.corrcoef(x)[np.triu_indices(k, 1)]  # 2016 pairs
    zs = r * math.sqrt(n)
    assert np.max(np.abs(zs)) < 5.5  # max of 2016 |N(0,1)|: exceeded with probability ~ 1e-4
    # mean of z^2 is 1 with SE sqrt(2 / pairs)
    assert abs(np.mean(zs**2) - 1.0) < Z * math.sqrt(2.0 / zs.size)
    # lagged cross-correlation between neighbouring streams (lag 1) and within a stream
    lag = np.array([np.corrcoef(x[i, 1:], x[i + 1, :-1])[0, 1] for i in range(k - 1)])
    assert np.max(np.abs(lag)) * math.sqrt(n) < 5.5
    auto = np.array([np.corrcoef(x[i, 1:], x[i, :-1])[0, 1] for i in range(k)])
    assert np.max(np.abs(auto)) * math.sqrt(n) < 5.5
    # raw bits: outputs of neighbouring streams differ in 32 of 64 bits on average (SD 4)
    a, b = seed_state(77), seed_state(78)
    diff = [bin(int(next_u64(a)) ^ int(next_u64(b))).count("1") for _ in range(20_000)]
    assert abs(np.mean(diff) - 32.0) < Z * 4.0 / math.sqrt(len(diff))


def test_stream_seeds_from_util_seed_distinct_streams():
    # the kernels' path: 63-bit seeds from _util.stream_seeds, one state each
    from physdiff._util import stream_seeds
    seeds = stream_seeds(0, 1000)
    firsts = np.array([int(next_u64(seed_state(s))) for s in seeds], dtype=np.uint64)
    assert np.unique(firsts).size == seeds.size


# ------------------------------------------------------------------ uniforms and integers


def test_uniform_law():
    n = 1_000_000
    u = np.empty(n)
    fill_uniform(seed_state(8), u)
    assert u.min() >= 0.0 and u.max() < 1.0
    assert abs(u.mean() - 0.5) < Z * math.sqrt(1 / 12 / n)
    assert abs(u.var() - 1 / 12) < Z * math.sqrt(1 / 180 / n)  # Var of (U - 1/2)^2 is 1/180
    assert stats.kstest(u, "uniform").pvalue > 1e-4


@pytest.mark.parametrize("n", [1, 2, 7, 1000, 2**32, 2**32 + 1, 3 * 2**40 + 5])
def test_integers_range_and_uniformity(n):
    s = seed_state(n)
    draws = np.array([integers(s, n) for _ in range(30_000)], dtype=np.int64)
    assert draws.min() >= 0 and draws.max() < n
    if n == 1:
        assert np.all(draws == 0)
        return
    if n <= 1000:
        counts = np.bincount(draws, minlength=n)
        assert stats.chisquare(counts).pvalue > 1e-4
    else:  # large n: draws / n is uniform on [0, 1) to within 1/n
        assert stats.kstest(draws / n, "uniform").pvalue > 1e-4
    assert abs(draws.mean() - (n - 1) / 2) < Z * n / math.sqrt(12 * draws.size)
