"""Tests of the MNIST cloning study (physdiff.studies.mnist_cloning).

Cloning with the exact score of a two-Gaussian mixture, decoded into class and validity, reproduces
the two-cluster theory phi(t) of [BBBM24] within its binomial error, with the expected share of
invalid endpoints; the empirical-mixture phi (theory.gaussian) of point masses is that theory with zero spread;
Lambda and the two-cluster geometry are exact on data whose covariance is known; the study refuses
models that are not MNIST, and runs end to end on tiny Params.
"""

import math

import numpy as np
import pytest
import torch

from physdiff import ddpm, studies
from physdiff.reverse import cloning, crossing_time, eps_from_score
from physdiff.schedules import make_schedule
from physdiff.studies import mnist_cloning as mc
from physdiff.theory import gaussian

D = 8
M = np.zeros(D)
M[:2] = (2.0, 1.5)  # |m| = 2.5: two-cluster crossing of 0.7752 near t = 1
SIGMA, W_PLUS = 0.3, 0.4


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_decoded_cloning_with_the_exact_two_gaussian_score_matches_the_two_cluster_theory():
    T = 100
    sched = make_schedule("linear", T, beta_start=0.1 / T, beta_end=20.0 / T)  # ends at t ~ 5
    eps = eps_from_score(lambda x, ab: gaussian.score_two_gaussians(x, ab, M, SIGMA, W_PLUS), sched)
    steps = sorted({sched.step_at_time(tau) for tau in (0.3, 0.6, 0.8, 0.95, 1.1, 1.3, 1.7, 2.3)})
    n = 3000

    def classify(x):  # code 2 * flag + side of the midplane; flag: an orthogonal coordinate > 1 sd
        return 2 * (x[:, 2] > SIGMA).astype(np.int64) + (x @ M > 0).astype(np.int64)

    def decode(codes):
        return codes % 2, codes // 2 == 0

    res = cloning(eps, sched, lambda x: classify(x) % 2, steps, n, D, seed=4)
    th = gaussian.phi_two_clusters(res.physical_time, np.linalg.norm(M), SIGMA**2, W_PLUS)
    # binomial error (>= 0.002 here) plus the discretisation bias of the T = 100 chain (< 0.003)
    tol = 4.0 * np.maximum(res.phi_stderr, math.sqrt(0.01 * 0.99 / n)) + 0.005
    assert np.all(np.abs(res.phi - th) < tol), (res.phi, th)
    t_meas, err = crossing_time(res.physical_time, res.phi, stderr=res.phi_stderr, seed=0)
    t_grid = np.linspace(0.2, 2.5, 400)
    t_th = crossing_time(t_grid, gaussian.phi_two_clusters(t_grid, np.linalg.norm(M), SIGMA**2, W_PLUS))
    assert 0 < err < 0.1 and abs(t_meas - t_th) < 4 * err + 0.02
    # the same chain with codes: the decoded phi_valid and invalid share, recomputed by hand
    coded = cloning(eps, sched, classify, steps, n, D, seed=4)
    det = mc.decoded_phi(coded, decode)
    np.testing.assert_array_equal(det["label"], res.labels)  # same seed, same chains
    both = det["clone_valid"] & (coded.labels // 2 == 0)[None, :]
    same = det["clone_label"] == det["label"][None, :]
    np.testing.assert_allclose(det["phi_valid"], (same & both).sum(1) / both.sum(1))
    assert abs(det["invalid_share"] - 0.1587) < 0.02  # P(g > 1), g ~ N(0, 1)
    # the flag is independent of the side: phi_valid estimates the same phi
    assert np.all(np.abs(det["phi_valid"] - th) < 4 * det["phi_valid_stderr"] + 0.01)


def test_phi_empirical_mixture_of_point_masses_is_the_zero_spread_theory():
    m = np.array([1.2, -0.8, 0.5, 0.0, 1.0])
    x = np.stack([m, m, -m])  # weight 2/3 on +m
    labels = np.array([1, 1, 0])
    t = np.array([0.2, 0.5, 0.8, 1.2, 2.0])
    phi, err = gaussian.phi_empirical_mixture(t, x, labels, n_samples=4000, seed=1, chunk=700)
    th = gaussian.phi_two_clusters(t, np.linalg.norm(m), 0.0, 2.0 / 3.0)
    assert np.all(err > 0)
    assert np.all(np.abs(phi - th) < 4 * err + 1e-12), (phi, th, err)
    phi2, _ = gaussian.phi_empirical_mixture(t, x, labels, n_samples=4000, seed=1, chunk=700)
    np.testing.assert_array_equal(phi, phi2)
    with pytest.raises(ValueError, match="t must"):
        gaussian.phi_empirical_mixture([0.0], x, labels)


def test_lambda_and_two_cluster_geometry_of_a_known_covariance():
    a, b, mm = 3.0, 1.0, 2.0
    rng = np.random.default_rng(0)
    Q, _ = np.linalg.qr(rng.standard_normal((6, 6)))
    # four points +-a e1 +-b e2: mean 0, covariance diag(a^2, b^2) exactly
    pts = np.array([[sa * a, sb * b, 0, 0, 0, 0] for sa in (1, -1) for sb in (1, -1)]) @ Q.T + 0.7
    Lam, v = mc.covariance_top_eigenvalue(pts)
    assert Lam == pytest.approx(a * a, rel=1e-12)
    assert abs(v @ Q[:, 0]) == pytest.approx(1.0, abs=1e-12)
    # two clusters at +-mm e1 with spread along e2 only: Lambda = mm^2 = u.C.u
    x = np.array([[c * mm, s * 0.5, 0, 0, 0, 0] for c in (1, -1) for s in (1, -1)]) @ Q.T
    geo = mc.two_cluster_geometry(x, np.array([7, 7, 3, 3]), (3, 7))
    assert geo["m_norm"] == pytest.approx(mm) and geo["gamma"] == pytest.approx(0.0, abs=1e-12)
    assert geo["Lambda"] == pytest.approx(mm**2) and geo["lambda_axis"] == pytest.approx(mm**2)
    assert geo["overlap"] == pytest.approx(1.0) and geo["axis"] @ Q[:, 0] == pytest.approx(1.0)
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


def test_params_are_validated():
    P = studies.get("mnist-cloning").Params
    for bad, match in ((dict(n_pairs=0), "n_pairs"), (dict(digits=(0, 1, 2)), "two digits"),
                       (dict(branch_steps=(3,)), "branch_steps"), (dict(T=-1), "T")):
        with pytest.raises(ValueError, match=match):
            P(**bad)


def test_branch_steps_beyond_T_are_refused_before_training():
    st = studies.get("mnist-cloning")
    with pytest.raises(ValueError, match="branch_steps must lie in 1..25"):
        st.run(st.Params(T=25, branch_steps=(5, 26), data_dir="/nonexistent"))


def test_study_refuses_a_model_that_is_not_mnist(tmp_path):
    cfg = ddpm.TrainConfig(schedule={"name": "linear", "beta_start": 0.02, "beta_end": 0.6}, T=4, hidden=4,
                           epochs=1, batch=64, seed=0, device="cpu")
    net = ddpm.StackedAutoencoders(4, 2, 4, "relu", seed=0)
    ddpm.DDPM(net, cfg.make_schedule(), cfg, data={"dataset": "swiss-roll"}).save(tmp_path / "sr")
    st = studies.get("mnist-cloning")
    with pytest.raises(ValueError, match="not an MNIST model"):
        st.run(st.Params(checkpoint=str(tmp_path / "sr")))


def test_default_branch_grid_brackets_the_speciation_time():
    sched = ddpm.get_config("mnist", "quick").make_schedule()
    t_S = 2.076  # (1/2) log Lambda of the train split's zeros and ones
    steps = mc._branch_steps(mc.Params(), sched, t_S)
    assert np.all(np.diff(steps) > 0) and len(steps) >= 12
    tau = sched.physical_time[steps]
    assert tau.min() < t_S - 1.3 and tau.max() > t_S + 1.8  # phi near 1 below, near its baseline above
    assert steps.sum() < 0.25 * sched.T * (sched.T + 1) / 2  # net evaluations against a branch at every step
    assert list(mc._branch_steps(mc.Params(n_branch=0), sched, t_S)) == list(range(1, sched.T + 1))
    assert list(mc._branch_steps(mc.Params(branch_steps=(9, 3, 9)), sched, t_S)) == [3, 9]
    with pytest.raises(ValueError, match="n_branch"):
        mc.Params(n_branch=1)


def test_study_end_to_end_on_tiny_params(mnist_dir):
    st = studies.get("mnist-cloning")
    p = st.Params(**{**st.TINY, "data_dir": str(mnist_dir), "seed": 3})
    ds = st.run(p)["speciation"]
    from physdiff import datasets

    x, _ = datasets.load_mnist(mnist_dir, split="train", digits=[0, 1])
    keep = np.sort(np.random.default_rng([3, 0x7A1]).choice(len(x), p.n_train, replace=False))
    Lam, _ = mc.covariance_top_eigenvalue(x[keep])
    assert float(ds["Lambda"]) == pytest.approx(Lam)
    assert float(ds["speciation_time_theory"]) == pytest.approx(0.5 * math.log(Lam))
    assert 30 < Lam < 100  # 0 vs 1 in [-1, 1] pixels: the two digits' separation dominates
    assert ds.sizes["step"] == p.T and ds.sizes["pair"] == p.n_pairs
    assert float(ds["phi"].sel(step=1)) == 1.0  # the last step is noiseless: identical clones
    np.testing.assert_allclose(ds["phi"], (ds["clone_label"] == ds["label"]).mean("pair"))
    valid = np.concatenate([ds["digit"].values[None], ds["clone_digit"].values]) <= 1
    assert float(ds["neither_share"]) == pytest.approx(1 - valid.mean())
    assert ds["example_image"].shape == (2, ds.sizes["example_step"], 2, 28, 28)
    assert np.all(np.isfinite(ds["phi_empirical"])) and 0.5 < float(ds["level_matched"]) < 0.8
    for v in ds.data_vars.values():
        assert "units" in v.attrs and "long_name" in v.attrs, v.name
    assert set(st.plot({"speciation": ds})) == {"cloning"}
