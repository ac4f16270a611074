"""The ``stochgrad`` command: one module per command group, one behaviour for every command.

:data:`COMMANDS` lists every command by name, with the module that implements it, a line of
help and the extra it needs. A command module is imported only when its command is chosen, so
``stochgrad --help`` stays fast and a missing extra breaks its command alone. A module for a
single command defines ``add_arguments(parser)`` and ``run(args, console) -> int``; a module for
a group of jobs defines ``add_<job>_arguments`` and ``run_<job>`` for each job (dashes in job
names become underscores). :func:`subcommand` registers more commands from Python.

Every command follows the conventions of :mod:`stochgrad.cli._kit`: ``--out DIR`` checked before
any work, resume by default (``--restart`` to start afresh), user errors as one line
``error: ...`` with exit status 2 (``--debug`` shows the traceback), progress bars, tables that
fit 100 columns, every default in ``--help``.

>>> list(COMMANDS)[:2]
['demo', 'compare']
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from rich.console import Console

from stochgrad.checkpoint import CheckpointError, OutputBusy
from stochgrad.cli._kit import HelpFormatter, UserError, make_console

__all__ = ["COMMANDS", "Command", "build_parser", "main", "subcommand"]


@dataclass(frozen=True)
class Command:
    """One ``stochgrad <name>`` command, implemented in ``module``.

    Attributes:
        module: dotted module name (imported when the command is chosen).
        help: one line for ``stochgrad --help``.
        extra: the optional dependency group it needs (``pip install 'stochgrad[extra]'``).
        jobs: for a group, ``job name -> one line of help``; empty for a single command.
    """

    module: str
    help: str
    extra: str | None = None
    jobs: dict[str, str] = field(default_factory=dict)


COMMANDS: dict[str, Command] = {
    "demo": Command(
        "stochgrad.cli.demo",
        "variance of five gradient estimators on E[(x-a)^2], measured vs closed form",
    ),
    "compare": Command(
        "stochgrad.cli.compare",
        "variance study of Mohamed et al. (2020): quadrature vs Monte Carlo over f and k",
    ),
    "relax-toy": Command(
        "stochgrad.cli.relax_toy",
        "the RELAX toy problem: seven estimators of one Bernoulli variable's gradient",
    ),
    "discrete-vae": Command(
        "stochgrad.cli.discrete_vae",
        "a binary-latent VAE on the digits, trained estimator by estimator",
        extra="latent",
    ),
    "rl": Command(
        "stochgrad.cli.rl",
        "reinforcement learning: train, eval, options, pareto",
        extra="rl",
        jobs={
            "train": "policy-gradient training (REINFORCE, TRPO) on a gymnasium environment",
            "eval": "evaluate a trained policy from its checkpoint",
            "pareto": "multi-objective REINFORCE on Deep Sea Treasure by linear scalarisation",
            "options": "option-critic on the four-rooms grid against value iteration",
        },
    ),
    "hmm": Command(
        "stochgrad.cli.hmm",
        "hidden Markov models: fit by EM or by the Fisher-identity gradient",
        jobs={"fit": "fit a Gaussian or Poisson HMM to a series (EM or gradient ascent)"},
    ),
    "telegraph": Command(
        "stochgrad.cli.telegraph",
        "the telegraph model of gene expression: fit kinetics, simulate counts",
        jobs={
            "fit": "maximum-likelihood burst kinetics per gene from a counts table",
            "simulate": "simulate counts by the exact Gillespie algorithm",
            "recover": "parameter-recovery study on simulated data over a (k_on, k_off) grid",
        },
    ),
    "rbm": Command(
        "stochgrad.cli.rbm",
        "train a Bernoulli RBM (CD-k or persistent CD) on the digits, exact log-likelihood",
        extra="latent",
    ),
    "bbvi": Command(
        "stochgrad.cli.bbvi",
        "black-box variational inference for Bayesian logistic regression, estimators compared",
        extra="latent",
    ),
    "greeks": Command(
        "stochgrad.cli.greeks",
        "option price and Greeks by likelihood ratio, pathwise and mixed estimators",
        extra="finance",
    ),
    "design": Command(
        "stochgrad.cli.design",
        "Bayesian experimental design: expected information gain and its design gradient",
        jobs={
            "eig": "EIG and design-gradient estimates (nested Monte Carlo, PCE) against a reference",
            "optimize": "gradient ascent over designs",
        },
    ),
    "offpolicy": Command(
        "stochgrad.cli.offpolicy",
        "off-policy learning from logged bandit data, and the confounding demonstration",
    ),
    "molecules": Command(
        "stochgrad.cli.molecules",
        "de novo molecular design: a SMILES GRU prior fine-tuned by policy gradient",
        extra="chem",
        jobs={
            "pretrain": "pretrain the SMILES prior on a MOSES subset",
            "sample": "sample molecules from a model and print the MOSES metrics",
            "optimize": "fine-tune the generator by policy gradient on QED, logP or similarity",
        },
    ),
}
"""Every command, by name, in the order of ``stochgrad --help``."""


# ---------------------------------------------------------------------------------------------
# commands registered from Python (plugins, tests)
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Subcommand:
    """A command registered with :func:`subcommand`."""

    name: str
    help: str
    arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace, Console], int]
    description: str | None = None


SUBCOMMANDS: dict[str, Subcommand] = {}
"""Commands registered from Python with :func:`subcommand`."""


def subcommand(
    name: str, *, help: str, arguments: Callable[[argparse.ArgumentParser], None]
) -> Callable:
    """Decorator registering ``run(args, console) -> int`` as ``stochgrad <name>``."""

    def register(run: Callable[[argparse.Namespace, Console], int]):
        if name in SUBCOMMANDS or name in COMMANDS:
            raise ValueError(f"subcommand {name!r} is already registered")
        doc = inspect.cleandoc(run.__doc__) if run.__doc__ else None
        SUBCOMMANDS[name] = Subcommand(name, help, arguments, run, doc)
        return run

    return register


# ---------------------------------------------------------------------------------------------
# the parser
# ---------------------------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line ``error: ...`` and exit status 2."""

    def error(self, message: str):  # type: ignore[override]
        sys.stderr.write(f"error: {message} (see '{self.prog} --help')\n")
        raise SystemExit(2)


def _missing_extra(extra: str | None, exc: ImportError) -> str:
    what = f"pip install 'stochgrad[{extra}]'" if extra else "pip install 'stochgrad[all]'"
    return f"this command needs a package that is not installed ({exc}); {what}"


def _job_function(name: str) -> str:
    return name.replace("-", "_")


def _add_command(subs: argparse._SubParsersAction, name: str, cmd: Command, build: bool) -> None:
    p = subs.add_parser(name, help=cmd.help, description=cmd.help, formatter_class=HelpFormatter)
    p.set_defaults(command=name)
    if not build:
        return
    try:
        module = importlib.import_module(cmd.module)
    except ImportError as exc:
        if (getattr(exc, "name", "") or "").startswith("stochgrad"):
            raise
        p.set_defaults(missing=_missing_extra(cmd.extra, exc))
        return
    if not cmd.jobs:
        module.add_arguments(p)
        return
    jobs = p.add_subparsers(dest="job", metavar="JOB", parser_class=_Parser)
    for job, text in cmd.jobs.items():
        jp = jobs.add_parser(job, help=text, description=text, formatter_class=HelpFormatter)
        try:
            getattr(module, f"add_{_job_function(job)}_arguments")(jp)
        except ImportError as exc:
            if (getattr(exc, "name", "") or "").startswith("stochgrad"):
                raise
            jp.set_defaults(missing=_missing_extra(cmd.extra, exc))


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The ``stochgrad`` parser.

    With ``argv``, only the command named in it gets its options (the others are listed by
    name and help), so that ``stochgrad demo`` does not import every application. Without
    ``argv`` every command is complete.
    """
    from stochgrad import __version__

    parser = _Parser(
        prog="stochgrad",
        description="Gradients of expectations: estimators, variance studies, applications.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"stochgrad {__version__}")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help=(
            "torch intra-op threads (the studies' vector work gains little from more, and "
            "loses a lot on a busy machine; 0 = torch's own choice)"
        ),
    )
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    subs = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    names = [*COMMANDS, *SUBCOMMANDS]
    chosen = None if argv is None else next((a for a in argv if a in names), "")
    for name, cmd in COMMANDS.items():
        _add_command(subs, name, cmd, build=chosen is None or name == chosen)
    for sub in SUBCOMMANDS.values():
        p = subs.add_parser(
            sub.name,
            help=sub.help,
            description=sub.description or sub.help,
            formatter_class=HelpFormatter,
        )
        p.set_defaults(command=sub.name)
        if chosen is None or sub.name == chosen:
            sub.arguments(p)
    return parser


# ---------------------------------------------------------------------------------------------
# running a command
# ---------------------------------------------------------------------------------------------
def _one_line(exc: BaseException, limit: int = 500) -> str:
    text = re.sub(r"\s*\n\s*", "; ", str(exc).strip()) or type(exc).__name__
    if isinstance(exc, KeyError):
        text = f"missing {text}"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _dispatch(args: argparse.Namespace, console: Console) -> int:
    if getattr(args, "missing", None):
        raise UserError(args.missing)
    if args.command in SUBCOMMANDS:
        return int(SUBCOMMANDS[args.command].run(args, console))
    cmd = COMMANDS[args.command]
    module = importlib.import_module(cmd.module)
    if not cmd.jobs:
        return int(module.run(args, console))
    job = getattr(args, "job", None)
    if job is None:
        console.print(f"usage: stochgrad {args.command} {{{','.join(cmd.jobs)}}} ...")
        return 2
    return int(getattr(module, f"run_{_job_function(job)}")(args, console))


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``stochgrad`` with ``argv`` (default ``sys.argv[1:]``); return the exit status.

    0 success; 2 a user error (bad option, missing or malformed file, unwritable output,
    a checkpoint from other settings), printed as one line ``error: ...``; 130 interrupted
    (finished work is kept); 1 an internal error (please report it, with ``--debug``'s output).
    """
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    parser = build_parser(argv)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version (0) or a usage error (2, already printed)
        if exc.code not in (0, None):
            return int(exc.code) if isinstance(exc.code, int) else 2
        raise
    if args.command is None:
        parser.print_help()
        return 2
    args.argv = argv  # what was typed: a job can tell options given before it
    if args.threads < 0:
        parser.error(f"--threads must be >= 0, got {args.threads}")
    import torch

    threads = torch.get_num_threads()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    console = make_console()
    errors = make_console(stderr=True)
    try:
        return _dispatch(args, console)
    except KeyboardInterrupt:
        errors.print("interrupted", markup=False)
        return 130
    except (UserError, ValueError, OSError, CheckpointError, OutputBusy, ImportError) as exc:
        if debug:
            raise
        if isinstance(exc, ImportError) and not (exc.name or "").startswith("stochgrad"):
            message = _missing_extra(COMMANDS.get(args.command, Command("", "")).extra, exc)
        else:
            message = _one_line(exc)
        errors.print(f"error: {message}", markup=False, soft_wrap=True)
        return 2
    except Exception as exc:
        if debug:
            raise
        errors.print(
            f"error: internal error ({type(exc).__name__}: {_one_line(exc)}); rerun with "
            "--debug for the traceback and please report it",
            markup=False,
            soft_wrap=True,
        )
        return 1
    finally:  # main() may be called in-process (tests): leave torch as it was
        torch.set_num_threads(threads)
