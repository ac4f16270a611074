"""``stochgrad rbm``: outputs, resume by default, --restart, careless inputs."""

from __future__ import annotations

import json
import time

import pytest

from stochgrad.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = ["rbm", "--hidden", "4", "--epochs", "3", "--batch", "200"]


def _result(folder) -> dict:
    """rbm.json without wall times and the count of resumed epochs."""
    data = json.loads((folder / "rbm.json").read_text())
    for key in ("seconds", "epochs_resumed"):
        data.pop(key)
    if "sklearn" in data:
        data["sklearn"].pop("seconds")
    return data


def test_writes_outputs_and_resumes(tmp_path, capsys) -> None:
    out = tmp_path / "rbm"
    argv = [*SMALL[:4], "2", *SMALL[5:], "--out", out, "--compare-sklearn"]
    assert main(argv) == 0
    data = json.loads((out / "rbm.json").read_text())
    assert len(data["test_ll"]) == 3 and data["config"]["num_hidden"] == 4
    assert data["sklearn"]["settings"]["n_components"] == 4
    assert data["test_ll_difference"] == pytest.approx(
        data["final"]["test_ll"] - data["sklearn"]["test_ll"]
    )
    for name in ("rbm_curve.png", "rbm_filters.png", "rbm_checkpoint.pt"):
        assert (out / name).stat().st_size > 0
    text = capsys.readouterr().out
    assert "scikit-learn BernoulliRBM" in text and str(out / "rbm.json") in text
    # a second run takes everything from the checkpoint; --restart trains again, same numbers
    assert main(argv) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "resumed from" in text and "2 epochs from the checkpoint" in text
    assert json.loads((out / "rbm.json").read_text())["test_ll"] == data["test_ll"]
    assert main([*argv, "--restart"]) == 0
    text = capsys.readouterr().out
    assert "from the checkpoint" not in text and "--restart: removed" in text
    assert json.loads((out / "rbm.json").read_text())["test_ll"] == data["test_ll"]


def test_interrupted_training_resumes_to_the_same_numbers(tmp_path, capsys,
                                                          interrupt_after_checkpoint):  # fmt: skip
    ref = tmp_path / "ref"
    assert main([*SMALL, "--out", ref]) == 0
    capsys.readouterr()
    out = tmp_path / "run"
    interrupt_after_checkpoint(out)
    assert main([*SMALL, "--out", out]) == 130
    captured = capsys.readouterr()
    assert "interrupted" in captured.out + captured.err
    assert (out / "rbm_checkpoint.pt").exists() and not (out / "rbm.json").exists()
    assert main([*SMALL, "--out", out]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert f"resumed from {out / 'rbm_checkpoint.pt'} (1 of 3 epochs trained)" in text
    assert _result(out) == _result(ref)
    assert json.loads((out / "rbm.json").read_text())["epochs_resumed"] == 1


def test_other_settings_are_refused_naming_the_difference(tmp_path, capsys) -> None:
    argv = [*SMALL[:4], "1", *SMALL[5:], "--out", tmp_path]
    assert main(argv) == 0
    capsys.readouterr()
    assert main([*argv, "--hidden", "5"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "num_hidden: 4 saved, 5 now" in err
    assert "\n" not in err and "Traceback" not in err


CARELESS = {
    "zero hidden": (["--hidden", "0"], "argument --hidden"),
    "zero epochs": (["--epochs", "0"], "argument --epochs"),
    "too many hidden": (["--hidden", "17"], "--hidden must be <= 16"),
    "text epochs": (["--epochs", "ten"], "argument --epochs"),
    "zero batch": (["--batch", "0"], "argument --batch"),
    "zero rate": (["--lr", "0"], "argument --lr"),
    "momentum 1": (["--momentum", "1"], "momentum must be < 1"),
    "negative decay": (["--weight-decay", "-0.1"], "weight_decay must be >= 0"),
    "chains with cd": (["--method", "cd", "--chains", "5"], "--chains applies to --method pcd"),
    "unknown method": (["--method", "sgd"], "argument --method"),
}


@pytest.mark.parametrize("case", list(CARELESS))
def test_careless_input_is_one_error_line(case, tmp_path, capsys) -> None:
    extra, message = CARELESS[case]
    assert main(["rbm", *extra, "--out", tmp_path / "out"]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), captured.err
    assert message in err[0]
    assert "Traceback" not in captured.err + captured.out
    assert not (tmp_path / "out" / "rbm_checkpoint.pt").exists()


def test_unwritable_out_fails_at_once(tmp_path, capsys, monkeypatch) -> None:
    import stochgrad.studies.rbm as study

    def never(*args, **kwargs):
        raise AssertionError("trained before checking --out")

    monkeypatch.setattr(study, "rbm_digits_study", never)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for bad in (blocker / "sub", blocker, "/proc/stochgrad-test"):
        start = time.perf_counter()
        assert main(["rbm", "--out", bad]) == 2
        assert time.perf_counter() - start < 5
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"error: --out {bad}")


def test_help_shows_the_defaults(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["rbm", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: stochgrad-out/rbm)" in text and "(default: 0.06)" in text
    assert "(default: pcd)" in text and "--restart" in text
    assert "--resume" not in text
