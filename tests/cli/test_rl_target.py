"""``stochgrad rl train --target-return R``: stops once the last 100 episodes average R, and
prints and writes the environment steps, updates and episodes that took."""

from __future__ import annotations

import json

import pytest

from stochgrad.cli import main
from tests.helpers import one_error_line, unwrapped, widest_line

pytest.importorskip("gymnasium")
pytestmark = pytest.mark.usefixtures("one_thread")

TRAIN = ["rl", "train", "--steps", "200000", "--num-envs", "8", "--n-steps", "64",
         "--checkpoint-every", "4"]  # fmt: skip
RESULT = "CartPole-v1_reinforce_s0.json"


def _first_reaching(data: dict, target: float):
    """The first update after which the last 100 finished episodes average ``target``,
    recomputed from the history the command wrote."""
    for u, steps in enumerate(data["update_steps"]):
        done = [r for r, end in zip(data["episode_returns"], data["episode_end_steps"],
                                    strict=True) if end <= steps]  # fmt: skip
        if len(done) >= 100 and sum(done[-100:]) / 100 >= target:
            return steps, u + 1, len(done)
    return None


def test_train_stops_at_the_target_and_reports_the_steps(tmp_path, capsys):
    out = tmp_path / "run"
    assert main([*TRAIN, "--target-return", "40", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert widest_line(text) <= 100
    data = json.loads((out / RESULT).read_text())
    steps, updates, episodes = _first_reaching(data, 40.0)
    assert data["target_reached"] is True and data["target_return"] == 40.0
    assert (data["target_env_steps"], data["target_updates"], data["target_episodes"]) == (
        steps, updates, episodes)  # fmt: skip
    assert (data["env_steps"], data["updates"]) == (steps, updates) and steps < 200_000
    assert data["config"]["target_return"] == 40.0
    said = (f"target mean100 >= 40 reached after {steps:,} environment steps, {updates:,} "
            f"updates, {episodes:,} episodes")  # fmt: skip
    assert unwrapped(said) in unwrapped(text)
    # the same command again: resumed, nothing more to do, the same report
    assert main([*TRAIN, "--target-return", "40", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "resumed from" in text and unwrapped(said) in unwrapped(text)
    assert json.loads((out / RESULT).read_text()) == data


def test_a_target_not_reached_says_so(tmp_path, capsys):
    argv = ["rl", "train", "--steps", "1024", "--num-envs", "2", "--n-steps", "32"]
    assert main([*argv, "--target-return", "1e6", "--out", str(tmp_path / "a")]) == 0
    text = unwrapped(capsys.readouterr().out)
    data = json.loads((tmp_path / "a" / RESULT).read_text())
    assert data["target_reached"] is False and data["target_env_steps"] is None
    assert data["env_steps"] == 1024
    n = len(data["episode_returns"])
    assert unwrapped(f"target mean100 >= 1e+06 not reached in 1,024 environment steps ({n} "
                     "episodes finished, fewer than 100)") in text  # fmt: skip
    argv = ["rl", "train", "--steps", "8192", "--num-envs", "8", "--n-steps", "64"]
    assert main([*argv, "--target-return", "1e6", "--out", str(tmp_path / "b")]) == 0
    assert "not reached in 8,192 environment steps (best mean100" in " ".join(
        capsys.readouterr().out.split()
    )
    # without a target the JSON has no target fields
    assert main([*argv, "--out", str(tmp_path / "c")]) == 0
    assert "target mean100" not in capsys.readouterr().out
    assert "target_reached" not in json.loads((tmp_path / "c" / RESULT).read_text())


@pytest.mark.parametrize("value", ["high", "nan", "inf"])
def test_a_careless_target_is_one_error_line(tmp_path, capsys, value):
    out = tmp_path / "out"
    assert main([*TRAIN, "--target-return", value, "--out", str(out)]) == 2
    assert "--target-return" in one_error_line(capsys)
    assert not out.exists()


def test_help_shows_the_target_option(capsys):
    with pytest.raises(SystemExit):
        main(["rl", "train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--target-return R" in text and "average at least R" in text
