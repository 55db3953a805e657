"""DDPM: eps/score, sampling, reconstruction, inpainting, checkpoints, and a Gaussian physics check."""

import json

import numpy as np
import pytest
import torch

from physdiff import PhysdiffError, ddpm
from physdiff.ddpm import TrainConfig
from physdiff.reverse import reverse_chain

D = 4


@pytest.fixture(scope="module")
def model():
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    x0 = np.tanh(rng.standard_normal((300, D)) + 0.5).astype(np.float32)
    cfg = TrainConfig(schedule={"name": "linear", "beta_start": 0.01, "beta_end": 0.3}, T=12, hidden=16,
                      lr=3e-3, epochs=3, batch=50, seed=1, device="cpu")
    return ddpm.train(x0, cfg, progress=False, log=None, metadata={"dataset": "toy", "image_shape": [2, 2]})


@pytest.fixture(scope="module")
def x0():
    return np.tanh(np.random.default_rng(7).standard_normal((6, D))).astype(np.float32)


# ---------------------------------------------------------------------------------- eps and score
def test_eps_kinds_shapes_and_dtypes(model, x0):
    e = model.eps(x0, 3)
    assert isinstance(e, np.ndarray) and e.shape == x0.shape and e.dtype == np.float32
    e64 = model.eps(x0.astype(np.float64), 3)
    assert e64.dtype == np.float64
    np.testing.assert_allclose(e64, e, rtol=1e-6)
    et = model.eps(torch.from_numpy(x0), 3)
    assert isinstance(et, torch.Tensor) and et.dtype == torch.float32
    np.testing.assert_array_equal(et.numpy(), e)
    assert model.eps(x0[0], 3).shape == (D,)
    np.testing.assert_allclose(model.eps(x0[0], 3), e[0], rtol=1e-6)
    # per-sample steps == one call per step
    t = np.array([1, 12, 3, 3, 5, 1])
    e_mix = model.eps(x0, t)
    for i in range(len(t)):
        np.testing.assert_allclose(e_mix[i], model.eps(x0[i:i + 1], int(t[i]))[0], rtol=1e-6, atol=1e-7)
    assert model.eps_fn(x0, 3).shape == x0.shape


def test_score_is_minus_eps_over_sqrt_delta(model, x0):
    ab = model.schedule.alpha_bar
    np.testing.assert_allclose(model.score(x0, 4), -model.eps(x0, 4) / np.sqrt(1 - ab[4]), rtol=1e-6)
    t = np.array([1, 2, 3, 4, 5, 6])
    np.testing.assert_allclose(model.score(x0, t), -model.eps(x0, t) / np.sqrt(1 - ab[t])[:, None], rtol=1e-6)
    st = model.score(torch.from_numpy(x0), t)
    assert isinstance(st, torch.Tensor)
    np.testing.assert_allclose(st.numpy(), model.score(x0, t), rtol=1e-6)


@pytest.mark.parametrize("bad_t", [0, 13, 2.5, np.array([1, 2])])
def test_eps_rejects_bad_steps(model, x0, bad_t):
    with pytest.raises(ValueError):
        model.eps(x0, bad_t)


def test_eps_rejects_bad_x(model, x0):
    with pytest.raises(ValueError, match="features"):
        model.eps(x0[:, :3], 1)
    bad = x0.copy()
    bad[0, 0] = np.inf
    with pytest.raises(ValueError, match="NaN or inf"):
        model.eps(bad, 1)


# -------------------------------------------------------------------------------------- sampling
def test_sample_is_reproducible_and_shaped(model):
    a = model.sample(20, seed=3)
    assert a.shape == (20, D) and a.dtype == np.float32 and np.all(np.isfinite(a))
    np.testing.assert_array_equal(a, model.sample(20, seed=3))
    assert not np.array_equal(a, model.sample(20, seed=4))
    g1, g2 = np.random.default_rng(9), np.random.default_rng(9)
    np.testing.assert_array_equal(model.sample(5, seed=g1), model.sample(5, seed=g2))


def test_sample_trajectory(model):
    x, traj = model.sample(7, seed=1, return_trajectory=True)
    steps = model.default_trajectory_steps()
    assert steps[0] == model.T and steps[-1] == 0
    assert traj.shape == (len(steps), 7, D) and traj.dtype == np.float32
    np.testing.assert_array_equal(traj[-1], x)
    np.testing.assert_array_equal(x, model.sample(7, seed=1))
    x2, traj2 = model.sample(7, seed=1, return_trajectory=True, record=[12, 5, 0])
    assert traj2.shape == (3, 7, D)
    np.testing.assert_array_equal(traj2[0], traj[0])  # x_T is drawn first from the same seed
    with pytest.raises(ValueError, match="record steps"):
        model.sample(2, seed=0, return_trajectory=True, record=[13])
    with pytest.raises(ValueError, match="sigma"):
        model.sample(2, sigma="huge")
    with pytest.raises(ValueError):
        model.sample(0)


def test_sample_uses_the_same_reverse_chain_as_exact_scores(model):
    """sample() == reverse_chain(model.eps_fn, ...) driven by hand with the same seeds."""
    rng = np.random.default_rng(11)
    x_T = torch.from_numpy(rng.standard_normal((9, D), dtype=np.float32))
    ref = reverse_chain(model.eps_fn, x_T, model.schedule, seed=rng, sigma="posterior").numpy()
    np.testing.assert_array_equal(model.sample(9, seed=11, sigma="posterior"), ref)
    # the numpy path of reverse_chain runs on the same eps_fn too
    xn = reverse_chain(model.eps_fn, x_T.numpy().astype(np.float64), model.schedule, seed=0)
    assert isinstance(xn, np.ndarray) and np.all(np.isfinite(xn))


@pytest.mark.parametrize("kw", [dict(sampler="ddim", steps=5), dict(sampler="ddim", eta=1.0),
                                dict(steps=[12, 8, 3, 0], sigma="posterior"), dict(sampler="ddim", steps=6, clip=1.0)])
def test_sample_samplers_run_the_reverse_chain(model, kw):
    """Every sampler of sample() is reverse_chain(model.eps_fn, ...) with the same arguments."""
    rng = np.random.default_rng(21)
    x_T = torch.from_numpy(rng.standard_normal((9, D), dtype=np.float32))
    ref = reverse_chain(model.eps_fn, x_T, model.schedule, seed=rng, **{"sigma": model.config.sigma, **kw}).numpy()
    np.testing.assert_array_equal(model.sample(9, seed=21, **kw), ref)


def test_sample_ddim_strided_and_clipped(model):
    a = model.sample(16, seed=2, sampler="ddim", steps=4)
    np.testing.assert_array_equal(a, model.sample(16, seed=2, sampler="ddim", steps=4))
    assert not np.array_equal(a, model.sample(16, seed=2, sampler="ddim", steps=4, eta=1.0))
    c = model.sample(64, seed=3, sampler="ddim", steps=4, clip=0.5)
    assert np.abs(c).max() <= 0.5 + 1e-6  # the last DDIM step returns the clipped x0 prediction
    # a strided chain records its visited steps by default
    x, traj = model.sample(5, seed=1, steps=3, return_trajectory=True)
    assert traj.shape == (4, 5, D)
    np.testing.assert_array_equal(traj[-1], x)
    for kw, match in [(dict(sampler="euler"), "sampler"), (dict(steps=13), "steps"), (dict(eta=2.0), "eta"),
                      (dict(clip=-1.0), "clip"), (dict(steps=3, return_trajectory=True, record=[7]), "not among")]:
        with pytest.raises(ValueError, match=match):
            model.sample(2, **kw)


def test_reconstruct(model, x0):
    r0 = model.reconstruct(x0, 0)
    np.testing.assert_array_equal(r0, x0)
    assert r0 is not x0
    r = model.reconstruct(x0, 6, seed=2)
    assert r.shape == x0.shape and r.dtype == np.float32
    np.testing.assert_array_equal(r, model.reconstruct(x0, 6, seed=2))
    with pytest.raises(ValueError, match="0..12"):
        model.reconstruct(x0, 13)


@pytest.mark.parametrize("method", ["marginal", "clamp"])
def test_inpaint_keeps_known_pixels(model, x0, method):
    mask = np.array([True, False, True, False])
    out = model.inpaint(x0, mask, seed=0, method=method)
    assert out.shape == x0.shape and np.all(np.isfinite(out))
    np.testing.assert_array_equal(out[:, mask], x0[:, mask])
    assert not np.allclose(out[:, ~mask], x0[:, ~mask])
    np.testing.assert_array_equal(out, model.inpaint(x0, mask, seed=0, method=method))
    full = np.zeros(x0.shape, bool)
    full[::2, 1] = True  # per-sample masks
    out2 = model.inpaint(x0, full, seed=1, method=method)
    np.testing.assert_array_equal(out2[full], x0[full])
    with pytest.raises(ValueError, match="boolean"):
        model.inpaint(x0, mask.astype(int), method=method)
    with pytest.raises(ValueError, match="shape"):
        model.inpaint(x0, mask[:3], method=method)


def test_inpaint_methods_differ_only_in_what_the_nets_see(model, x0):
    """"marginal" is the default; "clamp" keeps the known pixels at x0 at every step [SD15], which
    changes the nets' input and hence the unknown pixels; an unknown method is refused."""
    mask = np.array([True, False, True, False])
    np.testing.assert_array_equal(model.inpaint(x0, mask, seed=3), model.inpaint(x0, mask, seed=3, method="marginal"))
    a = model.inpaint(x0, mask, seed=3, method="marginal")
    b = model.inpaint(x0, mask, seed=3, method="clamp")
    np.testing.assert_array_equal(a[:, mask], b[:, mask])
    assert not np.allclose(a[:, ~mask], b[:, ~mask])
    # with nothing known, nothing is imposed: both methods are the same chain with the same noise
    none = np.zeros(D, bool)
    np.testing.assert_array_equal(model.inpaint(x0, none, seed=4, method="marginal"),
                                  model.inpaint(x0, none, seed=4, method="clamp"))
    with pytest.raises(ValueError, match="method"):
        model.inpaint(x0, mask, method="repaint")


def test_inpaint_clamp_holds_known_pixels_at_every_step(model, x0, monkeypatch):
    """The nets see x0 on the known pixels at every step with "clamp", and a sample of the forward
    marginal q(x_t | x0) with "marginal" (mean sqrt(alpha_bar_t) x0: at t = T it is almost 0)."""
    mask = np.array([True, False, True, False])
    seen = {}
    orig = type(model).eps

    def spy(self, x_t, t):
        seen[int(t)] = x_t.detach().cpu().numpy().copy()
        return orig(self, x_t, t)

    monkeypatch.setattr(type(model), "eps", spy)
    model.inpaint(x0, mask, seed=5, method="clamp")
    for t, x in seen.items():
        np.testing.assert_array_equal(x[:, mask], x0[:, mask], err_msg=f"step {t}")
    seen.clear()
    model.inpaint(x0, mask, seed=5, method="marginal")
    T = model.T
    ab = model.schedule.alpha_bar[T]
    resid = seen[T][:, mask] - np.sqrt(ab) * x0[:, mask]
    assert not np.allclose(seen[T][:, mask], x0[:, mask])
    # the residual is sqrt(1 - alpha_bar_T) N(0, 1): a 6-sigma bound on its 12 values
    assert np.all(np.abs(resid) < 6 * np.sqrt(1 - ab))


# ----------------------------------------------------------------------------------- checkpoints
def test_checkpoint_round_trip_bit_for_bit(model, tmp_path):
    path = tmp_path / "ck"
    model.save(path)
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "model.safetensors"]
    back = ddpm.load(path, device="cpu")
    for name in ("W1", "b1", "W2", "b2"):
        a, b = getattr(model.model, name), getattr(back.model, name)
        assert a.dtype == b.dtype and torch.equal(a, b), name
    assert back.config == model.config
    assert back.schedule == model.schedule
    assert back.data == model.data and back.image_shape == (2, 2)
    np.testing.assert_array_equal(back.loss_history, model.loss_history)
    np.testing.assert_array_equal(back.epochs_done, model.epochs_done)
    np.testing.assert_array_equal(back.sample(5, seed=0), model.sample(5, seed=0))
    meta = json.loads((path / "config.json").read_text())
    assert meta["format"] == "physdiff.ddpm" and "physdiff_version" in meta and meta["trained"]


def test_checkpoint_overwrite_is_atomic_and_keeps_other_files(model, tmp_path):
    path = tmp_path / "run"
    path.mkdir()
    (path / "samples.nc").write_bytes(b"keep me")
    (path / "figs").mkdir()
    (path / "figs" / "a.png").write_bytes(b"png")
    model.save(path)
    model.save(path)  # overwrite an existing checkpoint
    assert (path / "samples.nc").read_bytes() == b"keep me"
    assert (path / "figs" / "a.png").read_bytes() == b"png"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary leftovers
    ddpm.load(path)
    with pytest.raises(ValueError, match="not a directory"):
        model.save(path / "samples.nc")


def test_checkpoint_errors(model, tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint directory"):
        ddpm.load(tmp_path / "missing")
    path = tmp_path / "ck"
    model.save(path)
    (path / "model.safetensors").rename(tmp_path / "w")
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        ddpm.load(path)
    # truncated weights
    raw = (tmp_path / "w").read_bytes()
    (path / "model.safetensors").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(PhysdiffError, match="corrupt"):
        ddpm.load(path)
    (path / "model.safetensors").write_bytes(raw)
    ddpm.load(path)
    cfg = (path / "config.json").read_text()
    (path / "config.json").write_text(cfg[:40])
    with pytest.raises(PhysdiffError, match="corrupt"):
        ddpm.load(path)
    meta = json.loads(cfg)
    meta["model"]["hidden"] = 17
    (path / "config.json").write_text(json.dumps(meta))
    with pytest.raises(PhysdiffError):
        ddpm.load(path)
    meta = json.loads(cfg)
    meta["format"] = "something-else"
    (path / "config.json").write_text(json.dumps(meta))
    with pytest.raises(PhysdiffError, match="not a physdiff DDPM"):
        ddpm.load(path)


# ------------------------------------------------------------------------------ physics: Gaussian
def exact_gaussian_eps(x_t, alpha_bar, mu, cov):
    """eps*(x_t) = -sqrt(Delta) score, score of N(s mu, s^2 cov + Delta I) (Tweedie's formula with the Gaussian posterior)."""
    s, delta = np.sqrt(alpha_bar), 1.0 - alpha_bar
    prec = np.linalg.inv(s**2 * cov + delta * np.eye(len(mu)))
    return np.sqrt(delta) * (x_t - s * mu) @ prec


@pytest.mark.parametrize("d", [1, 2])
def test_learned_eps_matches_exact_gaussian_eps(d):
    """A small model trained on Gaussian data learns the exact (linear) posterior-mean eps.

    The tolerance: the learned eps may not be better than the exact one, and its excess loss
    E|eps_theta - eps*|^2 / d is the learning error. With n = 4000 points, ~15 epochs, a net with
    H = 32 fits a linear map to O(1e-3) in that metric; we require < 2e-2 for every t, and the
    learned eps must be closer to eps* than the best constant (0) by a factor 10 wherever eps* is
    not negligible.
    """
    rng = np.random.default_rng(d)
    mu = np.array([0.5, -0.3])[:d]
    cov = np.array([[0.30, 0.12], [0.12, 0.10]])[:d, :d]
    n = 4000
    x0 = rng.multivariate_normal(mu, cov, size=n).astype(np.float32)
    cfg = TrainConfig(schedule={"name": "linear", "beta_start": 0.05, "beta_end": 0.5}, T=8, hidden=32,
                      lr=3e-3, epochs=15, batch=100, seed=0, device="cpu")
    m = ddpm.train(x0, cfg, progress=False, log=None)
    for t in range(1, cfg.T + 1):
        ab = m.schedule.alpha_bar[t]
        x_t = np.sqrt(ab) * rng.multivariate_normal(mu, cov, size=2000) + np.sqrt(1 - ab) * rng.standard_normal((2000, d))
        exact = exact_gaussian_eps(x_t, ab, mu, cov)
        learned = m.eps(x_t, t)
        err = np.mean((learned - exact) ** 2)
        scale = np.mean(exact**2)
        assert err < 2e-2, (t, err)
        if scale > 0.05:
            assert err < 0.1 * scale, (t, err, scale)


# ------------------------------------------------------------------------------------------ GPU
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_training_sampling_and_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    x0 = rng.standard_normal((256, 3)).astype(np.float32)
    cfg = TrainConfig(schedule={"name": "linear", "beta_start": 0.01, "beta_end": 0.3}, T=10, hidden=8,
                      epochs=2, batch=32, device="cuda")
    m = ddpm.train(x0, cfg, progress=False, log=None)
    assert m.device.type == "cuda" and np.all(np.isfinite(m.loss_history))
    s = m.sample(16, seed=0)
    assert isinstance(s, np.ndarray) and np.all(np.isfinite(s))
    np.testing.assert_array_equal(s, m.sample(16, seed=0))
    m.save(tmp_path / "ck")
    cpu = ddpm.load(tmp_path / "ck", device="cpu")
    assert torch.equal(cpu.model.W1, m.model.W1.cpu())
    np.testing.assert_allclose(cpu.eps(x0[:8], 5), m.eps(x0[:8], 5), rtol=1e-4, atol=1e-5)


def test_checkpoint_directory_has_the_usual_permissions(tmp_path):
    import os
    import stat

    x0 = np.random.default_rng(0).standard_normal((64, 2)).astype(np.float32)
    model = ddpm.train(x0, ddpm.TrainConfig(T=3, hidden=4, epochs=1, batch=32, device="cpu"), progress=False, log=None)
    model.save(tmp_path / "ckpt")
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE((tmp_path / "ckpt").stat().st_mode) == 0o777 & ~mask
    assert stat.S_IMODE((tmp_path / "ckpt" / "model.safetensors").stat().st_mode) == 0o666 & ~mask
