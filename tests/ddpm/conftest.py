"""Shared helpers of the DDPM tests."""

import pytest
import torch


def _sequential_net(model, t: int) -> torch.nn.Sequential:
    """The nn.Sequential equivalent of net ``t`` (1-based) of a StackedAutoencoders, weights copied."""
    act = torch.nn.ReLU() if model.activation == "relu" else torch.nn.Identity()
    net = torch.nn.Sequential(torch.nn.Linear(model.d, model.hidden), act, torch.nn.Linear(model.hidden, model.d))
    with torch.no_grad():
        net[0].weight.copy_(model.W1[t - 1].T)
        net[0].bias.copy_(model.b1[t - 1])
        net[2].weight.copy_(model.W2[t - 1].T)
        net[2].bias.copy_(model.b2[t - 1])
    return net


@pytest.fixture
def sequential_net():
    return _sequential_net


@pytest.fixture(autouse=True)
def _one_thread():
    # The test models are tiny: intra-op threads only add synchronisation (10x slower on a busy
    # 2-core machine), so the DDPM tests run single-threaded.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
