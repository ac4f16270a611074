r"""Energy-based models: a Bernoulli-Bernoulli restricted Boltzmann machine, exact where it can be.

The model (Smolensky 1986; Hinton 2002) over visible :math:`v \in \{0,1\}^V` and hidden
:math:`h \in \{0,1\}^H` units, with weights :math:`W` [V, H] and biases :math:`b` [V], :math:`c` [H]:

.. math::

    E(v, h) = -v^\top W h - b^\top v - c^\top h, \qquad
    p(v, h) = e^{-E(v,h)} / Z, \qquad
    F(v) = -b^\top v - \sum_j \operatorname{softplus}(c_j + v^\top W_{:,j}),

with :math:`p(v) = e^{-F(v)} / Z` (:func:`free_energy`). The log-derivative trick splits the
gradient of the log-likelihood into a *positive phase* (data) and a *negative phase* (model):

.. math::

    \nabla_\theta \log p(v) = -\mathbb E_{h \mid v}[\nabla_\theta E(v, h)]
        + \mathbb E_{(v', h') \sim p}[\nabla_\theta E(v', h')],

because :math:`\nabla_\theta \log Z = \mathbb E_p[-\nabla_\theta E]` (the score of the Gibbs
distribution has mean zero). For :math:`W` this reads
:math:`\langle v h^\top \rangle_{\text{data}} - \langle v h^\top \rangle_{\text{model}}`. The
positive phase is exact (:math:`\mathbb E[h \mid v] = \sigma(c + W^\top v)`); the negative phase
is estimated from samples :math:`v'` (with :math:`h'` again Rao-Blackwellised to
:math:`\sigma(c + W^\top v')`):

- exact samples of :math:`p(v)` by enumerating the smaller layer (at most 16 units; the
  16-hidden-unit digit models included): the estimate is unbiased (:func:`sampled_gradient`
  with ``method="exact"``, :func:`sample_model`);
- contrastive divergence CD-k (Hinton 2002): :math:`k` block-Gibbs steps started at the data:
  biased, the bias vanishing as :math:`k \to \infty` (Carreira-Perpiñán & Hinton 2005);
- persistent CD (PCD, Tieleman 2008; "stochastic maximum likelihood", Younes 1989): chains kept
  across parameter updates; this is what :class:`sklearn.neural_network.BernoulliRBM` does.

Exact evaluation (:func:`log_partition`): summing out the visible units,

.. math::

    \log Z = \operatorname{logsumexp}_{h \in \{0,1\}^H}
        \Big[c^\top h + \sum_i \operatorname{softplus}(b_i + W_{i,:} h)\Big],

an enumeration of :math:`2^H` hidden states, feasible for :math:`H \le 16` (65 536 states,
chunked). Then :math:`\log p(v) = -F(v) - \log Z` exactly (:func:`log_likelihood`), which is how
our model and scikit-learn's are compared on the digits (its ``score_samples`` is a one-site
pseudo-likelihood estimate, not used). No well-kept library evaluates an RBM's exact
likelihood, so it is written here.

References:
    Smolensky (1986), "Information processing in dynamical systems: foundations of harmony
    theory"; Younes (1989), "Parametric inference for imperfectly observed Gibbsian fields",
    Probability Theory and Related Fields 82; Hinton (2002), "Training products of experts by minimizing contrastive divergence", Neural
    Computation 14; Carreira-Perpiñán & Hinton (AISTATS 2005), "On contrastive divergence
    learning"; Tieleman (ICML 2008), "Training restricted Boltzmann machines using
    approximations to the likelihood gradient"; Hinton (2010), "A practical guide to training
    restricted Boltzmann machines", UTML TR 2010-003.

>>> rbm = RBM.init(6, 4, generator=torch.Generator().manual_seed(0), std=1.0)
>>> v = all_binary(6)
>>> float(log_likelihood(rbm, v).exp().sum())  # a normalised distribution over 2^6 states
1.0...
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.nn.functional import softplus

from stochgrad.gradient_estimate import GradientEstimate

__all__ = [
    "DEFAULT_CHAINS",
    "MAX_ENUMERATE",
    "RBM",
    "TrainConfig",
    "TrainResult",
    "add_arguments",
    "all_binary",
    "cd_bias_study",
    "energy",
    "exact_gradient",
    "fit_sklearn",
    "free_energy",
    "gibbs_step",
    "hidden_probs",
    "load_binary_digits",
    "log_likelihood",
    "log_partition",
    "negative_samples",
    "run",
    "run_rbm",
    "sample_model",
    "sampled_gradient",
    "train_rbm",
    "visible_probs",
]

#: Persistent chains of PCD unless configured.
DEFAULT_CHAINS = 100
#: Largest layer enumerated exactly (2^16 = 65 536 states).
MAX_ENUMERATE = 16
#: Digits binarised at intensity > 8 of 16, i.e. > 0.5 after scaling to [0, 1].
PIXEL_THRESHOLD = 8
#: Test digits (a seeded random permutation picks them) and the permutation's seed.
TEST_SIZE = 360
SPLIT_SEED = 0

DTYPE = torch.float64


# ---------------------------------------------------------------------------------------------
# the model
# ---------------------------------------------------------------------------------------------
@dataclass
class RBM:
    """Parameters of a Bernoulli-Bernoulli RBM (float64 tensors).

    Attributes:
        W: [V, H] weights.
        b: [V] visible biases.
        c: [H] hidden biases.

    Raises:
        ValueError: shapes that do not fit together, or non-finite entries.

    >>> rbm = RBM(torch.zeros(3, 2), torch.zeros(3), torch.zeros(2))
    >>> rbm.num_visible, rbm.num_hidden
    (3, 2)
    """

    W: Tensor
    b: Tensor
    c: Tensor

    def __post_init__(self) -> None:
        for name in ("W", "b", "c"):
            value = getattr(self, name)
            if not isinstance(value, Tensor):
                raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
            setattr(self, name, value.to(DTYPE))
        if (
            self.W.ndim != 2
            or self.b.shape != (self.W.shape[0],)
            or self.c.shape != (self.W.shape[1],)
        ):
            raise ValueError(
                f"W must be [V, H], b [V] and c [H], got {tuple(self.W.shape)}, "
                f"{tuple(self.b.shape)} and {tuple(self.c.shape)}"
            )
        if not all(torch.isfinite(t).all() for t in (self.W, self.b, self.c)):
            raise ValueError("W, b and c must be finite")

    @property
    def num_visible(self) -> int:
        return int(self.W.shape[0])

    @property
    def num_hidden(self) -> int:
        return int(self.W.shape[1])

    def params(self) -> tuple[Tensor, Tensor, Tensor]:
        """``(W, b, c)``."""
        return self.W, self.b, self.c

    def clone(self) -> RBM:
        return RBM(self.W.clone(), self.b.clone(), self.c.clone())

    @classmethod
    def init(
        cls,
        num_visible: int,
        num_hidden: int,
        *,
        generator: torch.Generator,
        std: float = 0.01,
        data: Tensor | None = None,
    ) -> RBM:
        r"""Weights :math:`\mathcal N(0, \mathrm{std}^2)`, hidden biases 0, visible biases 0 or
        :math:`\log(\bar v_i / (1 - \bar v_i))` of the data's means (Hinton 2010, section 8).

        Args:
            num_visible: V >= 1.
            num_hidden: H >= 1.
            generator: source of the random weights.
            std: standard deviation of the weights (> 0).
            data: [N, V] binary data for the visible biases (means clipped to [0.01, 0.99]).

        >>> RBM.init(4, 2, generator=torch.Generator().manual_seed(0)).W.shape
        torch.Size([4, 2])
        """
        num_visible = _check_int("num_visible", num_visible)
        num_hidden = _check_int("num_hidden", num_hidden)
        if not (math.isfinite(std) and std > 0):
            raise ValueError(f"std must be a finite number > 0, got {std!r}")
        W = std * torch.randn(num_visible, num_hidden, generator=generator, dtype=DTYPE)
        b = torch.zeros(num_visible, dtype=DTYPE)
        if data is not None:
            data = _check_binary("data", data, num_visible)
            p = data.mean(0).clamp(0.01, 0.99)
            b = torch.log(p / (1 - p))
        return cls(W, b, torch.zeros(num_hidden, dtype=DTYPE))

    @classmethod
    def from_sklearn(cls, model: Any) -> RBM:
        """The RBM of a fitted :class:`sklearn.neural_network.BernoulliRBM`.

        Its ``components_`` is [H, V]; ``intercept_visible_`` and ``intercept_hidden_`` are the
        biases.
        """
        return cls(
            torch.as_tensor(np.asarray(model.components_).T.copy()),
            torch.as_tensor(np.asarray(model.intercept_visible_).copy()),
            torch.as_tensor(np.asarray(model.intercept_hidden_).copy()),
        )


def _check_int(name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_binary(name: str, x: Any, width: int) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim != 2 or x.shape[1] != width:
        raise ValueError(f"{name} must be [N, {width}], got {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError(f"{name} must hold at least one row")
    x = x.to(DTYPE)
    if not ((x == 0) | (x == 1)).all():
        raise ValueError(f"{name} must contain only 0 and 1")
    return x


def all_binary(n: int) -> Tensor:
    """All :math:`2^n` binary vectors of length ``n`` as a [2^n, n] float64 tensor (row ``i`` is
    ``i`` in binary, most significant bit first).

    >>> all_binary(2)
    tensor([[0., 0.],
            [0., 1.],
            [1., 0.],
            [1., 1.]], dtype=torch.float64)
    """
    n = _check_int("n", n, minimum=0)
    if n > 24:
        raise ValueError(f"n must be <= 24 (2^n rows), got {n}")
    bits = 2 ** torch.arange(n - 1, -1, -1)
    return ((torch.arange(2**n)[:, None] & bits) > 0).to(DTYPE)


def energy(rbm: RBM, v: Tensor, h: Tensor) -> Tensor:
    r""":math:`E(v, h) = -v^\top W h - b^\top v - c^\top h` per row of ``v`` [N, V] and ``h`` [N, H].

    >>> rbm = RBM(torch.ones(1, 1), torch.ones(1), torch.ones(1))
    >>> energy(rbm, torch.ones(1, 1), torch.ones(1, 1))
    tensor([-3.], dtype=torch.float64)
    """
    v, h = v.to(DTYPE), h.to(DTYPE)
    if (
        v.shape[:-1] != h.shape[:-1]
        or v.shape[-1] != rbm.num_visible
        or h.shape[-1] != rbm.num_hidden
    ):
        raise ValueError(
            f"v must be [N, {rbm.num_visible}] and h [N, {rbm.num_hidden}], "
            f"got {tuple(v.shape)} and {tuple(h.shape)}"
        )
    return -((v @ rbm.W) * h).sum(-1) - v @ rbm.b - h @ rbm.c


def free_energy(rbm: RBM, v: Tensor) -> Tensor:
    r""":math:`F(v) = -b^\top v - \sum_j \operatorname{softplus}(c_j + (v W)_j)`, so that
    :math:`p(v) \propto e^{-F(v)}`; ``v`` [N, V] -> [N].

    >>> rbm = RBM(torch.zeros(2, 1), torch.zeros(2), torch.zeros(1))
    >>> free_energy(rbm, torch.zeros(1, 2))  # -log 2
    tensor([-0.6931], dtype=torch.float64)
    """
    v = v.to(DTYPE)
    if v.ndim != 2 or v.shape[1] != rbm.num_visible:
        raise ValueError(f"v must be [N, {rbm.num_visible}], got {tuple(v.shape)}")
    return -(v @ rbm.b) - softplus(v @ rbm.W + rbm.c).sum(-1)


def hidden_probs(rbm: RBM, v: Tensor) -> Tensor:
    r""":math:`p(h_j = 1 \mid v) = \sigma(c_j + (v W)_j)`; [N, V] -> [N, H].

    >>> hidden_probs(RBM(torch.zeros(2, 1), torch.zeros(2), torch.zeros(1)), torch.ones(1, 2))
    tensor([[0.5000]], dtype=torch.float64)
    """
    return torch.sigmoid(v.to(DTYPE) @ rbm.W + rbm.c)


def visible_probs(rbm: RBM, h: Tensor) -> Tensor:
    r""":math:`p(v_i = 1 \mid h) = \sigma(b_i + (W h)_i)`; [N, H] -> [N, V].

    >>> visible_probs(RBM(torch.zeros(2, 1), torch.zeros(2), torch.zeros(1)), torch.ones(1, 1))
    tensor([[0.5000, 0.5000]], dtype=torch.float64)
    """
    return torch.sigmoid(h.to(DTYPE) @ rbm.W.T + rbm.b)


def gibbs_step(rbm: RBM, v: Tensor, *, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    r"""One block-Gibbs sweep :math:`h \sim p(h \mid v)`, :math:`v' \sim p(v' \mid h)`.

    The uniforms are drawn hidden first, then visible, each as one [N, width] block, so a run
    can be replayed exactly from the same generator.

    Returns:
        ``(v_new, h)``: [N, V] and [N, H] of 0./1.

    >>> g = torch.Generator().manual_seed(0)
    >>> v, h = gibbs_step(RBM.init(3, 2, generator=g), torch.zeros(5, 3), generator=g)
    >>> v.shape, h.shape
    (torch.Size([5, 3]), torch.Size([5, 2]))
    """
    ph = hidden_probs(rbm, v)
    h = (torch.rand(ph.shape, generator=generator, dtype=DTYPE) < ph).to(DTYPE)
    pv = visible_probs(rbm, h)
    v_new = (torch.rand(pv.shape, generator=generator, dtype=DTYPE) < pv).to(DTYPE)
    return v_new, h


# ---------------------------------------------------------------------------------------------
# exact quantities by enumeration
# ---------------------------------------------------------------------------------------------
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
    _check_enumerable("H", rbm.num_hidden, MAX_ENUMERATE)
    chunk = _check_int("chunk", chunk)
    hs = all_binary(rbm.num_hidden)
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
    v = _check_binary("v", v, rbm.num_visible)
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
    num_samples = _check_int("num_samples", num_samples)
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


def _phase(rbm: RBM, v: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    r"""Per-row :math:`-\mathbb E_{h \mid v}[\nabla E]`: :math:`(v\,\sigma^\top, v, \sigma)`."""
    ph = hidden_probs(rbm, v)
    return v[:, :, None] * ph[:, None, :], v, ph


def exact_gradient(rbm: RBM, data: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    r"""Exact gradient of the mean log-likelihood of ``data``, the model phase by enumeration.

    .. math::

        \nabla_W \tfrac1N \textstyle\sum_n \log p(v_n) = \tfrac1N \sum_n v_n\,
            \sigma(c + W^\top v_n)^\top - \sum_{v, h} p(v, h)\, v h^\top,

        \textstyle\sum_{v, h} p(v, h)\, v h^\top = \sum_h p(h)\, \sigma(b + W h)\, h^\top

    (and likewise :math:`v` for :math:`b`, :math:`h` for :math:`c`): the visible layer is summed
    out in closed form and the :math:`2^H` hidden states are enumerated (:math:`H \le 16`; the
    tests check it against a brute-force sum over both layers and against autograd of
    :func:`log_likelihood`).

    Returns:
        ``(dW, db, dc)``.

    >>> rbm = RBM(torch.zeros(2, 1), torch.zeros(2), torch.zeros(1))
    >>> exact_gradient(rbm, torch.ones(4, 2))[1]
    tensor([0.5000, 0.5000], dtype=torch.float64)
    """
    data = _check_binary("data", data, rbm.num_visible)
    hs, p = _hidden_distribution(rbm)
    ev = visible_probs(rbm, hs)  # E[v | h] for every h
    pos = [t.mean(0) for t in _phase(rbm, data)]
    neg = ((ev * p[:, None]).T @ hs, p @ ev, p @ hs)
    return pos[0] - neg[0], pos[1] - neg[1], pos[2] - neg[2]


# ---------------------------------------------------------------------------------------------
# sampled gradients: exact negative phase, CD-k
# ---------------------------------------------------------------------------------------------
def negative_samples(rbm: RBM, start: Tensor, k: int, *, generator: torch.Generator) -> Tensor:
    """``k`` block-Gibbs sweeps from ``start`` [N, V] (CD-k's negative samples; PCD's chains).

    >>> g = torch.Generator().manual_seed(0)
    >>> negative_samples(RBM.init(3, 2, generator=g), torch.ones(4, 3), 2, generator=g).shape
    torch.Size([4, 3])
    """
    k = _check_int("k", k)
    v = start.to(DTYPE)
    for _ in range(k):  # a Markov chain: steps are sequential
        v, _ = gibbs_step(rbm, v, generator=generator)
    return v


def sampled_gradient(
    rbm: RBM,
    data: Tensor,
    num_samples: int,
    *,
    method: str = "exact",
    k: int = 1,
    generator: torch.Generator,
) -> GradientEstimate:
    r"""Positive phase minus a sampled negative phase, with per-sample terms and stderr.

    Per-sample term :math:`s`: the exact positive phase of ``data`` (its mean over rows) minus
    :math:`(v'_s\,\sigma(c + W^\top v'_s)^\top, v'_s, \sigma(c + W^\top v'_s))`, where
    :math:`v'_s` is

    - ``"exact"``: an exact sample of :math:`p(v)` (:func:`sample_model`): the terms are i.i.d.
      with mean the exact gradient (:func:`exact_gradient`);
    - ``"cd"``: ``k`` Gibbs sweeps from a data row drawn uniformly: the mean is CD-k's expected
      update, which differs from the gradient (its bias).

    Args:
        rbm: the model.
        data: [N, V] binary data.
        num_samples: negative samples (>= 2 for a standard error).
        method: ``"exact"`` or ``"cd"``.
        k: Gibbs sweeps for ``"cd"``.
        generator: source of all randomness.

    Returns:
        A :class:`~stochgrad.gradient_estimate.GradientEstimate` over ``(W, b, c)``; ``biased`` is true for
        ``"cd"``.

    >>> g = torch.Generator().manual_seed(0)
    >>> rbm = RBM.init(4, 2, generator=g, std=1.0)
    >>> est = sampled_gradient(rbm, torch.ones(3, 4), 100, generator=g)
    >>> est.grad[0].shape, est.num_samples
    (torch.Size([4, 2]), 100)
    """
    data = _check_binary("data", data, rbm.num_visible)
    num_samples = _check_int("num_samples", num_samples, minimum=2)
    if method == "exact":
        v_neg = sample_model(rbm, num_samples, generator=generator)
    elif method == "cd":
        start = data[torch.randint(data.shape[0], (num_samples,), generator=generator)]
        v_neg = negative_samples(rbm, start, k, generator=generator)
    else:
        raise ValueError(f"method must be 'exact' or 'cd', got {method!r}")
    pos = [t.mean(0) for t in _phase(rbm, data)]
    per_sample = tuple(p - n for p, n in zip(pos, _phase(rbm, v_neg), strict=True))
    return GradientEstimate.from_per_sample(
        per_sample,
        method=f"rbm_{method}" + (f"{k}" if method == "cd" else ""),
        biased=method == "cd",
        evaluations=num_samples,
    )


def cd_bias_study(
    rbm: RBM,
    data: Tensor,
    *,
    ks: tuple[int, ...] = (1, 3, 10),
    num_samples: int = 200_000,
    seed: int = 0,
) -> list[dict[str, Any]]:
    r"""Bias of CD-k (and of the exact-sample estimator, the control) against the exact gradient.

    For each estimator with mean :math:`\hat g` of :math:`n` per-sample terms (sample covariance
    :math:`\hat\Sigma`): the z-scores :math:`z = (\hat g - g) / \mathrm{se}` per parameter, the
    norm of the estimated bias :math:`\|\hat g - g\|` relative to :math:`\|g\|`, and the joint
    (Hotelling-type, large-:math:`n`) statistic

    .. math:: T = n\, (\hat g - g)^\top \hat\Sigma^{+} (\hat g - g) \sim \chi^2_r
        \quad (r = \operatorname{rank} \hat\Sigma)

    under "no bias", with its p-value (the :math:`VH + V + H` coordinates are strongly
    correlated, all being functions of the same negative sample, so a sum of squared z-scores
    would not be :math:`\chi^2`).

    Returns:
        One dict per estimator: ``estimator``, ``num_samples``, ``max_abs_z``, ``chi2``,
        ``chi2_df``, ``chi2_pvalue``, ``bias_norm``, ``grad_norm``, ``relative_bias``,
        ``stderr_norm`` and ``noise_ratio`` = ``bias_norm / stderr_norm``. Without bias
        :math:`\mathbb E\|\hat g - g\|^2 = \sum \mathrm{se}^2`, so ``noise_ratio`` is near 1;
        unlike the z-scores and :math:`T` it stays valid when some coordinates are rare events
        (a pixel that is almost never on has a tiny, badly estimated standard error).

    >>> rbm = RBM.init(3, 2, generator=torch.Generator().manual_seed(0), std=1.0)
    >>> rows = cd_bias_study(rbm, all_binary(3)[:4], ks=(1,), num_samples=100)
    >>> [r["estimator"] for r in rows]
    ['exact samples', 'CD-1']
    """
    from scipy import stats

    g = torch.Generator().manual_seed(int(seed))
    exact = torch.cat([t.reshape(-1) for t in exact_gradient(rbm, data)])
    rows = []
    for method, k in [("exact", 1)] + [("cd", int(k)) for k in ks]:
        est = sampled_gradient(rbm, data, num_samples, method=method, k=k, generator=g)
        grad = torch.cat([t.reshape(-1) for t in est.grad])
        se = torch.cat([t.reshape(-1) for t in est.stderr])
        z = (grad - exact) / se
        terms = torch.cat([t.reshape(num_samples, -1) for t in est.per_sample], 1)
        cov = torch.cov(terms.T)
        rank = int(torch.linalg.matrix_rank(cov, hermitian=True))
        d = grad - exact
        chi2 = float(num_samples * d @ torch.linalg.pinv(cov, hermitian=True) @ d)
        rows.append(
            {
                "estimator": "exact samples" if method == "exact" else f"CD-{k}",
                "num_samples": num_samples,
                "max_abs_z": float(z.abs().max()),
                "chi2": chi2,
                "chi2_df": rank,
                "chi2_pvalue": float(stats.chi2.sf(chi2, rank)),
                "bias_norm": float((grad - exact).norm()),
                "grad_norm": float(exact.norm()),
                "relative_bias": float((grad - exact).norm() / exact.norm()),
                "stderr_norm": float(se.norm()),
                "noise_ratio": float((grad - exact).norm() / se.norm()),
            }
        )
    return rows


# ---------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------
def load_binary_digits(
    *, test_size: int = TEST_SIZE, seed: int = SPLIT_SEED
) -> tuple[Tensor, Tensor]:
    """scikit-learn's 1797 digits (8 x 8), scaled to [0, 1], binarised at > 0.5, split.

    Args:
        test_size: digits in the test set (a seeded random permutation picks them).
        seed: seed of the permutation.

    Returns:
        ``(train, test)`` float64 tensors of 0./1., ``[1797 - test_size, 64]`` and
        ``[test_size, 64]``.

    >>> train, test = load_binary_digits()
    >>> train.shape, test.shape
    (torch.Size([1437, 64]), torch.Size([360, 64]))

    Reference: scikit-learn, ``sklearn.datasets.load_digits``.
    """
    from sklearn.datasets import load_digits

    images = load_digits().data
    test_size = _check_int("test_size", test_size)
    if test_size >= len(images):
        raise ValueError(f"test_size must be in [1, {len(images) - 1}], got {test_size}")
    binary = (images / 16.0 > 0.5).astype(np.float64)
    order = np.random.default_rng(seed).permutation(len(binary))
    return torch.as_tensor(binary[order[test_size:]]), torch.as_tensor(binary[order[:test_size]])


# ---------------------------------------------------------------------------------------------
# training: CD-k and PCD with SGD
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrainConfig:
    r"""Settings of :func:`train_rbm`.

    Attributes:
        num_hidden: hidden units H.
        epochs: passes over the training set.
        method: ``"cd"`` (chains restarted at the minibatch) or ``"pcd"`` (persistent chains).
        k: Gibbs sweeps per update.
        lr: learning rate of the first epoch (the step on the minibatch-mean gradient, as in
            scikit-learn).
        lr_final_fraction: the last epoch's rate as a fraction of ``lr``, reached by a linear
            decay per epoch (1: constant rate).
        batch_size: training rows per update.
        num_chains: PCD chains (``None``: :data:`DEFAULT_CHAINS`; scikit-learn uses
            ``batch_size``); with ``"cd"`` it must be ``None``.
        momentum: classical momentum in [0, 1).
        weight_decay: L2 penalty on ``W`` (added as ``-weight_decay * W`` to the gradient).
        init_std: standard deviation of the initial weights.
        data_visible_bias: initialise ``b`` at the data's log-odds (otherwise 0).
        seed: seed of the initial weights, the minibatch order and all Gibbs sampling.

    The defaults were chosen on the digits (16 hidden units, 20 epochs, lr 0.06, batch 10, by the
    exact test log-likelihood; see ``docs/rbm.md``): 100 persistent chains, weights
    :math:`\mathcal N(0, 0.1^2)`, visible biases at the data's log-odds, momentum 0.7, rate
    decaying linearly to a tenth.
    """

    num_hidden: int = 16
    epochs: int = 20
    method: str = "pcd"
    k: int = 1
    lr: float = 0.06
    lr_final_fraction: float = 0.1
    batch_size: int = 10
    num_chains: int | None = None
    momentum: float = 0.7
    weight_decay: float = 0.0
    init_std: float = 0.1
    data_visible_bias: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        _check_int("num_hidden", self.num_hidden)
        _check_int("epochs", self.epochs)
        _check_int("k", self.k)
        _check_int("batch_size", self.batch_size)
        _check_int("seed", self.seed, minimum=0)
        if self.method not in ("cd", "pcd"):
            raise ValueError(f"method must be 'cd' or 'pcd', got {self.method!r}")
        if self.num_chains is not None:
            _check_int("num_chains", self.num_chains)
            if self.method == "cd":
                raise ValueError("num_chains applies to method='pcd' only; leave it None for 'cd'")
        for name in ("lr", "init_std"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
        if not (0.0 <= self.lr_final_fraction <= 1.0):
            raise ValueError(
                f"lr_final_fraction must lie in [0, 1], got {self.lr_final_fraction!r}"
            )
        if not (0.0 <= self.momentum < 1.0):
            raise ValueError(f"momentum must lie in [0, 1), got {self.momentum!r}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ValueError(
                f"weight_decay must be a finite number >= 0, got {self.weight_decay!r}"
            )

    def lr_at(self, epoch: int) -> float:
        """Learning rate of epoch ``epoch`` (0-based): linear from ``lr`` to
        ``lr * lr_final_fraction`` at the last epoch.

        >>> TrainConfig(epochs=3, lr=0.1, lr_final_fraction=0.5).lr_at(2)
        0.05
        """
        if self.epochs == 1:
            return self.lr
        return self.lr * (1.0 + (self.lr_final_fraction - 1.0) * epoch / (self.epochs - 1))


@dataclass
class TrainResult:
    """Outcome of :func:`train_rbm`.

    Attributes:
        rbm: the trained model.
        train_ll: exact mean train log-likelihood (nats per row) after each epoch, index 0 the
            initial model.
        test_ll: the same on the test rows (empty without test data).
        epochs_resumed: epochs loaded from a checkpoint instead of trained.
        seconds: wall time of this call.
    """

    rbm: RBM
    train_ll: list[float]
    test_ll: list[float]
    epochs_resumed: int = 0
    seconds: float = 0.0


def _mean_ll(rbm: RBM, data: Tensor | None, log_z: Tensor) -> float:
    if data is None:
        return float("nan")
    return float((-free_energy(rbm, data) - log_z).mean())


def train_rbm(
    train: Tensor,
    config: TrainConfig | None = None,
    *,
    test: Tensor | None = None,
    checkpoint: str | Path | None = None,
    callback: Callable[[int, dict[str, float]], None] | None = None,
) -> TrainResult:
    r"""Train an RBM by SGD on the positive-minus-negative-phase gradient (CD-k or PCD).

    Each update on a minibatch :math:`B` (rows in a seeded random order each epoch):

    .. math::

        g_W = \tfrac1{|B|}\textstyle\sum_{v \in B} v\,\sigma(c + W^\top v)^\top
              - \tfrac1M \sum_{m} v'_m\,\sigma(c + W^\top v'_m)^\top - \lambda W, \quad
        \Delta \leftarrow \mu \Delta + \eta_e\, g, \quad \theta \leftarrow \theta + \Delta,

    with :math:`v'_m` after ``k`` Gibbs sweeps from the minibatch (CD) or from the persistent
    chains (PCD, which keep their state across updates). After every epoch the exact mean
    log-likelihood of the training (and test) rows is recorded (:func:`log_likelihood`, so
    :math:`H \le 16`) and, when ``checkpoint`` is given, everything (parameters, velocities,
    chains, the generator's state, the curves) is saved atomically: a run interrupted at any
    point and started again with the same arguments continues from the last finished epoch and
    ends with the same numbers as an uninterrupted one.

    Args:
        train: [N, V] binary training rows.
        config: :class:`TrainConfig` (default settings if ``None``).
        test: [M, V] binary rows evaluated after each epoch.
        checkpoint: a ``.pt`` file to resume from and save to.
        callback: called after each epoch with ``(epoch, {"train_ll": ..., "test_ll": ...})``
            (epochs are 1-based; resumed epochs are reported once, at the start).

    Returns:
        A :class:`TrainResult`.

    Raises:
        ValueError: bad data, a checkpoint written with other settings or data, or training
            that diverged (non-finite parameters or log-likelihood: lower the rate).

    >>> data = all_binary(4)[[3, 5, 12]]
    >>> res = train_rbm(data, TrainConfig(num_hidden=2, epochs=2, batch_size=2))
    >>> len(res.train_ll)
    3
    """
    config = TrainConfig() if config is None else config
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    if not isinstance(train, Tensor) or train.ndim != 2:
        raise ValueError(f"train must be an [N, V] tensor, got {getattr(train, 'shape', train)!r}")
    train = _check_binary("train", train, train.shape[1])
    V = train.shape[1]
    if test is not None:
        test = _check_binary("test", test, V)
    _check_enumerable("num_hidden", config.num_hidden, MAX_ENUMERATE)
    start_time = time.perf_counter()
    fingerprint = {
        "config": asdict(config),
        "train": float((train * torch.arange(1, train.numel() + 1).reshape(train.shape)).sum()),
        "test_rows": 0 if test is None else int(test.shape[0]),
    }

    g = torch.Generator().manual_seed(config.seed)
    rbm = RBM.init(
        V,
        config.num_hidden,
        generator=g,
        std=config.init_std,
        data=train if config.data_visible_bias else None,
    )
    vel = [torch.zeros_like(t) for t in rbm.params()]
    chains = None
    if config.method == "pcd":
        m = config.num_chains or DEFAULT_CHAINS
        chains = train[torch.randint(train.shape[0], (m,), generator=g)].clone()
    log_z = log_partition(rbm)
    train_ll, test_ll = [_mean_ll(rbm, train, log_z)], [_mean_ll(rbm, test, log_z)]
    epoch0 = 0

    ckpt = None if checkpoint is None else Path(checkpoint)
    if ckpt is not None and ckpt.exists():
        state = torch.load(ckpt, weights_only=True)
        if state["fingerprint"] != fingerprint:
            raise ValueError(
                f"checkpoint {ckpt} was made with other settings or data; rerun with the same "
                "options, or restart to start afresh"
            )
        rbm = RBM(state["W"], state["b"], state["c"])
        vel = list(state["vel"])
        chains = state["chains"]
        g.set_state(state["generator"])
        train_ll, test_ll = list(state["train_ll"]), list(state["test_ll"])
        epoch0 = int(state["epoch"])
        if callback is not None and epoch0 > 0:
            callback(epoch0, {"train_ll": train_ll[-1], "test_ll": test_ll[-1]})

    def save(epoch: int) -> None:
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        tmp = ckpt.with_suffix(ckpt.suffix + ".tmp")
        torch.save(
            {
                "fingerprint": fingerprint,
                "epoch": epoch,
                "W": rbm.W,
                "b": rbm.b,
                "c": rbm.c,
                "vel": vel,
                "chains": chains,
                "generator": g.get_state(),
                "train_ll": train_ll,
                "test_ll": test_ll,
            },
            tmp,
        )
        os.replace(tmp, ckpt)

    W, b, c = rbm.params()
    n = train.shape[0]
    for epoch in range(epoch0, config.epochs):
        lr = config.lr_at(epoch)
        order = torch.randperm(n, generator=g)
        for batch in order.split(config.batch_size):  # SGD steps are sequential
            v_pos = train[batch]
            if chains is None:
                v_neg = negative_samples(rbm, v_pos, config.k, generator=g)
            else:
                chains = negative_samples(rbm, chains, config.k, generator=g)
                v_neg = chains
            h_pos, h_neg = hidden_probs(rbm, v_pos), hidden_probs(rbm, v_neg)
            grads = (
                v_pos.T @ h_pos / v_pos.shape[0]
                - v_neg.T @ h_neg / v_neg.shape[0]
                - config.weight_decay * W,
                v_pos.mean(0) - v_neg.mean(0),
                h_pos.mean(0) - h_neg.mean(0),
            )
            for p, d, gr in zip((W, b, c), vel, grads, strict=True):
                d.mul_(config.momentum).add_(gr, alpha=lr)
                p.add_(d)
        try:
            if not all(torch.isfinite(t).all() for t in (W, b, c)):
                raise ValueError("non-finite parameters")
            log_z = log_partition(rbm)
            train_ll.append(_mean_ll(rbm, train, log_z))
            test_ll.append(_mean_ll(rbm, test, log_z))
            if not math.isfinite(train_ll[-1]):
                raise ValueError("non-finite log-likelihood")
        except ValueError as exc:
            raise ValueError(f"training diverged in epoch {epoch + 1} ({exc}); lower lr") from exc
        if ckpt is not None:
            save(epoch + 1)
        if callback is not None:
            callback(epoch + 1, {"train_ll": train_ll[-1], "test_ll": test_ll[-1]})
    return TrainResult(
        rbm=rbm,
        train_ll=train_ll,
        test_ll=test_ll if test is not None else [],
        epochs_resumed=epoch0,
        seconds=time.perf_counter() - start_time,
    )


def fit_sklearn(
    train: Tensor, *, num_hidden: int, epochs: int, lr: float, batch_size: int, seed: int
) -> RBM:
    """Fit :class:`sklearn.neural_network.BernoulliRBM` (PCD-1, ``batch_size`` chains) and
    return its parameters as an :class:`RBM`, to be scored with :func:`log_likelihood`.

    >>> rbm = fit_sklearn(all_binary(3), num_hidden=2, epochs=1, lr=0.1, batch_size=4, seed=0)
    >>> rbm.W.shape
    torch.Size([3, 2])
    """
    from sklearn.neural_network import BernoulliRBM

    model = BernoulliRBM(
        n_components=_check_int("num_hidden", num_hidden),
        learning_rate=lr,
        batch_size=_check_int("batch_size", batch_size),
        n_iter=_check_int("epochs", epochs),
        random_state=seed,
    )
    model.fit(train.to(DTYPE).numpy())
    return RBM.from_sklearn(model)


# ---------------------------------------------------------------------------------------------
# the experiment on the digits
# ---------------------------------------------------------------------------------------------
def _plot_curves(path: Path, result: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = np.arange(len(result["train_ll"]))
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(epochs, result["train_ll"], color="C0", label="train (ours)")
    ax.plot(epochs, result["test_ll"], color="C1", label="test (ours)")
    sk = result.get("sklearn")
    if sk:
        last = epochs[-1]
        ax.plot([last], [sk["train_ll"]], "s", color="C0", mfc="none", label="train (scikit-learn)")
        ax.plot([last], [sk["test_ll"]], "s", color="C1", mfc="none", label="test (scikit-learn)")
    cfg = result["config"]
    ax.set_xlabel("epoch")
    ax.set_ylabel("exact log-likelihood (nats per image)")
    ax.set_ylim(bottom=max(min(result["test_ll"][1:] + result["train_ll"][1:]) - 5, -45))
    ax.set_title(
        f"RBM on digits: {cfg['num_hidden']} hidden, {cfg['method'].upper()}-{cfg['k']}, "
        f"batch {cfg['batch_size']}"
    )
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _plot_filters(path: Path, models: dict[str, RBM], per_row: int = 8) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    H = max(m.num_hidden for m in models.values())
    per_row = min(per_row, H)
    rows_each = -(-H // per_row)
    rows = rows_each * len(models)
    fig, axes = plt.subplots(
        rows, per_row, figsize=(0.9 * per_row, 1.0 * rows + 0.4), squeeze=False
    )
    for r, (name, m) in enumerate(models.items()):
        side = int(round(math.sqrt(m.num_visible)))
        for j in range(rows_each * per_row):
            ax = axes[r * rows_each + j // per_row, j % per_row]
            ax.axis("off")
            if j < m.num_hidden and side * side == m.num_visible:
                w = m.W[:, j].reshape(side, side).numpy()
                lim = float(np.abs(w).max()) or 1.0
                ax.imshow(w, cmap="RdBu_r", vmin=-lim, vmax=lim)
        axes[r * rows_each, 0].set_title(name, loc="left", fontsize=9)
    fig.suptitle("learned filters: the 8 x 8 weights of each hidden unit", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run_rbm(
    config: TrainConfig | None = None,
    *,
    out_dir: str | Path | None = None,
    compare_sklearn: bool = False,
    restart: bool = False,
    callback: Callable[[int, dict[str, float]], None] | None = None,
) -> dict[str, Any]:
    """Train on the binarised digits and report exact train/test log-likelihoods.

    With ``compare_sklearn``, :class:`~sklearn.neural_network.BernoulliRBM` is fitted with the
    same hidden units, epochs, batch size, learning rate and seed and scored with the same exact
    :func:`log_likelihood`. With ``out_dir``, writes ``rbm.json``, ``rbm_curve.png`` (exact
    log-likelihood per epoch) and ``rbm_filters.png``, and checkpoints training in
    ``rbm_checkpoint.pt`` (resumed unless ``restart``).

    Returns:
        The JSON-able result: ``config``, ``train_ll``/``test_ll`` curves, ``final``,
        optionally ``sklearn``, and timings.

    >>> res = run_rbm(TrainConfig(num_hidden=2, epochs=1, batch_size=100))
    >>> len(res["test_ll"]), res["final"]["test_ll"] < 0
    (2, True)
    """
    config = TrainConfig() if config is None else config
    train, test = load_binary_digits()
    out = None if out_dir is None else Path(out_dir)
    ckpt = None if out is None else out / "rbm_checkpoint.pt"
    if restart and ckpt is not None and ckpt.exists():
        ckpt.unlink()
    res = train_rbm(train, config, test=test, checkpoint=ckpt, callback=callback)
    result: dict[str, Any] = {
        "data": {"train_rows": int(train.shape[0]), "test_rows": int(test.shape[0]), "pixels": 64},
        "config": asdict(config),
        "train_ll": res.train_ll,
        "test_ll": res.test_ll,
        "final": {"train_ll": res.train_ll[-1], "test_ll": res.test_ll[-1]},
        "epochs_resumed": res.epochs_resumed,
        "seconds": res.seconds,
    }
    models = {"ours": res.rbm}
    if compare_sklearn:
        t0 = time.perf_counter()
        sk = fit_sklearn(
            train,
            num_hidden=config.num_hidden,
            epochs=config.epochs,
            lr=config.lr,
            batch_size=config.batch_size,
            seed=config.seed,
        )
        log_z = log_partition(sk)
        result["sklearn"] = {
            "train_ll": _mean_ll(sk, train, log_z),
            "test_ll": _mean_ll(sk, test, log_z),
            "settings": {
                "n_components": config.num_hidden,
                "n_iter": config.epochs,
                "learning_rate": config.lr,
                "batch_size": config.batch_size,
                "random_state": config.seed,
            },
            "seconds": time.perf_counter() - t0,
        }
        result["test_ll_difference"] = result["final"]["test_ll"] - result["sklearn"]["test_ll"]
        models["scikit-learn"] = sk
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "rbm.json").write_text(json.dumps(result, indent=1))
        _plot_curves(out / "rbm_curve.png", result)
        _plot_filters(out / "rbm_filters.png", models)
    return result


# ---------------------------------------------------------------------------------------------
# command line: `stochgrad rbm`
# ---------------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``stochgrad rbm``."""
    d = TrainConfig()
    parser.add_argument("--hidden", type=int, default=d.num_hidden, help="hidden units (<= 16)")
    parser.add_argument("--epochs", type=int, default=d.epochs, help="passes over the data")
    parser.add_argument("--method", choices=("cd", "pcd"), default=d.method, help="CD-k or PCD")
    parser.add_argument("--k", type=int, default=d.k, help="Gibbs sweeps per update")
    parser.add_argument("--lr", type=float, default=d.lr, help="learning rate")
    parser.add_argument(
        "--lr-final-fraction",
        type=float,
        default=d.lr_final_fraction,
        help="last epoch's rate as a fraction of --lr (linear decay; 1: constant)",
    )
    parser.add_argument("--batch", type=int, default=d.batch_size, help="minibatch size")
    parser.add_argument(
        "--chains", type=int, default=d.num_chains, help="PCD chains (default: 100)"
    )
    parser.add_argument("--momentum", type=float, default=d.momentum, help="SGD momentum")
    parser.add_argument("--weight-decay", type=float, default=d.weight_decay, help="L2 on W")
    parser.add_argument("--seed", type=int, default=d.seed, help="random seed")
    parser.add_argument("--out", type=Path, default=Path("runs/rbm"), help="output folder")
    parser.add_argument(
        "--compare-sklearn",
        action="store_true",
        help="also fit scikit-learn's BernoulliRBM (same size, epochs, batch, lr) and score it exactly",
    )
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--resume",
        dest="restart",
        action="store_false",
        help="continue from the checkpoint in --out (the default)",
    )
    group.add_argument(
        "--restart", dest="restart", action="store_true", help="delete the checkpoint, start afresh"
    )
    parser.set_defaults(restart=False)


def run(args: argparse.Namespace, console: Any) -> int:
    """Train the RBM on the digits; print exact log-likelihoods (and scikit-learn's)."""
    from rich.table import Table

    from stochgrad.cli import progress_bar

    try:
        config = TrainConfig(
            num_hidden=args.hidden,
            epochs=args.epochs,
            method=args.method,
            k=args.k,
            lr=args.lr,
            lr_final_fraction=args.lr_final_fraction,
            batch_size=args.batch,
            num_chains=args.chains,
            momentum=args.momentum,
            weight_decay=args.weight_decay,
            seed=args.seed,
        )
        if config.num_hidden > MAX_ENUMERATE:
            raise ValueError(f"--hidden must be <= {MAX_ENUMERATE} for the exact likelihood")
    except ValueError as exc:
        console.print(f"[red]{exc}[/red]")
        return 2
    with progress_bar(console) as progress:
        task = progress.add_task(f"RBM {config.method.upper()}-{config.k}", total=config.epochs)

        def advance(epoch: int, ll: dict[str, float]) -> None:
            progress.update(
                task,
                completed=epoch,
                description=f"RBM {config.method.upper()}-{config.k} test LL {ll['test_ll']:.2f}",
            )

        try:
            res = run_rbm(
                config,
                out_dir=args.out,
                compare_sklearn=args.compare_sklearn,
                restart=args.restart,
                callback=advance,
            )
        except ValueError as exc:  # a checkpoint of other settings, or divergence
            console.print(f"[red]{exc}[/red]")
            return 2
    table = Table(
        title=f"Exact log-likelihood, nats per image ({config.num_hidden} hidden, "
        f"{config.epochs} epochs, batch {config.batch_size}, lr {config.lr})"
    )
    for col in ("model", "train", "test"):
        table.add_column(col, justify="right")
    table.add_row(
        f"ours ({config.method.upper()}-{config.k})",
        f"{res['final']['train_ll']:.3f}",
        f"{res['final']['test_ll']:.3f}",
    )
    if "sklearn" in res:
        table.add_row(
            "scikit-learn BernoulliRBM (PCD-1)",
            f"{res['sklearn']['train_ll']:.3f}",
            f"{res['sklearn']['test_ll']:.3f}",
        )
    console.print(table)
    resumed = (
        f" ({res['epochs_resumed']} epochs from the checkpoint)" if res["epochs_resumed"] else ""
    )
    console.print(
        f"trained in {res['seconds']:.1f} s{resumed}; wrote {args.out}/rbm.json, rbm_curve.png, "
        "rbm_filters.png"
    )
    return 0
