"""The phase-transition study as a script: the same as ``physdiff study phase-transition``.

    physdiff train curie-weiss --N 64 --beta 1.5 --out runs/cw64
    physdiff train curie-weiss --N 64 --beta 1.5 --activation linear --out runs/cw64_linear   # optional
    python studies/phase_transition.py runs/cw64 --out runs/pt

Learned vs exact score (score.nc/.png), learned vs exact potentials of mu with the number and depth
of their minima (potential.nc/.png), Jacobian asymmetry and axis potentials of the nets
(autoencoder.nc/.png), cloning with the learned, the linear and the exact score against the exact
theory and a Gaussian of the same covariance (speciation.nc, cloning.png), learned reverse
trajectories (trajectories.nc/.png), state weights and memorisation (state_weights.nc/.png,
memorization.nc). Several checkpoints (one per training-set size P, same N, beta, h) give the state
weights and memorisation against P; studies/state_weights.py trains them itself, and
studies/speciation_scan.py repeats the cloning over training seeds.
See physdiff/experiments/phase_transition.py.
"""

import sys

from physdiff.cli import main

if __name__ == "__main__":
    sys.exit(main(["study", "phase-transition", *sys.argv[1:]]))
