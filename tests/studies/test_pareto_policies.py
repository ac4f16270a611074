"""The Deep Sea Treasure sweep returns its trained policies: the kept restart's logits per seed
and weight, whose greedy policies reproduce the returns the study reports, through the
checkpoint too; ``stochgrad rl pareto`` saves them (tests/cli/test_rl_pareto_policies.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("mo_gymnasium")

from stochgrad.apps.rl.deep_sea import evaluate_in_env, tabulate  # noqa: E402
from stochgrad.apps.rl.multi_objective import ReinforceConfig, train_reinforce  # noqa: E402
from stochgrad.checkpoint import load_state, save_state  # noqa: E402
from stochgrad.studies.pareto import (  # noqa: E402
    ParetoCell,
    ParetoConfig,
    pareto_study,
    run_pareto,
)

GAMMA = 0.99
pytestmark = pytest.mark.usefixtures("one_thread")


def _small(**kw) -> ParetoConfig:
    reinforce = ReinforceConfig(iterations=kw.pop("iterations", 40), batch=4, restarts=2)
    return ParetoConfig(weights="0,0.7,1", gamma=GAMMA, reinforce=reinforce, **kw)


@pytest.fixture(scope="module")
def mdp():
    return tabulate()


def test_the_policies_are_the_kept_restarts_and_reproduce_the_returns(mdp):
    cfg = _small(seeds=(0, 3))
    res = pareto_study(cfg)
    K, R = res.weights.size, cfg.reinforce.restarts
    for cell in res.cells:
        assert cell.policy_logits.shape == (K, mdp.num_states, mdp.num_actions)
        # rolled out again in a fresh environment: the returns the study reported
        again = evaluate_in_env(mdp, cell.greedy_policies(), GAMMA)
        np.testing.assert_array_equal(again, cell.returns)
        # and they are the logits REINFORCE trains for that seed, of the best restart
        logits, _ = train_reinforce(mdp, np.repeat(res.weights, R), GAMMA, cfg.reinforce,
                                    seed=cell.seed)  # fmt: skip
        w = res.weights[:, None]
        scal = w * cell.restart_returns[..., 0] + (1 - w) * cell.restart_returns[..., 1]
        kept = logits.reshape(K, R, *logits.shape[1:])[np.arange(K), scal.argmax(1)]
        np.testing.assert_array_equal(cell.policy_logits, kept.numpy())


def test_an_interrupted_study_resumes_to_the_same_policies(tmp_path):
    cfg = _small(seeds=(0, 1), iterations=12)
    ref = pareto_study(cfg)
    ckpt = tmp_path / "c.pt"
    done = []

    def stop(n):
        done.append(n)
        if sum(done) == 18:  # seed 0 finished and saved, seed 1 part-way
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pareto_study(cfg, checkpoint=ckpt, progress=stop, checkpoint_every=5)
    res = pareto_study(cfg, checkpoint=ckpt)
    assert res.resumed == 1  # seed 0's policies come from the checkpoint
    for a, b in zip(res.cells, ref.cells, strict=True):
        np.testing.assert_array_equal(a.policy_logits, b.policy_logits)


def test_a_seed_finished_by_an_earlier_release_has_no_policies(tmp_path):
    cell = pareto_study(_small(iterations=2)).cells[0]
    state = cell.to_state()
    del state["policy_logits"]  # what an earlier release saved
    old = ParetoCell.from_state(state)
    assert old.policy_logits is None
    save_state(old.to_state(), tmp_path / "cell.pt")  # saved again with the finished cells
    assert ParetoCell.from_state(load_state(tmp_path / "cell.pt")).policy_logits is None
    np.testing.assert_array_equal(old.returns, cell.returns)
    with pytest.raises(ValueError, match="seed 0: no policies kept"):
        old.greedy_policies()


def test_the_earlier_interface_returns_the_policies_too(mdp, tmp_path):
    res = run_pareto("0,1", GAMMA, ReinforceConfig(iterations=20, batch=4, restarts=2),
                     seed=2, out_dir=tmp_path)  # fmt: skip
    logits = np.asarray(res.policy_logits)
    assert logits.shape == (2, mdp.num_states, mdp.num_actions)
    again = evaluate_in_env(mdp, logits.argmax(-1), GAMMA)
    np.testing.assert_array_equal(again, np.asarray(res.reinforce_returns))
    saved = json.loads((tmp_path / "pareto.json").read_text())
    np.testing.assert_array_equal(np.asarray(saved["policy_logits"]), logits)
