"""The Swiss roll's exact density and noise predictor (theory.swiss_roll): normalisation, Gibbs'
inequality against a Gaussian fit, and eps* = -sqrt(1 - alpha_bar) grad log q_t by finite differences."""

import math
import subprocess
import sys

import numpy as np
import pytest

from physdiff.datasets import swiss_roll
from physdiff.sd15 import null_log_likelihood_gaussian, unit_variance
from physdiff.theory.swiss_roll import swiss_roll_curve, swiss_roll_eps, swiss_roll_log_density

LOG2 = math.log(2)


def test_swiss_roll_density_is_normalised_and_matches_data():
    turns, noise = 3.0, 1.0
    h = 0.04
    g = np.arange(-1.8, 1.8, h)
    X, Y = np.meshgrid(g, g)
    pts = np.stack([X.ravel(), Y.ravel()], axis=1)
    mass = np.exp(swiss_roll_log_density(pts, turns, noise)).sum() * h * h
    assert mass == pytest.approx(1.0, abs=2e-3)
    # the exact density beats a Gaussian fit on its own samples (E log q >= E log N: Gibbs)
    x = swiss_roll(2000, turns=turns, noise=noise, seed=3)
    lq = swiss_roll_log_density(x, turns, noise)
    xs, shift, scale = unit_variance(x)
    gauss = null_log_likelihood_gaussian(xs) * LOG2 - 2 * math.log(scale)
    assert lq.mean() > gauss


def test_swiss_roll_eps_is_the_gradient_of_the_diffused_log_density():
    # in units y = (x - shift)/scale, q_t(y) is the roll with noise 12 scale sqrt(v)/s seen at (scale y + s shift)/s
    raw = swiss_roll(6, turns=2, seed=1).astype(np.float64)
    shift, scale = np.array([0.1, -0.2]), 0.6
    y0 = (raw - shift) / scale
    rng = np.random.default_rng(0)
    for ab in (0.9999, 0.9, 0.3):
        s = math.sqrt(ab)
        y = s * y0 + math.sqrt(1 - ab) * rng.standard_normal(y0.shape)
        e = swiss_roll_eps(y, ab, 2.0, 0.1, shift=shift, scale=scale)
        v = ab * (0.1 / (12 * scale)) ** 2 + 1 - ab
        noise_eff = 12 * scale * math.sqrt(v) / s
        f = lambda z: swiss_roll_log_density((scale * z + s * shift) / s, 2.0, noise_eff, n_grid=20000)  # noqa: E731
        h = 1e-5
        g = np.stack([(f(y + h * np.eye(2)[k]) - f(y - h * np.eye(2)[k])) / (2 * h) for k in range(2)], 1)
        np.testing.assert_allclose(e, -math.sqrt(1 - ab) * g, atol=2e-5 * max(1.0, np.abs(e).max()))
    with pytest.raises(ValueError, match="alpha_bar"):
        swiss_roll_eps(y, 1.0)


def test_curve_is_the_data_without_noise_and_the_module_imports_no_torch():
    theta = np.linspace(0, 2 * np.pi, 7)
    c = swiss_roll_curve(theta)
    np.testing.assert_allclose(np.hypot(c[:, 0], c[:, 1]), (5 + theta) / 12, rtol=1e-14)
    x = swiss_roll(2000, turns=2, noise=1e-6, seed=0).astype(np.float64)
    r = np.hypot(x[:, 0], x[:, 1]) * 12
    assert np.all((r > 5 - 1e-3) & (r < 5 + 2 * np.pi + 1e-3))
    with pytest.raises(ValueError, match="theta"):
        swiss_roll_curve([[0.0]])
    with pytest.raises(ValueError, match="noise"):
        swiss_roll_log_density(x[:2], 2.0, 0.0)
    code = "import sys, physdiff.theory.swiss_roll; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
