"""How robust is the learned speciation time? Train the quick-preset Curie-Weiss DDPM with several
training seeds (and numbers of epochs) and measure each model's cloning crossing phi = 0.7752,
against the exact score's and the exact theory's (issue 5).

    python studies/speciation_scan.py --out runs/speciation_scan        # N = 64, seeds 0-4, epochs 10/30/60

Each seed changes the training set (4000 exact configurations), the initialisation, the minibatch
order and the noise. Checkpoints go to OUT/seed<S>_epochs<E>/ (reused when already there with the
same settings; --force --retrain retrains them). Writes speciation_scan.nc (phi(run, t), the
learned speciation time per run with its bootstrap error, the depth of the learned double well of
V(mu, t) before t_S, the exact-score phi, the theory and the Gaussian reference) and
speciation_scan.png, and prints mean +- sd over the seeds.
See physdiff.experiments.phase_transition.speciation_scan.
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

from physdiff.experiments.phase_transition import speciation_scan


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--N", type=int, default=64)
    ap.add_argument("--beta", type=float, default=1.5)
    ap.add_argument("--h", type=float, default=0.0, help="per-spin field")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4], help="training seeds")
    ap.add_argument("--epochs", type=int, nargs="+", default=[10, 30, 60],
                    help="numbers of epochs tried with the first seed")
    ap.add_argument("--n-pairs", type=int, default=2000, help="clone pairs per learned model")
    ap.add_argument("--n-pairs-exact", type=int, default=1000, help="clone pairs with the exact score")
    ap.add_argument("--preset", default="quick")
    ap.add_argument("--seed", type=int, default=0, help="seed of the measurements")
    ap.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: small nets)")
    ap.add_argument("--force", action="store_true", help="overwrite the outputs (and checkpoints of other settings)")
    ap.add_argument("--retrain", action="store_true", help="with --force: retrain matching checkpoints too")
    ap.add_argument("--no-progress", action="store_true", help="no progress bars")
    a = ap.parse_args(argv)
    command = shlex.join(["python", "studies/speciation_scan.py", *(sys.argv[1:] if argv is None else argv)])
    speciation_scan(a.out, N=a.N, beta=a.beta, h=a.h, seeds=a.seeds, epochs=a.epochs, n_pairs=a.n_pairs,
                    n_pairs_exact=a.n_pairs_exact, preset=a.preset, seed=a.seed, device=a.device,
                    num_threads=a.threads, force=a.force, retrain=a.retrain, progress=not a.no_progress, command=command)
    return 0


if __name__ == "__main__":
    from physdiff.experiments._io import run_script

    sys.exit(run_script(main, "speciation_scan"))
