"""``stochgrad molecules optimize --score module:function``: your own score from the command
line, in worker processes with ``--score-workers``, and one line ``error: ...`` for every
mistake in naming it."""

from __future__ import annotations

import csv
import json
import sys

import pytest
import torch

pytest.importorskip("rdkit")

from rdkit import Chem  # noqa: E402

from stochgrad.apps.molecules.data import Vocabulary  # noqa: E402
from stochgrad.apps.molecules.model import GRUConfig, SmilesGRU, save_model  # noqa: E402
from stochgrad.cli import main  # noqa: E402
from tests.helpers import one_error_line, unwrapped, widest_line

pytestmark = pytest.mark.usefixtures("one_thread")

MODULE = "stochgrad_cli_test_scores"
SCORES = """
import math

from rdkit import Chem


def carbon_fraction(smiles):
    out = []
    for s in smiles:
        atoms = [a.GetSymbol() for a in Chem.MolFromSmiles(s).GetAtoms()]
        out.append(atoms.count("C") / len(atoms))
    return out


def nan_with_nitrogen(smiles):
    return [math.nan if "N" in s else 0.5 for s in smiles]


def boom(smiles):
    raise KeyError("no such descriptor")


not_a_function = 3
"""
SMALL = ["--budget", "1000", "--batch-size", "8", "--replay", "3", "--max-steps", "6"]
SMALL += ["--checkpoint-every", "2", "--patience", "0", "--threads", "1"]


@pytest.fixture(scope="module")
def cno_model(tmp_path_factory):
    """A tiny untrained model over C, N and O: its chains are valid SMILES."""
    path = tmp_path_factory.mktemp("model") / "cno.pt"
    torch.manual_seed(0)
    voc = Vocabulary.from_smiles(["CCO", "CN"])
    model = SmilesGRU(voc, GRUConfig(embedding=8, hidden=16, layers=1, max_length=12))
    save_model(model, path, data={"corpus": "nci", "n": 50, "seed": 0})
    return path


@pytest.fixture
def here(tmp_path, monkeypatch):
    """A folder holding the score module (and a broken one), made the current folder, with
    ``sys.path`` and ``sys.modules`` restored afterwards."""
    (tmp_path / f"{MODULE}.py").write_text(SCORES)
    (tmp_path / "stochgrad_cli_test_broken.py").write_text("def f(smiles:\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    yield tmp_path
    for name in (MODULE, "stochgrad_cli_test_broken"):
        sys.modules.pop(name, None)


def _optimize(model, out, score, *extra):
    return main(["molecules", "optimize", "--model", model, "--score", score, *SMALL, *extra,
                 "--out", out])  # fmt: skip


def _top(out):
    with open(out / "top.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_own_score_runs_resumes_and_is_recorded(here, cno_model, capsys):
    out = here / "run"
    assert _optimize(cno_model, out, f"{MODULE}:carbon_fraction") == 0
    text = capsys.readouterr().out
    assert widest_line(text) <= 100
    assert unwrapped(f"on score '{MODULE}:carbon_fraction'") in unwrapped(text)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["score"] == f"{MODULE}:carbon_fraction" and summary["objective"] is None
    assert summary["score_workers"] == 1 and summary["unscored"] == 0
    assert summary["config"]["objective"] == f"score {MODULE}:carbon_fraction"
    rows = _top(out)
    assert rows and "similarity" not in rows[0]
    for row in rows:  # each score is the toy score, computed here by RDKit's element counts
        mol = Chem.MolFromSmiles(row["smiles"])
        carbon = sum(a.GetAtomicNum() == 6 for a in mol.GetAtoms()) / mol.GetNumHeavyAtoms()
        assert float(row["score"]) == pytest.approx(carbon, abs=5e-5)
    assert _optimize(cno_model, out, f"{MODULE}:carbon_fraction") == 0
    assert "resumed from" in capsys.readouterr().out
    assert _optimize(cno_model, out, f"{MODULE}:nan_with_nitrogen") == 2
    line = one_error_line(capsys)
    assert "objective" in line and f"{MODULE}:carbon_fraction" in line


def test_score_workers_give_the_numbers_of_one_process(here, cno_model, capsys):
    assert _optimize(cno_model, here / "one", f"{MODULE}:carbon_fraction") == 0
    assert _optimize(cno_model, here / "two", f"{MODULE}:carbon_fraction",
                     "--score-workers", "2") == 0  # fmt: skip
    capsys.readouterr()
    assert _top(here / "two") == _top(here / "one")
    assert json.loads((here / "two" / "summary.json").read_text())["score_workers"] == 2


def test_unscored_molecules_are_counted_and_reported(here, cno_model, capsys):
    assert _optimize(cno_model, here / "run", f"{MODULE}:nan_with_nitrogen") == 0
    text = unwrapped(capsys.readouterr().out)
    unscored = json.loads((here / "run" / "summary.json").read_text())["unscored"]
    assert unscored > 0 and unwrapped(f"{unscored:,} molecules could not be scored") in text


def test_a_failing_score_is_one_error_line(here, cno_model, capsys):
    out = here / "run"
    assert _optimize(cno_model, out, f"{MODULE}:boom") == 2
    line = one_error_line(capsys)
    # the name is printed as given (not drawn as an emoji between colons)
    assert f"--score '{MODULE}:boom'" in line and "KeyError: 'no such descriptor'" in line


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--score", "carbon_fraction"], "must be module:function"),
        (["--score", f"{MODULE}:"], "must be module:function"),
        (["--score", ":carbon_fraction"], "must be module:function"),
        (["--score", f"{MODULE}:carbon fraction"], "must be module:function"),
        (["--score", "stochgrad_no_such_module:f"], "no module named 'stochgrad_no_such_module'"),
        (["--score", f"{MODULE}:missing"], f"module '{MODULE}' has no 'missing'"),
        (["--score", f"{MODULE}:not_a_function"], "'not_a_function' is a int, not a function"),
        (["--score", "stochgrad_cli_test_broken:f"], "importing 'stochgrad_cli_test_broken' "
                                                     "failed (SyntaxError"),
        (["--score", f"{MODULE}:carbon_fraction", "--objective", "qed"], "exclude each other"),
        (["--score-workers", "2"], "--score-workers goes with --score"),
        (["--score", f"{MODULE}:carbon_fraction", "--weights", "qed=1"], "--weights goes with"),
        (["--score", f"{MODULE}:carbon_fraction", "--score-workers", "0"], "--score-workers"),
    ],
)  # fmt: skip
def test_careless_score_options_are_one_error_line(here, cno_model, capsys, argv, says):
    out = here / "out"
    assert main(["molecules", "optimize", "--model", cno_model, *argv, "--out", out]) == 2
    assert says in one_error_line(capsys)
    assert not out.exists()  # refused before any work


def test_help_shows_the_score_options(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["molecules", "optimize", "--help"])
    assert exc.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--score MODULE:FUNCTION" in text and "(default: 1, in this process)" in text
    assert "(default: similarity)" in text
