"""matplotlib figures drawn from physdiff's Datasets.

Each ``plot_*`` function takes a Dataset of a study (or of a train/sample job), laid out by the
convention of ``docs/design.md``, "Conventions": rows indexed by the diffusion step ``step`` (or by
the physical time ``time`` when a Dataset is indexed by time, like the potentials), physical times
in the coordinate ``time`` and theory curves along ``time_curve``. It draws into ``ax`` (or
``axes``) if given, else into a new figure, and returns the :class:`matplotlib.figure.Figure`;
nothing is written. :func:`save_figure` writes a figure atomically. The backend is never chosen
here: a notebook shows the figures inline, and a script without a display falls back to Agg (set
``MPLBACKEND=Agg`` to force it).
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ._util import atomic_path
from .theory.gaussian import PHI_SPECIATION

__all__ = ["save_figure", "plot_samples", "plot_loss", "plot_potential", "plot_speciation",
           "plot_score_comparison", "plot_magnetization_trajectories", "plot_histograms",
           "plot_speciation_vs_N"]


def save_figure(fig: Figure, path: str | os.PathLike, dpi: int = 110) -> Path:
    """Save ``fig`` atomically at ``path`` (format from the suffix, PNG by default), close it and
    return the path."""
    path = Path(path)
    fmt = path.suffix.lstrip(".") or "png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return path


def _one_ax(ax, figsize):
    """(figure, axes): ``ax`` and its figure, or a new figure of ``figsize`` with one axes."""
    if ax is None:
        fig, ax = plt.subplots(figsize=figsize)
        return fig, ax
    return ax.figure, ax


def _n_axes(axes, n: int, figsize):
    """(figure, list of n axes): the given ``axes`` (n of them) or a new row of n panels."""
    if axes is None:
        fig, grid = plt.subplots(1, n, figsize=figsize, squeeze=False)
        return fig, list(grid[0])
    axes = list(np.ravel(axes))
    if len(axes) < n:
        raise ValueError(f"axes must hold {n} Axes, got {len(axes)}")
    return axes[0].figure, axes[:n]


def _row_dim(ds: xr.Dataset) -> str:
    """The dimension that indexes the rows of ``ds``: ``step``, else ``time``.

    Raises ValueError when ``ds`` has neither (e.g. an older ``t``/``physical_time`` layout).
    """
    for dim in ("step", "time"):
        if dim in ds.dims:
            return dim
    raise ValueError(f"ds must be indexed by 'step' or 'time' (docs/design.md, Conventions), "
                     f"got dimensions {tuple(ds.dims)}")


def _image_grid(imgs: np.ndarray, ax=None, columns: int | None = None) -> Figure:
    """Images ``(n, rows, cols)`` in [-1, 1] tiled into one mosaic on a single axes."""
    n, r, c = imgs.shape
    k = columns or int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / k))
    mosaic = np.full((rows * (r + 1) - 1, k * (c + 1) - 1), np.nan)
    for i, im in enumerate(imgs):
        y, x = divmod(i, k)
        mosaic[y * (r + 1):y * (r + 1) + r, x * (c + 1):x * (c + 1) + c] = np.clip(im, -1, 1)
    fig, ax = _one_ax(ax, (k * 0.9, rows * 0.9))
    cmap = plt.get_cmap("gray").with_extremes(bad="white")
    ax.imshow(mosaic, cmap=cmap, vmin=-1, vmax=1)
    ax.axis("off")
    return fig


def plot_samples(ds: xr.Dataset, *, ax=None, reference=None, max_images: int = 64, title: str | None = None) -> Figure:
    """Generated samples: a grid of images when ``ds`` has ``image``, a scatter for 2-D samples (over
    ``reference`` data (m, 2) if given), else a histogram of the magnetization ``mean(x)``."""
    title = title or f"samples ({ds.attrs.get('dataset', '')})"
    if "image" in ds:
        fig = _image_grid(ds["image"].values[:max_images], ax=ax)
        (ax or fig.axes[0]).set_title(title, fontsize=9)
        return fig
    x = ds["x"].values
    fig, ax = _one_ax(ax, (4.5, 4.5))
    if x.shape[1] == 2:
        if reference is not None:
            ref = np.asarray(reference)
            ax.scatter(ref[:, 0], ref[:, 1], s=2, c="0.75", label="data", rasterized=True)
        ax.scatter(x[:, 0], x[:, 1], s=2, c="C3", label="generated", rasterized=True)
        ax.set_aspect("equal")
        ax.legend(loc="upper right", markerscale=4, fontsize=8)
    else:
        m = x.mean(axis=1)
        ax.hist(m, bins=min(60, max(10, x.shape[1] + 1)), density=True, color="C0", alpha=0.8, label="generated")
        ax.set_xlabel("magnetization per spin  m = M/N")
        ax.set_ylabel("density")
    ax.set_title(title, fontsize=9)
    return fig


def plot_loss(ds: xr.Dataset, *, axes=None) -> Figure:
    """Training loss ``loss(epoch, step)`` of a train job (:func:`physdiff.results.loss_dataset`).

    Two panels (``axes`` holds two Axes if given): the last epoch's loss of every step's net
    against the physical time ``time(step)`` (against ``step`` when the Dataset has no ``time``),
    and the loss against epoch for a few steps.

    Raises ValueError when ``ds`` is not indexed by ``epoch`` and ``step``.
    """
    loss = ds["loss"]
    if set(loss.dims) != {"epoch", "step"}:
        raise ValueError(f"ds['loss'] must have dimensions ('epoch', 'step'), got {loss.dims}")
    fig, (a, b) = _n_axes(axes, 2, (9, 3.5))
    if axes is None:
        fig.set_layout_engine("constrained")
    has_time = "time" in loss.coords
    x = loss["time"] if has_time else loss["step"]
    a.plot(x, loss.isel(epoch=-1), lw=1, marker=".", ms=3)
    a.set_xlabel("physical time  -(1/2) log alpha_bar" if has_time else "step")
    a.set_ylabel(f"loss (epoch {int(loss['epoch'][-1])})")
    a.set_yscale("log")
    T = loss.sizes["step"]
    for k in sorted({0, T // 10, T // 2, T - 1}):
        row = loss.isel(step=k)
        label = f"step {int(row['step'])}" + (f" (time {float(row['time']):.2g})" if has_time else "")
        b.plot(loss["epoch"], row, marker="o", ms=3, label=label)
    b.set_xlabel("epoch")
    b.xaxis.set_major_locator(MaxNLocator(integer=True))
    b.set_ylabel("loss")
    b.set_yscale("log")
    b.legend(fontsize=8)
    a.set_title("per-step training loss", fontsize=10)
    return fig


def _time_colors(n):
    return plt.cm.viridis(np.linspace(0, 0.95, n))


def plot_potential(ds: xr.Dataset, *, axes=None, variables=("V", "U"), asymptotic_suffix: str = "_asymptotic",
                   speciation_time: float | None = None) -> Figure:
    """Potentials ``<var>(time, mu)`` (or ``(step, mu)`` with a ``time`` coordinate) along mu at
    several times (one panel per variable present in ``ds``; ``axes`` holds that many Axes if
    given), each shifted to 0 at mu = 0, with their large-N forms (variables named
    ``<var>_asymptotic``) dashed."""
    dim = _row_dim(ds)
    present = [v for v in variables if v in ds]
    fig, axes = _n_axes(axes, len(present), (5 * len(present), 4))
    mu = ds["mu"].values
    i0 = int(np.argmin(np.abs(mu)))
    taus = ds["time"].values
    colors = _time_colors(taus.size)
    rows = {v: ds[v].transpose(dim, "mu").values for v in ds.data_vars if set(ds[v].dims) == {dim, "mu"}}
    for ax, var in zip(axes, present):
        for k, tau in enumerate(taus):
            v = rows[var][k]
            ax.plot(mu, v - v[i0], color=colors[k], lw=1.5, label=f"t = {tau:.2f}")
            asym = var + asymptotic_suffix
            if asym in rows:
                va = rows[asym][k]
                ax.plot(mu, va - va[i0], color=colors[k], lw=1, ls="--")
        ax.set_xlabel(r"$\mu = \sum_i x_i/\sqrt{N}$")
        name = {"V": r"density potential $V = -\log P_t(\mu)$",
                "U": r"drift potential $U = -\mu^2/2 - 2\log P_t(\mu)$"}.get(var, var)
        ax.set_ylabel(name)
        lo, hi = np.nanpercentile(rows[var] - rows[var][:, i0:i0 + 1], [0, 60])
        ax.set_ylim(lo - 0.5, hi + 0.5)
    axes[0].legend(fontsize=7, title="physical time", title_fontsize=7)
    ts = speciation_time if speciation_time is not None else ds.attrs.get("speciation_time")
    N, beta, h = (_scalar(ds, k) for k in ("N", "beta", "h"))
    axes[0].set_title(f"Curie-Weiss N={N}, beta={beta}, h={h}"
                         + (f"; t_S = {float(ts):.3f}" if ts is not None else "")
                         + "  (dashed: large-N forms)", fontsize=9, loc="left")
    return fig


def _scalar(ds: xr.Dataset, name: str):
    """A parameter of ``ds``: its scalar coordinate (or variable) ``name``, else the attribute."""
    if name in ds.variables and ds[name].ndim == 0:
        return ds[name].item()
    return ds.attrs.get(name)


def plot_histograms(ds: xr.Dataset, *, ax=None) -> Figure:
    """Forward-chain histograms of mu at several steps (``hist(step, bin)`` with ``bin_center(bin)``
    and the physical ``time(step)``) against the exact density ``P_exact(step, mu)``."""
    dim = _row_dim(ds)
    fig, ax = _one_ax(ax, (6, 4))
    taus = ds["time"].values
    colors = _time_colors(taus.size)
    centers = ds["bin_center"].values
    width = np.diff(centers).mean()
    hist = ds["hist"].transpose(dim, ...).values
    exact = ds["P_exact"].transpose(dim, "mu").values
    for k, tau in enumerate(taus):
        ax.step(centers, hist[k], where="mid", color=colors[k], lw=1, alpha=0.9)
        ax.plot(ds["mu"].values, exact[k], color=colors[k], lw=1.5, ls="--", label=f"t = {tau:.2f}")
    ax.set_xlabel(r"$\mu$")
    ax.set_ylabel(r"$P_t(\mu)$")
    ax.set_title(f"forward chain (steps) vs exact $P_t(\\mu)$ (dashed), bin width {width:.2f}", fontsize=9)
    ax.legend(fontsize=7)
    return fig


def plot_magnetization_trajectories(ds: xr.Dataset, *, ax=None, speciation_time: float | None = None,
                                    max_lines: int = 200) -> Figure:
    """Reverse trajectories ``mu(trajectory, step)`` against the physical ``time(step)``, coloured
    by the sign of the end point, with the speciation time marked."""
    mu = ds["mu"].transpose(..., _row_dim(ds)).values  # (trajectory, step)
    tau = ds["time"].values
    fig, ax = _one_ax(ax, (6.5, 4))
    final = mu[:, np.argmin(tau)]
    for i in range(min(max_lines, mu.shape[0])):
        ax.plot(tau, mu[i], lw=0.6, alpha=0.6, color="C3" if final[i] > 0 else "C0")
    ts = speciation_time if speciation_time is not None else ds.attrs.get("speciation_time")
    if ts is not None:
        ax.axvline(float(ts), color="k", ls="--", lw=1, label=f"t_S = {float(ts):.2f}")
        ax.legend(fontsize=8)
    ax.set_xlabel("physical time t (the reverse process runs from left to right)")
    ax.set_ylabel(r"$\mu = \sum_i x_i/\sqrt{N}$")
    ax.invert_xaxis()
    ax.set_title(ds.attrs.get("title", "reverse trajectories of the magnetization"), fontsize=9)
    return fig


def plot_speciation(ds: xr.Dataset, *, ax=None, level: float | None = None,
                    speciation_time_theory: float | None = None) -> Figure:
    """Cloning curve ``phi(step)`` against the physical ``time(step)`` with error bars
    (``phi_stderr``), the theory (``phi_curve(time_curve)``, else ``phi_theory(step)``), the
    ``level`` line (default: ``ds.attrs["level"]``, else 0.7752) and the measured
    (``speciation_time``) and theoretical speciation times (``speciation_time_theory``: the
    argument, else the variable or attribute of that name)."""
    fig, ax = _one_ax(ax, (6, 4))
    tau = ds["time"].values
    err = ds["phi_stderr"].values if "phi_stderr" in ds else None
    ax.errorbar(tau, ds["phi"].values, yerr=err, fmt="o", ms=3, capsize=2, label="measured")
    if "phi_curve" in ds:
        ax.plot(ds["time_curve"].values, ds["phi_curve"].values, "k-", lw=1, label="theory")
    elif "phi_theory" in ds:
        ax.plot(tau, ds["phi_theory"].values, "k-", lw=1, label="theory")
    level = float(ds.attrs.get("level", PHI_SPECIATION)) if level is None else level
    ax.axhline(level, color="0.5", lw=0.8, ls=":")
    if "speciation_time" in ds:
        ax.axvline(float(ds["speciation_time"]), color="C3", ls="--", lw=1,
                   label=f"measured t_S = {float(ds['speciation_time']):.2f}")
    ts = speciation_time_theory
    if ts is None:
        ts = ds["speciation_time_theory"] if "speciation_time_theory" in ds else ds.attrs.get("speciation_time_theory")
    if ts is not None:
        ax.axvline(float(ts), color="k", ls="--", lw=1, label=f"(1/2) log Lambda = {float(ts):.2f}")
    ax.set_xlabel("physical time t of the branching")
    ax.set_ylabel(r"$\phi(t)$ = P(same class)")
    ax.legend(fontsize=8)
    ax.set_title(ds.attrs.get("title", "cloning experiment"), fontsize=9)
    return fig


def plot_speciation_vs_N(ds: xr.Dataset, *, ax=None) -> Figure:
    """Speciation times against N (``speciation_time(beta, N, kind)``), with the (1/2) log N law."""
    fig, ax = _one_ax(ax, (6, 4))
    N = ds["N"].values
    for b in ds["beta"].values:
        for j, kind in enumerate(ds["kind"].values):
            ax.plot(N, ds["speciation_time"].sel(beta=b, kind=kind), marker="os^"[j % 3], ms=4,
                    ls="-" if kind == "covariance" else ":", label=f"beta={b:g}, {kind}")
    ax.plot(N, 0.5 * np.log(N), "k--", lw=1, label=r"$\frac{1}{2}\log N$")
    ax.set_xscale("log")
    ax.set_xlabel("N")
    ax.set_ylabel("speciation time (physical)")
    ax.legend(fontsize=7)
    return fig


def plot_score_comparison(ds: xr.Dataset, *, axes=None, speciation_time: float | None = None) -> Figure:
    """Learned vs exact score against the physical ``time(step)``: ``relative_error`` (with its
    ``_parallel``/``_orthogonal`` parts if present) and ``cosine`` (two panels; ``axes`` holds two
    Axes if given)."""
    fig, (a, b) = _n_axes(axes, 2, (10, 3.8))
    tau = ds["time"].values
    a.plot(tau, ds["relative_error"], label="total")
    for v, lab in (("relative_error_parallel", "magnetization direction"),
                   ("relative_error_orthogonal", "orthogonal")):
        if v in ds:
            a.plot(tau, ds[v], lw=1, label=lab)
    a.set_yscale("log")
    a.set_ylabel("relative squared error")
    b.plot(tau, ds["cosine"])
    b.set_ylabel("cosine(learned, exact)")
    ts = speciation_time if speciation_time is not None else ds.attrs.get("speciation_time")
    for ax in (a, b):
        ax.set_xscale("log")
        ax.set_xlabel("physical time t")
        if ts is not None:
            ax.axvline(float(ts), color="k", ls="--", lw=1)
    a.legend(fontsize=8)
    return fig
