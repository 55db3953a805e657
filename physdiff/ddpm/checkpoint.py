"""Checkpoints of a :class:`~physdiff.ddpm.DDPM`: a directory of safetensors weights + JSON config.

Layout of a checkpoint directory::

    model.safetensors        W1 (T, d, H), b1 (T, H), W2 (T, H, d), b2 (T, d)   float32
                             loss_history (epochs, T) float64, epochs_done (T,) int64
    train_state.safetensors  only mid-training: Adam moments ``exp_avg.<name>``,
                             ``exp_avg_sq.<name>`` of the chunk being trained
    config.json              format tag, physdiff version, TrainConfig, schedule, model sizes, data
                             metadata (n, d, sha256, image shape, ...), epochs done, train state

Writes are atomic: the files go into a temporary sibling directory, which then replaces the target
in one ``renameat2(RENAME_EXCHANGE)`` (Linux; elsewhere two ``os.rename`` calls). Files in the
target that are not checkpoint files (e.g. the CLI's ``samples.nc``) are hard-linked into the new
directory first, so they survive. A killed run leaves either the old checkpoint or the new one, never
a mixture. Loading uses ``safetensors`` only (no pickle); a missing file raises
``FileNotFoundError``, a corrupt or inconsistent one ``PhysdiffError``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path

import numpy as np
import torch

from .. import __version__
from .._util import _umask, PhysdiffError
from ..schedules import Schedule
from .model import PARAM_NAMES, StackedAutoencoders

__all__ = ["save_checkpoint", "load_checkpoint", "FORMAT", "FORMAT_VERSION"]

FORMAT = "physdiff.ddpm"
FORMAT_VERSION = 1
MODEL_FILE = "model.safetensors"
STATE_FILE = "train_state.safetensors"
CONFIG_FILE = "config.json"
OWN_FILES = (MODEL_FILE, STATE_FILE, CONFIG_FILE)


def _fsync_file(p: Path) -> None:
    with open(p, "rb") as f:
        os.fsync(f.fileno())


def _fsync_dir(p: Path) -> None:
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


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths with Linux ``renameat2(RENAME_EXCHANGE)``; False if unsupported."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    rc = fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    return rc == 0


def _carry_foreign(src: Path, dst: Path) -> None:
    """Hard-link (else copy) everything in ``src`` that is not a checkpoint file into ``dst``."""
    for entry in src.iterdir():
        if entry.name in OWN_FILES or entry.name in {".", ".."}:
            continue
        target = dst / entry.name
        if entry.is_dir() and not entry.is_symlink():
            try:
                shutil.copytree(entry, target, symlinks=True, copy_function=os.link)
            except (OSError, shutil.Error):
                shutil.rmtree(target, ignore_errors=True)
                shutil.copytree(entry, target, symlinks=True)
        else:
            try:
                os.link(entry, target, follow_symlinks=False)
            except OSError:
                shutil.copy2(entry, target, follow_symlinks=False)


def _to_cpu(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to("cpu").contiguous()


def save_checkpoint(ddpm, path) -> Path:
    """Write ``ddpm`` to the checkpoint directory ``path`` atomically; returns the path.

    See the module docstring for the layout. ``path`` is created if missing; an existing directory
    keeps its non-checkpoint files. Raises ``ValueError`` if ``path`` exists and is not a directory.
    """
    from safetensors.torch import save_file

    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"checkpoint path {path} exists and is not a directory; choose another path")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; the checkpoint gets the usual permissions
    try:
        m = ddpm.model
        tensors = {name: _to_cpu(getattr(m, name)) for name in PARAM_NAMES}
        tensors["loss_history"] = torch.from_numpy(np.ascontiguousarray(ddpm.loss_history, dtype=np.float64))
        tensors["epochs_done"] = torch.from_numpy(np.ascontiguousarray(ddpm.epochs_done, dtype=np.int64))
        save_file(tensors, str(tmp / MODEL_FILE), metadata={"format": FORMAT})
        _fsync_file(tmp / MODEL_FILE)
        state = ddpm._train_state
        state_meta = None
        if state:
            save_file({k: _to_cpu(v) for k, v in state["tensors"].items()}, str(tmp / STATE_FILE),
                      metadata={"format": FORMAT})
            _fsync_file(tmp / STATE_FILE)
            state_meta = {"chunk": [int(state["chunk"][0]), int(state["chunk"][1])],
                          "adam_step": int(state["adam_step"])}
        meta = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "physdiff_version": __version__,
            "config": ddpm.config.to_dict(),
            "schedule": ddpm.schedule.to_dict(),
            "model": {"T": m.T, "d": m.d, "hidden": m.hidden, "activation": m.activation,
                      "dtype": str(m.W1.dtype).replace("torch.", "")},
            "data": ddpm.data,
            "image_shape": None if ddpm.image_shape is None else list(ddpm.image_shape),
            "epochs_done": int(np.min(ddpm.epochs_done)),
            "trained": bool(ddpm.trained),
            "train_seconds": float(ddpm.train_seconds),
            "train_state": state_meta,
        }
        for f in (MODEL_FILE, STATE_FILE):
            if (tmp / f).exists():
                os.chmod(tmp / f, 0o666 & ~_umask())
        with open(tmp / CONFIG_FILE, "w") as f:
            json.dump(meta, f, indent=2, allow_nan=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        if path.exists():
            _carry_foreign(path, tmp)
            _fsync_dir(tmp)
            if _exchange(tmp, path):
                shutil.rmtree(tmp, ignore_errors=True)  # tmp now holds the old checkpoint
            else:
                old = path.with_name(f".{path.name}.old-{uuid.uuid4().hex[:8]}")
                os.rename(path, old)
                os.rename(tmp, path)
                shutil.rmtree(old, ignore_errors=True)
        else:
            _fsync_dir(tmp)
            os.rename(tmp, path)
        _fsync_dir(path.parent)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return path


def _read_safetensors(file: Path, device) -> tuple[dict, dict]:
    from safetensors import safe_open

    try:
        out = {}
        with safe_open(str(file), framework="pt", device=str(device)) as f:
            meta = f.metadata() or {}
            for k in f.keys():
                out[k] = f.get_tensor(k)
        return out, meta
    except Exception as exc:  # safetensors raises its own SafetensorError / OSError on bad files
        raise PhysdiffError(f"corrupt checkpoint file {file}: {exc}; re-save or retrain the model") from exc


def load_checkpoint(path, device=None):
    """Load the :class:`~physdiff.ddpm.DDPM` saved in directory ``path`` (see :func:`physdiff.ddpm.load`).

    ``device``: ``"auto"`` (default: cuda if available), ``"cpu"``, ``"cuda"``.

    Raises
    ------
    FileNotFoundError
        ``path`` is not a directory or lacks ``config.json`` / ``model.safetensors``.
    PhysdiffError
        Unreadable JSON, wrong format tag, corrupt safetensors, or tensors inconsistent with the
        config (shapes, schedule).
    """
    from .sample import DDPM
    from .train import TrainConfig, resolve_device

    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"no checkpoint directory at {path}; train a model first "
                                "(physdiff train ... --out DIR, or DDPM.save(DIR))")
    for name in (CONFIG_FILE, MODEL_FILE):
        if not (path / name).is_file():
            raise FileNotFoundError(f"checkpoint {path} has no {name}; it is incomplete (re-save or retrain)")
    try:
        meta = json.loads((path / CONFIG_FILE).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PhysdiffError(f"corrupt {path / CONFIG_FILE}: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise PhysdiffError(f"{path / CONFIG_FILE} is not a physdiff DDPM checkpoint (format tag "
                            f"{meta.get('format') if isinstance(meta, dict) else None!r}, expected {FORMAT!r})")
    if int(meta.get("format_version", 0)) > FORMAT_VERSION:
        raise PhysdiffError(f"checkpoint format version {meta['format_version']} is newer than this "
                            f"physdiff understands ({FORMAT_VERSION}); upgrade physdiff")
    try:
        config = TrainConfig.from_dict(meta["config"])
        schedule = Schedule.from_dict(meta["schedule"])
        msizes = meta["model"]
        data = dict(meta["data"])
        state_meta = meta.get("train_state")
    except (KeyError, TypeError, ValueError) as exc:
        raise PhysdiffError(f"inconsistent {path / CONFIG_FILE}: {exc!r}") from exc
    if schedule != config.make_schedule():
        raise PhysdiffError(f"{path / CONFIG_FILE}: the stored schedule does not match the config's")
    dev = resolve_device("auto" if device is None else device)
    tensors, _ = _read_safetensors(path / MODEL_FILE, dev)
    T, d, H = int(msizes["T"]), int(msizes["d"]), int(msizes["hidden"])
    expected = {"W1": (T, d, H), "b1": (T, H), "W2": (T, H, d), "b2": (T, d),
                "loss_history": (config.epochs, T), "epochs_done": (T,)}
    for name, shape in expected.items():
        if name not in tensors:
            raise PhysdiffError(f"{path / MODEL_FILE} lacks tensor {name!r}; the checkpoint is corrupt")
        if tuple(tensors[name].shape) != shape:
            raise PhysdiffError(f"{path / MODEL_FILE}: {name} has shape {tuple(tensors[name].shape)}, "
                                f"config.json says {shape}")
    if T != config.T or H != config.hidden or msizes["activation"] != config.activation:
        raise PhysdiffError(f"{path / CONFIG_FILE}: model sizes {msizes} disagree with the config")
    model = StackedAutoencoders.from_tensors(*(tensors[k] for k in PARAM_NAMES), activation=msizes["activation"])
    ddpm = DDPM(model, schedule, config, data=data, loss_history=tensors["loss_history"].cpu().numpy(),
                epochs_done=tensors["epochs_done"].cpu().numpy(), train_seconds=meta.get("train_seconds", 0.0))
    if state_meta:
        if not (path / STATE_FILE).is_file():
            raise FileNotFoundError(f"checkpoint {path} records a training state but has no {STATE_FILE}")
        st, _ = _read_safetensors(path / STATE_FILE, dev)
        ddpm._train_state = {"chunk": list(state_meta["chunk"]), "adam_step": int(state_meta["adam_step"]),
                             "tensors": st}
    return ddpm
