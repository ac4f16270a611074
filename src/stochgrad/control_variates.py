r"""Control variates for the score-function estimator.

A control variate is a per-sample term :math:`h(x_i)` with known expectation :math:`\bar h`; the
estimator :math:`g_i - \beta \odot (h(x_i) - \bar h)` keeps the mean and, for a well-chosen
:math:`\beta`, lowers the variance. The coefficient is estimated per coordinate by regression,
leave-one-out (:math:`\beta_{-i} = \sum_{j \ne i} g_j \tilde h_j / \sum_{j\ne i} \tilde h_j^2` with
:math:`\tilde h = h - \bar h`), so that it is independent of the sample it multiplies and the
estimator stays unbiased.

:class:`DeltaMethod` is the second-order Taylor (delta-method) control variate of Mohamed et al.
(2020, JMLR, Sec. 7.2; Paisley, Blei, Jordan 2012): with
:math:`\tilde f(x) = f(\mu) + \nabla f(\mu)^\top (x-\mu) + \tfrac12 (x-\mu)^\top H (x-\mu)`,
:math:`h(x) = \tilde f(x)\,\nabla_\theta \log p(x;\theta)` and, under a Gaussian
:math:`\mathcal N(\mu, \Sigma)`, :math:`\bar h = \nabla_\theta \mathbb{E}[\tilde f]
= \nabla_\theta\big(\nabla f(\mu_0)^\top(\mu - \mu_0) + \tfrac12 (\mu-\mu_0)^\top H (\mu-\mu_0)
+ \tfrac12 \operatorname{tr}(H\Sigma)\big)` evaluated at :math:`\mu_0 = \mu`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor
from torch.distributions import Distribution, MultivariateNormal, Normal

from stochgrad import _dists


class ControlVariate:
    """Base class: ``__call__`` returns ``(h, h_mean)``: per-sample values ``[n, P]`` and ``[P]``.

    Args (of ``__call__``):
        f: the objective; dist_fn, leaves, d: the distribution and its parameters; x: the
        samples; scores: ``[n, P]`` flattened per-sample scores.
    """

    name = "control_variate"
    #: evaluations of ``f`` per call beyond those at the samples (counted as work)
    extra_evaluations = 0

    def __call__(self, f, dist_fn, leaves, d, x, scores) -> tuple[Tensor, Tensor]:
        raise NotImplementedError


def _gaussian_moments(d: Distribution) -> tuple[Tensor, Tensor, bool]:
    """Mean ``[D]`` and covariance (``[D]`` diagonal, or ``[D, D]``) with their graphs."""
    base = _dists.unwrap(d)
    if type(base) is Normal:
        return (
            base.loc.expand(base.batch_shape).reshape(-1),
            base.scale.expand(base.batch_shape).reshape(-1) ** 2,
            True,
        )
    if isinstance(d, MultivariateNormal) and d.batch_shape.numel() == 1:
        return d.loc.reshape(-1), d.covariance_matrix.reshape(d.loc.numel(), -1), False
    raise ValueError(
        "control_variate='delta' needs a Gaussian (Normal, Independent(Normal) or an unbatched "
        f"MultivariateNormal), got {type(d).__name__}"
    )


class DeltaMethod(ControlVariate):
    r"""Second-order Taylor control variate with analytic Gaussian expectation.

    Needs ``f`` differentiable twice by torch autograd (the gradient and Hessian at the mean
    are taken once per call: ``1 + D`` backward passes for ``D`` coordinates). The evaluation
    of ``f`` at the mean counts as one more in the estimate's ``evaluations``.

    When ``f`` is exactly quadratic the control variate is perfect: the estimate is then exact up
    to an :math:`O(1/n)` term from estimating :math:`\beta`, and the reported standard error
    (computed as if the per-sample terms were independent) is not a reliable measure of it.

    >>> import torch, stochgrad as sg
    >>> dist_fn = lambda th: torch.distributions.Normal(th[0], th[1])
    >>> est = sg.score_function(lambda x: torch.sin(x), dist_fn, torch.tensor([0.3, 0.5]),
    ...                         num_samples=1000, control_variate="delta", seed=0)
    >>> est.info["control_variate"]
    'delta'
    """

    name = "delta"
    extra_evaluations = 1  # f at the mean

    def __call__(self, f, dist_fn, leaves, d, x, scores):
        mu, cov, diagonal = _gaussian_moments(d)
        n = x.shape[0]
        shape = x.shape[1:]
        mu0 = mu.detach()

        def f_flat(z: Tensor) -> Tensor:
            return f(z.reshape(1, *shape)).reshape(())

        z = mu0.clone().requires_grad_(True)
        try:
            f0 = f_flat(z)
            (g0,) = torch.autograd.grad(f0, z, create_graph=True)
        except (RuntimeError, TypeError) as exc:
            raise ValueError(
                f"control_variate='delta' needs f differentiable by torch autograd ({exc})"
            ) from exc
        dim = mu0.numel()
        if g0.requires_grad:
            rows = [
                torch.autograd.grad(g0[k], z, retain_graph=True, allow_unused=True)[0]
                for k in range(dim)
            ]
            hess = torch.stack([r if r is not None else torch.zeros_like(mu0) for r in rows])
        else:  # f is affine in x
            hess = torch.zeros(dim, dim, dtype=mu0.dtype)
        f0, g0, hess = f0.detach(), g0.detach(), hess.detach()
        dx = x.reshape(n, -1).to(mu0.dtype) - mu0
        taylor = f0 + dx @ g0 + 0.5 * ((dx @ hess) * dx).sum(1)
        h = taylor.unsqueeze(1) * scores
        dmu = mu - mu0
        trace = (hess.diagonal() * cov).sum() if diagonal else (hess * cov).sum()
        expectation = dmu @ g0 + 0.5 * (dmu @ hess @ dmu) + 0.5 * trace
        grads = torch.autograd.grad(expectation, leaves, allow_unused=True, retain_graph=True)
        h_mean = torch.cat(
            [
                (g if g is not None else torch.zeros_like(leaf)).reshape(-1)
                for g, leaf in zip(grads, leaves, strict=True)
            ]
        )
        return h, h_mean


def loo_coefficient(per: Tensor, centred: Tensor) -> Tensor:
    r"""Leave-one-out regression coefficients ``[n, P]`` of ``per`` on ``centred`` (known mean 0)."""
    cross = per * centred
    sq = centred * centred
    num = cross.sum(0) - cross
    den = sq.sum(0) - sq
    safe = den > 0
    return torch.where(
        safe, num / torch.where(safe, den, torch.ones_like(den)), torch.zeros_like(den)
    )


_NAMED: dict[str, Callable[[], ControlVariate]] = {"delta": DeltaMethod}


def resolve_control_variate(spec) -> ControlVariate:
    if isinstance(spec, ControlVariate):
        return spec
    if isinstance(spec, str) and spec.lower() in _NAMED:
        return _NAMED[spec.lower()]()
    raise ValueError(
        f"control_variate: unknown option {spec!r}; expected one of {sorted(_NAMED)} or a "
        "ControlVariate object"
    )


def apply_control_variate(
    spec,
    f,
    dist_fn,
    leaves: Sequence[Tensor],
    d: Distribution,
    x: Tensor,
    scores: Tensor,
    per: Tensor,
    coefficient: float | str = "loo",
) -> tuple[Tensor, dict]:
    """Subtract ``beta * (h - h_mean)`` from the per-sample terms ``per`` ``[n, P]``.

    Returns the new terms and an info dict: the control variate's name and its extra
    evaluations of ``f`` (``"control_variate_evaluations"``).
    """
    cv = resolve_control_variate(spec)
    h, h_mean = cv(f, dist_fn, leaves, d, x, scores)
    info = {"control_variate": cv.name, "control_variate_evaluations": int(cv.extra_evaluations)}
    centred = h - h_mean
    if coefficient == "loo":
        if per.shape[0] < 2:
            raise ValueError("num_samples must be >= 2 to estimate the control-variate coefficient")
        beta = loo_coefficient(per, centred)
    else:
        beta = torch.as_tensor(float(coefficient), dtype=per.dtype)
    return per - beta * centred, info


__all__ = [
    "ControlVariate",
    "DeltaMethod",
    "apply_control_variate",
    "loo_coefficient",
    "resolve_control_variate",
]
