r"""A binary-latent VAE (sigmoid belief network) on scikit-learn's digits: the domain library.

The model (:mod:`~.model`), for an 8 x 8 binarised digit :math:`x \in \{0, 1\}^{64}` and
:math:`K` binary latents:

.. math::

    q_\phi(z \mid x) = \mathrm{Bernoulli}(\sigma(e_\phi(x))), \qquad
    p(z) = \mathrm{Bernoulli}(\sigma(\pi)), \qquad
    p_\theta(x \mid z) = \mathrm{Bernoulli}(\sigma(d_\theta(z))),

its ELBO, importance-weighted bound and, for small :math:`K`, exact ELBO and :math:`\log p(x)`
by enumeration. Training (:mod:`~.training`): the encoder's gradient comes from one of the
estimators of :data:`VAE_ESTIMATORS` at a common budget of evaluations per datapoint
(:func:`encoder_gradient`, :func:`train_step`, :func:`gradient_variance`). The data
(:mod:`~.data`) are the shared digits loader in ``float32``.

The experiment that trains one VAE per (estimator, seed) is
:mod:`stochgrad.studies.discrete_vae` (``stochgrad discrete-vae``); its names imported from here
(``run_study``, ``run_one``, ``Study``, ...) keep working for one release, with a warning.

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

from typing import Any

from stochgrad import _compat
from stochgrad.apps.discrete_vae.data import (
    PIXEL_THRESHOLD,
    SPLIT_SEED,
    TEST_SIZE,
    load_binary_digits,
)
from stochgrad.apps.discrete_vae.model import (
    MAX_ENUMERATION_LATENTS,
    PIXELS,
    BinaryVAE,
    elbo_samples,
    exact_elbo,
    exact_log_likelihood,
    iwae_bound,
    latent_states,
    sample_posterior,
)
from stochgrad.apps.discrete_vae.training import (
    VAE_ESTIMATORS,
    Config,
    EstimatorSpec,
    check_budget,
    encoder_gradient,
    gradient_variance,
    objective,
    train_step,
)

__all__ = [
    "MAX_ENUMERATION_LATENTS",
    "PIXELS",
    "PIXEL_THRESHOLD",
    "SPLIT_SEED",
    "TEST_SIZE",
    "VAE_ESTIMATORS",
    "BinaryVAE",
    "Config",
    "EstimatorSpec",
    "check_budget",
    "elbo_samples",
    "encoder_gradient",
    "exact_elbo",
    "exact_log_likelihood",
    "gradient_variance",
    "iwae_bound",
    "latent_states",
    "load_binary_digits",
    "objective",
    "sample_posterior",
    "train_step",
]

_STUDY = "stochgrad.studies.discrete_vae"
_MOVED: dict[str, tuple[str, str]] = {
    "ESTIMATORS": (__name__, "VAE_ESTIMATORS"),
    **{
        name: (_STUDY, name)
        for name in (
            "STREAMS",
            "Checkpoint",
            "RunResult",
            "Study",
            "SummaryRow",
            "paired_differences",
            "run_one",
            "run_study",
            "stream",
            "summarise",
        )
    },
}


def __getattr__(name: str) -> Any:
    """The study's names, and ``ESTIMATORS``, moved in this release (a warning, then the name)."""
    return _compat.moved_attribute(__name__, name, _MOVED)
