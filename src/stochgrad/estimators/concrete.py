r"""Gumbel-max sampling and the Concrete (Gumbel-softmax) relaxation of discrete samples,
with their straight-through variants.

A Bernoulli or categorical sample is a hard threshold of continuous noise; replacing the
threshold by a sigmoid or softmax at temperature :math:`\lambda` gives a reparameterisable
relaxed sample (see :mod:`stochgrad.estimators.relaxed` for the whole picture).

References:
    Maddison, Mnih, Teh (ICLR 2017), "The Concrete distribution"; Jang, Gu, Poole (ICLR 2017),
    "Categorical reparameterization with Gumbel-softmax"; Bengio, Leonard, Courville (2013),
    "Estimating or propagating gradients through stochastic neurons".
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from stochgrad import _core
from stochgrad._checks import check_bool
from stochgrad.estimators._relaxation import (
    _check_temperature,
    _check_tensor,
    _gumbel,
    _logit,
    _st,
    _uniform,
)

__all__ = [
    "concrete_sample",
    "gumbel_max",
    "relaxed_bernoulli_sample",
    "straight_through_bernoulli",
    "straight_through_categorical",
]


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
        generator: explicit randomness; the noise is ``torch.rand((n, *logits.shape))``.
        seed: shorthand for a generator seeded with ``seed`` (instead of ``generator``).

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
    _core.check_memory("gumbel_max", n, {"samples": 3 * logits.numel()}, logits)
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
        generator: explicit randomness (noise ``torch.rand((n, *logits.shape))``).
        seed: shorthand for a generator seeded with ``seed`` (instead of ``generator``).

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
    hard = check_bool("hard", hard)
    n = _core.check_num_samples(num_samples)
    g = _core.make_generator(generator, seed, logits.device)
    _core.check_memory("concrete_sample", n, {"samples": 3 * logits.numel()}, logits)
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
        generator: explicit randomness (noise ``torch.rand((n, *logits.shape))``).
        seed: shorthand for a generator seeded with ``seed`` (instead of ``generator``).

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
    hard = check_bool("hard", hard)
    n = _core.check_num_samples(num_samples)
    g = _core.make_generator(generator, seed, logits.device)
    _core.check_memory("relaxed_bernoulli_sample", n, {"samples": 3 * logits.numel()}, logits)
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
        generator: explicit randomness (noise ``torch.rand((n, *probs.shape))``).
        seed: shorthand for a generator seeded with ``seed`` (instead of ``generator``).

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
    _core.check_memory("straight_through_bernoulli", n, {"samples": 3 * probs.numel()}, probs)
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
        generator: explicit randomness (noise ``torch.rand((n, *probs.shape))``).
        seed: shorthand for a generator seeded with ``seed`` (instead of ``generator``).

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
    _core.check_memory("straight_through_categorical", n, {"samples": 3 * probs.numel()}, probs)
    u = _uniform((n, *probs.shape), probs, g)
    idx = (torch.log(probs.detach()) + _gumbel(u)).argmax(-1)
    hard = F.one_hot(idx, probs.shape[-1]).to(probs.dtype)
    return _st(hard, probs.expand(n, *probs.shape))
