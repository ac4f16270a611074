"""Command-line jobs of ``stochgrad molecules``: pretrain, sample, optimize.

``pretrain`` fits the GRU prior on a seeded MOSES subset (checkpointed; an interrupted run
resumes by default, ``--restart`` starts afresh) and writes a weights-only copy; ``sample``
draws molecules and prints the MOSES metrics; ``optimize`` fine-tunes a copy of the prior by
policy gradient against an oracle budget and writes the top molecules (CSV), a grid of the
best structures and the score-over-time curve.
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import time
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from stochgrad.apps.molecules.agent import AgentConfig, optimize
from stochgrad.apps.molecules.data import load_moses, load_nci
from stochgrad.apps.molecules.metrics import moses_metrics
from stochgrad.apps.molecules.model import (
    GRUConfig,
    PretrainConfig,
    load_model,
    pretrain,
    save_model,
)
from stochgrad.apps.molecules.scoring import (
    CELECOXIB,
    Oracle,
    make_objective,
    penalized_logp,
    qed_score,
    tanimoto_similarity,
)

__all__ = [
    "add_pretrain_arguments",
    "run_pretrain",
    "add_sample_arguments",
    "run_sample",
    "add_optimize_arguments",
    "run_optimize",
    "default_prior_path",
]


def default_prior_path() -> Path:
    """The pretrained prior shipped with the package (``stochgrad/data/smiles_prior.pt``)."""
    return Path(str(resources.files("stochgrad") / "data" / "smiles_prior.pt"))


def _corpus(name: str, n: int, seed: int) -> list[str]:
    if name == "moses":
        return load_moses(n, seed=seed)
    if name == "nci":
        return load_nci(n)
    raise ValueError(f"corpus must be 'moses' or 'nci', got {name!r}")


def add_pretrain_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``stochgrad molecules pretrain``."""
    g, p = GRUConfig(), PretrainConfig()
    parser.add_argument("--smiles", type=int, default=200_000, help="training SMILES")
    parser.add_argument("--corpus", choices=("moses", "nci"), default="moses")
    parser.add_argument("--epochs", type=int, default=p.epochs)
    parser.add_argument("--batch-size", type=int, default=p.batch_size)
    parser.add_argument("--lr", type=float, default=p.lr, help="initial Adam learning rate")
    parser.add_argument(
        "--lr-final", type=float, default=p.lr_final, help="learning rate at the last step"
    )
    parser.add_argument("--hidden", type=int, default=g.hidden, help="GRU width")
    parser.add_argument("--layers", type=int, default=g.layers, help="GRU layers")
    parser.add_argument("--embedding", type=int, default=g.embedding)
    parser.add_argument("--seed", type=int, default=0, help="seed of the subset and the model")
    parser.add_argument("--out", type=Path, default=Path("runs/molecules"), help="output folder")
    parser.add_argument(
        "--resume", action="store_true", help="resume from --out/prior.pt (the default)"
    )
    parser.add_argument("--restart", action="store_true", help="ignore a checkpoint in --out")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1 on a shared machine)"
    )
    parser.add_argument("--device", default="cpu", help="torch device to train on, e.g. cuda")


def run_pretrain(args: argparse.Namespace, console: Any) -> int:
    """Pretrain the SMILES GRU; write ``prior.pt`` (checkpoint), ``prior_weights.pt``, a loss plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from stochgrad.cli import progress_bar

    if args.resume and args.restart:
        raise ValueError("--resume and --restart exclude each other")
    torch.set_num_threads(args.threads)
    smiles = _corpus(args.corpus, args.smiles, args.seed)
    gru = GRUConfig(embedding=args.embedding, hidden=args.hidden, layers=args.layers)
    cfg = PretrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        lr_final=args.lr_final,
        seed=args.seed,
    )
    total = cfg.epochs * ((len(smiles) + cfg.batch_size - 1) // cfg.batch_size)
    out = Path(args.out)
    t0 = time.perf_counter()
    with progress_bar(console) as progress:
        task = progress.add_task("pretrain", total=total)
        model, losses = pretrain(
            smiles,
            out / "prior.pt",
            gru=gru,
            config=cfg,
            restart=args.restart,
            callback=lambda step, loss: progress.update(task, completed=step),
            device=args.device,
        )
    data = {"corpus": args.corpus, "n": len(smiles), "seed": args.seed}
    save_model(model, out / "prior_weights.pt", data=data)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(losses, lw=0.6)
    ax.set(xlabel="step", ylabel="NLL per molecule (nats)", title="SMILES GRU pretraining")
    fig.tight_layout()
    fig.savefig(out / "pretrain_loss.png", dpi=120)
    plt.close(fig)
    n_weights = sum(p.numel() for p in model.parameters())
    console.print(
        f"{len(smiles)} SMILES, {cfg.epochs} epoch(s), {len(losses)} steps; final loss "
        f"{sum(losses[-50:]) / len(losses[-50:]):.3f}; {n_weights} weights; "
        f"{time.perf_counter() - t0:.1f} s; wrote {out}/prior.pt, prior_weights.pt, pretrain_loss.png"
    )
    return 0


def add_sample_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``stochgrad molecules sample``."""
    parser.add_argument("--model", type=Path, default=None, help="model (default: shipped prior)")
    parser.add_argument("--n", type=int, default=10_000, help="molecules to sample")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument(
        "--diversity-sample", type=int, default=None, help="IntDiv on a subset of this size"
    )
    parser.add_argument("--out", type=Path, default=None, help="write samples and metrics here")
    parser.add_argument("--threads", type=int, default=1)


def run_sample(args: argparse.Namespace, console: Any) -> int:
    """Sample from a model and print validity, uniqueness, novelty, IntDiv and samples/s."""
    from rich.table import Table

    if args.n < 1:
        raise ValueError(f"--n must be >= 1, got {args.n}")
    torch.set_num_threads(args.threads)
    path = args.model or default_prior_path()
    model = load_model(path)
    model.eval()
    state = torch.load(path, map_location="cpu", weights_only=True)
    data = state.get("data")
    if data is None:
        data = {"corpus": "moses", "n": 200_000, "seed": 0}
        console.print(
            "the model file does not record its training data (prior_weights.pt does): "
            "novelty is measured against the default 200k MOSES SMILES"
        )
    gen = torch.Generator().manual_seed(args.seed)
    t0 = time.perf_counter()
    smiles = model.sample_smiles(args.n, generator=gen, batch_size=args.batch_size)
    seconds = time.perf_counter() - t0
    train = _corpus(data["corpus"], data["n"], data["seed"])
    m = moses_metrics(
        smiles, train, unique_at=min(10_000, args.n), diversity_sample=args.diversity_sample
    )
    table = Table(title=f"{args.n} samples from {path.name} (MOSES metrics)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("MOSES CharRNN", justify="right")
    rows = [
        ("validity", m.validity, 0.975),
        (f"unique@{m.unique_at}", m.uniqueness, 0.999),
        (f"novelty (vs its {data['n']} training SMILES)", m.novelty, 0.842),
        ("IntDiv (Morgan r2, 2048 bits)", m.internal_diversity, 0.856),
    ]
    for name, value, ref in rows:
        table.add_row(name, f"{value:.4f}", f"{ref:.3f}")
    console.print(table)
    console.print(f"sampling: {args.n / seconds:.0f} molecules/s ({seconds:.1f} s)")
    if args.out is not None:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "samples.smi").write_text("\n".join(smiles) + "\n")
        summary = {
            "n": args.n,
            "seed": args.seed,
            "validity": m.validity,
            "uniqueness": m.uniqueness,
            "unique_at": m.unique_at,
            "novelty": m.novelty,
            "internal_diversity": m.internal_diversity,
            "samples_per_second": args.n / seconds,
            "sampling_seconds": seconds,
            "train": data,
        }
        (out / "sample_metrics.json").write_text(json.dumps(summary, indent=2))
    return 0


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


def add_optimize_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``stochgrad molecules optimize``."""
    a = AgentConfig()
    parser.add_argument(
        "--objective",
        choices=("qed", "logp", "similarity", "sum"),
        default="similarity",
        help="score to maximise; 'sum' is a weighted sum of the others (--weights)",
    )
    parser.add_argument(
        "--weights",
        type=_weights,
        default=None,
        help="for --objective sum: e.g. qed=0.5,similarity=0.5 (non-negative, summing to 1)",
    )
    parser.add_argument("--target", default=CELECOXIB, help="target SMILES for similarity")
    parser.add_argument("--budget", type=int, default=10_000, help="oracle calls (unique valid)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--method", choices=("reinvent", "reinforce"), default=a.method)
    parser.add_argument("--sigma", type=float, default=a.sigma, help="REINVENT score weight")
    parser.add_argument("--beta", type=float, default=a.beta, help="REINFORCE KL weight")
    parser.add_argument(
        "--likelihood-penalty",
        type=float,
        default=None,
        help="weight of mean(-1/log P_agent) in the loss (default: 5000 for REINVENT, 0 for REINFORCE)",
    )
    parser.add_argument("--batch-size", type=int, default=a.batch_size)
    parser.add_argument("--lr", type=float, default=a.lr)
    parser.add_argument("--replay", type=int, default=a.replay_batch, help="replayed per step")
    parser.add_argument("--max-steps", type=int, default=a.max_steps)
    parser.add_argument(
        "--patience", type=int, default=a.patience, help="stop after N steps with no new top-100"
    )
    parser.add_argument("--model", type=Path, default=None, help="prior (default: shipped)")
    parser.add_argument("--top", type=int, default=100, help="molecules in top.csv")
    parser.add_argument("--out", type=Path, default=Path("runs/molecules/optimize"))
    parser.add_argument("--restart", action="store_true", help="ignore a checkpoint in --out")
    parser.add_argument("--threads", type=int, default=1)


def run_optimize(args: argparse.Namespace, console: Any) -> int:
    """Fine-tune by policy gradient; write top.csv, best.png, curve.png and summary.json."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from rdkit import Chem
    from rdkit.Chem import Draw

    from stochgrad.apps.molecules.scoring import top_auc
    from stochgrad.cli import progress_bar

    torch.set_num_threads(args.threads)
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
    )
    if (args.objective == "sum") != (args.weights is not None):
        raise ValueError("--weights goes with --objective sum, and --objective sum needs --weights")
    uses_target = args.objective == "similarity" or "similarity" in (args.weights or {})
    target = args.target if uses_target else None
    objective = make_objective(args.objective, target=target, weights=args.weights)
    oracle = Oracle(objective, budget=args.budget)
    prior = load_model(args.model or default_prior_path())
    agent = copy.deepcopy(prior)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with progress_bar(console) as progress:
        task = progress.add_task(f"{args.method} {args.objective}", total=args.budget)
        result = optimize(
            agent,
            prior,
            oracle,
            config,
            seed=args.seed,
            checkpoint=out / "agent.pt",
            restart=args.restart,
            callback=lambda s: progress.update(task, completed=min(s.calls, args.budget)),
        )
    top = result.top(args.top)
    with open(out / "top.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        header = ["rank", "smiles", "score", "qed", "penalized_logp"]
        w.writerow(header + (["similarity"] if target else []))
        for rank, (smi, score) in enumerate(top, 1):
            row = [rank, smi, f"{score:.4f}", f"{qed_score(smi):.4f}", f"{penalized_logp(smi):.3f}"]
            w.writerow(row + ([f"{tanimoto_similarity(smi, target):.4f}"] if target else []))
    best = top[:12]
    img = Draw.MolsToGridImage(
        [Chem.MolFromSmiles(s) for s, _ in best],
        molsPerRow=4,
        subImgSize=(250, 250),
        legends=[f"{v:.3f}" for _, v in best],
    )
    img.save(out / "best.png")
    calls = [s.calls for s in result.steps]
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    ax.plot(calls, [s.top1 for s in result.steps], label="top-1")
    ax.plot(calls, [s.top10 for s in result.steps], label="top-10 mean")
    ax.plot(calls, [s.mean_score for s in result.steps], lw=0.6, alpha=0.7, label="batch mean")
    ax.plot(calls, [s.validity for s in result.steps], lw=0.6, alpha=0.7, label="batch validity")
    ax.set(
        xlabel="oracle calls (unique valid molecules)",
        ylabel="score",
        title=f"{args.method}, {args.objective}",
        ylim=(0, 1.02),
    )
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "curve.png", dpi=120)
    plt.close(fig)
    scores = [v for _, v in result.history]
    last = result.steps[-10:]
    summary = {
        "objective": args.objective,
        "weights": args.weights,
        "target": target,
        "method": args.method,
        "budget": args.budget,
        "seed": args.seed,
        "calls": len(scores),
        "steps": len(result.steps),
        "stopped": "budget"
        if len(scores) >= args.budget
        else ("max_steps" if len(result.steps) >= args.max_steps else "patience"),
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
        "config": result.config,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    console.print(
        f"{args.method} on {args.objective}: {len(scores)} oracle calls, {len(result.steps)} steps, "
        f"{result.seconds:.0f} s; top-1 {summary['top1']:.4f}, top-10 {summary['top10_mean']:.4f}, "
        f"top-100 {summary['top100_mean']:.4f}, AUC top-10 {summary['auc_top10']:.4f}, "
        f"validity (last 10 steps) {summary['validity_last10_steps']:.3f}"
    )
    if top:
        console.print(
            f"best: {top[0][0]} ({top[0][1]:.4f}); wrote {out}/top.csv, best.png, curve.png"
        )
    return 0
