"""The cloning (speciation) experiment on MNIST 0 vs 1 with a trained model [BBBM24].

    physdiff train mnist --digits 0 1 --data-dir ../shared/data/mnist --out runs/mnist
    python studies/mnist_cloning.py runs/mnist --out runs/mnist_cloning --data-dir ../shared/data/mnist

Reverse trajectories of the model are split into two clones at every step; phi(t), the share of
clone pairs that end as the same digit (a CNN classifier trained on the 10 000 MNIST test images),
is set against (1/2) log Lambda of the model's training images, the two-cluster theory and the
exact (empirical-mixture) score of the training images. Writes speciation.nc (phi with standard
errors, the class of every clone pair, crossings of 0.7752 with bootstrap errors, Lambda, the share
of clones that are neither digit, example clone pairs) and cloning.png.
See physdiff/experiments/mnist_cloning.py.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

try:
    import physdiff  # noqa: F401
except ImportError:  # running from a source checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from physdiff.experiments.mnist_cloning import mnist_cloning_study


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", type=Path, help="checkpoint directory of a two-digit MNIST model")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-dir", type=Path, default=None, help="folder of the MNIST IDX files")
    ap.add_argument("--n-pairs", type=int, default=4000, help="clone pairs (default 4000)")
    ap.add_argument("--n-mc", type=int, default=2000, help="Monte Carlo samples per step, exact-score phi")
    ap.add_argument("--n-examples", type=int, default=6, help="example clone pairs in the figure")
    ap.add_argument("--device", default="cpu", help="torch device of the model (cpu, cuda, auto)")
    ap.add_argument("--force", action="store_true", help="overwrite existing outputs")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    a = ap.parse_args(argv)
    mnist_cloning_study(a.checkpoint, a.out, n_pairs=a.n_pairs, seed=a.seed, data_dir=a.data_dir, n_mc=a.n_mc,
                        n_examples=a.n_examples, device=a.device, force=a.force,
                        progress=not a.no_progress and sys.stderr.isatty())
    print(f"wrote {a.out / 'speciation.nc'} and {a.out / 'cloning.png'}")
    return 0


if __name__ == "__main__":
    from physdiff.experiments._io import run_script

    sys.exit(run_script(main, "mnist_cloning"))
