"""The thesis' Annex II baseline on MNIST: the same per-timestep DDPM with LINEAR nets (trained here
for a few epochs; with the Gaussian init it starts at its optimum) against the ReLU checkpoint.

    physdiff train mnist --holdout 0.1 --out runs/mnist
    python studies/linear_baseline.py runs/mnist --out runs/linear_mnist --data-dir ../shared/data/mnist

A linear noise predictor can only learn the data's Gaussian fit N(mean, cov): its samples get the
pixel covariance but not the digits. Writes linear_baseline.nc (per model - relu, linear and direct
Gaussian-fit samples - the share classified 0 or 1, class shares, confidence, copy share, sliced
Wasserstein distance to held-out images, covariance error; the per-step loss of each model against
the closed-form linear optimum) and linear_baseline.png. See physdiff/experiments/mnist_studies.py.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

try:
    import physdiff  # noqa: F401
except ImportError:  # running from a source checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from physdiff.experiments.mnist_studies import linear_baseline_study


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", type=Path, help="the ReLU MNIST checkpoint directory")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--epochs", type=int, default=3, help="training epochs of the linear model")
    ap.add_argument("--n-samples", type=int, default=512)
    ap.add_argument("--n-loss-images", type=int, default=500,
                    help="training images on which every model's per-step loss is measured")
    ap.add_argument("--sigma", choices=["beta", "posterior"], default=None, help="default: the checkpoint's")
    ap.add_argument("--device", default=None, help="auto, cpu or cuda (default: the checkpoint's, auto)")
    ap.add_argument("--force", action="store_true", help="overwrite the outputs in --out")
    ap.add_argument("--progress", action="store_true", help="progress bar while training")
    a = ap.parse_args(argv)
    linear_baseline_study(a.checkpoint, a.out, epochs=a.epochs, n_samples=a.n_samples, seed=a.seed,
                          data_dir=a.data_dir, sigma=a.sigma, device=a.device, force=a.force,
                          progress=a.progress, n_loss_images=a.n_loss_images)
    return 0


if __name__ == "__main__":
    from physdiff.experiments._io import run_script

    sys.exit(run_script(main, "linear_baseline"))
