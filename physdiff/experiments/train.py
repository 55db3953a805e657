"""``physdiff train`` and ``physdiff sample``: data -> per-timestep DDPM -> samples -> quality numbers
-> ``model.safetensors``, ``config.json``, ``samples.nc``, ``samples.png``, ``loss.nc``, ``loss.png``."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from .. import datasets, metrics, plotting, results
from ._io import prepare_out

__all__ = ["train_job", "sample_job", "load_training_data", "heldout_images", "quality"]

TRAIN_OUTPUTS = ("model.safetensors", "config.json", "samples.nc", "samples.png", "loss.nc", "loss.png")

MNIST_SHAPE = (28, 28)


def _holdout_indices(n: int, holdout: float, seed) -> np.ndarray:
    """Sorted indices of the ``round(holdout * n)`` images kept out of training (seeded)."""
    k = int(round(holdout * n))
    rng = np.random.default_rng([int(seed), 0x401D])
    return np.sort(rng.permutation(n)[:k])


def load_training_data(dataset: str, *, seed=0, digits=(0, 1), data_dir=None, download=False, turns=2.0,
                       N=None, beta=None, h=0.0, n_train=None, default_n=None, holdout=0.1):
    """The training array ``x0 (n, d) float32`` and metadata for ``dataset``.

    ``"mnist"``: the chosen digits of the MNIST test split, pixels in [-1, 1], less a seeded
    fraction ``holdout`` of them (their indices are stored in the metadata as ``holdout_indices``,
    see :func:`heldout_images`); ``"swiss-roll"``: the thesis' spiral; ``"curie-weiss"``: exact
    spin configurations (``N``, ``beta``, ``h`` required).
    """
    if dataset == "mnist":
        holdout = float(holdout)
        if not 0.0 <= holdout < 1.0:
            raise ValueError(f"holdout must be a fraction in [0, 1), got {holdout}")
        x, _ = datasets.load_mnist(data_dir, split="test", digits=list(digits), download=download)
        held = _holdout_indices(len(x), holdout, seed)
        x = np.delete(x, held, axis=0)
        return x, {"dataset": "mnist", "digits": list(digits), "image_shape": MNIST_SHAPE, "n_train": int(len(x)),
                   "holdout": holdout, "holdout_indices": held.tolist()}
    if dataset == "swiss-roll":
        n = n_train or default_n or 10000
        x = datasets.swiss_roll(n, turns=turns, seed=seed)
        return x, {"dataset": "swiss-roll", "turns": float(turns), "n_train": int(n)}
    if dataset == "curie-weiss":
        if N is None or beta is None:
            raise ValueError("curie-weiss needs --N and --beta")
        n = n_train or default_n or 4000
        x = datasets.curie_weiss(n, N, beta, h, seed=seed)
        return x, {"dataset": "curie-weiss", "N": int(N), "beta": float(beta), "h": float(h), "n_train": int(n)}
    raise ValueError(f"unknown dataset {dataset!r}; choose mnist, swiss-roll or curie-weiss")


def heldout_images(meta: dict, data_dir=None, download: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The MNIST images a checkpoint was NOT trained on, and their labels.

    Parameters
    ----------
    meta : dict
        The checkpoint's data metadata (``DDPM.data``), as written by :func:`train_job`.
    data_dir, download
        As for :func:`physdiff.datasets.load_mnist`.

    Returns
    -------
    x : ndarray float32 (k, 784), pixels in [-1, 1]
    labels : ndarray int64 (k,)

    Raises
    ------
    ValueError
        The checkpoint is not an MNIST model, or was trained without a held-out split
        (retrain with ``physdiff train mnist --holdout 0.1``).
    """
    if meta.get("dataset") != "mnist":
        raise ValueError(f"held-out images need an MNIST checkpoint, this one was trained on {meta.get('dataset')!r}")
    held = meta.get("holdout_indices")
    if not held:
        raise ValueError("this MNIST checkpoint was trained on every image (no holdout_indices in its metadata); "
                         "retrain it with `physdiff train mnist --holdout 0.1` to keep images aside")
    x, y = datasets.load_mnist(data_dir, split="test", digits=list(meta["digits"]), download=download)
    held = np.asarray(held, dtype=np.int64)
    if held.max() >= len(x):
        raise ValueError(f"holdout_indices go up to {held.max()} but the data has {len(x)} images of digits "
                         f"{meta['digits']}: is this the MNIST test split the checkpoint was trained on?")
    return x[held], y[held].astype(np.int64)


def quality(samples, x_train, meta, *, seed=0, data_dir=None, log=print) -> dict:
    """Quality numbers of ``samples`` for the dataset in ``meta`` (see :mod:`physdiff.metrics`)."""
    ds = meta["dataset"]
    if ds == "mnist":
        x_all, y_all = datasets.load_mnist(data_dir, split="test")
        t0 = time.perf_counter()
        clf = metrics.train_mnist_classifier(x_all, y_all, seed=seed)
        log(f"classifier trained on {len(x_all)} MNIST images in {time.perf_counter() - t0:.1f} s")
        return metrics.mnist_quality(samples, clf, x_train, meta["digits"])
    if ds == "swiss-roll":
        return metrics.swiss_roll_quality(samples, turns=meta["turns"], seed=seed)
    if ds == "curie-weiss":
        return metrics.curie_weiss_quality(samples, meta["N"], meta["beta"], meta["h"], train=x_train)
    raise ValueError(f"unknown dataset {ds!r}")


def _flat(d: dict) -> dict:
    """Scalars and short (<= 10) vectors of a metrics dict, for netCDF attrs and the printout;
    per-sample arrays are left out."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update({f"{k}_{k2}": v2 for k2, v2 in _flat(v).items()})
        elif np.ndim(v) == 0 or (np.ndim(v) == 1 and len(v) <= 10):
            out[k] = v
    return out


def train_job(dataset: str, out, *, preset: str = "quick", seed: int = 0, device: str = "auto",
              force: bool = False, resume: bool = False, progress: bool = True, n_samples: int = 256,
              overrides: dict | None = None, command: str | None = None, log=print, **data_kw) -> dict:
    """Train a per-timestep DDPM on ``dataset`` and write the DESIGN.md outputs into ``out``.

    Returns the quality numbers (also printed and stored in ``samples.nc`` attrs).
    """
    from .. import ddpm

    out = prepare_out(out, TRAIN_OUTPUTS, force=force, resume=resume)
    key = dataset if dataset != "swiss-roll" else f"swiss-roll-{int(data_kw.get('turns', 2.0))}"
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    config = ddpm.get_config(key, preset, seed=seed, device=device, **overrides)
    x0, meta = load_training_data(dataset, seed=seed, default_n=getattr(config, "n_train", None), **data_kw)
    log(f"training on {x0.shape[0]} x {x0.shape[1]} {dataset} data, preset {preset!r}: {config}")
    t0 = time.perf_counter()
    resume_from = out if resume and (out / "config.json").exists() else None
    if resume and resume_from is None:
        log(f"--resume: no checkpoint in {out}; starting a fresh run")
    model = ddpm.train(x0, config, progress=progress, resume=resume_from, checkpoint=out, metadata=meta, log=log)
    train_s = time.perf_counter() - t0
    model.save(out)
    t1 = time.perf_counter()
    samples = model.sample(n_samples, seed=seed + 1, progress=progress)
    sample_s = time.perf_counter() - t1
    q = quality(samples, x0, meta, seed=seed, data_dir=data_kw.get("data_dir"), log=log)
    info = {k: v for k, v in meta.items() if k != "image_shape"}
    info.update(preset=preset, train_seconds=round(train_s, 2), sample_seconds=round(sample_s, 2), **_flat(q))
    attrs = results.provenance(seed=seed, command=command, **info)
    image_shape = meta.get("image_shape")
    sds = results.samples_dataset(samples, image_shape=image_shape, attrs=attrs)
    results.write_dataset(sds, out / "samples.nc")
    plotting.save_figure(plotting.plot_samples(sds, reference=x0 if x0.shape[1] == 2 else None), out / "samples.png")
    lds = results.loss_dataset(model.loss_history, attrs=results.provenance(seed=seed, command=command,
                                                                             dataset=dataset, preset=preset))
    results.write_dataset(lds, out / "loss.nc")
    plotting.save_figure(plotting.plot_loss(lds), out / "loss.png")
    log(f"trained in {train_s:.1f} s, sampled {n_samples} in {sample_s:.1f} s; outputs in {out}")
    for k, v in _flat(q).items():
        log(f"  {k}: {v}")
    return q


def sample_job(checkpoint, out, *, n: int = 64, seed: int = 0, device: str = "auto", sigma=None,
               force: bool = False, progress: bool = True, command: str | None = None, log=print) -> Path:
    """Draw ``n`` samples from a checkpoint into the netCDF file ``out`` (and a PNG beside it)."""
    from .. import ddpm

    out = Path(out)
    if out.suffix != ".nc":
        out = out / "samples.nc" if out.is_dir() or not out.suffix else out.with_suffix(".nc")
    if out.exists() and not force:
        raise FileExistsError(f"{out} exists; pass --force to overwrite")
    model = ddpm.load(checkpoint, device=device)
    x = model.sample(n, seed=seed, sigma=sigma, progress=progress)
    meta = model.data
    ds = results.samples_dataset(x, image_shape=model.image_shape,
                                 attrs=results.provenance(seed=seed, command=command, checkpoint=str(checkpoint),
                                                          dataset=meta.get("dataset", "unknown")))
    results.write_dataset(ds, out)
    plotting.save_figure(plotting.plot_samples(ds), out.with_suffix(".png"))
    log(f"{n} samples written to {out}")
    return out
