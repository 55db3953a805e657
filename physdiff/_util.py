"""Private helpers shared by the physdiff rooms: seeds, input validation, atomic writes.

Nothing here is public API; the public functions call these at their boundary so that every
room reports bad input the same way (``ValueError`` with a message that says how to fix it).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np

SeedLike = int | np.random.Generator | None


class PhysdiffError(RuntimeError):
    """Base class of physdiff's own errors (training diverged, corrupt checkpoint, ...)."""


def as_generator(seed: SeedLike) -> np.random.Generator:
    """Return a ``numpy.random.Generator`` for ``seed`` (an int, a Generator or None)."""
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None or isinstance(seed, (int, np.integer)):
        if seed is not None and seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed}")
        return np.random.default_rng(seed)
    raise TypeError(f"seed must be an int, a numpy.random.Generator or None, got {type(seed).__name__}")


def stream_seeds(seed: SeedLike, n: int) -> np.ndarray:
    """``n`` independent 63-bit seeds drawn from ``seed``: one per sample for the numba kernels.

    Seeding each sample's stream separately (inside ``prange``) makes a kernel's output
    independent of the number of threads.
    """
    return as_generator(seed).integers(0, 2**63 - 1, size=n, dtype=np.int64)


def check_finite(name: str, x: np.ndarray) -> None:
    """Raise ``ValueError`` if ``x`` holds NaN or inf."""
    if not np.all(np.isfinite(x)):
        bad = int(np.size(x) - np.count_nonzero(np.isfinite(x)))
        raise ValueError(f"{name} contains {bad} NaN or inf value(s); clean the input before calling")


def as_samples(name: str, x, dtype=None, d: int | None = None) -> np.ndarray:
    """Validate a sample array of shape ``(n, d)`` (a 1-D array is one sample) and return it.

    Raises ``ValueError`` on a wrong number of dimensions, a wrong feature count ``d``, an empty
    array or non-finite values.
    """
    arr = np.asarray(x, dtype=dtype)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise ValueError(f"{name} must have shape (n, d), got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape})")
    if d is not None and arr.shape[1] != d:
        raise ValueError(f"{name} must have d={d} features, got {arr.shape[1]}")
    if arr.dtype.kind == "f":
        check_finite(name, arr)
    return arr


def check_positive_int(name: str, value, minimum: int = 1) -> int:
    """Return ``value`` as an int, raising ``ValueError`` unless it is an integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_real(name: str, value, *, lo: float | None = None, hi: float | None = None,
               lo_open: bool = False, hi_open: bool = False) -> float:
    """Return ``value`` as a finite float inside the given bounds, else raise ``ValueError``."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a real number, got {value!r}") from None
    if not np.isfinite(v):
        raise ValueError(f"{name} must be finite, got {v}")
    if lo is not None and (v < lo or (lo_open and v == lo)):
        raise ValueError(f"{name} must be {'>' if lo_open else '>='} {lo}, got {v}")
    if hi is not None and (v > hi or (hi_open and v == hi)):
        raise ValueError(f"{name} must be {'<' if hi_open else '<='} {hi}, got {v}")
    return v


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success rename it over ``path`` atomically.

    A write that fails or is killed half-way leaves ``path`` as it was (or absent), never half
    written: the final ``os.replace`` is atomic on POSIX file systems.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def resolve_device(device=None):
    """``"auto"`` (or None) -> ``cuda`` if available else ``cpu``; otherwise ``torch.device(device)``.

    Imports torch lazily (this module is shared with torch-free rooms). Raises ``ValueError`` for an
    unparsable device or ``"cuda"`` without CUDA.
    """
    import torch

    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} requested but CUDA is not available; use device='cpu' or 'auto'")
    return dev


@contextlib.contextmanager
def torch_threads(num_threads: int | None):
    """Run torch's CPU ops with ``num_threads`` intra-op threads (None: leave torch's setting),
    restoring the previous setting afterwards; small models run fastest on one thread."""
    if num_threads is None:
        yield
        return
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(check_positive_int("num_threads", num_threads))
    try:
        yield
    finally:
        torch.set_num_threads(previous)
