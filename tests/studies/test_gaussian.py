"""The Gaussian variance studies on the scaffold: closed forms, resumed runs, bad settings."""

from __future__ import annotations

import numpy as np
import pytest

from stochgrad.studies.gaussian import (
    CompareConfig,
    DemoConfig,
    compare_study,
    demo_cells,
    demo_study,
)
from stochgrad.studies.variance import VARIANCE_ESTIMATORS, quadratic_variance

pytestmark = pytest.mark.usefixtures("one_thread")


def test_demo_cells_match_the_closed_forms_within_their_standard_errors():
    cfg = DemoConfig(samples=20_000, deltas=(1.0,), sigmas=(0.5, 2.0))
    res = demo_study(cfg)
    assert len(res.cells) == demo_cells(cfg) == 2 * len(VARIANCE_ESTIMATORS)
    for c in res.cells:
        closed = quadratic_variance(c.estimator, c.delta, c.sigma, num_samples=cfg.samples)
        assert c.closed == closed
        for i in (0, 1):
            if abs(closed[i]) > 1e-12:
                assert abs(c.z(i)) < 5, (c.estimator, c.delta, c.sigma, i, c.z(i))
    # the plot's sweep reuses the table's cells at plot_delta = 1
    assert set(res.measured) == set(VARIANCE_ESTIMATORS)
    assert res.measured["pathwise"].shape == (2, 2)


def test_demo_resumed_equals_uninterrupted(tmp_path):
    cfg = DemoConfig(samples=500, deltas=(0.0,), sigmas=(1.0,), plot_delta=2.0)
    ref = demo_study(cfg)
    ckpt = tmp_path / "c.pt"
    done = []

    def stop_after_three(n):
        done.append(n)
        if len(done) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        demo_study(cfg, checkpoint=ckpt, progress=stop_after_three)
    found = []
    res = demo_study(cfg, checkpoint=ckpt, on_resume=lambda a, b: found.append((a, b)))
    assert found == [(3, 0)] and res.resumed == 3
    for a, b in zip(res.cells, ref.cells, strict=True):
        np.testing.assert_array_equal(a.variance, b.variance)
        np.testing.assert_array_equal(a.grad, b.grad)


def test_compare_study_small():
    res = compare_study(CompareConfig(samples=4000, points=2))
    assert len(res.cells) == 3 * 2 * 4
    zs = [abs(c.z(i)) for c in res.cells for i in (0, 1) if not np.isnan(c.z(i))]
    assert zs and max(zs) < 6


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"samples": 1}, ValueError, "samples must be >= 2"),
        ({"samples": 2.5}, TypeError, "samples must be an int"),
        ({"sigmas": (0.0,)}, ValueError, "sigmas must be > 0"),
        ({"deltas": ()}, ValueError, "deltas and sigmas"),
        ({"target": float("nan")}, ValueError, "target must be finite"),
        ({"seed": -1}, ValueError, "seed must be >= 0"),
    ],
)
def test_demo_config_refuses_bad_settings(kwargs, error, match):
    with pytest.raises(error, match=match):
        DemoConfig(**kwargs)


def test_compare_config_refuses_bad_settings():
    with pytest.raises(ValueError, match="sigma must be > 0"):
        CompareConfig(sigma=0.0)
    with pytest.raises(ValueError, match="points must be >= 1"):
        CompareConfig(points=0)
