"""Tests of ``sg.estimate``: the automatic choice between estimators and the pass-through methods."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.distributions import Bernoulli, Categorical, Independent, Normal

import stochgrad as sg
from stochgrad.estimators import auto as auto_module
from tests.helpers import assert_unbiased as _close_to

F64 = torch.float64


def _normal(th):
    return Normal(th[0], th[1])


def _phi(z):
    return torch.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)


def _check_pilot_report(est, n_pilot):
    report = est.info["auto"]
    assert report["chosen"] == est.method
    assert report["pilot_samples"] == n_pilot
    cands = report["candidates"]
    assert set(cands) == set(sg.GENERAL_ESTIMATORS)
    kept = {k: v for k, v in cands.items() if "excluded" not in v}
    assert est.method in kept
    for name, fig in kept.items():
        assert set(fig) == {"variance", "cost_per_sample", "work_normalized_variance"}, name
        assert math.isfinite(fig["variance"]) and fig["variance"] >= 0
        assert fig["cost_per_sample"] > 0
        assert fig["work_normalized_variance"] == pytest.approx(
            fig["variance"] * fig["cost_per_sample"], rel=1e-12
        )
    for name, fig in cands.items():
        if "excluded" in fig:
            assert isinstance(fig["excluded"], str) and fig["excluded"], name
    # The choice is the smallest work-normalised variance among the candidates kept.
    best = min(kept, key=lambda k: kept[k]["work_normalized_variance"])
    assert kept[est.method]["work_normalized_variance"] == kept[best]["work_normalized_variance"]
    return cands


# ---------------------------------------------------------------------------------------------
# the automatic choice
# ---------------------------------------------------------------------------------------------
def test_picks_pathwise_for_normal_quadratic():
    # theta = the mean, sd 0.5, f = (x - a)^2 with a 3 away. Per-sample variances: pathwise
    # Var[2 (x - a)] = 4 s^2 = 1; measure-valued (Weibull pair) 16 (mu - a)^2 Var[W] / (2 pi)
    # = 9.8 with twice the evaluations; score function ~ 75. A margin of ~20 in work.
    mu, a = 0.5, 3.5
    est = sg.estimate(
        lambda x: (x - a) ** 2,
        lambda m: Normal(m, 0.5),
        torch.tensor(mu, dtype=F64),
        num_samples=20_000,
        seed=0,
    )
    cands = _check_pilot_report(est, 1000)
    assert est.method == "pathwise", cands
    assert all("excluded" not in v for v in cands.values())
    assert cands["pathwise"]["variance"] == pytest.approx(4 * 0.5**2, rel=0.2)
    _close_to(est, torch.tensor(2 * (mu - a), dtype=F64))


def test_picks_pathwise_when_its_variance_is_zero():
    # f linear in x, theta the mean: every pathwise term is f'(x) dx/dmu = 2, no noise at all.
    est = sg.estimate(
        lambda x: 2.0 * x,
        lambda m: Normal(m, 0.5),
        torch.tensor(0.3, dtype=F64),
        num_samples=5000,
        seed=0,
    )
    cands = _check_pilot_report(est, 1000)
    assert est.method == "pathwise", cands
    assert float(est.grad) == pytest.approx(2.0, abs=1e-12)
    assert float(est.variance) < 1e-20


def test_scalar_normal_quadratic_chooses_an_unbiased_applicable_method():
    # Pathwise and measure-valued are close here; whichever is chosen must be unbiased.
    theta = torch.tensor([0.5, 1.0], dtype=F64)
    est = sg.estimate(lambda x: (x - 2.0) ** 2, _normal, theta, num_samples=20_000, seed=1)
    cands = _check_pilot_report(est, 1000)
    assert "excluded" not in cands["pathwise"]
    _close_to(est, torch.tensor([2 * (0.5 - 2.0), 2 * 1.0], dtype=F64))


@pytest.mark.parametrize(
    ("name", "f"),
    [
        ("black_box", sg.black_box(lambda x: (x > 0).astype(np.float64))),
        ("step", lambda x: (x > 0).to(x.dtype)),
    ],
)
def test_never_pathwise_for_step_functions(name, f):
    # E[1{x > 0}] = Phi(mu/s): gradient (phi(mu/s)/s, -phi(mu/s) mu/s^2).
    mu, s = 0.3, 0.9
    theta = torch.tensor([mu, s], dtype=F64)
    est = sg.estimate(f, _normal, theta, num_samples=20_000, seed=2)
    cands = _check_pilot_report(est, 1000)
    assert "excluded" in cands["pathwise"], cands
    assert est.method != "pathwise"
    z = torch.tensor(mu / s, dtype=F64)
    exact = torch.stack([_phi(z) / s, -_phi(z) * mu / s**2])
    torch.testing.assert_close(sg.exact_gradient(f, _normal, theta), exact, rtol=0, atol=1e-7)
    _close_to(est, exact)
    if name == "black_box":
        assert "black box" in cands["pathwise"]["excluded"]


def test_jump_with_nonzero_derivative_excludes_pathwise():
    # f = floor(x) + x has derivative 1 everywhere but jumps at the integers: the pathwise
    # estimator would give (1, 0), the truth is (1 + sum_k phi(z_k)/s, sum_k phi(z_k) z_k / s).
    mu, s = 0.3, 0.9
    theta = torch.tensor([mu, s], dtype=F64)
    est = sg.estimate(lambda x: torch.floor(x) + x, _normal, theta, num_samples=20_000, seed=3)
    cands = _check_pilot_report(est, 1000)
    assert "excluded" in cands["pathwise"], cands
    assert "disagrees" in cands["pathwise"]["excluded"]
    assert est.method != "pathwise"
    k = torch.arange(-60, 61, dtype=F64)
    zk = (k - mu) / s
    exact = torch.stack([1.0 + (_phi(zk) / s).sum(), (_phi(zk) * zk / s).sum()])
    _close_to(est, exact)
    # The pathwise estimate alone is indeed badly biased: that is what the pilot caught.
    pw = sg.pathwise(lambda x: torch.floor(x) + x, _normal, theta, num_samples=2000, seed=3)
    assert abs(float(pw.grad[0] - exact[0])) > 50 * float(pw.stderr[0])


def test_bernoulli_never_pathwise_and_unbiased():
    p = torch.tensor([0.2, 0.7, 0.5], dtype=F64)

    def f(x):
        return (x * torch.tensor([1.0, -2.0, 0.5], dtype=F64)).sum(-1) ** 2

    est = sg.estimate(f, lambda q: Independent(Bernoulli(q), 1), p, num_samples=20_000, seed=4)
    cands = _check_pilot_report(est, 1000)
    assert "rsample" in cands["pathwise"]["excluded"]
    assert est.method in {"score_function", "measure_valued"}
    exact = sg.exact_gradient(f, lambda q: Independent(Bernoulli(q), 1), p)
    _close_to(est, exact)


def test_categorical_picks_score_function():
    # Neither pathwise (no rsample) nor measure-valued (no weak derivative) apply.
    g = torch.tensor([1.0, -0.5, 2.0, 0.0], dtype=F64)
    logits = torch.tensor([0.1, 0.4, -0.3, 0.2], dtype=F64)
    est = sg.estimate(
        lambda k: g[k], lambda l: Categorical(logits=l), logits, num_samples=20_000, seed=5
    )
    cands = _check_pilot_report(est, 1000)
    assert est.method == "score_function"
    assert "excluded" in cands["pathwise"] and "excluded" in cands["measure_valued"]
    assert est.info["baseline"] == "loo"  # the default baseline under "auto"
    sm = torch.softmax(logits, -1)
    _close_to(est, sm * (g - (sm * g).sum()))


def test_pilot_samples_capped_by_num_samples():
    est = sg.estimate(
        lambda b: b, Bernoulli, torch.tensor(0.3), num_samples=50, seed=0, pilot_samples=500
    )
    assert est.info["auto"]["pilot_samples"] == 50
    assert est.num_samples == 50


# ---------------------------------------------------------------------------------------------
# reproducibility
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("f", "dist_fn", "theta"),
    [
        (lambda k: k.to(F64) ** 2, lambda l: Categorical(logits=l), torch.zeros(3, dtype=F64)),
        (lambda b: (b - 0.3) ** 2, Bernoulli, torch.tensor(0.4, dtype=F64)),
    ],
    ids=["categorical", "bernoulli"],
)
def test_same_seed_same_result(f, dist_fn, theta):
    a = sg.estimate(f, dist_fn, theta, num_samples=2000, seed=7, pilot_samples=200)
    b = sg.estimate(f, dist_fn, theta, num_samples=2000, seed=7, pilot_samples=200)
    assert a.method == b.method
    assert torch.equal(a.per_sample, b.per_sample)
    gen = sg.estimate(
        f,
        dist_fn,
        theta,
        num_samples=2000,
        generator=torch.Generator().manual_seed(7),
        pilot_samples=200,
    )
    assert torch.equal(gen.per_sample, a.per_sample)


class _FakeClock:
    """A perf_counter whose successive timed intervals have the given lengths."""

    def __init__(self, durations):
        self.t = 0.0
        self.steps = iter(np.repeat(durations, 2) / 2)  # start and stop of each pilot

    def perf_counter(self):
        self.t += float(next(self.steps))
        return self.t


def test_cost_by_evaluations_is_independent_of_timings(monkeypatch):
    theta = torch.tensor([0.5, 1.0], dtype=F64)

    def run(durations):
        monkeypatch.setattr(auto_module, "time", _FakeClock(durations))
        return sg.estimate(
            lambda x: (x - 2.0) ** 2, _normal, theta, num_samples=500, seed=0, cost="evaluations"
        )

    # Pilots run in the order score_function, pathwise, measure_valued.
    equal_costs = run([1.0, 1.0, 1.0])
    slow_measure_valued = run([1.0, 1.0, 10.0])
    assert equal_costs.method == slow_measure_valued.method
    assert torch.equal(equal_costs.per_sample, slow_measure_valued.per_sample)


# ---------------------------------------------------------------------------------------------
# pass-through and bad input
# ---------------------------------------------------------------------------------------------
def test_named_methods_pass_through():
    theta = torch.tensor([0.3, 0.8], dtype=F64)
    f = torch.sin
    for name, direct in [
        ("score_function", sg.score_function(f, _normal, theta, num_samples=300, seed=1)),
        ("pathwise", sg.pathwise(f, _normal, theta, num_samples=300, seed=1)),
        ("measure_valued", sg.measure_valued(f, _normal, theta, num_samples=300, seed=1)),
    ]:
        est = sg.estimate(f, _normal, theta, num_samples=300, seed=1, method=name)
        assert est.method == name
        assert "auto" not in est.info
        assert torch.equal(est.per_sample, direct.per_sample), name
    loo = sg.estimate(
        f, _normal, theta, num_samples=300, seed=1, method="score_function", baseline="loo"
    )
    direct = sg.score_function(f, _normal, theta, num_samples=300, seed=1, baseline="loo")
    assert loo.info["baseline"] == "loo"
    assert torch.equal(loo.per_sample, direct.per_sample)


def test_named_method_that_does_not_apply_raises():
    with pytest.raises(ValueError, match="score_function"):
        sg.estimate(lambda b: b, Bernoulli, torch.tensor(0.3), num_samples=10, method="pathwise")


def test_unknown_method_raises():
    with pytest.raises(ValueError, match="method") as info:
        sg.estimate(torch.sin, _normal, torch.tensor([0.0, 1.0]), num_samples=10, method="magic")
    assert "auto" in str(info.value) and "pathwise" in str(info.value)


@pytest.mark.parametrize(
    "pilot, error",
    [
        (1, ValueError),
        (0, ValueError),
        (-3, ValueError),
        (2.5, TypeError),
        (True, TypeError),
        ("100", TypeError),
    ],
)
def test_bad_pilot_samples_raise(pilot, error):
    with pytest.raises(error, match="pilot_samples"):
        sg.estimate(
            torch.sin, _normal, torch.tensor([0.0, 1.0]), num_samples=10, pilot_samples=pilot
        )


def test_bad_num_samples_raise():
    with pytest.raises(ValueError, match="num_samples"):
        sg.estimate(torch.sin, _normal, torch.tensor([0.0, 1.0]), num_samples=0, seed=0)


def test_no_estimator_applies_raises_the_score_functions_error():
    # f returns the wrong shape: every candidate fails; the score function applies to any
    # input, so its own error (naming f) is the answer, not a report of all three
    with pytest.raises(ValueError, match=r"^f must return one value per sample"):
        sg.estimate(lambda x: x.sum(), _normal, torch.tensor([0.0, 1.0]), num_samples=10, seed=0)
