"""Tests of multi-objective REINFORCE on mo-gymnasium's Deep Sea Treasure (convex map)."""

from __future__ import annotations

from collections import deque

import numpy as np
import pytest
import torch

from stochgrad.checkpoint import CheckpointError

pytest.importorskip("mo_gymnasium")

from stochgrad.apps.rl import deep_sea  # noqa: E402
from stochgrad.apps.rl import multi_objective as mo  # noqa: E402
from stochgrad.checkpoint import CheckpointMismatch  # noqa: E402

GAMMA = 0.99
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def env():
    return mo.make_env()


@pytest.fixture(scope="module")
def mdp(env):
    return mo.tabulate(env)


# --- hypervolume against hand-computed areas -------------------------------------------------


def test_hypervolume_hand_examples():
    assert mo.hypervolume_2d([[1.0, 1.0]], ref=(0.0, 0.0)) == 1.0
    assert mo.hypervolume_2d([[2.0, 1.0], [1.0, 2.0]], ref=(0.0, 0.0)) == 3.0  # 2 + 2 - 1
    # staircase of three: 3*1 + 2*1 + 1*1
    assert mo.hypervolume_2d([[1.0, 3.0], [3.0, 1.0], [2.0, 2.0]], ref=(0.0, 0.0)) == 6.0
    # dominated point, duplicate and a point behind the reference change nothing
    pts = [[3.0, 1.0], [2.0, 2.0], [1.0, 3.0], [1.0, 1.0], [2.0, 2.0], [-1.0, 5.0]]
    assert mo.hypervolume_2d(pts, ref=(0.0, 0.0)) == 6.0
    # the Deep Sea Treasure reference point: (0.7, -1) dominates 0.7 x 24
    assert mo.hypervolume_2d([[0.7, -1.0]]) == pytest.approx(0.7 * 24.0)
    # two undiscounted front points: 0.7 * 24 + (8.2 - 0.7) * 22
    assert mo.hypervolume_2d([[0.7, -1.0], [8.2, -3.0]]) == pytest.approx(16.8 + 165.0)
    assert mo.hypervolume_2d(np.zeros((0, 2))) == 0.0


def test_hypervolume_order_invariant_and_vs_grid():
    rng = np.random.default_rng(0)
    pts = rng.uniform(0, 1, size=(7, 2))
    hv = mo.hypervolume_2d(pts, ref=(0.0, 0.0))
    assert mo.hypervolume_2d(pts[::-1], ref=(0.0, 0.0)) == pytest.approx(hv)
    # Monte-Carlo-free check on a fine grid of cell centres
    n = 1000
    g = (np.arange(n) + 0.5) / n
    X, Y = np.meshgrid(g, g, indexing="ij")
    covered = ((X[..., None] <= pts[:, 0]) & (Y[..., None] <= pts[:, 1])).any(-1)
    assert hv == pytest.approx(covered.mean(), abs=3.0 / n)


# --- the environment --------------------------------------------------------------------------


def test_registered_env_is_convex_map(env):
    assert env.unwrapped.map_name == "convex"
    assert env.spec.max_episode_steps == 100


def test_front_from_dynamics_matches_env(env, mdp):
    """Shortest paths on the dynamics read off env.step give env.unwrapped.pareto_front."""
    dist = {mdp.start: 0}
    queue = deque([mdp.start])
    best: dict[float, int] = {}
    while queue:
        s = queue.popleft()
        for a in range(mdp.num_actions):
            if mdp.terminal[s, a]:
                t = float(mdp.treasure[s, a])
                best[t] = min(best.get(t, 10**9), dist[s] + 1)
            elif mdp.next_state[s, a] not in dist:
                dist[mdp.next_state[s, a]] = dist[s] + 1
                queue.append(mdp.next_state[s, a])
    pts = np.array(
        [[t * GAMMA ** (n - 1), -sum(GAMMA**i for i in range(n))] for t, n in best.items()]
    )
    pts = pts[np.argsort(-pts[:, 1])]
    # env.step returns float32 rewards (0.7 -> 0.699999988...), the front is float64
    np.testing.assert_allclose(pts, mo.true_front(GAMMA, env), rtol=2e-7, atol=0)
    assert len(pts) == 10


def test_every_front_point_supported(mdp, env):
    """gamma = 0.99: the corner-weight search finds all ten points, intervals tile [0, 1]."""
    sup = mo.supported_points(mdp, GAMMA)
    pts = np.array([p for p, _, _ in sup])
    np.testing.assert_allclose(pts, mo.true_front(GAMMA, env), atol=1e-9)
    lows, highs = np.array([s[1] for s in sup]), np.array([s[2] for s in sup])
    assert lows[0] == 0.0 and highs[-1] == 1.0
    np.testing.assert_allclose(lows[1:], highs[:-1])
    assert (highs - lows > 1e-3).all()
    # each interval midpoint solves to its own point, rolled out in the environment
    mids = 0.5 * (lows + highs)
    _, pi = mo.value_iteration(mdp, mids, GAMMA)
    np.testing.assert_allclose(mo.evaluate_in_env(mdp, pi, GAMMA, env), pts, atol=1e-5)


# --- exact scalarised solve -------------------------------------------------------------------


def test_value_iteration_extreme_points(mdp, env):
    front = mo.true_front(GAMMA, env)
    V, pi = mo.value_iteration(mdp, [0.0, 1.0], GAMMA)
    ret = mo.evaluate_in_env(mdp, pi, GAMMA, env)
    np.testing.assert_allclose(ret[0], front[0], atol=1e-5)  # w = 0: nearest treasure, 0.7
    np.testing.assert_allclose(ret[1], front[-1], atol=1e-5)  # w = 1: largest, 23.7
    assert ret[1, 0] == pytest.approx(23.7 * GAMMA**18, rel=1e-6)
    # V at the start equals the scalarised return of the rolled-out greedy policy
    np.testing.assert_allclose(V[:, mdp.start], [ret[0, 1], ret[1, 0]], atol=1e-6)


# --- REINFORCE ---------------------------------------------------------------------------------


def _expected_return(mdp, probs: np.ndarray, w: float) -> float:
    """Exact scalarised value of a stochastic policy, mean over uniform start cells."""
    S = mdp.num_states
    r = (probs * (w * mdp.treasure - (1 - w))).sum(-1)
    P = np.zeros((S, S))
    for a in range(mdp.num_actions):
        keep = probs[:, a] * ~mdp.terminal[:, a]
        np.add.at(P, (np.arange(S), mdp.next_state[:, a]), keep)
    V = np.linalg.solve(np.eye(S) - GAMMA * P, r)
    return float(V.mean())


def test_reinforce_improves_scalarised_return(mdp):
    w = 0.6
    cfg = mo.ReinforceConfig(iterations=150, batch=16)
    logits, curve = mo.train_reinforce(mdp, [w], GAMMA, cfg, seed=1)
    probs = np.exp(logits[0].numpy())
    probs /= probs.sum(-1, keepdims=True)
    before = _expected_return(mdp, np.full((mdp.num_states, 4), 0.25), w)
    after = _expected_return(mdp, probs, w)
    assert after > before + 10.0, (before, after)
    assert curve[-20:].mean() > curve[:20].mean()
    # same seed, same numbers
    logits2, _ = mo.train_reinforce(mdp, [w], GAMMA, cfg, seed=1)
    assert np.array_equal(logits.numpy(), logits2.numpy())


class _Stop(Exception):
    pass


def test_interrupted_training_resumes_bit_for_bit(mdp, tmp_path):
    cfg = mo.ReinforceConfig(iterations=40, batch=8)
    full, full_curve = mo.train_reinforce(mdp, [0.3, 0.8], GAMMA, cfg, seed=3)

    def crash(it, _):
        if it == 26:  # after the checkpoint at 25 iterations, before the one at 30
            raise _Stop

    ckpt = tmp_path / "ckpt.pt"
    with pytest.raises(_Stop):
        mo.train_reinforce(
            mdp, [0.3, 0.8], GAMMA, cfg, seed=3, callback=crash, checkpoint=ckpt, checkpoint_every=5
        )
    assert torch.load(ckpt, weights_only=True)["done"] == 25
    seen = []
    resumed, curve = mo.train_reinforce(
        mdp,
        [0.3, 0.8],
        GAMMA,
        cfg,
        seed=3,
        callback=lambda it, _: seen.append(it),
        checkpoint=ckpt,
        checkpoint_every=5,
    )
    assert seen == list(range(40))  # the 25 loaded iterations are reported, then 15 new ones
    assert torch.equal(resumed, full)
    assert np.array_equal(curve, full_curve)
    # a checkpoint from other settings is refused, naming what differs
    with pytest.raises(CheckpointMismatch, match="other settings.*seed: 3 saved, 4 now"):
        mo.train_reinforce(mdp, [0.3, 0.8], GAMMA, cfg, seed=4, checkpoint=ckpt)
    with pytest.raises(ValueError, match="checkpoint_every"):
        mo.train_reinforce(mdp, [0.3], GAMMA, cfg, checkpoint=ckpt, checkpoint_every=0)


# --- bad input ----------------------------------------------------------------------------------


def test_bad_input_raises(mdp):
    with pytest.raises(ValueError, match="points"):
        mo.hypervolume_2d([[1.0, 2.0, 3.0]])
    with pytest.raises(ValueError, match="finite"):
        mo.hypervolume_2d([[np.nan, 1.0]])
    with pytest.raises(ValueError, match="ref"):
        mo.hypervolume_2d([[1.0, 1.0]], ref=(0.0,))
    with pytest.raises(ValueError, match="weights"):
        mo.value_iteration(mdp, [1.5], GAMMA)
    with pytest.raises(ValueError, match="gamma"):
        mo.value_iteration(mdp, [0.5], 0.0)
    with pytest.raises(ValueError, match="gamma"):
        mo.true_front(1.5)
    with pytest.raises(ValueError, match="weights"):
        mo.parse_weights("abc", mdp, GAMMA)
    with pytest.raises(ValueError, match="weights"):
        mo.parse_weights("1", mdp, GAMMA)
    with pytest.raises(ValueError, match="weights"):
        mo.parse_weights("0.2,-1", mdp, GAMMA)
    with pytest.raises(ValueError, match="iterations"):
        mo.train_reinforce(mdp, [0.5], GAMMA, mo.ReinforceConfig(iterations=0))
    with pytest.raises(ValueError, match="restarts"):
        mo.ReinforceConfig(iterations=1, restarts=0)
    with pytest.raises(TypeError, match="batch"):
        mo.ReinforceConfig(batch=2.5)
    with pytest.raises(ValueError, match="baseline_lr"):
        mo.ReinforceConfig(baseline_lr=0.0)
    with pytest.raises(TypeError, match="gamma"):
        mo.value_iteration(mdp, [0.5], "0.9")
    with pytest.raises(TypeError, match="config"):
        mo.train_reinforce(mdp, [0.5], GAMMA, {"iterations": 1})


def test_state_and_save_hooks_continue_exactly(mdp):
    cfg = mo.ReinforceConfig(iterations=12, batch=4)
    full, full_curve = mo.train_reinforce(mdp, [0.2, 0.9], GAMMA, cfg, seed=5)
    states, ticks = [], []
    mo.train_reinforce(mdp, [0.2, 0.9], GAMMA, cfg, seed=5, save=states.append,
                       checkpoint_every=4, progress=ticks.append)  # fmt: skip
    assert [s["done"] for s in states] == [4, 8, 12] and ticks == [1] * 12
    ticks.clear()
    logits, curve = mo.train_reinforce(mdp, [0.2, 0.9], GAMMA, cfg, seed=5, state=states[0],
                                       progress=ticks.append)  # fmt: skip
    assert ticks == [4] + [1] * 8
    assert torch.equal(logits, full) and np.array_equal(curve, full_curve)
    with pytest.raises(ValueError, match="not both"):
        mo.train_reinforce(mdp, [0.2], GAMMA, cfg, checkpoint="x.pt", save=states.append)


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("theta", lambda t: t.float(), "theta must"),
        ("theta", lambda t: t[..., :1], "theta must have shape"),
        ("base", lambda t: t * float("nan"), "base must"),
        ("done", lambda d: 99, "done must be"),
        ("curve", lambda c: c[:1], "curve holds 1 iterations"),
        ("generator", lambda g: [1, 2], "generator must"),
    ],
)
def test_a_state_with_wrong_contents_is_refused_naming_the_field(mdp, field, value, says):
    # before: copy_ cast a float32 theta and broadcast a short one without a word
    cfg = mo.ReinforceConfig(iterations=8, batch=2)
    states = []
    mo.train_reinforce(mdp, [0.5], GAMMA, cfg, seed=1, save=states.append, checkpoint_every=4)
    state = dict(states[0])
    state[field] = value(state[field])
    with pytest.raises(CheckpointError, match=says):
        mo.train_reinforce(mdp, [0.5], GAMMA, cfg, seed=1, state=state)


def test_training_runs_with_one_thread_and_restores_the_callers(mdp):
    seen = []
    torch.set_num_threads(2)
    mo.train_reinforce(mdp, [0.5], GAMMA, mo.ReinforceConfig(iterations=3, batch=2),
                       progress=lambda n: seen.append(torch.get_num_threads()))  # fmt: skip
    assert seen == [1, 1, 1] and torch.get_num_threads() == 2


def test_the_deep_sea_names_are_importable_from_here_and_moved_names_warn():
    for name in deep_sea.__all__:
        assert getattr(mo, name) is getattr(deep_sea, name)
    from stochgrad.studies import pareto

    with pytest.warns(DeprecationWarning, match="stochgrad.studies.pareto.run_pareto"):
        assert mo.run_pareto is pareto.run_pareto
    with pytest.warns(DeprecationWarning, match="ParetoResult"):
        assert mo.ParetoResult is pareto.ParetoResult


def test_make_env_does_not_warn():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mo.make_env()
