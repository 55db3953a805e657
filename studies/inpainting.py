"""The thesis' inpainting experiment: destroy a square patch of held-out MNIST images and let the
learned reverse chain generate it back, with the known pixels imposed from the forward marginal at
each step's noise level ("marginal", RePaint without resampling) or clamped to the data ("clamp",
Sohl-Dickstein et al. 2015).

    physdiff train mnist --holdout 0.1 --out runs/mnist        # a checkpoint with held-out images
    python studies/inpainting.py runs/mnist --out runs/inpaint --data-dir ../shared/data/mnist
    python studies/inpainting.py runs/mnist --out runs/inpaint18 --patch 18 --data-dir ../shared/data/mnist

Writes inpainting.nc (per fill - marginal, clamp, and the baselines train_mean and nearest_train -
the share classified as the original digit and the RMSE inside the patch; per draw the predicted
digit and RMSE) and inpainting.png (original / masked / fills). See
physdiff/experiments/mnist_studies.py.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

try:
    import physdiff  # noqa: F401
except ImportError:  # running from a source checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from physdiff.experiments.mnist_studies import inpainting_study


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", type=Path, help="MNIST checkpoint directory trained with --holdout")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--patch", type=int, default=14, help="side of the destroyed square (thesis: 14 or 18)")
    ap.add_argument("--position", type=int, nargs=2, metavar=("ROW", "COL"), default=None,
                    help="top-left corner of the patch (default: centred)")
    ap.add_argument("--method", nargs="+", choices=["marginal", "clamp"], default=["marginal", "clamp"])
    ap.add_argument("--n-images", type=int, default=None, help="held-out images used (default: all)")
    ap.add_argument("--n-inpaint", type=int, default=8, help="inpaintings per image and method")
    ap.add_argument("--sigma", choices=["beta", "posterior"], default=None, help="default: the checkpoint's")
    ap.add_argument("--device", default=None, help="auto, cpu or cuda (default: the checkpoint's, auto)")
    ap.add_argument("--force", action="store_true", help="overwrite the outputs in --out")
    a = ap.parse_args(argv)
    inpainting_study(a.checkpoint, a.out, patch=a.patch, position=a.position, methods=a.method,
                     n_images=a.n_images, n_inpaint=a.n_inpaint, seed=a.seed, data_dir=a.data_dir,
                     sigma=a.sigma, device=a.device, force=a.force)
    return 0


if __name__ == "__main__":
    from physdiff.experiments._io import run_script

    sys.exit(run_script(main, "inpainting"))
