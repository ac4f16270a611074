r"""The binary-latent VAE (a sigmoid belief network) and its bounds: ELBO, IWAE, exact.

For an 8 x 8 binarised digit :math:`x \in \{0, 1\}^{64}` and :math:`K` binary latents:

.. math::

    q_\phi(z \mid x) = \mathrm{Bernoulli}(\sigma(e_\phi(x))), \qquad
    p(z) = \mathrm{Bernoulli}(\sigma(\pi)), \qquad
    p_\theta(x \mid z) = \mathrm{Bernoulli}(\sigma(d_\theta(z))),

with :math:`e_\phi` and :math:`d_\theta` one-hidden-layer ``tanh`` networks (linear with
``hidden=0``) and learned prior logits :math:`\pi`. The ELBO is
:math:`\mathcal L(x) = \mathbb E_{q_\phi(z \mid x)}[f_x(z)]` with
:math:`f_x(z) = \log p_\theta(x \mid z) + \log p(z) - \log q_\phi(z \mid x)`; the
importance-weighted bound (Burda et al. 2016)

.. math::

    \mathcal L_k(x) = \mathbb E\Big[\log \frac1k \sum_{i=1}^k
        \frac{p_\theta(x, z_i)}{q_\phi(z_i \mid x)}\Big], \qquad
    \mathcal L(x) \le \mathcal L_k(x) \le \log p(x).

For small :math:`K` both bounds and :math:`\log p(x)` are computed exactly by enumerating the
:math:`2^K` latent states (:func:`exact_elbo`, :func:`exact_log_likelihood`).

References:
    Neal (1992), "Connectionist learning of belief networks"; Kingma & Welling (ICLR 2014);
    Mnih & Gregor (ICML 2014); Burda, Grosse, Salakhutdinov (ICLR 2016), "Importance weighted
    autoencoders".

>>> model = BinaryVAE(latents=3, hidden=0, seed=0)
>>> exact_elbo(model, torch.ones(2, 64)).shape
torch.Size([2])
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Bernoulli, Independent

from stochgrad._checks import check_int, check_seed, check_torch_generator

__all__ = [
    "MAX_ENUMERATION_LATENTS",
    "PIXELS",
    "BinaryVAE",
    "elbo_samples",
    "exact_elbo",
    "exact_log_likelihood",
    "iwae_bound",
    "latent_states",
    "sample_posterior",
]

PIXELS = 64
"""Pixels of one digit (8 x 8)."""

MAX_ENUMERATION_LATENTS = 16
"""Largest number of latents :func:`exact_elbo` and :func:`exact_log_likelihood` enumerate."""

MAX_PARAMETERS = 2**28
"""Most weights of one :class:`BinaryVAE` (1 GB of float32)."""

MAX_DRAWS = 2**28
"""Most latent values one call draws (``num_samples x B x K``; ``k x B x K`` for the IWAE)."""


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
        latents = check_int("latents", latents, minimum=1, maximum=MAX_PARAMETERS)
        hidden = check_int("hidden", hidden, minimum=0, maximum=MAX_PARAMETERS)
        pixels = check_int("pixels", pixels, minimum=1, maximum=MAX_PARAMETERS)
        seed = check_seed("seed", seed)
        width = hidden if hidden else latents
        weights = 2 * (pixels + latents) * width
        if weights > MAX_PARAMETERS:
            raise ValueError(
                f"latents, hidden and pixels: {latents}, {hidden} and {pixels} make {weights} "
                f"weights, more than MAX_PARAMETERS = {MAX_PARAMETERS}"
            )
        if pixel_mean is not None:
            pixel_mean = _check_values(
                "pixel_mean", pixel_mean, (pixels,), low=0.0, high=1.0, device=torch.device("cpu")
            )
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


def check_model(model: Any) -> BinaryVAE:
    """``model`` if it is a :class:`BinaryVAE`; ``TypeError`` naming it otherwise."""
    if not isinstance(model, BinaryVAE):
        raise TypeError(f"model must be a BinaryVAE, got {type(model).__name__}")
    return model


def _check_values(
    name: str,
    t: Any,
    shape: tuple[int | None, ...],
    *,
    low: float = -math.inf,
    high: float = math.inf,
    binary: bool = False,
    device: torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> Tensor:
    """``t`` if it is a real tensor of ``shape`` (``None``: any positive size) with values in
    ``[low, high]`` (0/1 with ``binary``), not NaN, on ``device`` (of ``dtype``); errors name
    ``name``."""
    if not isinstance(t, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.is_complex() or t.dtype == torch.bool or not (binary or t.is_floating_point()):
        raise TypeError(f"{name} must be a real floating-point tensor, got dtype {t.dtype}")
    if device is not None and t.device != device:
        raise ValueError(f"{name} must be on the model's device ({device}), got {t.device}")
    if dtype is not None and t.dtype != dtype:
        raise TypeError(f"{name} must have the model's dtype ({dtype}), got {t.dtype}")
    if t.dim() != len(shape) or any(
        (want is None and got < 1) or (want is not None and got != want)
        for got, want in zip(t.shape, shape, strict=True)
    ):
        want_text = ", ".join("n" if w is None else str(w) for w in shape)
        raise ValueError(f"{name} must have shape [{want_text}], got {list(t.shape)}")
    if binary:
        if not bool(((t == 0) | (t == 1)).all()):
            raise ValueError(f"{name} must hold binary pixels, 0 or 1")
    elif not bool(((t >= low) & (t <= high)).all()):
        raise ValueError(f"{name} must hold numbers in [{low}, {high}] (no NaN)")
    return t


def check_pixels(model: BinaryVAE, x: Any) -> Tensor:
    """``x`` as ``[B, pixels]`` binary data on the model's device (the model's dtype)."""
    dtype = model.prior_logits.dtype
    x = _check_values("x", x, (None, model.pixels), binary=True, device=model.prior_logits.device)
    return x.to(dtype)


def check_logits(model: BinaryVAE, logits: Any, batch: int) -> Tensor:
    """``logits`` as ``[B, K]`` finite encoder logits on the model's device."""
    shape, p = (batch, model.latents), model.prior_logits
    big = torch.finfo(p.dtype).max
    return _check_values(
        "logits", logits, shape, low=-big, high=big, device=p.device, dtype=p.dtype
    )


def sample_posterior(logits: Tensor, num_samples: int, generator: torch.Generator) -> Tensor:
    """``[n, B, K]`` exact samples ``1[u < sigmoid(logits)]`` of :math:`q(z \\mid x)` (no gradient)."""
    if not isinstance(logits, Tensor) or not logits.is_floating_point():
        raise TypeError(
            f"logits must be a floating-point tensor, got {getattr(logits, 'dtype', type(logits).__name__)}"
        )
    num_samples = check_int("num_samples", num_samples, minimum=1)
    if num_samples * logits.numel() > MAX_DRAWS:
        raise ValueError(
            f"num_samples = {num_samples} draws of {logits.numel()} latents exceed the limit of "
            f"{MAX_DRAWS} values; draw fewer"
        )
    check_torch_generator(generator)
    if logits.device != generator.device:
        raise ValueError(
            f"logits must be on the generator's device ({generator.device}), got {logits.device}"
        )
    if bool(logits.isnan().any()):
        raise ValueError("logits must not be NaN (+-inf: a probability of 1 or 0)")
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
    check_model(model)
    x = check_pixels(model, x)
    k = check_int("k", k, minimum=1)
    chunk = min(check_int("chunk", chunk, minimum=1), x.shape[0])
    if k * min(chunk, x.shape[0]) * model.latents > MAX_DRAWS:
        raise ValueError(
            f"k * chunk * latents = {k} * {min(chunk, x.shape[0])} * {model.latents} latent values "
            f"exceed the limit of {MAX_DRAWS}; use a smaller k or chunk"
        )
    check_torch_generator(generator)
    out = []
    for xs in x.split(chunk):
        f = elbo_samples(model, xs, k, generator)
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
    x = check_pixels(check_model(model), x)
    if logits is not None:
        logits = check_logits(model, logits, x.shape[0])
    z = latent_states(model.latents, x.dtype).unsqueeze(1)  # [2^K, 1, K]
    q = model.encode(x) if logits is None else logits
    log_q = _bernoulli_log_prob(z, q)  # [2^K, B]
    return (log_q.exp() * (model.log_joint(x, z) - log_q)).sum(0)


@torch.no_grad()
def exact_log_likelihood(model: BinaryVAE, x: Tensor) -> Tensor:
    r""":math:`\log p(x) = \log \sum_z p(x \mid z)\, p(z)` by enumeration, ``[B]`` (``K <= 16``)."""
    x = check_pixels(check_model(model), x)
    z = latent_states(model.latents, x.dtype).unsqueeze(1)
    return torch.logsumexp(model.log_joint(x, z), 0)
