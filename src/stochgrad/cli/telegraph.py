"""``stochgrad telegraph``: the telegraph model of gene expression.

- ``fit COUNTS``: maximum-likelihood burst kinetics per gene, with 95 % profile-likelihood
  intervals and identifiability flags, written to ``--out``/``kinetics.csv``, with a summary
  (``summary.json``) and a plot of burst frequency against burst size
  (``burst_kinetics.png``). COUNTS is a CSV/TSV table, an ``.h5ad`` file or a 10x folder;
  empty fields are missing cells. Each finished chunk of genes is checkpointed
  (``fit_checkpoint.pt``): a rerun resumes, ``--restart`` starts afresh.
- ``simulate``: a genes x cells counts table by the exact Gillespie algorithm (or exact
  stationary draws), ``counts.csv``, and the true kinetics, ``counts_kinetics.csv``.
- ``recover``: the parameter-recovery study over a (k_on, k_off) grid, checkpointed per grid
  cell (``recover_checkpoint.pt``); tables, ``recovery.md``, ``recovery.json``,
  ``recovery.png``.
"""

from __future__ import annotations

import argparse
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console

from stochgrad.cli import _kit
from stochgrad.cli.argtypes import positive_int

__all__ = [
    "add_fit_arguments",
    "add_recover_arguments",
    "add_simulate_arguments",
    "fit_summary",
    "plot_burst_kinetics",
    "plot_recovery",
    "recovery_json",
    "recovery_markdown",
    "run_fit",
    "run_recover",
    "run_simulate",
    "write_fits",
]


# ---------------------------------------------------------------------------------------------
# options shared by the jobs
# ---------------------------------------------------------------------------------------------
def _ratio(text: str) -> float:
    """argparse type: a finite number > 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 1, got {text!r}") from None
    if not 1.0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number > 1, got {text!r}")
    return value


def _parallel_options(p: argparse.ArgumentParser, chunk_help: str) -> None:
    p.add_argument(
        "--backend", choices=("process", "ray", "serial"), default="process", help="where to fit"
    )
    p.add_argument(
        "--workers", type=positive_int, default=None, help="worker processes (default: one per CPU)"
    )
    p.add_argument(
        "--chunk-size",
        type=positive_int,
        default=None,
        help=f"genes per job (default: {chunk_help})",
    )
    _kit.add_chunk_timeout_option(p, "job (chunk of genes)")


def _ratio_option(p: argparse.ArgumentParser) -> None:
    from stochgrad.apps.telegraph import MAX_CI_RATIO

    p.add_argument(
        "--max-ci-ratio",
        type=_ratio,
        default=MAX_CI_RATIO,
        help="widest 95%% interval ratio (upper/lower) counted as identifiable: "
        "exp(2*1.96*0.10/0.674) gives a 10%% median error",
    )


def _check_backend(args: argparse.Namespace) -> None:
    if args.backend == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            raise _kit.UserError(
                "--backend ray needs Ray: pip install 'stochgrad[ray]' (or choose --backend process)"
            ) from None


# ---------------------------------------------------------------------------------------------
# fit
# ---------------------------------------------------------------------------------------------
def add_fit_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``stochgrad telegraph fit``."""
    p.add_argument(
        "counts",
        type=Path,
        help="counts: a CSV/TSV table (.gz too; genes x cells or cells x genes), an .h5ad "
        "file, or a 10x folder (matrix.mtx, features.tsv, barcodes.tsv)",
    )
    p.add_argument(
        "--genes-in",
        choices=("rows", "columns"),
        default=None,
        help="which axis holds the genes (default: decided from the labels, the header's "
        "first cell or the format; an undecidable table is refused)",
    )
    p.add_argument("--layer", default=None, help="AnnData layer of an .h5ad file (default: X)")
    from stochgrad.apps.telegraph.chunked import CHUNK_SIZE

    _parallel_options(p, f"{CHUNK_SIZE}, or fewer so that every worker gets some")
    p.add_argument("--no-ci", action="store_true", help="skip the profile-likelihood intervals")
    p.add_argument("--max-iter", type=positive_int, default=60, help="Newton iterations at most")
    _ratio_option(p)
    _kit.add_output_options(p, "stochgrad-out/telegraph-fit")


def write_fits(path: str | Path, names: Sequence[str], fits: Any) -> Path:
    """Write the kinetics table (one row per gene, the columns of ``GeneFits``) as CSV."""
    from stochgrad.apps.telegraph import GeneFits

    def row(i: int, name: str) -> list[str]:
        cells = [name]
        for c in GeneFits.COLUMNS:
            v = getattr(fits, c)[i]
            cells.append(str(bool(v)) if c in GeneFits.BOOLEAN else f"{float(v):.6g}")
        return cells

    return _kit.write_csv(
        Path(path), ["gene", *GeneFits.COLUMNS], (row(i, n) for i, n in enumerate(names))
    )


def _fit_table(fits: Any, fitted: int, ci: bool):
    import numpy as np

    t = _kit.table(
        f"Identifiability of the {fitted} fitted genes",
        ["quantity", "identifiable", "practical", "structural", "median interval ratio"],
        caption=(
            "practical: interval ratio > --max-ci-ratio; structural: profile flat to the box"
            + ("" if ci else "; --no-ci: only estimates on a bound flagged")
        ),
    )
    expressed = ~np.isnan(fits.k_on)
    for q, name in (("bf", "burst frequency"), ("bs", "burst size")):
        s = getattr(fits, f"{q}_structural")[expressed]
        p = getattr(fits, f"{q}_practical")[expressed]
        ratio = getattr(fits, f"{q}_ci_ratio")[expressed]
        t.add_row(
            name,
            str(int((~s & ~p).sum())),
            str(int(p.sum())),
            str(int(s.sum())),
            _kit.fmt(float(np.median(ratio)), 3) if ratio.size else "—",
        )
    return t


def _median(values: Any) -> float:
    import numpy as np

    return float(np.median(values)) if len(values) else float("nan")


def fit_summary(fits: Any, info: Any, how: str, ci: bool, max_ci_ratio: float) -> dict[str, Any]:
    """The fit in numbers: genes fitted and skipped, identifiable counts, medians (JSON values).

    ``info`` is the table's :class:`~stochgrad.apps.telegraph.chunked.CountsInfo`; a quantity
    is identifiable when flagged neither structural nor practical.
    """
    import numpy as np

    fitted = ~np.isnan(fits.k_on)
    bf_ok = fitted & ~fits.bf_structural & ~fits.bf_practical
    bs_ok = fitted & ~fits.bs_structural & ~fits.bs_practical
    return {
        "orientation": how,
        "genes": info.num_genes,
        "cells": info.num_cells,
        "missing_cells": info.missing,
        "genes_fitted": int(fitted.sum()),
        "genes_skipped": int((~fitted).sum()),
        "skipped_only_zeros": int((~info.expressed).sum()),
        "skipped_under_2_cells": int((info.expressed & ~info.fitted).sum()),
        "min_cells": info.min_cells,
        "genes_under_min_cells": int(info.few_cells.sum()),
        "intervals": bool(ci),
        "max_ci_ratio": float(max_ci_ratio),
        "burst_frequency_identifiable": int(bf_ok.sum()),
        "burst_size_identifiable": int(bs_ok.sum()),
        "both_identifiable": int((bf_ok & bs_ok).sum()),
        "median_burst_frequency": _median(fits.burst_frequency[fitted]),
        "median_burst_size": _median(fits.burst_size[fitted]),
        "median_burst_frequency_identifiable": _median(fits.burst_frequency[bf_ok]),
        "median_burst_size_identifiable": _median(fits.burst_size[bs_ok]),
    }


def _summary_table(s: dict[str, Any]):
    t = _kit.table("Summary", ["", "genes", "median (all fitted)", "median (identifiable)"])
    t.add_row("fitted", str(s["genes_fitted"]), "", "")
    t.add_row(
        "burst frequency identifiable",
        str(s["burst_frequency_identifiable"]),
        _kit.fmt(s["median_burst_frequency"], 3),
        _kit.fmt(s["median_burst_frequency_identifiable"], 3),
    )
    t.add_row(
        "burst size identifiable",
        str(s["burst_size_identifiable"]),
        _kit.fmt(s["median_burst_size"], 3),
        _kit.fmt(s["median_burst_size_identifiable"], 3),
    )
    t.add_row("both identifiable", str(s["both_identifiable"]), "", "")
    t.add_row(
        "skipped (only zeros / < 2 cells)",
        f"{s['skipped_only_zeros']} / {s['skipped_under_2_cells']}",
        "",
        "",
    )
    t.add_row(f"fitted on < {s['min_cells']} cells", str(s["genes_under_min_cells"]), "", "")
    return t


def plot_burst_kinetics(fits: Any, path: str | Path, ci: bool = True) -> Path:
    """Burst frequency ``k_on`` against burst size ``k_syn / k_off`` per fitted gene, log-log;
    genes with both quantities identifiable filled, one of them half-tone, neither hollow."""
    import numpy as np

    fitted = ~np.isnan(fits.k_on)
    bf_ok = ~fits.bf_structural & ~fits.bf_practical
    bs_ok = ~fits.bs_structural & ~fits.bs_practical
    groups = (
        ("burst frequency and size identifiable", fitted & bf_ok & bs_ok, {"c": "C0"}),
        ("one of the two identifiable", fitted & (bf_ok ^ bs_ok), {"c": "C1", "alpha": 0.6}),
        ("neither identifiable", fitted & ~bf_ok & ~bs_ok, {"fc": "none", "ec": "0.5"}),
    )
    fig = _kit.figure(figsize=(6.4, 5.2), layout="constrained")
    ax = fig.subplots()
    for label, mask, style in groups:
        if mask.any():
            ax.scatter(
                fits.burst_frequency[mask],
                fits.burst_size[mask],
                s=14,
                label=f"{label} ({int(mask.sum())})",
                **style,
            )
    if fitted.any():
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.legend(fontsize=8, loc="best")
    else:
        ax.text(0.5, 0.5, "no gene fitted", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("burst frequency k_on (bursts per mRNA lifetime)")
    ax.set_ylabel("burst size k_syn / k_off (mRNA per burst)")
    note = "" if ci else "\n--no-ci: only estimates on a bound are flagged"
    ax.set_title(f"burst kinetics of {int(fitted.sum())} genes{note}", fontsize=10)
    return _kit.save_figure(fig, Path(path), dpi=110)


def _say_warning(console: Console):
    """A ``warnings.showwarning`` that prints the fit's few-cells warning as one line."""
    from stochgrad.apps.telegraph.fit import FewCellsWarning

    original = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if not issubclass(category, FewCellsWarning):
            return original(message, category, filename, lineno, file, line)
        genes = getattr(message, "genes", [])
        many = f"{len(genes)} genes have" if len(genes) != 1 else "1 gene has"
        text = (
            f"warning: {many} fewer than {message.min_cells} observed cells, too few for a "
            "10 % estimate"
        )
        shown = [str(g) for g in genes[:3]]
        while shown and len(text) + 4 + len(", ".join(shown)) > _kit.WIDTH:
            shown.pop()  # the line stays within the console's width
        if shown:
            text += f" ({', '.join(shown)}{', ...' if len(genes) > len(shown) else ''})"
        console.print(text, markup=False, soft_wrap=True)

    return show


def run_fit(args: argparse.Namespace, console: Console) -> int:
    """Fit burst kinetics per gene; write the kinetics CSV, the summary and the plot (resumes
    from its checkpoint)."""
    from stochgrad.apps.telegraph import fit_counts, read_counts
    from stochgrad.apps.telegraph.chunked import describe_counts
    from stochgrad.apps.telegraph.fit import FewCellsWarning

    _check_backend(args)
    with _kit.output(args, console) as out:
        if not args.counts.exists():
            raise _kit.UserError(f"counts table {args.counts}: no such file")
        try:
            counts, names, how = read_counts(args.counts, args.genes_in, layer=args.layer)
        except ImportError as exc:
            raise _kit.UserError(str(exc)) from None
        info = describe_counts(counts, names=names)
        genes, cells = info.num_genes, info.num_cells
        fitted = int(info.fitted.sum())
        console.print(f"{genes} genes x {cells} cells: {how}")
        if info.missing:
            console.print(
                f"{info.missing} missing cells (empty fields or NaN), left out gene by gene; "
                f"observed cells per gene {int(info.observed.min())} to {int(info.observed.max())}"
            )
        skipped = genes - fitted
        if skipped:
            console.print(
                f"{skipped} genes not fitted (only zero counts or fewer than 2 observed cells): "
                "NaN kinetics, every flag set"
            )
        ckpt = out.checkpoint("fit_checkpoint.pt")
        with _kit.progress(console, "fitting genes", total=fitted) as advance:
            with warnings.catch_warnings(), _kit.parallel_errors(out):
                warnings.simplefilter("always", FewCellsWarning)
                warnings.showwarning = _say_warning(console)
                fits = fit_counts(
                    counts,
                    chunk_size=args.chunk_size,
                    ci=not args.no_ci,
                    max_iter=args.max_iter,
                    max_ci_ratio=args.max_ci_ratio,
                    backend=args.backend,
                    num_workers=args.workers,
                    checkpoint=ckpt,
                    progress=advance,
                    on_resume=lambda done, total: out.resumed(
                        ckpt, f"{done} of {total} chunks of genes finished"
                    ),
                    names=names,
                    timeout=args.chunk_timeout,
                )
        write_fits(out.path("kinetics.csv"), names, fits)
        console.print(_fit_table(fits, fitted, not args.no_ci))
        summary = fit_summary(fits, info, how, not args.no_ci, args.max_ci_ratio)
        console.print(_summary_table(summary))
        _kit.write_json(out.path("summary.json"), summary)
        plot_burst_kinetics(fits, out.path("burst_kinetics.png"), ci=not args.no_ci)
    return 0


# ---------------------------------------------------------------------------------------------
# simulate
# ---------------------------------------------------------------------------------------------
def add_simulate_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``stochgrad telegraph simulate``."""
    p.add_argument(
        "--genes", type=positive_int, default=100, help="genes (ignored with --kinetics)"
    )
    p.add_argument("--cells", type=positive_int, default=1000, help="cells per gene")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument(
        "--kinetics",
        type=Path,
        default=None,
        help="CSV with columns k_on,k_off,k_syn, one row per gene (default: random kinetics, "
        "log-uniform k_on in [0.05, 5], k_off in [0.5, 20], burst size in [5, 100])",
    )
    p.add_argument(
        "--method",
        choices=("gillespie", "exact"),
        default="gillespie",
        help="exact Gillespie paths, or exact draws from the stationary law",
    )
    # one vectorised simulation of every cell of every gene: no unit of work to resume
    _kit.add_output_options(p, "stochgrad-out/telegraph-simulate", resumable=False)


def run_simulate(args: argparse.Namespace, console: Console) -> int:
    """Simulate a genes x cells counts table; also write the true kinetics."""
    import torch

    from stochgrad.apps.telegraph import read_kinetics, simulate, simulate_table

    with _kit.output(args, console) as out:
        kin = None
        if args.kinetics is not None:
            if not args.kinetics.is_file():
                raise _kit.UserError(f"--kinetics {args.kinetics}: no such file")
            kin = read_kinetics(args.kinetics)
        genes = args.genes if kin is None else kin.shape[0]
        with _kit.progress(console, f"simulating {genes} genes x {args.cells} cells", None):
            if kin is None:
                kin, x = simulate_table(args.genes, args.cells, args.seed, method=args.method)
            else:
                g = torch.Generator().manual_seed(args.seed)
                x = simulate(*kin.T, args.cells, generator=g, method=args.method)
        header = ["gene", *[f"cell{j}" for j in range(x.shape[1])]]
        rows = ([f"gene{i}", *row] for i, row in enumerate(x.tolist()))
        _kit.write_csv(out.path("counts.csv"), header, rows)
        header = ["gene", "k_on", "k_off", "k_syn", "burst_frequency", "burst_size"]
        rows = (
            [f"gene{i}", f"{a:.6g}", f"{b:.6g}", f"{k:.6g}", f"{a:.6g}", f"{k / b:.6g}"]
            for i, (a, b, k) in enumerate(kin.tolist())
        )
        _kit.write_csv(out.path("counts_kinetics.csv"), header, rows)
        console.print(f"{x.shape[0]} genes x {x.shape[1]} cells ({args.method})")
    return 0


# ---------------------------------------------------------------------------------------------
# recover
# ---------------------------------------------------------------------------------------------
def add_recover_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``stochgrad telegraph recover``."""
    from stochgrad.studies.telegraph_recovery import RecoveryConfig

    c = RecoveryConfig()
    p.add_argument(
        "--grid",
        type=positive_int,
        default=len(c.k_on),
        help="points per axis (at least 2): k_on in logspace(-2, 1), k_off in logspace(-1, 2)",
    )
    p.add_argument("--k-syn", type=float, default=c.k_syn, help="synthesis rate of every gene")
    p.add_argument("--cells", type=positive_int, default=c.num_cells, help="cells per gene")
    p.add_argument(
        "--replicates", type=positive_int, default=c.replicates, help="genes per grid cell"
    )
    p.add_argument("--seed", type=int, default=c.seed, help="random seed")
    p.add_argument(
        "--method",
        choices=("gillespie", "exact"),
        default=c.method,
        help="exact Gillespie paths, or exact draws from the stationary law",
    )
    _ratio_option(p)
    _parallel_options(p, "a grid cell's replicates spread over the workers")
    _kit.add_output_options(p, "stochgrad-out/telegraph-recover")


def _pct(v: float) -> str:
    import math

    return "-" if not math.isfinite(v) else f"{100 * v:.1f}"


def _ratio_text(v: float) -> str:
    import math

    return "inf" if not math.isfinite(v) else f"{v:.2f}"


def _recovery_table(res: Any, q: str, name: str):
    t = _kit.table(
        f"{name}: median |rel. error| %",
        ["k_on \\ k_off", *[f"{b:.3g}" for b in res.k_off]],
    )
    for i, a in enumerate(res.k_on):
        t.add_row(
            f"{a:.3g}",
            *[
                f"{_pct(getattr(res, f'{q}_error')[i, j])}{res.verdict(q, i, j)} "
                f"[{_pct(getattr(res, f'{q}_error_ident')[i, j])}]"
                for j in range(len(res.k_off))
            ],
        )
    return t


def recovery_markdown(result: Any) -> str:
    """The recovery tables as Markdown: errors, errors on identifiable replicates, ratios, flags."""
    r = result
    head = "| k_on \\ k_off | " + " | ".join(f"{b:.3g}" for b in r.k_off) + " |"
    rule = "|---" * (len(r.k_off) + 1) + "|"
    tables = {
        "median relative error, all replicates, % (bf / bs; S/P = mostly flagged "
        "structurally/practically)": lambda i, j: (
            f"{_pct(r.bf_error[i, j])}{r.verdict('bf', i, j)} / "
            f"{_pct(r.bs_error[i, j])}{r.verdict('bs', i, j)}"
        ),
        "median relative error over the identifiable replicates, % (bf / bs; - = none)": (
            lambda i, j: f"{_pct(r.bf_error_ident[i, j])} / {_pct(r.bs_error_ident[i, j])}"
        ),
        "median 95 % interval ratio upper/lower (bf / bs)": lambda i, j: (
            f"{_ratio_text(r.bf_ratio[i, j])} / {_ratio_text(r.bs_ratio[i, j])}"
        ),
        "fraction flagged structural, practical (bf; bs)": lambda i, j: (
            f"{r.bf_structural[i, j]:.1f}, {r.bf_practical[i, j]:.1f}; "
            f"{r.bs_structural[i, j]:.1f}, {r.bs_practical[i, j]:.1f}"
        ),
        "median fraction of expressing cells (count > 0)": lambda i, j: f"{r.expressing[i, j]:.3f}",
    }
    out = [
        f"k_syn = {r.k_syn:g}, {r.num_cells} cells, {r.replicates} replicates, "
        f"identifiable = interval ratio <= {r.max_ci_ratio:.2f} and not flat to the box",
        "",
    ]
    for title, cell in tables.items():
        out += [f"{title}:", "", head, rule]
        for i, a in enumerate(r.k_on):
            out.append(f"| {a:.3g} | " + " | ".join(cell(i, j) for j in range(len(r.k_off))) + " |")
        out.append("")
    return "\n".join(out)


def recovery_json(result: Any) -> dict[str, Any]:
    """The recovery summaries as plain JSON values: NaN (no identifiable replicate) becomes
    null, an infinite ratio ``"inf"``."""
    import math

    data: dict[str, Any] = {
        "k_on": list(result.k_on),
        "k_off": list(result.k_off),
        "k_syn": result.k_syn,
        "num_cells": result.num_cells,
        "replicates": result.replicates,
        "max_ci_ratio": result.max_ci_ratio,
    }
    if result.config is not None:
        data.update(seed=result.config.seed, method=result.config.method)
    for key in result.ARRAYS:
        data[key] = [
            [None if math.isnan(v) else (v if math.isfinite(v) else "inf") for v in map(float, row)]
            for row in getattr(result, key)
        ]
    data["seconds"] = result.seconds
    return data


def plot_recovery(result: Any, path: str | Path) -> Path:
    """Heatmaps of the median relative errors of burst frequency and burst size.

    Each cell shows the median error over all replicates and, below it, the median interval
    ratio; cells where most replicates are flagged are hatched and marked ``S`` (structural) or
    ``P`` (practical).
    """
    import numpy as np
    from matplotlib.patches import Rectangle

    fig = _kit.figure(figsize=(11, 4.8), layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, q, name in zip(axes, ("bf", "bs"), ("burst frequency", "burst size"), strict=True):
        err = 100 * np.minimum(getattr(result, f"{q}_error"), 10.0)
        ratio = getattr(result, f"{q}_ratio")
        im = ax.imshow(err, origin="lower", cmap="viridis", vmin=0, vmax=30)
        ax.set_xticks(range(len(result.k_off)), [f"{v:.3g}" for v in result.k_off])
        ax.set_yticks(range(len(result.k_on)), [f"{v:.3g}" for v in result.k_on])
        ax.set_xlabel("k_off")
        ax.set_ylabel("k_on")
        ax.set_title(f"median |rel. error| of {name} (%)")
        for i in range(len(result.k_on)):
            for j in range(len(result.k_off)):
                mark = result.verdict(q, i, j)
                if mark:
                    ax.add_patch(
                        Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="//", ec="w", lw=0)
                    )
                v = ratio[i, j]
                rt = "inf" if not np.isfinite(v) else (f"{v:.2f}" if v < 10 else f"{v:.0f}")
                ax.text(
                    j,
                    i,
                    f"{err[i, j]:.0f}{' ' + mark if mark else ''}\nx{rt}",
                    ha="center",
                    va="center",
                    color="w",
                    fontsize=9,
                    bbox={"fc": "k", "alpha": 0.45, "ec": "none", "pad": 1.5},
                )
        fig.colorbar(im, ax=ax)
    fig.suptitle(
        f"telegraph recovery: k_syn={result.k_syn:g}, {result.num_cells} cells, "
        f"{result.replicates} replicates\nx = median 95% interval ratio; hatched: mostly "
        f"non-identifiable (S structural, P practical: ratio > {result.max_ci_ratio:.2f})",
        fontsize=9,
    )
    return _kit.save_figure(fig, Path(path), dpi=110)


def run_recover(args: argparse.Namespace, console: Console) -> int:
    """Parameter recovery over k_on in logspace(-2, 1) x k_off in logspace(-1, 2)."""
    import numpy as np

    from stochgrad.checkpoint import write_text
    from stochgrad.studies.telegraph_recovery import RecoveryConfig, telegraph_recovery_study

    if args.grid < 2:
        raise _kit.UserError(f"--grid must be at least 2, got {args.grid}")
    _check_backend(args)
    config = RecoveryConfig(
        k_on=tuple(np.logspace(-2, 1, args.grid).tolist()),
        k_off=tuple(np.logspace(-1, 2, args.grid).tolist()),
        k_syn=args.k_syn,
        num_cells=args.cells,
        replicates=args.replicates,
        seed=args.seed,
        method=args.method,
        max_ci_ratio=args.max_ci_ratio,
    )
    cells = args.grid * args.grid
    with _kit.output(args, console) as out:
        ckpt = out.checkpoint("recover_checkpoint.pt")
        total = cells * config.replicates
        with (
            _kit.progress(console, "recovery: grid cells x replicates", total) as advance,
            _kit.parallel_errors(out),
        ):
            res = telegraph_recovery_study(
                config,
                chunk_size=args.chunk_size,
                backend=args.backend,
                num_workers=args.workers,
                checkpoint=ckpt,
                progress=advance,
                on_resume=lambda done, _: out.resumed(
                    ckpt, f"{done} of {cells} grid cells finished"
                ),
                timeout=args.chunk_timeout,
            )
        for q, name in (("bf", "burst frequency"), ("bs", "burst size")):
            console.print(_recovery_table(res, q, name))
        console.print(
            f"k_syn = {config.k_syn:g}, {config.num_cells} cells, {config.replicates} replicates; "
            "median over all replicates [over the identifiable ones; - = none]; S/P = mostly "
            "structurally/practically non-identifiable (interval ratio > "
            f"{config.max_ci_ratio:.2f})"
        )
        _kit.write_json(out.path("recovery.json"), recovery_json(res))
        write_text(out.path("recovery.md"), recovery_markdown(res))
        plot_recovery(res, out.path("recovery.png"))
    return 0
