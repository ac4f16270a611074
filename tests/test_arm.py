"""ARM, DisARM and RLOO: seeded replays, unbiasedness against exact enumeration, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import distributions as D

import stochgrad as sg
from stochgrad.estimators.discrete import arm, disarm, rloo

DT = torch.float64
T = 0.499
N = 20_000


def toy(b):
    return (b - T) ** 2


def bern_logits(lg):
    return D.Bernoulli(logits=lg)


def bern_probs(p):
    return D.Bernoulli(probs=p)


def product10(lg):
    return D.Independent(D.Bernoulli(logits=lg), 1)


def nonlinear10(b):
    return (b.sum(-1) - 3.0) ** 2 + b[:, 0] * b[:, 9] + torch.sin(3.0 * b[:, 4] - b[:, 5])


def nonlinear3(b):
    return torch.exp(b[:, 0] - b[:, 1]) + b[:, 1] * b[:, 2] * 2.0 - b[:, 2]


# ---------------------------------------------------------------------------------------------
# (1) seeded replays against the formulas
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["arm", "disarm"])
def test_scalar_logit_replay(method):
    alpha = 0.7
    fn = arm if method == "arm" else disarm
    with pytest.warns(sg.SingleSampleWarning, match=method):
        est = fn(toy, bern_logits, torch.tensor(alpha, dtype=DT), num_samples=1, seed=11)
    u = float(torch.rand(1, generator=torch.Generator().manual_seed(11), dtype=DT))
    sig = 1.0 / (1.0 + np.exp(-alpha))
    b, b_anti = float(u < sig), float(u > 1.0 - sig)
    fb, fa = (b - T) ** 2, (b_anti - T) ** 2
    if method == "arm":
        expected = (fa - fb) * (u - 0.5)
    else:
        expected = 0.5 * (fb - fa) * (-1.0) ** b_anti * float(b != b_anti) * max(sig, 1 - sig)
    assert est.per_sample.shape == (1,)
    assert float(est.per_sample[0]) == pytest.approx(expected, rel=1e-12, abs=1e-15)
    assert est.evaluations == 2 and est.num_samples == 1 and not est.biased
    assert est.method == method


@pytest.mark.parametrize("method", ["arm", "disarm"])
def test_independent_probs_replay_with_chain_rule(method):
    """Stored probs: d/dp = d/dlogit / (p (1 - p)); params enter through a map (chain rule)."""
    theta = torch.tensor([0.2, -0.4, 1.1], dtype=DT)

    def dist_fn(th):
        return D.Independent(D.Bernoulli(probs=torch.sigmoid(2.0 * th)), 1)

    fn = arm if method == "arm" else disarm
    with pytest.warns(sg.SingleSampleWarning):
        est = fn(nonlinear3, dist_fn, theta, num_samples=1, seed=5)
    u = torch.rand(1, 3, generator=torch.Generator().manual_seed(5), dtype=DT)
    p = torch.sigmoid(2.0 * theta)
    b, b_anti = (u < p).to(DT), (u > 1 - p).to(DT)
    fb, fa = nonlinear3(b), nonlinear3(b_anti)
    if method == "arm":
        d_logit = (fa - fb) * (u - 0.5)
    else:
        d_logit = 0.5 * (fb - fa) * (b - b_anti) * torch.maximum(p, 1 - p)
    d_probs = d_logit / (p * (1 - p))
    expected = d_probs * 2.0 * p * (1 - p)  # dp/dtheta = 2 p (1 - p)
    torch.testing.assert_close(est.per_sample, expected, rtol=1e-12, atol=1e-14)


def test_f_called_once_on_the_stacked_pairs():
    calls = []

    def f(b):
        calls.append(tuple(b.shape))
        return nonlinear10(b)

    est = disarm(f, product10, torch.zeros(10, dtype=DT), num_samples=7, seed=0)
    assert calls == [(14, 10)]
    assert est.per_sample.shape == (7, 10)
    assert est.evaluations == 14


def test_arm_and_disarm_share_uniforms_and_disarm_is_arm_rao_blackwellised():
    """Same seed, same pairs: where the pair differs DisARM's weight is E[ARM's | pair]."""
    lg = torch.tensor(0.9, dtype=DT)
    a = arm(toy, bern_logits, lg, num_samples=50, seed=2)
    d = disarm(toy, bern_logits, lg, num_samples=50, seed=2)
    same = a.per_sample == 0  # b == b~ exactly when both terms vanish
    assert bool((d.per_sample[same] == 0).all())
    assert bool((d.per_sample[~same] != 0).all())


def test_rloo_is_score_function_with_loo_baseline():
    lg = torch.linspace(-1.0, 1.0, 10, dtype=DT)
    r = rloo(nonlinear10, product10, lg, num_samples=64, seed=4)
    s = sg.score_function(nonlinear10, product10, lg, num_samples=64, seed=4, baseline="loo")
    torch.testing.assert_close(r.per_sample, s.per_sample, rtol=0, atol=0)
    assert r.method == "rloo" and r.info["baseline"] == "loo" and r.evaluations == 64


# ---------------------------------------------------------------------------------------------
# (2) unbiased against exact enumeration; variance ordering
# ---------------------------------------------------------------------------------------------
CASES = [
    ("scalar-logits", toy, bern_logits, torch.tensor(-0.4, dtype=DT)),
    ("scalar-probs", toy, bern_probs, torch.tensor(0.3, dtype=DT)),
    ("product-of-10", nonlinear10, product10, torch.linspace(-1.5, 1.5, 10, dtype=DT)),
    ("batch-probs", nonlinear3, bern_probs, torch.tensor([0.2, 0.55, 0.8], dtype=DT)),
]


@pytest.mark.parametrize("method", ["arm", "disarm", "rloo"])
@pytest.mark.parametrize(("name", "f", "dist_fn", "params"), CASES, ids=[c[0] for c in CASES])
def test_unbiased(method, name, f, dist_fn, params):
    fn = {"arm": arm, "disarm": disarm, "rloo": rloo}[method]
    seed = sum(map(ord, name + method))
    est = fn(f, dist_fn, params, num_samples=N, seed=seed)
    exact = sg.exact_gradient(f, dist_fn, params)
    assert est.grad.shape == params.shape
    assert est.per_sample.shape == (N, *params.shape)
    z = (est.grad - exact) / est.stderr
    assert bool(((est.grad - exact).abs() < 5 * est.stderr).all()), f"{name} {method}: z = {z}"


@pytest.mark.parametrize(("name", "f", "dist_fn", "params"), CASES, ids=[c[0] for c in CASES])
def test_disarm_variance_at_most_arm(name, f, dist_fn, params):
    a = arm(f, dist_fn, params, num_samples=N, seed=9)
    d = disarm(f, dist_fn, params, num_samples=N, seed=9)
    assert bool((d.variance <= a.variance).all()), (d.variance, a.variance)


def test_toy_at_one_half_disarm_below_arm_below_reinforce():
    """RELAX's toy at theta = 1/2: DisARM is exact there, ARM nearly so, REINFORCE is not."""
    lg = torch.tensor(0.0, dtype=DT)
    d = disarm(toy, bern_logits, lg, num_samples=N, seed=1)
    a = arm(toy, bern_logits, lg, num_samples=N, seed=1)
    r = sg.score_function(toy, bern_logits, lg, num_samples=N, seed=1)
    assert float(d.variance) < 1e-20  # every term is 0.25 * ((1 - t)^2 - t^2)
    torch.testing.assert_close(d.per_sample, torch.full((N,), 0.25 * (1 - 2 * T), dtype=DT))
    assert float(d.variance) <= float(a.variance) < float(r.variance)
    # REINFORCE: E[f^2 s^2] - g^2 = ((1 - t)^4 + t^4) / 8 - g^2 ~ 1/64 (s = b - 1/2).
    assert float(r.variance) == pytest.approx(1 / 64, rel=0.05)


# ---------------------------------------------------------------------------------------------
# (3) bad input
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fn", [arm, disarm])
@pytest.mark.parametrize(
    ("dist_fn", "params"),
    [
        (lambda lg: D.Categorical(logits=lg), torch.zeros(3, dtype=DT)),
        (lambda th: D.Normal(th[0], th[1]), torch.tensor([0.0, 1.0], dtype=DT)),
    ],
    ids=["categorical", "normal"],
)
def test_other_distributions_refused(fn, dist_fn, params):
    with pytest.raises(ValueError, match=r"Bernoulli.*sg\.score_function"):
        fn(lambda x: x.reshape(x.shape[0], -1).sum(-1), dist_fn, params, num_samples=4, seed=0)


@pytest.mark.parametrize("fn", [arm, disarm])
def test_bad_num_samples_and_shapes(fn):
    lg = torch.tensor(0.2, dtype=DT)
    with pytest.raises(ValueError, match="num_samples"):
        fn(toy, bern_logits, lg, num_samples=0, seed=0)
    with pytest.raises(ValueError, match="one value per sample"):
        fn(lambda b: torch.zeros(3, dtype=DT), bern_logits, lg, num_samples=4, seed=0)
    with pytest.raises(ValueError, match="non-finite"):
        fn(lambda b: b / 0.0, bern_logits, lg, num_samples=4, seed=0)
    with pytest.raises(ValueError, match=r"probs strictly inside"):
        fn(toy, bern_probs, torch.tensor(0.0, dtype=DT), num_samples=4, seed=0)
    with pytest.raises(ValueError, match="either generator or seed"):
        fn(toy, bern_logits, lg, num_samples=4, seed=0, generator=torch.Generator())


def test_rloo_needs_two_samples():
    with pytest.raises(ValueError, match="num_samples must be >= 2"):
        rloo(toy, bern_logits, torch.tensor(0.0, dtype=DT), num_samples=1, seed=0)
