"""The Curie-Weiss study as a script: the same as ``physdiff study curie-weiss``.

    python studies/curie_weiss.py --N 1000 --beta 1.5 --out runs/cw

Writes potential.nc/.png (exact and large-N V and U), forward.nc/.png (forward-chain histograms of
mu against the exact P_t(mu)), trajectories.nc/.png (exact-score reverse runs), speciation.nc and
cloning.png (phi(t) measured vs theory, measured speciation time), speciation_vs_N.nc/.png.
"""

import sys

from physdiff.cli import main

if __name__ == "__main__":
    sys.exit(main(["study", "curie-weiss", *sys.argv[1:]]))
