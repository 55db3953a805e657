"""physdiff: the statistical physics of diffusion generative models.

The notebook front door (each name is imported on first use, so ``import physdiff`` stays light
and does not import torch)::

    import physdiff
    run = physdiff.train("swiss-roll", out="runs/sr")            # TrainResult(model, datasets)
    model = physdiff.load("runs/sr")                             # a trained DDPM
    samples = physdiff.sample("runs/sr", 512)                    # an xarray.Dataset
    fig = physdiff.plotting.plot_samples(samples)                # every plot function returns its Figure
    physdiff.list_studies()                                      # the registered studies
    ds = physdiff.study("two-cluster-cloning", out="runs/bf2")    # dict of xarray.Datasets
    figs = physdiff.studies.get("two-cluster-cloning").plot(ds)  # dict of Figures
    sw = physdiff.sweep("two-cluster-cloning", {"seed": [0, 1, 2]})  # a grid, on dask.distributed

The rooms: ``schedules`` (noise schedules), ``forward`` and ``spins`` (numba kernels),
``theory`` (closed forms; numpy and scipy only), ``reverse`` (the reverse chain and cloning for
any eps function), ``datasets`` (arrays), ``ddpm`` (torch: the per-timestep autoencoder DDPM),
``sd15`` (Sohl-Dickstein et al. 2015), ``baselines``, ``metrics``, ``results`` (self-describing
xarray Datasets and netCDF I/O), ``plotting`` (figures from Datasets), ``studies`` (one module
per registered study), ``jobs`` (the train and sample jobs) and ``cli`` (the ``physdiff`` command).
``docs/design.md`` describes the layout, ``docs/theory.md`` the formulas and their sources.
"""

from importlib.metadata import PackageNotFoundError, version as _version

from ._util import PhysdiffError

try:
    __version__ = _version("physdiff")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = ["PhysdiffError", "__version__", "train", "load", "sample", "study", "list_studies", "sweep"]

# name -> (module, attribute), imported on first access (PEP 562)
_LAZY = {
    "train": ("physdiff.jobs", "train"),
    "sample": ("physdiff.jobs", "sample"),
    "load": ("physdiff.ddpm", "load"),
    "study": ("physdiff.studies", "study"),
    "list_studies": ("physdiff.studies", "list_studies"),
    "sweep": ("physdiff.studies._sweep", "sweep"),
}

# rooms reachable as attributes without an explicit import (``physdiff.plotting.plot_samples``)
_ROOMS = ("baselines", "datasets", "ddpm", "forward", "jobs", "metrics", "plotting", "results", "reverse",
          "schedules", "sd15", "spins", "studies", "theory")


def __getattr__(name: str):
    import importlib

    if name in _LAZY:
        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    if name in _ROOMS:
        return importlib.import_module(f"physdiff.{name}")
    raise AttributeError(f"module 'physdiff' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY) | set(_ROOMS))
