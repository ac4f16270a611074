"""Tests of off-policy learning from logged bandit data and the confounding demonstration."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.preprocessing import PolynomialFeatures

import stochgrad as sg
from stochgrad.apps import offpolicy as op
from stochgrad.apps.offpolicy import (
    ConfoundedBandit,
    SyntheticBandit,
    cross_fitted_rewards,
    dr_gradient,
    fit_reward_model,
    ips_gradient,
    policy_probs,
    policy_value,
    snips_gradient,
    train_policy,
    true_gradient,
)
from stochgrad.apps.offpolicy.policy import _features

F64 = torch.float64


# vector work on ~1e6 elements: one thread is faster, and immune to a busy machine
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def env() -> SyntheticBandit:
    return SyntheticBandit()


@pytest.fixture(scope="module")
def theta() -> torch.Tensor:
    return 0.5 * torch.randn(10, 6, generator=torch.Generator().manual_seed(7), dtype=F64)


@pytest.fixture(scope="module")
def big(env: SyntheticBandit) -> op.LoggedData:
    return env.sample(100_000, generator=np.random.default_rng(11))


def _obp_base_reward(x: np.ndarray, n_actions: int = 10, random_state: int = 12345) -> np.ndarray:
    """OBP's ``_base_reward_function`` (degree 1) without its batch z-scoring, written anew."""
    rs = np.random.RandomState(random_state)
    ctx = PolynomialFeatures(degree=1).fit_transform(x)
    act = PolynomialFeatures(degree=1).fit_transform(np.eye(n_actions))
    c = rs.uniform(-1, 1, size=ctx.shape[1])
    alpha = rs.uniform(-1, 1, size=act.shape[1])
    M = rs.uniform(-1, 1, size=(ctx.shape[1], act.shape[1]))
    return np.tile(ctx @ c, (n_actions, 1)).T + alpha @ act.T + ctx @ M @ act.T


# ---------------------------------------------------------------------------------------------
# layer 1: seeded cases replayed against the formulas
# ---------------------------------------------------------------------------------------------


def test_reward_function_is_obp_base_reward_z_scored_by_population_moments(env) -> None:
    x = np.random.default_rng(0).standard_normal((7, 5))
    f = _obp_base_reward(x)
    # f is linear in x: E_x f(x, a) = f(0, a) and Var_x f(x, a) = sum_j (f(e_j, a) - f(0, a))^2
    f0 = _obp_base_reward(np.zeros((1, 5)))[0]
    slopes = _obp_base_reward(np.eye(5)) - f0
    mean = f0.mean()
    std = np.sqrt(((f0 - mean) ** 2).mean() + (slopes**2).sum(0).mean())
    np.testing.assert_allclose(
        env.logits(torch.from_numpy(x)).numpy(), (f - mean) / std, atol=1e-12
    )
    q = env.expected_reward(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(q, 1 / (1 + np.exp(-(f - mean) / std)), atol=1e-12)
    pi0 = env.behavior_policy(torch.from_numpy(x)).numpy()
    e = np.exp(-3.0 * q)
    np.testing.assert_allclose(pi0, e / e.sum(1, keepdims=True), atol=1e-12)


def test_population_z_scoring_matches_obp_batch_z_scoring_on_a_large_batch(env) -> None:
    x = np.random.default_rng(1).standard_normal((200_000, 5))
    f = _obp_base_reward(x)
    obp_style = (f - f.mean()) / f.std()  # what OBP does per batch
    np.testing.assert_allclose(env.logits(torch.from_numpy(x)).numpy(), obp_style, atol=0.02)


def test_sample_replays_the_draws(env) -> None:
    d = env.sample(6, generator=np.random.default_rng(3))
    g = np.random.default_rng(3)
    x = g.standard_normal((6, 5))
    u_a, u_r = g.random(6), g.random(6)
    q = env.expected_reward(torch.from_numpy(x)).numpy()
    pi0 = env.behavior_policy(torch.from_numpy(x)).numpy()
    a = np.array(
        [np.searchsorted(np.cumsum(p), u, side="left") for p, u in zip(pi0, u_a, strict=True)]
    )
    np.testing.assert_array_equal(d.contexts.numpy(), x)
    np.testing.assert_array_equal(d.actions.numpy(), a)
    np.testing.assert_array_equal(d.rewards.numpy(), (u_r < q[np.arange(6), a]).astype(float))
    np.testing.assert_allclose(d.propensities.numpy(), pi0[np.arange(6), a], atol=1e-15)
    d2 = env.sample(6, generator=np.random.default_rng(3))
    assert torch.equal(d.actions, d2.actions) and torch.equal(d.rewards, d2.rewards)


def _values(theta, d, q_hat):
    """IPS, SNIPS and DR value estimates as autograd functions of theta."""
    probs = policy_probs(theta, d.contexts)
    rows = torch.arange(len(d))
    w = probs[rows, d.actions] / d.propensities
    ips = (w * d.rewards).mean()
    snips = (w * d.rewards).sum() / w.sum()
    dr = ((probs * q_hat).sum(-1) + w * (d.rewards - q_hat[rows, d.actions])).mean()
    return ips, snips, dr


def test_gradients_are_the_derivatives_of_the_value_estimates(env, theta) -> None:
    d = env.sample(40, generator=np.random.default_rng(5))
    q_hat = torch.full((40, 10), 0.3, dtype=F64)
    th = theta.clone().requires_grad_(True)
    logged = (d.contexts, d.actions, d.rewards, d.propensities)
    for value, est in zip(
        _values(th, d, q_hat),
        (
            ips_gradient(theta, *logged),
            snips_gradient(theta, *logged),
            dr_gradient(theta, *logged, q_hat),
        ),
        strict=True,
    ):
        (g,) = torch.autograd.grad(value, th, retain_graph=True)
        torch.testing.assert_close(est.grad, g, atol=1e-12, rtol=1e-10)
        assert est.info["value"] == pytest.approx(float(value.detach()), abs=1e-12)
        assert est.per_sample.shape == (40, 10, 6)


def test_ips_per_sample_term_by_hand(env, theta) -> None:
    d = env.sample(3, generator=np.random.default_rng(8))
    est = ips_gradient(theta, d.contexts, d.actions, d.rewards, d.propensities)
    i = 1
    x1 = np.concatenate([[1.0], d.contexts[i].numpy()])
    logits = theta.numpy() @ x1
    pi = np.exp(logits - logits.max())
    pi /= pi.sum()
    a = int(d.actions[i])
    w = pi[a] / float(d.propensities[i])
    expected = w * float(d.rewards[i]) * np.outer(np.eye(10)[a] - pi, x1)
    np.testing.assert_allclose(est.per_sample[i].numpy(), expected, atol=1e-14)
    # the score is the derivative of log pi_theta(a_i | x_i)
    th = theta.clone().requires_grad_(True)
    logp = torch.log_softmax(_features(d.contexts) @ th.T, -1)[i, a]
    (g,) = torch.autograd.grad(logp, th)
    torch.testing.assert_close(op.score(theta, d.contexts, d.actions)[i], g, atol=1e-14, rtol=1e-12)


def test_true_gradient_against_autograd_and_exact_enumeration(env, theta) -> None:
    x = env.sample_contexts(5, generator=np.random.default_rng(2))
    q = env.expected_reward(x)
    th = theta.clone().requires_grad_(True)
    v = (policy_probs(th, x) * q).sum(-1).mean()
    (g,) = torch.autograd.grad(v, th)
    torch.testing.assert_close(true_gradient(theta, x, q), g, atol=1e-13, rtol=1e-10)
    # one context: the core's exact enumeration of E_{a ~ Categorical(pi_theta(.|x))}[q(x, a)]
    x1 = torch.cat([torch.ones(1, dtype=F64), x[0]])
    ref = sg.exact_gradient(
        lambda a: q[0][a], lambda t: torch.distributions.Categorical(logits=t @ x1), theta
    )
    torch.testing.assert_close(true_gradient(theta, x[:1], q[:1]), ref, atol=1e-12, rtol=1e-9)
    assert policy_value(policy_probs(theta, x), q) == pytest.approx(float(v.detach()), abs=1e-14)


def test_confounded_sample_replays_and_marginalises(env) -> None:
    cenv = ConfoundedBandit(env, 1.0, 2.0)
    cd = cenv.sample(5, generator=np.random.default_rng(4))
    g = np.random.default_rng(4)
    x = torch.from_numpy(g.standard_normal((5, 5)))
    u = (g.random(5) < 0.5).astype(int)
    f = env.logits(x).numpy()
    s = (np.arange(10) < 5).astype(float)
    eps = 2 * u[:, None] - 1
    logit_b = -3.0 / (1 + np.exp(-f)) + 1.0 * eps * s
    pi_u = np.exp(logit_b) / np.exp(logit_b).sum(1, keepdims=True)
    a = np.array(
        [
            np.searchsorted(np.cumsum(p), v, side="left")
            for p, v in zip(pi_u, g.random(5), strict=True)
        ]
    )
    q_u = 1 / (1 + np.exp(-(f + 2.0 * eps * s)))
    r = (g.random(5) < q_u[np.arange(5), a]).astype(float)
    np.testing.assert_array_equal(cd.confounder.numpy(), u)
    np.testing.assert_array_equal(cd.logged.actions.numpy(), a)
    np.testing.assert_array_equal(cd.logged.rewards.numpy(), r)
    np.testing.assert_allclose(cd.propensities_given_u.numpy(), pi_u[np.arange(5), a], atol=1e-14)
    # observed-context propensities and rewards average over u in {0, 1}
    both = [-3.0 / (1 + np.exp(-f)) + e * s for e in (-1.0, 1.0)]
    pi_m = np.mean([np.exp(b) / np.exp(b).sum(1, keepdims=True) for b in both], 0)
    q_m = np.mean([1 / (1 + np.exp(-(f + 2.0 * e * s))) for e in (-1.0, 1.0)], 0)
    np.testing.assert_allclose(cd.logged.propensities.numpy(), pi_m[np.arange(5), a], atol=1e-14)
    np.testing.assert_allclose(cd.logged.expected_rewards.numpy(), q_m, atol=1e-14)


# ---------------------------------------------------------------------------------------------
# layer 2: many-sample means against the closed-form gradient (given the logged contexts)
# ---------------------------------------------------------------------------------------------


def _max_z(est, truth) -> float:
    return float(((est.grad - truth) / est.stderr).abs().max())


def test_ips_is_unbiased(big, theta) -> None:
    truth = true_gradient(theta, big.contexts, big.expected_rewards)
    est = ips_gradient(theta, big.contexts, big.actions, big.rewards, big.propensities)
    assert _max_z(est, truth) < 5  # 60 components: P(max |z| > 5) ~ 3e-5 when unbiased
    # and the test has power: the gradient is far from zero in units of its stderr
    assert float((truth / est.stderr).abs().max()) > 10


def test_dr_is_unbiased_with_a_wrong_reward_model(big, theta) -> None:
    truth = true_gradient(theta, big.contexts, big.expected_rewards)
    wrong = torch.full_like(big.expected_rewards, 0.5)
    est = dr_gradient(theta, big.contexts, big.actions, big.rewards, big.propensities, wrong)
    assert _max_z(est, truth) < 5


def test_dr_is_unbiased_with_wrong_propensities_and_the_true_reward_model(big, theta) -> None:
    truth = true_gradient(theta, big.contexts, big.expected_rewards)
    uniform = torch.full_like(big.propensities, 0.1)  # not the logging policy
    logged = (big.contexts, big.actions, big.rewards, uniform)
    est = dr_gradient(theta, *logged, big.expected_rewards)
    assert _max_z(est, truth) < 5
    assert _max_z(ips_gradient(theta, *logged), truth) > 5  # IPS has no such protection


def test_dr_with_a_cross_fitted_reward_model_is_unbiased_and_lower_variance(env, theta) -> None:
    d = env.sample(20_000, generator=np.random.default_rng(12))
    q_hat = cross_fitted_rewards(d, 2, generator=np.random.default_rng(0))
    assert float((q_hat - d.expected_rewards).abs().mean()) < 0.05  # the model class is right
    truth = true_gradient(theta, d.contexts, d.expected_rewards)
    logged = (d.contexts, d.actions, d.rewards, d.propensities)
    dr = dr_gradient(theta, *logged, q_hat)
    ips = ips_gradient(theta, *logged)
    assert _max_z(dr, truth) < 5
    assert float(dr.variance.sum()) < 0.5 * float(ips.variance.sum())


def test_snips_is_consistent(big, theta) -> None:
    truth = true_gradient(theta, big.contexts, big.expected_rewards)
    est = snips_gradient(theta, big.contexts, big.actions, big.rewards, big.propensities)
    assert _max_z(est, truth) < 5


def test_snips_bias_is_small_at_small_n_and_its_spread_below_ips(env, theta) -> None:
    # 400 data sets of 200 rounds on the same 200 contexts: the unbiased IPS mean agrees within
    # 5 stderr; SNIPS's O(1/n) bias is not detectable at this precision, and its spread is
    # smaller than IPS's (self-normalisation acts as a baseline).
    n, reps = 200, 400
    x = env.sample_contexts(n, generator=np.random.default_rng(9))
    q, pi0 = env.expected_reward(x), env.behavior_policy(x)
    truth = true_gradient(theta, x, q)
    g = np.random.default_rng(10)
    u_a, u_r = g.random((reps, n)), g.random((reps, n))
    a = torch.from_numpy((u_a[:, :, None] > np.cumsum(pi0.numpy(), -1)).sum(-1).clip(max=9))
    q_a = torch.gather(q.expand(reps, n, 10), 2, a[..., None])[..., 0]
    r = (torch.from_numpy(u_r) < q_a).to(F64)
    rows = torch.arange(n)
    sn = torch.stack(
        [snips_gradient(theta, x, a[k], r[k], pi0[rows, a[k]]).grad for k in range(reps)]
    )
    ips = torch.stack(
        [ips_gradient(theta, x, a[k], r[k], pi0[rows, a[k]]).grad for k in range(reps)]
    )
    for est in (ips, sn):
        se = est.std(0) / reps**0.5
        assert float(((est.mean(0) - truth) / se).abs().max()) < 5
    assert float(sn.var(0).sum()) < 0.8 * float(ips.var(0).sum())


@pytest.mark.parametrize("learner", ["ips", "snips", "dr"])
def test_train_policy_is_adam_ascent_on_the_value_estimate(env, learner) -> None:
    """Three steps of train_policy replayed with torch.optim.Adam on minus the learner's value
    estimate (autograd): the same update, to rounding."""
    d = env.sample(300, generator=np.random.default_rng(15))
    q_hat = torch.full((300, 10), 0.4, dtype=F64)
    steps = []
    theta = train_policy(
        d, learner, iterations=3, lr=0.1, reward_estimates=q_hat, progress=steps.append
    )
    assert steps == [1, 1, 1]
    th = torch.zeros(10, 6, dtype=F64, requires_grad=True)
    opt = torch.optim.Adam([th], lr=0.1)
    k = ("ips", "snips", "dr").index(learner)
    for _ in range(3):
        opt.zero_grad()
        (-_values(th, d, q_hat)[k]).backward()
        opt.step()
    torch.testing.assert_close(theta, th.detach(), atol=1e-12, rtol=1e-10)


def test_objective_is_the_cores_importance_weighted_surrogate(env, theta) -> None:
    """offpolicy_objective replayed against surrogate_loss and the formulas: the weights are
    pi/pi0, SNIPS's coefficients n w (r - V_SN) / sum w, DR's loss the direct term plus the
    weighted residual surrogate; the loss's gradient is the value estimate's for any logits."""
    d = env.sample(30, generator=np.random.default_rng(21))
    q_hat = torch.full((30, 10), 0.3, dtype=F64)
    rows = torch.arange(30)
    logits = torch.randn(30, 10, generator=torch.Generator().manual_seed(2), dtype=F64)
    logits.requires_grad_(True)  # free logits: a policy of any form
    pi = torch.softmax(logits.detach(), -1)
    w = pi[rows, d.actions] / d.propensities
    logged = (d.actions, d.rewards, d.propensities)
    torch.testing.assert_close(op.importance_weights(pi, d.actions, d.propensities), w)
    ips = op.offpolicy_objective("ips", logits, *logged)
    torch.testing.assert_close(ips.weights, w, rtol=0, atol=0)
    torch.testing.assert_close(ips.surrogate.coefficients, w * d.rewards, rtol=0, atol=1e-15)
    sn = op.offpolicy_objective("snips", logits, *logged)
    v_sn = float((w * d.rewards).sum() / w.sum())
    assert sn.value == pytest.approx(v_sn, abs=1e-15)
    assert sn.surrogate.rule.name == "constant"
    torch.testing.assert_close(
        sn.surrogate.coefficients, 30 * w * (d.rewards - v_sn) / w.sum(), rtol=1e-13, atol=1e-15
    )
    dr = op.offpolicy_objective("dr", logits, *logged, q_hat)
    direct = float((pi * q_hat).sum(-1).mean())
    assert float(dr.direct.detach()) == pytest.approx(direct, abs=1e-15)
    ref = sg.surrogate_loss(
        torch.log_softmax(logits, -1)[rows, d.actions], d.rewards - 0.3, weights=w
    )
    assert float(dr.loss.detach()) == pytest.approx(direct + float(ref.loss.detach()), abs=1e-15)
    for k, obj in enumerate((ips, sn, dr)):
        value = _values_of_logits(logits, d, q_hat)[k]
        assert obj.value == pytest.approx(float(value.detach()), abs=1e-13)
        (g,) = torch.autograd.grad(obj.loss, logits, retain_graph=True)
        (ref_g,) = torch.autograd.grad(value, logits, retain_graph=True)
        torch.testing.assert_close(g, ref_g, atol=1e-14, rtol=1e-12)


def test_objective_stays_finite_when_a_logged_actions_probability_underflows() -> None:
    logits = torch.tensor([[0.0, 1000.0], [0.0, 0.0]], dtype=F64, requires_grad=True)
    actions, r = torch.tensor([0, 0]), torch.tensor([1.0, 1.0], dtype=F64)
    prop = torch.tensor([0.5, 0.5], dtype=F64)
    for learner in ("ips", "snips", "dr"):
        obj = op.offpolicy_objective(
            learner, logits, actions, r, prop, torch.zeros(2, 2, dtype=F64)
        )
        (g,) = torch.autograd.grad(obj.loss, logits)
        assert obj.weights.tolist() == [0.0, 1.0] and bool(torch.isfinite(g).all()), learner
    # the underflowed round carries no weight: the gradient is the other round's
    (g,) = torch.autograd.grad(op.offpolicy_objective("ips", logits, actions, r, prop).loss, logits)
    torch.testing.assert_close(g, torch.tensor([[0.0, 0.0], [0.25, -0.25]], dtype=F64))


def _values_of_logits(logits, d, q_hat):
    probs = torch.softmax(logits, -1)
    rows = torch.arange(len(d))
    w = probs[rows, d.actions] / d.propensities
    ips = (w * d.rewards).mean()
    snips = (w * d.rewards).sum() / w.sum()
    dr = ((probs * q_hat).sum(-1) + w * (d.rewards - q_hat[rows, d.actions])).mean()
    return ips, snips, dr


def test_gradient_estimates_carry_the_shared_weights(env, theta) -> None:
    d = env.sample(25, generator=np.random.default_rng(22))
    logged = (d.contexts, d.actions, d.rewards, d.propensities)
    w = op.importance_weights(policy_probs(theta, d.contexts), d.actions, d.propensities)
    for est in (
        ips_gradient(theta, *logged),
        snips_gradient(theta, *logged),
        dr_gradient(theta, *logged, d.expected_rewards),
    ):
        torch.testing.assert_close(est.info["weights"], w, rtol=1e-14, atol=0)
        assert est.info["max_weight"] == pytest.approx(float(w.max()), rel=1e-14)
        assert isinstance(est, sg.GradientEstimate) and est.num_samples == 25
    assert float(ips_gradient(theta, *logged).info["value"]) == pytest.approx(
        float((w * d.rewards).mean()), abs=1e-15
    )


def test_moved_study_names_still_work_with_a_warning() -> None:
    from stochgrad.studies import offpolicy as study

    with pytest.warns(DeprecationWarning, match="stochgrad.studies.offpolicy.LearnersConfig"):
        assert op.StudyConfig is study.LearnersConfig
    with pytest.warns(DeprecationWarning, match="confounding_demonstration"):
        assert op.confounding_study is study.confounding_demonstration
    with pytest.warns(DeprecationWarning):
        assert op.run_one is study.learner_run
    with pytest.raises(AttributeError):
        op.no_such_name  # noqa: B018


def test_learned_policies_beat_logging_and_random(env) -> None:
    d = env.sample(3000, generator=np.random.default_rng(13))
    test_x = env.sample_contexts(3000, generator=np.random.default_rng(14))
    q = env.expected_reward(test_x)
    logging = policy_value(env.behavior_policy(test_x), q)
    for learner in ("ips", "snips"):
        theta = train_policy(d, learner, iterations=60, lr=0.1)
        value = policy_value(policy_probs(theta, test_x), q)
        assert value > 0.6 > 0.5 > logging, (learner, value, logging)
    model = fit_reward_model(d.contexts, d.actions, d.rewards, 10)
    greedy = torch.nn.functional.one_hot(model.predict(test_x).argmax(-1), 10).to(F64)
    assert policy_value(greedy, q) > 0.7


# ---------------------------------------------------------------------------------------------
# layer 3: bad input
# ---------------------------------------------------------------------------------------------


def test_bad_input_raises(env, theta) -> None:
    d = env.sample(10, generator=np.random.default_rng(0))
    logged = [d.contexts, d.actions, d.rewards, d.propensities]
    with pytest.raises(ValueError, match="propensities must lie in"):
        ips_gradient(theta, *logged[:3], torch.zeros(10, dtype=F64))
    with pytest.raises(ValueError, match="rewards must be a tensor of shape"):
        ips_gradient(theta, *logged[:2], torch.zeros(9, dtype=F64), d.propensities)
    with pytest.raises(ValueError, match="rewards must be finite"):
        snips_gradient(
            theta, *logged[:2], torch.full((10,), float("nan"), dtype=F64), d.propensities
        )
    with pytest.raises(ValueError, match="theta has shape"):
        ips_gradient(theta[:, :3], *logged)
    with pytest.raises(ValueError, match="actions must lie in"):
        ips_gradient(theta, d.contexts, d.actions + 10, d.rewards, d.propensities)
    with pytest.raises(ValueError, match="reward_estimates must be a tensor of shape"):
        dr_gradient(theta, *logged, torch.zeros(10, 3, dtype=F64))
    with pytest.raises(ValueError, match="learner must be"):
        train_policy(d, "ppo")
    with pytest.raises(ValueError, match="needs reward_estimates"):
        train_policy(d, "dr")
    with pytest.raises(ValueError, match="n_actions must be"):
        SyntheticBandit(n_actions=1)
    with pytest.raises(TypeError, match="generator must be"):
        env.sample(5, generator=0)
    with pytest.raises(ValueError, match="contexts must have shape"):
        env.logits(torch.zeros(3, 4, dtype=F64))
    with pytest.raises(ValueError, match="rewards must be 0/1"):
        fit_reward_model(d.contexts, d.actions, torch.full((10,), 0.5, dtype=F64), 10)
    with pytest.raises(ValueError, match="lr must be > 0"):
        train_policy(d, "ips", lr=0.0)
    with pytest.raises(TypeError, match="iterations must be an int"):
        train_policy(d, "ips", iterations=2.5)
    with pytest.raises(ValueError, match="C must be > 0"):
        fit_reward_model(d.contexts, d.actions, d.rewards, 10, C=0.0)
    with pytest.raises(ValueError, match="probs and expected_rewards"):
        policy_value(torch.ones(3, 2), torch.ones(3, 3))
    logits = torch.zeros(10, 10, dtype=F64)
    with pytest.raises(ValueError, match="learner must be"):
        op.offpolicy_objective("dm", logits, *logged[1:])
    with pytest.raises(ValueError, match="logits must be a non-empty"):
        op.offpolicy_objective("ips", torch.zeros(10, dtype=F64), *logged[1:])
    with pytest.raises(ValueError, match="rewards must be a tensor of shape \\[5\\]"):
        op.offpolicy_objective("ips", logits[:5], *logged[1:])
    with pytest.raises(ValueError, match="reward_estimates must be a tensor of shape"):
        op.offpolicy_objective("dr", logits, *logged[1:])
    with pytest.raises(ValueError, match="reward_estimates must be finite"):
        op.offpolicy_objective("dr", logits, *logged[1:], torch.full((10, 10), float("inf")))
