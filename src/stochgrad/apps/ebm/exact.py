r"""Exact quantities of a small RBM by enumerating the smaller layer.

Summing out the visible units,

.. math::

    \log Z = \operatorname{logsumexp}_{h \in \{0,1\}^H}
        \Big[c^\top h + \sum_i \operatorname{softplus}(b_i + W_{i,:} h)\Big],

an enumeration of :math:`2^H` hidden states, feasible for :math:`H \le 16` (65 536 states,
chunked). Then :math:`\log p(v) = -F(v) - \log Z` exactly (:func:`log_likelihood`), exact
samples of :math:`p(v)` (:func:`sample_model`) and the exact gradient (:func:`exact_gradient`,
through :func:`stochgrad.fisher.fisher_gradient`).
No well-kept library evaluates an RBM's exact likelihood, so it is written here.

>>> from stochgrad.apps.ebm.model import RBM
>>> rbm = RBM(torch.zeros(3, 2), torch.zeros(3), torch.zeros(2))
>>> round(float(log_partition(rbm)) / math.log(2), 12)
5.0
"""

from __future__ import annotations

import math  # noqa: F401 - used by the examples

import torch
from torch import Tensor
from torch.nn.functional import softplus

from stochgrad._checks import check_int, check_torch_generator
from stochgrad.apps.ebm.model import (
    DTYPE,
    RBM,
    _check_binary,
    all_binary,
    check_rbm,
    free_energy,
    visible_probs,
)
from stochgrad.apps.ebm.phases import positive_phase
from stochgrad.fisher import fisher_gradient

__all__ = ["MAX_ENUMERATE", "exact_gradient", "log_likelihood", "log_partition", "sample_model"]

#: The most samples :func:`sample_model` draws in one call (``[num_samples, V]`` float64).
MAX_SAMPLES = 2**22

#: Largest layer enumerated exactly (2^16 = 65 536 states).
MAX_ENUMERATE = 16


def _check_enumerable(name: str, n: int, limit: int) -> None:
    if n > limit:
        raise ValueError(
            f"{name} must be <= {limit} to enumerate its 2^{name} states exactly, got {n}"
        )


def log_partition(rbm: RBM, *, chunk: int = 8192) -> Tensor:
    r"""Exact :math:`\log Z` by enumerating the :math:`2^H` hidden states (:math:`H \le 16`).

    .. math:: \log Z = \operatorname{logsumexp}_h \Big[c^\top h + \sum_i
        \operatorname{softplus}(b_i + W_{i,:} h)\Big]

    Differentiable in the parameters (autograd gives :math:`\nabla \log Z`).

    Args:
        rbm: the model.
        chunk: hidden states per block (bounds the memory at ``chunk * V`` numbers).

    Returns:
        A 0-d float64 tensor.

    Raises:
        ValueError: more than :data:`MAX_ENUMERATE` hidden units.

    >>> rbm = RBM(torch.zeros(3, 2), torch.zeros(3), torch.zeros(2))
    >>> round(float(log_partition(rbm)) / math.log(2), 12)
    5.0
    """
    _check_enumerable("H", check_rbm(rbm).num_hidden, MAX_ENUMERATE)
    chunk = check_int("chunk", chunk, minimum=1)
    hs = all_binary(rbm.num_hidden)
    chunk = min(chunk, hs.shape[0])  # one block holds every state
    parts = [block @ rbm.c + softplus(block @ rbm.W.T + rbm.b).sum(-1) for block in hs.split(chunk)]
    log_z = torch.logsumexp(torch.cat(parts), 0)
    if not torch.isfinite(log_z):
        raise ValueError(f"log Z is not finite ({float(log_z)}): parameters too large")
    return log_z


def log_likelihood(rbm: RBM, v: Tensor, *, log_z: Tensor | None = None) -> Tensor:
    r"""Exact :math:`\log p(v) = -F(v) - \log Z` (nats) per row of ``v`` [N, V].

    Args:
        rbm: the model (H <= 16, see :func:`log_partition`).
        v: [N, V] binary data.
        log_z: a precomputed :func:`log_partition` (to evaluate several sets at once).

    >>> rbm = RBM(torch.zeros(3, 2), torch.zeros(3), torch.zeros(2))
    >>> log_likelihood(rbm, torch.ones(1, 3))  # uniform over 2^3 states
    tensor([-2.0794], dtype=torch.float64)
    """
    v = _check_binary("v", v, check_rbm(rbm).num_visible, rbm.W.device)
    if log_z is None:
        log_z = log_partition(rbm)
    return -free_energy(rbm, v) - log_z


def _visible_distribution(rbm: RBM) -> tuple[Tensor, Tensor]:
    """All visible states and their exact probabilities (V <= 16)."""
    _check_enumerable("V", rbm.num_visible, MAX_ENUMERATE)
    vs = all_binary(rbm.num_visible)
    return vs, torch.softmax(-free_energy(rbm, vs), 0)


def _hidden_distribution(rbm: RBM) -> tuple[Tensor, Tensor]:
    r"""All hidden states and their exact marginal probabilities (H <= 16):
    :math:`p(h) \propto \exp(c^\top h + \sum_i \operatorname{softplus}(b_i + W_{i,:} h))`."""
    _check_enumerable("H", rbm.num_hidden, MAX_ENUMERATE)
    hs = all_binary(rbm.num_hidden)
    return hs, torch.softmax(hs @ rbm.c + softplus(hs @ rbm.W.T + rbm.b).sum(-1), 0)


def sample_model(rbm: RBM, num_samples: int, *, generator: torch.Generator) -> Tensor:
    r"""Exact independent samples :math:`v \sim p(v)` by enumerating the smaller layer.

    With :math:`V \le H` (and :math:`V \le 16`): draw among the :math:`2^V` visible states with
    probabilities :math:`\propto e^{-F(v)}`. Otherwise (:math:`H \le 16`): draw
    :math:`h \sim p(h)` among the :math:`2^H` hidden states, then :math:`v \sim p(v \mid h)`
    (ancestral sampling of the joint), which also serves the 64-pixel digit models.

    Raises:
        ValueError: both layers wider than :data:`MAX_ENUMERATE`.

    >>> rbm = RBM.init(4, 2, generator=torch.Generator().manual_seed(0))
    >>> sample_model(rbm, 3, generator=torch.Generator().manual_seed(1)).shape
    torch.Size([3, 4])
    """
    check_rbm(rbm)
    num_samples = check_int("num_samples", num_samples, minimum=1, maximum=MAX_SAMPLES)
    check_torch_generator(generator)
    V, H = rbm.num_visible, rbm.num_hidden
    if min(V, H) > MAX_ENUMERATE:
        raise ValueError(
            f"V or H must be <= {MAX_ENUMERATE} to sample exactly by enumeration, got {V} and {H}"
        )
    if V <= H:
        vs, p = _visible_distribution(rbm)
        return vs[torch.multinomial(p, num_samples, replacement=True, generator=generator)]
    hs, p = _hidden_distribution(rbm)
    h = hs[torch.multinomial(p, num_samples, replacement=True, generator=generator)]
    pv = visible_probs(rbm, h)
    return (torch.rand(pv.shape, generator=generator, dtype=DTYPE) < pv).to(DTYPE)


def exact_gradient(rbm: RBM, data: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    r"""Exact gradient of the mean log-likelihood of ``data``, both phases from the core.

    .. math::

        \nabla_\theta \tfrac1N \textstyle\sum_n \log p(v_n)
            = \tfrac1N \sum_n \mathbb E_{h \mid v_n}[-\nabla_\theta E(v_n, h)]
            - \nabla_\theta \log Z, \qquad
        \log Z = \operatorname{logsumexp}_h \log \tilde p(h), \quad
        \log \tilde p(h) = c^\top h + \textstyle\sum_i \operatorname{softplus}(b_i + W_{i,:} h).

    The positive phase is :func:`~stochgrad.apps.ebm.phases.positive_phase` (Fisher's identity
    with the hidden units' posterior marginals); :math:`\nabla_\theta \log Z =
    \sum_h p(h)\,\nabla_\theta \log \tilde p(h)` is :func:`stochgrad.fisher.fisher_gradient`
    enumerating the :math:`2^H` hidden states (:math:`H \le 16`), the visible layer summed out
    in closed form (for :math:`W`: :math:`\sum_h p(h)\, \sigma(b + W h)\, h^\top`). The tests
    check it against a brute-force sum over both layers and against autograd of
    :func:`log_likelihood`.

    Returns:
        ``(dW, db, dc)``.

    >>> rbm = RBM(torch.zeros(2, 1), torch.zeros(2), torch.zeros(1))
    >>> exact_gradient(rbm, torch.ones(4, 2))[1]
    tensor([0.5000, 0.5000], dtype=torch.float64)
    """
    data = _check_binary("data", data, check_rbm(rbm).num_visible, rbm.W.device)
    _check_enumerable("H", rbm.num_hidden, MAX_ENUMERATE)
    pos = positive_phase(rbm, data).grad
    # log Z = logsumexp_h log p~(h): Fisher's identity over the 2^H hidden states
    params = tuple(t.detach().requires_grad_(True) for t in rbm.params())
    W, b, c = params
    hs = all_binary(rbm.num_hidden)
    neg = fisher_gradient(hs @ c + softplus(hs @ W.T + b).sum(-1), params).grad
    return pos[0] - neg[0], pos[1] - neg[1], pos[2] - neg[2]
