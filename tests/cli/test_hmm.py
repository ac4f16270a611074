"""``stochgrad hmm fit``: outputs, resume by default, --restart, careless inputs."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch

from stochgrad.apps.hmm import HMM, load_earthquakes, log_likelihood
from stochgrad.cli import main
from tests.helpers import widest_line

pytestmark = pytest.mark.usefixtures("one_thread")

EM = ["hmm", "fit", "--states", "3", "--restarts", "4", "--max-iter", "300", "--seed", "3"]


def _fit(folder) -> dict:
    """hmm_fit.json without its wall time."""
    data = json.loads((folder / "hmm_fit.json").read_text())
    data.pop("seconds")
    return data


@pytest.fixture
def series(tmp_path):
    """A Gaussian-looking series with two levels, in a CSV with a time column."""
    csv = tmp_path / "series.csv"
    vals = np.r_[np.zeros(20), 3 * np.ones(20)] + 0.1 * np.random.default_rng(0).standard_normal(40)
    csv.write_text("time,level\n" + "".join(f"{i},{v}\n" for i, v in enumerate(vals)))
    return csv


def test_fit_poisson_and_gaussian(tmp_path, series, capsys) -> None:
    quakes = load_earthquakes()
    out = tmp_path / "p"
    assert main(["hmm", "fit", "--states", "2", "--restarts", "2", "--max-iter", "200",
                 "--out", out]) == 0  # fmt: skip
    res = json.loads((out / "hmm_fit.json").read_text())
    assert (out / "hmm_fit.png").stat().st_size > 1000
    hmm = HMM.from_dict(res["params"])
    assert res["log_likelihood"] == pytest.approx(float(log_likelihood(hmm, quakes)[0]), abs=1e-6)
    assert res["aic"] == pytest.approx(-2 * res["log_likelihood"] + 10)
    assert len(res["viterbi_states"]) == 107
    text = capsys.readouterr().out
    assert "transition row" in text and str(out / "hmm_fit.json") in text
    assert widest_line(text) <= 100

    args = ["hmm", "fit", series, "--emission", "gaussian", "--method", "gradient",
            "--restarts", "1", "--max-iter", "60", "--out", tmp_path / "g"]  # fmt: skip
    assert main(args) == 0
    res2 = _fit(tmp_path / "g")
    assert sorted(res2["params"]["means"][k][0] for k in range(2)) == pytest.approx([0, 3], abs=0.1)
    capsys.readouterr()
    # a second run resumes from the checkpoint (the default): same answer
    assert main(args) == 0
    assert "resumed from" in capsys.readouterr().out
    assert _fit(tmp_path / "g") == res2


def test_many_states_print_the_transition_matrix_apart(tmp_path, capsys) -> None:
    argv = ["hmm", "fit", "--states", "6", "--restarts", "1", "--max-iter", "5"]
    assert main([*argv, "--out", tmp_path]) == 0
    text = capsys.readouterr().out
    assert "transition row" not in text and "to 5" in text


@pytest.mark.parametrize("emission", ["poisson", "gaussian"])
@pytest.mark.parametrize("K", [2, 5, 6, 12])
def test_tables_fit_100_columns_unsqueezed(emission, K) -> None:
    from rich.console import Console

    from stochgrad.apps.hmm import random_hmm
    from stochgrad.cli.hmm import _tables

    y = load_earthquakes() * (1 if emission == "poisson" else 1.5)
    hmm = random_hmm(y, K, emission, generator=torch.Generator().manual_seed(0))
    states = np.arange(107) % K
    title = f"{K}-state {emission} HMM, em (earthquakes (bundled), column count)"
    wide = Console(width=1000)
    for t in _tables(hmm, states, title):
        assert wide.measure(t).maximum <= 100


@pytest.mark.parametrize("method", ["em", "gradient"])
def test_interrupted_fit_resumes_to_the_same_numbers(method, tmp_path, capsys,
                                                     interrupt_after_checkpoint):  # fmt: skip
    argv = [*EM, "--method", method]
    if method == "gradient":
        argv = [*argv[:5], "2", *argv[6:7], "40", *argv[8:]]  # --restarts 2 --max-iter 40
    ref = tmp_path / "ref"
    assert main([*argv, "--out", ref]) == 0
    capsys.readouterr()
    out = tmp_path / "run"
    interrupt_after_checkpoint(out)
    assert main([*argv, "--out", out]) == 130
    captured = capsys.readouterr()
    assert "interrupted" in captured.out + captured.err
    assert (out / "hmm_checkpoint.pt").exists() and not (out / "hmm_fit.json").exists()
    assert main([*argv, "--out", out]) == 0
    text = " ".join(capsys.readouterr().out.split())  # long paths wrap at 100 columns
    assert f"resumed from {out / 'hmm_checkpoint.pt'}" in text
    if method == "em":
        assert "EM at iteration 10" in text  # the first save of the stacked EM state
    else:
        assert "1 of 2 restarts finished" in text
    assert _fit(out) == _fit(ref)
    assert main([*argv, "--out", out, "--restart"]) == 0
    text = capsys.readouterr().out
    assert "resumed from" not in text and "--restart: removed" in text
    assert _fit(out) == _fit(ref)


def test_other_settings_are_refused_naming_the_difference(tmp_path, capsys) -> None:
    argv = ["hmm", "fit", "--restarts", "2", "--max-iter", "30", "--out", tmp_path]
    assert main(argv) == 0
    capsys.readouterr()
    assert main([*argv, "--states", "3"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "num_states: 2 saved, 3 now" in err
    assert "\n" not in err and "Traceback" not in err


def _write(path, text):
    path.write_text(text)
    return path


CARELESS = {
    "missing file": (lambda d: [d / "nope.csv"], "no such file"),
    "empty file": (lambda d: [_write(d / "empty.csv", "")], "header and at least one data row"),
    "text for numbers": (
        lambda d: [_write(d / "t.csv", "year,count\n1,3\n2,three\n")],
        "must be numeric: data row 2 (line 3) holds 'three'",
    ),
    "negative counts": (
        lambda d: [_write(d / "n.csv", "year,count\n1,3\n2,-4\n")],
        "a Poisson HMM needs counts (integers >= 0), data row 2 holds -4",
    ),
    "fractional counts": (
        lambda d: [_write(d / "f.csv", "count\n1.5\n2\n")],
        "data row 1 holds 1.5",
    ),
    "unknown column": (
        lambda d: [_write(d / "c.csv", "year,count\n1,3\n"), "--column", "rate"],
        "column 'rate' not in",
    ),
    "zero states": (lambda d: ["--states", "0"], "argument --states"),
    "zero restarts": (lambda d: ["--restarts", "0"], "argument --restarts"),
    "text states": (lambda d: ["--states", "two"], "argument --states"),
    "negative seed": (lambda d: ["--seed", "-1"], "argument --seed"),
}


@pytest.mark.parametrize("case", list(CARELESS))
def test_careless_input_is_one_error_line(case, tmp_path, capsys) -> None:
    make, message = CARELESS[case]
    assert main(["hmm", "fit", *make(tmp_path), "--out", tmp_path / "out"]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), captured.err
    assert message in err[0]
    assert "Traceback" not in captured.err + captured.out
    assert not (tmp_path / "out" / "hmm_fit.json").exists()


def test_unwritable_out_fails_at_once(tmp_path, capsys, monkeypatch) -> None:
    import stochgrad.apps.hmm as app

    def never(*args, **kwargs):
        raise AssertionError("fitted before checking --out")

    monkeypatch.setattr(app, "fit_hmm", never)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for bad in (blocker / "sub", blocker, "/proc/stochgrad-test"):
        start = time.perf_counter()
        assert main(["hmm", "fit", "--out", bad]) == 2
        assert time.perf_counter() - start < 5
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"error: --out {bad}")


def test_help_shows_the_defaults(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["hmm", "fit", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--out DIR" in text and "(default: stochgrad-out/hmm)" in text
    assert "(default: 10)" in text and "(default: poisson)" in text
    for gone in ("--resume", "-o ", "--output"):
        assert gone not in text


def test_earthquake_default_fit_matches_the_library(tmp_path) -> None:
    """The command's numbers are the library's: fit_hmm with the same settings."""
    from stochgrad.apps.hmm import fit_hmm

    assert main(["hmm", "fit", "--restarts", "3", "--max-iter", "100", "--out", tmp_path]) == 0
    best, runs = fit_hmm(load_earthquakes(), 2, restarts=3, max_iter=100)
    res = _fit(tmp_path)
    assert res["log_likelihood"] == best.log_likelihood
    assert res["restart_log_likelihoods"] == [r.log_likelihood for r in runs]
    assert sorted(res["params"]["rates"]) == pytest.approx(sorted(best.hmm.rates.tolist()))
    assert torch.isfinite(torch.tensor(res["aic"]))
