"""The ``physdiff`` command line: parses arguments and calls the package's rooms, nothing else.

Commands (each writes into ``--out``, creating it; nothing is overwritten without ``--force``)::

    physdiff train mnist       [--digits 0 1] [--preset quick|thesis] [--data-dir DIR] [--device auto|cpu|cuda[:N]]
    physdiff train swiss-roll  [--turns 2|3] [--preset ...]
    physdiff train curie-weiss --N N --beta B [--h H] [--n-train P]
                               [--resume | --force] [--checkpoint-every SECONDS]
    physdiff sample CHECKPOINT_DIR -n 64 --out FILE.nc [--sampler ancestral|ddim] [--steps K] [--allow-partial]
    physdiff study --list
    physdiff study NAME [--PARAM VALUE ...] --out DIR [--force] [--threads K] [--no-progress]
    physdiff sweep NAME --grid N=64,128 --grid seed=0:4 --out DIR [--workers K | --scheduler ADDR]
"""

from __future__ import annotations

import argparse
import contextlib
import shlex
import sys
import warnings

from . import __version__
from .studies import _runner, _sweep

__all__ = ["main", "build_parser"]


def _add_common(p: argparse.ArgumentParser, out_required: bool = True) -> None:
    p.add_argument("--out", required=out_required, help="output directory (created; a symlink is followed)")
    p.add_argument("--force", action="store_true", help="replace a run in --out once the new one has completed")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")


def _add_train_common(p: argparse.ArgumentParser) -> None:
    _add_common(p)
    p.add_argument("--preset", default="quick", help="hyper-parameter preset: quick (CPU, minutes) or thesis "
                   "(the thesis' Table 2, meant for a GPU)")
    p.add_argument("--device", default="auto", help="torch device: auto, cpu, cuda or cuda:N (default auto)")
    p.add_argument("--epochs", type=int, default=None, help="override the preset's number of epochs")
    p.add_argument("--T", type=int, default=None, help="override the preset's number of steps")
    p.add_argument("--hidden", type=int, default=None, help="override the preset's hidden size")
    p.add_argument("--lr", type=float, default=None, help="override the preset's Adam learning rate")
    p.add_argument("--chunk", type=int, default=None, metavar="NETS",
                   help="nets trained at once (default: as many as fit in memory; under torchrun at most T/ranks)")
    p.add_argument("--activation", default=None, choices=["relu", "linear"], help="hidden units (default relu)")
    p.add_argument("--loss", default=None, choices=["simple", "weighted"], help="Ho et al. L_simple or eq. 12")
    p.add_argument("--init", default=None, choices=["random", "gaussian", "lstsq"],
                   help="initialise the nets at random, at the exact eps of the data's Gaussian fit, or at a least-squares "
                        "fit of data-aligned units (lstsq)")
    p.add_argument("--n-samples", type=int, default=256, help="samples generated after training (default 256)")
    p.add_argument("--resume", action="store_true", help="continue the interrupted run of --out (bit for bit)")
    p.add_argument("--checkpoint-every", type=float, default=60.0, metavar="SECONDS",
                   help="seconds between checkpoints of the running chunk of nets; finished chunks are saved at "
                   "once (default 60)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def _check_flags(args) -> None:
    """Validate every train/sample flag before any work; ValueError naming the flag."""
    import math

    def at_least(flag: str, value, minimum) -> None:
        if value is not None and value < minimum:
            raise ValueError(f"{flag} must be >= {minimum}, got {value}")

    at_least("--seed", args.seed, 0)
    if args.command == "sample":
        at_least("-n", args.n, 1)
        at_least("--steps", args.steps, 1)
    else:
        for flag, minimum in (("--n-samples", 1), ("--epochs", 0), ("--T", 1), ("--hidden", 1), ("--chunk", 1),
                              ("--n-train", 2), ("--N", 1)):
            at_least(flag, getattr(args, flag.lstrip("-").replace("-", "_"), None), minimum)
        for flag in ("--checkpoint-every", "--beta", "--h", "--lr"):
            v = getattr(args, flag.lstrip("-").replace("-", "_"), None)
            if v is not None and not math.isfinite(v):
                raise ValueError(f"{flag} must be finite, got {v}")
        at_least("--checkpoint-every", args.checkpoint_every, 0)
        if args.lr is not None and not args.lr > 0:
            raise ValueError(f"--lr must be > 0, got {args.lr}")
        at_least("--beta", getattr(args, "beta", None), 0)
        for digit in getattr(args, "digits", None) or []:
            if not 0 <= digit <= 9:
                raise ValueError(f"--digits must be digits 0..9, got {digit}")
        if args.resume and args.force:
            raise ValueError("--resume and --force exclude each other: continue the interrupted run, or replace it")
    from ._util import resolve_device

    try:
        resolve_device(args.device)
    except ValueError as exc:
        raise ValueError(f"--device: {exc}") from None


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``physdiff`` command."""
    parser = argparse.ArgumentParser(prog="physdiff", description="physdiff: statistical physics of diffusion generative models",
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"physdiff {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train a per-timestep autoencoder DDPM")
    tsub = train.add_subparsers(dest="dataset", required=True)
    p = tsub.add_parser("mnist", help="MNIST digits (IDX files): trains on every image of --digits in the train "
                        "split; the test split is the held-out set", description="Trains on every image of --digits "
                        "in the MNIST train split (12 665 zeros and ones); the test split (2 115) is the held-out set "
                        "of the quality numbers and the studies. (The former --holdout split of the test set is gone.)")
    p.add_argument("--digits", type=int, nargs="+", default=[0, 1], help="digits to train on (default 0 1)")
    p.add_argument("--data-dir", default=None, help="folder with the MNIST IDX files (else $PHYSDIFF_DATA, then data/mnist)")
    p.add_argument("--download", action="store_true", help="download missing MNIST files (checksums verified)")
    _add_train_common(p)
    p = tsub.add_parser("swiss-roll", help="the thesis' 2-D spiral")
    p.add_argument("--turns", type=float, default=2.0, choices=[2.0, 3.0], help="theta in [0, turns*pi] (2 or 3)")
    p.add_argument("--n-train", type=int, default=None, help="number of training points (default: preset's)")
    _add_train_common(p)
    p = tsub.add_parser("curie-weiss", help="exact Curie-Weiss spin configurations")
    p.add_argument("--N", type=int, required=True, help="number of spins")
    p.add_argument("--beta", type=float, required=True, help="inverse temperature")
    p.add_argument("--h", type=float, default=0.0, help="per-spin external field")
    p.add_argument("--n-train", type=int, default=None, help="number of training configurations P")
    _add_train_common(p)

    p = sub.add_parser("sample", help="generate samples from a trained checkpoint")
    p.add_argument("checkpoint", help="checkpoint directory (model.safetensors + config.json)")
    p.add_argument("-n", type=int, default=64, help="number of samples")
    p.add_argument("--out", required=True, help="output FILE.nc (a PNG is written beside it), or a directory "
                   "(samples.nc and samples.png inside)")
    p.add_argument("--force", action="store_true", help="overwrite --out")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--device", default="auto", help="torch device: auto, cpu, cuda or cuda:N (default auto)")
    p.add_argument("--sigma", default=None, choices=["beta", "posterior"], help="reverse-step variance")
    p.add_argument("--sampler", default="ancestral", choices=["ancestral", "ddim"], help="reverse chain "
                   "(default ancestral)")
    p.add_argument("--steps", type=int, default=None, metavar="K", help="reverse steps on a subsequence of the "
                   "trained ones (default: all T)")
    p.add_argument("--allow-partial", action="store_true", help="sample a checkpoint whose training did not finish "
                   "(with a warning)")
    p.add_argument("--no-progress", action="store_true")

    _runner.add_study_parser(sub)
    _sweep.add_sweep_parser(sub)
    return parser


def _run_job(args, command: str, progress: bool) -> None:
    from . import jobs

    if args.command == "train":
        data_kw = {"mnist": lambda: dict(digits=args.digits, data_dir=args.data_dir, download=args.download),
                   "swiss-roll": lambda: dict(turns=args.turns, n_train=args.n_train),
                   "curie-weiss": lambda: dict(N=args.N, beta=args.beta, h=args.h, n_train=args.n_train),
                   }[args.dataset]()
        jobs.train(args.dataset, args.out, preset=args.preset, seed=args.seed, device=args.device, force=args.force,
                   resume=args.resume, progress=progress, n_samples=args.n_samples,
                   checkpoint_every=args.checkpoint_every, history=command, epochs=args.epochs, T=args.T,
                   hidden=args.hidden, lr=args.lr, chunk=args.chunk, activation=args.activation, loss=args.loss, init=args.init, **data_kw)
    elif args.command == "sample":
        jobs.sample(args.checkpoint, args.n, out=args.out, seed=args.seed, device=args.device, sigma=args.sigma,
                    sampler=args.sampler, steps=args.steps, allow_partial=args.allow_partial, force=args.force,
                    progress=progress, history=command)
        print(f"{args.n} samples written to {args.out}")


@contextlib.contextmanager
def _warnings_as_lines():
    """Show warnings (e.g. a partial checkpoint) as one line ``physdiff: warning: ...`` on stderr."""
    def show(message, category, filename, lineno, file=None, line=None):
        print(f"physdiff: warning: {message}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.showwarning = show
        yield


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``physdiff`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    if args.command == "study":
        return _runner.cli_main(args.study_name, args.study_args, list_=args.list)
    if args.command == "sweep":
        return _sweep.cli_main(args)
    from ._util import PhysdiffError

    command = shlex.join(["physdiff", *(sys.argv[1:] if argv is None else argv)])
    progress = not getattr(args, "no_progress", False)
    try:
        _check_flags(args)
        with _warnings_as_lines():
            _run_job(args, command, progress)
    except (ValueError, FileNotFoundError, FileExistsError, PermissionError, PhysdiffError) as exc:
        print(f"physdiff: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("physdiff: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
