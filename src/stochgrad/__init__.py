"""stochgrad: gradients of expectations in PyTorch.

>>> import torch, stochgrad as sg
>>> theta = torch.tensor([0.5, 1.0])
>>> dist_fn = lambda th: torch.distributions.Normal(th[0], th[1])
>>> est = sg.score_function(lambda x: (x - 2.0) ** 2, dist_fn, theta,
...                         num_samples=1000, baseline="loo", seed=0)
>>> est.grad.shape
torch.Size([2])
"""

from stochgrad._core import black_box
from stochgrad.baselines import (
    Baseline,
    BatchMeanBaseline,
    ConstantBaseline,
    EMABaseline,
    LearnedBaseline,
    LeaveOneOutBaseline,
    NoBaseline,
    OptimalBaseline,
)
from stochgrad.control_variates import ControlVariate, DeltaMethod
from stochgrad.diagnostics import Comparison, ComparisonRow, compare
from stochgrad.estimate import GradientEstimate
from stochgrad.estimators import (
    ESTIMATORS,
    estimate,
    measure_valued,
    pathwise,
    register_weak_derivative,
    score_function,
)
from stochgrad.exact import exact_gradient

__version__ = "0.1.0"

__all__ = [
    "ESTIMATORS",
    "Baseline",
    "BatchMeanBaseline",
    "Comparison",
    "ComparisonRow",
    "ConstantBaseline",
    "ControlVariate",
    "DeltaMethod",
    "EMABaseline",
    "GradientEstimate",
    "LearnedBaseline",
    "LeaveOneOutBaseline",
    "NoBaseline",
    "OptimalBaseline",
    "black_box",
    "compare",
    "estimate",
    "exact_gradient",
    "measure_valued",
    "pathwise",
    "register_weak_derivative",
    "score_function",
]
