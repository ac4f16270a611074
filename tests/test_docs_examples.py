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


def test_train_router_learns_the_routing():
    """docs/examples/train_router.py: the test error of the greedy route falls well below where
    it started and below the best single line (what one expert alone can do)."""
    example = _load("train_router")
    log = example.train(steps=150, advantage="loo", seed=0, diagnose_every=50)
    start = log[0]["test_error"]
    end = sum(e["test_error"] for e in log[-10:]) / 10
    reference = example.reference_error(seed=0)
    assert end < start / 3 and end < reference / 1.5, (start, end, reference)
    diagnosed = [e for e in log if "snr" in e]
    assert len(diagnosed) == 3 and all(e["snr"] > 0 and e["noise_ratio"] > 0 for e in diagnosed)


def test_train_router_command_line_errors(capsys):
    example = _load("train_router")
    for argv in (["--steps", "5"], ["--advantage", "bogus"], ["--figure", "/no/such/dir/a.png"]):
        with pytest.raises(SystemExit) as exit_info:
            example.main(argv)
        assert exit_info.value.code == 2
        assert "error:" in capsys.readouterr().err


def test_training_page_code_blocks_run(capsys):
    """Every ```python block of docs/training.md runs, in order, in one namespace: the loop
    lowers the test error, and the estimator's draws are the samples it reports."""
    page = (EXAMPLES.parent / "training.md").read_text()
    blocks = re.findall(r"^```python\n(.*?)^```$", page, flags=re.S | re.M)
    assert len(blocks) == 4, len(blocks)
    ns: dict = {"__name__": "training_md"}
    exec(compile(blocks[0], "docs/training.md, python block 1", "exec"), ns)
    before = ns["test_error"]()
    for i, code in enumerate(blocks[1:], start=2):
        exec(compile(code, f"docs/training.md, python block {i}", "exec"), ns)
    assert "SNR" in capsys.readouterr().out
    assert ns["test_error"]() < before / 3
    est, coarse = ns["est"], ns["coarse"]
    assert est.samples.shape == (4, 64) and coarse.info["batch_means"] == 16
    torch = ns["torch"]
    assert torch.equal(ns["choice"], est.samples.T)


def test_estimator_memory_cases_agree():
    """docs/examples/estimator_memory.py on a small network: the four cases estimate the same
    gradient (the same draws for the two estimator cases and for the two surrogate cases)."""
    example = _load("estimator_memory")
    import torch

    per, batched = (example.estimate(c, hidden=8) for c in example.CASES[:2])
    s_per, s_batched = (example.estimate(c, hidden=8) for c in example.CASES[2:])
    for a, b in zip(per.grad + s_per.grad, batched.grad + s_batched.grad, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-6)
    assert per.per_sample[0].shape[0] == 64 and batched.per_sample[0].shape[0] == 8
