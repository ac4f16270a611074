"""Stopping the gym policy-gradient trainer at a target return: ``Config.target_return``,
``Trainer.reached_target``, ``History.target_reached``, and resuming across targets.

The command's ``--target-return`` is tested in tests/cli/test_rl_target.py.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

pytest.importorskip("gymnasium")

from stochgrad.apps.rl.gym_trainer import (  # noqa: E402
    TARGET_WINDOW,
    Config,
    History,
    TargetReached,
)
from stochgrad.apps.rl.policy_gradient import train  # noqa: E402
from stochgrad.checkpoint import load_state  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

# REINFORCE on CartPole, 8 environments x 64 steps: seed 0 first averages 40 over 100
# episodes after a few dozen updates (about a second)
TARGET = 40.0
SMALL = {"num_envs": 8, "n_steps": 64}


def _first_by_definition(h: History, target: float, window: int):
    """The rule written out plainly: after update u, the episodes that have finished are those
    whose end step is at most the steps done; the last ``window`` of them must average at
    least ``target``."""
    for u, steps in enumerate(h.update_steps):
        finished = [r for r, end in zip(h.episode_returns, h.episode_end_steps, strict=True)
                    if end <= steps]  # fmt: skip
        if len(finished) >= window and sum(finished[-window:]) / window >= target:
            return u + 1, steps, len(finished)
    return None


def _random_history(seed: int, updates: int = 60) -> History:
    rng = np.random.default_rng(seed)
    per_update = rng.integers(0, 9, size=updates)
    ends, returns, steps = [], [], []
    for u, k in enumerate(per_update):
        ends += sorted(rng.integers(u * 64 + 1, (u + 1) * 64 + 1, size=k).tolist())
        returns += (rng.normal(20 + u, 5, size=k)).tolist()
        steps.append((u + 1) * 64)
    means = [float(np.mean([r for r, e in zip(returns, ends, strict=True) if e <= s][-100:]))
             if any(e <= s for e in ends) else math.nan for s in steps]  # fmt: skip
    return History(episode_returns=returns, episode_end_steps=ends, update_steps=steps,
                   update_mean100=means, episode_lengths=[1] * len(ends))  # fmt: skip


# ----------------------------------------------------------------------------- the rule
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("window", [1, 10, TARGET_WINDOW])
def test_target_reached_follows_its_definition(seed, window):
    h = _random_history(seed)
    for target in (15.0, 30.0, 45.0, 60.0, 1e9):
        hit = h.target_reached(target, window=window)
        expected = _first_by_definition(h, target, window)
        if expected is None:
            assert hit is None
        else:
            updates, steps, episodes = expected
            assert (hit.updates, hit.env_steps, hit.episodes) == (updates, steps, episodes)
            finished = h.episode_returns[:episodes]
            assert hit.mean_return == pytest.approx(sum(finished[-window:]) / window, rel=1e-12)
            assert hit.mean_return >= target


def test_fewer_than_a_window_of_episodes_never_counts():
    h = History(episode_returns=[500.0] * 99, episode_end_steps=list(range(1, 100)),
                update_steps=[99], update_mean100=[500.0])  # fmt: skip
    assert h.target_reached(1.0) is None
    h.episode_returns.append(0.0)
    h.episode_end_steps.append(100)
    h.update_steps.append(128)
    assert h.target_reached(1.0) == TargetReached(128, 2, 100, 495.0)


def test_bad_targets_are_named():
    with pytest.raises(TypeError, match="target_return must be a real number"):
        Config(target_return="high")
    with pytest.raises(ValueError, match="target_return must be finite"):
        Config(target_return=math.nan)
    assert Config(target_return=475).target_return == 475.0
    with pytest.raises(ValueError, match="window must be >= 1"):
        History().target_reached(1.0, window=0)
    with pytest.raises(ValueError, match="target must be finite"):
        History().target_reached(math.inf)


# ----------------------------------------------------------------------------- training
def test_training_stops_at_the_first_update_reaching_the_target():
    steps = 200_000
    run = train("CartPole-v1", "reinforce", steps, seed=0, target_return=TARGET, **SMALL)
    t, h = run.trainer, run.history
    assert t.env_steps < steps and t.reached_target()
    hit = h.target_reached(TARGET)
    assert (hit.updates, hit.env_steps, hit.episodes) == (t.updates, t.env_steps,
                                                          len(h.episode_returns))  # fmt: skip
    assert _first_by_definition(h, TARGET, TARGET_WINDOW) == (t.updates, t.env_steps,
                                                              len(h.episode_returns))  # fmt: skip
    assert hit.mean_return == t.mean_return() >= TARGET
    # the target only says when to stop: without it the same seed trains the same way
    more = train("CartPole-v1", "reinforce", t.env_steps + 2 * 8 * 64, seed=0, **SMALL)
    np.testing.assert_array_equal(more.history.update_mean100[: t.updates], h.update_mean100)
    assert more.history.episode_returns[: len(h.episode_returns)] == h.episode_returns
    assert more.history.target_reached(TARGET) == hit


def test_a_run_resumes_with_another_target_or_none(tmp_path):
    ref = train("CartPole-v1", "reinforce", 200_000, seed=0, target_return=TARGET, **SMALL)
    ckpt = tmp_path / "run.pt"
    # a run without target, stopped early, then continued towards the target
    part = train("CartPole-v1", "reinforce", 4 * 8 * 64, seed=0, checkpoint=ckpt, **SMALL)
    assert part.trainer.updates == 4 < ref.trainer.updates
    # a checkpoint of an earlier release has no target_return in its settings
    state = load_state(ckpt)
    del state["config"]["target_return"]
    torch.save(state, ckpt)
    res = train("CartPole-v1", "reinforce", 200_000, seed=0, checkpoint=ckpt, resume=True,
                target_return=TARGET, **SMALL)  # fmt: skip
    assert res.resumed_from_steps == 4 * 8 * 64
    assert res.trainer.updates == ref.trainer.updates
    assert res.history.episode_returns == ref.history.episode_returns
    # reached and saved: the same command again does no more work
    again = train("CartPole-v1", "reinforce", 200_000, seed=0, checkpoint=ckpt, resume=True,
                  target_return=TARGET, **SMALL)  # fmt: skip
    assert again.trainer.updates == ref.trainer.updates
    # a higher target goes on from there
    higher = train("CartPole-v1", "reinforce", ref.trainer.env_steps + 3 * 8 * 64, seed=0,
                   checkpoint=ckpt, resume=True, target_return=1e6, **SMALL)  # fmt: skip
    assert higher.trainer.updates == ref.trainer.updates + 3
    assert higher.history.target_reached(TARGET) == ref.history.target_reached(TARGET)
