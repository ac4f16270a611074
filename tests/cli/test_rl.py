"""``stochgrad rl``: train, eval, pareto, options follow the conventions of every command."""

from __future__ import annotations

import json
import pickle
import time
from pathlib import Path

import pytest
import torch

from stochgrad.cli import main
from tests.helpers import one_error_line, widest_line

pytest.importorskip("gymnasium")
pytestmark = pytest.mark.usefixtures("one_thread")

TRAIN = ["rl", "train", "--steps", "1024", "--num-envs", "2", "--n-steps", "32",
         "--checkpoint-every", "4"]  # fmt: skip
PARETO = ["rl", "pareto", "--weights", "0,1", "--iterations", "12", "--batch", "4",
          "--restarts", "1", "--seeds", "2", "--checkpoint-every", "5"]  # fmt: skip
OPTIONS = ["rl", "options", "--episodes", "20", "--seeds", "2", "--checkpoint-every", "10"]
TRAIN_CKPT = "CartPole-v1_reinforce_s0.pt"
CHECKPOINTS = {"train": TRAIN_CKPT, "pareto": "pareto_checkpoint.pt",
               "options": "fourrooms_checkpoint.pt"}  # fmt: skip
RESULTS = {"train": "CartPole-v1_reinforce_s0.json", "pareto": "pareto.json",
           "options": "fourrooms.json"}  # fmt: skip
JOBS = {"train": TRAIN, "pareto": PARETO, "options": OPTIONS}


def _widths_fit(text: str) -> None:
    assert widest_line(text) <= 100


# ---------------------------------------------------------------------------------------------
# each job runs, writes its files and prints tables that fit 100 columns
# ---------------------------------------------------------------------------------------------
def test_train_then_eval(tmp_path, capsys):
    out = tmp_path / "train"
    assert main([*TRAIN, "--out", str(out)]) == 0
    text = capsys.readouterr().out
    _widths_fit(text)
    assert "mean100" in text and str(out / TRAIN_CKPT) in text
    png = out / "CartPole-v1_reinforce_s0.png"
    assert png.stat().st_size > 1000 and png.read_bytes().startswith(b"\x89PNG")
    data = json.loads((out / "CartPole-v1_reinforce_s0.json").read_text())
    assert data["env_steps"] == 1024 and data["config"]["num_envs"] == 2
    # the policy gradient's signal-to-noise ratio, every 8th update (--snr-every's default)
    assert "grad SNR" in text and data["config"]["snr_every"] == 8
    snr = data["update_grad_snr"]
    assert len(snr) == data["updates"] == 16
    assert all((x is not None and x > 0) == (i % 8 == 0) for i, x in enumerate(snr))
    ev = tmp_path / "eval"
    assert main(["rl", "eval", str(out / TRAIN_CKPT), "--episodes", "2", "--out", str(ev)]) == 0
    text = capsys.readouterr().out
    _widths_fit(text)
    assert "mean return" in text
    returns = json.loads((ev / "CartPole-v1_reinforce_s0_eval.json").read_text())["returns"]
    assert len(returns) == 2 and all(1 <= r <= 500 for r in returns)


def test_options_runs_and_writes(tmp_path, capsys):
    assert main(["rl", "options", "--episodes", "40", "--seeds", "2", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    _widths_fit(out)
    assert "ratio to optimum" in out and "optimal mean steps" in out
    assert (tmp_path / "fourrooms.png").stat().st_size > 0
    data = json.loads((tmp_path / "fourrooms.json").read_text())
    assert data["seeds"] == [0, 1] and len(data["steps_per_episode_mean"]) == 40


def test_pareto_runs_and_writes(tmp_path, capsys):
    pytest.importorskip("mo_gymnasium")
    assert main([*PARETO, "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    _widths_fit(out)
    assert "optimal for w in" in out and "hypervolume" in out
    assert (tmp_path / "pareto.png").stat().st_size > 0
    data = json.loads((tmp_path / "pareto.json").read_text())
    assert [s["seed"] for s in data["seeds"]] == [0, 1] and data["weights"] == [0.0, 1.0]


def test_rl_without_a_job_prints_usage(capsys):
    assert main(["rl"]) == 2
    assert "train" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("job", "shown"),
    [("train", "(default: 100000)"), ("eval", "(default: 10)"), ("pareto", "(default: auto)"),
     ("options", "(default: 5000)")],
)  # fmt: skip
def test_help_shows_the_defaults(job, shown, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["rl", job, "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert shown in text and "--out DIR" in text
    assert ("--restart" in text) == (job != "eval") and "--resume" not in text


# ---------------------------------------------------------------------------------------------
# interrupted runs resume to the numbers of an uninterrupted one; --restart starts afresh
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("job", ["train", "pareto", "options"])
def test_interrupted_run_resumes_to_the_same_numbers(job, tmp_path, capsys,
                                                     interrupt_after_checkpoint):  # fmt: skip
    if job == "pareto":
        pytest.importorskip("mo_gymnasium")
    argv = JOBS[job]
    ref = tmp_path / "ref"
    assert main([*argv, "--out", str(ref)]) == 0
    capsys.readouterr()
    out = tmp_path / "run"
    interrupt_after_checkpoint(out)
    assert main([*argv, "--out", str(out)]) == 130
    captured = capsys.readouterr()
    assert "interrupted" in captured.out + captured.err
    assert (out / CHECKPOINTS[job]).exists() and not (out / RESULTS[job]).exists()
    assert main([*argv, "--out", str(out)]) == 0
    text = " ".join(capsys.readouterr().out.split())  # the console wraps long lines
    assert f"resumed from {out / CHECKPOINTS[job]}" in text
    assert json.loads((out / RESULTS[job]).read_text()) == json.loads(
        (ref / RESULTS[job]).read_text()
    )
    assert main([*argv, "--out", str(out), "--restart"]) == 0
    text = capsys.readouterr().out
    assert "resumed from" not in text and "--restart: removed" in text
    assert json.loads((out / RESULTS[job]).read_text()) == json.loads(
        (ref / RESULTS[job]).read_text()
    )


def test_train_goes_on_to_more_steps_and_refuses_other_settings(tmp_path, capsys):
    assert main([*TRAIN, "--out", str(tmp_path)]) == 0
    argv = [*TRAIN, "--out", str(tmp_path)]
    argv[argv.index("--steps") + 1] = "1536"
    assert main(argv) == 0
    assert "resumed from" in capsys.readouterr().out
    data = json.loads((tmp_path / "CartPole-v1_reinforce_s0.json").read_text())
    assert data["env_steps"] == 1536
    argv[argv.index("--n-steps") + 1] = "16"
    assert main(argv) == 2
    line = one_error_line(capsys)
    assert "other settings" in line and "n_steps: 32 saved, 16 now" in line


# ---------------------------------------------------------------------------------------------
# careless inputs: one line `error: ...`, exit status 2, nothing computed
# ---------------------------------------------------------------------------------------------
class _Marker:
    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["rl", "train", "--env", "NoSuchEnv-v9"], "NoSuchEnv-v9"),
        (["rl", "train", "--steps", "0"], "--steps"),
        (["rl", "train", "--steps", "ten"], "--steps"),
        (["rl", "train", "--num-envs", "-2"], "--num-envs"),
        (["rl", "train", "--algo", "trpo", "--baseline", "none"], "baseline"),
        (["rl", "pareto", "--weights", "0,2"], "--weights"),
        (["rl", "pareto", "--weights", "abc"], "--weights"),
        (["rl", "pareto", "--gamma", "0"], "--gamma"),
        (["rl", "options", "--episodes", "0"], "--episodes"),
        (["rl", "options", "--epsilon", "1.5"], "--epsilon"),
        (["rl", "eval", "no/such/file.pt"], "no such file"),
    ],
)
def test_careless_inputs_are_one_error_line(argv, says, tmp_path, capsys):
    out = tmp_path / "out"
    assert main([*argv, "--out", str(out)]) == 2
    assert says in one_error_line(capsys)
    assert not out.exists() or not any(p for p in out.iterdir() if not p.name.startswith("."))


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", "planted"])
def test_eval_refuses_a_bad_checkpoint_file(content, tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    marker = tmp_path / "payload-ran"
    if content == "planted":
        torch.save(_Marker(marker), bad)
    else:
        bad.write_bytes(content)
    assert main(["rl", "eval", str(bad), "--out", str(tmp_path / "out")]) == 2
    assert str(bad) in one_error_line(capsys)
    assert not marker.exists()


def test_train_refuses_a_planted_checkpoint_without_running_it(tmp_path, capsys):
    """The earlier release unpickled the environments of the checkpoint it resumed from."""
    from dataclasses import asdict

    from stochgrad.apps.rl import policy_gradient as PG

    marker = tmp_path / "payload-ran"
    res = PG.train("CartPole-v1", "reinforce", 64, 0, num_envs=2, n_steps=32)
    state = {k: v for k, v in res.trainer.state().items() if k != "env_actions"}
    state["envs"] = torch.frombuffer(bytearray(pickle.dumps(_Marker(marker))), dtype=torch.uint8)
    out = tmp_path / "out"
    out.mkdir()
    torch.save({"config": asdict(res.config), "state": state}, out / TRAIN_CKPT)
    argv = ["rl", "train", "--steps", "128", "--num-envs", "2", "--n-steps", "32"]
    assert main([*argv, "--out", str(out)]) == 2
    line = one_error_line(capsys)
    assert str(out / TRAIN_CKPT) in line and "earlier release" in line and "--restart" in line
    assert not marker.exists()


@pytest.mark.parametrize("job", ["train", "eval", "pareto", "options"])
def test_unwritable_out_fails_at_once(job, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    argv = ["rl", "eval", str(blocker)] if job == "eval" else JOBS[job]
    if job == "eval":  # a genuine checkpoint to evaluate
        from stochgrad.apps.rl import policy_gradient as PG

        PG.train("CartPole-v1", "reinforce", 64, 0, checkpoint=tmp_path / "c.pt", num_envs=2,
                 n_steps=32)  # fmt: skip
        argv = ["rl", "eval", str(tmp_path / "c.pt")]
    for bad in (blocker / "sub", Path("/proc/stochgrad-test")):
        start = time.perf_counter()
        assert main([*argv, "--out", str(bad)]) == 2
        assert time.perf_counter() - start < 5
        assert one_error_line(capsys).startswith(f"error: --out {bad}")
