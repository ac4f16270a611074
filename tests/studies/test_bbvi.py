"""The BBVI study: estimators x seeds runs, variance tables, one checkpoint, exact resume."""

from __future__ import annotations

import json

import pytest
import torch

from stochgrad.apps.vi import BBVICheckpoint, BBVIConfig, load_data, optimal_elbo, train
from stochgrad.checkpoint import CheckpointMismatch
from stochgrad.studies.bbvi import (
    BBVIStudyConfig,
    bbvi_study,
    run_bbvi,
    study_units,
    variance_table,
)

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = BBVIConfig(steps=4, num_samples=3, eval_every=2, nodes=64, eval_samples=20,
                  checkpoint_every=2)  # fmt: skip


def _runs(study) -> dict:
    return {k: {**vars(r), "seconds": 0.0} for k, r in study.runs.items()}


@pytest.fixture(scope="module")
def data():
    return load_data()


def test_config_is_checked():
    cfg = BBVIStudyConfig(TINY, estimators=["pathwise", "loo"], seeds=[3, 1])
    assert cfg.estimators == ("pathwise", "loo") and cfg.seeds == (3, 1)
    with pytest.raises(ValueError, match="estimators must be a non-empty list without repeats"):
        BBVIStudyConfig(TINY, estimators=("loo", "loo"))
    with pytest.raises(ValueError, match="estimators"):
        BBVIStudyConfig(TINY, estimators=())
    with pytest.raises(ValueError, match="estimators must be one of"):
        BBVIStudyConfig(TINY, estimators=("score", "foo"))
    with pytest.raises(ValueError, match="seeds"):
        BBVIStudyConfig(TINY, seeds=(0, 0))
    with pytest.raises(ValueError, match="seeds must be >= 0"):
        BBVIStudyConfig(TINY, seeds=(-1,))
    with pytest.raises(ValueError, match="variance_repeats must be >= 2"):
        BBVIStudyConfig(TINY, variance_repeats=1)
    with pytest.raises(TypeError, match="training"):
        BBVIStudyConfig({"steps": 4})
    assert study_units(BBVIStudyConfig(TINY, ("loo", "mvd"), (0, 1), 5)) == 2 * 2 * 4 + 2 * 2 * 5


def test_study_is_train_and_variance_table_per_cell(data):
    """Every run is train(estimator, seed) and the tables are variance_table(): same numbers."""
    X, y = data
    cfg = BBVIStudyConfig(TINY, estimators=("pathwise", "mvd"), seeds=(1, 2), variance_repeats=3)
    study = bbvi_study(cfg)
    assert set(study.runs) == {("pathwise", 1), ("pathwise", 2), ("mvd", 1), ("mvd", 2)}
    for (e, s), r in study.runs.items():
        direct = train(e, X, y, TINY, s)
        assert r.curve_elbo == direct.curve_elbo and r.mu == direct.mu
        assert r.mc_elbo == direct.mc_elbo
    opt = optimal_elbo(X, y, TINY.nodes)
    assert study.optimum == opt
    zero = torch.zeros(31, dtype=X.dtype)
    init = variance_table("init", zero, zero, X, y, ["pathwise", "mvd"], 3, 3, 1)
    assert study.variance[0] == init
    at_opt = variance_table(
        "optimum",
        torch.tensor(opt.mu, dtype=X.dtype),
        torch.tensor(opt.log_sigma, dtype=X.dtype),
        X,
        y,
        ["pathwise", "mvd"],
        3,
        3,
        1,
    )
    assert study.variance[1] == at_opt
    means = {e: (study.runs[(e, 1)].final_elbo + study.runs[(e, 2)].final_elbo) / 2
             for e in ("pathwise", "mvd")}  # fmt: skip
    assert study.best == max(means, key=means.get)
    assert study.best_gap == pytest.approx(opt.elbo - means[study.best])
    assert set(study.runs_of(2)) == {"pathwise", "mvd"}


def test_interrupted_study_resumes_to_the_same_numbers(tmp_path):
    cfg = BBVIStudyConfig(TINY, estimators=("loo", "pathwise"), variance_repeats=2)
    whole = bbvi_study(cfg)
    ckpt = tmp_path / "bbvi_checkpoint.pt"
    units = []

    def stop(n):
        units.append(n)
        if sum(units) == 7:  # the first run finished, the second saved at step 2
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        bbvi_study(cfg, checkpoint=ckpt, progress=stop)
    found, units = [], []
    again = bbvi_study(cfg, checkpoint=ckpt, progress=units.append, on_resume=lambda *a:
                       found.append(a))  # fmt: skip
    assert found == [(1, 1)] and again.resumed == 1
    assert sum(units) == study_units(cfg)
    assert _runs(again) == _runs(whole)
    assert again.variance == whole.variance and again.optimum == whole.optimum
    # more estimators: the finished ones are reused
    more = BBVIStudyConfig(TINY, estimators=("loo", "pathwise", "score"), variance_repeats=2)
    found = []
    bigger = bbvi_study(more, checkpoint=ckpt, on_resume=lambda *a: found.append(a))
    assert found == [(2, 0)] and bigger.resumed == 2
    assert {k: v for k, v in _runs(bigger).items() if k[0] != "score"} == _runs(whole)
    # other training settings are refused before any work, naming the difference
    with pytest.raises(CheckpointMismatch, match="steps: 4 saved, 5 now"):
        bbvi_study(BBVIStudyConfig(BBVIConfig(**{**vars(TINY), "steps": 5})), checkpoint=ckpt)
    fresh = bbvi_study(cfg, checkpoint=ckpt, resume=False)
    assert fresh.resumed == 0 and _runs(fresh) == _runs(whole)


def test_a_checkpoint_of_earlier_releases_is_reused(data, tmp_path):
    """BBVICheckpoint files (runs keyed by estimator and seed) resume in the study."""
    X, y = data
    ckpt = BBVICheckpoint(tmp_path / "bbvi_checkpoint.pt", TINY)
    run = train("delta", X, y, TINY, 0, checkpoint=ckpt)
    found = []
    study = bbvi_study(
        BBVIStudyConfig(TINY, ("delta",), variance_repeats=2),
        checkpoint=ckpt.path,
        on_resume=lambda *a: found.append(a),
    )
    assert found == [(1, 0)] and study.runs[("delta", 0)].curve_elbo == run.curve_elbo


def test_run_bbvi_of_earlier_releases_still_works(tmp_path):
    with pytest.warns(DeprecationWarning, match="bbvi_study"):
        res = run_bbvi(TINY, ["loo"], 0, out_dir=tmp_path, variance_repeats=2)
    assert res.best == "loo" and set(res.runs) == {"loo"}
    data = json.loads((tmp_path / "bbvi.json").read_text())
    assert data["runs"]["loo"]["curve_steps"] == [0, 2, 4]
    assert (tmp_path / "bbvi_checkpoint.pt").exists()
    with pytest.warns(DeprecationWarning), pytest.raises(ValueError, match="estimators"):
        run_bbvi(TINY, ["loo", "loo"])
