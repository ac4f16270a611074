r"""A binary-latent VAE (sigmoid belief network) on scikit-learn's digits, one run per estimator.

The model, for an 8 x 8 binarised digit :math:`x \in \{0, 1\}^{64}` and :math:`K` binary latents:

.. math::

    q_\phi(z \mid x) = \mathrm{Bernoulli}(\sigma(e_\phi(x))), \qquad
    p(z) = \mathrm{Bernoulli}(\sigma(\pi)), \qquad
    p_\theta(x \mid z) = \mathrm{Bernoulli}(\sigma(d_\theta(z))),

with :math:`e_\phi` and :math:`d_\theta` one-hidden-layer ``tanh`` networks (linear with
``hidden=0``) and learned prior logits :math:`\pi`. Training maximises the ELBO

.. math::

    \mathcal L(x) = \mathbb E_{q_\phi(z \mid x)}\big[f_x(z)\big], \qquad
    f_x(z) = \log p_\theta(x \mid z) + \log p(z) - \log q_\phi(z \mid x).

The generative parameters :math:`(\theta, \pi)` get the exact gradient of a sampled ELBO
(:math:`f_x` is differentiable in them; one fresh :math:`z \sim q` per datapoint, the same rule
for every estimator). The encoder gets :math:`\nabla_\alpha \sum_b \mathcal L(x_b)` with respect
to its output logits :math:`\alpha = e_\phi(x)` from a gradient estimator, pushed into
:math:`\phi` by ``alpha.backward(-grad / B)``. Inside :math:`f_x` the encoder is detached:
the explicit dependence of :math:`-\log q_\phi` on :math:`\phi` contributes
:math:`-\mathbb E_q[\nabla_\phi \log q_\phi] = 0`.

The estimators (:data:`ESTIMATORS`) get the same budget of :math:`S` evaluations of :math:`f_x`
per datapoint and step (``Config.samples``): REINFORCE (no baseline) and RLOO draw :math:`S`
samples, DisARM :math:`S/2` antithetic pairs, REBAR :math:`S/3` samples (each costs three
evaluations: the hard sample and two relaxed ones) and Gumbel-softmax (biased) :math:`S` relaxed
samples. Each datapoint is its own problem (``batch_dims=1``): its samples are weighted by its own
:math:`f_x`, and the estimate is the gradient of the sum over the minibatch.

Every ``probe_every`` steps the variance of the encoder-logit gradient estimate is measured on a
fixed minibatch of test digits: ``probe_calls`` independent calls of the training estimator,
the variance across calls summed over the :math:`B \times K` logits. Every ``eval_every`` steps the
test ELBO is estimated; at the end also with more samples, together with the importance-weighted
bound (Burda et al. 2016)

.. math::

    \mathcal L_k(x) = \mathbb E\Big[\log \frac1k \sum_{i=1}^k
        \frac{p_\theta(x, z_i)}{q_\phi(z_i \mid x)}\Big], \qquad
    \mathcal L(x) \le \mathcal L_k(x) \le \log p(x).

For small :math:`K` both bounds and :math:`\log p(x)` are computed exactly by enumerating the
:math:`2^K` latent states (:func:`exact_elbo`, :func:`exact_log_likelihood`).

References:
    Kingma & Welling (ICLR 2014), "Auto-encoding variational Bayes"; Mnih & Gregor (ICML 2014),
    "Neural variational inference and learning in belief networks"; Burda, Grosse, Salakhutdinov
    (ICLR 2016), "Importance weighted autoencoders"; Tucker et al. (NeurIPS 2017), "REBAR";
    Dong, Mnih, Tucker (NeurIPS 2020), "DisARM"; Kool, van Hoof, Welling (2019), "Buy 4
    REINFORCE samples, get a baseline for free!"; Jang, Gu, Poole (ICLR 2017).

>>> train, test = load_binary_digits()
>>> train.shape, test.shape, sorted(train.unique().tolist())
(torch.Size([1437, 64]), torch.Size([360, 64]), [0.0, 1.0])
"""

from __future__ import annotations

import json
import math
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Bernoulli, Independent

from stochgrad.checkpoint import RunCheckpoint
from stochgrad.estimators.arm import disarm, rloo
from stochgrad.estimators.relaxed import gumbel_softmax, rebar
from stochgrad.estimators.score import score_function
from stochgrad.gradient_estimate import GradientEstimate

PIXELS = 64
"""Pixels of one digit (8 x 8)."""

PIXEL_THRESHOLD = 8
"""A pixel (intensity 0..16) is on when it is above this."""

TEST_SIZE = 360
"""Digits held out for testing (the other 1437 train)."""

SPLIT_SEED = 0
"""Seed of the fixed train/test split."""

MAX_ENUMERATION_LATENTS = 16
"""Largest number of latents :func:`exact_elbo` and :func:`exact_log_likelihood` enumerate."""


# ---------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------
def load_binary_digits(
    *, test_size: int = TEST_SIZE, seed: int = SPLIT_SEED, dtype: torch.dtype = torch.float32
) -> tuple[Tensor, Tensor]:
    """scikit-learn's 1797 digits (8 x 8), binarised at intensity > 8, split into train and test.

    Args:
        test_size: digits in the test set (a seeded random permutation picks them).
        seed: seed of the permutation.
        dtype: floating-point type of the returned tensors.

    Returns:
        ``(train, test)``: ``[1797 - test_size, 64]`` and ``[test_size, 64]`` of ``0.``/``1.``.

    >>> train, test = load_binary_digits(test_size=97)
    >>> train.shape[0], test.shape[0]
    (1700, 97)

    Reference: scikit-learn, ``sklearn.datasets.load_digits`` (UCI optical recognition of
    handwritten digits).
    """
    from sklearn.datasets import load_digits

    images = load_digits().data
    if isinstance(test_size, bool) or not isinstance(test_size, (int, np.integer)):
        raise TypeError(f"test_size must be an int, got {type(test_size).__name__}")
    if not 1 <= test_size < len(images):
        raise ValueError(f"test_size must be in [1, {len(images) - 1}], got {test_size}")
    binary = (images > PIXEL_THRESHOLD).astype(np.float64)
    order = np.random.default_rng(seed).permutation(len(binary))
    test, train = order[:test_size], order[test_size:]
    return (
        torch.as_tensor(binary[train], dtype=dtype),
        torch.as_tensor(binary[test], dtype=dtype),
    )


# ---------------------------------------------------------------------------------------------
# the model
# ---------------------------------------------------------------------------------------------
def _bernoulli_log_prob(x: Tensor, logits: Tensor) -> Tensor:
    r""":math:`\sum_j x_j \ell_j - \operatorname{softplus}(\ell_j)` over the last axis (broadcast)."""
    return (x * logits - F.softplus(logits)).sum(-1)


def _network(inputs: int, hidden: int, outputs: int) -> nn.Sequential:
    if hidden == 0:
        return nn.Sequential(nn.Linear(inputs, outputs))
    return nn.Sequential(nn.Linear(inputs, hidden), nn.Tanh(), nn.Linear(hidden, outputs))


def _run(net: nn.Sequential, h: Tensor, detach: bool) -> Tensor:
    """``net(h)``, with the weights detached when ``detach`` (gradients reach ``h`` only)."""
    for layer in net:
        if isinstance(layer, nn.Linear):
            w, b = layer.weight, layer.bias
            h = F.linear(h, w.detach(), b.detach()) if detach else layer(h)
        else:
            h = layer(h)
    return h


class BinaryVAE(nn.Module):
    r"""Bernoulli encoder, Bernoulli prior and Bernoulli decoder (a sigmoid belief network).

    .. math::

        \log p(x, z) - \log q(z \mid x) = \sum_j x_j d_j(z) - \operatorname{softplus}(d_j(z))
          + \sum_k z_k (\pi_k - \alpha_k) - \operatorname{softplus}(\pi_k)
          + \operatorname{softplus}(\alpha_k),

    with :math:`\alpha = e(x)` the encoder's logits. Every method broadcasts ``z`` of shape
    ``[..., B, K]`` (or ``[..., 1, K]``) against ``x`` of shape ``[B, 64]``; ``z`` may be relaxed
    (values in ``(0, 1)``), as REBAR and Gumbel-softmax need.

    Args:
        latents: :math:`K`.
        hidden: hidden ``tanh`` units of encoder and decoder (0: both linear).
        pixels: data dimension.
        seed: initialisation seed (uniform :math:`\pm 1/\sqrt{\text{fan-in}}`, as ``nn.Linear``,
            drawn from a generator of this seed, not the global RNG).
        pixel_mean: if given, the decoder's output bias starts at its logit (the usual
            initialisation: the untrained decoder predicts the average image).

    >>> model = BinaryVAE(latents=4, hidden=0, seed=0)
    >>> x = torch.zeros(3, 64); z = torch.ones(5, 3, 4)
    >>> model.encode(x).shape, model.elbo_terms(x, z, model.encode(x)).shape
    (torch.Size([3, 4]), torch.Size([5, 3]))

    Reference: Neal (1992), "Connectionist learning of belief networks"; Mnih & Gregor (2014).
    """

    def __init__(
        self,
        latents: int = 32,
        hidden: int = 128,
        *,
        pixels: int = PIXELS,
        seed: int = 0,
        pixel_mean: Tensor | None = None,
    ):
        super().__init__()
        for name, value, low in (("latents", latents, 1), ("hidden", hidden, 0)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
        self.latents, self.hidden, self.pixels = int(latents), int(hidden), int(pixels)
        self.encoder = _network(pixels, hidden, latents)
        self.decoder = _network(latents, hidden, pixels)
        self.prior_logits = nn.Parameter(torch.zeros(latents))
        gen = torch.Generator().manual_seed(int(seed))
        with torch.no_grad():
            for layer in (*self.encoder, *self.decoder):
                if isinstance(layer, nn.Linear):
                    bound = 1.0 / math.sqrt(layer.in_features)
                    layer.weight.uniform_(-bound, bound, generator=gen)
                    layer.bias.uniform_(-bound, bound, generator=gen)
            if pixel_mean is not None:
                m = pixel_mean.detach().to(self.prior_logits.dtype).clamp(1e-3, 1 - 1e-3)
                self.decoder[-1].bias.copy_(torch.log(m) - torch.log1p(-m))

    def encode(self, x: Tensor) -> Tensor:
        """The logits :math:`\\alpha = e(x)` of :math:`q(z \\mid x)`, ``[B, K]``."""
        return self.encoder(x)

    def posterior(self, logits: Tensor) -> Independent:
        """:math:`q(z \\mid x)` from its logits: a batch of ``B`` products of ``K`` Bernoullis."""
        return Independent(Bernoulli(logits=logits), 1)

    def log_joint(self, x: Tensor, z: Tensor, *, detach: bool = False) -> Tensor:
        """:math:`\\log p(x \\mid z) + \\log p(z)`, ``[..., B]`` (weights detached if ``detach``)."""
        prior = self.prior_logits.detach() if detach else self.prior_logits
        return _bernoulli_log_prob(x, _run(self.decoder, z, detach)) + _bernoulli_log_prob(z, prior)

    def elbo_terms(self, x: Tensor, z: Tensor, q_logits: Tensor, *, detach: bool = False) -> Tensor:
        r""":math:`f_x(z) = \log p(x, z) - \log q(z \mid x)`, ``[..., B]``."""
        return self.log_joint(x, z, detach=detach) - _bernoulli_log_prob(z, q_logits)

    def generative_parameters(self) -> list[nn.Parameter]:
        """Decoder weights and prior logits: trained by the exact gradient of the ELBO sample."""
        return [*self.decoder.parameters(), self.prior_logits]


def sample_posterior(logits: Tensor, num_samples: int, generator: torch.Generator) -> Tensor:
    """``[n, B, K]`` exact samples ``1[u < sigmoid(logits)]`` of :math:`q(z \\mid x)` (no gradient)."""
    logits = logits.detach()
    u = torch.rand((num_samples, *logits.shape), generator=generator, dtype=logits.dtype)
    return (u < torch.sigmoid(logits)).to(logits.dtype)


# ---------------------------------------------------------------------------------------------
# bounds: Monte Carlo and exact (enumeration)
# ---------------------------------------------------------------------------------------------
@torch.no_grad()
def elbo_samples(
    model: BinaryVAE, x: Tensor, num_samples: int, generator: torch.Generator
) -> Tensor:
    """``[n, B]`` values :math:`f_x(z_i)`, :math:`z_i \\sim q(z \\mid x)`: their mean is the ELBO.

    >>> model = BinaryVAE(latents=3, hidden=0, seed=0)
    >>> elbo_samples(model, torch.ones(2, 64), 5, torch.Generator().manual_seed(0)).shape
    torch.Size([5, 2])
    """
    q = model.encode(x)
    return model.elbo_terms(x, sample_posterior(q, num_samples, generator), q)


@torch.no_grad()
def iwae_bound(
    model: BinaryVAE, x: Tensor, k: int, generator: torch.Generator, *, chunk: int = 100
) -> Tensor:
    r"""One draw of the importance-weighted bound per datapoint, ``[B]``.

    .. math::

        \hat{\mathcal L}_k(x) = \log \frac1k \sum_{i=1}^k \exp f_x(z_i), \quad
        z_i \sim q(z \mid x); \qquad
        \mathcal L(x) \le \mathbb E\,\hat{\mathcal L}_k(x) \le \log p(x).

    Args:
        model: the VAE.
        x: ``[B, 64]``.
        k: importance samples per datapoint.
        generator: randomness.
        chunk: datapoints per batch of work (memory ``k * chunk * hidden``).

    Reference: Burda, Grosse, Salakhutdinov (ICLR 2016), "Importance weighted autoencoders",
    Eq. 8 and Theorem 1.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be an int >= 1, got {k!r}")
    out = []
    for xs in x.split(chunk):
        f = elbo_samples(model, xs, int(k), generator)
        out.append(torch.logsumexp(f, 0) - math.log(k))
    return torch.cat(out)


def latent_states(latents: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """All :math:`2^K` binary vectors, ``[2^K, K]`` (row ``i`` is ``i`` in binary, bit 0 first).

    >>> latent_states(2)
    tensor([[0., 0.],
            [1., 0.],
            [0., 1.],
            [1., 1.]])
    """
    if latents > MAX_ENUMERATION_LATENTS:
        raise ValueError(
            f"latents: enumeration of 2^{latents} states refused (at most "
            f"{MAX_ENUMERATION_LATENTS} latents)"
        )
    idx = torch.arange(2**latents).unsqueeze(1)
    return ((idx >> torch.arange(latents)) & 1).to(dtype)


def exact_elbo(model: BinaryVAE, x: Tensor, logits: Tensor | None = None) -> Tensor:
    r"""The ELBO by enumeration, :math:`\sum_z q(z \mid x)\, f_x(z)`, ``[B]`` (``K <= 16``).

    Differentiable: with ``logits`` (default ``model.encode(x)``) requiring grad, autograd gives
    the exact gradient the encoder's estimators estimate.

    >>> model = BinaryVAE(latents=3, hidden=0, seed=0)
    >>> x = torch.ones(2, 64)
    >>> bool((exact_elbo(model, x) <= exact_log_likelihood(model, x)).all())
    True
    """
    z = latent_states(model.latents, x.dtype).unsqueeze(1)  # [2^K, 1, K]
    q = model.encode(x) if logits is None else logits
    log_q = _bernoulli_log_prob(z, q)  # [2^K, B]
    return (log_q.exp() * (model.log_joint(x, z) - log_q)).sum(0)


@torch.no_grad()
def exact_log_likelihood(model: BinaryVAE, x: Tensor) -> Tensor:
    r""":math:`\log p(x) = \log \sum_z p(x \mid z)\, p(z)` by enumeration, ``[B]`` (``K <= 16``)."""
    z = latent_states(model.latents, x.dtype).unsqueeze(1)
    return torch.logsumexp(model.log_joint(x, z), 0)


# ---------------------------------------------------------------------------------------------
# the estimators, at one budget
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Config:
    """Settings every run of one study shares (a checkpoint is reused only with equal settings).

    Attributes:
        steps: Adam steps per run.
        samples: the budget :math:`S`: evaluations of :math:`f_x` per datapoint and step for the
            encoder's estimator (must be divisible by 2 for DisARM and 3 for REBAR).
        latents: :math:`K`.
        hidden: hidden units of encoder and decoder (0: linear).
        batch_size: datapoints per step.
        lr: Adam's learning rate (encoder, decoder and prior alike).
        decoder_samples: fresh :math:`z \\sim q` per datapoint for the generative gradient.
        temperature: relaxation temperature of REBAR and Gumbel-softmax.
        eta: REBAR's control-variate scale.
        eval_every: steps between test-ELBO estimates (the curve).
        eval_samples: samples per test digit of those estimates.
        final_samples: samples per test digit of the final ELBO.
        iwae_k: importance samples of the final bound.
        probe_every: steps between variance measurements.
        probe_calls: independent estimator calls per variance measurement.
        probe_batch: test digits of the fixed variance minibatch.
        checkpoint_every: steps between mid-run checkpoints.
    """

    steps: int = 3000
    samples: int = 12
    latents: int = 32
    hidden: int = 128
    batch_size: int = 100
    lr: float = 2e-3
    decoder_samples: int = 1
    temperature: float = 0.5
    eta: float = 1.0
    eval_every: int = 100
    eval_samples: int = 10
    final_samples: int = 100
    iwae_k: int = 100
    probe_every: int = 100
    probe_calls: int = 16
    probe_batch: int = 100
    checkpoint_every: int = 500

    def __post_init__(self):
        for name in (
            "steps",
            "samples",
            "latents",
            "batch_size",
            "decoder_samples",
            "eval_every",
            "eval_samples",
            "final_samples",
            "iwae_k",
            "probe_every",
            "probe_calls",
            "probe_batch",
            "checkpoint_every",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if isinstance(self.hidden, bool) or not isinstance(self.hidden, int) or self.hidden < 0:
            raise ValueError(f"hidden must be an int >= 0, got {self.hidden!r}")
        if self.probe_calls < 2:
            raise ValueError(f"probe_calls must be >= 2 (a variance), got {self.probe_calls}")
        for name in ("lr", "temperature"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
        if not (isinstance(self.eta, (int, float)) and math.isfinite(self.eta)):
            raise ValueError(f"eta must be a finite number, got {self.eta!r}")


@dataclass(frozen=True)
class EstimatorSpec:
    """One encoder-gradient estimator of the study.

    Attributes:
        key: short name (``--estimators``).
        label: name in tables and plots.
        evaluations_per_sample: evaluations of :math:`f_x` one sample costs (the budget
            :math:`S` buys ``S // evaluations_per_sample`` samples).
        min_samples: the estimator's smallest ``num_samples``.
        biased: its expectation is not the true gradient.
        note: how it is configured.
    """

    key: str
    label: str
    evaluations_per_sample: int
    min_samples: int = 1
    biased: bool = False
    note: str = ""

    def num_samples(self, budget: int) -> int:
        """``num_samples`` for a budget of ``budget`` evaluations per datapoint."""
        return budget // self.evaluations_per_sample

    def estimate(
        self,
        f: Callable[[Tensor], Tensor],
        logits: Tensor,
        config: Config,
        generator: torch.Generator,
    ) -> GradientEstimate:
        """:math:`\\nabla_\\alpha \\sum_b \\mathbb E_{q}[f_{x_b}(z_b)]`, ``grad`` ``[B, K]``."""
        n = self.num_samples(config.samples)
        kw: dict[str, Any] = {"num_samples": n, "generator": generator, "batch_dims": 1}
        if self.key == "reinforce":
            return score_function(f, _posterior, logits, **kw)
        if self.key == "rloo":
            return rloo(f, _posterior, logits, **kw)
        if self.key == "disarm":
            return disarm(f, _posterior, logits, **kw)
        if self.key == "rebar":
            return rebar(
                f, _posterior, logits, temperature=config.temperature, eta=config.eta, **kw
            )
        if self.key == "gumbel":
            return gumbel_softmax(f, _posterior, logits, temperature=config.temperature, **kw)
        raise ValueError(f"unknown estimator {self.key!r}")  # pragma: no cover


def _posterior(logits: Tensor) -> Independent:
    return Independent(Bernoulli(logits=logits), 1)


ESTIMATORS: dict[str, EstimatorSpec] = {
    e.key: e
    for e in (
        EstimatorSpec("reinforce", "REINFORCE", 1, note="score function, no baseline"),
        EstimatorSpec("rloo", "RLOO", 1, min_samples=2, note="leave-one-out baseline"),
        EstimatorSpec("disarm", "DisARM", 2, note="S/2 antithetic pairs"),
        EstimatorSpec("rebar", "REBAR", 3, note="S/3 samples, 3 evaluations each"),
        EstimatorSpec(
            "gumbel",
            "Gumbel-softmax (biased)",
            1,
            biased=True,
            note="relaxed samples; decoder sees relaxed z inside the estimator",
        ),
    )
}
"""The estimators of the study, in display order."""


def check_budget(keys: Sequence[str], samples: int) -> None:
    """``ValueError`` unless every estimator in ``keys`` gets a whole number of samples.

    >>> check_budget(["rloo", "disarm", "rebar"], 12)
    >>> check_budget(["rebar"], 4)
    Traceback (most recent call last):
    ...
    ValueError: samples: REBAR needs a budget divisible by 3 (3 evaluations per sample), got 4
    """
    unknown = [k for k in keys if k not in ESTIMATORS]
    if unknown or not keys:
        raise ValueError(f"estimators: unknown {unknown}; expected some of {list(ESTIMATORS)}")
    for key in keys:
        spec = ESTIMATORS[key]
        e = spec.evaluations_per_sample
        if samples % e:
            raise ValueError(
                f"samples: {spec.label} needs a budget divisible by {e} ({e} evaluations per "
                f"sample), got {samples}"
            )
        if spec.num_samples(samples) < spec.min_samples:
            raise ValueError(
                f"samples: {spec.label} needs at least {spec.min_samples * e} evaluations per "
                f"datapoint, got {samples}"
            )


def objective(model: BinaryVAE, x: Tensor, logits: Tensor) -> Callable[[Tensor], Tensor]:
    """:math:`f`: samples ``[m, B, K]`` -> ELBO terms ``[m, B]``, model and encoder detached."""
    q = logits.detach()

    def f(z: Tensor) -> Tensor:
        return model.elbo_terms(x, z, q, detach=True)

    return f


def encoder_gradient(
    model: BinaryVAE,
    x: Tensor,
    logits: Tensor,
    spec: EstimatorSpec,
    config: Config,
    generator: torch.Generator,
) -> GradientEstimate:
    """The estimator's :math:`\\nabla_\\alpha \\sum_b \\mathcal L(x_b)` at ``logits = e(x)``."""
    return spec.estimate(objective(model, x, logits), logits.detach(), config, generator)


def train_step(
    model: BinaryVAE,
    optimizer: torch.optim.Optimizer,
    x: Tensor,
    spec: EstimatorSpec,
    config: Config,
    generator: torch.Generator,
) -> float:
    """One Adam step on the minibatch ``x``; returns the minibatch's sampled ELBO (mean).

    Encoder: ``alpha.backward(-grad / B)`` with the estimator's ``grad``; decoder and prior:
    autograd of :math:`-\\frac1B \\sum_b f_{x_b}(z_b)` with ``decoder_samples`` fresh
    :math:`z_b \\sim q` (mean over them).
    """
    optimizer.zero_grad(set_to_none=True)
    logits = model.encode(x)
    est = encoder_gradient(model, x, logits, spec, config, generator)
    batch = x.shape[0]
    logits.backward(-est.grad / batch)
    z = sample_posterior(logits, config.decoder_samples, generator)
    joint = model.log_joint(x, z)  # [d, B]; the encoder does not enter (z and q detached)
    (-joint.mean(0).sum() / batch).backward()
    optimizer.step()
    with torch.no_grad():
        elbo = joint - _bernoulli_log_prob(z, logits.detach())
    return float(elbo.mean())


def gradient_variance(
    model: BinaryVAE,
    x: Tensor,
    spec: EstimatorSpec,
    config: Config,
    generator: torch.Generator,
) -> float:
    """Variance of the encoder-logit gradient estimate across ``probe_calls`` calls, summed.

    .. math::

        V = \\sum_{b, k} \\widehat{\\operatorname{Var}}\\big[\\hat g_{bk}\\big],

    the estimate being exactly the training step's (same estimator and budget) at the current
    model, on the minibatch ``x``.
    """
    with torch.no_grad():
        logits = model.encode(x)
    grads = torch.stack(
        [
            encoder_gradient(model, x, logits, spec, config, generator).grad
            for _ in range(config.probe_calls)
        ]
    )
    return float(grads.double().var(0).sum())


# ---------------------------------------------------------------------------------------------
# one run, checkpointable
# ---------------------------------------------------------------------------------------------
def stream(seed: int, key: str, name: str) -> torch.Generator:
    """The generator of one random stream of one run (independent streams by name).

    ``key=""`` names a stream every estimator shares (the minibatch order): runs with the same
    seed see the same minibatches, a paired comparison.
    """
    return torch.Generator().manual_seed(zlib.crc32(f"discrete-vae/{seed}/{key}/{name}".encode()))


STREAMS = ("batches", "train", "probe", "eval")


@dataclass
class RunResult:
    """The record of one (estimator, seed) run.

    Attributes:
        key, seed: which run.
        eval_steps: steps at which the test ELBO was estimated (0 and every ``eval_every``).
        test_elbo: those estimates (``eval_samples`` samples per test digit).
        train_elbo: mean sampled training ELBO over the steps since the previous evaluation.
        probe_steps: steps at which the gradient variance was measured.
        variance: those variances (summed over the probe minibatch's logits).
        final_elbo, final_elbo_se: final test ELBO (``final_samples`` per digit) and its
            standard error.
        final_iwae, final_iwae_se: final importance-weighted bound (``iwae_k``) and its standard
            error over test digits.
        samples_per_step, evaluations_per_step: the estimator's ``num_samples`` and evaluations
            of :math:`f_x` per datapoint.
        train_seconds: wall time of the training steps alone.
        seconds: wall time of the run (with evaluations and probes).
    """

    key: str
    seed: int
    eval_steps: list[int] = field(default_factory=list)
    test_elbo: list[float] = field(default_factory=list)
    train_elbo: list[float] = field(default_factory=list)
    probe_steps: list[int] = field(default_factory=list)
    variance: list[float] = field(default_factory=list)
    final_elbo: float = float("nan")
    final_elbo_se: float = float("nan")
    final_iwae: float = float("nan")
    final_iwae_se: float = float("nan")
    samples_per_step: int = 0
    evaluations_per_step: int = 0
    train_seconds: float = 0.0
    seconds: float = 0.0

    def to_state(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> RunResult:
        return cls(**state)


def _due(step: int, every: int, last: int) -> bool:
    return step % every == 0 or step == last


def run_one(
    key: str,
    seed: int,
    config: Config,
    data: tuple[Tensor, Tensor],
    *,
    state: dict[str, Any] | None = None,
    save: Callable[[dict[str, Any]], None] | None = None,
    progress: Callable[[int], None] | None = None,
) -> RunResult:
    """Train one VAE with estimator ``key`` for ``config.steps`` steps.

    Args:
        key: an :data:`ESTIMATORS` key.
        seed: the model's initialisation and the random streams (minibatches shared by all
            estimators of a seed).
        config: the shared settings.
        data: ``(train, test)`` from :func:`load_binary_digits`.
        state: a mid-run state from ``save`` to continue from (same key, seed and config).
        save: called with the mid-run state every ``checkpoint_every`` steps.
        progress: called with the number of steps done since the last call.

    Returns:
        :class:`RunResult`.

    >>> data = load_binary_digits()
    >>> r = run_one("rloo", 0, Config(steps=2, samples=2, latents=4, hidden=0, eval_every=1,
    ...             probe_every=2, probe_calls=2, final_samples=2, iwae_k=2), data)
    >>> r.eval_steps, r.probe_steps, r.evaluations_per_step
    ([0, 1, 2], [0, 2], 2)
    """
    spec = ESTIMATORS[key]
    check_budget([key], config.samples)
    train, test = data
    torch_dtype = train.dtype
    model = BinaryVAE(config.latents, config.hidden, seed=seed, pixel_mean=train.mean(0)).to(
        torch_dtype
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    gens = {name: stream(seed, "" if name == "batches" else key, name) for name in STREAMS}
    probe_x = test[: config.probe_batch]
    result = RunResult(
        key,
        seed,
        samples_per_step=spec.num_samples(config.samples),
        evaluations_per_step=spec.num_samples(config.samples) * spec.evaluations_per_sample,
    )
    start_step, train_elbos = 0, []
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        for name, g in gens.items():
            g.set_state(state["generators"][name])
        result = RunResult.from_state(state["result"])
        start_step, train_elbos = int(state["step"]), list(state["train_elbos"])
    begin = time.perf_counter() - result.seconds
    last = config.steps

    def snapshot(step: int) -> dict[str, Any]:
        result.seconds = time.perf_counter() - begin
        return {
            "step": step,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "generators": {name: g.get_state() for name, g in gens.items()},
            "result": result.to_state(),
            "train_elbos": list(train_elbos),
        }

    for step in range(start_step, last + 1):
        if step > start_step or state is None:  # a resumed step was already measured
            if _due(step, config.probe_every, last):
                result.probe_steps.append(step)
                result.variance.append(
                    gradient_variance(model, probe_x, spec, config, gens["probe"])
                )
            if _due(step, config.eval_every, last):
                elbo = elbo_samples(model, test, config.eval_samples, gens["eval"])
                result.eval_steps.append(step)
                result.test_elbo.append(float(elbo.mean()))
                result.train_elbo.append(
                    float(np.mean(train_elbos)) if train_elbos else float("nan")
                )
                train_elbos = []
            if step > start_step and save is not None and step % config.checkpoint_every == 0:
                if step < last:
                    save(snapshot(step))
        if step == last:
            break
        idx = torch.randperm(train.shape[0], generator=gens["batches"])[: config.batch_size]
        t0 = time.perf_counter()
        train_elbos.append(train_step(model, optimizer, train[idx], spec, config, gens["train"]))
        result.train_seconds += time.perf_counter() - t0
        if progress is not None:
            progress(1)

    final = elbo_samples(model, test, config.final_samples, gens["eval"]).mean(0)
    iwae = iwae_bound(model, test, config.iwae_k, gens["eval"])
    n = test.shape[0]
    result.final_elbo = float(final.mean())
    result.final_elbo_se = float(final.std() / math.sqrt(n))
    result.final_iwae = float(iwae.mean())
    result.final_iwae_se = float(iwae.std() / math.sqrt(n))
    result.seconds = time.perf_counter() - begin
    return result


# ---------------------------------------------------------------------------------------------
# the study: every (estimator, seed), checkpointed
# ---------------------------------------------------------------------------------------------
class Checkpoint(RunCheckpoint):
    """Finished runs and mid-run states of one study (see :class:`stochgrad.checkpoint.RunCheckpoint`)."""

    result_type = RunResult


@dataclass
class Study:
    """The outcome of :func:`run_study`.

    Attributes:
        config: the shared settings.
        keys: the estimators, in display order.
        seeds: the seeds.
        runs: ``(key, seed) -> RunResult``.
        resumed: finished runs loaded from the checkpoint instead of run.
        continued: runs continued from a mid-run state.
        seconds: wall time of the work done now.
    """

    config: Config
    keys: list[str]
    seeds: list[int]
    runs: dict[tuple[str, int], RunResult]
    resumed: int = 0
    continued: int = 0
    seconds: float = 0.0

    def of(self, key: str) -> list[RunResult]:
        return [self.runs[(key, s)] for s in self.seeds]


def run_study(
    keys: Sequence[str],
    seeds: Sequence[int],
    config: Config,
    checkpoint: str | Path,
    *,
    resume: bool = False,
    data: tuple[Tensor, Tensor] | None = None,
    progress: Callable[[int], None] | None = None,
) -> Study:
    """Run every (estimator, seed) not already finished in the checkpoint.

    Args:
        keys: :data:`ESTIMATORS` keys.
        seeds: the seeds.
        config: shared settings.
        checkpoint: the checkpoint file; rewritten after every run and every
            ``checkpoint_every`` steps.
        resume: reuse finished runs and continue mid-run states from ``checkpoint`` (otherwise
            it is started afresh).
        data: ``(train, test)``; default :func:`load_binary_digits`.
        progress: called with steps done (for a progress bar; resumed steps count at once).

    Returns:
        :class:`Study`.
    """
    keys = list(dict.fromkeys(keys))
    check_budget(keys, config.samples)
    if not seeds:
        raise ValueError("seeds: expected at least one seed")
    data = load_binary_digits() if data is None else data
    ckpt = Checkpoint(checkpoint, config)
    if resume:
        ckpt.load()
    resumed = continued = 0
    start = time.perf_counter()
    for key in keys:
        for seed in seeds:
            if (key, seed) in ckpt.runs:
                resumed += 1
                if progress is not None:
                    progress(config.steps)
                continue
            state = ckpt.partial.get((key, seed))
            if state is not None:
                continued += 1
                if progress is not None:
                    progress(int(state["step"]))
            run = run_one(
                key,
                seed,
                config,
                data,
                state=state,
                save=lambda st, k=key, s=seed: ckpt.save_partial(k, s, st),
                progress=progress,
            )
            ckpt.add(run)
    ckpt.save()
    runs = {(k, s): ckpt.runs[(k, s)] for k in keys for s in seeds}
    return Study(config, keys, list(seeds), runs, resumed, continued, time.perf_counter() - start)


# ---------------------------------------------------------------------------------------------
# summaries, JSON, markdown, plot
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SummaryRow:
    """One estimator's line of the table (over seeds).

    Attributes:
        key, label: the estimator.
        samples: ``num_samples`` per step; evaluations: evaluations of :math:`f_x` per datapoint
            and step.
        elbo, elbo_sd: final test ELBO, mean and standard deviation over seeds.
        iwae, iwae_sd: final importance-weighted bound, mean and sd over seeds.
        log10_variance: mean over seeds and probes (step 0 excluded) of
            :math:`\\log_{10}` of the summed gradient variance.
        train_seconds: mean wall time of the training steps of one run.
        seconds: mean wall time of one run (with evaluations and probes).
        biased: the estimator is biased.
    """

    key: str
    label: str
    samples: int
    evaluations: int
    elbo: float
    elbo_sd: float
    iwae: float
    iwae_sd: float
    log10_variance: float
    train_seconds: float
    seconds: float
    biased: bool


def _sd(values: np.ndarray) -> float:
    return float(values.std(ddof=1)) if values.size > 1 else float("nan")


def _log10(values: Sequence[float]) -> np.ndarray:
    v = np.asarray(values, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(v > 0, np.log10(np.where(v > 0, v, 1.0)), np.nan)


def summarise(study: Study) -> list[SummaryRow]:
    """One :class:`SummaryRow` per estimator."""
    rows = []
    for key in study.keys:
        runs = study.of(key)
        spec = ESTIMATORS[key]
        elbo = np.array([r.final_elbo for r in runs])
        iwae = np.array([r.final_iwae for r in runs])
        logs = np.concatenate([_log10(r.variance[1:] if len(r.variance) > 1 else r.variance)
                               for r in runs])  # fmt: skip
        finite = logs[np.isfinite(logs)]
        rows.append(
            SummaryRow(
                key=key,
                label=spec.label,
                samples=runs[0].samples_per_step,
                evaluations=runs[0].evaluations_per_step,
                elbo=float(elbo.mean()),
                elbo_sd=_sd(elbo),
                iwae=float(iwae.mean()),
                iwae_sd=_sd(iwae),
                log10_variance=float(finite.mean()) if finite.size else float("nan"),
                train_seconds=float(np.mean([r.train_seconds for r in runs])),
                seconds=float(np.mean([r.seconds for r in runs])),
                biased=spec.biased,
            )
        )
    return rows


def _finite_or_none(value: float) -> float | None:
    return float(value) if math.isfinite(float(value)) else None


def to_json(study: Study, rows: Sequence[SummaryRow]) -> dict[str, Any]:
    """The study as plain JSON types: settings, the table and every run's curves."""
    return {
        "problem": {
            "data": f"sklearn load_digits, pixel > {PIXEL_THRESHOLD} of 16, "
            f"{TEST_SIZE} test digits (split seed {SPLIT_SEED})",
            "model": "q(z|x) = Bernoulli(enc(x)), p(z) = Bernoulli(sigmoid(learned logits)), "
            "p(x|z) = Bernoulli(dec(z))",
            "budget": f"{study.config.samples} evaluations of f per datapoint and step for the "
            "encoder estimator (REINFORCE/RLOO/Gumbel: S samples, DisARM: S/2 pairs, "
            "REBAR: S/3 samples)",
            "variance": "variance across probe_calls estimator calls of the encoder-logit "
            "gradient on the first probe_batch test digits, summed over the logits",
        },
        "config": asdict(study.config),
        "seeds": study.seeds,
        "summary": [
            {k: (_finite_or_none(v) if isinstance(v, float) else v) for k, v in asdict(r).items()}
            for r in rows
        ],
        "runs": [
            {
                k: (
                    [_finite_or_none(x) for x in v]
                    if k in ("test_elbo", "train_elbo", "variance")
                    else (_finite_or_none(v) if isinstance(v, float) else v)
                )
                for k, v in study.runs[(key, seed)].to_state().items()
            }
            for key in study.keys
            for seed in study.seeds
        ],  # fmt: skip
    }


def write_json(data: dict[str, Any], path: str | Path) -> Path:
    """Write ``data`` (from :func:`to_json`) to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1))
    return path


def _pm(mean: float, sd: float, digits: int = 2) -> str:
    return f"{mean:.{digits}f}" + ("" if math.isnan(sd) else f" ± {sd:.{digits}f}")


def table_rows(rows: Sequence[SummaryRow]) -> tuple[list[str], list[list[str]]]:
    """Header and cells of the summary table (shared by the terminal and the markdown)."""
    header = [
        "estimator",
        "samples / step",
        "f evals / datapoint / step",
        "test ELBO (± sd over seeds)",
        "test IWAE bound k (± sd)",
        "mean log10 Var",
        "train s / run",
        "total s / run",
    ]
    cells = [
        [
            r.label,
            str(r.samples),
            str(r.evaluations),
            _pm(r.elbo, r.elbo_sd),
            _pm(r.iwae, r.iwae_sd),
            "—" if math.isnan(r.log10_variance) else f"{r.log10_variance:.2f}",
            f"{r.train_seconds:.1f}",
            f"{r.seconds:.1f}",
        ]
        for r in rows
    ]
    return header, cells


def markdown_table(study: Study, rows: Sequence[SummaryRow]) -> str:
    """The summary as a markdown table with a one-line caption."""
    header, cells = table_rows(rows)
    header[4] = header[4].replace(" k ", f" k={study.config.iwae_k} ")
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|",
    ]
    lines += ["| " + " | ".join(c) + " |" for c in cells]
    c = study.config
    lines.append("")
    lines.append(
        f"{c.steps} Adam steps (lr {c.lr}, batch {c.batch_size}), K = {c.latents} latents, "
        f"hidden {c.hidden}, budget S = {c.samples}, seeds {study.seeds}; test ELBO with "
        f"{c.final_samples} samples per digit; Var = variance of the encoder-logit gradient "
        f"across {c.probe_calls} calls on {c.probe_batch} test digits, summed over logits, "
        f"every {c.probe_every} steps (step 0 excluded from the mean)."
    )
    return "\n".join(lines) + "\n"


def plot(study: Study, path: str | Path) -> Path:
    """Two panels against step: test ELBO, and log10 gradient variance (mean, ±1 sd band)."""
    from matplotlib.figure import Figure

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(13, 5.2), layout="constrained")
    ax_elbo, ax_var = fig.subplots(1, 2)
    for i, key in enumerate(study.keys):
        runs = study.of(key)
        color, label = f"C{i}", ESTIMATORS[key].label
        steps = np.array(runs[0].eval_steps)
        e = np.stack([r.test_elbo for r in runs])
        m, s = e.mean(0), e.std(0)
        ax_elbo.plot(steps, m, color=color, label=label, lw=1.5)
        ax_elbo.fill_between(steps, m - s, m + s, color=color, alpha=0.15, lw=0)
        psteps = np.array(runs[0].probe_steps)
        v = np.stack([_log10(r.variance) for r in runs])
        m, s = np.nanmean(v, 0), np.nanstd(v, 0)
        ax_var.plot(psteps, m, color=color, label=label, lw=1.5)
        ax_var.fill_between(psteps, m - s, m + s, color=color, alpha=0.15, lw=0)
    c = study.config
    ax_elbo.set_xlabel("step")
    ax_elbo.set_ylabel(f"test ELBO (nats, {c.eval_samples} samples per digit)")
    ax_elbo.set_title("Test ELBO")
    lo = min(
        float(np.min([r.test_elbo[min(1, len(r.test_elbo) - 1)] for r in study.runs.values()])),
        float(np.min([r.final_elbo for r in study.runs.values()])),
    )
    hi = float(np.max([np.max(r.test_elbo) for r in study.runs.values()]))
    pad = 0.05 * max(hi - lo, 1e-6)
    ax_elbo.set_ylim(lo - pad, hi + pad)
    ax_elbo.grid(True, alpha=0.3)
    ax_elbo.legend(loc="lower right", fontsize=9)
    ax_var.set_xlabel("step")
    ax_var.set_ylabel("log10 Var of the encoder-logit gradient (summed)")
    ax_var.set_title(f"Gradient variance ({c.probe_calls} calls on {c.probe_batch} test digits)")
    ax_var.grid(True, alpha=0.3)
    fig.suptitle(
        f"Binary VAE on sklearn digits: K = {c.latents}, hidden {c.hidden}, budget "
        f"{c.samples} f-evaluations per datapoint and step, {len(study.seeds)} seed(s), "
        "mean ± sd"
    )
    fig.savefig(path, dpi=110)
    return path


def paired_differences(study: Study, reference: str = "reinforce") -> dict[str, list[float]]:
    """Final test ELBO minus ``reference``'s, seed by seed (same initialisation and minibatches).

    Empty when ``reference`` did not run.
    """
    if reference not in study.keys:
        return {}
    ref = study.of(reference)
    return {
        key: [r.final_elbo - q.final_elbo for r, q in zip(study.of(key), ref, strict=True)]
        for key in study.keys
        if key != reference
    }
