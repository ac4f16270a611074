"""The ``stochgrad`` command: one subcommand per job, rich tables and progress bars.

Subcommands live in :data:`SUBCOMMANDS`. To add one, write ``_<name>_arguments(parser)`` and a
``run_<name>(args, console) -> int`` and register them::

    @subcommand("name", help="one line for `stochgrad --help`", arguments=_name_arguments)
    def run_name(args: argparse.Namespace, console: Console) -> int:
        ...
        return 0

``main(argv)`` builds the parser from the registry, runs the chosen subcommand and returns its
exit code (the console script ``stochgrad`` is ``stochgrad.cli:main``).

>>> sorted(SUBCOMMANDS)[:2]
['compare', 'demo']
"""

from __future__ import annotations

import argparse
import inspect
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from stochgrad.argtypes import float_list, positive_int

# ---------------------------------------------------------------------------------------------
# the registry
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Subcommand:
    """One ``stochgrad <name>`` job.

    Attributes:
        name: the subcommand's name on the command line.
        help: one line for ``stochgrad --help``.
        arguments: adds the subcommand's options to its parser.
        run: ``run(args, console) -> exit code``.
        description: longer text for ``stochgrad <name> --help`` (defaults to ``run``'s docstring).
    """

    name: str
    help: str
    arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace, Console], int]
    description: str | None = None


SUBCOMMANDS: dict[str, Subcommand] = {}
"""Registered subcommands by name, in registration order."""


def subcommand(
    name: str, *, help: str, arguments: Callable[[argparse.ArgumentParser], None]
) -> Callable:
    """Decorator registering ``run(args, console) -> int`` as ``stochgrad <name>``."""

    def register(run: Callable[[argparse.Namespace, Console], int]):
        if name in SUBCOMMANDS:
            raise ValueError(f"subcommand {name!r} is already registered")
        doc = inspect.cleandoc(run.__doc__) if run.__doc__ else None
        SUBCOMMANDS[name] = Subcommand(name, help, arguments, run, doc)
        return run

    return register


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The ``stochgrad`` parser with one subparser per registered subcommand.

    With ``argv``, only the subcommand named in it gets its options (the others are listed by
    name and help): adding an application's options imports it, and ``stochgrad demo`` should not
    import every application. Without ``argv`` every subcommand is complete.
    """
    from stochgrad import __version__

    parser = argparse.ArgumentParser(
        prog="stochgrad",
        description="Gradients of expectations: estimators, variance studies, applications.",
    )
    parser.add_argument("--version", action="version", version=f"stochgrad {__version__}")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help=(
            "torch intra-op threads (default 1: the studies' vector work gains little from more, "
            "and loses a lot on a busy machine; 0 = torch's own choice)"
        ),
    )
    subs = parser.add_subparsers(dest="command", metavar="COMMAND")
    chosen = None if argv is None else next((a for a in argv if a in SUBCOMMANDS), "")
    for sub in SUBCOMMANDS.values():
        p = subs.add_parser(
            sub.name,
            help=sub.help,
            description=sub.description or sub.help,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        if chosen is None or sub.name == chosen:
            sub.arguments(p)
    return parser


def make_console() -> Console:
    """A console on stdout; wide when stdout is not a terminal, so tables do not wrap in logs."""
    tty = sys.stdout.isatty()
    return Console(highlight=False, width=None if tty else 170)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``stochgrad`` with ``argv`` (default ``sys.argv[1:]``); return the exit code."""
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if args.threads < 0:
        parser.error(f"--threads must be >= 0, got {args.threads}")
    import torch

    threads = torch.get_num_threads()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    console = make_console()
    try:
        return int(SUBCOMMANDS[args.command].run(args, console))
    except KeyboardInterrupt:
        console.print("[red]interrupted[/red]")
        return 130
    finally:  # main() may be called in-process (tests): leave torch as it was
        torch.set_num_threads(threads)


# ---------------------------------------------------------------------------------------------
# shared helpers
# ---------------------------------------------------------------------------------------------
def progress_bar(console: Console) -> Progress:
    """The progress bar every long job shows (transient: it disappears when done)."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    )


def fmt(value: float, digits: int = 4) -> str:
    """A number with ``digits`` significant digits (``—`` for nan)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:.{digits}g}"


def fmt_rel(value: float) -> str:
    """A relative difference as a signed percentage."""
    return "—" if math.isnan(value) else f"{100.0 * value:+.2f}%"


def z_style(z: float) -> str:
    """Colour for a z-score: green within 3, yellow within 5, red beyond."""
    if math.isnan(z):
        return "dim"
    return "green" if abs(z) < 3 else ("yellow" if abs(z) < 5 else "red")


def z_score(measured: float, reference: float, se: float, floor: float = 1e-20) -> float:
    """``(measured - reference) / se``; ``nan`` when the reference is (numerically) zero."""
    if abs(reference) <= floor or se <= 0:
        return float("nan")
    return (measured - reference) / se


def prepare_output(path: str | Path) -> Path:
    """Create the parent folder of an output file and return the path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    return out


# ---------------------------------------------------------------------------------------------
# stochgrad demo
# ---------------------------------------------------------------------------------------------
DEMO_SAMPLES = 1_000_000


@dataclass(frozen=True)
class DemoCell:
    """Measured and closed-form numbers for one estimator at one grid point."""

    delta: float
    sigma: float
    estimator: str
    true_grad: tuple[float, float]
    grad: np.ndarray
    stderr: np.ndarray
    variance: np.ndarray
    variance_se: np.ndarray
    closed: tuple[float, float]

    def rel(self, i: int) -> float:
        from stochgrad.studies import relative_difference

        return relative_difference(float(self.variance[i]), self.closed[i])

    def z(self, i: int) -> float:
        return z_score(float(self.variance[i]), self.closed[i], float(self.variance_se[i]))


def _demo_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--samples",
        type=positive_int,
        default=DEMO_SAMPLES,
        help=f"samples per estimator and grid point (default {DEMO_SAMPLES:_}; needs >= 2)",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument(
        "--out",
        default="stochgrad-out/demo_variance.png",
        help="PNG of variance against sigma (default stochgrad-out/demo_variance.png)",
    )
    p.add_argument(
        "--deltas",
        type=float_list,
        default=[0.0, 1.0, 3.0],
        help="values of theta - a for the table (default 0,1,3)",
    )
    p.add_argument(
        "--sigmas",
        type=float_list,
        default=[0.1, 0.5, 1.0, 2.0, 5.0],
        help="values of sigma for the table (default 0.1,0.5,1,2,5)",
    )
    p.add_argument("--target", type=float, default=2.0, help="a in f(x) = (x - a)^2 (default 2)")
    p.add_argument(
        "--plot-delta",
        type=float,
        default=1.0,
        help="theta - a of the plot's sigma sweep (default 1)",
    )


def _demo_table(cells: list[DemoCell], i: int, n: int) -> Table:
    from stochgrad.studies import ESTIMATORS, LABELS

    coord = ("θ", "σ")[i]
    table = Table(
        title=f"∂/∂{coord} E[(x − a)²], x ~ N(θ, σ²): single-sample variance, n = {n:,}",
        caption=(
            "Var measured = est.variance (variance of one per-sample term); closed form from "
            "docs/variance.md (LOO: finite-n formula); z = (measured − closed) / se of the "
            "variance estimate, se = sqrt((m4 − var²)/n)"
        ),
        header_style="bold",
    )
    for name in ("θ − a", "σ", f"true ∂/∂{coord}", "estimator"):
        table.add_column(name, justify="right" if name != "estimator" else "left")
    for name in ("estimate ± stderr", "Var measured", "Var closed form", "rel. diff", "z"):
        table.add_column(name, justify="right")
    last = len(ESTIMATORS) - 1
    for c in cells:
        j = ESTIMATORS.index(c.estimator)
        z = c.z(i)
        style = z_style(z)
        table.add_row(
            fmt(c.delta) if j == 0 else "",
            fmt(c.sigma) if j == 0 else "",
            fmt(c.true_grad[i]) if j == 0 else "",
            LABELS[c.estimator],
            f"{c.grad[i]:.4g} ± {c.stderr[i]:.2g}",
            f"[{style}]{fmt(float(c.variance[i]))}[/{style}]",
            fmt(c.closed[i]),
            f"[{style}]{fmt_rel(c.rel(i))}[/{style}]",
            f"[{style}]{z:+.2f}[/{style}]" if not math.isnan(z) else "[dim]—[/dim]",
            end_section=j == last,
        )
    return table


def _demo_summary(cells: list[DemoCell]) -> Table:
    from stochgrad.studies import ESTIMATORS, LABELS

    table = Table(
        title="Measured vs closed form, over the grid and both coordinates",
        caption="expected |rel. diff| ≈ rel. se; cells with a zero closed form are left out",
        header_style="bold",
    )
    table.add_column("estimator")
    for name in ("max |rel. diff|", "max |z|", "max rel. se"):
        table.add_column(name, justify="right")
    for est in ESTIMATORS:
        rel, zs, rse = [], [], []
        for c in cells:
            if c.estimator != est:
                continue
            for i in (0, 1):
                if abs(c.closed[i]) > 1e-20:
                    rel.append(abs(c.rel(i)))
                    zs.append(abs(c.z(i)))
                    rse.append(float(c.variance_se[i]) / abs(c.closed[i]))
        table.add_row(
            LABELS[est],
            fmt_rel(max(rel)).lstrip("+") if rel else "—",
            fmt(max(zs), 3) if zs else "—",
            fmt_rel(max(rse)).lstrip("+") if rse else "—",
        )
    return table


def _demo_plot(
    path: Path,
    plot_delta: float,
    sigmas: np.ndarray,
    measured: dict[str, np.ndarray],
    n: int,
    target: float,
) -> None:
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.ticker import NullFormatter

    from stochgrad.studies import ESTIMATORS, LABELS, quadratic_variance

    fig = Figure(figsize=(13, 5.4), layout="constrained")
    axes = fig.subplots(1, 2)
    lo, hi = float(sigmas.min()), float(sigmas.max())
    line_sigmas = np.geomspace(lo / 1.25, hi * 1.25, 200)
    colors = dict(zip(ESTIMATORS, ("C0", "C1", "C2", "C3", "C4"), strict=True))
    for i, ax in enumerate(axes):
        coord = ("θ", "σ")[i]
        for est in ESTIMATORS:
            closed = np.array(
                [quadratic_variance(est, plot_delta, s, num_samples=n)[i] for s in line_sigmas]
            )
            pts = measured[est][:, i]
            ax.plot(
                line_sigmas,
                np.where(closed > 0, closed, np.nan),
                "-",
                color=colors[est],
                label=LABELS[est],
            )
            ax.plot(
                sigmas, np.where(pts > 0, pts, np.nan), "o", color=colors[est], mfc="none", ms=7
            )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ticks = [t for t in (0.1, 0.2, 0.5, 1, 2, 5, 10) if lo <= t <= hi]
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("σ")
        ax.set_ylabel(f"single-sample variance of the ∂/∂{coord} term")
        ax.set_title(f"∂/∂{coord}   (true gradient {'2(θ − a)' if i == 0 else '2σ'})")
        ax.grid(True, which="major", alpha=0.3)
    handles = [Line2D([], [], color=colors[e], label=LABELS[e]) for e in ESTIMATORS]
    handles += [
        Line2D([], [], color="0.3", ls="-", label="closed form"),
        Line2D(
            [], [], color="0.3", ls="none", marker="o", mfc="none", label=f"measured, n = {n:,}"
        ),
    ]
    axes[1].legend(handles=handles, loc="upper left", fontsize=9, framealpha=0.9)
    fig.suptitle(
        f"Gradient of E[(x − a)²], x ~ N(θ, σ²), θ − a = {plot_delta:g} (a = {target:g}): "
        "variance of one per-sample term"
    )
    fig.savefig(path, dpi=120)


@subcommand(
    "demo",
    help="variance of five gradient estimators on E[(x-a)^2], measured vs closed form",
    arguments=_demo_arguments,
)
def run_demo(args: argparse.Namespace, console: Console) -> int:
    """Variance of five gradient estimators of E[(x - a)^2], x ~ N(theta, sigma^2).

    Single-sample variance of the score-function (no, leave-one-out and optimal baselines),
    pathwise and coupled measure-valued estimators of the gradient with respect to
    (theta, sigma), measured with the library's estimators and compared with the closed forms
    derived in docs/variance.md. Prints a table per coordinate and a summary, and writes a
    log-log plot of variance against sigma.
    """
    import torch

    from stochgrad import studies

    n = args.samples
    if n < 2:
        console.print("[red]--samples must be at least 2 (leave-one-out baselines)[/red]")
        return 2
    if any(s <= 0 for s in args.sigmas):
        console.print("[red]--sigmas must all be positive[/red]")
        return 2
    out = prepare_output(args.out)
    a = args.target
    ests = studies.ESTIMATORS
    grid = [(d, s) for d in args.deltas for s in args.sigmas]
    # The plot's sigma sweep reuses the table's cells at theta - a = --plot-delta when it is in
    # --deltas; otherwise it is measured separately.
    plot_sigmas = np.array(sorted(set(args.sigmas)))
    extra = [] if args.plot_delta in args.deltas else [(args.plot_delta, s) for s in plot_sigmas]

    def f(x: torch.Tensor) -> torch.Tensor:
        return (x - a) ** 2

    cells: list[DemoCell] = []
    extra_cells: list[DemoCell] = []
    with progress_bar(console) as progress:
        task = progress.add_task(
            "demo: grid x estimators", total=(len(grid) + len(extra)) * len(ests)
        )
        for part, (points, store) in enumerate(((grid, cells), (extra, extra_cells))):
            for gi, (d, s) in enumerate(points):
                for ei, est in enumerate(ests):
                    gen = studies.cell_generator(args.seed, part, gi, ei)
                    mc = studies.monte_carlo(est, f, a + d, s, num_samples=n, generator=gen)
                    store.append(
                        DemoCell(
                            d,
                            s,
                            est,
                            studies.quadratic_gradient(d, s),
                            mc.grad,
                            mc.stderr,
                            mc.variance,
                            mc.variance_se,
                            studies.quadratic_variance(est, d, s, num_samples=n),
                        )
                    )
                    progress.advance(task)
    measured = {
        e: np.array(
            [
                next(
                    c.variance
                    for c in cells + extra_cells
                    if c.estimator == e and c.delta == args.plot_delta and c.sigma == s
                )
                for s in plot_sigmas
            ]
        )
        for e in ests
    }

    for i in (0, 1):
        console.print(_demo_table(cells, i, n))
        console.print()
    console.print(_demo_summary(cells))
    _demo_plot(out, args.plot_delta, plot_sigmas, measured, n, a)
    console.print(f"\nplot written to [bold]{out}[/bold]")
    return 0


# ---------------------------------------------------------------------------------------------
# stochgrad compare
# ---------------------------------------------------------------------------------------------
COMPARE_SAMPLES = 200_000
COMPARE_POINTS = 20


@dataclass(frozen=True)
class CompareCell:
    """Quadrature and Monte Carlo variances for one estimator, one function, one ``k``."""

    family: str
    k: float
    estimator: str
    quad: tuple[float, float]
    mc: np.ndarray
    mc_se: np.ndarray

    def z(self, i: int) -> float:
        return z_score(float(self.mc[i]), self.quad[i], float(self.mc_se[i]))

    def rel(self, i: int) -> float:
        from stochgrad.studies import relative_difference

        if abs(self.quad[i]) <= 1e-20:
            return float("nan")
        return relative_difference(float(self.mc[i]), self.quad[i])


def _compare_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--samples",
        type=positive_int,
        default=COMPARE_SAMPLES,
        help=f"Monte Carlo samples per estimator and grid point (default {COMPARE_SAMPLES:_})",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument(
        "--out",
        default="stochgrad-out/compare_variance.png",
        help="PNG, 2 x 3 panels (default stochgrad-out/compare_variance.png)",
    )
    p.add_argument(
        "--points",
        type=positive_int,
        default=COMPARE_POINTS,
        help=f"values of k per function (default {COMPARE_POINTS})",
    )
    p.add_argument("--mu", type=float, default=1.0, help="mean of x (default 1)")
    p.add_argument("--sigma", type=float, default=1.0, help="standard deviation of x (default 1)")


def _compare_table(cells: list[CompareCell], family: str, i: int, n: int) -> Table:
    from stochgrad.studies import COMPARE_ESTIMATORS, FAMILIES, SHORT_LABELS

    coord = ("μ", "σ")[i]
    fam = FAMILIES[family]
    label = fam.label.strip("$").replace("\\exp", "exp").replace("\\cos", "cos")
    table = Table(
        title=f"{label}: variance of one ∂/∂{coord} term (quad = quadrature, MC = n = {n:,})",
        header_style="bold",
    )
    table.add_column("k", justify="right")
    for est in COMPARE_ESTIMATORS:
        table.add_column(f"{SHORT_LABELS[est]} quad", justify="right")
        table.add_column(f"{SHORT_LABELS[est]} MC", justify="right")
    table.add_column("max |z|", justify="right")
    by_k: dict[float, dict[str, CompareCell]] = {}
    for c in cells:
        if c.family == family:
            by_k.setdefault(c.k, {})[c.estimator] = c
    for k, row in by_k.items():
        values = [fmt(k, 3)]
        zs = []
        for est in COMPARE_ESTIMATORS:
            c = row[est]
            z = c.z(i)
            style = z_style(z)
            values += [fmt(c.quad[i]), f"[{style}]{fmt(float(c.mc[i]))}[/{style}]"]
            if not math.isnan(z):
                zs.append(abs(z))
        zmax = max(zs) if zs else float("nan")
        style = z_style(zmax)
        values.append(f"[{style}]{fmt(zmax, 3)}[/{style}]")
        table.add_row(*values)
    return table


def _compare_summary(cells: list[CompareCell]) -> Table:
    from stochgrad.studies import COMPARE_ESTIMATORS, LABELS, SHORT_LABELS

    table = Table(
        title="Monte Carlo (library estimators) vs quadrature, all functions, k and coordinates",
        caption="z = (MC − quad) / se, se = sqrt((m4 − var²)/n) from the same samples",
        header_style="bold",
    )
    table.add_column("estimator")
    table.add_column("max |rel. diff|", justify="right")
    table.add_column("max |z|", justify="right")
    table.add_column("|z| > 5", justify="right")
    for est in COMPARE_ESTIMATORS:
        rel = [abs(c.rel(i)) for c in cells if c.estimator == est for i in (0, 1)]
        zs = [abs(c.z(i)) for c in cells if c.estimator == est for i in (0, 1)]
        rel = [r for r in rel if not math.isnan(r)]
        zs = [z for z in zs if not math.isnan(z)]
        table.add_row(
            f"{SHORT_LABELS[est]} = {LABELS[est]}",
            fmt_rel(max(rel)).lstrip("+") if rel else "—",
            fmt(max(zs), 3) if zs else "—",
            str(sum(z > 5 for z in zs)),
        )
    return table


def _compare_plot(path: Path, cells: list[CompareCell], n: int, mu: float, sigma: float) -> None:
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.ticker import NullFormatter

    from stochgrad.studies import COMPARE_ESTIMATORS, FAMILIES, LABELS

    fig = Figure(figsize=(16, 9), layout="constrained")
    axes = fig.subplots(2, 3)
    colors = dict(zip(COMPARE_ESTIMATORS, ("C0", "C2", "C3", "C4"), strict=True))
    for col, fam in enumerate(FAMILIES.values()):
        fam_cells = [c for c in cells if c.family == fam.key]
        for row in (0, 1):
            ax = axes[row, col]
            for est in COMPARE_ESTIMATORS:
                cs = sorted((c for c in fam_cells if c.estimator == est), key=lambda c: c.k)
                ks = np.array([c.k for c in cs])
                quad = np.array([c.quad[row] for c in cs])
                mc = np.array([c.mc[row] for c in cs])
                ax.plot(ks, np.where(quad > 1e-20, quad, np.nan), "-", color=colors[est])
                ax.plot(ks, np.where(mc > 1e-20, mc, np.nan), "o", color=colors[est], mfc="none")
            ax.set_yscale("log")
            if fam.log_k:
                ax.set_xscale("log")
                ticks = [t for t in (0.1, 0.2, 0.5, 1, 2, 5, 10) if fam.k_min <= t <= fam.k_max]
                ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
                ax.xaxis.set_minor_formatter(NullFormatter())
            ax.grid(True, which="major", alpha=0.3)
            ax.set_xlabel("k")
            coord = ("μ", "σ")[row]
            ax.set_ylabel(f"variance of one ∂/∂{coord} term")
            if row == 0:
                ax.set_title(fam.label)
    handles = [Line2D([], [], color=colors[e], label=LABELS[e]) for e in COMPARE_ESTIMATORS]
    handles += [
        Line2D([], [], color="0.3", ls="-", label="quadrature"),
        Line2D(
            [], [], color="0.3", ls="none", marker="o", mfc="none", label=f"Monte Carlo, n = {n:,}"
        ),
    ]
    fig.legend(handles=handles, loc="outside lower center", ncols=6, fontsize=10)
    fig.suptitle(
        f"Single-sample variance of the gradient estimators, x ~ N(μ = {mu:g}, σ = {sigma:g}) "
        "(after Mohamed et al. 2020, Figs. 2-3)"
    )
    fig.savefig(path, dpi=110)


@subcommand(
    "compare",
    help="variance study of Mohamed et al. (2020): quadrature vs Monte Carlo over f and k",
    arguments=_compare_arguments,
)
def run_compare(args: argparse.Namespace, console: Console) -> int:
    """The variance study of Mohamed et al. (JMLR 2020, Sec. 3, Figs. 2-3).

    x ~ N(mu, sigma^2) with mu = sigma = 1; f in {(x - k)^2, exp(-k x^2), cos(k x)} over a grid
    of k. Single-sample variance for mu and sigma of the score function, the score function with
    the optimal baseline, pathwise and coupled measure-valued estimators, by quadrature
    (scipy.integrate.quad) and by Monte Carlo with the library's estimators. Prints tables and
    writes a 2 x 3 panel plot (rows mu, sigma; columns the three functions).
    """
    from stochgrad import studies

    if args.sigma <= 0:
        console.print("[red]--sigma must be positive[/red]")
        return 2
    if args.samples < 2:
        console.print("[red]--samples must be at least 2 (optimal baseline)[/red]")
        return 2
    out = prepare_output(args.out)
    n = args.samples
    ests = studies.COMPARE_ESTIMATORS
    cells: list[CompareCell] = []
    with progress_bar(console) as progress:
        task = progress.add_task(
            "compare: functions x k", total=len(studies.FAMILIES) * args.points
        )
        for fi, fam in enumerate(studies.FAMILIES.values()):
            for ki, k in enumerate(fam.grid(args.points)):
                obj = fam.make(float(k))
                for ei, est in enumerate(ests):
                    quad = studies.quadrature_variance(est, obj, args.mu, args.sigma)
                    gen = studies.cell_generator(args.seed, fi, ki, ei)
                    mc = studies.monte_carlo(
                        est, obj.torch_f, args.mu, args.sigma, num_samples=n, generator=gen
                    )
                    cells.append(
                        CompareCell(fam.key, float(k), est, quad, mc.variance, mc.variance_se)
                    )
                progress.advance(task)
    for fam in studies.FAMILIES:
        for i in (0, 1):
            console.print(_compare_table(cells, fam, i, n))
    console.print(
        "SF = score function, SF+opt = score function with the optimal baseline, PW = pathwise, "
        "MVD = measure-valued (coupled)"
    )
    console.print(_compare_summary(cells))
    _compare_plot(out, cells, n, args.mu, args.sigma)
    console.print(f"\nplot written to [bold]{out}[/bold]")
    return 0


# ---------------------------------------------------------------------------------------------
# stochgrad relax-toy
# ---------------------------------------------------------------------------------------------
def _estimator_list(text: str) -> list[str]:
    """argparse type: comma-separated estimator keys of the RELAX toy study."""
    from stochgrad.studies_discrete import ESTIMATORS

    keys = [k.strip() for k in text.split(",") if k.strip()]
    unknown = [k for k in keys if k not in ESTIMATORS]
    if not keys or unknown:
        raise argparse.ArgumentTypeError(
            f"expected some of {','.join(ESTIMATORS)} separated by commas, got {text!r}"
        )
    return list(dict.fromkeys(keys))


def _non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    return 0 if text.strip() in ("0", "0.0") else positive_int(text)


def _relax_toy_arguments(p: argparse.ArgumentParser) -> None:
    from stochgrad.studies_discrete import DEFAULT_ESTIMATORS, Config

    c = Config()
    p.add_argument(
        "--iterations",
        type=positive_int,
        default=c.iterations,
        help=f"Adam steps per run (default {c.iterations})",
    )
    p.add_argument("--seeds", type=positive_int, default=10, help="seeds 0..S-1 (default 10)")
    p.add_argument(
        "--estimators",
        type=_estimator_list,
        default=list(DEFAULT_ESTIMATORS),
        help=f"comma-separated (default {','.join(DEFAULT_ESTIMATORS)}; also: arm)",
    )
    p.add_argument(
        "--out",
        default="stochgrad-out/relax_toy.png",
        help="PNG path (default stochgrad-out/relax_toy.png); the JSON of the results "
        "(<name>.json) and the checkpoint (<name>_checkpoint.pt) go next to it",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="reuse the finished (estimator, seed) runs of the checkpoint",
    )
    p.add_argument(
        "--probe-every",
        type=positive_int,
        default=c.probe_every,
        help=f"measure the gradient variance every this many iterations (default {c.probe_every})",
    )
    p.add_argument(
        "--probe-samples",
        type=positive_int,
        default=c.probe_samples,
        help=f"draws per variance measurement, not used for training (default {c.probe_samples})",
    )
    p.add_argument(
        "--half-samples",
        type=positive_int,
        default=c.half_samples,
        help=f"draws for the variance at theta = 1/2 (default {c.half_samples})",
    )
    p.add_argument(
        "--warmup",
        type=_non_negative_int,
        default=c.warmup,
        help="control-variate training steps at theta = 1/2 before measuring the variance "
        f"there, stateful estimators (RELAX) only (default {c.warmup})",
    )


def _relax_toy_table(study, rows) -> Table:
    from stochgrad.studies_discrete import ESTIMATORS, THRESHOLD

    cfg = study.config
    table = Table(
        title=(
            f"RELAX toy: minimise E[(b − {cfg.target})²], b ~ Bernoulli(θ = σ(logit)), logit₀ = 0, "
            f"Adam lr {cfg.lr}, {cfg.iterations:,} iterations, mean over {len(study.seeds)} seeds; "
            "one sample per iteration (RLOO: 2, DisARM: one antithetic pair)"
        ),
        caption=(
            "Var = variance of the per-iteration gradient estimate (w.r.t. the logit); "
            f"ln Var averaged over the probes every {cfg.probe_every} iterations "
            f"({cfg.probe_samples} extra draws each, iteration 0 excluded); Var at θ = ½ from "
            f"{cfg.half_samples:,} draws (RELAX after {cfg.warmup} control-variate steps at θ = ½)"
        ),
        header_style="bold",
    )
    for name, justify in (
        ("estimator", "left"),
        ("samples / it", "right"),
        ("f evals / it", "right"),
        ("final θ (± sd)", "right"),
        ("final loss", "right"),
        (f"iteration θ < {THRESHOLD:g} (median)", "right"),
        ("mean ln Var", "right"),
        ("Var at θ = ½", "right"),
        ("ratio to REINFORCE", "right"),
    ):
        table.add_column(name, justify=justify)
    for r in rows:
        below = (
            "never"
            if r.below_iteration is None
            else f"{r.below_iteration:,.0f} ({r.below_seeds}/{len(study.seeds)} seeds)"
        )
        table.add_row(
            ESTIMATORS[r.key].label,
            str(r.samples) if r.evaluations else "—",
            str(r.evaluations),
            f"{r.final_theta:.4f} ± {r.final_theta_sd:.4f}",
            f"{r.final_loss:.7f}",
            below,
            fmt(r.mean_log_variance, 4),
            fmt(r.variance_half, 3),
            fmt(r.ratio_half, 3),
        )
    return table


@subcommand(
    "relax-toy",
    help="RELAX's toy (Grathwohl et al. 2018): seven gradient estimators train one Bernoulli",
    arguments=_relax_toy_arguments,
)
def run_relax_toy(args: argparse.Namespace, console: Console) -> int:
    """The toy problem of RELAX (Grathwohl et al., ICLR 2018, Sec. 6.1, Fig. 1).

    Minimise E[(b - 0.499)^2], b ~ Bernoulli(sigmoid(logit)), logit from 0, by Adam (lr 0.01)
    with gradient estimates from: the exact gradient (closed form), REINFORCE, REINFORCE with a
    leave-one-out baseline (2 samples per iteration), REBAR, RELAX, Gumbel-softmax (biased) and
    DisARM, one sample per iteration otherwise. Records theta, the exact loss and the variance of
    the per-iteration gradient; prints a table, writes a two-panel PNG, a JSON of the results
    and a checkpoint of finished runs (--resume continues an interrupted study).
    """
    import time

    from stochgrad import studies_discrete as SD

    out = prepare_output(args.out)
    json_path = out.with_suffix(".json")
    ckpt_path = out.with_name(out.stem + "_checkpoint.pt")
    config = SD.Config(
        iterations=args.iterations,
        probe_every=args.probe_every,
        probe_samples=args.probe_samples,
        half_samples=args.half_samples,
        warmup=args.warmup,
    )
    seeds = list(range(args.seeds))
    keys = args.estimators
    ready = []
    for key in keys:
        reason = SD.availability(key, config)
        if reason is None:
            ready.append(key)
        else:
            console.print(f"[yellow]skipping {SD.ESTIMATORS[key].label}: {reason}[/yellow]")
    if not ready:
        console.print("[red]no estimator can run[/red]")
        return 2
    start = time.perf_counter()
    with progress_bar(console) as progress:
        task = progress.add_task(
            "relax-toy: estimators x seeds x iterations",
            total=len(ready) * len(seeds) * config.iterations,
        )
        try:
            study = SD.run_study(
                keys,
                seeds,
                config,
                ckpt_path,
                resume=args.resume,
                progress=lambda k: progress.advance(task, k),
            )
        except ValueError as exc:
            console.print(f"[red]{exc}[/red]")
            return 2
    wall = time.perf_counter() - start
    if study.resumed:
        console.print(
            f"resumed: {study.resumed} finished run(s) loaded from [bold]{ckpt_path}[/bold]"
        )
    rows = SD.summarise(study)
    console.print(_relax_toy_table(study, rows))
    by_key = {r.key: r for r in rows}
    if "reinforce" in by_key:
        for key in ("relax", "disarm", "rloo", "rebar"):
            if key in by_key:
                r = by_key[key]
                console.print(
                    f"at θ = ½: Var[{SD.ESTIMATORS[key].label}] / Var[REINFORCE] = "
                    f"{fmt(r.ratio_half, 3)}"
                )
    if "exact" in by_key:
        r = by_key["exact"]
        reached = (
            f"θ < {SD.THRESHOLD:g} first at iteration {r.below_iteration:,.0f}"
            if r.below_iteration is not None
            else f"θ never below {SD.THRESHOLD:g} in {config.iterations:,} iterations"
        )
        console.print(f"exact gradient: {reached}; final θ = {r.final_theta:.3g}")
    SD.write_json(SD.to_json(study, rows), json_path)
    SD.plot(study, out)
    console.print(f"\nplot written to [bold]{out}[/bold]")
    console.print(f"results written to [bold]{json_path}[/bold]")
    console.print(f"checkpoint: [bold]{ckpt_path}[/bold]")
    console.print(f"wall time {wall:.1f} s ({study.seconds:.1f} s in new runs)")
    return 0


# ---------------------------------------------------------------------------------------------
# stochgrad discrete-vae
# ---------------------------------------------------------------------------------------------
def _discrete_vae_estimators(text: str) -> list[str]:
    """argparse type: comma-separated estimator keys of the discrete VAE study."""
    from stochgrad.apps.discrete_vae import ESTIMATORS

    keys = [k.strip() for k in text.split(",") if k.strip()]
    unknown = [k for k in keys if k not in ESTIMATORS]
    if not keys or unknown:
        raise argparse.ArgumentTypeError(
            f"expected some of {','.join(ESTIMATORS)} separated by commas, got {text!r}"
        )
    return list(dict.fromkeys(keys))


def _discrete_vae_arguments(p: argparse.ArgumentParser) -> None:
    from stochgrad.apps.discrete_vae import ESTIMATORS, Config

    c = Config()
    p.add_argument(
        "--steps",
        type=positive_int,
        default=c.steps,
        help=f"Adam steps per run (default {c.steps})",
    )
    p.add_argument("--seeds", type=positive_int, default=3, help="seeds 0..S-1 (default 3)")
    p.add_argument(
        "--estimators",
        type=_discrete_vae_estimators,
        default=list(ESTIMATORS),
        help=f"comma-separated (default {','.join(ESTIMATORS)})",
    )
    p.add_argument(
        "--samples",
        type=positive_int,
        default=c.samples,
        help=f"budget S: f evaluations per datapoint and step (REINFORCE/RLOO/Gumbel S samples, "
        f"DisARM S/2 pairs, REBAR S/3 samples; default {c.samples})",
    )
    p.add_argument(
        "--latents",
        type=positive_int,
        default=c.latents,
        help=f"binary latents K (default {c.latents})",
    )
    p.add_argument(
        "--hidden",
        type=int,
        default=c.hidden,
        help=f"hidden tanh units of encoder and decoder, 0 = linear (default {c.hidden})",
    )
    p.add_argument(
        "--batch-size",
        type=positive_int,
        default=c.batch_size,
        help=f"digits per step (default {c.batch_size})",
    )
    p.add_argument("--lr", type=float, default=c.lr, help=f"Adam learning rate (default {c.lr})")
    p.add_argument(
        "--eval-every",
        type=positive_int,
        default=c.eval_every,
        help=f"steps between test-ELBO estimates (default {c.eval_every})",
    )
    p.add_argument(
        "--probe-every",
        type=positive_int,
        default=c.probe_every,
        help=f"steps between gradient-variance measurements (default {c.probe_every})",
    )
    p.add_argument(
        "--probe-calls",
        type=positive_int,
        default=c.probe_calls,
        help=f"estimator calls per variance measurement, >= 2 (default {c.probe_calls})",
    )
    p.add_argument(
        "--iwae-k",
        type=positive_int,
        default=c.iwae_k,
        help=f"importance samples of the final bound (default {c.iwae_k})",
    )
    p.add_argument(
        "--checkpoint-every",
        type=positive_int,
        default=c.checkpoint_every,
        help=f"steps between mid-run checkpoints (default {c.checkpoint_every})",
    )
    p.add_argument(
        "--out",
        default="stochgrad-out/discrete_vae.png",
        help="PNG path (default stochgrad-out/discrete_vae.png); the JSON (<name>.json), the "
        "markdown table (<name>_table.md) and the checkpoint (<name>_checkpoint.pt) go next to it",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="reuse finished (estimator, seed) runs of the checkpoint and continue an "
        "interrupted one from its last mid-run checkpoint",
    )


@subcommand(
    "discrete-vae",
    help="binary-latent VAE on sklearn digits: encoder gradient estimators at one budget",
    arguments=_discrete_vae_arguments,
)
def run_discrete_vae(args: argparse.Namespace, console: Console) -> int:
    """A binary-latent VAE (sigmoid belief network) on scikit-learn's 8x8 digits.

    q(z|x) = Bernoulli(enc(x)) with K binary latents, p(z) = Bernoulli(learned logits),
    p(x|z) = Bernoulli(dec(z)); digits binarised at intensity > 8, 1437 train / 360 test. The
    decoder and prior get the exact gradient of a sampled ELBO; the encoder gets the gradient of
    the ELBO from REINFORCE, RLOO, DisARM, REBAR or Gumbel-softmax (biased), all with the same
    budget of S evaluations of the ELBO per datapoint and step. Prints the final test ELBO and
    importance-weighted bound (mean +- sd over seeds), the mean log10 variance of the
    encoder-gradient estimate and the wall time per estimator; writes a two-panel PNG, a JSON and
    a markdown table, and a checkpoint (--resume continues an interrupted study).
    """
    import time

    from stochgrad.apps import discrete_vae as DV

    try:
        config = DV.Config(
            steps=args.steps,
            samples=args.samples,
            latents=args.latents,
            hidden=args.hidden,
            batch_size=args.batch_size,
            lr=args.lr,
            eval_every=args.eval_every,
            probe_every=args.probe_every,
            probe_calls=args.probe_calls,
            iwae_k=args.iwae_k,
            checkpoint_every=args.checkpoint_every,
        )
        DV.check_budget(args.estimators, config.samples)
    except ValueError as exc:
        console.print(f"[red]{exc}[/red]")
        return 2
    out = prepare_output(args.out)
    json_path, md_path = out.with_suffix(".json"), out.with_name(out.stem + "_table.md")
    ckpt_path = out.with_name(out.stem + "_checkpoint.pt")
    seeds = list(range(args.seeds))
    start = time.perf_counter()
    with progress_bar(console) as progress:
        task = progress.add_task(
            "discrete-vae: estimators x seeds x steps",
            total=len(args.estimators) * len(seeds) * config.steps,
        )
        try:
            study = DV.run_study(
                args.estimators,
                seeds,
                config,
                ckpt_path,
                resume=args.resume,
                progress=lambda k: progress.advance(task, k),
            )
        except ValueError as exc:
            console.print(f"[red]{exc}[/red]")
            return 2
    wall = time.perf_counter() - start
    if study.resumed or study.continued:
        console.print(
            f"resumed from [bold]{ckpt_path}[/bold]: {study.resumed} finished run(s) loaded, "
            f"{study.continued} continued from a mid-run checkpoint"
        )
    rows = DV.summarise(study)
    header, cells = DV.table_rows(rows)
    header[4] = header[4].replace(" k ", f" k={config.iwae_k} ")
    table = Table(
        title=(
            f"Binary VAE on sklearn digits (K = {config.latents}, hidden {config.hidden}): "
            f"{config.steps:,} Adam steps, budget S = {config.samples} f-evaluations per datapoint "
            f"and step, {len(seeds)} seed(s)"
        ),
        caption=(
            f"test ELBO with {config.final_samples} samples per digit ({DV.TEST_SIZE} test digits); Var = "
            f"variance of the encoder-logit gradient across {config.probe_calls} calls on "
            f"{config.probe_batch} test digits, summed, every {config.probe_every} steps"
        ),
        header_style="bold",
    )
    for i, name in enumerate(header):
        table.add_column(name, justify="left" if i == 0 else "right")
    for c in cells:
        table.add_row(*c)
    console.print(table)
    for key, diffs in DV.paired_differences(study).items():
        d = np.array(diffs)
        console.print(
            f"{DV.ESTIMATORS[key].label} − REINFORCE, final test ELBO (paired by seed): "
            f"{d.mean():+.2f} nats (better on {int((d > 0).sum())}/{d.size} seeds)"
        )
    DV.write_json(DV.to_json(study, rows), json_path)
    md_path.write_text(DV.markdown_table(study, rows))
    DV.plot(study, out)
    console.print(f"\nplot written to [bold]{out}[/bold]")
    console.print(f"results written to [bold]{json_path}[/bold] and [bold]{md_path}[/bold]")
    console.print(f"checkpoint: [bold]{ckpt_path}[/bold]")
    console.print(f"wall time {wall:.1f} s ({study.seconds:.1f} s in runs done now)")
    return 0


# ---------------------------------------------------------------------------------------------
# application subcommands, imported lazily from stochgrad.apps
# ---------------------------------------------------------------------------------------------
# Each job is (module, add-arguments function, run function, help). An application module
# exposes ``add_...(parser)`` and ``run_...(args, console) -> int``; importing it only when its
# subcommand runs keeps ``stochgrad --help`` fast and lets a missing extra fail one job alone.

AppJob = tuple[str, str, str, str]


def _app_adder(job: AppJob, extra: str) -> Callable[[argparse.ArgumentParser], None] | None:
    """The job's add-arguments function; None when this build does not ship the job."""
    import importlib

    module, add, _, _ = job
    try:  # an extra that is not installed must not break the other subcommands
        return getattr(importlib.import_module(module), add)
    except ImportError as exc:
        if (getattr(exc, "name", "") or "").startswith("stochgrad"):
            return None
        message = f"{exc}; install the extra: pip install 'stochgrad[{extra}]'"
        return lambda p: p.set_defaults(app_missing=message)


def _run_app_job(job: AppJob, args: argparse.Namespace, console: Console) -> int:
    import importlib

    if getattr(args, "app_missing", None):
        console.print(f"[red]{args.app_missing}[/red]")
        return 1
    module, _, run, _ = job
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if not (exc.name or "").startswith("stochgrad"):
            raise
        console.print(f"[red]this build of stochgrad does not ship {module}[/red]")
        return 1
    return int(getattr(mod, run)(args, console))


def app_group(name: str, *, help: str, jobs: dict[str, AppJob], extra: str) -> None:
    """Register ``stochgrad <name> <job> ...`` with one lazily imported job per entry."""
    dest = f"{name.replace('-', '_')}_command"

    def arguments(p: argparse.ArgumentParser) -> None:
        subs = p.add_subparsers(dest=dest, metavar="JOB")
        for job, spec in jobs.items():
            adder = _app_adder(spec, extra)
            if adder is not None:
                adder(subs.add_parser(job, help=spec[3], description=spec[3]))

    def run(args: argparse.Namespace, console: Console) -> int:
        job = getattr(args, dest, None)
        if job is None:
            console.print(f"usage: stochgrad {name} {{" + ",".join(jobs) + "} ...")
            return 2
        return _run_app_job(jobs[job], args, console)

    run.__doc__ = help
    subcommand(name, help=help, arguments=arguments)(run)


def app_command(name: str, job: AppJob, *, extra: str) -> None:
    """Register ``stochgrad <name> ...`` run by one lazily imported application function."""

    def arguments(p: argparse.ArgumentParser) -> None:
        adder = _app_adder(job, extra)
        if adder is not None:
            adder(p)

    def run(args: argparse.Namespace, console: Console) -> int:
        return _run_app_job(job, args, console)

    run.__doc__ = job[3]
    subcommand(name, help=job[3], arguments=arguments)(run)


app_group(
    "rl",
    help="reinforcement learning: train, eval, options, pareto",
    extra="rl",
    jobs={
        "train": (
            "stochgrad.apps.rl.policy_gradient",
            "add_train_arguments",
            "run_train",
            "policy-gradient training (REINFORCE, TRPO) on a gymnasium environment",
        ),
        "eval": (
            "stochgrad.apps.rl.policy_gradient",
            "add_eval_arguments",
            "run_eval",
            "evaluate a trained policy from its checkpoint",
        ),
        "pareto": (
            "stochgrad.apps.rl.multi_objective",
            "add_arguments",
            "run",
            "multi-objective REINFORCE on Deep Sea Treasure by linear scalarisation",
        ),
        "options": (
            "stochgrad.apps.rl.fourrooms",
            "add_arguments",
            "run",
            "option-critic on the four-rooms grid against value iteration",
        ),
    },
)

app_group(
    "hmm",
    help="hidden Markov models: fit by EM or by the Fisher-identity gradient",
    extra="latent",
    jobs={
        "fit": (
            "stochgrad.apps.hmm",
            "add_fit_arguments",
            "run_fit",
            "fit a Gaussian or Poisson HMM to a series (EM or gradient ascent)",
        ),
    },
)

app_group(
    "telegraph",
    help="the telegraph model of gene expression: fit kinetics, simulate counts",
    extra="latent",
    jobs={
        "fit": (
            "stochgrad.apps.telegraph",
            "add_fit_arguments",
            "run_fit",
            "maximum-likelihood burst kinetics per gene from a counts table",
        ),
        "simulate": (
            "stochgrad.apps.telegraph",
            "add_simulate_arguments",
            "run_simulate",
            "simulate counts by the exact Gillespie algorithm",
        ),
        "recover": (
            "stochgrad.apps.telegraph",
            "add_recover_arguments",
            "run_recover",
            "parameter-recovery study on simulated data over a (k_on, k_off) grid",
        ),
    },
)

app_command(
    "rbm",
    (
        "stochgrad.apps.ebm",
        "add_arguments",
        "run",
        "train a Bernoulli RBM (CD-k or persistent CD) on the digits, exact log-likelihood",
    ),
    extra="latent",
)

app_command(
    "bbvi",
    (
        "stochgrad.apps.vi",
        "add_arguments",
        "run",
        "black-box variational inference for Bayesian logistic regression, estimators compared",
    ),
    extra="latent",
)


app_command(
    "greeks",
    (
        "stochgrad.apps.finance",
        "add_arguments",
        "run",
        "option price and Greeks by likelihood ratio, pathwise and mixed estimators",
    ),
    extra="finance",
)

app_group(
    "design",
    help="Bayesian experimental design: expected information gain and its design gradient",
    extra="all",
    jobs={
        "eig": (
            "stochgrad.apps.design",
            "add_eig_arguments",
            "run_eig",
            "EIG and design-gradient estimates (nested Monte Carlo, PCE) against the closed form or quadrature",
        ),
        "optimize": (
            "stochgrad.apps.design",
            "add_optimize_arguments",
            "run_optimize",
            "gradient ascent over designs",
        ),
    },
)

app_command(
    "offpolicy",
    (
        "stochgrad.apps.offpolicy",
        "add_arguments",
        "run",
        "off-policy learning from logged bandit data, and the confounding demonstration",
    ),
    extra="latent",
)


app_group(
    "molecules",
    help="de novo molecular design: a SMILES GRU prior fine-tuned by policy gradient",
    extra="chem",
    jobs={
        "pretrain": (
            "stochgrad.apps.molecules.cli",
            "add_pretrain_arguments",
            "run_pretrain",
            "pretrain the SMILES prior on a MOSES subset",
        ),
        "sample": (
            "stochgrad.apps.molecules.cli",
            "add_sample_arguments",
            "run_sample",
            "sample molecules from a model and print the MOSES metrics",
        ),
        "optimize": (
            "stochgrad.apps.molecules.cli",
            "add_optimize_arguments",
            "run_optimize",
            "fine-tune the generator by policy gradient on QED, penalised logP or similarity",
        ),
    },
)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
