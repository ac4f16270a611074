r"""The five ELBO-gradient estimators, all the library's own, and their cost and variance.

The gradient of the expected log-likelihood of a minibatch :math:`B` (scaled by
:math:`N / |B|`), :math:`\nabla_{\mu,\lambda} \mathbb{E}_q[f_B(w)]`, is estimated by
(:data:`ELBO_ESTIMATORS`): the score function without baseline (``score``), with the
leave-one-out baseline (``loo``), with the delta-method control variate (``delta``), the
pathwise estimator (``pathwise``) and the measure-valued estimator (``mvd``). The KL term's
gradient is exact.

>>> list(ELBO_ESTIMATORS)
['score', 'loo', 'delta', 'pathwise', 'mvd']
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

import stochgrad as sg
from stochgrad._checks import check_choice, check_int, check_torch_generator
from stochgrad.apps.vi.model import (
    MAX_SAMPLES,
    _check_data,
    _check_params,
    load_data,  # noqa: F401  (the doctests use it)
    log_likelihood,
    variational,
)

__all__ = [
    "BUDGETS",
    "ELBO_ESTIMATORS",
    "elbo_gradient",
    "evaluations_per_step",
    "expected_loglik_gradient",
    "gradient_variance",
    "samples_per_step",
]

#: The ELBO-gradient estimators by name, and what each is.
ELBO_ESTIMATORS: dict[str, str] = {
    "score": "score function, no baseline",
    "loo": "score function, leave-one-out baseline",
    "delta": "score function, delta-method control variate",
    "pathwise": "pathwise (reparameterisation)",
    "mvd": "measure-valued (weak derivative)",
}

#: Budgets of a comparison: equal samples of q per step, or equal evaluations of f.
BUDGETS: tuple[str, ...] = ("samples", "evaluations")


def _check_estimator(name: object) -> str:
    return check_choice("estimator", name, ELBO_ESTIMATORS)


def samples_per_step(estimator: str, num_samples: int, dim: int, budget: str = "samples") -> int:
    r"""Samples of :math:`q` an estimator draws per step under a budget.

    ``"samples"``: ``num_samples`` for every estimator. ``"evaluations"``: the
    :math:`2 \cdot 2D \cdot S` evaluations of the measure-valued estimator with :math:`S`
    = ``num_samples`` samples, i.e. :math:`4DS` samples for the others.

    >>> samples_per_step("loo", 50, 31, "evaluations"), samples_per_step("mvd", 50, 31, "evaluations")
    (6200, 50)
    """
    _check_estimator(estimator)
    num_samples = check_int("num_samples", num_samples, minimum=1)
    check_choice("budget", budget, BUDGETS)
    if budget == "samples" or estimator == "mvd":
        return num_samples
    return 4 * dim * num_samples


def evaluations_per_step(estimator: str, num_samples: int, dim: int) -> int:
    r"""Evaluations of :math:`f_B` per gradient step with ``num_samples`` samples.

    One per sample, except the measure-valued estimator: two coupled points for each of the
    :math:`2D` scalar parameters (:math:`\mu_d`, :math:`\sigma_d`), :math:`4D` per sample.

    >>> evaluations_per_step("mvd", 50, 31), evaluations_per_step("pathwise", 50, 31)
    (6200, 50)
    """
    _check_estimator(estimator)
    num_samples = check_int("num_samples", num_samples, minimum=1)
    return 4 * dim * num_samples if estimator == "mvd" else num_samples


def _check_batch(batch, n: int, device: torch.device) -> Tensor:
    """``batch`` as a non-empty 1-D index tensor into ``n`` rows; errors name ``batch``."""
    if not isinstance(batch, Tensor):
        raise TypeError(f"batch must be a tensor of row indices, got {type(batch).__name__}")
    if batch.dtype in (torch.bool, torch.uint8) or batch.is_floating_point() or batch.is_complex():
        raise TypeError(f"batch must be an integer tensor of row indices, got dtype {batch.dtype}")
    if batch.device != device:
        raise ValueError(f"batch must be on the data's device ({device}), got {batch.device}")
    if batch.dim() != 1 or batch.numel() == 0:
        raise ValueError(f"batch must be a non-empty 1-D tensor, got shape {tuple(batch.shape)}")
    if bool(((batch < 0) | (batch >= n)).any()):
        raise ValueError(f"batch must index rows 0..{n - 1}, got values outside")
    return batch


def _estimate(
    estimator: str, f: Callable[[Tensor], Tensor], mu: Tensor, log_sigma: Tensor, n: int, g
) -> sg.GradientEstimate:
    """One library estimate of the gradient of E_q[f] w.r.t. (mu, log_sigma)."""
    params = (mu, log_sigma)
    if estimator == "score":
        return sg.score_function(f, variational, params, num_samples=n, generator=g)
    if estimator == "loo":
        return sg.score_function(f, variational, params, num_samples=n, baseline="loo", generator=g)
    if estimator == "delta":
        return sg.score_function(
            f, variational, params, num_samples=n, control_variate="delta", generator=g
        )
    if estimator == "pathwise":
        return sg.pathwise(f, variational, params, num_samples=n, generator=g)
    return sg.measure_valued(f, variational, params, num_samples=n, generator=g)


def expected_loglik_gradient(
    estimator: str,
    mu: Tensor,
    log_sigma: Tensor,
    X: Tensor,
    y: Tensor,
    num_samples: int,
    *,
    generator: torch.Generator,
    batch: Tensor | None = None,
) -> sg.GradientEstimate:
    r"""Library estimate of :math:`\nabla_{\mu,\lambda}\,\mathbb{E}_q[f_B(w)]`.

    .. math::

        f_B(w) = \frac{N}{|B|}\sum_{n\in B}\log\sigma(y_n x_n^\top w),

    by ``sg.score_function`` (``score``: no baseline; ``loo``: ``baseline="loo"``; ``delta``:
    ``control_variate="delta"``), ``sg.pathwise`` or ``sg.measure_valued`` with
    ``params = (mu, log_sigma)`` and ``dist_fn`` = :func:`variational`.

    Args:
        estimator: a key of :data:`ELBO_ESTIMATORS`.
        mu: ``[D]`` variational means.
        log_sigma: ``[D]`` variational log standard deviations.
        X: ``[N, D]`` design matrix.
        y: ``[N]`` labels, ``-1`` or ``1``.
        batch: indices of the minibatch :math:`B` (default: all data, no scaling).
        num_samples: samples of :math:`q` (see :func:`evaluations_per_step` for the cost).
        generator: all randomness.

    Returns:
        The :class:`~stochgrad.gradient_estimate.GradientEstimate` (``grad`` is the pair
        ``(grad_mu, grad_log_sigma)``).

    Raises:
        ValueError: unknown estimator, bad shapes or labels, non-finite parameters,
            ``num_samples`` too small for the estimator (``loo`` and ``delta`` need 2).

    >>> X, y = load_data()
    >>> z = torch.zeros(31, dtype=X.dtype)
    >>> est = expected_loglik_gradient("mvd", z, z, X, y, 2, generator=torch.Generator().manual_seed(0))
    >>> est.evaluations
    248
    """
    _check_estimator(estimator)
    mu, log_sigma = _check_params(mu, log_sigma)
    _check_data(X, y, mu.numel(), mu)
    num_samples = check_int("num_samples", num_samples, minimum=1, maximum=MAX_SAMPLES)
    check_torch_generator(generator)
    if batch is None:
        Xb, yb, scale = X, y, 1.0
    else:
        batch = _check_batch(batch, X.shape[0], X.device)
        Xb, yb = X[batch], y[batch]
        scale = X.shape[0] / Xb.shape[0]

    def f(w: Tensor) -> Tensor:
        return scale * log_likelihood(w, Xb, yb)

    return _estimate(estimator, f, mu.detach(), log_sigma.detach(), num_samples, generator)


def elbo_gradient(
    estimator: str,
    mu: Tensor,
    log_sigma: Tensor,
    X: Tensor,
    y: Tensor,
    num_samples: int,
    *,
    generator: torch.Generator,
    batch: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    r"""Stochastic gradient of the ELBO w.r.t. ``(mu, log_sigma)``.

    .. math::

        \hat\nabla\mathcal L = \widehat{\nabla_{\mu,\lambda}\,\mathbb{E}_q[f_B(w)]}
          - \nabla_{\mu,\lambda}\mathrm{KL}, \qquad
        \nabla_\mu\mathrm{KL} = \mu,\; \nabla_\lambda\mathrm{KL} = \sigma^2 - 1,

    the first term by :func:`expected_loglik_gradient` (same arguments), the second exact.

    Returns:
        ``(grad_mu, grad_log_sigma)``, detached.

    >>> X, y = load_data()
    >>> z = torch.zeros(31, dtype=X.dtype)
    >>> gm, gl = elbo_gradient("pathwise", z, z, X, y, 10, generator=torch.Generator().manual_seed(0))
    >>> gm.shape, gl.shape
    (torch.Size([31]), torch.Size([31]))
    """
    est = expected_loglik_gradient(
        estimator, mu, log_sigma, X, y, num_samples, generator=generator, batch=batch
    )
    g_mu, g_ls = est.grad
    return g_mu - mu.detach(), g_ls - ((2.0 * log_sigma.detach()).exp() - 1.0)


def gradient_variance(
    estimator: str,
    mu: Tensor,
    log_sigma: Tensor,
    X: Tensor,
    y: Tensor,
    num_samples: int,
    repeats: int,
    *,
    generator: torch.Generator,
) -> tuple[Tensor, Tensor]:
    r"""Per-coordinate variance of the ``num_samples``-sample gradient estimate at a fixed q.

    The full-data expected log-likelihood (no minibatch noise) is estimated ``repeats`` times
    independently; the result is the sample variance over repeats, per coordinate of
    :math:`\mu` and :math:`\lambda` (the KL gradient is exact and adds nothing). This measures
    the estimator as used (baselines and control-variate coefficients estimated from the same
    ``num_samples`` samples), not just one per-sample term.

    Returns:
        ``(var_mu, var_log_sigma)``, each ``[D]``.

    >>> X, y = load_data()
    >>> z = torch.zeros(31, dtype=X.dtype)
    >>> v_mu, v_ls = gradient_variance("loo", z, z, X, y, 5, 4, generator=torch.Generator().manual_seed(0))
    >>> bool((v_mu > 0).all())
    True
    """
    repeats = check_int("repeats", repeats, minimum=2)
    draws = [
        torch.cat(elbo_gradient(estimator, mu, log_sigma, X, y, num_samples, generator=generator))
        for _ in range(repeats)
    ]
    var = torch.stack(draws).var(0)
    d = mu.numel()
    return var[:d], var[d:]
