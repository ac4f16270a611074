"""The Greeks study: the settings, QuantLib's reference, and resuming by chunk of paths."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from stochgrad.apps.finance import Heston, Market, Option, estimate_greeks, quantlib_reference
from stochgrad.checkpoint import CheckpointMismatch
from stochgrad.studies.greeks import GreeksConfig, default_steps, greeks_study

pytestmark = pytest.mark.usefixtures("one_thread")


def _numbers(res) -> list[tuple]:
    return [(e.greek, e.method, e.value, e.stderr, e.std) for e in res.estimates]


def test_config_builds_the_option_market_and_model():
    cfg = GreeksConfig(payoff="asian", spot=90.0, vol=0.3, maturity=0.5)
    assert cfg.steps == 12 == default_steps("asian")
    assert cfg.option() == Option("asian", 100.0, steps=12)
    assert cfg.market() == Market(90.0, 0.3, 0.05, 0.5)
    assert cfg.heston() is None
    h = GreeksConfig(model="heston", vol=0.25, steps=8).heston()
    assert h == Heston(0.0625, 1.5, 0.04, 0.5, -0.7)  # v0 = vol^2 by default
    assert GreeksConfig(payoff="barrier", monitoring="discrete").steps == 250
    # what a checkpoint is compared on: only settings that change the numbers
    s = GreeksConfig(payoff="call", barrier=130.0).settings()
    assert "barrier" not in s and "v0" not in s and s["steps"] == 1 and s["vol"] == 0.2
    s = GreeksConfig(payoff="barrier", model="gbm").settings()
    assert s["barrier"] == 120.0 and s["monitoring"] == "bridge"
    # the dividend yield reaches the market, and the settings only when there is one
    assert GreeksConfig(dividend=0.03).market() == Market(100.0, 0.2, 0.05, 1.0, dividend=0.03)
    assert GreeksConfig(dividend=0.03).settings()["dividend"] == 0.03
    assert "dividend" not in GreeksConfig().settings()


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"vol": -0.2}, ValueError, "vol must be > 0"),
        ({"maturity": -1.0}, ValueError, "maturity must be > 0"),
        ({"strike": -5.0}, ValueError, "strike must be > 0"),
        ({"spot": 0.0}, ValueError, "spot must be > 0"),
        ({"payoff": "lookback"}, ValueError, "payoff must be one of"),
        ({"model": "sabr"}, ValueError, "model must be one of"),
        ({"paths": 0}, ValueError, "paths must be >= 1"),
        ({"paths": 2.5}, TypeError, "paths must be an int"),
        ({"chunk": 0}, ValueError, "chunk must be >= 1"),
        ({"seed": -1}, ValueError, "seed must be >= 0"),
        ({"rate": float("nan")}, ValueError, "rate must be finite"),
        ({"dividend": float("inf")}, ValueError, "dividend must be finite"),
        ({"payoff": "barrier", "barrier": 90.0}, ValueError, "barrier must exceed strike"),
        ({"payoff": "barrier", "model": "heston"}, ValueError, "use model 'gbm'"),
        ({"model": "heston", "rho": 1.0}, ValueError, "rho must be < 1"),
        ({"model": "heston", "v0": -0.1}, ValueError, "v0 must be > 0"),
    ],
)
def test_bad_settings_raise_naming_the_setting(kwargs, error, match):
    with pytest.raises(error, match=match):
        GreeksConfig(**kwargs)


def test_study_is_estimate_greeks_with_quantlib_attached():
    pytest.importorskip("QuantLib")
    cfg = GreeksConfig(payoff="put", strike=105.0, paths=20_000, chunk=6000, seed=7)
    study = greeks_study(cfg)
    ref = quantlib_reference(Option("put", 105.0), Market(100.0, 0.2, 0.05, 1.0))
    direct = estimate_greeks(cfg.option(), cfg.market(), 20_000, seed=7, chunk_size=6000)
    assert _numbers(study.result) == _numbers(direct)
    assert study.reference == ref and study.quantlib and study.resumed_paths == 0
    for e in study.result.estimates:
        assert e.reference == ref[e.greek]
        assert abs(e.z) < 4.0, (e.greek, e.method, e.z)


def test_heston_and_float32_settings_reach_the_estimator():
    cfg = GreeksConfig(model="heston", steps=4, paths=600, chunk=300, float32=True)
    study = greeks_study(cfg)
    direct = estimate_greeks(
        cfg.option(),
        cfg.market(),
        600,
        heston=cfg.heston(),
        seed=0,
        chunk_size=300,
        dtype=torch.float32,
    )
    assert _numbers(study.result) == _numbers(direct)
    assert study.result.dtype == "float32" and study.result.heston == cfg.heston()
    assert "lr" in study.result.refused["rho"] and "vega" not in study.result.refused


def test_interrupted_study_resumes_at_the_next_chunk_with_the_same_numbers(tmp_path):
    cfg = GreeksConfig(payoff="asian", steps=3, paths=5000, chunk=1000, seed=4)
    whole = greeks_study(cfg)
    ckpt = tmp_path / "greeks_checkpoint.pt"
    advanced = []

    def stop(n):
        advanced.append(n)
        if len(advanced) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        greeks_study(cfg, checkpoint=ckpt, progress=stop)
    found, advanced = [], []
    again = greeks_study(cfg, checkpoint=ckpt, progress=advanced.append, on_resume=lambda *a:
                         found.append(a))  # fmt: skip
    assert found == [(2000, 5000)] and advanced[0] == 2000 and sum(advanced) == 5000
    assert again.resumed_paths == 2000
    assert _numbers(again.result) == _numbers(whole.result)
    # finished: a rerun computes nothing and says so
    found, advanced = [], []
    done = greeks_study(cfg, checkpoint=ckpt, progress=advanced.append, on_resume=lambda *a:
                        found.append(a))  # fmt: skip
    assert found == [(5000, 5000)] and advanced == [5000]
    assert _numbers(done.result) == _numbers(whole.result)
    # other settings are refused, naming the difference; resume=False starts afresh
    other = GreeksConfig(payoff="asian", steps=3, paths=6000, chunk=1000, seed=4)
    with pytest.raises(CheckpointMismatch, match="paths: 5000 saved, 6000 now"):
        greeks_study(other, checkpoint=ckpt)
    fresh = greeks_study(other, checkpoint=ckpt, resume=False)
    assert fresh.resumed_paths == 0 and fresh.result.num_paths == 6000


def test_without_quantlib_the_study_runs_without_references(monkeypatch):
    import stochgrad.studies.greeks as G

    def missing(*args):
        raise ImportError("No module named 'QuantLib'")

    monkeypatch.setattr(G, "quantlib_reference", missing)
    study = G.greeks_study(GreeksConfig(paths=100, chunk=50))
    assert not study.quantlib and study.reference == {}
    assert all(e.reference is None and math.isnan(e.z) for e in study.result.estimates)
    assert np.isfinite([e.value for e in study.result.estimates]).all()
