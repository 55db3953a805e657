"""Autoencoder energies [KM13] (docs/theory.md, "Autoencoder energies").

Oracles: central finite differences, closed forms, least squares on a large Gaussian sample (with
a tolerance from the OLS standard errors), direct numerical minimisation of the exact population
loss, and the reference numbers of the ReLU pair.
"""

import numpy as np
import pytest
from scipy import optimize

from physdiff.theory.autoencoder import (
    ACTIVATIONS,
    diagonal_rescaling,
    energy_along_path,
    is_tied,
    jacobian,
    jacobian_asymmetry,
    linear_denoiser_optimum,
    linear_potential_mu,
    predictor_score,
    reconstruction,
    relu_pair_minima,
    score_energy,
    tied_energy,
)

D_IN, HID = 5, 7


def _net(seed, d=D_IN, H=HID, tied=False, scale=0.6):
    rng = np.random.default_rng(seed)
    W1 = scale * rng.standard_normal((d, H))
    b1 = 0.3 * rng.standard_normal(H)
    W2 = W1.T.copy() if tied else scale * rng.standard_normal((H, d))
    b2 = 0.3 * rng.standard_normal(d)
    return W1, b1, W2, b2


def _fd_grad(f, x, h=1e-5):
    """Central finite-difference gradient of a batched scalar function f: (n, d) -> (n,)."""
    g = np.empty_like(x)
    for j in range(x.shape[1]):
        e = np.zeros(x.shape[1])
        e[j] = h
        g[:, j] = (f(x + e) - f(x - e)) / (2 * h)
    return g


def _points(seed, n=40, d=D_IN):
    return np.random.default_rng(seed).standard_normal((n, d))


# ------------------------------------------------------------------------------------------------
# reconstruction, Jacobian, asymmetry
# ------------------------------------------------------------------------------------------------

def test_reconstruction_matches_explicit_formula():
    W1, b1, W2, b2 = _net(0)
    x = _points(1)
    u = x @ W1 + b1
    np.testing.assert_allclose(reconstruction(x, W1, b1, W2, b2, "relu"), np.maximum(u, 0) @ W2 + b2)
    np.testing.assert_allclose(reconstruction(x, W1, b1, W2, b2, "tanh"), np.tanh(u) @ W2 + b2)
    np.testing.assert_allclose(reconstruction(x, W1, b1, W2, b2, "sigmoid"), (1 / (1 + np.exp(-u))) @ W2 + b2)
    np.testing.assert_allclose(reconstruction(x, W1, b1, W2, b2, "linear"), u @ W2 + b2)
    assert reconstruction(x[0], W1, b1, W2, b2).shape == (1, D_IN)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_jacobian_matches_finite_differences(activation):
    W1, b1, W2, b2 = _net(2)
    x = _points(3, n=10)
    J = jacobian(x, W1, b1, W2, b2, activation)
    h = 1e-6
    for j in range(D_IN):
        e = np.zeros(D_IN)
        e[j] = h
        r = lambda y: reconstruction(y, W1, b1, W2, b2, activation)
        col = (r(x + e) - r(x - e)) / (2 * h)
        # ReLU kinks: no point of a Gaussian sample lies within 1e-6 of one (probability ~1e-5)
        np.testing.assert_allclose(J[:, :, j], col, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_asymmetry_zero_for_tied_and_diagonal_positive_for_untied(activation):
    x = _points(4, n=50)
    W1, b1, W2, b2 = _net(5, tied=True)
    assert jacobian_asymmetry(x, W1, b1, W2, b2, activation) < 1e-14
    D = np.random.default_rng(6).uniform(-2, 2, HID)
    assert jacobian_asymmetry(x, W1, b1, D[:, None] * W1.T, b2, activation) < 1e-14
    W1, b1, W2, b2 = _net(7)
    a = jacobian_asymmetry(x, W1, b1, W2, b2, activation)
    assert 0.3 < a <= 2.0          # |J - J^T| <= 2 |J|


def test_asymmetry_blocks_agree_with_full_jacobian():
    W1, b1, W2, b2 = _net(8)
    x = _points(9, n=30)
    J = jacobian(x, W1, b1, W2, b2, "tanh")
    ref = np.mean(np.linalg.norm(J - J.transpose(0, 2, 1), axis=(1, 2)) / np.linalg.norm(J, axis=(1, 2)))
    assert jacobian_asymmetry(x, W1, b1, W2, b2, "tanh") == pytest.approx(ref, rel=1e-12)


# ------------------------------------------------------------------------------------------------
# tied nets, diagonal rescaling and energies
# ------------------------------------------------------------------------------------------------

def test_is_tied_and_diagonal_rescaling_recovers_D():
    W1, b1, W2, b2 = _net(10, tied=True)
    assert is_tied(W1, W1.T)
    assert not is_tied(W1, 1.01 * W1.T, rtol=1e-3)
    assert is_tied(W1, W1.T * (1 + 1e-9), rtol=1e-6)
    D_true = np.random.default_rng(11).uniform(-3, 3, HID)
    D, res = diagonal_rescaling(W1, D_true[:, None] * W1.T)
    np.testing.assert_allclose(D, D_true, rtol=1e-12)
    assert res < 1e-14
    D, res = diagonal_rescaling(W1, W1.T)
    np.testing.assert_allclose(D, 1.0, rtol=1e-14)
    _, res = diagonal_rescaling(*_net(12)[::2])
    assert res > 0.5                                   # random untied: far from the condition
    # least squares: the residual equals that of the best D found numerically
    W1, _, W2, _ = _net(13)
    D, res = diagonal_rescaling(W1, W2)
    best = optimize.minimize(lambda d: np.linalg.norm(W2 - d[:, None] * W1.T), np.zeros(HID)).fun
    assert res == pytest.approx(best / np.linalg.norm(W2), rel=1e-6)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_tied_energy_gradient_is_r_minus_x(activation):
    W1, b1, _, b2 = _net(14, tied=True)
    W = W1.T                                            # [KM13] W (H, d) = W2 of a tied DDPM net
    x = _points(15)
    grad = _fd_grad(lambda y: tied_energy(y, W, b1, b2, activation), x)
    field = reconstruction(x, W1, b1, W, b2, activation) - x
    np.testing.assert_allclose(grad, field, rtol=1e-6, atol=1e-7)


def test_tied_energy_closed_forms_and_stability():
    # one unit, d = 1, W = 1, b_h = 0, b_r = 0: F = H(x) - x^2/2
    x = np.array([[-3.0], [0.0], [2.0]])
    F = {a: tied_energy(x, [[1.0]], 0.0, 0.0, a) + 0.5 * x[:, 0] ** 2 for a in ACTIVATIONS}
    np.testing.assert_allclose(F["linear"], x[:, 0] ** 2 / 2)
    np.testing.assert_allclose(F["relu"], [0.0, 0.0, 2.0])
    np.testing.assert_allclose(F["sigmoid"], np.log1p(np.exp(x[:, 0])))
    np.testing.assert_allclose(F["tanh"], np.log(np.cosh(x[:, 0])), atol=1e-15)
    big = np.array([[800.0], [-800.0]])               # no overflow in softplus / log cosh
    assert np.all(np.isfinite(tied_energy(big, [[1.0]], 0.0, 0.0, "tanh")))
    assert np.all(np.isfinite(tied_energy(big, [[1.0]], 0.0, 0.0, "sigmoid")))


@pytest.mark.parametrize("predictor", ["eps", "x0"])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_score_energy_gradient_is_the_score(activation, predictor):
    W1, b1, W2, b2 = _net(16, tied=True)
    W2 = np.random.default_rng(17).uniform(0.5, 2, HID)[:, None] * W2     # diagonally rescaled
    x = _points(18)
    ab = np.random.default_rng(19).uniform(0.05, 0.95, x.shape[0])       # one alpha_bar per point
    f = lambda y: score_energy(y, W1, b1, W2, b2, ab, activation, predictor=predictor)
    score = predictor_score(x, W1, b1, W2, b2, ab, activation, predictor=predictor)
    np.testing.assert_allclose(_fd_grad(f, x), score, rtol=1e-6, atol=1e-6)


def test_score_energy_refuses_untied_nets():
    W1, b1, W2, b2 = _net(20)
    with pytest.raises(ValueError, match="not a gradient field"):
        score_energy(_points(21), W1, b1, W2, b2, 0.5)


def test_energy_along_path_reproduces_potential_difference():
    W1, b1, _, b2 = _net(22, tied=True)
    W2 = W1.T
    field = lambda y: reconstruction(y, W1, b1, W2, b2, "tanh") - y
    rng = np.random.default_rng(23)
    # two paths (B = 2) between random endpoints through a random midpoint, 4001 vertices each;
    # trapezoid error ~ L^3 max|f''| / (12 m^2) ~ 1e-6
    ends = rng.standard_normal((2, 3, D_IN))
    tt = np.linspace(0, 1, 2001)[:, None]
    paths = np.stack([np.concatenate([e[0] + tt * (e[1] - e[0]), (e[1] + tt * (e[2] - e[1]))[1:]]) for e in ends])
    E = energy_along_path(paths, field)
    assert E.shape == (2, 4001) and np.all(E[:, 0] == 0)
    for b in range(2):
        F = tied_energy(paths[b], W1.T, b1, b2, "tanh")
        np.testing.assert_allclose(E[b], F - F[0], atol=1e-5)
    # untied nets are not gradient fields: a closed loop has non-zero circulation
    W1u, b1u, W2u, b2u = _net(24)
    phi = np.linspace(0, 2 * np.pi, 4001)[:, None]
    loop = np.zeros((4001, D_IN))
    loop[:, :2] = np.hstack([np.cos(phi), np.sin(phi)])
    assert abs(energy_along_path(loop, field)[-1]) < 1e-6
    circ = energy_along_path(loop, lambda y: reconstruction(y, W1u, b1u, W2u, b2u, "tanh") - y)[-1]
    assert abs(circ) > 1e-2


# ------------------------------------------------------------------------------------------------
# the ReLU pair as an x0-predictor (docs/theory.md, "Autoencoder energies")
# ------------------------------------------------------------------------------------------------

def _relu_pair(w_norm=1.0, b=0.5, d=3, seed=25):
    w = np.random.default_rng(seed).standard_normal(d)
    w *= w_norm / np.linalg.norm(w)
    W1 = np.stack([w, -w], axis=1)                       # (d, 2)
    return w, W1, np.array([b, b]), W1.T.copy(), np.zeros(d)


def _potential_minima_along(w, W1, b1, W2, b2, alpha_bar, y):
    u = w / np.linalg.norm(w)
    V = -score_energy(y[:, None] * u, W1, b1, W2, b2, alpha_bar, "relu", predictor="x0")
    i = np.flatnonzero((V[1:-1] < V[:-2]) & (V[1:-1] < V[2:])) + 1
    return y[i], V


def test_relu_pair_reference_numbers():
    np.testing.assert_allclose(relu_pair_minima(1.0, 0.5, 0.75 ** 2), [-1.5, 1.5], rtol=1e-14)
    np.testing.assert_allclose(relu_pair_minima(1.0, 0.5, 0.4 ** 2), [0.0])
    assert relu_pair_minima(1.0, 0.5, 0.999).size == 2
    assert relu_pair_minima(1.2, 0.5, 0.81).size == 0   # s|w|^2 = 1.296 >= 1: no confinement
    net = _relu_pair()
    y = np.linspace(-4, 4, 8001)                         # grid step 1e-3, contains +-1.5 and 0
    ymin, V = _potential_minima_along(*net, 0.75 ** 2, y)
    np.testing.assert_allclose(ymin, [-1.5, 1.5], atol=1.5e-3)
    assert V[4000] > V[np.argmin(V)] + 0.1               # a real barrier at 0
    ymin, _ = _potential_minima_along(*net, 0.4 ** 2, y)
    np.testing.assert_allclose(ymin, [0.0], atol=1.5e-3)


@pytest.mark.parametrize("w_norm,b,s", [(1.3, 0.7, 0.5), (0.8, 0.2, 0.9), (1.0, 1.0, 0.55)])
def test_relu_pair_minima_general(w_norm, b, s):
    net = _relu_pair(w_norm, b)
    y = np.linspace(-6, 6, 24001)
    ymin, _ = _potential_minima_along(*net, s * s, y)
    np.testing.assert_allclose(ymin, relu_pair_minima(w_norm, b, s * s), atol=1e-3)


# ------------------------------------------------------------------------------------------------
# linear nets on Gaussian data
# ------------------------------------------------------------------------------------------------

def _cov(seed, d=4):
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    lam = np.array([4.0, 1.5, 0.5, 0.1])[:d]
    return (Q * lam) @ Q.T


def test_linear_denoiser_optimum_equals_least_squares_on_a_sample():
    d, n, ab = 4, 200_000, 0.6
    C = _cov(26)
    A = linear_denoiser_optimum(C, ab)
    rng = np.random.default_rng(27)
    x0 = rng.multivariate_normal(np.zeros(d), C, size=n)
    eps = rng.standard_normal((n, d))
    xt = np.sqrt(ab) * x0 + np.sqrt(1 - ab) * eps
    B, *_ = np.linalg.lstsq(xt, eps, rcond=None)         # eps ≈ xt @ B, so B = A^T
    # OLS standard errors: Var(B_ji) = sigma_i^2 (Sigma^{-1})_jj / n, sigma_i^2 the residual variance
    Sig_inv = np.linalg.inv(ab * C + (1 - ab) * np.eye(d))
    resid = 1 - (1 - ab) * np.diag(Sig_inv)
    se = np.sqrt(np.outer(np.diag(Sig_inv), resid) / n)
    assert np.all(np.abs(B - A.T) < 5 * se)
    np.testing.assert_allclose(A, np.sqrt(1 - ab) * Sig_inv, rtol=1e-12)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_reduced_rank_optimum_minimises_the_population_loss(k):
    d, ab = 4, 0.3
    C = _cov(28)
    Sig = ab * C + (1 - ab) * np.eye(d)
    loss = lambda A: d - 2 * np.sqrt(1 - ab) * np.trace(A) + np.trace(A @ Sig @ A.T)   # E|eps - A x|^2
    A_k = linear_denoiser_optimum(C, ab, hidden=k)
    assert np.linalg.matrix_rank(A_k) == k
    best = min(optimize.minimize(lambda p: loss(p[:d * k].reshape(d, k) @ p[d * k:].reshape(k, d)),
                                 np.random.default_rng(seed).standard_normal(2 * d * k), method="BFGS").fun
               for seed in range(3))
    assert loss(A_k) == pytest.approx(best, abs=1e-7)
    # it beats keeping the top-variance directions, and the full rank is better still
    lam, U = np.linalg.eigh(C)
    A_full = linear_denoiser_optimum(C, ab)
    A_top = U[:, -k:] @ U[:, -k:].T @ A_full
    assert loss(A_k) < loss(A_top)
    assert loss(A_full) <= loss(A_k) + 1e-12
    np.testing.assert_allclose(linear_denoiser_optimum(C, ab, hidden=d), A_full, rtol=1e-12, atol=1e-15)


def test_linear_potential_single_well_at_all_times_and_matches_linear_net():
    mu = np.linspace(-5, 5, 1001)
    for Lam in (0.1, 1.0, 72.45205, 735.96512):          # includes the Curie-Weiss Lambdas (beta = 1.5)
        for ab in np.linspace(0, 1, 21):
            V = linear_potential_mu(mu, ab, Lam)
            assert np.all(np.diff(V, 2) > 0)              # convex everywhere: a single well at 0
            assert np.argmin(V) == 500
    # the tied linear net W1 = A^{1/2} (so W1 @ W2 = A, the optimal eps-net) has energy -V along u_top
    C, ab = _cov(29), 0.4
    lam, U = np.linalg.eigh(C)
    A = linear_denoiser_optimum(C, ab)
    w, V = np.linalg.eigh(A)
    W1 = (V * np.sqrt(w)) @ V.T
    x = mu[:, None] * U[:, -1]
    E = score_energy(x, W1, 0.0, W1.T, 0.0, ab, "linear")
    np.testing.assert_allclose(-(E - E[500]), linear_potential_mu(mu, ab, lam[-1]), rtol=1e-10, atol=1e-12)


# ------------------------------------------------------------------------------------------------
# validation
# ------------------------------------------------------------------------------------------------

def test_input_validation():
    W1, b1, W2, b2 = _net(30)
    x = _points(31)
    with pytest.raises(ValueError, match="activation"):
        reconstruction(x, W1, b1, W2, b2, "gelu")
    with pytest.raises(ValueError, match="W2 must have shape"):
        reconstruction(x, W1, b1, W2.T, b2)
    with pytest.raises(ValueError, match="slice one timestep"):
        reconstruction(x, W1[None], b1, W2, b2)
    with pytest.raises(ValueError, match="d=5"):
        reconstruction(x[:, :3], W1, b1, W2, b2)
    with pytest.raises(ValueError, match="alpha_bar"):
        predictor_score(x, W1, b1, W2, b2, 1.0)
    with pytest.raises(ValueError, match="predictor"):
        predictor_score(x, W1, b1, W2, b2, 0.5, predictor="v")
    with pytest.raises(ValueError, match="x_path"):
        energy_along_path(np.zeros((1, 3)), lambda y: y)
    with pytest.raises(ValueError, match="positive semi-definite"):
        linear_denoiser_optimum(-np.eye(3), 0.5)
    with pytest.raises(ValueError, match="symmetric"):
        linear_denoiser_optimum(np.triu(np.ones((3, 3))), 0.5)
    with pytest.raises(ValueError, match="Lambda"):
        linear_potential_mu(1.0, 0.5, -1.0)
    with pytest.raises(ValueError, match="w_norm"):
        relu_pair_minima(0.0, 0.5, 0.5)
