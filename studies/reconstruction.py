"""The thesis' reconstruction experiment: diffuse held-out MNIST images to t_start, run the learned
reverse chain back, and ask whether the digit (and the image) survive.

    physdiff train mnist --holdout 0.1 --out runs/mnist        # a checkpoint with held-out images
    python studies/reconstruction.py runs/mnist --out runs/recon --data-dir ../shared/data/mnist

t_start is counted in steps of the thesis' T = 1000 linear schedule (default 100, 200, ..., 900); the
model runs at its own step of the same physical time. Writes reconstruction.nc (per t_start: share
classified as the original digit, share whose nearest held-out image is the original, distances;
per reconstruction: predicted digit, distance), reconstruction.png (rows t_start; original, diffused,
reconstructions) and reconstruction_scores.png. [Thesis]: reliable up to about t = 400 of 1000.
See physdiff/experiments/mnist_studies.py.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

try:
    import physdiff  # noqa: F401
except ImportError:  # running from a source checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from physdiff.experiments.mnist_studies import DEFAULT_T_START, reconstruction_study


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", type=Path, help="MNIST checkpoint directory trained with --holdout")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--t-start", type=int, nargs="+", default=list(DEFAULT_T_START),
                    help="start times in steps of the thesis' T=1000 schedule (default 100 200 ... 900)")
    ap.add_argument("--n-images", type=int, default=None, help="held-out images used (default: all)")
    ap.add_argument("--n-recon", type=int, default=8, help="reconstructions per image")
    ap.add_argument("--sigma", choices=["beta", "posterior"], default=None, help="default: the checkpoint's")
    ap.add_argument("--reliable-level", type=float, default=0.9)
    ap.add_argument("--device", default=None, help="auto, cpu or cuda (default: the checkpoint's, auto)")
    ap.add_argument("--force", action="store_true", help="overwrite the outputs in --out")
    a = ap.parse_args(argv)
    reconstruction_study(a.checkpoint, a.out, t_start=a.t_start, n_images=a.n_images, n_recon=a.n_recon,
                         seed=a.seed, data_dir=a.data_dir, sigma=a.sigma, reliable_level=a.reliable_level,
                         device=a.device, force=a.force)
    return 0


if __name__ == "__main__":
    from physdiff.experiments._io import run_script

    sys.exit(run_script(main, "reconstruction"))
