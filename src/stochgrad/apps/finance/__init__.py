r"""Option prices and Greeks by likelihood-ratio, pathwise and mixed Monte Carlo estimators.

The models are path laws, ``torch.distributions`` the core estimators accept
(:mod:`~stochgrad.apps.finance.laws`): :class:`GBMPaths` (geometric Brownian motion with a
dividend yield :math:`q`, exact in log space) and :class:`HestonPaths` (full-truncation Euler,
Lord, Koekkoek & van Dijk 2010). A draw is the whole path ``[n, steps + 1]`` on the dates
:math:`t_i = iT/m`, column 0 being the spot, so a Greek of any payoff of the path is one call of
a core estimator:

.. math:: \ln S_{t_{i+1}} = \ln S_{t_i} + (r - q - \tfrac12\sigma^2)\Delta t + \sigma\sqrt{\Delta t}\,Z_{i+1},

* likelihood ratio (``"lr"``): :func:`stochgrad.score_function` of the payoff under the law,
  whose score is registered in closed form with the core (e.g. :math:`\partial_{S_0}\ln p =
  Z_1/(S_0\sigma\sqrt{\Delta t})`; for Heston the score of the discretised scheme, w.r.t. the
  spot and :math:`v_0`);
* pathwise (``"pathwise"``): :func:`stochgrad.pathwise` of the payoff (``rsample`` is
  differentiable in every parameter); valid when the payoff is Lipschitz in the path: calls,
  puts, Asians and the bridge-weighted barrier; refused with a ``ValueError`` for the digital
  (pathwise derivative zero almost surely, the Greek is not) and the discretely monitored barrier;
* gamma as the likelihood ratio of a per-path delta :math:`h`: :math:`\Gamma = \mathbb
  E[h\,\partial_{S_0}\ln p + \partial_{S_0} h]`, :func:`stochgrad.score_function` of :math:`h`
  plus the explicit term, with :math:`h` the pathwise delta (``"mixed"``) or the
  likelihood-ratio delta (``"lr"``, the second-order weight :math:`\partial^2_{S_0}p/p`).

A payoff that depends on a parameter explicitly adds its derivative at the same paths: the
up-and-out call with a *continuously* monitored barrier :math:`H` is weighted by the
Brownian-bridge probability of no crossing between dates, exact for GBM (Glasserman 2004,
Sec. 6.4), which reads the spot (column 0) and :math:`\sigma`:

.. math::

    \mathbb P(\text{no crossing} \mid S_{t_i}, S_{t_{i+1}}) = 1 - \exp\Big(-\frac{2\ln(H/S_{t_i})
    \ln(H/S_{t_{i+1}})}{\sigma^2\Delta t}\Big), \qquad S_{t_i}, S_{t_{i+1}} < H,

so the payoff :math:`(S_T - K)^+ \prod_i (\cdot)` is unbiased for every number of dates
(``monitoring="bridge"``; ``"discrete"`` keeps its :math:`O(\sqrt{\Delta t})` bias). The payoffs
(:class:`Option`): European call and put, cash-or-nothing digital, arithmetic- and
geometric-average Asian calls, the up-and-out call; or one's own function of the path
(:class:`PathPayoff`). Under Heston: delta and gamma (LR, pathwise/mixed), vega
:math:`\partial V/\partial v_0` (LR, pathwise), rho (pathwise).

:func:`estimate_greeks` runs every valid ``(greek, method)`` on the same paths, chunk by chunk
(resumable), each :class:`GreekEstimate` carrying the run's
:class:`~stochgrad.gradient_estimate.GradientEstimate`. References are QuantLib's analytic
engines (:func:`quantlib_reference`): ``AnalyticEuropeanEngine`` (call, put, digital),
``AnalyticDiscreteGeometricAveragePriceAsianEngine``, ``AnalyticBarrierEngine`` and
``AnalyticHestonEngine`` (Greeks by central differences of their prices).

Modules: :mod:`~stochgrad.apps.finance.laws` (the path laws),
:mod:`~stochgrad.apps.finance.market` (models and contracts),
:mod:`~stochgrad.apps.finance.paths` (laws of a market, simulation),
:mod:`~stochgrad.apps.finance.payoffs`, :mod:`~stochgrad.apps.finance.terms` (the core
estimator calls of one chunk), :mod:`~stochgrad.apps.finance.greeks` (:func:`estimate_greeks`,
chunked and resumable), :mod:`~stochgrad.apps.finance.reference` (QuantLib). The command is
``stochgrad greeks`` (:mod:`stochgrad.cli.greeks`, on the study :mod:`stochgrad.studies.greeks`).

References:
    Broadie & Glasserman (1996), "Estimating security price derivatives using simulation",
    Management Science 42; Glasserman (2004), *Monte Carlo Methods in Financial Engineering*,
    Ch. 7 (and Sec. 6.4 for the bridge); Beaglehole, Dybvig & Zhou (1997), "Going to extremes";
    Broadie, Glasserman & Kou (1997), "A continuity correction for discrete barrier options",
    Mathematical Finance 7;
    Lord, Koekkoek & van Dijk (2010), "A comparison of biased simulation schemes for stochastic
    volatility models", Quantitative Finance 10.

>>> res = estimate_greeks(Option("call", 100.0), Market(100.0, 0.2, 0.05, 1.0), 20_000, seed=0)
>>> est = res.get("delta", "pathwise")
>>> abs(est.value - 0.6368) < 5 * est.stderr, est.gradient.method
(True, 'pathwise')
"""

from __future__ import annotations

from typing import Any

from stochgrad import _compat
from stochgrad.apps.finance.greeks import (
    ESTIMATORS,
    GREEKS,
    METHODS,
    GreekEstimate,
    GreeksResult,
    available_methods,
    estimate_greeks,
)
from stochgrad.apps.finance.laws import GBMPaths, HestonPaths
from stochgrad.apps.finance.market import MONITORING, PAYOFFS, Heston, Market, Option
from stochgrad.apps.finance.paths import gbm_law, gbm_paths, heston_law, heston_paths
from stochgrad.apps.finance.payoffs import barrier_survival, path_payoff, payoff
from stochgrad.apps.finance.reference import quantlib_reference
from stochgrad.apps.finance.terms import PathPayoff, lr_weights

__all__ = [
    "ESTIMATORS",
    "GREEKS",
    "METHODS",
    "MONITORING",
    "PAYOFFS",
    "GBMPaths",
    "GreekEstimate",
    "GreeksResult",
    "Heston",
    "HestonPaths",
    "Market",
    "Option",
    "PathPayoff",
    "available_methods",
    "barrier_survival",
    "estimate_greeks",
    "gbm_law",
    "gbm_paths",
    "heston_law",
    "heston_paths",
    "lr_weights",
    "path_payoff",
    "payoff",
    "quantlib_reference",
]

# the command-line functions moved to the command line's package (removed in the next release)
_MOVED = {
    "add_arguments": ("stochgrad.cli.greeks", "add_arguments"),
    "run": ("stochgrad.cli.greeks", "run"),
}


def __getattr__(name: str) -> Any:
    return _compat.moved_attribute(__name__, name, _MOVED)
