"""One behaviour for every command: the same options, defaults in help, tables that fit.

Each command's own tests (``tests/cli/test_<group>.py``) interrupt it, rerun it and check the
"resumed from" line and its careless inputs; here every command is held to the shared rules at
once, so that a new command cannot forget one.
"""

from __future__ import annotations

import argparse

import pytest

from stochgrad import cli


def _leaves() -> dict[str, argparse.ArgumentParser]:
    """``"group job" -> parser`` for every command and job."""
    parser = cli.build_parser()
    out = {}
    top = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, sub in top.choices.items():
        if name.startswith("_"):
            continue
        jobs = [a for a in sub._actions if isinstance(a, argparse._SubParsersAction)]
        if jobs:
            for job, jp in jobs[0].choices.items():
                out[f"{name} {job}"] = jp
        else:
            out[name] = sub
    return out


LEAVES = _leaves()
#: Commands with no unit of work worth keeping (a single quick computation): --out only.
NOT_RESUMABLE = {"telegraph simulate", "molecules sample", "rl eval"}


def test_every_command_is_listed():
    assert len(LEAVES) == 21, sorted(LEAVES)


@pytest.mark.parametrize("name", sorted(LEAVES))
def test_output_and_resume_options(name):
    parser = LEAVES[name]
    options = {s for a in parser._actions for s in a.option_strings}
    assert "--out" in options, f"{name}: every command writes to --out DIR"
    out = next(a for a in parser._actions if "--out" in a.option_strings)
    assert out.default is not None and out.metavar == "DIR"
    if name not in NOT_RESUMABLE:
        assert "--restart" in options, f"{name}: resumes by default, --restart starts afresh"
    for old in ("-o", "--output", "--resume", "--json", "--plot"):
        assert old not in options, f"{name}: {old} is replaced by --out DIR and resume by default"


@pytest.mark.parametrize("name", sorted(LEAVES))
def test_help_shows_every_default(name):
    parser = LEAVES[name]
    text = parser.format_help()
    assert "default" in text
    fmt = parser._get_formatter()
    for action in parser._actions:
        if not action.option_strings or action.help == argparse.SUPPRESS:
            continue
        default = action.default
        if default is None or default is False or default is argparse.SUPPRESS:
            continue
        if isinstance(action, argparse._HelpAction):
            continue
        shown = fmt._get_help_string(action) % {**vars(action), "prog": parser.prog}
        assert "default" in shown, f"{name} {action.option_strings[0]}: help hides its default"


def test_help_of_the_top_level_lists_every_command(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for name in cli.COMMANDS:
        assert name in text
