"""Gradient estimators, all with the signature ``(f, dist_fn, params, *, num_samples, ...)``.

``GENERAL_ESTIMATORS`` holds the general-purpose three that :func:`estimate` chooses among;
``ALL_ESTIMATORS`` adds the discrete-variable estimators (biased ones are flagged ``biased=True``
in their results) for :func:`stochgrad.compare`.
"""

from stochgrad.estimators.arm import arm, disarm, rloo
from stochgrad.estimators.auto import GENERAL_ESTIMATORS, estimate
from stochgrad.estimators.measure_valued import measure_valued, register_weak_derivative
from stochgrad.estimators.pathwise import pathwise
from stochgrad.estimators.relaxed import (
    Relax,
    concrete_sample,
    gumbel_max,
    gumbel_softmax,
    rebar,
    relaxed_bernoulli_sample,
    straight_through,
    straight_through_bernoulli,
    straight_through_categorical,
)
from stochgrad.estimators.score import score_function, scores_per_sample

ALL_ESTIMATORS = {
    **GENERAL_ESTIMATORS,
    "rloo": rloo,
    "arm": arm,
    "disarm": disarm,
    "rebar": rebar,
    "gumbel_softmax": gumbel_softmax,
    "straight_through": straight_through,
}

__all__ = [
    "ALL_ESTIMATORS",
    "GENERAL_ESTIMATORS",
    "Relax",
    "arm",
    "concrete_sample",
    "disarm",
    "estimate",
    "gumbel_max",
    "gumbel_softmax",
    "measure_valued",
    "pathwise",
    "rebar",
    "register_weak_derivative",
    "relaxed_bernoulli_sample",
    "rloo",
    "score_function",
    "scores_per_sample",
    "straight_through",
    "straight_through_bernoulli",
    "straight_through_categorical",
]
