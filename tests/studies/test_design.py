"""Tests of the EIG estimator comparison of ``stochgrad design eig``."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from stochgrad.apps.design import (
    PYRO_PRIOR_SD,
    LinearGaussianModel,
    LogisticDoseResponse,
    eig_gradient,
    nmc_eig,
)
from stochgrad.checkpoint import CheckpointMismatch
from stochgrad.studies.design import (
    EIG_COMPARISON_ESTIMATORS,
    EIGComparisonConfig,
    comparison_estimators,
    eig_comparison_study,
)
from stochgrad.studies.scaffold import cell_generator

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = EIGComparisonConfig(num_outer=40, num_inner=20, replicates=2)


def test_cells_replay_the_estimators_on_their_own_streams():
    res = eig_comparison_study(SMALL)
    assert [(c.estimator, c.replicate) for c in res.cells] == [
        (e, r) for e in EIG_COMPARISON_ESTIMATORS for r in (0, 1)
    ]
    assert res.reference_label == "closed form"
    cell = next(c for c in res.cells if c.estimator == "nmc" and c.replicate == 1)
    sd = torch.tensor(PYRO_PRIOR_SD, dtype=torch.float64)
    linear = LinearGaussianModel(torch.diag(sd**2), noise_sd=1.0)
    design = torch.tensor(res.design)
    gen = cell_generator(SMALL.seed, 1, EIG_COMPARISON_ESTIMATORS.index("nmc"))
    direct = nmc_eig(linear, design, num_outer=40, num_inner=20, generator=gen)
    assert cell.estimate.tolist() == [direct.value] and cell.stderr.tolist() == [direct.stderr]
    cell = next(c for c in res.cells if c.estimator == "pathwise" and c.replicate == 0)
    gen = cell_generator(SMALL.seed, 0, EIG_COMPARISON_ESTIMATORS.index("pathwise"))
    g = eig_gradient(linear, design, num_outer=40, num_inner=20, method="pathwise", generator=gen)
    np.testing.assert_array_equal(cell.estimate, g.grad.reshape(-1).numpy())
    assert res.reference_eig == pytest.approx(0.5 * math.log(11.0), rel=1e-12)


def test_summary_combines_the_replicates():
    res = eig_comparison_study(SMALL)
    for name in res.estimators:
        s = res.summary(name)
        cells = [c for c in res.cells if c.estimator == name]
        est = np.stack([c.estimate for c in cells])
        se = np.stack([c.stderr for c in cells])
        np.testing.assert_allclose(s.estimate, est.mean(0), rtol=1e-14)
        np.testing.assert_allclose(s.stderr, np.sqrt(se[0] ** 2 + se[1] ** 2) / 2, rtol=1e-14)
        np.testing.assert_allclose(s.z, (s.estimate - s.reference) / s.stderr, rtol=1e-12)
        np.testing.assert_allclose(s.spread, est.std(0, ddof=1) / se.mean(0), rtol=1e-12)
    assert res.summary("pce").reference.tolist() == [res.reference_eig]
    with pytest.raises(ValueError, match="not in the study"):
        res.summary("magic")


def test_estimates_agree_with_the_references_over_replicates():
    """Linear: the pathwise gradient and NMC over 3 replicates within 4 combined stderrs of the
    closed form; logistic: the score gradient against quadrature."""
    res = eig_comparison_study(EIGComparisonConfig(num_outer=800, num_inner=400, replicates=3))
    for name in ("nmc", "pathwise"):
        assert float(np.abs(res.summary(name).z).max()) < 4.0, (name, res.summary(name))
    log = eig_comparison_study(
        EIGComparisonConfig(model="logistic", doses=(0.0, 1.0), num_outer=800, num_inner=200)
    )
    assert log.estimators == ["nmc", "pce", "score"]
    ref = LogisticDoseResponse().quadrature_eig(torch.tensor([0.0, 1.0], dtype=torch.float64))
    assert log.reference_eig == pytest.approx(float(ref), rel=1e-12)
    for name in log.estimators:
        assert float(np.abs(log.summary(name).z).max()) < 4.0, (name, log.summary(name))


def test_resumed_study_equals_uninterrupted_and_extends_replicates(tmp_path):
    full = eig_comparison_study(SMALL)
    ckpt = tmp_path / "eig.pt"
    done = []

    def stop_after_three(n):
        done.append(n)
        if len(done) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        eig_comparison_study(SMALL, checkpoint=ckpt, progress=stop_after_three)
    found = []
    resumed = eig_comparison_study(
        SMALL, checkpoint=ckpt, on_resume=lambda f, p: found.append((f, p))
    )
    assert found == [(3, 0)] and resumed.resumed == 3
    for a, b in zip(resumed.cells, full.cells, strict=True):
        assert (a.estimator, a.replicate) == (b.estimator, b.replicate)
        np.testing.assert_array_equal(a.estimate, b.estimate)
        np.testing.assert_array_equal(a.stderr, b.stderr)
    more = EIGComparisonConfig(num_outer=40, num_inner=20, replicates=3)
    extended = eig_comparison_study(more, checkpoint=ckpt)
    assert extended.resumed == 8 and len(extended.cells) == 12
    with pytest.raises(CheckpointMismatch, match="num_inner: 20 saved, 21 now"):
        eig_comparison_study(
            EIGComparisonConfig(num_outer=40, num_inner=21, replicates=2), checkpoint=ckpt
        )
    fresh = eig_comparison_study(SMALL, checkpoint=ckpt, resume=False)
    assert fresh.resumed == 0


def test_doses_matter_to_the_logistic_model_only():
    a = EIGComparisonConfig(doses=(0.0,)).settings()
    b = EIGComparisonConfig(doses=(1.0, 2.0)).settings()
    assert a == b  # the linear design is fixed
    c = EIGComparisonConfig(model="logistic", doses=(0.0,)).settings()
    assert c["design"] == [0.0]
    assert comparison_estimators("logistic") == ("nmc", "pce", "score")


def test_bad_config_raises():
    with pytest.raises(ValueError, match="model must be one of"):
        EIGComparisonConfig(model="quadratic")
    with pytest.raises(ValueError, match="num_outer must be >= 2"):
        EIGComparisonConfig(num_outer=1)
    with pytest.raises(ValueError, match="replicates must be >= 1"):
        EIGComparisonConfig(replicates=0)
    with pytest.raises(ValueError, match="1 to 16 doses"):
        EIGComparisonConfig(model="logistic", doses=tuple(range(17)))
    with pytest.raises(ValueError, match="doses must be finite"):
        EIGComparisonConfig(doses=(float("nan"),))
    with pytest.raises(TypeError, match="seed must be an int"):
        EIGComparisonConfig(seed=0.5)
