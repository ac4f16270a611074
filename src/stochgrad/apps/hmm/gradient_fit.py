r"""Fitting by L-BFGS on the log-likelihood with the exact Fisher-identity gradient.

Reference: Byrd, Lu, Nocedal & Zhu (1995), SIAM J. Sci. Comput. 16 (L-BFGS-B).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from stochgrad._checks import check_float, check_int
from stochgrad.apps.hmm.emissions import _as_batch
from stochgrad.apps.hmm.fit_result import FitResult
from stochgrad.apps.hmm.inference import forward_backward, log_likelihood
from stochgrad.apps.hmm.model import HMM
from stochgrad.apps.hmm.score import fisher_gradient

__all__ = ["fit_gradient"]


def _flatten(params: Sequence[Tensor]) -> np.ndarray:
    return torch.cat([p.detach().reshape(-1) for p in params]).double().numpy()


def _unflatten(x: np.ndarray, like: Sequence[Tensor]) -> tuple[Tensor, ...]:
    out, i = [], 0
    for p in like:
        n = p.numel()
        out.append(torch.as_tensor(x[i : i + n], dtype=p.dtype).reshape(p.shape))
        i += n
    return tuple(out)


def fit_gradient(
    hmm: HMM,
    y: Any,
    *,
    max_iter: int = 1000,
    tol: float = 1e-11,
    min_sd: float = 1e-3,
) -> FitResult:
    r"""Fit by L-BFGS (scipy's L-BFGS-B) on the log-likelihood with the exact Fisher gradient.

    Objective :math:`-\sum_b \log p(y_b)`, gradient :math:`-`:func:`fisher_gradient`, both from
    one forward-backward pass. Log-sds are bounded below by ``log(min_sd)`` (a Gaussian state
    collapsing on one point would make the likelihood unbounded). ``tol`` is L-BFGS-B's
    relative function tolerance ``ftol``. Logits keep a free additive constant per row; that
    flat direction does not affect the fit.

    Reference: Byrd, Lu, Nocedal & Zhu (1995), SIAM J. Sci. Comput. 16 (L-BFGS-B).

    >>> y = [0.0, 1.0, 0.0, 8.0, 9.0, 11.0, 1.0, 0.0]
    >>> init = HMM.from_probabilities([0.5, 0.5], [[0.9, 0.1], [0.1, 0.9]], rates=[2.0, 5.0])
    >>> res = fit_gradient(init, y, max_iter=50)
    >>> res.log_likelihood > float(log_likelihood(init, y)[0])
    True
    """
    from scipy.optimize import minimize

    max_iter = check_int("max_iter", max_iter, minimum=1)
    min_sd = check_float("min_sd", min_sd, minimum=0.0, open_min=True)
    yb = _as_batch(hmm, y)
    like = hmm.params()
    # -inf logits (probability 0) cannot be optimised: start them at a large negative value
    like = tuple(torch.where(p == -math.inf, torch.full_like(p, -30.0), p) for p in like)
    history: list[float] = []

    @torch.no_grad()
    def objective(x: np.ndarray) -> tuple[float, np.ndarray]:
        model = hmm.with_params(_unflatten(x, like))
        post = forward_backward(model, yb)
        ll = float(post.log_likelihood.sum())
        history.append(ll)
        return -ll, -_flatten(fisher_gradient(model, yb, post))

    bounds = []
    for name, p in zip(hmm.param_names, like, strict=True):
        low = math.log(min_sd) if name == "log_sds" else None
        bounds += [(low, None)] * p.numel()
    res = minimize(
        objective,
        _flatten(like),
        jac=True,
        method="L-BFGS-B",
        bounds=bounds,
        options={"maxiter": max_iter, "ftol": tol, "gtol": 1e-7, "maxls": 50},
    )
    fitted = hmm.with_params(_unflatten(res.x, like))
    ll = float(log_likelihood(fitted, yb).sum())
    return FitResult(fitted, ll, int(res.nit), bool(res.success), "gradient", history)
