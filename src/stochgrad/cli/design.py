"""``stochgrad design eig|optimize``: Bayesian experimental design.

- ``eig``: the EIG estimators (nested Monte Carlo, PCE) and the PCE bound's design gradient
  (score function, pathwise) against the closed form (linear-Gaussian model of Pyro's OED tests)
  or quadrature (logistic dose-response), over replicates. Writes ``design_eig_<model>.json``;
  each finished estimate is checkpointed in ``design_eig_<model>_checkpoint.pt``.
- ``optimize``: projected Adam ascent of the PCE (or NMC) bound over designs, against the known
  optimum. Writes ``design_<model>.json`` and ``design_<model>.png``; the state is checkpointed
  every ``--checkpoint-every`` steps in ``design_<model>_checkpoint.pt``.
"""

from __future__ import annotations

import argparse
import math
from typing import Any

from rich.console import Console

from stochgrad.cli import _kit
from stochgrad.cli.argtypes import float_list, non_negative_int, positive_float, positive_int

#: Labels of the estimators of ``design eig`` (also the JSON's ``estimator`` names).
EIG_LABELS = {
    "nmc": "NMC (upper)",
    "pce": "PCE (lower)",
    "score": "PCE score",
    "pathwise": "PCE pathwise",
}


def _at_least_two(text: str) -> int:
    value = positive_int(text)
    if value < 2:
        raise argparse.ArgumentTypeError(f"expected an integer >= 2, got {text!r}")
    return value


# ---------------------------------------------------------------------------------------------
# design eig
# ---------------------------------------------------------------------------------------------
def add_eig_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``stochgrad design eig``."""
    from stochgrad.studies.design import EIGComparisonConfig

    c = EIGComparisonConfig()
    p.add_argument("--model", choices=("linear", "logistic"), default=c.model, help="the model")
    p.add_argument(
        "--doses", type=float_list, default=list(c.doses), help="logistic: the dose levels"
    )
    p.add_argument("--outer", type=_at_least_two, default=c.num_outer, help="outer samples N")
    p.add_argument("--inner", type=positive_int, default=c.num_inner, help="inner samples L")
    p.add_argument("--seed", type=non_negative_int, default=c.seed, help="random seed")
    p.add_argument(
        "--replicates",
        type=positive_int,
        default=c.replicates,
        help="independent repeats of every estimator",
    )
    _kit.add_output_options(p, "stochgrad-out/design")


def _component_names(quantity: str, shape: tuple[int, ...]) -> list[str]:
    """``dEIG/dd[i,j]`` labels for the entries of a design gradient."""
    import numpy as np

    return [f"{quantity}[{','.join(map(str, idx))}]" for idx in np.ndindex(*shape)]


def _eig_table(res: Any):
    cfg = res.config
    several = cfg.replicates > 1
    columns = ["quantity", "estimator", "estimate", "stderr", res.reference_label, "z"]
    t = _kit.table(
        f"design eig, {cfg.model} model: N = {cfg.num_outer}, L = {cfg.num_inner}, "
        f"seed {cfg.seed}" + (f", mean of {cfg.replicates} replicates" if several else ""),
        [*columns, "sd/se"] if several else columns,
        left=2,
        caption=(
            "z = (estimate − reference) / stderr"
            + ("; sd/se = spread over replicates / reported stderr (≈ 1)" if several else "")
        ),
    )
    for name in res.estimators:
        s = res.summary(name)
        quantity = "EIG" if name in ("nmc", "pce") else "dEIG/dd"
        labels = [quantity] if s.z.size == 1 else _component_names(quantity, res.design.shape)
        for i, label in enumerate(labels):
            z = float(s.z[i])
            style = _kit.z_style(z)
            row = [
                label,
                EIG_LABELS[name] if i == 0 else "",
                f"{s.estimate[i]:.4f}",
                f"{s.stderr[i]:.4f}",
                f"{s.reference[i]:.4f}",
                f"[{style}]{z:+.2f}[/{style}]" if not math.isnan(z) else "—",
            ]
            if several:
                row.append(f"{float(s.spread[i]):.2f}")
            t.add_row(*row, end_section=i == len(labels) - 1)
    return t


def _eig_json(res: Any) -> dict[str, Any]:
    from dataclasses import asdict

    rows = []
    for name in res.estimators:
        s = res.summary(name)
        cells = [c for c in res.cells if c.estimator == name]
        rows.append(
            {
                "quantity": "EIG" if name in ("nmc", "pce") else "dEIG/dd",
                "estimator": EIG_LABELS[name],
                "estimate": s.estimate.tolist(),
                "stderr": s.stderr.tolist(),
                "reference": s.reference.tolist(),
                "z": s.z.tolist(),
                "spread_over_stderr": s.spread.tolist(),
                "replicates": [c.estimate.tolist() for c in cells],
                "replicate_stderrs": [c.stderr.tolist() for c in cells],
                "seconds": sum(c.seconds for c in cells),
            }
        )
    cfg = res.config
    return {
        "config": asdict(cfg),
        "model": cfg.model,
        "design": res.design.tolist(),
        "reference": res.reference_label,
        "outer": cfg.num_outer,
        "inner": cfg.num_inner,
        "replicates": cfg.replicates,
        "rows": rows,
    }


def run_eig(args: argparse.Namespace, console: Console) -> int:
    """EIG and design-gradient estimates against the closed form (linear) or quadrature."""
    from stochgrad.studies.design import (
        EIGComparisonConfig,
        comparison_estimators,
        eig_comparison_study,
    )

    config = EIGComparisonConfig(
        model=args.model,
        doses=tuple(args.doses),
        num_outer=args.outer,
        num_inner=args.inner,
        seed=args.seed,
        replicates=args.replicates,
    )
    with _kit.output(args, console) as out:
        ckpt = out.checkpoint(f"design_eig_{config.model}_checkpoint.pt")
        total = len(comparison_estimators(config.model)) * config.replicates
        with _kit.progress(console, "design eig: estimators × replicates", total) as advance:
            res = eig_comparison_study(
                config,
                checkpoint=ckpt,
                progress=advance,
                on_resume=lambda done, _: out.resumed(ckpt, f"{done} of {total} cells finished"),
            )
        console.print(f"design {res.design.tolist()}")
        console.print(_eig_table(res))
        zs = [abs(z) for name in res.estimators for z in res.summary(name).z]
        console.print(f"max |z| = {max(zs):.2f} over {len(zs)} numbers")
        _kit.write_json(out.path(f"design_eig_{config.model}.json"), _eig_json(res))
    return 0


# ---------------------------------------------------------------------------------------------
# design optimize
# ---------------------------------------------------------------------------------------------
def add_optimize_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``stochgrad design optimize``."""
    from stochgrad.apps.design import DesignConfig

    d = DesignConfig()
    p.add_argument("--model", choices=("linear", "logistic"), default=d.model, help="the model")
    p.add_argument("--steps", type=positive_int, default=d.steps, help="Adam steps")
    p.add_argument("--seed", type=non_negative_int, default=d.seed, help="random seed")
    p.add_argument("--lr", type=positive_float, default=d.lr, help="Adam learning rate")
    p.add_argument("--outer", type=_at_least_two, default=d.num_outer, help="outer samples N")
    p.add_argument("--inner", type=positive_int, default=d.num_inner, help="contrastive samples L")
    p.add_argument(
        "--method",
        choices=("score", "pathwise"),
        default=None,
        help="gradient estimator; when not given, pathwise for linear and score for logistic",
    )
    p.add_argument(
        "--bound", choices=("lower", "upper"), default=d.bound, help="PCE lower or NMC upper"
    )
    p.add_argument(
        "--doses", type=positive_int, default=d.num_doses, help="logistic: number of doses K"
    )
    p.add_argument(
        "--checkpoint-every",
        type=positive_int,
        default=d.checkpoint_every,
        help="steps between checkpoints",
    )
    _kit.add_output_options(p, "stochgrad-out/design")


def _vector(d: Any) -> str:
    return "[" + ", ".join(f"{v:.4f}" for v in d.reshape(-1).tolist()) + "]"


def _optimize_table(config: Any, res: Any):
    bound = "PCE" if config.bound == "lower" else "NMC"
    ref = "closed form" if config.model == "linear" else "quadrature"
    t = _kit.table(
        f"design optimize, {config.model}: {config.steps} Adam steps (lr {config.lr}), "
        f"{config.method} gradient of the {bound} bound, N = {config.num_outer}, "
        f"L = {config.num_inner}, seed {config.seed}",
        ["design", "value", f"EIG ({ref})"],
    )
    t.add_row("initial", _vector(res.designs[0]), f"{float(res.exact[0]):.5f}")
    t.add_row("optimised (averaged)", _vector(res.final_design), f"{res.final_eig:.5f}")
    if res.optimum_design is not None:
        what = "optimum: top eigenvector" if config.model == "linear" else "L-BFGS-B on quadrature"
        t.add_row(what, _vector(res.optimum_design), f"{res.optimum_eig:.5f}")
    if res.baseline_design is not None:
        t.add_row("uniform doses", _vector(res.baseline_design), f"{res.baseline_eig:.5f}")
    return t


def _plot_optimization(res: Any, path: Any) -> None:
    """Two panels: reference EIG of the iterates (and the bound estimates), and the design path."""
    import numpy as np

    cfg = res.config
    linear = cfg["model"] == "linear"
    fig = _kit.figure(figsize=(11, 4))
    ax1, ax2 = fig.subplots(1, 2)
    steps = np.arange(res.exact.shape[0])
    est = res.estimates.numpy()
    ax1.plot(
        steps[:-1], est, color="C1", lw=0.6, alpha=0.4, label=f"bound estimate ({cfg['bound']})"
    )
    window = min(25, len(est))
    smooth = np.convolve(est, np.ones(window) / window, mode="valid")
    ax1.plot(
        steps[window - 1 : -1],
        smooth,
        color="C1",
        lw=1.5,
        label=f"its {window}-step moving average",
    )
    ref = "closed form" if linear else "quadrature"
    ax1.plot(steps, res.exact.numpy(), color="C0", lw=1.5, label=f"EIG of iterate ({ref})")
    if res.optimum_eig is not None:
        what = "top eigenvector" if linear else "L-BFGS-B on quadrature"
        ax1.axhline(res.optimum_eig, color="k", ls="--", lw=1, label=f"optimum ({what})")
    if res.baseline_eig is not None:
        ax1.axhline(res.baseline_eig, color="k", ls=":", lw=1, label="uniform doses")
    ax1.set_xlabel("step")
    ax1.set_ylabel("EIG (nats)")
    ax1.legend(fontsize=8)
    ax1.set_title(
        f"{cfg['model']}: {cfg['method']} gradient, N={cfg['num_outer']}, L={cfg['num_inner']}"
    )
    designs = res.designs.reshape(res.designs.shape[0], -1).numpy()
    for j in range(designs.shape[1]):
        ax2.plot(steps, designs[:, j], lw=1.2, color=f"C{j}", label=f"d[{j}]")
        if res.optimum_design is not None and linear:
            ax2.axhline(float(res.optimum_design.reshape(-1)[j]), color=f"C{j}", ls="--", lw=0.8)
    ax2.set_xlabel("step")
    ax2.set_ylabel("design component" if linear else "dose")
    ax2.set_title("design path (dashed: top eigenvector)" if linear else "dose levels")
    ax2.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    _kit.save_figure(fig, path, dpi=110)


def run_optimize(args: argparse.Namespace, console: Console) -> int:
    """Gradient ascent of the PCE bound over designs; resumes from the checkpoint in --out."""
    from stochgrad.apps.design import DesignConfig, optimize_design

    config = DesignConfig(
        model=args.model,
        steps=args.steps,
        lr=args.lr,
        num_outer=args.outer,
        num_inner=args.inner,
        method=args.method or ("pathwise" if args.model == "linear" else "score"),
        bound=args.bound,
        seed=args.seed,
        num_doses=args.doses,
        checkpoint_every=args.checkpoint_every,
    )
    stem = f"design_{config.model}"
    with _kit.output(args, console) as out:
        ckpt = out.checkpoint(f"{stem}_checkpoint.pt")
        with _kit.progress(console, f"design optimize ({config.model})", config.steps) as advance:
            res = optimize_design(
                config,
                checkpoint=ckpt,
                progress=advance,
                on_resume=lambda step: out.resumed(ckpt, f"step {step} of {config.steps}"),
            )
        console.print(_optimize_table(config, res))
        if res.angle_deg is not None:
            console.print(
                f"angle to the optimum {res.angle_deg:.3f} deg; "
                f"EIG relative gap {100 * res.relative_gap:.4f}%"
            )
        if res.baseline_eig is not None:
            console.print(
                f"optimised vs uniform: {res.final_eig:.5f} vs {res.baseline_eig:.5f} nats "
                f"({100 * (res.final_eig / res.baseline_eig - 1):+.1f}%); EIG gap to the "
                f"quadrature optimum {100 * res.relative_gap:.3f}%"
            )
        _kit.write_json(out.path(f"{stem}.json"), res.to_json())
        _plot_optimization(res, out.path(f"{stem}.png"))
        console.print(f"{res.seconds:.1f} s")
    return 0
