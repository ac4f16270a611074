"""``stochgrad demo`` and ``stochgrad compare``: the conventions every command follows."""

from __future__ import annotations

import json
import time

import pytest

from stochgrad.checkpoint import OutputLock
from stochgrad.cli import main

DEMO = ["demo", "--samples", "600", "--deltas", "0,1", "--sigmas", "1,2"]
COMPARE = ["compare", "--samples", "600", "--points", "2"]


@pytest.mark.parametrize("argv", [DEMO, COMPARE], ids=["demo", "compare"])
def test_interrupted_run_resumes_to_the_same_numbers(argv, tmp_path, capsys,
                                                    interrupt_after_checkpoint):  # fmt: skip
    name = argv[0]
    ref = tmp_path / "ref"
    assert main([*argv, "--out", str(ref)]) == 0
    capsys.readouterr()
    out = tmp_path / "run"
    interrupt_after_checkpoint(out)
    assert main([*argv, "--out", str(out)]) == 130
    captured = capsys.readouterr()
    assert "interrupted" in captured.out + captured.err
    assert not (out / f"{name}.json").exists()
    assert main([*argv, "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert f"resumed from {out / f'{name}_checkpoint.pt'}" in text
    assert json.loads((out / f"{name}.json").read_text()) == json.loads(
        (ref / f"{name}.json").read_text()
    )
    for path in (f"{name}.json", f"{name}_variance.png"):
        assert str(out / path) in text  # the paths written are printed
    assert main([*argv, "--out", str(out), "--restart"]) == 0
    text = capsys.readouterr().out
    assert "resumed from" not in text and "--restart: removed" in text


def test_other_settings_are_refused_naming_the_difference(tmp_path, capsys):
    assert main([*DEMO, "--out", str(tmp_path)]) == 0
    capsys.readouterr()
    assert main([*DEMO[:2], "700", *DEMO[3:], "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "samples: 600 saved, 700 now" in err
    assert "\n" not in err and "Traceback" not in err


@pytest.mark.parametrize("argv", [DEMO, COMPARE], ids=["demo", "compare"])
def test_unwritable_out_fails_at_once(argv, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for bad in (blocker / "sub", blocker, "/proc/stochgrad-test"):
        start = time.perf_counter()
        assert main([*argv, "--out", str(bad)]) == 2
        assert time.perf_counter() - start < 5
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"error: --out {bad}")


def test_a_second_run_on_the_same_folder_is_refused(tmp_path, capsys):
    with OutputLock(tmp_path):
        assert main([*DEMO, "--out", str(tmp_path)]) == 2
    assert "another stochgrad run is writing to" in capsys.readouterr().err


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(ValueError, match="samples must be >= 2"):
        main(["--debug", "demo", "--samples", "1", "--out", str(tmp_path)])
    with pytest.raises(ValueError, match="samples must be >= 2"):
        main(["demo", "--samples", "1", "--out", str(tmp_path), "--debug"])
