"""The ``stochgrad`` command: subcommands run, print their tables and write their plots."""

from __future__ import annotations

import argparse

import pytest
import torch

from stochgrad import cli

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _check_png(path):
    assert path.exists()
    data = path.read_bytes()
    assert len(data) > 10_000
    assert data.startswith(PNG_MAGIC)


def test_demo(tmp_path, capsys):
    out = tmp_path / "plots" / "demo.png"  # the folder is created
    threads = torch.get_num_threads()
    assert cli.main(["demo", "--samples", "20000", "--out", str(out)]) == 0
    assert torch.get_num_threads() == threads  # main restores torch's thread count
    _check_png(out)
    text = capsys.readouterr().out
    for header in ("θ − a", "true ∂/∂θ", "true ∂/∂σ", "estimate ± stderr", "Var measured",
                   "Var closed form", "rel. diff", "max |rel. diff|"):  # fmt: skip
        assert header in text
    for label in ("score function", "score fn + LOO baseline", "score fn + optimal baseline",
                  "pathwise", "measure-valued (coupled)"):  # fmt: skip
        assert label in text
    assert "n = 20,000" in text
    assert out.name in text


def test_demo_plot_delta_outside_grid(tmp_path, capsys):
    out = tmp_path / "d.png"
    argv = ["demo", "--samples", "2000", "--deltas", "0", "--sigmas", "0.5,2",
            "--plot-delta", "2", "--out", str(out)]  # fmt: skip
    assert cli.main(argv) == 0
    _check_png(out)
    assert "Var closed form" in capsys.readouterr().out


def test_compare(tmp_path, capsys):
    out = tmp_path / "compare.png"
    assert cli.main(["compare", "--samples", "5000", "--points", "5", "--out", str(out)]) == 0
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


def test_bad_arguments_exit_2():
    with pytest.raises(SystemExit) as exc:
        cli.main(["demo", "--samples", "0"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        cli.main(["compare", "--points", "two"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        cli.main(["demo", "--sigmas", "1,x"])
    assert exc.value.code == 2


def test_too_few_samples_is_an_error(tmp_path, capsys):
    assert cli.main(["demo", "--samples", "1", "--out", str(tmp_path / "x.png")]) == 2
    assert "at least 2" in capsys.readouterr().out
    assert not (tmp_path / "x.png").exists()


def test_argument_types():
    assert cli.positive_int("2e6") == 2_000_000
    assert cli.positive_int("2_000_000") == 2_000_000
    assert cli.float_list("0, 1,3") == [0.0, 1.0, 3.0]
    for bad in ("0", "1.5", "-3", "x"):
        with pytest.raises(argparse.ArgumentTypeError):
            cli.positive_int(bad)


def test_registry_is_extensible():
    assert list(cli.SUBCOMMANDS)[:2] == ["demo", "compare"]

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
    with pytest.raises(SystemExit) as exc:
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
