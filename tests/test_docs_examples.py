"""The runnable examples of the documentation run, and do what their pages say."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "docs" / "examples"

pytestmark = pytest.mark.usefixtures("one_thread")


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_categorical_choice_trains_a_router():
    example = _load("categorical_choice")
    log = example.train(steps=120, advantage="loo", seed=0)
    start = log[0]["accuracy"]
    end = sum(e["accuracy"] for e in log[-20:]) / 20
    assert start < 0.4 and end > 0.8, (start, end)  # chance is 1/5
    assert all(e["snr"] > 0 for e in log if "snr" in e)
