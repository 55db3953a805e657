"""Tests of physdiff.metrics against brute force, closed forms and symmetries."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.stats
from scipy.optimize import linprog
from scipy.special import ndtr

import physdiff.metrics as metrics
from physdiff.datasets import curie_weiss, swiss_roll
from physdiff.metrics import (curie_weiss_quality, energy_distance, mnist_quality, nearest_neighbours,
                              sliced_wasserstein, swiss_roll_quality, train_mnist_classifier)

MNIST_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"  # ../shared beside the repo
needs_mnist = pytest.mark.skipif(not (MNIST_DIR / "t10k-images-idx3-ubyte.gz").is_file(),
                                 reason=f"the real MNIST test set is not at {MNIST_DIR}")


def test_no_torch_import():
    code = "import sys, physdiff.metrics; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(metrics.__file__).parent.parent)


# ------------------------------------------------------------------------------------ sliced W2


def _w2_squared_bruteforce(a, b):
    """1-D W2^2 between empirical laws of sizes n, m: repeat to a common size, match sorted."""
    L = math.lcm(len(a), len(b))
    return np.mean((np.repeat(np.sort(a), L // len(a)) - np.repeat(np.sort(b), L // len(b))) ** 2)


def _w2_squared_lp(a, b):
    """1-D W2^2 as a transport linear program (an independent oracle for tiny sizes)."""
    n, m = len(a), len(b)
    cost = (a[:, None] - b[None, :]) ** 2
    A = np.vstack([np.kron(np.eye(n), np.ones(m)), np.kron(np.ones(n), np.eye(m))])
    rhs = np.concatenate([np.full(n, 1 / n), np.full(m, 1 / m)])
    return linprog(cost.ravel(), A_eq=A, b_eq=rhs, bounds=(0, None), method="highs").fun


@pytest.mark.parametrize("n, m", [(5, 5), (4, 6), (7, 3), (13, 8)])
def test_sliced_w2_is_exact_w2_in_one_dimension(n, m):
    rng = np.random.default_rng(n * 100 + m)
    a, b = rng.standard_normal(n), 2 * rng.standard_normal(m) + 0.5
    sw = sliced_wasserstein(a[:, None], b[:, None], n_projections=3, seed=0)
    assert sw**2 == pytest.approx(_w2_squared_bruteforce(a, b), rel=1e-12)
    assert sw**2 == pytest.approx(_w2_squared_lp(a, b), rel=1e-7, abs=1e-10)


def test_sliced_w2_zero_symmetric_seeded():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((300, 3)), rng.standard_normal((200, 3)) + 0.3
    assert sliced_wasserstein(x, x, seed=1) == 0.0
    assert sliced_wasserstein(x, x[::-1], seed=1) == pytest.approx(0.0, abs=1e-12)  # a set, not a list
    assert sliced_wasserstein(x, y, seed=1) == pytest.approx(sliced_wasserstein(y, x, seed=1), rel=1e-12)
    assert sliced_wasserstein(x, y, seed=2) == sliced_wasserstein(x, y, seed=2)
    # directions are chunked internally: the result does not depend on the chunk size
    old = metrics._CHUNK_ELEMENTS
    try:
        metrics._CHUNK_ELEMENTS = 1000
        chunked = sliced_wasserstein(x, y, seed=2)
    finally:
        metrics._CHUNK_ELEMENTS = old
    assert chunked == pytest.approx(sliced_wasserstein(x, y, seed=2), rel=1e-12)


def test_sliced_w2_shift_projection_factor():
    # y = x + delta e1: each projection is the same cloud shifted by delta cos(phi), so
    # W2^2(phi) = delta^2 cos^2(phi) exactly and SW2^2 = delta^2 <cos^2>, E = delta^2 / d (= 1/2 in 2-D).
    # Over P random directions in 2-D, Var(cos^2) = 3/8 - 1/4 = 1/8.
    rng = np.random.default_rng(3)
    x = rng.standard_normal((500, 2))
    delta, P = 2.0, 4000
    sw = sliced_wasserstein(x, x + [delta, 0.0], n_projections=P, seed=4)
    assert abs(sw**2 - delta**2 / 2) < 5 * delta**2 * math.sqrt(1 / 8 / P)
    # the same directions: SW2 is exactly linear in the shift, hence grows with it
    sws = [sliced_wasserstein(x, x + [s, 0.0], n_projections=64, seed=5) for s in (0.5, 1.0, 2.0, 4.0)]
    np.testing.assert_allclose(np.array(sws) / sws[0], [1, 2, 4, 8], rtol=1e-9)
    # in 3-D, E[cos^2] = 1/3: P = 4000 directions, Var(cos^2) = 1/5 - 1/9 = 4/45
    x3 = rng.standard_normal((300, 3))
    sw3 = sliced_wasserstein(x3, x3 + [0.0, 0.0, delta], n_projections=P, seed=6)
    assert abs(sw3**2 - delta**2 / 3) < 5 * delta**2 * math.sqrt(4 / 45 / P)


def test_sliced_w2_two_gaussians_closed_form():
    # independent samples of N(0, 1) and N(mu, s^2): W2^2 = mu^2 + (1 - s)^2. Tolerance: 5 standard
    # errors over K replicates, plus 10/n for the O(log n / n) upward bias of the empirical W2^2.
    mu, s, n, K = 1.0, 2.0, 2000, 10
    rng = np.random.default_rng(7)
    vals = [sliced_wasserstein(rng.standard_normal((n, 1)), mu + s * rng.standard_normal((n, 1))) ** 2
            for _ in range(K)]
    exact = mu**2 + (1 - s) ** 2
    assert abs(np.mean(vals) - exact) < 5 * np.std(vals, ddof=1) / math.sqrt(K) + 10 / n


def test_sliced_w2_validation():
    x = np.zeros((5, 2))
    with pytest.raises(ValueError):
        sliced_wasserstein(x, np.zeros((5, 3)))
    with pytest.raises(ValueError):
        sliced_wasserstein(x, np.full((5, 2), np.nan))
    with pytest.raises(ValueError):
        sliced_wasserstein(x, x, n_projections=0)
    with pytest.raises(ValueError):
        sliced_wasserstein(np.zeros((0, 2)), x)


# ------------------------------------------------------------------------------------ energy


def test_energy_distance_matches_scipy_in_1d():
    rng = np.random.default_rng(8)
    a, b = rng.standard_normal(40), rng.standard_normal(25) * 1.5 + 0.2
    assert energy_distance(a[:, None], b[:, None]) == pytest.approx(scipy.stats.energy_distance(a, b),
                                                                    rel=1e-10)


def test_energy_distance_zero_symmetric_monotone():
    rng = np.random.default_rng(9)
    x, y = rng.standard_normal((200, 4)), rng.standard_normal((150, 4))
    assert energy_distance(x, x) == pytest.approx(0.0, abs=1e-6)
    assert energy_distance(x, y) == pytest.approx(energy_distance(y, x), rel=1e-12)
    e = [energy_distance(x, y + [s, 0, 0, 0]) for s in (0.0, 0.5, 1.0, 2.0)]
    assert np.all(np.diff(e) > 0)
    old = metrics._CHUNK_ELEMENTS
    try:
        metrics._CHUNK_ELEMENTS = 500
        assert energy_distance(x, y) == pytest.approx(e[0], rel=1e-12)
    finally:
        metrics._CHUNK_ELEMENTS = old


def test_energy_distance_two_gaussians_closed_form():
    # N(0,1) vs N(delta,1): D^2 = 2 E|Z| - 2 E|X-X'|, Z ~ N(delta, 2), E|X-X'| = 2/sqrt(pi),
    # E|Z| = sqrt(2) sqrt(2/pi) exp(-delta^2/4) + delta (1 - 2 Phi(-delta/sqrt 2)). The V-statistic
    # (pairs i = j included) has expectation D^2 + (2/sqrt(pi)) (1/n + 1/m), exactly.
    delta, n, K = 1.0, 400, 12
    e_z = (math.sqrt(2) * math.sqrt(2 / math.pi) * math.exp(-delta**2 / 4)
           + delta * (1 - 2 * ndtr(-delta / math.sqrt(2))))
    expected = 2 * e_z - 4 / math.sqrt(math.pi) + 2 / math.sqrt(math.pi) * (2 / n)
    rng = np.random.default_rng(10)
    vals = [energy_distance(rng.standard_normal((n, 1)), delta + rng.standard_normal((n, 1))) ** 2
            for _ in range(K)]
    assert abs(np.mean(vals) - expected) < 5 * np.std(vals, ddof=1) / math.sqrt(K)


# ------------------------------------------------------------------------------------ Swiss roll


def test_swiss_roll_quality_baseline_ratio_is_one():
    # samples and the second reference are exchangeable draws, so log(ratio) is symmetric about 0:
    # its mean over K replicates is 0 within 5 standard errors.
    K, n = 12, 300
    logs = {"sliced_wasserstein_ratio": [], "energy_distance_ratio": []}
    for k in range(K):
        q = swiss_roll_quality(swiss_roll(n, 2.0, seed=1000 + k), turns=2.0, seed=k)
        for key in logs:
            logs[key].append(math.log(q[key]))
    for key, v in logs.items():
        assert abs(np.mean(v)) < 5 * np.std(v, ddof=1) / math.sqrt(K), key
    assert q["n"] == n and q["sliced_wasserstein_baseline"] > 0


def test_swiss_roll_quality_detects_wrong_data():
    n = 500
    bad = swiss_roll(n, 3.0, noise=0.1, seed=1)  # a longer spiral, judged as the 2-pi one
    q = swiss_roll_quality(bad, turns=2.0, seed=2)
    assert q["sliced_wasserstein_ratio"] > 3 and q["energy_distance_ratio"] > 3
    gauss = np.random.default_rng(3).standard_normal((n, 2)) * 0.5
    assert swiss_roll_quality(gauss, turns=2.0, seed=2)["energy_distance_ratio"] > 3
    with pytest.raises(ValueError):
        swiss_roll_quality(np.zeros((10, 3)))


# ------------------------------------------------------------------------------------ MNIST


@pytest.fixture(scope="module")
def mnist():
    from physdiff.datasets import load_mnist

    x, labels = load_mnist(MNIST_DIR)
    clf = train_mnist_classifier(x, labels, seed=0)  # 8000 train / 2000 held out, 5 epochs
    return x, labels, clf


@needs_mnist
def test_classifier_accuracy_and_time(mnist):
    x, labels, clf = mnist
    assert clf.n_train == 8000 and clf.n_holdout == 2000
    assert np.array_equal(np.sort(np.concatenate([clf.train_indices, clf.holdout_indices])), np.arange(10000))
    print(f"\nMNIST classifier: held-out accuracy {clf.holdout_accuracy:.4f}, "
          f"training {clf.train_time_s:.1f} s")
    assert clf.holdout_accuracy >= 0.95
    assert clf.train_time_s < 30
    hold = clf.holdout_indices
    proba = clf.predict_proba(x[hold[:100]])
    assert proba.shape == (100, 10) and proba.dtype == np.float64
    np.testing.assert_allclose(proba.sum(1), 1.0, rtol=1e-12)
    np.testing.assert_array_equal(clf.predict(x[hold[:100]]), proba.argmax(1))
    assert clf.predict(x[0]).shape == (1,)
    with pytest.raises(ValueError):
        clf.predict(np.zeros((3, 100)))


@needs_mnist
def test_classifier_seeded_and_leaves_torch_rng(mnist):
    import torch

    x, labels, _ = mnist
    state = torch.random.get_rng_state()
    a = train_mnist_classifier(x[:600], labels[:600], seed=5, epochs=1)
    b = train_mnist_classifier(x[:600], labels[:600], seed=5, epochs=1)
    assert torch.equal(state, torch.random.get_rng_state())
    np.testing.assert_array_equal(a.predict_proba(x[600:800]), b.predict_proba(x[600:800]))
    with pytest.raises(ValueError):
        train_mnist_classifier(x[:10], labels[:9])
    with pytest.raises(ValueError):
        train_mnist_classifier(x[:10], labels[:10] + 10)
    with pytest.raises(ValueError):
        train_mnist_classifier(x[:10], labels[:10], holdout=1.0)


def test_nearest_neighbours_bruteforce():
    from scipy.spatial.distance import cdist

    rng = np.random.default_rng(11)
    a, ref = rng.standard_normal((37, 20)), rng.standard_normal((301, 20))
    expected = np.sort(cdist(a, ref), axis=1)[:, :3]
    np.testing.assert_allclose(nearest_neighbours(a, ref, k=3), expected, rtol=1e-10)
    np.testing.assert_allclose(nearest_neighbours(ref[:5], ref, k=1)[:, 0], 0.0, atol=1e-6)
    with pytest.raises(ValueError):
        nearest_neighbours(a, ref[:2], k=3)


@needs_mnist
def test_mnist_quality(mnist):
    x, labels, clf = mnist
    train_x = x[clf.train_indices]
    hold = clf.holdout_indices
    real01 = x[hold][np.isin(labels[hold], [0, 1])]
    q = mnist_quality(real01, clf, train_x, [0, 1], heldout_x=x[hold[:300]])
    assert q["share_in_digits"] >= 0.95
    assert q["class_share"].shape == (10,) and q["class_share"].sum() == pytest.approx(1.0)
    assert 0.9 < q["confidence"] <= 1.0
    assert q["copy_share"] <= 0.02  # real, unseen images are not copies
    assert q["median_d1"] > 0 and q["median_d1_heldout"] > 0
    assert q["d1"].shape == (real01.shape[0],) and np.all(q["d1"] <= q["d2"])

    rng = np.random.default_rng(12)
    noise = rng.uniform(-1, 1, size=(64, 784))
    qn = mnist_quality(noise, clf, train_x, [0, 1])
    assert qn["copy_share"] == 0.0 and math.isnan(qn["median_d1_heldout"])

    copies = train_x[:64]
    qc = mnist_quality(copies, None, train_x, [0, 1])
    assert qc["copy_share"] == 1.0 and qc["median_d1"] == pytest.approx(0.0, abs=1e-5)
    assert math.isnan(qc["share_in_digits"])
    tiny = np.clip(copies + 0.01 * rng.standard_normal(copies.shape), -1, 1)
    assert mnist_quality(tiny, None, train_x, [0, 1])["copy_share"] >= 0.98

    with pytest.raises(ValueError):
        mnist_quality(noise, clf, train_x, None)
    with pytest.raises(ValueError):
        mnist_quality(noise[:, :100], clf, train_x, [0, 1])


# ------------------------------------------------- Frechet distance, precision/recall, calibration

needs_mnist_train = pytest.mark.skipif(not (MNIST_DIR / "train-images-idx3-ubyte.gz").is_file(),
                                       reason=f"the MNIST train split is not at {MNIST_DIR}")


def test_frechet_distance_closed_form():
    # N(0, I) against N((1, 0), diag(4, 1/4)): |mu|^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)) = 1 + 6.25 - 5
    rng = np.random.default_rng(0)
    n = 100_000
    x = rng.standard_normal((n, 2))
    y = rng.standard_normal((n, 2)) * [2.0, 0.5] + [1.0, 0.0]
    # sampling error of the moments: SE ~ sqrt(2/n) per variance entry, a few 1e-3 in total
    assert metrics.frechet_distance(x, y) == pytest.approx(2.25, abs=0.05)
    assert metrics.frechet_distance(x, x) == pytest.approx(0.0, abs=1e-8)
    # singular covariances (a constant feature, as a dead ReLU unit gives) are fine
    x0 = np.c_[x[:500], np.zeros(500)]
    assert np.isfinite(metrics.frechet_distance(x0, x0[::-1] + [0.1, 0, 0]))
    with pytest.raises(ValueError):
        metrics.frechet_distance(x[:1], y)
    with pytest.raises(ValueError):
        metrics.frechet_distance(x, y[:, :1])


def test_precision_recall_bruteforce_and_limits():
    rng = np.random.default_rng(1)
    real, fake = rng.standard_normal((60, 3)), rng.standard_normal((40, 3)) + 0.7
    k = 3
    from scipy.spatial.distance import cdist

    rr = np.sort(cdist(real, real), axis=1)[:, k]
    rf = np.sort(cdist(fake, fake), axis=1)[:, k]
    prec = np.mean([(cdist(f[None], real)[0] <= rr).any() for f in fake])
    rec = np.mean([(cdist(r[None], fake)[0] <= rf).any() for r in real])
    assert metrics.precision_recall(real, fake, k) == (pytest.approx(prec), pytest.approx(rec))
    assert metrics.precision_recall(real, real, k) == (1.0, 1.0)
    far = metrics.precision_recall(real, fake + 100.0, k)
    assert far == (0.0, 0.0)
    with pytest.raises(ValueError):
        metrics.precision_recall(real, fake[:3], k=3)


@pytest.fixture(scope="session")
def quality_setup(tmp_path_factory):
    """A classifier trained once (a 12 000-image subset of the train split, 2 epochs) and the digits."""
    from physdiff.datasets import load_mnist

    cache = tmp_path_factory.mktemp("classifier-cache")
    clf = metrics.mnist_classifier(MNIST_DIR, epochs=2, n_train=12_000, cache_dir=cache)
    x_train, _ = load_mnist(MNIST_DIR, split="train", digits=[0, 1])
    x_test, _ = load_mnist(MNIST_DIR, split="test", digits=[0, 1])
    return clf, cache, x_train, x_test


@needs_mnist_train
def test_mnist_classifier_is_cached(quality_setup, monkeypatch, tmp_path):
    clf, cache, _, x_test = quality_setup
    assert not clf.from_cache and clf.n_train == 12_000
    assert clf.test_accuracy >= 0.95  # 10 000 test images, all digits (0.96 for this small run)
    files = list(cache.glob("mnist-classifier-*.safetensors"))
    assert len(files) == 1 and not list(cache.glob(".*tmp"))  # written atomically, no leftovers
    again = metrics.mnist_classifier(MNIST_DIR, epochs=2, n_train=12_000, cache_dir=cache)
    assert again.from_cache and again.test_accuracy == clf.test_accuracy
    assert again.settings == clf.settings and len(clf.settings["data_sha256"]) == 64
    np.testing.assert_allclose(again.predict_proba(x_test[:50]), clf.predict_proba(x_test[:50]), rtol=1e-6)
    assert again.features(x_test[:5]).shape == (5, metrics.FEATURE_DIM)
    assert np.all(again.features(x_test[:5]) >= 0)
    # the default folder comes from $PHYSDIFF_CACHE
    monkeypatch.setenv("PHYSDIFF_CACHE", str(tmp_path))
    assert metrics.classifier_cache_dir() == tmp_path
    with pytest.raises(ValueError, match="n_train"):
        metrics.mnist_classifier(MNIST_DIR, n_train=0, cache_dir=cache)


@needs_mnist_train
def test_mnist_classifier_corrupt_cache_is_retrained(tmp_path):
    kw = dict(epochs=1, n_train=300, cache_dir=tmp_path)
    first = metrics.mnist_classifier(MNIST_DIR, **kw)
    (path,) = tmp_path.glob("*.safetensors")
    path.write_bytes(b"not a safetensors file")
    with pytest.warns(UserWarning, match="ignoring the cached"):
        again = metrics.mnist_classifier(MNIST_DIR, **kw)
    assert not again.from_cache and again.test_accuracy == first.test_accuracy  # seeded: same net
    assert metrics.mnist_classifier(MNIST_DIR, **kw).from_cache


def _binomial_se(p, n, m=None):
    """Standard error of a share (of a difference of two shares with m), floored at 1/n."""
    v = max(p * (1 - p), 1.0 / n) * (1.0 / n + (1.0 / m if m else 0.0))
    return math.sqrt(v)


@needs_mnist_train
def test_quality_calibration_real_gaussian_blurred(quality_setup):
    """Real test digits pass; a Gaussian fit of the training digits and blurred digits fail.

    Margins come from the statistics: binomial standard errors for the shares, and for the Frechet
    ratio the spread of real-vs-real ratios over independent splits of the test digits.
    """
    from scipy.ndimage import gaussian_filter

    clf, _, x_train, x_test = quality_setup
    train_ref = x_train[::6]  # the copy check is not under test here; a subset keeps it fast
    n = 256

    def quality(x, held, seed):
        return mnist_quality(x, clf, train_ref, [0, 1], heldout_x=held, seed=seed)

    real_q = []
    for rep in range(5):
        perm = np.random.default_rng(100 + rep).permutation(len(x_test))
        real_q.append(quality(x_test[perm[:n]], x_test[perm[n:]], rep))
    ratios = np.array([q["frechet_ratio"] for q in real_q])
    mean, sd = ratios.mean(), ratios.std(ddof=1)
    print(f"\nreal-vs-real Frechet ratio over 5 splits: {mean:.2f} +- {sd:.2f}")
    assert abs(mean - 1.0) < 4 * sd + 0.1

    q = real_q[0]
    m = q["n_reference"]
    p_held = q["confident_share_heldout"]
    assert p_held >= 0.9  # 0.95 for this small classifier, 1.00 for the 60 000-image one
    assert abs(q["confident_share"] - p_held) < 5 * _binomial_se(p_held, n, m)
    for key in ("precision", "recall"):
        assert abs(q[key] - q[key + "_real"]) < 5 * _binomial_se(q[key + "_real"], n, n)
        assert q[key] > 0.7
    assert q["copy_share"] == 0.0
    assert q["digit_balance"].shape == (2,) and q["digit_balance"].sum() == pytest.approx(1.0)

    perm = np.random.default_rng(7).permutation(len(x_test))
    real, held = x_test[perm[:n]], x_test[perm[n:]]
    mu, cov = x_train.mean(0, dtype=np.float64), np.cov(x_train, rowvar=False)
    gauss = np.random.default_rng(8).multivariate_normal(mu, cov, size=n, method="eigh")
    blurred = gaussian_filter(real.reshape(-1, 28, 28), sigma=(0, 1.5, 1.5)).reshape(-1, 784)
    qg, qb = quality(gauss, held, 0), quality(blurred, held, 0)
    print(f"Frechet ratio: real {q['frechet_ratio']:.2f}, Gaussian fit {qg['frechet_ratio']:.1f}, "
          f"blurred {qb['frechet_ratio']:.1f}")
    for bad in (qg, qb):
        assert bad["frechet_ratio"] > mean + 10 * sd
    # the Gaussian fit is neither confidently a 0 or a 1 nor inside the real feature manifold
    assert qg["confident_share"] < p_held - 5 * _binomial_se(p_held, n, m)
    assert qg["precision"] < q["precision_real"] - 5 * _binomial_se(q["precision_real"], n, n)
    # blurred digits are still recognisable (the class metric passes them) but cover none of the
    # real digits' neighbourhoods: recall collapses
    assert qb["recall"] < q["recall_real"] - 5 * _binomial_se(q["recall_real"], n, n)


@needs_mnist_train
def test_mnist_quality_subsamples_and_without_heldout(quality_setup):
    clf, _, x_train, x_test = quality_setup
    small_held = x_test[:300]
    q = mnist_quality(x_test[300:700], clf, x_train[:500], [0, 1], heldout_x=small_held, seed=3)
    assert q["n"] == 400 and q["n_compared"] == 150 and q["n_reference"] == 150
    assert np.isfinite(q["frechet_ratio"])
    again = mnist_quality(x_test[300:700], clf, x_train[:500], [0, 1], heldout_x=small_held, seed=3)
    assert again["frechet_ratio"] == q["frechet_ratio"] and again["recall"] == q["recall"]  # seeded
    q0 = mnist_quality(x_test[:100], clf, x_train[:500], [0, 1])
    assert math.isnan(q0["frechet_ratio"]) and math.isnan(q0["confident_share_heldout"])
    assert 0.9 <= q0["confident_share"] <= 1.0
    with pytest.raises(ValueError, match="confidence"):
        mnist_quality(x_test[:10], clf, x_train[:500], [0, 1], confidence=0.0)


# ------------------------------------------------------------------------------------ Curie-Weiss


def test_curie_weiss_quality_exact_samples():
    # tv_expected is the exact expectation of TV for n exact samples: the mean of K replicates
    # matches it within 5 standard errors; the + share within 5 binomial standard errors.
    N, beta, h, n, K = 20, 1.5, 0.02, 2000, 20
    tvs, q = [], None
    for k in range(K):
        q = curie_weiss_quality(curie_weiss(n, N, beta, h, seed=k), N, beta, h)
        tvs.append(q["tv"])
    assert abs(np.mean(tvs) - q["tv_expected"]) < 5 * np.std(tvs, ddof=1) / math.sqrt(K)
    assert q["tv"] < 0.1
    assert abs(q["plus_share"] - q["plus_share_exact"]) < 5 * q["plus_share_stderr"]
    assert q["plus_share_exact"] > 0.5  # h > 0 favours the + state
    np.testing.assert_allclose(q["P_samples"].sum(), 1.0)
    assert q["M"].shape == (N + 1,) and q["magnetization"].shape == (n,)
    assert math.isnan(q["copy_share"])
    # samples of another law are far off
    wrong = curie_weiss_quality(curie_weiss(n, N, 0.0, seed=1), N, beta, h)
    assert wrong["tv"] > q["tv_expected"] + 0.3


def test_curie_weiss_quality_signs_and_ties():
    N = 16
    spins = curie_weiss(500, N, 1.2, seed=3)
    noisy = 0.8 * spins + 0.1 * np.random.default_rng(4).uniform(-1, 1, spins.shape)
    a, b = curie_weiss_quality(spins, N, 1.2), curie_weiss_quality(noisy, N, 1.2)
    np.testing.assert_array_equal(a["magnetization"], b["magnetization"])
    assert a["tv"] == b["tv"]
    # M = 0 counts as half a + state; exact share 1/2 at h = 0 by symmetry
    q = curie_weiss_quality(np.array([[1.0, -1.0], [1.0, 1.0]]), 2, 1.0)
    assert q["plus_share"] == 0.75 and q["plus_share_exact"] == pytest.approx(0.5)
    with pytest.raises(ValueError):
        curie_weiss_quality(spins, N + 1, 1.2)


def test_curie_weiss_quality_copies():
    N, beta = 12, 1.5
    train = curie_weiss(300, N, beta, seed=5)
    assert curie_weiss_quality(train, N, beta, train=train)["copy_share"] == 1.0
    fresh = curie_weiss(400, N, beta, seed=6)
    brute = np.mean([np.any(np.all(train == row, axis=1)) for row in fresh])
    q = curie_weiss_quality(fresh, N, beta, train=0.5 * train)
    assert q["copy_share"] == pytest.approx(brute)
    assert 0 < brute < 1
