"""Tabular MDP: exact policy gradient (theorem vs autograd) and batched REINFORCE."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stochgrad.apps.rl import tabular as T

DT = torch.float64
N_TRAJ = 20_000

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
    return {b: T.reinforce(mdp, theta, N_TRAJ, baseline=b, seed=7) for b in T.REINFORCE_BASELINES}


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
@pytest.mark.parametrize("baseline", T.REINFORCE_BASELINES)
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
    assert var["mean"] < var["none"]
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


def test_mean_baseline_is_leave_one_out(setting):
    mdp, theta = setting
    H = 3
    none = T.reinforce(mdp, theta, 4, horizon=H, seed=5)
    mean = T.reinforce(mdp, theta, 4, horizon=H, baseline="mean", seed=5)
    # same trajectories; the difference is the LOO mean of G_t times the score, per trajectory
    assert torch.equal(none.info["states"], mean.info["states"])
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
        assert (mean.per_sample[i] - none.per_sample[i] - diff).abs().max() < 1e-12


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
        T.reinforce(mdp, theta, 1, baseline="mean")
    with pytest.raises(ValueError, match="baseline"):
        T.reinforce(mdp, theta, 10, baseline="optimal")
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
    with pytest.raises(TypeError, match="theta"):
        T.objective(mdp, [[0.0] * 3] * 4)
    with pytest.raises(ValueError, match="tol"):
        T.default_horizon(mdp, tol=0.0)
    with pytest.raises(TypeError, match="seed"):
        T.TabularMDP.random(3, 2, seed=1.5)


def test_renamed_baselines_warn():
    with pytest.warns(DeprecationWarning, match="REINFORCE_BASELINES"):
        assert T.BASELINES == T.REINFORCE_BASELINES == ("none", "mean", "value")
