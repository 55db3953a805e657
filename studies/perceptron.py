"""The thesis' perceptron baseline: a single-layer perceptron on MNIST 0 vs 1.

    python studies/perceptron.py --out runs/perceptron [--data-dir /work/shared/data/mnist]

Only the t10k file may be at hand (2 115 zeros and ones): it is split 1 600 train / 515 test,
seeded. [Thesis]: 12 665 train / 2 115 test on full MNIST, 1 test error. With ``--split train`` and
the 60k training files present, trains on the MNIST training zeros/ones and tests on t10k, as the
thesis. Writes perceptron.nc (``errors(rule, epoch)``, ``w(rule, row, col)``, attrs) and
perceptron.png.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

try:
    import physdiff  # noqa: F401
except ImportError:  # running from a source checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import xarray as xr

from physdiff.baselines import train_perceptron, train_test_split
from physdiff.datasets import load_mnist
from physdiff.results import provenance, write_dataset

SETTINGS = {"perceptron": dict(epochs=20, lr=1.0), "logistic": dict(epochs=300, lr=0.5)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--split", choices=["test", "train"], default="test",
                    help="'test': split t10k 1600/515; 'train': thesis protocol (needs the 60k files)")
    ap.add_argument("--n-train", type=int, default=1600)
    a = ap.parse_args(argv)
    if a.split == "train":
        xtr, ytr = load_mnist(a.data_dir, split="train", digits=[0, 1])
        xte, yte = load_mnist(a.data_dir, split="test", digits=[0, 1])
    else:
        x, y = load_mnist(a.data_dir, split="test", digits=[0, 1])
        xtr, ytr, xte, yte = train_test_split(x, y, a.n_train, seed=a.seed)
    rules = list(SETTINGS)
    n_ep = max(s["epochs"] for s in SETTINGS.values())
    errs = np.full((len(rules), n_ep), -1, dtype=np.int64)
    W = np.zeros((len(rules), 28, 28))
    attrs = provenance(seed=a.seed, dataset="mnist", digits=[0, 1], split=a.split, n_train=len(ytr),
                       n_test=len(yte), thesis="12665 train / 2115 test, 1 test error")
    print(f"MNIST 0 vs 1: {len(ytr)} train / {len(yte)} test images")
    for k, rule in enumerate(rules):
        m = train_perceptron(xtr, ytr, rule=rule, seed=a.seed, **SETTINGS[rule])
        errs[k, :m.train_errors.size] = m.train_errors
        W[k] = m.w.reshape(28, 28)
        tr, te = m.errors(xtr, ytr), m.errors(xte, yte)
        attrs[f"{rule}_train_errors"], attrs[f"{rule}_test_errors"] = tr, te
        print(f"  {rule:10s}: train errors {tr}/{len(ytr)} ({tr / len(ytr):.2%}), "
              f"test errors {te}/{len(yte)} ({te / len(yte):.2%})")
    ds = xr.Dataset({"train_errors": (("rule", "epoch"), errs), "w": (("rule", "row", "col"), W)},
                    coords={"rule": rules, "epoch": np.arange(1, n_ep + 1)}, attrs=attrs)
    a.out.mkdir(parents=True, exist_ok=True)
    write_dataset(ds, a.out / "perceptron.nc")
    _figure(ds, a.out / "perceptron.png")
    print(f"  wrote {a.out / 'perceptron.nc'} and .png")
    return 0


def _figure(ds, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from physdiff.plotting import save_figure

    rules = list(ds["rule"].values)
    fig, ax = plt.subplots(1, len(rules) + 1, figsize=(4 * (len(rules) + 1), 3.6))
    for k, rule in enumerate(rules):
        w = ds["w"].values[k]
        lim = np.abs(w).max() or 1.0
        ax[k].imshow(w, cmap="RdBu_r", vmin=-lim, vmax=lim)
        ax[k].set_title(f"{rule} weights\n(test errors {ds.attrs[f'{rule}_test_errors']}/{ds.attrs['n_test']})",
                        fontsize=9)
        ax[k].axis("off")
        e = ds["train_errors"].values[k]
        ax[-1].plot(ds["epoch"].values[e >= 0], e[e >= 0], label=rule)
    ax[-1].set_xscale("log")
    ax[-1].set_xlabel("epoch / step")
    ax[-1].set_ylabel("training errors")
    ax[-1].legend(fontsize=8)
    save_figure(fig, path)


if __name__ == "__main__":
    from physdiff.experiments._io import run_script

    sys.exit(run_script(main, "perceptron"))
