"""Your own scoring function for the molecule agent: BatchScore, the oracle's batch path, parallel
scoring through stochgrad.parallel, the checkpoint, and the example of docs/molecules.md.

The command's ``--score module:function`` is tested in tests/cli/test_molecules_score.py.
"""

from __future__ import annotations

import copy
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("rdkit")

from rdkit import Chem  # noqa: E402

from stochgrad.apps.molecules import (  # noqa: E402
    AgentConfig,
    BatchScore,
    GRUConfig,
    Oracle,
    ScoreError,
    SmilesGRU,
    Vocabulary,
    optimize,
)
from stochgrad.checkpoint import CheckpointMismatch, load_state  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

DOCS = Path(__file__).resolve().parents[2] / "docs" / "molecules.md"


# module level, so that worker processes can import them
def carbon_fraction(smiles: list[str]) -> list[float]:
    """The toy score: the fraction of heavy atoms that are carbon."""
    out = []
    for s in smiles:
        atoms = [a.GetSymbol() for a in Chem.MolFromSmiles(s).GetAtoms()]
        out.append(atoms.count("C") / len(atoms))
    return out


def nan_with_nitrogen(smiles: list[str]) -> np.ndarray:
    return np.array([math.nan if "N" in s else 1.0 for s in smiles])


def fails(smiles: list[str]) -> list[float]:
    raise KeyError("no such descriptor")


def _rdkit_carbon_fraction(smiles: str) -> float:
    """The same quantity computed independently: RDKit's element counts, no string handling."""
    mol = Chem.MolFromSmiles(smiles)
    return sum(a.GetAtomicNum() == 6 for a in mol.GetAtoms()) / mol.GetNumHeavyAtoms()


@pytest.fixture(scope="module")
def cno_prior() -> SmilesGRU:
    """A tiny untrained model over C, N and O: its chains are valid SMILES, with a carbon
    fraction of about a third."""
    torch.manual_seed(0)
    voc = Vocabulary.from_smiles(["CCO", "CN"])
    return SmilesGRU(voc, GRUConfig(embedding=8, hidden=16, layers=1, max_length=12))


def _run(prior, score, steps, path=None, **kw):
    agent = copy.deepcopy(prior)
    cfg = AgentConfig(
        method="reinforce", batch_size=32, lr=1e-2, beta=0.0, replay_batch=0, max_steps=steps,
        patience=0, diagnose_every=0, checkpoint_every=2,
    )  # fmt: skip
    oracle = Oracle(score, budget=kw.pop("budget", 100_000))
    return optimize(agent, prior, oracle, cfg, seed=kw.pop("seed", 0), checkpoint=path, **kw), agent


# ----------------------------------------------------------------------------- the oracle
def test_the_function_sees_new_valid_canonical_molecules_once_within_the_budget():
    calls: list[list[str]] = []

    def recorded(smiles):
        calls.append(list(smiles))
        return carbon_fraction(smiles)

    oracle = Oracle(BatchScore(recorded), budget=4)
    batch = ["OCC", "C1CC", "CCO", "NCC", "", "c1ccccc1", "CCCN", "CCCC"]
    got = oracle(batch)
    # OCC and CCO are one molecule; C1CC and "" do not parse; the budget stops after 4 new ones
    assert calls == [["CCO", "CCN", "c1ccccc1", "CCCN"]]
    expected = [_rdkit_carbon_fraction(s) if s in ("OCC", "CCO", "NCC", "c1ccccc1", "CCCN")
                else 0.0 for s in batch]  # fmt: skip
    np.testing.assert_array_equal(got, expected)
    assert oracle.calls == 4 and oracle.exhausted
    again = oracle(["CCO", "CCCC"])  # cached, and beyond the budget: no call
    assert len(calls) == 1 and again.tolist() == [expected[0], 0.0]


def test_batch_oracle_equals_the_per_molecule_oracle():
    smiles = ["CCO", "CN", "C1CC", "OCC", "CCCCO", "NCCN", "c1ccccc1O", "CC", "CN"]
    per_molecule = Oracle(lambda s: carbon_fraction([s])[0], budget=5)
    batched = Oracle(BatchScore(carbon_fraction), budget=5)
    np.testing.assert_array_equal(batched(smiles), per_molecule(smiles))
    assert batched.history == per_molecule.history


def test_nan_scores_zero_counts_as_a_call_and_is_listed():
    oracle = Oracle(BatchScore(nan_with_nitrogen), budget=10)
    assert oracle(["CCO", "CN", "NC"]).tolist() == [1.0, 0.0, 0.0]
    assert oracle.unscored == ["CN"] and oracle.history == [("CCO", 1.0), ("CN", 0.0)]


@pytest.mark.parametrize(
    ("fn", "match"),
    [
        (fails, r"score function .*fails raised KeyError: 'no such descriptor'"),
        (lambda s: [1.0], r"one number per molecule: got shape \(1,\) for 2 molecules"),
        (lambda s: [math.inf, 0.0], r"returned inf for 'CCO'"),
        (lambda s: [{"a": 1}, 2], "must return numbers"),
        (lambda s: 0.5, r"got shape \(\) for 2"),
    ],
)
def test_a_misbehaving_function_is_a_score_error_naming_it(fn, match):
    score = BatchScore(fn, name="my:score") if fn is not fails else BatchScore(fn)
    with pytest.raises(ScoreError, match=match) as exc:
        score(["CCO", "CN"])
    if fn is fails:
        assert isinstance(exc.value.__cause__, KeyError)


def test_outputs_as_list_numpy_or_tensor_give_the_same_scores():
    smiles = ["CCO", "CN", "CCCC"]
    expected = np.array([_rdkit_carbon_fraction(s) for s in smiles])
    for wrap in (list, np.asarray, torch.tensor):
        got = BatchScore(lambda s, wrap=wrap: wrap(carbon_fraction(s)))(smiles)
        np.testing.assert_allclose(got, expected, rtol=1e-6)  # a float32 tensor rounds
        assert got.dtype == np.float64


def test_bad_arguments_are_named():
    with pytest.raises(TypeError, match="fn must be callable"):
        BatchScore("carbon_fraction")
    with pytest.raises(ValueError, match="workers must be >= 1"):
        BatchScore(carbon_fraction, workers=0)
    with pytest.raises(TypeError, match="workers must be an int"):
        BatchScore(carbon_fraction, workers=2.0)
    with pytest.raises(TypeError, match="name must be a str"):
        BatchScore(carbon_fraction, name=3)
    with pytest.raises(TypeError, match="smiles must be strings"):
        BatchScore(carbon_fraction)(["CCO", None])


def test_worker_processes_refuse_functions_they_cannot_import():
    def nested(smiles):
        return carbon_fraction(smiles)

    with pytest.raises(TypeError, match="importable by worker processes.*it is a lambda"):
        BatchScore(lambda s: carbon_fraction(s), workers=2)
    with pytest.raises(TypeError, match="importable by worker processes.*not picklable"):
        BatchScore(nested, workers=2)
    BatchScore(nested, workers=1)  # in this process anything callable will do


# ----------------------------------------------------------------------------- the agent
def test_the_toy_score_is_optimised(cno_prior):
    result, _ = _run(cno_prior, BatchScore(carbon_fraction), steps=30)
    means = np.array([s.mean_score for s in result.steps])
    first, last = means[:10], means[-10:]
    se = math.sqrt(first.var(ddof=1) / 10 + last.var(ddof=1) / 10)
    # measured: 0.34 over the first 10 steps, 0.97 over the last 10
    assert last.mean() - first.mean() > 5 * se, (first.mean(), last.mean(), se)
    assert last.mean() > 0.8
    # every score recorded is the toy score of its molecule, computed independently
    for smi, value in result.history:
        assert value == pytest.approx(_rdkit_carbon_fraction(smi), abs=1e-12)


def test_parallel_scoring_gives_the_numbers_of_serial_scoring(cno_prior):
    smiles = [s for s, _ in _run(cno_prior, BatchScore(carbon_fraction), steps=2)[0].history]
    with BatchScore(carbon_fraction, workers=2) as parallel:
        # the empty molecule has no atom: the toy score divides by zero in a worker
        with pytest.raises(ScoreError, match="carbon_fraction raised ZeroDivisionError"):
            parallel(["CCO", "CN", ""])
        np.testing.assert_array_equal(parallel(smiles), BatchScore(carbon_fraction)(smiles))
        par, agent_par = _run(cno_prior, parallel, steps=4)
    ser, agent_ser = _run(cno_prior, BatchScore(carbon_fraction), steps=4)
    assert par.history == ser.history
    assert [s.loss for s in par.steps] == [s.loss for s in ser.steps]
    for a, b in zip(agent_par.state_dict().values(), agent_ser.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_the_checkpoint_keeps_the_score_name_and_the_unscored(cno_prior, tmp_path):
    path = tmp_path / "agent.pt"
    first, _ = _run(cno_prior, BatchScore(nan_with_nitrogen), steps=4, path=path)
    saved = load_state(path)
    assert saved["settings"]["objective"].endswith("test_molecules_user:nan_with_nitrogen")
    assert saved["unscored"] == first.unscored and first.unscored
    resumed, _ = _run(cno_prior, BatchScore(nan_with_nitrogen), steps=4, path=path)
    assert resumed.unscored == first.unscored and resumed.history == first.history
    with pytest.raises(CheckpointMismatch, match="objective"):
        _run(cno_prior, BatchScore(carbon_fraction), steps=4, path=path)
    # an explicit name wins, and a checkpoint naming none (an earlier release) is accepted
    state = load_state(path)
    del state["settings"]["objective"], state["unscored"]
    torch.save(state, path)
    again, _ = _run(cno_prior, BatchScore(carbon_fraction), steps=4, path=path, objective="x")
    assert len(again.steps) == 4 and again.unscored == []


def test_the_example_of_the_docs_runs(capsys):
    section = DOCS.read_text().split("## Your own scoring function")[1].split("\n## ")[0]
    (code,) = re.findall(r"^```python\n(.*?)^```$", section, flags=re.S | re.M)
    ns: dict = {"__name__": "docs_molecules_example"}
    exec(compile(code, "docs/molecules.md, Your own scoring function", "exec"), ns)
    result = ns["result"]
    assert ns["oracle"].calls == 300 and "CC" in capsys.readouterr().out
    for smi, value in result.history:
        assert value == pytest.approx(_rdkit_carbon_fraction(smi), abs=1e-12)
