"""``stochgrad bbvi``: tables, files in --out, resume by default, --restart, one-line errors."""

from __future__ import annotations

import json
import time

import pytest
from rich.console import Console

from stochgrad.cli import bbvi as command
from stochgrad.cli import main
from stochgrad.studies import bbvi as study_module
from tests.helpers import widest_line

pytestmark = pytest.mark.usefixtures("one_thread")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TINY = ["bbvi", "--steps", "3", "--samples", "3", "--estimators", "loo,pathwise", "--eval-every",
        "1", "--variance-repeats", "2", "--nodes", "64"]  # fmt: skip
RESUMABLE = ["bbvi", "--steps", "4", "--samples", "3", "--estimators", "loo,pathwise",
             "--eval-every", "2", "--checkpoint-every", "2", "--variance-repeats", "2",
             "--nodes", "64"]  # fmt: skip


def _says(text: str, expected: str) -> bool:
    """Whether console ``text`` holds ``expected``, however the console wrapped its lines."""
    return "".join(expected.split()) in "".join(text.split())


def _numbers(folder) -> dict:
    data = json.loads((folder / "bbvi.json").read_text())
    runs = {e: {k: v for k, v in r.items() if k != "seconds"} for e, r in data["runs"].items()}
    return {"runs": runs, "optimum": data["optimum"], "variance": data["variance"]}


def test_writes_outputs_and_resumes(tmp_path, capsys):
    out = tmp_path / "bbvi"
    args = [*TINY, "--out", str(out)]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "Final ELBO after 3 steps" in text and "Gradient variance at q = optimum" in text
    res = json.loads((out / "bbvi.json").read_text())
    assert set(res["runs"]) == {"loo", "pathwise"}
    assert res["runs"]["loo"]["curve_steps"] == [0, 1, 2, 3]
    assert res["optimum"]["elbo"] > res["runs"]["loo"]["final_elbo"]
    assert len(res["variance"]) == 2 and sum(res["variance"][0]["wins_mu"].values()) == 31
    assert (out / "bbvi_elbo.png").read_bytes().startswith(PNG_MAGIC)
    assert (out / "bbvi_variance.png").read_bytes().startswith(PNG_MAGIC)
    assert (out / "bbvi_checkpoint.pt").exists()
    assert main(args) == 0  # resumes by default
    text = capsys.readouterr().out
    assert _says(text, f"resumed from {out / 'bbvi_checkpoint.pt'} (2 of 2 runs finished, 0 in")
    again = json.loads((out / "bbvi.json").read_text())
    assert again["resumed"] == 2 and again["runs"]["loo"] == res["runs"]["loo"]
    assert again["optimum"] == res["optimum"] and again["variance"] == res["variance"]
    # other --steps, same folder: refused in one line naming the difference
    assert main([*TINY[:2], "4", *TINY[3:], "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    assert "restart" in err and "steps: 3 saved, 4 now" in err
    # --restart starts afresh, to the same numbers
    assert main([*args, "--restart"]) == 0
    text = capsys.readouterr().out
    assert "--restart: removed" in text and "resumed from" not in text
    assert json.loads((out / "bbvi.json").read_text())["resumed"] == 0
    assert _numbers(out)["runs"] == {
        e: {k: v for k, v in r.items() if k != "seconds"} for e, r in res["runs"].items()
    }


def test_interrupted_run_resumes_to_the_same_numbers(tmp_path, capsys, interrupt_after_checkpoint):
    ref = tmp_path / "ref"
    assert main([*RESUMABLE, "--out", str(ref)]) == 0
    out = tmp_path / "run"
    interrupt_after_checkpoint(out)
    assert main([*RESUMABLE, "--out", str(out)]) == 130
    captured = capsys.readouterr()
    assert "interrupted" in captured.out + captured.err
    assert (out / "bbvi_checkpoint.pt").exists() and not (out / "bbvi.json").exists()
    assert main([*RESUMABLE, "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert _says(text, f"resumed from {out / 'bbvi_checkpoint.pt'} (0 of 2 runs finished")
    assert _numbers(out) == _numbers(ref)


def test_interrupted_mid_run_continues_from_its_saved_state(tmp_path, capsys, monkeypatch):
    from stochgrad.cli import _kit

    ref = tmp_path / "ref"
    assert main([*RESUMABLE, "--out", str(ref)]) == 0
    out = tmp_path / "run"
    calls = []

    def hook():
        calls.append(1)
        if len(calls) == 7:  # loo finished, pathwise saved at step 2 and one step past it
            raise KeyboardInterrupt

    monkeypatch.setattr(_kit, "PROGRESS_HOOKS", [hook])
    assert main([*RESUMABLE, "--out", str(out)]) == 130
    monkeypatch.setattr(_kit, "PROGRESS_HOOKS", [])
    capsys.readouterr()
    assert main([*RESUMABLE, "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert _says(text, "(1 of 2 runs finished, 1 in progress)")
    assert _numbers(out) == _numbers(ref)


@pytest.mark.parametrize(
    ("options", "says"),
    [
        (["--estimators", "score,foo"], "foo"),
        (["--estimators", ""], "--estimators"),
        (["--steps", "0"], "--steps"),
        (["--samples", "-3"], "--samples"),
        (["--lr", "0"], "--lr"),
        (["--optimizer", "rmsprop"], "--optimizer"),
        (["--variance-repeats", "1"], "variance_repeats"),
        (["--nodes", "1"], "nodes"),
        (["--seed", "-1"], "seeds"),
        (["--batch", "1000"], "batch_size"),
    ],
    ids=["unknown-estimator", "no-estimator", "zero-steps", "negative-samples", "zero-lr",
         "unknown-optimizer", "one-repeat", "one-node", "negative-seed", "batch-over-data"],
)  # fmt: skip
def test_careless_input_is_one_error_line(options, says, tmp_path, capsys):
    out = tmp_path / "never"
    assert main([*TINY, *options, "--out", str(out)]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and says in err[0], err
    assert "Traceback" not in captured.err + captured.out


def test_unwritable_out_fails_at_once_before_any_work(tmp_path, capsys, monkeypatch):
    def no_work(*args, **kwargs):
        raise AssertionError("the study ran")

    monkeypatch.setattr(study_module, "bbvi_study", no_work)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for bad in (blocker / "sub", "/proc/stochgrad-test"):
        start = time.perf_counter()
        assert main([*TINY, "--out", str(bad)]) == 2
        assert time.perf_counter() - start < 5
        captured = capsys.readouterr()
        err = captured.err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"error: --out {bad}")
        assert "Traceback" not in captured.err


def test_tables_fit_100_columns(tmp_path):
    """All five estimators, a diverged run and the widest variances: within 100 columns."""
    from stochgrad.apps.vi import BBVIConfig
    from stochgrad.studies.bbvi import BBVIStudyConfig, bbvi_study

    training = BBVIConfig(steps=3, num_samples=3, eval_every=1, nodes=64, eval_samples=20)
    study = bbvi_study(BBVIStudyConfig(training, seeds=(1,), variance_repeats=2))
    assert any(r.diverged_at is not None for r in study.runs.values())
    console = Console(width=300, record=True)
    console.print(command._final_table(study))
    for t in study.variance:
        console.print(command._variance_table(t))
    lines = console.export_text().splitlines()
    assert widest_line("\n".join(lines)) <= 100
    rows = [line for line in lines if line.startswith("│")]
    assert len(rows) == 3 * 5  # one line per estimator and table: nothing squeezed
    # a diverged run's -inf ELBO is written as null: bbvi.json stays strict JSON
    from stochgrad.cli import _kit

    path = _kit.write_json(tmp_path / "bbvi.json", command._json(study, []))

    def refuse(constant):
        raise ValueError(f"not JSON: {constant}")

    data = json.loads(path.read_text(), parse_constant=refuse)
    assert None in [r["final_elbo"] for r in data["runs"].values()]


def test_help_shows_the_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["bbvi", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for shown in ("(default: 5000)", "seed of every run (default: 0)",
                  "(default: score,loo,delta,pathwise,mvd)",
                  "(default: stochgrad-out/bbvi)", "(default: 500)"):  # fmt: skip
        assert shown in text
