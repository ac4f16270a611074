"""Tests of ``stochgrad molecules pretrain|sample|optimize``: outputs, careless inputs (one line
``error: ...``, exit status 2), planted files, interrupt and resume, help."""

from __future__ import annotations

import csv
import json
import pickle
import time

import numpy as np
import pytest
import torch

pytest.importorskip("rdkit")

from stochgrad.apps.molecules.data import Vocabulary  # noqa: E402
from stochgrad.apps.molecules.model import GRUConfig, SmilesGRU, save_model  # noqa: E402
from stochgrad.checkpoint import load_state  # noqa: E402
from stochgrad.cli import main  # noqa: E402
from tests.helpers import one_error_line, widest_line

pytestmark = pytest.mark.usefixtures("one_thread")

TINY_PRETRAIN = ["--corpus", "nci", "--smiles", "64", "--hidden", "16", "--layers", "1"]
TINY_PRETRAIN += ["--embedding", "8", "--batch-size", "16", "--epochs", "3", "--lr", "1e-2"]
TINY_PRETRAIN += ["--lr-final", "1e-3", "--checkpoint-every", "4", "--device", "cpu"]
SMALL_OPTIMIZE = ["--objective", "qed", "--budget", "1000", "--batch-size", "8", "--replay", "3"]
SMALL_OPTIMIZE += ["--max-steps", "6", "--checkpoint-every", "2", "--patience", "0"]


@pytest.fixture(scope="module")
def cno_model(tmp_path_factory):
    """A tiny untrained model over C, N and O: its chains are valid SMILES, so the oracle and
    the replay memory of a short run have work to do."""
    path = tmp_path_factory.mktemp("model") / "cno.pt"
    torch.manual_seed(0)
    voc = Vocabulary.from_smiles(["CCO", "CN"])
    model = SmilesGRU(voc, GRUConfig(embedding=8, hidden=16, layers=1, max_length=12))
    save_model(model, path, data={"corpus": "nci", "n": 50, "seed": 0})
    return path


class _Payload:
    """Unpickling this would create ``path``: a harmless stand-in for a planted file's code."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _fits(text: str) -> None:
    assert widest_line(text) <= 100, text


# ----------------------------------------------------------------------------- the three jobs
def test_pretrain_sample_optimize(tmp_path, capsys):
    out = tmp_path / "m"
    assert main(["molecules", "pretrain", *TINY_PRETRAIN, "--out", out]) == 0
    settings = load_state(out / "prior.pt")["settings"]["pretrain"]
    assert (settings["epochs"], settings["lr"], settings["lr_final"]) == (3, 1e-2, 1e-3)
    for name in ("prior_weights.pt", "pretrain_loss.png"):
        assert (out / name).exists()
    _fits(capsys.readouterr().out)
    model = out / "prior_weights.pt"
    argv = ["molecules", "sample", "--model", model, "--n", "40", "--threads", "1"]
    assert main([*argv, "--out", out / "s"]) == 0
    _fits(capsys.readouterr().out)
    metrics = json.loads((out / "s" / "sample_metrics.json").read_text())
    assert 0.0 <= metrics["validity"] <= 1.0 and metrics["n"] == 40
    assert metrics["train"] == {"corpus": "nci", "n": 64, "seed": 0}
    assert len((out / "s" / "samples.smi").read_text().splitlines()) == 40
    args = ["molecules", "optimize", "--model", model, "--objective", "similarity"]
    args += ["--budget", "20", "--batch-size", "8", "--replay", "2", "--max-steps", "4"]
    assert main([*args, "--out", out / "o"]) == 0
    _fits(capsys.readouterr().out)
    summary = json.loads((out / "o" / "summary.json").read_text())
    assert summary["calls"] <= 20 and summary["steps"] <= 4
    assert summary["advantage"] is None  # REINVENT has no advantage rule
    assert [d["step"] for d in summary["gradient_diagnostics"]] == [0]  # every 20 steps
    assert summary["gradient_diagnostics"][0]["variance"] > 0
    # REINFORCE with GRPO's advantage in groups of 4, its gradient diagnosed every 2 steps
    rf = ["molecules", "optimize", "--model", model, "--method", "reinforce", "--budget", "20"]
    rf += ["--batch-size", "8", "--replay", "4", "--max-steps", "3", "--patience", "0"]
    rf += ["--advantage", "grpo", "--group-size", "4", "--diagnose-every", "2"]
    assert main([*rf, "--out", out / "r"]) == 0
    _fits(capsys.readouterr().out)
    summary = json.loads((out / "r" / "summary.json").read_text())
    assert (summary["advantage"], summary["group_size"], summary["steps"]) == ("grpo", 4, 3)
    assert summary["config"]["config"]["advantage"] == "grpo"
    assert [d["step"] for d in summary["gradient_diagnostics"]] == [0, 2]
    with open(out / "o" / "top.csv") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["rank", "smiles", "score", "qed", "penalized_logp", "similarity"]
    for f in ("curve.png", "agent.pt"):
        assert (out / "o" / f).exists()
    assert (out / "o" / "best.png").exists() == (len(rows) > 1)
    # a weighted sum of scores; its top molecule's score is the weighted sum of its parts
    weighted = ["molecules", "optimize", "--model", model, "--objective", "sum"]
    weighted += ["--weights", "qed=0.25,similarity=0.75", "--budget", "20", "--batch-size", "8"]
    weighted += ["--replay", "2", "--max-steps", "3", "--out", out / "w"]
    assert main(weighted) == 0
    with open(out / "w" / "top.csv") as fh:
        best = next(csv.DictReader(fh))
    expected = 0.25 * float(best["qed"]) + 0.75 * float(best["similarity"])
    assert float(best["score"]) == pytest.approx(expected, abs=1e-4)
    capsys.readouterr()
    sum_alone = ["molecules", "optimize", "--model", model, "--objective", "sum"]
    assert main([*sum_alone, "--out", tmp_path / "x"]) == 2
    assert "--weights" in one_error_line(capsys)
    assert main([*weighted[:5], "--weights", "qed:0.5"]) == 2
    one_error_line(capsys)


# ----------------------------------------------------------------------------- careless inputs
def _bad_model(folder, kind):
    path = folder / f"{kind.replace(' ', '_')}.pt"
    if kind == "missing":
        return path
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        good = folder / "good.pt"
        save_model(SmilesGRU(Vocabulary.from_smiles(["CCO"]), GRUConfig(8, 16, 1)), good)
        path.write_bytes(good.read_bytes()[:300])
    elif kind == "random bytes":
        path.write_bytes(np.random.default_rng(0).bytes(500))
    elif kind == "pickle":
        path.write_bytes(pickle.dumps({"vocab": {"tokens": ["<pad>", "^", "$", "C"]}}))
    else:
        raise AssertionError(kind)
    return path


@pytest.mark.parametrize("job", ["sample", "optimize"])
@pytest.mark.parametrize("kind", ["missing", "empty", "truncated", "random bytes", "pickle"])
def test_bad_model_file_is_one_error_line(tmp_path, capsys, job, kind):
    model = _bad_model(tmp_path, kind)
    out = tmp_path / "out"
    assert main(["molecules", job, "--model", model, "--n" if job == "sample" else "--budget",
                 "5", "--out", out]) == 2  # fmt: skip
    assert model.name in one_error_line(capsys)
    assert not out.exists()  # refused before any work


CARELESS = {
    "target not a SMILES": ["optimize", "--target", "notasmiles"],
    "budget 0": ["optimize", "--budget", "0"],
    "budget not a number": ["optimize", "--budget", "many"],
    "weights not summing to 1": ["optimize", "--objective", "sum", "--weights", "qed=0.5,logp=0.2"],
    "unknown weight name": ["optimize", "--objective", "sum", "--weights", "qed=0.5,mass=0.5"],
    "batch of one": ["optimize", "--batch-size", "1"],
    "negative sigma": ["optimize", "--sigma", "-1"],
    "replay above the memory": ["optimize", "--replay", "500"],
    "group size not dividing the batch": ["optimize", "--group-size", "5"],
    "zero samples": ["sample", "--n", "0"],
    "unknown corpus": ["pretrain", "--corpus", "zinc"],
    "unknown device": ["pretrain", "--device", "gpu0"],
    "negative seed": ["pretrain", "--seed", "-1"],
}


@pytest.mark.parametrize("name", list(CARELESS))
def test_careless_input_is_one_error_line(tmp_path, capsys, cno_model, name):
    job, *rest = CARELESS[name]
    model = [] if job == "pretrain" else ["--model", cno_model]
    out = tmp_path / "out"
    assert main(["molecules", job, *model, *rest, "--out", out]) == 2
    one_error_line(capsys)
    assert not out.exists()  # refused before any work


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is available here")
def test_device_cuda_without_gpu_is_refused_before_any_work(tmp_path, capsys):
    out = tmp_path / "out"
    start = time.perf_counter()
    assert main(["molecules", "pretrain", "--device", "cuda", "--out", out]) == 2
    assert time.perf_counter() - start < 5
    assert "CUDA" in one_error_line(capsys)
    assert not out.exists()


@pytest.mark.parametrize("job", ["pretrain", "sample", "optimize"])
@pytest.mark.parametrize("where", ["under a file", "/proc"])
def test_unwritable_out_fails_fast(tmp_path, capsys, job, where):
    (tmp_path / "file").write_text("x")
    out = tmp_path / "file" / "out" if where == "under a file" else "/proc/stochgrad-test"
    start = time.perf_counter()
    # the defaults: the whole MOSES subset, the shipped prior, a 10,000-call budget
    assert main(["molecules", job, "--out", out]) == 2
    assert time.perf_counter() - start < 5
    assert "--out" in one_error_line(capsys)


@pytest.mark.parametrize("form", ["torch.save", "pickle"])
def test_optimize_refuses_a_planted_agent_checkpoint(tmp_path, capsys, cno_model, form):
    out = tmp_path / "o"
    out.mkdir()
    marker = tmp_path / "marker"
    if form == "torch.save":
        torch.save({"settings": _Payload(marker)}, out / "agent.pt")
    else:
        (out / "agent.pt").write_bytes(pickle.dumps(_Payload(marker)))
    argv = ["molecules", "optimize", "--model", cno_model, "--objective", "qed", "--budget", "50"]
    argv += ["--batch-size", "8", "--replay", "2", "--max-steps", "2", "--out", out]
    assert main(argv) == 2
    assert "agent.pt" in one_error_line(capsys)
    assert not marker.exists()
    assert not (out / "summary.json").exists()
    # --restart discards the planted file and runs
    assert main([*argv, "--restart"]) == 0
    assert not marker.exists() and (out / "summary.json").exists()


# ----------------------------------------------------------------------------- interrupt, resume
def test_pretrain_interrupted_resumes_to_the_same_model(
    tmp_path, capsys, interrupt_after_checkpoint
):
    argv = ["molecules", "pretrain", *TINY_PRETRAIN, "--out"]
    full, part = tmp_path / "full", tmp_path / "part"
    assert main([*argv, full]) == 0
    interrupt_after_checkpoint(part)
    assert main([*argv, part]) == 130
    assert load_state(part / "prior.pt")["step"] == 4  # of 12: the first checkpoint
    assert not (part / "prior_weights.pt").exists()
    capsys.readouterr()
    assert main([*argv, part]) == 0
    assert "resumed from" in capsys.readouterr().out
    a, b = load_state(full / "prior_weights.pt"), load_state(part / "prior_weights.pt")
    for k, v in a["weights"].items():
        assert torch.equal(v, b["weights"][k])
    assert load_state(full / "prior.pt")["losses"] == load_state(part / "prior.pt")["losses"]
    # --restart starts afresh, to the same model
    assert main([*argv, part, "--restart"]) == 0
    out = capsys.readouterr().out
    assert "--restart: removed" in out and "resumed from" not in out
    c = load_state(part / "prior_weights.pt")
    for k, v in a["weights"].items():
        assert torch.equal(v, c["weights"][k])
    # other settings: refused, naming what differs
    assert main(["molecules", "pretrain", *TINY_PRETRAIN, "--lr", "2e-2", "--out", part]) == 2
    assert "lr: 0.01 saved, 0.02 now" in one_error_line(capsys)


def _same_run(a, b) -> None:
    sa, sb = (json.loads((d / "summary.json").read_text()) for d in (a, b))
    for volatile in ("seconds", "samples_per_second"):
        sa.pop(volatile), sb.pop(volatile)
    assert sa == sb
    assert (a / "top.csv").read_text() == (b / "top.csv").read_text()
    ka, kb = load_state(a / "agent.pt"), load_state(b / "agent.pt")
    assert ka["steps"] == kb["steps"] and ka["history_smiles"] == kb["history_smiles"]
    for k, v in ka["agent"].items():
        assert torch.equal(v, kb["agent"][k])


def test_optimize_interrupted_resumes_to_the_same_result(
    tmp_path, capsys, cno_model, interrupt_after_checkpoint
):
    argv = ["molecules", "optimize", "--model", cno_model, *SMALL_OPTIMIZE, "--out"]
    full, part = tmp_path / "full", tmp_path / "part"
    assert main([*argv, full]) == 0
    assert json.loads((full / "summary.json").read_text())["calls"] > 0
    interrupt_after_checkpoint(part)
    assert main([*argv, part]) == 130
    assert len(load_state(part / "agent.pt")["steps"]) == 2  # of 6: the first checkpoint
    assert not (part / "summary.json").exists()
    capsys.readouterr()
    assert main([*argv, part]) == 0
    assert "resumed from" in capsys.readouterr().out
    _same_run(full, part)
    assert main([*argv, part, "--restart"]) == 0
    out = capsys.readouterr().out
    assert "--restart: removed" in out and "resumed from" not in out
    _same_run(full, part)
    # other settings: refused, naming what differs
    assert main([*argv, part, "--sigma", "60"]) == 2
    assert "sigma: 500.0 saved, 60.0 now" in one_error_line(capsys)


# ----------------------------------------------------------------------------- help
@pytest.mark.parametrize(
    "job, shown",
    [
        ("pretrain", ["(default: 200000)", "(default: stochgrad-out/molecules-pretrain)",
                      "(default: 17)", "(default: cpu)", "--restart"]),
        ("sample", ["(default: 10000)", "(default: 500)",
                    "(default: stochgrad-out/molecules-sample)"]),
        ("optimize", ["(default: 10000)", "(default: reinvent)", "(default: similarity)",
                      "(default: 500.0)", "(default: stochgrad-out/molecules-optimize)",
                      "--restart"]),
    ],
)  # fmt: skip
def test_help_shows_defaults(capsys, job, shown):
    with pytest.raises(SystemExit) as exc:
        main(["molecules", job, "--help"])
    assert exc.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for item in shown:
        assert item in text
    assert ("--restart" in text) == (job != "sample")  # sampling has nothing to resume
    assert "--resume " not in text and "--output" not in text
