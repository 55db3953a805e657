"""Tests of the MNIST reconstruction, inpainting and linear-baseline studies
(physdiff.experiments.mnist_studies).

The thesis-step mapping keeps alpha_bar (identity on the thesis schedule itself); the patch mask is the
square it says; the closed-form optimum of an affine noise predictor equals the Monte Carlo loss of
the Gaussian-init net on Gaussian data within its standard error; the linear baseline's nets are
affine (and the ReLU nets are not); and each study runs end to end on a tiny model trained on real
MNIST (digits 0 and 1, with a held-out split), writing its Dataset with the documented dims.
"""

import math

import numpy as np
import pytest
import torch
import xarray as xr

from physdiff import datasets, ddpm, metrics
from physdiff.experiments import mnist_studies as ms
from physdiff.experiments.train import load_training_data


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def tiny(mnist_dir):
    """A 5-step DDPM with 32 hidden units, one epoch on the 1903 training images of a 10 % hold-out
    split of the MNIST test-set zeros and ones (as `physdiff train mnist --holdout 0.1` makes it)."""
    torch.set_num_threads(1)
    x, meta = load_training_data("mnist", seed=0, digits=(0, 1), data_dir=mnist_dir, holdout=0.1)
    cfg = ddpm.TrainConfig(schedule={"name": "linear", "beta_start": 0.05, "beta_end": 0.9}, T=5, hidden=32,
                           lr=1e-3, epochs=1, batch=128, seed=0, device="cpu", sigma="posterior")
    return ddpm.train(x, cfg, progress=False, log=None, metadata=meta)


@pytest.fixture(scope="module")
def clf(mnist_dir):
    """A quick classifier (one epoch on 2000 images); the studies train a better one by default."""
    x, y = datasets.load_mnist(mnist_dir, split="test")
    return metrics.train_mnist_classifier(x[:2000], y[:2000], seed=0, epochs=1)


def _quiet(*_):
    pass


# ------------------------------------------------------------------------------------- pieces
def test_thesis_steps_map_to_the_same_alpha_bar():
    quick = ddpm.get_config("mnist", "quick").make_schedule()  # T = 50, betas rescaled by 20
    m = ms.map_thesis_steps(quick, ms.DEFAULT_T_START)
    np.testing.assert_array_equal(m["thesis_step"], np.arange(100, 1000, 100))
    # nearest in physical time: within half the model's step there, and no other step is nearer
    for tau, k in zip(m["physical_time"], m["model_step"]):
        pt = quick.physical_time
        assert abs(pt[k] - tau) <= 0.5 * max(pt[k] - pt[k - 1], pt[min(k + 1, quick.T)] - pt[k]) + 1e-12
        assert abs(pt[k] - tau) == pytest.approx(np.abs(pt - tau).min())
    np.testing.assert_allclose(m["model_physical_time"], m["physical_time"], atol=0.11)
    np.testing.assert_allclose(m["model_alpha_bar"], quick.alpha_bar[m["model_step"]])
    assert np.all(np.diff(m["model_step"]) > 0)
    # counting steps would be wrong: betas up to 0.4 make log(1 - beta) < -beta, so the rescaled chain
    # runs ahead of "thesis step = 20 x model step" late in the chain (thesis 900 is model step 42, not 45)
    assert m["model_step"][-1] < 45
    # on the thesis schedule itself the map is the identity (same alpha_bar exactly)
    ref = ms.thesis_schedule()
    same = ms.map_thesis_steps(ref, [0, 1, 400, 1000])
    np.testing.assert_array_equal(same["model_step"], [0, 1, 400, 1000])
    np.testing.assert_array_equal(same["model_alpha_bar"], same["alpha_bar"])
    for bad in ([1001], [-1], [0.5], []):
        with pytest.raises(ValueError):
            ms.map_thesis_steps(quick, bad)


def test_patch_mask():
    k14 = ms.patch_mask(14).reshape(28, 28)
    assert (~k14).sum() == 196 and not k14[7:21, 7:21].any() and k14[:7].all() and k14[21:].all()
    k18 = ms.patch_mask(18).reshape(28, 28)
    assert (~k18).sum() == 324 and not k18[5:23, 5:23].any()
    corner = ms.patch_mask(14, position=(0, 14)).reshape(28, 28)
    assert not corner[:14, 14:].any() and corner[14:].all() and corner[:, :14].all()
    for bad in (dict(patch=28), dict(patch=0), dict(patch=14, position=(15, 0)), dict(patch=14, position=(-1, 3))):
        with pytest.raises(ValueError):
            ms.patch_mask(**bad)


def test_gaussian_optimal_loss_is_the_gaussian_init_nets_loss():
    """On Gaussian data, the Monte Carlo loss of the Gaussian-init nets equals the closed form
    (1/d) sum_i s^2 lambda_i / (s^2 lambda_i + Delta) within 5 standard errors. The error vector is
    Gaussian with covariance eigenvalues mu_i = s^2 lambda_i / (s^2 lambda_i + Delta), so the mean of
    |err|^2 / d over n points has standard error sqrt(2 sum mu_i^2 / n) / d."""
    rng = np.random.default_rng(0)
    d, n = 6, 20000
    A = rng.standard_normal((d, d)) * 0.5
    cov = A @ A.T + 0.05 * np.eye(d)
    x = rng.multivariate_normal(np.linspace(-0.5, 0.5, d), cov, size=n).astype(np.float32)
    cfg = ddpm.TrainConfig(schedule={"name": "linear", "beta_start": 0.05, "beta_end": 0.5}, T=6, hidden=8,
                           epochs=1, batch=1000, seed=0, device="cpu")
    like = ddpm.train(x[:2000], cfg, progress=False, log=None)
    init = ms._gaussian_init_model(x, like)
    mc = ms.eps_loss(init, x, seed=1)
    lam = np.linalg.eigvalsh(np.cov(x.astype(np.float64), rowvar=False))
    ab = like.schedule.alpha_bar[1:]
    closed = ms.gaussian_optimal_loss(np.cov(x.astype(np.float64), rowvar=False), ab)
    mu = ab[:, None] * lam / (ab[:, None] * lam + 1 - ab[:, None])
    np.testing.assert_allclose(closed, mu.mean(axis=1))
    se = np.sqrt(2 * (mu**2).sum(axis=1) / n) / d
    assert np.all(np.abs(mc - closed) < 5 * se), (mc, closed, se)
    # a scalar alpha_bar and bad input
    assert ms.gaussian_optimal_loss(cov, 1.0) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        ms.gaussian_optimal_loss(cov, 0.0)
    with pytest.raises(ValueError):
        ms.gaussian_optimal_loss(cov[:2], 0.5)


def test_linear_baseline_model_is_affine_and_relu_is_not(tiny, mnist_dir):
    x_train = ms.training_images(tiny, mnist_dir)
    lin = ms.train_linear_baseline(tiny, x_train, epochs=1, seed=0, log=None)
    assert lin.model.activation == "linear" and lin.schedule == tiny.schedule and lin.T == tiny.T
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((2, 16, 784)).astype(np.float32)
    zero = np.zeros((16, 784), np.float32)
    a, b = 1.7, -0.6
    for t in (1, 3, tiny.T):
        f0 = lin.eps(zero, t).astype(np.float64)
        lhs = lin.eps(a * x + b * y, t) - f0
        rhs = a * (lin.eps(x, t) - f0) + b * (lin.eps(y, t) - f0)
        scale = np.abs(rhs).max()
        np.testing.assert_allclose(lhs, rhs, atol=1e-4 * scale)  # float32 rounding only
        g0 = tiny.eps(zero, t).astype(np.float64)
        lhs_r = tiny.eps(a * x + b * y, t) - g0
        rhs_r = a * (tiny.eps(x, t) - g0) + b * (tiny.eps(y, t) - g0)
        assert np.abs(lhs_r - rhs_r).max() > 1e-2 * np.abs(rhs_r).max()


def test_training_images_match_the_fingerprint(tiny, mnist_dir):
    x = ms.training_images(tiny, mnist_dir)
    assert x.shape == (1903, 784) and x.dtype == np.float32
    wrong = ddpm.DDPM(tiny.model, tiny.schedule, tiny.config, data=dict(tiny.data, holdout_indices=[0, 1, 2]))
    with pytest.raises(ValueError, match="fingerprint"):
        ms.training_images(wrong, mnist_dir)


def test_same_digit_distance():
    x = np.array([[0.0, 0.0], [3.0, 4.0], [10.0, 0.0], [10.0, 1.0]])
    out = ms.same_digit_distance(x, np.array([0, 0, 1, 1]))
    assert out["by_digit"] == {0: 5.0, 1: 1.0} and out["mean"] == pytest.approx(3.0)


# ------------------------------------------------------------------------------------- studies
def test_reconstruction_study(tiny, clf, mnist_dir, tmp_path):
    ds = ms.reconstruction_study(tiny, tmp_path / "r", t_start=[0, 100, 900], n_images=6, n_recon=3, n_show=2,
                                 seed=1, data_dir=mnist_dir, classifier=clf, log=_quiet)
    on_disk = xr.open_dataset(tmp_path / "r" / "reconstruction.nc")
    want = {"t_start": 3, "image": 6, "recon": 3, "shown": 2, "example": 2, "digit": 2}
    assert {k: on_disk.sizes[k] for k in want} == want
    assert on_disk["predicted"].dims == ("t_start", "image", "recon")
    assert on_disk["example_recon"].dims == ("t_start", "example", "shown", "row", "col")
    assert on_disk.attrs["seed"] == 1 and "physdiff_version" in on_disk.attrs
    for f in ms.RECONSTRUCTION_OUTPUTS:
        assert (tmp_path / "r" / f).is_file()
    np.testing.assert_array_equal(ds["model_step"], ms.map_thesis_steps(tiny.schedule, [0, 100, 900])["model_step"])
    assert sorted(set(ds["label"].values.tolist())) == [0, 1]  # both digits
    # t_start = 0: the reconstruction is the original
    r0 = ds.sel(t_start=0)
    assert float(r0["l2_mean"]) == 0.0 and bool(r0["nearest_is_original"].all())
    assert float(r0["share_original"]) == ds.attrs["share_original_of_originals"]
    # the rescaled diffused image is x0 + sqrt((1 - ab)/ab) eps: |.| = sqrt((1 - ab)/ab) |eps|, |eps| ~ sqrt(784)
    # (sd of |eps| ~ 0.71: 5 sigma over 6 images is < 2 %; allow 5 %)
    ab = float(ds["model_alpha_bar"].sel(t_start=900))
    assert float(ds["l2_diffused_mean"].sel(t_start=900)) == pytest.approx(math.sqrt((1 - ab) / ab * 784), rel=0.05)
    # starting later loses more of the image
    assert float(ds["l2_mean"].sel(t_start=100)) < float(ds["l2_mean"].sel(t_start=900))
    assert np.all((ds["share_original"] >= 0) & (ds["share_original"] <= 1))
    # same seed, same result; outputs are not overwritten without force
    with pytest.raises(FileExistsError):
        ms.reconstruction_study(tiny, tmp_path / "r", t_start=[100], n_images=6, n_recon=3, data_dir=mnist_dir,
                                classifier=clf, log=_quiet)
    again = ms.reconstruction_study(tiny, tmp_path / "r", t_start=[100, 900], n_images=6, n_recon=3, n_show=2,
                                    seed=1, data_dir=mnist_dir, classifier=clf, log=_quiet, force=True)
    np.testing.assert_array_equal(again["l2"].values, ds["l2"].sel(t_start=[100, 900]).values)


def test_reconstruction_needs_a_held_out_split(tiny, clf, mnist_dir, tmp_path):
    no_split = ddpm.DDPM(tiny.model, tiny.schedule, tiny.config, data=dict(tiny.data, holdout_indices=[]))
    with pytest.raises(ValueError, match="holdout"):
        ms.reconstruction_study(no_split, tmp_path, t_start=[100], data_dir=mnist_dir, classifier=clf, log=_quiet)
    other = ddpm.DDPM(tiny.model, tiny.schedule, tiny.config, data=dict(tiny.data, dataset="curie-weiss"))
    with pytest.raises(ValueError, match="MNIST"):
        ms.inpainting_study(other, tmp_path, data_dir=mnist_dir, classifier=clf, log=_quiet)


@pytest.mark.parametrize("patch", [14, 18])
def test_inpainting_study(tiny, clf, mnist_dir, tmp_path, patch):
    ds = ms.inpainting_study(tiny, tmp_path, patch=patch, n_images=4, n_inpaint=2, n_show=2, seed=0,
                             data_dir=mnist_dir, classifier=clf, log=_quiet)
    on_disk = xr.open_dataset(tmp_path / "inpainting.nc")
    assert list(on_disk["fill"].values) == ["marginal", "clamp", "train_mean", "nearest_train"]
    assert on_disk["rmse"].dims == ("inpaint_method", "image", "sample") and on_disk.sizes["sample"] == 2
    assert on_disk["baseline_rmse"].dims == ("baseline", "image") and on_disk.sizes["image"] == 4
    assert (tmp_path / "inpainting.png").is_file()
    known = ds["known"].values.reshape(-1)
    assert (~known).sum() == patch * patch
    orig = ds["example_original"].values.reshape(ds.sizes["example"], -1)
    for f in ds["fill"].values:  # every fill keeps the known pixels exactly
        fill = ds["example_fill"].sel(fill=f).values.reshape(ds.sizes["example"], -1)
        np.testing.assert_array_equal(fill[:, known], orig[:, known])
        if f in ("marginal", "clamp"):  # the stored RMSE is the one of the patch
            rm = np.sqrt(np.mean((fill[:, ~known] - orig[:, ~known]) ** 2, axis=1))
            stored = ds["rmse"].sel(inpaint_method=f).values[ds["example_image"].values, 0]
            np.testing.assert_allclose(rm, stored, rtol=1e-5)
    assert np.all(ds["rmse_patch"].values > 0) and np.all(ds["share_original"].values <= 1)
    with pytest.raises(ValueError, match="methods"):
        ms.inpainting_study(tiny, tmp_path / "x", methods=["repaint"], data_dir=mnist_dir, classifier=clf, log=_quiet)


def test_linear_baseline_study(tiny, clf, mnist_dir, tmp_path):
    ds = ms.linear_baseline_study(tiny, tmp_path, epochs=1, n_samples=16, n_loss_images=64, seed=0,
                                  data_dir=mnist_dir, classifier=clf, log=_quiet)
    on_disk = xr.open_dataset(tmp_path / "linear_baseline.nc")
    assert list(on_disk["model"].values) == ["relu", "linear", "linear_init", "gaussian_fit"]
    assert on_disk["image"].dims == ("model", "sample", "row", "col") and on_disk.sizes["sample"] == 16
    assert on_disk["loss"].dims == ("loss_model", "split", "t")
    assert list(on_disk["split"].values) == ["train", "heldout"]
    assert on_disk.sizes["t"] == tiny.T and on_disk.sizes["epoch"] == 1
    np.testing.assert_allclose(ds["class_share"].sum("digit"), 1.0)
    assert (tmp_path / "linear_baseline.png").is_file()
    # no net can beat the affine optimum by more than the Monte Carlo error, the linear ones least of all
    # (64 images x 784 pixels: a few per cent at most); the Gaussian-init net sits on it
    Lopt = ds["loss_gaussian_optimum"].values
    init = ds["loss"].sel(loss_model="linear_init", split="train").values
    np.testing.assert_allclose(init, Lopt, rtol=0.15)
    assert np.all(ds["loss"].sel(loss_model="linear", split="train").values > 0.85 * Lopt)
