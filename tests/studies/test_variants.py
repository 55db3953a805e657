"""The variants study (loss weighting / schedule / T): Adam's invariance to a per-timestep loss weight
(exact up to its eps), the SGD control that breaks it, and the study's Dataset on a tiny configuration."""

import numpy as np
import pytest
import torch

from physdiff import ddpm
from physdiff.datasets import swiss_roll
from physdiff.schedules import make_schedule
from physdiff.studies.variants import (Params, _flat_params, _initial_params, _loss_weights, _StackedSGD,
                                       param_rel_diff, run)

F32_ULP = float(np.finfo(np.float32).eps)   # 1.2e-7
F64_ULP = float(np.finfo(np.float64).eps)   # 2.2e-16


@pytest.fixture(autouse=True)
def one_torch_thread():
    """These tiny batched matmuls run ~10x slower on two threads of a shared, loaded machine."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


# ------------------------------------------------------------------ StackedAdam, one step at a time


def _run_pair(w, grads, eps, lr=1e-2):
    """Two float64 StackedAdams from the same parameters, fed g and w_t g; returns both parameter
    histories and the first-order bound on their difference accumulated from the first one's state."""
    C = len(w)
    wt = torch.as_tensor(w, dtype=torch.float64).view(C, 1)
    p0 = torch.randn(C, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    pa, pb = p0.clone(), p0.clone()
    A = ddpm.StackedAdam([pa], np.full(C, lr), eps=eps, fused=False)
    B = ddpm.StackedAdam([pb], np.full(C, lr), eps=eps, fused=False)
    b1, b2 = A.betas
    bound = torch.zeros_like(p0)
    for k, g in enumerate(grads, start=1):
        before = pa.clone()
        A.step([g])
        B.step([wt * g])
        # |u_w - u| = |u| eps |1 - 1/w| / (sqrt(v_hat) + eps/w) for an update u = lr m_hat / (sqrt(v_hat) + eps)
        s = (A.exp_avg_sq[0] / (1 - b2**k)).sqrt()
        u = (pa - before).abs()
        bound += u * eps * (1 - 1 / wt).abs() / (s + eps / wt)
    return pa, pb, bound, p0


def test_stacked_adam_is_invariant_to_per_timestep_gradient_scale_up_to_eps():
    # grads scaled by w_t (6 decades) give the same parameters to within the eps term of Adam's update
    w = np.array([1e-3, 1.0, 1e3])
    gen = torch.Generator().manual_seed(0)
    grads = [torch.randn(3, 5, generator=gen, dtype=torch.float64) for _ in range(30)]
    pa, pb, bound, p0 = _run_pair(w, grads, eps=1e-8)
    diff = (pa - pb).abs()
    slack = 64 * F64_ULP * pa.abs()   # float64 rounding of ~30 steps
    assert torch.all(diff <= bound * 1.01 + slack), (diff, bound)
    # |g| ~ 1: the eps term is eps / (w sqrt(v_hat)) <~ 1e-4 of each step, even for w = 1e-3
    moved = (pa - p0).norm(dim=1)
    assert torch.all(bound.norm(dim=1) <= 1e-4 * moved), (bound, moved)
    # with eps = 0 the two runs are identical up to rounding: the weight cancels in m / sqrt(v)
    pa0, pb0, _, _ = _run_pair(w, grads, eps=0.0)
    torch.testing.assert_close(pa0, pb0, rtol=64 * F64_ULP, atol=0.0)


def test_stacked_adam_invariance_breaks_when_gradients_reach_eps():
    # |w g| ~ eps: the eps term is no longer negligible, and the bound says by how much
    w = np.array([1e-3, 1.0])
    gen = torch.Generator().manual_seed(2)
    grads = [1e-6 * torch.randn(2, 5, generator=gen, dtype=torch.float64) for _ in range(30)]
    pa, pb, bound, p0 = _run_pair(w, grads, eps=1e-8)
    # the w = 1e-3 net: sqrt(v_hat) ~ w |g| ~ 1e-9 < eps, so its steps shrink by ~ w |g| / eps ~ 10x and
    # the two runs part by most of the distance the unweighted one moved
    moved = float((pa[0] - p0[0]).norm())
    assert float((pa[0] - pb[0]).norm()) > 0.5 * moved > 0, (pa[0], pb[0], p0[0])
    assert float((pb[0] - p0[0]).norm()) < 0.3 * moved
    # the w = 1 net: identical (eps enters both alike)
    torch.testing.assert_close(pa[1], pb[1], rtol=0.0, atol=0.0)


def test_stacked_sgd_step_and_validation():
    p = torch.ones(2, 3)
    opt = _StackedSGD([p], [0.1, 0.5])
    opt.step([torch.ones(2, 3)])
    np.testing.assert_allclose(p.numpy(), [[0.9] * 3, [0.5] * 3], rtol=1e-6)
    assert opt.step_count == 1 and opt.state_tensors(["W"]) == {}
    with pytest.raises(ValueError, match="one finite value"):
        _StackedSGD([p], [0.1])


# ------------------------------------------------------------------ training: weighted vs simple


def _train(loss, optimizer, lr, schedule):
    x0 = swiss_roll(256, seed=0)
    cfg = ddpm.TrainConfig(schedule=schedule, T=6, hidden=8, loss=loss, lr=lr, epochs=3, batch=64, seed=0,
                           device="cpu")
    m = ddpm.train(x0, cfg, progress=False, log=None, weights=_loss_weights(None, cfg.make_schedule(), cfg),
                   optimizer=_StackedSGD if optimizer == "sgd" else None)
    return m, cfg, x0


def test_weighted_and_simple_training_give_the_same_parameters_with_adam_not_with_sgd():
    # cosine, T = 6: the weights of [Ho20] eq. 12 span >100x; every net sees the same data and noise in both
    sched = {"name": "cosine"}
    w = ddpm.loss_weights(make_schedule("cosine", 6), "weighted")
    assert w.max() / w.min() > 100
    ms, cfg, x0 = _train("simple", "adam", 1e-2, sched)
    mw, _, _ = _train("weighted", "adam", 1e-2, sched)
    init = _initial_params(cfg, x0)
    np.testing.assert_array_equal(init, _initial_params(cfg, x0))
    rd = param_rel_diff(_flat_params(mw.model), _flat_params(ms.model), init)
    # 12 Adam steps, each exact up to float32 rounding (~30 ulp: w g, m, v, sqrt, division) and the eps term
    # eps / (w sqrt(v_hat)) <= 1e-8 / (1e-2 * 1e-3); the dynamics may amplify it a little: x10
    tol = 10 * 12 * (30 * F32_ULP + 1e-8 / (w.min() * 1e-3))
    assert rd.shape == (6,) and np.all(rd < tol), (rd, tol)
    # the weighted model's reported loss is w_t times the simple one's on the same minibatches
    np.testing.assert_allclose(mw.loss_history[-1] / w, ms.loss_history[-1], rtol=1e-3)
    # the SGD control: the weight is a per-timestep learning rate (lr 1e-3: w_6 = 500 would diverge at 0.1),
    # parameters differ at O(1)
    ss, _, _ = _train("simple", "sgd", 1e-3, sched)
    sw, _, _ = _train("weighted", "sgd", 1e-3, sched)
    rd_sgd = param_rel_diff(_flat_params(sw.model), _flat_params(ss.model), init)
    assert np.median(rd_sgd) > 0.1 and np.median(rd_sgd) > 1e3 * np.median(rd), (rd_sgd, rd)


def test_param_rel_diff():
    a, b, c = np.ones((2, 3)), np.zeros((2, 3)), np.full((2, 3), -1.0)
    np.testing.assert_allclose(param_rel_diff(a, c, b), [2.0, 2.0])
    with pytest.raises(ValueError, match="shape"):
        param_rel_diff(a, np.ones((3, 3)))


# ------------------------------------------------------------------ the study


def test_variants_study_dataset():
    names = ["simple", "weighted", "jitter", "T40", "sgd", "sgd-weighted"]
    ds = run(Params(variants=",".join(names), n_train=200, epochs=2, hidden=8, n_samples=150, n_eval=120,
                    seed=3))["variants"]
    assert list(ds["variant"].values) == names
    assert list(ds["T"].values) == [100, 100, 100, 40, 100, 100]
    assert list(ds["weights"].values) == ["none", "eq12", "jitter", "none", "none", "eq12"]
    assert ds.sizes["step"] == 100 and ds["x"].shape == (6, 150, 2) and ds.sizes["epoch"] == 2
    assert np.all(np.isnan(ds["loss_weight"].sel(variant="T40").values[40:]))
    np.testing.assert_array_equal(ds["loss_weight"].sel(variant="simple").values, 1.0)
    np.testing.assert_array_equal(ds["loss_weight"].sel(variant="jitter").values, 1.0 + 2.0**-20)
    # the rescaled linear schedule: alpha_bar_T ~ the same for T = 40 and 100 (within a factor 10)
    abT = [ds["alpha_bar"].sel(variant=v).values[ds["T"].sel(variant=v).item() - 1] for v in ("simple", "T40")]
    assert 0.1 < abT[0] / abT[1] < 10 and max(abT) < 1e-3
    np.testing.assert_allclose(ds["time"].values, -0.5 * np.log(ds["alpha_bar"].values))
    assert list(ds["pair"].values) == ["weighted vs simple", "jitter vs simple", "sgd-weighted vs sgd"]
    rd = ds["param_rel_diff"]
    # 6 Adam steps: the jitter run differs by float32 rounding only, the weighted one by Adam's eps too;
    # SGD by O(1)
    assert float(rd.sel(pair="jitter vs simple").median()) < 1e-5
    assert float(rd.sel(pair="weighted vs simple").median()) < 1e-3
    assert float(rd.sel(pair="sgd-weighted vs sgd").median()) > 0.1
    ep = ds["param_rel_diff_epoch"]
    assert ep.shape == (3, 2) and np.allclose(ep.values[:, -1], ds["param_rel_diff"].median("step").values, rtol=1e-6)
    w = ds["loss_weight"].sel(variant="weighted")
    assert float(w.max() / w.min()) > 2
    for k in ("sliced_wasserstein_ratio", "energy_distance_ratio", "K", "K_stderr", "heldout_mse"):
        assert k in ds and np.all(np.isfinite(ds[k].sel(variant=["simple", "weighted"]).values)), k
    # K is a lower bound on E log2 p(x0) <= the exact E log2 q(x0) of the roll (5 standard errors)
    assert np.all(ds["K"].values < float(ds["exact_log_likelihood"]) + 5 * ds["K_stderr"].values)
    # same seed, (nearly) the same parameters, the same sampling noise: (nearly) the same samples
    xs, xw = ds["x"].sel(variant="simple").values, ds["x"].sel(variant="weighted").values
    assert np.median(np.abs(xs - xw)) < 1e-3


def test_variants_params_validation():
    with pytest.raises(ValueError, match="unknown"):
        Params(variants="nope")
    with pytest.raises(ValueError, match="distinct"):
        Params(variants="simple,simple")
    with pytest.raises(ValueError, match="dataset"):
        Params(dataset="cifar")
    with pytest.raises(ValueError, match="epochs"):
        Params(epochs=0)
    with pytest.raises(ValueError, match="turns"):
        Params(turns=2.5)
    assert Params(variants=" simple , weighted ").variant_names == ["simple", "weighted"]
