"""Gradient estimators, all with the signature ``(f, dist_fn, params, *, num_samples, ...)``.

``GENERAL_ESTIMATORS`` holds the general-purpose three that :func:`estimate` chooses among;
``ALL_ESTIMATORS`` adds the discrete-variable estimators (biased ones are flagged ``biased=True``
in their results) for :func:`stochgrad.compare`.

Modules: :mod:`~stochgrad.estimators.score` (score function), :mod:`~.reparameterization`
(pathwise), :mod:`~.weak_derivative` (measure-valued), :mod:`~.discrete` (RLOO, ARM, DisARM),
:mod:`~.concrete` (Gumbel-max and Concrete samples), :mod:`~.relaxed` (the biased
Gumbel-softmax and straight-through estimators), :mod:`~.rebar_relax` (REBAR, RELAX),
:mod:`~.auto` (:func:`estimate`, the automatic choice).
"""

from typing import Any

from stochgrad import _compat
from stochgrad.estimators.auto import GENERAL_ESTIMATORS, estimate
from stochgrad.estimators.concrete import (
    concrete_sample,
    gumbel_max,
    relaxed_bernoulli_sample,
    straight_through_bernoulli,
    straight_through_categorical,
)
from stochgrad.estimators.discrete import arm, disarm, rloo
from stochgrad.estimators.rebar_relax import Relax, rebar
from stochgrad.estimators.relaxed import gumbel_softmax, straight_through
from stochgrad.estimators.reparameterization import pathwise
from stochgrad.estimators.score import score_function, scores_per_sample
from stochgrad.estimators.weak_derivative import measure_valued, register_weak_derivative

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

# renamed in 0.2 (removed in the next release)
_MOVED = {"ESTIMATORS": ("stochgrad.estimators", "GENERAL_ESTIMATORS")}


def __getattr__(name: str) -> Any:
    return _compat.moved_attribute(__name__, name, _MOVED)
