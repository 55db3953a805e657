"""The train and sample jobs behind ``physdiff train | sample`` and ``physdiff.train`` / ``physdiff.sample``.

``train``: data -> per-timestep DDPM -> samples -> quality numbers, written into ``out`` as
``model.safetensors``, ``config.json``, ``samples.nc``, ``samples.png``, ``loss.nc``, ``loss.png`` and
``quality.nc``. ``sample``: a checkpoint -> ``n`` samples (netCDF + PNG).

Runs are transactions (:func:`physdiff._util.staged_output`): everything is written into a temporary
sibling of ``out`` and moved into place when the run has completed; with ``force`` the previous run
stays intact until then, and a failed or killed run leaves ``out`` exactly as it was.

Interrupted training. While a training job runs, its checkpoint lives in the sibling directory
``.<name>.partial`` of ``out`` (a finished chunk of nets is saved at once, a running one at the first
epoch boundary after every ``checkpoint_every`` seconds; see :func:`physdiff.ddpm.train`). A killed
run leaves it there; ``resume=True`` (CLI ``--resume``) continues from it and gives the uninterrupted
run's weights bit for bit; ``force=True`` discards it; without either, the job refuses to start, so
that no training is thrown away by accident. It is deleted once the run has been moved into place.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import sys
import time
import warnings
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
import xarray as xr

from . import datasets as _datasets
from ._util import check_positive_int, check_real, output_target, resolve_device, staged_output

__all__ = ["train", "sample", "TrainResult", "TRAIN_OUTPUTS", "partial_dir"]

TRAIN_OUTPUTS = ("model.safetensors", "config.json", "samples.nc", "samples.png", "loss.nc", "loss.png",
                 "quality.nc")

#: Keyword options of :func:`train` that describe the data (the rest are TrainConfig fields).
DATA_OPTIONS = ("digits", "data_dir", "download", "turns", "N", "beta", "h", "n_train")

SAMPLERS = ("ancestral", "ddim")


class TrainResult(NamedTuple):
    """What :func:`train` returns: the trained model and its Datasets (keys: file stems)."""

    model: "object"
    datasets: dict


def partial_dir(out) -> Path:
    """Where a training job writing ``out`` keeps its checkpoint while it runs: ``.<name>.partial``."""
    target = output_target(out)
    return target.with_name(f".{target.name}.partial")


def _preset_key(dataset: str, turns) -> str:
    if dataset != "swiss-roll":
        return dataset
    return f"swiss-roll-{int(turns)}" if float(turns) in (2.0, 3.0) else "swiss-roll-2"


def _split_options(options: dict) -> tuple[dict, dict]:
    from .ddpm import TrainConfig
    import dataclasses

    fields = {f.name for f in dataclasses.fields(TrainConfig)} - {"seed", "device"} - set(DATA_OPTIONS)
    data_kw = {k: v for k, v in options.items() if k in DATA_OPTIONS}
    overrides = {k: v for k, v in options.items() if k in fields and v is not None}
    unknown = set(options) - set(DATA_OPTIONS) - fields
    if unknown:
        raise ValueError(f"unknown option(s) {sorted(unknown)}; valid: data {list(DATA_OPTIONS)} and TrainConfig "
                         f"fields {sorted(fields)}")
    return data_kw, overrides


def _is_leftover(partial: Path, target: Path) -> bool:
    """A finished ``partial`` whose model is the one in ``target`` (a kill right after the move)."""
    import json

    try:
        p = json.loads((partial / "config.json").read_text())
        o = json.loads((target / "config.json").read_text())
    except (OSError, ValueError):
        return False
    return bool(p.get("trained")) and p.get("files") is not None and p.get("files") == o.get("files")


def _prepare_partial(out, *, resume: bool, force: bool, say) -> tuple[Path, Path | None]:
    """The checkpoint directory of this run and the checkpoint to resume from (or None)."""
    target = output_target(out)
    partial = partial_dir(out)
    if partial.exists() and _is_leftover(partial, target):
        shutil.rmtree(partial, ignore_errors=True)
    if partial.exists() and not (partial / "config.json").is_file():
        shutil.rmtree(partial, ignore_errors=True)  # killed before its first save: nothing to keep
    if partial.exists():
        if resume:
            return partial, partial
        if force:
            say(f"--force: discarding the interrupted run's checkpoint {partial}")
            shutil.rmtree(partial)
            return partial, None
        raise FileExistsError(f"an interrupted training run of {target} left its checkpoint in {partial}; pass "
                              "--resume (resume=True) to continue it, or --force (force=True) to start over")
    if resume:
        if (target / "config.json").is_file():
            return partial, target
        say(f"--resume: no interrupted run of {target} found; starting a fresh run")
    return partial, None


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _quality(samples, x0, meta, *, model, seed, data_dir, say) -> dict:
    """Quality numbers of ``samples`` of ``model`` for the dataset in ``meta`` (see :mod:`physdiff.metrics`);
    for MNIST with the learned and exact-score speciation times."""
    from . import metrics

    ds = meta["dataset"]
    if ds == "mnist":
        t0 = time.perf_counter()
        clf = metrics.mnist_classifier(data_dir)
        say(f"MNIST classifier ready in {time.perf_counter() - t0:.1f} s (test accuracy "
            f"{getattr(clf, 'test_accuracy', float('nan')):.4f})")
        held, _ = _datasets.heldout_set(meta, data_dir)
        q = metrics.mnist_quality(samples, clf, x0, meta["digits"], heldout_x=held, seed=seed)
        if len(meta["digits"]) >= 2:
            t0 = time.perf_counter()
            _, labels = _datasets.load_mnist(data_dir, split="train", digits=meta["digits"])
            q.update(metrics.mnist_speciation(model, clf, x0, labels, meta["digits"], seed=seed))
            say(f"speciation time (cloning, {q['n_pairs']} pairs): learned {q['speciation_time']:.3f} +- "
                f"{q['speciation_time_stderr']:.3f}, exact score of the training set {q['speciation_time_exact']:.3f} "
                f"+- {q['speciation_time_exact_stderr']:.3f} ({time.perf_counter() - t0:.0f} s)")
        return q
    if ds == "swiss-roll":
        return metrics.swiss_roll_quality(samples, turns=meta["turns"], seed=seed)
    return metrics.curie_weiss_quality(samples, meta["N"], meta["beta"], meta["h"], train=x0)


def _flat(d: dict) -> dict:
    """Scalars and short (<= 10) vectors of a metrics dict; per-sample arrays are left out."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update({f"{k}_{k2}": v2 for k2, v2 in _flat(v).items()})
        elif isinstance(v, (str, bool, int, float, np.integer, np.floating, np.bool_)) or (
                np.ndim(v) == 1 and 0 < len(v) <= 10 and np.asarray(v).dtype.kind in "biuf"):
            out[k] = v
    return out


def _quality_dataset(q: dict, attrs: dict) -> xr.Dataset:
    """The scalar quality numbers as a Dataset of 0-d variables (units "1")."""
    data = {}
    for k, v in _flat(q).items():
        if isinstance(v, str) or np.ndim(v) != 0:
            continue
        data[k] = ((), np.float64(v), {"units": "1", "long_name": k.replace("_", " ")})
    return xr.Dataset(data, attrs=attrs)


def _train_datasets(model, x, q, meta, *, dataset, preset, seed, history, config, sample_s) -> dict:
    """The samples, loss and quality Datasets of a training run, with their global attributes."""
    from . import results

    params = {"dataset": dataset, "preset": preset, **{k: v for k, v in meta.items() if k != "image_shape"},
              "config": config.to_dict()}
    title = f"physdiff train {dataset} (preset {preset})"
    info = dict(train_seconds=round(model.train_seconds, 2), sample_seconds=round(sample_s, 2))
    sds = results.samples_dataset(x, image_shape=meta.get("image_shape"),
                                  attrs=results.provenance(seed=seed, command=history, dataset=dataset,
                                                           preset=preset, **info, **_flat(q)))
    lds = results.loss_dataset(model.loss_history, alpha_bar=model.schedule.alpha_bar,
                                attrs={"dataset": dataset, "preset": preset})
    qds = _quality_dataset(q, {"dataset": dataset, "preset": preset})
    return {key: results.describe(ds, title=title, params=params, seed=seed, history=history)
            for key, ds in (("samples", sds), ("loss", lds), ("quality", qds))}


def _history(history) -> str:
    return history if history is not None else shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]])


def _join_torchrun(config, out):
    """``(shard, config)``: this process's shard when launched by torchrun (``WORLD_SIZE`` > 1), after
    joining the process group, with ``config`` on the rank's device; ``(None, config)`` otherwise."""
    from .ddpm.distributed import current_shard, init_process_group, rank_device

    shard = current_shard()
    if shard is None:
        return None, config
    if out is None:
        raise ValueError("training under torchrun needs out (--out): the ranks' shards meet on disk")
    device = rank_device(config.device, shard)
    init_process_group(shard, device)
    return shard, config.replace(device=str(device))


def _train_model(x0, config, meta, *, out, resume, force, progress, checkpoint_every, say, shard=None):
    """Train, with the checkpoint in ``.<name>.partial`` when ``out`` is given; returns (model, partial)."""
    from . import ddpm

    if shard is not None:
        return _train_sharded(x0, config, meta, out=out, resume=resume, force=force, progress=progress,
                              checkpoint_every=checkpoint_every, say=say, shard=shard)
    if out is None:
        return ddpm.train(x0, config, progress=progress, metadata=meta, log=say), None
    partial, resume_from = _prepare_partial(out, resume=resume, force=force, say=say)
    model = ddpm.train(x0, config, progress=progress, resume=resume_from, checkpoint=partial,
                       checkpoint_every=checkpoint_every, metadata=meta, log=say)
    return model, partial


def _prepare_shards(out, *, resume: bool, force: bool, shard, say) -> Path:
    """Rank 0 readies ``.<name>.partial`` for the ranks' shard checkpoints (``rank-<r>-of-<K>/``);
    the other ranks wait for it. Returns the directory.

    An interrupted sharded run's checkpoints are continued with ``resume`` (same number of ranks),
    discarded with ``force``, and otherwise refused, as for a single-process run."""
    from .ddpm.distributed import barrier

    partial = partial_dir(out)
    if shard.rank == 0 and partial.exists():
        ours = sorted(partial.glob(f"rank-*-of-{shard.size}"))
        if force:
            say(f"--force: discarding the interrupted run's checkpoints {partial}")
            shutil.rmtree(partial)
        elif not resume:
            raise FileExistsError(f"an interrupted training run of {output_target(out)} left its checkpoints in "
                                  f"{partial}; pass --resume to continue it, or --force to start over")
        elif not ours:
            raise FileExistsError(f"{partial} holds the checkpoint of a run that was not sharded over "
                                  f"{shard.size} ranks; resume it the way it was started, or pass --force")
    if shard.rank == 0:
        partial.mkdir(parents=True, exist_ok=True)
    barrier(shard)
    return partial


def _train_sharded(x0, config, meta, *, out, resume, force, progress, checkpoint_every, say, shard):
    """Train this torchrun rank's share of the nets into ``.<name>.partial/rank-<r>-of-<K>/``; rank 0
    merges every shard into ``.<name>.partial`` (an ordinary checkpoint) and returns the model; the
    other ranks return ``(None, partial)``. See :mod:`physdiff.ddpm.distributed`."""
    from . import ddpm
    from .ddpm.distributed import Shard, barrier, merge_shards

    partial = _prepare_shards(out, resume=resume, force=force, shard=shard, say=say)
    mine = partial / shard.label
    resume_from = mine if resume and (mine / "config.json").is_file() else None
    ddpm.train(x0, config, progress=progress and shard.rank == 0, resume=resume_from, checkpoint=mine,
               checkpoint_every=checkpoint_every, metadata=meta, log=say if shard.rank == 0 else None, shard=shard)
    barrier(shard)  # every shard is on disk
    if shard.rank != 0:
        return None, partial
    parts = [ddpm.load(partial / Shard(r, shard.size).label, device=config.device, allow_partial=True)
             for r in range(shard.size)]
    model = merge_shards(parts)
    model.save(partial)
    say(f"merged {shard.size} shards of {model.T} nets into one checkpoint")
    return model, partial


def train(dataset: str, out=None, *, preset: str = "quick", seed: int = 0, device: str = "auto",
          progress: bool = True, resume: bool = False, force: bool = False, n_samples: int = 256,
          checkpoint_every: float = 60.0, quality: bool = True, history: str | None = None,
          log: Callable | None = print, **options) -> TrainResult:
    """Train a per-timestep DDPM on ``dataset``, sample it, measure the samples; write it all into ``out``.

    Parameters
    ----------
    dataset : {"mnist", "swiss-roll", "curie-weiss"}
        See :func:`physdiff.datasets.load_training_data` (MNIST: the train split; its test split is
        the held-out set of the quality numbers).
    out : path or None
        Output directory (a symlink is followed); None: nothing is written and nothing checkpointed.
    preset : str
        ``physdiff.ddpm.PRESETS[dataset][preset]`` ("quick", "thesis", ...).
    seed : int >= 0
        Seeds the data draw (synthetic data), the nets, training, and (``seed + 1``) sampling.
    device : "auto", "cpu", "cuda" or "cuda:N"
    progress : bool
        tqdm progress bars.
    resume : bool
        Continue the interrupted run of ``out`` (see the module docstring); the result equals the
        uninterrupted run's.
    force : bool
        Replace an existing run in ``out`` once the new one has completed (and discard an interrupted
        run's checkpoint).
    n_samples : int >= 1
        Samples drawn after training.
    checkpoint_every : float >= 0
        Seconds between checkpoints of a running chunk of nets (finished chunks are saved at once).
    quality : bool
        Compute the quality numbers (MNIST: a cached classifier, see
        :func:`physdiff.metrics.mnist_classifier`); False leaves ``quality`` empty.
    history : str or None
        Recorded as the Datasets' ``history`` (default: this process's command line).
    log : callable or None
        Receives one-line progress messages (default ``print``).
    **options
        Data options (``digits``, ``data_dir``, ``download``, ``turns``, ``N``, ``beta``, ``h``,
        ``n_train``) and TrainConfig overrides (``epochs``, ``T``, ``hidden``, ``activation``,
        ``loss``, ``init``, ``lr``, ``batch``, ``chunk``, ...; None values are ignored).

    Returns
    -------
    TrainResult
        ``model`` (:class:`physdiff.ddpm.DDPM`) and ``datasets``: ``{"samples", "loss", "quality"}``
        (xarray Datasets; file stems in ``out``).

    Raises
    ------
    ValueError
        Any bad argument or option, before any work (the message names it).
    FileExistsError
        ``out`` holds a run (or an interrupted run's checkpoint) and neither ``force`` nor ``resume``.
    PermissionError
        ``out`` cannot be written (checked before any work).
    FileNotFoundError, physdiff.datasets.DataError
        MNIST files missing or damaged.
    """
    from . import ddpm, plotting, results

    say = log if log is not None else (lambda *_: None)
    seed = check_positive_int("seed", seed, minimum=0)
    n_samples = check_positive_int("n_samples", n_samples)
    checkpoint_every = check_real("checkpoint_every", checkpoint_every, lo=0.0)
    if dataset not in _datasets.DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of {', '.join(_datasets.DATASETS)}")
    resolve_device(device)
    data_kw, overrides = _split_options(options)
    if data_kw.get("n_train") is not None:  # zero or negative is an error, never replaced by a default
        data_kw["n_train"] = check_positive_int("n_train", data_kw["n_train"], minimum=2)
        overrides["n_train"] = data_kw["n_train"]  # the config records the size actually trained on
    if resume and out is None:
        raise ValueError("resume=True needs out (the directory of the interrupted run)")
    config = ddpm.get_config(_preset_key(dataset, data_kw.get("turns", 2.0)), preset, seed=seed, device=device,
                             **overrides)
    history = _history(history)
    shard, config = _join_torchrun(config, out)
    if shard is not None and shard.rank != 0:
        say = lambda *_: None  # noqa: E731  rank 0 speaks for the run
    lead = shard is None or shard.rank == 0
    stage = staged_output(out, force=force or resume) if out is not None and lead else contextlib.nullcontext()
    with stage as tmp:  # validates out (exists, writable) before any work
        x0, meta = _datasets.load_training_data(dataset, seed=seed, default_n=config.n_train, **data_kw)
        say(f"training on {x0.shape[0]} x {x0.shape[1]} {dataset} data, preset {preset!r}: {config}")
        model, partial = _train_model(x0, config, meta, out=out, resume=resume, force=force, progress=progress,
                                      checkpoint_every=checkpoint_every, say=say, shard=shard)
        if model is None:  # a torchrun rank other than 0: its shard is merged by rank 0
            return TrainResult(None, {})
        t1 = time.perf_counter()
        x = model.sample(n_samples, seed=seed + 1, progress=progress)
        sample_s = time.perf_counter() - t1
        q = _quality(x, x0, meta, model=model, seed=seed, data_dir=data_kw.get("data_dir"), say=say) if quality else {}
        out_ds = _train_datasets(model, x, q, meta, dataset=dataset, preset=preset, seed=seed, history=history,
                                 config=config, sample_s=sample_s)
        if tmp is not None:
            for name in ("model.safetensors", "config.json"):
                _link_or_copy(partial / name, tmp / name)
            for key, ds in out_ds.items():
                results.write_dataset(ds, tmp / f"{key}.nc")
            plotting.save_figure(plotting.plot_samples(out_ds["samples"], reference=x0 if x0.shape[1] == 2 else None),
                                 tmp / "samples.png")
            if out_ds["loss"].sizes["epoch"]:  # no curve to draw after epochs=0
                plotting.save_figure(plotting.plot_loss(out_ds["loss"]), tmp / "loss.png")
    if out is not None:
        shutil.rmtree(partial, ignore_errors=True)
        say(f"trained in {model.train_seconds:.1f} s, sampled {n_samples} in {sample_s:.1f} s; outputs in "
            f"{output_target(out)}")
    for k, v in _flat(q).items():
        say(f"  {k}: {v}")
    return TrainResult(model, out_ds)


def _sample_target(out) -> tuple[Path, bool]:
    """(path, is_file): a ``.nc`` path is one file (PNG beside it), anything else a directory."""
    p = Path(os.fspath(out)).expanduser()
    return (p, True) if p.suffix == ".nc" else (p, False)


def _check_file_out(path: Path, force: bool) -> Path:
    from ._util import _check_parent_writable

    target = output_target(path)
    if target.is_dir():
        raise FileExistsError(f"--out {target} is a directory; give a FILE.nc path (or a directory without "
                              "the .nc suffix)")
    if target.exists() and not force:
        raise FileExistsError(f"{target} exists; pass --force (force=True) to overwrite it, or choose another --out")
    _check_parent_writable(target, "output file")
    return target


def sample(checkpoint, n: int, *, out=None, seed: int = 0, device: str = "auto", sigma: str | None = None,
           sampler: str = "ancestral", steps: int | None = None, allow_partial: bool = False,
           force: bool = False, progress: bool = True, history: str | None = None) -> xr.Dataset:
    """Draw ``n`` samples from the model saved in ``checkpoint``.

    Parameters
    ----------
    checkpoint : path
        A checkpoint directory (``model.safetensors`` + ``config.json``), e.g. a ``physdiff train`` run.
    n : int >= 1
    out : path or None
        ``FILE.nc``: the samples there and a PNG beside it (``FILE.png``); any other path: a directory
        holding ``samples.nc`` and ``samples.png``, written as one transaction. None: nothing written.
    seed : int >= 0
    device : "auto", "cpu", "cuda" or "cuda:N"
    sigma : {"beta", "posterior"} or None
        Reverse-step variance (None: the model's ``config.sigma``).
    sampler : {"ancestral", "ddim"}
        The reverse chain (see :meth:`physdiff.ddpm.DDPM.sample`).
    steps : int >= 1 or None
        Number of reverse steps on a subsequence of the trained ones (None: all ``T``).
    allow_partial : bool
        Sample a checkpoint whose training did not finish (with a ``UserWarning``); refused otherwise.
    force : bool
        Overwrite an existing ``out``.
    progress : bool
    history : str or None
        Recorded in the Dataset (default: this process's command line).

    Returns
    -------
    xarray.Dataset
        ``x(sample, feature)`` (and ``image(sample, row, col)`` for images).

    Raises
    ------
    ValueError
        Bad ``n``, ``seed``, ``sampler``, ``steps`` or ``sigma`` (before any work).
    FileExistsError, PermissionError
        ``out`` exists without ``force``, or cannot be written (before any sampling).
    FileNotFoundError, PhysdiffError
        Missing, corrupt, tampered or (without ``allow_partial``) partial checkpoint.
    """
    from . import ddpm, plotting, results

    n = check_positive_int("n", n)
    seed = check_positive_int("seed", seed, minimum=0)
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
    if steps is not None:
        steps = check_positive_int("steps", steps)
    if sigma is not None and sigma not in ("beta", "posterior"):
        raise ValueError(f"sigma must be 'beta', 'posterior' or None, got {sigma!r}")
    resolve_device(device)
    target, is_file = (None, False) if out is None else _sample_target(out)
    if target is not None and is_file:
        target = _check_file_out(target, force)
    stage = staged_output(target, force=force) if target is not None and not is_file else contextlib.nullcontext()
    with stage as tmp:  # validates a directory out before any work
        model = ddpm.load(checkpoint, device=device, allow_partial=allow_partial)
        if steps is not None and steps > model.T:
            raise ValueError(f"steps (CLI --steps) must be <= the model's T = {model.T}, got {steps}")
        if not model.trained:
            warnings.warn(f"checkpoint {checkpoint} is partial: its nets have {int(model.epochs_done.min())} to "
                          f"{int(model.epochs_done.max())} of {model.config.epochs} epochs; the samples show a "
                          "half-trained model (finish it with physdiff train ... --resume)", UserWarning,
                          stacklevel=3)
        kw = {} if sampler == "ancestral" and steps is None else {"sampler": sampler, "steps": steps}
        x = model.sample(n, seed=seed, sigma=sigma, progress=progress, **kw)
        meta = model.data
        attrs = results.provenance(seed=seed, command=_history(history), checkpoint=str(checkpoint),
                                   dataset=meta.get("dataset", "unknown"), sampler=sampler,
                                   steps=model.T if steps is None else steps, trained=int(model.trained),
                                   epochs_done=int(model.epochs_done.min()), epochs_planned=model.config.epochs)
        ds = results.samples_dataset(x, image_shape=model.image_shape, attrs=attrs)
        ds = results.describe(ds, title=f"physdiff sample {checkpoint}", seed=seed, history=attrs["command"],
                              params={"checkpoint": str(checkpoint), "n": n, "sigma": sigma, "sampler": sampler,
                                      "steps": steps, "device": device, "allow_partial": allow_partial})
        if target is not None:
            nc, png = (target, target.with_suffix(".png")) if is_file else (tmp / "samples.nc", tmp / "samples.png")
            plotting.save_figure(plotting.plot_samples(ds), png)
            results.write_dataset(ds, nc)
    return ds
