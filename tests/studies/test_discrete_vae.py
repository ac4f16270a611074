"""The discrete-VAE study: a grid of (estimator, seed) runs, checkpointed mid-run, resumed exactly."""

from __future__ import annotations

import numpy as np
import pytest

from stochgrad.apps.discrete_vae import Config, load_binary_digits
from stochgrad.checkpoint import CheckpointMismatch
from stochgrad.studies import discrete_vae as S

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = Config(steps=12, samples=6, latents=8, hidden=16, eval_every=4, probe_every=6,
               probe_calls=3, probe_batch=20, final_samples=5, iwae_k=5,
               checkpoint_every=4)  # fmt: skip


@pytest.fixture(scope="module")
def data():
    return load_binary_digits()


def _same(a: S.RunResult, b: S.RunResult) -> None:
    """Bit for bit the same record (NaN, the train ELBO before any step, equals NaN)."""
    for name in ("eval_steps", "test_elbo", "train_elbo", "probe_steps", "variance",
                 "final_elbo", "final_elbo_se", "final_iwae", "final_iwae_se"):  # fmt: skip
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


def test_mid_run_resume_reproduces_the_uninterrupted_run(tmp_path, data):
    full = S.run_study(["rloo", "rebar"], [0], SMALL, tmp_path / "a.pt", data=data)

    class Stop(Exception):
        pass

    done = 0

    def interrupt(k):
        nonlocal done
        done += k
        if done == 12 + 9:  # rloo finished, rebar interrupted after step 9 (checkpoint at 8)
            raise Stop

    with pytest.raises(Stop):
        S.run_study(["rloo", "rebar"], [0], SMALL, tmp_path / "b.pt", data=data,
                    progress=interrupt)  # fmt: skip
    ckpt = S.Checkpoint(tmp_path / "b.pt", SMALL)
    assert ckpt.load() == 1 and int(ckpt.partial[("rebar", 0)]["step"]) == 8
    seen, found = [], []
    again = S.run_study(["rloo", "rebar"], [0], SMALL, tmp_path / "b.pt", data=data,
                        progress=seen.append, on_resume=lambda f, p: found.append((f, p)))  # fmt: skip
    assert again.resumed == 1 and again.continued == 1 and found == [(1, 1)]
    assert seen[:2] == [12, 8] and sum(seen) == 24
    for key in ("rloo", "rebar"):
        _same(full.runs[(key, 0)], again.runs[(key, 0)])
    ckpt = S.Checkpoint(tmp_path / "b.pt", SMALL)
    assert ckpt.load() == 2 and not ckpt.partial


def test_a_run_saves_its_state_every_checkpoint_every_steps(data):
    saved = []
    run = S.run_one("disarm", 1, SMALL, data, save=lambda st: saved.append(int(st["step"])))
    assert saved == [4, 8]  # not at the last step: the finished run is saved instead
    assert run.eval_steps == [0, 4, 8, 12] and run.probe_steps == [0, 6, 12]
    # continuing from any of those states gives the same run
    states = []
    S.run_one("disarm", 1, SMALL, data, save=states.append)
    for state in states:
        _same(run, S.run_one("disarm", 1, SMALL, data, state=state))


def test_resume_with_other_settings_raises_and_resume_false_starts_afresh(tmp_path, data):
    S.run_study(["disarm"], [0], SMALL, tmp_path / "c.pt", data=data)
    other = Config(**{**SMALL.__dict__, "lr": 1e-2})
    with pytest.raises(CheckpointMismatch, match="lr: 0.002 saved, 0.01 now"):
        S.run_study(["disarm"], [0], other, tmp_path / "c.pt", data=data)
    ran = []
    S.run_study(["disarm"], [0], other, tmp_path / "c.pt", data=data, resume=False,
                on_run=ran.append)  # fmt: skip
    assert [(r.key, r.seed) for r in ran] == [("disarm", 0)]


def test_seeds_share_minibatches_across_estimators(data):
    """Same seed, same initialisation and minibatches: the paired comparison of the study."""
    study = S.run_study(["reinforce", "rloo"], [0, 1], SMALL, data=data)
    diffs = S.paired_differences(study)
    assert list(diffs) == ["rloo"] and len(diffs["rloo"]) == 2
    rows = S.summarise(study)
    assert [r.key for r in rows] == ["reinforce", "rloo"]
    assert rows[0].samples == 6 and rows[0].evaluations == 6
    assert S.paired_differences(S.run_study(["rloo"], [0], SMALL, data=data)) == {}


@pytest.mark.parametrize(
    ("keys", "seeds", "match"),
    [(["bogus"], [0], "unknown"), (["rebar"], [0], "divisible by 3"), (["rloo"], [], "seeds")],
)
def test_bad_input_raises(keys, seeds, match, data):
    config = Config(**{**SMALL.__dict__, "samples": 4}) if keys == ["rebar"] else SMALL
    with pytest.raises(ValueError, match=match):
        S.run_study(keys, seeds, config, data=data)
