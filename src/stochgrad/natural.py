r"""Natural-gradient tools: Fisher-vector products, conjugate gradient, a KL trust-region step.

The natural gradient preconditions the ordinary gradient with the inverse Fisher information of
the sampling distribution,

.. math::

    \tilde\nabla_\theta J = F(\theta)^{-1} \nabla_\theta J, \qquad
    F(\theta) = \mathbb{E}_{p(x;\theta)}\big[\nabla_\theta \log p(x;\theta)\,
                \nabla_\theta \log p(x;\theta)^\top\big]
              = \nabla^2_{\theta'} \, \mathrm{KL}\big(p(\cdot;\theta) \,\|\, p(\cdot;\theta')\big)
                \big|_{\theta'=\theta}.

:math:`F` is never formed: conjugate gradient solves :math:`F x = g` from Fisher-vector products,
computed either from per-sample scores or as a Hessian-vector product of the mean KL (double
backward). TRPO then scales the natural direction to the boundary of a KL ball and backtracks.

Parameters are handled as one flat vector; :func:`flat_params` and :func:`set_flat_params` wrap
``torch.nn.utils.parameters_to_vector`` / ``vector_to_parameters`` for ``nn.Module`` parameter
lists.

References:
    Kakade (2001), "A natural policy gradient"; Schulman, Levine, Moritz, Jordan, Abbeel (2015),
    "Trust region policy optimization"; Hestenes and Stiefel (1952), conjugate gradient.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor
from torch.distributions import Distribution, kl_divergence
from torch.nn.utils import parameters_to_vector, vector_to_parameters

__all__ = [
    "conjugate_gradient",
    "flat_grad",
    "flat_params",
    "kl_fvp",
    "score_fvp",
    "set_flat_params",
    "trust_region_step",
]

FVP = Callable[[Tensor], Tensor]


# ---------------------------------------------------------------------------------------------
# flat parameters
# ---------------------------------------------------------------------------------------------
def _param_list(params: Tensor | Iterable[Tensor]) -> list[Tensor]:
    if isinstance(params, Tensor):
        out = [params]
    else:
        out = list(params)
    if not out:
        raise ValueError("params must be a tensor or a non-empty sequence of tensors, got none")
    for i, p in enumerate(out):
        if not isinstance(p, Tensor):
            raise TypeError(f"params[{i}] must be a torch.Tensor, got {type(p).__name__}")
    return out


def flat_params(params: Tensor | Iterable[Tensor]) -> Tensor:
    """The parameters concatenated into one detached flat vector.

    Args:
        params: a tensor or an iterable of tensors (e.g. ``module.parameters()``).

    Returns:
        ``[P]``, a detached copy (``parameters_to_vector``).

    >>> import torch
    >>> flat_params([torch.ones(2, 2), torch.zeros(1)])
    tensor([1., 1., 1., 1., 0.])
    """
    return parameters_to_vector(_param_list(params)).detach().clone()


def set_flat_params(params: Tensor | Iterable[Tensor], vector: Tensor) -> None:
    """Copy a flat vector into the parameters, in place, without recording autograd history.

    Args:
        params: a tensor or an iterable of tensors (e.g. ``module.parameters()``).
        vector: ``[P]`` with ``P`` the total number of elements of ``params``.

    >>> import torch
    >>> lin = torch.nn.Linear(2, 1)
    >>> set_flat_params(lin.parameters(), torch.tensor([1.0, 2.0, 3.0]))
    >>> lin.weight.data, lin.bias.data
    (tensor([[1., 2.]]), tensor([3.]))
    """
    plist = _param_list(params)
    total = sum(p.numel() for p in plist)
    if vector.dim() != 1 or vector.numel() != total:
        raise ValueError(
            f"vector must be flat with {total} elements (the parameters' total), got shape "
            f"{list(vector.shape)}"
        )
    with torch.no_grad():
        vector_to_parameters(vector.detach().to(plist[0].dtype), plist)


def flat_grad(
    output: Tensor,
    params: Tensor | Iterable[Tensor],
    *,
    create_graph: bool = False,
    retain_graph: bool | None = None,
) -> Tensor:
    r"""Gradient of a scalar with respect to ``params``, flattened; zeros for unused parameters.

    Args:
        output: a scalar tensor.
        params: a tensor or an iterable of tensors that require grad.
        create_graph: keep the graph of the gradient (for a second derivative).
        retain_graph: keep the graph of ``output`` (defaults to ``create_graph``).

    Returns:
        ``[P]``.

    >>> import torch
    >>> x = torch.tensor([1.0, 2.0], requires_grad=True)
    >>> flat_grad((x**2).sum(), [x])
    tensor([2., 4.])
    """
    plist = _param_list(params)
    grads = torch.autograd.grad(
        output, plist, create_graph=create_graph, retain_graph=retain_graph, allow_unused=True
    )
    return torch.cat(
        [
            (torch.zeros_like(p) if g is None else g).reshape(-1)
            for g, p in zip(grads, plist, strict=True)
        ]
    )


def _check_damping(damping: Any) -> float:
    try:
        value = float(damping)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"damping must be a number >= 0, got {damping!r}") from exc
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"damping must be a finite number >= 0, got {damping!r}")
    return value


# ---------------------------------------------------------------------------------------------
# Fisher-vector products
# ---------------------------------------------------------------------------------------------
def score_fvp(scores: Tensor, *, weights: Tensor | None = None, damping: float = 0.0) -> FVP:
    r"""Fisher-vector products from per-sample scores (the empirical Fisher).

    .. math::

        F v \approx \frac{1}{n}\sum_{i=1}^n s_i\,(s_i^\top v) + \lambda v, \qquad
        s_i = \nabla_\theta \log p(x_i;\theta),\ x_i \sim p(\cdot;\theta),

    or :math:`\sum_i w_i s_i (s_i^\top v) / \sum_i w_i + \lambda v` with ``weights`` (e.g. the
    probabilities of an enumerated support, which gives :math:`F v` exactly). Two matrix-vector
    products, :math:`O(nP)`; :math:`F` is never formed.

    Args:
        scores: ``[n, P]`` per-sample scores.
        weights: optional ``[n]`` non-negative weights, not all zero.
        damping: :math:`\lambda \ge 0`, added times ``v`` (Tikhonov damping).

    Returns:
        ``fvp(v)``: ``[P]`` -> ``[P]`` (also ``[P, k]`` -> ``[P, k]``).

    >>> import torch
    >>> s = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    >>> score_fvp(s, damping=0.1)(torch.tensor([1.0, 1.0]))
    tensor([0.6000, 2.1000])

    Reference: Kakade (2001), "A natural policy gradient".
    """
    lam = _check_damping(damping)
    if not isinstance(scores, Tensor) or scores.dim() != 2 or scores.shape[0] < 1:
        raise ValueError(
            f"scores must be a [n, P] tensor with n >= 1, got "
            f"{list(scores.shape) if isinstance(scores, Tensor) else type(scores).__name__}"
        )
    s = scores.detach()
    if weights is None:
        w = None
    else:
        w = torch.as_tensor(weights, dtype=s.dtype).detach()
        if w.shape != (s.shape[0],):
            raise ValueError(f"weights must have shape [{s.shape[0]}], got {list(w.shape)}")
        if not bool(torch.isfinite(w).all()) or bool((w < 0).any()) or float(w.sum()) <= 0:
            raise ValueError("weights must be finite, non-negative and not all zero")
        w = w / w.sum()

    def fvp(v: Tensor) -> Tensor:
        if v.shape[0] != s.shape[1]:
            raise ValueError(f"v must have {s.shape[1]} rows (P), got shape {list(v.shape)}")
        sv = s @ v  # [n] or [n, k]
        if w is None:
            out = s.T @ sv / s.shape[0]
        else:
            out = s.T @ (w.reshape(-1, *([1] * (sv.dim() - 1))) * sv)
        return out + lam * v

    return fvp


def kl_fvp(
    dist_fn: Callable[[], Distribution],
    params: Tensor | Iterable[Tensor],
    *,
    damping: float = 0.0,
) -> FVP:
    r"""Fisher-vector products as Hessian-vector products of the mean KL (double backward).

    With :math:`\theta_0` the current values of ``params`` (frozen once, here),

    .. math::

        F v = \nabla_\theta\Big(\nabla_\theta\,
              \overline{\mathrm{KL}}\big(p_{\theta_0} \,\|\, p_\theta\big)^\top v\Big)
              \Big|_{\theta=\theta_0} + \lambda v,

    where :math:`\overline{\mathrm{KL}}` is the KL (summed over event dimensions) averaged over
    the batch dimensions of the distribution (e.g. the states visited by a policy). The first
    derivative is computed once with ``create_graph=True``; each product is one more backward
    pass, :math:`O(P)` memory.

    Args:
        dist_fn: a zero-argument callable returning the distribution at the current values of
            ``params`` (a closure over a module or tensor); called twice, once under
            ``torch.no_grad()`` for the frozen old distribution.
        params: the tensors (requiring grad) the distribution depends on, e.g.
            ``list(policy.parameters())``; flattened in order.
        damping: :math:`\lambda \ge 0`, added times ``v``.

    Returns:
        ``fvp(v)``: ``[P]`` -> ``[P]``, detached.

    >>> import torch
    >>> logits = torch.zeros(2, requires_grad=True)
    >>> fvp = kl_fvp(lambda: torch.distributions.Categorical(logits=logits), [logits])
    >>> fvp(torch.tensor([1.0, 0.0]))  # (diag(p) - p p^T) e_1 with p = (1/2, 1/2)
    tensor([ 0.2500, -0.2500])

    Reference: Schulman et al. (2015), "Trust region policy optimization", Appendix C.
    """
    lam = _check_damping(damping)
    plist = _param_list(params)
    if not any(p.requires_grad for p in plist):
        raise ValueError("params must require grad (the KL is differentiated with respect to them)")
    with torch.no_grad():
        old = _detached(dist_fn())
    new = dist_fn()
    if not isinstance(new, Distribution):
        raise TypeError(f"dist_fn must return a Distribution, got {type(new).__name__}")
    kl = kl_divergence(old, new).mean()
    g = flat_grad(kl, plist, create_graph=True)
    num = g.numel()

    def fvp(v: Tensor) -> Tensor:
        if v.shape != (num,):
            raise ValueError(f"v must have shape [{num}], got {list(v.shape)}")
        if not g.requires_grad:  # the KL does not depend on params at second order
            return lam * v
        gv = (g * v.to(g.dtype).detach()).sum()
        hv = flat_grad(gv, plist, retain_graph=True)
        return hv.detach() + lam * v

    return fvp


def _detached(d: Distribution) -> Distribution:
    """A shallow copy of ``d`` whose tensors (and nested distributions') are detached.

    ``torch.no_grad()`` alone is not enough: a distribution may store the very tensors it was
    given (``Normal(loc, scale)`` keeps ``loc`` itself), which would leave the "old"
    distribution tied to the parameters.
    """
    if not isinstance(d, Distribution):
        raise TypeError(f"dist_fn must return a Distribution, got {type(d).__name__}")
    out = copy.copy(d)
    for key, value in vars(d).items():
        if isinstance(value, Tensor):
            out.__dict__[key] = value.detach()
        elif isinstance(value, Distribution):
            out.__dict__[key] = _detached(value)
    return out


# ---------------------------------------------------------------------------------------------
# conjugate gradient
# ---------------------------------------------------------------------------------------------
def conjugate_gradient(Avp: FVP, b: Tensor, iters: int = 10, tol: float = 1e-10) -> Tensor:
    r"""Solve :math:`A x = b` for symmetric positive-definite :math:`A` given only ``x -> A x``.

    Starting from :math:`x_0 = 0`, at most ``iters`` conjugate-gradient steps, stopping when the
    squared residual :math:`\|b - A x\|^2` falls below ``tol``. Exact in at most :math:`P` steps
    in exact arithmetic; TRPO uses about 10.

    Args:
        Avp: the matrix-vector product ``v -> A v``.
        b: ``[P]`` right-hand side.
        iters: maximum number of iterations (``>= 1``).
        tol: stopping threshold on the squared residual norm (``>= 0``).

    Returns:
        ``x``, ``[P]``.

    >>> import torch
    >>> A = torch.tensor([[4.0, 1.0], [1.0, 3.0]])
    >>> conjugate_gradient(lambda v: A @ v, torch.tensor([1.0, 2.0]))
    tensor([0.0909, 0.6364])

    Reference: Hestenes and Stiefel (1952); Schulman et al. (2015), Appendix C.
    """
    if isinstance(iters, bool) or not isinstance(iters, int) or iters < 1:
        raise ValueError(f"iters must be an int >= 1, got {iters!r}")
    if not (isinstance(tol, (int, float)) and math.isfinite(tol) and tol >= 0):
        raise ValueError(f"tol must be a finite number >= 0, got {tol!r}")
    b = b.detach()
    x = torch.zeros_like(b)
    r = b.clone()
    p = b.clone()
    rr = torch.dot(r, r)
    for _ in range(iters):
        if float(rr) <= tol:
            break
        Ap = Avp(p)
        pAp = torch.dot(p, Ap)
        if not float(pAp) > 0:  # not positive definite along p (or p = 0): stop here
            break
        alpha = rr / pAp
        x = x + alpha * p
        r = r - alpha * Ap
        rr_new = torch.dot(r, r)
        p = r + (rr_new / rr) * p
        rr = rr_new
    return x


# ---------------------------------------------------------------------------------------------
# trust-region step
# ---------------------------------------------------------------------------------------------
def trust_region_step(
    loss_fn: Callable[[Tensor], Tensor | float],
    kl_fn: Callable[[Tensor], Tensor | float],
    params: Tensor,
    grad: Tensor,
    fvp: FVP,
    max_kl: float,
    backtrack: float = 0.8,
    max_steps: int = 10,
    *,
    cg_iters: int = 10,
) -> tuple[Tensor, dict[str, Any]]:
    r"""One TRPO step: natural direction by CG, scaled to the KL boundary, then backtracking.

    With :math:`g` the gradient of the surrogate loss :math:`L` (to be minimised) and
    :math:`s = -F^{-1} g` (conjugate gradient on ``fvp``), the full step is

    .. math::

        \Delta = \sqrt{\frac{2\,\delta}{s^\top F s}}\; s,

    the largest step along :math:`s` whose quadratic KL model equals :math:`\delta` = ``max_kl``.
    The step :math:`\beta^k \Delta` (:math:`\beta` = ``backtrack``, :math:`k = 0, 1, \dots,`
    ``max_steps - 1``) is accepted at the first :math:`k` where the exact KL is at most
    :math:`\delta` and the loss strictly decreases; otherwise the parameters are returned
    unchanged. The functions are evaluated under ``torch.no_grad()``; nothing is written into any
    module (call :func:`set_flat_params` with the result).

    Args:
        loss_fn: flat parameters ``[P]`` -> scalar surrogate loss (lower is better), e.g. minus
            the importance-weighted advantage.
        kl_fn: flat parameters ``[P]`` -> mean KL from the old distribution to the new one.
        params: ``[P]`` the current (old) flat parameters.
        grad: ``[P]`` the gradient of ``loss_fn`` at ``params``.
        fvp: Fisher-vector product at ``params`` (:func:`kl_fvp` or :func:`score_fvp`).
        max_kl: the trust-region radius :math:`\delta > 0`.
        backtrack: shrink factor :math:`\beta \in (0, 1)`.
        max_steps: number of step sizes tried (``>= 1``).
        cg_iters: conjugate-gradient iterations.

    Returns:
        ``(new_params, info)``: the new flat parameters (``params`` itself when no step was
        accepted) and a dict with ``accepted``, ``step_fraction`` (:math:`\beta^k`, 0 when
        rejected), ``num_backtracks``, ``kl``, ``loss_old``, ``loss_new``,
        ``expected_improvement`` (first-order, of the accepted step), ``step_norm`` and
        ``direction`` (the natural direction :math:`s`).

    >>> import torch
    >>> from torch.distributions import Categorical, kl_divergence
    >>> r = torch.tensor([1.0, 0.0, 0.0])
    >>> theta = torch.zeros(3, requires_grad=True)
    >>> loss = lambda th: -(torch.softmax(th, 0) * r).sum()
    >>> kl = lambda th: kl_divergence(Categorical(logits=theta.detach()), Categorical(logits=th))
    >>> g = torch.autograd.grad(loss(theta), theta)[0]
    >>> fvp = kl_fvp(lambda: Categorical(logits=theta), [theta], damping=1e-3)
    >>> new, info = trust_region_step(loss, kl, theta.detach(), g, fvp, max_kl=0.01)
    >>> info["accepted"], bool(info["kl"] <= 0.01), bool(info["loss_new"] < info["loss_old"])
    (True, True, True)

    Reference: Schulman et al. (2015), "Trust region policy optimization", Sec. 6 and App. C.
    """
    if not (isinstance(max_kl, (int, float)) and math.isfinite(max_kl) and max_kl > 0):
        raise ValueError(f"max_kl must be a finite number > 0, got {max_kl!r}")
    if not (isinstance(backtrack, (int, float)) and 0 < backtrack < 1):
        raise ValueError(f"backtrack must be in (0, 1), got {backtrack!r}")
    if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
        raise ValueError(f"max_steps must be an int >= 1, got {max_steps!r}")
    params = params.detach()
    grad = grad.detach()
    if params.dim() != 1 or grad.shape != params.shape:
        raise ValueError(
            f"params and grad must be flat vectors of the same shape, got {list(params.shape)} "
            f"and {list(grad.shape)}"
        )
    if not bool(torch.isfinite(grad).all()):
        raise ValueError("grad must be finite")

    with torch.no_grad():
        loss_old = float(loss_fn(params))
    direction = conjugate_gradient(fvp, -grad, iters=cg_iters)
    sFs = float(torch.dot(direction, fvp(direction)))
    info: dict[str, Any] = {
        "accepted": False,
        "step_fraction": 0.0,
        "num_backtracks": 0,
        "kl": 0.0,
        "loss_old": loss_old,
        "loss_new": loss_old,
        "expected_improvement": 0.0,
        "step_norm": 0.0,
        "direction": direction,
    }
    if not (math.isfinite(sFs) and sFs > 0):
        return params, info
    full_step = math.sqrt(2.0 * max_kl / sFs) * direction
    expected_full = -float(torch.dot(grad, full_step))  # first-order decrease of the loss
    fraction = 1.0
    with torch.no_grad():
        for k in range(max_steps):
            candidate = params + fraction * full_step
            kl = float(kl_fn(candidate))
            loss_new = float(loss_fn(candidate))
            if (
                math.isfinite(kl)
                and kl <= max_kl
                and math.isfinite(loss_new)
                and loss_new < loss_old
            ):
                info.update(
                    accepted=True,
                    step_fraction=fraction,
                    num_backtracks=k,
                    kl=kl,
                    loss_new=loss_new,
                    expected_improvement=fraction * expected_full,
                    step_norm=float(fraction * full_step.norm()),
                )
                return candidate, info
            fraction *= backtrack
    info["num_backtracks"] = max_steps
    return params, info
