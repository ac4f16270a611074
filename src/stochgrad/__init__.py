"""stochgrad: gradients of expectations in PyTorch.

>>> import torch, stochgrad as sg
>>> theta = torch.tensor([0.5, 1.0])
>>> dist_fn = lambda th: torch.distributions.Normal(th[0], th[1])
>>> est = sg.score_function(lambda x: (x - 2.0) ** 2, dist_fn, theta,
...                         num_samples=1000, baseline="loo", seed=0)
>>> est.grad.shape
torch.Size([2])
"""

from typing import Any

from stochgrad import _compat
from stochgrad._core import black_box
from stochgrad._dists import register_sampler, register_score
from stochgrad.baselines import (
    Baseline,
    BatchMeanBaseline,
    ConstantBaseline,
    EMABaseline,
    GroupNormalizedBaseline,
    LearnedBaseline,
    LeaveOneOutBaseline,
    NoBaseline,
    OptimalBaseline,
    gae,
    reward_to_go,
)
from stochgrad.control_variates import ControlVariate, DeltaMethod
from stochgrad.diagnostics import Comparison, ComparisonRow, compare
from stochgrad.estimators import (
    ALL_ESTIMATORS,
    GENERAL_ESTIMATORS,
    Relax,
    arm,
    concrete_sample,
    disarm,
    estimate,
    gumbel_max,
    gumbel_softmax,
    measure_valued,
    pathwise,
    rebar,
    register_weak_derivative,
    relaxed_bernoulli_sample,
    rloo,
    score_function,
    straight_through,
    straight_through_bernoulli,
    straight_through_categorical,
)
from stochgrad.exact import exact_gradient
from stochgrad.fisher import fisher_gradient
from stochgrad.gradient_estimate import GradientEstimate, SingleSampleWarning
from stochgrad.graph import StochasticGraph, TrackedTensor, magic_box
from stochgrad.surrogate import Surrogate, per_sample_gradients, surrogate_loss

__version__ = "0.2.0"

_compat.install()

# renamed in 0.2; the old names work, with a DeprecationWarning, until the next release
_MOVED = {"ESTIMATORS": ("stochgrad.estimators", "GENERAL_ESTIMATORS")}


def __getattr__(name: str) -> Any:
    return _compat.moved_attribute(__name__, name, _MOVED)


__all__ = [
    "ALL_ESTIMATORS",
    "GENERAL_ESTIMATORS",
    "Relax",
    "StochasticGraph",
    "TrackedTensor",
    "arm",
    "concrete_sample",
    "disarm",
    "gumbel_max",
    "gumbel_softmax",
    "magic_box",
    "rebar",
    "relaxed_bernoulli_sample",
    "rloo",
    "straight_through",
    "straight_through_bernoulli",
    "straight_through_categorical",
    "Baseline",
    "BatchMeanBaseline",
    "Comparison",
    "ComparisonRow",
    "ConstantBaseline",
    "ControlVariate",
    "DeltaMethod",
    "EMABaseline",
    "GradientEstimate",
    "GroupNormalizedBaseline",
    "Surrogate",
    "LearnedBaseline",
    "LeaveOneOutBaseline",
    "NoBaseline",
    "OptimalBaseline",
    "SingleSampleWarning",
    "black_box",
    "compare",
    "estimate",
    "exact_gradient",
    "fisher_gradient",
    "gae",
    "measure_valued",
    "pathwise",
    "per_sample_gradients",
    "register_sampler",
    "register_score",
    "register_weak_derivative",
    "reward_to_go",
    "score_function",
    "surrogate_loss",
]
