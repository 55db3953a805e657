"""``python -m physdiff`` (and ``torchrun ... -m physdiff``): the ``physdiff`` command line."""

import sys

from .cli import main

sys.exit(main())
