"""``stochgrad rbm``: train a Bernoulli RBM on the binarised digits, exact log-likelihood.

CD-k or persistent CD (SGD with momentum and a decaying rate) on scikit-learn's 8 x 8 digits,
binarised and split by a seeded permutation (1437 training, 360 test images). After every epoch
the exact mean log-likelihood of the training and test images is computed by enumerating the
2^H hidden states (H <= 16), and the training state is checkpointed in ``rbm_checkpoint.pt``:
rerunning the same command resumes it; ``--restart`` starts afresh. With ``--compare-sklearn``
scikit-learn's ``BernoulliRBM`` is fitted with the same sizes, epochs, batch, rate and seed, and
scored by the same exact function. Writes ``rbm.json``, ``rbm_curve.png`` (the exact curves) and
``rbm_filters.png`` (the learned weights) to ``--out``.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from rich.console import Console

from stochgrad.cli import _kit
from stochgrad.cli.argtypes import non_negative_int, positive_float, positive_int, probability

#: Largest hidden layer with an exact likelihood (2^16 hidden states enumerated).
MAX_HIDDEN = 16


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``stochgrad rbm``."""
    from stochgrad.apps.ebm import DEFAULT_CHAINS, TRAIN_METHODS, TrainConfig

    d = TrainConfig()
    p.description = __doc__.split("\n", 1)[1].strip()
    p.add_argument(
        "--hidden", type=positive_int, default=d.num_hidden, help=f"hidden units (<= {MAX_HIDDEN})"
    )
    p.add_argument("--epochs", type=positive_int, default=d.epochs, help="passes over the data")
    p.add_argument("--method", choices=TRAIN_METHODS, default=d.method, help="CD-k or PCD")
    p.add_argument("--k", type=positive_int, default=d.k, help="Gibbs sweeps per update")
    p.add_argument("--lr", type=positive_float, default=d.lr, help="learning rate")
    p.add_argument(
        "--lr-final-fraction",
        type=probability,
        default=d.lr_final_fraction,
        help="last epoch's rate as a fraction of --lr (linear decay; 1: constant)",
    )
    p.add_argument("--batch", type=positive_int, default=d.batch_size, help="minibatch size")
    p.add_argument(
        "--chains",
        type=positive_int,
        default=d.num_chains,
        help=f"persistent chains of PCD ({DEFAULT_CHAINS} when not given)",
    )
    p.add_argument(
        "--momentum", type=probability, default=d.momentum, help="SGD momentum, in [0, 1)"
    )
    p.add_argument(
        "--weight-decay", type=float, default=d.weight_decay, help="L2 penalty on W (>= 0)"
    )
    p.add_argument("--seed", type=non_negative_int, default=d.seed, help="random seed")
    p.add_argument(
        "--compare-sklearn",
        action="store_true",
        help="also fit scikit-learn's BernoulliRBM (same size, epochs, batch, lr) and score it",
    )
    _kit.add_output_options(p, "stochgrad-out/rbm")


def _config(args: argparse.Namespace):
    from stochgrad.apps.ebm import TrainConfig
    from stochgrad.studies.rbm import RbmDigitsConfig

    if args.hidden > MAX_HIDDEN:
        raise _kit.UserError(
            f"--hidden must be <= {MAX_HIDDEN} for the exact likelihood, got {args.hidden}"
        )
    if args.chains is not None and args.method == "cd":
        raise _kit.UserError("--chains applies to --method pcd only")
    train = TrainConfig(
        num_hidden=args.hidden,
        epochs=args.epochs,
        method=args.method,
        k=args.k,
        lr=args.lr,
        lr_final_fraction=args.lr_final_fraction,
        batch_size=args.batch,
        num_chains=args.chains,
        momentum=args.momentum,
        weight_decay=args.weight_decay,
        seed=args.seed,
    )
    return RbmDigitsConfig(train, compare_sklearn=args.compare_sklearn)


def _plot_curves(path: Path, res) -> None:
    import numpy as np

    cfg, tr, sk = res.config.train, res.training, res.sklearn
    epochs = np.arange(len(tr.train_ll))
    fig = _kit.figure(figsize=(6, 4), layout="constrained")
    ax = fig.subplots()
    ax.plot(epochs, tr.train_ll, color="C0", label="train (ours)")
    ax.plot(epochs, tr.test_ll, color="C1", label="test (ours)")
    if sk is not None:
        last = epochs[-1]
        ax.plot([last], [sk.train_ll], "s", color="C0", mfc="none", label="train (scikit-learn)")
        ax.plot([last], [sk.test_ll], "s", color="C1", mfc="none", label="test (scikit-learn)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("exact log-likelihood (nats per image)")
    ax.set_ylim(bottom=max(min(tr.test_ll[1:] + tr.train_ll[1:]) - 5, -45))
    ax.set_title(
        f"RBM on digits: {cfg.num_hidden} hidden, {cfg.method.upper()}-{cfg.k}, "
        f"batch {cfg.batch_size}"
    )
    ax.grid(alpha=0.3)
    ax.legend()
    _kit.save_figure(fig, path)


def _plot_filters(path: Path, models: dict, per_row: int = 8) -> None:
    import numpy as np

    H = max(m.num_hidden for m in models.values())
    per_row = min(per_row, H)
    rows_each = -(-H // per_row)
    rows = rows_each * len(models)
    fig = _kit.figure(figsize=(0.9 * per_row, 1.0 * rows + 0.4), layout="constrained")
    axes = fig.subplots(rows, per_row, squeeze=False)
    for r, (name, m) in enumerate(models.items()):
        side = int(round(math.sqrt(m.num_visible)))
        for j in range(rows_each * per_row):
            ax = axes[r * rows_each + j // per_row, j % per_row]
            ax.axis("off")
            if j < m.num_hidden and side * side == m.num_visible:
                w = m.W[:, j].reshape(side, side).numpy()
                lim = float(np.abs(w).max()) or 1.0
                ax.imshow(w, cmap="RdBu_r", vmin=-lim, vmax=lim)
        axes[r * rows_each, 0].set_title(name, loc="left", fontsize=9)
    fig.suptitle("learned filters: the 8 x 8 weights of each hidden unit", fontsize=10)
    _kit.save_figure(fig, path)


def run(args: argparse.Namespace, console: Console) -> int:
    """Train, print the exact log-likelihoods (and scikit-learn's), write the files."""
    from stochgrad.studies.rbm import rbm_digits_study

    config = _config(args)
    cfg = config.train
    with _kit.output(args, console) as out:
        ckpt = out.checkpoint("rbm_checkpoint.pt")
        method = f"{cfg.method.upper()}-{cfg.k}"
        with _kit.progress(console, f"RBM {method}: epochs", total=cfg.epochs) as advance:
            res = rbm_digits_study(
                config,
                checkpoint=ckpt,
                progress=advance,
                on_resume=lambda e: out.resumed(ckpt, f"{e} of {cfg.epochs} epochs trained"),
            )
        t = _kit.table(
            "Exact log-likelihood, nats per image",
            ["model", "train", "test"],
            caption=f"{cfg.num_hidden} hidden, {cfg.epochs} epochs, batch {cfg.batch_size}, "
            f"lr {cfg.lr:g}",
        )
        tr = res.training
        t.add_row(f"ours ({method})", f"{tr.train_ll[-1]:.3f}", f"{tr.test_ll[-1]:.3f}")
        if res.sklearn is not None:
            t.add_row(
                "scikit-learn BernoulliRBM (PCD-1)",
                f"{res.sklearn.train_ll:.3f}",
                f"{res.sklearn.test_ll:.3f}",
            )
        console.print(t)
        resumed = f" ({tr.epochs_resumed} epochs from the checkpoint)" if tr.epochs_resumed else ""
        console.print(f"trained in {tr.seconds:.1f} s{resumed}")
        _kit.write_json(out.path("rbm.json"), res.to_dict())
        _plot_curves(out.path("rbm_curve.png"), res)
        models = {"ours": tr.rbm}
        if res.sklearn is not None:
            models["scikit-learn"] = res.sklearn.rbm
        _plot_filters(out.path("rbm_filters.png"), models)
    return 0
