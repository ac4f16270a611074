"""The surrogate layer: samples drawn by the caller, advantages from the shared rules.

Layer 1 replays a few samples against the formula; layer 2 compares many-sample means with the
exact gradient by enumeration (within 5 standard errors) for every rule that claims to be
unbiased, and measures the bias of those that are not; layer 3 feeds bad input.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Categorical, Normal

import stochgrad as sg
from stochgrad import _dists

pytestmark = pytest.mark.usefixtures("one_thread")

D = torch.float64
VALUES = torch.tensor([0.0, 1.0, 3.0, -2.0], dtype=D)  # f(x) on the four categories
LOGITS = torch.tensor([0.3, -0.2, 0.5, 0.1], dtype=D)


def f(x: torch.Tensor) -> torch.Tensor:
    return VALUES[x]


def exact_grad() -> torch.Tensor:
    return sg.exact_gradient(f, lambda lg: Categorical(logits=lg), LOGITS)


def draws(n: int, seed: int, logits: torch.Tensor = LOGITS) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.multinomial(torch.softmax(logits, 0), n, replacement=True, generator=g)


def leaf() -> torch.Tensor:
    return LOGITS.clone().requires_grad_(True)


# ---------------------------------------------------------------------------------------------
# layer 1: a few samples, replayed against the formula
# ---------------------------------------------------------------------------------------------
def test_loss_gradient_is_the_formula_with_groups_and_weights():
    theta = leaf()
    x = torch.tensor([0, 2, 2, 3, 1, 2])
    groups = torch.tensor([5, 5, 5, 7, 7, 7])
    w = torch.tensor([0.5, 1.0, 2.0, 1.5, 1.0, 0.25], dtype=D)
    lp = Categorical(logits=theta).log_prob(x)
    s = sg.surrogate_loss(lp, f(x), advantage="loo", groups=groups, weights=w)
    est = s.estimate(theta)  # before backward: it needs the graph
    s.loss.backward()
    v = f(x)
    adv = torch.empty(6, dtype=D)
    for idx in ([0, 1, 2], [3, 4, 5]):
        for i in idx:
            others = [j for j in idx if j != i]
            adv[i] = v[i] - v[others].mean()
    scores = torch.stack([torch.eye(4, dtype=D)[k] - torch.softmax(LOGITS, 0) for k in x])
    expected = ((w * adv).unsqueeze(1) * scores).mean(0)
    torch.testing.assert_close(theta.grad, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(s.advantages, adv)
    torch.testing.assert_close(est.grad, expected, rtol=1e-12, atol=1e-12)  # the same numbers
    with pytest.raises(ValueError, match="call estimate\\(\\) before"):
        s.estimate(theta)
    torch.testing.assert_close(est.per_sample, (w * adv).unsqueeze(1) * scores)


def test_self_normalised_and_maximize():
    theta = leaf()
    x = torch.tensor([0, 1, 2, 3])
    w = torch.tensor([1.0, 2.0, 3.0, 2.0], dtype=D)
    lp = Categorical(logits=theta).log_prob(x)
    s = sg.surrogate_loss(lp, f(x), weights=w, self_normalize=True, maximize=True)
    torch.testing.assert_close(s.weights, w * 4 / w.sum())
    est = s.estimate(theta)
    s.loss.backward()
    scores = torch.eye(4, dtype=D) - torch.softmax(LOGITS, 0)
    expected = ((w / w.sum()) * f(x)).unsqueeze(1).mul(scores).sum(0)
    torch.testing.assert_close(theta.grad, -expected)  # maximize: the step ascends
    torch.testing.assert_close(est.grad, expected)


# ---------------------------------------------------------------------------------------------
# the same estimate as score_function on the same draws
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("baseline", [None, "loo", "mean", 1.5, "optimal"])
def test_equals_score_function_on_its_own_draws(baseline):
    theta = torch.tensor([0.4, 1.3], dtype=D)

    def dist_fn(th):
        return Normal(th[0], th[1])

    def objective(x):
        return (x - 2.0) ** 2

    n = 500
    ref = sg.score_function(objective, dist_fn, theta, num_samples=n, baseline=baseline, seed=3)
    x = _dists.sample(dist_fn(theta), n, torch.Generator().manual_seed(3))
    th = theta.clone().requires_grad_(True)
    s = sg.surrogate_loss(dist_fn(th).log_prob(x), objective(x), advantage=baseline, params=th)
    est = s.estimate()
    torch.testing.assert_close(est.grad, ref.grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(est.per_sample, ref.per_sample, rtol=1e-10, atol=1e-12)
    th.grad = None
    s.loss.backward()
    torch.testing.assert_close(th.grad, ref.grad, rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# layer 2: unbiased rules against the exact gradient; biased ones measured
# ---------------------------------------------------------------------------------------------
N, GROUP = 40_000, 4


def _estimate(rule, seed=0, n=N, **kwargs):
    theta = leaf()
    x = draws(n, seed)
    lp = Categorical(logits=theta).log_prob(x)
    return sg.surrogate_loss(lp, f(x), advantage=rule, params=theta, **kwargs).estimate()


@pytest.mark.parametrize("rule", [None, 2.0, "loo", "optimal", "ema", "learned"], ids=str)
def test_unbiased_rules_match_the_exact_gradient(rule):
    kwargs = {}
    if rule == "loo":
        kwargs["groups"] = torch.arange(N) // GROUP
    if rule == "ema":
        rule = sg.EMABaseline(decay=0.5)
        _estimate(rule, seed=9)  # a past batch sets the average; this batch does not see itself
    if rule == "learned":
        rule = sg.LearnedBaseline(lr=0.05, steps=5)
        kwargs["context"] = torch.ones(N, 1, dtype=D)
    if rule == "optimal":
        kwargs["n"] = 4096  # the per-sample scores it needs cost n backward passes
    est = _estimate(rule, **kwargs)
    exact = exact_grad()
    z = (est.grad - exact) / est.stderr
    assert bool((z.abs() < 5).all()), (rule, est.grad, exact, z)
    assert not est.biased


@pytest.mark.parametrize("rule", ["mean", "grpo_unscaled"])
def test_group_mean_is_biased_by_the_factor_of_the_group_size(rule):
    est = _estimate(rule, groups=torch.arange(N) // GROUP)
    assert est.biased
    scaled = exact_grad() * (GROUP - 1) / GROUP
    z = (est.grad - scaled) / est.stderr
    assert bool((z.abs() < 5).all()), (est.grad, scaled, z)


def test_grpo_scaling_is_biased_and_by_how_much():
    """The scaled group-normalised rule is not proportional to the exact gradient: its direction
    differs, beyond 5 standard errors of the estimate, from the best rescaling of the truth."""
    est = _estimate("grpo", groups=torch.arange(N) // GROUP)
    exact = exact_grad()
    # the multiple of the exact gradient closest to the estimate
    k = float(est.grad @ exact / (exact @ exact))
    residual = est.grad - k * exact
    z = residual / est.stderr
    assert est.biased and k > 0
    assert float(z.abs().max()) > 5, (k, residual, z)
    print(f"GRPO (groups of {GROUP}): estimate = {k:.3f} x exact + residual, max |z| of the "
          f"residual {float(z.abs().max()):.1f}")  # fmt: skip


def test_batch_means_agree_with_per_sample_terms():
    theta = leaf()
    x = draws(4096, 5)
    lp = Categorical(logits=theta).log_prob(x)
    s = sg.surrogate_loss(lp, f(x), advantage="loo", groups=torch.arange(4096) // 4, params=theta)
    per = s.estimate(batches=4096)
    means = s.estimate()  # 4096 > PER_SAMPLE_LIMIT: 64 batch means of whole groups
    assert means.info["batch_means"] == 64 and means.per_sample.shape[0] == 64
    torch.testing.assert_close(means.grad, per.grad, rtol=1e-10, atol=1e-12)
    ratio = means.stderr / per.stderr
    assert bool(((ratio > 0.6) & (ratio < 1.4)).all()), ratio  # 63 degrees of freedom


def test_importance_weighted_samples_from_another_distribution():
    behaviour = torch.tensor([0.0, 0.0, 0.0, 0.0], dtype=D)  # uniform logging policy
    x = draws(N, 4, behaviour)
    theta = leaf()
    lp = Categorical(logits=theta).log_prob(x)
    w = (lp.detach() - Categorical(logits=behaviour).log_prob(x)).exp()
    exact = exact_grad()
    for normalise in (False, True):
        s = sg.surrogate_loss(lp, f(x), weights=w, self_normalize=normalise, params=theta)
        est = s.estimate()
        z = (est.grad - exact) / est.stderr
        assert bool((z.abs() < 5).all()), (normalise, est.grad, exact, z)


def test_snr_and_memory_free_loss():
    est = _estimate("loo", groups=torch.arange(N) // GROUP)
    snr = est.snr
    torch.testing.assert_close(snr, est.grad.abs() / est.variance.sqrt())
    assert est.snr_of_mean() == pytest.approx(
        float(est.grad.norm() / est.stderr.pow(2).sum().sqrt())
    )
    assert est.snr_of_mean() > 5  # 40k samples: a clear signal


# ---------------------------------------------------------------------------------------------
# layer 3: bad input
# ---------------------------------------------------------------------------------------------
def test_bad_input():
    theta = leaf()
    x = torch.tensor([0, 1, 2, 3])
    lp = Categorical(logits=theta).log_prob(x)
    v = f(x)
    with pytest.raises(TypeError, match="log_probs"):
        sg.surrogate_loss([0.0, 1.0], v)
    with pytest.raises(ValueError, match="values must be"):
        sg.surrogate_loss(lp, v[:3])
    with pytest.raises(ValueError, match="finite"):
        sg.surrogate_loss(lp, torch.tensor([0.0, math.nan, 1.0, 1.0], dtype=D))
    with pytest.raises(ValueError, match="weights must be finite and >= 0"):
        sg.surrogate_loss(lp, v, weights=torch.tensor([1.0, -1.0, 1.0, 1.0], dtype=D))
    with pytest.raises(ValueError, match="every weight is 0"):
        sg.surrogate_loss(lp, v, weights=torch.zeros(4, dtype=D))
    with pytest.raises(ValueError, match="self_normalize needs weights"):
        sg.surrogate_loss(lp, v, self_normalize=True)
    with pytest.raises(ValueError, match="at least 2 samples per group"):
        sg.surrogate_loss(lp, v, advantage="loo", groups=torch.tensor([0, 0, 0, 1]))
    with pytest.raises(TypeError, match="groups must be an integer tensor"):
        sg.surrogate_loss(lp, v, advantage="loo", groups=torch.tensor([0.0, 0.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match="needs params"):
        sg.surrogate_loss(lp, v, advantage="optimal")
    with pytest.raises(ValueError, match=r"^advantage must be one of \[.*got 'bogus'"):
        sg.surrogate_loss(lp, v, advantage="bogus")
    with pytest.raises(ValueError, match="does not work within groups"):
        sg.surrogate_loss(lp, v, advantage=sg.EMABaseline(), groups=torch.tensor([0, 0, 1, 1]))
    with pytest.raises(ValueError, match="needs context"):
        sg.surrogate_loss(lp, v, advantage=sg.LearnedBaseline())
    s = sg.surrogate_loss(lp, v)
    with pytest.raises(ValueError, match="name the parameters"):
        s.estimate()
    with pytest.raises(ValueError, match="require grad"):
        s.estimate(torch.zeros(4))


def test_self_normalised_weights_flag_the_estimate_biased():
    theta = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    d = torch.distributions.Categorical(logits=theta)
    x = torch.tensor([0, 1, 2, 1, 0, 2])
    values = torch.tensor([1.0, 2.0, 0.5, 1.5, 0.0, 3.0], dtype=torch.float64)
    w = torch.tensor([0.5, 1.0, 2.0, 1.5, 1.0, 0.7], dtype=torch.float64)
    plain = sg.surrogate_loss(d.log_prob(x), values, weights=w).estimate(theta)
    snips = sg.surrogate_loss(d.log_prob(x), values, weights=w, self_normalize=True)
    assert not plain.biased and snips.self_normalized and snips.estimate(theta).biased
    big = torch.arange(2000) % 3
    est = sg.surrogate_loss(
        d.log_prob(big),
        torch.ones(2000, dtype=torch.float64),
        weights=torch.ones(2000),
        self_normalize=True,
    ).estimate(theta)
    assert est.biased and est.info["batch_means"] == 64
