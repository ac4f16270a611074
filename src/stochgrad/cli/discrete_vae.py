"""``stochgrad discrete-vae``: a binary-latent VAE on scikit-learn's 8x8 digits, per estimator.

q(z|x) = Bernoulli(enc(x)) with K binary latents, p(z) = Bernoulli(learned logits),
p(x|z) = Bernoulli(dec(z)); digits binarised at intensity > 8, 1437 train / 360 test. The
decoder and prior get the exact gradient of a sampled ELBO; the encoder gets the gradient of
the ELBO from REINFORCE, RLOO, DisARM, REBAR or Gumbel-softmax (biased), all with the same
budget of S evaluations of the ELBO per datapoint and step. Prints the final test ELBO and
importance-weighted bound (mean +- sd over seeds), the mean log10 variance of the
encoder-gradient estimate and the wall time per estimator. Writes a two-panel plot
(``discrete_vae.png``), the results (``discrete_vae.json``) and a markdown table
(``discrete_vae_table.md``) to ``--out``; ``discrete_vae_checkpoint.pt`` there keeps every
finished run and each run in progress every --checkpoint-every steps, and a rerun of the same
command resumes from it.
"""

from __future__ import annotations

import argparse
import math
import warnings
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import numpy as np
from rich.console import Console

from stochgrad.cli import _kit
from stochgrad.cli.argtypes import choice_list, non_negative_int, positive_float, positive_int

CHECKPOINT = "discrete_vae_checkpoint.pt"


def _estimator_keys() -> list[str]:
    from stochgrad.apps.discrete_vae import VAE_ESTIMATORS

    return list(VAE_ESTIMATORS)


def add_arguments(p: argparse.ArgumentParser) -> None:
    from stochgrad.apps.discrete_vae import Config

    c = Config()
    p.description = __doc__.split("\n", 1)[1].strip()
    p.add_argument("--steps", type=positive_int, default=c.steps, help="Adam steps per run")
    p.add_argument(
        "--seeds", type=positive_int, default=3, metavar="N", help="runs use the seeds 0..N-1"
    )
    p.add_argument(
        "--estimators",
        type=choice_list(_estimator_keys),
        default=_estimator_keys(),
        metavar="LIST",
        help="comma-separated estimators of the encoder's gradient",
    )
    p.add_argument(
        "--samples",
        type=positive_int,
        default=c.samples,
        help="budget S: f evaluations per datapoint and step (REINFORCE, RLOO, Gumbel-softmax: "
        "S samples; DisARM: S/2 pairs, S even; REBAR: S/3 samples, S divisible by 3)",
    )
    p.add_argument("--latents", type=positive_int, default=c.latents, help="binary latents K")
    p.add_argument(
        "--hidden",
        type=non_negative_int,
        default=c.hidden,
        help="hidden tanh units of encoder and decoder, 0 = linear",
    )
    p.add_argument("--batch-size", type=positive_int, default=c.batch_size, help="digits per step")
    p.add_argument("--lr", type=positive_float, default=c.lr, help="Adam learning rate")
    p.add_argument(
        "--eval-every",
        type=positive_int,
        default=c.eval_every,
        help="steps between test-ELBO estimates",
    )
    p.add_argument(
        "--probe-every",
        type=positive_int,
        default=c.probe_every,
        help="steps between gradient-variance measurements",
    )
    p.add_argument(
        "--probe-calls",
        type=positive_int,
        default=c.probe_calls,
        help="estimator calls per variance measurement, at least 2",
    )
    p.add_argument(
        "--iwae-k",
        type=positive_int,
        default=c.iwae_k,
        help="importance samples of the final bound",
    )
    p.add_argument(
        "--checkpoint-every",
        type=positive_int,
        default=c.checkpoint_every,
        help="steps between mid-run checkpoints",
    )
    _kit.add_output_options(p, "stochgrad-out/discrete-vae")


# ---------------------------------------------------------------------------------------------
# tables
# ---------------------------------------------------------------------------------------------
def _pm(mean: float, sd: float, digits: int = 2) -> str:
    return f"{mean:.{digits}f}" + ("" if math.isnan(sd) else f" ± {sd:.{digits}f}")


def _cells(r) -> list[str]:
    """The numbers of one summary row, as the terminal and the markdown table print them."""
    return [
        str(r.samples),
        str(r.evaluations),
        _pm(r.elbo, r.elbo_sd),
        _pm(r.iwae, r.iwae_sd),
        "—" if math.isnan(r.log10_variance) else f"{r.log10_variance:.2f}",
        f"{r.train_seconds:.1f}",
        f"{r.seconds:.1f}",
    ]


def _legend(keys: Sequence[str]) -> str:
    from stochgrad.apps.discrete_vae import VAE_ESTIMATORS

    specs = [VAE_ESTIMATORS[k] for k in keys]
    names = [f"{s.table_label} = {s.label}" for s in specs if not s.label.startswith(s.table_label)]
    return "legend: " + ", ".join(names) if names else ""


def _table(study, rows):
    from stochgrad.apps.datasets import TEST_SIZE
    from stochgrad.apps.discrete_vae import VAE_ESTIMATORS

    c = study.config
    t = _kit.table(
        f"Binary VAE on sklearn digits (K = {c.latents}, hidden {c.hidden}): {c.steps:,} Adam "
        f"steps, budget S = {c.samples} f-evaluations per digit and step, "
        f"{len(study.seeds)} seed(s)",
        [
            "est.",
            "n/step",
            "f/step",
            "test ELBO ± sd",
            f"IWAE k={c.iwae_k} ± sd",
            "log10 Var",
            "train s",
            "total s",
        ],  # fmt: skip
        caption=(
            f"n/step, f/step = samples and f evaluations per digit and step; test ELBO with "
            f"{c.final_samples} samples per digit ({TEST_SIZE} test digits), ± sd over seeds; "
            f"Var = variance of the encoder-logit gradient across {c.probe_calls} calls on "
            f"{c.probe_batch} test digits, summed, every {c.probe_every} steps (step 0 "
            "excluded); s = seconds per run"
        ),
    )
    for r in rows:
        t.add_row(VAE_ESTIMATORS[r.key].table_label, *_cells(r))
    return t


def _paired_table(study):
    from stochgrad.apps.discrete_vae import VAE_ESTIMATORS
    from stochgrad.studies.discrete_vae import paired_differences

    diffs = paired_differences(study)
    if not diffs:
        return None
    t = _kit.table(
        "Final test ELBO − REINFORCE's, paired by seed",
        ["estimator", "mean (nats)", "better on"],
        caption="same initialisation and minibatches for every estimator of a seed",
    )
    for key, d in diffs.items():
        d = np.array(d)
        t.add_row(VAE_ESTIMATORS[key].label, f"{d.mean():+.2f}", f"{int((d > 0).sum())}/{d.size}")
    return t


def _markdown(study, rows) -> str:
    """The summary as a markdown table (full names and headers) with a one-line caption."""
    c = study.config
    header = [
        "estimator",
        "samples / step",
        "f evals / datapoint / step",
        "test ELBO (± sd over seeds)",
        f"test IWAE bound k={c.iwae_k} (± sd)",
        "mean log10 Var",
        "train s / run",
        "total s / run",
    ]
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|",
    ]
    lines += ["| " + " | ".join([r.label, *_cells(r)]) + " |" for r in rows]
    lines.append("")
    lines.append(
        f"{c.steps} Adam steps (lr {c.lr}, batch {c.batch_size}), K = {c.latents} latents, "
        f"hidden {c.hidden}, budget S = {c.samples}, seeds {study.seeds}; test ELBO with "
        f"{c.final_samples} samples per digit; Var = variance of the encoder-logit gradient "
        f"across {c.probe_calls} calls on {c.probe_batch} test digits, summed over logits, "
        f"every {c.probe_every} steps (step 0 excluded from the mean)."
    )
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# files
# ---------------------------------------------------------------------------------------------
def _json(study, rows) -> dict[str, Any]:
    """The study as plain JSON types: settings, the table and every run's curves."""
    from stochgrad.apps.datasets import PIXEL_THRESHOLD, SPLIT_SEED, TEST_SIZE

    return {
        "problem": {
            "data": f"sklearn load_digits, pixel > {PIXEL_THRESHOLD} of 16, "
            f"{TEST_SIZE} test digits (split seed {SPLIT_SEED})",
            "model": "q(z|x) = Bernoulli(enc(x)), p(z) = Bernoulli(sigmoid(learned logits)), "
            "p(x|z) = Bernoulli(dec(z))",
            "budget": f"{study.config.samples} evaluations of f per datapoint and step for the "
            "encoder estimator (REINFORCE/RLOO/Gumbel: S samples, DisARM: S/2 pairs, "
            "REBAR: S/3 samples)",
            "variance": "variance across probe_calls estimator calls of the encoder-logit "
            "gradient on the first probe_batch test digits, summed over the logits",
        },
        "config": asdict(study.config),
        "seeds": study.seeds,
        "summary": [asdict(r) for r in rows],
        "runs": [study.runs[(key, seed)].to_state() for key in study.keys for seed in study.seeds],
    }


def _plot(study, path) -> None:
    """Two panels against step: test ELBO, and log10 gradient variance (mean, ±1 sd band)."""
    from stochgrad.apps.discrete_vae import VAE_ESTIMATORS
    from stochgrad.studies.discrete_vae import log10_variance

    c = study.config
    fig = _kit.figure(figsize=(13, 5.2), layout="constrained")
    ax_elbo, ax_var = fig.subplots(1, 2)
    for i, key in enumerate(study.keys):
        runs = study.of(key)
        color, label = f"C{i}", VAE_ESTIMATORS[key].label
        steps = np.array(runs[0].eval_steps)
        e = np.stack([r.test_elbo for r in runs])
        m, s = e.mean(0), e.std(0)
        ax_elbo.plot(steps, m, color=color, label=label, lw=1.5)
        ax_elbo.fill_between(steps, m - s, m + s, color=color, alpha=0.15, lw=0)
        psteps = np.array(runs[0].probe_steps)
        v = np.stack([log10_variance(r.variance) for r in runs])
        with warnings.catch_warnings():  # an all-NaN column: a zero variance
            warnings.simplefilter("ignore", RuntimeWarning)
            m, s = np.nanmean(v, 0), np.nanstd(v, 0)
        ax_var.plot(psteps, m, color=color, label=label, lw=1.5)
        ax_var.fill_between(psteps, m - s, m + s, color=color, alpha=0.15, lw=0)
    ax_elbo.set_xlabel("step")
    ax_elbo.set_ylabel(f"test ELBO (nats, {c.eval_samples} samples per digit)")
    ax_elbo.set_title("Test ELBO")
    every = list(study.runs.values())
    lo = min(
        float(np.min([r.test_elbo[min(1, len(r.test_elbo) - 1)] for r in every])),
        float(np.min([r.final_elbo for r in every])),
    )
    hi = float(np.max([np.max(r.test_elbo) for r in every]))
    pad = 0.05 * max(hi - lo, 1e-6)
    ax_elbo.set_ylim(lo - pad, hi + pad)
    ax_elbo.grid(True, alpha=0.3)
    ax_elbo.legend(loc="lower right", fontsize=9)
    ax_var.set_xlabel("step")
    ax_var.set_ylabel("log10 Var of the encoder-logit gradient (summed)")
    ax_var.set_title(f"Gradient variance ({c.probe_calls} calls on {c.probe_batch} test digits)")
    ax_var.grid(True, alpha=0.3)
    fig.suptitle(
        f"Binary VAE on sklearn digits: K = {c.latents}, hidden {c.hidden}, budget "
        f"{c.samples} f-evaluations per datapoint and step, {len(study.seeds)} seed(s), "
        "mean ± sd"
    )
    _kit.save_figure(fig, path, dpi=110)


# ---------------------------------------------------------------------------------------------
# the command
# ---------------------------------------------------------------------------------------------
def run(args: argparse.Namespace, console: Console) -> int:
    from stochgrad.apps.discrete_vae import Config, check_budget, load_binary_digits
    from stochgrad.checkpoint import write_text
    from stochgrad.studies import discrete_vae as study_module

    config = Config(
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
    check_budget(args.estimators, config.samples)
    seeds = list(range(args.seeds))
    with _kit.output(args, console) as out:
        ckpt = out.checkpoint(CHECKPOINT)
        data = load_binary_digits()
        cells = len(args.estimators) * len(seeds)

        def resumed(done: int, partial: int) -> None:
            more = f", {partial} continued from a mid-run state" if partial else ""
            out.resumed(ckpt, f"{done} of {cells} runs finished{more}")

        with _kit.progress(
            console, "discrete-vae: estimators × seeds × steps", cells * config.steps
        ) as advance:
            study = study_module.run_study(
                args.estimators, seeds, config, ckpt, data=data, progress=advance,
                on_resume=resumed,
            )  # fmt: skip
        rows = study_module.summarise(study)
        console.print(_table(study, rows))
        if legend := _legend(study.keys):
            console.print(legend)
        if (paired := _paired_table(study)) is not None:
            console.print(paired)
        console.print(
            f"{study.seconds:.1f} s in the work done now"
            + (f"; {study.resumed} finished run(s) loaded" if study.resumed else "")
            + (f", {study.continued} continued" if study.continued else "")
        )
        _kit.write_json(out.path("discrete_vae.json"), _json(study, rows))
        write_text(out.path("discrete_vae_table.md"), _markdown(study, rows))
        _plot(study, out.path("discrete_vae.png"))
    return 0
