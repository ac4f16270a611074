"""Gradient estimators, all with the signature ``(f, dist_fn, params, *, num_samples, ...)``."""

from stochgrad.estimators.auto import ESTIMATORS, estimate
from stochgrad.estimators.measure_valued import measure_valued, register_weak_derivative
from stochgrad.estimators.pathwise import pathwise
from stochgrad.estimators.score import score_function, scores_per_sample

__all__ = [
    "ESTIMATORS",
    "estimate",
    "measure_valued",
    "pathwise",
    "register_weak_derivative",
    "score_function",
    "scores_per_sample",
]
