"""Sweeps: a registered study mapped over a grid of its ``Params`` on dask.distributed.

Each grid point is one task that runs :func:`physdiff.study` in a worker; the points' Datasets are
merged with :func:`xarray.combine_by_coords` into one Dataset per output, with the grid's
parameters as dimensions. A point that raises is reported and the others are kept; with ``out``
given, each point is written as an ordinary study run into ``out/points/<label>/`` (a run that is
there is complete, since study outputs are moved into place only when finished), so a re-run skips
the points that already exist and only computes the rest.

The engine is dask.distributed: a :class:`distributed.LocalCluster` by default, or any running
scheduler (a SLURM or Kubernetes cluster) by address. Each worker's numerical threads are pinned
(``NUMBA_NUM_THREADS``, ``OMP_NUM_THREADS``, torch's intra-op threads) so that workers do not
oversubscribe the cores.
"""

from __future__ import annotations

import itertools
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from .._util import PhysdiffError, check_positive_int

__all__ = ["SweepResult", "sweep", "parse_grid", "grid_points", "point_label"]

INSTALL_HINT = "physdiff sweep needs dask.distributed: pip install 'physdiff[dask]'"


@dataclass
class SweepResult:
    """What a sweep gives back.

    Attributes
    ----------
    datasets : dict[str, xarray.Dataset]
        One Dataset per study output (``"speciation"``, ...), the grid's parameters as dimensions.
        Grid points that failed are missing (NaN where the other points span them).
    failures : dict[str, str]
        ``point_label -> "ExceptionType: message"`` for every point that raised.
    points : list[dict]
        The grid points, in the order of the grid.
    """

    datasets: dict
    failures: dict = field(default_factory=dict)
    points: list = field(default_factory=list)


def _convert(name: str, typ, text: str):
    base = typing.get_args(typ)[0] if typing.get_origin(typ) is tuple else typ
    if base is bool:
        if text.lower() in ("1", "true", "yes"):
            return True
        if text.lower() in ("0", "false", "no"):
            return False
        raise ValueError(f"--grid {name}: {text!r} is not a boolean (true/false)")
    try:
        value = base(text)
    except ValueError:
        raise ValueError(f"--grid {name}: {text!r} is not a valid {base.__name__}") from None
    return (value,) if typing.get_origin(typ) is tuple else value


def parse_grid(Params, specs: Sequence[str]) -> dict[str, list]:
    """Parse ``--grid`` specifications against a study's ``Params``.

    ``"N=64,128,256"`` lists values; ``"seed=0:5"`` (or ``start:stop:step``) is Python's
    ``range`` for an integer field. Values are converted to the field's type (a tuple field takes
    one value per point).

    Raises
    ------
    ValueError
        A malformed specification, an unknown parameter (the message lists the valid ones), a
        parameter given twice, a value of the wrong type or an empty range.
    """
    from . import param_types

    types = param_types(Params)
    grid: dict[str, list] = {}
    for spec in specs:
        name, sep, values = spec.partition("=")
        name = name.strip().lstrip("-").replace("-", "_")
        if not sep or not name or not values.strip():
            raise ValueError(f"--grid must look like NAME=v1,v2,... or NAME=start:stop, got {spec!r}")
        if name not in types:
            raise ValueError(f"--grid {name}: not a parameter of this study; valid: {', '.join(types)}")
        if name in grid:
            raise ValueError(f"--grid {name} given twice; list all its values in one --grid")
        if ":" in values:
            if types[name] is not int:
                raise ValueError(f"--grid {name}: a range start:stop needs an integer parameter")
            try:
                bounds = [int(v) for v in values.split(":")]
                grid[name] = list(range(*bounds))
            except (ValueError, TypeError):
                raise ValueError(f"--grid {name}: {values!r} is not start:stop[:step] of integers") from None
        else:
            grid[name] = [_convert(name, types[name], v.strip()) for v in values.split(",")]
        if not grid[name]:
            raise ValueError(f"--grid {name}: {values!r} gives no values")
    return grid


def grid_points(grid: Mapping[str, Sequence]) -> list[dict]:
    """The Cartesian product of ``grid`` as a list of ``{name: value}`` dicts (last name fastest)."""
    names = list(grid)
    return [dict(zip(names, combo)) for combo in itertools.product(*(grid[n] for n in names))]


def point_label(point: Mapping[str, Any]) -> str:
    """A directory-safe label of one grid point, e.g. ``"N=64,seed=0"``."""
    def fmt(v):
        return "-".join(str(x) for x in v) if isinstance(v, tuple) else str(v)
    return ",".join(f"{k}={fmt(v)}" for k, v in point.items()).replace("/", "_")


def _run_point(module: str, name: str, params: dict, out_dir: str | None, threads: int) -> dict:
    """One grid point, in a worker: the study's Datasets (loaded into memory).

    The study's module is imported first, so a study registered outside the package (by a user's
    own module importable on the workers) runs as well as the built-in ones. A point whose
    directory exists is complete (study outputs are moved into place only when finished): it is
    read back, not recomputed.
    """
    import importlib

    from .. import results
    from . import _runner, get

    importlib.import_module(module)
    if out_dir is not None and Path(out_dir).is_dir():
        return {p.stem: results.open_dataset(p).load() for p in sorted(Path(out_dir).glob("*.nc"))}
    return _runner.run_study(get(name), params, out=out_dir, threads=threads)


def _client(client, scheduler: str | None, workers: int | None, threads: int):
    try:
        import distributed
    except ImportError:
        raise PhysdiffError(INSTALL_HINT) from None
    if client is not None:
        return client, None
    if scheduler is not None:
        return distributed.Client(scheduler), None
    env = {"NUMBA_NUM_THREADS": str(threads), "OMP_NUM_THREADS": str(threads),
           "MKL_NUM_THREADS": str(threads), "OPENBLAS_NUM_THREADS": str(threads)}
    cluster = distributed.LocalCluster(n_workers=workers or max(1, (os.cpu_count() or 1) // threads),
                                       threads_per_worker=1, processes=True, dashboard_address=":0",
                                       env=env)
    return distributed.Client(cluster), cluster


def _combine(by_point: list[tuple[dict, dict]], grid: Mapping[str, Sequence]) -> dict:
    """One Dataset per output key, the grid's parameters as dimensions; points that failed are
    NaN (the full grid is kept, so a hole is visible, never filled with another point)."""
    import xarray as xr

    grid_names = list(grid)
    keys = sorted({k for _, dsets in by_point for k in dsets})
    combined = {}
    for key in keys:
        parts = []
        for point, dsets in by_point:
            if key in dsets:
                ds = dsets[key].drop_vars([n for n in grid_names if n in dsets[key].variables])
                parts.append(ds.assign_coords({n: point[n] for n in grid_names}).expand_dims(grid_names))
        ds = xr.combine_by_coords(parts, join="outer", coords="different", compat="no_conflicts",
                                combine_attrs="drop_conflicts")
        combined[key] = ds.reindex({n: list(grid[n]) for n in grid_names})
    return combined


def sweep(name: str, grid: Mapping[str, Sequence], *, out=None, client=None, scheduler: str | None = None,
          workers: int | None = None, threads: int = 1, progress: bool = False, **fixed) -> SweepResult:
    """Run the registered study ``name`` at every point of ``grid`` on dask.distributed.

    Parameters
    ----------
    name : str
        A registered study (``physdiff.list_studies()``).
    grid : mapping str -> sequence
        Parameter name -> values; the points are the Cartesian product (:func:`grid_points`).
    out : path, optional
        Directory of the sweep: each point's run goes to ``out/points/<label>/`` and is skipped by
        a later sweep that finds it there; the combined Datasets are written as ``out/<key>.nc``.
    client : distributed.Client, optional
        Run on this client. Otherwise ``scheduler`` (an address such as ``"tcp://host:8786"``) or
        a new :class:`distributed.LocalCluster` of ``workers`` processes (default: cores /
        ``threads``), closed at the end.
    threads : int
        Numerical threads per task (numba and torch), default 1.
    progress : bool
        A progress bar over the points.
    **fixed
        Parameters held fixed at every point (not in ``grid``).

    Returns
    -------
    SweepResult
        ``.datasets`` (one Dataset per output, grid parameters as dimensions), ``.failures``.

    Raises
    ------
    ValueError
        Unknown study or parameter, an empty grid, a parameter both in ``grid`` and ``fixed``, or
        invalid values (every point's ``Params`` is built before any work starts).
    PhysdiffError
        dask.distributed is not installed (the message says how to install it), or every point
        failed.
    """
    from . import get

    entry = get(name)
    threads = check_positive_int("threads", threads)
    if workers is not None:
        check_positive_int("workers", workers)
    if not grid:
        raise ValueError("grid is empty: give at least one parameter with its values")
    both = set(grid) & set(fixed)
    if both:
        raise ValueError(f"parameters {sorted(both)} are both swept (grid) and fixed")
    points = [{**p} for p in grid_points({k: list(v) for k, v in grid.items()})]
    for p in points:  # validate every point before any work
        entry.Params(**fixed, **p)
    out_path = Path(out) if out is not None else None
    if out_path is not None:
        (out_path / "points").mkdir(parents=True, exist_ok=True)
    client, cluster = _client(client, scheduler, workers, threads)
    try:
        by_point, failures = _gather(client, entry, points, fixed, out_path, threads, progress)
    finally:
        if cluster is not None:
            client.close()
            cluster.close()
    if not by_point:
        raise PhysdiffError(f"every point of the {name} sweep failed: " + "; ".join(
            f"{k}: {v}" for k, v in list(failures.items())[:3]))
    combined = _combine(by_point, grid)
    if out_path is not None:
        from ..results import write_dataset

        for key, ds in combined.items():
            write_dataset(ds, out_path / f"{key}.nc")
    return SweepResult(datasets=combined, failures=failures, points=points)


def _gather(client, entry, points, fixed, out_path, threads, progress):
    from distributed import as_completed

    futures = {}
    for p in points:
        label = point_label(p)
        out_dir = None if out_path is None else str(out_path / "points" / label)
        fut = client.submit(_run_point, entry.module, entry.name, {**fixed, **p}, out_dir, threads, pure=False)
        futures[fut] = (label, p)
    results, failures = {}, {}
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(points), unit="point", desc=f"sweep {entry.name}")
    for fut in as_completed(list(futures)):
        label, p = futures[fut]
        try:
            results[label] = (p, fut.result())
        except Exception as exc:  # one bad point must not lose the others
            failures[label] = f"{type(exc).__name__}: {exc}"
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    ordered = [results[point_label(p)] for p in points if point_label(p) in results]
    return ordered, failures


# ---------------------------------------------------------------------------------------- the CLI

def add_sweep_parser(subparsers):
    """Add ``physdiff sweep NAME --grid NAME=VALUES ... --out DIR [study flags]`` to ``subparsers``.

    The flags after NAME are parsed by :func:`cli_main` together with the study's own flags.
    """
    import argparse

    p = subparsers.add_parser(
        "sweep", help="map a registered study over a grid of its parameters (dask.distributed)",
        description="Run a registered study at every point of a grid on dask.distributed: "
                    "physdiff sweep NAME --grid N=64,128 --grid seed=0:5 --out DIR [--workers K | "
                    "--scheduler ADDRESS] [--PARAM VALUE ...]. physdiff sweep NAME --help lists the flags.")
    p.add_argument("study_name", metavar="NAME", help="the study (physdiff study --list)")
    p.add_argument("sweep_args", nargs=argparse.REMAINDER, metavar="...", help="--grid, --out and the study's flags")
    return p


def _sweep_parser(entry):
    import argparse

    from . import _runner

    p = argparse.ArgumentParser(prog=f"physdiff sweep {entry.name}", description=f"sweep of: {entry.title}")
    own = p.add_argument_group("sweep options")
    own.add_argument("--grid", action="append", default=[], metavar="NAME=VALUES",
                     help="a swept parameter: NAME=v1,v2,... or NAME=start:stop[:step] (integers); repeat for more")
    own.add_argument("--out", required=True, help="sweep directory: points/<label>/ per point, <output>.nc combined")
    own.add_argument("--workers", type=int, default=None, help="LocalCluster worker processes (default: cores)")
    own.add_argument("--scheduler", default=None, help="address of a running dask scheduler (tcp://host:8786)")
    own.add_argument("--threads", type=int, default=1, help="numba/torch threads per point (default 1)")
    own.add_argument("--no-progress", action="store_true", help="no progress bar")
    _runner._add_param_flags(p, entry)
    return p


def cli_main(args) -> int:
    """``physdiff sweep NAME ...``: returns the exit status (0; 1 if some points failed; 2 for a
    user error, with one line on stderr; 130 on Ctrl-C)."""
    import dataclasses
    import sys

    from . import get

    try:
        entry = get(args.study_name)
        try:
            opts = _sweep_parser(entry).parse_args(args.sweep_args)
        except SystemExit as exc:  # --help (0) or a malformed flag (2, message printed)
            return int(exc.code or 0)
        if not opts.grid:
            raise ValueError("--grid: give at least one swept parameter, e.g. --grid seed=0:4")
        if opts.workers is not None and opts.scheduler is not None:
            raise ValueError("--workers and --scheduler exclude each other: a running scheduler has its own workers")
        grid = parse_grid(entry.Params, opts.grid)
        fields = [f.name for f in dataclasses.fields(entry.Params)]
        fixed = {k: tuple(v) if isinstance(v, list) else v for k in fields if k not in grid
                 for v in [getattr(opts, k)]}
        res = sweep(entry.name, grid, out=opts.out, scheduler=opts.scheduler, workers=opts.workers,
                    threads=opts.threads, progress=not opts.no_progress, **fixed)
    except (ValueError, FileNotFoundError, FileExistsError, PermissionError, PhysdiffError) as exc:
        print(f"physdiff: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("physdiff: interrupted", file=sys.stderr)
        return 130
    done = len(res.points) - len(res.failures)
    print(f"sweep {entry.name}: {done} of {len(res.points)} points done; combined into "
          f"{', '.join(f'{k}.nc' for k in res.datasets)} in {opts.out}")
    for label, message in res.failures.items():
        print(f"  point {label} failed: {message}", file=sys.stderr)
    return 1 if res.failures else 0
