"""Loss weighting (weighted [Ho20 eq. 12] vs L_simple), linear vs cosine schedule, and T in {40, 100,
1000}: every variant of the per-timestep DDPM trained on the same data with the same seed, with a
control (SGD) in which the per-timestep loss weight is no longer absorbed by Adam's normalisation.

    python studies/variants.py --out runs/variants                     # quick defaults, Swiss roll
    python studies/variants.py --out runs/v --variants simple weighted --epochs 20

Writes variants.nc (quality numbers per variant, per-step loss weights, held-out L_simple, the
relative parameter difference of every weighted/unweighted pair, samples), variants_quality.png,
variants_invariance.png and variants_samples.png. See physdiff/experiments/variants.py.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

try:
    import physdiff  # noqa: F401
except ImportError:  # running from a source checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from physdiff.experiments.variants import DEFAULT_VARIANTS, QUICK, VARIANTS, variants_study


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--dataset", choices=sorted(QUICK), default="swiss-roll")
    ap.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), default=list(DEFAULT_VARIANTS))
    ap.add_argument("--seed", type=int, default=0)
    q = QUICK["swiss-roll"]
    ap.add_argument("--n-train", type=int, default=None, help=f"training points (swiss roll: {q['n_train']})")
    ap.add_argument("--epochs", type=int, default=None, help=f"epochs of every variant ({q['epochs']})")
    ap.add_argument("--hidden", type=int, default=None, help=f"hidden units per net ({q['hidden']})")
    ap.add_argument("--batch", type=int, default=None, help=f"minibatch ({q['batch']})")
    ap.add_argument("--lr", type=float, default=None, help=f"Adam learning rate ({q['lr']})")
    ap.add_argument("--sgd-lr", type=float, default=None, help=f"SGD learning rate of the control ({q['sgd_lr']})")
    ap.add_argument("--n-samples", type=int, default=None, help=f"samples per variant ({q['n_samples']})")
    ap.add_argument("--n-eval", type=int, default=None, help=f"held-out points for L_simple and K ({q['n_eval']})")
    ap.add_argument("--no-bound", action="store_true", help="skip the bound K")
    ap.add_argument("--data-dir", type=Path, default=None, help="MNIST directory (--dataset mnist)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--force", action="store_true")
    ap.add_argument("--progress", action="store_true")
    a = ap.parse_args(argv)
    command = shlex.join([Path(sys.argv[0]).name, *(sys.argv[1:] if argv is None else argv)])
    res = variants_study(a.out, dataset=a.dataset, variants=a.variants, seed=a.seed, n_train=a.n_train,
                         epochs=a.epochs, hidden=a.hidden, batch=a.batch, lr=a.lr, sgd_lr=a.sgd_lr,
                         n_samples=a.n_samples, n_eval=a.n_eval, bound=not a.no_bound, data_dir=a.data_dir,
                         device=a.device, num_threads=a.threads or None, force=a.force, progress=a.progress,
                         command=command)
    quality = (("sliced_wasserstein_ratio", "energy_distance_ratio") if a.dataset == "swiss-roll"
               else ("share_in_digits", "copy_share"))
    keys = (*quality, "K_bits", "heldout_mse_mean", "train_seconds")
    print(f"{'variant':16s} " + " ".join(f"{k:>24s}" for k in keys))
    for name, row in res["variants"].items():
        print(f"{name:16s} " + " ".join(f"{row.get(k, float('nan')):24.4g}" for k in keys))
    for name, row in res["pairs"].items():
        print(f"{name}: loss weights span x{row['weight_span']:.3g}; relative parameter difference "
              f"median {row['param_rel_diff_median']:.3g} (max {row['param_rel_diff_max']:.3g}), after the first "
              f"epoch {row['param_rel_diff_first_epoch']:.3g}")
    return 0


if __name__ == "__main__":
    from physdiff.experiments._io import run_script

    sys.exit(run_script(main, "variants"))
