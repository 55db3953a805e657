"""What the MNIST studies share (not a study): the parameters of the model they analyse, the
model itself (loaded from a checkpoint or trained here), its training and held-out images, the
digit classifier, and small helpers for errors, image choice and Dataset variables.

The model is trained on the MNIST train split (the chosen digits; 12 665 zeros and ones) and
the test split's images of the same digits (2 115) are the held-out set [Thesis].
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .._util import check_positive_int

IMAGE_SHAPE = (28, 28)


@dataclass(frozen=True)
class MNISTModelParams:
    """Parameters of the MNIST model a study analyses (mixed into each study's ``Params``)."""

    checkpoint: str = field(default="", metadata={
        "help": "trained MNIST model directory (physdiff train mnist); empty: train one here"})
    data_dir: str = field(default="", metadata={"help": "folder of the MNIST IDX files; empty: the default search"})
    digits: tuple[int, ...] = field(default=(0, 1), metadata={"help": "digits to train on (without --checkpoint)"})
    n_train: int = field(default=0, metadata={
        "help": "training images (without --checkpoint, a seeded subset); 0: all of the train split's"})
    preset: str = field(default="quick", metadata={"help": "training preset (without --checkpoint)"})
    T: int = field(default=0, metadata={"help": "diffusion steps of the model trained here; 0: the preset's"})
    hidden: int = field(default=0, metadata={"help": "hidden units per net of the model trained here; 0: the preset's"})
    epochs: int = field(default=0, metadata={"help": "training epochs of the model trained here; 0: the preset's"})
    classifier_images: int = field(default=0, metadata={
        "help": "MNIST training images of the digit classifier (cached on disk); 0: all 60 000"})
    classifier_epochs: int = field(default=3, metadata={"help": "training epochs of the digit classifier"})
    device: str = field(default="cpu", metadata={"help": "torch device: cpu, auto or cuda"})

    def __post_init__(self):
        for name in ("n_train", "T", "hidden", "epochs", "classifier_images"):
            check_positive_int(name, getattr(self, name), minimum=0)
        check_positive_int("classifier_epochs", self.classifier_epochs)
        if self.classifier_images == 1:
            raise ValueError("classifier_images must be 0 (all) or >= 2, got 1")
        if not self.digits or len(set(self.digits)) != len(self.digits) or not all(0 <= d <= 9 for d in self.digits):
            raise ValueError(f"digits must be distinct digits in 0..9, got {self.digits}")
        if not isinstance(self.device, str) or not self.device:
            raise ValueError(f"device must be 'cpu', 'auto' or 'cuda[:N]', got {self.device!r}")


@dataclass
class MNISTSetup:
    """A model and its data. Images are float32 (n, 784) in [-1, 1]; labels int64 (n,)."""

    model: object
    source: str
    digits: list
    x_train: np.ndarray
    y_train: np.ndarray
    x_held: np.ndarray
    y_held: np.ndarray


def _data_dir(p):
    return p.data_dir or None


def _labels_of(x: np.ndarray, data_dir, digits) -> np.ndarray:
    """The true digit of each image of ``x``, looked up among the MNIST images of ``digits``."""
    from .. import datasets

    table = {}
    for split in ("test", "train"):
        xs, ys = datasets.load_mnist(data_dir, split=split, digits=list(digits))
        table.update(zip((r.tobytes() for r in xs), ys.tolist()))
    try:
        return np.array([table[r.tobytes()] for r in np.ascontiguousarray(x, dtype=np.float32)], dtype=np.int64)
    except KeyError:
        raise ValueError("the checkpoint's training images are not MNIST images of its digits "
                         f"{list(digits)}: is --data-dir the MNIST it was trained on?") from None


def mnist_setup(p: MNISTModelParams, progress: bool = False) -> MNISTSetup:
    """Load ``p.checkpoint`` (with its training and held-out images), or train a model here.

    Raises
    ------
    ValueError
        A checkpoint not trained on MNIST, or whose training images do not match its fingerprint.
    FileNotFoundError
        No checkpoint at ``p.checkpoint``, or the MNIST files are missing.
    """
    from .. import datasets, ddpm

    data_dir = _data_dir(p)
    if p.checkpoint:
        model = ddpm.load(p.checkpoint, device=p.device)
        meta = model.data or {}
        if meta.get("dataset") != "mnist" or model.d != 784:
            raise ValueError(f"checkpoint {p.checkpoint} is not an MNIST model (dataset={meta.get('dataset')!r}, "
                             f"d={model.d}); train one with `physdiff train mnist --out DIR`")
        digits = [int(v) for v in meta["digits"]]
        x_train = datasets.training_set(meta, data_dir=data_dir)
        y_train = _labels_of(x_train, data_dir, digits)
        x_held, y_held = datasets.heldout_set(meta, data_dir=data_dir)
        return MNISTSetup(model, p.checkpoint, digits, x_train, y_train, x_held, np.asarray(y_held, np.int64))
    digits = [int(v) for v in p.digits]
    x, meta = datasets.load_training_data("mnist", seed=p.seed, digits=digits, data_dir=data_dir)
    _, y = datasets.load_mnist(data_dir, split="train", digits=digits)
    if p.n_train and p.n_train < len(x):  # a seeded subset (tests): not rebuilt by datasets.training_set
        keep = np.sort(np.random.default_rng([p.seed, 0x7A1]).choice(len(x), p.n_train, replace=False))
        x, y = x[keep], y[keep]
        meta = dict(meta, n_train=int(len(x)), subset_of_split=True)
    cfg = ddpm.get_config("mnist", p.preset, T=p.T or None, hidden=p.hidden or None, epochs=p.epochs or None,
                          seed=p.seed, device=p.device)
    if cfg.init != "random" and cfg.hidden < x.shape[1]:  # the Gaussian and lstsq starts need hidden >= d
        cfg = cfg.replace(init="random", epochs=max(cfg.epochs, 1))
    model = ddpm.train(x, cfg, progress=progress, log=None, metadata=meta)
    x_held, y_held = datasets.heldout_set(meta, data_dir=data_dir)
    return MNISTSetup(model, f"trained here ({p.preset} preset, {len(x)} images)", digits, x, y.astype(np.int64),
                      x_held, y_held.astype(np.int64))


def classifier(p: MNISTModelParams):
    """The digit classifier of :func:`physdiff.metrics.mnist_classifier` (trained once, cached)."""
    from .. import metrics

    return metrics.mnist_classifier(_data_dir(p), epochs=p.classifier_epochs, seed=0,
                                    n_train=p.classifier_images or None)


def var(dims, data, units: str, long_name: str, **attrs):
    """A Dataset variable ``(dims, data, attrs)`` with ``units`` and ``long_name``."""
    return (dims, np.asarray(data), {"units": units, "long_name": long_name, **attrs})


def binomial_stderr(p: float, n: int) -> float:
    """Binomial standard error ``sqrt(p (1 - p) / n)`` of a share ``p`` measured on ``n`` trials."""
    return math.sqrt(max(p * (1.0 - p), 0.0) / n) if n > 0 else math.nan


def cluster_stderr(per_image) -> float:
    """Standard error of a mean over images of per-image means (draws of one image are correlated,
    so the images are the independent units): ``std(ddof=1) / sqrt(n_images)``."""
    per_image = np.asarray(per_image, dtype=np.float64)
    return float(per_image.std(ddof=1) / math.sqrt(per_image.size)) if per_image.size > 1 else math.nan


def select_images(labels: np.ndarray, n_images: int, digits, seed) -> np.ndarray:
    """Sorted indices of ``n_images`` images split as evenly as possible over ``digits`` (seeded);
    all of them when ``n_images`` is 0."""
    if n_images == 0:
        return np.arange(labels.size)
    rng = np.random.default_rng(seed)
    take = []
    for i, d in enumerate(digits):
        pool = np.flatnonzero(labels == d)
        k = n_images // len(digits) + (i < n_images % len(digits))
        take.append(rng.choice(pool, size=min(k, pool.size), replace=False))
    return np.sort(np.concatenate(take)).astype(np.int64)


def examples(labels: np.ndarray, digits, n_examples: int) -> np.ndarray:
    """Indices of figure examples: the first image of each digit in turn, ``n_examples`` in all."""
    pools = [list(np.flatnonzero(labels == d)) for d in digits]
    out = []
    while len(out) < n_examples and any(pools):
        for pool in pools:
            if pool and len(out) < n_examples:
                out.append(int(pool.pop(0)))
    return np.asarray(out, dtype=np.int64)


def mosaic(images: np.ndarray, k: int, pad: int = 2) -> np.ndarray:
    """Up to ``k * k`` images (n, rows, cols), clipped to [-1, 1], tiled row-major with ``pad``
    pixels of +1 between them, for one ``imshow``."""
    n, r, c = images.shape
    out = np.ones((k * (r + pad) - pad, k * (c + pad) - pad), dtype=np.float32)
    for i, im in enumerate(images[: k * k]):
        a, b = divmod(i, k)
        out[a * (r + pad):a * (r + pad) + r, b * (c + pad):b * (c + pad) + c] = np.clip(im, -1, 1)
    return out


def check_steps(name: str, steps, T: int = 1000) -> None:
    """Validate a tuple of steps in ``0..T`` (a ValueError naming ``name``)."""
    if not steps or any(not isinstance(s, (int, np.integer)) or s < 0 or s > T for s in steps):
        raise ValueError(f"{name} must be a non-empty list of steps in 0..{T}, got {steps}")
