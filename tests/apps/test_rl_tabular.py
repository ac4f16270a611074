"""Tabular MDP: exact policy gradient (theorem vs autograd) and batched REINFORCE."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import stochgrad as sg
from stochgrad.apps.rl import tabular as T

DT = torch.float64
N_TRAJ = 20_000
#: trajectories of the estimates without reward-to-go (N per-sample gradients each)
N_WHOLE = 4_000
#: the baselines of the old release, with reward-to-go ("loo" was called "mean")
RTG = ("none", "loo", "value")

pytestmark = pytest.mark.usefixtures("one_thread")


def _theta(mdp, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(mdp.num_states, mdp.num_actions, generator=g, dtype=DT)


@pytest.fixture(scope="module")
def setting():
    mdp = T.TabularMDP.random(num_states=4, num_actions=3, gamma=0.8, seed=0)
    return mdp, _theta(mdp)


@pytest.fixture(scope="module")
def estimates(setting):
    mdp, theta = setting
    return {b: T.reinforce(mdp, theta, N_TRAJ, baseline=b, seed=7) for b in RTG}


# ---------------------------------------------------------------------------------------------
# exact gradient
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "S, A, gamma, seed", [(3, 2, 0.9, 0), (4, 3, 0.8, 1), (5, 3, 0.95, 2), (3, 3, 0.0, 3)]
)
def test_exact_gradient_equals_autograd(S, A, gamma, seed):
    mdp = T.TabularMDP.random(S, A, gamma, seed=seed)
    theta = _theta(mdp, seed).requires_grad_(True)
    (auto,) = torch.autograd.grad(T.objective(mdp, theta), theta)
    exact = T.exact_policy_gradient(mdp, theta)
    assert exact.shape == (S, A)
    assert (exact - auto).abs().max() < 1e-10
    assert exact.abs().max() > 1e-3  # not trivially zero


def test_policy_evaluation_against_iterated_bellman_operator_in_numpy(setting):
    mdp, theta = setting
    V, Q = T.policy_evaluation(mdp, theta)
    P, R, g = mdp.transitions.numpy(), mdp.rewards.numpy(), mdp.gamma
    pi = np.exp(theta.numpy()) / np.exp(theta.numpy()).sum(1, keepdims=True)
    v = np.zeros(mdp.num_states)
    for _ in range(400):  # contraction: error <= 0.8^400
        q = R + g * P @ v
        v = (pi * q).sum(1)
    np.testing.assert_allclose(V.numpy(), v, atol=1e-12)
    np.testing.assert_allclose(Q.numpy(), q, atol=1e-12)
    d = T.discounted_visitation(mdp, theta)
    assert float(d.sum()) == pytest.approx(1 / (1 - mdp.gamma), abs=1e-12)
    assert float(T.objective(mdp, theta)) == pytest.approx(float(mdp.initial @ V), abs=1e-14)


def test_truncation_horizon_bounds_the_tail(setting):
    mdp, _ = setting
    H = T.default_horizon(mdp, tol=1e-10)
    assert mdp.gamma**H * float(mdp.rewards.abs().max()) / (1 - mdp.gamma) <= 1e-10
    assert mdp.gamma ** (H - 1) * float(mdp.rewards.abs().max()) / (1 - mdp.gamma) > 1e-10


# ---------------------------------------------------------------------------------------------
# REINFORCE
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("baseline", RTG)
def test_reinforce_mean_within_5_stderr_of_exact(setting, estimates, baseline):
    mdp, theta = setting
    est = estimates[baseline]
    assert est.per_sample.shape == (N_TRAJ, mdp.num_states, mdp.num_actions)
    assert est.num_samples == N_TRAJ and est.method == "reinforce"
    assert torch.allclose(est.grad, est.per_sample.mean(0))
    exact = T.exact_policy_gradient(mdp, theta)
    z = (est.grad - exact) / est.stderr
    assert z.abs().max() < 5, z
    # the check has teeth: the error is small against the gradient itself
    assert (est.grad - exact).abs().max() < 0.1 * exact.abs().max()


def test_baselines_reduce_variance(estimates):
    var = {b: float(e.variance.sum()) for b, e in estimates.items()}
    assert var["value"] < var["none"]
    assert var["loo"] < var["none"]
    assert var["value"] < 0.5 * var["none"]  # measured about 1/24 on this MDP


def test_same_seed_same_numbers(setting):
    mdp, theta = setting
    a = T.reinforce(mdp, theta, 50, horizon=5, seed=3)
    b = T.reinforce(mdp, theta, 50, horizon=5, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a.per_sample, b.per_sample)


def _first_index_above(cdf, u):
    for k, c in enumerate(cdf):
        if u < c:
            return k
    return len(cdf) - 1


@pytest.mark.parametrize("baseline", ["none", "value"])
def test_seeded_single_trajectory_replayed_by_hand(setting, baseline):
    mdp, theta = setting
    H, seed = 4, 11
    est = T.reinforce(mdp, theta, 1, horizon=H, baseline=baseline, seed=seed)
    # replay the documented random-number order with plain Python
    g = torch.Generator().manual_seed(seed)
    pi = torch.softmax(theta, -1)
    s = _first_index_above(
        mdp.initial.cumsum(0).tolist(), float(torch.rand(1, generator=g, dtype=DT))
    )
    states, actions = [], []
    for _ in range(H):
        u = torch.rand(1, 2, generator=g, dtype=DT)[0].tolist()
        a = _first_index_above(pi[s].cumsum(0).tolist(), u[0])
        states.append(s)
        actions.append(a)
        s = _first_index_above(mdp.transitions[s, a].cumsum(0).tolist(), u[1])
    assert est.info["states"][0].tolist() == states
    assert est.info["actions"][0].tolist() == actions
    rewards = [float(mdp.rewards[s, a]) for s, a in zip(states, actions, strict=True)]
    gamma = mdp.gamma
    V, _ = T.policy_evaluation(mdp, theta)
    # the gradient term by autograd of sum_t log pi(a_t|s_t) (G_t - b_t)
    th = theta.clone().requires_grad_(True)
    logp = torch.log_softmax(th, -1)
    surrogate = 0.0
    for t in range(H):
        G_t = sum(gamma**k * rewards[k] for k in range(t, H))
        b_t = gamma**t * float(V[states[t]]) if baseline == "value" else 0.0
        surrogate = surrogate + logp[states[t], actions[t]] * (G_t - b_t)
    (by_hand,) = torch.autograd.grad(surrogate, th)
    assert (est.per_sample[0] - by_hand).abs().max() < 1e-12
    assert float(est.info["returns"][0]) == pytest.approx(
        sum(gamma**k * r for k, r in enumerate(rewards)), abs=1e-14
    )


def test_loo_baseline_is_leave_one_out_per_time_step(setting):
    mdp, theta = setting
    H = 3
    none = T.reinforce(mdp, theta, 4, horizon=H, seed=5)
    loo = T.reinforce(mdp, theta, 4, horizon=H, baseline="loo", seed=5)
    # same trajectories; the difference is the LOO mean of G_t times the score, per trajectory
    assert torch.equal(none.info["states"], loo.info["states"])
    rewards = none.info["rewards"]
    disc = mdp.gamma ** torch.arange(H, dtype=DT)
    togo = (rewards * disc).flip(1).cumsum(1).flip(1)
    pi = torch.softmax(theta, -1)
    for i in range(4):
        diff = torch.zeros_like(theta)
        for t in range(H):
            s, a = int(none.info["states"][i, t]), int(none.info["actions"][i, t])
            b = (togo[:, t].sum() - togo[i, t]) / 3
            diff[s] -= b * (torch.eye(mdp.num_actions, dtype=DT)[a] - pi[s])
        assert (loo.per_sample[i] - none.per_sample[i] - diff).abs().max() < 1e-12
    # the old name of the rule keeps its numbers, with a warning
    with pytest.warns(DeprecationWarning, match="spelt 'loo'"):
        mean = T.reinforce(mdp, theta, 4, horizon=H, baseline="mean", seed=5)
    assert torch.equal(mean.per_sample, loo.per_sample) and mean.info["baseline"] == "loo"


# ---------------------------------------------------------------------------------------------
# the engine's rules on the tabular MDP: unbiased ones within 5 stderr, biased ones beyond
# ---------------------------------------------------------------------------------------------
UNBIASED = {
    "none": dict(baseline="none", reward_to_go=False),
    "constant": dict(baseline=2.0, reward_to_go=False),
    "loo in groups of 4 episodes": dict(baseline="loo", reward_to_go=False, group_size=4),
    "optimal": dict(baseline="optimal", reward_to_go=False),
    "reward-to-go": dict(baseline="none"),
    "reward-to-go, loo in groups of 2": dict(baseline="loo", group_size=2),
    "reward-to-go, exact critic": dict(baseline="value"),
}


def _surrogate_gradient(est):
    """The gradient of the surrogate's loss, times H with reward-to-go (a mean over steps)."""
    sur, logits = est.info["surrogate"], est.info["logits"]
    (g,) = torch.autograd.grad(sur.loss, logits, retain_graph=True)
    return g * (est.info["horizon"] if est.info["reward_to_go"] else 1)


@pytest.mark.parametrize("name", list(UNBIASED))
def test_unbiased_rules_match_the_exact_gradient(setting, name):
    mdp, theta = setting
    kw = UNBIASED[name]
    n = N_TRAJ if kw.get("reward_to_go", True) else N_WHOLE
    est = T.reinforce(mdp, theta, n, seed=7, **kw)
    exact = T.exact_policy_gradient(mdp, theta)
    z = (est.grad - exact) / est.stderr
    assert not est.biased and est.per_sample.shape == (n, mdp.num_states, mdp.num_actions)
    assert z.abs().max() < 5, z  # measured 0.9 (none) to 2.3 (optimal)
    # the estimate is the gradient of the engine's surrogate loss
    torch.testing.assert_close(est.grad, _surrogate_gradient(est), rtol=1e-9, atol=1e-12)


def test_ema_baseline_matches_the_exact_gradient(setting):
    mdp, theta = setting
    ema = sg.EMABaseline(decay=0.5)
    first = T.reinforce(mdp, theta, 500, seed=100, baseline=ema, reward_to_go=False)
    assert first.info["baseline"] == "ema" and ema.value is not None
    b = ema.value  # the value the next call subtracts: from other trajectories
    est = T.reinforce(mdp, theta, N_WHOLE, seed=7, baseline=ema, reward_to_go=False)
    plain = T.reinforce(mdp, theta, N_WHOLE, seed=7, baseline=b, reward_to_go=False)
    torch.testing.assert_close(est.per_sample, plain.per_sample, rtol=1e-12, atol=1e-12)
    z = (est.grad - T.exact_policy_gradient(mdp, theta)) / est.stderr
    assert z.abs().max() < 5, z


@pytest.mark.parametrize(
    ("baseline", "group_size", "reward_to_go"),
    [("batch_mean", 2, True), ("grpo_unscaled", 2, True), ("grpo", 4, True),
     ("batch_mean", 2, False)],
)  # fmt: skip
def test_biased_rules_are_biased_beyond_5_stderr(setting, baseline, group_size, reward_to_go):
    mdp, theta = setting
    n = N_TRAJ if reward_to_go else N_WHOLE
    est = T.reinforce(mdp, theta, n, seed=7, baseline=baseline, group_size=group_size,
                      reward_to_go=reward_to_go)  # fmt: skip
    exact = T.exact_policy_gradient(mdp, theta)
    z = (est.grad - exact) / est.stderr
    assert est.biased
    # measured max |z|: batch mean 134.5 (reward-to-go), 10.6 (whole trajectories); grpo 288
    assert z.abs().max() > 5, z
    if baseline != "grpo":  # f - group mean = (n-1)/n (f - leave-one-out mean): known bias
        scaled = (est.grad - exact * (group_size - 1) / group_size) / est.stderr
        assert scaled.abs().max() < 5, scaled


def test_seeded_whole_trajectory_term_replayed_by_hand(setting):
    mdp, theta = setting
    H = 4
    est = T.reinforce(mdp, theta, 1, horizon=H, baseline=0.5, reward_to_go=False, seed=11)
    states, actions = est.info["states"][0].tolist(), est.info["actions"][0].tolist()
    ref = T.reinforce(mdp, theta, 1, horizon=H, seed=11)  # same draws
    assert ref.info["states"][0].tolist() == states
    g0 = sum(mdp.gamma**k * float(mdp.rewards[s, a]) for k, (s, a) in
             enumerate(zip(states, actions, strict=True)))  # fmt: skip
    th = theta.clone().requires_grad_(True)
    logp = torch.log_softmax(th, -1)
    surrogate = sum(logp[s, a] for s, a in zip(states, actions, strict=True)) * (g0 - 0.5)
    (by_hand,) = torch.autograd.grad(surrogate, th)
    assert (est.per_sample[0] - by_hand).abs().max() < 1e-12


# ---------------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------------
def test_bad_input_raises(setting):
    mdp, theta = setting
    with pytest.raises(ValueError, match="theta"):
        T.reinforce(mdp, theta[:, :2], 10)
    with pytest.raises(ValueError, match="theta"):
        T.exact_policy_gradient(mdp, torch.full_like(theta, float("nan")))
    with pytest.raises(ValueError, match="theta"):
        T.objective(mdp, torch.zeros(4, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="num_trajectories"):
        T.reinforce(mdp, theta, 0)
    with pytest.raises(ValueError, match="num_trajectories"):
        T.reinforce(mdp, theta, 1, baseline="loo")
    with pytest.raises(ValueError, match="num_trajectories"):
        T.reinforce(mdp, theta, 8, baseline="grpo", group_size=1)
    with pytest.raises(ValueError, match="baseline 'optimal' needs reward_to_go=False"):
        T.reinforce(mdp, theta, 10, baseline="optimal")
    with pytest.raises(ValueError, match="baseline 'value' .* needs reward_to_go=True"):
        T.reinforce(mdp, theta, 10, baseline="value", reward_to_go=False)
    with pytest.raises(ValueError, match="baseline"):
        T.reinforce(mdp, theta, 10, baseline="median")
    with pytest.raises(ValueError, match="group_size must divide"):
        T.reinforce(mdp, theta, 10, baseline="loo", group_size=3)
    with pytest.raises(ValueError, match="within groups"):
        T.reinforce(mdp, theta, 10, baseline=sg.EMABaseline(), group_size=2)
    with pytest.raises(ValueError, match="horizon"):
        T.reinforce(mdp, theta, 10, horizon=0)
    with pytest.raises(ValueError, match="either generator or seed"):
        T.reinforce(mdp, theta, 10, seed=0, generator=torch.Generator())


def test_bad_mdp_raises(setting):
    mdp, _ = setting
    P, R, rho = mdp.transitions, mdp.rewards, mdp.initial
    with pytest.raises(ValueError, match="gamma"):
        T.TabularMDP(P, R, rho, 1.0)
    with pytest.raises(ValueError, match="gamma"):
        T.TabularMDP(P, R, rho, -0.1)
    with pytest.raises(ValueError, match="transitions"):
        T.TabularMDP(P * 1.1, R, rho, 0.9)
    with pytest.raises(ValueError, match="transitions"):
        T.TabularMDP(P[:, :, :3], R, rho, 0.9)
    with pytest.raises(ValueError, match="rewards"):
        T.TabularMDP(P, R[:, :2], rho, 0.9)
    with pytest.raises(ValueError, match="rewards"):
        T.TabularMDP(P, R * float("inf"), rho, 0.9)
    with pytest.raises(ValueError, match="initial"):
        T.TabularMDP(P, R, rho * 2, 0.9)
    with pytest.raises(ValueError, match="num_states"):
        T.TabularMDP.random(0, 2)


def test_wrong_types_name_the_argument(setting):
    mdp, theta = setting
    P, R, rho = mdp.transitions, mdp.rewards, mdp.initial
    with pytest.raises(TypeError, match="gamma"):
        T.TabularMDP(P, R, rho, "0.9")
    with pytest.raises(TypeError, match="num_trajectories"):
        T.reinforce(mdp, theta, 10.0)
    with pytest.raises(TypeError, match="horizon"):
        T.reinforce(mdp, theta, 10, horizon=2.5)
    with pytest.raises(TypeError, match="reward_to_go"):
        T.reinforce(mdp, theta, 10, reward_to_go=1)
    with pytest.raises(TypeError, match="group_size"):
        T.reinforce(mdp, theta, 10, group_size=2.0)
    with pytest.raises(TypeError, match="theta"):
        T.objective(mdp, [[0.0] * 3] * 4)
    with pytest.raises(ValueError, match="tol"):
        T.default_horizon(mdp, tol=0.0)
    with pytest.raises(TypeError, match="seed"):
        T.TabularMDP.random(3, 2, seed=1.5)


def test_renamed_baselines_warn():
    with pytest.warns(DeprecationWarning, match="REINFORCE_BASELINES"):
        assert T.BASELINES == T.REINFORCE_BASELINES
    assert set(RTG) <= set(T.REINFORCE_BASELINES) and "mean" not in T.REINFORCE_BASELINES
