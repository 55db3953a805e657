"""The heartbeat study: [SD15]'s binomial model on a short period-2 heartbeat. K is a lower bound on
the exact log-likelihood -log2(period) (5 standard errors), the prior term vanishes (beta_T = 1 and
p(x_T) = B(1/2)), and the null model of a fair bit costs one bit per bin."""

import math

import numpy as np
import pytest
import torch

from physdiff.studies.heartbeat import Params, plot, run

Z = 5.0


@pytest.fixture(autouse=True)
def one_torch_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def test_heartbeat_bound_is_below_the_exact_log_likelihood_and_improves_on_the_null_model():
    p = Params(T=20, length=10, period=2, n_train=2000, n_eval=300, n_samples=200, steps=300, hidden=32, batch=128,
               lr=5e-3, seed=0)
    ds = run(p)["heartbeat"]
    K, se = float(ds["K"]), float(ds["K_stderr"])
    assert float(ds["exact_log_likelihood"]) == pytest.approx(-1.0)            # -log2(2)
    assert K < -1.0 + Z * se, (K, se)
    assert ds["K_step"].sum().item() == pytest.approx(K, rel=1e-9)
    assert ds["K_step"].sel(step=0).item() == pytest.approx(0.0, abs=1e-12)    # q(x_T) = p(x_T) = B(1/2)^d
    # fair bits: L_null = -length bits up to the O((p1 - 1/2)^2) error of the training mean
    assert float(ds["L_null"]) == pytest.approx(-10.0, abs=0.05)
    assert K > float(ds["L_null"]) + 3.0                                        # it learned the correlations
    assert ds["valid"].mean().item() > 0.5
    assert ds["x"].shape == (200, 10) and ds["x"].dtype == np.int8
    assert set(plot({"heartbeat": ds})) == {"heartbeat"}


def test_heartbeat_params_validation():
    with pytest.raises(ValueError, match="period"):
        Params(length=4, period=5)
    with pytest.raises(ValueError, match="steps"):
        Params(steps=0)
    with pytest.raises(ValueError, match="device"):
        Params(device="cuda")
    assert math.isclose(Params().T, 2000)
