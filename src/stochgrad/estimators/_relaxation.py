"""Shared machinery of the relaxation estimators: noise, checks, the supported families
(Bernoulli, categorical, one-hot categorical) written on a per-sample copy of the parameter.

Private to :mod:`stochgrad.estimators`; the public names are in
:mod:`~stochgrad.estimators.concrete`, :mod:`~stochgrad.estimators.relaxed` and
:mod:`~stochgrad.estimators.rebar_relax`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.distributions import Bernoulli, Categorical, Distribution, OneHotCategorical

from stochgrad import _core, _dists
from stochgrad._checks import check_device
from stochgrad.estimators.score import check_batch_dims, problem_shape
from stochgrad.gradient_estimate import GradientEstimate

SUPPORTED = "Bernoulli, Categorical or OneHotCategorical (optionally wrapped in Independent)"


# ---------------------------------------------------------------------------------------------
# noise and argument checks
# ---------------------------------------------------------------------------------------------
def _uniform(shape: tuple[int, ...], like: Tensor, generator) -> Tensor:
    """``U(0, 1)`` noise in ``like``'s dtype, kept off 0 so that logs stay finite."""
    u = _core.rand(shape, generator, dtype=like.dtype, device=like.device)
    return u.clamp_(min=torch.finfo(like.dtype).tiny)


def _logit(u: Tensor) -> Tensor:
    return torch.log(u) - torch.log1p(-u)


def _gumbel(u: Tensor) -> Tensor:
    return -torch.log(-torch.log(u))


def _st(hard: Tensor, soft: Tensor) -> Tensor:
    """``hard`` in the forward pass, the gradient of ``soft`` in the backward pass."""
    return hard + (soft - soft.detach())


def _check_temperature(temperature: Any) -> float | Tensor:
    if isinstance(temperature, Tensor):
        t = check_device("temperature", temperature.detach())
        if not t.is_floating_point() or not bool((torch.isfinite(t) & (t > 0)).all()):
            raise ValueError(f"temperature must be finite and > 0, got {temperature}")
        return temperature
    if isinstance(temperature, bool) or not isinstance(
        temperature, (int, float, np.integer, np.floating)
    ):
        raise TypeError(f"temperature must be a number > 0, got {type(temperature).__name__}")
    value = float(temperature)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"temperature must be finite and > 0, got {temperature}")
    return value


def _check_eta(eta: Any) -> float:
    if isinstance(eta, bool) or not isinstance(eta, (int, float, np.integer, np.floating)):
        raise TypeError(f"eta must be a number, got {type(eta).__name__}")
    if not math.isfinite(float(eta)):
        raise ValueError(f"eta must be finite, got {eta}")
    return float(eta)


def _check_tensor(t: Any, name: str, min_dim: int = 0) -> Tensor:
    """A floating-point tensor of at least ``min_dim`` dimensions (categories last, at least
    one), without NaN; ``logits`` may hold ``-inf`` (a category never drawn) but not ``+inf``,
    ``probs`` must lie in ``[0, 1]``."""
    if not isinstance(t, Tensor) or not t.is_floating_point():
        what = f"dtype {t.dtype}" if isinstance(t, Tensor) else type(t).__name__
        raise TypeError(f"{name} must be a floating-point tensor, got {what}")
    if t.dim() < min_dim:
        raise ValueError(f"{name} must have at least {min_dim} dimension(s) (categories last)")
    if min_dim and t.shape[-1] == 0:
        raise ValueError(f"{name} must hold at least one category (last dimension), got 0")
    values = check_device(name, t.detach())
    if name == "probs":
        bad = bool(((values < 0) | (values > 1) | (values != values)).any())
        if bad:
            raise ValueError(f"{name} must hold probabilities in [0, 1], got {t}")
    elif bool(((values != values) | (values == math.inf)).any()):
        raise ValueError(f"{name} must not hold NaN or +inf, got {t}")
    return t


# ---------------------------------------------------------------------------------------------
# the distribution families, written on a per-sample copy of the stored parameter
# ---------------------------------------------------------------------------------------------
@dataclass
class _Family:
    """Which discrete family, and the parameter tensor the distribution stores."""

    kind: str  # "bernoulli" | "onehot" | "categorical"
    phi: Tensor  # stored logits or probs, with the graph back to the user's params
    stored: str  # "logits" | "probs"

    @property
    def bernoulli(self) -> bool:
        return self.kind == "bernoulli"

    def replicate(self, n: int) -> Tensor:
        """``[n, *phi.shape]`` leaf: one backward of a sum gives all per-sample gradients."""
        phi = self.phi.detach()
        return phi.expand(n, *phi.shape).clone().requires_grad_(True)

    def theta(self, phi_rep: Tensor) -> Tensor:
        """Logits as a function of the stored parameter."""
        if self.stored == "logits":
            return phi_rep
        if self.bernoulli:
            return torch.log(phi_rep) - torch.log1p(-phi_rep)
        return torch.log(phi_rep)

    def hard(self, theta: Tensor, u: Tensor) -> tuple[Tensor, Tensor]:
        """``(z, y)``: the noise-perturbed logits and the exact sample (``0/1`` or one-hot)."""
        if self.bernoulli:
            z = theta + _logit(u)
            return z, (z.detach() > 0).to(theta.dtype)
        z = theta + _gumbel(u)
        return z, F.one_hot(z.detach().argmax(-1), theta.shape[-1]).to(theta.dtype)

    def conditional(self, theta: Tensor, y: Tensor, v: Tensor) -> Tensor:
        r""":math:`\tilde z \sim p(z \mid b)`, reparameterised by ``v ~ U(0, 1)`` with ``b`` fixed."""
        if self.bernoulli:
            # z | b=1 is Logistic(theta) truncated to z > 0, z | b=0 truncated to z < 0: these are
            # theta + logit(u') with u' = 1 - p (1 - v) and u' = v (1 - p), written stably.
            lv = _logit(v)
            up = F.softplus(lv + F.softplus(theta))
            down = -F.softplus(F.softplus(-theta) - lv)
            return torch.where(y > 0, up, down)
        # Gumbel-max: the maximum is Gumbel(logsumexp theta), independent of the argmax; the
        # others are Gumbel(theta_k) truncated below it (inverse CDF of the truncation).
        e = -torch.log(v)  # Exp(1)
        top = torch.logsumexp(theta, -1, keepdim=True) - torch.log((e * y).sum(-1, keepdim=True))
        others = theta - torch.logaddexp(torch.log(e), theta - top)
        return torch.where(y > 0, top.expand_as(theta), others)

    def relax(self, z: Tensor, temperature) -> Tensor:
        if self.bernoulli:
            return torch.sigmoid(z / temperature)
        return torch.softmax(z / temperature, -1)

    def mean(self, theta: Tensor) -> Tensor:
        return torch.sigmoid(theta) if self.bernoulli else torch.softmax(theta, -1)

    def log_prob(self, theta: Tensor, y: Tensor, n: int) -> Tensor:
        """``log p(b)`` per sample, summed over the batch (independent factors)."""
        if self.bernoulli:
            lp = y * theta - F.softplus(theta)
        else:
            lp = y * torch.log_softmax(theta, -1)
        return lp.reshape(n, -1).sum(1)

    def to_f(self, y: Tensor) -> Tensor:
        """The representation ``f`` sees: ``0/1``, one-hot rows, or the (relaxed) index."""
        if self.kind == "categorical":
            k = y.shape[-1]
            return (y * torch.arange(k, dtype=y.dtype, device=y.device)).sum(-1)
        return y


def _family(d: Distribution, who: str) -> _Family:
    base = _dists.unwrap(d)
    if type(base) is Bernoulli:
        kind, holder = "bernoulli", base
    elif type(base) is OneHotCategorical:
        kind, holder = "onehot", base._categorical
    elif type(base) is Categorical:
        kind, holder = "categorical", base
    else:
        raise ValueError(
            f"dist_fn: {who} supports {SUPPORTED}; got {type(d).__name__}"
            + (f" of {type(base).__name__}" if base is not d else "")
            + ". Use sg.score_function for other distributions."
        )
    stored = "logits" if _dists._stored(holder, "logits") else "probs"
    return _Family(kind, holder.logits if stored == "logits" else holder.probs, stored)


def _not_differentiable(who: str, reason: str) -> ValueError:
    return ValueError(
        f"{who}: {reason}; {who} needs f differentiable on relaxed (continuous) samples. "
        "Use sg.score_function or sg.disarm instead (they accept any f, even a black box)."
    )


def _eval_differentiable(
    f: Callable, x: Tensor, rows: int, who: str, problem: tuple[int, ...] = ()
) -> Tensor:
    if getattr(f, "black_box", False):
        raise _not_differentiable(who, "f is a black box (numpy)")
    try:
        out = _core.evaluate_f(f, x, rows, keep_graph=True, shape=(rows, *problem))
    except (RuntimeError, IndexError) as exc:  # .numpy() on a tensor needing grad; x[index]
        raise _not_differentiable(
            who, f"f could not be evaluated on relaxed samples ({exc})"
        ) from exc
    if not out.requires_grad:
        raise _not_differentiable(who, "f's output does not depend differentiably on its input")
    return out


@dataclass
class _Setup:
    tensors: tuple[Tensor, ...]
    is_tuple: bool
    n: int
    g: torch.Generator | None
    leaves: tuple[Tensor, ...]
    fam: _Family
    problem: tuple[int, ...] = ()  # the problem shape B of a factorised objective (batch_dims)

    @property
    def num_problems(self) -> int:
        return int(np.prod(self.problem)) if self.problem else 1

    def view(self, t: Tensor, like: Tensor) -> Tensor:
        """``t`` of shape ``[n, *problem]`` with singleton dims to broadcast against ``like``."""
        k = len(self.problem)
        return t.reshape(t.shape[0], *self.problem, *([1] * (like.dim() - 1 - k)))


def _setup(f, dist_fn, params, num_samples, generator, seed, who: str, batch_dims=0) -> _Setup:
    """The checks and the distribution every relaxation estimator starts from; refuses a call
    that cannot fit in memory (one sample is warned about where the estimate is built)."""
    _core.check_f(f)
    tensors, is_tuple = _core.as_params(params)
    n = _core.check_num_samples(num_samples)
    g = _core.make_generator(generator, seed, tensors[0].device)
    check_batch_dims(batch_dims)
    leaves = _core.leaves_of(tensors)
    d = _core.build_dist(dist_fn, leaves)
    fam = _family(d, who)
    problem = problem_shape(batch_dims, d)
    # [n, *phi] copies: the parameter, logits, noise (two), relaxed samples (three), f's input
    _core.check_memory(
        who,
        n,
        {
            "relaxed samples": 9 * int(fam.phi.numel()) + 3,
            "per-sample terms": sum(t.numel() for t in tensors),
        },
        tensors[0],
    )
    return _Setup(tensors, is_tuple, n, g, leaves, fam, problem)


def _grad_or_zeros(out: Tensor, wrt: Tensor, *, create_graph: bool = False) -> Tensor:
    if not out.requires_grad:
        return torch.zeros_like(wrt)
    (gr,) = torch.autograd.grad(
        out, wrt, retain_graph=True, create_graph=create_graph, allow_unused=True
    )
    return torch.zeros_like(wrt) if gr is None else gr


def _finish(s: _Setup, per_phi: Tensor, method: str, biased: bool, evaluations: int, info):
    parts = _core.chain_to_params([s.fam.phi], [per_phi.detach()], s.leaves, s.n)
    if s.problem:
        info = {**info, "batch_dims": len(s.problem)}
    return GradientEstimate.from_per_sample(
        _core.pack(parts, s.is_tuple),
        method=method,
        biased=biased,
        evaluations=evaluations,
        info=info,
    )
