"""Data sets as numpy arrays ``(n, d)``: MNIST (IDX files), the Swiss roll, Curie-Weiss spins and
the binary heartbeat.

Nothing here imports torch. Images are scaled to ``[-1, 1]``; every random routine takes
``seed: int | numpy.random.Generator | None`` and equal seeds give equal results.

References
----------
[SD15] Sohl-Dickstein, Weiss, Maheswaranathan, Ganguli (2015), Deep Unsupervised Learning using
    Nonequilibrium Thermodynamics, arXiv:1503.03585.
[Thesis] Bustinduy de la Guerra (2024), Out-of-Equilibrium Machine Learning (UCM), Table 2.
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
    "MNIST_MIRRORS",
    "load_mnist",
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

#: MD5 of the gzipped files, as published by torchvision (``torchvision.datasets.MNIST``).
MNIST_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcc7fd2a3c6",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}

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


def _md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


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
    return np.frombuffer(raw, dtype=np.uint8, offset=header_len).reshape(tuple(int(d) for d in dims))


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
        different counts, or labels outside 0..9.
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
    REFERENCES.md sec. 7).

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

    ``q(a) ∝ exp(beta M^2/(2N) + h M)``, ``M = sum_i a_i`` (REFERENCES.md sec. 2; [BM23]); drawn by
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
    sequences and entropy ``log2(period)`` bits (2.322 bits for ``period=5``; [SD15] sec. 3.2 and
    REFERENCES.md sec. 7).

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
