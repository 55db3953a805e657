"""Data sets as numpy arrays ``(n, d)``: MNIST (IDX files), the Swiss roll, Curie-Weiss spins and
the binary heartbeat.

Nothing here imports torch. Images are scaled to ``[-1, 1]``; every random routine takes
``seed: int | numpy.random.Generator | None`` and equal seeds give equal results.

References
----------
[SD15] Sohl-Dickstein, Weiss, Maheswaranathan, Ganguli (2015), Deep Unsupervised Learning using
    Nonequilibrium Thermodynamics, arXiv:1503.03585.
[Thesis] Bustinduy de la Guerra (2024), Out-of-Equilibrium Machine Learning (UCM), Table 2.
[BM23] Biroli, Mezard (2023), Generative diffusion in very large dimensions, arXiv:2306.03518.
LeCun, Bottou, Bengio, Haffner (1998), the MNIST database; IDX file format described at
    http://yann.lecun.com/exdb/mnist/.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import urllib.error
import urllib.request
import zlib
from pathlib import Path
from typing import Iterable

import numpy as np

from ._util import PhysdiffError, SeedLike, as_generator, atomic_path, check_positive_int, check_real

__all__ = [
    "DataError",
    "MNIST_FILES",
    "MNIST_MD5",
    "MNIST_SHA256",
    "MNIST_MIRRORS",
    "load_mnist",
    "load_training_data",
    "training_set",
    "heldout_set",
    "mnist_dirs",
    "swiss_roll",
    "curie_weiss",
    "binary_heartbeat",
]


class DataError(PhysdiffError, ValueError):
    """A data file exists but cannot be read: wrong magic number, truncated, corrupt gzip, ...

    Subclasses both :class:`physdiff.PhysdiffError` and ``ValueError``.
    """


# --------------------------------------------------------------------------------------------
# MNIST
# --------------------------------------------------------------------------------------------

#: IDX file names (without ``.gz``) of each split: (images, labels).
MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

#: MD5 of the gzipped files as published (LeCun et al.'s archives, also torchvision's): what a
#: download is checked against.
MNIST_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}

#: SHA-256 of the decompressed published files (the IDX bytes): what a file read from disk is checked
#: against, so that a re-compressed archive of the same content passes.
MNIST_SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}

#: Number of items of each published file (the count in its IDX header).
_MNIST_COUNT = {"train-images-idx3-ubyte": 60000, "train-labels-idx1-ubyte": 60000,
                "t10k-images-idx3-ubyte": 10000, "t10k-labels-idx1-ubyte": 10000}

#: Mirrors tried in order by ``load_mnist(download=True)``.
MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)

_IMAGE_MAGIC = 2051  # 0x00000803: unsigned byte, 3 dimensions
_LABEL_MAGIC = 2049  # 0x00000801: unsigned byte, 1 dimension
_ROWS = _COLS = 28
_DOWNLOAD_TIMEOUT_S = 60.0
_HOW_TO_GET = ("get them with load_mnist(..., download=True) (CLI: --download), or point to a folder "
               "holding them with data_dir=... (CLI: --data-dir) or the PHYSDIFF_DATA environment variable")


def _repo_root() -> Path | None:
    """The source tree holding this package, if it is one (has a pyproject.toml)."""
    root = Path(__file__).resolve().parent.parent
    return root if (root / "pyproject.toml").is_file() else None


def mnist_dirs(data_dir: str | os.PathLike | None = None) -> list[Path]:
    """The directories ``load_mnist`` searches for the MNIST files, in order.

    Parameters
    ----------
    data_dir : path-like or None
        If given, it is the only directory searched (and the download target).

    Returns
    -------
    list of pathlib.Path
        Without ``data_dir``: ``$PHYSDIFF_DATA`` (or ``$PHYSDIFF_DATA/mnist`` where that folder
        exists), then ``<repo>/data/mnist`` (when running from a source tree), then
        ``<cwd>/data/mnist``; duplicates removed. The first one is the download target.
    """
    if data_dir is not None:
        return [Path(data_dir).expanduser()]
    dirs: list[Path] = []
    env = os.environ.get("PHYSDIFF_DATA")
    if env:
        base = Path(env).expanduser()
        # a parent holding mnist/ or the folder of the files itself
        dirs.append(base / "mnist" if (base / "mnist").is_dir() else base)
    root = _repo_root()
    if root is not None:
        dirs.append(root / "data" / "mnist")
    dirs.append(Path.cwd() / "data" / "mnist")
    out: list[Path] = []
    for d in dirs:
        if all(d.resolve() != o.resolve() for o in out):
            out.append(d)
    return out


def _find(directory: Path, name: str) -> Path | None:
    """``directory/name`` or ``directory/name.gz``, whichever exists (the uncompressed one first)."""
    for candidate in (directory / name, directory / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _download(directory: Path, name: str, expected: tuple[str, ...]) -> Path:
    """Fetch ``name.gz`` into ``directory`` from the first mirror that serves it with the right MD5."""
    gz = f"{name}.gz"
    target = directory / gz
    failures = []
    for mirror in MNIST_MIRRORS:
        url = mirror + gz
        try:
            with urllib.request.urlopen(url, timeout=_DOWNLOAD_TIMEOUT_S) as response:
                payload = response.read()
        except (urllib.error.URLError, OSError, ValueError) as exc:  # offline, 404, timeout, ...
            failures.append(f"  {url}: {exc}")
            continue
        digest = hashlib.md5(payload).hexdigest()
        if digest != MNIST_MD5[gz]:
            failures.append(f"  {url}: MD5 {digest} != expected {MNIST_MD5[gz]}")
            continue
        with atomic_path(target) as tmp:
            tmp.write_bytes(payload)
        return target
    raise FileNotFoundError(
        f"could not download MNIST file {gz} into {directory}; every mirror failed:\n"
        + "\n".join(failures)
        + f"\nWithout network access, copy the MNIST IDX files ({', '.join(expected)}, gzipped or not) "
        f"into {directory} by hand, or point data_dir (CLI: --data-dir) or PHYSDIFF_DATA to a folder "
        "holding them.")


def _read_idx_bytes(path: Path) -> bytes:
    """Raw (decompressed) bytes of an IDX file, gzipped or not."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise DataError(f"cannot read MNIST file {path}: {exc}") from exc
    if raw[:2] == b"\x1f\x8b" or path.suffix == ".gz":
        try:
            # decompression checks the gzip CRC-32 and length, so a corrupt or truncated .gz fails here
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(f"MNIST file {path} is not a valid gzip file ({exc}); it is corrupt or "
                            "truncated: delete it and download it again (download=True)") from exc
    return raw


def _parse_idx(path: Path, magic: int) -> np.ndarray:
    """Parse an IDX file of unsigned bytes with the expected ``magic`` (2051 images, 2049 labels).

    Returns uint8 ``(n, 28, 28)`` for images and ``(n,)`` for labels; raises ``DataError`` on a wrong
    magic number, wrong dimensions or a size that does not match the header.
    """
    raw = _read_idx_bytes(path)
    fix = "delete it and download it again (download=True)"
    ndim = 3 if magic == _IMAGE_MAGIC else 1
    header_len = 4 + 4 * ndim
    if len(raw) >= 4 and int.from_bytes(raw[:4], "big") != magic:
        kind = "images" if magic == _IMAGE_MAGIC else "labels"
        raise DataError(f"MNIST file {path} has IDX magic number {int.from_bytes(raw[:4], 'big')}, "
                        f"expected {magic} for {kind}: it is not an MNIST {kind} file or it is "
                        f"corrupt; {fix}")
    if len(raw) < header_len:
        raise DataError(f"MNIST file {path} is truncated: {len(raw)} bytes, shorter than its "
                        f"{header_len}-byte IDX header; {fix}")
    dims = np.frombuffer(raw, dtype=">u4", count=ndim, offset=4).astype(np.int64)
    if ndim == 3 and (dims[1], dims[2]) != (_ROWS, _COLS):
        raise DataError(f"MNIST file {path} holds {dims[1]}x{dims[2]} images, expected 28x28; {fix}")
    expected = header_len + int(np.prod(dims))
    if len(raw) != expected:
        what = "truncated" if len(raw) < expected else "longer than its header says"
        raise DataError(f"MNIST file {path} is {what}: {len(raw)} bytes, the header "
                        f"(dimensions {tuple(int(d) for d in dims)}) implies {expected}; {fix}")
    arr = np.frombuffer(raw, dtype=np.uint8, offset=header_len).reshape(tuple(int(d) for d in dims))
    _verify_content(path, raw, arr)
    return arr


def _idx_name(path: Path) -> str:
    return path.name[:-3] if path.name.endswith(".gz") else path.name


_VERIFIED: dict[tuple, str] = {}  # (path, inode, size, mtime) -> SHA-256 of the IDX bytes, per process


def _content_sha256(path: Path, raw: bytes) -> str:
    try:
        st = path.stat()
        key = (str(path.resolve()), st.st_ino, st.st_size, st.st_mtime_ns)
    except OSError:
        key = None
    if key is not None and key in _VERIFIED:
        return _VERIFIED[key]
    digest = hashlib.sha256(raw).hexdigest()
    if key is not None:
        _VERIFIED[key] = digest
    return digest


#: Below this correlation of horizontally neighbouring pixels, an image file is noise, not pictures:
#: the MNIST digits have ~0.9, any photograph or drawing well above 0.5, independent bytes ~0.
_MIN_NEIGHBOUR_CORRELATION = 0.3


def _neighbour_correlation(images: np.ndarray) -> float:
    """Pearson correlation of horizontally adjacent pixels over (up to 1000 of) ``images`` (n, r, c)."""
    sub = images[:: max(1, images.shape[0] // 1000)].astype(np.float64)
    a, b = sub[:, :, :-1].ravel(), sub[:, :, 1:].ravel()
    if a.std() == 0.0 or b.std() == 0.0:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def _verify_content(path: Path, raw: bytes, arr: np.ndarray) -> None:
    """Check an IDX file read from disk by its content (the decompressed bytes).

    - The published file (SHA-256 of its bytes in ``MNIST_SHA256``): accepted, however compressed.
    - A file with the published header (magic number and count) but other bytes: a damaged copy of
      the published file; ``DataError`` with the fix.
    - Any other content: the user's own IDX data, read with a ``UserWarning``; but image files whose
      neighbouring pixels are uncorrelated (noise, or constant) are garbage and raise ``DataError``.
    """
    name = _idx_name(path)
    want = MNIST_SHA256.get(name)
    if want is not None and _content_sha256(path, raw) == want:
        return
    fix = ("delete it and download it again (download=True, CLI --download), or copy the published "
           "file there")
    if want is not None and arr.shape[0] == _MNIST_COUNT[name]:
        raise DataError(f"MNIST file {path} has the header of the published {name} ({arr.shape[0]} items) but "
                        f"not its content (SHA-256 {_content_sha256(path, raw)[:16]}..., published "
                        f"{want[:16]}...): it is corrupt or altered; {fix}")
    if arr.ndim == 3 and arr.shape[0] > 0:
        rho = _neighbour_correlation(arr)
        if rho < _MIN_NEIGHBOUR_CORRELATION:
            raise DataError(f"IDX file {path} holds {arr.shape[0]} images whose neighbouring pixels are "
                            f"uncorrelated (correlation {rho:.2f}; real images > 0.5): its pixels are "
                            f"garbage behind a valid header; {fix}")
    import warnings

    warnings.warn(f"{path} is not the published MNIST file {name} ({arr.shape[0]} items, content differs); "
                  "reading it as your own IDX data", UserWarning, stacklevel=4)


def _check_digits(digits) -> np.ndarray | None:
    if digits is None:
        return None
    if isinstance(digits, (int, np.integer)) and not isinstance(digits, bool):
        digits = [digits]
    try:
        values = list(digits)
    except TypeError:
        raise ValueError(f"digits must be a list of integers in 0..9 or None, got {digits!r}") from None
    if not values:
        raise ValueError("digits is empty; give at least one digit in 0..9, or None for all ten")
    for d in values:
        if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or not 0 <= d <= 9:
            raise ValueError(f"digits must be integers in 0..9, got {d!r} in {values!r}")
    return np.unique(np.asarray(values, dtype=np.int64))


def load_mnist(data_dir: str | os.PathLike | None = None, split: str = "test",
               digits: Iterable[int] | int | None = None,
               download: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Load MNIST from the standard IDX files, scaled to ``[-1, 1]``.

    Reads ``train-images-idx3-ubyte`` / ``train-labels-idx1-ubyte`` (``split="train"``, 60 000
    images) or ``t10k-images-idx3-ubyte`` / ``t10k-labels-idx1-ubyte`` (``split="test"``, 10 000
    images), each gzipped (``.gz``) or not (the uncompressed file is used when both exist).

    Directory lookup: ``data_dir`` if given (the only directory searched); otherwise
    ``$PHYSDIFF_DATA`` (a folder holding the files, or a parent holding ``mnist/``), then
    ``<repo>/data/mnist``, then ``<cwd>/data/mnist`` (see :func:`mnist_dirs`). The first directory
    holding both files of the split is used.

    Parameters
    ----------
    data_dir : path-like or None
        Folder holding the IDX files.
    split : {"train", "test"}
    digits : int or iterable of int in 0..9, or None
        Keep only these digits (``None``: all ten).
    download : bool
        Fetch missing files (``.gz``) into the first directory searched, from
        ``MNIST_MIRRORS`` in order, verifying torchvision's MD5 checksums (``MNIST_MD5``); each
        file is written atomically.

    Returns
    -------
    x : ndarray, float32, shape (n, 784)
        Pixels flattened row-major, ``pixel / 127.5 - 1`` so in ``[-1, 1]``.
    labels : ndarray, int64, shape (n,)

    Raises
    ------
    ValueError
        Bad ``split`` or ``digits``.
    FileNotFoundError
        Files missing and ``download=False`` (the message names the folders searched, the files
        expected and how to get them), or every mirror failed with ``download=True``.
    DataError
        A file exists but is unreadable: corrupt or truncated gzip, wrong IDX magic number (2051
        for images, 2049 for labels), a size that disagrees with its header, images and labels of
        different counts, or labels outside 0..9; the published header with other content (a
        damaged copy); images that are noise behind a valid header.

    Warns
    -----
    UserWarning
        A file of other content than the published one (your own IDX data): it is read as it is.

    Notes
    -----
    Files read from disk are checked by the SHA-256 of their decompressed bytes (``MNIST_SHA256``),
    so a re-compressed archive of the published content passes; downloads are checked by the
    published archives' MD5 (``MNIST_MD5``).
    """
    if split not in MNIST_FILES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    wanted = _check_digits(digits)
    names = MNIST_FILES[split]
    dirs = mnist_dirs(data_dir)

    paths = None
    for d in dirs:
        found = [_find(d, n) for n in names]
        if all(p is not None for p in found):
            paths = found
            break
    if paths is None:
        if not download:
            raise FileNotFoundError(
                f"MNIST {split} files not found. Expected {names[0]}[.gz] and {names[1]}[.gz] in one of: "
                + ", ".join(str(d) for d in dirs) + f". To fix: {_HOW_TO_GET}.")
        target = dirs[0]
        paths = [_find(target, n) or _download(target, n, names) for n in names]

    images = _parse_idx(paths[0], _IMAGE_MAGIC)
    labels = _parse_idx(paths[1], _LABEL_MAGIC)
    if images.shape[0] != labels.shape[0]:
        raise DataError(f"MNIST files {paths[0]} ({images.shape[0]} images) and {paths[1]} "
                        f"({labels.shape[0]} labels) disagree; one of them is from another split or "
                        "corrupt: delete both and download them again (download=True)")
    if labels.size and labels.max() > 9:
        raise DataError(f"MNIST labels file {paths[1]} holds a label {int(labels.max())} > 9; it is "
                        "corrupt: delete it and download it again (download=True)")

    labels = labels.astype(np.int64)
    if wanted is not None:
        keep = np.isin(labels, wanted)
        images, labels = images[keep], labels[keep]
    # pixel / 127.5 - 1, correctly rounded to float32 through a 256-entry table
    table = (np.arange(256, dtype=np.float64) / 127.5 - 1.0).astype(np.float32)
    x = table[images.reshape(images.shape[0], _ROWS * _COLS)]
    return x, labels


# --------------------------------------------------------------------------------------------
# Synthetic data
# --------------------------------------------------------------------------------------------

_SWISS_ROLL_NOISE = {2.0: 0.1, 3.0: 1.0}  # [Thesis] Table 2


def swiss_roll(n: int, turns: float = 2.0, noise: float | None = None,
               seed: SeedLike = None) -> np.ndarray:
    """The thesis' 2-D spiral ("Swiss roll").

    ``theta ~ U[0, turns*pi]``, ``r = 5 + theta``, point ``(r cos theta, r sin theta) + noise * xi``
    with ``xi ~ N(0, I_2)``, all divided by 12 ([Thesis] sec. on the Swiss roll and Table 2;
    ``docs/theory.md``, "The Swiss roll").

    Parameters
    ----------
    n : int >= 1
        Number of points.
    turns : float > 0
        The angle range in units of pi (2: one full turn, 3: one and a half).
    noise : float >= 0 or None
        Standard deviation of the Gaussian noise, in the units of ``r`` (before the division by
        12). ``None`` picks the thesis' value: 0.1 for ``turns=2``, 1.0 for ``turns=3``.
    seed : int, numpy.random.Generator or None

    Returns
    -------
    ndarray, float32, shape (n, 2)

    Raises
    ------
    ValueError
        ``n < 1``, ``turns <= 0``, ``noise < 0``, or ``noise=None`` with ``turns`` other than 2 or 3.
    """
    n = check_positive_int("n", n)
    turns = check_real("turns", turns, lo=0.0, lo_open=True)
    if noise is None:
        if turns not in _SWISS_ROLL_NOISE:
            raise ValueError(f"noise=None has a default only for turns=2 (0.1) or turns=3 (1.0), the "
                             f"thesis' Table 2; got turns={turns}: pass noise explicitly")
        noise = _SWISS_ROLL_NOISE[turns]
    noise = check_real("noise", noise, lo=0.0)
    rng = as_generator(seed)
    theta = rng.uniform(0.0, turns * np.pi, size=n)
    r = 5.0 + theta
    x = np.stack([r * np.cos(theta), r * np.sin(theta)], axis=1)
    x += noise * rng.standard_normal((n, 2))
    return (x / 12.0).astype(np.float32)


def curie_weiss(n: int, N: int, beta: float, h: float = 0.0, seed: SeedLike = None) -> np.ndarray:
    """Exact samples of the Curie-Weiss model as ``±1`` floats.

    ``q(a) ∝ exp(beta M^2/(2N) + h M)``, ``M = sum_i a_i`` ([BM23]); drawn by
    ``physdiff.spins.sample_curie_weiss(N, beta, h, n_samples=n, seed=seed, method="exact")``: M from
    its exact law, then a uniformly random subset of ``(N+M)/2`` spins set to +1.

    Parameters
    ----------
    n : int >= 1
        Number of samples.
    N : int >= 1
        Number of spins.
    beta : float >= 0
        Inverse temperature.
    h : float
        Per-spin field.
    seed : int, numpy.random.Generator or None

    Returns
    -------
    ndarray, float32, shape (n, N), values in {-1, +1}

    Raises
    ------
    ValueError
        Bad ``n``, ``N``, ``beta`` or ``h``.
    """
    n = check_positive_int("n", n)
    from .spins import sample_curie_weiss  # numba kernels: imported on first use

    return sample_curie_weiss(N, beta, h, n_samples=n, seed=seed, method="exact").astype(np.float32)


def binary_heartbeat(n: int, length: int = 20, period: int = 5, seed: SeedLike = None) -> np.ndarray:
    """[SD15]'s binary heartbeat: a 1 in every ``period``-th bin with a uniformly random phase.

    Sequence ``k`` is ``x[k, j] = 1`` if ``(j - phase_k) % period == 0`` else 0, with
    ``phase_k ~ U{0, ..., period-1}``, so the distribution has exactly ``period`` equally likely
    sequences and entropy ``log2(period)`` bits (2.322 bits for ``period=5``; [SD15] sec. 3.2).

    Parameters
    ----------
    n : int >= 1
        Number of sequences.
    length : int >= 1
        Bins per sequence (20 in [SD15]).
    period : int, 1 <= period <= length
        Distance between pulses (5 in [SD15]).
    seed : int, numpy.random.Generator or None

    Returns
    -------
    ndarray, int8, shape (n, length), values in {0, 1}

    Raises
    ------
    ValueError
        ``n``, ``length`` or ``period`` not positive integers, or ``period > length``.
    """
    n = check_positive_int("n", n)
    length = check_positive_int("length", length)
    period = check_positive_int("period", period)
    if period > length:
        raise ValueError(f"period ({period}) must be <= length ({length}) so that every sequence "
                         "holds at least one pulse")
    phase = as_generator(seed).integers(0, period, size=n)
    j = np.arange(length)
    return ((j[None, :] - phase[:, None]) % period == 0).astype(np.int8)


# --------------------------------------------------------------------------------------------
# Training and held-out sets of a trained model, rebuilt from its metadata
# --------------------------------------------------------------------------------------------

DATASETS = ("mnist", "swiss-roll", "curie-weiss")

#: Training-set sizes used when neither ``n_train`` nor a preset's size is given.
_DEFAULT_N = {"swiss-roll": 10000, "curie-weiss": 4000}

_HELDOUT_STREAM = 0x4E1D  # spawn key of the held-out draw of the synthetic data sets


def fingerprint(x: np.ndarray) -> str:
    """SHA-256 of ``x`` as contiguous float32 bytes: the ``sha256`` a trained model stores of its data."""
    return hashlib.sha256(np.ascontiguousarray(x, dtype=np.float32).tobytes()).hexdigest()


def load_training_data(dataset: str, *, seed: int = 0, digits: Iterable[int] = (0, 1), data_dir=None,
                       download: bool = False, turns: float = 2.0, N: int | None = None,
                       beta: float | None = None, h: float = 0.0, n_train: int | None = None,
                       default_n: int | None = None) -> tuple[np.ndarray, dict]:
    """The training array of ``physdiff train DATASET`` and the metadata that rebuilds it.

    Parameters
    ----------
    dataset : {"mnist", "swiss-roll", "curie-weiss"}
        ``"mnist"``: every image of ``digits`` in the MNIST **train** split (12 665 for 0 and 1; the
        test split is the held-out set, see :func:`heldout_set`), pixels in [-1, 1].
        ``"swiss-roll"``: :func:`swiss_roll` with ``turns``; ``"curie-weiss"``: exact spin
        configurations :func:`curie_weiss` (``N`` and ``beta`` required).
    seed : int >= 0
        Seed of the synthetic draws (stored in the metadata).
    digits, data_dir, download
        MNIST only, as for :func:`load_mnist`.
    turns, N, beta, h
        Parameters of the synthetic data sets.
    n_train : int >= 1 or None
        Number of synthetic training points (None: ``default_n``, else 10 000 for the Swiss roll and
        4 000 for Curie-Weiss). Zero or negative is an error, never replaced by a default. MNIST uses
        every image of ``digits``; ``n_train`` is refused there.
    default_n : int or None
        The preset's size (``TrainConfig.n_train``), used when ``n_train`` is None.

    Returns
    -------
    x0 : ndarray float32 (n, d)
    meta : dict
        JSON-serialisable: ``dataset``, ``n_train``, ``seed`` and the dataset's parameters
        (``split``, ``digits``, ``image_shape``; ``turns``; ``N``, ``beta``, ``h``).

    Raises
    ------
    ValueError
        Unknown dataset, bad or missing parameters (the message names the argument).
    FileNotFoundError, DataError
        MNIST files missing or damaged (see :func:`load_mnist`).
    """
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
    seed = check_positive_int("seed", seed, minimum=0)
    if n_train is not None:
        n_train = check_positive_int("n_train", n_train, minimum=2)
    if dataset == "mnist":
        if n_train is not None:
            raise ValueError("n_train is not used for mnist: it trains on every image of the chosen digits "
                             "of the train split; choose the digits instead")
        wanted = _check_digits(digits)
        if wanted is None:
            raise ValueError("digits must be given for mnist (e.g. (0, 1))")
        x, _ = load_mnist(data_dir, split="train", digits=wanted.tolist(), download=download)
        return x, {"dataset": "mnist", "split": "train", "heldout_split": "test", "digits": wanted.tolist(),
                   "image_shape": [_ROWS, _COLS], "n_train": int(len(x)), "seed": seed}
    n = n_train or default_n or _DEFAULT_N[dataset]
    n = check_positive_int("n_train", n, minimum=2)
    if dataset == "swiss-roll":
        turns = check_real("turns", turns, lo=0.0, lo_open=True)
        x = swiss_roll(n, turns=turns, seed=seed)
        return x, {"dataset": "swiss-roll", "turns": turns, "n_train": int(n), "seed": seed}
    if N is None or beta is None:
        raise ValueError("curie-weiss needs N (number of spins, CLI --N) and beta (CLI --beta)")
    N = check_positive_int("N", N)
    beta = check_real("beta", beta, lo=0.0)
    h = check_real("h", h)
    x = curie_weiss(n, N, beta, h, seed=seed)
    return x, {"dataset": "curie-weiss", "N": N, "beta": beta, "h": h, "n_train": int(n), "seed": seed}


def _meta_dataset(meta) -> str:
    if not isinstance(meta, dict) or meta.get("dataset") not in DATASETS:
        got = meta.get("dataset") if isinstance(meta, dict) else type(meta).__name__
        raise ValueError(f"meta must be the data metadata of a model trained by physdiff train (DDPM.data), with "
                         f"'dataset' one of {DATASETS}; got {got!r}")
    return meta["dataset"]


def _meta_seed(meta: dict, seed) -> int:
    seed = meta.get("seed") if seed is None else seed
    if seed is None:
        raise ValueError("the metadata records no data seed; pass seed= (the model's config.seed)")
    return check_positive_int("seed", seed, minimum=0)


def training_set(meta: dict, data_dir=None, download: bool = False, *, seed: int | None = None) -> np.ndarray:
    """The training array ``x0`` of a trained model, rebuilt from its data metadata and verified.

    Parameters
    ----------
    meta : dict
        ``DDPM.data`` of a model trained on :func:`load_training_data`'s output (or that function's
        metadata itself).
    data_dir, download
        MNIST: as for :func:`load_mnist`.
    seed : int or None
        Seed of a synthetic draw when ``meta`` records none (models trained before the seed was
        stored: pass the model's ``config.seed``).

    Returns
    -------
    ndarray float32 (n, d)

    Raises
    ------
    DataError
        The rebuilt array does not match the metadata's ``sha256`` fingerprint (other MNIST files,
        another seed, or data the model was not trained on); the message says what to fix.
    ValueError
        ``meta`` is not the metadata of a physdiff training set.
    """
    ds = _meta_dataset(meta)
    if ds == "mnist":
        digits = meta.get("digits")
        if meta.get("holdout_indices") is not None:  # older runs: the test split less a held-out part
            x, _ = load_mnist(data_dir, split="test", digits=digits, download=download)
            x = np.delete(x, np.asarray(meta["holdout_indices"], dtype=np.int64), axis=0)
            where = "the MNIST test split less the held-out images"
        else:
            split = meta.get("split", "train")
            x, _ = load_mnist(data_dir, split=split, digits=digits, download=download)
            where = f"the MNIST {split} split"
        what = f"{where}, digits {digits}"
        fix = ("point data_dir (CLI --data-dir) to the MNIST files the model was trained on, or retrain it "
               "on these")
    else:
        s = _meta_seed(meta, seed)
        n = check_positive_int("n_train", meta.get("n_train", meta.get("n")), minimum=1)
        if ds == "swiss-roll":
            x = swiss_roll(n, turns=meta["turns"], seed=s)
        else:
            x = curie_weiss(n, int(meta["N"]), float(meta["beta"]), float(meta.get("h", 0.0)), seed=s)
        what = f"{n} {ds} points drawn with seed {s}"
        fix = "pass the seed it was trained with (seed=...), or retrain the model"
    want = meta.get("sha256")
    if want is not None and fingerprint(x) != want:
        raise DataError(f"the training data rebuilt from the metadata ({what}) do not match the model's "
                        f"SHA-256 fingerprint of its training data; {fix}")
    return np.ascontiguousarray(x, dtype=np.float32)


def heldout_set(meta: dict, data_dir=None, download: bool = False, *,
                seed: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Data of the training set's distribution that the model was NOT trained on, with labels.

    - MNIST: every image of the model's digits in the **test** split (2 115 for 0 and 1); older
      models trained on the test split less ``holdout_indices``: those held-out images.
    - Swiss roll / Curie-Weiss: a fresh draw of ``n_train`` points from a random stream independent
      of the training draw (seeded by ``(seed, 0x4E1D)``); labels are 0 for the Swiss roll and the
      sign of the magnetization (-1, 0, +1) for Curie-Weiss.

    Parameters
    ----------
    meta, data_dir, download, seed
        As for :func:`training_set`.

    Returns
    -------
    x : ndarray float32 (k, d)
    labels : ndarray int64 (k,)

    Raises
    ------
    ValueError
        ``meta`` is not the metadata of a physdiff training set.
    FileNotFoundError, DataError
        MNIST files missing or damaged.
    """
    ds = _meta_dataset(meta)
    if ds == "mnist":
        x, y = load_mnist(data_dir, split="test", digits=meta.get("digits"), download=download)
        held = meta.get("holdout_indices")
        if held is not None:
            held = np.asarray(held, dtype=np.int64)
            if held.size and held.max() >= len(x):
                raise DataError(f"the metadata's holdout_indices go up to {held.max()} but the MNIST test split "
                                f"holds {len(x)} images of digits {meta.get('digits')}; point data_dir to the "
                                "files the model was trained on")
            x, y = x[held], y[held]
        return x, y.astype(np.int64)
    rng = np.random.default_rng([_meta_seed(meta, seed), _HELDOUT_STREAM])
    n = check_positive_int("n_train", meta.get("n_train", meta.get("n")), minimum=1)
    if ds == "swiss-roll":
        return swiss_roll(n, turns=meta["turns"], seed=rng), np.zeros(n, dtype=np.int64)
    x = curie_weiss(n, int(meta["N"]), float(meta["beta"]), float(meta.get("h", 0.0)), seed=rng)
    return x, np.sign(x.sum(axis=1)).astype(np.int64)
