r"""Relaxations of discrete distributions: Gumbel-max, Concrete, straight-through, REBAR, RELAX.

A Bernoulli or categorical sample is a hard threshold of continuous noise,

.. math::

    b = H(z), \qquad z = \theta + \operatorname{logit}(u) \ \text{(Bernoulli)}, \qquad
    b = \operatorname*{arg\,max}_k (\theta_k + G_k) \ \text{(categorical, Gumbel-max)},

with :math:`u \sim U(0,1)` and :math:`G_k = -\log(-\log u_k)` standard Gumbel noise. Replacing
:math:`H` by a smooth :math:`\sigma_\lambda` (a sigmoid or softmax at temperature :math:`\lambda`)
gives the Concrete / Gumbel-softmax relaxation, which is reparameterisable but changes the
objective: :func:`gumbel_softmax` and :func:`straight_through` are **biased**. REBAR and RELAX
use the relaxation only as a control variate, with the conditional relaxed sample
:math:`\tilde z \sim p(z \mid b)`, and stay unbiased for any temperature, scale and network:

.. math::

    \hat g = \big[f(b) - c(\tilde z)\big]\, \nabla_\theta \log p(b;\theta)
             + \nabla_\theta c(z) - \nabla_\theta c(\tilde z).

Supported distributions: ``Bernoulli`` (hard samples ``0.``/``1.``), ``OneHotCategorical``
(one-hot rows) and ``Categorical`` (indices), each with ``logits`` or ``probs`` and any batch
shape, optionally wrapped in ``Independent``. ``f`` sees samples in the distribution's own
representation and their relaxations in the same one: a probability in ``(0, 1)`` for a
Bernoulli, a point of the simplex for a one-hot categorical, and for a ``Categorical`` the
relaxed index :math:`\sum_k k\, y_k` of the relaxed one-hot :math:`y` (hard indices are passed as
floats; use ``OneHotCategorical`` when the categories are unordered).

References:
    Maddison, Mnih, Teh (ICLR 2017), "The Concrete distribution"; Jang, Gu, Poole (ICLR 2017),
    "Categorical reparameterization with Gumbel-softmax"; Bengio, Leonard, Courville (2013),
    "Estimating or propagating gradients through stochastic neurons"; Tucker, Mnih, Maddison,
    Lawson, Sohl-Dickstein (NeurIPS 2017), "REBAR"; Grathwohl, Choi, Wu, Roeder, Duvenaud
    (ICLR 2018), "Backpropagation through the void" (RELAX).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Bernoulli, Categorical, Distribution, OneHotCategorical

from stochgrad import _core, _dists
from stochgrad.estimators.score import check_batch_dims, problem_shape
from stochgrad.gradient_estimate import GradientEstimate, Params

SUPPORTED = "Bernoulli, Categorical or OneHotCategorical (optionally wrapped in Independent)"

__all__ = [
    "Relax",
    "concrete_sample",
    "gumbel_max",
    "gumbel_softmax",
    "rebar",
    "relaxed_bernoulli_sample",
    "straight_through",
    "straight_through_bernoulli",
    "straight_through_categorical",
]


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
        t = temperature.detach()
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
    if not isinstance(t, Tensor) or not t.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {type(t).__name__}")
    if t.dim() < min_dim:
        raise ValueError(f"{name} must have at least {min_dim} dimension(s) (categories last)")
    return t


# ---------------------------------------------------------------------------------------------
# Gumbel tools
# ---------------------------------------------------------------------------------------------
def gumbel_max(
    logits: Tensor,
    num_samples: int,
    *,
    generator: torch.Generator | None = None,
    seed: int | None = None,
) -> Tensor:
    r"""Exact categorical samples by the Gumbel-max trick.

    .. math::

        k = \operatorname*{arg\,max}_j\, (\theta_j + G_j), \quad G_j = -\log(-\log u_j),\
        u_j \sim U(0, 1) \quad\Longrightarrow\quad P(k = j) = \operatorname{softmax}(\theta)_j .

    Args:
        logits: ``[*batch, K]`` (unnormalised log-probabilities, categories last).
        num_samples: number of samples ``n``.
        generator, seed: explicit randomness; the noise is ``torch.rand((n, *logits.shape))``.

    Returns:
        Long tensor ``[n, *batch]`` of category indices (no gradient).

    >>> import torch
    >>> gumbel_max(torch.tensor([0.0, 20.0, 0.0]), 4, seed=0)
    tensor([1, 1, 1, 1])

    Reference: Gumbel (1954); Maddison, Tarlow, Minka (NeurIPS 2014), "A* sampling".
    """
    logits = _check_tensor(logits, "logits", min_dim=1)
    n = _core.check_num_samples(num_samples)
    g = _core.make_generator(generator, seed, logits.device)
    u = _uniform((n, *logits.shape), logits, g)
    return (logits.detach() + _gumbel(u)).argmax(-1)


def concrete_sample(
    logits: Tensor,
    temperature: float | Tensor,
    num_samples: int,
    *,
    hard: bool = False,
    generator: torch.Generator | None = None,
    seed: int | None = None,
) -> Tensor:
    r"""Concrete (Gumbel-softmax) relaxed one-hot samples, differentiable in ``logits``.

    .. math::

        y = \operatorname{softmax}\big((\theta + G) / \lambda\big), \qquad
        \lim_{\lambda \to 0} y = \operatorname{onehot}\big(\operatorname*{arg\,max}_j (\theta_j + G_j)\big).

    With ``hard=True`` (straight-through Gumbel, ST-Gumbel) the forward value is the exact
    one-hot sample (the same one :func:`gumbel_max` draws from the same noise) and the backward
    pass uses the gradient of the relaxed :math:`y`.

    Args:
        logits: ``[*batch, K]``.
        temperature: :math:`\lambda > 0` (a number, or a tensor to differentiate with respect to).
        num_samples: number of samples ``n``.
        hard: return the hard one-hot sample with the relaxed gradient.
        generator, seed: explicit randomness (noise ``torch.rand((n, *logits.shape))``).

    Returns:
        ``[n, *batch, K]`` rows on the probability simplex.

    >>> import torch
    >>> y = concrete_sample(torch.zeros(3), 0.5, 2, seed=0)
    >>> y.shape, torch.allclose(y.sum(-1), torch.ones(2))
    (torch.Size([2, 3]), True)

    Reference: Maddison, Mnih, Teh (ICLR 2017); Jang, Gu, Poole (ICLR 2017).
    """
    logits = _check_tensor(logits, "logits", min_dim=1)
    lam = _check_temperature(temperature)
    n = _core.check_num_samples(num_samples)
    g = _core.make_generator(generator, seed, logits.device)
    u = _uniform((n, *logits.shape), logits, g)
    y = torch.softmax((logits + _gumbel(u)) / lam, -1)
    if hard:
        y = _st(F.one_hot(y.argmax(-1), logits.shape[-1]).to(y.dtype), y)
    return y


def relaxed_bernoulli_sample(
    logits: Tensor,
    temperature: float | Tensor,
    num_samples: int,
    *,
    hard: bool = False,
    generator: torch.Generator | None = None,
    seed: int | None = None,
) -> Tensor:
    r"""Binary Concrete (relaxed Bernoulli) samples, differentiable in ``logits``.

    .. math::

        y = \sigma\big((\theta + \log u - \log(1 - u)) / \lambda\big), \qquad
        \lim_{\lambda \to 0} y = H(\theta + \operatorname{logit} u) \sim \mathrm{Bernoulli}(\sigma(\theta)).

    With ``hard=True`` the forward value is the exact Bernoulli sample :math:`H(z)` and the
    backward pass uses the gradient of the relaxed :math:`y` (straight-through Gumbel).

    Args:
        logits: any shape.
        temperature: :math:`\lambda > 0`.
        num_samples: number of samples ``n``.
        hard: return the hard sample with the relaxed gradient.
        generator, seed: explicit randomness (noise ``torch.rand((n, *logits.shape))``).

    Returns:
        ``[n, *logits.shape]`` values in ``(0, 1)`` (``{0, 1}`` with ``hard=True``).

    >>> import torch
    >>> y = relaxed_bernoulli_sample(torch.tensor([0.0, 3.0]), 0.5, 5, seed=0)
    >>> y.shape, bool(((y > 0) & (y < 1)).all())
    (torch.Size([5, 2]), True)

    Reference: Maddison, Mnih, Teh (ICLR 2017), Sec. 3.3 (binary Concrete).
    """
    logits = _check_tensor(logits, "logits")
    lam = _check_temperature(temperature)
    n = _core.check_num_samples(num_samples)
    g = _core.make_generator(generator, seed, logits.device)
    u = _uniform((n, *logits.shape), logits, g)
    z = logits + _logit(u)
    y = torch.sigmoid(z / lam)
    if hard:
        y = _st((z > 0).to(y.dtype), y)
    return y


def straight_through_bernoulli(
    probs: Tensor,
    num_samples: int,
    *,
    generator: torch.Generator | None = None,
    seed: int | None = None,
) -> Tensor:
    r"""Bernoulli samples whose backward pass is the identity (straight-through, biased).

    Forward: :math:`b = \mathbb{1}[u > 1 - p] \sim \mathrm{Bernoulli}(p)`; backward:
    :math:`\partial b / \partial p := 1` (the gradient of the mean :math:`\mathbb{E}[b] = p`).

    Args:
        probs: any shape, values in ``[0, 1]``.
        num_samples: number of samples ``n``.
        generator, seed: explicit randomness (noise ``torch.rand((n, *probs.shape))``).

    Returns:
        ``[n, *probs.shape]`` of ``0.``/``1.`` carrying the gradient of ``probs``.

    >>> import torch
    >>> p = torch.tensor([0.3, 0.9], requires_grad=True)
    >>> b = straight_through_bernoulli(p, 4, seed=0)
    >>> b.sum().backward(); p.grad
    tensor([4., 4.])

    Reference: Bengio, Leonard, Courville (2013); Hinton (2012, lecture 9c).
    """
    probs = _check_tensor(probs, "probs")
    n = _core.check_num_samples(num_samples)
    g = _core.make_generator(generator, seed, probs.device)
    u = _uniform((n, *probs.shape), probs, g)
    return _st((u > 1.0 - probs.detach()).to(probs.dtype), probs.expand(n, *probs.shape))


def straight_through_categorical(
    probs: Tensor,
    num_samples: int,
    *,
    generator: torch.Generator | None = None,
    seed: int | None = None,
) -> Tensor:
    r"""One-hot categorical samples whose backward pass is the identity (straight-through).

    Forward: the one-hot Gumbel-max sample of :math:`\log p`; backward:
    :math:`\partial y / \partial p := I` (the gradient of the mean :math:`\mathbb{E}[y] = p`).

    Args:
        probs: ``[*batch, K]``, rows summing to one.
        num_samples: number of samples ``n``.
        generator, seed: explicit randomness (noise ``torch.rand((n, *probs.shape))``).

    Returns:
        ``[n, *batch, K]`` one-hot rows carrying the gradient of ``probs``.

    >>> import torch
    >>> straight_through_categorical(torch.tensor([0.0, 1.0]), 2, seed=0)
    tensor([[0., 1.],
            [0., 1.]])

    Reference: Bengio, Leonard, Courville (2013); Jang, Gu, Poole (ICLR 2017), Sec. 2.2.
    """
    probs = _check_tensor(probs, "probs", min_dim=1)
    n = _core.check_num_samples(num_samples)
    g = _core.make_generator(generator, seed, probs.device)
    u = _uniform((n, *probs.shape), probs, g)
    idx = (torch.log(probs.detach()) + _gumbel(u)).argmax(-1)
    hard = F.one_hot(idx, probs.shape[-1]).to(probs.dtype)
    return _st(hard, probs.expand(n, *probs.shape))


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


def _setup(dist_fn, params, num_samples, generator, seed, who: str, batch_dims=0) -> _Setup:
    tensors, is_tuple = _core.as_params(params)
    n = _core.check_num_samples(num_samples)
    g = _core.make_generator(generator, seed, tensors[0].device)
    check_batch_dims(batch_dims)
    leaves = _core.leaves_of(tensors)
    d = _core.build_dist(dist_fn, leaves)
    fam = _family(d, who)
    return _Setup(tensors, is_tuple, n, g, leaves, fam, problem_shape(batch_dims, d))


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


# ---------------------------------------------------------------------------------------------
# biased estimators: Gumbel-softmax and straight-through
# ---------------------------------------------------------------------------------------------
def gumbel_softmax(
    f: Callable,
    dist_fn: Callable[..., Distribution],
    params: Params,
    *,
    num_samples: int,
    temperature: float = 0.5,
    hard: bool = False,
    generator: torch.Generator | None = None,
    seed: int | None = None,
    batch_dims: int = 0,
) -> GradientEstimate:
    r"""Gumbel-softmax (Concrete) estimate: the pathwise gradient of the relaxed objective. BIASED.

    .. math::

        \hat g = \nabla_\theta f\big(\sigma_\lambda(z(\theta, u))\big), \qquad
        \mathbb{E}[\hat g] = \nabla_\theta \mathbb{E}[f(\sigma_\lambda(z))]
        \neq \nabla_\theta \mathbb{E}[f(H(z))] \text{ in general,}

    with :math:`\sigma_\lambda` a sigmoid (Bernoulli) or softmax (categorical) at temperature
    :math:`\lambda`. The bias vanishes only as :math:`\lambda \to 0`, where the variance grows.
    With ``hard=True`` (straight-through Gumbel) ``f`` sees the exact discrete sample and the
    gradient is still that of the relaxed sample (also biased). The estimate has
    ``biased=True``.

    Args:
        f: differentiable torch function, batch ``[n, ...]`` -> ``[n]``, evaluated on relaxed
            samples (see the module notes for the representation per distribution); ``[n, *B]``
            with ``batch_dims``.
        dist_fn: ``dist_fn(*params)`` -> ``Bernoulli``, ``Categorical`` or ``OneHotCategorical``
            (``logits`` or ``probs``, any batch shape, optionally ``Independent``).
        params: a tensor or a tuple of tensors.
        num_samples: number of samples ``n``.
        temperature: :math:`\lambda > 0`.
        hard: forward the exact sample, backward the relaxed gradient (ST-Gumbel).
        generator, seed: explicit randomness.
        batch_dims: how many leading batch dimensions of the distribution index independent
            problems :math:`B` (default ``0``); ``f`` then returns ``[n, *B]``, the value of
            problem ``b`` depending only on its own slice ``x[:, b]``, and the estimate is of the
            gradient of :math:`\sum_b \mathbb E[f_b]` (the pathwise gradient of each problem's
            value reaches only its own parameters).

    Returns:
        :class:`~stochgrad.estimate.GradientEstimate` with ``method="gumbel_softmax"`` and
        ``biased=True``.

    Raises:
        ValueError: temperature not > 0, an unsupported distribution, or ``f`` not
            differentiable (the message names ``score_function`` and ``disarm``).

    >>> import torch
    >>> est = gumbel_softmax(lambda b: (b - 0.499) ** 2,
    ...                      lambda lg: torch.distributions.Bernoulli(logits=lg),
    ...                      torch.tensor(0.0), num_samples=100, seed=0)
    >>> est.biased
    True

    Reference: Jang, Gu, Poole (ICLR 2017); Maddison, Mnih, Teh (ICLR 2017).
    """
    lam = _check_temperature(temperature)
    s = _setup(dist_fn, params, num_samples, generator, seed, "gumbel_softmax", batch_dims)
    fam, n = s.fam, s.n
    phi_rep = fam.replicate(n)
    theta = fam.theta(phi_rep)
    z, y_hard = fam.hard(theta, _uniform(tuple(phi_rep.shape), phi_rep, s.g))
    y = fam.relax(z, lam)
    if hard:
        y = _st(y_hard, y)
    fx = _eval_differentiable(f, fam.to_f(y), n, "gumbel_softmax", s.problem)
    per_phi = _grad_or_zeros(fx.sum(), phi_rep)
    return _finish(
        s, per_phi, "gumbel_softmax", True, n, {"temperature": float(lam), "hard": bool(hard)}
    )


def straight_through(
    f: Callable,
    dist_fn: Callable[..., Distribution],
    params: Params,
    *,
    num_samples: int,
    generator: torch.Generator | None = None,
    seed: int | None = None,
    batch_dims: int = 0,
) -> GradientEstimate:
    r"""Straight-through estimate: exact samples forward, the gradient of their mean backward. BIASED.

    .. math::

        \hat g = \nabla_x f(x)\big|_{x = b}\; \nabla_\theta\, \mathbb{E}_\theta[b],
        \qquad b \sim p(b;\theta),

    i.e. the sampling step is treated as the identity :math:`b \approx \mathbb{E}[b]` in the
    backward pass (for a Bernoulli :math:`\partial b / \partial p := 1`). ``f`` is evaluated at
    the exact samples, but the estimate is biased whenever ``f`` is not linear on the support;
    the estimate has ``biased=True``. For the relaxed backward pass (ST-Gumbel) use
    :func:`gumbel_softmax` with ``hard=True``.

    Args:
        f: differentiable torch function, batch ``[n, ...]`` -> ``[n]`` (``[n, *B]`` with
            ``batch_dims``).
        dist_fn: ``dist_fn(*params)`` -> ``Bernoulli``, ``Categorical`` or ``OneHotCategorical``.
        params: a tensor or a tuple of tensors.
        num_samples: number of samples ``n``.
        generator, seed: explicit randomness.
        batch_dims: how many leading batch dimensions of the distribution index independent
            problems :math:`B` (default ``0``); ``f`` then returns ``[n, *B]``, the value of
            problem ``b`` depending only on its own slice ``x[:, b]``.

    Returns:
        :class:`~stochgrad.estimate.GradientEstimate` with ``method="straight_through"`` and
        ``biased=True``.

    Raises:
        ValueError: an unsupported distribution, or ``f`` not differentiable.

    >>> import torch
    >>> est = straight_through(lambda b: (b - 0.499) ** 2,
    ...                        lambda p: torch.distributions.Bernoulli(probs=p),
    ...                        torch.tensor(0.3), num_samples=8, seed=0)
    >>> est.per_sample.unique()  # f'(b) = 2 (b - 0.499) at b = 0, 1, times dE[b]/dp = 1
    tensor([-0.9980,  1.0020])

    Reference: Bengio, Leonard, Courville (2013), "Estimating or propagating gradients through
    stochastic neurons for conditional computation".
    """
    s = _setup(dist_fn, params, num_samples, generator, seed, "straight_through", batch_dims)
    fam, n = s.fam, s.n
    phi_rep = fam.replicate(n)
    theta = fam.theta(phi_rep)
    _, y_hard = fam.hard(theta, _uniform(tuple(phi_rep.shape), phi_rep, s.g))
    fx = _eval_differentiable(
        f, fam.to_f(_st(y_hard, fam.mean(theta))), n, "straight_through", s.problem
    )
    per_phi = _grad_or_zeros(fx.sum(), phi_rep)
    return _finish(s, per_phi, "straight_through", True, n, {})


# ---------------------------------------------------------------------------------------------
# unbiased estimators: REBAR and RELAX
# ---------------------------------------------------------------------------------------------
@dataclass
class _Terms:
    per_phi: Tensor  # [n, *phi.shape] per-sample terms w.r.t. the stored parameter
    evaluations: int


def _control_variate_terms(
    f: Callable,
    s: _Setup,
    who: str,
    temperature,
    eta,
    net: Callable[[Tensor], Tensor] | None,
    include_f: bool,
    create_graph: bool,
) -> _Terms:
    r"""Per-sample :math:`[f(b) - c(\tilde z)] \nabla \log p(b) + \nabla c(z) - \nabla c(\tilde z)`.

    ``c(z) = eta * f(sigma(z)) [if include_f] + net(sigma(z)) [if net]``; all gradients are
    with respect to the per-sample copy of the stored parameter, in one backward pass each.
    With a factorised objective (``s.problem`` non-empty) ``f`` and ``c`` are ``[n, *B]``, the
    network sees each problem's relaxed sample separately, and each problem's score is weighted
    by its own ``f(b) - c(z~)``.
    """
    fam, n, g = s.fam, s.n, s.g
    phi_rep = fam.replicate(n)
    theta = fam.theta(phi_rep)
    shape = tuple(phi_rep.shape)
    u = _uniform(shape, phi_rep, g)
    v = _uniform(shape, phi_rep, g)
    z, y_hard = fam.hard(theta, u)
    z_tilde = fam.conditional(theta, y_hard, v)
    y, y_tilde = fam.relax(z, temperature), fam.relax(z_tilde, temperature)

    if include_f:
        x = torch.cat([fam.to_f(y_hard), fam.to_f(y), fam.to_f(y_tilde)])
        out = _eval_differentiable(f, x, 3 * n, who, s.problem)
        fb, fz, fzt = out[:n].detach(), out[n : 2 * n], out[2 * n :]
        c_z, c_zt = eta * fz, eta * fzt
        evaluations = 3 * n
    else:
        fb = _core.evaluate_f(f, fam.to_f(y_hard), n, shape=(n, *s.problem))
        c_z = c_zt = torch.zeros((n, *s.problem), dtype=theta.dtype, device=theta.device)
        evaluations = n
    if net is not None:
        m = s.num_problems
        r = net(torch.cat([y, y_tilde]).reshape(2 * n * m, -1))
        r = r.reshape(2 * n, *s.problem).to(theta.dtype)
        c_z, c_zt = c_z + r[:n], c_zt + r[n:]

    score = _grad_or_zeros(fam.log_prob(theta, y_hard, n).sum(), phi_rep)
    reparam = _grad_or_zeros((c_z - c_zt).sum(), phi_rep, create_graph=create_graph)
    coef = fb.to(theta.dtype) - (c_zt if create_graph else c_zt.detach())
    per_phi = s.view(coef, phi_rep) * score + reparam
    return _Terms(per_phi, evaluations)


def rebar(
    f: Callable,
    dist_fn: Callable[..., Distribution],
    params: Params,
    *,
    num_samples: int,
    temperature: float = 0.5,
    eta: float = 1.0,
    generator: torch.Generator | None = None,
    seed: int | None = None,
    batch_dims: int = 0,
) -> GradientEstimate:
    r"""REBAR: REINFORCE with the Concrete relaxation as control variate. Unbiased.

    .. math::

        \hat g = \big[f(b) - \eta f(\sigma_\lambda(\tilde z))\big] \nabla_\theta \log p(b;\theta)
          + \eta\, \nabla_\theta f(\sigma_\lambda(z)) - \eta\, \nabla_\theta f(\sigma_\lambda(\tilde z)),

    with :math:`z = z(\theta, u)` the reparameterised noisy logits, :math:`b = H(z)` the exact
    sample and :math:`\tilde z = \tilde z(\theta, v, b) \sim p(z \mid b)` the conditional relaxed
    sample (``b`` held fixed when differentiating). Unbiased for every temperature
    :math:`\lambda` and scale :math:`\eta`; they only change the variance (see :class:`Relax` to
    learn them).

    Args:
        f: differentiable torch function, batch ``[m, ...]`` -> ``[m]``. It is called once on
            ``3n`` rows: the ``n`` exact samples, then their relaxations :math:`\sigma(z)` and
            :math:`\sigma(\tilde z)`; rows must be evaluated independently. ``[m, *B]`` with
            ``batch_dims``.
        dist_fn: ``dist_fn(*params)`` -> ``Bernoulli``, ``Categorical`` or ``OneHotCategorical``
            (``logits`` or ``probs``, any batch shape, optionally ``Independent``).
        params: a tensor or a tuple of tensors.
        num_samples: number of samples ``n``.
        temperature: :math:`\lambda > 0`.
        eta: the control-variate scale :math:`\eta`.
        generator, seed: explicit randomness (``u`` then ``v``, each
            ``torch.rand((n, *stored_param.shape))``).
        batch_dims: how many leading batch dimensions of the distribution index independent
            problems :math:`B` (default ``0``). With ``k > 0`` ``f`` returns ``[m, *B]``, the
            value of problem ``b`` depending only on its own slice ``x[:, b]``; both
            :math:`f(b)` and the control variate :math:`\eta f(\sigma_\lambda(\tilde z))` that
            weight a problem's score are that problem's own, and the estimate is of the gradient
            of :math:`\sum_b \mathbb E[f_b]`.

    Returns:
        :class:`~stochgrad.estimate.GradientEstimate` with ``method="rebar"``,
        ``evaluations = 3n``.

    Raises:
        ValueError: temperature not > 0, an unsupported distribution, or ``f`` not
            differentiable (the message names ``score_function`` and ``disarm``).

    >>> import torch
    >>> est = rebar(lambda b: (b - 0.45) ** 2,
    ...             lambda lg: torch.distributions.Bernoulli(logits=lg),
    ...             torch.tensor(0.0), num_samples=1000, seed=0)
    >>> est.method, est.biased, est.evaluations
    ('rebar', False, 3000)

    Reference: Tucker, Mnih, Maddison, Lawson, Sohl-Dickstein (NeurIPS 2017), "REBAR: low-variance,
    unbiased gradient estimates for discrete latent variable models", Eq. (5) and Appendix.
    """
    lam = _check_temperature(temperature)
    eta_ = _check_eta(eta)
    s = _setup(dist_fn, params, num_samples, generator, seed, "rebar", batch_dims)
    terms = _control_variate_terms(f, s, "rebar", lam, eta_, None, True, False)
    return _finish(
        s,
        terms.per_phi,
        "rebar",
        False,
        terms.evaluations,
        {"temperature": float(lam), "eta": eta_},
    )


class _MLP(nn.Module):
    r"""``tanh`` MLP with one hidden layer on the centred relaxed sample ``2 y - 1``.

    Initialised from its own generator only (``nn.Linear`` would draw from the global RNG):
    hidden layer uniform in :math:`\pm 1/\sqrt{D}` as ``nn.Linear`` does, read-out zero so that
    RELAX starts as REBAR and the network grows from there.
    """

    def __init__(self, inputs: int, hidden: int, dtype: torch.dtype, generator: torch.Generator):
        super().__init__()
        bound = 1.0 / math.sqrt(inputs)

        def uniform(*shape: int) -> nn.Parameter:
            t = torch.empty(shape, dtype=dtype).uniform_(-bound, bound, generator=generator)
            return nn.Parameter(t)

        self.w1, self.b1 = uniform(hidden, inputs), uniform(hidden)
        self.w2 = nn.Parameter(torch.zeros(1, hidden, dtype=dtype))
        self.b2 = nn.Parameter(torch.zeros(1, dtype=dtype))

    def forward(self, y: Tensor) -> Tensor:
        h = torch.tanh(F.linear(2.0 * y - 1.0, self.w1, self.b1))
        return F.linear(h, self.w2, self.b2).squeeze(-1)


class Relax:
    r"""RELAX: an unbiased estimator with a learned control variate, trained to cut its variance.

    .. math::

        \hat g = \big[f(b) - c_\phi(\tilde z)\big] \nabla_\theta \log p(b;\theta)
          + \nabla_\theta c_\phi(z) - \nabla_\theta c_\phi(\tilde z), \qquad
        c_\phi(z) = \eta\, f(\sigma_\lambda(z)) + r_\rho(\sigma_\lambda(z)),

    unbiased for every :math:`\phi = (\rho, \lambda, \eta)`. Because :math:`\mathbb{E}[\hat g]`
    does not depend on :math:`\phi`, :math:`\nabla_\phi \mathbb{E}[\hat g^2] = \nabla_\phi
    \operatorname{Var}[\hat g]`; each call (with ``train=True``) takes one Adam step on
    :math:`\phi` along the gradient of the mean squared per-sample term
    :math:`\frac1n \sum_i \lVert \hat g_i \rVert^2`, differentiated through the estimator
    (``create_graph=True``).

    The default :math:`r_\rho` is the paper's toy network: one hidden layer of ``hidden=10``
    ``tanh`` units on the flattened relaxed sample (the relaxed one-hot for categoricals), built
    at the first call, with a zero read-out so that training starts from REBAR. ``hidden=0``
    drops it (REBAR with learned temperature and :math:`\eta`); ``include_f=False`` drops the
    :math:`\eta f` term, so that ``f`` may be a black box (the network alone is the control
    variate). The variance minimised is that of the per-sample gradient with respect to
    ``params`` when the chain rule is formed as a small Jacobian (at most 64 distribution
    parameters), otherwise that with respect to the distribution's stored logits or probs
    (``info["variance_objective"]`` says which).

    Args:
        net: a module mapping ``[m, D]`` relaxed samples to ``[m]`` (or ``[m, 1]``); default the
            MLP above.
        hidden: hidden units of the default MLP (``0``: no network).
        temperature: initial :math:`\lambda > 0` (learned as :math:`\log \lambda`).
        eta: initial :math:`\eta` (learned).
        lr: Adam step size for :math:`\phi`.
        include_f: include :math:`\eta f(\sigma_\lambda(z))` in :math:`c_\phi`.
        seed: seed of the default network's initialisation.

    >>> import torch
    >>> relax = Relax()
    >>> dist_fn = lambda lg: torch.distributions.Bernoulli(logits=lg)
    >>> est = relax(lambda b: (b - 0.499) ** 2, dist_fn, torch.tensor(0.0),
    ...             num_samples=16, seed=0)
    >>> est.method, est.biased, relax.steps
    ('relax', False, 1)

    Reference: Grathwohl, Choi, Wu, Roeder, Duvenaud (ICLR 2018), "Backpropagation through the
    void: optimizing control variates for black-box gradient estimation", Alg. 1 and Sec. 6.1.
    """

    def __init__(
        self,
        net: nn.Module | None = None,
        *,
        hidden: int = 10,
        temperature: float = 0.5,
        eta: float = 1.0,
        lr: float = 0.01,
        include_f: bool = True,
        seed: int = 0,
    ):
        t0 = _check_temperature(temperature)
        if isinstance(t0, Tensor):
            t0 = float(t0)
        self._init_temperature = float(t0)
        self._init_eta = _check_eta(eta)
        if isinstance(hidden, bool) or not isinstance(hidden, (int, np.integer)) or hidden < 0:
            raise ValueError(f"hidden must be an int >= 0, got {hidden!r}")
        if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
            raise ValueError(f"lr must be a number > 0, got {lr!r}")
        if net is not None and not callable(net):
            raise TypeError(f"net must be a callable module, got {type(net).__name__}")
        if not include_f and net is None and hidden == 0:
            raise ValueError("include_f=False needs a network (hidden > 0 or net=...)")
        self.net = net
        self.hidden = int(hidden)
        self.lr = float(lr)
        self.include_f = bool(include_f)
        self.seed = int(seed)
        self.steps = 0
        self.log_temperature: Tensor | None = None
        self.eta: Tensor | None = None
        self.optimizer: torch.optim.Adam | None = None
        self._inputs: int | None = None

    # -- state ---------------------------------------------------------------------------------
    def _build(self, inputs: int, like: Tensor) -> None:
        if self._inputs is not None:
            if inputs != self._inputs:
                raise ValueError(
                    f"this Relax was built for relaxed samples of {self._inputs} values, got "
                    f"{inputs}; use one Relax per problem"
                )
            return
        self._inputs = inputs
        dtype, device = like.dtype, like.device
        if self.net is None and self.hidden > 0:
            # initialised on the CPU from its own seed (reproducible on any device), then moved
            gen = torch.Generator().manual_seed(self.seed)
            self.net = _MLP(inputs, self.hidden, dtype, gen).to(device)
        self.log_temperature = torch.tensor(
            math.log(self._init_temperature), dtype=dtype, device=device, requires_grad=True
        )
        self.eta = torch.tensor(self._init_eta, dtype=dtype, device=device, requires_grad=True)
        self.optimizer = torch.optim.Adam(self.parameters(), lr=self.lr)

    def parameters(self) -> list[Tensor]:
        """The trained tensors: log-temperature, eta (if used) and the network's parameters."""
        if self.log_temperature is None:
            return []
        out = [self.log_temperature]
        if self.include_f:
            out.append(self.eta)
        if isinstance(self.net, nn.Module):
            out.extend(p for p in self.net.parameters() if p.requires_grad)
        return out

    @property
    def temperature(self) -> float:
        """The current temperature :math:`\\lambda`."""
        if self.log_temperature is None:
            return self._init_temperature
        return float(self.log_temperature.detach().exp())

    @property
    def eta_value(self) -> float:
        """The current scale :math:`\\eta` of :math:`f(\\sigma_\\lambda(z))` in the control variate."""
        return self._init_eta if self.eta is None else float(self.eta.detach())

    # -- the estimator -------------------------------------------------------------------------
    def __call__(
        self,
        f: Callable,
        dist_fn: Callable[..., Distribution],
        params: Params,
        *,
        num_samples: int,
        generator: torch.Generator | None = None,
        seed: int | None = None,
        train: bool = True,
        batch_dims: int = 0,
    ) -> GradientEstimate:
        r"""RELAX estimate of :math:`\nabla_\theta \mathbb{E}_{p(b;\theta)}[f(b)]`, then one step on :math:`\phi`.

        Args:
            f: batch ``[m, ...]`` -> ``[m]``; differentiable unless ``include_f=False``
                (called once on ``3n`` rows as in :func:`rebar`, or on the ``n`` samples only).
            dist_fn: ``dist_fn(*params)`` -> ``Bernoulli``, ``Categorical`` or
                ``OneHotCategorical``.
            params: a tensor or a tuple of tensors.
            num_samples: number of samples ``n``.
            generator, seed: explicit randomness.
            train: take one optimiser step on the control variate after estimating.
            batch_dims: how many leading batch dimensions of the distribution index
                independent problems :math:`B` (default ``0``). With ``k > 0`` ``f`` returns
                ``[m, *B]`` (problem ``b``'s value depending only on ``x[:, b]``), the control
                variate is per problem, the network (shared by all problems) sees one problem's
                relaxed sample at a time, and each problem's score is weighted by its own
                :math:`f_b(b) - c_\phi(\tilde z_b)`. A ``Relax`` used with one problem size
                must keep it (its network's input size is fixed at the first call).

        Returns:
            :class:`~stochgrad.estimate.GradientEstimate` with ``method="relax"``, computed with
            the control variate as it was before the step; ``info`` holds the temperature,
            ``eta``, the ``variance_loss`` and which gradient it measures.
        """
        s = _setup(dist_fn, params, num_samples, generator, seed, "relax", batch_dims)
        phi = s.fam.phi
        self._build(int(phi.numel()) // s.num_problems, phi)
        temperature = self.log_temperature.exp().to(phi.dtype)
        eta = self.eta.to(phi.dtype)
        net = self._net_fn()
        terms = _control_variate_terms(
            f, s, "relax", temperature, eta, net, self.include_f, create_graph=train
        )
        info: dict[str, Any] = {"temperature": self.temperature, "eta": self.eta_value}
        if s.problem:
            info["batch_dims"] = len(s.problem)
        parts = None
        if train:
            per = _core.chain_to_params([phi], [terms.per_phi], s.leaves, s.n)
            if all(p.requires_grad for p in per):
                objective, parts = "params", [p.detach() for p in per]
            else:  # the chain rule went through batched VJPs, which keep no graph
                per, objective = [terms.per_phi], "distribution parameters"
            loss = sum((p.reshape(s.n, -1) ** 2).sum(1).mean() for p in per)
            if loss.requires_grad:  # else no term depends on the control variate's parameters
                trained = self.parameters()
                grads = torch.autograd.grad(loss, trained, allow_unused=True)
                for p, gr in zip(self.parameters(), grads, strict=True):
                    p.grad = None if gr is None else gr.detach()
                self.optimizer.step()
            self.steps += 1
            info.update(variance_loss=float(loss.detach()), variance_objective=objective)
        if parts is None:
            parts = _core.chain_to_params([phi], [terms.per_phi.detach()], s.leaves, s.n)
        return GradientEstimate.from_per_sample(
            _core.pack(parts, s.is_tuple),
            method="relax",
            evaluations=terms.evaluations,
            info=info,
        )

    def _net_fn(self) -> Callable[[Tensor], Tensor] | None:
        net = self.net
        if net is None:
            return None
        p = next(iter(net.parameters()), None) if isinstance(net, nn.Module) else None

        def run(y: Tensor) -> Tensor:
            out = net(y if p is None else y.to(p.dtype))
            return out.reshape(y.shape[0])

        return run

    def __repr__(self) -> str:
        return (
            f"Relax(temperature={self.temperature:.4g}, eta={self.eta_value:.4g}, "
            f"hidden={self.hidden}, include_f={self.include_f}, steps={self.steps})"
        )
