"""``stochgrad discrete-vae``: table, files, resume by default (mid-run too), one-line errors."""

from __future__ import annotations

import json
import time
from types import SimpleNamespace

import pytest
from rich.console import Console

from stochgrad.apps.discrete_vae import VAE_ESTIMATORS, Config
from stochgrad.cli import discrete_vae as command
from stochgrad.cli import main
from stochgrad.studies import discrete_vae as S
from tests.helpers import widest_line

pytestmark = pytest.mark.usefixtures("one_thread")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ARGS = ["discrete-vae", "--steps", "20", "--seeds", "1", "--samples", "6", "--latents", "8",
        "--hidden", "16", "--eval-every", "5", "--probe-every", "10", "--probe-calls", "3",
        "--checkpoint-every", "10", "--iwae-k", "10"]  # fmt: skip
TWO = [*ARGS, "--estimators", "reinforce,rebar"]
CKPT = "discrete_vae_checkpoint.pt"


def _says(text: str, expected: str) -> bool:
    """Whether console ``text`` holds ``expected``, however the console wrapped its lines."""
    return "".join(expected.split()) in "".join(text.split())


def _numbers(results: dict) -> list[dict]:
    """Every run's record without its wall times."""
    return [{k: v for k, v in r.items() if "seconds" not in k} for r in results["runs"]]


def test_tiny_run_writes_table_json_png_and_markdown_and_resumes(tmp_path, capsys):
    out = tmp_path / "plots"
    assert main([*ARGS, "--out", str(out)]) == 0
    text = capsys.readouterr().out
    for label in ("SF", "RLOO", "DisARM", "REBAR", "GS*", "legend: SF = REINFORCE",
                  "GS* = Gumbel-softmax (biased)", "test ELBO", "IWAE k=10", "log10 Var",
                  "paired by seed"):  # fmt: skip
        assert label in text
    data = (out / "discrete_vae.png").read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 10_000
    results = json.loads((out / "discrete_vae.json").read_text())
    assert [r["key"] for r in results["summary"]] == list(VAE_ESTIMATORS)
    assert results["config"]["steps"] == 20 and len(results["runs"]) == 5
    for r in results["runs"]:
        assert r["eval_steps"] == [0, 5, 10, 15, 20] and r["probe_steps"] == [0, 10, 20]
        assert r["final_iwae"] >= r["final_elbo"] - 1.0
    md = (out / "discrete_vae_table.md").read_text()
    assert md.startswith("| estimator |") and "| DisARM |" in md and "k=10" in md
    assert (out / CKPT).exists()
    for name in ("discrete_vae.json", "discrete_vae_table.md", "discrete_vae.png"):
        assert _says(text, str(out / name))  # the paths written are printed

    # rerun: every finished run is loaded, none is redone
    assert main([*ARGS, "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert _says(text, f"resumed from {out / CKPT} (5 of 5 runs finished)")
    again = json.loads((out / "discrete_vae.json").read_text())
    assert again["runs"] == results["runs"]

    # --restart: afresh, same numbers (the runs are seeded)
    assert main([*ARGS, "--out", str(out), "--restart"]) == 0
    text = capsys.readouterr().out
    assert "--restart: removed" in text and "resumed from" not in text
    assert _numbers(json.loads((out / "discrete_vae.json").read_text())) == _numbers(results)


def test_interrupted_mid_run_resumes_to_the_same_numbers(tmp_path, capsys,
                                                         interrupt_after_checkpoint):  # fmt: skip
    ref = tmp_path / "ref"
    assert main([*TWO, "--out", str(ref)]) == 0
    out = tmp_path / "run"
    interrupt_after_checkpoint(out)  # the first checkpoint: REINFORCE's state at step 10
    assert main([*TWO, "--out", str(out)]) == 130
    captured = capsys.readouterr()
    assert "interrupted" in captured.out + captured.err
    assert (out / CKPT).exists() and not (out / "discrete_vae.json").exists()
    ckpt = S.Checkpoint(out / CKPT, Config(**json.loads((ref / "discrete_vae.json").read_text())[
        "config"]))  # fmt: skip
    assert ckpt.load() == 0 and int(ckpt.partial[("reinforce", 0)]["step"]) == 10
    assert main([*TWO, "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert _says(
        text, f"resumed from {out / CKPT} (0 of 2 runs finished, 1 continued from a mid-run state)"
    )
    a = json.loads((ref / "discrete_vae.json").read_text())
    b = json.loads((out / "discrete_vae.json").read_text())
    assert _numbers(a) == _numbers(b)


def test_other_settings_are_refused_naming_the_difference(tmp_path, capsys):
    argv = [*ARGS, "--estimators", "disarm"]
    assert main([*argv, "--out", str(tmp_path)]) == 0
    capsys.readouterr()
    assert main([*argv, "--lr", "0.01", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    assert "lr: 0.002 saved, 0.01 now" in err


@pytest.mark.parametrize(
    ("options", "says"),
    [
        (["--estimators", "reinforce,bogus"], "bogus"),
        (["--steps", "0"], "--steps"),
        (["--samples", "4"], "divisible by 3"),
        (["--samples", "3", "--estimators", "disarm"], "divisible by 2"),
        (["--seeds", ""], "--seeds"),
        (["--probe-calls", "1"], "probe_calls"),
        (["--hidden", "-1"], "--hidden"),
        (["--lr", "0"], "--lr"),
    ],
    ids=["unknown-estimator", "zero-steps", "samples-not-divisible-by-3",
         "samples-not-divisible-by-2", "empty-seeds", "one-probe-call", "negative-hidden",
         "zero-lr"],
)  # fmt: skip
def test_careless_input_is_one_error_line(options, says, tmp_path, capsys):
    out = tmp_path / "never"
    assert main(["discrete-vae", *options, "--out", str(out)]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and says in err[0]
    assert "Traceback" not in captured.err + captured.out
    assert not out.exists()  # refused before anything was created


def test_unwritable_out_fails_at_once_before_any_training(tmp_path, capsys, monkeypatch):
    def no_work(*args, **kwargs):
        raise AssertionError("the study ran")

    monkeypatch.setattr(S, "run_study", no_work)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for bad in (blocker / "sub", "/proc/stochgrad-test"):
        start = time.perf_counter()
        assert main([*ARGS, "--out", str(bad)]) == 2
        assert time.perf_counter() - start < 5
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"error: --out {bad}")


def test_table_fits_100_columns_at_its_widest():
    rows = [
        S.SummaryRow(key, spec.label, 12, 12, -119.53, 10.08, -118.41, 10.05, -14.4, 122.2,
                     1125.4, spec.biased)
        for key, spec in VAE_ESTIMATORS.items()
    ]  # fmt: skip
    study = SimpleNamespace(config=Config(iwae_k=1000), seeds=[0, 1, 2])
    console = Console(width=200, record=True)
    console.print(command._table(study, rows))
    console.print(command._legend(list(VAE_ESTIMATORS)))
    lines = console.export_text().splitlines()
    assert widest_line("\n".join(lines)) <= 100
    assert any("-119.53 ± 10.08" in line for line in lines)  # not squeezed


def test_help_shows_every_default(capsys):
    with pytest.raises(SystemExit):
        main(["discrete-vae", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for default in ("(default: 3000)", "(default: 12)", "(default: 500)",
                    "(default: stochgrad-out/discrete-vae)",
                    "(default: reinforce,rloo,disarm,rebar,gumbel)"):  # fmt: skip
        assert default in text
    assert "--resume" not in text and "--restart" in text
