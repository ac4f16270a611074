"""Tests of the four-rooms MDP, its exact solution and tabular option-critic."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from scipy import stats

from stochgrad.apps.rl import fourrooms as fr
from stochgrad.apps.rl import option_critic as oc
from stochgrad.apps.rl.fourrooms import (
    FourRooms,
    OptionCritic,
    OptionCriticConfig,
    evaluate_greedy,
    hitting_times,
    optimal_solution,
    policy_hitting_times,
    train_option_critic,
    transition_matrix,
    value_iteration,
)
from stochgrad.checkpoint import CheckpointError, CheckpointMismatch


@pytest.fixture(scope="module")
def env() -> FourRooms:
    return FourRooms()


@pytest.fixture(scope="module")
def P(env: FourRooms) -> np.ndarray:
    return transition_matrix(env)


@pytest.fixture(scope="module")
def solution(env: FourRooms):
    return optimal_solution(env)


def test_layout_has_104_free_cells_and_goal_is_east_doorway(env: FourRooms) -> None:
    assert env.num_states == 104
    assert int((~env.walls).sum()) == 104
    assert env.walls.shape == (13, 13)
    assert (
        env.walls[0].all()
        and env.walls[-1].all()
        and env.walls[:, 0].all()
        and env.walls[:, -1].all()
    )
    r, c = env.goal_cell
    assert (r, c) == (7, 9)
    # a doorway: walls west and east, free cells north and south (the two eastern rooms)
    assert env.walls[r, c - 1] and env.walls[r, c + 1]
    assert not env.walls[r - 1, c] and not env.walls[r + 1, c]
    assert env.goal == 62  # the goal state of the authors' tabular experiment
    assert env.goal not in env.starts and len(env.starts) == 103


def test_transition_matrix_rows_and_probabilities(env: FourRooms, P: np.ndarray) -> None:
    np.testing.assert_allclose(P.sum(-1), 1.0, atol=1e-14)
    assert (P >= 0).all()
    # an open cell (all four neighbours free): 2/3 intended, 1/9 to each other neighbour
    s = env.index[(3, 3)]
    for a in range(4):
        for d, (er, ec) in enumerate(fr.ACTIONS):
            expected = 2 / 3 if d == a else 1 / 9
            assert P[a, s, env.index[(3 + er, 3 + ec)]] == pytest.approx(expected, abs=1e-15)
        assert P[a, s, s] == 0.0
    # the north-west corner (1, 1): up and left hit walls, their mass stays in place
    s = env.index[(1, 1)]
    assert P[0, s, s] == pytest.approx(2 / 3 + 1 / 9)
    assert P[3, s, s] == pytest.approx(2 / 9)
    assert P[3, s, env.index[(1, 2)]] == pytest.approx(2 / 3)
    assert P[:, env.goal, env.goal] == pytest.approx(1.0)


def test_step_replays_formula_exactly(env: FourRooms) -> None:
    states = env.starts[:40]
    actions = np.arange(40) % 4
    nxt, reward, done = env.step(states, actions, generator=np.random.default_rng(7))
    u = np.random.default_rng(7).random(40)
    offset = np.where(
        u < 2 / 3, 0, np.where(u < 2 / 3 + 1 / 9, 1, np.where(u < 2 / 3 + 2 / 9, 2, 3))
    )
    expected = env.next_state[states, (actions + offset) % 4]
    np.testing.assert_array_equal(nxt, expected)
    np.testing.assert_array_equal(done, expected == env.goal)
    np.testing.assert_array_equal(reward, (expected == env.goal).astype(float))


def test_step_direction_frequencies_chi_square(env: FourRooms) -> None:
    s = env.index[(3, 3)]
    n = 90_000
    rng = np.random.default_rng(123)
    for a in range(4):
        nxt, _, _ = env.step(np.full(n, s), np.full(n, a), generator=rng)
        counts = np.array([(nxt == env.next_state[s, d]).sum() for d in range(4)])
        assert counts.sum() == n
        expected = n * np.where(np.arange(4) == a, 2 / 3, 1 / 9)
        assert stats.chisquare(counts, expected).pvalue > 1e-3


def test_value_iteration_satisfies_bellman_optimality(env: FourRooms, P: np.ndarray) -> None:
    V, Q, policy = value_iteration(env, P)
    cont = P.copy()
    cont[:, :, env.goal] = 0.0
    backup = P[:, :, env.goal].T + env.gamma * np.einsum("ast,t->sa", cont, V)
    backup[env.goal] = 0.0
    np.testing.assert_allclose(V, backup.max(1), atol=1e-9)
    np.testing.assert_allclose(Q, backup, atol=1e-9)
    np.testing.assert_array_equal(policy, Q.argmax(1))
    assert V[env.goal] == 0.0 and np.all(V[env.starts] > 0) and np.all(V <= 1.0)
    # next to the goal (north of it) the best action is "down" (1)
    assert policy[env.index[(6, 9)]] == 1 and policy[env.index[(8, 9)]] == 0


def test_hitting_times_small_chains() -> None:
    # geometric: success probability 1/4 per step -> 4 steps
    t = hitting_times(np.array([[0.75, 0.25], [0.0, 1.0]]), np.array([False, True]))
    np.testing.assert_allclose(t, [4.0, 0.0])
    # a trap state that never reaches the absorbing set, and one that may fall into it: inf
    chain = np.array(
        [[0.0, 0.5, 0.5, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 1.0]]
    )
    t = hitting_times(chain, np.array([False, False, False, True]))
    assert np.isinf(t[0]) and np.isinf(t[1]) and t[2] == 1.0 and t[3] == 0.0


def test_optimal_hitting_time_matches_monte_carlo(env: FourRooms, solution) -> None:
    rng = np.random.default_rng(2024)
    n = 20_000
    s = env.reset(n, generator=rng)
    steps = np.zeros(n)
    alive = np.ones(n, dtype=bool)
    while alive.any():
        idx = np.flatnonzero(alive)
        s[idx], _, done = env.step(s[idx], solution.policy[s[idx]], generator=rng)
        steps[idx] += 1
        alive[idx[done]] = False
    stderr = steps.std(ddof=1) / np.sqrt(n)
    assert abs(steps.mean() - solution.mean_steps) < 5 * stderr
    # the discounted-optimal policy is also (up to 1e-6) the shortest-path optimum
    assert solution.mean_steps == pytest.approx(solution.min_mean_steps, rel=1e-6)
    assert 10 < solution.mean_steps < 20


def test_evaluate_greedy_of_hand_built_optimal_agent(env: FourRooms, solution) -> None:
    # every option follows the optimal policy; random terminations must not change the steps
    S, O, A = env.num_states, 3, 4
    agent = OptionCritic.zeros(1, S, O, A)
    agent.theta[0, np.arange(S), :, solution.policy] = 1.0
    rng = np.random.default_rng(0)
    agent.vartheta[:] = rng.normal(size=agent.vartheta.shape)
    agent.q_omega[:] = rng.normal(size=agent.q_omega.shape)
    ev = evaluate_greedy(env, agent)
    assert ev.mean_steps[0] == pytest.approx(solution.mean_steps, rel=1e-10)
    assert ev.mean_steps_state_policy[0] == pytest.approx(solution.mean_steps, rel=1e-10)
    # the untrained agent (all ties -> always "up") equals the state policy "always up"
    up = OptionCritic.zeros(1, S, O, A)
    always_up = policy_hitting_times(env, np.zeros(S, dtype=int))[env.starts].mean()
    assert evaluate_greedy(env, up).mean_steps[0] == pytest.approx(always_up, rel=1e-9)
    assert always_up > 10 * solution.mean_steps


def test_short_option_critic_run_beats_random_policy(env: FourRooms, P: np.ndarray) -> None:
    uniform = P.mean(0)
    absorbing = np.zeros(env.num_states, dtype=bool)
    absorbing[env.goal] = True
    random_steps = hitting_times(uniform, absorbing)[env.starts].mean()
    config = OptionCriticConfig(temperature=0.3)  # learns faster than the default T = 1
    agent, steps = train_option_critic(env, 300, [0, 1], config)
    assert steps.shape == (2, 300) and steps.min() >= 1
    ev = evaluate_greedy(env, agent, P)
    assert np.all(ev.mean_steps < 0.25 * random_steps)
    assert steps[:, -50:].mean() < 0.25 * random_steps
    # same seeds, same run
    _, again = train_option_critic(env, 20, [0, 1], config)
    np.testing.assert_array_equal(again, steps[:, :20])


def test_policy_hitting_times_of_optimal_policy(env: FourRooms, solution) -> None:
    t = policy_hitting_times(env, solution.policy)
    np.testing.assert_allclose(t, solution.steps)
    # the hitting times satisfy the one-step equation t(s) = 1 + sum_s' P(s' | s, pi(s)) t(s')
    P = transition_matrix(env)
    s = env.index[(6, 9)]
    assert t[s] == pytest.approx(1 + P[solution.policy[s], s] @ t)


def test_checkpoint_resume_equals_uninterrupted_run(env: FourRooms, tmp_path) -> None:
    config = OptionCriticConfig(temperature=0.3)
    agent_ref, steps_ref = train_option_critic(env, 30, [4, 5], config)
    ckpt = tmp_path / "ck.npz"
    finished = []

    def interrupt(n: int) -> None:
        finished.append(n)
        if sum(finished) >= 25:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_option_critic(
            env, 30, [4, 5], config, progress=interrupt, checkpoint=ckpt, checkpoint_every=10
        )
    assert ckpt.exists()
    resumed = []
    agent, steps = train_option_critic(
        env, 30, [4, 5], config, progress=resumed.append, checkpoint=ckpt
    )
    np.testing.assert_array_equal(steps, steps_ref)
    np.testing.assert_array_equal(agent.theta, agent_ref.theta)
    np.testing.assert_array_equal(agent.q_omega, agent_ref.q_omega)
    assert resumed[0] >= 10 and sum(resumed) == 60
    # a finished checkpoint can be extended with more episodes
    _, longer = train_option_critic(env, 40, [4, 5], config, checkpoint=ckpt)
    np.testing.assert_array_equal(longer[:, :30], steps_ref)
    assert longer[:, 30:].min() >= 1
    with pytest.raises(CheckpointMismatch, match="other settings.*seeds: \\[4, 5\\] saved"):
        train_option_critic(env, 40, [4, 6], config, checkpoint=ckpt)
    with pytest.raises(ValueError, match="episodes"):
        train_option_critic(env, 20, [4, 5], config, checkpoint=ckpt)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: FourRooms(goal=(0, 0)), "goal"),
        (lambda: FourRooms(gamma=0.0), "gamma"),
        (lambda: FourRooms(p_intended=1.5), "p_intended"),
        (lambda: train_option_critic(FourRooms(), 0, [0]), "episodes"),
        (lambda: train_option_critic(FourRooms(), 1, []), "seeds"),
        (lambda: train_option_critic(FourRooms(), 1, 0), "seeds"),
        (
            lambda: train_option_critic(FourRooms(), 1, [0], OptionCriticConfig(temperature=0.0)),
            "temperature",
        ),
        (
            lambda: train_option_critic(FourRooms(), 1, [0], OptionCriticConfig(epsilon=1.5)),
            "epsilon",
        ),
        (
            lambda: train_option_critic(FourRooms(), 1, [0], OptionCriticConfig(lr_critic=-1.0)),
            "lr_critic",
        ),
        (
            lambda: train_option_critic(FourRooms(), 1, [0], OptionCriticConfig(num_options=0)),
            "num_options",
        ),
        (
            lambda: FourRooms().step(
                np.array([0]), np.array([4]), generator=np.random.default_rng()
            ),
            "actions",
        ),
        (
            lambda: FourRooms().step(
                np.array([200]), np.array([0]), generator=np.random.default_rng()
            ),
            "states",
        ),
        (
            lambda: FourRooms().step(
                np.array([0, 1]), np.array([0]), generator=np.random.default_rng()
            ),
            "shape",
        ),
        (
            lambda: hitting_times(np.array([[0.5, 0.2], [0.0, 1.0]]), np.array([False, True])),
            "stochastic",
        ),
        (lambda: policy_hitting_times(FourRooms(), np.zeros(3, dtype=int)), "policy"),
        (lambda: value_iteration(FourRooms(), tol=0.0), "tol"),
    ],
)
def test_bad_input_raises(call, match) -> None:
    with pytest.raises(ValueError, match=match):
        call()


def test_a_seed_trains_the_same_agent_whatever_seeds_are_beside_it(env: FourRooms) -> None:
    config = OptionCriticConfig(temperature=0.3)
    alone, steps_alone = train_option_critic(env, 40, [0], config)
    pair, steps_pair = train_option_critic(env, 40, [0, 1], config)
    other, steps_other = train_option_critic(env, 40, [1], config)
    np.testing.assert_array_equal(steps_pair[0], steps_alone[0])
    np.testing.assert_array_equal(steps_pair[1], steps_other[0])
    for name in ("theta", "vartheta", "q_u", "q_omega"):
        np.testing.assert_array_equal(getattr(pair, name)[0], getattr(alone, name)[0])
        np.testing.assert_array_equal(getattr(pair, name)[1], getattr(other, name)[0])
    # the order of the seeds does not matter either
    swapped, steps_swapped = train_option_critic(env, 40, [1, 0], config)
    np.testing.assert_array_equal(steps_swapped[::-1], steps_pair)
    # agent r's stream is numpy.random.default_rng(seed): its first start cell, replayed
    u = np.random.default_rng(1).random(3 + config.num_options)
    start = env.starts[int(u[0] * len(env.starts))]
    run = oc._Training(env, 1, [0, 1], config, None)
    assert run.state[1] == start


def test_state_and_save_continue_exactly(env: FourRooms) -> None:
    config = OptionCriticConfig(temperature=0.3)
    _, ref = train_option_critic(env, 20, [2, 3], config)
    states = []
    train_option_critic(env, 8, [2, 3], config, save=states.append, checkpoint_every=5)
    assert len(states) >= 2
    kept = torch.load(_roundtrip(states[0]), weights_only=True)  # tensors and plain values only
    _, steps = train_option_critic(env, 20, [2, 3], config, state=kept)
    np.testing.assert_array_equal(steps, ref)


@pytest.mark.parametrize(
    ("path", "alter", "says"),
    [
        (("theta",), lambda t: t.float(), "theta must"),
        (("q_u",), lambda t: t * float("nan"), "q_u must"),
        (("ep",), lambda t: t[:1], "ep must have shape"),
        (("streams", "buffer"), lambda t: t[:1], "buffer must have shape"),
        (("streams", "position"), lambda t: t - 10**6, "position must lie in"),
        (("streams", "generators"), lambda g: g[:1], "generators must be"),
    ],
)
def test_a_state_with_wrong_contents_is_refused_naming_the_field(
    env: FourRooms, path, alter, says
) -> None:
    # before: arrays were copied in whatever their shape or dtype (numpy cast or broadcast)
    config = OptionCriticConfig(temperature=0.3)
    states = []
    train_option_critic(env, 8, [2, 3], config, save=states.append, checkpoint_every=5)
    state = torch.load(_roundtrip(states[0]), weights_only=True)
    inner = state
    for key in path[:-1]:
        inner = inner[key]
    inner[path[-1]] = alter(inner[path[-1]])
    with pytest.raises(CheckpointError, match=says):
        train_option_critic(env, 20, [2, 3], config, state=state)


def _roundtrip(state):
    import io

    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return buf


def test_deterministic_moves_step_without_warnings() -> None:
    env = FourRooms(p_intended=1.0)
    states, actions = env.starts[:50], np.arange(50) % 4
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        nxt, _, _ = env.step(states, actions, generator=np.random.default_rng(0))
        P = transition_matrix(env)
        sol = optimal_solution(env)
    np.testing.assert_array_equal(nxt, env.next_state[states, actions])
    assert set(np.unique(P).tolist()) == {0.0, 1.0}
    assert sol.mean_steps == pytest.approx(sol.min_mean_steps)  # shortest paths, no slips
    # never the chosen move: each other direction with probability 1/3
    never = FourRooms(p_intended=0.0)
    u = np.array([0.0, 0.34, 0.67])
    nxt = never._step_uniform(np.full(3, never.index[(3, 3)]), np.zeros(3, dtype=int), u)[0]
    expected = [never.next_state[never.index[(3, 3)], d] for d in (1, 2, 3)]
    np.testing.assert_array_equal(nxt, expected)


def test_intra_option_step_is_the_surrogate_gradient_of_each_agent() -> None:
    """The engine's surrogate, one sample per agent: A_i (e_{a_i} - softmax(z_i)), by hand."""
    rng = np.random.default_rng(0)
    z = rng.normal(size=(5, 4))
    a = rng.integers(0, 4, size=5)
    adv = rng.normal(size=5)
    p = np.exp(z - z.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    hand = -adv[:, None] * p
    hand[np.arange(5), a] += adv
    np.testing.assert_allclose(oc._policy_gradient(z, a, adv), hand, rtol=0, atol=1e-15)
    before = torch.get_num_threads()
    train_option_critic(FourRooms(), 1, [0])  # one torch thread inside, the caller's after
    assert torch.get_num_threads() == before


def test_moved_and_renamed_names() -> None:
    assert fr.train_option_critic is oc.train_option_critic  # the learner, importable here
    from stochgrad.studies import fourrooms as study

    with pytest.warns(DeprecationWarning, match="stochgrad.studies.fourrooms.run_fourrooms"):
        assert fr.run_fourrooms is study.run_fourrooms
    with pytest.warns(DeprecationWarning, match="FourRoomsResult"):
        assert fr.FourRoomsResult is study.FourRoomsResult
    seen = []
    with pytest.warns(DeprecationWarning, match="progress"):
        train_option_critic(FourRooms(), 2, [0], callback=seen.append)
    assert sum(seen) == 2


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: FourRooms(gamma="0.9"), TypeError, "gamma"),
        (lambda: train_option_critic(FourRooms(), 1.5, [0]), TypeError, "episodes"),
        (lambda: train_option_critic(FourRooms(), 1, [0, 0]), ValueError, "distinct"),
        (lambda: train_option_critic(FourRooms(), 1, "01"), TypeError, "seeds"),
        (lambda: OptionCriticConfig(num_options=2.0), TypeError, "num_options"),
        (lambda: train_option_critic(FourRooms(), 1, [0], checkpoint_every=0), ValueError,
         "checkpoint_every"),
    ],
)  # fmt: skip
def test_wrong_types_and_values_name_the_argument(call, error, match) -> None:
    with pytest.raises(error, match=match):
        call()
