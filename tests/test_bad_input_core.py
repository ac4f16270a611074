"""Careless input to the core is refused clearly, never answered with a silent NaN or a crash.

Each case of the probe that found these defects is pinned here, the old behaviour in the test's
docstring: one sample (a warning, or a refusal where a standard error is the point), sizes that
cannot fit in memory (refused before allocating), an ``f`` that changes its input in place
(refused), non-callables, seeds out of range, non-bools, bad tolerances, and their siblings
across ``stochgrad.__all__``. DisARM's zero standard error at ``p = 1/2`` is checked to be the
truth (the estimator is exact there) against the closed form.
"""

from __future__ import annotations

import math
import re
import time
import warnings

import numpy as np
import pytest
import torch
from torch import distributions as D

import stochgrad as sg
from stochgrad import _core
from stochgrad.apps.finance import Market, Option
from stochgrad.apps.finance.greeks import estimate_greeks

DT = torch.float64
THETA = torch.tensor([0.5, 1.0], dtype=DT)


def normal(th):
    return D.Normal(th[0], th[1])


def bern(lg):
    return D.Bernoulli(logits=lg)


def quad(x):
    return (x - 2.0) ** 2


def toy(b):
    return (b - 0.45) ** 2


# One call per public estimator: name -> call(f, num_samples, **kwargs). Normal for the general
# three, a Bernoulli for the discrete ones.
ESTIMATORS = {
    "score_function": lambda f, n, **k: sg.score_function(f, normal, THETA, num_samples=n, **k),
    "pathwise": lambda f, n, **k: sg.pathwise(f, normal, THETA, num_samples=n, **k),
    "measure_valued": lambda f, n, **k: sg.measure_valued(f, normal, THETA, num_samples=n, **k),
    "arm": lambda f, n, **k: sg.arm(f, bern, torch.tensor(0.3, dtype=DT), num_samples=n, **k),
    "disarm": lambda f, n, **k: sg.disarm(f, bern, torch.tensor(0.3, dtype=DT), num_samples=n, **k),
    "rebar": lambda f, n, **k: sg.rebar(f, bern, torch.tensor(0.3, dtype=DT), num_samples=n, **k),
    "gumbel_softmax": lambda f, n, **k: sg.gumbel_softmax(
        f, bern, torch.tensor(0.3, dtype=DT), num_samples=n, **k
    ),
    "straight_through": lambda f, n, **k: sg.straight_through(
        f, bern, torch.tensor(0.3, dtype=DT), num_samples=n, **k
    ),
    "relax": lambda f, n, **k: sg.Relax()(f, bern, torch.tensor(0.3, dtype=DT), num_samples=n, **k),
}
DISCRETE = {"arm", "disarm", "rebar", "gumbel_softmax", "straight_through", "relax"}


def objective(name):
    return toy if name in DISCRETE else quad


# ---------------------------------------------------------------------------------------------
# one sample: a warning and NaN spread, or a refusal where a standard error is needed
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_one_sample_warns_and_returns_nan_spread(name):
    """Before: a NaN variance and stderr without a word."""
    assert issubclass(sg.SingleSampleWarning, UserWarning)
    with pytest.warns(sg.SingleSampleWarning, match=rf"{name}: num_samples=1 .* undefined \(NaN\)"):
        est = ESTIMATORS[name](objective(name), 1, seed=0)
    assert est.num_samples == 1
    assert bool(torch.isfinite(est.flat("grad")).all())
    assert bool(est.flat("variance").isnan().all()) and bool(est.flat("stderr").isnan().all())


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_two_samples_do_not_warn(name):
    with warnings.catch_warnings():
        warnings.simplefilter("error", sg.SingleSampleWarning)
        est = ESTIMATORS[name](objective(name), 2, seed=0)
    assert not bool(est.flat("stderr").isnan().any())


def test_one_sample_warning_points_at_the_caller():
    with pytest.warns(sg.SingleSampleWarning) as caught:
        sg.disarm(toy, bern, torch.tensor(0.3), num_samples=1, seed=0)
    assert caught[0].filename == __file__


def test_compare_and_auto_refuse_one_sample():
    """Before: compare gave NaN stderr rows and estimate(method="auto") a NaN stderr."""
    with pytest.raises(ValueError, match=r"num_samples must be >= 2 \(compare .* at least 2"):
        sg.compare(quad, normal, THETA, num_samples=1, seed=0)
    with pytest.raises(ValueError, match=r"num_samples must be >= 2 \(method=\"auto\".*at least 2"):
        sg.estimate(quad, normal, THETA, num_samples=1, seed=0)
    with pytest.warns(sg.SingleSampleWarning):  # a named method: a one-sample estimate
        est = sg.estimate(quad, normal, THETA, num_samples=1, method="pathwise", seed=0)
    assert bool(est.stderr.isnan().all())


def test_surrogate_and_fisher_one_sample_warn():
    p = torch.zeros(2, dtype=DT, requires_grad=True)
    log_probs = D.Normal(p, 1.0).log_prob(torch.ones(1, 2, dtype=DT)).sum(-1)
    with pytest.warns(sg.SingleSampleWarning, match="surrogate"):
        est = sg.surrogate_loss(log_probs, torch.tensor([2.0], dtype=DT)).estimate(p)
    torch.testing.assert_close(est.grad, torch.full((2,), 2.0, dtype=DT))  # f * (x - mu)
    with pytest.warns(sg.SingleSampleWarning, match="fisher_gradient"):
        est = sg.fisher_gradient(log_probs, p, samples=True)
    assert bool(est.stderr.isnan().all())


def test_greeks_refuse_one_path_and_chunks_of_one_path_are_quiet():
    """Before: estimate_greeks(num_paths=1) returned NaN standard errors."""
    option, market = Option("call", 100.0), Market(100.0, 0.2, 0.05, 1.0)
    with pytest.raises(ValueError, match=r"num_paths must be >= 2 \(.*standard error"):
        estimate_greeks(option, market, 1, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", sg.SingleSampleWarning)
        res = estimate_greeks(option, market, 3, chunk_size=2, greeks=["delta"], seed=0)
    assert all(math.isfinite(e.stderr) for e in res.estimates)


def test_num_samples_messages_are_true():
    """Before: num_samples=-1 said "must be >= 1 (baseline 'none' needs at least 2 samples)"."""
    with pytest.raises(ValueError, match=r"^num_samples must be >= 1, got -1$"):
        sg.score_function(quad, normal, THETA, num_samples=-1, seed=0)
    with pytest.raises(
        ValueError, match=r"^num_samples must be >= 2 \(baseline 'loo' needs at least 2 samples\)"
    ):
        sg.score_function(quad, normal, THETA, num_samples=1, baseline="loo", seed=0)
    with pytest.raises(ValueError, match=r"num_samples must be >= 2 \(a control variate"):
        sg.score_function(quad, normal, THETA, num_samples=1, control_variate="delta", seed=0)


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
@pytest.mark.parametrize("bad", [True, 2.0, "10", None, np.float64(3.0)])
def test_num_samples_of_the_wrong_type(name, bad):
    with pytest.raises(TypeError, match="^num_samples must be an int"):
        ESTIMATORS[name](objective(name), bad, seed=0)


# ---------------------------------------------------------------------------------------------
# memory: estimated before allocating, refused above the limit
# ---------------------------------------------------------------------------------------------
HUGE = 10**12
SAMPLERS = {
    "gumbel_max": lambda n: sg.gumbel_max(torch.zeros(3), n, seed=0),
    "concrete_sample": lambda n: sg.concrete_sample(torch.zeros(3), 0.5, n, seed=0),
    "relaxed_bernoulli_sample": lambda n: sg.relaxed_bernoulli_sample(torch.zeros(3), 0.5, n),
    "straight_through_bernoulli": lambda n: sg.straight_through_bernoulli(torch.ones(3) / 2, n),
    "straight_through_categorical": lambda n: sg.straight_through_categorical(torch.ones(3) / 3, n),
}


@pytest.mark.parametrize("name", sorted(ESTIMATORS) + ["rloo"])
def test_huge_num_samples_refused_before_allocating(name):
    """Before: num_samples=10**12 died in the allocator (a RuntimeError for 4 TB)."""
    start = time.perf_counter()
    with pytest.raises(ValueError, match=r"num_samples=1,000,000,000,000 needs at least .* memory"):
        if name == "rloo":
            sg.rloo(toy, bern, torch.tensor(0.3), num_samples=HUGE, seed=0)
        else:
            ESTIMATORS[name](objective(name), HUGE, seed=0)
    assert time.perf_counter() - start < 5.0


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_huge_samplers_refused(name):
    with pytest.raises(ValueError, match=rf"num_samples=1,000,000,000,000 .* in {name}"):
        SAMPLERS[name](HUGE)


def test_memory_limit_from_the_environment(monkeypatch):
    # score_function, float64, one coordinate and two parameters: (1 + 1 + 2 * 2) * 8 bytes a
    # sample, 100,000 samples = 4.6 MiB, of which the per-sample terms are 3.1 MiB
    monkeypatch.setenv("STOCHGRAD_MEMORY_LIMIT", "2M")
    with pytest.raises(ValueError, match=r"4\.6 MiB .* more than the 2\.0 MiB set by STOCHGRAD_ME"):
        sg.score_function(quad, normal, THETA, num_samples=100_000, seed=0)
    with pytest.raises(ValueError, match="pass batches=B"):
        sg.score_function(quad, normal, THETA, num_samples=100_000, seed=0)
    est = sg.score_function(quad, normal, THETA, num_samples=100_000, batches=10, seed=0)
    assert est.num_samples == 100_000  # 1.5 MiB without the per-sample terms
    monkeypatch.setenv("STOCHGRAD_MEMORY_LIMIT", "a lot")
    with pytest.raises(ValueError, match="STOCHGRAD_MEMORY_LIMIT must be a number of bytes"):
        sg.score_function(quad, normal, THETA, num_samples=100_000, seed=0)
    monkeypatch.setenv("STOCHGRAD_MEMORY_LIMIT", "1")  # calls under 1 MiB are never refused
    assert sg.score_function(quad, normal, THETA, num_samples=1000, seed=0).num_samples == 1000


def test_memory_limit_from_the_module_and_the_system(monkeypatch):
    monkeypatch.setattr(_core, "MEMORY_LIMIT", 1 << 20)
    with pytest.raises(
        ValueError, match=r"more than the 1\.0 MiB set by stochgrad._core.MEMORY_LIM"
    ):
        sg.pathwise(quad, normal, THETA, num_samples=100_000, seed=0)
    monkeypatch.setattr(_core, "MEMORY_LIMIT", None)
    monkeypatch.setattr(_core, "available_memory", lambda device: 1 << 29)
    # 30M samples: 720 MB estimated, above the 512 MiB said to be available (nothing allocated)
    with pytest.raises(ValueError, match=r"512\.0 MiB available on cpu \(override with STOCHGRAD"):
        sg.score_function(quad, normal, THETA.float(), num_samples=30_000_000, seed=0)


def test_available_memory_is_a_positive_number():
    assert _core.available_memory(torch.device("cpu")) > 0


# ---------------------------------------------------------------------------------------------
# DisARM at p = 1/2: a zero standard error because the estimator is exact there
# ---------------------------------------------------------------------------------------------
def test_disarm_is_exact_for_one_bernoulli_at_one_half():
    r"""Before: the stderr 0 looked like a bug. At sigma(alpha) = 1/2 the antithetic pair always
    differs and every term is 1/2 (f(b) - f(b~)) (b - b~) 1/2 = (f(1) - f(0)) / 4, the exact
    gradient p (1 - p) (f(1) - f(0)); by probs, d/dp E f = f(1) - f(0)."""
    values = torch.randn(6, 2, generator=torch.Generator().manual_seed(3), dtype=DT)
    for f0, f1 in values:
        f = lambda b, f0=f0, f1=f1: torch.where(b > 0.5, f1, f0)  # noqa: E731
        est = sg.disarm(f, bern, torch.tensor(0.0, dtype=DT), num_samples=500, seed=1)
        torch.testing.assert_close(est.per_sample, torch.full((500,), float(f1 - f0) / 4, dtype=DT))
        assert float(est.stderr) == 0.0
        by_probs = sg.disarm(
            f, lambda p: D.Bernoulli(probs=p), torch.tensor(0.5, dtype=DT), num_samples=50, seed=1
        )
        torch.testing.assert_close(by_probs.grad, f1 - f0)
        assert float(by_probs.stderr) == 0.0


def _enumerated_logit_gradient(f, logits):
    """sum_b f(b) p(b) (b - sigma(alpha)): the gradient by enumeration, written here."""
    d = logits.numel()
    p = torch.sigmoid(logits)
    grad = torch.zeros(d, dtype=DT)
    for code in range(2**d):
        b = torch.tensor([(code >> k) & 1 for k in range(d)], dtype=DT)
        prob = torch.prod(torch.where(b > 0, p, 1 - p))
        grad += f(b.unsqueeze(0))[0] * prob * (b - p)
    return grad


def test_disarm_at_one_half_has_variance_in_several_dimensions():
    """With interactions between coordinates the difference f(b) - f(b~) varies with the other
    coordinates: a positive standard error, and the mean within 5 of them of the truth."""

    def f(b):
        return b[:, 0] * b[:, 1] + 2.0 * b[:, 1] * b[:, 2] - b[:, 0]

    logits = torch.zeros(3, dtype=DT)
    est = sg.disarm(
        f, lambda lg: D.Independent(D.Bernoulli(logits=lg), 1), logits, num_samples=20_000, seed=2
    )
    truth = _enumerated_logit_gradient(f, logits)
    torch.testing.assert_close(truth, torch.tensor([-0.125, 0.375, 0.25], dtype=DT))
    assert bool((est.stderr > 0).all())
    assert bool(((est.grad - truth).abs() < 5 * est.stderr).all()), (est.grad, truth, est.stderr)


def test_disarm_away_from_one_half_and_arm_at_one_half_have_variance():
    off = sg.disarm(toy, bern, torch.tensor(0.8, dtype=DT), num_samples=5000, seed=4)
    assert float(off.stderr) > 0  # the pair coincides with probability |2p - 1|
    truth = _enumerated_logit_gradient(toy, torch.tensor([0.8], dtype=DT))
    assert abs(float(off.grad) - float(truth)) < 5 * float(off.stderr)
    at_half = sg.arm(toy, bern, torch.tensor(0.0, dtype=DT), num_samples=5000, seed=4)
    assert float(at_half.stderr) > 0  # ARM keeps u: only DisARM integrates it out


# ---------------------------------------------------------------------------------------------
# an f that changes its input in place
# ---------------------------------------------------------------------------------------------
def _mutate(x):
    return x.mul_(0).add_(1)


def _mutate_sum(x):  # for samples with an event dimension
    x.mul_(0)
    return x.reshape(x.shape[0], -1).sum(-1) + 1


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_inplace_f_refused_by_every_estimator(name):
    """Before: score_function with lambda x: x.mul_(0).add_(1) returned [0.5, -0.75] (the truth
    is [0, 0]), the samples having been overwritten before the scores were taken."""
    with pytest.raises(ValueError, match=r"f modified its input in place.*x = x\.clone\(\)"):
        ESTIMATORS[name](_mutate, 10, seed=0)


@pytest.mark.parametrize(
    "call",
    [
        lambda f: sg.rloo(f, bern, torch.tensor(0.3), num_samples=10, seed=0),
        lambda f: sg.exact_gradient(f, bern, torch.tensor(0.3)),
        lambda f: sg.exact_gradient(f, normal, THETA),
        lambda f: sg.score_function(f, normal, THETA, num_samples=10, batches=2, seed=0),
        lambda f: sg.score_function(f, normal, THETA, num_samples=10, control_variate="delta"),
        lambda f: sg.estimate(f, normal, THETA, num_samples=10, seed=0),
        lambda f: sg.score_function(
            lambda x: f(x).sum(-1),
            lambda lg: D.Bernoulli(logits=lg),
            torch.zeros(2, 3),
            num_samples=10,
            batch_dims=1,
            seed=0,
        ),
    ],
    ids=["rloo", "exact-enum", "exact-quad", "batches", "delta", "auto", "batch_dims"],
)
def test_inplace_f_refused_everywhere_else(call):
    with pytest.raises(ValueError, match="modified its input in place|no estimator applies"):
        call(_mutate)


def test_inplace_f_detected_through_views_and_item_assignment():
    def through_view(x):
        x.view(-1)[0] = 5.0
        return x * 0

    def item(x):
        x[3] = 0.0
        return x * 0

    for f in (through_view, item, _mutate_sum):
        with pytest.raises(ValueError, match="modified its input in place"):
            sg.score_function(f, normal, THETA, num_samples=10, seed=0)


def test_inplace_black_box_refused():
    """numpy shares the samples' memory; the array f receives is read-only."""

    def mutate(a):
        np.multiply(a, 0, out=a)
        return a + 1

    with pytest.raises(ValueError, match=r"modified its input in place \(numpy"):
        sg.score_function(sg.black_box(mutate), normal, THETA, num_samples=10, seed=0)
    identity = sg.black_box(lambda a: a)  # returning the read-only input itself is fine
    est = sg.score_function(identity, normal, THETA, num_samples=10, seed=0)
    assert est.num_samples == 10


def test_out_of_place_equivalent_and_serial_backend_are_correct():
    """The same f written out of place is a constant: the gradient is 0 within its error. The
    in-process (serial) parallel backend hands f a copy of the samples, so there the mutating f
    is harmless and gives the same right answer."""
    est = sg.score_function(lambda x: x * 0 + 1, normal, THETA, num_samples=4000, seed=0)
    assert bool((est.grad.abs() < 5 * est.stderr).all()) and bool((est.stderr > 0).all())
    serial = sg.score_function(_mutate, normal, THETA, num_samples=4000, parallel="serial", seed=0)
    torch.testing.assert_close(serial.grad, est.grad)
    assert not bool((serial.samples == 1).all())  # the samples kept their values


# ---------------------------------------------------------------------------------------------
# non-callables, seeds, booleans, tolerances
# ---------------------------------------------------------------------------------------------
ENTRY_POINTS = {
    **ESTIMATORS,
    "rloo": lambda f, n, **k: sg.rloo(f, bern, torch.tensor(0.3), num_samples=n, **k),
    "estimate": lambda f, n, **k: sg.estimate(f, normal, THETA, num_samples=n, **k),
    "compare": lambda f, n, **k: sg.compare(f, normal, THETA, num_samples=n, **k),
}


@pytest.mark.parametrize("name", sorted(ENTRY_POINTS) + ["exact_gradient"])
@pytest.mark.parametrize("bad", [3, "x**2", None])
def test_non_callable_f(name, bad):
    """Before: 'int' object is not callable."""
    with pytest.raises(TypeError, match=r"^f must be callable \(a batch of samples"):
        if name == "exact_gradient":
            sg.exact_gradient(bad, normal, THETA)
        else:
            ENTRY_POINTS[name](bad, 10, seed=0)


@pytest.mark.parametrize("name", sorted(ENTRY_POINTS))
@pytest.mark.parametrize(
    "seed, error, match",
    [
        (
            2**70,
            ValueError,
            r"seed must be <= 2\*\*63 - 1 \(a seed is an int in \[0, 2\*\*63 - 1\]",
        ),
        (2**63, ValueError, r"seed must be <= 2\*\*63 - 1"),
        (-1, ValueError, r"seed must be >= 0 \(a seed is an int in \[0, 2\*\*63 - 1\]\)"),
        (1.5, TypeError, "seed must be an int"),
        (True, TypeError, "seed must be an int"),
    ],
)
def test_seed_out_of_range(name, seed, error, match):
    """Before: seed=2**70 gave "Overflow when unpacking long long"; seed=-1 was accepted."""
    f = objective(name) if name in ESTIMATORS else quad
    if name == "rloo":
        f = toy
    with pytest.raises(error, match=match):
        ENTRY_POINTS[name](f, 10, seed=seed)


def test_seed_range_elsewhere():
    with pytest.raises(ValueError, match="seed must be <= 2"):
        sg.StochasticGraph(seed=2**70)
    with pytest.raises(ValueError, match="seed must be <= 2"):
        sg.Relax(seed=2**70)
    with pytest.raises(ValueError, match="seed must be <= 2"):
        sg.gumbel_max(torch.zeros(3), 2, seed=2**64)
    assert sg.score_function(quad, normal, THETA, num_samples=4, seed=2**63 - 1).num_samples == 4


@pytest.mark.parametrize(
    "call",
    [
        lambda v: sg.gumbel_softmax(toy, bern, torch.tensor(0.3), num_samples=4, hard=v, seed=0),
        lambda v: sg.concrete_sample(torch.zeros(3), 0.5, 2, hard=v, seed=0),
        lambda v: sg.relaxed_bernoulli_sample(torch.zeros(3), 0.5, 2, hard=v, seed=0),
        lambda v: sg.Relax(include_f=v),
        lambda v: sg.Relax()(toy, bern, torch.tensor(0.3), num_samples=4, seed=0, train=v),
        lambda v: sg.exact_gradient(toy, bern, torch.tensor(0.3), return_value=v),
    ],
    ids=["gumbel_softmax", "concrete", "relaxed_bernoulli", "include_f", "train", "return_value"],
)
@pytest.mark.parametrize("bad", ["yes", "no", 1, None])
def test_booleans_must_be_bools(call, bad):
    """Before: gumbel_softmax(hard='yes') was accepted (and 'no' meant True)."""
    with pytest.raises(TypeError, match=r"must be a bool \(True or False\)"):
        call(bad)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"epsrel": -1}, ValueError, "epsrel must be > 0"),
        ({"epsrel": 0.0}, ValueError, "epsrel must be > 0"),
        ({"epsrel": 1.0}, ValueError, "epsrel must be < 1"),
        ({"epsrel": math.nan}, ValueError, "epsrel must be finite"),
        ({"epsrel": "1e-3"}, TypeError, "epsrel must be a real number"),
        ({"max_configurations": 0}, ValueError, "max_configurations must be >= 1"),
        ({"max_configurations": 2.0}, TypeError, "max_configurations must be an int"),
        ({"max_configurations": True}, TypeError, "max_configurations must be an int"),
    ],
)
def test_exact_gradient_tolerances(kwargs, error, match):
    """Before: exact_gradient(epsrel=-1) was accepted."""
    with pytest.raises(error, match=match):
        sg.exact_gradient(quad, normal, THETA, **kwargs)


def test_exact_gradient_still_exact_with_a_tolerance():
    # d/dmu E (x - 2)^2 = 2 (mu - 2), d/dsigma = 2 sigma
    got = sg.exact_gradient(quad, normal, THETA, epsrel=1e-8)
    torch.testing.assert_close(got, torch.tensor([-3.0, 2.0], dtype=DT))


# ---------------------------------------------------------------------------------------------
# what f returns
# ---------------------------------------------------------------------------------------------
def test_f_returning_non_finite_values_names_f_and_counts_them():
    def some_nan(x):
        out = quad(x).clone()
        out[:3] = math.nan
        out[5] = math.inf
        return out

    for name in ("score_function", "pathwise"):
        with pytest.raises(ValueError, match=r"^f returned 4 non-finite value\(s\) out of 10"):
            ESTIMATORS[name](some_nan, 10, seed=0)
    with pytest.raises(ValueError, match=r"^f returned 20 non-finite value\(s\) out of 20"):
        sg.disarm(lambda b: b / 0.0, bern, torch.tensor(0.3), num_samples=10, seed=0)


@pytest.mark.parametrize(
    "out, error, match",
    [
        (lambda x: x.unsqueeze(1), ValueError, r"one value per sample, shape \[10\]; got shape"),
        (lambda x: x.sum(), ValueError, "one value per sample"),
        (lambda x: x[:3], ValueError, "one value per sample"),
        (lambda x: "a", TypeError, r"f must return a tensor or array of shape \[10\], got str"),
        (lambda x: None, TypeError, "f must return a tensor or array"),
        (lambda x: x.to(torch.complex128), TypeError, "f must return real values"),
    ],
    ids=["column", "scalar", "short", "string", "none", "complex"],
)
def test_f_returning_the_wrong_thing(out, error, match):
    with pytest.raises(error, match=match):
        sg.score_function(out, normal, THETA, num_samples=10, seed=0)


def test_f_raising_is_let_through_unchanged():
    class Boom(Exception):
        pass

    def f(x):
        raise Boom("from f")

    for name in ("score_function", "measure_valued", "disarm"):
        with pytest.raises(Boom, match="from f"):
            ESTIMATORS[name](f, 10, seed=0)


# ---------------------------------------------------------------------------------------------
# siblings across the public API
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "params, error, match",
    [
        (torch.zeros(0, dtype=DT), ValueError, r"params\[0\] is empty"),
        (torch.tensor([1, 2]), TypeError, "floating-point"),
        (torch.tensor([math.nan, 1.0]), ValueError, "finite"),
        (torch.tensor([0.5, math.inf]), ValueError, "finite"),
        ([0.5, 1.0], TypeError, r"params\[0\] must be a torch.Tensor"),
        ((), TypeError, "non-empty tuple"),
    ],
    ids=["empty", "int", "nan", "inf", "floats", "empty-tuple"],
)
def test_bad_params(params, error, match):
    """Before: empty params gave an empty estimate with a torch warning (measure_valued: a raw
    'zip() argument 2 is shorter' error)."""
    for name in ("score_function", "measure_valued"):
        with pytest.raises(error, match=match):
            getattr(sg, name)(
                lambda x: x.reshape(10, -1).sum(-1), normal, params, num_samples=10, seed=0
            )


def test_compare_arguments():
    """Before: methods='pathwise' was read letter by letter, and an exact gradient of the
    wrong size was broadcast into the bias z-scores."""
    with pytest.raises(TypeError, match=r"methods must be a list .* methods=\['pathwise'\]"):
        sg.compare(quad, normal, THETA, methods="pathwise", num_samples=10, seed=0)
    with pytest.raises(
        ValueError, match=r"exact must hold one value per coordinate .* \(2\), got 1"
    ):
        sg.compare(quad, normal, THETA, exact=torch.tensor([1.0]), num_samples=10, seed=0)
    with pytest.raises(ValueError, match="exact must be finite"):
        sg.compare(quad, normal, THETA, exact=torch.tensor([1.0, math.nan]), num_samples=10)


def test_estimate_arguments():
    with pytest.raises(TypeError, match="method must be one of"):
        sg.estimate(quad, normal, THETA, method=3, num_samples=10, seed=0)
    with pytest.raises(TypeError, match="cost must be one of"):
        sg.estimate(quad, normal, THETA, cost=None, num_samples=10, seed=0)


def test_samplers_refuse_bad_logits_and_probs():
    with pytest.raises(ValueError, match="at least one category"):
        sg.gumbel_max(torch.zeros(0), 3, seed=0)
    with pytest.raises(ValueError, match="logits must not hold NaN"):
        sg.concrete_sample(torch.tensor([math.nan, 0.0]), 0.5, 3, seed=0)
    with pytest.raises(ValueError, match=r"probs must hold probabilities in \[0, 1\]"):
        sg.straight_through_bernoulli(torch.tensor([1.5]), 3, seed=0)
    with pytest.raises(ValueError, match=r"probs must hold probabilities in \[0, 1\]"):
        sg.straight_through_categorical(torch.tensor([-0.5, 1.5]), 3, seed=0)
    # -inf logits are a category that is never drawn, not an error
    draws = sg.gumbel_max(torch.tensor([0.0, -math.inf, 0.0]), 200, seed=0)
    assert not bool((draws == 1).any())


def test_relax_options():
    with pytest.raises(TypeError, match="lr must be a real number"):
        sg.Relax(lr=True)
    with pytest.raises(TypeError, match="hidden must be an int"):
        sg.Relax(hidden=2.0)
    with pytest.raises(ValueError, match="hidden must be >= 0"):
        sg.Relax(hidden=-1)


def test_baseline_options():
    with pytest.raises(TypeError, match="^value must be a real number, got str"):
        sg.ConstantBaseline("a")
    with pytest.raises(TypeError, match="decay must be a real number"):
        sg.EMABaseline(decay=True)
    with pytest.raises(ValueError, match="lr must be > 0"):
        sg.LearnedBaseline(lr=-1.0)
    with pytest.raises(TypeError, match="steps must be an int"):
        sg.LearnedBaseline(steps=1.5)
    with pytest.raises(TypeError, match=r"gamma must be a number in \[0, 1\], got bool"):
        sg.reward_to_go(torch.ones(3), gamma=True)
    with pytest.raises(ValueError, match=r"gamma must be a number in \[0, 1\], got nan"):
        sg.reward_to_go(torch.ones(3), gamma=math.nan)


def test_surrogate_arguments():
    p = torch.zeros(2, requires_grad=True)
    with pytest.raises(ValueError, match=r"log_probs must hold one log-probability per sample"):
        sg.surrogate_loss(torch.zeros(0, requires_grad=True), torch.zeros(0))
    with pytest.raises(ValueError, match=r"log_probs must be finite, got 1 non-finite"):
        sg.surrogate_loss(p.sum() + torch.tensor([0.0, math.nan, 1.0]), torch.ones(3))
    with pytest.raises(TypeError, match="values must be a tensor of"):
        sg.surrogate_loss(p.sum() + torch.zeros(3), "abc")
    with pytest.raises(ValueError, match=r"log_probs must hold one log-probability per sample"):
        sg.per_sample_gradients(p.sum() + torch.zeros(0), p)


def test_fisher_and_graph_arguments():
    p = torch.zeros(2, requires_grad=True)
    with pytest.raises(ValueError, match="dim must be <= 0, got 5"):
        sg.fisher_gradient(p * 1.0, p, dim=5)
    with pytest.raises(TypeError, match="dim must be an int"):
        sg.fisher_gradient(p * 1.0, p, dim=True)
    with pytest.raises(TypeError, match="tau must be a torch.Tensor"):
        sg.magic_box(3)
    with pytest.raises(ValueError, match="per_sample must hold at least one row"):
        sg.GradientEstimate.from_per_sample(torch.zeros(0, 2), method="demo")


# ---------------------------------------------------------------------------------------------
# every public function of the core: the message names the argument (the property suite's rule)
# ---------------------------------------------------------------------------------------------
def names(message: str, name: str) -> bool:
    """Whether ``message`` names ``name`` as a word (``params[1]`` names ``params``)."""
    return re.search(rf"(?<![A-Za-z0-9_]){re.escape(name)}(?![A-Za-z0-9_])", message) is not None


def m(t):
    """``t`` on the 'meta' device: a shape without data, standing for a foreign device."""
    return t.to("meta")


LP = torch.zeros(4, dtype=DT, requires_grad=True)
R5, Z5, C64 = torch.tensor([1.0, 0.0, 2.0, -1.0, 0.5]), torch.zeros(5), torch.complex64
NAN, INF = math.nan, math.inf


def lp():
    """Log-probabilities [4] that depend on LP."""
    return torch.log_softmax(LP, 0)


def sl(log_probs=None, values=None, **kw):
    log_probs = lp() if log_probs is None else log_probs
    return sg.surrogate_loss(log_probs, torch.ones(4) if values is None else values, **kw)


def fg(log_joint=None, params=LP, **kw):
    return sg.fisher_gradient(lp() if log_joint is None else log_joint, params, **kw)


def adv(values=R5, groups=None):
    return sg.LeaveOneOutBaseline().advantages(values, groups)


def run_gae(rewards=R5, values=Z5, **kw):
    return sg.gae(rewards, values, **kw)


def cost(value):
    with sg.StochasticGraph(num_samples=4, seed=0) as g:
        g.sample("x", D.Bernoulli(logits=torch.tensor(0.3, requires_grad=True)))
        g.cost("c", value)


def node(dist=None, **kwargs):
    with sg.StochasticGraph(num_samples=4, seed=0) as g:
        return g.sample(
            "x", D.Bernoulli(logits=torch.tensor(0.3)) if dist is None else dist, **kwargs
        )


def per(per_sample=None, **kwargs):
    per_sample = torch.ones(3, 2) if per_sample is None else per_sample
    return sg.GradientEstimate.from_per_sample(per_sample, method="demo", **kwargs)


def sums(sums=None, sizes=None, **kwargs):
    sums = torch.ones(2, 2) if sums is None else sums
    sizes = torch.tensor([2, 2]) if sizes is None else sizes
    return sg.GradientEstimate.from_batch_sums(sums, sizes, method="demo", **kwargs)


def quad_at(params):
    return sg.exact_gradient(lambda x: (x - 1.0) ** 2, normal, params)


# argument -> call. Before: a raw RuntimeError ("Tensor.item() cannot be called on meta
# tensors", "Tensor on device cpu is not on the expected device meta!") or an accepted value
FOREIGN_DEVICE = {
    "params": lambda: sg.score_function(quad, normal, m(THETA), num_samples=4),
    "params[1]": lambda: sg.score_function(
        lambda x: x, lambda a, b: D.Normal(a, b), (THETA[0], m(THETA[1])), num_samples=4
    ),
    "f": lambda: sg.score_function(lambda x: m(quad(x)), normal, THETA, num_samples=4, seed=0),
    "f (exact)": lambda: sg.exact_gradient(lambda b: m(toy(b)), bern, torch.tensor(0.3)),
    "logits": lambda: sg.gumbel_max(m(torch.zeros(3)), 2, seed=0),
    "probs": lambda: sg.straight_through_bernoulli(m(torch.full((2,), 0.5)), 2, seed=0),
    "temperature": lambda: sg.concrete_sample(torch.zeros(3), m(torch.tensor(0.5)), 2, seed=0),
    "value": lambda: sg.ConstantBaseline(m(torch.tensor(1.0))),
    "decay": lambda: sg.EMABaseline(decay=m(torch.tensor(0.5))),
    "epsrel": lambda: sg.exact_gradient(quad, normal, THETA, epsrel=m(torch.tensor(1e-6))),
    "values": lambda: adv(m(R5)),
    "groups": lambda: adv(R5, m(torch.tensor([0, 0, 1, 1, 1]))),
    "rewards": lambda: sg.reward_to_go(m(R5)),
    "dones": lambda: sg.reward_to_go(R5, dones=m(Z5)),
    "values (gae)": lambda: run_gae(values=m(Z5)),
    "last_value": lambda: run_gae(last_value=m(torch.tensor(1.0))),
    "log_probs": lambda: sl(m(lp())),
    "values (surrogate)": lambda: sl(values=m(torch.ones(4))),
    "weights": lambda: sl(weights=m(torch.ones(4))),
    "params (per_sample_gradients)": lambda: sg.per_sample_gradients(
        lp(), torch.zeros(4, device="meta", requires_grad=True)
    ),
    "log_joint": lambda: fg(m(lp())),
    "posterior": lambda: fg(posterior=m(torch.full((4,), 0.25, dtype=DT))),
    "log_measure": lambda: fg(log_measure=m(torch.zeros(4, dtype=DT))),
    "per_sample": lambda: per(m(torch.ones(3, 2))),
    "extra_variance_of_mean": lambda: per(extra_variance_of_mean=m(torch.ones(2))),
    "sizes": lambda: sums(sizes=m(torch.tensor([2, 2]))),
    "value (cost)": lambda: cost(m(torch.ones(4))),
    "dist": lambda: node(D.Normal(m(torch.zeros(())), m(torch.ones(())), validate_args=False)),
}


@pytest.mark.parametrize("case", sorted(FOREIGN_DEVICE))
def test_foreign_device_refused_naming_the_argument(case):
    """A tensor on another device than the call's (here 'meta', a shape without data): a
    ValueError naming the argument, not torch's RuntimeError from deep inside."""
    with pytest.raises(ValueError) as info:
        FOREIGN_DEVICE[case]()
    assert names(str(info.value), case.split(" ")[0].split("[")[0]), str(info.value)


# Before: accepted (a bool tensor read as numbers, 'no' read as True, 2.5 evaluations), a raw
# error ('int' object is not iterable, "unique" not implemented for complex), or a message
# naming another argument ('baseline: a constant baseline must be ...')
WRONG_TYPE = {
    "values bool": lambda: adv(R5 > 0),
    "groups complex": lambda: adv(R5, torch.zeros(5, dtype=C64)),
    "groups str": lambda: adv(R5, "ab"),
    "rewards bool": lambda: sg.reward_to_go(R5 > 0),
    "rewards complex": lambda: run_gae(R5.to(C64)),
    "dones complex": lambda: run_gae(dones=torch.zeros(5, dtype=C64)),
    "last_value str": lambda: run_gae(last_value="3"),
    "last_value True": lambda: run_gae(last_value=True),
    "tau bool": lambda: sg.magic_box(torch.tensor([True, False])),
    "log_probs bool": lambda: sl(lp() > -2),
    "values complex": lambda: sl(values=torch.ones(4, dtype=C64)),
    "weights bool": lambda: sl(weights=torch.ones(4) > 0),
    "params int": lambda: sl(params=3),
    "advantage class": lambda: sl(advantage=sg.LeaveOneOutBaseline),
    "maximize 1": lambda: sl(maximize=1),
    "log_probs int": lambda: sg.per_sample_gradients(torch.zeros(4, dtype=torch.long), LP),
    "params None": lambda: sg.per_sample_gradients(lp(), None),
    "log_joint int": lambda: fg(torch.zeros(4, dtype=torch.long)),
    "params float": lambda: fg(params=1.5),
    "posterior bool": lambda: fg(posterior=torch.ones(4) > 0),
    "log_measure float": lambda: fg(log_measure=1.5),
    "per_sample int": lambda: per(torch.ones(3, 2, dtype=torch.long)),
    "per_sample str": lambda: per("tensor"),
    "biased 'no'": lambda: per(biased="no"),
    "evaluations 2.5": lambda: per(evaluations=2.5),
    "extra_variance_of_mean str": lambda: per(extra_variance_of_mean="tensor"),
    "sums complex": lambda: sums(torch.ones(2, 2, dtype=C64)),
    "sizes float": lambda: sums(sizes=torch.tensor([2.5, 2.0])),
    "sizes number": lambda: sums(sizes=1.5),
    "value None": lambda: sg.ConstantBaseline(None),
    "eps str": lambda: sg.GroupNormalizedBaseline(eps="3"),
    "eps True": lambda: sg.GroupNormalizedBaseline(eps=True),
    "fn int": lambda: sg.black_box(3),
    "max_configurations 2.5": lambda: sg.StochasticGraph.enumerate(
        lambda g: None, max_configurations=2.5
    ),
    "reparam None": lambda: node(reparam=None),
    "per_sample 0": lambda: node(per_sample=0),
    "value complex": lambda: cost(torch.ones(4, dtype=C64)),
    "value float": lambda: cost(1.5),
    "params (estimate) int": lambda: sl().estimate(3),
}


@pytest.mark.parametrize("case", sorted(WRONG_TYPE))
def test_wrong_type_refused_naming_the_argument(case):
    with pytest.raises(TypeError) as info:
        WRONG_TYPE[case]()
    assert names(str(info.value), case.split(" ")[0]), str(info.value)


# Before: accepted (NaN results, a posterior above 1, eps=inf), a raw error, or a message
# naming another argument
OFF_SUPPORT = {
    "value nan": lambda: sg.ConstantBaseline(NAN),
    "eps inf": lambda: sg.GroupNormalizedBaseline(eps=INF),
    "advantage nan": lambda: sl(advantage=NAN),
    "advantage 'nonsense'": lambda: sl(advantage="nonsense"),
    "params without grad": lambda: sl(params=torch.zeros(4)),
    "log_probs inf": lambda: sg.per_sample_gradients(lp() + torch.tensor([0, INF, 0, 0]), LP),
    "log_probs without graph": lambda: sg.per_sample_gradients(lp().detach(), LP),
    "log_joint without graph": lambda: fg(lp().detach()),
    "posterior above 1": lambda: fg(posterior=torch.tensor([1.5, 0.0, 0.0, 0.0], dtype=DT)),
    "log_measure nan": lambda: fg(log_measure=torch.tensor([0.0, NAN, 0.0, 0.0])),
    "log_measure empty": lambda: fg(log_measure=torch.zeros(0)),
    "dones 2": lambda: sg.reward_to_go(R5, dones=torch.tensor([0.0, 2.0, 0.0, 0.0, 1.0])),
    "dones nan": lambda: run_gae(dones=torch.full((5,), NAN)),
    "last_value nan": lambda: run_gae(last_value=NAN),
    "last_value 1e300": lambda: run_gae(last_value=1e300),
    "last_value [3]": lambda: run_gae(last_value=torch.ones(3)),
    "tau -inf": lambda: sg.magic_box(torch.tensor([0.3, -INF])),
    "evaluations -1": lambda: per(evaluations=-1),
    "per_sample nan": lambda: per(torch.tensor([[NAN], [1.0]])),
    "per_sample overflowing variance": lambda: per(torch.tensor([[1e30], [1.0], [2.0]])),
    "extra_variance_of_mean negative": lambda: per(extra_variance_of_mean=torch.tensor([-1e-6, 0])),
    "extra_variance_of_mean shape": lambda: per(extra_variance_of_mean=torch.zeros(1, 2)),
    "sums 0-d": lambda: sums(torch.tensor(4.0)),
    "sums one batch": lambda: sums(torch.ones(1, 2, 2)),
    "sizes zero": lambda: sums(sizes=torch.tensor([2, 0])),
    "num_samples 2**63": lambda: sg.StochasticGraph(num_samples=2**63),
    "value nan (cost)": lambda: cost(torch.full((4,), NAN)),
    "hidden 2**63": lambda: sg.Relax(hidden=2**63),
    "eta 1e300": lambda: sg.rebar(toy, bern, torch.tensor(0.3), num_samples=8, eta=1e300, seed=0),
    "params 1e30": lambda: quad_at(torch.tensor([0.5, 1e30])),
    "params below resolution": lambda: quad_at(torch.tensor([1e15, 1e-3], dtype=DT)),
}


@pytest.mark.parametrize("case", sorted(OFF_SUPPORT))
def test_value_off_its_support_refused_naming_the_argument(case):
    with pytest.raises(ValueError) as info:
        OFF_SUPPORT[case]()
    assert names(str(info.value), case.split(" ")[0]), str(info.value)


# ---------------------------------------------------------------------------------------------
# the answers that changed: checked against their formulas
# ---------------------------------------------------------------------------------------------
def test_from_per_sample_of_one_row_warns_at_the_caller():
    """Before: NaN variance and stderr without a word when built directly from one row."""
    with pytest.warns(sg.SingleSampleWarning, match="demo: num_samples=1") as caught:
        est = sg.GradientEstimate.from_per_sample(torch.tensor([[1.0, 2.0]]), method="demo")
    assert caught[0].filename == __file__
    torch.testing.assert_close(est.grad, torch.tensor([1.0, 2.0]))
    assert bool(est.stderr.isnan().all())


def test_estimators_warn_once_for_one_sample():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sg.score_function(quad, normal, THETA, num_samples=1, seed=0)
    assert [w.category for w in caught] == [sg.SingleSampleWarning]
    assert caught[0].filename == __file__


def test_reward_to_go_of_integer_rewards_is_not_truncated():
    """Before: integer rewards gave integer returns, [1, 0, 1, -1, 0] for the returns
    [1.891, 0.99, 1.1, -1, 0] of G_t = r_t + 0.9 G_{t+1}."""
    rewards = torch.tensor([1, 0, 2, -1, 0])
    got = sg.reward_to_go(rewards, gamma=0.9)
    want = [
        1 + 0.9 * (0 + 0.9 * (2 + 0.9 * (-1 + 0.9 * 0))),
        0 + 0.9 * (2 - 0.9),
        2 - 0.9,
        -1.0,
        0.0,
    ]
    assert got.is_floating_point()
    torch.testing.assert_close(got.double(), torch.tensor(want, dtype=DT), rtol=1e-6, atol=1e-6)


def test_exact_gradient_of_float32_params_is_computed_in_float64():
    """Before: float32 params with a standard deviation of 1e10 gave d/dmu E (x - 1)^2 =
    0.298 instead of 2 (mu - 1) = -1 (float32 roundings of f swamped the quadrature)."""
    got = sg.exact_gradient(lambda x: (x - 1.0) ** 2, normal, torch.tensor([0.5, 1e10]))
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, torch.tensor([-1.0, 2e10]), rtol=1e-5, atol=1e-4)


def test_surrogate_estimate_takes_numpy_batches():
    """Before: batches=np.int64(2) was refused ("must be an int")."""
    p = torch.zeros(3, dtype=DT, requires_grad=True)
    x = torch.tensor([0, 2, 1, 2, 0, 1, 2, 2])
    s = sg.surrogate_loss(D.Categorical(logits=p).log_prob(x), (x == 2).double())
    est = s.estimate(p, batches=np.int64(2))
    assert est.info["batch_means"] == 2
    torch.testing.assert_close(est.grad, s.estimate(p, batches=2).grad)


def test_estimate_auto_passes_on_the_score_functions_refusal():
    """Before: "estimate: no estimator applies: {...}", a report not naming params; the score
    function applies to every input, so its refusal is the answer."""

    def unchecked(th):
        return D.Normal(th[0], th[1], validate_args=False)

    with pytest.raises(ValueError, match=r"^params: Normal.scale must satisfy GreaterThan"):
        sg.estimate(quad, unchecked, torch.tensor([0.5, -1.0]), num_samples=10, seed=0)
