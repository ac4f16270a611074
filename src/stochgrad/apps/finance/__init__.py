r"""Option prices and Greeks by likelihood-ratio, pathwise and mixed Monte Carlo estimators.

Models. Geometric Brownian motion (:class:`Market`) is simulated exactly in log space on the
monitoring dates :math:`t_i = i\,\Delta t`, :math:`\Delta t = T/m`,

.. math:: \ln S_{t_{i+1}} = \ln S_{t_i} + (r - \tfrac12\sigma^2)\Delta t + \sigma\sqrt{\Delta t}\,Z_{i+1},

with :math:`m = 1` (terminal value only) for the payoffs that need only :math:`S_T`. Heston
(:class:`Heston`) uses the full-truncation Euler scheme of Lord, Koekkoek & van Dijk (2010) with
:math:`v^+ = \max(v, 0)`; its time-discretisation bias is :math:`O(\Delta t)` (measured against
QuantLib's ``AnalyticHestonEngine`` in ``docs/greeks.md``).

Payoffs (:class:`Option`): European call and put, cash-or-nothing digital call, arithmetic-average
Asian call (average of :math:`S_{t_1},\dots,S_{t_m}`), the geometric-average Asian call (closed
form, so it checks the multi-step simulation and weights), up-and-out call with a *continuously*
monitored barrier :math:`H`. The barrier is handled by the Brownian-bridge crossing probability
between monitoring dates, exact for GBM (Glasserman 2004, Sec. 6.4):

.. math::

    \mathbb P(\text{no crossing} \mid S_{t_i}, S_{t_{i+1}}) = 1 - \exp\Big(-\frac{2\ln(H/S_{t_i})
    \ln(H/S_{t_{i+1}})}{\sigma^2\Delta t}\Big), \qquad S_{t_i}, S_{t_{i+1}} < H,

so the simulated payoff :math:`(S_T - K)^+ \prod_i (\cdot)` is unbiased for every :math:`m`
(``monitoring="bridge"``). ``monitoring="discrete"`` (knock out only if a monitoring date is at
or above :math:`H`) is kept to show its bias, which is of order :math:`\sqrt{\Delta t}`.

Greeks of :math:`V = e^{-rT}\,\mathbb E[f(S)]` (:func:`estimate_greeks`), each per path so that
the mean, the standard error and a 95% confidence interval come together:

* likelihood ratio (``"lr"``): :math:`\partial_\theta V = e^{-rT}\mathbb E[f\,\partial_\theta
  \ln p(S;\theta)]` with the score of the log-normal path density written out by hand (vectorised,
  for speed: a few passes over the paths; the weights are what :func:`stochgrad.score_function`
  computes on the log-normal density, see the tests), e.g. for the first step :math:`\partial_{S_0}\ln p = Z_1/(S_0\sigma\sqrt{\Delta t})`,
  :math:`\partial_\sigma \ln p = \sum_i [(Z_i^2 - 1)/\sigma - Z_i\sqrt{\Delta t}]`,
  :math:`\partial_r \ln p = \sqrt{\Delta t}\sum_i Z_i/\sigma`, and for gamma the second-order
  weight :math:`\partial^2_{S_0} p / p = (Z_1^2 - 1)/(S_0^2\sigma^2\Delta t) - Z_1/(S_0^2\sigma
  \sqrt{\Delta t})`. A payoff that depends on a parameter explicitly (the bridge factor depends on
  :math:`S_0` and :math:`\sigma`) adds its own derivative (:math:`\mathbb E[\partial_\theta f +
  f\,w]`, and :math:`\mathbb E[\partial^2 f + 2\,\partial f\,w_1 + f\,w_2]` for gamma);
* pathwise (``"pathwise"``): :math:`\partial_\theta V = \mathbb E[\partial_\theta (e^{-rT}
  f(S(\theta, Z)))]`, per path by forward-mode autodiff (``torch.func.jvp``). Valid when
  :math:`f` is Lipschitz in the path: calls, puts, Asians and the bridge-weighted barrier (its
  factor vanishes continuously as :math:`S \to H`); refused with a ``ValueError`` for the digital
  (pathwise derivative zero almost surely, the Greek is not) and for the discretely monitored
  barrier (the pathwise derivative misses the knock-out jump: biased);
* mixed LR-pathwise gamma (``"mixed"``): the likelihood ratio applied to the pathwise delta
  :math:`h(S; S_0)`, :math:`\Gamma = \mathbb E[h\,\partial_{S_0}\ln p + \partial_{S_0} h|_S]`,
  which for GBM payoffs of the path only is :math:`\mathbb E[h\,(\partial_{S_0}\ln p - 1/S_0)]`.

Under Heston the estimators are: delta and gamma by LR (the first log-price step is Gaussian given
the variance noise, with standard deviation :math:`\sqrt{(1-\rho^2)v_0\Delta t}`), pathwise delta,
mixed gamma, pathwise rho.

References are QuantLib's analytic engines (:func:`quantlib_reference`): ``AnalyticEuropeanEngine``
(call, put, digital), ``AnalyticDiscreteGeometricAveragePriceAsianEngine`` (geometric Asian),
``AnalyticBarrierEngine`` (continuous barrier; Greeks by central
differences of its price), ``AnalyticHestonEngine`` (Greeks by central differences).

Modules: :mod:`~stochgrad.apps.finance.market` (models and contracts),
:mod:`~stochgrad.apps.finance.paths` (simulation), :mod:`~stochgrad.apps.finance.payoffs`,
:mod:`~stochgrad.apps.finance.terms` (per-path terms of each estimator),
:mod:`~stochgrad.apps.finance.greeks` (:func:`estimate_greeks`, chunked and resumable),
:mod:`~stochgrad.apps.finance.reference` (QuantLib). The command is ``stochgrad greeks``
(:mod:`stochgrad.cli.greeks`, on the study :mod:`stochgrad.studies.greeks`).

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
>>> abs(est.value - 0.6368) < 5 * est.stderr
True
"""

from __future__ import annotations

from typing import Any

from stochgrad import _compat
from stochgrad.apps.finance.greeks import (
    GREEKS,
    METHODS,
    GreekEstimate,
    GreeksResult,
    available_methods,
    estimate_greeks,
)
from stochgrad.apps.finance.market import MONITORING, PAYOFFS, Heston, Market, Option
from stochgrad.apps.finance.paths import gbm_paths, heston_paths
from stochgrad.apps.finance.payoffs import barrier_survival, payoff
from stochgrad.apps.finance.reference import quantlib_reference
from stochgrad.apps.finance.terms import lr_weights

__all__ = [
    "GREEKS",
    "METHODS",
    "MONITORING",
    "PAYOFFS",
    "GreekEstimate",
    "GreeksResult",
    "Heston",
    "Market",
    "Option",
    "available_methods",
    "barrier_survival",
    "estimate_greeks",
    "gbm_paths",
    "heston_paths",
    "lr_weights",
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
