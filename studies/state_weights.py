"""State weights against the number of training samples P (issue 5; Biroli and Mezard's claim that
P >> N samples are needed to learn the relative weight of the two Curie-Weiss states).

    python studies/state_weights.py --out runs/state_weights            # N = 64, H = 0.5, P = 16..4096

With a field h = H/N the exact ratio of the states is P(M>0)/P(M<0) -> exp(2 H m*) (2.36 at
beta = 1.5, H = 0.5). One quick-preset DDPM is trained per P on exact samples, every one with the
same number of optimizer steps (--steps, default the preset's 30 epochs x 63 minibatches = 1890;
--epochs instead fixes the epochs), into OUT/P<P>/ (reused when already there with the same
settings; --force --retrain retrains them). Writes state_weights.nc/.png (share of M > 0 and the
ratio share(+)/share(-) per P, with standard errors, against the exact finite-N and large-N values)
and memorization.nc (copies of training configurations, of rare ones, mean largest overlap with the
training set, each against an independent exact set of P and fresh samples; t_C(P)), and prints
the table. See physdiff/experiments/state_weights.py.
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

from physdiff.experiments.state_weights import state_weight_scan


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--N", type=int, default=64, help="spins (default 64)")
    ap.add_argument("--beta", type=float, default=1.5)
    ap.add_argument("--H", type=float, default=0.5, help="total field; per-spin h = H/N (default 0.5)")
    ap.add_argument("--P", type=int, nargs="+", default=[16, 64, 256, 1024, 4096], help="training-set sizes")
    ap.add_argument("--steps", type=int, default=None, help="optimizer steps per model (default: the preset's)")
    ap.add_argument("--epochs", type=int, default=None, help="the same number of epochs for every P instead")
    ap.add_argument("--n-generate", type=int, default=4000, help="generated samples per model (default 4000)")
    ap.add_argument("--preset", default="quick")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: small nets)")
    ap.add_argument("--force", action="store_true", help="overwrite the outputs (and checkpoints of other settings)")
    ap.add_argument("--retrain", action="store_true", help="with --force: retrain matching checkpoints too")
    ap.add_argument("--no-progress", action="store_true", help="no progress bars")
    a = ap.parse_args(argv)
    command = shlex.join(["python", "studies/state_weights.py", *(sys.argv[1:] if argv is None else argv)])
    state_weight_scan(a.out, N=a.N, beta=a.beta, H=a.H, P_values=a.P, seed=a.seed, steps=a.steps,
                      epochs=a.epochs, n_generate=a.n_generate, preset=a.preset, device=a.device,
                      num_threads=a.threads, force=a.force, retrain=a.retrain, progress=not a.no_progress, command=command)
    return 0


if __name__ == "__main__":
    from physdiff.experiments._io import run_script

    sys.exit(run_script(main, "state_weights"))
