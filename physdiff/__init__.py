"""physdiff: the statistical physics of diffusion generative models.

Rooms (see DESIGN.md): ``schedules``, ``forward`` (numba), ``spins`` (numba), ``theory`` (numpy +
scipy), ``reverse``, ``datasets``, ``ddpm`` (torch, imported lazily), ``metrics``, ``results``,
``plotting`` and the ``physdiff`` command line.
"""

from importlib.metadata import PackageNotFoundError, version as _version

from ._util import PhysdiffError

try:
    __version__ = _version("physdiff")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = ["PhysdiffError", "__version__"]
