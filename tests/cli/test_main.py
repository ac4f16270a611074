"""The ``stochgrad`` command: subcommands run, print their tables and write their plots."""

from __future__ import annotations

import argparse

import pytest
import torch

from stochgrad import cli
from stochgrad.cli import argtypes

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _check_png(path):
    assert path.exists()
    data = path.read_bytes()
    assert len(data) > 10_000
    assert data.startswith(PNG_MAGIC)


def test_demo(tmp_path, capsys):
    folder = tmp_path / "runs" / "demo"  # the folder is created
    out = folder / "demo_variance.png"
    threads = torch.get_num_threads()
    assert cli.main(["demo", "--samples", "20000", "--out", str(folder)]) == 0
    assert torch.get_num_threads() == threads  # main restores torch's thread count
    _check_png(out)
    assert (folder / "demo.json").stat().st_size > 0
    text = capsys.readouterr().out
    for header in ("θ − a", "true ∂/∂θ", "true ∂/∂σ", "estimate ± se", "Var meas.",
                   "Var closed", "rel. diff", "max |rel. diff|"):  # fmt: skip
        assert header in text
    for label in ("score function", "score fn + LOO baseline", "score fn + optimal baseline",
                  "pathwise", "measure-valued (coupled)", "SF+LOO", "MVD"):  # fmt: skip
        assert label in text
    assert "n = 20,000" in text
    assert out.name in text


def test_demo_plot_delta_outside_grid(tmp_path, capsys):
    argv = ["demo", "--samples", "2000", "--deltas", "0", "--sigmas", "0.5,2",
            "--plot-delta", "2", "--out", str(tmp_path)]  # fmt: skip
    assert cli.main(argv) == 0
    _check_png(tmp_path / "demo_variance.png")
    assert "Var closed" in capsys.readouterr().out


def test_compare(tmp_path, capsys):
    out = tmp_path / "compare_variance.png"
    assert cli.main(["compare", "--samples", "5000", "--points", "5", "--out", str(tmp_path)]) == 0
    _check_png(out)
    text = capsys.readouterr().out
    for header in ("SF quad", "SF MC", "SF+opt quad", "PW MC", "MVD quad", "max |z|",
                   "(x-k)^2", "exp(-k x^2)", "cos(k x)", "max |rel. diff|"):  # fmt: skip
        assert header in text
    assert out.name in text


def test_no_subcommand_prints_help(capsys):
    assert cli.main([]) == 2
    text = capsys.readouterr().out
    assert "demo" in text and "compare" in text


@pytest.mark.parametrize(
    "argv",
    [["demo", "--samples", "0"], ["compare", "--points", "two"], ["demo", "--sigmas", "1,x"]],
)
def test_bad_arguments_exit_2(argv, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "--help" in err[0]


def test_too_few_samples_is_an_error(tmp_path, capsys):
    assert cli.main(["demo", "--samples", "1", "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == "error: samples must be >= 2, got 1"
    assert not (tmp_path / "demo_variance.png").exists()


def test_argument_types():
    assert argtypes.positive_int("2e6") == 2_000_000
    assert argtypes.positive_int("2_000_000") == 2_000_000
    assert argtypes.float_list("0, 1,3") == [0.0, 1.0, 3.0]
    for bad in ("0", "1.5", "-3", "x", "inf"):
        with pytest.raises(argparse.ArgumentTypeError):
            argtypes.positive_int(bad)
    assert argtypes.choice_list(["a", "b"])("b, a,b") == ["b", "a"]
    with pytest.raises(argparse.ArgumentTypeError, match="'foo'"):
        argtypes.choice_list(["a", "b"])("a,foo")


def test_registry_is_extensible():
    assert list(cli.COMMANDS)[:2] == ["demo", "compare"]

    @cli.subcommand("_probe", help="test only", arguments=lambda p: p.add_argument("--x"))
    def run_probe(args, console):
        console.print(f"probe {args.x}")
        return 7

    try:
        assert cli.main(["_probe", "--x", "5"]) == 7
        with pytest.raises(ValueError, match="already registered"):
            cli.subcommand("_probe", help="", arguments=lambda p: None)(run_probe)
    finally:
        del cli.SUBCOMMANDS["_probe"]


APP_JOBS = [
    ["rl", "train"],
    ["rl", "eval"],
    ["rl", "options"],
    ["rl", "pareto"],
    ["hmm", "fit"],
    ["telegraph", "fit"],
    ["telegraph", "simulate"],
    ["telegraph", "recover"],
    ["rbm"],
    ["bbvi"],
    ["greeks"],
    ["design", "eig"],
    ["design", "optimize"],
    ["offpolicy"],
    ["molecules", "pretrain"],
    ["molecules", "sample"],
    ["molecules", "optimize"],
]


@pytest.mark.parametrize("job", APP_JOBS, ids=" ".join)
def test_every_application_job_has_options(job, capsys):
    with pytest.raises(SystemExit) as exc:  # --help exits 0 through argparse
        cli.main([*job, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: stochgrad {' '.join(job)}")
    assert "--" in out.split("options:", 1)[1].replace("--help", "")  # its own options


def test_group_without_job_prints_usage(capsys):
    assert cli.main(["telegraph"]) == 2
    assert "fit,simulate,recover" in capsys.readouterr().out


def test_only_the_chosen_application_is_imported():
    parser = cli.build_parser(["demo"])
    hmm = parser._subparsers._group_actions[0].choices["hmm"]
    assert all(a.dest == "help" for a in hmm._actions)  # not built: its module not imported


def test_internal_errors_and_missing_extras_are_one_line(capsys):
    def boom(args, console):
        raise RuntimeError("something broke\nover two lines")

    def missing(args, console):
        raise ModuleNotFoundError("No module named 'gymnasium'", name="gymnasium")

    cli.subcommand("_boom", help="test only", arguments=lambda p: None)(boom)
    cli.subcommand("_missing", help="test only", arguments=lambda p: None)(missing)
    try:
        assert cli.main(["_boom"]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: internal error (RuntimeError:")
        assert "--debug" in err[0]
        with pytest.raises(RuntimeError):
            cli.main(["_boom", "--debug"])
        assert cli.main(["_missing"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: this command needs a package") and "pip install" in err
    finally:
        del cli.SUBCOMMANDS["_boom"], cli.SUBCOMMANDS["_missing"]


def test_a_failed_run_leaves_no_empty_output_folder(tmp_path, capsys):
    from stochgrad.cli import _kit

    def fails_inside(args, console):
        with _kit.output(args, console):
            raise ValueError("counts table x.csv: no such file")

    def add(p):
        _kit.add_output_options(p, str(tmp_path / "default"))

    cli.subcommand("_fails", help="test only", arguments=add)(fails_inside)
    try:
        new = tmp_path / "new" / "out"
        assert cli.main(["_fails", "--out", str(new)]) == 2
        assert not new.exists()
        kept = tmp_path / "kept"
        (kept / "old.txt").parent.mkdir()
        (kept / "old.txt").write_text("x")
        assert cli.main(["_fails", "--out", str(kept)]) == 2
        assert sorted(p.name for p in kept.iterdir()) == ["old.txt"]  # nothing else left
    finally:
        del cli.SUBCOMMANDS["_fails"]
    assert "no such file" in capsys.readouterr().err
