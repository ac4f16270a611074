r"""Gradients of marginal likelihoods by Fisher's identity.

For a model with latent variables :math:`z`,

.. math::

    \nabla_\theta \log p(y;\theta) = \mathbb{E}_{p(z \mid y;\theta)}
    \big[\nabla_\theta \log p(y, z;\theta)\big],

the gradient of the marginal log-likelihood is the posterior expectation of the gradient of the
complete-data log-likelihood (Fisher 1925; Louis 1982). :func:`fisher_gradient` computes it in
the three ways applications need:

- **enumerated or integrated**: ``log_joint`` holds :math:`\log p(y, z_k;\theta)` at every
  configuration :math:`z_k` (or at quadrature nodes, with ``log_measure`` the log quadrature
  weights); the posterior is their normalised exponential and the gradient is exact;
- **factor marginals**: ``log_joint`` holds the factors :math:`\phi_f(z_f)` of a decomposable
  :math:`\log p(y, z) = \sum_f \phi_f(z_f)` at every configuration of each factor, and
  ``posterior`` their exact posterior marginals (forward-backward for an HMM, the conditional
  independence of an RBM's hidden units); exact;
- **sampled**: ``log_joint`` is ``[n]``, :math:`\log p(y, z_i;\theta)` at posterior draws
  :math:`z_i \sim p(z \mid y)` (FFBS for an HMM), or at draws from a proposal with importance
  ``weights`` (self-normalised); the result carries a standard error. The per-sample terms
  cost one backward pass per draw (batched), or one in all when each draw reads its own copy of
  the parameters (``copies=True``).

Each returns a :class:`~stochgrad.gradient_estimate.GradientEstimate` (exact ones with zero
variance), so the applications' gradients report the same diagnostics as the estimators'.

>>> import torch
>>> theta = torch.tensor(0.3, requires_grad=True)   # y | z ~ N(z, 1), z ~ N(theta, 1), y = 1
>>> z = torch.linspace(-8.0, 8.0, 4001)
>>> normal = torch.distributions.Normal
>>> log_joint = normal(theta, 1.0).log_prob(z) + normal(z, 1.0).log_prob(torch.tensor(1.0))
>>> est = fisher_gradient(log_joint, theta)         # exact: marginally y ~ N(theta, 2)
>>> round(float(est.grad), 4), (1.0 - 0.3) / 2
(0.35, 0.35)

References:
    Fisher (1925), "Theory of statistical estimation"; Louis (1982), "Finding the observed
    information matrix when using the EM algorithm"; Cappé, Moulines, Rydén (2005), "Inference in
    hidden Markov models", Sec. 10.1.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Sequence

import torch
from torch import Tensor

from stochgrad._checks import check_bool, check_int, check_tensor
from stochgrad.gradient_estimate import GradientEstimate, SingleSampleWarning, warn_single_sample
from stochgrad.surrogate import _as_params, surrogate_loss

__all__ = ["fisher_gradient"]


def fisher_gradient(
    log_joint: Tensor,
    params: Tensor | Sequence[Tensor],
    *,
    posterior: Tensor | None = None,
    log_measure: Tensor | None = None,
    samples: bool = False,
    weights: Tensor | None = None,
    copies: bool = False,
    dim: int = -1,
) -> GradientEstimate:
    r"""The gradient of a marginal log-likelihood, :math:`\mathbb{E}_{z\mid y}[\nabla_\theta \log p(y,z)]`.

    Args:
        log_joint: differentiable in ``params``. Enumerated: ``[..., K]``, the ``K``
            configurations (or quadrature nodes) along ``dim``, leading dimensions independent
            observations whose gradients add. With ``posterior``: any shape, the factor values.
            With ``samples=True``: ``[n]`` at the drawn latents.
        params: the parameters (a tensor, tensors or an ``nn.Module``).
        posterior: exact posterior marginals, shaped like ``log_joint`` (detached): the factor
            mode.
        log_measure: log quadrature weights of the nodes along ``dim`` (broadcastable to
            ``log_joint``), for a latent integrated on a grid.
        samples: ``log_joint`` is at posterior draws (or proposal draws with ``weights``).
        weights: ``[n]`` importance weights :math:`p(y, z_i)/q(z_i)` (up to a constant) of
            proposal draws; the estimate is self-normalised.
        copies: with ``samples=True``, every tensor of ``params`` is ``[n, ...]``, one copy of
            the parameter per draw (``p.detach().expand(n, *p.shape).clone()``), and draw
            :math:`i`'s log-joint reads only copy :math:`i`. Then one backward pass gives every
            per-sample term (:math:`n` times fewer than without), all of them are kept (no batch
            means), and ``grad`` is shaped like one copy: the gradient for the shared value.
        dim: the configuration axis of the enumerated mode.

    Returns:
        :class:`~stochgrad.gradient_estimate.GradientEstimate`: ``method="fisher_exact"`` (zero
        variance) or ``"fisher_sampled"`` (per-sample terms and a standard error; biased when
        self-normalised; from one draw ``variance`` and ``stderr`` are NaN, with a
        :class:`~stochgrad.SingleSampleWarning`).

    Raises:
        TypeError: ``log_joint``, ``posterior`` or ``log_measure`` not a floating-point
            tensor, ``params`` not tensors, a flag not a bool.
        ValueError: shapes that do not match, a posterior outside ``[0, 1]`` or not finite, a
            ``log_measure`` holding NaN or ``+inf``, a ``log_joint`` that does not depend on
            ``params``, tensors on another device than ``log_joint`` (or ``meta``),
            ``weights`` without ``samples``.
    """
    check_tensor("log_joint", log_joint, finite=False)
    samples = check_bool("samples", samples)
    copies = check_bool("copies", copies)
    if copies and not samples:
        raise ValueError("copies=True goes with samples=True (one parameter copy per draw)")
    leaves, is_tuple = _as_params(params)
    if not log_joint.requires_grad:
        raise ValueError(
            "log_joint must depend on params (computed from them, with autograd on), got a "
            "tensor without a gradient graph"
        )
    if samples:
        if posterior is not None or log_measure is not None:
            raise ValueError("samples=True takes log_joint at draws; drop posterior/log_measure")
        if log_joint.dim() != 1 or log_joint.shape[0] == 0:
            raise ValueError(
                f"log_joint must be [n] with samples=True (n >= 1 draws), got "
                f"{tuple(log_joint.shape)}"
            )
        if log_joint.shape[0] > 1:
            return _sampled(log_joint, params, leaves, is_tuple, weights, copies)
        warn_single_sample("fisher_gradient", 1)
        with warnings.catch_warnings():  # warned above, under this function's name
            warnings.simplefilter("ignore", SingleSampleWarning)
            return _sampled(log_joint, params, leaves, is_tuple, weights, copies)
    if weights is not None:
        raise ValueError("weights go with samples=True (importance draws of the latents)")
    if log_joint.dim() > 0:
        dim = check_int("dim", dim, minimum=-log_joint.dim(), maximum=log_joint.dim() - 1)
    mode = "enumerated" if posterior is None else "factors"
    if posterior is None:
        if log_joint.dim() == 0:
            raise ValueError("log_joint must hold the configurations along dim, got a scalar")
        logits = log_joint.detach()
        if log_measure is not None:
            logits = logits + _log_measure(log_measure, log_joint)
        if not bool(torch.isfinite(logits.logsumexp(dim)).all()):
            raise ValueError("log_joint: every configuration has probability 0 (or a NaN)")
        posterior = torch.softmax(logits, dim)
        top = 1.0
    else:
        check_tensor("posterior", posterior, device=log_joint.device, of="log_joint", finite=False)
        if posterior.shape != log_joint.shape:
            raise ValueError(
                f"posterior must be shaped like log_joint {tuple(log_joint.shape)}, got "
                f"{tuple(posterior.shape)}"
            )
        posterior = posterior.detach()
        # marginals computed by a forward-backward pass may pass 1 by a few roundings
        top = 1.0 + 64 * torch.finfo(posterior.dtype).eps
    # the checks in one synchronisation: a posterior outside [0, 1], NaN (fails >= 0) or
    # infinite (its sum), and a log-joint that is not finite somewhere
    joint_sum = log_joint.detach().sum()
    flags = torch.stack(
        (
            (posterior < 0).any()
            | (posterior > top).any()
            | (posterior != posterior).any()
            | ~posterior.sum().isfinite(),
            ~joint_sum.isfinite(),
        )
    ).tolist()
    if flags[0]:
        raise ValueError("posterior must hold finite probabilities in [0, 1]")
    # configurations of probability 0 contribute nothing, even where log_joint is -inf (the
    # mask only when needed: it doubles the backward pass of a training step's small graph)
    terms = log_joint
    if flags[1]:
        terms = torch.where(posterior > 0, log_joint, torch.zeros_like(log_joint))
    grads = torch.autograd.grad(
        (posterior * terms).sum(), leaves, allow_unused=True, retain_graph=True
    )
    grads = [torch.zeros_like(p) if g is None else g for g, p in zip(grads, leaves, strict=True)]
    zeros = [torch.zeros_like(g) for g in grads]
    pack = tuple if is_tuple else (lambda xs: xs[0])
    return GradientEstimate(
        grad=pack(grads),
        per_sample=pack([g.unsqueeze(0) for g in grads]),
        variance=pack(zeros),
        stderr=pack([z.clone() for z in zeros]),
        num_samples=1,
        method="fisher_exact",
        info={"mode": mode},
    )


def _sampled(
    log_joint: Tensor,
    params,
    leaves: list[Tensor],
    is_tuple: bool,
    weights: Tensor | None,
    copies: bool,
) -> GradientEstimate:
    """The sampled mode: the surrogate layer's estimate, or one backward pass with copies."""
    if copies:
        return _from_copies(log_joint, leaves, is_tuple, weights)
    ones = torch.ones_like(log_joint, requires_grad=False).detach()
    s = surrogate_loss(log_joint, ones, weights=weights, self_normalize=weights is not None)
    est = s.estimate(params)
    return dataclasses.replace(est, method="fisher_sampled", biased=weights is not None)


def _log_measure(log_measure: object, log_joint: Tensor) -> Tensor:
    """``log_measure`` checked: real log-weights broadcastable to ``log_joint`` (``-inf``, a
    weight of 0, allowed; NaN and ``+inf`` not), in its dtype."""
    check_tensor("log_measure", log_measure, device=log_joint.device, of="log_joint", finite=False)
    try:
        torch.broadcast_shapes(log_measure.shape, log_joint.shape)
    except RuntimeError as exc:
        raise ValueError(
            f"log_measure must broadcast to log_joint {tuple(log_joint.shape)}, got "
            f"{tuple(log_measure.shape)}"
        ) from exc
    if bool((log_measure.isnan() | (log_measure == float("inf"))).any()):
        raise ValueError("log_measure must hold log-weights < +inf without NaN (-inf: weight 0)")
    return log_measure.detach().to(log_joint.dtype)


def _from_copies(
    log_joint: Tensor, leaves: list[Tensor], is_tuple: bool, weights: Tensor | None
) -> GradientEstimate:
    r"""Sampled mode with one parameter copy per draw: the terms of one backward pass.

    Draw :math:`i`'s gradient lands in copy :math:`i` alone, so
    :math:`\nabla \sum_i \log p(y, z_i)` holds every per-sample score at once; each term is
    :math:`c_i \nabla \log p(y, z_i)` with :math:`c_i = 1`, or :math:`n \bar w_i` for
    self-normalised weights (the coefficients of :func:`~stochgrad.surrogate.surrogate_loss`).
    """
    n = log_joint.shape[0]
    for p in leaves:
        if p.dim() == 0 or p.shape[0] != n:
            raise ValueError(
                f"params: with copies=True every tensor is [n = {n}, ...], one copy per draw, "
                f"got {tuple(p.shape)}"
            )
    coef = torch.ones_like(log_joint).detach()
    if weights is not None:
        # the surrogate layer checks the weights (shape, finite, positive) and normalises them
        coef = surrogate_loss(
            log_joint.detach(), coef, weights=weights, self_normalize=True
        ).coefficients
    grads = torch.autograd.grad(log_joint.sum(), leaves, allow_unused=True, retain_graph=True)
    terms = []
    for g, p in zip(grads, leaves, strict=True):
        g = torch.zeros_like(p) if g is None else g
        terms.append(coef.to(g.dtype).reshape(n, *([1] * (g.dim() - 1))) * g)
    pack = tuple if is_tuple else (lambda xs: xs[0])
    return GradientEstimate.from_per_sample(
        pack(terms),
        method="fisher_sampled",
        biased=weights is not None,
        info={"advantage": "none", "importance_weighted": weights is not None, "copies": True},
    )
