"""The `stochgrad rl` command wires its jobs to the RL modules."""

from stochgrad.cli import main


def test_rl_options_runs_and_writes(tmp_path, capsys):
    assert main(["rl", "options", "--episodes", "40", "--seeds", "2", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "ratio to optimum" in out and "optimal mean steps" in out
    assert (tmp_path / "fourrooms.png").stat().st_size > 0
    assert (tmp_path / "fourrooms.json").stat().st_size > 0


def test_rl_without_a_job_prints_usage(capsys):
    assert main(["rl"]) == 2
    assert "train" in capsys.readouterr().out
