"""Baselines: exact replays of each formula, unbiasedness, variance reduction, bad options."""

from __future__ import annotations

import pytest
import torch
from torch import distributions as D

import stochgrad as sg

DT = torch.float64
THETA = torch.tensor([0.5, 1.0], dtype=DT)


def _normal(th):
    return D.Normal(th[0], th[1])


def quad(x):
    return (x - 2.0) ** 2


def _plain(n=8, seed=3):
    """The no-baseline run: f s per sample, from which every baseline is replayed by hand."""
    est = sg.score_function(quad, _normal, THETA, num_samples=n, seed=seed)
    eps = torch.randn(n, generator=torch.Generator().manual_seed(seed), dtype=DT)
    x = THETA[0] + THETA[1] * eps
    fx = quad(x)
    scores = est.per_sample / fx.unsqueeze(1)
    return fx, scores


def test_leave_one_out_replay():
    fx, s = _plain()
    est = sg.score_function(quad, _normal, THETA, num_samples=8, seed=3, baseline="loo")
    n = len(fx)
    b = torch.stack([torch.cat([fx[:i], fx[i + 1 :]]).mean() for i in range(n)])
    torch.testing.assert_close(est.per_sample, (fx - b).unsqueeze(1) * s, rtol=1e-12, atol=1e-12)
    assert not est.biased


def test_optimal_replay():
    fx, s = _plain()
    est = sg.score_function(quad, _normal, THETA, num_samples=8, seed=3, baseline="optimal")
    rows = []
    for i in range(len(fx)):
        keep = torch.arange(len(fx)) != i
        c = (fx[keep, None] * s[keep] ** 2).sum(0) / (s[keep] ** 2).sum(0)
        rows.append((fx[i] - c) * s[i])
    torch.testing.assert_close(est.per_sample, torch.stack(rows), rtol=1e-12, atol=1e-12)


def test_batch_mean_is_scaled_loo_and_flagged_biased():
    fx, s = _plain()
    est = sg.score_function(quad, _normal, THETA, num_samples=8, seed=3, baseline="mean")
    loo = sg.score_function(quad, _normal, THETA, num_samples=8, seed=3, baseline="loo")
    # f_i - mean = (n-1)/n (f_i - mean_{-i}): the batch mean shrinks the gradient by (n-1)/n.
    torch.testing.assert_close(est.per_sample, loo.per_sample * 7 / 8, rtol=1e-12, atol=1e-12)
    assert est.biased


def test_constant_replay():
    fx, s = _plain()
    est = sg.score_function(quad, _normal, THETA, num_samples=8, seed=3, baseline=2.5)
    torch.testing.assert_close(est.per_sample, (fx - 2.5).unsqueeze(1) * s, rtol=1e-12, atol=1e-12)


def test_ema_state_across_calls():
    ema = sg.EMABaseline(decay=0.5)
    fx1, s1 = _plain(seed=3)
    e1 = sg.score_function(quad, _normal, THETA, num_samples=8, seed=3, baseline=ema)
    torch.testing.assert_close(e1.per_sample, fx1.unsqueeze(1) * s1)  # first call: b = 0
    assert ema.value == pytest.approx(float(fx1.mean()))
    fx2, s2 = _plain(seed=4)
    e2 = sg.score_function(quad, _normal, THETA, num_samples=8, seed=4, baseline=ema)
    torch.testing.assert_close(e2.per_sample, (fx2 - fx1.mean()).unsqueeze(1) * s2)
    assert ema.value == pytest.approx(0.5 * float(fx1.mean()) + 0.5 * float(fx2.mean()))
    with pytest.raises(ValueError, match="decay"):
        sg.EMABaseline(decay=1.0)


def test_learned_baseline_fits_expectation_and_stays_unbiased():
    torch.manual_seed(0)  # the module's initial weights
    learned = sg.LearnedBaseline(lr=0.05)
    g = torch.Generator().manual_seed(0)
    first = None
    for _ in range(300):
        sg.score_function(quad, _normal, THETA, num_samples=1000, generator=g, baseline=learned)
        if first is None:
            first = [p.detach().clone() for p in learned.module.parameters()]
    assert any(
        not torch.equal(a, b) for a, b in zip(first, learned.module.parameters(), strict=True)
    )
    with torch.no_grad():
        fitted = float(learned.module(THETA.reshape(1, -1)))
    # E[f] = (theta - a)^2 + sigma^2 = 3.25; batch means have sd sqrt(11/1000) ~ 0.1
    assert abs(fitted - 3.25) < 0.3
    est = sg.score_function(quad, _normal, THETA, num_samples=50_000, generator=g, baseline=learned)
    exact = torch.tensor([-3.0, 2.0], dtype=DT)
    assert bool(((est.grad - exact).abs() < 5 * est.stderr).all())


@pytest.mark.parametrize("baseline", ["loo", "optimal"])
def test_baselines_reduce_variance(baseline):
    """Closed forms (docs/variance.md) at delta = -1.5: plain 51.6, 219; LOO 28, 146; optimal 24, 114."""
    plain = sg.score_function(quad, _normal, THETA, num_samples=200_000, seed=0)
    est = sg.score_function(quad, _normal, THETA, num_samples=200_000, seed=0, baseline=baseline)
    assert bool((est.variance < 0.8 * plain.variance).all())


def test_resolve_errors():
    with pytest.raises(ValueError, match=r"^baseline must be one of \[.*got 'Optimal-ish'"):
        sg.score_function(quad, _normal, THETA, num_samples=4, baseline="Optimal-ish")
    with pytest.raises(TypeError):
        sg.score_function(quad, _normal, THETA, num_samples=4, baseline=True)
    with pytest.raises(ValueError, match="finite"):
        sg.ConstantBaseline(float("nan"))
    with pytest.raises(ValueError, match="LearnedBaseline"):
        sg.score_function(quad, _normal, THETA, num_samples=4, baseline="learned")


# ---------------------------------------------------------------------------------------------
# advantage rules on value tensors, within groups; trajectories
# ---------------------------------------------------------------------------------------------
def test_group_advantages_replay_the_formulas():
    from stochgrad.baselines import GroupNormalizedBaseline, resolve_baseline

    v = torch.tensor([1.0, 4.0, 2.0, 10.0, 0.0, 5.0], dtype=torch.float64)
    groups = torch.tensor([3, 3, 3, 8, 8, 8])
    a, b = v[:3], v[3:]
    loo = torch.cat([a - (a.sum() - a) / 2, b - (b.sum() - b) / 2])
    torch.testing.assert_close(resolve_baseline("loo").advantages(v, groups), loo)
    mean = torch.cat([a - a.mean(), b - b.mean()])
    torch.testing.assert_close(resolve_baseline("mean").advantages(v, groups), mean)
    torch.testing.assert_close(resolve_baseline("grpo_unscaled").advantages(v, groups), mean)
    grpo = torch.cat([(a - a.mean()) / (a.std() + 1e-4), (b - b.mean()) / (b.std() + 1e-4)])
    torch.testing.assert_close(resolve_baseline("grpo").advantages(v, groups), grpo)
    torch.testing.assert_close(
        GroupNormalizedBaseline(eps=0.0).advantages(a), (a - a.mean()) / a.std()
    )
    torch.testing.assert_close(resolve_baseline(2.0).advantages(v), v - 2.0)
    torch.testing.assert_close(resolve_baseline(None).advantages(v, groups), v)
    # without groups: the same as the score function's baseline
    bl = resolve_baseline("loo")
    torch.testing.assert_close(
        bl.advantages(v), v - bl(v, torch.ones(6, 1, dtype=v.dtype), None).squeeze(1)
    )
    assert resolve_baseline("rloo").name == "loo" and not resolve_baseline("grpo").unbiased


def test_reward_to_go_and_gae_against_loops():
    from stochgrad.baselines import gae, reward_to_go

    g = torch.Generator().manual_seed(0)
    r = torch.rand(6, 3, generator=g, dtype=torch.float64)
    v = torch.rand(6, 3, generator=g, dtype=torch.float64)
    dones = torch.zeros(6, 3, dtype=torch.bool)
    dones[2, 1] = True  # episode 1 of column 1 ends at t = 2
    gamma, lam = 0.9, 0.8
    rtg = reward_to_go(r, gamma, dones)
    adv, ret = gae(r, v, gamma, lam, dones, last_value=torch.zeros(3, dtype=torch.float64))
    for b in range(3):
        for t in range(6):
            total, k = 0.0, t
            while k < 6:
                total += gamma ** (k - t) * float(r[k, b])
                if dones[k, b]:
                    break
                k += 1
            assert float(rtg[t, b]) == pytest.approx(total)
            # GAE as its definition: the discounted sum of TD errors up to the episode's end
            a, k = 0.0, t
            while k < 6:
                nxt = 0.0 if (dones[k, b] or k == 5) else float(v[k + 1, b])
                delta = float(r[k, b]) + gamma * nxt - float(v[k, b])
                a += (gamma * lam) ** (k - t) * delta
                if dones[k, b]:
                    break
                k += 1
            assert float(adv[t, b]) == pytest.approx(a)
    torch.testing.assert_close(ret, adv + v)
    # lam = 1: reward-to-go minus the value (unbiased for any value function)
    adv1, _ = gae(r, v, gamma, 1.0, dones)
    torch.testing.assert_close(adv1, rtg - v)


def test_advantage_bad_input():
    from stochgrad.baselines import gae, resolve_baseline, reward_to_go

    bl = resolve_baseline("loo")
    with pytest.raises(ValueError, match="values must be one value per sample"):
        bl.advantages(torch.ones(2, 2))
    with pytest.raises(TypeError, match="values must be a tensor of real numbers"):
        bl.advantages([1.0, 2.0])
    with pytest.raises(ValueError, match="at least 2 samples per group"):
        bl.advantages(torch.ones(3), torch.tensor([0, 1, 1]))
    with pytest.raises(ValueError, match="finite"):
        bl.advantages(torch.tensor([1.0, float("inf")]))
    with pytest.raises(ValueError, match="gamma must be a number in"):
        reward_to_go(torch.ones(3), gamma=1.5)
    with pytest.raises(ValueError, match="shaped like rewards"):
        gae(torch.ones(3), torch.ones(4))
    with pytest.raises(ValueError, match=r"\[T\] or \[T, B\]"):
        reward_to_go(torch.ones(2, 2, 2))
