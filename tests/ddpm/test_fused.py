"""The fused small-net epoch (physdiff.ddpm.fused) == one nn.Sequential + torch.optim.Adam per net."""

import numpy as np
import numba
import pytest
import torch

from physdiff import PhysdiffError, ddpm
from physdiff.ddpm import StackedAutoencoders, TrainConfig, fused, loss_weights
from physdiff.ddpm.train import _randomness

T, D, H, N = 4, 3, 5, 22  # N = 22 with batch 8: two full minibatches and a partial one of 6


def tiny_config(**kw):
    base = dict(schedule={"name": "linear", "beta_start": 0.01, "beta_end": 0.3}, T=T, hidden=H, lr=3e-3,
                lr_first=1e-2, lr_first_steps=1, epochs=3, batch=8, seed=5, device="cpu")
    base.update(kw)
    return TrainConfig(**base)


def tiny_data(n=N, d=D, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, d)) * 0.7 + 0.3).astype(np.float32)


@pytest.fixture
def always(monkeypatch):
    monkeypatch.setattr(fused, "MODE", "always")


def reference_nets(x0, config, sequential_net):
    """The thesis' way, fed the trainer's per-(t, epoch) permutations and noise."""
    sched = config.make_schedule()
    init = StackedAutoencoders(config.T, x0.shape[1], config.hidden, config.activation, seed=config.seed)
    lrs, w = config.lr_per_step(), loss_weights(sched, config.loss, config.sigma)
    x0_t, (n, d) = torch.from_numpy(x0), x0.shape
    gen, nets, losses = torch.Generator(), [], np.zeros((config.epochs, config.T))
    for t in range(1, config.T + 1):
        net = sequential_net(init, t)
        opt = torch.optim.Adam(net.parameters(), lr=lrs[t - 1])
        sa, s1 = float(np.sqrt(sched.alpha_bar[t])), float(np.sqrt(1 - sched.alpha_bar[t]))
        for epoch in range(config.epochs):
            perm, noise = (r[0] for r in _randomness(config.seed, [t], range(epoch, epoch + 1), n, d, "cpu", gen))
            for lo in range(0, n, config.batch):
                eps = noise[0, lo:lo + config.batch]
                loss = float(w[t - 1]) * torch.nn.functional.mse_loss(
                    net(sa * x0_t[perm[0, lo:lo + config.batch]] + s1 * eps), eps)
                opt.zero_grad()
                loss.backward()
                opt.step()
                losses[epoch, t - 1] += float(loss.detach()) * len(eps) / n
        nets.append(net)
    return nets, losses


@pytest.mark.parametrize("loss,activation,d", [("simple", "relu", D), ("weighted", "relu", D), ("simple", "linear", D),
                                               ("simple", "relu", 2), ("weighted", "linear", 2)])
def test_fused_equals_per_net_torch_adam(loss, activation, d, always, sequential_net):
    # d = 2 runs the kernel's two-pass special case (the Swiss roll), d = 3 the general one
    x0 = tiny_data(d=d)
    cfg = tiny_config(loss=loss, activation=activation)
    model = ddpm.train(x0, cfg, progress=False, log=None)
    nets, losses = reference_nets(x0, cfg, sequential_net)
    for t in range(1, T + 1):
        mine = [model.model.W1[t - 1].T, model.model.b1[t - 1], model.model.W2[t - 1].T, model.model.b2[t - 1]]
        for a, b in zip(mine, nets[t - 1].parameters()):
            # float32 sums in another order: a few ulp per step, amplified at most ~10x by Adam
            torch.testing.assert_close(a.detach(), b.detach(), rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(model.loss_history, losses, rtol=1e-5)


def test_fused_equals_batched_trainer(monkeypatch):
    x0 = tiny_data(n=45)
    cfg = tiny_config(T=7, chunk=3, loss="weighted")
    runs = {}
    for mode in ("always", "never"):
        monkeypatch.setattr(fused, "MODE", mode)
        runs[mode] = ddpm.train(x0, cfg, progress=False, log=None)
    for name in ("W1", "b1", "W2", "b2"):
        torch.testing.assert_close(getattr(runs["always"].model, name), getattr(runs["never"].model, name),
                                   rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(runs["always"].loss_history, runs["never"].loss_history, rtol=1e-5)


def test_fused_result_does_not_depend_on_thread_count(always):
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("numba has a single thread here")
    x0 = tiny_data(n=40, d=2)
    cfg = tiny_config(T=9, hidden=17)
    before = numba.get_num_threads()
    try:
        out = []
        for k in (1, 2):
            numba.set_num_threads(k)
            out.append(ddpm.train(x0, cfg, progress=False, log=None))
    finally:
        numba.set_num_threads(before)
    for name in ("W1", "b1", "W2", "b2"):
        assert torch.equal(getattr(out[0].model, name), getattr(out[1].model, name))
    assert np.array_equal(out[0].loss_history, out[1].loss_history)


_HASH_SCRIPT = """
import hashlib, numpy as np
from physdiff import ddpm
from physdiff.ddpm import fused
fused.MODE = "always"
x0 = np.random.default_rng(0).standard_normal((40, 5)).astype(np.float32)
cfg = ddpm.TrainConfig(schedule={"name": "linear", "beta_start": 0.01, "beta_end": 0.3}, T=4, hidden=12,
                       lr=3e-3, epochs=2, batch=8, seed=5)
m = ddpm.train(x0, cfg, progress=False, log=None)
print(hashlib.sha256(b"".join(getattr(m.model, k).detach().numpy().tobytes() for k in ("W1", "b1", "W2", "b2")))
      .hexdigest())
"""


def test_fused_result_does_not_depend_on_numba_cache(tmp_path):
    """A freshly compiled kernel and the one numba loads from its cache give the same bytes (a
    ``parallel=True`` kernel did not: numba optimises the two differently under fastmath)."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    runs = [subprocess.run([sys.executable, "-c", _HASH_SCRIPT], env=env, capture_output=True, text=True, check=True)
            for _ in range(2)]  # compiles and caches, then loads
    assert any(tmp_path.rglob("*.nbi"))
    assert runs[0].stdout == runs[1].stdout


def test_fused_divergence_names_the_minibatch(always):
    x0 = tiny_data() * np.float32(1e20)  # (1e20)^2 overflows float32: inf loss at once
    with pytest.raises(PhysdiffError, match=r"non-finite loss at epoch 1, minibatch 1, timesteps t=\[1, 2, 3, 4\]"):
        ddpm.train(x0, tiny_config(), progress=False, log=None)


def test_dispatch_rule(monkeypatch):
    assert fused.use_fused("cpu", 2, 1000, 100)  # the Swiss roll
    assert fused.use_fused("cpu", 16, 256, 100)
    assert not fused.use_fused("cpu", 64, 160, 64)  # Curie-Weiss: batched matmuls
    assert not fused.use_fused("cpu", 2, 1 << 17, 64)
    assert not fused.use_fused("cpu", 784, 1600, 64)  # MNIST: batched matmuls
    assert not fused.use_fused("cuda", 2, 16, 8)
    monkeypatch.setattr(fused, "MODE", "never")
    assert not fused.use_fused("cpu", 2, 16, 8)


def test_custom_optimizer_takes_the_batched_path(always, monkeypatch):
    calls = []

    def spy(*args, **kw):
        calls.append(1)
        raise AssertionError("the fused epoch ran with a custom optimiser")

    class OtherAdam(ddpm.StackedAdam):  # may change step(): the fused kernel must not replace it
        pass

    monkeypatch.setattr(fused, "train_epoch", spy)
    ddpm.train(tiny_data(), tiny_config(epochs=1), progress=False, log=None,
               optimizer=lambda params, lrs: OtherAdam(params, lrs))
    assert not calls
