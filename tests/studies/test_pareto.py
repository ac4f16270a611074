"""The Deep Sea Treasure sweep over weights × seeds: front recovery, resume, threads, settings."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("mo_gymnasium")

from stochgrad.apps.rl.deep_sea import hypervolume_2d  # noqa: E402
from stochgrad.apps.rl.multi_objective import ReinforceConfig  # noqa: E402
from stochgrad.checkpoint import CheckpointMismatch  # noqa: E402
from stochgrad.studies.pareto import ParetoConfig, pareto_study, run_pareto  # noqa: E402

GAMMA = 0.99
pytestmark = pytest.mark.usefixtures("one_thread")


def _small(**kw) -> ParetoConfig:
    reinforce = ReinforceConfig(iterations=kw.pop("iterations", 20), batch=4, restarts=2)
    return ParetoConfig(weights=kw.pop("weights", "0,1"), gamma=GAMMA, reinforce=reinforce, **kw)


def test_pareto_study_recovers_the_extreme_points():
    cfg = ParetoConfig(weights="0,1", gamma=GAMMA,
                       reinforce=ReinforceConfig(iterations=300, batch=16))  # fmt: skip
    res = pareto_study(cfg)
    assert res.exact_recovered[0] and res.exact_recovered[-1]
    (cell,) = res.cells
    assert cell.recovered[0]  # w = 0: the nearest treasure is found by REINFORCE
    assert res.recovered_by(cell)[0] == [0.0]
    assert res.hypervolume_front == pytest.approx(hypervolume_2d(res.front))
    assert res.hypervolume_exact <= res.hypervolume_front + 1e-9
    assert cell.hypervolume == pytest.approx(hypervolume_2d(cell.returns))
    assert cell.restart_returns.shape == (2, 3, 2) and cell.restarts_optimal.shape == (2,)
    # the kept restart is the best scalarised one
    w = res.weights
    scal = (
        w[:, None] * cell.restart_returns[..., 0] + (1 - w[:, None]) * cell.restart_returns[..., 1]
    )
    np.testing.assert_array_equal(cell.returns, cell.restart_returns[[0, 1], scal.argmax(1)])


def test_a_seed_gives_the_same_sweep_alone_or_with_others():
    pair = pareto_study(_small(seeds=(0, 1)))
    alone = pareto_study(_small(seeds=(1,)))
    np.testing.assert_array_equal(pair.cells[1].restart_returns, alone.cells[0].restart_returns)
    # and the earlier interface (one seed) computes the same numbers
    old = run_pareto("0,1", GAMMA, ReinforceConfig(iterations=20, batch=4, restarts=2), seed=1)
    np.testing.assert_array_equal(np.array(old.reinforce_returns), alone.cells[0].returns)


def test_it_runs_with_one_torch_thread_and_restores_the_callers():
    torch.set_num_threads(2)  # the one_thread fixture restores the suite's setting
    seen = []
    pareto_study(_small(iterations=3), progress=lambda n: seen.append(torch.get_num_threads()))
    assert seen == [1, 1, 1] and torch.get_num_threads() == 2
    seen.clear()
    run_pareto("0,1", GAMMA, ReinforceConfig(iterations=3, batch=2),
               callback=lambda it, _: seen.append(torch.get_num_threads()))  # fmt: skip
    assert seen == [1, 1, 1] and torch.get_num_threads() == 2


def test_an_interrupted_study_resumes_to_the_same_numbers(tmp_path):
    cfg = _small(seeds=(0, 1), iterations=12)
    ref = pareto_study(cfg)
    ckpt = tmp_path / "c.pt"
    done = []

    def stop(n):
        done.append(n)
        if sum(done) == 18:  # seed 0 finished, seed 1 checkpointed at 5 iterations, then 1
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pareto_study(cfg, checkpoint=ckpt, progress=stop, checkpoint_every=5)
    found, ticks = [], []
    res = pareto_study(cfg, checkpoint=ckpt, progress=ticks.append,
                       on_resume=lambda a, b: found.append((a, b)))  # fmt: skip
    assert found == [(1, 1)] and res.resumed == 1
    assert sum(ticks) == 24 and ticks[:2] == [12, 5]  # seed 0 loaded, 5 of seed 1's iterations
    for a, b in zip(res.cells, ref.cells, strict=True):
        np.testing.assert_array_equal(a.restart_returns, b.restart_returns)
    with pytest.raises(CheckpointMismatch, match="reinforce"):
        pareto_study(_small(seeds=(0, 1), iterations=13), checkpoint=ckpt)


def test_run_pareto_keeps_its_files(tmp_path):
    cfg = ReinforceConfig(iterations=20, batch=4, restarts=1)
    first = run_pareto("0,1", GAMMA, cfg, out_dir=tmp_path, checkpoint_every=10)
    assert (tmp_path / "pareto_checkpoint.pt").exists()
    data = json.loads((tmp_path / "pareto.json").read_text())
    assert data["weights"] == [0.0, 1.0] and data["config"]["seed"] == 0
    again = run_pareto("0,1", GAMMA, cfg, out_dir=tmp_path)  # from the finished checkpoint
    assert again.reinforce_returns == first.reinforce_returns


@pytest.mark.parametrize(
    ("kw", "error", "match"),
    [
        ({"weights": "abc"}, ValueError, "weights"),
        ({"weights": "1"}, ValueError, "weights"),
        ({"weights": (0.2, 1.5)}, ValueError, "weights"),
        ({"gamma": 0.0}, ValueError, "gamma"),
        ({"seeds": ()}, ValueError, "seeds"),
        ({"seeds": (0, 0)}, ValueError, "distinct"),
        ({"seeds": 3}, TypeError, "seeds"),
        ({"reinforce": {"iterations": 1}}, TypeError, "reinforce"),
    ],
)
def test_bad_settings_name_the_setting(kw, error, match):
    with pytest.raises(error, match=match):
        ParetoConfig(**kw)
