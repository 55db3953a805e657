"""The thesis' perceptron baseline: a single-layer linear classifier on MNIST 0 vs 1.

Trained on the digits of the MNIST TRAIN split (12 665 zeros and ones) and tested on those of the
TEST split (2 115), as in [Thesis], which reports 1 test error of 2 115: the two digits are almost
linearly separable. Two rules (:func:`physdiff.baselines.train_perceptron`): Rosenblatt's
perceptron with averaged weights, and logistic regression by full-batch gradient descent.

    physdiff study perceptron --data-dir DIR --out runs/perceptron
    physdiff study perceptron --digits 1 3 --out runs/perceptron_13

References
----------
[Thesis] Bustinduy de la Guerra (2024), Out-of-Equilibrium Machine Learning (UCM): perceptron on
    MNIST 0 vs 1. Rosenblatt (1958), Psychological Review 65, 386. Freund, Schapire (1999),
    Machine Learning 37, 277 (averaged perceptron).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import xarray as xr

from .._util import check_positive_int, check_real
from . import register

__all__ = ["Params", "run", "plot", "TINY"]

RULES = ("perceptron", "logistic")
#: [Thesis]: test errors of the perceptron on MNIST 0 vs 1 (12 665 train / 2 115 test images).
THESIS_TEST_ERRORS = 1

#: Overrides for a run of a few seconds on one core (tests; needs the MNIST files).
TINY = dict(n_train=500, epochs_perceptron=2, epochs_logistic=10)


@register("perceptron", title="Thesis baseline: perceptron and logistic regression on MNIST 0 vs 1")
@dataclass(frozen=True)
class Params:
    """Parameters of the perceptron study (defaults: the thesis' protocol)."""

    digits: tuple[int, ...] = field(default=(0, 1), metadata={"help": "the two MNIST digits to separate"})
    n_train: int = field(default=0, metadata={"help": "use only the first N training images (0: all)"})
    epochs_perceptron: int = field(default=20, metadata={"help": "passes of the perceptron rule"})
    lr_perceptron: float = field(default=1.0, metadata={"help": "step of the perceptron rule"})
    epochs_logistic: int = field(default=300, metadata={"help": "gradient steps of the logistic rule"})
    lr_logistic: float = field(default=0.5, metadata={"help": "step of the logistic rule"})
    l2: float = field(default=1e-4, metadata={"help": "L2 penalty of the logistic rule"})
    data_dir: str = field(default="", metadata={"help": "MNIST directory (empty: physdiff.datasets' search path)"})
    seed: int = field(default=0, metadata={"help": "random seed (order of the examples)", "coord": True})

    def __post_init__(self):
        if len(self.digits) != 2 or len(set(self.digits)) != 2 or any(not 0 <= d <= 9 for d in self.digits):
            raise ValueError(f"digits must be two distinct digits in 0..9, got {self.digits!r}")
        check_positive_int("n_train", self.n_train, minimum=0)
        check_positive_int("epochs_perceptron", self.epochs_perceptron)
        check_positive_int("epochs_logistic", self.epochs_logistic)
        check_real("lr_perceptron", self.lr_perceptron, lo=0.0, lo_open=True)
        check_real("lr_logistic", self.lr_logistic, lo=0.0, lo_open=True)
        check_real("l2", self.l2, lo=0.0)
        check_positive_int("seed", self.seed, minimum=0)


def _settings(p: Params) -> dict:
    return {"perceptron": dict(epochs=p.epochs_perceptron, lr=p.lr_perceptron),
            "logistic": dict(epochs=p.epochs_logistic, lr=p.lr_logistic, l2=p.l2)}


def run(params: Params, progress: bool = False) -> dict[str, xr.Dataset]:
    """Train both rules on the training split's two digits; count errors on both splits.

    Returns
    -------
    dict
        ``{"perceptron": ds}`` with ``train_errors(rule, epoch)`` (training-set errors after each
        epoch; NaN past a rule's last epoch), ``test_errors(rule)``, ``w(rule, row, col)`` and
        ``b(rule)`` (the classifier ``sign(x . w + b)``, pixels in [-1, 1]), ``n_train``,
        ``n_test`` and ``thesis_test_errors``.

    Raises
    ------
    FileNotFoundError
        The MNIST files are not in ``data_dir`` (or the default search path).
    """
    from ..baselines import train_perceptron
    from ..datasets import load_mnist

    p = params
    data_dir = p.data_dir or None
    xtr, ytr = load_mnist(data_dir, split="train", digits=list(p.digits))
    xte, yte = load_mnist(data_dir, split="test", digits=list(p.digits))
    if p.n_train:
        xtr, ytr = xtr[: p.n_train], ytr[: p.n_train]
    settings = _settings(p)
    n_ep = max(s["epochs"] for s in settings.values())
    errs = np.full((len(RULES), n_ep), np.nan)
    W = np.zeros((len(RULES), 28, 28))
    b = np.zeros(len(RULES))
    test = np.zeros(len(RULES), dtype=np.int64)
    for k, rule in enumerate(RULES):
        m = train_perceptron(xtr, ytr, rule=rule, seed=p.seed, **settings[rule])
        errs[k, : m.train_errors.size] = m.train_errors
        W[k], b[k] = m.w.reshape(28, 28), m.b
        test[k] = m.errors(xte, yte)
    count = {"units": "1"}
    ds = xr.Dataset(
        {"train_errors": (("rule", "epoch"), errs, {**count, "long_name": "misclassified training images after "
                                                    "each epoch (logistic rule: gradient step)"}),
         "test_errors": (("rule",), test, {**count, "long_name": "misclassified test images"}),
         "w": (("rule", "row", "col"), W, {"units": "1", "long_name": "weights of sign(x . w + b) per pixel"}),
         "b": (("rule",), b, {"units": "1", "long_name": "bias of sign(x . w + b)"}),
         "n_train": ((), len(ytr), {**count, "long_name": "training images (MNIST train split)"}),
         "n_test": ((), len(yte), {**count, "long_name": "test images (MNIST test split)"}),
         "thesis_test_errors": ((), THESIS_TEST_ERRORS, {**count, "long_name": "test errors reported by the "
                                                          "thesis (12 665 train / 2 115 test, digits 0 and 1)"})},
        coords={"rule": list(RULES),
                "epoch": ("epoch", np.arange(1, n_ep + 1), {"units": "1", "long_name": "epoch"})},
        attrs={"dataset": "mnist", "digits": list(p.digits)})
    return {"perceptron": ds}


def plot(datasets: dict[str, xr.Dataset]) -> dict:
    """The weights of each rule as images, and the training errors over epochs."""
    from matplotlib.figure import Figure

    ds = datasets["perceptron"]
    rules = list(ds["rule"].values)
    fig = Figure(figsize=(4 * (len(rules) + 1), 3.6))
    ax = fig.subplots(1, len(rules) + 1)
    n_test = int(ds["n_test"])
    for k, rule in enumerate(rules):
        w = ds["w"].values[k]
        lim = np.abs(w).max() or 1.0
        ax[k].imshow(w, cmap="RdBu_r", vmin=-lim, vmax=lim)
        ax[k].set_title(f"{rule} weights\n(test errors {int(ds['test_errors'].values[k])}/{n_test})", fontsize=9)
        ax[k].axis("off")
        e = ds["train_errors"].values[k]
        ok = np.isfinite(e)
        ax[-1].plot(ds["epoch"].values[ok], e[ok], label=rule)
    ax[-1].set_xscale("log")
    ax[-1].set_yscale("symlog", linthresh=1.0)
    ax[-1].set_xlabel("epoch / gradient step")
    ax[-1].set_ylabel(f"training errors (of {int(ds['n_train'])})")
    ax[-1].legend(fontsize=8)
    return {"perceptron": fig}
