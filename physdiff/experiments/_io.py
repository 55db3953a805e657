"""Output-directory handling shared by the jobs: nothing is overwritten without ``force``."""

from __future__ import annotations

from pathlib import Path


def prepare_out(out, names, *, force: bool = False, resume: bool = False) -> Path:
    """Create ``out`` and refuse (``FileExistsError``) if any of ``names`` exists there, unless
    ``force`` or ``resume`` is set."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"--out {out} exists and is not a directory")
    existing = [n for n in names if (out / n).exists()]
    if existing and not (force or resume):
        raise FileExistsError(
            f"{out} already holds {', '.join(existing)}; pass --force to overwrite, --resume to continue "
            f"an interrupted training run, or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    return out


def run_script(main, name: str) -> int:
    """Run a ``studies/`` script's ``main()`` and turn the errors a user can fix (bad arguments,
    missing or existing files, :class:`~physdiff.PhysdiffError`) into one line on stderr and exit
    status 2, as the ``physdiff`` command does."""
    import sys

    from .._util import PhysdiffError

    try:
        return main()
    except (ValueError, FileNotFoundError, FileExistsError, PhysdiffError) as exc:
        print(f"{name}: error: {exc}", file=sys.stderr)
        return 2
