r"""Variance studies of the Gaussian gradient estimators: closed forms, quadrature, Monte Carlo.

Everything here concerns :math:`x \sim \mathcal N(\mu, \sigma^2)` and the gradient of
:math:`\mathbb E[f(x)]` with respect to :math:`(\mu, \sigma)`. For each estimator the quantity of
interest is the *single-sample variance*: the variance of one per-sample term (the terms whose
mean is the estimate; ``GradientEstimate.variance`` estimates it), one number per coordinate.

Three independent routes to that number:

* closed forms for :math:`f(x) = (x - a)^2` (:func:`quadratic_variance`; derivations in
  ``docs/variance.md``), with :math:`\delta = \mu - a`;
* one- and two-dimensional ``scipy.integrate.quad`` integrals for any smooth :math:`f`
  (:func:`quadrature_variance`), each variance as :math:`\mathbb E[(t - \mathbb E t)^2]`;
* Monte Carlo with the library's own estimators (:func:`monte_carlo`), together with the
  standard error of the variance estimate, :math:`\sqrt{(m_4 - v^2)/n}`.

The estimator keys (:data:`VARIANCE_ESTIMATORS`):

``score``
    score function without baseline, :math:`f(x)\, s_k(x)`;
``score_loo``
    score function with the leave-one-out baseline, :math:`(f(x_i) - \bar f_{-i})\, s_k(x_i)`;
``score_optimal``
    score function with the per-coordinate optimal baseline
    :math:`c_k = \mathbb E[f s_k^2] / \mathbb E[s_k^2]` (the library estimates it leave-one-out);
``pathwise``
    :math:`f'(x)\, \partial x / \partial\theta_k` with :math:`x = \mu + \sigma\epsilon`;
``measure_valued``
    coupled weak derivatives: :math:`\mu`: :math:`(f(\mu + \sigma W) - f(\mu - \sigma W)) /
    (\sigma\sqrt{2\pi})`, :math:`W \sim \mathrm{Weibull}(\sqrt 2, 2)`; :math:`\sigma`:
    :math:`(f(\mu + \sigma M) - f(\mu + \sigma M U)) / \sigma`, :math:`M` double-sided Maxwell,
    :math:`U \sim U[0, 1]`.

The scores are :math:`s_\mu = \epsilon / \sigma` and :math:`s_\sigma = (\epsilon^2 - 1)/\sigma`
with :math:`\epsilon = (x - \mu)/\sigma`.

References:
    Mohamed, Rosca, Figurnov, Mnih (2020, JMLR), "Monte Carlo Gradient Estimation in Machine
    Learning", Sec. 3 (the variance study of Figs. 2-3), Sec. 7 (optimal baseline).

>>> quadratic_variance("pathwise", delta=1.0, sigma=0.5)
(1.0, 6.0)
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from scipy import integrate
from torch import Tensor

from stochgrad.studies.scaffold import cell_generator, relative_difference  # noqa: F401 (re-exported)

VARIANCE_ESTIMATORS: tuple[str, ...] = (
    "score",
    "score_loo",
    "score_optimal",
    "pathwise",
    "measure_valued",
)
"""Estimator keys, in display order."""

COMPARE_ESTIMATORS: tuple[str, ...] = ("score", "score_optimal", "pathwise", "measure_valued")
"""The four estimators of Mohamed et al. (2020), Sec. 3."""

LABELS: dict[str, str] = {
    "score": "score function",
    "score_loo": "score fn + LOO baseline",
    "score_optimal": "score fn + optimal baseline",
    "pathwise": "pathwise",
    "measure_valued": "measure-valued (coupled)",
}
"""Human-readable estimator names."""

SHORT_LABELS: dict[str, str] = {
    "score": "SF",
    "score_loo": "SF+LOO",
    "score_optimal": "SF+opt",
    "pathwise": "PW",
    "measure_valued": "MVD",
}
"""Abbreviations for table headers."""

_SQRT_2PI = math.sqrt(2.0 * math.pi)


def _check_estimator(estimator: str, allowed: tuple[str, ...] = VARIANCE_ESTIMATORS) -> None:
    if estimator not in allowed:
        raise ValueError(f"estimator: expected one of {list(allowed)}, got {estimator!r}")


def _check_sigma(sigma: float) -> None:
    if not (math.isfinite(sigma) and sigma > 0):
        raise ValueError(f"sigma must be a positive finite number, got {sigma}")


# ---------------------------------------------------------------------------------------------
# closed forms for f(x) = (x - a)^2
# ---------------------------------------------------------------------------------------------
def quadratic_gradient(delta: float, sigma: float) -> tuple[float, float]:
    r"""True gradient of :math:`\mathbb E[(x-a)^2] = \delta^2+\sigma^2`: :math:`(2\delta, 2\sigma)`.

    >>> quadratic_gradient(1.0, 0.5)
    (2.0, 1.0)
    """
    _check_sigma(sigma)
    return 2.0 * delta, 2.0 * sigma


def quadratic_variance(
    estimator: str, delta: float, sigma: float, *, num_samples: int | None = None
) -> tuple[float, float]:
    r"""Closed-form single-sample variance, :math:`f(x) = (x-a)^2`, :math:`x\sim N(\mu,\sigma^2)`.

    With :math:`\delta = \mu - a` (derivations in ``docs/variance.md``):

    ==================  =============================  =================================
    estimator           mu                             sigma
    ==================  =============================  =================================
    score               d^4/s^2 + 14 d^2 + 15 s^2      2 d^4/s^2 + 60 d^2 + 74 s^2
    score_loo (limit)   8 d^2 + 10 s^2                 40 d^2 + 56 s^2
    score_optimal       8 d^2 + 6 s^2                  40 d^2 + 24 s^2
    pathwise            4 s^2                          4 d^2 + 8 s^2
    measure_valued      (16/pi - 4) d^2                4 d^2 + 4 s^2
    ==================  =============================  =================================

    (``d`` = :math:`\delta`, ``s`` = :math:`\sigma`.)

    Args:
        estimator: one of :data:`VARIANCE_ESTIMATORS`.
        delta: :math:`\mu - a`.
        sigma: the standard deviation, > 0.
        num_samples: for ``score_loo`` only: the batch size :math:`n` of the leave-one-out
            baseline. The per-term variance is then the limit plus
            :math:`\mathrm{Var}[f]\,\mathbb E[s_k^2]/(n-1)`, i.e. plus
            :math:`(4\delta^2 + 2\sigma^2, 8\delta^2 + 4\sigma^2)/(n-1)`. ``None`` gives the
            :math:`n \to \infty` limit, the variance of :math:`(f - \mathbb E f)\, s_k`. Ignored by
            the other estimators (``score_optimal`` is the limit; the library's leave-one-out
            estimate of :math:`c_k` adds :math:`O(1/n)`).

    Returns:
        ``(var_mu, var_sigma)``.

    >>> quadratic_variance("score", 0.0, 1.0)
    (15.0, 74.0)
    >>> quadratic_variance("score_loo", 0.0, 1.0, num_samples=3)
    (11.0, 58.0)
    """
    _check_estimator(estimator)
    _check_sigma(sigma)
    d2, s2 = float(delta) ** 2, float(sigma) ** 2
    if estimator == "score":
        return d2 * d2 / s2 + 14.0 * d2 + 15.0 * s2, 2.0 * d2 * d2 / s2 + 60.0 * d2 + 74.0 * s2
    if estimator == "score_loo":
        v_mu, v_sigma = 8.0 * d2 + 10.0 * s2, 40.0 * d2 + 56.0 * s2
        if num_samples is not None:
            if num_samples < 2:
                raise ValueError(f"num_samples must be >= 2 for 'score_loo', got {num_samples}")
            extra = (4.0 * d2 + 2.0 * s2) / (num_samples - 1)  # Var[f] E[s_mu^2] / (n - 1)
            v_mu, v_sigma = v_mu + extra, v_sigma + 2.0 * extra
        return v_mu, v_sigma
    if estimator == "score_optimal":
        return 8.0 * d2 + 6.0 * s2, 40.0 * d2 + 24.0 * s2
    if estimator == "pathwise":
        return 4.0 * s2, 4.0 * d2 + 8.0 * s2
    return (16.0 / math.pi - 4.0) * d2, 4.0 * d2 + 4.0 * s2


def quadratic_loo_sample_variance_mean(
    delta: float, sigma: float, num_samples: int
) -> tuple[float, float]:
    r"""Expected value of the *sample* variance of the :math:`n` leave-one-out terms of one batch.

    The LOO terms :math:`t_i = (f_i - \bar f_{-i}) s_i` are exchangeable but correlated:
    :math:`\mathrm{Cov}(t_i, t_j) = g_k^2/(n-1)^2` (:math:`g` the true gradient), so the unbiased
    sample variance (``GradientEstimate.variance``) has expectation
    :math:`\mathrm{Var}[t_i] - g_k^2/(n-1)^2`, with :math:`\mathrm{Var}[t_i]` from
    :func:`quadratic_variance` (``num_samples=n``).

    >>> quadratic_loo_sample_variance_mean(0.0, 1.0, 3)
    (11.0, 57.0)
    """
    v_mu, v_sigma = quadratic_variance("score_loo", delta, sigma, num_samples=num_samples)
    g_mu, g_sigma = quadratic_gradient(delta, sigma)
    c = 1.0 / (num_samples - 1) ** 2
    return v_mu - g_mu**2 * c, v_sigma - g_sigma**2 * c


# ---------------------------------------------------------------------------------------------
# objectives
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Objective:
    """A scalar test function with its derivative, as numpy and torch callables.

    Attributes:
        name: formula with ``k`` substituted, for tables.
        family: key of :data:`FAMILIES` (or ``"custom"``).
        k: the family parameter.
        f: ``float -> float`` (numpy-compatible), used by the quadratures.
        df: its derivative, used by the pathwise quadrature.
        torch_f: batched torch version ``[n] -> [n]``, differentiable, used by the estimators.
    """

    name: str
    family: str
    k: float
    f: Callable[[float], float]
    df: Callable[[float], float]
    torch_f: Callable[[Tensor], Tensor]


def quadratic(k: float) -> Objective:
    """:math:`f(x) = (x - k)^2`."""
    k = float(k)
    return Objective(
        f"(x - {k:g})^2",
        "quadratic",
        k,
        lambda x: (x - k) ** 2,
        lambda x: 2.0 * (x - k),
        lambda x: (x - k) ** 2,
    )


def gaussian_bump(k: float) -> Objective:
    """:math:`f(x) = \\exp(-k x^2)`."""
    k = float(k)
    return Objective(
        f"exp(-{k:.3g} x^2)",
        "exp",
        k,
        lambda x: np.exp(-k * x * x),
        lambda x: -2.0 * k * x * np.exp(-k * x * x),
        lambda x: torch.exp(-k * x * x),
    )


def cosine(k: float) -> Objective:
    """:math:`f(x) = \\cos(k x)`."""
    k = float(k)
    return Objective(
        f"cos({k:.3g} x)",
        "cos",
        k,
        lambda x: np.cos(k * x),
        lambda x: -k * np.sin(k * x),
        lambda x: torch.cos(k * x),
    )


@dataclass(frozen=True)
class Family:
    """A one-parameter family of objectives and the grid of ``k`` the study sweeps."""

    key: str
    label: str  # matplotlib mathtext
    make: Callable[[float], Objective]
    k_min: float
    k_max: float
    log_k: bool

    def grid(self, points: int) -> np.ndarray:
        """``points`` values of ``k``: evenly spaced (linear or logarithmic) from min to max."""
        if points < 1:
            raise ValueError(f"points must be >= 1, got {points}")
        if self.log_k:
            return np.geomspace(self.k_min, self.k_max, points)
        return np.linspace(self.k_min, self.k_max, points)


FAMILIES: dict[str, Family] = {
    "quadratic": Family("quadratic", r"$f(x) = (x-k)^2$", quadratic, -3.0, 3.0, False),
    "exp": Family("exp", r"$f(x) = \exp(-k x^2)$", gaussian_bump, 0.1, 10.0, True),
    "cos": Family("cos", r"$f(x) = \cos(k x)$", cosine, 0.5, 5.0, True),
}
"""The three families of Mohamed et al. (2020), Sec. 3, with their ``k`` ranges."""


# ---------------------------------------------------------------------------------------------
# quadrature
# ---------------------------------------------------------------------------------------------
TAIL = 14.0
"""Integration range in standard units: the Gaussian-weighted tails beyond it are below 1e-40."""

_EPSABS = 1e-15
_EPSREL = 1e-12
_LIMIT = 500
_ROUNDOFF = "The occurrence of roundoff error"


def _quad(fn: Callable[[float], float], lo: float, hi: float) -> float:
    # An integral that cancels to (nearly) zero cannot meet a relative tolerance: QUADPACK then
    # reports roundoff, and its answer is as good as the integrand's own rounding allows.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_ROUNDOFF, category=integrate.IntegrationWarning)
        value, _ = integrate.quad(fn, lo, hi, epsabs=_EPSABS, epsrel=_EPSREL, limit=_LIMIT)
    return float(value)


def _phi(e: float) -> float:
    return math.exp(-0.5 * e * e) / _SQRT_2PI


def normal_expectation(h: Callable[[float], float]) -> float:
    r""":math:`\mathbb E[h(\epsilon)]`, :math:`\epsilon \sim \mathcal N(0, 1)`, by ``quad`` on
    :math:`[-14, 0] \cup [0, 14]`.

    >>> round(normal_expectation(lambda e: e**4), 12)
    3.0
    """
    return sum(_quad(lambda e: h(e) * _phi(e), lo, hi) for lo, hi in ((-TAIL, 0.0), (0.0, TAIL)))


def rayleigh_expectation(h: Callable[[float], float]) -> float:
    r""":math:`\mathbb E[h(W)]`, :math:`W \sim \mathrm{Weibull}(\sqrt 2, 2)` (Rayleigh, density
    :math:`w e^{-w^2/2}` on :math:`w > 0`).

    >>> round(rayleigh_expectation(lambda w: w**2), 12)
    2.0
    """
    return _quad(lambda w: h(w) * w * math.exp(-0.5 * w * w), 0.0, TAIL)


def maxwell_uniform_expectation(h: Callable[[float, float], float]) -> float:
    r""":math:`\mathbb E[h(M, U)]`: :math:`M` double-sided Maxwell (density
    :math:`m^2 e^{-m^2/2}/\sqrt{2\pi}` on :math:`\mathbb R`), :math:`U \sim U[0,1]` independent;
    nested ``quad`` (inner over :math:`u`, outer over :math:`m`).

    >>> round(maxwell_uniform_expectation(lambda m, u: (m * u) ** 2), 12)
    1.0
    """

    def outer(m: float) -> float:
        return _quad(lambda u: h(m, u), 0.0, 1.0) * m * m * _phi(m)

    return sum(_quad(outer, lo, hi) for lo, hi in ((-TAIL, 0.0), (0.0, TAIL)))


class Moments(NamedTuple):
    """Mean, variance and fourth central moment (``nan`` unless asked) of one per-sample term."""

    mean: float
    var: float
    m4: float = float("nan")


def _moments(expect: Callable[[Callable], float], term: Callable, fourth: bool) -> Moments:
    """Two-pass central moments: no cancellation between raw moments."""
    mean = expect(term)
    var = expect(lambda *z: (term(*z) - mean) ** 2)
    m4 = expect(lambda *z: (term(*z) - mean) ** 4) if fourth else float("nan")
    return Moments(mean, var, m4)


def quadrature_moments(
    estimator: str, objective: Objective, mu: float, sigma: float, *, fourth: bool = False
) -> dict[str, Moments]:
    r"""Mean and single-sample variance of each coordinate's per-sample term, by quadrature.

    The mean is the true gradient (a check on the integrals); the variance is
    :math:`\mathbb E[(t - \mathbb E t)^2]`. ``score_loo`` is its :math:`n\to\infty` limit, the
    baseline :math:`\mathbb E f`; ``score_optimal`` uses :math:`c_k = \mathbb E[f s_k^2] /
    \mathbb E[s_k^2]` (:math:`\mathbb E[s_\mu^2] = 1/\sigma^2`, :math:`\mathbb E[s_\sigma^2] =
    2/\sigma^2`). The measure-valued :math:`\sigma` term is a two-dimensional integral over
    :math:`(M, U)`.

    With ``fourth=True`` also the fourth central moment :math:`m_4`, which sets the standard
    error of a measured variance, :math:`\sqrt{(m_4 - v^2)/n}`.

    Returns:
        ``{"mu": Moments, "sigma": Moments}``, each ``(mean, var, m4)``.
    """
    _check_estimator(estimator)
    _check_sigma(sigma)
    f, df = objective.f, objective.df
    mu, s = float(mu), float(sigma)

    def fx(e: float) -> float:
        return f(mu + s * e)

    scores = {"mu": lambda e: e / s, "sigma": lambda e: (e * e - 1.0) / s}
    score_sq_mean = {"mu": 1.0 / s**2, "sigma": 2.0 / s**2}
    out: dict[str, Moments] = {}
    if estimator.startswith("score"):
        mean_f = normal_expectation(fx) if estimator == "score_loo" else 0.0
        for name, sk in scores.items():
            if estimator == "score_optimal":
                b = normal_expectation(lambda e, sk=sk: fx(e) * sk(e) ** 2) / score_sq_mean[name]
            else:
                b = mean_f
            out[name] = _moments(
                normal_expectation, lambda e, sk=sk, b=b: (fx(e) - b) * sk(e), fourth
            )
        return out
    if estimator == "pathwise":
        out["mu"] = _moments(normal_expectation, lambda e: df(mu + s * e), fourth)
        out["sigma"] = _moments(normal_expectation, lambda e: df(mu + s * e) * e, fourth)
        return out
    c_mu = 1.0 / (s * _SQRT_2PI)
    out["mu"] = _moments(
        rayleigh_expectation, lambda w: c_mu * (f(mu + s * w) - f(mu - s * w)), fourth
    )
    out["sigma"] = _moments(
        maxwell_uniform_expectation, lambda m, u: (f(mu + s * m) - f(mu + s * m * u)) / s, fourth
    )
    return out


def quadrature_variance(
    estimator: str, objective: Objective, mu: float, sigma: float
) -> tuple[float, float]:
    """Single-sample variance ``(var_mu, var_sigma)`` by quadrature; see :func:`quadrature_moments`.

    Examples:
        >>> v = quadrature_variance("pathwise", quadratic(2.0), 1.0, 0.5)
        >>> [round(x, 10) for x in v]
        [1.0, 6.0]
    """
    m = quadrature_moments(estimator, objective, mu, sigma)
    return m["mu"][1], m["sigma"][1]


# ---------------------------------------------------------------------------------------------
# Monte Carlo with the library's estimators
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MonteCarlo:
    """One run of a library estimator: per coordinate ``(mu, sigma)`` as numpy arrays of 2.

    Attributes:
        grad: the gradient estimate.
        stderr: its standard error.
        variance: the measured single-sample variance (``GradientEstimate.variance``).
        variance_se: standard error of ``variance``, :func:`variance_standard_error`.
        num_samples: number of per-sample terms.
    """

    grad: np.ndarray
    stderr: np.ndarray
    variance: np.ndarray
    variance_se: np.ndarray
    num_samples: int


def variance_standard_error(per_sample: Tensor) -> Tensor:
    r"""Standard error of the sample variance along axis 0: :math:`\sqrt{(m_4 - v^2)/n}`.

    :math:`m_4` is the fourth central moment and :math:`v` the variance, both estimated from the
    same samples (large-:math:`n` formula).

    >>> variance_standard_error(torch.tensor([[0.0], [2.0]] * 50))  # two-point: m4 = v^2
    tensor([0.], dtype=torch.float64)
    """
    x = per_sample.to(torch.float64)
    n = x.shape[0]
    c = x - x.mean(0)
    v = (c * c).mean(0)
    m4 = (c**4).mean(0)
    return ((m4 - v * v).clamp_min(0.0) / n).sqrt()


def _dist_fn(th: Tensor) -> torch.distributions.Normal:
    return torch.distributions.Normal(th[0], th[1])


def run_estimator(
    estimator: str,
    f: Callable[[Tensor], Tensor],
    mu: float,
    sigma: float,
    *,
    num_samples: int,
    generator: torch.Generator | None = None,
):
    """Run one library estimator on ``N(mu, sigma^2)`` with ``params = [mu, sigma]`` (float64).

    Returns the :class:`~stochgrad.gradient_estimate.GradientEstimate`.
    """
    _check_estimator(estimator)
    import stochgrad as sg

    theta = torch.tensor([float(mu), float(sigma)], dtype=torch.float64)
    kwargs = {"num_samples": num_samples, "generator": generator}
    if estimator == "score":
        return sg.score_function(f, _dist_fn, theta, **kwargs)
    if estimator == "score_loo":
        return sg.score_function(f, _dist_fn, theta, baseline="loo", **kwargs)
    if estimator == "score_optimal":
        return sg.score_function(f, _dist_fn, theta, baseline="optimal", **kwargs)
    if estimator == "pathwise":
        return sg.pathwise(f, _dist_fn, theta, **kwargs)
    from stochgrad.estimators.weak_derivative import measure_valued

    return measure_valued(f, _dist_fn, theta, **kwargs)


def monte_carlo(
    estimator: str,
    f: Callable[[Tensor], Tensor],
    mu: float,
    sigma: float,
    *,
    num_samples: int,
    generator: torch.Generator | None = None,
) -> MonteCarlo:
    """Measured gradient, stderr, single-sample variance and its standard error.

    >>> mc = monte_carlo("pathwise", lambda x: (x - 2.0) ** 2, 1.0, 0.5, num_samples=1000,
    ...                  generator=torch.Generator().manual_seed(0))
    >>> mc.variance.shape
    (2,)
    """
    est = run_estimator(estimator, f, mu, sigma, num_samples=num_samples, generator=generator)
    per = est.per_sample.detach()
    return MonteCarlo(
        grad=est.grad.detach().numpy().astype(float),
        stderr=est.stderr.detach().numpy().astype(float),
        variance=est.variance.detach().numpy().astype(float),
        variance_se=variance_standard_error(per).numpy(),
        num_samples=est.num_samples,
    )
