"""Tests of the linear-baseline study (physdiff.studies.linear_baseline) and of the linear reverse
model (physdiff.baselines) and the affine optimum (physdiff.theory.autoencoder).

The closed-form optimum of an affine noise predictor equals the Monte Carlo loss of the
Gaussian-init nets on Gaussian data within its standard error; the linear baseline's nets are affine
(and the ReLU nets are not); no net beats the affine optimum by more than the Monte Carlo error.
"""

import numpy as np
import pytest
import torch

from physdiff import ddpm, studies
from physdiff.baselines import eps_loss, gaussian_fit_samples, gaussian_init_model, train_linear_baseline
from physdiff.theory.autoencoder import gaussian_optimal_loss


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_gaussian_optimal_loss_is_the_gaussian_init_nets_loss():
    """The error vector is Gaussian with covariance eigenvalues mu_i = s^2 lambda_i / (s^2 lambda_i +
    Delta), so the mean of |err|^2 / d over n points has standard error sqrt(2 sum mu_i^2 / n) / d."""
    rng = np.random.default_rng(0)
    d, n = 6, 20000
    A = rng.standard_normal((d, d)) * 0.5
    cov = A @ A.T + 0.05 * np.eye(d)
    x = rng.multivariate_normal(np.linspace(-0.5, 0.5, d), cov, size=n).astype(np.float32)
    cfg = ddpm.TrainConfig(schedule={"name": "linear", "beta_start": 0.05, "beta_end": 0.5}, T=6, hidden=8,
                           epochs=1, batch=1000, seed=0, device="cpu")
    like = ddpm.train(x[:2000], cfg, progress=False, log=None)
    init = gaussian_init_model(x, like)
    mc = eps_loss(init, x, seed=1)
    pair = eps_loss([init, like], x[:500], seed=3)  # one set of draws for both models
    np.testing.assert_array_equal(pair[0], eps_loss(init, x[:500], seed=3))
    np.testing.assert_array_equal(pair[1], eps_loss(like, x[:500], seed=3))
    c = np.cov(x.astype(np.float64), rowvar=False)
    lam = np.linalg.eigvalsh(c)
    ab = like.schedule.alpha_bar[1:]
    closed = gaussian_optimal_loss(c, ab)
    mu = ab[:, None] * lam / (ab[:, None] * lam + 1 - ab[:, None])
    np.testing.assert_allclose(closed, mu.mean(axis=1))
    se = np.sqrt(2 * (mu**2).sum(axis=1) / n) / d
    assert np.all(np.abs(mc - closed) < 5 * se), (mc, closed, se)
    assert gaussian_optimal_loss(cov, 1.0) == pytest.approx(1.0)
    for bad in ((cov, 0.0), (cov[:2], 0.5)):
        with pytest.raises(ValueError):
            gaussian_optimal_loss(*bad)
    # the Gaussian fit's samples have the data's covariance (numpy.cov, ddof 1) exactly in expectation
    g = gaussian_fit_samples(x[:50], 20000, seed=2).astype(np.float64)
    np.testing.assert_allclose(np.cov(g, rowvar=False), np.cov(x[:50].astype(np.float64), rowvar=False),
                               atol=6 * np.sqrt(2 / 20000) * np.abs(cov).max())


def test_linear_baseline_model_is_affine_and_relu_is_not(mnist_dir):
    from physdiff import datasets

    x, _ = datasets.load_mnist(mnist_dir, split="train", digits=[0, 1])
    cfg = ddpm.get_config("mnist", "quick", T=25, hidden=32, epochs=1, init="random", device="cpu", lr=1e-3)
    relu = ddpm.train(x[:300], cfg, progress=False, log=None)
    lin = train_linear_baseline(relu, x[:300], epochs=1, seed=0)
    assert lin.model.activation == "linear" and lin.schedule == relu.schedule and lin.T == relu.T
    rng = np.random.default_rng(0)
    u, v = rng.standard_normal((2, 16, 784)).astype(np.float32)
    zero = np.zeros((16, 784), np.float32)
    a, b = 1.7, -0.6
    for t in (1, 10, relu.T):
        f0 = lin.eps(zero, t).astype(np.float64)
        rhs = a * (lin.eps(u, t) - f0) + b * (lin.eps(v, t) - f0)
        np.testing.assert_allclose(lin.eps(a * u + b * v, t) - f0, rhs, atol=1e-4 * np.abs(rhs).max())
        g0 = relu.eps(zero, t).astype(np.float64)
        rhs_r = a * (relu.eps(u, t) - g0) + b * (relu.eps(v, t) - g0)
        assert np.abs(relu.eps(a * u + b * v, t) - g0 - rhs_r).max() > 1e-2 * np.abs(rhs_r).max()


def test_study_on_tiny_params(mnist_dir):
    st = studies.get("linear-baseline")
    p = st.Params(**{**st.TINY, "data_dir": str(mnist_dir)})
    ds = st.run(p)["linear_baseline"]
    assert list(ds["model"].values) == ["relu", "linear", "linear_init", "gaussian_fit"]
    assert ds["image"].dims == ("model", "sample", "row", "col") and ds.sizes["sample"] == p.n_samples
    assert ds["loss"].dims == ("loss_model", "split", "step") and list(ds["split"].values) == ["train", "heldout"]
    assert ds.sizes["step"] == p.T and ds.sizes["epoch"] == 1
    np.testing.assert_allclose(ds["class_share"].sum("digit"), 1.0)
    # the Gaussian-init net sits on the affine optimum; no linear net beats it beyond the Monte Carlo
    # error (64 images x 784 pixels: a few per cent)
    L_opt = ds["loss_gaussian_optimum"].values
    np.testing.assert_allclose(ds["loss"].sel(loss_model="linear_init", split="train").values, L_opt, rtol=0.15)
    assert np.all(ds["loss"].sel(loss_model="linear", split="train").values > 0.85 * L_opt)
    for v in ds.data_vars.values():
        assert "units" in v.attrs and "long_name" in v.attrs, v.name
    assert set(st.plot({"linear_baseline": ds})) == {"linear_baseline"}


def test_study_on_a_model_without_adam_epochs(mnist_dir):
    # the quick preset's model is its least-squares start alone (no loss history): the study runs
    st = studies.get("linear-baseline")
    p = st.Params(**{**st.TINY, "hidden": 800, "epochs": 0, "data_dir": str(mnist_dir)})
    ds = st.run(p)["linear_baseline"]
    assert np.all(np.isnan(ds["loss_relu_last"])) and ds.sizes["epoch"] == 1
    L_opt = ds["loss_gaussian_optimum"].values  # the fitted ReLU nets go below the affine optimum somewhere
    assert np.any(ds["loss"].sel(loss_model="relu", split="train").values < 0.95 * L_opt)
