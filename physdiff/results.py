"""xarray Datasets that describe themselves, and their netCDF I/O.

A physdiff result is an :class:`xarray.Dataset` whose data variables carry ``units`` and
``long_name`` and whose global attributes, added by :func:`describe`, say what produced it:
``Conventions``, ``title``, ``source`` (the physdiff version), ``history`` (the command line or
the Python call), ``params`` (JSON of the full parameters) and ``seed``; the parameters a sweep
varies are scalar coordinates, so :func:`xarray.combine_by_coords` merges runs
(``docs/design.md``, "Conventions"). Files are written with the ``h5netcdf`` engine, zlib
compressed and atomically (a temporary file renamed over the target), and open with
``xarray.open_dataset``.

Builders of the older schemas (kept for the train and sample jobs):

samples    ``x(sample, feature)``; images also ``image(sample, row, col)``; attrs dataset, digits.
loss       ``loss(epoch, t)``.
potential  ``V(t, mu)`` with coords ``alpha_bar(t)``, ``physical_time(t)``; attrs N, beta, h, kind.
score      ``mse(t)``, ``relative_error(t)``, ``cosine(t)`` between learned and exact scores.
speciation ``phi(t)`` (probability that two clones end in the same class) and ``speciation_time``.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
import shlex
import sys
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import xarray as xr

from . import __version__
from ._util import atomic_path

__all__ = [
    "describe",
    "provenance",
    "write_dataset",
    "open_dataset",
    "samples_dataset",
    "loss_dataset",
    "potential_dataset",
    "score_comparison_dataset",
    "speciation_dataset",
]


def provenance(seed=None, command: str | None = None, **attrs) -> dict:
    """Provenance attrs: ``physdiff_version``, ``command`` (default: this process's command line),
    ``seed`` (``"none"`` if None), ``created`` (UTC, ISO 8601), and ``attrs`` as given."""
    out = {
        "physdiff_version": __version__,
        "command": command if command is not None else shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "seed": "none" if seed is None else seed,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    out.update(attrs)
    return out


def describe(ds: xr.Dataset, *, title: str, params, seed, history: str) -> xr.Dataset:
    """A copy of ``ds`` with the global attributes of a physdiff result and the swept parameters
    as scalar coordinates (see ``docs/design.md``, "Results").

    Parameters
    ----------
    ds : xarray.Dataset
        The Dataset; its own attributes are kept unless overridden here.
    title : str
        What the Dataset is (the study's title).
    params : dataclass instance or mapping
        The full parameters, stored as JSON in ``params``. For a dataclass, every field with
        ``metadata["coord"]`` true becomes a scalar coordinate (unless ``ds`` already has a
        variable of that name), so ``xarray.combine_by_coords`` merges runs that differ in it.
    seed : int or None
        The random seed (``"none"`` if None).
    history : str
        The command line or the Python call that produced ``ds``.

    Returns
    -------
    xarray.Dataset
        With attrs ``Conventions = "CF-1.10"``, ``title``, ``source = "physdiff <version>"``,
        ``history``, ``params`` (JSON) and ``seed``.
    """
    if not isinstance(ds, xr.Dataset):
        raise TypeError(f"ds must be an xarray.Dataset, got {type(ds).__name__}")
    if dataclasses.is_dataclass(params) and not isinstance(params, type):
        values = dataclasses.asdict(params)
        coords = {f.name: values[f.name] for f in dataclasses.fields(params) if f.metadata.get("coord")}
    elif isinstance(params, Mapping):
        values, coords = dict(params), {}
    else:
        raise TypeError(f"params must be a dataclass instance or a mapping, got {type(params).__name__}")
    out = ds.assign_coords({k: v for k, v in coords.items() if k not in ds.variables and k not in ds.dims})
    out.attrs = {
        **ds.attrs,
        "Conventions": "CF-1.10",
        "title": str(title),
        "source": f"physdiff {__version__}",
        "history": str(history),
        "params": json.dumps(values, default=str, sort_keys=True),
        "seed": "none" if seed is None else seed,
    }
    return out


def _netcdf_attr(v):
    """Map a Python value onto something netCDF attributes can hold."""
    if v is None:
        return "none"
    if isinstance(v, (bool, np.bool_)):
        return int(v)
    if isinstance(v, (str, int, float, np.integer, np.floating)):
        return v
    if isinstance(v, Mapping):
        return json.dumps(v, default=str)
    if isinstance(v, (list, tuple, np.ndarray)):
        arr = np.asarray(v)
        if arr.dtype.kind in "iuf" and arr.ndim == 1:
            return arr
        return json.dumps(np.asarray(v).tolist(), default=str)
    return str(v)


def write_dataset(ds: xr.Dataset, path: str | os.PathLike, *, overwrite: bool = True) -> Path:
    """Write ``ds`` to netCDF-4 at ``path`` atomically (h5netcdf engine, numeric arrays zlib-compressed).

    Attributes that netCDF cannot hold (None, bools, dicts, nested lists) are converted: None to
    ``"none"``, bools to 0/1, dicts and nested lists to JSON strings.

    Raises
    ------
    FileExistsError
        ``path`` exists and ``overwrite`` is False.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True (or --force on the command line)")
    ds = ds.copy()
    ds.attrs = {k: _netcdf_attr(v) for k, v in ds.attrs.items()}
    for name in ds.variables:
        ds[name].attrs = {k: _netcdf_attr(v) for k, v in ds[name].attrs.items()}
    encoding = {name: {"zlib": True, "complevel": 4} for name, var in ds.variables.items()
                if var.ndim > 0 and var.dtype.kind in "biuf"}
    with atomic_path(path) as tmp:
        ds.to_netcdf(tmp, engine="h5netcdf", encoding=encoding)
    return path


def open_dataset(path: str | os.PathLike) -> xr.Dataset:
    """Load a physdiff netCDF file fully into memory (the file is closed on return).

    Raises ``FileNotFoundError`` if ``path`` does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no results file at {path}")
    with xr.open_dataset(path, engine="h5netcdf") as ds:
        return ds.load()


def samples_dataset(x, *, image_shape: tuple[int, int] | None = None, attrs: Mapping | None = None) -> xr.Dataset:
    """Samples ``x(sample, feature)`` (float32), and ``image(sample, row, col)`` if ``image_shape``.

    Parameters
    ----------
    x : array (n, d)
    image_shape : (rows, cols), optional
        With ``rows * cols == d``: the images, row-major, as a second variable.
    attrs : mapping
        Dataset attrs (e.g. :func:`provenance` plus ``dataset``, ``digits`` and quality numbers).
    """
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"x must have shape (n, d), got {x.shape}")
    data = {"x": (("sample", "feature"), x, {"units": "1", "long_name": "sample"})}
    if image_shape is not None:
        r, c = image_shape
        if r * c != x.shape[1]:
            raise ValueError(f"image_shape {image_shape} does not match d={x.shape[1]}")
        data["image"] = (("sample", "row", "col"), x.reshape(-1, r, c),
                         {"units": "1", "long_name": "sample as an image (pixel values in [-1, 1])"})
    return xr.Dataset(data, coords={"sample": np.arange(x.shape[0])}, attrs=dict(attrs or {}))


def loss_dataset(loss, *, attrs: Mapping | None = None) -> xr.Dataset:
    """Training loss ``loss(epoch, t)``: the mean loss of each timestep's network in each epoch.

    ``loss`` is (epochs, T) for steps ``t = 1..T``; coords ``epoch = 1..epochs`` and ``t = 1..T``.
    """
    loss = np.asarray(loss, dtype=np.float64)
    if loss.ndim != 2:
        raise ValueError(f"loss must have shape (epochs, T), got {loss.shape}")
    return xr.Dataset(
        {"loss": (("epoch", "t"), loss, {"units": "1", "long_name": "per-timestep training loss"})},
        coords={"epoch": np.arange(1, loss.shape[0] + 1), "t": np.arange(1, loss.shape[1] + 1)},
        attrs=dict(attrs or {}),
    )


def potential_dataset(V, *, t, alpha_bar, mu, attrs: Mapping | None = None, name: str = "V",
                      extra: Mapping | None = None) -> xr.Dataset:
    """A potential ``V(t, mu)`` with coords ``alpha_bar(t)`` and ``physical_time(t)``.

    ``t`` are the steps (or indices) of the rows, ``alpha_bar`` their (t,) values; the physical
    time ``-log(alpha_bar)/2`` is added. ``extra`` holds further ``(t, mu)`` variables (e.g. the
    drift potential ``U`` or a large-N form) under their names.
    """
    alpha_bar = np.asarray(alpha_bar, dtype=np.float64)
    coords = {
        "t": np.asarray(t),
        "mu": np.asarray(mu, dtype=np.float64),
        "alpha_bar": ("t", alpha_bar),
        "physical_time": ("t", -0.5 * np.log(alpha_bar)),
    }
    data = {name: (("t", "mu"), np.asarray(V, dtype=np.float64))}
    for k, v in (extra or {}).items():
        data[k] = (("t", "mu"), np.asarray(v, dtype=np.float64))
    return xr.Dataset(data, coords=coords, attrs=dict(attrs or {}))


def score_comparison_dataset(learned, exact, *, t, alpha_bar, direction=None,
                             attrs: Mapping | None = None) -> xr.Dataset:
    """Per-step comparison of a learned score with the exact one: ``mse(t)``, ``relative_error(t)``,
    ``cosine(t)``.

    Parameters
    ----------
    learned, exact : arrays (n_t, n, d)
        Scores at each step ``t`` on the same inputs.
    direction : array (d,), optional
        A unit vector (e.g. the magnetization direction ``1/sqrt(N)``): adds ``mse_parallel(t)`` and
        ``mse_orthogonal(t)``, the squared error split along and across it (they sum to ``mse``).

    Definitions: ``mse = mean_n |s - s*|^2 / d``; ``relative_error = mean_n |s - s*|^2 / mean_n |s*|^2``;
    ``cosine = mean_n <s, s*> / (|s| |s*|)``.
    """
    L = np.asarray(learned, dtype=np.float64)
    E = np.asarray(exact, dtype=np.float64)
    if L.shape != E.shape or L.ndim != 3:
        raise ValueError(f"learned and exact must have the same shape (n_t, n, d), got {L.shape} and {E.shape}")
    diff = L - E
    err2 = np.sum(diff**2, axis=-1)
    d = L.shape[-1]
    norm_l = np.linalg.norm(L, axis=-1)
    norm_e = np.linalg.norm(E, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.sum(L * E, axis=-1) / (norm_l * norm_e)
    data = {
        "mse": ("t", err2.mean(axis=1) / d),
        "relative_error": ("t", err2.mean(axis=1) / np.mean(norm_e**2, axis=1)),
        "cosine": ("t", np.nanmean(cos, axis=1)),
    }
    if direction is not None:
        u = np.asarray(direction, dtype=np.float64)
        u = u / np.linalg.norm(u)
        par = (diff @ u) ** 2
        data["mse_parallel"] = ("t", par.mean(axis=1) / d)
        data["mse_orthogonal"] = ("t", (err2 - par).mean(axis=1) / d)
    alpha_bar = np.asarray(alpha_bar, dtype=np.float64)
    return xr.Dataset(
        data,
        coords={"t": np.asarray(t), "alpha_bar": ("t", alpha_bar), "physical_time": ("t", -0.5 * np.log(alpha_bar))},
        attrs=dict(attrs or {}),
    )


def speciation_dataset(phi, *, t, alpha_bar, phi_stderr=None, phi_theory=None, speciation_time=None,
                       attrs: Mapping | None = None) -> xr.Dataset:
    """Cloning curve ``phi(t)`` (probability that two clones branched at step t end in the same
    class), with optional ``phi_stderr(t)``, ``phi_theory(t)`` and the scalar ``speciation_time``
    (physical time where phi crosses the reference level)."""
    alpha_bar = np.asarray(alpha_bar, dtype=np.float64)
    data = {"phi": ("t", np.asarray(phi, dtype=np.float64))}
    if phi_stderr is not None:
        data["phi_stderr"] = ("t", np.asarray(phi_stderr, dtype=np.float64))
    if phi_theory is not None:
        data["phi_theory"] = ("t", np.asarray(phi_theory, dtype=np.float64))
    if speciation_time is not None:
        data["speciation_time"] = ((), float(speciation_time))
    return xr.Dataset(
        data,
        coords={"t": np.asarray(t), "alpha_bar": ("t", alpha_bar), "physical_time": ("t", -0.5 * np.log(alpha_bar))},
        attrs=dict(attrs or {}),
    )
