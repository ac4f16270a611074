"""Option-critic over seeds against value iteration: batched seeds, resume, the old interface."""

from __future__ import annotations

import json

import numpy as np
import pytest

from stochgrad.apps.rl.fourrooms import FourRooms, optimal_solution
from stochgrad.apps.rl.option_critic import OptionCriticConfig, evaluate_greedy, train_option_critic
from stochgrad.checkpoint import CheckpointMismatch
from stochgrad.studies.fourrooms import FourRoomsConfig, fourrooms_study, run_fourrooms

AGENT = OptionCriticConfig(temperature=0.3)


def test_the_study_compares_each_seed_with_the_optimum():
    cfg = FourRoomsConfig(episodes=30, seeds=(2, 5, 7), agent=AGENT)
    res = fourrooms_study(cfg)
    sol = optimal_solution(FourRooms())
    assert res.optimal_mean_steps == pytest.approx(sol.mean_steps)
    assert [c.seed for c in res.cells] == [2, 5, 7] and res.seeds == [2, 5, 7]
    # each seed's cell is the agent train_option_critic gives that seed alone
    agent, steps = train_option_critic(FourRooms(), 30, [5], AGENT)
    np.testing.assert_array_equal(res.cells[1].steps, steps[0])
    np.testing.assert_array_equal(res.cells[1].theta, agent.theta[0])
    ev = evaluate_greedy(FourRooms(), agent)
    assert res.learned_mean_steps[1] == ev.mean_steps[0]
    np.testing.assert_allclose(res.ratio, np.array(res.learned_mean_steps) / sol.mean_steps)
    assert res.mean_ratio == pytest.approx(np.mean(res.ratio))
    np.testing.assert_allclose(res.steps_per_episode_mean, np.mean([c.steps for c in res.cells], 0))
    assert (
        evaluate_greedy(FourRooms(), res.cells[0].agent()).mean_steps[0] == res.cells[0].mean_steps
    )


def test_an_interrupted_study_resumes_to_the_same_numbers(tmp_path):
    cfg = FourRoomsConfig(episodes=20, seeds=(0, 1, 2), agent=AGENT)
    ref = fourrooms_study(cfg)
    ckpt = tmp_path / "c.pt"
    done = []

    def stop(n):
        done.append(n)
        if ckpt.exists() and sum(done) > 12:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fourrooms_study(cfg, checkpoint=ckpt, progress=stop, checkpoint_every=10)
    found, ticks = [], []
    res = fourrooms_study(cfg, checkpoint=ckpt, progress=ticks.append,
                          on_resume=lambda a, b: found.append((a, b)))  # fmt: skip
    assert found == [(0, 1)] and ticks[0] >= 10 and sum(ticks) == 60
    for a, b in zip(res.cells, ref.cells, strict=True):
        np.testing.assert_array_equal(a.steps, b.steps)
        np.testing.assert_array_equal(a.q_omega, b.q_omega)
    assert res.ratio == ref.ratio
    again = fourrooms_study(cfg, checkpoint=ckpt)  # everything finished: nothing retrained
    assert again.resumed == 3 and again.ratio == ref.ratio
    with pytest.raises(CheckpointMismatch, match="episodes: 20 saved, 21 now"):
        fourrooms_study(FourRoomsConfig(episodes=21, seeds=(0, 1, 2), agent=AGENT), checkpoint=ckpt)


def test_run_fourrooms_writes_its_json_and_resumes(tmp_path):
    res = run_fourrooms(5, [3], out_dir=tmp_path)
    data = json.loads((tmp_path / "fourrooms.json").read_text())
    assert data["episodes"] == 5 and data["seeds"] == [3]
    assert len(data["steps_per_episode_mean"]) == 5
    assert res.optimal_mean_steps == pytest.approx(data["optimal_mean_steps"])
    assert (tmp_path / "fourrooms_checkpoint.pt").exists()
    again = run_fourrooms(5, [3], out_dir=tmp_path)  # from the finished checkpoint: same run
    assert again.steps_per_episode_mean == res.steps_per_episode_mean
    fresh = run_fourrooms(5, [3], out_dir=tmp_path, restart=True)
    assert fresh.steps_per_episode_mean == res.steps_per_episode_mean  # same seed, same run


@pytest.mark.parametrize(
    ("kw", "error", "match"),
    [
        ({"episodes": 0}, ValueError, "episodes"),
        ({"seeds": ()}, ValueError, "seeds"),
        ({"seeds": (1, 1)}, ValueError, "distinct"),
        ({"seeds": "12"}, TypeError, "seeds"),
        ({"agent": {"num_options": 2}}, TypeError, "agent"),
    ],
)
def test_bad_settings_name_the_setting(kw, error, match):
    with pytest.raises(error, match=match):
        FourRoomsConfig(**kw)
