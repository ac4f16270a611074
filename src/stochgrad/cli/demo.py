"""``stochgrad demo``: variance of five gradient estimators of E[(x - a)^2], x ~ N(theta, sigma^2).

Single-sample variance of the score-function (no, leave-one-out and optimal baselines),
pathwise and coupled measure-valued estimators of the gradient with respect to (theta, sigma),
measured with the library's estimators and compared with the closed forms derived in
docs/variance.md. Prints a table per coordinate and a summary, and writes a log-log plot of
variance against sigma (``demo_variance.png``) and the numbers (``demo.json``) to ``--out``.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import asdict

import numpy as np
from rich.console import Console

from stochgrad.cli import _kit
from stochgrad.cli.argtypes import float_list, positive_int

LEGEND = (
    "SF = score function, SF+LOO / SF+opt = with the leave-one-out / optimal baseline, "
    "PW = pathwise, MVD = measure-valued (coupled)"
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    from stochgrad.studies.gaussian import DemoConfig

    d = DemoConfig()
    p.description = __doc__.split("\n", 1)[1].strip()
    p.add_argument(
        "--samples",
        type=positive_int,
        default=d.samples,
        help="samples per estimator and grid point (at least 2)",
    )
    p.add_argument("--seed", type=int, default=d.seed, help="random seed")
    p.add_argument("--deltas", type=float_list, default=list(d.deltas), help="values of theta - a")
    p.add_argument("--sigmas", type=float_list, default=list(d.sigmas), help="values of sigma")
    p.add_argument("--target", type=float, default=d.target, help="a in f(x) = (x - a)^2")
    p.add_argument(
        "--plot-delta", type=float, default=d.plot_delta, help="theta - a of the plot's sweep"
    )
    _kit.add_output_options(p, "stochgrad-out/demo")


def _table(cells, i: int, n: int):
    from stochgrad.studies.variance import SHORT_LABELS, VARIANCE_ESTIMATORS

    coord = ("θ", "σ")[i]
    t = _kit.table(
        f"∂/∂{coord} E[(x − a)²], x ~ N(θ, σ²): single-sample variance, n = {n:,}",
        [
            "θ − a",
            "σ",
            f"true ∂/∂{coord}",
            "est.",
            "estimate ± se",
            "Var meas.",
            "Var closed",
            "rel. diff",
            "z",
        ],  # fmt: skip
        left=0,
        caption=(
            "Var meas. = variance of one per-sample term; closed form from docs/variance.md "
            "(LOO: finite-n formula); z = (meas. − closed) / se of the variance estimate"
        ),
    )
    last = len(VARIANCE_ESTIMATORS) - 1
    for c in cells:
        j = VARIANCE_ESTIMATORS.index(c.estimator)
        z = c.z(i)
        style = _kit.z_style(z)
        t.add_row(
            _kit.fmt(c.delta) if j == 0 else "",
            _kit.fmt(c.sigma) if j == 0 else "",
            _kit.fmt(c.true_grad[i]) if j == 0 else "",
            SHORT_LABELS[c.estimator],
            f"{c.grad[i]:.4g} ± {c.stderr[i]:.2g}",
            f"[{style}]{_kit.fmt(float(c.variance[i]))}[/{style}]",
            _kit.fmt(c.closed[i]),
            f"[{style}]{_kit.fmt_rel(c.rel(i))}[/{style}]",
            f"[{style}]{z:+.2f}[/{style}]" if not math.isnan(z) else "[dim]—[/dim]",
            end_section=j == last,
        )
    return t


def _summary(cells):
    from stochgrad.studies.variance import LABELS, VARIANCE_ESTIMATORS

    t = _kit.table(
        "Measured vs closed form, over the grid and both coordinates",
        ["estimator", "max |rel. diff|", "max |z|", "max rel. se"],
        caption="expected |rel. diff| ≈ rel. se; cells with a zero closed form are left out",
    )
    for est in VARIANCE_ESTIMATORS:
        rel, zs, rse = [], [], []
        for c in cells:
            if c.estimator != est:
                continue
            for i in (0, 1):
                if abs(c.closed[i]) > 1e-20:
                    rel.append(abs(c.rel(i)))
                    zs.append(abs(c.z(i)))
                    rse.append(float(c.variance_se[i]) / abs(c.closed[i]))
        t.add_row(
            LABELS[est],
            _kit.fmt_rel(max(rel)).lstrip("+") if rel else "—",
            _kit.fmt(max(zs), 3) if zs else "—",
            _kit.fmt_rel(max(rse)).lstrip("+") if rse else "—",
        )
    return t


def _plot(path, res) -> None:
    from matplotlib.lines import Line2D
    from matplotlib.ticker import NullFormatter

    from stochgrad.studies.variance import LABELS, VARIANCE_ESTIMATORS, quadratic_variance

    cfg = res.config
    n, sigmas = cfg.samples, res.plot_sigmas
    fig = _kit.figure(figsize=(13, 5.4), layout="constrained")
    axes = fig.subplots(1, 2)
    lo, hi = float(sigmas.min()), float(sigmas.max())
    line_sigmas = np.geomspace(lo / 1.25, hi * 1.25, 200)
    colors = dict(zip(VARIANCE_ESTIMATORS, ("C0", "C1", "C2", "C3", "C4"), strict=True))
    for i, ax in enumerate(axes):
        coord = ("θ", "σ")[i]
        for est in VARIANCE_ESTIMATORS:
            closed = np.array(
                [quadratic_variance(est, cfg.plot_delta, s, num_samples=n)[i] for s in line_sigmas]
            )
            pts = res.measured[est][:, i]
            ax.plot(line_sigmas, np.where(closed > 0, closed, np.nan), "-", color=colors[est],
                    label=LABELS[est])  # fmt: skip
            ax.plot(sigmas, np.where(pts > 0, pts, np.nan), "o", color=colors[est], mfc="none",
                    ms=7)  # fmt: skip
        ax.set_xscale("log")
        ax.set_yscale("log")
        ticks = [t for t in (0.1, 0.2, 0.5, 1, 2, 5, 10) if lo <= t <= hi]
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("σ")
        ax.set_ylabel(f"single-sample variance of the ∂/∂{coord} term")
        ax.set_title(f"∂/∂{coord}   (true gradient {'2(θ − a)' if i == 0 else '2σ'})")
        ax.grid(True, which="major", alpha=0.3)
    handles = [Line2D([], [], color=colors[e], label=LABELS[e]) for e in VARIANCE_ESTIMATORS]
    handles += [
        Line2D([], [], color="0.3", ls="-", label="closed form"),
        Line2D(
            [], [], color="0.3", ls="none", marker="o", mfc="none", label=f"measured, n = {n:,}"
        ),  # fmt: skip
    ]
    axes[1].legend(handles=handles, loc="upper left", fontsize=9, framealpha=0.9)
    fig.suptitle(
        f"Gradient of E[(x − a)²], x ~ N(θ, σ²), θ − a = {cfg.plot_delta:g} (a = {cfg.target:g}):"
        " variance of one per-sample term"
    )
    _kit.save_figure(fig, path)


def _json(res) -> dict:
    return {
        "config": asdict(res.config),
        "cells": [
            {
                "delta": c.delta,
                "sigma": c.sigma,
                "estimator": c.estimator,
                "true_grad": list(c.true_grad),
                "grad": c.grad.tolist(),
                "stderr": c.stderr.tolist(),
                "variance": c.variance.tolist(),
                "variance_se": c.variance_se.tolist(),
                "closed_form": list(c.closed),
            }
            for c in res.cells
        ],
    }


def run(args: argparse.Namespace, console: Console) -> int:
    from stochgrad.studies.gaussian import DemoConfig, demo_cells, demo_study

    config = DemoConfig(
        samples=args.samples,
        seed=args.seed,
        deltas=tuple(args.deltas),
        sigmas=tuple(args.sigmas),
        target=args.target,
        plot_delta=args.plot_delta,
    )
    with _kit.output(args, console) as out:
        ckpt = out.checkpoint("demo_checkpoint.pt")
        total = demo_cells(config)
        with _kit.progress(console, "demo: grid × estimators", total=total) as advance:
            res = demo_study(
                config,
                checkpoint=ckpt,
                progress=advance,
                on_resume=lambda done, _: out.resumed(ckpt, f"{done} of {total} cells finished"),
            )
        for i in (0, 1):
            console.print(_table(res.cells, i, config.samples))
            console.print()
        console.print(LEGEND)
        console.print(_summary(res.cells))
        _plot(out.path("demo_variance.png"), res)
        _kit.write_json(out.path("demo.json"), _json(res))
    return 0
