"""physdiff: the statistical physics of diffusion generative models.

Rooms (see DESIGN.md): ``schedules``, ``forward`` (numba), ``spins`` (numba), ``theory`` (numpy +
scipy), ``reverse``, ``datasets``, ``ddpm`` (torch, imported lazily), ``metrics``, ``results``,
``plotting`` and the ``physdiff`` command line (``cli``, with the pipelines in ``experiments``).
Sohl-Dickstein et al. (2015)'s experiments live in ``binomial`` (numba binomial diffusion) and
``sd15`` (torch, the bound K); the thesis' perceptron baseline in ``baselines``.
"""

from importlib.metadata import PackageNotFoundError, version as _version

from ._util import PhysdiffError

try:
    __version__ = _version("physdiff")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = ["PhysdiffError", "__version__"]
