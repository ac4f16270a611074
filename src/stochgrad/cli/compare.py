"""``stochgrad compare``: the variance study of Mohamed et al. (JMLR 2020, Sec. 3, Figs. 2-3).

x ~ N(mu, sigma^2) with mu = sigma = 1; f in {(x - k)^2, exp(-k x^2), cos(k x)} over a grid of
k. Single-sample variance for mu and sigma of the score function, the score function with the
optimal baseline, pathwise and coupled measure-valued estimators, by quadrature
(scipy.integrate.quad) and by Monte Carlo with the library's estimators. Prints tables and
writes a 2 x 3 panel plot (``compare_variance.png``; rows mu, sigma; columns the three
functions) and the numbers (``compare.json``) to ``--out``.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import asdict

import numpy as np
from rich.console import Console

from stochgrad.cli import _kit
from stochgrad.cli.argtypes import positive_float, positive_int

LEGEND = (
    "SF = score function, SF+opt = score function with the optimal baseline, PW = pathwise, "
    "MVD = measure-valued (coupled)"
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    from stochgrad.studies.gaussian import CompareConfig

    c = CompareConfig()
    p.description = __doc__.split("\n", 1)[1].strip()
    p.add_argument(
        "--samples", type=positive_int, default=c.samples,
        help="Monte Carlo samples per estimator and grid point (at least 2)",
    )  # fmt: skip
    p.add_argument("--seed", type=int, default=c.seed, help="random seed")
    p.add_argument("--points", type=positive_int, default=c.points, help="values of k per function")
    p.add_argument("--mu", type=float, default=c.mu, help="mean of x")
    p.add_argument("--sigma", type=positive_float, default=c.sigma, help="standard deviation of x")
    _kit.add_output_options(p, "stochgrad-out/compare")


def _label(fam) -> str:
    return fam.label.strip("$").replace("\\exp", "exp").replace("\\cos", "cos")


def _table(cells, family: str, i: int, n: int):
    from stochgrad.studies.variance import COMPARE_ESTIMATORS, FAMILIES, SHORT_LABELS

    coord = ("μ", "σ")[i]
    columns = ["k"]
    for est in COMPARE_ESTIMATORS:
        columns += [f"{SHORT_LABELS[est]} quad", f"{SHORT_LABELS[est]} MC"]
    t = _kit.table(
        f"{_label(FAMILIES[family])}: variance of one ∂/∂{coord} term "
        f"(quad = quadrature, MC = n = {n:,})",
        [*columns, "max |z|"],
        left=0,
    )
    by_k: dict[float, dict] = {}
    for c in cells:
        if c.family == family:
            by_k.setdefault(c.k, {})[c.estimator] = c
    for k, row in by_k.items():
        values = [_kit.fmt(k, 3)]
        zs = []
        for est in COMPARE_ESTIMATORS:
            c = row[est]
            z = c.z(i)
            style = _kit.z_style(z)
            values += [_kit.fmt(c.quad[i]), f"[{style}]{_kit.fmt(float(c.mc[i]))}[/{style}]"]
            if not math.isnan(z):
                zs.append(abs(z))
        zmax = max(zs) if zs else float("nan")
        style = _kit.z_style(zmax)
        values.append(f"[{style}]{_kit.fmt(zmax, 3)}[/{style}]")
        t.add_row(*values)
    return t


def _summary(cells):
    from stochgrad.studies.variance import COMPARE_ESTIMATORS, LABELS, SHORT_LABELS

    t = _kit.table(
        "Monte Carlo (library estimators) vs quadrature, all functions, k and coordinates",
        ["estimator", "max |rel. diff|", "max |z|", "|z| > 5"],
        caption="z = (MC − quad) / se, se = sqrt((m4 − var²)/n) from the same samples",
    )
    for est in COMPARE_ESTIMATORS:
        rel = [abs(c.rel(i)) for c in cells if c.estimator == est for i in (0, 1)]
        zs = [abs(c.z(i)) for c in cells if c.estimator == est for i in (0, 1)]
        rel = [r for r in rel if not math.isnan(r)]
        zs = [z for z in zs if not math.isnan(z)]
        t.add_row(
            f"{SHORT_LABELS[est]} = {LABELS[est]}",
            _kit.fmt_rel(max(rel)).lstrip("+") if rel else "—",
            _kit.fmt(max(zs), 3) if zs else "—",
            str(sum(z > 5 for z in zs)),
        )
    return t


def _plot(path, res) -> None:
    from matplotlib.lines import Line2D
    from matplotlib.ticker import NullFormatter

    from stochgrad.studies.variance import COMPARE_ESTIMATORS, FAMILIES, LABELS

    cfg = res.config
    fig = _kit.figure(figsize=(16, 9), layout="constrained")
    axes = fig.subplots(2, 3)
    colors = dict(zip(COMPARE_ESTIMATORS, ("C0", "C2", "C3", "C4"), strict=True))
    for col, fam in enumerate(FAMILIES.values()):
        fam_cells = [c for c in res.cells if c.family == fam.key]
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
            ax.set_ylabel(f"variance of one ∂/∂{('μ', 'σ')[row]} term")
            if row == 0:
                ax.set_title(fam.label)
    handles = [Line2D([], [], color=colors[e], label=LABELS[e]) for e in COMPARE_ESTIMATORS]
    handles += [
        Line2D([], [], color="0.3", ls="-", label="quadrature"),
        Line2D(
            [],
            [],
            color="0.3",
            ls="none",
            marker="o",
            mfc="none",
            label=f"Monte Carlo, n = {cfg.samples:,}",
        ),  # fmt: skip
    ]
    fig.legend(handles=handles, loc="outside lower center", ncols=6, fontsize=10)
    fig.suptitle(
        f"Single-sample variance of the gradient estimators, x ~ N(μ = {cfg.mu:g}, "
        f"σ = {cfg.sigma:g}) (after Mohamed et al. 2020, Figs. 2-3)"
    )
    _kit.save_figure(fig, path, dpi=110)


def run(args: argparse.Namespace, console: Console) -> int:
    from stochgrad.studies.gaussian import CompareConfig, compare_study
    from stochgrad.studies.variance import COMPARE_ESTIMATORS, FAMILIES

    config = CompareConfig(
        samples=args.samples, seed=args.seed, points=args.points, mu=args.mu, sigma=args.sigma
    )
    with _kit.output(args, console) as out:
        ckpt = out.checkpoint("compare_checkpoint.pt")
        total = len(FAMILIES) * config.points * len(COMPARE_ESTIMATORS)
        with _kit.progress(console, "compare: functions × k × estimators", total) as advance:
            res = compare_study(
                config,
                checkpoint=ckpt,
                progress=advance,
                on_resume=lambda done, _: out.resumed(ckpt, f"{done} of {total} cells finished"),
            )
        for fam in FAMILIES:
            for i in (0, 1):
                console.print(_table(res.cells, fam, i, config.samples))
        console.print(LEGEND)
        console.print(_summary(res.cells))
        _plot(out.path("compare_variance.png"), res)
        data = {
            "config": asdict(config),
            "cells": [
                {"family": c.family, "k": c.k, "estimator": c.estimator, "quadrature":
                 list(c.quad), "monte_carlo": c.mc.tolist(), "monte_carlo_se": c.mc_se.tolist()}
                for c in res.cells
            ],
        }  # fmt: skip
        _kit.write_json(out.path("compare.json"), data)
    return 0
