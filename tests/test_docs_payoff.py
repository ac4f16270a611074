"""docs/payoff.md: its Python blocks run, in order, and say what the page says; its payoff
module drives the command line as the page shows."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

PAGE = Path(__file__).resolve().parents[1] / "docs" / "payoff.md"

pytestmark = pytest.mark.usefixtures("one_thread")


def _blocks(info: str) -> list[str]:
    text = PAGE.read_text()
    return re.findall(rf"^```{re.escape(info)}\n(.*?)^```$", text, flags=re.S | re.M)


def test_payoff_page_code_blocks_run(capsys):
    """Every ```python block of docs/payoff.md runs in one namespace; the estimates are where
    the page says (QuantLib's values within 5 standard errors, the two estimators together)."""
    pytest.importorskip("QuantLib")
    blocks = _blocks("python")
    assert len(blocks) == 5, len(blocks)
    ns: dict = {"__name__": "payoff_md"}
    for i, code in enumerate(blocks):
        exec(compile(code, f"docs/payoff.md, python block {i + 1}", "exec"), ns)
    out = capsys.readouterr().out
    assert "does not depend differentiably" in out and "refused" in out  # the digital's errors

    def agree(a, b, k=5.0):
        return abs(a.value - b.value) < k * (a.stderr**2 + b.stderr**2) ** 0.5

    res = ns["res"]
    for g in ("delta", "vega"):
        assert agree(res.get(g, "lr"), res.get(g, "pathwise")), g
    for name in ("res_q", "res_d", "res_b", "res_w", "res_h"):
        for e in ns[name].estimates:
            assert e.reference is not None and abs(e.z) < 5.0, (name, e.greek, e.method, e.z)
    assert sorted(ns["res_d"].refused["delta"]) == ["pathwise"]
    assert agree(ns["res_hl"].get("vega", "lr"), ns["res_hl"].get("vega", "pathwise"))


def test_payoff_page_module_runs_from_the_command_line(tmp_path, monkeypatch, capsys):
    """The page's ``my_payoffs.py`` given to ``stochgrad greeks --payoff-fn`` as the page shows."""
    from stochgrad.cli import main

    (module,) = _blocks('python title="my_payoffs.py"')
    name = f"my_payoffs_{tmp_path.name.replace('-', '_')}"  # one module name per test run
    (tmp_path / f"{name}.py").write_text(module)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    out = tmp_path / "lookback"
    argv = ["greeks", "--payoff-fn", f"{name}:lookback", "--steps", "12", "--paths", "20000"]
    assert main([*argv, "--out", str(out)]) == 0
    data = json.loads((out / "greeks.json").read_text())
    est = {(e["greek"], e["method"]): e for e in data["estimates"]}
    lr, pw = est[("delta", "lr")], est[("delta", "pathwise")]
    assert abs(lr["value"] - pw["value"]) < 5 * (lr["stderr"] ** 2 + pw["stderr"] ** 2) ** 0.5
    assert main(["greeks", "--payoff-fn", f"{name}:digital", "--out", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--not-lipschitz" in err[0]
    argv = ["greeks", "--payoff-fn", f"{name}.py:digital", "--not-lipschitz", "--paths", "5000"]
    assert main([*argv, "--out", str(tmp_path / "d")]) == 0
