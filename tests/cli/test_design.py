"""Tests of ``stochgrad design eig|optimize``: files, resume, restart, and one-line errors."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest

from stochgrad.cli import _kit, main
from tests.helpers import one_error_line, unwrapped, widest_line

pytestmark = pytest.mark.usefixtures("one_thread")

EIG = ["design", "eig", "--outer", "50", "--inner", "20"]
OPT = ["design", "optimize", "--steps", "6", "--outer", "8", "--inner", "8"]


def test_eig_writes_the_table_as_json(tmp_path, capsys):
    assert main([*EIG, "--model", "linear", "--out", tmp_path]) == 0
    data = json.loads((tmp_path / "design_eig_linear.json").read_text())
    rows = data["rows"]
    names = [r["estimator"] for r in rows]
    assert names == ["NMC (upper)", "PCE (lower)", "PCE score", "PCE pathwise"]
    assert rows[0]["reference"][0] == pytest.approx(0.5 * math.log(11.0))
    assert len(rows[2]["estimate"]) == 6 and data["replicates"] == 1
    out = capsys.readouterr().out
    assert "design eig, linear model" in out and "max |z|" in out
    assert widest_line(out) <= _kit.WIDTH
    logistic = [*EIG, "--model", "logistic", "--doses", "0,1", "--out", tmp_path]
    assert main(logistic) == 0
    rows = json.loads((tmp_path / "design_eig_logistic.json").read_text())["rows"]
    assert [r["estimator"] for r in rows] == ["NMC (upper)", "PCE (lower)", "PCE score"]
    assert main([*EIG, "--replicates", "2", "--out", tmp_path / "r"]) == 0
    rows = json.loads((tmp_path / "r" / "design_eig_linear.json").read_text())["rows"]
    assert len(rows[0]["replicates"]) == 2


def test_optimize_writes_resumes_and_restarts(tmp_path, capsys):
    args = [*OPT, "--model", "linear", "--out", tmp_path]
    assert main(args) == 0
    saved = json.loads((tmp_path / "design_linear.json").read_text())
    assert len(saved["designs"]) == 7 and (tmp_path / "design_linear.png").stat().st_size > 0
    capsys.readouterr()
    assert main(args) == 0  # finished checkpoint: resumes at the end, same result
    assert unwrapped("resumed from") in unwrapped(capsys.readouterr().out)
    again = json.loads((tmp_path / "design_linear.json").read_text())
    assert again["designs"] == saved["designs"] and again["resumed_from"] == 6
    assert main([*args, "--restart"]) == 0
    out = unwrapped(capsys.readouterr().out)
    assert unwrapped("--restart: removed") in out and "resumedfrom" not in out
    assert json.loads((tmp_path / "design_linear.json").read_text())["resumed_from"] == 0
    # other settings than the checkpoint's: refused, naming what differs
    assert main([*args, "--outer", "9"]) == 2
    assert "num_outer: 8 saved, 9 now" in one_error_line(capsys)
    logistic = [*OPT, "--model", "logistic", "--doses", "2", "--out", tmp_path]
    assert main(logistic) == 0
    data = json.loads((tmp_path / "design_logistic.json").read_text())
    assert data["config"]["method"] == "score" and data["baseline_eig"] is not None


CARELESS = {
    "outer 1": ["design", "eig", "--outer", "1"],
    "inner negative": ["design", "eig", "--inner", "-3"],
    "doses text": ["design", "eig", "--model", "logistic", "--doses", "low,high"],
    "17 doses": ["design", "eig", "--model", "logistic", "--doses", ",".join(["0"] * 17)],
    "unknown model": ["design", "eig", "--model", "quadratic"],
    "seed negative": ["design", "eig", "--seed", "-1"],
    "replicates 0": ["design", "eig", "--replicates", "0"],
    "steps 0": ["design", "optimize", "--steps", "0"],
    "lr nan": ["design", "optimize", "--lr", "nan"],
    "outer 1 (optimize)": ["design", "optimize", "--outer", "1"],
    "logistic pathwise": ["design", "optimize", "--model", "logistic", "--method", "pathwise"],
    "17 doses (optimize)": ["design", "optimize", "--model", "logistic", "--doses", "17"],
    "checkpoint-every 0": ["design", "optimize", "--checkpoint-every", "0"],
}


@pytest.mark.parametrize("argv", CARELESS.values(), ids=CARELESS.keys())
def test_careless_input_is_one_error_line(argv, tmp_path, capsys):
    assert main([*argv, "--out", tmp_path / "out"]) == 2
    one_error_line(capsys)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").glob("*.json"))


@pytest.mark.parametrize("content", [b"", b"not a checkpoint"])
def test_a_corrupt_checkpoint_is_one_error_line(tmp_path, capsys, content):
    (tmp_path / "design_linear_checkpoint.pt").write_bytes(content)
    assert main([*OPT, "--out", tmp_path]) == 2
    assert "design_linear_checkpoint.pt" in one_error_line(capsys)
    (tmp_path / "design_eig_linear_checkpoint.pt").write_bytes(content)
    assert main([*EIG, "--out", tmp_path]) == 2
    assert "design_eig_linear_checkpoint.pt" in one_error_line(capsys)


@pytest.mark.parametrize("job", [EIG, OPT], ids=["eig", "optimize"])
def test_unwritable_out_fails_at_once(job, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for out in (Path("/proc/stochgrad-test"), blocker / "sub"):
        start = time.perf_counter()
        assert main([*job, "--outer", "4000", "--out", out]) == 2
        assert time.perf_counter() - start < 5
        assert "--out" in one_error_line(capsys)
        assert "design" not in capsys.readouterr().out  # nothing computed, no table


@pytest.mark.parametrize(
    ("job", "checkpoint", "result"),
    [
        (EIG, "design_eig_linear_checkpoint.pt", "design_eig_linear.json"),
        ([*OPT, "--checkpoint-every", "2"], "design_linear_checkpoint.pt", "design_linear.json"),
    ],
    ids=["eig", "optimize"],
)
def test_interrupted_run_resumes_to_the_same_numbers(
    job, checkpoint, result, tmp_path, capsys, interrupt_after_checkpoint
):
    assert main([*job, "--out", tmp_path / "full"]) == 0
    full = json.loads((tmp_path / "full" / result).read_text())
    out = tmp_path / "cut"
    out.mkdir()
    interrupt_after_checkpoint(out)
    assert main([*job, "--out", out]) == 130
    assert (out / checkpoint).exists() and not (out / result).exists()
    assert unwrapped("finished work is kept") in unwrapped(capsys.readouterr().out)
    assert main([*job, "--out", out]) == 0
    assert unwrapped(f"resumed from {out / checkpoint}") in unwrapped(capsys.readouterr().out)
    resumed = json.loads((out / result).read_text())
    if "rows" in full:
        for a, b in zip(resumed["rows"], full["rows"], strict=True):
            assert (a["estimate"], a["stderr"]) == (b["estimate"], b["stderr"])
    else:
        assert resumed["designs"] == full["designs"]
        assert resumed["final_design"] == full["final_design"]
        assert resumed["resumed_from"] > 0
    assert main([*job, "--out", out, "--restart"]) == 0
    text = unwrapped(capsys.readouterr().out)
    assert unwrapped("--restart: removed") in text and "resumedfrom" not in text


def test_help_shows_the_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["design", "eig", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: 4000)" in text and "(default: stochgrad-out/design)" in text
    with pytest.raises(SystemExit):
        main(["design", "optimize", "--help"])
    assert "(default: 400)" in " ".join(capsys.readouterr().out.split())
