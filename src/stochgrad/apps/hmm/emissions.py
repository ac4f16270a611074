r"""Observations and emission log-probabilities: one model, or ``R`` models stacked.

Observations are a batch of equal-length sequences: ``[B, T]`` counts (Poisson) or
``[B, T, D]`` values (Gaussian, diagonal covariance).

>>> from stochgrad.apps.hmm.model import HMM
>>> hmm = HMM.from_probabilities([1.0], [[1.0]], rates=[2.0])
>>> round(float(emission_log_prob(hmm, [0.0])), 6) == -2.0
True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from stochgrad.apps.hmm.model import HMM

__all__ = ["emission_log_prob"]

_LOG_2PI = math.log(2.0 * math.pi)
#: The largest Poisson count accepted.
MAX_COUNT = 10**9


def as_observations(
    y: Any, dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu"
) -> Tensor:
    """``y`` as a detached tensor of real numbers, ``TypeError``/``ValueError`` naming ``y``
    otherwise (strings, complex or boolean values, a tensor on another device).

    >>> as_observations([1, 2])
    tensor([1., 2.], dtype=torch.float64)
    """
    if isinstance(y, Tensor):
        if y.is_complex() or y.dtype == torch.bool:
            raise TypeError(f"y must hold real numbers, got a tensor of dtype {y.dtype}")
        if y.device != torch.device(device):
            raise ValueError(f"y must be on the model's device ({device}), got {y.device}")
        y = y.detach()
    try:
        return torch.as_tensor(y, dtype=dtype, device=device)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise TypeError(f"y must be an array of numbers, got {type(y).__name__}") from exc


def _as_batch(hmm: HMM, y: Any) -> Tensor:
    """``[B, T]`` (Poisson) or ``[B, T, D]`` (Gaussian) in the model's dtype, validated."""
    if not isinstance(hmm, HMM):
        raise TypeError(f"hmm must be an HMM, got {type(hmm).__name__}")
    y = as_observations(y, hmm.start_logits.dtype, hmm.start_logits.device)
    if hmm.emission == "poisson":
        if y.ndim == 1:
            y = y[None]
        if y.ndim != 2 or y.shape[1] < 1:
            raise ValueError(
                f"y must be [T] or [B, T] counts for a Poisson HMM, got shape {tuple(y.shape)}"
            )
        if not torch.isfinite(y).all() or (y < 0).any() or (y != y.round()).any():
            raise ValueError("y must hold non-negative integer counts for a Poisson HMM")
        if (y > MAX_COUNT).any():
            raise ValueError(
                f"y must hold counts <= {MAX_COUNT:.0e}, got {float(y.max()):.3g} (beyond it the "
                "log-likelihood, of the order of y log y, loses the precision its posterior needs)"
            )
    else:
        D = hmm.dim
        if y.ndim == 1 and D == 1:
            y = y[None, :, None]
        elif y.ndim == 2:
            y = y[None]
        if y.ndim != 3 or y.shape[2] != D or y.shape[1] < 1:
            raise ValueError(
                f"y must be [T] (D = 1), [T, D] or [B, T, D] with D = {D} for this Gaussian HMM, "
                f"got shape {tuple(y.shape)}"
            )
        if not torch.isfinite(y).all():
            raise ValueError("y must be finite")
    return y


def emission_log_prob(hmm: HMM, y: Any) -> Tensor:
    r"""``[B, T, K]``: :math:`\log p(y_{bt} \mid z_{bt} = k)`.

    >>> hmm = HMM.from_probabilities([1.0], [[1.0]], rates=[2.0])
    >>> round(float(emission_log_prob(hmm, [0.0])), 6) == -2.0
    True
    """
    y = _as_batch(hmm, y)
    if hmm.emission == "poisson":
        return _stacked_emission(y, [hmm.log_rates[None]], torch.lgamma(y + 1.0)[..., None])[0]
    return _stacked_emission(y, [hmm.means[None], hmm.log_sds[None]], None)[0]


def _stacked_emission(yb: Tensor, emis: Sequence[Tensor], lgamma_y: Tensor | None) -> Tensor:
    """``[R, B, T, K]`` emission log-probabilities of ``R`` stacked models."""
    if lgamma_y is not None:  # Poisson: emis = (log_rates [R, K],)
        eta = emis[0][:, None, None, :]
        return yb[None, ..., None] * eta - eta.exp() - lgamma_y[None]
    means, log_sds = (e[:, None, None] for e in emis)  # [R, 1, 1, K, D]
    z = (yb[None, :, :, None, :] - means) / log_sds.exp()
    return (-0.5 * z.square() - log_sds - 0.5 * _LOG_2PI).sum(-1)
