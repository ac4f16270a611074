"""The RELAX toy study: closed forms, Adam, probes, the grid of runs, checkpoint and resume."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import stochgrad as sg
from stochgrad._optim import Adam
from stochgrad.checkpoint import CheckpointMismatch
from stochgrad.studies import relax_toy as SD
from stochgrad.studies.scaffold import stream_generator

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = SD.Config(iterations=30, probe_every=10, probe_samples=100, half_samples=200, warmup=5)


def _relaxed_available() -> bool:
    return SD.availability("relax") is None


# ---------------------------------------------------------------------------------------------
# the problem's closed forms and the optimiser
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("logit", [-2.5, 0.0, 1.3])
def test_closed_forms_match_enumeration(logit):
    x = torch.tensor(logit, dtype=torch.float64)
    exact = sg.exact_gradient(SD.toy_f, SD.toy_dist, x)
    assert SD.exact_logit_gradient(logit) == pytest.approx(float(exact), rel=1e-12)
    theta = float(torch.sigmoid(x))
    enumerated = theta * SD.toy_f(torch.tensor(1.0)) + (1 - theta) * SD.toy_f(torch.tensor(0.0))
    assert SD.exact_loss(theta) == pytest.approx(float(enumerated), rel=1e-7)


def test_the_toys_adam_matches_torch_adam():
    """The study's optimiser (stochgrad._optim.Adam on a float, lr 0.01) is torch's Adam."""
    grads = torch.randn(300, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    grads = grads * torch.logspace(-1, -6, 300, dtype=torch.float64)  # tiny late gradients too
    p = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([p], lr=0.01)
    mine = Adam(0.0, lr=0.01)
    for g in grads:
        p.grad = g.clone()
        opt.step()
        x = mine.step(float(g))
        assert x == pytest.approx(float(p.detach()), rel=1e-12, abs=1e-15)


def test_exact_run_is_adam_on_the_closed_form_and_theta_decreases():
    """The exact-gradient run = torch Adam on autograd of the exact loss; theta falls monotonically."""
    run = SD.run_one("exact", 0, SD.Config(iterations=600, probe_every=600))
    assert bool((np.diff(run.theta) < 0).all())
    logit = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([logit], lr=0.01)
    reference = [0.5]
    for _ in range(600):
        opt.zero_grad()
        SD.exact_loss(torch.sigmoid(logit)).backward()
        opt.step()
        reference.append(float(torch.sigmoid(logit.detach())))
    np.testing.assert_allclose(run.theta, reference, rtol=1e-9)
    np.testing.assert_allclose(run.loss, SD.exact_loss(np.array(reference)), rtol=1e-12)
    assert run.first_below(0.05) is not None and run.first_below(0.05) < 600
    assert run.evaluations == 0 and run.variance_half == 0.0


def test_exact_run_gives_the_published_row():
    """docs/relax_toy.md: the exact gradient reaches theta < 0.05 at iteration 449 and ends at
    theta = 0.0005 after 5000 iterations (every seed: it draws nothing)."""
    run = SD.run_one("exact", 0, SD.Config(probe_every=5000, half_samples=2))
    assert run.first_below(SD.THRESHOLD) == 449
    assert f"{run.theta[-1]:.4f}" == "0.0005"


# ---------------------------------------------------------------------------------------------
# the variance probes against closed forms at theta = 1/2
# ---------------------------------------------------------------------------------------------
T = SD.TARGET
G_HALF = 0.25 * ((1 - T) ** 2 - T**2)


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        # f(b) (b - 1/2): E[f^2 s^2] - g^2
        ("reinforce", ((1 - T) ** 4 + T**4) / 8 - G_HALF**2),
        # 2-sample RLOO: (f1 - f2)(s1 - s2)/2 is 2 G_HALF or 0 with probability 1/2 each
        ("rloo", G_HALF**2),
        ("disarm", 0.0),
    ],
)
def test_step_variance_at_half(key, expected):
    spec = SD.TOY_ESTIMATORS[key]
    fn = spec.make(0, SD.Config())
    v = SD.step_variance(spec, fn, SD.toy_f, 0.0, 4000, torch.Generator().manual_seed(1))
    assert v == pytest.approx(expected, rel=0.1, abs=1e-20)


@pytest.mark.skipif(not _relaxed_available(), reason="stochgrad.estimators has no Relax")
def test_probes_do_not_change_a_stateful_run():
    """RELAX is probed on a copy with its own stream: the trajectory ignores the probe schedule."""
    a = SD.run_one("relax", 3, SD.Config(iterations=20, probe_every=4, warmup=0, half_samples=50))
    b = SD.run_one("relax", 3, SD.Config(iterations=20, probe_every=20, warmup=0, half_samples=50))
    np.testing.assert_array_equal(a.theta, b.theta)
    assert a.probe_variance.size == 6 and b.probe_variance.size == 2


# ---------------------------------------------------------------------------------------------
# the study: a grid of (estimator, seed) runs on the scaffold
# ---------------------------------------------------------------------------------------------
def _same_runs(a: SD.Study, b: SD.Study) -> None:
    assert a.runs.keys() == b.runs.keys()
    for cell, run in a.runs.items():
        other = b.runs[cell]
        np.testing.assert_array_equal(run.theta, other.theta)
        np.testing.assert_array_equal(run.probe_variance, other.probe_variance)
        assert run.variance_half == other.variance_half


def test_interrupted_study_resumes_to_the_numbers_of_an_uninterrupted_one(tmp_path):
    keys, seeds = ["reinforce", "disarm"], [0, 1]
    full = SD.run_study(keys, seeds, TINY)
    path = tmp_path / "toy.pt"

    def interrupt(n: int) -> None:  # Ctrl-C once the first run is saved
        if path.exists():
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        SD.run_study(keys, seeds, TINY, path, progress=interrupt)
    found, ran = [], []
    again = SD.run_study(keys, seeds, TINY, path, on_resume=lambda f, p: found.append((f, p)),
                         on_run=ran.append)  # fmt: skip
    assert found == [(1, 0)] and again.resumed == 1 and len(ran) == 3
    _same_runs(full, again)
    # finished: a rerun loads everything and runs nothing
    ran.clear()
    done = SD.run_study(keys, seeds, TINY, path, on_run=ran.append)
    assert ran == [] and done.resumed == 4
    _same_runs(full, done)
    # resume=False starts afresh
    SD.run_study(keys, seeds, TINY, path, resume=False, on_run=ran.append)
    assert len(ran) == 4


def test_a_new_seed_runs_only_its_cells_and_other_settings_are_refused(tmp_path):
    path = tmp_path / "toy.pt"
    SD.run_study(["exact", "disarm"], [0], TINY, path)
    ran = []
    study = SD.run_study(["exact", "disarm"], [0, 1], TINY, path, on_run=ran.append)
    assert sorted((r.key, r.seed) for r in ran) == [("disarm", 1), ("exact", 1)]
    assert study.resumed == 2
    other = SD.Config(**{**TINY.__dict__, "probe_every": 5})
    with pytest.raises(CheckpointMismatch, match="probe_every: 10 saved, 5 now"):
        SD.run_study(["exact"], [0], other, path)


def test_progress_counts_every_iteration_once(tmp_path):
    path = tmp_path / "toy.pt"
    seen = []
    SD.run_study(["exact", "reinforce"], [0], TINY, path, progress=seen.append)
    assert sum(seen) == 2 * TINY.iterations
    seen.clear()
    SD.run_study(["exact", "reinforce"], [0, 1], TINY, path, progress=seen.append)
    assert seen.count(TINY.iterations) == 2  # each resumed run at once; new ones step by step
    assert sum(seen) == 4 * TINY.iterations


def test_unavailable_estimators_are_skipped(monkeypatch):
    monkeypatch.setattr(SD, "RELAXED_MODULE", "stochgrad.estimators.no_such_module")
    study = SD.run_study(["reinforce", "rebar", "relax"], [0], TINY)
    assert study.keys == ["reinforce"] and set(study.skipped) == {"rebar", "relax"}
    assert "no_such_module" in study.skipped["rebar"]


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: SD.run_study(["exact", "nope"], [0], TINY), ValueError, "unknown"),
        (lambda: SD.run_study(["exact"], [], TINY), ValueError, "seeds"),
        (lambda: SD.run_study(["exact"], [-1], TINY), ValueError, "seeds"),
        (lambda: SD.Config(iterations=0), ValueError, "iterations must be >= 1"),
        (lambda: SD.Config(warmup=-1), ValueError, "warmup"),
        (lambda: SD.Config(lr=0.0), ValueError, "lr"),
        (lambda: SD.Config(iterations=2.5), TypeError, "iterations"),
    ],
)
def test_bad_input_raises(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_renamed_names_still_work_with_a_warning():
    with pytest.warns(DeprecationWarning, match="TOY_ESTIMATORS"):
        assert SD.ESTIMATORS is SD.TOY_ESTIMATORS
    with pytest.warns(DeprecationWarning, match="stream_generator"):
        old = SD.run_generator
    assert old is stream_generator
    with pytest.raises(AttributeError):
        SD.no_such_name  # noqa: B018
