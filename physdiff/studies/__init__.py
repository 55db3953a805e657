"""The studies of physdiff, one module each, registered by name.

A study is a module ``physdiff/studies/<module>.py`` (snake_case) that defines

* ``Params``, a frozen dataclass decorated with :func:`register` (typed fields whose defaults are
  the quick settings; every field has ``metadata={"help": ...}``; ``"coord": True`` marks the
  parameters a sweep would vary; a ``seed: int`` field is required; studies that use torch have
  ``device: str``);
* ``run(params, progress=False) -> dict[str, xarray.Dataset]`` (computes, writes nothing);
* ``plot(datasets) -> dict[str, matplotlib.figure.Figure]`` (draws from the Datasets only);
* ``TINY: dict``, Params overrides that run in a few seconds on one core (used by the tests).

Use :func:`list_studies`, :func:`get` and :func:`study` (the same function behind
``physdiff study NAME``). Modules are found lazily with :mod:`pkgutil` on first use; a module that
fails to import raises an ``ImportError`` that names it.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["register", "get", "list_studies", "study", "Study"]

_NAME = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
_ALLOWED_TYPES = (int, float, str, bool, tuple[int, ...], tuple[float, ...])
_RESERVED = ("name", "out", "force", "threads", "progress", "no_progress", "list")  # the runner's own arguments

# name -> (title, Params class); filled by @register as modules are imported
_REGISTERED: dict[str, tuple[str, type]] = {}
_discovered = False


@dataclass(frozen=True)
class Study:
    """A registered study.

    Attributes
    ----------
    name : str
        Kebab-case name, as on the command line (``physdiff study NAME``).
    title : str
        One-line description.
    Params : type
        The frozen dataclass of parameters; its defaults are the CLI's.
    run : callable
        ``run(params, progress=False) -> dict[str, xarray.Dataset]``.
    plot : callable
        ``plot(datasets) -> dict[str, matplotlib.figure.Figure]``.
    TINY : dict
        Params overrides for a run of a few seconds (tests).
    module : str
        The module's dotted name.
    """

    name: str
    title: str
    Params: type
    run: Callable
    plot: Callable
    TINY: dict
    module: str


def param_types(Params: type) -> dict[str, object]:
    """The resolved type of each field of ``Params`` (string annotations evaluated)."""
    hints = typing.get_type_hints(Params)
    return {f.name: hints[f.name] for f in dataclasses.fields(Params)}


def _check_params_class(name: str, Params: type) -> None:
    if not (isinstance(Params, type) and dataclasses.is_dataclass(Params)):
        raise TypeError(f"@register({name!r}) must decorate a dataclass, got {Params!r}")
    types_ = param_types(Params)
    if "seed" not in types_ or types_["seed"] is not int:
        raise TypeError(f"study {name!r}: Params needs a field 'seed: int'")
    for f in dataclasses.fields(Params):
        if types_[f.name] not in _ALLOWED_TYPES:
            raise TypeError(f"study {name!r}: field {f.name!r} has type {types_[f.name]!r}; allowed: int, float, "
                            "str, bool, tuple[int, ...], tuple[float, ...]")
        if f.name in _RESERVED:
            raise TypeError(f"study {name!r}: field name {f.name!r} is reserved for the runner")
        if f.metadata.get("coord") and types_[f.name] not in (int, float, str, bool):
            raise TypeError(f"study {name!r}: coord field {f.name!r} must be a scalar (int, float, str, bool)")
        if not f.metadata.get("help"):
            raise TypeError(f"study {name!r}: field {f.name!r} needs metadata={{'help': ...}}")
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise TypeError(f"study {name!r}: field {f.name!r} needs a default (the quick setting)")


def register(name: str, *, title: str) -> Callable[[type], type]:
    """Class decorator: register the decorated ``Params`` dataclass as the study ``name``.

    The study's ``run``, ``plot`` and ``TINY`` are looked up in the class's module when the study
    is first requested with :func:`get`.

    Raises
    ------
    ValueError
        ``name`` is not kebab-case, or already registered by another module.
    TypeError
        ``Params`` is not a dataclass, lacks ``seed: int``, has a field without a default, without
        ``metadata["help"]`` or of a type the command line cannot parse.
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"study name must be kebab-case (e.g. 'curie-weiss'), got {name!r}")
    if not isinstance(title, str) or not title:
        raise ValueError(f"study {name!r}: title must be a non-empty string")

    def decorate(Params: type) -> type:
        _check_params_class(name, Params)
        old = _REGISTERED.get(name)
        if old is not None and old[1].__module__ != Params.__module__:
            raise ValueError(f"study name {name!r} registered twice: by {old[1].__module__} and {Params.__module__}")
        _REGISTERED[name] = (title, Params)
        return Params

    return decorate


def _discover() -> None:
    """Import every non-underscore module of this package (once)."""
    global _discovered
    if _discovered:
        return
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        modname = f"{__name__}.{info.name}"
        try:
            importlib.import_module(modname)
        except Exception as exc:
            raise ImportError(f"study module {modname} failed to import: {type(exc).__name__}: {exc}",
                              name=modname) from exc
    _discovered = True


def list_studies() -> list[str]:
    """The names of all registered studies, sorted."""
    _discover()
    return sorted(_REGISTERED)


def get(name: str) -> Study:
    """The registered study ``name``.

    Raises
    ------
    ValueError
        No study of that name (the message lists the registered ones).
    TypeError
        The study's module lacks ``run`` or ``plot`` (or ``TINY`` is not a dict).
    """
    _discover()
    if name not in _REGISTERED:
        raise ValueError(f"unknown study {name!r}; registered studies: {', '.join(sorted(_REGISTERED))}")
    title, Params = _REGISTERED[name]
    module: types.ModuleType = importlib.import_module(Params.__module__)
    for attr in ("run", "plot"):
        if not callable(getattr(module, attr, None)):
            raise TypeError(f"study {name!r}: module {module.__name__} must define a function {attr}()")
    tiny = getattr(module, "TINY", {})
    if not isinstance(tiny, dict):
        raise TypeError(f"study {name!r}: {module.__name__}.TINY must be a dict of Params overrides")
    return Study(name=name, title=title, Params=Params, run=module.run, plot=module.plot, TINY=dict(tiny),
                 module=module.__name__)


def study(name: str, out=None, progress: bool = False, *, force: bool = False, threads: int | None = None,
          **params):
    """Run the study ``name`` with ``params`` (Params fields; the others keep their defaults).

    Parameters
    ----------
    name : str
        A registered study (see :func:`list_studies`).
    out : path, optional
        If given, write each Dataset as ``<key>.nc`` and each figure as ``<key>.png`` into this
        directory (created; written to a temporary sibling and moved into place on success).
    progress : bool
        Show progress bars.
    force : bool
        Replace an existing non-empty ``out``.
    threads : int >= 1, optional
        numba and torch threads for the run (default: leave both as configured).
    **params
        Values of the study's ``Params`` fields.

    Returns
    -------
    dict[str, xarray.Dataset]
        The study's Datasets, with the global attributes ``Conventions``, ``title``, ``source``,
        ``history``, ``params`` (JSON), ``seed`` and the ``coord`` parameters as scalar coordinates.

    Raises
    ------
    ValueError
        Unknown study, unknown parameter or invalid parameter value (before any work).
    FileExistsError, PermissionError
        ``out`` cannot be written (checked before any work).
    """
    from . import _runner

    return _runner.run_study(get(name), params, out=out, force=force, progress=progress, threads=threads)
