"""Batched-over-timesteps training == T independent nets with torch.optim.Adam; config; errors; resume."""

import json
import sys

import numpy as np
import pytest
import torch

from physdiff import PhysdiffError, ddpm
from physdiff.ddpm import StackedAdam, StackedAutoencoders, TrainConfig, get_config, loss_weights
from physdiff.ddpm.model import apply_nets
from physdiff.ddpm.train import _randomness
from physdiff.schedules import make_schedule


T, D, H, N = 4, 3, 5, 22  # N = 22 with batch 8: two full minibatches and a partial one of 6


def tiny_config(**kw):
    base = dict(schedule={"name": "linear", "beta_start": 0.01, "beta_end": 0.3}, T=T, hidden=H, lr=3e-3,
                lr_first=1e-2, lr_first_steps=1, epochs=2, batch=8, seed=5, device="cpu")
    base.update(kw)
    return TrainConfig(**base)


def tiny_data(n=N, d=D, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, d)) * 0.7 + 0.3).astype(np.float32)


# ------------------------------------------------------------------------------------------ Adam
@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("lrs", [[1e-2] * 3, [1e-1, 1e-2, 1e-2, 3e-3]])
def test_stacked_adam_equals_torch_adam(lrs, fused):
    g = torch.Generator().manual_seed(0)
    C = len(lrs)
    W = torch.randn(C, 4, 6, generator=g)
    b = torch.randn(C, 6, generator=g)
    refs = [[W[c].clone().requires_grad_(), b[c].clone().requires_grad_()] for c in range(C)]
    opts = [torch.optim.Adam(refs[c], lr=lrs[c]) for c in range(C)]
    mine = [W.clone(), b.clone()]
    adam = StackedAdam(mine, lrs, fused=fused)
    assert adam.fused == fused
    for _ in range(7):
        gW, gb = torch.randn(C, 4, 6, generator=g), torch.randn(C, 6, generator=g) * 10
        adam.step([gW, gb])
        for c in range(C):
            refs[c][0].grad, refs[c][1].grad = gW[c].clone(), gb[c].clone()
            opts[c].step()
    for c in range(C):
        if not fused:  # the same arithmetic as torch.optim.Adam(foreach=False): bit for bit
            assert torch.equal(mine[0][c], refs[c][0].detach())
        torch.testing.assert_close(mine[0][c], refs[c][0].detach(), rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(mine[1][c], refs[c][1].detach(), rtol=1e-6, atol=1e-7)
        st = opts[c].state[refs[c][0]]
        torch.testing.assert_close(adam.exp_avg[0][c], st["exp_avg"], rtol=1e-6, atol=1e-8)
        torch.testing.assert_close(adam.exp_avg_sq[0][c], st["exp_avg_sq"], rtol=1e-6, atol=1e-10)


@pytest.mark.parametrize("fused", [False, True])
def test_stacked_adam_split_step_equals_whole_step(fused):
    """A step split into calls over disjoint parameters (the batched trainer updates the second
    layer before computing the first's gradient) is the whole step, bit for bit."""
    g = torch.Generator().manual_seed(1)
    lrs = [1e-1, 1e-2, 1e-2]
    start = [torch.randn(3, 4, 6, generator=g), torch.randn(3, 6, generator=g)]
    whole, split = [p.clone() for p in start], [p.clone() for p in start]
    a, b = StackedAdam(whole, lrs, fused=fused), StackedAdam(split, lrs, fused=fused)
    for _ in range(5):
        gW, gb = torch.randn(3, 4, 6, generator=g), torch.randn(3, 6, generator=g)
        a.step([gW, gb])
        b.step([None, gb])
        assert b.step_count == a.step_count - 1  # counted with the first parameter
        b.step([gW, None])
        assert b.step_count == a.step_count
    for p, q in zip(whole + a.exp_avg + a.exp_avg_sq, split + b.exp_avg + b.exp_avg_sq):
        assert torch.equal(p, q)


# ------------------------------------------------------------------------------- trainer vs torch
def reference_training(x0, config, sequential_net):
    """The thesis' way: one nn.Sequential + torch.optim.Adam per timestep, trained one after another,
    fed the same minibatches and noise as the batched trainer (same per-(t, epoch) streams)."""
    sched = config.make_schedule()
    init = StackedAutoencoders(config.T, x0.shape[1], config.hidden, config.activation, seed=config.seed)
    lrs = config.lr_per_step()
    w = loss_weights(sched, config.loss, config.sigma)
    x0_t = torch.from_numpy(x0)
    n, d = x0.shape
    gen = torch.Generator()
    nets, first_grads = [], []
    for t in range(1, config.T + 1):
        net = sequential_net(init, t)
        opt = torch.optim.Adam(net.parameters(), lr=lrs[t - 1])
        sa, s1 = np.sqrt(sched.alpha_bar[t]), np.sqrt(1 - sched.alpha_bar[t])
        for epoch in range(config.epochs):
            perm, noise = (r[0] for r in _randomness(config.seed, [t], range(epoch, epoch + 1), n, d, "cpu", gen))
            for lo in range(0, n, config.batch):
                idx = perm[0, lo:lo + config.batch]
                eps = noise[0, lo:lo + config.batch]
                x_t = float(sa) * x0_t[idx] + float(s1) * eps
                loss = float(w[t - 1]) * torch.nn.functional.mse_loss(net(x_t), eps)
                opt.zero_grad()
                loss.backward()
                if epoch == 0 and lo == 0:
                    first_grads.append([p.grad.clone() for p in net.parameters()])
                opt.step()
        nets.append(net)
    return nets, first_grads


def stacked_params(model, t):
    return [model.W1[t - 1].T, model.b1[t - 1], model.W2[t - 1].T, model.b2[t - 1]]


@pytest.mark.parametrize("mode", ["never", "auto"])  # the batched path; the fused one at these sizes
@pytest.mark.parametrize("loss,activation,chunk", [("simple", "relu", None), ("weighted", "relu", 3),
                                                   ("simple", "linear", 1)])
def test_batched_training_equals_per_timestep_adam(loss, activation, chunk, mode, sequential_net, monkeypatch):
    from physdiff.ddpm import fused

    monkeypatch.setattr(fused, "MODE", mode)
    x0 = tiny_data()
    cfg = tiny_config(loss=loss, activation=activation, chunk=chunk)
    model = ddpm.train(x0, cfg, progress=False, log=None)
    nets, _ = reference_training(x0, cfg, sequential_net)
    for t in range(1, T + 1):
        for mine, ref in zip(stacked_params(model.model, t), nets[t - 1].parameters()):
            torch.testing.assert_close(mine.detach(), ref.detach(), rtol=1e-5, atol=1e-6)


def test_summed_loss_gives_each_nets_own_gradient(sequential_net):
    x0 = tiny_data()
    cfg = tiny_config()
    sched = cfg.make_schedule()
    init = StackedAutoencoders(T, D, H, seed=cfg.seed)
    perms, noise = (r[0] for r in _randomness(cfg.seed, list(range(1, T + 1)), range(1), N, D, "cpu",
                                                torch.Generator()))
    idx, eps = perms[:, :8], noise[:, :8]
    sa = torch.tensor(np.sqrt(sched.alpha_bar[1:]), dtype=torch.float32).view(-1, 1, 1)
    s1 = torch.tensor(np.sqrt(1 - sched.alpha_bar[1:]), dtype=torch.float32).view(-1, 1, 1)
    x_t = sa * torch.from_numpy(x0)[idx] + s1 * eps
    params = [p.detach().clone().requires_grad_() for p in (init.W1, init.b1, init.W2, init.b2)]
    per_t = (apply_nets(x_t, *params) - eps).square().mean(dim=(1, 2))
    grads = torch.autograd.grad(per_t.sum(), params)
    _, first_grads = reference_training(x0, cfg.replace(epochs=1), sequential_net)
    for t in range(1, T + 1):
        mine = [grads[0][t - 1].T, grads[1][t - 1], grads[2][t - 1].T, grads[3][t - 1]]
        for a, b in zip(mine, first_grads[t - 1]):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_chunk_size_does_not_change_the_result():
    x0 = tiny_data()
    a = ddpm.train(x0, tiny_config(chunk=1), progress=False, log=None)
    b = ddpm.train(x0, tiny_config(chunk=4), progress=False, log=None)
    for name in ("W1", "b1", "W2", "b2"):
        torch.testing.assert_close(getattr(a.model, name), getattr(b.model, name), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(a.loss_history, b.loss_history, rtol=1e-5)


def test_auto_chunk_fits_one_step_in_the_cache_budget():
    """CPU, batched path: the largest even chunk whose step (weights, gradients, moments,
    activations) fits _CACHE_BUDGET; the memory budget alone for nets too large for it (MNIST's),
    for the fused path and on CUDA."""
    from physdiff.ddpm.train import _CACHE_BUDGET, _auto_chunk, _step_bytes

    cpu = torch.device("cpu")
    C = _auto_chunk(100, 4000, 64, 160, 64, cpu)  # the Curie-Weiss preset
    assert C % 2 == 0 and _step_bytes(C, 64, 160, 64) <= _CACHE_BUDGET < _step_bytes(C + 2, 64, 160, 64)
    assert _auto_chunk(100, 12665, 784, 2400, 64, cpu) == 2  # MNIST: 3 fit the memory budget, even
    assert _auto_chunk(10, 6000, 784, 1700, 50, cpu) == 4  # fewer images: 4 fit
    assert _auto_chunk(100, 4000, 64, 160, 64, cpu, fused=True) == 100
    assert _auto_chunk(100, 4000, 64, 160, 64, torch.device("cuda")) == 100
    assert _auto_chunk(7, 4000, 64, 160, 64, cpu) == 7  # a whole T fits: not rounded


def test_per_layer_adam_steps_equal_whole_steps_in_training(monkeypatch):
    """Steps too large for the cache budget hand Adam one layer at a time: the same bytes."""
    train_module = sys.modules["physdiff.ddpm.train"]  # the package's `train` is the function
    monkeypatch.setattr(train_module._fused, "MODE", "never")  # the batched path, whose steps these are
    calls = []
    monkeypatch.setattr(train_module._Step, "backward",
                        lambda self, update, per_layer, f=train_module._Step.backward: (calls.append(per_layer),
                                                                                       f(self, update, per_layer)))
    x0 = tiny_data()
    whole = ddpm.train(x0, tiny_config(chunk=T), progress=False, log=None)
    monkeypatch.setattr(train_module, "_CACHE_BUDGET", 0)
    split = ddpm.train(x0, tiny_config(chunk=T), progress=False, log=None)
    assert calls and not any(calls[:len(calls) // 2]) and all(calls[len(calls) // 2:])
    for name in ("W1", "b1", "W2", "b2"):
        assert torch.equal(getattr(whole.model, name), getattr(split.model, name))
    assert np.array_equal(whole.loss_history, split.loss_history)


def test_randomness_drawn_several_epochs_at_once_is_each_epochs_own():
    """Net t's epoch e is seeded by (seed, t, e): drawing epochs 1..3 into buffers, on two threads,
    gives the draws of each epoch alone, on one."""
    steps, n, d = [2, 5, 9], 30, 3
    out = (torch.full((3, 3, n), -1, dtype=torch.long), torch.full((3, 3, n, d), float("nan")))
    got = _randomness(4, steps, range(1, 4), n, d, "cpu", [torch.Generator(), torch.Generator()], out)
    assert got[0] is out[0] and got[1] is out[1]
    for k, e in enumerate(range(1, 4)):
        perms, noise = _randomness(4, steps, range(e, e + 1), n, d, "cpu", torch.Generator())
        assert torch.equal(got[0][k], perms[0]) and torch.equal(got[1][k], noise[0])


def test_training_is_reproducible_and_records_losses():
    x0 = tiny_data()
    a = ddpm.train(x0, tiny_config(), progress=False, log=None)
    b = ddpm.train(x0, tiny_config(), progress=False, log=None)
    assert torch.equal(a.model.W1, b.model.W1)
    assert a.loss_history.shape == (2, T) and np.all(np.isfinite(a.loss_history))
    assert np.array_equal(a.epochs_done, np.full(T, 2))
    c = ddpm.train(x0, tiny_config(seed=6), progress=False, log=None)
    assert not torch.equal(a.model.W1, c.model.W1)


def test_seed_none_is_drawn_and_stored():
    m = ddpm.train(tiny_data(), tiny_config(seed=None, epochs=1), progress=False, log=None)
    assert isinstance(m.config.seed, int)


# ----------------------------------------------------------------------------------- loss weights
def test_loss_weights():
    s = make_schedule("linear", 50, beta_start=1e-3, beta_end=0.1)
    assert np.array_equal(loss_weights(s, "simple"), np.ones(50))
    w = loss_weights(s, "weighted", "beta")
    b, a, ab = s.betas[1:], s.alphas[1:], s.alpha_bar[1:]
    np.testing.assert_allclose(w, b / (2 * a * (1 - ab)), rtol=1e-12)
    np.testing.assert_allclose(w[0], 1 / (2 * a[0]), rtol=1e-12)  # 1 - alpha_bar_1 = beta_1
    wp = loss_weights(s, "weighted", "posterior")
    assert np.all(np.isfinite(wp)) and wp[0] == w[0]  # t = 1 falls back to sigma^2 = beta_1
    bt = s.posterior_variance[2:]
    np.testing.assert_allclose(wp[1:], b[1:] ** 2 / (2 * bt * a[1:] * (1 - ab[1:])), rtol=1e-12)
    with pytest.raises(ValueError, match="loss"):
        loss_weights(s, "l1")


# ------------------------------------------------------------------------------------- config
def test_config_json_round_trip_and_validation():
    cfg = get_config("mnist", "thesis")
    d = json.loads(json.dumps(cfg.to_dict()))
    assert TrainConfig.from_dict(d) == cfg
    with pytest.raises(ValueError, match="unknown TrainConfig field"):
        TrainConfig.from_dict({**d, "learning_rate": 1})
    for bad in (dict(T=0), dict(hidden=-1), dict(lr=0.0), dict(loss="l1"), dict(sigma="x"),
                dict(activation="tanh"), dict(batch=0), dict(schedule={"name": "nope"}),
                dict(schedule={"name": "linear", "T": 5})):
        with pytest.raises(ValueError):
            TrainConfig(**bad)


def test_thesis_presets_are_table_2():
    m = get_config("mnist", "thesis")
    assert (m.T, m.hidden, m.batch, m.epochs, m.lr, m.lr_first, m.lr_first_steps) == (1000, 1700, 50, 300, 2e-4, 1e-4, 4)
    s = m.make_schedule()
    assert s.betas[1] == pytest.approx(1e-4) and s.betas[-1] == pytest.approx(0.02)
    lrs = m.lr_per_step()
    assert np.all(lrs[:4] == 1e-4) and np.all(lrs[4:] == 2e-4)
    s2, s3 = get_config("swiss-roll-2", "thesis"), get_config("swiss-roll-3", "thesis")
    assert (s2.hidden, s2.batch, s2.lr, s2.epochs, s2.n_train) == (900, 100, 0.01, 20, 10_000)
    assert (s3.hidden, s3.batch, s3.lr, s3.epochs, s3.n_train) == (1000, 50, 0.005, 30, 20_000)


def test_get_config_overrides_and_errors():
    cfg = get_config("mnist", "quick", epochs=3, hidden=None)
    assert cfg.epochs == 3 and cfg.hidden == get_config("mnist", "quick").hidden
    # reference_T keeps the rescaled linear schedule's end point when T changes
    a = get_config("swiss-roll-2", "quick", T=50).make_schedule()
    b = get_config("swiss-roll-2", "quick", T=200).make_schedule()
    assert a.betas[-1] == pytest.approx(0.02 * 1000 / 50) and b.betas[1] == pytest.approx(1e-4 * 1000 / 200)
    assert a.alpha_bar[-1] < 1e-4 and b.alpha_bar[-1] < 1e-4  # both end in N(0, I)
    with pytest.raises(ValueError, match="valid presets"):
        get_config("mnist", "fast")
    with pytest.raises(ValueError, match="valid datasets"):
        get_config("cifar", "quick")
    with pytest.raises(ValueError, match="unknown TrainConfig field"):
        get_config("mnist", "quick", epoch=3)


# ------------------------------------------------------------------------------------- errors
def test_bad_data_raise_value_error():
    cfg = tiny_config()
    x = tiny_data()
    x[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        ddpm.train(x, cfg, progress=False, log=None)
    with pytest.raises(ValueError, match="shape"):
        ddpm.train(np.zeros((2, 3, 4), np.float32), cfg, progress=False, log=None)
    with pytest.raises(ValueError, match="empty"):
        ddpm.train(np.zeros((0, 3), np.float32), cfg, progress=False, log=None)
    with pytest.raises(ValueError, match="TrainConfig"):
        ddpm.train(tiny_data(), {"T": 3}, progress=False, log=None)
    with pytest.raises(ValueError, match="image_shape"):
        ddpm.train(tiny_data(), cfg, progress=False, log=None, metadata={"image_shape": [2, 2]})


def test_small_n_adapts_the_batch():
    msgs = []
    m = ddpm.train(tiny_data(n=5), tiny_config(epochs=1), progress=False, log=msgs.append)
    assert any("minibatches of 5" in s for s in msgs)
    assert np.all(np.isfinite(m.loss_history))


@pytest.mark.parametrize("how", ["huge_lr", "inf_loss"])
def test_divergence_raises_physdiff_error(how):
    if how == "huge_lr":
        x, cfg = tiny_data(), tiny_config(lr=1e36, lr_first=None, epochs=3)
    else:  # finite float32 data whose squared error overflows
        x, cfg = np.full((N, D), 3e37, np.float32), tiny_config()
    with pytest.raises(PhysdiffError, match=r"epoch \d+.*t=\[.*lower the learning rate"):
        ddpm.train(x, cfg, progress=False, log=None)


# ------------------------------------------------------------------------------------- resume
class Stop(Exception):
    pass


def test_resume_equals_uninterrupted_run(tmp_path):
    x0 = tiny_data()
    cfg = tiny_config(T=6, chunk=2, epochs=3)
    full = ddpm.train(x0, cfg, progress=False, log=None)

    def stop(model, steps, epoch):
        if steps == [3, 4] and epoch == 1:
            raise Stop

    ck = tmp_path / "ck"
    with pytest.raises(Stop):
        ddpm.train(x0, cfg, progress=False, log=None, checkpoint=ck, checkpoint_every=0, on_epoch=stop)
    with pytest.raises(PhysdiffError, match="partial.*allow_partial"):
        ddpm.load(ck)
    part = ddpm.load(ck, allow_partial=True)
    assert part._train_state is not None and list(part.epochs_done) == [3, 3, 2, 2, 0, 0]
    assert not part.trained
    # the finished chunk is its own file (weights only), the running one carries its Adam state
    assert sorted(p.name for p in ck.iterdir()) == ["config.json", "model.safetensors", "nets-0001-0002.safetensors",
                                                    "running-0003-0004-e2.safetensors"]
    with pytest.raises(ValueError, match="differs in"):
        ddpm.train(x0, cfg.replace(lr=1e-3), progress=False, log=None, resume=ck)
    with pytest.raises(ValueError, match="different data"):
        ddpm.train(x0 + 1, cfg, progress=False, log=None, resume=ck)
    resumed = ddpm.train(x0, cfg, progress=False, log=None, resume=ck, checkpoint=ck)
    for name in ("W1", "b1", "W2", "b2"):
        assert torch.equal(getattr(resumed.model, name), getattr(full.model, name)), name
    np.testing.assert_array_equal(resumed.loss_history, full.loss_history)
    # the final save is one consolidated file without resume state
    assert sorted(p.name for p in ck.iterdir()) == ["config.json", "model.safetensors"]
    final = ddpm.load(ck)
    assert final._train_state is None and final.trained
    assert torch.equal(final.model.W2, full.model.W2)


def test_rescaled_schedule_with_too_few_steps_says_how_many():
    with pytest.raises(ValueError, match=r"too few steps.*use T > 20"):
        ddpm.get_config("swiss-roll-2", "quick", T=10)


def test_explicit_weights_and_optimizer_hooks():
    x0 = np.random.default_rng(0).standard_normal((64, 3)).astype(np.float32)
    cfg = TrainConfig(schedule={"name": "linear"}, T=4, hidden=5, epochs=2, batch=32, seed=0, loss="weighted")
    default = ddpm.train(x0, cfg, progress=False, log=None)
    sched = cfg.make_schedule()
    explicit = ddpm.train(x0, cfg, progress=False, log=None, weights=loss_weights(sched, "weighted"),
                          optimizer=lambda params, lrs: StackedAdam(params, lrs))
    for a, b in zip(default.model.parameters(), explicit.model.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    with pytest.raises(ValueError, match="one per step"):
        ddpm.train(x0, cfg, progress=False, log=None, weights=np.ones(3))
    with pytest.raises(ValueError, match="positive"):
        ddpm.train(x0, cfg, progress=False, log=None, weights=np.array([1.0, 0.0, 1.0, 1.0]))


# ------------------------------------------------------------------------------------- snapshots
@pytest.mark.parametrize("mode", ["never", "always"])  # the batched and the fused epoch
def test_snapshots_are_the_separate_runs_bit_for_bit(mode, monkeypatch):
    from physdiff.ddpm import fused

    monkeypatch.setattr(fused, "MODE", mode)
    x0 = tiny_data()
    cfg = tiny_config(T=6, chunk=4, init="gaussian", epochs=7)  # two chunks, the second one short
    snaps = ddpm.train_snapshots(x0, cfg, [3, 0, 1, 3], progress=False, log=None)
    assert list(snaps) == [0, 1, 3]
    for e, m in snaps.items():
        alone = ddpm.train(x0, cfg.replace(epochs=e), progress=False, log=None)
        assert m.config == alone.config and m.trained and list(m.epochs_done) == [e] * 6
        for name in ("W1", "b1", "W2", "b2"):
            assert torch.equal(getattr(m.model, name), getattr(alone.model, name)), (e, name)
        np.testing.assert_array_equal(m.loss_history, alone.loss_history)
    assert not torch.equal(snaps[0].model.W1, snaps[1].model.W1)


def test_snapshots_errors():
    x0 = tiny_data()
    for bad in ([], [-1], [1.5], [True]):
        with pytest.raises(ValueError, match="epochs"):
            ddpm.train_snapshots(x0, tiny_config(), bad, progress=False, log=None)
    with pytest.raises(ValueError, match="epochs"):  # the random start alone is refused, as by train
        ddpm.train_snapshots(x0, tiny_config(init="random"), [0, 2], progress=False, log=None)
