"""Transitional home of ``stochgrad relax-toy`` and ``stochgrad discrete-vae``."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from stochgrad.cli._kit import fmt, fmt_rel, z_score, z_style  # noqa: F401
from stochgrad.cli.argtypes import float_list, positive_int  # noqa: F401


def progress_bar(console):
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    )


def subcommand(*a, **k):
    return lambda f: f


# ---------------------------------------------------------------------------------------------
# stochgrad relax-toy
# ---------------------------------------------------------------------------------------------
def _estimator_list(text: str) -> list[str]:
    """argparse type: comma-separated estimator keys of the RELAX toy study."""
    from stochgrad.studies.relax_toy import ESTIMATORS

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
    from stochgrad.studies.relax_toy import DEFAULT_ESTIMATORS, Config

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
    from stochgrad.studies.relax_toy import ESTIMATORS, THRESHOLD

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
    console.width = 170  # transitional
    """The toy problem of RELAX (Grathwohl et al., ICLR 2018, Sec. 6.1, Fig. 1).

    Minimise E[(b - 0.499)^2], b ~ Bernoulli(sigmoid(logit)), logit from 0, by Adam (lr 0.01)
    with gradient estimates from: the exact gradient (closed form), REINFORCE, REINFORCE with a
    leave-one-out baseline (2 samples per iteration), REBAR, RELAX, Gumbel-softmax (biased) and
    DisARM, one sample per iteration otherwise. Records theta, the exact loss and the variance of
    the per-iteration gradient; prints a table, writes a two-panel PNG, a JSON of the results
    and a checkpoint of finished runs (--resume continues an interrupted study).
    """
    import time

    from stochgrad.studies import relax_toy as SD

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
    console.width = 170  # transitional
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


def prepare_output(path):
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    return out
