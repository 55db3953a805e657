"""xarray Datasets that describe themselves, and their netCDF I/O.

A physdiff result is an :class:`xarray.Dataset` whose data variables carry ``units`` and
``long_name`` and whose global attributes, added by :func:`describe`, say what produced it:
``Conventions``, ``title``, ``source`` (the physdiff version), ``history`` (the command line or
the Python call), ``params`` (JSON of the full parameters) and ``seed``; the parameters a sweep
varies are scalar coordinates, so :func:`xarray.combine_by_coords` merges runs
(``docs/design.md``, "Conventions"). Files are written with the ``h5netcdf`` engine, zlib
compressed and atomically (a temporary file renamed over the target), and open with
``xarray.open_dataset``.

Builders for the train and sample jobs:

samples    ``x(sample, feature)``; images also ``image(sample, row, col)``; attrs dataset, digits.
loss       ``loss(epoch, step)`` with the physical time ``time(step)``.
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


def loss_dataset(loss, *, alpha_bar, attrs: Mapping | None = None) -> xr.Dataset:
    """Training loss ``loss(epoch, step)`` of a DDPM: each step's net's mean loss in each epoch.

    Parameters
    ----------
    loss : array_like, float, shape (epochs, T)
        ``loss[e, k]`` is the mean training loss of the net of step ``k + 1`` in epoch ``e + 1``
        (:attr:`physdiff.ddpm.DDPM.loss_history`; NaN where not trained).
    alpha_bar : array_like, float, shape (T + 1,)
        The schedule's ``alpha_bar`` indexed by step ``0..T`` (:attr:`physdiff.schedules.Schedule.alpha_bar`),
        each in (0, 1].
    attrs : mapping, optional
        Dataset attributes.

    Returns
    -------
    xarray.Dataset
        ``loss(epoch, step)`` (float64, units "1") with coordinates ``epoch = 1..epochs``,
        ``step = 1..T`` and ``time(step) = -(1/2) log alpha_bar[step]``, the physical time of the
        forward Ornstein-Uhlenbeck process [BBBM24] (``docs/theory.md``, "The forward process and noise
        schedules").

    Raises
    ------
    ValueError
        If ``loss`` is not 2-d, or ``alpha_bar`` is not (T + 1,) with values in (0, 1].
    """
    loss = np.asarray(loss, dtype=np.float64)
    if loss.ndim != 2:
        raise ValueError(f"loss must have shape (epochs, T), got {loss.shape}")
    alpha_bar = np.asarray(alpha_bar, dtype=np.float64)
    T = loss.shape[1]
    if alpha_bar.shape != (T + 1,):
        raise ValueError(f"alpha_bar must have shape (T + 1,) = ({T + 1},) for steps 0..T, got {alpha_bar.shape}")
    if not np.all((alpha_bar > 0) & (alpha_bar <= 1)):
        raise ValueError("alpha_bar must lie in (0, 1]")
    one = {"units": "1"}
    return xr.Dataset(
        {"loss": (("epoch", "step"), loss, {**one, "long_name": "mean training loss of the step's net"})},
        coords={"epoch": ("epoch", np.arange(1, loss.shape[0] + 1), {**one, "long_name": "training epoch"}),
                "step": ("step", np.arange(1, T + 1), {**one, "long_name": "diffusion step"}),
                "time": ("step", -0.5 * np.log(alpha_bar[1:]),
                         {**one, "long_name": "physical time -(1/2) log alpha_bar"})},
        attrs=dict(attrs or {}),
    )
