"""``stochgrad molecules``: de novo molecular design with a SMILES GRU (needs RDKit).

- ``pretrain`` fits the GRU prior on a seeded MOSES subset (or RDKit's NCI set) by maximum
  likelihood. It checkpoints ``prior.pt`` every ``--checkpoint-every`` steps; an interrupted
  run resumes by default (``--restart`` starts afresh). Writes the weights-only model
  ``prior_weights.pt`` (what ``--model`` takes) and the loss curve ``pretrain_loss.png``.
- ``sample`` draws molecules from a model (default: the shipped prior), prints the MOSES
  metrics and writes ``samples.smi`` and ``sample_metrics.json``.
- ``optimize`` fine-tunes a copy of the prior by policy gradient (REINVENT, or REINFORCE with
  the advantage rule --advantage within groups of --group-size molecules) against an oracle
  budget, estimating the gradient's variance every --diagnose-every steps. The score is a
  built-in --objective or your own function, --score module:function (a list of SMILES in, one
  number per molecule out; NaN scores 0), run in --score-workers processes. It checkpoints
  ``agent.pt`` every ``--checkpoint-every`` steps
  (resumed by default; ``--restart`` starts afresh) and writes the top molecules
  (``top.csv``), a grid of the best structures (``best.png``), the score-over-time curve
  (``curve.png``) and ``summary.json``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from stochgrad.cli import _kit
from stochgrad.cli.argtypes import non_negative_int, positive_float, positive_int

__all__ = [
    "add_optimize_arguments",
    "add_pretrain_arguments",
    "add_sample_arguments",
    "run_optimize",
    "run_pretrain",
    "run_sample",
]

MOSES_CHARRNN = {"validity": 0.975, "unique": 0.999, "novelty": 0.842, "intdiv": 0.856}
"""MOSES CharRNN (Polykovskiy et al. 2020, Table 2), printed beside the sampled metrics."""

DEFAULT_TRAIN = {"corpus": "moses", "n": 200_000, "seed": 0}
"""The training data assumed for novelty when a model file does not record its own."""


def _job_description(job: str) -> str:
    """The docstring's paragraph about ``job``, for its ``--help``."""
    for item in __doc__.split("\n- ")[1:]:
        if item.startswith(f"``{job}``"):
            return " ".join(item.split()).replace("``", "")
    return ""


def _threads_option(p: argparse.ArgumentParser) -> None:
    # the same as ``stochgrad --threads N``, also accepted after the job's name
    p.add_argument(
        "--threads",
        type=non_negative_int,
        default=argparse.SUPPRESS,
        help="torch threads (as stochgrad --threads; 1 unless given)",
    )


# ---------------------------------------------------------------------------------------------
# pretrain
# ---------------------------------------------------------------------------------------------
def add_pretrain_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``stochgrad molecules pretrain``."""
    from stochgrad.apps.molecules.data import CORPORA
    from stochgrad.apps.molecules.model import GRUConfig, PretrainConfig

    g, c = GRUConfig(), PretrainConfig()
    p.description = _job_description("pretrain")
    p.add_argument("--smiles", type=positive_int, default=200_000, help="training SMILES")
    p.add_argument(
        "--corpus", choices=CORPORA, default="moses", help="MOSES subset or RDKit's NCI 5K set"
    )
    p.add_argument("--epochs", type=positive_int, default=c.epochs, help="passes over the data")
    p.add_argument("--batch-size", type=positive_int, default=c.batch_size, help="SMILES a step")
    p.add_argument("--lr", type=positive_float, default=c.lr, help="initial Adam learning rate")
    p.add_argument(
        "--lr-final", type=positive_float, default=c.lr_final, help="learning rate at the end"
    )
    p.add_argument("--hidden", type=positive_int, default=g.hidden, help="GRU width")
    p.add_argument("--layers", type=positive_int, default=g.layers, help="GRU layers")
    p.add_argument("--embedding", type=positive_int, default=g.embedding, help="token embedding")
    p.add_argument(
        "--seed", type=non_negative_int, default=c.seed, help="seed of the subset and the model"
    )
    p.add_argument(
        "--checkpoint-every",
        type=positive_int,
        default=c.checkpoint_every,
        help="steps between checkpoints",
    )
    p.add_argument("--device", default="cpu", help="torch device to train on, e.g. cuda")
    _threads_option(p)
    _kit.add_output_options(p, "stochgrad-out/molecules-pretrain")


def run_pretrain(args: argparse.Namespace, console: Console) -> int:
    """Pretrain the SMILES GRU: ``prior.pt`` (checkpoint), ``prior_weights.pt``, a loss plot."""
    import time

    from stochgrad.apps.molecules.data import load_corpus
    from stochgrad.apps.molecules.model import (
        GRUConfig,
        PretrainConfig,
        pretrain,
        resolve_device,
        save_model,
    )

    device = resolve_device(args.device)  # before any work: no GPU, one line
    gru = GRUConfig(embedding=args.embedding, hidden=args.hidden, layers=args.layers)
    config = PretrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        lr_final=args.lr_final,
        seed=args.seed,
        checkpoint_every=args.checkpoint_every,
    )
    with _kit.output(args, console) as out:
        ckpt = out.checkpoint("prior.pt")
        smiles = load_corpus(args.corpus, args.smiles, seed=args.seed)
        total = config.epochs * -(-len(smiles) // config.batch_size)
        start = time.perf_counter()
        with _kit.progress(console, "pretrain: steps", total=total) as advance:
            model, losses = pretrain(
                smiles,
                ckpt,
                gru=gru,
                config=config,
                device=device,
                progress=advance,
                on_resume=lambda done, steps: out.resumed(ckpt, f"{done} of {steps} steps done"),
            )
        seconds = time.perf_counter() - start
        data = {"corpus": args.corpus, "n": len(smiles), "seed": args.seed}
        save_model(model, out.path("prior_weights.pt"), data=data)
        fig = _kit.figure(figsize=(6, 3.5), layout="constrained")
        ax = fig.subplots()
        ax.plot(losses, lw=0.6)
        ax.set(xlabel="step", ylabel="NLL per molecule (nats)", title="SMILES GRU pretraining")
        _kit.save_figure(fig, out.path("pretrain_loss.png"))
        last = losses[-50:]
        t = _kit.table(
            f"SMILES GRU pretrained on {args.corpus}",
            ["SMILES", "epochs", "steps", "loss, last 50", "weights", "seconds now"],
            caption="loss: mean NLL per molecule (nats); seconds now: this call's wall time",
        )
        t.add_row(
            f"{len(smiles):,}",
            str(config.epochs),
            f"{len(losses):,}",
            _kit.fmt(sum(last) / len(last)),
            f"{sum(p.numel() for p in model.parameters()):,}",
            f"{seconds:.1f}",
        )
        console.print(t)
    return 0


# ---------------------------------------------------------------------------------------------
# sample
# ---------------------------------------------------------------------------------------------
def add_sample_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``stochgrad molecules sample``."""
    p.description = _job_description("sample")
    p.add_argument(
        "--model", type=Path, default=None, help="model file (none given: the shipped prior)"
    )
    p.add_argument("--n", type=positive_int, default=10_000, help="molecules to sample")
    p.add_argument("--seed", type=non_negative_int, default=0, help="seed of the sampler")
    p.add_argument("--batch-size", type=positive_int, default=500, help="molecules a batch")
    p.add_argument(
        "--diversity-sample",
        type=positive_int,
        default=None,
        help="IntDiv on a seeded subset of this many valid molecules (none given: all)",
    )
    _threads_option(p)
    # one quick computation: nothing worth a checkpoint
    _kit.add_output_options(p, "stochgrad-out/molecules-sample", resumable=False)


def run_sample(args: argparse.Namespace, console: Console) -> int:
    """Sample from a model; print validity, uniqueness, novelty, IntDiv and samples/s."""
    import math
    import time

    import torch

    from stochgrad.apps.molecules.data import load_corpus
    from stochgrad.apps.molecules.metrics import moses_metrics
    from stochgrad.apps.molecules.model import default_prior_path, load_model, training_data
    from stochgrad.checkpoint import write_text

    path = args.model or default_prior_path()
    model = load_model(path).eval()  # a missing or bad file: one line, before any work
    train = training_data(path)
    with _kit.output(args, console) as out:
        if train is None:
            train = dict(DEFAULT_TRAIN)
            console.print(
                "the model file does not record its training data (prior_weights.pt does): "
                "novelty is measured against the default 200k MOSES SMILES"
            )
        gen = torch.Generator().manual_seed(args.seed)
        start = time.perf_counter()
        with _kit.progress(console, "sampling", total=args.n) as advance:
            smiles = model.sample_smiles(
                args.n, generator=gen, batch_size=args.batch_size, progress=advance
            )
        seconds = time.perf_counter() - start
        write_text(out.path("samples.smi"), "\n".join(smiles) + "\n")
        with _kit.progress(console, "MOSES metrics", total=None):
            reference = load_corpus(train["corpus"], train["n"], seed=train["seed"])
            m = moses_metrics(
                smiles,
                reference,
                unique_at=min(10_000, args.n),
                diversity_sample=args.diversity_sample,
            )
        t = _kit.table(
            f"{args.n:,} samples from {escape(Path(path).name)} (MOSES metrics)",
            ["metric", "value", "MOSES CharRNN"],
        )
        rows = [
            ("validity", m.validity, MOSES_CHARRNN["validity"]),
            (f"unique@{m.unique_at}", m.uniqueness, MOSES_CHARRNN["unique"]),
            (f"novelty (vs its {train['n']} training SMILES)", m.novelty, MOSES_CHARRNN["novelty"]),
            ("IntDiv (Morgan r2, 2048 bits)", m.internal_diversity, MOSES_CHARRNN["intdiv"]),
        ]
        for name, value, ref in rows:
            t.add_row(name, "—" if math.isnan(value) else f"{value:.4f}", f"{ref:.3f}")
        console.print(t)
        console.print(f"sampling: {args.n / seconds:.0f} molecules/s ({seconds:.1f} s)")
        summary = {
            "n": args.n,
            "seed": args.seed,
            "model": str(path),
            "validity": m.validity,
            "uniqueness": m.uniqueness,
            "unique_at": m.unique_at,
            "novelty": m.novelty,
            "internal_diversity": m.internal_diversity,
            "samples_per_second": args.n / seconds,
            "sampling_seconds": seconds,
            "train": train,
        }
        _kit.write_json(out.path("sample_metrics.json"), summary)
    return 0


# ---------------------------------------------------------------------------------------------
# optimize
# ---------------------------------------------------------------------------------------------
def _weights(text: str) -> dict[str, float]:
    """argparse type: ``qed=0.5,similarity=0.5`` -> ``{"qed": 0.5, "similarity": 0.5}``."""
    out: dict[str, float] = {}
    for item in filter(None, (t.strip() for t in text.split(","))):
        name, sep, value = item.partition("=")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep:
            raise argparse.ArgumentTypeError(f"expected name=weight pairs, got {item!r}")
    if not out:
        raise argparse.ArgumentTypeError("expected name=weight pairs, e.g. qed=0.5,similarity=0.5")
    return out


_weights.__name__ = "weights"


def add_optimize_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``stochgrad molecules optimize``."""
    from stochgrad.apps.molecules.agent import ADVANTAGES, METHODS, AgentConfig
    from stochgrad.apps.molecules.scoring import CELECOXIB

    a = AgentConfig()
    p.description = _job_description("optimize")
    p.add_argument(
        "--objective",
        choices=("qed", "logp", "similarity", "sum"),
        default=None,
        help="built-in score to maximise; 'sum' is a weighted sum of the others (--weights); "
        "not with --score (default: similarity)",
    )
    p.add_argument(
        "--score",
        metavar="MODULE:FUNCTION",
        default=None,
        help="your own score instead of --objective: a function of a list of SMILES returning "
        "one number per molecule (best in [0, 1]; NaN: could not score, counts as 0), imported "
        "from a module on the path or in the current folder",
    )
    p.add_argument(
        "--score-workers",
        type=positive_int,
        default=None,
        help="processes scoring each step's molecules in parallel, for an expensive --score "
        "(default: 1, in this process)",
    )
    _kit.add_chunk_timeout_option(p, "--score call (one worker's share of a step)")
    p.add_argument(
        "--weights",
        type=_weights,
        default=None,
        help="for --objective sum: e.g. qed=0.5,similarity=0.5 (non-negative, summing to 1)",
    )
    p.add_argument("--target", default=CELECOXIB, help="target SMILES for similarity")
    p.add_argument(
        "--budget", type=positive_int, default=10_000, help="oracle calls (unique valid molecules)"
    )
    p.add_argument("--seed", type=non_negative_int, default=0, help="seed of sampler and replay")
    p.add_argument("--method", choices=METHODS, default=a.method, help="fine-tuning objective")
    p.add_argument("--sigma", type=float, default=a.sigma, help="REINVENT score weight")
    p.add_argument("--beta", type=float, default=a.beta, help="REINFORCE KL weight")
    p.add_argument(
        "--advantage",
        choices=ADVANTAGES,
        default=a.advantage,
        help="REINFORCE's advantage rule: loo (RLOO, unbiased), grpo (group-normalised), "
        "grpo_unscaled (group mean), none",
    )
    p.add_argument(
        "--group-size",
        type=positive_int,
        default=a.group_size,
        help="molecules per advantage group (dividing --batch-size and --replay); none given: "
        "all of a step's",
    )
    p.add_argument(
        "--diagnose-every",
        type=non_negative_int,
        default=a.diagnose_every,
        help="steps between estimates of the gradient's variance and signal-to-noise ratio "
        "(0: none)",
    )
    p.add_argument(
        "--likelihood-penalty",
        type=float,
        default=None,
        help="weight of mean(-1/log P_agent) in the loss (none given: 5000 for REINVENT, "
        "0 for REINFORCE)",
    )
    p.add_argument(
        "--batch-size", type=positive_int, default=a.batch_size, help="molecules sampled a step"
    )
    p.add_argument("--lr", type=positive_float, default=a.lr, help="Adam learning rate")
    p.add_argument(
        "--replay", type=non_negative_int, default=a.replay_batch, help="molecules replayed a step"
    )
    p.add_argument("--max-steps", type=positive_int, default=a.max_steps, help="cap on steps")
    p.add_argument(
        "--patience",
        type=non_negative_int,
        default=a.patience,
        help="stop after N steps with no new top-100 (0: never)",
    )
    p.add_argument(
        "--checkpoint-every",
        type=positive_int,
        default=a.checkpoint_every,
        help="steps between checkpoints",
    )
    p.add_argument(
        "--model", type=Path, default=None, help="prior model file (none given: the shipped one)"
    )
    p.add_argument("--top", type=positive_int, default=100, help="molecules in top.csv")
    _threads_option(p)
    _kit.add_output_options(p, "stochgrad-out/molecules-optimize")


_DOTTED = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


def _import_score(spec: str) -> Callable:
    """The function named by ``--score module:function``, or one line ``error: ...``.

    The current folder is put on the import path first (as ``python -m`` does), so a
    ``my_scores.py`` next to the command is found; worker processes inherit the path.
    """
    module_name, sep, attr = spec.partition(":")
    if not sep or not _DOTTED.fullmatch(module_name) or not _DOTTED.fullmatch(attr):
        raise _kit.UserError(
            f"--score must be module:function (e.g. my_scores:carbon_fraction), got {spec!r}"
        )
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        obj = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name or module_name.startswith(f"{exc.name}."):
            raise _kit.UserError(
                f"--score {spec!r}: no module named {exc.name!r} (a .py file in the current "
                "folder, or a module of an installed package)"
            ) from None
        raise _kit.UserError(
            f"--score {spec!r}: importing {module_name!r} failed ({exc})"
        ) from None
    except Exception as exc:
        raise _kit.UserError(
            f"--score {spec!r}: importing {module_name!r} failed ({type(exc).__name__}: {exc})"
        ) from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise _kit.UserError(f"--score {spec!r}: module {module_name!r} has no {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise _kit.UserError(
            f"--score {spec!r}: {attr!r} is a {type(obj).__name__}, not a function"
        )
    return obj


def _objective_name(objective: str, target: str | None, weights: dict | None) -> str:
    """The built-in objective as the checkpoint records it (a resume with another is refused)."""
    parts = [objective]
    if weights:
        parts.append(",".join(f"{k}={v:g}" for k, v in weights.items()))
    if target:
        parts.append(f"target {target}")
    return " ".join(parts)


def _summary(args: argparse.Namespace, result, top, target: str | None) -> dict:
    from stochgrad.apps.molecules.scoring import top_auc

    scores = [v for _, v in result.history]
    last = result.steps[-10:]
    if len(scores) >= args.budget:
        stopped = "budget"
    elif len(result.steps) >= args.max_steps:
        stopped = "max_steps"
    else:
        stopped = "patience"
    return {
        "objective": args.objective,
        "score": args.score,
        "score_workers": args.score_workers or 1,
        "unscored": len(result.unscored),
        "weights": args.weights,
        "target": target,
        "method": args.method,
        "advantage": args.advantage if args.method == "reinforce" else None,
        "group_size": args.group_size,
        "budget": args.budget,
        "seed": args.seed,
        "calls": len(scores),
        "steps": len(result.steps),
        "stopped": stopped,
        "top1": top[0][1] if top else 0.0,
        "top10_mean": sum(v for _, v in top[:10]) / max(len(top[:10]), 1),
        "top100_mean": sum(v for _, v in top[:100]) / max(len(top[:100]), 1),
        "auc_top10": top_auc(scores, args.budget) if scores else 0.0,
        "auc_top1": top_auc(scores, args.budget, top_n=1) if scores else 0.0,
        "validity_last10_steps": sum(s.validity for s in last) / max(len(last), 1),
        "validity_all_steps": sum(s.validity for s in result.steps) / max(len(result.steps), 1),
        "samples": result.samples,
        "seconds": result.seconds,
        "samples_per_second": result.samples / max(result.seconds, 1e-9),
        "gradient_diagnostics": [
            {"step": i, "calls": s.calls, "variance": s.grad_variance, "snr": s.grad_snr}
            for i, s in enumerate(result.steps)
            if s.grad_variance is not None
        ],
        "config": result.config,
    }


def _curve(path: Path, result, title: str) -> None:
    calls = [s.calls for s in result.steps]
    fig = _kit.figure(figsize=(6.5, 3.8), layout="constrained")
    ax = fig.subplots()
    ax.plot(calls, [s.top1 for s in result.steps], label="top-1")
    ax.plot(calls, [s.top10 for s in result.steps], label="top-10 mean")
    ax.plot(calls, [s.mean_score for s in result.steps], lw=0.6, alpha=0.7, label="batch mean")
    ax.plot(calls, [s.validity for s in result.steps], lw=0.6, alpha=0.7, label="batch validity")
    ax.set(
        xlabel="oracle calls (unique valid molecules)", ylabel="score", title=title, ylim=(0, 1.02)
    )
    ax.legend(loc="lower right", fontsize=8)
    _kit.save_figure(fig, path)


def _grid(path: Path, best: list[tuple[str, float]]) -> None:
    """The best molecules drawn by RDKit, written atomically as a PNG."""
    import io

    from rdkit import Chem
    from rdkit.Chem import Draw

    from stochgrad.checkpoint import atomic_write

    img = Draw.MolsToGridImage(
        [Chem.MolFromSmiles(s) for s, _ in best],
        molsPerRow=4,
        subImgSize=(250, 250),
        legends=[f"{v:.3f}" for _, v in best],
    )
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    atomic_write(path, lambda fh: fh.write(buf.getvalue()))


def run_optimize(args: argparse.Namespace, console: Console) -> int:
    """Fine-tune by policy gradient; write top.csv, best.png, curve.png and summary.json."""
    import contextlib
    import copy

    from stochgrad.apps.molecules.agent import AgentConfig, optimize
    from stochgrad.apps.molecules.model import default_prior_path, load_model
    from stochgrad.apps.molecules.scoring import (
        BatchScore,
        Oracle,
        ScoreError,
        make_objective,
        penalized_logp,
        qed_score,
        tanimoto_similarity,
    )

    if args.score is not None and args.objective is not None:
        raise _kit.UserError("--score and --objective exclude each other: give one")
    if args.score is None and args.score_workers is not None:
        raise _kit.UserError("--score-workers goes with --score (the built-in scores are fast)")
    if args.score is None and args.chunk_timeout is not None:
        raise _kit.UserError("--chunk-timeout goes with --score (the built-in scores are fast)")
    if args.score is None and args.objective is None:
        args.objective = "similarity"
    if (args.objective == "sum") != (args.weights is not None):
        raise _kit.UserError(
            "--weights goes with --objective sum, and --objective sum needs --weights"
        )
    config = AgentConfig(
        method=args.method,
        sigma=args.sigma,
        beta=args.beta,
        likelihood_penalty=args.likelihood_penalty,
        batch_size=args.batch_size,
        lr=args.lr,
        replay_batch=args.replay,
        max_steps=args.max_steps,
        patience=args.patience,
        checkpoint_every=args.checkpoint_every,
        advantage=args.advantage,
        group_size=args.group_size,
        diagnose_every=args.diagnose_every,
    )
    uses_target = args.objective == "similarity" or "similarity" in (args.weights or {})
    target = args.target if uses_target else None
    if args.score is not None:
        try:
            scorer = BatchScore(
                _import_score(args.score),
                workers=args.score_workers or 1,
                name=args.score,
                timeout=args.chunk_timeout,
            )
        except TypeError as exc:  # not importable by the worker processes
            raise _kit.UserError(f"--score {args.score!r}: {exc}") from None
        # quoted: rich would draw a name between colons (module:smile: ...) as an emoji
        name, what = f"score {args.score}", f"score {args.score!r}"
    else:
        scorer = make_objective(args.objective, target=target, weights=args.weights)
        name, what = _objective_name(args.objective, target, args.weights), args.objective
    oracle = Oracle(scorer, budget=args.budget)
    prior = load_model(args.model or default_prior_path())  # a bad file: one line, no work
    with _kit.output(args, console) as out, contextlib.ExitStack() as stack:
        if isinstance(scorer, BatchScore):
            stack.callback(scorer.close)  # the worker processes end with the command
        ckpt = out.checkpoint("agent.pt")
        agent = copy.deepcopy(prior)
        with (
            _kit.progress(console, f"{args.method} {what}: oracle calls", args.budget) as advance,
            _kit.parallel_errors(out, "a smaller --batch-size or more --score-workers"),
        ):
            try:
                result = optimize(
                    agent,
                    prior,
                    oracle,
                    config,
                    seed=args.seed,
                    checkpoint=ckpt,
                    progress=advance,
                    on_resume=lambda steps, calls: out.resumed(
                        ckpt, f"{steps} steps, {calls} oracle calls"
                    ),
                    objective=name,
                )
            except ScoreError as exc:
                kept = " (finished steps are kept: rerun to resume)" if ckpt.exists() else ""
                raise _kit.UserError(f"--score {args.score!r}: {exc}{kept}") from None
        top = result.top(args.top)
        header = ["rank", "smiles", "score", "qed", "penalized_logp"]
        rows = []
        for rank, (smi, score) in enumerate(top, 1):
            row = [rank, smi, f"{score:.4f}", f"{qed_score(smi):.4f}", f"{penalized_logp(smi):.3f}"]
            rows.append(row + ([f"{tanimoto_similarity(smi, target):.4f}"] if target else []))
        _kit.write_csv(out.path("top.csv"), header + (["similarity"] if target else []), rows)
        if top:
            _grid(out.path("best.png"), top[:12])
        if result.steps:
            _curve(out.path("curve.png"), result, f"{args.method}, {what}")
        summary = _summary(args, result, top, target)
        _kit.write_json(out.path("summary.json"), summary)
        t = _kit.table(
            f"{args.method} on {what}: {summary['calls']:,} of {args.budget:,} oracle "
            f"calls, {summary['steps']} steps (stopped by {summary['stopped']})",
            ["top-1", "top-10", "top-100", "AUC top-10", "AUC top-1", "validity", "seconds"],
            caption="top-k: mean score of the k best; AUC: PMO's, over the budget; "
            "validity: over the last 10 steps",
            left=0,
        )
        t.add_row(
            f"{summary['top1']:.4f}",
            f"{summary['top10_mean']:.4f}",
            f"{summary['top100_mean']:.4f}",
            f"{summary['auc_top10']:.4f}",
            f"{summary['auc_top1']:.4f}",
            f"{summary['validity_last10_steps']:.3f}",
            f"{summary['seconds']:.0f}",
        )
        console.print(t)
        if top:
            console.print(f"best: {escape(top[0][0])} ({top[0][1]:.4f})")
        if result.unscored:
            console.print(
                f"{len(result.unscored):,} molecules could not be scored (NaN from --score; "
                f"each counted as a call scoring 0), e.g. {escape(result.unscored[0])}"
            )
    return 0


def __getattr__(name: str):
    # ``stochgrad.apps.molecules.cli`` (removed) also held a domain function, now in the app
    from stochgrad._compat import moved_attribute

    return moved_attribute(
        __name__,
        name,
        {"default_prior_path": ("stochgrad.apps.molecules.model", "default_prior_path")},
    )
