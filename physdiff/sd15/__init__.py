"""[SD15]'s diffusion probabilistic models: the bound K, Gaussian diffusion with a learned mean
AND diagonal variance (Swiss roll), and binomial diffusion (binary heartbeat).

The bound K
-----------
For a reverse chain ``p(x_{0..T}) = p(x_T) prod_t p(x_{t-1} | x_t)`` and the forward chain ``q``,
Jensen's inequality gives ``E_q[log p(x0)] >= K`` with [SD15, eqs. 12-14; Ho20, eq. 5]::

    K = E_q[ log p(x0 | x1) ]                                                  (t = 1)
        - sum_{t=2}^{T} E_{q(x0, x_t)}[ D_KL( q(x_{t-1} | x_t, x0) || p(x_{t-1} | x_t) ) ]
        - E_{q(x0)}[ D_KL( q(x_T | x0) || p(x_T) ) ].                          (prior)

This is [SD15] eq. 14 with its two edge terms taken exactly: [SD15] replace the t = 1 and prior
terms by ``H_q(X_T|X_0) - H_q(X_1|X_0) - H_p(X_T)``, which assumes that the last reverse step
mirrors the first forward step and that ``q(x_T) = p(x_T)`` (their Appendix B). Here every term is
exact, so K is a true lower bound for any reverse model, and it is TIGHT (``K = E_q[log q(x0)] =
-H(data)``) when ``p`` is the true reverse kernel ``q(x_{t-1} | x_t)`` and ``p(x_T) = q(x_T)``.
Every KL divergence is closed form (Gaussian or Bernoulli), so only ``(x0, x_t)`` are sampled.

Sign and units: K is a lower bound on the LOG-likelihood (not the negative log-likelihood), in bits
per sample (per sequence for the heartbeat), as in [SD15] Table 1, which reports K = 2.35 bits for
the Swiss roll (K - L_null = 6.45 bits) and K = -2.414 bits/sequence for the heartbeat (K - L_null
= 12.024 bits/sequence) against the exact log-likelihood ``log2(1/5) = -2.322`` bits. ``L_null`` is
the log-likelihood of the null model: ``N(0, I)`` for continuous data scaled to unit variance
(:func:`unit_variance`), independent Bernoullis with the data's mean for binary data.

Schedules
---------
* Gaussian: [SD15] learn ``beta_2..T`` by gradient ascent on K (``beta_1`` fixed small), and note
  (footnote to Sec. 2.4.1) that the fixed binomial schedule ``beta_t = 1/(T - t + 1)`` is "just as
  effective". :func:`gaussian_betas` gives that schedule (``kind="sd15"``) and, by default, a
  fixed stand-in for the learned one (``kind="geometric"``: the noise variance ``1 - alpha_bar_t``
  grows geometrically from ``beta_1 = 1e-4`` to 1). Both end at ``alpha_bar_T = 0``, so ``q(x_T |
  x0) = N(0, I) = p(x_T)`` and the prior term vanishes. On thin data (the Swiss roll) the geometric
  one keeps every reverse kernel nearly isotropic, which a diagonal-variance model needs.
* Binomial: ``beta_t = 1/(T - t + 1)`` [SD15, Sec. 2.4.1] (:func:`physdiff.binomial.binomial_betas`).
  ``x_T`` is then exactly uniform; we start the reverse chain from the uniform ``p(x_T) = B(0.5)``
  (= ``q(x_T)``, so the prior term vanishes) where [SD15, App. D.1.2] started from ``B(0.2)`` (the
  data's mean), which their approximate edge terms do not penalise.

Models (torch, imported lazily: importing this package does not import torch)
-------------------------------------------------------------------------------
* :class:`GaussianSD15` [SD15, App. D.1.1 and D.2.1]: a shared trunk (MLP on ``x_t`` and ``t/T``)
  and one linear readout per timestep giving ``z_mu, z_Sigma``; ``Sigma = sigmoid(z_Sigma +
  logit(beta_t))`` ([SD15] eq. 64) and ``mu = sqrt(1 - beta_t) x_t + sqrt(beta_t) z_mu``, both
  perturbations of the forward kernel. ([SD15] eq. 65, ``mu = (x_t - z_mu)(1 - Sigma) + z_mu``,
  needs ``z_mu ~ 1/Sigma`` to move the mean by ``sqrt(beta_t)`` when ``beta_t`` is small and trained
  much more slowly here.) [SD15] used a 16-unit radial-basis-function trunk; ours is an MLP that
  also sees ``t/T``.
* :class:`BinomialSD15` [SD15, App. D.1.2]: ``p(x_{t-1} = 1 | x_t) = sigmoid(f_theta(x_t, t) +
  l_null(x_t, t))``, an MLP with sinusoidal time features and a shared readout, added to the logit
  of the exact reverse kernel of independent bits with the data's mean
  (:func:`physdiff.binomial.independent_reverse_rate`), so an untrained model is the null model.
  [SD15] used three sigmoid layers of 50 units and one readout per timestep.

Modules
-------
``bound``           :class:`BoundK`, :func:`gaussian_betas`, :func:`bound_K_gaussian`, :func:`bound_K_binomial`
``ddpm_bound``      K of an eps-trained DDPM: :func:`ddpm_mean_var`, :func:`ddpm_schedule`,
                    :func:`ddpm_bound_K`, :func:`train_eps_ddpm`
``data``            :func:`unit_variance`, the null models' log-likelihoods, :func:`valid_heartbeat`
``gaussian_model``  :class:`GaussianSD15`, :func:`train_gaussian_sd15`
``binomial_model``  :class:`BinomialSD15`, :func:`train_binomial_sd15`

The Swiss roll's exact density and noise predictor live in :mod:`physdiff.theory.swiss_roll` and
are re-exported here. The formulas are collected in ``docs/theory.md`` ("Sohl-Dickstein et al.
2015: the bound K", "The Swiss roll").

References
----------
[SD15] Sohl-Dickstein, Weiss, Maheswaranathan, Ganguli (2015), Deep Unsupervised Learning using
    Nonequilibrium Thermodynamics, arXiv:1503.03585.
[Ho20] Ho, Jain, Abbeel (2020), Denoising Diffusion Probabilistic Models, arXiv:2006.11239.
"""

from __future__ import annotations

from ..theory.swiss_roll import swiss_roll_eps, swiss_roll_log_density
from .binomial_model import BinomialSD15, train_binomial_sd15
from .bound import BoundK, bound_K_binomial, bound_K_gaussian, gaussian_betas
from .data import null_log_likelihood_binomial, null_log_likelihood_gaussian, unit_variance, valid_heartbeat
from .ddpm_bound import ddpm_bound_K, ddpm_mean_var, ddpm_schedule, train_eps_ddpm
from .gaussian_model import GaussianSD15, train_gaussian_sd15

__all__ = [
    "BoundK",
    "gaussian_betas",
    "bound_K_gaussian",
    "bound_K_binomial",
    "ddpm_mean_var",
    "ddpm_schedule",
    "ddpm_bound_K",
    "train_eps_ddpm",
    "unit_variance",
    "null_log_likelihood_gaussian",
    "null_log_likelihood_binomial",
    "swiss_roll_log_density",
    "swiss_roll_eps",
    "valid_heartbeat",
    "GaussianSD15",
    "BinomialSD15",
    "train_gaussian_sd15",
    "train_binomial_sd15",
]
