"""Closed forms vs quadrature (tight), quadrature vs the library's estimators (statistical)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from stochgrad.studies import variance as S

QUAD_POINTS = [(0.0, 1.0), (1.0, 0.5), (-2.0, 5.0), (3.0, 0.1), (0.3, 2.0)]
TARGET = 0.7  # a in f(x) = (x - a)^2; mu = a + delta


pytestmark = pytest.mark.usefixtures("one_thread")


# ---------------------------------------------------------------------------------------------
# closed forms vs quadrature
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("estimator", S.VARIANCE_ESTIMATORS)
@pytest.mark.parametrize(("delta", "sigma"), QUAD_POINTS)
def test_closed_form_matches_quadrature(estimator, delta, sigma):
    moments = S.quadrature_moments(estimator, S.quadratic(TARGET), TARGET + delta, sigma)
    closed = S.quadratic_variance(estimator, delta, sigma)
    grad = S.quadratic_gradient(delta, sigma)
    scale = delta**2 + sigma**2
    for i, coord in enumerate(("mu", "sigma")):
        mean, var, _ = moments[coord]
        assert mean == pytest.approx(grad[i], rel=1e-8, abs=1e-10 * scale)  # unbiased terms
        if closed[i] == 0.0:  # measure-valued mu at delta = 0: the coupled difference vanishes
            assert abs(var) < 1e-20 * scale**2
        else:
            assert var == pytest.approx(closed[i], rel=1e-8)


def test_closed_form_table_values():
    """The table in docs/variance.md at delta = 1, sigma = 0.5 (numbers computed by hand)."""
    expected = {
        "score": (21.75, 86.5),
        "score_loo": (10.5, 54.0),
        "score_optimal": (9.5, 46.0),
        "pathwise": (1.0, 6.0),
        "measure_valued": (16 / math.pi - 4, 5.0),
    }
    for est, values in expected.items():
        assert S.quadratic_variance(est, 1.0, 0.5) == pytest.approx(values, rel=1e-12)


def test_loo_limit_is_variance_of_centred_term():
    """As n -> infinity the LOO formula tends to Var[(f - E f) s], the quadrature's score_loo."""
    limit = S.quadratic_variance("score_loo", 1.0, 0.5)
    assert S.quadratic_variance("score_loo", 1.0, 0.5, num_samples=10**9) == pytest.approx(
        limit, rel=1e-8
    )


@pytest.mark.parametrize(("delta", "sigma"), [(0.0, 1.0), (1.0, 0.5)])
def test_optimal_baseline_is_minimal_constant(delta, sigma):
    """No constant baseline does better than c_k = E[f s_k^2] / E[s_k^2]; LOO (c = E f) is worse."""
    obj = S.quadratic(TARGET)
    opt = S.quadratic_variance("score_optimal", delta, sigma)
    loo = S.quadratic_variance("score_loo", delta, sigma)
    assert opt[0] <= loo[0] and opt[1] <= loo[1]
    # Var[(f - c) s] is a parabola in c with vertex c_k; check two other constants by quadrature.
    c_mu = delta**2 + 3 * sigma**2  # E[f s_mu^2] / E[s_mu^2] for the quadratic (docs)
    mu = TARGET + delta
    for shift in (-0.3, 0.4):

        def term(e, c=c_mu + shift):
            return (obj.f(mu + sigma * e) - c) * e / sigma

        mean = S.normal_expectation(term)
        var = S.normal_expectation(lambda e, m=mean, t=term: (t(e) - m) ** 2)
        # Var[(f - c) s] = Var_opt + (c - c_k)^2 E[s^2]
        assert var == pytest.approx(opt[0] + shift**2 / sigma**2, rel=1e-9)


def _exact_gradient(family: str, k: float, mu: float, s: float) -> tuple[float, float]:
    if family == "cos":  # E cos(kx) = cos(k mu) exp(-k^2 s^2 / 2)
        damp = math.exp(-0.5 * k * k * s * s)
        return -k * math.sin(k * mu) * damp, -k * k * s * math.cos(k * mu) * damp
    if family == "exp":  # E exp(-k x^2) = A^{-1/2} exp(-k mu^2 / A), A = 1 + 2 k s^2
        a = 1 + 2 * k * s * s
        e = math.exp(-k * mu * mu / a) / math.sqrt(a)
        return -2 * k * mu / a * e, e * 4 * k * s / a * (-0.5 + k * mu * mu / a)
    return 2 * (mu - k), 2 * s


@pytest.mark.parametrize("estimator", S.VARIANCE_ESTIMATORS)
@pytest.mark.parametrize(("family", "k"), [("exp", 0.3), ("exp", 7.0), ("cos", 0.8), ("cos", 4.0)])
def test_quadrature_means_are_the_true_gradient(estimator, family, k):
    """Every estimator is unbiased, so the quadrature of its term gives the known gradient."""
    mu, s = 1.0, 1.0
    moments = S.quadrature_moments(estimator, S.FAMILIES[family].make(k), mu, s)
    exact = _exact_gradient(family, k, mu, s)
    for i, coord in enumerate(("mu", "sigma")):
        assert moments[coord].mean == pytest.approx(exact[i], rel=1e-8, abs=1e-12)
        assert moments[coord].var > 0


def test_quadrature_helpers_against_known_moments():
    assert S.normal_expectation(lambda e: e**6) == pytest.approx(15.0, rel=1e-12)
    assert S.rayleigh_expectation(lambda w: w) == pytest.approx(math.sqrt(math.pi / 2), rel=1e-12)
    assert S.maxwell_uniform_expectation(lambda m, u: m**2) == pytest.approx(3.0, rel=1e-12)
    # M U ~ N(0, 1): E[(M U)^4] = 3
    assert S.maxwell_uniform_expectation(lambda m, u: (m * u) ** 4) == pytest.approx(3.0, rel=1e-11)


def test_grids_follow_the_paper():
    q, e, c = (S.FAMILIES[k].grid(5) for k in ("quadratic", "exp", "cos"))
    np.testing.assert_allclose(q, [-3, -1.5, 0, 1.5, 3])
    np.testing.assert_allclose([e[0], e[-1], c[0], c[-1]], [0.1, 10, 0.5, 5])
    np.testing.assert_allclose(np.diff(np.log(e)), np.log(10) / 2)


# ---------------------------------------------------------------------------------------------
# leave-one-out at finite n
# ---------------------------------------------------------------------------------------------
def _mean_with_se(x: np.ndarray) -> tuple[float, float]:
    return float(x.mean()), float(x.std() / math.sqrt(len(x)))


@pytest.mark.parametrize(("delta", "sigma", "n"), [(0.0, 1.0, 3), (1.0, 0.5, 5)])
def test_loo_finite_n_formulas(delta, sigma, n):
    """Replicate R batches of n LOO terms (vectorised) and check the three finite-n facts:
    Var[t_i] = limit + Var[f] E[s^2]/(n-1); Cov(t_i, t_j) = g^2/(n-1)^2; and the expected sample
    variance of a batch is Var[t_i] - Cov(t_i, t_j)."""
    reps = 400_000
    rng = np.random.default_rng(1234)
    eps = rng.standard_normal((reps, n))
    f = (delta + sigma * eps) ** 2
    baseline = (f.sum(1, keepdims=True) - f) / (n - 1)
    scores = (eps / sigma, (eps**2 - 1) / sigma)
    per_term = S.quadratic_variance("score_loo", delta, sigma, num_samples=n)
    batch_var = S.quadratic_loo_sample_variance_mean(delta, sigma, n)
    grad = S.quadratic_gradient(delta, sigma)
    limit = S.quadratic_variance("score_loo", delta, sigma)
    for i, s in enumerate(scores):
        t = (f - baseline) * s
        t0 = t[:, 0]
        c = t0 - t0.mean()
        v, m4 = float((c**2).mean()), float((c**4).mean())
        se = math.sqrt((m4 - v * v) / reps)
        assert abs(v - per_term[i]) < 5 * se
        if i == 0:  # the finite-n term is really there (8-10 se here; too heavy-tailed for sigma)
            assert abs(v - limit[i]) > 5 * se
        cov, cov_se = _mean_with_se((t[:, 0] - grad[i]) * (t[:, 1] - grad[i]))
        assert abs(cov - grad[i] ** 2 / (n - 1) ** 2) < 5 * cov_se
        sv, sv_se = _mean_with_se(t.var(1, ddof=1))
        assert abs(sv - batch_var[i]) < 5 * sv_se


# ---------------------------------------------------------------------------------------------
# quadrature vs Monte Carlo through the library's estimators
# ---------------------------------------------------------------------------------------------
MC_CASES = [
    ("quadratic", -1.5),
    ("exp", 1.0),
    ("cos", 2.0),
]


def _variance_tolerance(mc: S.MonteCarlo, moments: dict[str, S.Moments]) -> np.ndarray:
    """5 standard errors of the measured variance, sqrt((m4 - v^2)/n) with m4 from the samples.

    The score-function terms are heavy-tailed (kurtosis up to ~600): their sample m4 is low
    exactly when the sample variance is low, so the sample-based se then understates the error.
    The quadrature's m4 gives the exact se; the tolerance uses the larger of the two.
    """
    exact = np.array(
        [math.sqrt((moments[c].m4 - moments[c].var ** 2) / mc.num_samples) for c in ("mu", "sigma")]
    )
    return 5 * np.maximum(mc.variance_se, exact)


@pytest.mark.parametrize("estimator", S.VARIANCE_ESTIMATORS)
@pytest.mark.parametrize(("family", "k"), MC_CASES)
def test_library_variance_matches_quadrature(estimator, family, k):
    obj = S.FAMILIES[family].make(k)
    mu, sigma = 1.0, 1.0
    moments = S.quadrature_moments(estimator, obj, mu, sigma, fourth=True)
    gen = S.cell_generator(
        2024, S.VARIANCE_ESTIMATORS.index(estimator), list(S.FAMILIES).index(family)
    )
    mc = S.monte_carlo(estimator, obj.torch_f, mu, sigma, num_samples=100_000, generator=gen)
    tol = _variance_tolerance(mc, moments)
    for i, coord in enumerate(("mu", "sigma")):
        mean, var, _ = moments[coord]
        assert abs(mc.grad[i] - mean) < 5 * mc.stderr[i]
        assert abs(mc.variance[i] - var) < tol[i], (coord, mc.variance[i], var)


@pytest.mark.parametrize("estimator", S.VARIANCE_ESTIMATORS)
def test_library_variance_matches_closed_form(estimator):
    delta, sigma, n = 1.0, 0.5, 200_000
    mc = S.monte_carlo(
        estimator, lambda x: (x - 2.0) ** 2, 2.0 + delta, sigma, num_samples=n,
        generator=S.cell_generator(7, S.VARIANCE_ESTIMATORS.index(estimator)),
    )  # fmt: skip
    closed = S.quadratic_variance(estimator, delta, sigma, num_samples=n)
    moments = S.quadrature_moments(estimator, S.quadratic(2.0), 2.0 + delta, sigma, fourth=True)
    assert np.all(np.abs(mc.variance - closed) < _variance_tolerance(mc, moments))
    assert np.all(np.abs(mc.grad - S.quadratic_gradient(delta, sigma)) < 5 * mc.stderr)


def test_fourth_moment_by_quadrature():
    """Pathwise sigma term at delta = 0: t = 2 sigma eps^2, m4 = 16 sigma^4 E(eps^2 - 1)^4 = 960 s^4."""
    m = S.quadrature_moments("pathwise", S.quadratic(0.0), 0.0, 0.5, fourth=True)["sigma"]
    assert m.m4 == pytest.approx(960 * 0.5**4, rel=1e-10)
    assert math.isnan(S.quadrature_moments("pathwise", S.quadratic(0.0), 0.0, 0.5)["mu"].m4)


def test_monte_carlo_is_reproducible():
    a = S.monte_carlo("measure_valued", torch.cos, 1.0, 1.0, num_samples=1000,
                      generator=S.cell_generator(3, 1))  # fmt: skip
    b = S.monte_carlo("measure_valued", torch.cos, 1.0, 1.0, num_samples=1000,
                      generator=S.cell_generator(3, 1))  # fmt: skip
    c = S.monte_carlo("measure_valued", torch.cos, 1.0, 1.0, num_samples=1000,
                      generator=S.cell_generator(3, 2))  # fmt: skip
    np.testing.assert_array_equal(a.variance, b.variance)
    assert not np.array_equal(a.variance, c.variance)


# ---------------------------------------------------------------------------------------------
# the standard error of a variance estimate
# ---------------------------------------------------------------------------------------------
def test_variance_standard_error_gaussian():
    """For N(0, 1): m4 - v^2 = 3 - 1 = 2, so se = sqrt(2 / n)."""
    x = torch.randn(400_000, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    se = float(S.variance_standard_error(x)[0])
    assert se == pytest.approx(math.sqrt(2 / 400_000), rel=0.02)


def test_variance_standard_error_one_sample_check():
    """Exact on a small sample: the formula with population moments."""
    x = torch.tensor([[1.0], [2.0], [4.0], [9.0]], dtype=torch.float64)
    c = x - x.mean()
    v, m4 = (c**2).mean(), (c**4).mean()
    assert float(S.variance_standard_error(x)[0]) == pytest.approx(float(((m4 - v * v) / 4).sqrt()))


# ---------------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------------
def test_bad_input_raises():
    with pytest.raises(ValueError, match="estimator"):
        S.quadratic_variance("reinforce", 0.0, 1.0)
    with pytest.raises(ValueError, match="sigma"):
        S.quadratic_variance("score", 0.0, 0.0)
    with pytest.raises(ValueError, match="num_samples"):
        S.quadratic_variance("score_loo", 0.0, 1.0, num_samples=1)
    with pytest.raises(ValueError, match="sigma"):
        S.quadrature_variance("pathwise", S.cosine(1.0), 0.0, -1.0)
    with pytest.raises(ValueError, match="points"):
        S.FAMILIES["cos"].grid(0)
    assert math.isnan(S.relative_difference(1.0, 0.0))
