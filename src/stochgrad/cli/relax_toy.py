"""``stochgrad relax-toy``: the toy problem of RELAX (Grathwohl et al., ICLR 2018, Sec. 6.1).

Minimise E[(b - 0.499)^2], b ~ Bernoulli(sigmoid(logit)), logit from 0, by Adam (lr 0.01) with
gradient estimates from: the exact gradient (closed form), REINFORCE, REINFORCE with a
leave-one-out baseline (2 samples per iteration), REBAR, RELAX, Gumbel-softmax (biased) and
DisARM, one sample per iteration otherwise. Records theta, the exact loss and the variance of
the per-iteration gradient. Prints a table and writes a two-panel plot (``relax_toy.png``) and
the results (``relax_toy.json``) to ``--out``; each finished (estimator, seed) run is kept in
``relax_toy_checkpoint.pt`` there, and a rerun of the same command resumes from it.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict
from typing import Any

import numpy as np
from rich.console import Console

from stochgrad.cli import _kit
from stochgrad.cli.argtypes import choice_list, non_negative_int, positive_int

CHECKPOINT = "relax_toy_checkpoint.pt"


def _estimator_keys() -> list[str]:
    from stochgrad.studies.relax_toy import TOY_ESTIMATORS

    return list(TOY_ESTIMATORS)


def add_arguments(p: argparse.ArgumentParser) -> None:
    from stochgrad.studies.relax_toy import DEFAULT_ESTIMATORS, Config

    c = Config()
    p.description = __doc__.split("\n", 1)[1].strip()
    p.add_argument(
        "--iterations", type=positive_int, default=c.iterations, help="Adam steps per run"
    )
    p.add_argument(
        "--seeds", type=positive_int, default=10, metavar="N", help="runs use the seeds 0..N-1"
    )
    p.add_argument(
        "--estimators",
        type=choice_list(_estimator_keys),
        default=list(DEFAULT_ESTIMATORS),
        metavar="LIST",
        help=f"comma-separated, some of {','.join(_estimator_keys())}",
    )
    p.add_argument(
        "--probe-every",
        type=positive_int,
        default=c.probe_every,
        help="measure the gradient variance every this many iterations",
    )
    p.add_argument(
        "--probe-samples",
        type=positive_int,
        default=c.probe_samples,
        help="draws per variance measurement, not used for training",
    )
    p.add_argument(
        "--half-samples",
        type=positive_int,
        default=c.half_samples,
        help="draws for the variance at theta = 1/2",
    )
    p.add_argument(
        "--warmup",
        type=non_negative_int,
        default=c.warmup,
        help="control-variate training steps at theta = 1/2 before measuring the variance "
        "there, stateful estimators (RELAX) only",
    )
    _kit.add_output_options(p, "stochgrad-out/relax-toy")


def _legend(keys: list[str]) -> str:
    """The short labels of the table spelled out (those that are not a prefix of their name)."""
    from stochgrad.studies.relax_toy import TOY_ESTIMATORS

    specs = [TOY_ESTIMATORS[k] for k in keys]
    names = [f"{s.table_label} = {s.label}" for s in specs if not s.label.startswith(s.table_label)]
    return "legend: " + ", ".join(names) if names else ""


def _table(study, rows):
    from stochgrad.studies.relax_toy import THRESHOLD, TOY_ESTIMATORS

    cfg = study.config
    n = len(study.seeds)
    t = _kit.table(
        f"RELAX toy: minimise E[(b − {cfg.target})²], b ~ Bernoulli(σ(logit)), Adam lr {cfg.lr}, "
        f"{cfg.iterations:,} iterations, mean over {n} seed(s)",
        [
            "est.",
            "n/it",
            "f/it",
            "final θ ± sd",
            "final loss",
            f"θ<{THRESHOLD:g} at",
            "ln Var",
            "Var θ=½",
            "÷ SF",
        ],  # fmt: skip
        caption=(
            "n/it, f/it = samples and evaluations of f per iteration; θ<0.05 at = median first "
            "iteration (seeds that got there); Var = variance of the per-iteration gradient "
            f"(w.r.t. the logit): ln Var averaged over probes every {cfg.probe_every} iterations "
            f"({cfg.probe_samples} extra draws, iteration 0 excluded), Var θ=½ from "
            f"{cfg.half_samples:,} draws (RELAX after {cfg.warmup} control-variate steps); "
            "÷ SF = Var θ=½ over REINFORCE's"
        ),
    )
    for r in rows:
        below = (
            "never"
            if r.below_iteration is None
            else f"{r.below_iteration:,.0f} ({r.below_seeds}/{n})"
        )
        t.add_row(
            TOY_ESTIMATORS[r.key].table_label,
            str(r.samples) if r.evaluations else "—",
            str(r.evaluations),
            f"{r.final_theta:.4f}±{r.final_theta_sd:.4f}",
            f"{r.final_loss:.7f}",
            below,
            _kit.fmt(r.mean_log_variance, 4),
            _kit.fmt(r.variance_half, 3),
            _kit.fmt(r.ratio_half, 3),
        )
    return t


def _json(study, rows, every: int = 10) -> dict[str, Any]:
    """The study as plain JSON types: settings, the table, curves and per-seed results."""
    from stochgrad.studies.relax_toy import TOY_ESTIMATORS, curves

    cfg = study.config
    out: dict[str, Any] = {
        "problem": {
            "objective": "E_{b ~ Bernoulli(theta)}[(b - t)^2]",
            "target": cfg.target,
            "theta": "sigmoid(logit), logit starts at 0",
            "optimizer": f"Adam lr {cfg.lr}, default betas",
            "samples_per_iteration": "1 (DisARM: 1 antithetic pair; RLOO: 2)",
            "log_variance": "natural log of the variance of the per-iteration gradient "
            "estimate w.r.t. the logit",
        },
        "config": asdict(cfg),
        "seeds": study.seeds,
        "skipped": study.skipped,
        "summary": [asdict(r) for r in rows],
        "estimators": {},
    }
    for key in study.keys:
        spec = TOY_ESTIMATORS[key]
        out["estimators"][key] = {
            "label": spec.label,
            "note": spec.note,
            "curves": curves(study, key, every),
            "runs": [
                {
                    "seed": r.seed,
                    "final_theta": float(r.theta[-1]),
                    "final_loss": float(r.loss[-1]),
                    "first_below_0.05": r.first_below(),
                    "variance_half": r.variance_half,
                    "evaluations_per_iteration": r.evaluations,
                    "seconds": r.seconds,
                    "theta": r.theta[:: max(1, every)].tolist(),
                    "probe_variance": r.probe_variance.tolist(),
                }
                for r in study.of(key)
            ],
        }
    return out


def _plot(study, path) -> None:
    """Two panels: exact loss and log gradient variance against iteration (mean, ±1 sd band)."""
    from stochgrad.studies.relax_toy import TOY_ESTIMATORS, curves

    cfg = study.config
    fig = _kit.figure(figsize=(13, 5.2), layout="constrained")
    ax_loss, ax_var = fig.subplots(1, 2)
    for i, key in enumerate(study.keys):
        c = curves(study, key, every=max(1, cfg.iterations // 500))
        color, label = f"C{i}", TOY_ESTIMATORS[key].label
        it = np.array(c["iterations"])
        m, s = np.array(c["loss_mean"]), np.array(c["loss_sd"])
        ax_loss.plot(it, m, color=color, label=label, lw=1.4)
        ax_loss.fill_between(it, m - s, m + s, color=color, alpha=0.15, lw=0)
        pit = np.array(c["probe_iterations"])
        lm = np.array([np.nan if v is None else v for v in c["log_variance_mean"]])
        ls = np.array([np.nan if v is None else v for v in c["log_variance_sd"]])
        if np.isfinite(lm).any():
            ax_var.plot(pit, lm, color=color, label=label, lw=1.4)
            ax_var.fill_between(pit, lm - ls, lm + ls, color=color, alpha=0.15, lw=0)
    t = cfg.target
    ax_loss.axhline(t**2, color="0.4", ls=":", lw=1, label=f"optimum t² = {t**2:.6f}")
    ax_loss.set_xlabel("iteration")
    ax_loss.set_ylabel("loss E[(b − t)²] (exact, from θ)")
    ax_loss.ticklabel_format(axis="y", useOffset=False)
    ax_loss.set_title("loss")
    ax_loss.legend(fontsize=8)
    ax_var.set_xlabel("iteration")
    ax_var.set_ylabel("log variance of the per-iteration gradient")
    ax_var.set_title(
        f"log gradient variance ({cfg.probe_samples} draws every {cfg.probe_every} iterations)"
    )
    ax_var.legend(fontsize=8, title="exact gradient: variance 0 (not drawn)", title_fontsize=8)
    for ax in (ax_loss, ax_var):
        ax.grid(True, alpha=0.3)
    fig.suptitle(
        f"RELAX toy: minimise E[(b − {t})²], b ~ Bernoulli(σ(logit)), Adam lr {cfg.lr}; "
        f"mean over {len(study.seeds)} seeds, band ±1 sd"
    )
    _kit.save_figure(fig, path, dpi=110)


def run(args: argparse.Namespace, console: Console) -> int:
    from stochgrad.studies import relax_toy as toy

    config = toy.Config(
        iterations=args.iterations,
        probe_every=args.probe_every,
        probe_samples=args.probe_samples,
        half_samples=args.half_samples,
        warmup=args.warmup,
    )
    seeds = list(range(args.seeds))
    reasons = {k: r for k in args.estimators if (r := toy.availability(k, config)) is not None}
    ready = [k for k in args.estimators if k not in reasons]
    if not ready:
        raise _kit.UserError(
            "no estimator can run: " + "; ".join(f"{k}: {r}" for k, r in reasons.items())
        )
    for key, reason in reasons.items():
        console.print(f"skipping {toy.TOY_ESTIMATORS[key].label}: {reason}", markup=False)
    with _kit.output(args, console) as out:
        ckpt = out.checkpoint(CHECKPOINT)
        cells = len(ready) * len(seeds)
        with _kit.progress(
            console, "relax-toy: estimators × seeds × iterations", cells * config.iterations
        ) as advance:
            study = toy.run_study(
                args.estimators,
                seeds,
                config,
                ckpt,
                progress=advance,
                on_resume=lambda done, _: out.resumed(ckpt, f"{done} of {cells} runs finished"),
            )
        rows = toy.summarise(study)
        console.print(_table(study, rows))
        if legend := _legend(study.keys):
            console.print(legend)
        by_key = {r.key: r for r in rows}
        if "reinforce" in by_key:
            for key in ("relax", "disarm", "rloo", "rebar"):
                if key in by_key:
                    console.print(
                        f"at θ = ½: Var[{toy.TOY_ESTIMATORS[key].label}] / Var[REINFORCE] = "
                        f"{_kit.fmt(by_key[key].ratio_half, 3)}"
                    )
        if "exact" in by_key:
            r = by_key["exact"]
            reached = (
                f"θ < {toy.THRESHOLD:g} first at iteration {r.below_iteration:,.0f}"
                if r.below_iteration is not None
                else f"θ never below {toy.THRESHOLD:g} in {config.iterations:,} iterations"
            )
            console.print(f"exact gradient: {reached}; final θ = {r.final_theta:.3g}")
        console.print(
            f"{study.seconds:.1f} s in the {cells - study.resumed} run(s) done now"
            + (f"; {study.resumed} loaded from the checkpoint" if study.resumed else "")
        )
        _kit.write_json(out.path("relax_toy.json"), _json(study, rows))
        _plot(study, out.path("relax_toy.png"))
    return 0
