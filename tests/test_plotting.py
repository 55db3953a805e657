"""physdiff.plotting reads the Dataset convention (docs/design.md, "Conventions"): rows along
``step`` (or ``time``), physical times in ``time``, theory curves along ``time_curve``; every
function draws into the given ``ax``/``axes`` and returns its Figure."""

import matplotlib.pyplot as plt
import numpy as np
import pytest
import xarray as xr

from physdiff import plotting

STEPS = np.array([40, 30, 20, 10])
TIMES = np.array([2.0, 1.5, 1.0, 0.5])


def _line_x(ax, label):
    return next(ln.get_xdata() for ln in ax.get_lines() if ln.get_label() == label)


def test_speciation_reads_time_and_time_curve():
    t_curve = np.linspace(0.2, 2.5, 7)
    ds = xr.Dataset({"phi": ("step", [0.5, 0.6, 0.8, 0.95]), "phi_stderr": ("step", np.full(4, 0.02)),
                     "phi_curve": ("time_curve", np.linspace(1, 0.5, 7)), "speciation_time": ((), 1.2)},
                    coords={"step": STEPS, "time": ("step", TIMES), "time_curve": t_curve}, attrs={"level": 0.7})
    fig, ax = plt.subplots()
    assert plotting.plot_speciation(ds, ax=ax, speciation_time_theory=1.3) is fig
    np.testing.assert_array_equal(_line_x(ax, "theory"), t_curve)
    assert any(ln.get_ydata()[0] == 0.7 for ln in ax.get_lines())  # the level from attrs
    assert any(t.get_text() == "(1/2) log Lambda = 1.30" for t in ax.get_legend().get_texts())
    plt.close(fig)


def test_trajectories_and_score_use_the_time_of_each_step():
    mu = np.arange(12.0).reshape(3, 4)
    ds = xr.Dataset({"mu": (("trajectory", "step"), mu)}, coords={"step": STEPS, "time": ("step", TIMES)})
    fig, ax = plt.subplots()
    assert plotting.plot_magnetization_trajectories(ds.transpose("step", "trajectory"), ax=ax) is fig
    np.testing.assert_array_equal(ax.get_lines()[0].get_xdata(), TIMES)
    np.testing.assert_array_equal(ax.get_lines()[0].get_ydata(), mu[0])
    plt.close(fig)
    sc = xr.Dataset({"relative_error": ("step", [0.1, 0.2, 0.3, 0.4]), "cosine": ("step", [0.9, 0.8, 0.7, 0.6])},
                    coords={"step": STEPS, "time": ("step", TIMES)})
    fig, axes = plt.subplots(1, 2)
    assert plotting.plot_score_comparison(sc, axes=axes) is fig
    np.testing.assert_array_equal(_line_x(axes[0], "total"), TIMES)
    plt.close(fig)


def test_potential_indexed_by_time_and_histograms_by_step():
    mu = np.linspace(-2, 2, 9)
    V = TIMES[:, None] * mu[None, :] ** 2
    pot = xr.Dataset({"V": (("time", "mu"), V), "V_asymptotic": (("time", "mu"), V + 1)},
                     coords={"time": TIMES, "mu": mu})
    fig = plotting.plot_potential(pot, speciation_time=1.0)
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels == [f"t = {t:.2f}" for t in TIMES] and len(fig.axes) == 1
    assert len(fig.axes[0].get_lines()) == 2 * TIMES.size  # exact and large-N form per time
    plt.close(fig)
    fwd = xr.Dataset({"hist": (("step", "bin"), np.ones((4, 5))), "P_exact": (("step", "mu"), np.ones((4, 9)))},
                     coords={"step": STEPS, "time": ("step", TIMES), "bin_center": ("bin", np.linspace(-2, 2, 5)),
                             "mu": mu})
    fig = plotting.plot_histograms(fwd)
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == [f"t = {t:.2f}" for t in TIMES]
    plt.close(fig)


def test_the_old_t_layout_is_refused():
    old = xr.Dataset({"hist": (("t", "bin"), np.ones((4, 5))), "P_exact": (("t", "mu"), np.ones((4, 3)))},
                     coords={"t": STEPS, "physical_time": ("t", TIMES), "bin_center": ("bin", np.arange(5.0))})
    with pytest.raises(ValueError, match="'step' or 'time'"):
        plotting.plot_histograms(old)
    plt.close("all")


def test_loss_against_the_physical_time_of_each_step():
    from physdiff import results

    alpha_bar = np.exp(-2 * np.array([0.0, 0.1, 0.5, 1.0, 2.0]))  # times 0.1, 0.5, 1, 2 at steps 1..4
    ds = results.loss_dataset(np.arange(1.0, 9.0).reshape(2, 4), alpha_bar=alpha_bar)
    fig, axes = plt.subplots(1, 2)
    assert plotting.plot_loss(ds, axes=axes) is fig
    np.testing.assert_allclose(axes[0].get_lines()[0].get_xdata(), [0.1, 0.5, 1.0, 2.0], rtol=1e-12)
    np.testing.assert_array_equal(axes[0].get_lines()[0].get_ydata(), [5, 6, 7, 8])  # last epoch
    np.testing.assert_array_equal(axes[1].get_lines()[0].get_xdata(), [1, 2])  # epochs
    with pytest.raises(ValueError, match="step"):
        plotting.plot_loss(ds.rename(step="t"))
    plt.close(fig)
