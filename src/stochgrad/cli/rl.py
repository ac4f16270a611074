"""``stochgrad rl``: reinforcement learning by policy gradients.

- ``train``: REINFORCE (baselines, GAE) or TRPO on a gymnasium environment; checkpoints every
  ``--checkpoint-every`` updates and resumes from them by default; reports the policy
  gradient's signal-to-noise ratio every ``--snr-every`` updates; with ``--target-return R``
  stops once the last 100 episodes average at least R and reports the steps it took;
- ``eval``: a trained policy's returns on fresh episodes;
- ``pareto``: multi-objective REINFORCE on Deep Sea Treasure over weights × seeds, against the
  true Pareto front;
- ``options``: option-critic on the four-rooms grid over seeds, against value iteration.
"""

from __future__ import annotations

import argparse
import re
import textwrap
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rich.console import Console

from stochgrad.cli import _kit
from stochgrad.cli.argtypes import (
    finite_float,
    non_negative_int,
    positive_float,
    positive_int,
    probability,
)

__all__ = [
    "add_eval_arguments",
    "add_options_arguments",
    "add_pareto_arguments",
    "add_train_arguments",
    "plot_learning_curve",
    "run_eval",
    "run_options",
    "run_pareto",
    "run_train",
]


def _wrap(text: str) -> str:
    """A description for the help's raw formatter, wrapped to fit the console."""
    return textwrap.fill(text, _kit.WIDTH - 2)


def _discount(text: str) -> float:
    """argparse type: a discount in (0, 1]."""
    value = probability(text)
    if value == 0.0:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {text!r}")
    return value


def _weights_spec(text: str) -> str:
    """argparse type: ``auto``, a count ``N >= 2`` or comma-separated weights in [0, 1]."""
    spec = text.strip()
    if spec == "auto":
        return spec
    if "," in spec:
        try:
            values = [float(v) for v in spec.split(",") if v.strip()]
        except ValueError:
            values = []
        if not values or not all(0.0 <= v <= 1.0 for v in values):
            raise argparse.ArgumentTypeError(
                f"expected weights in [0, 1] separated by commas, got {text!r}"
            )
        return ",".join(repr(v) for v in values)
    try:
        n = positive_int(spec)
    except argparse.ArgumentTypeError:
        n = 0
    if n < 2:
        raise argparse.ArgumentTypeError(
            f"expected 'auto', a number of weights >= 2 or a comma list, got {text!r}"
        )
    return str(n)


# ---------------------------------------------------------------------------------------------
# rl train
# ---------------------------------------------------------------------------------------------
def add_train_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``stochgrad rl train``."""
    from stochgrad.apps.rl.policy_gradient import ADVANTAGE_BASELINES, ALGOS, Config

    d = Config()
    p.description = _wrap(
        "Train a policy by REINFORCE (baselines, GAE) or TRPO on a gymnasium environment. "
        "A checkpoint is saved every --checkpoint-every updates; the same command run again "
        "continues from it (--restart starts afresh). Prints a summary and writes the learning "
        "curve (PNG), the history (JSON) and the checkpoint (.pt, the input of `rl eval`). "
        "With --target-return R it stops once the mean return of the last 100 episodes is at "
        "least R, and reports the environment steps, updates and episodes that took."
    )
    p.add_argument("--env", default=d.env_id, help="gymnasium id (flat Box observations)")
    p.add_argument("--algo", choices=ALGOS, default=d.algo, help="policy-gradient algorithm")
    p.add_argument(
        "--steps", type=positive_int, default=100_000,
        help="environment steps in all (a resumed run goes on to this total)",
    )  # fmt: skip
    p.add_argument("--seed", type=non_negative_int, default=d.seed, help="random seed")
    p.add_argument(
        "--baseline", choices=ADVANTAGE_BASELINES, default=None,
        help="advantage estimate; when not given: value for reinforce, gae for trpo",
    )  # fmt: skip
    p.add_argument(
        "--gae-lambda", type=probability, default=None,
        help="GAE lambda; when not given: 1 for reinforce, 0.98 for trpo",
    )  # fmt: skip
    p.add_argument(
        "--num-envs", type=positive_int, default=None,
        help=f"parallel environments; when not given: {d.num_envs} for reinforce, 2 for trpo",
    )  # fmt: skip
    p.add_argument(
        "--n-steps", type=positive_int, default=None,
        help=f"rollout steps per environment; when not given: {d.n_steps} for reinforce, "
        "512 for trpo",
    )  # fmt: skip
    p.add_argument(
        "--lr", type=positive_float, default=None,
        help=f"policy Adam learning rate (reinforce); when not given: {d.lr:g}",
    )  # fmt: skip
    p.add_argument(
        "--entropy-coef", type=finite_float, default=None,
        help=f"entropy bonus; when not given: {d.entropy_coef:g}",
    )  # fmt: skip
    p.add_argument(
        "--no-normalize", action="store_true", help="do not normalise advantages per batch"
    )
    p.add_argument(
        "--snr-every", type=non_negative_int, default=d.snr_every,
        help="updates between estimates of the policy gradient's signal-to-noise ratio "
        "(8 batch means; 0: none)",
    )  # fmt: skip
    p.add_argument(
        "--target-return", type=finite_float, default=None, metavar="R",
        help="stop once the last 100 episodes average at least R (checked after each update; "
        "--steps still caps the run); none given: train for --steps",
    )  # fmt: skip
    p.add_argument(
        "--checkpoint-every", type=positive_int, default=50, help="updates between checkpoints"
    )
    _kit.add_output_options(p, "stochgrad-out/rl-train")


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    o: dict[str, Any] = {}
    for name in ("baseline", "gae_lambda", "num_envs", "n_steps", "lr", "entropy_coef",
                 "snr_every", "target_return"):  # fmt: skip
        v = getattr(args, name, None)
        if v is not None:
            o[name] = v
    if getattr(args, "no_normalize", False):
        o["normalize_advantages"] = False
    return o


def _stem(env_id: str, algo: str, seed: int) -> str:
    """File name stem of a training run (characters outside ``[A-Za-z0-9._-]`` as ``_``)."""
    return f"{re.sub(r'[^A-Za-z0-9._-]+', '_', env_id)}_{algo}_s{seed}"


def plot_learning_curve(history: Any, path: str | Path, title: str = "") -> Path:
    """PNG of episodic returns and their mean over the last 100 episodes against env steps."""
    fig = _kit.figure(figsize=(7, 4.2), layout="constrained")
    ax = fig.subplots()
    if history.episode_returns:
        ax.plot(history.episode_end_steps, history.episode_returns, ".", ms=2, alpha=0.3,
                color="C0", label="episode return")  # fmt: skip
    ax.plot(history.update_steps, history.update_mean100, color="C1", label="mean of last 100")
    ax.set_xlabel("environment steps")
    ax.set_ylabel("episodic return")
    ax.set_title(title)
    ax.legend(loc="best")
    return _kit.save_figure(fig, Path(path))


def run_train(args: argparse.Namespace, console: Console) -> int:
    """Train a policy; print a summary; write the curve, the history and the checkpoint."""
    import numpy as np
    import torch

    from stochgrad.apps.rl.gym_envs import check_env_id
    from stochgrad.apps.rl.policy_gradient import default_config, train

    overrides = _overrides(args)
    overrides["threads"] = torch.get_num_threads()  # as `stochgrad --threads` set it
    config = default_config(args.env, args.algo, args.seed, **overrides)  # settings checked
    check_env_id(config.env_id)
    stem = _stem(args.env, args.algo, args.seed)
    with _kit.output(args, console) as out:
        ckpt = out.checkpoint(f"{stem}.pt")
        what = f"{args.algo} on {args.env}: environment steps"
        with _kit.progress(console, what, total=args.steps) as advance:
            result = train(
                args.env, args.algo, args.steps, args.seed, checkpoint=ckpt,
                checkpoint_every=args.checkpoint_every, resume=True, progress=advance,
                on_resume=lambda n: out.resumed(ckpt, f"{n:,} environment steps done"),
                **overrides,
            )  # fmt: skip
        t, h = result.trainer, result.history
        best = float(np.nanmax(h.update_mean100)) if h.episode_returns else float("nan")
        snr = [s.get("grad_snr", float("nan")) for s in h.update_stats]
        logged = [x for x in snr if np.isfinite(x)]
        table = _kit.table(
            f"{args.algo} on {args.env}, seed {args.seed}",
            ["env steps", "updates", "episodes", "mean100", "best mean100", "steps/s",
             "grad SNR"],
            caption="mean100 = mean return of the last 100 episodes; steps/s over all training; "
            "grad SNR = median signal-to-noise ratio of the policy gradient, last 10 estimates",
            left=0,
        )  # fmt: skip
        table.add_row(
            f"{t.env_steps:,}",
            f"{t.updates:,}",
            f"{len(h.episode_returns):,}",
            _kit.fmt(t.mean_return()),
            _kit.fmt(best),
            f"{t.env_steps / max(t.wall, 1e-9):,.0f}",
            _kit.fmt(float(np.median(logged[-10:])) if logged else float("nan")),
        )
        console.print(table)
        console.print(f"training time {t.wall:.1f} s in all")
        target = _target_report(h, args.target_return, t.env_steps)
        if target:
            console.print(target.pop("message"))
        plot_learning_curve(
            h, out.path(f"{stem}.png"), f"{args.algo} on {args.env} (seed {args.seed})"
        )
        _kit.write_json(
            out.path(f"{stem}.json"),
            {
                "config": asdict(result.config),
                "env_steps": t.env_steps,
                "updates": t.updates,
                "mean_return_100": t.mean_return(),
                "best_mean_return_100": best,
                "episode_returns": h.episode_returns,
                "episode_lengths": h.episode_lengths,
                "episode_end_steps": h.episode_end_steps,
                "update_steps": h.update_steps,
                "update_mean100": h.update_mean100,
                "update_grad_snr": snr,
                **target,
            },
        )
    return 0


def _target_report(history: Any, target: float | None, env_steps: int) -> dict[str, Any]:
    """What ``--target-return`` found: a message and the JSON fields (empty without one)."""
    if target is None:
        return {}
    hit = history.target_reached(target)
    fields: dict[str, Any] = {
        "target_return": target,
        "target_reached": hit is not None,
        "target_env_steps": None if hit is None else hit.env_steps,
        "target_updates": None if hit is None else hit.updates,
        "target_episodes": None if hit is None else hit.episodes,
    }
    if hit is None:
        import numpy as np

        ends = np.searchsorted(history.episode_end_steps, history.update_steps, "right")
        full = [m for m, n in zip(history.update_mean100, ends, strict=True) if n >= 100]
        why = (
            f"best mean100 {_kit.fmt(max(full))}"
            if full
            else f"{len(history.episode_returns)} episodes finished, fewer than 100"
        )
        fields["message"] = (
            f"target mean100 >= {target:g} not reached in {env_steps:,} environment steps ({why})"
        )
    else:
        fields["message"] = (
            f"target mean100 >= {target:g} reached after {hit.env_steps:,} environment steps, "
            f"{hit.updates:,} updates, {hit.episodes:,} episodes"
        )
    return fields


# ---------------------------------------------------------------------------------------------
# rl eval
# ---------------------------------------------------------------------------------------------
def add_eval_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``stochgrad rl eval``."""
    p.description = _wrap(
        "Run a policy trained by `stochgrad rl train` for --episodes fresh episodes; print the "
        "returns and write them (JSON). A quick computation: nothing to resume."
    )
    p.add_argument("checkpoint", type=Path, help="a .pt file written by `stochgrad rl train`")
    p.add_argument("--episodes", type=positive_int, default=10, help="episodes")
    p.add_argument(
        "--seed", type=non_negative_int, default=10_000,
        help="reset seed of the first episode (episode k uses seed + k)",
    )  # fmt: skip
    p.add_argument(
        "--stochastic", action="store_true", help="sample actions instead of the policy's mode"
    )
    _kit.add_output_options(p, "stochgrad-out/rl-eval", resumable=False)


def run_eval(args: argparse.Namespace, console: Console) -> int:
    """Evaluate a trained policy; print and write its returns."""
    import numpy as np

    from stochgrad.apps.rl.policy_gradient import evaluate, load_checkpoint

    # a missing or bad file: one line before any work
    config, _ = load_checkpoint(args.checkpoint, resumable=False)
    with _kit.output(args, console) as out:
        returns = evaluate(
            args.checkpoint, args.episodes, seed=args.seed, deterministic=not args.stochastic
        )
        r = np.asarray(returns)
        sd = float(r.std(ddof=1)) if r.size > 1 else float("nan")
        table = _kit.table(
            f"{config.algo} policy on {config.env_id}: {args.checkpoint.name}",
            ["episodes", "mean return", "sd", "min", "max"],
            left=0,
        )
        table.add_row(
            str(r.size), _kit.fmt(float(r.mean())), _kit.fmt(sd), _kit.fmt(float(r.min())),
            _kit.fmt(float(r.max())),
        )  # fmt: skip
        console.print(table)
        _kit.write_json(
            out.path(f"{args.checkpoint.stem}_eval.json"),
            {
                "checkpoint": str(args.checkpoint),
                "env_id": config.env_id,
                "episodes": args.episodes,
                "seed": args.seed,
                "deterministic": not args.stochastic,
                "returns": returns,
            },
        )
    return 0


# ---------------------------------------------------------------------------------------------
# rl pareto
# ---------------------------------------------------------------------------------------------
def add_pareto_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``stochgrad rl pareto``."""
    from stochgrad.apps.rl.multi_objective import ReinforceConfig
    from stochgrad.studies.pareto import ParetoConfig

    d, c = ReinforceConfig(), ParetoConfig()
    p.description = _wrap(
        "Deep Sea Treasure (mo-gymnasium, convex map) by linear scalarisation: per seed, "
        "REINFORCE trains --restarts tabular policies per weight (the best greedy one kept); the "
        "greedy returns are compared with the true Pareto front and by hypervolume. Each seed "
        "is checkpointed during training and when finished; the same command run again "
        "continues (--restart starts afresh). Writes pareto.json, pareto.png and the kept "
        "policies, pareto_policies.pt (tabular logits per seed and weight)."
    )
    p.add_argument(
        "--weights", type=_weights_spec, default=c.weights,
        help="'auto' (11 even weights and one inside each front point's interval), N evenly "
        "spaced weights, or a comma list in [0, 1]",
    )  # fmt: skip
    p.add_argument("--iterations", type=positive_int, default=d.iterations, help="REINFORCE steps")
    p.add_argument(
        "--batch", type=positive_int, default=d.batch, help="episodes per weight and step"
    )
    p.add_argument("--lr", type=positive_float, default=d.lr, help="Adam step size on the logits")
    p.add_argument(
        "--restarts", type=positive_int, default=d.restarts,
        help="policies per weight (the best greedy one is kept)",
    )  # fmt: skip
    p.add_argument("--gamma", type=_discount, default=c.gamma, help="discount in (0, 1]")
    p.add_argument("--seed", type=non_negative_int, default=c.seeds[0], help="first seed")
    p.add_argument(
        "--seeds", type=positive_int, default=len(c.seeds),
        help="number of seeds (--seed, --seed + 1, ...): one sweep each",
    )  # fmt: skip
    p.add_argument(
        "--checkpoint-every", type=positive_int, default=500,
        help="iterations between checkpoints of a running seed",
    )  # fmt: skip
    _kit.add_output_options(p, "stochgrad-out/rl-pareto")


def _short_weights(ws: list[float], limit: int = 4) -> str:
    text = ", ".join(f"{x:.3f}" for x in ws[:limit])
    return text + (f" … (+{len(ws) - limit})" if len(ws) > limit else "")


def _pareto_tables(console: Console, res) -> None:
    import numpy as np

    from stochgrad.apps.rl.deep_sea import front_matches

    cells = res.cells
    t = _kit.table(
        f"Deep Sea Treasure (convex), γ = {res.config.gamma:g}, {len(res.weights)} weights, "
        f"{len(cells)} seed(s)",
        ["treasure", "time", "optimal for w in", "exact", "found",
         f"weights (seed {cells[0].seed})"],
        caption="exact = value iteration finds it; found = seeds whose REINFORCE greedy "
        "policies reach it",
        left=0,
    )  # fmt: skip
    first = res.recovered_by(cells[0])
    for n, p in enumerate(res.front):
        iv = res.front_intervals[n]
        found = sum(bool(c.recovered[n]) for c in cells)
        t.add_row(
            f"{p[0]:.3f}",
            f"{p[1]:.3f}",
            "not supported" if iv is None else f"[{iv[0]:.4f}, {iv[1]:.4f}]",
            "yes" if res.exact_recovered[n] else "[red]no[/red]",
            f"{found}/{len(cells)}" if found == len(cells) else f"[red]{found}/{len(cells)}[/red]",
            _short_weights(first[n]),
        )
    console.print(t)
    runs = len(res.weights) * res.config.reinforce.restarts
    s = _kit.table(
        "Per seed: REINFORCE's greedy policies",
        ["seed", "front points", "runs at optimum", "hypervolume"],
        left=0,
    )
    for c in cells:
        s.add_row(
            str(c.seed),
            f"{int(c.recovered.sum())}/{len(res.front)}",
            f"{int(c.restarts_optimal.sum())}/{runs}",
            f"{c.hypervolume:.4f}",
        )
    console.print(s)
    console.print(
        f"hypervolume (reference (0, -25)): exact solutions {res.hypervolume_exact:.4f}, "
        f"true front {res.hypervolume_front:.4f}"
    )
    for c in cells:
        off = ~front_matches(c.returns, res.front).any(0)
        for k in np.flatnonzero(off):
            r = c.returns[k]
            console.print(
                f"[yellow]seed {c.seed}, w = {res.weights[k]:.4f}: greedy return "
                f"({r[0]:.3f}, {r[1]:.3f}) is not a front point[/yellow]"
            )


def _pareto_plot(path: Path, res) -> None:
    import numpy as np

    front, exact = np.asarray(res.front), np.asarray(res.exact_returns)
    fig = _kit.figure(figsize=(6.4, 4.6), layout="constrained")
    ax = fig.subplots()
    ax.plot(front[:, 1], front[:, 0], "o-", color="0.6", ms=9, label="true front (env)")
    ax.plot(exact[:, 1], exact[:, 0], "s", mfc="none", color="C0", ms=7, label="exact (VI)")
    for i, c in enumerate(res.cells):
        label = "REINFORCE greedy" + (f", seed {c.seed}" if len(res.cells) > 1 else "")
        ax.plot(c.returns[:, 1], c.returns[:, 0], "x", color=f"C{(3 + i) % 10}", ms=8,
                label=label)  # fmt: skip
    found = min(int(c.recovered.sum()) for c in res.cells)
    ax.set_xlabel(f"discounted time penalty (γ = {res.config.gamma:g})")
    ax.set_ylabel("discounted treasure")
    ax.set_title(
        f"Deep Sea Treasure, {len(res.weights)} weights: at least {found}/{len(front)} front "
        f"points per seed; HV front {res.hypervolume_front:.1f}",
        fontsize=10,
    )
    ax.legend(fontsize=8)
    _kit.save_figure(fig, path)


def _pareto_json(res) -> dict[str, Any]:
    return {
        "config": asdict(res.config),
        "weights": res.weights.tolist(),
        "front": res.front.tolist(),
        "exact_returns": res.exact_returns.tolist(),
        "exact_recovered": res.exact_recovered.tolist(),
        "supported": [[float(p[0]), float(p[1]), lo, hi] for p, lo, hi in res.supported],
        "front_intervals": [None if iv is None else list(iv) for iv in res.front_intervals],
        "hypervolume_exact": res.hypervolume_exact,
        "hypervolume_front": res.hypervolume_front,
        "seeds": [
            {
                "seed": c.seed,
                "reinforce_returns": c.returns.tolist(),
                "restart_returns": c.restart_returns.tolist(),
                "restarts_optimal": c.restarts_optimal.tolist(),
                "recovered": c.recovered.tolist(),
                "recovered_by": res.recovered_by(c),
                "hypervolume_reinforce": c.hypervolume,
            }
            for c in res.cells
        ],
    }


def run_pareto(args: argparse.Namespace, console: Console) -> int:
    """The weight sweep; print the front points recovered and the hypervolumes."""
    import torch

    from stochgrad.apps.rl.multi_objective import ReinforceConfig
    from stochgrad.studies.pareto import ParetoConfig, pareto_study

    reinforce = ReinforceConfig(
        iterations=args.iterations, batch=args.batch, lr=args.lr, restarts=args.restarts
    )
    seeds = tuple(range(args.seed, args.seed + args.seeds))
    config = ParetoConfig(weights=args.weights, gamma=args.gamma, seeds=seeds, reinforce=reinforce)
    with _kit.output(args, console) as out:
        ckpt = out.checkpoint("pareto_checkpoint.pt")
        total = args.iterations * len(seeds)
        with _kit.progress(console, "REINFORCE, all weights: iterations", total) as advance:
            res = pareto_study(
                config, checkpoint=ckpt, progress=advance, checkpoint_every=args.checkpoint_every,
                threads=torch.get_num_threads(),  # as `stochgrad --threads` set it (default 1)
                on_resume=lambda done, part: out.resumed(
                    ckpt, f"{done} of {len(seeds)} seeds finished, {part} in progress"),
            )  # fmt: skip
        _pareto_tables(console, res)
        console.print(f"{res.seconds:.1f} s")
        _pareto_plot(out.path("pareto.png"), res)
        _kit.write_json(out.path("pareto.json"), _pareto_json(res))
        _pareto_policies(out.path("pareto_policies.pt"), res, console)
    return 0


#: What ``pareto_policies.pt`` says it is.
PARETO_POLICIES_FORMAT = "stochgrad.rl.pareto_policies/1"


def _pareto_policies(path: Path, res, console: Console) -> None:
    """Save the kept policies (tensors and plain values: read back with ``weights_only=True``).

    ``logits[i, k]`` is seed ``seeds[i]``'s policy for ``weights[k]`` over the states of
    :func:`stochgrad.apps.rl.deep_sea.tabulate` (grid cells ``cells``); its greedy policy,
    rolled out by :func:`~stochgrad.apps.rl.deep_sea.evaluate_in_env`, gives ``returns[i, k]``.
    """
    import numpy as np
    import torch

    from stochgrad.apps.rl.deep_sea import tabulate
    from stochgrad.checkpoint import save_state

    kept = [c for c in res.cells if c.policy_logits is not None]
    for c in res.cells:
        if c.policy_logits is None:
            console.print(f"seed {c.seed}: finished by an earlier release, no policies kept")
    if not kept:
        return
    state = {
        "format": PARETO_POLICIES_FORMAT,
        "gamma": float(res.config.gamma),
        "weights": torch.from_numpy(np.asarray(res.weights, dtype=np.float64)),
        "seeds": [c.seed for c in kept],
        "cells": torch.as_tensor(np.asarray(tabulate().cells)),
        "logits": torch.from_numpy(np.stack([c.policy_logits for c in kept])),
        "returns": torch.from_numpy(np.stack([c.returns for c in kept])),
    }
    save_state(state, path)


# ---------------------------------------------------------------------------------------------
# rl options
# ---------------------------------------------------------------------------------------------
def add_options_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``stochgrad rl options``."""
    from stochgrad.apps.rl.option_critic import OptionCriticConfig
    from stochgrad.studies.fourrooms import FourRoomsConfig

    d, c = OptionCriticConfig(), FourRoomsConfig()
    p.description = _wrap(
        "Tabular option-critic on the four-rooms grid, one agent per seed (trained together), "
        "each greedy agent's exact expected steps to the goal against the optimum (value "
        "iteration). The training is checkpointed every --checkpoint-every episodes, and each "
        "seed's result when it ends; the same command run again continues (--restart starts "
        "afresh). "
        "Writes fourrooms.json and fourrooms.png."
    )
    p.add_argument("--episodes", type=positive_int, default=c.episodes, help="episodes per seed")
    p.add_argument(
        "--seeds", type=positive_int, default=len(c.seeds),
        help="number of seeds (agents): --seed, --seed + 1, ...",
    )  # fmt: skip
    p.add_argument("--seed", type=non_negative_int, default=c.seeds[0], help="first seed")
    p.add_argument("--options", type=positive_int, default=d.num_options, help="options")
    p.add_argument(
        "--temperature", type=positive_float, default=d.temperature,
        help="softmax temperature of the intra-option policies",
    )  # fmt: skip
    p.add_argument(
        "--epsilon", type=probability, default=d.epsilon, help="epsilon-greedy over options"
    )
    p.add_argument("--xi", type=finite_float, default=d.xi, help="termination regulariser")
    p.add_argument(
        "--checkpoint-every", type=positive_int, default=500,
        help="finished episodes (all seeds together) between checkpoints",
    )  # fmt: skip
    _kit.add_output_options(p, "stochgrad-out/rl-options")


def _fourrooms_plot(path: Path, res) -> None:
    import numpy as np

    mean = np.asarray(res.steps_per_episode_mean)
    k = max(1, mean.size // 100)
    smooth = np.convolve(mean, np.ones(k) / k, mode="valid")
    fig = _kit.figure(figsize=(6, 4), layout="constrained")
    ax = fig.subplots()
    ax.plot(np.arange(1, mean.size + 1), mean, color="0.75", lw=0.5, label="mean over seeds")
    ax.plot(np.arange(k, mean.size + 1), smooth, color="C0", label=f"running mean ({k} episodes)")
    ax.axhline(res.optimal_mean_steps, color="C3", ls="--",
               label=f"optimal policy ({res.optimal_mean_steps:.2f})")  # fmt: skip
    ax.set_yscale("log")
    ax.set_xlabel("episode")
    ax.set_ylabel("steps to goal")
    ax.set_title(f"Option-critic, four rooms ({len(res.seeds)} seeds)")
    ax.legend()
    _kit.save_figure(fig, path)


def run_options(args: argparse.Namespace, console: Console) -> int:
    """Option-critic over seeds; print each greedy agent's steps against the optimum."""
    from stochgrad.apps.rl.option_critic import OptionCriticConfig
    from stochgrad.studies.fourrooms import FourRoomsConfig, fourrooms_study

    agent = OptionCriticConfig(
        num_options=args.options, temperature=args.temperature, epsilon=args.epsilon, xi=args.xi
    )
    seeds = tuple(range(args.seed, args.seed + args.seeds))
    config = FourRoomsConfig(episodes=args.episodes, seeds=seeds, agent=agent)
    with _kit.output(args, console) as out:
        ckpt = out.checkpoint("fourrooms_checkpoint.pt")
        total = args.episodes * len(seeds)
        with _kit.progress(console, "option-critic: episodes", total) as advance:
            res = fourrooms_study(
                config, checkpoint=ckpt, progress=advance, checkpoint_every=args.checkpoint_every,
                on_resume=lambda done, part: out.resumed(
                    ckpt, f"{done} of {len(seeds)} seeds finished, {part} in progress"),
            )  # fmt: skip
        t = _kit.table(
            f"Four rooms, option-critic ({args.episodes} episodes, {len(seeds)} seeds)",
            ["seed", "greedy steps", "state-policy steps", "ratio to optimum"],
            caption="exact expected steps to the goal from a uniform start; greedy = greedy "
            "option and action, learned terminations; state-policy = option re-chosen each step",
            left=0,
        )
        rows = zip(res.seeds, res.learned_mean_steps, res.learned_mean_steps_state_policy,
                   res.ratio, strict=True)  # fmt: skip
        for s, m, ms, r in rows:
            t.add_row(str(s), _kit.fmt(m, 5), _kit.fmt(ms, 5), _kit.fmt(r, 5))
        console.print(t)
        console.print(
            f"optimal mean steps {res.optimal_mean_steps:.4f} (shortest-path optimum "
            f"{res.min_mean_steps:.4f}); mean ratio {res.mean_ratio:.4f}; {res.seconds:.1f} s"
        )
        _fourrooms_plot(out.path("fourrooms.png"), res)
        summary = res.summary()
        summary.pop("seconds")
        _kit.write_json(out.path("fourrooms.json"), summary)
    return 0
