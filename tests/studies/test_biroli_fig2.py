"""two-cluster-cloning: cloning of a two-Gaussian mixture with its exact score against the
two-cluster theory of Biroli et al. (2024)."""

import numpy as np
import pytest

import physdiff
from physdiff.studies import biroli_fig2

PARAMS = dict(d=(16, 64), n_pairs=800, T=150, t_max=4.5, offsets=(-0.8, -0.3, 0.0, 0.3, 0.8), seed=3)


@pytest.fixture(scope="module")
def run():
    return physdiff.study("two-cluster-cloning", **PARAMS)


def test_measured_phi_within_binomial_error_of_theory(run):
    cl = run["cloning"]
    theory = cl["phi_theory"].values
    # binomial error of the measurement, plus 0.02 for the finite step of the reverse chain
    tol = 4.0 * np.sqrt(theory * (1.0 - theory) / PARAMS["n_pairs"]) + 0.02
    np.testing.assert_array_less(np.abs(cl["phi"].values - theory), tol)
    assert np.all(np.diff(cl["phi"].values, axis=1) < 0.05)  # phi decreases with the branch time


def test_crossing_near_half_log_lambda(run):
    sp = run["speciation"]
    d = sp["d"].values
    # the two-cluster theory crosses PHI_SPECIATION where |m| e^{-t} = sqrt(Gamma(t)): t = (1/2) log d at sigma = 1
    np.testing.assert_allclose(sp["speciation_time_theory"], 0.5 * np.log(d), atol=5e-3)
    np.testing.assert_allclose(sp["half_log_lambda"], 0.5 * np.log(d + 1.0))
    err = sp["speciation_time_stderr"].values
    assert np.all(np.isfinite(err)) and np.all(err < 0.2)
    np.testing.assert_array_less(np.abs(sp["speciation_time"] - sp["speciation_time_theory"]), 4 * err + 0.05)


def test_params_are_validated():
    with pytest.raises(ValueError, match="t_max must be >= "):
        biroli_fig2.Params(d=(4096,), t_max=4.0)
    with pytest.raises(ValueError, match="offsets reach"):
        biroli_fig2.Params(d=(4,), offsets=(-2.0, 0.0), t_max=3.0)
    with pytest.raises(ValueError, match="d must"):
        biroli_fig2.Params(d=(0,))
