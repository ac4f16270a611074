"""Estimators in training loops: batch means instead of per-sample terms (``batches=``), and the
samples an estimator drew (``GradientEstimate.samples``)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import distributions as D
from torch import nn

import stochgrad as sg
from stochgrad.gradient_estimate import GradientEstimate, batch_variance
from tests.helpers import assert_unbiased

DT = torch.float64

pytestmark = pytest.mark.usefixtures("one_thread")


def _normal(th):
    return D.Normal(th[0], th[1])


def quad(x):
    return (x - 2.0) ** 2


def _nbytes(value) -> int:
    parts = value if isinstance(value, tuple) else (value,)
    return sum(t.numel() * t.element_size() for t in parts)


def _storage_nbytes(value) -> int:
    """Bytes of the storages behind the kept tensors: a view of a larger tensor keeps it all."""
    parts = value if isinstance(value, tuple) else (value,)
    return sum(t.untyped_storage().nbytes() for t in parts)


def _pairs(a, b):
    return zip(
        a if isinstance(a, tuple) else (a,), b if isinstance(b, tuple) else (b,), strict=True
    )


# ---------------------------------------------------------------------------------------------
# (1) a seeded case replayed against the formula
# ---------------------------------------------------------------------------------------------
def test_score_batch_means_replayed_from_the_formula():
    mu, sigma, n, batches = 0.5, 1.3, 10, 3
    est = sg.score_function(
        quad, _normal, torch.tensor([mu, sigma], dtype=DT), num_samples=n, seed=7, batches=batches
    )
    eps = torch.randn(n, generator=torch.Generator().manual_seed(7), dtype=DT).numpy()
    x = mu + sigma * eps
    terms = ((x - 2.0) ** 2)[:, None] * np.stack(
        [(x - mu) / sigma**2, ((x - mu) ** 2 - sigma**2) / sigma**3], 1
    )
    owner = np.arange(n) * batches // n  # consecutive batches of sizes 3, 3, 4
    sizes = np.bincount(owner)
    sums = np.stack([terms[owner == b].sum(0) for b in range(batches)])
    grad = terms.mean(0)
    variance = (sizes[:, None] * (sums / sizes[:, None] - grad) ** 2).sum(0) / (batches - 1)
    np.testing.assert_allclose(est.per_sample.numpy(), sums * batches / n, rtol=1e-12)
    np.testing.assert_allclose(est.grad.numpy(), grad, rtol=1e-12)
    np.testing.assert_allclose(est.variance.numpy(), variance, rtol=1e-12)
    np.testing.assert_allclose(est.stderr.numpy(), np.sqrt(variance / n), rtol=1e-12)
    assert est.num_samples == n and est.info["batch_means"] == batches
    np.testing.assert_allclose(est.samples.numpy(), x, rtol=1e-15)


def test_batch_variance_is_the_formula():
    sums = torch.tensor([[4.0, 0.0], [8.0, 3.0], [3.0, 3.0]], dtype=DT)
    sizes = torch.tensor([2, 2, 1])
    grad = sums.sum(0) / 5
    expected = sum(sizes[b] * (sums[b] / sizes[b] - grad) ** 2 for b in range(3)) / 2
    torch.testing.assert_close(batch_variance(sums, sizes), expected, rtol=1e-14, atol=0)


# ---------------------------------------------------------------------------------------------
# the same grad as the per-sample default, on every route
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("baseline", [None, "loo", "mean", 1.5, "grpo"])
def test_score_batches_same_grad_as_per_sample(baseline):
    theta = torch.tensor([0.5, 1.3], dtype=DT)
    a = sg.score_function(quad, _normal, theta, num_samples=500, baseline=baseline, seed=1)
    b = sg.score_function(
        quad, _normal, theta, num_samples=500, baseline=baseline, seed=1, batches=20
    )
    torch.testing.assert_close(b.grad, a.grad, rtol=1e-12, atol=1e-12)
    assert torch.equal(a.samples, b.samples) and b.biased == a.biased


def test_score_batches_with_an_ema_baseline_updates_it_once():
    theta = torch.tensor([0.5, 1.3], dtype=DT)
    ema_a, ema_b = sg.EMABaseline(0.5, init=1.0), sg.EMABaseline(0.5, init=1.0)
    a = sg.score_function(quad, _normal, theta, num_samples=300, baseline=ema_a, seed=2)
    b = sg.score_function(quad, _normal, theta, num_samples=300, baseline=ema_b, seed=2, batches=6)
    torch.testing.assert_close(b.grad, a.grad, rtol=1e-12, atol=1e-12)
    assert ema_a.value == pytest.approx(ema_b.value, rel=1e-14)


@pytest.mark.parametrize(
    "dist_fn",
    [
        lambda t: D.Gamma(t[0], t[1]),  # no closed-form score: one reverse pass of log_prob
        lambda t: D.Independent(D.Bernoulli(logits=t), 1),  # closed form, two parameters
    ],
)
def test_score_batches_same_grad_on_both_routes(dist_fn):
    theta = torch.tensor([1.5, 0.8], dtype=DT)
    f = lambda x: (x.reshape(x.shape[0], -1) ** 2).sum(-1)  # noqa: E731
    a = sg.score_function(f, dist_fn, theta, num_samples=400, baseline="loo", seed=3)
    b = sg.score_function(f, dist_fn, theta, num_samples=400, baseline="loo", seed=3, batches=16)
    torch.testing.assert_close(b.grad, a.grad, rtol=1e-11, atol=1e-12)


def test_score_batches_factorised_problems():
    t = torch.tensor([0.0, 1.0, 2.0, 3.0], dtype=DT)

    def bern(lg):
        return D.Independent(D.Bernoulli(logits=lg), 1)

    def f(z):
        return (z.sum(-1) - t) ** 2

    kw = dict(num_samples=600, baseline="loo", seed=0, batch_dims=1)
    a = sg.score_function(f, bern, torch.zeros(4, 3, dtype=DT), **kw)
    b = sg.score_function(f, bern, torch.zeros(4, 3, dtype=DT), batches=12, **kw)
    torch.testing.assert_close(b.grad, a.grad, rtol=1e-12, atol=1e-12)
    assert b.per_sample.shape == (12, 4, 3) and b.info["batch_dims"] == 1


def test_score_batches_factorised_problems_without_a_closed_form():
    """Gamma factors: one batched reverse pass of log_prob, one column per problem."""
    rates = torch.tensor([[1.0, 2.0], [0.5, 1.5], [2.0, 2.5]], dtype=DT)

    def gammas(r):
        return D.Independent(D.Gamma(r + 1.0, r), 1)

    def f(x):
        return (x - 1.0).pow(2).sum(-1)

    kw = dict(num_samples=300, baseline="loo", seed=1, batch_dims=1)
    a = sg.score_function(f, gammas, rates, **kw)
    b = sg.score_function(f, gammas, rates, batches=10, **kw)
    torch.testing.assert_close(b.grad, a.grad, rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize(
    "dist_fn",
    [
        _normal,  # x = loc + scale * eps
        lambda t: D.LogNormal(t[0], t[1]),  # forward mode of rsample
        lambda t: D.Gamma(t[0] + 1.0, t[1]),  # reverse mode, chunks of 512 samples
    ],
)
def test_pathwise_batches_same_grad_as_per_sample(dist_fn):
    theta = torch.tensor([0.5, 1.3], dtype=DT)
    f = lambda x: torch.sin(x) + x**2  # noqa: E731
    a = sg.pathwise(f, dist_fn, theta, num_samples=1300, seed=4)
    b = sg.pathwise(f, dist_fn, theta, num_samples=1300, seed=4, batches=13)
    torch.testing.assert_close(b.grad, a.grad, rtol=1e-11, atol=1e-12)
    assert torch.equal(a.samples, b.samples) and b.per_sample.shape == (13, 2)


def test_measure_valued_batches_same_grad_as_per_sample():
    theta = torch.tensor([0.5, 1.3], dtype=DT)
    a = sg.measure_valued(quad, _normal, theta, num_samples=400, seed=5)
    b = sg.measure_valued(quad, _normal, theta, num_samples=400, seed=5, batches=8)
    torch.testing.assert_close(b.grad, a.grad, rtol=1e-12, atol=1e-12)
    assert b.evaluations == a.evaluations == 2 * 2 * 400


def test_tuple_params_give_tuple_batch_means():
    loc, scale = torch.zeros(3, dtype=DT), torch.ones(3, dtype=DT)
    est = sg.score_function(
        lambda x: x.sum(-1) ** 2,
        lambda m, s: D.Normal(m, s),
        (loc, scale),
        num_samples=200,
        seed=0,
        batches=5,
    )
    assert isinstance(est.grad, tuple) and [t.shape for t in est.per_sample] == [(5, 3)] * 2
    assert all(s.shape == (3,) for s in est.stderr)


# ---------------------------------------------------------------------------------------------
# (2) many samples: unbiased, and the batch-mean stderr agrees with the per-sample one
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("estimator", [sg.score_function, sg.pathwise])
def test_batch_means_unbiased_with_their_own_stderr(estimator):
    """d/dmu E[(x-2)^2] = 2 (mu - 2) = -3, d/dsigma = 2 sigma = 2, for N(0.5, 1)."""
    theta = torch.tensor([0.5, 1.0], dtype=DT)
    est = estimator(quad, _normal, theta, num_samples=200_000, seed=6, batches=64)
    assert_unbiased(est, torch.tensor([-3.0, 2.0], dtype=DT))


@pytest.mark.parametrize(
    ("estimator", "baseline"),
    [(sg.score_function, None), (sg.score_function, "loo"), (sg.pathwise, None)],
)
def test_batch_mean_stderr_consistent_with_per_sample_stderr(estimator, baseline):
    """The same draws: the batch-mean variance has B - 1 degrees of freedom, so it sits within
    a relative error of sqrt(2 / (B - 1)) of the per-sample variance (batch means of 100
    samples are close to Gaussian); 5 of those."""
    theta = torch.tensor([0.5, 1.0], dtype=DT)
    kw = {} if baseline is None else {"baseline": baseline}
    batches = 1000
    a = estimator(quad, _normal, theta, num_samples=100_000, seed=8, **kw)
    b = estimator(quad, _normal, theta, num_samples=100_000, seed=8, batches=batches, **kw)
    tolerance = 5 * math.sqrt(2 / (batches - 1))
    ratio = b.variance / a.variance
    assert bool(((ratio - 1).abs() < tolerance).all()), (ratio, tolerance)
    se_ratio = b.stderr / a.stderr  # stderr: half the relative error of the variance
    assert bool(((se_ratio - 1).abs() < tolerance / 2).all()), (se_ratio, tolerance)


def test_loo_second_order_term_estimated_from_batch_means():
    """LOO adds var(f) var(s) / (n (n - 1)) to the variance of the mean; with batches the score
    variance comes from batch means, within the same tolerance."""
    theta = torch.tensor([0.5, 1.0], dtype=DT)
    n, batches = 20_000, 500
    a = sg.score_function(quad, _normal, theta, num_samples=n, baseline="loo", seed=9)
    b = sg.score_function(
        quad, _normal, theta, num_samples=n, baseline="loo", seed=9, batches=batches
    )
    extra_a = a.stderr**2 - a.variance / n
    extra_b = b.stderr**2 - b.variance / n
    assert bool((extra_a > 0).all())
    tolerance = 5 * math.sqrt(2 / (batches - 1))
    assert bool((((extra_b / extra_a) - 1).abs() < tolerance).all()), extra_b / extra_a


# ---------------------------------------------------------------------------------------------
# memory: what the estimate keeps
# ---------------------------------------------------------------------------------------------
def _mlp_case(batches, estimator="score_function"):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 40), nn.Tanh(), nn.Linear(40, 5)).to(DT)
    g = torch.Generator().manual_seed(1)
    inputs = torch.randn(7, 6, generator=g, dtype=DT)
    names = [k for k, _ in net.named_parameters()]
    weights = tuple(p.detach() for p in net.parameters())
    if estimator == "pathwise":

        def gauss(*w):
            out = torch.func.functional_call(net, dict(zip(names, w, strict=True)), (inputs,))
            return D.Independent(D.Normal(out, 0.5), 2)

        return sg.pathwise(
            lambda y: (y**2).sum((-1, -2)), gauss, weights, num_samples=48, seed=2, batches=batches
        )

    def policy(*w):
        logits = torch.func.functional_call(net, dict(zip(names, w, strict=True)), (inputs,))
        return D.Independent(D.Categorical(logits=logits), 1)

    label = torch.arange(7) % 5
    return sg.score_function(
        lambda a: (a == label).to(DT).sum(-1),
        policy,
        weights,
        num_samples=48,
        baseline="loo",
        seed=2,
        batches=batches,
    )


@pytest.mark.parametrize("estimator", ["score_function", "pathwise"])
def test_network_weights_keep_batches_not_samples(estimator):
    full = _mlp_case(None, estimator)
    kept = _mlp_case(4, estimator)
    weights = sum(t[0].numel() for t in full.per_sample)
    assert _nbytes(full.per_sample) == 48 * weights * 8
    assert _nbytes(kept.per_sample) == 4 * weights * 8  # B rows: 12 times less
    assert _storage_nbytes(kept.per_sample) == _nbytes(kept.per_sample)  # no hidden larger base
    for a, b in _pairs(full.grad, kept.grad):
        torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-12)


def test_surrogate_estimate_keeps_batches_too():
    torch.manual_seed(0)
    net = nn.Linear(5, 3).to(DT)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 5, generator=g, dtype=DT)
    dist = D.Categorical(logits=net(x))
    a = torch.multinomial(dist.probs.detach(), 1, generator=g).squeeze(1)
    s = sg.surrogate_loss(dist.log_prob(a), (a == 1).to(DT), advantage="loo")
    full, kept = s.estimate(net), s.estimate(net, batches=8)
    assert _nbytes(kept.per_sample) * 8 == _nbytes(full.per_sample)
    for p, q in _pairs(full.grad, kept.grad):
        torch.testing.assert_close(q, p, rtol=1e-12, atol=1e-14)


# ---------------------------------------------------------------------------------------------
# the samples the estimator drew
# ---------------------------------------------------------------------------------------------
def test_score_samples_are_what_f_received_and_reproduce_the_terms():
    seen = []

    def f(x):
        seen.append(x)
        return quad(x)

    theta = torch.tensor([0.3, 1.2], dtype=DT)
    est = sg.score_function(f, _normal, theta, num_samples=50, baseline="loo", seed=3)
    assert est.samples is seen[0]  # a reference, no copy
    x = est.samples
    scores = torch.func.vmap(lambda xi: torch.func.grad(lambda t: _normal(t).log_prob(xi))(theta))(
        x
    )
    fx = quad(x)
    loo = (fx.sum() - fx) / (len(fx) - 1)
    torch.testing.assert_close(est.per_sample, (fx - loo)[:, None] * scores, rtol=1e-12, atol=0)


def test_pathwise_samples_reproduce_the_terms():
    theta = torch.tensor([0.3, 1.2], dtype=DT)
    est = sg.pathwise(quad, _normal, theta, num_samples=40, seed=4)
    eps = (est.samples - theta[0]) / theta[1]  # x = mu + sigma eps

    def term(e):
        return torch.func.grad(lambda t: quad(t[0] + t[1] * e))(theta)

    torch.testing.assert_close(est.per_sample, torch.func.vmap(term)(eps), rtol=1e-12, atol=0)
    assert not est.samples.requires_grad


def test_measure_valued_samples_are_the_draws():
    theta = torch.tensor([0.3, 1.2], dtype=DT)
    est = sg.measure_valued(quad, _normal, theta, num_samples=30, seed=5)
    eps = torch.randn(30, generator=torch.Generator().manual_seed(5), dtype=DT)
    torch.testing.assert_close(est.samples, theta[0] + theta[1] * eps, rtol=1e-15, atol=0)


def test_samples_let_the_surrogate_reuse_the_draws():
    """The draws of score_function, handed to surrogate_loss, give the same gradient."""
    torch.manual_seed(0)
    net = nn.Linear(4, 3).to(DT)
    names = [k for k, _ in net.named_parameters()]
    inputs = torch.randn(5, 4, generator=torch.Generator().manual_seed(1), dtype=DT)

    def policy(*w):
        logits = torch.func.functional_call(net, dict(zip(names, w, strict=True)), (inputs,))
        return D.Independent(D.Categorical(logits=logits), 1)

    def reward(a):
        return (a == 2).to(DT).sum(-1)

    weights = tuple(p.detach() for p in net.parameters())
    est = sg.score_function(reward, policy, weights, num_samples=32, baseline="loo", seed=6)
    s = sg.surrogate_loss(
        policy(*net.parameters()).log_prob(est.samples), reward(est.samples), advantage="loo"
    )
    again = s.estimate(net)
    for p, q in _pairs(est.grad, again.grad):
        torch.testing.assert_close(q, p, rtol=1e-12, atol=1e-14)


def test_estimates_from_terms_have_no_samples():
    est = GradientEstimate.from_per_sample(torch.ones(3, 2), method="demo")
    assert est.samples is None
    assert "samples=" not in repr(est).replace("num_samples=", "")  # a repr stays short


# ---------------------------------------------------------------------------------------------
# (3) bad input
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("estimator", [sg.score_function, sg.pathwise, sg.measure_valued])
@pytest.mark.parametrize(("batches", "error"), [(1, ValueError), (0, ValueError), (11, ValueError),
                                                (2.5, TypeError), ("4", TypeError),
                                                (True, TypeError)])  # fmt: skip
def test_bad_batches_raise_naming_the_argument(estimator, batches, error):
    theta = torch.tensor([0.5, 1.0])
    with pytest.raises(error, match="batches"):
        estimator(quad, _normal, theta, num_samples=10, seed=0, batches=batches)


def test_batches_refuse_what_needs_per_sample_terms():
    theta = torch.tensor([0.5, 1.0])
    with pytest.raises(ValueError, match="batches.*optimal"):
        sg.score_function(quad, _normal, theta, num_samples=10, baseline="optimal", batches=2)
    with pytest.raises(ValueError, match="batches.*control"):
        sg.score_function(quad, _normal, theta, num_samples=10, control_variate="delta", batches=2)
    with pytest.raises(ValueError, match="batches.*optimal"):
        sg.score_function(
            lambda z: z.sum(-1),
            lambda lg: D.Independent(D.Bernoulli(logits=lg), 1),
            torch.zeros(2, 3),
            num_samples=10,
            baseline="optimal",
            batch_dims=1,
            batches=2,
        )


def test_batches_refuse_a_baseline_that_reads_the_scores():
    class ScoreWeighted(sg.baselines.Baseline):
        name = "score_weighted"

        def __call__(self, fx, scores, params):
            return fx.mean() * scores.abs().mean(0)

    theta = torch.tensor([0.5, 1.0])
    with pytest.raises(ValueError, match="batches.*score_weighted"):
        sg.score_function(
            quad, _normal, theta, num_samples=10, baseline=ScoreWeighted(), seed=0, batches=2
        )


def test_from_batch_sums_bad_sizes():
    with pytest.raises(ValueError, match="sizes"):
        GradientEstimate.from_batch_sums(torch.ones(3, 2), torch.tensor([2, 2]), method="demo")
    with pytest.raises(ValueError, match="sizes"):
        GradientEstimate.from_batch_sums(torch.ones(2, 2), torch.tensor([2, 0]), method="demo")
    with pytest.raises(ValueError, match="not finite"):
        GradientEstimate.from_batch_sums(
            torch.tensor([[1.0], [float("nan")]]), torch.tensor([1, 1]), method="demo"
        )
