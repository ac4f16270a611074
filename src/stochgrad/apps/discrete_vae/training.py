r"""Training the binary VAE: the encoder's gradient from an estimator, at one budget.

The generative parameters :math:`(\theta, \pi)` of :class:`~.model.BinaryVAE` get the exact
gradient of a sampled ELBO (:math:`f_x` is differentiable in them; ``decoder_samples`` fresh
:math:`z \sim q` per datapoint, the same rule for every estimator). The encoder gets
:math:`\nabla_\alpha \sum_b \mathcal L(x_b)` with respect to its output logits
:math:`\alpha = e_\phi(x)` from a gradient estimator, pushed into :math:`\phi` by
``alpha.backward(-grad / B)``. Inside :math:`f_x` the encoder is detached: the explicit
dependence of :math:`-\log q_\phi` on :math:`\phi` contributes
:math:`-\mathbb E_q[\nabla_\phi \log q_\phi] = 0`.

The estimators (:data:`VAE_ESTIMATORS`) get the same budget of :math:`S` evaluations of
:math:`f_x` per datapoint and step (``Config.samples``): REINFORCE (no baseline) and RLOO draw
:math:`S` samples, DisARM :math:`S/2` antithetic pairs, REBAR :math:`S/3` samples (each costs
three evaluations: the hard sample and two relaxed ones) and Gumbel-softmax (biased) :math:`S`
relaxed samples. Each datapoint is its own problem (``batch_dims=1``): its samples are weighted
by its own :math:`f_x`, and the estimate is the gradient of the sum over the minibatch.

References:
    Mnih & Gregor (ICML 2014), "Neural variational inference and learning in belief networks";
    Tucker et al. (NeurIPS 2017), "REBAR"; Dong, Mnih, Tucker (NeurIPS 2020), "DisARM"; Kool,
    van Hoof, Welling (2019), "Buy 4 REINFORCE samples, get a baseline for free!"; Jang, Gu,
    Poole (ICLR 2017), "Categorical reparameterization with Gumbel-softmax".

>>> [VAE_ESTIMATORS[k].num_samples(12) for k in VAE_ESTIMATORS]
[12, 12, 6, 4, 12]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.distributions import Bernoulli, Independent

from stochgrad._checks import check_float, check_int, check_torch_generator
from stochgrad.apps.discrete_vae.model import (
    BinaryVAE,
    _bernoulli_log_prob,
    check_logits,
    check_model,
    check_pixels,
    sample_posterior,
)
from stochgrad.estimators import disarm, gumbel_softmax, rebar, rloo, score_function
from stochgrad.gradient_estimate import GradientEstimate

__all__ = [
    "VAE_ESTIMATORS",
    "Config",
    "EstimatorSpec",
    "check_budget",
    "encoder_gradient",
    "gradient_variance",
    "objective",
    "train_step",
]


# ---------------------------------------------------------------------------------------------
# the estimators, at one budget
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Config:
    """Settings of training (estimator, budget, model, optimiser) and of the study's schedule.

    Every run of a study shares them: a checkpoint is reused only with equal settings.

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

    >>> Config(samples=0)
    Traceback (most recent call last):
    ...
    ValueError: samples must be >= 1, got 0
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

    def __post_init__(self) -> None:
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
            "probe_batch",
            "checkpoint_every",
        ):
            check_int(name, getattr(self, name), minimum=1)
        check_int("hidden", self.hidden, minimum=0)
        check_int("probe_calls", self.probe_calls, minimum=2)  # a variance needs two
        check_float("lr", self.lr, minimum=0.0, open_min=True)
        check_float("temperature", self.temperature, minimum=0.0, open_min=True)
        check_float("eta", self.eta)


@dataclass(frozen=True)
class EstimatorSpec:
    """One encoder-gradient estimator of the study.

    Attributes:
        key: short name (``--estimators``).
        label: name in plots, the legend and the JSON.
        evaluations_per_sample: evaluations of :math:`f_x` one sample costs (the budget
            :math:`S` buys ``S // evaluations_per_sample`` samples).
        min_samples: the estimator's smallest ``num_samples``.
        biased: its expectation is not the true gradient.
        note: how it is configured.
        short: label in the terminal's table (at most 6 characters; ``label`` if empty).
    """

    key: str
    label: str
    evaluations_per_sample: int
    min_samples: int = 1
    biased: bool = False
    note: str = ""
    short: str = ""

    @property
    def table_label(self) -> str:
        """``short``, or ``label`` when no short label is set."""
        return self.short or self.label

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


VAE_ESTIMATORS: dict[str, EstimatorSpec] = {
    e.key: e
    for e in (
        EstimatorSpec("reinforce", "REINFORCE", 1, note="score function, no baseline", short="SF"),
        EstimatorSpec(
            "rloo", "RLOO", 1, min_samples=2, note="leave-one-out baseline", short="RLOO"
        ),
        EstimatorSpec("disarm", "DisARM", 2, note="S/2 antithetic pairs", short="DisARM"),
        EstimatorSpec("rebar", "REBAR", 3, note="S/3 samples, 3 evaluations each", short="REBAR"),
        EstimatorSpec(
            "gumbel",
            "Gumbel-softmax (biased)",
            1,
            biased=True,
            note="relaxed samples; decoder sees relaxed z inside the estimator",
            short="GS*",
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
    if isinstance(keys, str) or not isinstance(keys, Sequence):
        raise TypeError(f"keys must be a list of estimator names, got {type(keys).__name__}")
    samples = check_int("samples", samples, minimum=1)
    unknown = [k for k in keys if k not in VAE_ESTIMATORS]
    if unknown or not keys:
        raise ValueError(
            f"estimators (keys): unknown {unknown}; expected some of {list(VAE_ESTIMATORS)}"
        )
    for key in keys:
        spec = VAE_ESTIMATORS[key]
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
    x = check_pixels(check_model(model), x)
    logits = check_logits(model, logits, x.shape[0])
    if not isinstance(spec, EstimatorSpec):
        raise TypeError(
            f"spec must be an EstimatorSpec (see VAE_ESTIMATORS), got {type(spec).__name__}"
        )
    if not isinstance(config, Config):
        raise TypeError(f"config must be a Config, got {type(config).__name__}")
    check_torch_generator(generator)
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
