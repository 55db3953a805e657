"""Energies (potentials) of single-hidden-layer autoencoders [KM13] and of the DDPM nets built from them.

Layout
------
Every function takes the weights of ONE net in the DDPM layout of :mod:`physdiff.ddpm.model`
(row vectors, ``nn.Linear(d, H) -> act -> nn.Linear(H, d)``)::

    u = x @ W1 + b1            W1 (d, H), b1 (H,)      hidden pre-activations, (n, H)
    r = act(u) @ W2 + b2       W2 (H, d), b2 (d,)      reconstruction / network output, (n, d)

A stacked checkpoint holds ``W1`` (T, d, H) etc.; slice one step before calling. In the notation of
[KM13] the encoder matrix is ``W = W1.T`` (H, d), so ``r(x) = W2^T h(W x + b_h) + b_r`` with
``b_h = b1``, ``b_r = b2``, and the net is *tied* when ``W2 = W = W1.T``. :func:`tied_energy` takes
``W`` in the [KM13] shape (H, d), which is ``W2`` (equivalently ``W1.T``) of a tied DDPM net.

Sign convention
---------------
Following [KM13], an *energy* here is log-density-like: its gradient IS the vector field
(``grad F = r(x) - x`` for :func:`tied_energy`, ``grad E = score`` for :func:`score_energy`,
``E(x_k) - E(x_0) = ∫ field . dx`` for :func:`energy_along_path`), so it is large where the data
are likely. A *potential* is the density potential ``V = -log p`` [RA23; BM23] (a well is a minimum):
:func:`linear_potential_mu` and the minima returned by :func:`relu_pair_minima`. ``V = -E``.

Contents
--------
reconstruction, jacobian, jacobian_asymmetry
    The net's output and its Jacobian; the asymmetry ``|J - J^T|_F / |J|_F`` (0 iff a gradient field).
is_tied, diagonal_rescaling, tied_energy, energy_along_path
    [KM13]: tied (or diagonally rescaled) nets are gradient fields with a closed-form energy.
predictor_score, score_energy, relu_pair_minima
    A tied net read as a DDPM eps- or x0-predictor: the score and its exact log-density.
linear_denoiser_optimum, linear_potential_mu
    Linear nets on Gaussian data: the MSE-optimal eps-predictor (full or reduced rank) and the
    single-well potential it implies along the top eigenvector (the Thesis' Annex II point).

All formulas use ``s = sqrt(alpha_bar)`` and ``Delta = 1 - alpha_bar`` (``docs/theory.md``,
"Conventions").
numpy + scipy only, float64 throughout.

References
----------
[KM13] Kamyshanska, Memisevic (2013), On autoencoder scoring, ICML; (2015) The potential energy
    of an autoencoder, IEEE TPAMI: energies of tied and diagonally rescaled untied autoencoders
    and the integrals H of each activation. (Equation numbers are not quoted here: the formulas
    are those of [KM13], which the tests check by finite differences.)
[Ho20] Ho, Jain, Abbeel (2020), Denoising Diffusion Probabilistic Models, arXiv:2006.11239.
[Thesis] Bustinduy de la Guerra (2024), Out-of-Equilibrium Machine Learning (UCM), Annex II.
[RA23] Raya, Ambrogioni (2023), Spontaneous symmetry breaking in generative diffusion models,
    arXiv:2305.19693. [BM23] Biroli, Mezard (2023), arXiv:2306.03518.
Formulas: ``docs/theory.md``, "Autoencoder energies"; see also "Conventions" (Tweedie, the eps
target) and "MNIST studies".
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from scipy import linalg, special

from .._util import as_samples, check_finite, check_positive_int, check_real

__all__ = [
    "ACTIVATIONS",
    "gaussian_optimal_loss",
    "reconstruction",
    "jacobian",
    "jacobian_asymmetry",
    "is_tied",
    "diagonal_rescaling",
    "tied_energy",
    "energy_along_path",
    "predictor_score",
    "score_energy",
    "relu_pair_minima",
    "linear_denoiser_optimum",
    "linear_potential_mu",
]

#: Supported hidden activations.
ACTIVATIONS = ("relu", "linear", "sigmoid", "tanh")

_LOG2 = float(np.log(2.0))
# Elements per temporary (samples x d x d) Jacobian block: ~32 MiB of float64.
_BLOCK = 1 << 22


# ----------------------------------------------------------------------------------------------
# activations: h, h' and the integral H with H' = h [KM13]
# ----------------------------------------------------------------------------------------------

def _check_activation(activation: str) -> str:
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
    return activation


def _act(u: np.ndarray, activation: str) -> np.ndarray:
    if activation == "relu":
        return np.maximum(u, 0.0)
    if activation == "linear":
        return u
    if activation == "sigmoid":
        return special.expit(u)
    return np.tanh(u)


def _act_prime(u: np.ndarray, activation: str) -> np.ndarray:
    if activation == "relu":
        return (u > 0.0).astype(np.float64)
    if activation == "linear":
        return np.ones_like(u)
    if activation == "sigmoid":
        e = special.expit(u)
        return e * (1.0 - e)
    return 1.0 - np.tanh(u) ** 2


def _act_integral(u: np.ndarray, activation: str) -> np.ndarray:
    """``H(u)`` with ``H' = h`` and ``H(-inf) = 0`` or ``H(0) = 0``: ReLU ``max(0,u)^2/2``, linear
    ``u^2/2``, sigmoid ``log(1+e^u)`` (softplus), tanh ``log cosh u``; all overflow-free."""
    if activation == "relu":
        return 0.5 * np.maximum(u, 0.0) ** 2
    if activation == "linear":
        return 0.5 * u * u
    if activation == "sigmoid":
        return np.logaddexp(0.0, u)
    a = np.abs(u)
    return a + np.log1p(np.exp(-2.0 * a)) - _LOG2


# ----------------------------------------------------------------------------------------------
# input handling
# ----------------------------------------------------------------------------------------------

def _as_matrix(name: str, w, shape_hint: str) -> np.ndarray:
    a = np.asarray(w, dtype=np.float64)
    if a.ndim != 2 or 0 in a.shape:
        raise ValueError(f"{name} must be a non-empty 2-D array of shape {shape_hint}, got shape {a.shape}"
                         + ("; slice one timestep of the stacked (T, ...) tensors" if a.ndim == 3 else ""))
    check_finite(name, a)
    return a


def _as_bias(name: str, b, size: int) -> np.ndarray:
    a = np.asarray(b, dtype=np.float64)
    if a.ndim == 0:
        a = np.full(size, float(a))
    if a.shape != (size,):
        raise ValueError(f"{name} must be a scalar or have shape ({size},), got shape {a.shape}")
    check_finite(name, a)
    return a


def _net(W1, b1, W2, b2):
    """Validate one net in the DDPM layout; return float64 (W1, b1, W2, b2)."""
    W1 = _as_matrix("W1", W1, "(d, H)")
    d, H = W1.shape
    W2 = _as_matrix("W2", W2, f"(H, d) = ({H}, {d})")
    if W2.shape != (H, d):
        raise ValueError(f"W2 must have shape (H, d) = ({H}, {d}) to match W1 of shape (d, H) = {W1.shape}, "
                         f"got {W2.shape}; in the DDPM layout eps = act(x @ W1 + b1) @ W2 + b2")
    return W1, _as_bias("b1", b1, H), W2, _as_bias("b2", b2, d)


def _points(x, d: int) -> np.ndarray:
    return as_samples("x", x, dtype=np.float64, d=d)


def _s_delta(alpha_bar, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``s`` and ``Delta`` of shape (n, 1) from a scalar or (n,) ``alpha_bar`` in [0, 1)."""
    ab = np.asarray(alpha_bar, dtype=np.float64)
    if not np.all(np.isfinite(ab)) or np.any(ab < 0.0) or np.any(ab >= 1.0):
        raise ValueError("alpha_bar must lie in [0, 1) (a schedule's alpha_bar[t] for t >= 1; at alpha_bar = 1 "
                         f"there is no noise and no score); got values in [{np.min(ab)}, {np.max(ab)}]")
    if ab.ndim > 1 or (ab.ndim == 1 and ab.shape[0] != n):
        raise ValueError(f"alpha_bar must be a scalar or have shape (n,) = ({n},), got shape {ab.shape}")
    ab = np.broadcast_to(ab, (n,))[:, None]
    return np.sqrt(ab), 1.0 - ab


# ----------------------------------------------------------------------------------------------
# the net, its Jacobian and its asymmetry
# ----------------------------------------------------------------------------------------------

def reconstruction(x, W1, b1, W2, b2, activation: str = "relu") -> np.ndarray:
    """Output of one single-hidden-layer net: ``r(x) = act(x @ W1 + b1) @ W2 + b2``.

    This is the DDPM layout of :mod:`physdiff.ddpm.model` (for an eps-predictor ``r = eps_theta``);
    in [KM13] notation ``r(x) = W2^T h(W x + b_h) + b_r`` with ``W = W1.T`` [KM13].

    Parameters
    ----------
    x : array_like, shape (n, d) or (d,)
        Input points.
    W1 : array_like, shape (d, H)
        Encoder weights.
    b1 : array_like, shape (H,) or scalar
        Hidden biases.
    W2 : array_like, shape (H, d)
        Decoder weights.
    b2 : array_like, shape (d,) or scalar
        Output biases.
    activation : {"relu", "linear", "sigmoid", "tanh"}
        Hidden activation ``h``.

    Returns
    -------
    r : ndarray, float64, shape (n, d)

    Raises
    ------
    ValueError
        Shapes that do not fit together, non-finite values or an unknown activation.
    """
    activation = _check_activation(activation)
    W1, b1, W2, b2 = _net(W1, b1, W2, b2)
    x = _points(x, W1.shape[0])
    return _act(x @ W1 + b1, activation) @ W2 + b2


def jacobian(x, W1, b1, W2, b2, activation: str = "relu") -> np.ndarray:
    """Jacobian of :func:`reconstruction`: ``J[n, i, j] = d r_i / d x_j`` at each point.

    ``J = W2^T diag(h'(u)) W1^T`` with ``u = x @ W1 + b1`` ([KM13]: ``r`` is a gradient field
    iff ``J`` is symmetric everywhere). For ReLU ``h'(0)`` is taken as 0.

    Parameters
    ----------
    x, W1, b1, W2, b2, activation
        As in :func:`reconstruction`.

    Returns
    -------
    J : ndarray, float64, shape (n, d, d)
        ``n d^2`` numbers: for large ``d`` use :func:`jacobian_asymmetry`, which works in blocks.

    Raises
    ------
    ValueError
        As :func:`reconstruction`.
    """
    activation = _check_activation(activation)
    W1, b1, W2, b2 = _net(W1, b1, W2, b2)
    x = _points(x, W1.shape[0])
    hp = _act_prime(x @ W1 + b1, activation)
    return np.einsum("ki,nk,jk->nij", W2, hp, W1, optimize=True)


def jacobian_asymmetry(x, W1, b1, W2, b2, activation: str = "relu") -> float:
    """Mean relative asymmetry of the Jacobian, ``mean_n |J - J^T|_F / |J|_F``.

    0 for a gradient field (tied weights, or ``W2 = D W1^T`` with ``D`` diagonal) and > 0 otherwise;
    the [KM13] diagnostic for untied weights. Points where ``J = 0`` (e.g.
    all ReLU units off) carry no information and are skipped.

    Parameters
    ----------
    x, W1, b1, W2, b2, activation
        As in :func:`reconstruction`; ``x`` (n, d) are the points at which ``J`` is evaluated.

    Returns
    -------
    asymmetry : float
        In [0, 2] (2 for an antisymmetric ``J``); NaN if ``J = 0`` at every point.

    Raises
    ------
    ValueError
        As :func:`reconstruction`.
    """
    activation = _check_activation(activation)
    W1, b1, W2, b2 = _net(W1, b1, W2, b2)
    x = _points(x, W1.shape[0])
    d = W1.shape[0]
    ratios = []
    step = max(1, _BLOCK // (d * d))
    for i in range(0, x.shape[0], step):
        hp = _act_prime(x[i:i + step] @ W1 + b1, activation)
        J = np.einsum("ki,nk,jk->nij", W2, hp, W1, optimize=True)
        num = np.linalg.norm(J - np.swapaxes(J, 1, 2), axis=(1, 2))
        den = np.linalg.norm(J, axis=(1, 2))
        ok = den > 0.0
        ratios.append(num[ok] / den[ok])
    r = np.concatenate(ratios)
    return float(np.mean(r)) if r.size else float("nan")


# ----------------------------------------------------------------------------------------------
# gradient fields and their energies [KM13]
# ----------------------------------------------------------------------------------------------

def is_tied(W1, W2, rtol: float = 1e-6) -> bool:
    """Whether a net is tied, ``W2 = W1^T``: ``|W2 - W1^T|_F <= rtol |W1|_F``.

    Parameters
    ----------
    W1 : array_like, shape (d, H)
    W2 : array_like, shape (H, d)
    rtol : float >= 0
        Relative tolerance in the Frobenius norm.

    Returns
    -------
    bool

    Raises
    ------
    ValueError
        Mismatched shapes, non-finite values or a negative ``rtol``.
    """
    rtol = check_real("rtol", rtol, lo=0.0)
    W1, _, W2, _ = _net(W1, 0.0, W2, 0.0)
    return bool(np.linalg.norm(W2 - W1.T) <= rtol * np.linalg.norm(W1))


def diagonal_rescaling(W1, W2) -> tuple[np.ndarray, float]:
    """Best diagonal ``D`` with ``W2 ≈ D W1^T`` and the relative residual of the fit.

    [KM13]: an untied net ``r(x) = W2^T h(W1^T x + b1) + b2``
    is a gradient field (for a nonlinear ``h``, in general only) if ``W2 = D W1^T`` with ``D``
    diagonal; its energy is then ``sum_k D_k H(u_k) + b2.x - |x|^2/2``. Row by row, the least-squares
    ``D_k = <W2[k], W1[:, k]> / |W1[:, k]|^2`` (``D_k = 0`` for a unit with no input weights, whose
    constant output then counts in the residual).

    Parameters
    ----------
    W1 : array_like, shape (d, H)
    W2 : array_like, shape (H, d)

    Returns
    -------
    D : ndarray, float64, shape (H,)
        The diagonal of ``D`` (all ones for a tied net).
    residual : float
        ``|W2 - D W1^T|_F / |W2|_F`` (0 when ``W2 = 0``): 0 iff the condition holds exactly.

    Raises
    ------
    ValueError
        Mismatched shapes or non-finite values.
    """
    W1, _, W2, _ = _net(W1, 0.0, W2, 0.0)
    norm2 = np.einsum("jk,jk->k", W1, W1)
    dot = np.einsum("kj,jk->k", W2, W1)
    D = np.divide(dot, norm2, out=np.zeros_like(dot), where=norm2 > 0.0)
    den = np.linalg.norm(W2)
    res = np.linalg.norm(W2 - D[:, None] * W1.T)
    return D, float(res / den) if den > 0.0 else 0.0


def tied_energy(x, W, b_h, b_r, activation: str = "relu") -> np.ndarray:
    """Energy of a tied autoencoder [KM13]: ``F(x) = sum_k H(u_k) - |x - b_r|^2 / 2``.

    For ``r(x) = W^T h(W x + b_h) + b_r`` and ``u = W x + b_h``, ``grad F(x) = r(x) - x``
    ([KM13]), with ``H' = h``: linear ``u^2/2``, ReLU
    ``max(0,u)^2/2``, sigmoid ``log(1 + e^u)``, tanh ``log cosh u``.
    ``F`` is log-density-like (large near the data; the KM13 "score" of an input).

    Parameters
    ----------
    x : array_like, shape (n, d) or (d,)
    W : array_like, shape (H, d)
        The [KM13] weight matrix. For a tied DDPM net pass ``W2`` (= ``W1.T``).
    b_h : array_like, shape (H,) or scalar
        Hidden biases (``b1`` of the DDPM layout).
    b_r : array_like, shape (d,) or scalar
        Output biases (``b2``).
    activation : {"relu", "linear", "sigmoid", "tanh"}

    Returns
    -------
    F : ndarray, float64, shape (n,)
        Defined up to no constant: the formula above exactly.

    Raises
    ------
    ValueError
        Bad shapes, non-finite values or an unknown activation.
    """
    activation = _check_activation(activation)
    W = _as_matrix("W", W, "(H, d)")
    H_units, d = W.shape
    b_h = _as_bias("b_h", b_h, H_units)
    b_r = _as_bias("b_r", b_r, d)
    x = _points(x, d)
    u = x @ W.T + b_h
    return _act_integral(u, activation).sum(axis=1) - 0.5 * np.sum((x - b_r) ** 2, axis=1)


def energy_along_path(x_path, field_fn: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Line integral of a vector field along a polyline (trapezoid rule): ``E_k = ∫_{x_0}^{x_k} f . dx``.

    If ``f = grad E`` this is ``E(x_k) - E(x_0)`` up to the trapezoid error ``O(|dx|^2)`` per unit
    length; for a field that is not a gradient (an untied autoencoder's ``r(x) - x``, [KM13]) it is
    the potential the field *would* have along this path, and it depends on the path (a closed loop
    gives the circulation). Segment ``j`` contributes ``(f(x_j) + f(x_{j+1})) . (x_{j+1} - x_j) / 2``.

    Parameters
    ----------
    x_path : array_like, shape (m, d) or (B, m, d)
        Vertices of the polyline (``B`` independent paths), ``m >= 2``.
    field_fn : callable
        ``field_fn(x)`` with ``x`` (k, d) float64 returns the field (k, d), e.g.
        ``lambda x: reconstruction(x, W1, b1, W2, b2) - x``; called once with all vertices.

    Returns
    -------
    E : ndarray, float64, shape (m,) or (B, m)
        Cumulative integral, ``E[..., 0] = 0``.

    Raises
    ------
    ValueError
        A path of the wrong shape or with fewer than 2 vertices, non-finite values, or a field of
        the wrong shape.
    """
    p = np.asarray(x_path, dtype=np.float64)
    if p.ndim not in (2, 3) or p.shape[-2] < 2 or p.shape[-1] < 1:
        raise ValueError(f"x_path must have shape (m, d) or (B, m, d) with m >= 2 vertices, got shape {p.shape}")
    check_finite("x_path", p)
    if not callable(field_fn):
        raise ValueError("field_fn must be a callable mapping points (k, d) to field values (k, d)")
    d = p.shape[-1]
    flat = p.reshape(-1, d)
    f = np.asarray(field_fn(flat), dtype=np.float64)
    if f.shape != flat.shape:
        raise ValueError(f"field_fn returned shape {f.shape} for points of shape {flat.shape}; it must return (k, d)")
    f = f.reshape(p.shape)
    seg = 0.5 * np.sum((f[..., 1:, :] + f[..., :-1, :]) * np.diff(p, axis=-2), axis=-1)
    out = np.zeros(p.shape[:-1])
    np.cumsum(seg, axis=-1, out=out[..., 1:])
    return out


# ----------------------------------------------------------------------------------------------
# DDPM view: a tied net as an eps- or x0-predictor
# ----------------------------------------------------------------------------------------------

def _check_predictor(predictor: str) -> str:
    if predictor not in ("eps", "x0"):
        raise ValueError(f"predictor must be 'eps' (the net predicts the noise) or 'x0' (it predicts the data), "
                         f"got {predictor!r}")
    return predictor


def predictor_score(x, W1, b1, W2, b2, alpha_bar, activation: str = "relu", predictor: str = "eps") -> np.ndarray:
    """Score implied by a net used as a DDPM predictor at one step.

    eps-predictor: ``score = -r(x) / sqrt(Delta)`` ([Ho20]; ``docs/theory.md``, "Conventions").
    x0-predictor: ``score = (s r(x) - x) / Delta`` (Tweedie, ``r = E[x0 | x_t]``).
    ``r`` is :func:`reconstruction`; ``s = sqrt(alpha_bar)``, ``Delta = 1 - alpha_bar``.

    Parameters
    ----------
    x, W1, b1, W2, b2, activation
        As in :func:`reconstruction`; ``x`` are noisy points ``x_t`` (n, d).
    alpha_bar : float or array_like (n,)
        In [0, 1).
    predictor : {"eps", "x0"}

    Returns
    -------
    score : ndarray, float64, shape (n, d)

    Raises
    ------
    ValueError
        As :func:`reconstruction`, ``alpha_bar`` outside [0, 1) or an unknown ``predictor``.
    """
    predictor = _check_predictor(predictor)
    r = reconstruction(x, W1, b1, W2, b2, activation)
    xx = _points(x, r.shape[1])
    s, delta = _s_delta(alpha_bar, r.shape[0])
    if predictor == "eps":
        return -r / np.sqrt(delta)
    return (s * r - xx) / delta


def score_energy(x, W1, b1, W2, b2, alpha_bar, activation: str = "relu", *, predictor: str = "eps",
                 rtol: float = 1e-6) -> np.ndarray:
    """Exact log-density (up to a constant) of the score of a tied DDPM net: ``grad E = score``.

    With ``u = x @ W1 + b1`` and ``W2 = D W1^T`` (``D = 1``: tied; any diagonal ``D``,
    [KM13]), ``r(x) = grad_x sum_k D_k H(u_k) + b2`` and so ([KM13]; ``docs/theory.md``, "Conventions")

    - eps-predictor, ``score = -r/sqrt(Delta)``:  ``E(x) = -(sum_k D_k H(u_k) + b2 . x) / sqrt(Delta)``;
    - x0-predictor, ``score = (s r - x)/Delta``: ``E(x) = (s sum_k D_k H(u_k) + s b2 . x - |x|^2/2) / Delta``.

    ``E = log p_t + const`` for the density ``p_t`` whose score the net gives; the potential in the
    sense of [RA23] (``V = -log p``) is ``V = -E``. The x0 form with a ReLU pair is the double well of
    :func:`relu_pair_minima`.

    Parameters
    ----------
    x, W1, b1, W2, b2, activation
        As in :func:`reconstruction`.
    alpha_bar : float or array_like (n,)
        In [0, 1).
    predictor : {"eps", "x0"}
    rtol : float
        Largest relative residual of ``W2 = D W1^T`` (see :func:`diagonal_rescaling`) accepted.

    Returns
    -------
    E : ndarray, float64, shape (n,)

    Raises
    ------
    ValueError
        As :func:`predictor_score`, or a net that is not a gradient field (``W2`` not ``D W1^T``
        within ``rtol``): its score has no energy; use :func:`energy_along_path` and
        :func:`jacobian_asymmetry` instead.
    """
    predictor = _check_predictor(predictor)
    activation = _check_activation(activation)
    rtol = check_real("rtol", rtol, lo=0.0)
    W1, b1, W2, b2 = _net(W1, b1, W2, b2)
    D, res = diagonal_rescaling(W1, W2)
    if res > rtol:
        raise ValueError(f"W2 is not D W1^T with D diagonal (relative residual {res:.3g} > rtol = {rtol:g}): the net "
                         "is not a gradient field and has no energy; use energy_along_path / jacobian_asymmetry, "
                         "or raise rtol")
    x = _points(x, W1.shape[0])
    s, delta = _s_delta(alpha_bar, x.shape[0])
    s, delta = s[:, 0], delta[:, 0]
    G = _act_integral(x @ W1 + b1, activation) @ D + x @ b2
    if predictor == "eps":
        return -G / np.sqrt(delta)
    return (s * G - 0.5 * np.sum(x * x, axis=1)) / delta


def relu_pair_minima(w_norm: float, b: float, alpha_bar: float) -> np.ndarray:
    """Minima of the potential of a tied ReLU pair used as an x0-predictor, along its direction.

    The net has two hidden units ``(w, b)`` and ``(-w, b)`` (``W1 = [w, -w]``, ``b1 = (b, b)``,
    ``W2 = W1^T``, ``b2 = 0``), so ``r(x) = w (relu(w.x + b) - relu(-w.x + b))``. Read as an
    x0-predictor, ``score = (s r - x)/Delta``; along ``y = w.x/|w|`` with ``b > 0`` the potential
    ``V(y) = -E`` (:func:`score_energy`, ``predictor="x0"``) has ``Delta V'(y) = (1 - 2 s|w|^2) y`` for
    ``|w||y| < b`` and ``(1 - s|w|^2) y - s|w| b`` for ``|w| y > b``. Hence:
    a double well iff ``1/2 < s|w|^2 < 1``, minima at ``y = ± s|w| b / (1 - s|w|^2)``; a single well
    at 0 if ``s|w|^2 < 1/2``; no minimum (V unbounded below) if ``s|w|^2 >= 1``. With ``|w| = 1``,
    ``b = 0.5``: ``s = 0.75`` gives ``±1.5``; ``s = 0.4`` a single well.

    Parameters
    ----------
    w_norm : float > 0
        ``|w|``.
    b : float > 0
        The common hidden bias.
    alpha_bar : float in [0, 1)
        ``s = sqrt(alpha_bar)``.

    Returns
    -------
    minima : ndarray, float64
        ``[-y*, y*]`` (double well), ``[0.]`` (single well) or empty (``s|w|^2 >= 1``). At the
        critical ``s|w|^2 = 1/2`` the potential is flat on ``[-b/|w|, b/|w|]``; ``[0.]`` is returned.

    Raises
    ------
    ValueError
        Non-positive ``w_norm`` or ``b``, or ``alpha_bar`` outside [0, 1).
    """
    w = check_real("w_norm", w_norm, lo=0.0, lo_open=True)
    b = check_real("b", b, lo=0.0, lo_open=True)
    ab = check_real("alpha_bar", alpha_bar, lo=0.0, hi=1.0, hi_open=True)
    g = np.sqrt(ab) * w * w
    if g >= 1.0:
        return np.empty(0)
    if g <= 0.5:
        return np.zeros(1)
    y = np.sqrt(ab) * w * b / (1.0 - g)
    return np.array([-y, y])


# ----------------------------------------------------------------------------------------------
# linear nets on Gaussian data
# ----------------------------------------------------------------------------------------------

def linear_denoiser_optimum(cov, alpha_bar: float, hidden: int | None = None) -> np.ndarray:
    """MSE-optimal linear eps-predictor ``eps_hat = A x_t`` for Gaussian data ``x0 ~ N(0, cov)``.

    With ``x_t = s x0 + sqrt(Delta) eps`` (``docs/theory.md``, "Conventions"), ``Sigma = s^2 cov + Delta I``, the
    least-squares regression of ``eps`` on ``x_t`` is (full rank, ``hidden=None``)

        ``A = Cov(eps, x_t) Sigma^{-1} = sqrt(Delta) Sigma^{-1}``,

    the eps of the exact Gaussian score ``-Sigma^{-1} x`` ([Ho20]; a linear autoencoder can do no
    better, [Thesis] Annex II). Best rank-``k`` ``A`` (a linear net with ``k`` hidden units),
    reduced-rank regression: ``E|eps - A x|^2 = |A Sigma^{1/2} - sqrt(Delta) Sigma^{-1/2}|_F^2 + const``,
    so by Eckart-Young ``A Sigma^{1/2}`` is the rank-``k`` truncation of ``sqrt(Delta) Sigma^{-1/2}``:

        ``A_k = sqrt(Delta) sum_{i in K} u_i u_i^T / (s^2 lambda_i + Delta)``,

    ``(lambda_i, u_i)`` the eigenpairs of ``cov`` and ``K`` the ``k`` SMALLEST ``lambda_i``: the noise
    is most predictable where the data vary least (explained fraction ``Delta/(s^2 lambda_i + Delta)``).
    Degenerate eigenvalues at the cut make ``A_k`` non-unique; one choice is returned. ``A`` is
    symmetric, so the row-vector form ``x @ A`` gives the same prediction (DDPM layout ``W1 @ W2 = A``).

    Parameters
    ----------
    cov : array_like, shape (d, d)
        Symmetric positive semi-definite data covariance.
    alpha_bar : float in [0, 1)
    hidden : int in [1, d] or None
        Rank of the net (``None`` or ``>= d``: full rank).

    Returns
    -------
    A : ndarray, float64, shape (d, d)

    Raises
    ------
    ValueError
        A covariance that is not square, symmetric and PSD (eigenvalues below ``-1e-10 * max``),
        ``alpha_bar`` outside [0, 1) or ``hidden < 1``.
    """
    C = _as_matrix("cov", cov, "(d, d)")
    d = C.shape[0]
    if C.shape != (d, d):
        raise ValueError(f"cov must be square (d, d), got shape {C.shape}")
    scale = max(float(np.max(np.abs(C))), 1e-300)
    if np.max(np.abs(C - C.T)) > 1e-10 * scale:
        raise ValueError("cov must be symmetric; pass (cov + cov.T) / 2 if it is only so up to rounding")
    ab = check_real("alpha_bar", alpha_bar, lo=0.0, hi=1.0, hi_open=True)
    k = d if hidden is None else min(check_positive_int("hidden", hidden), d)
    lam, U = linalg.eigh(0.5 * (C + C.T))
    if lam[0] < -1e-10 * max(scale, float(np.max(np.abs(lam)))):
        raise ValueError(f"cov must be positive semi-definite, its smallest eigenvalue is {lam[0]:.3g}")
    lam = np.maximum(lam, 0.0)
    delta = 1.0 - ab
    coef = np.sqrt(delta) / (ab * lam + delta)
    keep = slice(0, k)   # eigh sorts ascending: the k smallest data variances
    return (U[:, keep] * coef[keep]) @ U[:, keep].T


def linear_potential_mu(mu, alpha_bar, Lambda) -> np.ndarray:
    """Potential along the top eigenvector that any linear model gives: ``V = mu^2 / (2 (alpha_bar Lambda + Delta))``.

    A linear (optimal) eps-predictor gives a Gaussian ``p_t`` (:func:`linear_denoiser_optimum`), so
    along the top eigenvector (variance ``Lambda``) ``V(mu) = -log p_t(mu) + const`` is this parabola,
    convex at every time: a linear model can never form the symmetry-breaking double well
    ([Thesis] Annex II in physical form; ``docs/theory.md``, "MNIST studies"). Same potential convention as
    ``curie_weiss.potential(kind="density")``, with ``V(0) = 0``.

    Parameters
    ----------
    mu : array_like
        Projections ``mu = x . u_top`` (e.g. ``sum_i x_i / sqrt(N)`` for Curie-Weiss).
    alpha_bar : float or array_like broadcasting against ``mu``
        In [0, 1].
    Lambda : float or array_like, >= 0
        Top eigenvalue of the data covariance (e.g. ``curie_weiss.top_eigenvalue``).

    Returns
    -------
    V : ndarray, float64, shape ``broadcast(mu, alpha_bar, Lambda)``

    Raises
    ------
    ValueError
        Non-finite input, ``alpha_bar`` outside [0, 1], negative ``Lambda``, shapes that do not
        broadcast, or ``alpha_bar = 1`` with ``Lambda = 0`` (a zero-variance direction).
    """
    mu = np.asarray(mu, dtype=np.float64)
    ab = np.asarray(alpha_bar, dtype=np.float64)
    lam = np.asarray(Lambda, dtype=np.float64)
    for name, a in (("mu", mu), ("alpha_bar", ab), ("Lambda", lam)):
        check_finite(name, a)
    if np.any(ab < 0.0) or np.any(ab > 1.0):
        raise ValueError(f"alpha_bar must lie in [0, 1], got values in [{np.min(ab)}, {np.max(ab)}]")
    if np.any(lam < 0.0):
        raise ValueError(f"Lambda is a variance and must be >= 0, got min {np.min(lam)}")
    try:
        np.broadcast_shapes(mu.shape, ab.shape, lam.shape)
    except ValueError:
        raise ValueError(f"mu {mu.shape}, alpha_bar {ab.shape} and Lambda {lam.shape} do not broadcast") from None
    var = ab * lam + (1.0 - ab)
    if np.any(var <= 0.0):
        raise ValueError("alpha_bar = 1 with Lambda = 0 gives a zero-variance direction; "
                         "use alpha_bar < 1 or Lambda > 0")
    return mu * mu / (2.0 * var)


def gaussian_optimal_loss(cov, alpha_bar) -> np.ndarray:
    """Per-dimension loss ``E|eps - eps*(x_t)|^2 / d`` of the best affine noise predictor.

    For data of covariance ``C`` (eigenvalues ``lambda_i``) and ``x_t = s x0 + sqrt(Delta) eps``,
    the best affine predictor of ``eps`` from ``x_t`` is ``eps* = sqrt(Delta) Sigma_t^{-1} (x_t - s
    mean)`` with ``Sigma_t = s^2 C + Delta I`` (:func:`linear_denoiser_optimum`, the exact eps of
    the data's Gaussian fit); its mean squared error is ``d - Delta tr(Sigma_t^{-1})``, per dimension

        ``L*(t) = (1/d) sum_i s^2 lambda_i / (s^2 lambda_i + Delta)``.

    No linear net can go below it on data with that covariance; a nonlinear one can, by learning
    the non-Gaussian part ([Thesis] Annex II; ``docs/theory.md``, "MNIST studies").

    Parameters
    ----------
    cov : array_like, shape (d, d)
        Symmetric positive semi-definite data covariance (negative rounding eigenvalues are
        clipped to 0).
    alpha_bar : float or array_like, shape (k,)
        In (0, 1].

    Returns
    -------
    ndarray, float64, shape ``alpha_bar.shape``
        Dimensionless (a share of the noise variance, between 0 and 1).

    Raises
    ------
    ValueError
        ``cov`` not square, or ``alpha_bar`` outside (0, 1].
    """
    C = _as_matrix("cov", cov, "(d, d)")
    if C.shape[0] != C.shape[1]:
        raise ValueError(f"cov must be a square matrix, got shape {C.shape}")
    ab = np.asarray(alpha_bar, dtype=np.float64)
    check_finite("alpha_bar", ab)
    if np.any(ab <= 0.0) or np.any(ab > 1.0):
        raise ValueError("alpha_bar must lie in (0, 1]")
    lam = np.clip(linalg.eigvalsh(0.5 * (C + C.T)), 0.0, None)
    s2 = ab[..., None]
    return np.mean(s2 * lam / (s2 * lam + (1.0 - s2)), axis=-1)
