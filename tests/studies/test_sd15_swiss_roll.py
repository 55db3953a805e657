"""The SD15 Swiss-roll study on a short chain: every bound K is below the exact log-likelihood of the
roll (5 standard errors), the prior term vanishes when alpha_bar_T = 0, the unit-variance null model
is -log2(2 pi e), and the exact noise predictor has the lowest held-out L_simple."""

import math

import numpy as np
import pytest
import torch

from physdiff.studies.sd15_swiss_roll import Params, plot, run

Z = 5.0


@pytest.fixture(autouse=True)
def one_torch_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def test_sd15_swiss_roll_bounds_respect_the_exact_log_likelihood():
    p = Params(T=8, n_train=3000, n_test=1000, steps=300, hidden=32, n_samples=200, n_trajectories=50,
               ddpm_epochs=5, ddpm_hidden=32, ddpm_lr=1e-2, n_exact=300, seed=1)
    out = run(p)
    ds, dd = out["sd15_swiss_roll"], out["eps_ddpm"]
    exact, exact_se = float(ds["exact_log_likelihood"]), float(ds["exact_log_likelihood_stderr"])
    # the roll is far from Gaussian: its exact log-likelihood beats N(0, I) by bits (Gibbs)
    assert float(ds["L_null"]) == pytest.approx(-math.log2(2 * math.pi * math.e), abs=0.1)
    assert exact > float(ds["L_null"]) + 2.0
    K, se = float(ds["K"]), float(ds["K_stderr"])
    assert K < exact + Z * math.hypot(se, exact_se), (K, exact)
    assert ds["K_step"].sel(step=0).item() == pytest.approx(0.0, abs=1e-12)        # alpha_bar_T = 0
    assert ds["K_step"].sum().item() == pytest.approx(K, rel=1e-9)
    assert ds["betas"].values[0] == 0 and ds["betas"].values[-1] == 1
    assert ds["trajectory"].shape == (9, 50, 2)
    for name in ("K", "K_exact_eps"):
        k, s = dd[name].values, dd[f"{name}_stderr"].values
        assert np.all(k < exact + Z * np.hypot(s, exact_se)), (name, k, exact)
    # the exact noise predictor minimises L_simple at every step (held-out, same draws)
    mse, mse_exact = dd["mse"].values[1:], dd["mse_exact_eps"].values[1:]
    assert np.mean(mse_exact) < np.mean(mse)
    # the DDPM's schedule is the study's with beta_T clipped at 0.999
    ab = dd["alpha_bar"].values
    assert ab[-1] == pytest.approx(ab[-2] * (1 - 0.999), rel=1e-9)
    assert dd["x"].shape == (2, 200, 2)
    assert set(plot(out)) == {"sd15_swiss_roll", "eps_ddpm"}


def test_sd15_swiss_roll_without_ddpm_and_validation():
    out = run(Params(T=4, n_train=300, n_test=50, steps=5, hidden=8, n_samples=20, n_trajectories=5, ddpm=False))
    assert set(out) == {"sd15_swiss_roll"} and set(plot(out)) == {"sd15_swiss_roll"}
    with pytest.raises(ValueError, match="schedule"):
        Params(schedule="cosine")
    with pytest.raises(ValueError, match="noise"):
        Params(noise=0.0)
    with pytest.raises(ValueError, match="T"):
        Params(T=1)
