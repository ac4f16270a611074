"""``stochgrad greeks``: barriers up and down, in and out, calls and puts; ``--dividend`` and
``--model heston`` vega against QuantLib; one's own payoff by ``--payoff-fn``, and its mistakes
refused in one line."""

from __future__ import annotations

import json
import sys
import textwrap

import pytest

from stochgrad.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")

PAYOFFS = textwrap.dedent(
    """
    import torch

    def lookback(x):
        return torch.relu(x[:, 1:].amax(dim=1) - 100.0)

    def ratio(x):
        return torch.relu(x[:, -1] / x[:, 0] - 1.0)

    def digital(x):
        return (x[:, -1] > 100.0).to(x.dtype)

    def column(x):
        return x[:, -1:]

    def nan(x):
        return torch.log(x[:, -1] - 100.0)

    def boom(x):
        raise RuntimeError("no market data")

    def late_boom(x):
        if x.shape[0] > 64:  # beyond the 64 paths of the check before the run
            raise KeyError("a path the check never saw")
        return torch.relu(x[:, -1] - 100.0)

    not_a_function = 3
    """
)


@pytest.fixture
def module(tmp_path, monkeypatch):
    """A payoff module in the current folder, under a name no other test imported."""
    name = f"payoffs_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(PAYOFFS)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    yield name
    sys.modules.pop(name, None)


def _data(folder) -> dict:
    return json.loads((folder / "greeks.json").read_text())


def _estimates(data: dict) -> dict:
    return {(e["greek"], e["method"]): e for e in data["estimates"]}


def _one_error_line(capsys, says: str) -> str:
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and says in err[0], err
    assert "Traceback" not in captured.err + captured.out
    return err[0]


def test_a_down_and_in_put_with_a_dividend_against_quantlib(tmp_path, capsys):
    pytest.importorskip("QuantLib")
    out = tmp_path / "b"
    argv = ["greeks", "--payoff", "barrier", "--direction", "down", "--knock", "in", "--kind",
            "put", "--barrier", "85", "--steps", "2", "--dividend", "0.03", "--paths", "30000"]  # fmt: skip
    assert main([*argv, "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "down-and-in put K=100 H=85 (bridge)" in text and "q=0.03" in text
    data = _data(out)
    assert data["option"]["direction"] == "down" and data["option"]["kind"] == "put"
    assert data["market"]["dividend"] == 0.03
    est = _estimates(data)
    assert len(est) == 9
    for e in est.values():
        assert e["reference"] is not None and abs(e["z"]) < 4.0, e


def test_heston_vega_of_a_put_with_a_dividend_against_quantlib(tmp_path):
    pytest.importorskip("QuantLib")
    out = tmp_path / "h"
    argv = ["greeks", "--payoff", "put", "--model", "heston", "--v0", "0.05", "--kappa", "2",
            "--theta", "0.04", "--xi", "0.3", "--rho", "-0.5", "--rate", "0.03", "--dividend",
            "0.02", "--maturity", "0.5", "--steps", "25", "--paths", "20000"]  # fmt: skip
    assert main([*argv, "--out", str(out)]) == 0
    est = _estimates(_data(out))
    assert {("vega", "lr"), ("vega", "pathwise")} <= set(est)
    for e in est.values():  # vega is dV/dv0 against AnalyticHestonEngine's differences in v0
        assert e["reference"] is not None and abs(e["z"]) < 4.0, e


def test_discrete_barrier_against_the_continuity_correction(tmp_path, capsys):
    pytest.importorskip("QuantLib")
    argv = ["greeks", "--payoff", "barrier", "--direction", "down", "--knock", "out",
            "--barrier", "90", "--monitoring", "discrete", "--steps", "50", "--paths", "20000"]  # fmt: skip
    assert main([*argv, "--out", str(tmp_path / "c")]) == 0
    assert main([*argv, "--continuity-correction", "--out", str(tmp_path / "k")]) == 0
    assert "(discrete, BGK)" in capsys.readouterr().out
    plain, bgk = _estimates(_data(tmp_path / "c")), _estimates(_data(tmp_path / "k"))
    assert plain[("price", "mc")]["value"] == bgk[("price", "mc")]["value"]  # the same paths
    assert abs(plain[("price", "mc")]["z"]) > 5.0  # the continuous price is another contract
    for e in bgk.values():
        assert abs(e["z"]) < 5.0, e


def test_ones_own_payoff_from_a_module_and_from_a_file(module, tmp_path, capsys):
    out = tmp_path / "lb"
    argv = ["greeks", "--payoff-fn", f"{module}:lookback", "--steps", "12", "--paths", "20000"]
    assert main([*argv, "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert f"{module}:lookback, GBM" in text and "12 steps" in text
    data = _data(out)
    assert data["config"]["payoff_fn"] == f"{module}:lookback" and data["quantlib"] == {}
    est = _estimates(data)
    for g in ("delta", "vega", "rho"):
        lr, pw = est[(g, "lr")], est[(g, "pathwise")]
        assert abs(lr["value"] - pw["value"]) < 5 * (lr["stderr"] ** 2 + pw["stderr"] ** 2) ** 0.5
    # the same function by its file: the same numbers
    file_argv = ["greeks", "--payoff-fn", f"{module}.py:lookback", "--steps", "12", "--paths",
                 "20000", "--out", str(tmp_path / "file")]  # fmt: skip
    assert main(file_argv) == 0
    assert [e["value"] for e in _data(tmp_path / "file")["estimates"]] == [
        e["value"] for e in data["estimates"]
    ]
    # under Heston: the lookback's vega dV/dv0 by both methods
    heston = ["greeks", "--payoff-fn", f"{module}:lookback", "--model", "heston", "--steps", "8",
              "--paths", "4000", "--out", str(tmp_path / "heston")]  # fmt: skip
    assert main(heston) == 0
    assert "Heston" in capsys.readouterr().out
    est = _estimates(_data(tmp_path / "heston"))
    lr, pw = est[("vega", "lr")], est[("vega", "pathwise")]
    assert abs(lr["value"] - pw["value"]) < 5 * (lr["stderr"] ** 2 + pw["stderr"] ** 2) ** 0.5


def test_flags_reach_the_payoff_and_the_refusals(module, tmp_path, capsys):
    argv = ["greeks", "--payoff-fn", f"{module}:digital", "--not-lipschitz", "--paths", "5000"]
    assert main([*argv, "--out", str(tmp_path / "d")]) == 0
    data = _data(tmp_path / "d")
    assert {e["method"] for e in data["estimates"]} == {"mc", "lr"}
    assert "pathwise" in data["refused"]["delta"] and data["option"]["pathwise_ok"] is False
    argv = ["greeks", "--payoff-fn", f"{module}:ratio", "--reads-spot", "--paths", "20000"]
    assert main([*argv, "--out", str(tmp_path / "r")]) == 0
    est = _estimates(_data(tmp_path / "r"))
    for m in ("lr", "pathwise"):  # (S_T / S0 - 1)^+ does not move with S0: delta 0
        assert abs(est[("delta", m)]["value"]) < 5 * est[("delta", m)]["stderr"] + 1e-12, m
    assert est[("delta", "lr")]["stderr"] > 1e-5  # (pathwise: 0 on every path, to rounding)
    capsys.readouterr()


def test_rerun_resumes_and_an_edited_payoff_is_refused(module, tmp_path, capsys):
    out = tmp_path / "p"
    argv = ["greeks", "--payoff-fn", f"{module}:lookback", "--steps", "4", "--paths", "3000",
            "--chunk", "1000", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    assert main(argv) == 0
    assert "resumedfrom" in "".join(capsys.readouterr().out.split())
    path = tmp_path / f"{module}.py"
    path.write_text(path.read_text() + "\n# edited\n")
    assert main(argv) == 2
    line = _one_error_line(capsys, "other settings")
    assert "payoff_fn_digest" in line and "--restart" in line


@pytest.mark.parametrize(
    ("options", "says"),
    [
        (["--payoff-fn", "no_such_module_here:f"], "no module named 'no_such_module_here'"),
        (["--payoff-fn", "{m}:missing"], "has no attribute 'missing'"),
        (["--payoff-fn", "{m}:not_a_function"], "not_a_function is not callable (type int)"),
        (["--payoff-fn", "{m}"], "payoff_fn must be 'module:function'"),
        (["--payoff-fn", "nowhere.py:f"], "no file"),
        (["--payoff-fn", "{m}:column"], "must return one value per path, shape [64]"),
        (["--payoff-fn", "{m}:nan"], "returned NaN or infinite values"),
        (["--payoff-fn", "{m}:boom"], "failed on paths of shape [64, 2]: RuntimeError: no market"),
        (["--payoff-fn", "{m}:digital"], "declare --not-lipschitz"),
        (["--payoff-fn", "{m}:ratio"], "declare --reads-spot"),
        (["--payoff-fn", "{m}:lookback", "--payoff", "put"], "give --payoff or --payoff-fn"),
        (["--payoff-fn", "{m}:lookback", "--kind", "put"], "kind describes payoff 'barrier'"),
        (["--reads-spot"], "--reads-spot describes --payoff-fn"),
        (["--not-lipschitz"], "--not-lipschitz describes --payoff-fn"),
        (["--payoff", "call", "--kind", "put"], "kind applies to payoff='barrier' only"),
        (["--payoff", "barrier", "--direction", "down", "--barrier", "105"],
         "already at or below the down barrier 105"),
        (["--payoff", "barrier", "--knock", "in", "--barrier", "95"], "--direction down"),
        (["--payoff", "barrier", "--direction", "down", "--kind", "put", "--barrier", "90",
          "--strike", "85"], "barrier must be below strike for a down-and-out put"),
        (["--payoff", "barrier", "--direction", "sideways"], "--direction"),
        (["--payoff", "barrier", "--knock", "maybe"], "--knock"),
        (["--payoff", "barrier", "--kind", "straddle"], "--kind"),
    ],
    ids=["no-module", "no-attribute", "not-callable", "no-colon", "no-file", "wrong-shape", "nan",
         "raises", "jumps", "reads-spot", "payoff-and-fn", "fn-and-kind", "reads-spot-alone",
         "not-lipschitz-alone", "kind-on-call", "spot-below-down-barrier",
         "spot-above-up-barrier", "worthless-down-out-put", "bad-direction", "bad-knock",
         "bad-kind"],
)  # fmt: skip
def test_careless_payoffs_are_one_error_line(options, says, module, tmp_path, capsys):
    out = tmp_path / "never"
    argv = [o.replace("{m}", module) for o in options]
    assert main(["greeks", *argv, "--paths", "100", "--out", str(out)]) == 2
    _one_error_line(capsys, says)
    assert not out.exists()


def test_a_payoff_that_fails_mid_run_is_one_error_line(module, tmp_path, capsys):
    # before: exit 1, "internal error", when the failure came after the 64-path check
    argv = ["greeks", "--payoff-fn", f"{module}:late_boom", "--paths", "1000"]
    assert main([*argv, "--out", str(tmp_path / "o")]) == 2
    line = _one_error_line(capsys, f"payoff_fn '{module}:late_boom' failed on paths of shape [")
    assert "KeyError: 'a path the check never saw'" in line


def test_a_module_that_fails_to_import_is_one_error_line(tmp_path, monkeypatch, capsys):
    name = f"broken_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text("import no_such_dependency_xyz\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    for spec in (f"{name}:f", f"{name}.py:f"):
        assert main(["greeks", "--payoff-fn", spec, "--out", str(tmp_path / "never")]) == 2
        line = _one_error_line(capsys, "failed (ModuleNotFoundError")
        assert "no_such_dependency_xyz" in line and f"importing '{spec.split(':')[0]}'" in line
    assert name not in sys.modules


def test_help_names_the_new_options(capsys):
    with pytest.raises(SystemExit):
        main(["greeks", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for shown in ("--payoff-fn MODULE:FUNCTION", "--reads-spot", "--not-lipschitz",
                  "--direction {up,down}", "--knock {out,in}", "--kind {call,put}",
                  "--continuity-correction", "20% above the spot"):  # fmt: skip
        assert shown in text, shown
