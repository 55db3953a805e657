"""Tests of the MNIST cloning study (physdiff.experiments.mnist_cloning).

The cloning machinery driven by the exact score of a two-Gaussian mixture reproduces the
two-cluster theory phi(t) of [BBBM24] within its binomial error; the empirical-mixture phi of two
point masses is that theory with zero spread; Lambda and the two-cluster geometry are exact on
data whose covariance is known; the study refuses checkpoints that are not two-digit MNIST models
or whose training images do not match, and runs end to end on a tiny MNIST model.
"""

import math

import numpy as np
import pytest

from physdiff import ddpm
from physdiff.experiments import mnist_cloning as mc
from physdiff.experiments.train import load_training_data
from physdiff.results import open_dataset
from physdiff.reverse import eps_from_score
from physdiff.schedules import make_schedule
from physdiff.theory import gaussian

D = 8
M = np.zeros(D)
M[:2] = (2.0, 1.5)  # |m| = 2.5: two-cluster crossing of 0.7752 near t = 1
SIGMA, W_PLUS = 0.3, 0.4


def _two_gaussian_setup(T=100):
    sched = make_schedule("linear", T, beta_start=0.1 / T, beta_end=20.0 / T)  # ends at t ~ 5
    eps = eps_from_score(lambda x, ab: gaussian.score_two_gaussians(x, ab, M, SIGMA, W_PLUS), sched)
    return sched, eps


def test_cloning_with_the_exact_two_gaussian_score_matches_the_two_cluster_theory():
    sched, eps = _two_gaussian_setup()
    steps = sorted({sched.step_at_time(tau) for tau in (0.3, 0.6, 0.8, 0.95, 1.1, 1.3, 1.7, 2.3)})
    n = 3000

    def classify(x):  # code 2 * flag + side of the midplane; flag: an orthogonal coordinate > 1 sd
        return 2 * (x[:, 2] > SIGMA).astype(np.int64) + (x @ M > 0).astype(np.int64)

    def decode(codes):
        return codes % 2, codes // 2 == 0

    r = mc.measure_cloning(eps, sched, classify, steps, n, D, seed=4, decode=decode)
    th = gaussian.phi_two_clusters(r["physical_time"], np.linalg.norm(M), SIGMA**2, W_PLUS)
    # binomial error (>= 0.002 here), plus the discretisation bias of the T = 100 chain: measured
    # below 0.003 with 20 000 pairs (and invisible at T = 200)
    tol = 4.0 * np.maximum(r["phi_stderr"], math.sqrt(0.01 * 0.99 / n)) + 0.005
    assert np.all(np.abs(r["phi"] - th) < tol), (r["phi"], th)
    np.testing.assert_allclose(r["phi_stderr"], np.sqrt(r["phi"] * (1 - r["phi"]) / n))
    # the class imbalance: p^2 + (1 - p)^2 with p ~ W_PLUS (binomial error of p: 0.009)
    assert abs(r["class_share"][1] - W_PLUS) < 4 * math.sqrt(W_PLUS * (1 - W_PLUS) / n)
    assert r["baseline"] == pytest.approx(float(np.sum(r["class_share"] ** 2)))
    # phi_valid and the invalid share, recomputed from the returned endpoints
    both = r["clone_valid"] & r["valid"][None, :]
    same = r["clone_label"] == r["label"][None, :]
    np.testing.assert_allclose(r["phi_valid"], (same & both).sum(1) / both.sum(1))
    n_bad = (~r["valid"]).sum() + (~r["clone_valid"]).sum()
    assert r["invalid_share"] == pytest.approx(n_bad / (n * (len(steps) + 1)))
    assert abs(r["invalid_share"] - 0.1587) < 0.02  # P(g > 1), g ~ N(0, 1)
    # the measured crossing of 0.7752 agrees with the theory's within the bootstrap error
    t_grid = np.linspace(0.2, 2.5, 400)
    t_th = gaussian.speciation_time_phi(t_grid, gaussian.phi_two_clusters(t_grid, np.linalg.norm(M), SIGMA**2, W_PLUS))
    t_meas, err = mc.crossing_with_error(r["physical_time"], r["phi"], r["phi_stderr"], rng=0)
    assert 0 < err < 0.1
    assert abs(t_meas - t_th) < 4 * err + 0.02  # + linear interpolation over a 0.15-wide bracket
    # equal seeds, equal results
    r2 = mc.measure_cloning(eps, sched, classify, steps, n, D, seed=4, decode=decode)
    np.testing.assert_array_equal(r["clone_code"], r2["clone_code"])


def test_crossing_at_another_level_is_the_shifted_crossing():
    t = np.array([0.0, 1.0, 2.0, 3.0])
    phi = np.array([1.0, 0.9, 0.7, 0.55])
    t0, _ = mc.crossing_with_error(t, phi, np.zeros(4), rng=0, level=0.8)
    assert t0 == pytest.approx(1.5)
    t1, _ = mc.crossing_with_error(t, phi, np.zeros(4), rng=0)  # 0.7752
    assert t1 == pytest.approx(1.0 + (0.9 - gaussian.PHI_SPECIATION) / 0.2, abs=1e-4)
    assert math.isnan(mc.crossing_with_error(t, phi, np.zeros(4), rng=0, level=0.5)[0])


def test_phi_empirical_mixture_of_point_masses_is_the_zero_spread_theory():
    m = np.array([1.2, -0.8, 0.5, 0.0, 1.0])
    x = np.stack([m, m, -m])  # weight 2/3 on +m
    labels = np.array([1, 1, 0])
    t = np.array([0.2, 0.5, 0.8, 1.2, 2.0])
    phi, err = mc.phi_empirical_mixture(t, x, labels, n_samples=4000, seed=1, chunk=700)
    th = gaussian.phi_two_clusters(t, np.linalg.norm(m), 0.0, 2.0 / 3.0)
    assert np.all(err > 0)
    assert np.all(np.abs(phi - th) < 4 * err + 1e-12), (phi, th, err)
    phi2, _ = mc.phi_empirical_mixture(t, x, labels, n_samples=4000, seed=1, chunk=700)
    np.testing.assert_array_equal(phi, phi2)
    with pytest.raises(ValueError, match="t must"):
        mc.phi_empirical_mixture([0.0], x, labels)


def test_lambda_and_two_cluster_geometry_of_a_known_covariance():
    a, b, mm, g = 3.0, 1.0, 2.0, 0.5
    rng = np.random.default_rng(0)
    Q, _ = np.linalg.qr(rng.standard_normal((6, 6)))
    # four points +-a e1 +-b e2: mean 0, covariance diag(a^2, b^2) exactly
    pts = np.array([[sa * a, sb * b, 0, 0, 0, 0] for sa in (1, -1) for sb in (1, -1)]) @ Q.T + 0.7
    Lam, v = mc.covariance_top_eigenvalue(pts)
    assert Lam == pytest.approx(a * a, rel=1e-12)
    assert abs(v @ Q[:, 0]) == pytest.approx(1.0, abs=1e-12)
    # two clusters at +-mm e1 with spread +-g along e2 (none along the axis): Lambda = mm^2 = u.C.u
    x = np.array([[c * mm, s * g, 0, 0, 0, 0] for c in (1, -1) for s in (1, -1)]) @ Q.T
    lab = np.array([7, 7, 3, 3])
    geo = mc.two_cluster_geometry(x, lab, (3, 7))
    assert geo["m_norm"] == pytest.approx(mm)
    assert geo["gamma"] == pytest.approx(0.0, abs=1e-12)
    assert geo["weight_plus"] == 0.5
    assert geo["Lambda"] == pytest.approx(mm**2) and geo["lambda_axis"] == pytest.approx(mm**2)
    assert geo["overlap"] == pytest.approx(1.0)
    assert geo["axis"] @ Q[:, 0] == pytest.approx(1.0)  # from class 3 to class 7
    # unequal classes with spread along the axis: u.C.u = 4 w (1 - w) m^2 + pooled gamma
    x2 = rng.standard_normal((300, 6)) * 0.3
    lab2 = (rng.random(300) < 0.3).astype(int)
    x2[:, 0] += np.where(lab2 == 1, mm, -mm)
    geo2 = mc.two_cluster_geometry(x2, lab2, (0, 1))
    C = np.cov(x2, rowvar=False, bias=True)
    assert geo2["lambda_axis"] == pytest.approx(geo2["axis"] @ C @ geo2["axis"], rel=1e-10)
    with pytest.raises(ValueError, match="outside classes"):
        mc.two_cluster_geometry(x2, lab2 + 1, (0, 1))
    with pytest.raises(ValueError, match="at least 2 rows"):
        mc.covariance_top_eigenvalue(x2[:1])


def _tiny_model(tmp_path, x0, metadata, name="ck"):
    cfg = ddpm.TrainConfig(schedule={"name": "linear", "beta_start": 0.02, "beta_end": 0.6}, T=8, hidden=4,
                           epochs=1, batch=64, seed=0, device="cpu")
    m = ddpm.train(x0, cfg, progress=False, log=None, metadata=metadata)
    path = tmp_path / name
    m.save(path)
    return path


def test_study_refuses_other_checkpoints(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        mc.mnist_cloning_study(tmp_path / "nothing", tmp_path / "out")
    rng = np.random.default_rng(0)
    ck = _tiny_model(tmp_path, rng.standard_normal((50, 2)), {"dataset": "swiss-roll"}, "sr")
    with pytest.raises(ValueError, match="needs a checkpoint trained on MNIST"):
        mc.mnist_cloning_study(ck, tmp_path / "out")
    ck3 = _tiny_model(tmp_path, rng.uniform(-1, 1, (20, 784)),
                      {"dataset": "mnist", "digits": [0, 1, 2], "image_shape": [28, 28]}, "three")
    with pytest.raises(ValueError, match="two classes"):
        mc.mnist_cloning_study(ck3, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_study_refuses_training_images_that_do_not_match(tmp_path, mnist_dir):
    rng = np.random.default_rng(1)
    ck = _tiny_model(tmp_path, rng.uniform(-1, 1, (20, 784)).astype(np.float32),
                     {"dataset": "mnist", "digits": [0, 1], "image_shape": [28, 28], "holdout": 0.1}, "fake")
    with pytest.raises(ValueError, match="sha256"):
        mc.mnist_cloning_study(ck, tmp_path / "out", data_dir=mnist_dir)


def test_study_end_to_end_on_a_tiny_mnist_model(tmp_path, mnist_dir):
    x0, meta = load_training_data("mnist", seed=0, digits=(0, 1), data_dir=mnist_dir, holdout=0.1)
    ck = _tiny_model(tmp_path, x0, meta)
    out = tmp_path / "out"
    s = mc.mnist_cloning_study(ck, out, n_pairs=24, n_mc=16, n_examples=2, classifier_epochs=1, seed=3, data_dir=mnist_dir,
                               log=lambda *a: None)
    ds = open_dataset(out / "speciation.nc")
    assert (out / "cloning.png").stat().st_size > 10_000
    Lam, _ = mc.covariance_top_eigenvalue(x0)
    assert float(ds["Lambda"]) == pytest.approx(Lam) and s["Lambda"] == pytest.approx(Lam)
    assert float(ds["speciation_time_theory"]) == pytest.approx(0.5 * math.log(Lam))
    assert 30 < Lam < 100  # 0 vs 1 in [-1, 1] pixels: the two digits' separation dominates
    assert ds.attrs["training_data"] == "sha256 verified" and ds.attrs["seed"] == 3
    assert ds.sizes["t"] == 8 and ds.sizes["pair"] == 24
    # branching at step 1 (the last, noiseless step) gives identical clones
    assert float(ds["phi"].sel(t=1)) == 1.0
    assert np.all((ds["phi"] >= 0) & (ds["phi"] <= 1))
    same = (ds["clone_label"] == ds["label"]).mean("pair")
    np.testing.assert_allclose(ds["phi"], same)
    valid = np.concatenate([ds["digit"].values[None], ds["clone_digit"].values]) <= 1
    assert float(ds["neither_share"]) == pytest.approx(1 - valid.mean())
    assert set(np.unique(ds["label"].values)) <= {0, 1}
    assert ds["example"].shape == (2, ds.sizes["example_t"], 2, 28, 28)
    assert np.all(np.isfinite(ds["phi_empirical"])) and np.all(np.isfinite(ds["phi_theory"]))
    assert 0.5 < float(ds["level_matched"]) < 0.8
    with pytest.raises(FileExistsError):
        mc.mnist_cloning_study(ck, out, n_pairs=4, data_dir=mnist_dir, log=lambda *a: None)
