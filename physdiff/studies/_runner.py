"""Running a registered study: Params from keywords or command-line flags, validation before any
work, threads, provenance attributes and the staged output directory.

The notebook (:func:`physdiff.study`) and the command line (``physdiff study NAME ...``) both end
in :func:`run_study`, so equal Params (and seeds) give equal numbers.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import re
import shlex
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

from .._util import PhysdiffError

__all__ = ["make_params", "run_study", "add_study_parser", "cli_main", "flag"]

_STEM = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_HARMLESS_DEVICES = ("cpu", "auto")
_USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, PermissionError, PhysdiffError)


def flag(field_name: str) -> str:
    """The command-line flag of a Params field: ``n_pairs`` -> ``--n-pairs``, ``N`` -> ``--N``."""
    return "--" + field_name.replace("_", "-")


def _field_names(study) -> list[str]:
    return [f.name for f in dataclasses.fields(study.Params)]


def make_params(study, values: Mapping | None = None):
    """``study.Params(**values)``; unknown names raise ``ValueError`` listing the valid ones.

    Validation of the values is the Params' own (``__post_init__``): a ``ValueError`` naming the
    field.
    """
    values = dict(values or {})
    names = _field_names(study)
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ValueError(f"study {study.name!r} has no parameter(s) {', '.join(unknown)}; "
                         f"its parameters: {', '.join(names)}")
    return study.Params(**values)


def _check_threads(threads) -> int | None:
    if threads is None:
        return None
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be an integer >= 1, got {threads!r}")
    import numba

    if threads > numba.config.NUMBA_NUM_THREADS:
        raise ValueError(f"threads must be <= {numba.config.NUMBA_NUM_THREADS} (numba's thread pool), got {threads}")
    return threads


@contextlib.contextmanager
def _pinned_threads(threads: int | None) -> Iterator[None]:
    """Run with ``threads`` numba and torch threads (None: leave both as they are)."""
    if threads is None:
        yield
        return
    import numba
    import torch

    old_numba, old_torch = numba.get_num_threads(), torch.get_num_threads()
    numba.set_num_threads(threads)
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        numba.set_num_threads(old_numba)
        torch.set_num_threads(old_torch)


def _api_history(name: str, params) -> str:
    values = {f.name: getattr(params, f.name) for f in dataclasses.fields(params)}
    args = ", ".join([repr(name), *(f"{k}={v!r}" for k, v in values.items())])
    return f"physdiff.study({args})"


def _check_outputs(study, datasets, kind: str, cls) -> None:
    if not isinstance(datasets, Mapping):
        raise TypeError(f"study {study.name!r}: {kind}() must return a dict, got {type(datasets).__name__}")
    for key, value in datasets.items():
        if not (isinstance(key, str) and _STEM.match(key)):
            raise TypeError(f"study {study.name!r}: {kind}() key {key!r} is not a valid file stem")
        if not isinstance(value, cls):
            raise TypeError(f"study {study.name!r}: {kind}()[{key!r}] is a {type(value).__name__}, "
                            f"not a {cls.__name__}")


def _compute(study, params, progress: bool, history: str) -> dict:
    import xarray as xr

    from .. import results

    datasets = study.run(params, progress=progress)
    _check_outputs(study, datasets, "run", xr.Dataset)
    return {key: results.describe(ds, title=study.title, params=params, seed=params.seed, history=history)
            for key, ds in datasets.items()}


def _write(study, datasets: dict, directory: Path) -> None:
    from matplotlib.figure import Figure

    from .. import plotting, results

    for key, ds in datasets.items():
        results.write_dataset(ds, directory / f"{key}.nc")
    figures = study.plot(datasets)
    try:
        _check_outputs(study, figures, "plot", Figure)
        for key, fig in figures.items():
            plotting.save_figure(fig, directory / f"{key}.png")
    finally:
        import matplotlib.pyplot as plt

        for fig in figures.values() if isinstance(figures, Mapping) else ():
            plt.close(fig)


def run_study(study, params, *, out=None, force: bool = False, progress: bool = False,
              history: str | None = None, threads: int | None = None) -> dict:
    """Run ``study`` with ``params`` (a Params instance or a mapping of field values).

    Everything is validated first (Params, ``threads``, the ``out`` directory); then ``run`` is
    called, the global attributes added (:func:`physdiff.results.describe`), and, if ``out`` is
    given, each Dataset written as ``<key>.nc`` and each figure of ``plot`` as ``<key>.png`` into
    a staged directory moved to ``out`` on success (:func:`physdiff._util.staged_output`).

    Returns the dict of described Datasets.
    """
    if not isinstance(params, study.Params):
        params = make_params(study, params)
    threads = _check_threads(threads)
    if history is None:
        history = _api_history(study.name, params)
    with _pinned_threads(threads):
        if out is None:
            return _compute(study, params, progress, history)
        from .._util import staged_output

        with staged_output(out, force=force) as directory:
            datasets = _compute(study, params, progress, history)
            _write(study, datasets, Path(directory))
        return datasets


# ---------------------------------------------------------------------------------------- the CLI

def _add_param_flags(parser: argparse.ArgumentParser, study) -> None:
    from . import param_types

    types_ = param_types(study.Params)
    group = parser.add_argument_group("study parameters")
    for f in dataclasses.fields(study.Params):
        typ, default = types_[f.name], f.default
        help_ = f"{f.metadata['help']} (default: {default!r})".replace("%", "%%")
        if typ is bool:
            group.add_argument(flag(f.name), dest=f.name, action=argparse.BooleanOptionalAction, default=default,
                               help=help_)
        elif typ in (int, float, str):
            group.add_argument(flag(f.name), dest=f.name, type=typ, default=default, metavar=f.name.upper(),
                               help=help_)
        else:  # tuple[int, ...] or tuple[float, ...]
            group.add_argument(flag(f.name), dest=f.name, type=typ.__args__[0], nargs="+", default=default,
                               metavar=f.name.upper(), help=help_)


def _study_parser(study) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"physdiff study {study.name}", description=study.title)
    names = set(_field_names(study))
    _add_param_flags(parser, study)
    common = parser.add_argument_group("common options")
    common.add_argument("--out", required=True, help="output directory (created; written in full or not at all)")
    common.add_argument("--force", action="store_true", help="replace an existing non-empty --out")
    common.add_argument("--threads", type=int, default=None,
                        help="numba and torch threads for the run (default: leave as configured)")
    if "device" not in names:
        common.add_argument("--device", default="cpu", help="accepted for uniformity; this study does not use torch")
    common.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def _flag_message(study, message: str) -> str:
    """Rewrite field names at the start of a validation message as their flags."""
    for name in sorted(_field_names(study), key=len, reverse=True):
        if re.match(rf"{re.escape(name)}\b", message):
            return flag(name) + message[len(name):]
    return message


def add_study_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``study`` command to the ``physdiff`` parser's ``subparsers``.

    Per-study flags are parsed by :func:`cli_main` (the study modules are imported only when a
    study is run or listed).
    """
    p = subparsers.add_parser(
        "study", help="run a registered study (physdiff study --list; physdiff study NAME --help)",
        description="Run a registered study: physdiff study NAME [--PARAM VALUE ...] --out DIR. "
                    "physdiff study --list names them; physdiff study NAME --help gives a study's flags.")
    p.add_argument("--list", action="store_true", help="list the registered studies and exit")
    p.add_argument("study_name", nargs="?", metavar="NAME", help="the study")
    p.add_argument("study_args", nargs=argparse.REMAINDER, metavar="...", help="its flags")
    return p


def _list() -> int:
    from . import get, list_studies

    for name in list_studies():
        print(f"{name:<22} {get(name).title}")
    return 0


def _run_cli(name: str, argv: list[str], history: str) -> int:
    from . import get

    study = get(name)
    try:
        args = _study_parser(study).parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a malformed flag (2, message printed)
        return int(exc.code or 0)
    values = {f: getattr(args, f) for f in _field_names(study)}
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    device = getattr(args, "device", None)
    if "device" not in values and device not in _HARMLESS_DEVICES:
        raise ValueError(f"--device: study {name!r} does not use torch; leave --device out, got {device!r}")
    try:
        params = make_params(study, values)
    except ValueError as exc:
        raise ValueError(_flag_message(study, str(exc))) from None
    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads}")
    run_study(study, params, out=args.out, force=args.force, progress=not args.no_progress, history=history,
              threads=args.threads)
    return 0


def cli_main(name: str | None, argv: list[str], *, list_: bool = False, history: str | None = None) -> int:
    """``physdiff study --list`` / ``physdiff study NAME ...``; returns the exit status.

    0 on success; 2 for a user error (one line ``physdiff: error: ...`` on stderr); 130 on Ctrl-C.
    """
    if history is None:
        history = shlex.join(["physdiff", "study", *([name] if name else []), *argv])
    try:
        if list_:
            return _list()
        if not name:
            raise ValueError("give a study NAME (physdiff study --list names them)")
        return _run_cli(name, argv, history)
    except _USER_ERRORS as exc:
        print(f"physdiff: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("physdiff: interrupted", file=sys.stderr)
        return 130
