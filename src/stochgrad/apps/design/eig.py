r"""EIG estimators (nested Monte Carlo, prior contrastive estimation) and their design gradients.

Draw :math:`\theta_{n,0}\sim p(\theta)`, :math:`y_n \sim p(y\mid\theta_{n,0},d)` and, per outer
sample, :math:`L` fresh contrastive :math:`\theta_{n,1..L}\sim p(\theta)`. With
:math:`\ell_{n,l} = \log p(y_n\mid\theta_{n,l},d)`,

.. math::

    g^{\mathrm{NMC}}_n = \ell_{n,0} - \log\tfrac1L\textstyle\sum_{l=1}^{L} e^{\ell_{n,l}},
    \qquad
    g^{\mathrm{PCE}}_n = \ell_{n,0} - \log\tfrac1{L+1}\textstyle\sum_{l=0}^{L} e^{\ell_{n,l}}.

Nested Monte Carlo (Rainforth et al. 2018) is consistent and biased upwards (:math:`O(1/L)`); it is
also the upper bound of Foster et al. (2020) with the prior as proposal, which is why
``pce_eig(..., bound="upper")`` and :func:`nmc_eig` are one estimator. Prior contrastive
estimation (PCE, Foster et al. 2020) includes :math:`\theta_{n,0}` in its own contrast and is a
lower bound, :math:`\mathbb E[g^{\mathrm{PCE}}] \le \mathrm{EIG} \le \mathbb E[g^{\mathrm{NMC}}]`,
never above :math:`\log(L+1)`. The :math:`g_n` are independent, so the standard error is their
sample standard deviation over :math:`\sqrt N`.

Design gradients (:func:`eig_gradient`) of the bound :math:`B(d) = \mathbb E[g(y,\theta,d)]`:

* score function, valid for any likelihood (discrete :math:`y` included): :math:`y` is sampled
  from :math:`p(y\mid\theta,d)`, which depends on :math:`d`, so

  .. math::

      \nabla_d B = \mathbb E\big[(g - b)\,\nabla_d \log p(y\mid\theta_0,d)\big]
                 + \mathbb E\big[\nabla_d g\big],

  with the leave-one-out baseline :math:`b_n = \frac1{N-1}\sum_{m\ne n} g_m` (it keeps the
  estimate unbiased because :math:`\mathbb E[\nabla_d\log p(y\mid\theta_0,d)] = 0`);
* pathwise, when :math:`y = \mu(\theta,d) + \sigma\varepsilon` reparameterises:
  :math:`\nabla_d B = \mathbb E[\nabla_d\, g(\mu(\theta_0,d) + \sigma\varepsilon, \theta, d)]`.

The score-function part is the engine's: :func:`stochgrad.surrogate_loss` of the
:math:`\log p(y_n\mid\theta_{n,0},d)` with the values :math:`g_n` and the advantage rule
``"loo"`` of :mod:`stochgrad.baselines`; its loss plus :math:`\frac1N\sum_n g_n` (the pathwise
part, autograd through :math:`g`, and through the reparameterised :math:`y` for
``method="pathwise"``) is differentiated. The bound draws its own samples (per outer sample
:math:`\theta_{n,0}`, then :math:`y_n` or :math:`\varepsilon_n`, then
:math:`\theta_{n,1..L}`, from one generator) and its integrand depends on :math:`d` directly
(the contrastive likelihoods), which is why it uses the surrogate layer rather than
:func:`stochgrad.score_function` / :func:`stochgrad.pathwise` (those differentiate
:math:`\mathbb E_{p(x;\theta)}[f(x)]` for an :math:`f` free of the parameters, sampling
:math:`x` themselves). Per-sample terms come from one backward pass through a design copied per
outer sample (row :math:`n` of the copy touches term :math:`n` only), and the gradient is a
:class:`~stochgrad.gradient_estimate.GradientEstimate` (:attr:`EIGEstimate.gradient`).

References:
    Rainforth, Cornish, Yang, Warrington & Wood (ICML 2018), "On nesting Monte Carlo estimators";
    Foster, Jankowiak, O'Meara, Teh & Rainforth (AISTATS 2020), "A unified stochastic gradient
    approach to designing Bayesian-optimal experiments".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from stochgrad._checks import check_choice, check_int, check_torch_generator
from stochgrad.apps.design.models import DesignModel
from stochgrad.gradient_estimate import GradientEstimate
from stochgrad.surrogate import surrogate_loss

__all__ = ["BOUNDS", "GRADIENT_METHODS", "EIGEstimate", "eig_gradient", "nmc_eig", "pce_eig"]

#: ``"lower"``: prior contrastive estimation (PCE); ``"upper"``: nested Monte Carlo (NMC).
BOUNDS = ("lower", "upper")
#: Estimators of the design gradient of a bound.
GRADIENT_METHODS = ("score", "pathwise")


@dataclass(frozen=True)
class EIGEstimate:
    """An EIG estimate: mean of independent per-outer-sample terms, with its standard error, and
    (when asked for) the design gradient of the bound from the same samples.

    Attributes:
        value: the estimate (nats).
        stderr: standard error of ``value`` (sample sd of ``per_sample`` over sqrt(N)).
        per_sample: ``[N]`` terms :math:`g_n`.
        method: ``"nmc"``, ``"pce"`` (lower bound) or ``"pce_upper"``.
        num_outer: N.
        num_inner: L, contrastive (inner) prior samples per outer sample.
        gradient: the bound's design gradient as a
            :class:`~stochgrad.gradient_estimate.GradientEstimate` (``pce_eig(...,
            gradient="score" or "pathwise")``, :func:`eig_gradient`), else ``None``.
    """

    value: float
    stderr: float
    per_sample: Tensor
    method: str
    num_outer: int
    num_inner: int
    gradient: GradientEstimate | None = None


def _contrast(lp0: Tensor, lpc: Tensor, bound: str) -> Tensor:
    """``g_n`` from ``lp0 [N]`` and the contrastive log-likelihoods ``lpc [N, L]``."""
    if bound == "lower":
        all_lp = torch.cat([lp0.unsqueeze(1), lpc], dim=1)
        return lp0 - (torch.logsumexp(all_lp, 1) - math.log(all_lp.shape[1]))
    return lp0 - (torch.logsumexp(lpc, 1) - math.log(lpc.shape[1]))


def _terms(
    model: DesignModel,
    design: Tensor,
    num_outer: int,
    num_inner: int,
    bound: str,
    generator: torch.Generator,
    *,
    pathwise: bool = False,
) -> tuple[Tensor, Tensor]:
    """``(g [N], log p(y_n | theta_n0, d_n) [N])`` for a per-sample design ``[N, *shape]``.

    ``y`` is sampled without gradient (score function), or reparameterised through ``design``
    (``pathwise=True``). Row ``n`` of ``design`` only touches term ``n``.
    """
    theta0 = model.sample_prior((num_outer,), generator)
    if pathwise:
        mu = model.mean(theta0, design)
        eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype)
        y = mu + model.noise_sd * eps
    else:
        y = model.sample(theta0, design.detach(), generator)
    theta_c = model.sample_prior((num_outer, num_inner), generator)
    lp0 = model.log_likelihood(y, theta0, design)
    lpc = model.log_likelihood(y.unsqueeze(1), theta_c, design.unsqueeze(1))
    return _contrast(lp0, lpc, bound), lp0


#: The most likelihood values one estimate computes (``num_outer * (num_inner + 1)`` times the
#: design's size, float64).
MAX_EVALUATIONS = 2**28


def _check_sizes(num_outer: int, num_inner: int) -> tuple[int, int]:
    return (
        check_int("num_outer", num_outer, minimum=2),
        check_int("num_inner", num_inner, minimum=1),
    )


def _check_gradient(model: DesignModel, gradient: str | None, name: str) -> str | None:
    """The design-gradient method (``None``: no gradient); ``ValueError`` naming ``name``."""
    if gradient is None:
        return None
    gradient = check_choice(name, gradient, GRADIENT_METHODS)
    if gradient == "pathwise" and not getattr(model, "reparameterizable", False):
        raise ValueError(
            f"{name}='pathwise' needs outcomes y = mu(theta, d) + sigma * eps; "
            f"{type(model).__name__} has discrete outcomes: use {name}='score'"
        )
    return gradient


def _design_gradient(
    g: Tensor, lp0: Tensor, copies: Tensor, method: str, bound: str, evaluations: int
) -> GradientEstimate:
    r"""The bound's design gradient from the terms ``g`` and ``lp0`` computed at ``copies``.

    ``method="score"``: :func:`stochgrad.surrogate_loss` of ``lp0`` with the values ``g`` and
    the leave-one-out advantage (its loss is the mean of :math:`(g_n - b_n)\log p(y_n \mid
    \theta_{n,0}, d)`), plus :math:`\frac1N \sum_n g_n` for the direct dependence of :math:`g`
    on :math:`d`; ``"pathwise"``: :math:`\frac1N\sum_n g_n` alone (``y`` reparameterised). Row
    :math:`n` of ``copies`` only touches term :math:`n`, so the gradient of :math:`N` times the
    objective with respect to ``copies`` holds the per-sample terms.
    """
    num_outer = g.shape[0]
    objective = g.mean()
    if method == "score":
        objective = objective + surrogate_loss(lp0, g.detach(), advantage="loo").loss
    (per_sample,) = torch.autograd.grad(objective * num_outer, copies)
    var, mean = torch.var_mean(g.detach())
    return GradientEstimate.from_per_sample(
        per_sample,
        method=f"eig_{method}",
        biased=True,
        evaluations=evaluations,
        info={
            "eig": float(mean),
            "eig_stderr": float((var / num_outer).sqrt()),
            "bound": bound,
        },
    )


def _estimate(
    model: DesignModel,
    design: Tensor,
    num_outer: int,
    num_inner: int,
    bound: str,
    generator: torch.Generator,
    gradient: str | None,
    gradient_name: str,
) -> EIGEstimate:
    """The bound's terms at ``design`` and, with ``gradient``, its design gradient."""
    if not callable(getattr(model, "check_design", None)) or not hasattr(model, "log_likelihood"):
        raise TypeError(
            f"model must be a design model (LinearGaussianModel, LogisticDoseResponse or one "
            f"with check_design, sample_prior and log_likelihood), got {type(model).__name__}"
        )
    design = model.check_design(design)
    num_outer, num_inner = _check_sizes(num_outer, num_inner)
    if num_outer * (num_inner + 1) * design.numel() > MAX_EVALUATIONS:
        raise ValueError(
            f"num_outer * (num_inner + 1) = {num_outer} * {num_inner + 1} likelihood terms of a "
            f"design of {design.numel()} numbers exceed the limit of {MAX_EVALUATIONS}; use "
            "fewer samples"
        )
    bound = check_choice("bound", bound, BOUNDS)
    generator = check_torch_generator(generator)
    gradient = _check_gradient(model, gradient, gradient_name)
    grad_est = None
    if gradient is None:
        with torch.no_grad():
            expanded = design.expand(num_outer, *design.shape)
            g, _ = _terms(model, expanded, num_outer, num_inner, bound, generator)
        if not bool(torch.isfinite(g).all()):
            raise ValueError("the EIG terms are not finite; check the model's log-likelihood")
    else:
        # One copy of the design per outer sample: the gradient of sum_n(.) w.r.t. row n is
        # the per-sample gradient of term n.
        copies = design.detach().expand(num_outer, *design.shape).clone().requires_grad_(True)
        with torch.enable_grad():
            g, lp0 = _terms(
                model,
                copies,
                num_outer,
                num_inner,
                bound,
                generator,
                pathwise=gradient == "pathwise",
            )
            if not bool(torch.isfinite(g).all()):
                raise ValueError("the EIG terms are not finite; check the model's log-likelihood")
            grad_est = _design_gradient(
                g, lp0, copies, gradient, bound, num_outer * (num_inner + 1)
            )
        g = g.detach()
    var, mean = torch.var_mean(g)
    return EIGEstimate(
        value=float(mean),
        stderr=float((var / num_outer).sqrt()),
        per_sample=g,
        method="pce" if bound == "lower" else "pce_upper",
        num_outer=num_outer,
        num_inner=num_inner,
        gradient=grad_est,
    )


def pce_eig(
    model: DesignModel,
    design: Tensor,
    *,
    num_outer: int,
    num_inner: int,
    bound: str = "lower",
    generator: torch.Generator,
    gradient: str | None = None,
) -> EIGEstimate:
    r"""Prior contrastive estimation of the EIG: the lower bound, or the upper (NMC) bound.

    .. math::

        \hat B_{\mathrm{lower}} = \frac1N\sum_n \Big[\ell_{n,0} -
            \log\frac{1}{L+1}\sum_{l=0}^{L} p(y_n\mid\theta_{n,l},d)\Big]
        \le \mathrm{EIG}(d) \quad\text{(in expectation; and} \le \log(L+1)\text{)}

    ``bound="upper"`` drops :math:`l = 0` from the contrast: the nested Monte Carlo estimator.

    Args:
        model: a :class:`~stochgrad.apps.design.LinearGaussianModel`,
            :class:`~stochgrad.apps.design.LogisticDoseResponse` or any object with
            ``check_design``, ``sample_prior``, ``sample`` and ``log_likelihood``.
        design: the design (see the model).
        num_outer: N >= 2 outer samples :math:`(\theta_{n,0}, y_n)`.
        num_inner: L >= 1 contrastive prior samples per outer sample.
        bound: ``"lower"`` (PCE) or ``"upper"`` (NMC).
        generator: all randomness is drawn from it.
        gradient: ``None``, or ``"score"`` / ``"pathwise"`` to also estimate the bound's design
            gradient from the same samples (:attr:`EIGEstimate.gradient`; see
            :func:`eig_gradient`).

    Returns:
        An :class:`EIGEstimate`.

    Raises:
        ValueError: bad sizes, bound, gradient or design; TypeError: no generator.

    Reference: Foster et al. (AISTATS 2020), eq. (9) and (10).

    >>> from stochgrad.apps.design import LinearGaussianModel
    >>> m = LinearGaussianModel(torch.eye(2, dtype=torch.float64))
    >>> est = pce_eig(m, torch.tensor([1.0, 0.0]), num_outer=500, num_inner=200,
    ...               generator=torch.Generator().manual_seed(0))
    >>> abs(est.value - math.log(2) / 2) < 4 * est.stderr
    True
    >>> est = pce_eig(m, torch.tensor([1.0, 0.0]), num_outer=64, num_inner=32,
    ...               generator=torch.Generator().manual_seed(0), gradient="score")
    >>> est.gradient.grad.shape
    torch.Size([1, 2])
    """
    return _estimate(model, design, num_outer, num_inner, bound, generator, gradient, "gradient")


def nmc_eig(
    model: DesignModel,
    design: Tensor,
    *,
    num_outer: int,
    num_inner: int,
    generator: torch.Generator,
    gradient: str | None = None,
) -> EIGEstimate:
    r"""Nested Monte Carlo EIG estimate (Rainforth et al. 2018), fresh inner samples per outer.

    .. math::

        \hat\mu_{\mathrm{NMC}} = \frac1N\sum_{n=1}^N\Big[\log p(y_n\mid\theta_n,d)
            - \log\frac1M\sum_{m=1}^M p(y_n\mid\theta_{n,m},d)\Big],

    biased upwards by :math:`O(1/M)`; the same estimator as ``pce_eig(..., bound="upper")``.

    Args:
        model: see :func:`pce_eig`.
        design: the design.
        num_outer: N >= 2.
        num_inner: M >= 1.
        generator: all randomness is drawn from it.
        gradient: ``None``, ``"score"`` or ``"pathwise"`` (see :func:`pce_eig`).

    Returns:
        An :class:`EIGEstimate` with ``method="nmc"``.

    Reference: Rainforth et al. (ICML 2018), section 5.

    >>> from stochgrad.apps.design import LinearGaussianModel
    >>> m = LinearGaussianModel(torch.eye(2, dtype=torch.float64))
    >>> est = nmc_eig(m, torch.tensor([1.0, 0.0]), num_outer=500, num_inner=200,
    ...               generator=torch.Generator().manual_seed(0))
    >>> est.method, abs(est.value - math.log(2) / 2) < 4 * est.stderr
    ('nmc', True)
    """
    est = _estimate(model, design, num_outer, num_inner, "upper", generator, gradient, "gradient")
    return replace(est, method="nmc")


def eig_gradient(
    model: DesignModel,
    design: Tensor,
    *,
    num_outer: int,
    num_inner: int,
    method: str = "score",
    bound: str = "lower",
    generator: torch.Generator,
) -> GradientEstimate:
    r"""Design gradient of the PCE (``bound="lower"``) or NMC (``"upper"``) objective.

    ``method="score"``: per-sample terms
    :math:`(g_n - b_n)\,\nabla_d \log p(y_n\mid\theta_{n,0},d) + \nabla_d g_n` with the
    leave-one-out baseline :math:`b_n`: the gradient of :func:`stochgrad.surrogate_loss`
    (``advantage="loo"``) plus the direct part; valid for discrete outcomes.
    ``method="pathwise"``: :math:`\nabla_d g(\mu(\theta_{n,0},d) + \sigma\varepsilon_n,
    \theta_n, d)`; needs a reparameterisable model
    (:class:`~stochgrad.apps.design.LinearGaussianModel`). Both are unbiased for the gradient
    of the bound, which tends to :math:`\nabla_d\mathrm{EIG}` as :math:`L\to\infty`. It is
    ``pce_eig(..., gradient=method).gradient``.

    Args:
        model: the model.
        design: the design at which to differentiate.
        num_outer: N >= 2.
        num_inner: L >= 1.
        method: ``"score"`` or ``"pathwise"``.
        bound: ``"lower"`` or ``"upper"``.
        generator: all randomness is drawn from it.

    Returns:
        A :class:`~stochgrad.GradientEstimate` shaped like the checked design (``[n, p]`` for a
        linear model); ``info["eig"]`` and ``info["eig_stderr"]`` hold the bound's estimate from
        the same samples.

    Raises:
        ValueError: unknown method, ``pathwise`` on a model without reparameterisation, bad sizes.

    Reference: Foster et al. (AISTATS 2020), section 3.2 (score function and reparameterisation
    gradients of the bounds).

    >>> from stochgrad.apps.design import LinearGaussianModel
    >>> m = LinearGaussianModel(torch.eye(2, dtype=torch.float64))
    >>> est = eig_gradient(m, torch.tensor([1.0, 0.0]), num_outer=64, num_inner=32,
    ...                    method="pathwise", generator=torch.Generator().manual_seed(0))
    >>> est.grad.shape
    torch.Size([1, 2])
    """
    if method is None:
        raise ValueError(f"method must be one of {GRADIENT_METHODS}, got None")
    est = _estimate(model, design, num_outer, num_inner, bound, generator, method, "method")
    return est.gradient
