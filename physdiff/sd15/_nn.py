"""torch helpers shared by the [SD15] models (torch is imported on first use)."""

from __future__ import annotations

import math

import numpy as np


def _torch():
    import torch

    return torch


def _torch_seed(rng: np.random.Generator) -> int:
    return int(rng.integers(0, 2**63 - 1))


def _init_linear(torch, gen, fan_in, fan_out, zero=False):
    """Weights (fan_in, fan_out) and bias, PyTorch's default uniform init (or zeros)."""
    if zero:
        return (torch.zeros(fan_in, fan_out, dtype=torch.float32),
                torch.zeros(fan_out, dtype=torch.float32))
    bound = 1.0 / math.sqrt(fan_in)
    W = (torch.rand(fan_in, fan_out, generator=gen) * 2 - 1) * bound
    b = (torch.rand(fan_out, generator=gen) * 2 - 1) * bound
    return W, b



def _time_features(torch, t_idx, T, n_freq):
    """Sinusoidal features of t/T in [0, 1]: (m, 2 n_freq + 1)."""
    s = (t_idx.to(torch.float32) / T)[:, None]
    k = torch.arange(n_freq, dtype=torch.float32)[None, :]
    ang = math.pi * (2.0 ** k) * s
    return torch.cat([s, torch.sin(ang), torch.cos(ang)], dim=1)
