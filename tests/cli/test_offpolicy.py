"""Tests of ``stochgrad offpolicy``: tables, files, resume, restart, and one-line errors."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from stochgrad.cli import _kit, main
from tests.helpers import one_error_line, unwrapped, widest_line

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = ["offpolicy", "--rounds", "300", "--test-rounds", "200", "--seeds", "2"]
SMALL += ["--learners", "snips,dm", "--iterations", "5"]


def test_writes_tables_json_and_figures(tmp_path, capsys) -> None:
    out = tmp_path / "op"
    argv = [*SMALL, "--confounding", "--confounding-rounds", "3000", "--out", out]
    assert main(argv) == 0
    res = json.loads((out / "offpolicy.json").read_text())
    assert res["keys"] == ["logging", "random", "snips", "dm"]
    assert len(res["value"]["dm"]) == 2 and res["confounding"]["rounds"] == 3000
    assert res["confounding"]["max_abs_z"]["hidden"] > 0 and len(res["confounding_runs"]) == 1
    assert len(res["runs"]) == 8 and res["published"]["random"] == 0.5
    assert (out / "offpolicy_values.png").stat().st_size > 0
    assert (out / "offpolicy_confounding.png").stat().st_size > 0
    text = capsys.readouterr().out
    assert "True policy values" in text and "hidden confounder" in text
    assert widest_line(text) <= _kit.WIDTH
    # more confounding seeds: the finished one is reused
    assert main([*argv, "--confounding-seeds", "2"]) == 0
    text = unwrapped(capsys.readouterr().out)
    assert unwrapped("offpolicy_confounding_checkpoint.pt (1 of 2 seeds finished)") in text
    assert unwrapped("Confounding over seeds") in text
    assert len(json.loads((out / "offpolicy.json").read_text())["confounding_runs"]) == 2


CARELESS = {
    "learners unknown": ["--learners", "nope"],
    "seeds 0": ["--seeds", "0"],
    "rounds 0": ["--rounds", "0"],
    "rounds negative": ["--rounds", "-5"],
    "rounds 1": ["--rounds", "1"],
    "test-rounds 0": ["--test-rounds", "0"],
    "rounds text": ["--rounds", "many"],
    "iterations 0": ["--iterations", "0"],
    "lr negative": ["--lr", "-0.1"],
    "confounding-rounds 0": ["--confounding", "--confounding-rounds", "0"],
    "confounding-seeds 0": ["--confounding", "--confounding-seeds", "0"],
}


@pytest.mark.parametrize("extra", CARELESS.values(), ids=CARELESS.keys())
def test_careless_input_is_one_error_line(extra, tmp_path, capsys) -> None:
    assert main([*SMALL, *extra, "--out", tmp_path / "out"]) == 2
    one_error_line(capsys)
    assert not (tmp_path / "out" / "offpolicy.json").exists()


def test_other_settings_than_the_checkpoint_are_refused(tmp_path, capsys) -> None:
    assert main([*SMALL, "--out", tmp_path]) == 0
    capsys.readouterr()
    assert main([*SMALL, "--iterations", "6", "--out", tmp_path]) == 2
    assert "iterations: 5 saved, 6 now" in one_error_line(capsys)
    (tmp_path / "offpolicy_checkpoint.pt").write_bytes(b"junk")
    assert main([*SMALL, "--out", tmp_path]) == 2
    assert "offpolicy_checkpoint.pt" in one_error_line(capsys)


def test_unwritable_out_fails_at_once(tmp_path, capsys) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for out in (Path("/proc/stochgrad-test"), blocker / "sub"):
        start = time.perf_counter()
        assert main(["offpolicy", "--out", out]) == 2  # the full-size defaults
        assert time.perf_counter() - start < 5
        assert "--out" in one_error_line(capsys)
        assert "policy values" not in capsys.readouterr().out


@pytest.mark.parametrize(
    ("extra", "checkpoint"),
    [
        ([], "offpolicy_checkpoint.pt"),
        (
            ["--seeds", "1", "--learners", "dm", "--confounding", "--confounding-rounds", "2000",
             "--confounding-seeds", "2"],
            "offpolicy_confounding_checkpoint.pt",
        ),
    ],
    ids=["learners", "confounding"],
)  # fmt: skip
def test_interrupted_run_resumes_to_the_same_numbers(
    extra, checkpoint, tmp_path, capsys, interrupt_after_checkpoint
) -> None:
    argv = [*SMALL, *extra]
    assert main([*argv, "--out", tmp_path / "full"]) == 0
    full = json.loads((tmp_path / "full" / "offpolicy.json").read_text())
    out = tmp_path / "cut"
    out.mkdir()
    if checkpoint == "offpolicy_confounding_checkpoint.pt":
        # the learners finish first: the interrupt comes in the confounding study
        assert main([*argv[: -len(extra)], "--seeds", "1", "--learners", "dm", "--out", out]) == 0
        (out / "offpolicy.json").unlink()
    interrupt_after_checkpoint(out)
    assert main([*argv, "--out", out]) == 130
    assert (out / checkpoint).exists() and not (out / "offpolicy.json").exists()
    assert unwrapped("finished work is kept") in unwrapped(capsys.readouterr().out)
    assert main([*argv, "--out", out]) == 0
    assert unwrapped(f"resumed from {out / checkpoint}") in unwrapped(capsys.readouterr().out)
    resumed = json.loads((out / "offpolicy.json").read_text())
    assert resumed["value"] == full["value"]
    assert resumed["greedy_value"] == full["greedy_value"]
    assert resumed["confounding"] == full["confounding"]
    assert main([*argv, "--out", out, "--restart"]) == 0
    text = unwrapped(capsys.readouterr().out)
    assert unwrapped("--restart: removed") in text and "resumedfrom" not in text
