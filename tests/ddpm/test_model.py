"""StackedAutoencoders: initialisation, batched forward == T separate nn.Sequential nets."""

import math

import numpy as np
import pytest
import torch

from physdiff.ddpm import StackedAutoencoders


def test_shapes_and_init_bounds():
    T, d, H = 5, 7, 11
    m = StackedAutoencoders(T, d, H, seed=3).requires_grad_(False)
    assert m.W1.shape == (T, d, H) and m.b1.shape == (T, H) and m.W2.shape == (T, H, d) and m.b2.shape == (T, d)
    assert m.W1.dtype == torch.float32
    for p, fan_in in ((m.W1, d), (m.b1, d), (m.W2, H), (m.b2, H)):
        assert float(p.abs().max()) <= 1 / math.sqrt(fan_in)
    # uniform on (-a, a): mean 0, variance a^2/3; 5 sigma on the sample mean and variance
    a = 1 / math.sqrt(d)
    w = m.W1.detach().double().reshape(-1)
    nvals = w.numel()
    assert abs(float(w.mean())) < 5 * a / math.sqrt(3 * nvals)
    sd_var = a**2 * math.sqrt(1 / 5 - 1 / 9) / math.sqrt(nvals)  # sqrt((mu4 - sigma^4) / n)
    assert abs(float(w.var()) - a**2 / 3) < 5 * sd_var


def test_init_reproducible_and_independent_of_T():
    a = StackedAutoencoders(4, 3, 5, seed=1)
    b = StackedAutoencoders(4, 3, 5, seed=1)
    c = StackedAutoencoders(6, 3, 5, seed=1)
    d = StackedAutoencoders(4, 3, 5, seed=2)
    for name in ("W1", "b1", "W2", "b2"):
        assert torch.equal(getattr(a, name), getattr(b, name))
        assert torch.equal(getattr(a, name), getattr(c, name)[:4])
        assert not torch.equal(getattr(a, name), getattr(d, name))
    # the nets differ from each other
    assert not torch.equal(a.W1[0], a.W1[1])


@pytest.mark.parametrize("activation", ["relu", "linear"])
def test_forward_matches_sequential_nets(activation, sequential_net):
    T, d, H, B = 4, 6, 9, 5
    m = StackedAutoencoders(T, d, H, activation, seed=0)
    x = torch.randn(T, B, d, generator=torch.Generator().manual_seed(0))
    out = m(x, torch.arange(T))
    out_slice = m(x[1:3], slice(1, 3))
    for t in range(1, T + 1):
        ref = sequential_net(m, t)(x[t - 1])
        torch.testing.assert_close(out[t - 1], ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out_slice, out[1:3], rtol=1e-6, atol=1e-7)
    # a reordered index list picks the right nets
    idx = torch.tensor([3, 0])
    torch.testing.assert_close(m(x[[3, 0]], idx), out[[3, 0]], rtol=1e-6, atol=1e-7)


def test_per_sample_eps_groups_by_step(sequential_net):
    T, d, H, n = 5, 3, 8, 40
    m = StackedAutoencoders(T, d, H, seed=0)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, d, generator=g)
    t = torch.randint(1, T + 1, (n,), generator=g)
    out = m.eps(x, t)
    for i in range(n):
        ref = sequential_net(m, int(t[i]))(x[i : i + 1])[0]
        torch.testing.assert_close(out[i], ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(m.eps(x, 2), m.eps(x, np.full(n, 2)), rtol=0, atol=0)
    with pytest.raises(ValueError, match="1..5"):
        m.eps(x, 0)
    with pytest.raises(ValueError, match="1..5"):
        m.eps(x, np.full(n, 6))
    with pytest.raises(ValueError, match="shape"):
        m.eps(x[:, :2], 1)
    with pytest.raises(ValueError, match="one step per sample"):
        m.eps(x, np.ones(n - 1, dtype=int))


def test_bad_sizes():
    with pytest.raises(ValueError):
        StackedAutoencoders(0, 3, 4)
    with pytest.raises(ValueError, match="activation"):
        StackedAutoencoders(2, 3, 4, activation="tanh")


def test_from_tensors_wraps_without_copy():
    m = StackedAutoencoders(3, 2, 4, seed=0)
    w = StackedAutoencoders.from_tensors(m.W1.detach(), m.b1.detach(), m.W2.detach(), m.b2.detach(), "relu")
    assert (w.T, w.d, w.hidden) == (3, 2, 4)
    x = torch.randn(3, 5, 2)
    torch.testing.assert_close(w(x, slice(0, 3)), m(x, slice(0, 3)), rtol=0, atol=0)
    with pytest.raises(ValueError, match="b1"):
        StackedAutoencoders.from_tensors(m.W1, m.b1[:, :3], m.W2, m.b2)
