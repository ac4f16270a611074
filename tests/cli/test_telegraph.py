"""``stochgrad telegraph fit|simulate|recover``: files in --out, resume, careless inputs, Ctrl-C."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from stochgrad.apps import telegraph as T
from stochgrad.cli import main
from tests.helpers import one_error_line, widest_line

pytestmark = pytest.mark.usefixtures("one_thread")

RECOVER = ["telegraph", "recover", "--grid", "2", "--cells", "150", "--replicates", "1",
           "--k-syn", "20", "--method", "exact", "--backend", "serial"]  # fmt: skip


def _write_counts(path: Path, x: torch.Tensor, names: list[str] | None = None) -> Path:
    names = names or [f"gene{i}" for i in range(x.shape[0])]
    rows = ["gene," + ",".join(f"cell{j}" for j in range(x.shape[1]))]
    rows += [f"{n}," + ",".join(map(str, r)) for n, r in zip(names, x.tolist(), strict=True)]
    path.write_text("\n".join(rows) + "\n")
    return path


# ------------------------------------------------------------------------------------- fit
def test_simulate_then_fit_writes_the_kinetics_table(tmp_path, capsys) -> None:
    sim = tmp_path / "sim"
    argv = ["--genes", "3", "--cells", "40", "--seed", "1", "--method", "exact"]
    assert main(["telegraph", "simulate", *argv, "--out", str(sim)]) == 0
    kin, x = T.simulate_table(3, 40, 1, method="exact")  # the command's numbers
    counts, names, _ = T.read_counts(sim / "counts.csv")
    assert np.array_equal(counts, x.numpy()) and names == ["gene0", "gene1", "gene2"]
    truth = list(csv.DictReader(open(sim / "counts_kinetics.csv")))
    assert float(truth[2]["k_syn"]) == pytest.approx(float(kin[2, 2]), rel=1e-5)
    fit = tmp_path / "fit"
    argv = ["telegraph", "fit", str(sim / "counts.csv"), "--out", str(fit)]
    assert main([*argv, "--backend", "serial", "--no-ci"]) == 0
    text = capsys.readouterr().out
    assert str(fit / "kinetics.csv") in text and "Identifiability of the 3 fitted genes" in text
    rows = list(csv.DictReader(open(fit / "kinetics.csv")))
    assert [r["gene"] for r in rows] == ["gene0", "gene1", "gene2"]
    assert {"k_on", "burst_size", "bs_high", "non_identifiable"} <= set(rows[0])
    assert {"bf_structural", "bf_practical", "bs_structural", "bs_practical"} <= set(rows[0])
    assert {"bf_ci_ratio", "bs_ci_ratio"} <= set(rows[0])
    assert rows[0]["bf_practical"] in ("True", "False")
    fits = T.fit_counts(x, ci=False)
    assert [float(r["k_on"]) for r in rows] == pytest.approx(fits.k_on.tolist(), rel=1e-5)


def test_fit_escapes_cells_a_spreadsheet_would_run(tmp_path, capsys) -> None:
    _, x = T.simulate_table(2, 30, 0, method="exact")
    counts = _write_counts(tmp_path / "c.csv", x, ["=HYPERLINK(1)", "@sum"])
    assert main(["telegraph", "fit", str(counts), "--out", str(tmp_path / "o"),
                 "--backend", "serial", "--no-ci"]) == 0  # fmt: skip
    genes = [r["gene"] for r in csv.DictReader(open(tmp_path / "o" / "kinetics.csv"))]
    assert genes == ["'=HYPERLINK(1)", "'@sum"]


def test_interrupted_fit_resumes_to_the_same_numbers(
    tmp_path, capsys, interrupt_after_checkpoint
) -> None:
    _, x = T.simulate_table(6, 150, 2, method="exact")
    counts = _write_counts(tmp_path / "c.csv", x)
    argv = ["telegraph", "fit", str(counts), "--backend", "serial", "--chunk-size", "2", "--no-ci"]
    ref, out = tmp_path / "ref", tmp_path / "run"
    assert main([*argv, "--out", str(ref)]) == 0
    capsys.readouterr()
    interrupt_after_checkpoint(out)
    assert main([*argv, "--out", str(out)]) == 130
    captured = capsys.readouterr()
    assert "finished work is kept in" in captured.out and "interrupted" in captured.err
    assert not (out / "kinetics.csv").exists() and (out / "fit_checkpoint.pt").exists()
    assert main([*argv, "--out", str(out)]) == 0
    text = " ".join(capsys.readouterr().out.split())  # rich wraps lines at 100 columns
    assert f"resumed from {out / 'fit_checkpoint.pt'} (1 of 3 chunks of genes finished)" in text
    assert (out / "kinetics.csv").read_text() == (ref / "kinetics.csv").read_text()
    assert main([*argv, "--out", str(out), "--restart"]) == 0
    text = capsys.readouterr().out
    assert "resumed from" not in text and "--restart: removed" in text
    # a checkpoint of other settings is refused, naming what differs
    assert main([*argv, "--out", str(out), "--max-iter", "30"]) == 2
    assert "max_iter: 60 saved, 30 now" in one_error_line(capsys)


def test_unwritable_out_fails_at_once_before_reading_or_fitting(
    tmp_path, capsys, monkeypatch
) -> None:
    def forbidden(*args, **kwargs):
        raise AssertionError("work started before --out was checked")

    monkeypatch.setattr(T, "read_counts", forbidden)
    monkeypatch.setattr(T, "fit_counts", forbidden)
    monkeypatch.setattr(T, "simulate_table", forbidden)
    monkeypatch.setattr("stochgrad.studies.telegraph_recovery.telegraph_recovery_study", forbidden)
    counts = _write_counts(tmp_path / "c.csv", torch.ones(2, 3, dtype=torch.long))
    blocker = tmp_path / "file"
    blocker.write_text("x")
    jobs = [["fit", str(counts)], ["simulate", "--genes", "2", "--cells", "5"], RECOVER[1:]]
    for job in jobs:
        for bad in (blocker / "sub", blocker, "/proc/stochgrad-test"):
            start = time.perf_counter()
            assert main(["telegraph", *job, "--out", str(bad)]) == 2
            assert time.perf_counter() - start < 5
            assert one_error_line(capsys).startswith(f"error: --out {bad}")


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (None, r"counts table .*missing\.csv: no such file"),
        ("", "empty counts table"),
        ("gene,c1,c2\nA,1,2\nB,3,many\n", "line 3, column 3: 'many' is not a number"),
        ("gene,c1,c2\nA,1,2\nB,3,-4\n", "counts must be non-negative integers, got -4"),
        ("gene,c1\nA,1\nB,3\n", "at least 2 cells"),
    ],
    ids=["missing", "empty", "text", "negative", "one-cell"],
)
def test_careless_counts_table_is_one_error_line(tmp_path, capsys, content, match) -> None:
    path = tmp_path / "missing.csv"
    if content is not None:
        path.write_text(content)
    assert main(["telegraph", "fit", str(path), "--out", str(tmp_path / "o")]) == 2
    line = one_error_line(capsys)
    assert re.search(match, line), line
    assert not (tmp_path / "o" / "kinetics.csv").exists()


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["simulate", "--genes", "0"], "argument --genes: expected a positive integer, got '0'"),
        (["simulate", "--cells", "0"], "argument --cells: expected a positive integer, got '0'"),
        (["simulate", "--genes", "many"], "argument --genes: expected a positive integer"),
        (["simulate", "--kinetics", "nowhere.csv"], "--kinetics nowhere.csv: no such file"),
        (["recover", "--grid", "1"], "--grid must be at least 2, got 1"),
        (["recover", "--replicates", "0"], "argument --replicates: expected a positive integer"),
        (["recover", "--k-syn", "-3"], "k_syn must be > 0"),
        (["fit", "c.csv", "--max-ci-ratio", "1"], "--max-ci-ratio: expected a finite number > 1"),
        (["fit", "c.csv", "--chunk-size", "0"], "argument --chunk-size: expected a positive"),
        (["fit", "c.csv", "--workers", "0"], "argument --workers: expected a positive integer"),
        (["fit", "c.csv", "--backend", "threads"], "argument --backend: invalid choice"),
    ],
)
def test_careless_options_are_one_error_line(tmp_path, capsys, argv, match) -> None:
    assert main(["telegraph", *argv, "--out", str(tmp_path)]) == 2
    assert match in one_error_line(capsys)


def test_simulate_from_a_kinetics_table(tmp_path, capsys) -> None:
    kin = tmp_path / "k.csv"
    kin.write_text("gene,k_on,k_off,k_syn\nA,0.3,2.7,33.3\nB,2,1,10\n")
    assert main(["telegraph", "simulate", "--kinetics", str(kin), "--cells", "20", "--seed", "4",
                 "--method", "exact", "--out", str(tmp_path / "o")]) == 0  # fmt: skip
    rates = torch.tensor([[0.3, 2.7, 33.3], [2.0, 1.0, 10.0]], dtype=torch.float64)
    x = T.simulate(*rates.T, 20, generator=torch.Generator().manual_seed(4), method="exact")
    assert np.array_equal(T.read_counts(tmp_path / "o" / "counts.csv")[0], x.numpy())
    kin.write_text("gene,k_on,k_off\nA,1,2\n")
    assert main(["telegraph", "simulate", "--kinetics", str(kin), "--out", str(tmp_path)]) == 2
    assert "needs columns k_on, k_off, k_syn" in one_error_line(capsys)


# ---------------------------------------------------------------------------------- recover
def test_recover_tiny_writes_tables_json_markdown_and_plot(tmp_path, capsys) -> None:
    assert main([*RECOVER, "--out", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "burst frequency: median |rel. error| %" in text
    assert widest_line(text) <= 100
    assert (tmp_path / "recovery.png").exists() and (tmp_path / "recovery.md").exists()
    res = json.loads((tmp_path / "recovery.json").read_text())
    assert res["replicates"] == 1 and len(res["bf_ratio"]) == 2
    for key in ("bf_structural", "bs_practical", "bf_error_ident", "expressing"):
        assert len(res[key]) == 2 and len(res[key][0]) == 2
    for v in (v for row in res["bf_ratio"] + res["bs_ratio"] for v in row):
        assert v == "inf" or 1.0 <= v < 1e300  # an unbounded interval stays infinite
    md = (tmp_path / "recovery.md").read_text()
    assert "interval ratio" in md and "identifiable replicates" in md


def test_interrupted_recover_resumes_to_the_same_numbers(
    tmp_path, capsys, interrupt_after_checkpoint
) -> None:
    out = tmp_path / "run"
    interrupt_after_checkpoint(out)
    assert main([*RECOVER, "--out", str(out)]) == 130
    assert not (out / "recovery.json").exists()
    capsys.readouterr()
    assert main([*RECOVER, "--out", str(out)]) == 0
    text = " ".join(capsys.readouterr().out.split())  # rich wraps lines at 100 columns
    assert f"resumed from {out / 'recover_checkpoint.pt'} (1 of 4 grid cells finished)" in text

    def numbers() -> dict:
        data = json.loads((out / "recovery.json").read_text())
        data.pop("seconds")
        return data

    resumed = numbers()
    assert main([*RECOVER, "--out", str(out), "--restart"]) == 0  # an uninterrupted run
    text = capsys.readouterr().out
    assert "resumed from" not in text and "--restart: removed" in text
    assert numbers() == resumed


# ----------------------------------------------------------------------------------- Ctrl-C
def _children(pid: int) -> list[str]:
    """Child processes of ``pid`` (the workers and multiprocessing's resource tracker)."""
    try:
        return Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []


@pytest.mark.slow
def test_ctrl_c_stops_a_parallel_fit_within_seconds_and_keeps_its_chunks(tmp_path) -> None:
    # chunk 0 (two genes with small counts) finishes first; the chunks of large-count genes
    # (k_syn = 3000, several seconds each) are running when SIGINT arrives: the workers must be
    # stopped, not waited for
    g = torch.Generator().manual_seed(0)
    small = T.sample_stationary(torch.tensor([1.0, 1.0]), 1.0, 3.0, 300, generator=g)
    large = T.sample_stationary(
        torch.full((4,), 0.3), torch.tensor([3.0, 3.3, 3.6, 3.9]), 3000.0, 300, generator=g
    )
    counts = _write_counts(tmp_path / "c.csv", torch.cat((small, large)))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "stochgrad.cli", "telegraph", "fit", str(counts), "--out",
           str(out), "--workers", "2", "--chunk-size", "2"]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}

    def start(new_session: bool = False) -> tuple[subprocess.Popen, list[str]]:
        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            start_new_session=new_session,
            # as from a terminal: a test run started in the background inherits SIGINT ignored
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        lines: list[str] = []

        def read() -> None:
            for line in proc.stdout:
                lines.append(line)

        threading.Thread(target=read, daemon=True).start()
        return proc, lines

    def wait_for(condition, proc: subprocess.Popen, what: str, limit: float = 120.0) -> None:
        deadline = time.monotonic() + limit
        while not condition():
            assert proc.poll() is None, f"the fit ended before {what}"
            assert time.monotonic() < deadline, f"no {what} within {limit} s"
            time.sleep(0.05)

    def interrupt(proc: subprocess.Popen, group: bool = False) -> float:
        sent = time.monotonic()
        if group:  # as Ctrl-C in a terminal: the driver and its workers
            os.killpg(proc.pid, signal.SIGINT)
        else:  # the driver alone: its workers must not make it wait
            proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        finally:
            proc.kill()
        assert proc.returncode == 130
        return time.monotonic() - sent

    proc, lines = start()
    ckpt = out / "fit_checkpoint.pt"
    wait_for(ckpt.exists, proc, "first checkpoint")
    assert interrupt(proc) < 3.0
    assert not (out / "kinetics.csv").exists()
    proc, lines = start(new_session=True)
    wait_for(lambda: "finished)" in "".join(lines), proc, "'resumed from'")
    # the workers ignore SIGINT from their start; the driver ignores it only while it spawns them
    # (about 10 ms): signal the group once they are there, as a person's Ctrl-C would
    wait_for(lambda: len(_children(proc.pid)) >= 3, proc, "two workers")
    text = " ".join("".join(lines).split())  # rich wraps lines at 100 columns
    assert f"resumed from {ckpt} (1 of 3 chunks of genes finished)" in text
    assert interrupt(proc, group=True) < 3.0
    time.sleep(0.2)  # the reader thread takes the last lines
    text = "".join(lines)
    assert "Traceback" not in text and "SpawnProcess" not in text, text  # workers kept quiet
