"""Tests of physdiff.datasets: MNIST IDX reading and its errors, and the synthetic data sets."""

from __future__ import annotations

import gzip
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from physdiff import PhysdiffError
from physdiff import datasets
from physdiff.datasets import DataError, binary_heartbeat, curie_weiss, load_mnist, mnist_dirs, swiss_roll

MNIST_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"  # ../shared beside the repo
TEST_FILES = ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
needs_mnist = pytest.mark.skipif(not all((MNIST_DIR / f"{f}.gz").is_file() for f in TEST_FILES),
                                 reason=f"the real MNIST test set is not at {MNIST_DIR}")


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    monkeypatch.delenv("PHYSDIFF_DATA", raising=False)


def _write_idx(directory: Path, images: np.ndarray, labels: np.ndarray, gz: bool = False,
               names=TEST_FILES) -> None:
    """Write a small IDX pair (uint8 images (n, 28, 28), labels (n,))."""
    directory.mkdir(parents=True, exist_ok=True)
    img = np.array([2051, *images.shape], dtype=">u4").tobytes() + images.astype(np.uint8).tobytes()
    lab = np.array([2049, labels.shape[0]], dtype=">u4").tobytes() + labels.astype(np.uint8).tobytes()
    for name, payload in zip(names, (img, lab)):
        if gz:
            (directory / f"{name}.gz").write_bytes(gzip.compress(payload))
        else:
            (directory / name).write_bytes(payload)


def _synthetic(n=6, seed=0):
    """Images of smooth random blobs (not noise: neighbouring pixels are correlated) and labels."""
    rng = np.random.default_rng(seed)
    r, c = np.mgrid[0:28, 0:28]
    centres = rng.uniform(6, 22, size=(n, 2))
    width = rng.uniform(3, 6, size=n)
    img = np.exp(-((r - centres[:, 0, None, None]) ** 2 + (c - centres[:, 1, None, None]) ** 2) / (2 * width[:, None, None] ** 2))
    return np.round(255 * img).astype(np.uint8), rng.integers(0, 10, size=n)


pytestmark = pytest.mark.filterwarnings("ignore:.*is not the published MNIST file:UserWarning")


def _link_real(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for f in TEST_FILES:
        (directory / f"{f}.gz").symlink_to(MNIST_DIR / f"{f}.gz")


# ------------------------------------------------------------------------------------ MNIST real


@needs_mnist
def test_real_test_set_shapes_range_and_counts():
    x, labels = load_mnist(MNIST_DIR, split="test")
    assert x.shape == (10000, 784) and x.dtype == np.float32
    assert labels.shape == (10000,) and labels.dtype == np.int64
    assert x.min() == -1.0 and x.max() == 1.0
    # pixel / 127.5 - 1 of uint8 pixels: back to integers 0..255 exactly
    pixels = (x.astype(np.float64) + 1.0) * 127.5
    np.testing.assert_allclose(pixels, np.round(pixels), atol=1e-4)
    counts = np.bincount(labels, minlength=10)
    assert counts.sum() == 10000 and counts[0] == 980 and counts[1] == 1135


@needs_mnist
def test_digit_filter():
    x, labels = load_mnist(MNIST_DIR, digits=[1, 0])
    assert x.shape == (980 + 1135, 784) and set(np.unique(labels)) == {0, 1}
    x_all, labels_all = load_mnist(MNIST_DIR)
    np.testing.assert_array_equal(x, x_all[labels_all <= 1])  # order kept
    x3, l3 = load_mnist(MNIST_DIR, digits=3)
    assert np.all(l3 == 3) and x3.shape[0] == np.sum(labels_all == 3)


@pytest.mark.parametrize("digits", [[10], [-1], [], ["a"], [True], [0.5], "01", 3.0])
def test_bad_digits(digits):
    with pytest.raises(ValueError, match="digit"):
        load_mnist("/nonexistent", digits=digits)


def test_bad_split():
    with pytest.raises(ValueError, match="split"):
        load_mnist("/nonexistent", split="validation")


@needs_mnist
def test_gz_and_uncompressed_read_the_same(tmp_path):
    for f in TEST_FILES:
        (tmp_path / f).write_bytes(gzip.decompress((MNIST_DIR / f"{f}.gz").read_bytes()))
    x_raw, l_raw = load_mnist(tmp_path)
    x_gz, l_gz = load_mnist(MNIST_DIR)
    np.testing.assert_array_equal(x_raw, x_gz)
    np.testing.assert_array_equal(l_raw, l_gz)


def test_synthetic_idx_roundtrip(tmp_path):
    images, labels = _synthetic()
    for gz in (False, True):
        d = tmp_path / f"gz{gz}"
        _write_idx(d, images, labels, gz=gz)
        x, lab = load_mnist(d)
        np.testing.assert_array_equal(lab, labels)
        np.testing.assert_array_equal(x, (images.reshape(6, 784) / 127.5 - 1).astype(np.float32))


# ------------------------------------------------------------------------------------ lookup


@needs_mnist
def test_physdiff_data_env_folder_or_parent(tmp_path, monkeypatch):
    _link_real(tmp_path / "direct")
    monkeypatch.setenv("PHYSDIFF_DATA", str(tmp_path / "direct"))
    assert mnist_dirs()[0] == tmp_path / "direct"
    assert load_mnist()[0].shape == (10000, 784)
    _link_real(tmp_path / "parent" / "mnist")
    monkeypatch.setenv("PHYSDIFF_DATA", str(tmp_path / "parent"))
    assert mnist_dirs()[0] == tmp_path / "parent" / "mnist"
    assert load_mnist(digits=[0])[0].shape == (980, 784)


def test_lookup_order(tmp_path, monkeypatch):
    monkeypatch.setenv("PHYSDIFF_DATA", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    dirs = mnist_dirs()
    assert dirs[0] == tmp_path
    assert Path(datasets.__file__).resolve().parent.parent / "data" / "mnist" in dirs
    assert dirs[-1].resolve() == (tmp_path / "data" / "mnist").resolve()
    assert mnist_dirs(tmp_path / "x") == [tmp_path / "x"]  # an explicit data_dir is the only one


def test_lookup_falls_through_to_cwd(tmp_path, monkeypatch):
    images, labels = _synthetic(n=3)
    _write_idx(tmp_path / "data" / "mnist", images, labels, gz=True)
    monkeypatch.setenv("PHYSDIFF_DATA", str(tmp_path / "empty"))
    monkeypatch.chdir(tmp_path)
    repo_dir = Path(datasets.__file__).resolve().parent.parent / "data" / "mnist"
    if any((repo_dir / f"{f}{s}").exists() for f in TEST_FILES for s in ("", ".gz")):
        pytest.skip("the repository's data/mnist holds MNIST files, which come first")
    np.testing.assert_array_equal(load_mnist()[1], labels)


def test_missing_files_message(tmp_path, monkeypatch):
    monkeypatch.setenv("PHYSDIFF_DATA", str(tmp_path / "env"))
    with pytest.raises(FileNotFoundError) as info:
        load_mnist(split="train")
    msg = str(info.value)
    for part in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", str(tmp_path / "env"),
                 "download=True", "--data-dir", "PHYSDIFF_DATA"):
        assert part in msg
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "explicit")):
        load_mnist(tmp_path / "explicit")


# ------------------------------------------------------------------------------------ corrupt files


def test_corrupt_gzip(tmp_path):
    images, labels = _synthetic()
    _write_idx(tmp_path, images, labels, gz=True)
    bad = tmp_path / f"{TEST_FILES[0]}.gz"
    bad.write_bytes(b"\x1f\x8b" + b"garbage" * 20)
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte\.gz.*delete it and download"):
        load_mnist(tmp_path)


def test_truncated_gzip(tmp_path):
    images, labels = _synthetic()
    _write_idx(tmp_path, images, labels, gz=True)
    bad = tmp_path / f"{TEST_FILES[0]}.gz"
    bad.write_bytes(bad.read_bytes()[:-100])
    with pytest.raises(DataError, match="corrupt or truncated"):
        load_mnist(tmp_path)


def test_truncated_raw_file_and_error_classes(tmp_path):
    images, labels = _synthetic()
    _write_idx(tmp_path, images, labels)
    bad = tmp_path / TEST_FILES[0]
    bad.write_bytes(bad.read_bytes()[:-1])
    with pytest.raises(DataError, match="truncated") as info:
        load_mnist(tmp_path)
    assert isinstance(info.value, ValueError) and isinstance(info.value, PhysdiffError)
    assert str(bad) in str(info.value)
    bad.write_bytes(bad.read_bytes()[:10])  # shorter than the header
    with pytest.raises(DataError, match="header"):
        load_mnist(tmp_path)


def test_wrong_magic(tmp_path):
    images, labels = _synthetic()
    _write_idx(tmp_path, images, labels)
    img, lab = (tmp_path / f for f in TEST_FILES)
    tmp = tmp_path / "swap"
    img.rename(tmp), lab.rename(img), tmp.rename(lab)
    with pytest.raises(DataError, match="magic number 2049, expected 2051"):
        load_mnist(tmp_path)


def test_count_mismatch_and_bad_labels(tmp_path):
    images, labels = _synthetic(n=6)
    _write_idx(tmp_path, images, labels[:5])
    with pytest.raises(DataError, match="6 images.*5 labels"):
        load_mnist(tmp_path)
    _write_idx(tmp_path, images, np.full(6, 11))
    with pytest.raises(DataError, match="label 11"):
        load_mnist(tmp_path)


# ------------------------------------------------------------------------------------ download


class _FakeResponse:
    def __init__(self, payload):
        self.payload = payload

    def read(self):
        return self.payload

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_download_offline_fails_clearly(tmp_path, monkeypatch):
    calls = []

    def offline(url, timeout=None):
        calls.append(url)
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(FileNotFoundError) as info:
        load_mnist(tmp_path / "dl", download=True)
    msg = str(info.value)
    assert str(tmp_path / "dl") in msg and "t10k-images-idx3-ubyte" in msg and "no network" in msg
    assert [u.rsplit("/", 1)[0] + "/" for u in calls] == list(datasets.MNIST_MIRRORS)
    assert not any(p.is_file() for p in (tmp_path / "dl").rglob("*"))  # nothing half-written


@needs_mnist
def test_download_verifies_md5_and_writes(tmp_path, monkeypatch):
    served = []

    def fake(url, timeout=None):
        served.append(url)
        name = url.rsplit("/", 1)[1]
        if url.startswith(datasets.MNIST_MIRRORS[0]):
            return _FakeResponse(b"not the real file")  # first mirror serves garbage: MD5 mismatch
        return _FakeResponse((MNIST_DIR / name).read_bytes())

    monkeypatch.setattr(urllib.request, "urlopen", fake)
    x, labels = load_mnist(tmp_path, download=True, digits=[1])
    assert x.shape == (1135, 784)
    assert len(served) == 4  # two files, each: mirror 1 (bad MD5), mirror 2 (good)
    for f in TEST_FILES:
        assert (tmp_path / f"{f}.gz").read_bytes() == (MNIST_DIR / f"{f}.gz").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{f}.gz" for f in TEST_FILES)
    # present now: no more downloads
    load_mnist(tmp_path, download=True)
    assert len(served) == 4


def test_download_md5_mismatch_everywhere(tmp_path, monkeypatch):
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout=None: _FakeResponse(b"xx"))
    with pytest.raises(FileNotFoundError, match="MD5"):
        load_mnist(tmp_path, download=True)


@needs_mnist
def test_published_md5_of_real_files():
    import hashlib

    for f in TEST_FILES:
        digest = hashlib.md5((MNIST_DIR / f"{f}.gz").read_bytes()).hexdigest()
        assert digest == datasets.MNIST_MD5[f"{f}.gz"]


def test_no_torch_import():
    code = "import sys, physdiff.datasets; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(datasets.__file__).parent.parent)


# ------------------------------------------------------------------------------------ Swiss roll


def test_swiss_roll_geometry_and_seeds():
    x = swiss_roll(2000, turns=2.0, noise=0.0, seed=1)
    assert x.shape == (2000, 2) and x.dtype == np.float32
    p = 12.0 * x.astype(np.float64)
    r = np.hypot(p[:, 0], p[:, 1])
    theta = r - 5.0
    assert r.min() >= 5.0 - 1e-4 and r.max() <= 5.0 + 2 * np.pi + 1e-4
    np.testing.assert_allclose(p, np.stack([r * np.cos(theta), r * np.sin(theta)], 1), atol=1e-4)
    # theta ~ U[0, 2 pi]: mean pi, std 2 pi / sqrt(12) per point
    assert abs(theta.mean() - np.pi) < 5 * 2 * np.pi / np.sqrt(12 * 2000)
    np.testing.assert_array_equal(swiss_roll(50, seed=3), swiss_roll(50, seed=3))
    assert not np.array_equal(swiss_roll(50, seed=3), swiss_roll(50, seed=4))
    g = np.random.default_rng(5)
    assert swiss_roll(5, seed=g).shape == (5, 2)


@pytest.mark.parametrize("turns, default", [(2.0, 0.1), (3, 1.0)])
def test_swiss_roll_noise_default_and_scale(turns, default):
    np.testing.assert_array_equal(swiss_roll(100, turns, seed=0), swiss_roll(100, turns, default, seed=0))
    n = 20000
    clean = swiss_roll(n, turns, 0.0, seed=7).astype(np.float64)
    noisy = swiss_roll(n, turns, default, seed=7).astype(np.float64)
    resid = 12.0 * (noisy - clean)  # same theta draws, so the difference is the noise alone
    std = resid.std()
    assert abs(std - default) < 5 * default / np.sqrt(2 * 2 * n) + 1e-5


@pytest.mark.parametrize("kwargs", [dict(n=0), dict(n=2.5), dict(n=10, turns=0),
                                    dict(n=10, noise=-0.1), dict(n=10, turns=2.5),
                                    dict(n=10, turns=float("nan"))])
def test_swiss_roll_validation(kwargs):
    with pytest.raises(ValueError):
        swiss_roll(**kwargs)


# ------------------------------------------------------------------------------------ Curie-Weiss


def test_curie_weiss_exact_law():
    from physdiff.theory.curie_weiss import magnetization_distribution

    n, N, beta, h = 20000, 10, 1.5, 0.05
    x = curie_weiss(n, N, beta, h, seed=0)
    assert x.shape == (n, N) and x.dtype == np.float32
    assert set(np.unique(x)) == {-1.0, 1.0}
    np.testing.assert_array_equal(curie_weiss(7, N, beta, h, seed=3), curie_weiss(7, N, beta, h, seed=3))
    M_grid, P = magnetization_distribution(N, beta, h)
    counts = np.bincount((x.sum(1).astype(np.int64) + N) // 2, minlength=N + 1)
    sigma = np.sqrt(n * P * (1 - P))
    assert np.all(np.abs(counts - n * P) < 5 * sigma + 1)


def test_curie_weiss_validation():
    with pytest.raises(ValueError):
        curie_weiss(0, 10, 1.0)
    with pytest.raises(ValueError):
        curie_weiss(5, 10, -1.0)


# ------------------------------------------------------------------------------------ heartbeat


def test_binary_heartbeat():
    n, length, period = 5000, 20, 5
    x = binary_heartbeat(n, length, period, seed=0)
    assert x.shape == (n, length) and x.dtype == np.int8
    phase = x.argmax(axis=1)
    assert np.all(phase < period)
    j = np.arange(length)
    np.testing.assert_array_equal(x, ((j[None] - phase[:, None]) % period == 0).astype(np.int8))
    assert np.all(x.sum(1) == length // period)
    # the phase is uniform on 0..period-1 (entropy log2(5) bits per sequence)
    counts = np.bincount(phase, minlength=period)
    p = 1 / period
    assert np.all(np.abs(counts - n * p) < 5 * np.sqrt(n * p * (1 - p)))
    assert len({row.tobytes() for row in x}) == period
    np.testing.assert_array_equal(binary_heartbeat(9, seed=2), binary_heartbeat(9, seed=2))


@pytest.mark.parametrize("kwargs", [dict(n=0), dict(n=3, length=0), dict(n=3, period=0),
                                    dict(n=3, length=4, period=5)])
def test_binary_heartbeat_validation(kwargs):
    with pytest.raises(ValueError):
        binary_heartbeat(**kwargs)


# ------------------------------------------------------------------------------------ content checks


@needs_mnist
def test_recompressed_published_file_passes(tmp_path):
    import warnings

    for f in TEST_FILES:
        raw = gzip.decompress((MNIST_DIR / f"{f}.gz").read_bytes())
        (tmp_path / f"{f}.gz").write_bytes(gzip.compress(raw, compresslevel=1, mtime=12345))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the published content: no warning
        x, labels = load_mnist(tmp_path)
    assert x.shape == (10000, 784)


@needs_mnist
def test_damaged_published_file_fails_with_the_fix(tmp_path):
    raw = bytearray(gzip.decompress((MNIST_DIR / f"{TEST_FILES[0]}.gz").read_bytes()))
    raw[16 + 784 * 5 + 400] ^= 0xFF  # one pixel of image 5; header and size intact
    (tmp_path / TEST_FILES[0]).write_bytes(bytes(raw))
    (tmp_path / TEST_FILES[1]).write_bytes(gzip.decompress((MNIST_DIR / f"{TEST_FILES[1]}.gz").read_bytes()))
    with pytest.raises(DataError, match=r"published t10k-images-idx3-ubyte.*not its content.*download"):
        load_mnist(tmp_path)


def test_own_idx_files_are_read_with_a_warning(tmp_path):
    images, labels = _synthetic(n=8)
    _write_idx(tmp_path, images, labels)
    with pytest.warns(UserWarning, match="not the published MNIST file"):
        x, lab = load_mnist(tmp_path)
    np.testing.assert_array_equal(lab, labels)


@pytest.mark.parametrize("fill", ["random", "constant"])
def test_garbage_pixels_behind_a_valid_header_fail(tmp_path, fill):
    rng = np.random.default_rng(1)
    images = (rng.integers(0, 256, size=(50, 28, 28)) if fill == "random" else np.full((50, 28, 28), 7))
    _write_idx(tmp_path, images.astype(np.uint8), rng.integers(0, 10, size=50))
    with pytest.raises(DataError, match="garbage"):
        load_mnist(tmp_path)


def test_published_checksums():
    assert datasets.MNIST_MD5["train-labels-idx1-ubyte.gz"] == "d53e105ee54ea40749a09fcbcd1e9432"
    assert set(datasets.MNIST_SHA256) == {f for pair in datasets.MNIST_FILES.values() for f in pair}


# ------------------------------------------------------------------------------------ training sets


@needs_mnist
def test_mnist_training_set_is_the_train_split_and_heldout_the_test_split():
    x, meta = datasets.load_training_data("mnist", digits=(0, 1), data_dir=MNIST_DIR)
    assert x.shape == (12665, 784) and meta["split"] == "train" and meta["n_train"] == 12665
    xh, yh = datasets.heldout_set(meta, MNIST_DIR)
    assert xh.shape == (2115, 784) and set(np.unique(yh)) == {0, 1}
    meta = {**meta, "sha256": datasets.fingerprint(x)}
    np.testing.assert_array_equal(datasets.training_set(meta, MNIST_DIR), x)
    with pytest.raises(DataError, match="do not match.*data_dir"):
        datasets.training_set({**meta, "digits": [0, 7]}, MNIST_DIR)
    with pytest.raises(ValueError, match="n_train is not used for mnist"):
        datasets.load_training_data("mnist", data_dir=MNIST_DIR, n_train=100)


@pytest.mark.parametrize("dataset, kw", [("swiss-roll", {}), ("curie-weiss", {"N": 16, "beta": 1.3})])
def test_synthetic_training_sets_rebuild_and_heldout_is_independent(dataset, kw):
    x, meta = datasets.load_training_data(dataset, seed=4, n_train=300, **kw)
    assert x.shape[0] == 300 and meta["seed"] == 4
    meta = {**meta, "sha256": datasets.fingerprint(x)}
    np.testing.assert_array_equal(datasets.training_set(meta), x)
    xh, labels = datasets.heldout_set(meta)
    assert xh.shape == x.shape and labels.shape == (300,) and not np.array_equal(xh, x)
    with pytest.raises(DataError, match="do not match.*seed"):
        datasets.training_set({**meta, "seed": 5})


@pytest.mark.parametrize("n_train", [0, -3, 1])
def test_bad_sizes_are_refused_not_replaced(n_train):
    with pytest.raises(ValueError, match="n_train must be >= 2"):
        datasets.load_training_data("swiss-roll", n_train=n_train)


def test_bad_training_options():
    with pytest.raises(ValueError, match="unknown dataset"):
        datasets.load_training_data("cifar")
    with pytest.raises(ValueError, match="needs N"):
        datasets.load_training_data("curie-weiss", beta=1.0)
    with pytest.raises(ValueError, match="meta must be"):
        datasets.training_set({"dataset": "nope"})
