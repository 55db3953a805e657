"""Checkpoints of a :class:`~physdiff.ddpm.DDPM`: a directory of safetensors weights + JSON config.

Layout of a checkpoint directory::

    model.safetensors        W1 (T, d, H), b1 (T, H), W2 (T, H, d), b2 (T, d)   float32
                             loss_history (epochs, T) float64, epochs_done (T,) int64
    config.json              format tag, physdiff version, TrainConfig, schedule, model sizes, data
                             metadata (n, d, sha256 of the data, image shape, ...), epochs done and
                             planned, ``trained``, and ``files``: the SHA-256 of every weights file

A checkpoint written while training runs (``physdiff.ddpm.train(..., checkpoint=DIR)``) adds
overlays, applied in the order ``files`` lists them over ``model.safetensors`` (which then holds the
initial weights):

    nets-<first>-<last>.safetensors          a finished chunk of nets (steps first..last): their
                                              weights, loss rows and epochs done; no optimiser state
    running-<first>-<last>-e<E>.safetensors  the chunk being trained, after E epochs: its weights and
                                              Adam moments ``exp_avg.<name>``, ``exp_avg_sq.<name>``

Each overlay is written atomically and becomes part of the checkpoint only when ``config.json``
(itself replaced atomically) lists it, so a kill at any moment leaves a loadable checkpoint. A
finished model (:func:`save_checkpoint`) is one ``model.safetensors``; the whole directory is
written as a temporary sibling and swapped into place (:func:`physdiff._util.replace_dir`), other
files in it (e.g. ``samples.nc``) are kept.

Loading (:func:`read_checkpoint`) uses ``safetensors`` only (no pickle) and verifies every weights
file against its recorded SHA-256, so a swapped or edited file is refused. A missing file raises
``FileNotFoundError``, a corrupt, tampered or inconsistent one ``PhysdiffError``.

This module imports neither :mod:`.train` nor :mod:`.sample`: :func:`physdiff.ddpm.load` builds the
model from what :func:`read_checkpoint` returns.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import uuid
import warnings
from pathlib import Path

import numpy as np
import torch

from .. import __version__
from .._util import PhysdiffError, _umask, atomic_path, clean_stale, replace_dir, resolve_device
from ..schedules import Schedule
from .config import TrainConfig
from .model import PARAM_NAMES

__all__ = ["save_checkpoint", "read_checkpoint", "TrainingCheckpoint", "FORMAT", "FORMAT_VERSION"]

FORMAT = "physdiff.ddpm"
FORMAT_VERSION = 2
MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
_OVERLAY = re.compile(r"^(nets-\d+-\d+|running-\d+-\d+-e\d+)\.safetensors$")
_LEGACY_STATE_FILE = "train_state.safetensors"  # format 1


def _own(name: str) -> bool:
    return name in (MODEL_FILE, CONFIG_FILE, _LEGACY_STATE_FILE) or bool(_OVERLAY.match(name))


def _to_cpu(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to("cpu").contiguous()


def _write_tensors(tensors: dict, file: Path) -> str:
    """Write ``tensors`` as safetensors at ``file`` atomically (fsynced); returns the SHA-256 of the bytes."""
    from safetensors.torch import save

    payload = save({k: _to_cpu(v) for k, v in tensors.items()}, metadata={"format": FORMAT})
    with atomic_path(file) as tmp:
        tmp.write_bytes(payload)
    return hashlib.sha256(payload).hexdigest()


def _config_dict(ddpm, files: dict, state_meta: dict | None) -> dict:
    m = ddpm.model
    return {
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
        "epochs_done_max": int(np.max(ddpm.epochs_done)),
        "epochs_planned": int(ddpm.config.epochs),
        "trained": bool(ddpm.trained),
        "train_seconds": float(ddpm.train_seconds),
        "files": dict(files),
        "train_state": state_meta,
    }


def _write_config(meta: dict, file: Path) -> None:
    with atomic_path(file) as tmp:
        tmp.write_text(json.dumps(meta, indent=2, allow_nan=True) + "\n")


def _weights(ddpm, a: int = 0, b: int | None = None) -> dict:
    m = ddpm.model
    b = m.T if b is None else b
    out = {name: getattr(m, name)[a:b] for name in PARAM_NAMES}
    out["loss_history"] = torch.from_numpy(np.ascontiguousarray(ddpm.loss_history[:, a:b], dtype=np.float64))
    out["epochs_done"] = torch.from_numpy(np.ascontiguousarray(ddpm.epochs_done[a:b], dtype=np.int64))
    return out


def _running_tensors(ddpm) -> tuple[str, dict, dict] | None:
    """(file name, tensors, config entry) of the part-trained chunk in ``ddpm._train_state``, if any."""
    state = ddpm._train_state
    if not state:
        return None
    a, b = int(state["chunk"][0]), int(state["chunk"][1])
    name = f"running-{a + 1:04d}-{b:04d}-e{int(ddpm.epochs_done[a])}.safetensors"
    tensors = {**_weights(ddpm, a, b), **state["tensors"]}
    return name, tensors, {"file": name, "chunk": [a, b], "adam_step": int(state["adam_step"])}


def save_checkpoint(ddpm, path) -> Path:
    """Write ``ddpm`` to the checkpoint directory ``path`` as one transaction; returns the path.

    See the module docstring for the layout. ``path`` is created if missing (a symlink is followed);
    files in an existing ``path`` that are not checkpoint files are kept (hard-linked into the new
    directory). A part-trained chunk (``ddpm._train_state``) is saved as a ``running-*`` overlay so
    the checkpoint can be resumed. Raises ``ValueError`` if ``path`` exists and is not a directory.
    """
    from .._util import _check_parent_writable, output_target

    target = output_target(path)
    if target.exists() and not target.is_dir():
        raise ValueError(f"checkpoint path {target} exists and is not a directory; choose another path")
    _check_parent_writable(target, "checkpoint")
    clean_stale(target)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    os.chmod(tmp, 0o777 & ~_umask())
    try:
        files = {MODEL_FILE: _write_tensors(_weights(ddpm), tmp / MODEL_FILE)}
        running = _running_tensors(ddpm)
        state_meta = None
        if running is not None:
            name, tensors, state_meta = running
            files[name] = _write_tensors(tensors, tmp / name)
        _write_config(_config_dict(ddpm, files, state_meta), tmp / CONFIG_FILE)
        if target.is_dir():
            for entry in target.iterdir():
                if not _own(entry.name):
                    _carry(entry, tmp / entry.name)
        replace_dir(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _carry(src: Path, dst: Path) -> None:
    """Hard-link (else copy) ``src`` to ``dst``; directories recursively."""
    if src.is_dir() and not src.is_symlink():
        try:
            shutil.copytree(src, dst, symlinks=True, copy_function=os.link)
        except (OSError, shutil.Error):
            shutil.rmtree(dst, ignore_errors=True)
            shutil.copytree(src, dst, symlinks=True)
        return
    try:
        os.link(src, dst, follow_symlinks=False)
    except OSError:
        shutil.copy2(src, dst, follow_symlinks=False)


class TrainingCheckpoint:
    """The checkpoint of a running training in directory ``path``, updated in place without loss.

    ``start`` writes the whole model once (the initial weights); ``chunk_done`` adds a finished
    chunk's weights (no optimiser state); ``running`` replaces the running chunk's overlay (weights
    and Adam moments); ``finish`` consolidates everything into one ``model.safetensors``. Every
    step writes its file first and then replaces ``config.json``, which alone says what belongs to
    the checkpoint; files it no longer lists are deleted afterwards.
    """

    def __init__(self, path):
        self.path = Path(path)
        self.meta: dict | None = None

    def start(self, ddpm, resumed_here: bool) -> None:
        """Begin: write the full model, unless ``ddpm`` was just loaded from this same directory."""
        if resumed_here and (self.path / CONFIG_FILE).is_file():
            self.meta = json.loads((self.path / CONFIG_FILE).read_text())
            if isinstance(self.meta.get("files"), dict):
                self._sweep()
                return
        save_checkpoint(ddpm, self.path)
        self.meta = json.loads((self.path / CONFIG_FILE).read_text())

    def _commit(self, ddpm, files: dict, state_meta: dict | None) -> None:
        self.meta = _config_dict(ddpm, files, state_meta)
        _write_config(self.meta, self.path / CONFIG_FILE)
        self._sweep()

    def _sweep(self) -> None:
        """Delete overlay files that config.json does not list (superseded, or left by a kill)."""
        listed = set(self.meta.get("files") or {})
        for entry in self.path.iterdir():
            if _OVERLAY.match(entry.name) and entry.name not in listed:
                entry.unlink(missing_ok=True)

    def chunk_done(self, ddpm, a: int, b: int) -> None:
        """Nets ``a..b-1`` have finished: save their weights (no optimiser state)."""
        name = f"nets-{a + 1:04d}-{b:04d}.safetensors"
        files = {k: v for k, v in self.meta["files"].items() if not k.startswith("running-")}
        files[name] = _write_tensors(_weights(ddpm, a, b), self.path / name)
        self._commit(ddpm, files, None)

    def running(self, ddpm) -> None:
        """Save the part-trained chunk described by ``ddpm._train_state`` (weights + Adam moments)."""
        name, tensors, state_meta = _running_tensors(ddpm)
        files = {k: v for k, v in self.meta["files"].items() if not k.startswith("running-")}
        files[name] = _write_tensors(tensors, self.path / name)
        self._commit(ddpm, files, state_meta)

    def finish(self, ddpm) -> None:
        """Training ended: one consolidated ``model.safetensors``."""
        save_checkpoint(ddpm, self.path)


def _read_safetensors(file: Path, device, want_sha: str | None) -> dict:
    from safetensors.torch import load

    try:
        payload = file.read_bytes()
    except OSError as exc:
        raise PhysdiffError(f"cannot read checkpoint file {file}: {exc}") from exc
    if want_sha is not None and hashlib.sha256(payload).hexdigest() != want_sha:
        raise PhysdiffError(f"{file} does not match the SHA-256 recorded in {file.parent / CONFIG_FILE}: the "
                            "weights file is corrupt, or was replaced or edited after saving; restore the original "
                            "file, or retrain (a model changed on purpose is saved with DDPM.save)")
    try:
        tensors = load(payload)
    except Exception as exc:  # safetensors raises its own SafetensorError on bad files
        raise PhysdiffError(f"corrupt checkpoint file {file}: {exc}; re-save or retrain the model") from exc
    return {k: v.to(device) for k, v in tensors.items()}


def _read_meta(path: Path) -> dict:
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
    return meta


def _files_of(path: Path, meta: dict) -> dict:
    """``{file name: SHA-256 or None}`` in overlay order; format 1 recorded no hashes."""
    files = meta.get("files")
    if files is None:
        warnings.warn(f"checkpoint {path} (format 1) records no SHA-256 of its weights; they cannot be verified. "
                      "Re-save it with DDPM.save to add them", UserWarning, stacklevel=4)
        return {MODEL_FILE: None}
    if not isinstance(files, dict) or MODEL_FILE not in files or any(not _own(f) for f in files):
        raise PhysdiffError(f"{path / CONFIG_FILE}: bad 'files' entry {files!r}")
    return files


def _apply(full: dict, part: dict, a: int, b: int, file: Path) -> None:
    for name, value in part.items():
        if name not in full:
            continue
        dest = full[name][:, a:b] if name == "loss_history" else full[name][a:b]
        if tuple(dest.shape) != tuple(value.shape):
            raise PhysdiffError(f"{file}: {name} has shape {tuple(value.shape)}, expected {tuple(dest.shape)}")
        dest.copy_(value)


def read_checkpoint(path, device=None, allow_partial: bool = False) -> dict:
    """Read and verify the checkpoint directory ``path``; returns its parts.

    Returns
    -------
    dict
        ``tensors`` (W1, b1, W2, b2 on ``device``; loss_history, epochs_done on the CPU),
        ``config`` (TrainConfig), ``schedule``, ``activation``, ``data``, ``train_seconds`` and
        ``train_state`` (the running chunk's Adam state, or None).

    Raises
    ------
    FileNotFoundError
        ``path`` is not a directory or lacks ``config.json`` / ``model.safetensors`` / an overlay.
    PhysdiffError
        Unreadable JSON, wrong format tag, a weights file whose SHA-256 differs from the recorded one
        (swapped or edited), corrupt safetensors, tensors inconsistent with the config, or a partial
        checkpoint (training not finished) without ``allow_partial``.
    """
    path = Path(path)
    meta = _read_meta(path)
    try:
        config = TrainConfig.from_dict(meta["config"])
        schedule = Schedule.from_dict(meta["schedule"])
        msizes = meta["model"]
        data = dict(meta["data"])
        T, d, H = int(msizes["T"]), int(msizes["d"]), int(msizes["hidden"])
    except (KeyError, TypeError, ValueError) as exc:
        raise PhysdiffError(f"inconsistent {path / CONFIG_FILE}: {exc!r}") from exc
    if schedule != config.make_schedule():
        raise PhysdiffError(f"{path / CONFIG_FILE}: the stored schedule does not match the config's")
    if T != config.T or H != config.hidden or msizes.get("activation") != config.activation:
        raise PhysdiffError(f"{path / CONFIG_FILE}: model sizes {msizes} disagree with the config")
    if not meta.get("trained", True) and not allow_partial:
        raise PhysdiffError(
            f"checkpoint {path} is partial: training stopped with {meta.get('epochs_done')} of "
            f"{meta.get('epochs_planned', config.epochs)} epochs done in some nets. Finish it (physdiff train ... "
            f"--resume, or ddpm.train(x0, config, resume={str(path)!r})), or pass allow_partial=True "
            "(CLI --allow-partial) to use it as it is")
    dev = resolve_device("auto" if device is None else device)
    files = _files_of(path, meta)
    for name in files:
        if not (path / name).is_file():
            raise FileNotFoundError(f"checkpoint {path} lists {name} in {CONFIG_FILE} but the file is missing; it "
                                    "is incomplete (re-save or retrain)")
    tensors = _read_safetensors(path / MODEL_FILE, "cpu", files[MODEL_FILE])
    expected = {"W1": (T, d, H), "b1": (T, H), "W2": (T, H, d), "b2": (T, d),
                "loss_history": (config.epochs, T), "epochs_done": (T,)}
    for name, shape in expected.items():
        if name not in tensors:
            raise PhysdiffError(f"{path / MODEL_FILE} lacks tensor {name!r}; the checkpoint is corrupt")
        if tuple(tensors[name].shape) != shape:
            raise PhysdiffError(f"{path / MODEL_FILE}: {name} has shape {tuple(tensors[name].shape)}, "
                                f"config.json says {shape}")
    train_state = None
    state_meta = meta.get("train_state")
    for name, sha in files.items():
        if name == MODEL_FILE:
            continue
        nums = [int(v) for v in re.findall(r"\d+", name)]
        a, b = nums[0] - 1, nums[1]
        part = _read_safetensors(path / name, "cpu", sha)
        _apply(tensors, part, a, b, path / name)
        if name.startswith("running-"):
            if not state_meta or state_meta.get("file") != name:
                raise PhysdiffError(f"{path / CONFIG_FILE}: {name} is listed but train_state does not describe it")
            train_state = {"chunk": [a, b], "adam_step": int(state_meta["adam_step"]),
                           "tensors": {k: v.to(dev) for k, v in part.items() if k.startswith("exp_avg")}}
    if state_meta and train_state is None and (path / _LEGACY_STATE_FILE).is_file():  # format 1
        st = _read_safetensors(path / _LEGACY_STATE_FILE, "cpu", None)
        train_state = {"chunk": list(state_meta["chunk"]), "adam_step": int(state_meta["adam_step"]),
                       "tensors": {k: v.to(dev) for k, v in st.items()}}
    return {"tensors": {k: (v.to(dev) if k in PARAM_NAMES else v) for k, v in tensors.items()},
            "config": config, "schedule": schedule, "activation": msizes["activation"], "data": data,
            "train_seconds": float(meta.get("train_seconds", 0.0)), "train_state": train_state}
