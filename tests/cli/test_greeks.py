"""``stochgrad greeks``: table, files in --out, resume by chunk, --restart, one-line errors."""

from __future__ import annotations

import json
import time

import pytest
from rich.console import Console

from stochgrad.cli import greeks as command
from stochgrad.cli import main
from stochgrad.studies import greeks as study_module
from stochgrad.studies.greeks import GreeksConfig, greeks_study
from tests.helpers import widest_line

pytestmark = pytest.mark.usefixtures("one_thread")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PUT = ["greeks", "--payoff", "put", "--paths", "3000", "--chunk", "1000"]


def _says(text: str, expected: str) -> bool:
    """Whether console ``text`` holds ``expected``, however the console wrapped its lines."""
    return "".join(expected.split()) in "".join(text.split())


def _estimates(folder) -> list:
    return json.loads((folder / "greeks.json").read_text())["estimates"]


def test_prints_table_and_writes_plot_and_json(tmp_path, capsys):
    pytest.importorskip("QuantLib")
    out = tmp_path / "g"
    argv = ["greeks", "--payoff", "digital", "--paths", "20000", "--chunk", "8000"]
    assert main([*argv, "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "QuantLib" in text and "refused" in text and "95% CI" in text
    assert _says(text, str(out / "greeks.json")) and _says(text, str(out / "greeks.png"))
    assert (out / "greeks.png").read_bytes().startswith(PNG_MAGIC)
    data = json.loads((out / "greeks.json").read_text())
    assert data["config"]["payoff"] == "digital" and data["num_paths"] == 20_000
    assert data["quantlib"]["delta"] == pytest.approx(0.0187620, rel=1e-5)
    for e in data["estimates"]:
        assert abs(e["z"]) < 4.0, e
    assert "pathwise" in data["refused"]["delta"]


def test_rerun_resumes_and_restart_starts_afresh(tmp_path, capsys):
    out = tmp_path / "p"
    argv = [*PUT, "--out", str(out)]
    assert main(argv) == 0
    first = _estimates(out)
    assert "resumed from" not in capsys.readouterr().out
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert _says(text, f"resumed from {out / 'greeks_checkpoint.pt'} (3,000 of 3,000 paths)")
    assert _estimates(out) == first
    assert main([*argv, "--restart"]) == 0
    text = capsys.readouterr().out
    assert "--restart: removed" in text and "resumed from" not in text
    assert _estimates(out) == first
    # other settings: refused in one line naming the difference
    assert main([*PUT, "--paths", "4000", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    assert "other settings" in err and "paths: 3000 saved, 4000 now" in err and "--restart" in err


def test_interrupted_run_resumes_to_the_same_numbers(tmp_path, capsys, interrupt_after_checkpoint):
    ref = tmp_path / "ref"
    assert main([*PUT, "--out", str(ref)]) == 0
    out = tmp_path / "run"
    interrupt_after_checkpoint(out)
    assert main([*PUT, "--out", str(out)]) == 130
    captured = capsys.readouterr()
    assert "interrupted" in captured.out + captured.err
    assert (out / "greeks_checkpoint.pt").exists() and not (out / "greeks.json").exists()
    assert main([*PUT, "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert _says(text, f"resumed from {out / 'greeks_checkpoint.pt'} (1,000 of 3,000 paths)")
    assert _estimates(out) == _estimates(ref)


def test_dividend_reaches_the_estimates_and_quantlib(tmp_path, capsys):
    pytest.importorskip("QuantLib")
    out = tmp_path / "q"
    argv = ["greeks", "--payoff", "call", "--dividend", "0.04", "--paths", "20000"]
    assert main([*argv, "--out", str(out)]) == 0
    assert "q=0.04" in capsys.readouterr().out
    data = json.loads((out / "greeks.json").read_text())
    assert data["config"]["dividend"] == 0.04 and data["market"]["dividend"] == 0.04
    assert data["quantlib"]["delta"] == pytest.approx(0.537675, abs=1e-5)  # e^{-qT} N(d1)
    for e in data["estimates"]:
        assert abs(e["z"]) < 4.0, e


def test_heston_and_a_barrier_below_the_strike(tmp_path, capsys):
    out = tmp_path / "h"
    assert main(["greeks", "--model", "heston", "--paths", "2000", "--steps", "8",
                 "--out", str(out)]) == 0  # fmt: skip
    assert "Heston" in capsys.readouterr().out
    argv = ["greeks", "--payoff", "barrier", "--barrier", "90", "--paths", "10"]
    assert main([*argv, "--out", str(out)]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "barrier must exceed strike" in err[0]


@pytest.mark.parametrize(
    ("options", "says"),
    [
        (["--paths", "0"], "--paths"),
        (["--paths", "many"], "--paths"),
        (["--vol", "-0.2"], "--vol"),
        (["--maturity", "-1"], "--maturity"),
        (["--maturity", "0"], "--maturity"),
        (["--strike", "-5"], "--strike"),
        (["--payoff", "lookback"], "--payoff"),
        (["--model", "heston", "--rho", "1.5"], "rho"),
        (["--rate", "nan"], "rate"),
        (["--dividend", "inf"], "dividend"),
        (["--seed", "-1"], "seed"),
        (["--model", "heston", "--payoff", "barrier"], "barrier"),
    ],
    ids=["zero-paths", "text-paths", "negative-vol", "negative-maturity", "zero-maturity",
         "negative-strike", "unknown-payoff", "rho-out-of-range", "nan-rate", "inf-dividend",
         "negative-seed",
         "barrier-under-heston"],
)  # fmt: skip
def test_careless_input_is_one_error_line(options, says, tmp_path, capsys):
    out = tmp_path / "never"
    assert main(["greeks", *options, "--out", str(out)]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and says in err[0]
    assert "Traceback" not in captured.err + captured.out
    assert not out.exists()


def test_unwritable_out_fails_at_once_before_any_work(tmp_path, capsys, monkeypatch):
    def no_work(*args, **kwargs):
        raise AssertionError("the study ran")

    monkeypatch.setattr(study_module, "greeks_study", no_work)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for bad in (blocker / "sub", "/proc/stochgrad-test"):
        start = time.perf_counter()
        assert main([*PUT, "--out", str(bad)]) == 2
        assert time.perf_counter() - start < 5
        captured = capsys.readouterr()
        err = captured.err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"error: --out {bad}")
        assert "Traceback" not in captured.err


@pytest.mark.parametrize("payoff", ["digital", "barrier"])
def test_table_fits_100_columns(payoff):
    """Small negative gammas and long intervals: the table's natural width stays within 100."""
    study = greeks_study(GreeksConfig(payoff=payoff, paths=4000, chunk=4000, seed=3))
    console = Console(width=300, record=True)
    console.print(command._table(study))
    lines = console.export_text().splitlines()
    assert widest_line("\n".join(lines)) <= 100
    assert sum(line.startswith("│") for line in lines) == len(study.result.estimates)


def test_help_shows_the_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["greeks", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for shown in ("(default: 1000000)", "random seed (default: 0)", "(default: call)", "(default: stochgrad-out/greeks)",
                  "asian 12, barrier 1 with the bridge and 250 discrete, heston 100"):  # fmt: skip
        assert shown in text
