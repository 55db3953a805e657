"""Private helpers shared by the physdiff rooms: seeds, input validation, atomic writes, staged output.

Nothing here is public API; the public functions call these at their boundary so that every
room reports bad input the same way (``ValueError`` with a message that says how to fix it).
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import shutil
import sys
import tempfile
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import numpy as np

SeedLike = int | np.random.Generator | None

_log = logging.getLogger("physdiff")


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


_TMP_TAG = ".tmp-"
_OLD_TAG = ".old-"


def _pid_alive(pid: int) -> bool:
    """Whether a process with id ``pid`` exists on this machine (``os.kill(pid, 0)``)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _owner_pid(name: str, prefix: str) -> int | None:
    """The owner PID encoded in a temporary name ``<prefix><pid>-<random>[...]``, or None."""
    head = name[len(prefix):].split("-", 1)[0]
    return int(head) if head.isdigit() else None


def _fsync_path(p: Path) -> None:
    """fsync a file or directory (best effort: some file systems refuse fsync on directories)."""
    try:
        fd = os.open(p, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    """fsync every regular file and directory below ``root`` (and ``root`` itself)."""
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            fp = Path(dirpath) / f
            if fp.is_file() and not fp.is_symlink():
                _fsync_path(fp)
        _fsync_path(Path(dirpath))


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


def clean_stale(target: str | os.PathLike) -> list[Path]:
    """Remove the temporaries that killed writers left next to ``target``; returns what was removed.

    Writers of ``target`` (:func:`staged_output`, :func:`atomic_path`, checkpoint saves) name their
    temporaries ``.<name>.tmp-<pid>-<random>`` and the run they replace ``.<name>.old-<pid>-<random>``.
    An entry whose owner process no longer exists is stale: a temporary is deleted; an ``.old-``
    directory is moved back to ``target`` if ``target`` is missing (a kill between the two renames of
    a replacement), else deleted. Entries of live processes are left alone. Each action is logged on
    the ``physdiff`` logger.
    """
    target = Path(target)
    parent = target.parent
    removed: list[Path] = []
    if not parent.is_dir():
        return removed
    for tag in (_OLD_TAG, _TMP_TAG):
        prefix = f".{target.name}{tag}"
        try:
            entries = sorted(parent.glob(glob.escape(prefix) + "*"))
        except OSError:
            return removed
        for entry in entries:
            pid = _owner_pid(entry.name, prefix)
            if pid is None or _pid_alive(pid):
                continue
            if tag == _OLD_TAG and not os.path.lexists(target):
                os.rename(entry, target)
                _log.warning("restored %s from %s, left by a killed run (process %d)", target, entry.name, pid)
                continue
            _remove(entry)
            removed.append(entry)
            _log.warning("removed %s, left by a killed run (process %d)", entry, pid)
    return removed


def _check_parent_writable(target: Path, what: str) -> None:
    parent = target.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except PermissionError as exc:
        raise PermissionError(f"cannot create {parent} for {what} {target}: {exc.strerror}; choose another "
                              "output path") from None
    except (FileExistsError, NotADirectoryError):
        raise FileExistsError(f"cannot write {what} {target}: a parent on the way is a file, not a "
                              "directory; choose another output path") from None
    msg = (f"cannot write {what} {target}: its folder {parent} is not writable; choose another output path "
           "or fix the permissions")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise PermissionError(msg)
    try:  # os.access says yes to root everywhere: probe for real (read-only mounts, EPERM, ...)
        fd, probe = tempfile.mkstemp(prefix=f".{target.name}{_TMP_TAG}{os.getpid()}-probe", dir=parent)
    except OSError as exc:
        raise PermissionError(f"{msg} ({exc.strerror})") from None
    os.close(fd)
    os.unlink(probe)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically with Linux ``renameat2(RENAME_EXCHANGE)``; False if unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return fn(-100, os.fsencode(a), -100, os.fsencode(b), 2) == 0  # AT_FDCWD, RENAME_EXCHANGE


def replace_dir(new: Path, target: Path) -> None:
    """Move the directory ``new`` to ``target``, replacing an existing ``target`` atomically.

    Linux: one ``renameat2(RENAME_EXCHANGE)``, then the old run (now at ``new``) is deleted; at no
    moment is ``target`` missing. Elsewhere: ``target`` is renamed to ``.<name>.old-<pid>-<random>``,
    ``new`` to ``target``, and the old one deleted; a kill between the two renames is repaired by
    :func:`clean_stale` on the next run. The parent directory is fsynced.
    """
    if os.path.lexists(target):
        if _exchange(new, target):
            _fsync_path(target.parent)
            _remove(new)
            return
        old = target.with_name(f".{target.name}{_OLD_TAG}{os.getpid()}-{uuid.uuid4().hex[:8]}")
        os.rename(target, old)
        os.rename(new, target)
        _fsync_path(target.parent)
        _remove(old)
    else:
        os.rename(new, target)
    _fsync_path(target.parent)


def output_target(out: str | os.PathLike) -> Path:
    """The real path written for ``out``: a symlink (also a dangling one) is followed, never replaced."""
    out = Path(os.fspath(out)).expanduser()
    return Path(os.path.realpath(out)) if out.is_symlink() else Path(os.path.abspath(out))


@contextlib.contextmanager
def staged_output(out: str | os.PathLike, *, force: bool = False, resume: bool = False) -> Iterator[Path]:
    """Write a run's output directory as one transaction: all of it appears in ``out``, or nothing changes.

    Yields a fresh temporary directory ``.<name>.tmp-<pid>-<random>`` next to ``out`` (same file
    system); the caller writes every output file there. When the ``with`` block ends without error,
    every file is fsynced and the directory is moved to ``out`` atomically (with ``force`` or
    ``resume``, an existing ``out`` is replaced only at that moment, see :func:`replace_dir`). When it
    raises, the temporary is deleted and ``out`` is untouched. When the process is killed, ``out`` is
    untouched and the temporary is left behind; the next writer of ``out`` deletes it
    (:func:`clean_stale`: a temporary whose owner PID is no longer alive is stale).

    Parameters
    ----------
    out : path
        The output directory. A symlink is followed: its target is written, the link kept.
    force : bool
        Replace an existing, non-empty ``out`` (at the end, once the new run is complete).
    resume : bool
        Continue an earlier run: the temporary starts as a copy of ``out``'s files (if any), and
        replaces ``out`` at the end as with ``force``.

    Raises
    ------
    FileExistsError
        ``out`` exists and is not a directory, or is a non-empty directory and neither ``force`` nor
        ``resume`` is set (the message names the path and the fix).
    PermissionError
        The folder that would hold ``out`` cannot be created or written; raised before anything is
        computed.
    """
    target = output_target(out)
    if os.path.lexists(target) and not target.is_dir():
        raise FileExistsError(f"output {target} exists and is not a directory; remove it or choose another "
                              "output directory")
    if target.is_dir() and any(target.iterdir()) and not (force or resume):
        raise FileExistsError(f"output directory {target} already holds a run; pass --force (force=True) to "
                              "replace it once the new run has completed, or choose another output directory")
    _check_parent_writable(target, "output directory")
    with _writer_lock(target):
        clean_stale(target)
        tmp = target.with_name(f".{target.name}{_TMP_TAG}{os.getpid()}-{uuid.uuid4().hex[:8]}")
        if resume and target.is_dir():
            shutil.copytree(target, tmp, symlinks=True)
        else:
            tmp.mkdir()
        os.chmod(tmp, 0o777 & ~_umask())
        try:
            yield tmp
            _fsync_tree(tmp)
            replace_dir(tmp, target)
        finally:
            if os.path.lexists(tmp):
                _remove(tmp)


@contextlib.contextmanager
def _writer_lock(target: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``.<name>.lock`` beside ``target`` while writing it.

    A second process writing the same output fails at once with ``FileExistsError`` instead of
    mixing its files with the first one's. The kernel releases the lock when its holder dies, so a
    killed run never blocks the next one; the lock file is removed on exit.
    """
    try:
        import fcntl
    except ImportError:  # not POSIX: no locking
        yield
        return
    lock = target.with_name(f".{target.name}.lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666 & ~_umask())
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FileExistsError(f"{target} is being written by another running physdiff process; wait for it "
                                  "to finish, or choose another output directory") from None
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                os.unlink(lock)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success rename it over ``path`` atomically.

    A write that fails or is killed half-way leaves ``path`` as it was (or absent), never half
    written: the final ``os.replace`` is atomic on POSIX file systems. The temporary is named
    ``.<name>.tmp-<pid>-<random>``; one left by a killed writer is removed by the next
    (:func:`clean_stale`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}{_TMP_TAG}{os.getpid()}-", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp_path, path)
        _fsync_path(path.parent)
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


def map_threads(fn, items, workers: int) -> list:
    """``[fn(x) for x in items]``, on ``min(workers, len(items))`` threads side by side when that is
    more than one (for work that releases the GIL: numpy and torch ops, ``nogil`` numba kernels);
    the results in the order of ``items``."""
    items = list(items)
    workers = min(int(workers), len(items))
    if workers <= 1:
        return [fn(x) for x in items]
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(fn, items))


# Elements of one row block's temporary in map_row_blocks (1 MB, half an L2). Measured, the exact
# Curie-Weiss score of 1000 samples at N = 64 on 2 cores: 24 ms as one block, 16 ms in blocks of
# 2^16 on two threads; its F pass alone 8.4 ms in blocks of 2^16, 7.6 in 2^17, 7.2 in 2^18.
_ROW_BLOCK_ELEMENTS = 1 << 17


def map_row_blocks(f, n: int, per_row: int):
    """``f(rows, scratch)`` over contiguous blocks of ``n`` rows, the results concatenated (axis 0).

    Blocks of at most ``_ROW_BLOCK_ELEMENTS`` temporary elements (``per_row`` per row), shared out
    in contiguous runs among numba's number of threads (:func:`map_threads`; numpy's ufuncs release
    the GIL); each thread hands its own float64 ``scratch`` buffer of a block's temporary to every
    block, so no large temporary is allocated (and page-faulted) per block. For functions whose rows
    are computed independently (a row's arithmetic does not depend on its block): the result is then
    the same bytes whatever the blocks and the number of threads.
    """
    import numba

    rows = max(1, _ROW_BLOCK_ELEMENTS // max(1, per_row))
    blocks = [slice(a, min(a + rows, n)) for a in range(0, n, rows)]
    k = max(1, min(numba.get_num_threads(), len(blocks)))

    def work(run):
        scratch = np.empty(rows * per_row)
        return [f(blocks[i], scratch) for i in run]

    parts = [p for ps in map_threads(work, np.array_split(np.arange(len(blocks)), k), k) for p in ps]
    return parts[0] if len(parts) == 1 else np.concatenate(parts)
