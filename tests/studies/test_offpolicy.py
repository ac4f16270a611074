"""Tests of the off-policy studies: the learners over seeds, and the confounding demonstration."""

from __future__ import annotations

import numpy as np
import pytest

from stochgrad.checkpoint import CheckpointMismatch
from stochgrad.studies.offpolicy import (
    ConfoundingConfig,
    LearnersConfig,
    confounding_demonstration,
    confounding_study,
    learner_run,
    learners_study,
    run_study,
)

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = LearnersConfig(
    rounds=300, test_rounds=200, iterations=5, seeds=(0, 1), learners=("ips", "dm")
)


def test_confounding_biases_ips_and_observing_u_removes_it() -> None:
    res = confounding_demonstration(100_000, seed=1)
    assert res.max_abs_z["observed"] < 5
    assert res.max_abs_z["hidden"] > 8
    # the value is biased upwards too (the logger picks the first half when it pays more)
    assert res.hidden_value - res.true_value > 5 * res.hidden_value_stderr
    assert abs(res.observed_value - res.true_value) < 5 * res.observed_value_stderr
    # z is (estimate - truth) / stderr
    np.testing.assert_allclose(
        res.hidden_z, (res.hidden - res.true) / res.hidden_stderr, rtol=1e-12
    )
    # read as the dict of earlier releases
    assert res["max_abs_z"]["hidden"] == res.max_abs_z["hidden"]
    assert res["rounds"] == 100_000
    with pytest.raises(KeyError):
        res["nope"]


def test_confounding_values_are_the_ips_gradients_value_estimates() -> None:
    """The demonstration's IPS values average the weights its gradients used (one computation),
    replayed by hand: w = pi_theta(a|x) / pi0, value = mean(w r), stderr = sd(w r) / sqrt(n)."""
    import torch

    from stochgrad.apps.offpolicy import ConfoundedBandit, ips_gradient, policy_probs

    n = 3000
    res = confounding_demonstration(n, seed=2)
    theta = 0.5 * torch.randn(
        10, 6, generator=torch.Generator().manual_seed(2), dtype=torch.float64
    )
    data = ConfoundedBandit().sample(n, generator=np.random.default_rng([2, 3]))
    lg = data.logged
    pi = policy_probs(theta, lg.contexts)[torch.arange(n), lg.actions]
    for case, prop in (("observed", data.propensities_given_u), ("hidden", lg.propensities)):
        vals = (pi / prop * lg.rewards).numpy()
        assert res[f"{case}_value"] == pytest.approx(vals.mean(), rel=1e-13)
        assert res[f"{case}_value_stderr"] == pytest.approx(
            vals.std(ddof=1) / np.sqrt(n), rel=1e-12
        )
        est = ips_gradient(theta, lg.contexts, lg.actions, lg.rewards, prop)
        assert res[f"{case}_value"] == pytest.approx(est.info["value"], rel=1e-15)
        np.testing.assert_array_equal(res[case], est.grad.numpy())


def test_confounding_study_over_seeds_resumes(tmp_path) -> None:
    cfg = ConfoundingConfig(rounds=2000, seeds=(0, 1, 2))
    full = confounding_study(cfg)
    assert [d.seed for d in full.demos] == [0, 1, 2]
    direct = confounding_demonstration(2000, seed=1)
    np.testing.assert_array_equal(full.demos[1].hidden, direct.hidden)
    ckpt = tmp_path / "c.pt"
    with pytest.raises(KeyboardInterrupt):
        confounding_study(cfg, checkpoint=ckpt, progress=_stop_after(1))
    resumed = confounding_study(cfg, checkpoint=ckpt)
    assert resumed.resumed == 1
    for a, b in zip(resumed.demos, full.demos, strict=True):
        np.testing.assert_array_equal(a.hidden_z, b.hidden_z)
        assert a.true_value == b.true_value
    with pytest.raises(CheckpointMismatch, match="rounds: 2000 saved, 2001 now"):
        confounding_study(ConfoundingConfig(rounds=2001), checkpoint=ckpt)


def _stop_after(n: int):
    seen = []

    def advance(k: int = 1) -> None:
        seen.append(k)
        if len(seen) == n:
            raise KeyboardInterrupt

    return advance


def test_resumed_study_equals_uninterrupted(tmp_path) -> None:
    full = learners_study(TINY)
    assert full.keys == ["logging", "random", "ips", "dm"]
    ckpt = tmp_path / "b.pt"
    finished = []
    with pytest.raises(KeyboardInterrupt):
        learners_study(
            TINY,
            checkpoint=ckpt,
            progress=_stop_after(3),
            on_result=lambda key, run: finished.append(run),
        )
    redone = []
    resumed = learners_study(TINY, checkpoint=ckpt, on_result=lambda key, run: redone.append(key))
    assert resumed.value == full.value and resumed.greedy_value == full.greedy_value
    assert resumed.optimal_value == full.optimal_value
    # the three finished runs came from the checkpoint (their recorded times are unchanged)
    assert resumed.resumed == 3 and len(redone) == 5
    assert [resumed.runs[(r.key, r.seed)].seconds for r in finished] == [
        r.seconds for r in finished
    ]
    # another seed reuses the finished cells
    more = learners_study(
        LearnersConfig(rounds=300, test_rounds=200, iterations=5, seeds=(0, 1, 2),
                       learners=("ips", "dm")),
        checkpoint=ckpt,
    )  # fmt: skip
    assert more.resumed == 8 and more.value["ips"][:2] == full.value["ips"]
    with pytest.raises(CheckpointMismatch, match="rounds: 300 saved, 301 now"):
        learners_study(
            LearnersConfig(rounds=301, test_rounds=200, iterations=5, seeds=(0,)), checkpoint=ckpt
        )


def test_every_run_is_a_function_of_its_key_seed_and_settings() -> None:
    a = learner_run("snips", 3, TINY)
    b = learner_run("snips", 3, TINY)
    assert (a.value, a.greedy_value) == (b.value, b.greedy_value)
    assert 0 < a.value < 1
    with pytest.raises(ValueError, match="key must be one of"):
        learner_run("ppo", 0, TINY)


def test_the_earlier_signature_still_runs(tmp_path) -> None:
    seen = []
    res = run_study(TINY, 1, ["ips"], out_dir=tmp_path, callback=seen.append)
    assert res.seeds == [0] and res.keys == ["logging", "random", "ips"]
    assert (tmp_path / "offpolicy_checkpoint.pt").exists() and len(seen) == 3
    again = run_study(TINY, [0], ["ips"], out_dir=tmp_path)
    assert again.resumed == 3 and again.value == res.value
    assert run_study(TINY, [0], ["ips"], out_dir=tmp_path, restart=True).resumed == 0


def test_bad_config_raises() -> None:
    with pytest.raises(ValueError, match="learners must be"):
        LearnersConfig(learners=("ips", "bogus"))
    with pytest.raises(ValueError, match="learners must be"):
        LearnersConfig(learners=())
    with pytest.raises(ValueError, match="seeds must be distinct"):
        LearnersConfig(seeds=(0, 0))
    with pytest.raises(ValueError, match="seeds must be distinct"):
        ConfoundingConfig(seeds=())
    with pytest.raises(ValueError, match="rounds must be >= 2"):
        LearnersConfig(rounds=1)
    with pytest.raises(ValueError, match="lr must be > 0"):
        LearnersConfig(lr=-0.1)
    with pytest.raises(ValueError, match="rounds must be >= 2"):
        confounding_demonstration(1)
