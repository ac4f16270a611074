"""``stochgrad relax-toy``: table, files, resume by default, --restart, one-line errors."""

from __future__ import annotations

import json
import time
from types import SimpleNamespace

import numpy as np
import pytest
from rich.console import Console

from stochgrad.cli import main
from stochgrad.cli import relax_toy as command
from stochgrad.studies import relax_toy as SD
from tests.helpers import widest_line

pytestmark = pytest.mark.usefixtures("one_thread")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TINY = ["relax-toy", "--iterations", "50", "--seeds", "2", "--probe-every", "10",
        "--probe-samples", "200", "--half-samples", "1000", "--warmup", "20"]  # fmt: skip
FAST = [*TINY, "--estimators", "exact,disarm"]


def _says(text: str, expected: str) -> bool:
    """Whether console ``text`` holds ``expected``, however the console wrapped its lines."""
    return "".join(expected.split()) in "".join(text.split())


def _runs_without_timing(results: dict) -> dict:
    return {
        key: [{k: v for k, v in run.items() if k != "seconds"} for run in est["runs"]]
        for key, est in results["estimators"].items()
    }


def test_tiny_run_writes_table_json_and_png(tmp_path, capsys):
    out = tmp_path / "toy"
    assert main([*TINY, "--out", str(out)]) == 0
    text = capsys.readouterr().out
    data = (out / "relax_toy.png").read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 10_000
    results = json.loads((out / "relax_toy.json").read_text())
    rows = {r["key"]: r for r in results["summary"]}
    ran = [k for k in SD.DEFAULT_ESTIMATORS if SD.availability(k) is None]
    assert list(rows) == ran
    for header in ("final θ", "final loss", "ln Var", "Var θ=½", "÷ SF", "legend: SF = REINFORCE"):
        assert header in text
    assert _says(text, str(out / "relax_toy.json"))
    # DisARM is exact at theta = 1/2 and REINFORCE is not.
    assert rows["disarm"]["variance_half"] < rows["reinforce"]["variance_half"]
    assert rows["disarm"]["ratio_half"] < 1.0
    assert rows["reinforce"]["ratio_half"] == pytest.approx(1.0)
    if "relax" in rows:
        assert rows["relax"]["variance_half"] < rows["reinforce"]["variance_half"]
    else:
        assert "skipping RELAX" in text
    # the checkpoint holds the tiny settings: the defaults are refused
    ckpt = SD.Checkpoint(out / "relax_toy_checkpoint.pt", SD.Config())
    with pytest.raises(ValueError, match="other settings"):
        ckpt.load()
    # The exact-gradient runs: theta falls at every step.
    exact = results["estimators"]["exact"]["runs"]
    assert len(exact) == 2
    for run in exact:
        assert np.all(np.diff(run["theta"]) < 0)
    assert len(results["estimators"]["disarm"]["curves"]["probe_iterations"]) == 6


def test_rerun_resumes_new_seeds_run_alone_and_restart_starts_afresh(tmp_path, capsys,
                                                                     monkeypatch):  # fmt: skip
    out = tmp_path / "r"
    argv = [*FAST, "--out", str(out)]
    assert main(argv) == 0
    first = json.loads((out / "relax_toy.json").read_text())
    capsys.readouterr()

    calls = []
    real = SD.run_one

    def counting(key, seed, config, progress=None):
        calls.append((key, seed))
        return real(key, seed, config, progress)

    monkeypatch.setattr(SD, "run_one", counting)
    assert main(argv) == 0
    assert calls == []
    text = capsys.readouterr().out
    assert _says(text, f"resumed from {out / 'relax_toy_checkpoint.pt'} (4 of 4 runs finished)")
    again = json.loads((out / "relax_toy.json").read_text())
    assert again["summary"] == first["summary"]

    # One more seed: only its runs are done.
    assert main([*argv, "--seeds", "3"]) == 0  # the last --seeds wins
    assert sorted(calls) == [("disarm", 2), ("exact", 2)]

    # --restart starts afresh.
    calls.clear()
    capsys.readouterr()
    assert main([*argv, "--restart"]) == 0
    text = capsys.readouterr().out
    assert len(calls) == 4 and "--restart: removed" in text and "resumed from" not in text

    # Other settings: refuse to mix runs, in one line naming the difference.
    assert main([*argv, "--probe-every", "5"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    assert "other settings" in err and "probe_every: 10 saved, 5 now" in err


def test_interrupted_run_resumes_to_the_same_numbers(tmp_path, capsys,
                                                     interrupt_after_checkpoint):  # fmt: skip
    ref = tmp_path / "ref"
    assert main([*FAST, "--out", str(ref)]) == 0
    out = tmp_path / "run"
    interrupt_after_checkpoint(out)
    assert main([*FAST, "--out", str(out)]) == 130
    captured = capsys.readouterr()
    assert "interrupted" in captured.out + captured.err
    assert (out / "relax_toy_checkpoint.pt").exists() and not (out / "relax_toy.json").exists()
    assert main([*FAST, "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert _says(text, f"resumed from {out / 'relax_toy_checkpoint.pt'} (1 of 4 runs finished)")
    a = json.loads((ref / "relax_toy.json").read_text())
    b = json.loads((out / "relax_toy.json").read_text())
    assert a["summary"] == b["summary"]
    assert _runs_without_timing(a) == _runs_without_timing(b)


def test_unavailable_estimators_are_skipped_with_a_message(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(SD, "RELAXED_MODULE", "stochgrad.estimators.no_such_module")
    out = tmp_path / "s"
    argv = [*TINY, "--estimators", "reinforce,rebar,relax", "--out", str(out)]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "skipping REBAR" in text and "skipping RELAX" in text
    assert "no_such_module" in text
    results = json.loads((out / "relax_toy.json").read_text())
    assert [r["key"] for r in results["summary"]] == ["reinforce"]
    assert set(results["skipped"]) == {"rebar", "relax"}
    # nothing that can run: one error line
    assert main([*TINY, "--estimators", "rebar,relax", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: no estimator can run") and "\n" not in err


@pytest.mark.parametrize(
    ("options", "says"),
    [
        (["--estimators", "exact,nope"], "nope"),
        (["--iterations", "0"], "--iterations"),
        (["--seeds", ""], "--seeds"),
        (["--seeds", "0"], "--seeds"),
        (["--warmup", "-1"], "--warmup"),
        (["--probe-samples", "many"], "--probe-samples"),
    ],
    ids=["unknown-estimator", "zero-iterations", "empty-seeds", "zero-seeds", "negative-warmup",
         "text-for-a-number"],
)  # fmt: skip
def test_careless_input_is_one_error_line(options, says, tmp_path, capsys):
    out = tmp_path / "never"
    assert main(["relax-toy", *options, "--out", str(out)]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and says in err[0]
    assert "Traceback" not in captured.err + captured.out
    assert not out.exists()


def test_unwritable_out_fails_at_once_before_any_run(tmp_path, capsys, monkeypatch):
    def no_work(*args, **kwargs):
        raise AssertionError("the study ran")

    monkeypatch.setattr(SD, "run_study", no_work)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for bad in (blocker / "sub", "/proc/stochgrad-test"):
        start = time.perf_counter()
        assert main([*FAST, "--out", str(bad)]) == 2
        assert time.perf_counter() - start < 5
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"error: --out {bad}")


def test_table_fits_100_columns_at_its_widest():
    """Widest numbers of a 10-seed study: the table's natural width stays within 100."""
    rows = [
        SD.SummaryRow(key, SD.TOY_ESTIMATORS[key].label, 2, 3, 0.4963, 0.1739, 0.2499933,
                      4_999.0, 10, -17.73, 2.36e-05, 1.6e-05, False)
        for key in SD.TOY_ESTIMATORS
    ]  # fmt: skip
    study = SimpleNamespace(config=SD.Config(), seeds=list(range(10)))
    console = Console(width=200, record=True)
    console.print(command._table(study, rows))
    console.print(command._legend(list(SD.TOY_ESTIMATORS)))
    lines = console.export_text().splitlines()
    assert widest_line("\n".join(lines)) <= 100
    assert any("4,999 (10/10)" in line for line in lines)  # not squeezed


def test_help_shows_every_default(capsys):
    with pytest.raises(SystemExit):
        main(["relax-toy", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for default in ("(default: 5000)", "(default: 10)", "(default: stochgrad-out/relax-toy)",
                    "(default: exact,reinforce,rloo,rebar,relax,gumbel,disarm)"):  # fmt: skip
        assert default in text
    assert "--resume" not in text and "--restart" in text
