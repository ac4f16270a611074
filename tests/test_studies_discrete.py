"""The RELAX toy study: closed forms, Adam, probes, the CLI, checkpoint and resume."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import stochgrad as sg
from stochgrad import cli
from stochgrad.studies import relax_toy as SD

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TINY = ["--iterations", "50", "--seeds", "2", "--probe-every", "10", "--probe-samples", "200",
        "--half-samples", "1000", "--warmup", "20"]  # fmt: skip


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


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


def test_scalar_adam_matches_torch_adam():
    grads = torch.randn(300, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    grads = grads * torch.logspace(-1, -6, 300, dtype=torch.float64)  # tiny late gradients too
    p = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([p], lr=0.01)
    mine = SD.ScalarAdam(0.0, lr=0.01)
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
    spec = SD.ESTIMATORS[key]
    fn = spec.make(0, SD.Config())
    v = SD.step_variance(spec, fn, SD.toy_f, 0.0, 4000, torch.Generator().manual_seed(1))
    assert v == pytest.approx(expected, rel=0.1, abs=1e-20)


@pytest.mark.skipif(not _relaxed_available(), reason="stochgrad.estimators.relaxed not available")
def test_probes_do_not_change_a_stateful_run():
    """RELAX is probed on a copy with its own stream: the trajectory ignores the probe schedule."""
    a = SD.run_one("relax", 3, SD.Config(iterations=20, probe_every=4, warmup=0, half_samples=50))
    b = SD.run_one("relax", 3, SD.Config(iterations=20, probe_every=20, warmup=0, half_samples=50))
    np.testing.assert_array_equal(a.theta, b.theta)
    assert a.probe_variance.size == 6 and b.probe_variance.size == 2


# ---------------------------------------------------------------------------------------------
# the CLI: tiny run, table, files, resume
# ---------------------------------------------------------------------------------------------
def test_cli_tiny_run(tmp_path, capsys):
    out = tmp_path / "toy" / "relax_toy.png"
    assert cli.main(["relax-toy", *TINY, "--out", str(out)]) == 0
    text = capsys.readouterr().out
    data = out.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 10_000
    results = json.loads(out.with_suffix(".json").read_text())
    rows = {r["key"]: r for r in results["summary"]}
    ran = [k for k in SD.DEFAULT_ESTIMATORS if SD.availability(k) is None]
    assert list(rows) == ran
    for header in ("final θ", "final loss", "mean ln Var", "Var at θ = ½", "ratio to REINFORCE"):
        assert header in text
    assert str(out) in text.replace("\n", "")
    # DisARM is exact at theta = 1/2 and REINFORCE is not.
    assert rows["disarm"]["variance_half"] < rows["reinforce"]["variance_half"]
    assert rows["disarm"]["ratio_half"] < 1.0
    assert rows["reinforce"]["ratio_half"] == pytest.approx(1.0)
    if "relax" in rows:
        assert rows["relax"]["variance_half"] < rows["reinforce"]["variance_half"]
    else:
        assert "skipping RELAX" in text
    # The exact-gradient runs: theta falls at every step.
    ckpt = SD.Checkpoint(out.with_name("relax_toy_checkpoint.pt"), SD.Config())
    with pytest.raises(ValueError, match="other settings"):
        ckpt.load()  # made with the tiny settings
    exact = results["estimators"]["exact"]["runs"]
    assert len(exact) == 2
    for run in exact:
        assert np.all(np.diff(run["theta"]) < 0)
    assert len(results["estimators"]["disarm"]["curves"]["probe_iterations"]) == 6


def test_resume_skips_finished_runs(tmp_path, capsys, monkeypatch):
    out = tmp_path / "r.png"
    argv = ["relax-toy", *TINY, "--estimators", "exact,disarm", "--out", str(out)]
    assert cli.main(argv) == 0
    first = json.loads(out.with_suffix(".json").read_text())
    capsys.readouterr()

    calls = []
    real = SD.run_one

    def counting(key, seed, config, progress=None):
        calls.append((key, seed))
        return real(key, seed, config, progress)

    monkeypatch.setattr(SD, "run_one", counting)
    assert cli.main([*argv, "--resume"]) == 0
    assert calls == []
    assert "resumed: 4 finished run(s)" in capsys.readouterr().out
    again = json.loads(out.with_suffix(".json").read_text())
    assert again["summary"] == first["summary"]

    # One more seed: only its runs are done.
    assert cli.main([*argv, "--resume", "--seeds", "3"]) == 0  # the last --seeds wins
    assert sorted(calls) == [("disarm", 2), ("exact", 2)]

    # Without --resume the study starts afresh.
    calls.clear()
    assert cli.main(argv) == 0
    assert len(calls) == 4

    # Other settings: refuse to mix runs.
    capsys.readouterr()
    assert cli.main([*argv, "--resume", "--probe-every", "5"]) == 2
    assert "other settings" in capsys.readouterr().out


def test_unavailable_estimators_are_skipped_with_a_message(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(SD, "RELAXED_MODULE", "stochgrad.estimators.no_such_module")
    out = tmp_path / "s.png"
    argv = ["relax-toy", *TINY, "--estimators", "reinforce,rebar,relax", "--out", str(out)]
    assert cli.main(argv) == 0
    text = capsys.readouterr().out
    assert "skipping REBAR" in text and "skipping RELAX" in text
    assert "no_such_module" in text
    results = json.loads(out.with_suffix(".json").read_text())
    assert [r["key"] for r in results["summary"]] == ["reinforce"]
    assert set(results["skipped"]) == {"rebar", "relax"}


def test_bad_estimator_name_is_refused(capsys):
    assert cli.main(["relax-toy", "--estimators", "exact,nope"]) == 2
    assert "nope" in capsys.readouterr().err
