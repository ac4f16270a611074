"""The runnable examples of the documentation run, and do what their pages say."""

from __future__ import annotations

import importlib.util
import re
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


def test_engine_page_code_blocks_run(capsys):
    """Every ```python block of docs/engine.md runs, in order, in one namespace, and its
    estimates are where the page says (within 5 standard errors)."""
    page = (EXAMPLES.parent / "engine.md").read_text()
    blocks = re.findall(r"^```python\n(.*?)^```$", page, flags=re.S | re.M)
    assert len(blocks) == 6, len(blocks)
    ns: dict = {"__name__": "engine_md"}
    for i, code in enumerate(blocks):
        exec(compile(code, f"docs/engine.md, python block {i + 1}", "exec"), ns)
    assert "tensor(" in capsys.readouterr().out  # each block prints its estimates

    def within(est, truth, k=5.0):
        return bool(((est.grad - truth).abs() < k * est.stderr).all())

    torch = ns["torch"]
    assert within(ns["bandit_est"], torch.tensor([-0.1, 0.0, 0.1]))
    per_context = torch.tensor([[-0.05, 0.0, 0.05], [0.05, 0.0, -0.05]])
    assert within(ns["ips"], per_context) and within(ns["snips_est"], per_context)
    lr, pw = ns["greeks"]["score_function"], ns["greeks"]["pathwise"]
    for a, b, sa, sb in zip(lr.grad, pw.grad, lr.stderr, pw.stderr, strict=True):
        assert abs(float(a - b)) < 5 * float((sa**2 + sb**2).sqrt())  # the two Greeks agree
    sampled, exact = ns["sampled"], ns["exact"]
    for est_part, exact_part, se in zip(sampled.grad, exact.grad, sampled.stderr, strict=True):
        assert bool(((est_part - exact_part).abs() < 5 * se + 1e-12).all())
    assert within(ns["latent"], torch.tensor(0.35, dtype=torch.float64))
