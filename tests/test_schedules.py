"""Schedule identities ([Ho20] eqs. 2-7, [ND21] eq. 17; docs/theory.md, "The forward process and
noise schedules")."""

import numpy as np
import pytest

from physdiff.schedules import SCHEDULES, Schedule, make_schedule


@pytest.mark.parametrize("name", sorted(SCHEDULES))
@pytest.mark.parametrize("T", [1, 40, 1000])
def test_identities(name, T):
    s = make_schedule(name, T)
    assert s.T == T
    for a in (s.betas, s.alphas, s.alpha_bar, s.physical_time, s.posterior_variance):
        assert a.shape == (T + 1,) and a.dtype == np.float64
    assert s.betas[0] == 0.0 and s.alpha_bar[0] == 1.0 and s.physical_time[0] == 0.0
    np.testing.assert_allclose(s.alphas, 1.0 - s.betas, rtol=0, atol=0)
    np.testing.assert_allclose(s.alpha_bar, np.cumprod(s.alphas), rtol=1e-12)
    np.testing.assert_allclose(s.physical_time, -0.5 * np.log(np.cumprod(s.alphas)), rtol=1e-10, atol=1e-14)
    assert np.all(np.diff(s.alpha_bar) < 0)
    # posterior variance [Ho20 eq. 7] and its bounds 0 <= beta_tilde <= beta
    bt = (1 - s.alpha_bar[:-1]) / (1 - s.alpha_bar[1:]) * s.betas[1:]
    np.testing.assert_allclose(s.posterior_variance[1:], bt, rtol=1e-12)
    assert s.posterior_variance[1] == 0.0
    assert np.all(s.posterior_variance <= s.betas + 1e-15)


def test_closed_form_variance_matches_stepwise_recursion():
    # Var(x_t) of the chain from x0=0: v_t = alpha_t v_{t-1} + beta_t must equal 1 - alpha_bar_t.
    s = make_schedule("cosine", 200)
    v = 0.0
    for t in range(1, s.T + 1):
        v = s.alphas[t] * v + s.betas[t]
        assert v == pytest.approx(1 - s.alpha_bar[t], rel=1e-12, abs=1e-15)


def test_linear_is_ho2020():
    s = make_schedule("linear", 1000)
    assert s.betas[1] == pytest.approx(1e-4) and s.betas[-1] == pytest.approx(0.02)
    np.testing.assert_allclose(np.diff(s.betas[1:]), (0.02 - 1e-4) / 999, rtol=1e-9)
    # the linear 1e-4..0.02, T=1000 schedule ends at t = 5.06 (docs/theory.md, "The forward
    # process and noise schedules")
    assert s.physical_time[-1] == pytest.approx(5.06, abs=0.005)


def test_cosine_is_nichol_dhariwal():
    T, off = 1000, 0.008
    s = make_schedule("cosine", T)
    t = np.arange(T + 1)
    f = np.cos((t / T + off) / (1 + off) * np.pi / 2) ** 2
    unclipped = s.betas < 0.999
    np.testing.assert_allclose(s.alpha_bar[unclipped], (f / f[0])[unclipped], rtol=1e-9)
    assert s.betas.max() <= 0.999


def test_quadratic_and_sigmoid_endpoints():
    q = make_schedule("quadratic", 100, beta_start=1e-3, beta_end=0.05)
    np.testing.assert_allclose(np.sqrt(q.betas[1:]), np.linspace(np.sqrt(1e-3), np.sqrt(0.05), 100))
    g = make_schedule("sigmoid", 100)
    assert np.all(np.diff(g.betas[1:]) > 0) and 1e-4 < g.betas[1] < g.betas[-1] < 0.02


def test_step_at_time_is_first_step_past_tau():
    s = make_schedule("linear", 1000)
    for tau in (0.1, 1.0, 3.30059):
        k = s.step_at_time(tau)
        assert s.physical_time[k] >= tau > s.physical_time[k - 1]
        # the speciation step: first t with alpha_bar < 1/Lambda, Lambda = exp(2 tau)
        assert s.alpha_bar[k] <= np.exp(-2 * tau) < s.alpha_bar[k - 1]
    assert s.step_at_time(100.0) == s.T


@pytest.mark.parametrize("name", ["linear", "cosine"])
def test_dict_round_trip(name):
    s = make_schedule(name, 50, **({"beta_end": 0.1} if name == "linear" else {}))
    assert Schedule.from_dict(s.to_dict()) == s
    c = Schedule.from_betas(s.betas[1:])
    assert Schedule.from_dict(c.to_dict()) == c


def test_arrays_are_read_only():
    s = make_schedule("linear", 10)
    with pytest.raises(ValueError):
        s.betas[3] = 0.5


@pytest.mark.parametrize(
    "args, kwargs, match",
    [
        (("linear", 0), {}, "T must be >= 1"),
        (("linear", 2.5), {}, "T must be an integer"),
        (("nope", 10), {}, "unknown schedule"),
        (("linear", 10), {"beta_end": 1.5}, r"\(0, 1\)"),
        (("linear", 10), {"beta_start": 0.0}, r"\(0, 1\)"),
        (("linear", 10), {"beta_end": float("nan")}, "finite"),
        (("cosine", 10), {"beta_end": 0.1}, "unknown parameter"),
    ],
)
def test_bad_parameters(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_schedule(*args, **kwargs)


def test_bad_betas():
    with pytest.raises(ValueError, match="open interval"):
        Schedule.from_betas([0.1, 1.0, 0.2])
    with pytest.raises(ValueError, match="betas\\[0\\] must be 0"):
        Schedule(np.array([0.1, 0.2]))
    with pytest.raises(ValueError, match="NaN"):
        Schedule.from_betas([0.1, np.nan])
    with pytest.raises(ValueError, match="sigma kind"):
        make_schedule("linear", 10).sigma2("other")
