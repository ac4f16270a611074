r"""The model: Bayesian logistic regression on the breast-cancer data, a mean-field Gaussian q.

Labels :math:`y_n \in \{-1, +1\}`, prior :math:`w \sim \mathcal N(0, I_D)`, likelihood
:math:`p(y_n \mid x_n, w) = \sigma(y_n x_n^\top w)`; the variational family is
:math:`q(w) = \mathcal N(\mu, \operatorname{diag} e^{2\lambda})` (:math:`\lambda` = ``log_sigma``).

>>> float(kl_to_prior(torch.zeros(3), torch.zeros(3)))
0.0
"""

from __future__ import annotations

import math  # noqa: F401  (the doctests use it)
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = ["DTYPE", "kl_to_prior", "load_data", "log_likelihood", "variational"]

DTYPE = torch.float64
#: The most samples of q drawn in one call (``[num_samples, D]`` weights).
MAX_SAMPLES = 2**24


#: The largest ``|log_sigma|`` taken: beyond it ``sigma^2`` overflows float32 (and a run
#: whose parameters leave this range has diverged).
MAX_LOG_SIGMA = 40.0


def _check_real(
    name: str, t: Any, like: tuple[str, Tensor] | None = None, *, integer: bool = False
) -> Tensor:
    """``t`` if it is a floating-point tensor (integers too with ``integer``) on the device and
    of the dtype of ``like = (its name, tensor)``; ``TypeError``/``ValueError`` naming ``name``
    otherwise."""
    if not isinstance(t, Tensor):
        raise TypeError(
            f"{name} must be a torch.Tensor (mu, log_sigma, X and y are tensors), got "
            f"{type(t).__name__}"
        )
    real = t.is_floating_point() or (integer and not t.is_complex() and t.dtype != torch.bool)
    if not real:
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {t.dtype}")
    if like is not None:
        other, ref = like
        if t.device != ref.device:
            raise ValueError(
                f"{name} must be on the device of {other} ({ref.device}), got {t.device}"
            )
        if t.is_floating_point() and t.dtype != ref.dtype:
            raise TypeError(f"{name} must have the dtype of {other} ({ref.dtype}), got {t.dtype}")
    return t


def _check_params(mu: Tensor, log_sigma: Tensor) -> tuple[Tensor, Tensor]:
    mu = _check_real("mu", mu)
    log_sigma = _check_real("log_sigma", log_sigma, ("mu", mu))
    if mu.dim() != 1 or mu.shape != log_sigma.shape:
        raise ValueError(
            f"mu and log_sigma must be 1-D of equal length, got {tuple(mu.shape)} and "
            f"{tuple(log_sigma.shape)}"
        )
    if not torch.isfinite(mu).all():
        raise ValueError("mu must be finite")
    if not (log_sigma.abs() <= MAX_LOG_SIGMA).all():
        raise ValueError(f"log_sigma must be finite, in [-{MAX_LOG_SIGMA}, {MAX_LOG_SIGMA}]")
    return mu, log_sigma


def _check_data(X: Tensor, y: Tensor, dim: int | None = None, mu: Tensor | None = None) -> None:
    X = _check_real("X", X, None if mu is None else ("mu", mu))
    y = _check_real("y", y, ("X", X), integer=True)
    if not torch.isfinite(X).all():
        raise ValueError("X must be finite")
    if X.dim() != 2 or y.shape != (X.shape[0],):
        raise ValueError(f"X must be [N, D] and y [N], got {tuple(X.shape)} and {tuple(y.shape)}")
    if dim is not None and X.shape[1] != dim:
        raise ValueError(f"X has {X.shape[1]} columns, the parameters have {dim}")
    if not bool(((y == 1) | (y == -1)).all()):
        raise ValueError("y must hold labels -1 and +1")


def load_data(dtype: torch.dtype = DTYPE) -> tuple[Tensor, Tensor]:
    """The breast-cancer data of scikit-learn, standardised, with a bias column; labels +-1.

    Features are standardised by :class:`sklearn.preprocessing.StandardScaler` (population
    standard deviation) and a column of ones is appended, so ``X`` is ``[569, 31]``; ``y`` is
    ``+1`` for scikit-learn's target 1 (benign) and ``-1`` otherwise.

    Returns:
        ``(X, y)`` as tensors of ``dtype``.

    >>> X, y = load_data()
    >>> bool(X[:, :30].mean(0).abs().max() < 1e-12)
    True
    """
    from sklearn.datasets import load_breast_cancer
    from sklearn.preprocessing import StandardScaler

    data = load_breast_cancer()
    Xs = StandardScaler().fit_transform(data.data)
    X = np.hstack([Xs, np.ones((Xs.shape[0], 1))])
    y = 2.0 * data.target - 1.0
    return torch.as_tensor(X, dtype=dtype), torch.as_tensor(y, dtype=dtype)


def log_likelihood(w: Tensor, X: Tensor, y: Tensor) -> Tensor:
    r"""Log-likelihood :math:`\sum_n \log\sigma(y_n x_n^\top w)` for a batch of weights.

    Args:
        w: ``[S, D]`` weights (or ``[D]``).
        X: ``[N, D]`` features; y: ``[N]`` labels in {-1, +1}.

    Returns:
        ``[S]`` (or a scalar for ``w`` of shape ``[D]``); differentiable in ``w``.

    >>> X, y = load_data()
    >>> abs(float(log_likelihood(torch.zeros(31, dtype=X.dtype), X, y)) - 569 * math.log(0.5)) < 1e-9
    True
    """
    return torch.nn.functional.logsigmoid((w @ X.T) * y).sum(-1)


def variational(mu: Tensor, log_sigma: Tensor) -> torch.distributions.Distribution:
    r"""The mean-field Gaussian :math:`q = \mathcal N(\mu, \operatorname{diag} e^{2\lambda})`."""
    return torch.distributions.Independent(torch.distributions.Normal(mu, log_sigma.exp()), 1)


def kl_to_prior(mu: Tensor, log_sigma: Tensor) -> Tensor:
    r""":math:`\mathrm{KL}(q\,\|\,\mathcal N(0, I)) = \tfrac12\sum_d(\sigma_d^2 + \mu_d^2 - 1 - 2\lambda_d)`.

    >>> float(kl_to_prior(torch.zeros(3), torch.zeros(3)))
    0.0
    """
    mu, log_sigma = _check_params(mu, log_sigma)
    return 0.5 * ((2.0 * log_sigma).exp() + mu**2 - 1.0 - 2.0 * log_sigma).sum()
