"""Tests of ``stochgrad offpolicy learn``: a policy from a log file, its files, resume, restart,
and one-line errors for careless input and bad files."""

from __future__ import annotations

import csv
import json
import re
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from stochgrad.apps.offpolicy import SyntheticBandit, learn_policy, log_columns, policy_probs
from stochgrad.cli import _kit, main
from tests.helpers import one_error_line, unwrapped, widest_line

pytestmark = pytest.mark.usefixtures("one_thread")

DOCS = Path(__file__).resolve().parents[2] / "docs" / "offpolicy.md"


@pytest.fixture(scope="module")
def logged():
    return SyntheticBandit().sample(1500, generator=np.random.default_rng(0))


def write_log(path: Path, logged, **kwargs) -> Path:
    cols = log_columns(logged, **kwargs)
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(cols)
        w.writerows(zip(*(c.tolist() for c in cols.values()), strict=True))
    return path


def learn(log: Path, *extra: object) -> list[object]:
    return ["offpolicy", "learn", "--log", log, "--iterations", "60", *extra]


def test_learns_from_a_csv_log_the_numbers_of_the_library(logged, tmp_path, capsys) -> None:
    log = write_log(tmp_path / "log.csv", logged, expected=True)
    out = tmp_path / "out"
    assert main([*learn(log, "--estimator", "dr", "--expected-prefix", "q_"), "--out", out]) == 0
    text = capsys.readouterr().out
    assert unwrapped("Policy values on 300 held-out rounds") in unwrapped(text)
    assert "true value" in text and "learned minus logging (dr)" in text
    assert widest_line(text) <= _kit.WIDTH
    res = json.loads((out / "offpolicy_learn.json").read_text())
    policy = json.loads((out / "offpolicy_policy.json").read_text())
    # the same numbers as the library on the in-memory data
    ref = learn_policy(logged, "dr", iterations=60)
    assert torch.equal(torch.tensor(policy["theta"], dtype=torch.float64), ref.theta)
    for k, v in ref.values.items():
        assert res["values"][k]["value"] == v.value and res["values"][k]["stderr"] == v.stderr
    assert res["logging"] == {"value": ref.logging_value.value, "stderr": ref.logging_value.stderr}
    assert res["true_value"] == ref.true_value and res["gain"]["value"] == ref.gain.value
    assert res["true_value"] > res["true_logging_value"]
    assert (res["rounds"], res["num_actions"], res["train_rounds"]) == (1500, 10, 1200)
    assert policy["features"] == ["bias", "x_0", "x_1", "x_2", "x_3", "x_4"]
    assert policy["num_actions"] == 10 and res["log_sha256"] and res["has_behavior"]
    # the saved policy applies as the docs say
    theta = torch.tensor(policy["theta"], dtype=torch.float64)
    assert policy_probs(theta, logged.contexts[:2]).shape == (2, 10)


def test_explicit_context_columns_and_no_reward_model(logged, tmp_path, capsys) -> None:
    cols = {k: v for k, v in log_columns(logged).items() if not k.startswith("pi0_")}
    cols = {("feat_" + k if k.startswith("x_") else k): v for k, v in cols.items()}
    log = tmp_path / "renamed.csv"
    with open(log, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(cols)
        w.writerows(zip(*(c.tolist() for c in cols.values()), strict=True))
    names = ",".join(f"feat_x_{j}" for j in (4, 0, 1, 2, 3))  # any order
    argv = learn(log, "--context-cols", names, "--num-actions", "10", "--reward-model", "none")
    assert main([*argv, "--estimator", "dr", "--out", tmp_path / "o"]) == 0
    text = capsys.readouterr().out
    assert "propensities only" in text and "true value" not in text
    res = json.loads((tmp_path / "o" / "offpolicy_learn.json").read_text())
    assert sorted(res["values"]) == ["ips", "snips"]  # no reward model: no DR value
    policy = json.loads((tmp_path / "o" / "offpolicy_policy.json").read_text())
    assert policy["features"] == ["bias", *names.split(",")]


def test_interrupted_run_resumes_to_the_same_numbers(
    logged, tmp_path, capsys, interrupt_after_checkpoint
) -> None:
    log = write_log(tmp_path / "log.csv", logged)
    argv = learn(log, "--iterations", "120")
    assert main([*argv, "--out", tmp_path / "full"]) == 0
    full = json.loads((tmp_path / "full" / "offpolicy_policy.json").read_text())
    out = tmp_path / "cut"
    out.mkdir()
    interrupt_after_checkpoint(out)
    assert main([*argv, "--out", out]) == 130
    assert (out / "offpolicy_learn_checkpoint.pt").exists()
    assert not (out / "offpolicy_policy.json").exists()
    assert unwrapped("finished work is kept") in unwrapped(capsys.readouterr().out)
    assert main([*argv, "--out", out]) == 0
    text = unwrapped(capsys.readouterr().out)
    ckpt = out / "offpolicy_learn_checkpoint.pt"
    assert unwrapped(f"resumed from {ckpt} (Adam step 50 of 120)") in text
    assert json.loads((out / "offpolicy_policy.json").read_text()) == full
    assert main([*argv, "--out", out]) == 0  # finished: loaded, not learned again
    assert unwrapped(f"resumed from {ckpt} (finished)") in unwrapped(capsys.readouterr().out)
    assert json.loads((out / "offpolicy_policy.json").read_text()) == full
    assert main([*argv, "--out", out, "--restart"]) == 0
    text = unwrapped(capsys.readouterr().out)
    assert unwrapped("--restart: removed") in text and "resumedfrom" not in text


def test_other_settings_or_another_file_content_are_refused(logged, tmp_path, capsys) -> None:
    log = write_log(tmp_path / "log.csv", logged)
    assert main([*learn(log), "--out", tmp_path / "o"]) == 0
    capsys.readouterr()
    assert main([*learn(log), "--estimator", "ips", "--out", tmp_path / "o"]) == 2
    assert "estimator: 'snips' saved, 'ips' now" in one_error_line(capsys)
    write_log(log, SyntheticBandit().sample(1500, generator=np.random.default_rng(1)))
    assert main([*learn(log), "--out", tmp_path / "o"]) == 2
    assert "log_sha256" in one_error_line(capsys)


GOOD = "x_0,action,reward,propensity\n0.5,1,1,0.5\n-0.5,0,0,0.5\n1.5,1,0,0.5\n"
BAD_FILES = {
    "propensity 0": (GOOD.replace("-0.5,0,0,0.5", "-0.5,0,0,0"), "'propensity', row 2 (line 3)"),
    "NaN reward": (GOOD.replace("1.5,1,0", "1.5,1,nan"), "'reward', row 3 (line 4)"),
    "action out of range": (GOOD.replace("1.5,1,0", "1.5,7,0"), "'action', row 3 (line 4)"),
    "missing columns": (GOOD.replace("reward", "payoff"), "missing column 'reward'"),
    "not UTF-8": (b"x_0,action\n\xff\xfe,1\n", "not UTF-8"),
}


@pytest.mark.parametrize(("content", "message"), BAD_FILES.values(), ids=BAD_FILES.keys())
def test_bad_files_are_one_error_line_naming_file_column_row(
    content, message, tmp_path, capsys
) -> None:
    log = tmp_path / "bad.csv"
    log.write_bytes(content if isinstance(content, bytes) else content.encode())
    assert main([*learn(log, "--num-actions", "2"), "--out", tmp_path / "out"]) == 2
    line = one_error_line(capsys)
    assert str(log) in line and message in line, line
    assert not (tmp_path / "out").exists()  # a failed run leaves no empty folder


CARELESS = {
    "no --log": ["offpolicy", "learn"],
    "missing file": ["offpolicy", "learn", "--log", "nope.csv"],
    "unknown format": ["offpolicy", "learn", "--log", "log.txt"],
    "estimator unknown": ["offpolicy", "learn", "--log", "log.csv", "--estimator", "dm"],
    "holdout 1": ["offpolicy", "learn", "--log", "log.csv", "--holdout", "1"],
    "holdout negative": ["offpolicy", "learn", "--log", "log.csv", "--holdout", "-0.1"],
    "holdout too small": ["offpolicy", "learn", "--log", "log.csv", "--holdout", "0.0001"],
    "num-actions 1": ["offpolicy", "learn", "--log", "log.csv", "--num-actions", "1"],
    "num-actions too few": ["offpolicy", "learn", "--log", "log.csv", "--num-actions", "3"],
    "iterations 0": ["offpolicy", "learn", "--log", "log.csv", "--iterations", "0"],
    "lr text": ["offpolicy", "learn", "--log", "log.csv", "--lr", "fast"],
    "folds 1": ["offpolicy", "learn", "--log", "log.csv", "--folds", "1"],
    "context column missing": ["offpolicy", "learn", "--log", "log.csv", "--context-cols", "x_9"],
    "no context prefix match": ["offpolicy", "learn", "--log", "log.csv", "--context-prefix", "z"],
    "reward model unknown": ["offpolicy", "learn", "--log", "log.csv", "--reward-model", "x"],
}


@pytest.mark.parametrize("argv", CARELESS.values(), ids=CARELESS.keys())
def test_careless_input_is_one_error_line(argv, logged, tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    write_log(tmp_path / "log.csv", logged)
    assert main([*argv, "--out", tmp_path / "out"]) == 2
    one_error_line(capsys)
    assert not (tmp_path / "out" / "offpolicy_policy.json").exists()


def test_parquet_without_pyarrow_says_what_to_install(tmp_path, capsys, monkeypatch) -> None:
    log = tmp_path / "log.parquet"
    log.write_bytes(b"PAR1")
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    assert main(["offpolicy", "learn", "--log", log, "--out", tmp_path / "out"]) == 2
    assert "pip install pyarrow" in one_error_line(capsys)


def test_learns_from_a_parquet_log(logged, tmp_path, capsys) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    pq.write_table(pa.table(log_columns(logged)), tmp_path / "log.parquet")
    write_log(tmp_path / "log.csv", logged)
    for name in ("log.parquet", "log.csv"):
        assert main([*learn(tmp_path / name), "--out", tmp_path / name.replace(".", "_")]) == 0
    capsys.readouterr()
    a, b = (
        json.loads((tmp_path / f / "offpolicy_policy.json").read_text())
        for f in ("log_parquet", "log_csv")
    )
    assert a == b


def test_unwritable_out_fails_at_once(logged, tmp_path, capsys) -> None:
    log = write_log(tmp_path / "log.csv", logged)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for out in (Path("/proc/stochgrad-test"), blocker / "sub"):
        start = time.perf_counter()
        assert main(["offpolicy", "learn", "--log", log, "--out", out]) == 2
        assert time.perf_counter() - start < 5
        assert "--out" in one_error_line(capsys)


def test_the_study_command_still_runs_without_a_job(tmp_path, capsys) -> None:
    argv = ["offpolicy", "--rounds", "200", "--test-rounds", "100", "--seeds", "1"]
    assert main([*argv, "--learners", "dm", "--iterations", "2", "--out", tmp_path]) == 0
    assert "True policy values" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        main(["offpolicy", "learn", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert "--log FILE" in text and "(default: snips)" in text


def test_docs_your_own_logs_command_runs(logged, tmp_path, capsys, monkeypatch) -> None:
    """The command of "Your own logs" in docs/offpolicy.md runs as written (on a smaller log)."""
    section = DOCS.read_text().split("## Your own logs", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"^```bash\n(.*?)^```$", section, flags=re.S | re.M)
    assert len(commands) == 1
    argv = shlex.split(commands[0].strip())
    assert argv[0] == "stochgrad" and argv[1:3] == ["offpolicy", "learn"]
    monkeypatch.chdir(tmp_path)
    write_log(tmp_path / "log.csv", logged)
    assert main([*argv[1:], "--iterations", "30"]) == 0
    assert (tmp_path / "runs" / "op-learn" / "offpolicy_policy.json").exists()
    assert "learned minus logging (dr)" in capsys.readouterr().out


def test_study_options_before_learn_are_refused_not_ignored(logged, tmp_path, capsys) -> None:
    # before: `offpolicy --seeds 3 --out X learn --log F` ran learn and dropped both options
    log = write_log(tmp_path / "log.csv", logged)
    out = tmp_path / "out"
    argv = ["offpolicy", "--seeds", "3", "--out=" + str(out), "learn", "--log", log]
    assert main(argv) == 2
    line = one_error_line(capsys)
    assert "--seeds, --out before `learn` would be ignored" in line
    assert not out.exists()
