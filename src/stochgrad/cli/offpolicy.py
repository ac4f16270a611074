"""``stochgrad offpolicy``: off-policy learning from logged bandit data, and confounding.

On the Open Bandit Pipeline-style synthetic bandit, each learner (IPS, SNIPS and doubly robust
policy gradients, the direct method) learns a policy from each seed's logged rounds; the table
gives the policies' true values beside the logging policy's, a uniform policy's, the optimum's
and OBP's published values. ``--confounding`` adds the IPS gradient under a hidden confounder,
with and without it in the propensities, against the exact gradient. Writes ``offpolicy.json``,
``offpolicy_values.png`` and (``--confounding``) ``offpolicy_confounding.png``; each finished
(learner, seed) is checkpointed in ``offpolicy_checkpoint.pt`` and each confounding seed in
``offpolicy_confounding_checkpoint.pt``.

``stochgrad offpolicy learn --log FILE`` learns from your own log instead (a CSV or Parquet
file with context columns, action, reward, propensity): see ``stochgrad offpolicy learn -h``.
"""

from __future__ import annotations

import argparse
from typing import Any

from rich.console import Console

from stochgrad.cli import _kit
from stochgrad.cli.argtypes import (
    choice_list,
    finite_float,
    name_list,
    non_negative_int,
    positive_float,
    positive_int,
)

LEARN_HELP = "learn a policy from your own log (CSV or Parquet) by IPS, SNIPS or DR"
LEARN_DOC = """Learn a linear softmax policy from a logged-bandit file and estimate its value.

The log is a CSV or Parquet table, one row per round: context features (every column starting
with --context-prefix, or --context-cols), the logged action (0 .. A-1), the reward and the
logging propensity pi0(a|x) in (0, 1]; optional columns pi0_0 .. pi0_{A-1} (the logging
policy's probability of every action) are checked against the propensity. A random --holdout
fraction of the rounds is kept aside; the policy is learned on the rest by Adam ascent on the
--estimator's value (DR with a reward model cross-fitted from the logged rewards, or none: then
DR is IPS), and its value on the held-out rounds (IPS, SNIPS, DR, each with its standard error)
is set beside the logging policy's there (the mean logged reward). Writes
offpolicy_learn.json (every number) and offpolicy_policy.json (the parameters, plain JSON);
the Adam state is checkpointed in offpolicy_learn_checkpoint.pt every 50 steps."""

VALUES_LEGEND = (
    "value = true value of the learned policy on the test contexts; greedy = of acting on its "
    "most probable action; published (OBP example): random 0.500, IPWLearner 0.782, "
    "NNPolicyLearner (IPW) 0.736"
)


def _at_least_two(text: str) -> int:
    value = positive_int(text)
    if value < 2:
        raise argparse.ArgumentTypeError(f"expected an integer >= 2, got {text!r}")
    return value


def _learners() -> tuple[str, ...]:
    from stochgrad.apps.offpolicy import LEARNERS

    return LEARNERS


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``stochgrad offpolicy``."""
    from stochgrad.studies.offpolicy import ConfoundingConfig, LearnersConfig

    d, c = LearnersConfig(), ConfoundingConfig()
    p.description = __doc__.split("\n", 1)[1].strip()
    p.add_argument("--rounds", type=_at_least_two, default=d.rounds, help="logged training rounds")
    p.add_argument(
        "--test-rounds", type=positive_int, default=d.test_rounds, help="contexts for true values"
    )
    p.add_argument("--seeds", type=positive_int, default=len(d.seeds), help="seeds 0..n-1")
    p.add_argument(
        "--learners",
        type=choice_list(_learners),
        default=list(d.learners),
        help="comma-separated learners",
    )
    p.add_argument("--iterations", type=positive_int, default=d.iterations, help="Adam steps")
    p.add_argument("--lr", type=positive_float, default=d.lr, help="Adam step size")
    p.add_argument(
        "--confounding", action="store_true", help="also run the confounding demonstration"
    )
    p.add_argument(
        "--confounding-rounds",
        type=_at_least_two,
        default=c.rounds,
        help="rounds of that demonstration",
    )
    p.add_argument(
        "--confounding-seeds",
        type=positive_int,
        default=len(c.seeds),
        help="seeds 0..n-1 of that demonstration",
    )
    _kit.add_output_options(p, "stochgrad-out/offpolicy")
    jobs = p.add_subparsers(
        dest="job", metavar="[learn]", title="job (optional)", parser_class=type(p)
    )
    learn = jobs.add_parser(
        "learn", help=LEARN_HELP, description=LEARN_DOC, formatter_class=_kit.HelpFormatter
    )
    add_learn_arguments(learn)


def _holdout(text: str) -> float:
    value = finite_float(text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}")
    return value


def add_learn_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``stochgrad offpolicy learn``."""
    from pathlib import Path

    from stochgrad.studies.offpolicy import LogLearningConfig

    d = LogLearningConfig("")
    p.add_argument("--log", type=Path, required=True, metavar="FILE", help=".csv or .parquet log")
    p.add_argument(
        "--estimator",
        choices=("ips", "snips", "dr"),
        default=d.estimator,
        help="the off-policy gradient to ascend",
    )
    p.add_argument(
        "--context-cols",
        type=name_list,
        default=None,
        metavar="A,B,...",
        help="context feature columns (default: every column starting with --context-prefix)",
    )
    p.add_argument("--context-prefix", default=d.context_prefix, help="prefix of context columns")
    p.add_argument("--action-col", default=d.action_col, help="column of the logged action")
    p.add_argument("--reward-col", default=d.reward_col, help="column of the reward")
    p.add_argument(
        "--propensity-col", default=d.propensity_col, help="column of the logging propensity"
    )
    p.add_argument(
        "--behavior-prefix",
        default=d.behavior_prefix,
        help="prefix of the optional columns of every action's logging probability",
    )
    p.add_argument(
        "--expected-prefix",
        default=None,
        help="prefix of true expected-reward columns (simulated logs; evaluation only)",
    )
    p.add_argument(
        "--num-actions",
        type=_at_least_two,
        default=None,
        help="number of actions (default: from the pi0_ columns, else the largest action + 1)",
    )
    p.add_argument(
        "--reward-model",
        choices=("cross-fit", "none"),
        default=d.reward_model,
        help="DR's reward model: cross-fitted from the logged rewards, or none (DR is then IPS)",
    )
    p.add_argument(
        "--holdout", type=_holdout, default=d.holdout, help="fraction of rounds for evaluation"
    )
    p.add_argument("--folds", type=_at_least_two, default=d.folds, help="cross-fitting folds")
    p.add_argument("--iterations", type=positive_int, default=d.iterations, help="Adam steps")
    p.add_argument("--lr", type=positive_float, default=d.lr, help="Adam step size")
    p.add_argument(
        "--seed", type=non_negative_int, default=d.seed, help="seed of the split and the folds"
    )
    _kit.add_output_options(p, "stochgrad-out/offpolicy-learn")


def _values_table(res: Any):
    import numpy as np

    cfg = res.config
    t = _kit.table(
        f"True policy values ({cfg.rounds} logged rounds, {cfg.test_rounds} test contexts, "
        f"{len(res.seeds)} seeds)",
        ["policy", "mean value", "sd (seeds)", "greedy", "per seed"],
        caption=VALUES_LEGEND,
    )
    for k in res.keys:
        v, gv = np.asarray(res.value[k]), np.asarray(res.greedy_value[k])
        sd = f"{v.std(ddof=1):.4f}" if v.size > 1 else "—"
        t.add_row(k, f"{v.mean():.4f}", sd, f"{gv.mean():.4f}", " ".join(f"{x:.3f}" for x in v))
    t.add_row("optimal (greedy on q)", f"{np.mean(res.optimal_value):.4f}", "", "", "")
    return t


def _confounding_table(demo: Any):
    t = _kit.table(
        f"IPS gradient under a hidden confounder ({demo.rounds} rounds, seed {demo.seed}): "
        "d value / d bias of action a",
        ["action", "true", "u observed", "z", "u hidden", "z"],
        caption="u observed: propensities π0(a|x,u); u hidden: π0(a|x); z = (est. − true) / se",
    )
    for a in range(demo.true.shape[0]):
        t.add_row(
            str(a),
            f"{demo.true[a, 0]:+.4f}",
            f"{demo.observed[a, 0]:+.4f} ± {demo.observed_stderr[a, 0]:.4f}",
            f"{demo.observed_z[a, 0]:+.1f}",
            f"{demo.hidden[a, 0]:+.4f} ± {demo.hidden_stderr[a, 0]:.4f}",
            f"{demo.hidden_z[a, 0]:+.1f}",
        )
    return t


def _confounding_summary(res: Any):
    t = _kit.table(
        f"Confounding over seeds ({res.config.rounds} rounds each)",
        ["seed", "max |z| u obs.", "max |z| u hid.", "true value", "IPS u obs.", "IPS u hid."],
        caption="max |z| over all parameters; IPS value estimates ± stderr",
    )
    for d in res.demos:
        t.add_row(
            str(d.seed),
            f"{d.max_abs_z['observed']:.2f}",
            f"{d.max_abs_z['hidden']:.2f}",
            f"{d.true_value:.4f}",
            f"{d.observed_value:.4f} ± {d.observed_value_stderr:.4f}",
            f"{d.hidden_value:.4f} ± {d.hidden_value_stderr:.4f}",
        )
    return t


def _plot_values(res: Any, path: Any) -> None:
    import numpy as np

    fig = _kit.figure(figsize=(7, 4))
    ax = fig.subplots()
    for i, k in enumerate(res.keys):
        v = np.asarray(res.value[k])
        ax.scatter(np.full(v.size, i), v, color="C0", s=14, alpha=0.7)
        ax.errorbar(i, v.mean(), yerr=v.std(ddof=1) if v.size > 1 else 0, color="k", capsize=4)
        if k in ("ips", "snips", "dr"):
            gv = np.asarray(res.greedy_value[k])
            ax.scatter(np.full(gv.size, i + 0.2), gv, color="C1", s=14, marker="^", alpha=0.7)
    ax.axhline(np.mean(res.optimal_value), color="C3", ls="--", label="optimal (greedy on q)")
    ax.axhline(0.782, color="C2", ls=":", label="OBP IPWLearner, published 0.782")
    ax.axhline(0.736, color="C4", ls=":", label="OBP NNPolicyLearner, published 0.736")
    ax.scatter([], [], color="C0", s=14, label="policy (per seed)")
    ax.scatter([], [], color="C1", s=14, marker="^", label="its greedy version")
    ax.set_xticks(range(len(res.keys)), res.keys)
    ax.set_ylabel("true policy value")
    ax.set_title(f"Off-policy learning, {res.config.rounds} logged rounds, {len(res.seeds)} seeds")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    _kit.save_figure(fig, path, dpi=120)


def _plot_confounding(demo: Any, path: Any) -> None:
    import numpy as np

    fig = _kit.figure(figsize=(9, 3.8))
    axes = fig.subplots(1, 2)
    truth = demo.true.ravel()
    zs = {k: getattr(demo, f"{k}_z").ravel() for k in ("hidden", "observed")}
    top = max(5.0, *(float(np.abs(z).max()) for z in zs.values()))
    bins = np.linspace(-top, top, 41)
    axes[1].axvspan(-3, 3, color="0.92", zorder=0)
    for name, color in (("hidden", "C3"), ("observed", "C0")):
        est = getattr(demo, name).ravel()
        se = getattr(demo, f"{name}_stderr").ravel()
        label = "u hidden: pi0(a|x)" if name == "hidden" else "u observed: pi0(a|x,u)"
        axes[0].errorbar(truth, est, yerr=2 * se, fmt="o", ms=3, color=color, label=label)
        axes[1].hist(zs[name], bins=bins, alpha=0.7, color=color, label=label, zorder=2)
    lim = [truth.min() - 0.01, truth.max() + 0.01]
    axes[0].plot(lim, lim, "k--", lw=0.8)
    axes[0].set_xlabel("true gradient component")
    axes[0].set_ylabel("IPS estimate (± 2 se)")
    axes[0].legend(fontsize=7)
    axes[1].legend(fontsize=7)
    axes[1].set_xlabel("z = (estimate - truth) / se")
    axes[1].set_ylabel("parameters")
    fig.suptitle(f"IPS gradient under a hidden confounder ({demo.rounds} rounds)")
    fig.tight_layout()
    _kit.save_figure(fig, path, dpi=120)


def _demo_json(demo: Any) -> dict[str, Any]:
    from dataclasses import asdict

    out = {k: v.tolist() if hasattr(v, "tolist") else v for k, v in asdict(demo).items()}
    out["max_abs_z"] = demo.max_abs_z
    return out


def _json(res: Any, conf: Any) -> dict[str, Any]:
    from dataclasses import asdict

    from stochgrad.studies.offpolicy import PUBLISHED

    data: dict[str, Any] = {
        "config": res.config.settings(),
        "seeds": res.seeds,
        "keys": res.keys,
        "value": res.value,
        "greedy_value": res.greedy_value,
        "optimal_value": res.optimal_value,
        "published": dict(PUBLISHED),
        "runs": [res.runs[(k, s)].to_state() for s in res.seeds for k in res.keys],
        "confounding": None,
        "seconds": res.seconds,
    }
    if conf is not None:
        data["confounding"] = _demo_json(conf.demos[0])
        data["confounding_config"] = asdict(conf.config)
        data["confounding_runs"] = [_demo_json(d) for d in conf.demos]
    return data


def _refuse_options_before_learn(argv: list[str] | None) -> None:
    """Options between ``offpolicy`` and ``learn`` belong to the synthetic study: argparse
    would drop them without a word (``learn``'s own defaults win), so they are refused."""
    if not argv or "offpolicy" not in argv:
        return
    start = argv.index("offpolicy") + 1
    if "learn" not in argv[start:]:
        return
    before = [
        a.split("=")[0] for a in argv[start : argv.index("learn", start)] if a.startswith("-")
    ]
    if before:
        raise _kit.UserError(
            f"{', '.join(before)} before `learn` would be ignored (the options before it are "
            "the synthetic study's); give learn's options after it: stochgrad offpolicy learn "
            "--log FILE ..."
        )


def run(args: argparse.Namespace, console: Console) -> int:
    """Learn policies from logged bandit data; print their true values (and confounding)."""
    if getattr(args, "job", None) == "learn":
        _refuse_options_before_learn(getattr(args, "argv", None))
        return run_learn(args, console)
    from stochgrad.studies.offpolicy import (
        ConfoundingConfig,
        LearnersConfig,
        confounding_study,
        learners_study,
    )

    config = LearnersConfig(
        rounds=args.rounds,
        test_rounds=args.test_rounds,
        iterations=args.iterations,
        lr=args.lr,
        seeds=tuple(range(args.seeds)),
        learners=tuple(args.learners),
    )
    conf_config = (
        ConfoundingConfig(
            rounds=args.confounding_rounds, seeds=tuple(range(args.confounding_seeds))
        )
        if args.confounding
        else None
    )
    with _kit.output(args, console) as out:
        ckpt = out.checkpoint("offpolicy_checkpoint.pt")
        total = len(config.seeds) * len(config.policies)
        with _kit.progress(console, "off-policy learning: policies × seeds", total) as advance:
            res = learners_study(
                config,
                checkpoint=ckpt,
                progress=advance,
                on_resume=lambda done, _: out.resumed(ckpt, f"{done} of {total} runs finished"),
            )
        conf = None
        if conf_config is not None:
            cckpt = out.checkpoint("offpolicy_confounding_checkpoint.pt")
            n = len(conf_config.seeds)
            with _kit.progress(console, "confounding: seeds", n) as advance:
                conf = confounding_study(
                    conf_config,
                    checkpoint=cckpt,
                    progress=advance,
                    on_resume=lambda done, _: out.resumed(cckpt, f"{done} of {n} seeds finished"),
                )
        console.print(_values_table(res))
        if conf is not None:
            first = conf.demos[0]
            console.print(_confounding_table(first))
            console.print(_confounding_summary(conf))
            _plot_confounding(first, out.path("offpolicy_confounding.png"))
        _plot_values(res, out.path("offpolicy_values.png"))
        _kit.write_json(out.path("offpolicy.json"), _json(res, conf))
        console.print(f"{res.seconds:.1f} s")
    return 0


def _learn_table(res: Any):
    run, cfg = res.run, res.config
    truth = run.true_value == run.true_value  # not NaN: the log carries the true q
    where = "the training rounds" if run.in_sample else f"{run.eval_rounds} held-out rounds"
    t = _kit.table(
        f"Policy values on {where} (learned by {cfg.estimator} from {run.train_rounds} rounds)",
        ["policy", "estimator", "value", "stderr", "max weight", "eff. rounds"]
        + (["true value"] if truth else []),
        caption="* the estimator it learned with; max weight, eff. rounds (Kish): of the "
        "importance weights on these rounds",
        left=2,
    )

    def true(v: float) -> list[str]:
        return [_kit.fmt(v)] if truth else []

    t.add_row(
        "logging",
        "mean reward",
        f"{run.logging_value:.4f}",
        f"{run.logging_stderr:.4f}",
        "1",
        str(run.eval_rounds),
        *true(run.true_logging_value),
    )
    for k, v in run.values.items():
        name = "learned" + (" *" if k == cfg.estimator else "")
        t.add_row(
            name,
            k,
            f"{v['value']:.4f}",
            f"{v['stderr']:.4f}",
            _kit.fmt(v["max_weight"], 3),
            f"{v['effective_rounds']:.0f}",
            *true(run.true_value),
        )
    return t


def _learn_json(res: Any, log: str) -> dict[str, Any]:
    from dataclasses import asdict

    run = res.run
    settings = asdict(res.config)
    settings["context_cols"] = res.context_columns
    return {
        "log": log,
        "log_sha256": res.log_sha256,
        "settings": settings,
        "rounds": res.rounds,
        "num_actions": res.num_actions,
        "has_behavior": res.has_behavior,
        "train_rounds": run.train_rounds,
        "eval_rounds": run.eval_rounds,
        "in_sample": run.in_sample,
        "values": run.values,
        "logging": {"value": run.logging_value, "stderr": run.logging_stderr},
        "gain": {"estimator": res.config.estimator, "value": run.gain, "stderr": run.gain_stderr},
        "true_value": run.true_value,
        "true_logging_value": run.true_logging_value,
        "seconds": run.seconds,
    }


def _policy_json(res: Any) -> dict[str, Any]:
    return {
        "model": "linear softmax: pi(a|x) = softmax_a(theta[a] . (1, x))",
        "features": ["bias", *res.context_columns],
        "num_actions": res.num_actions,
        "estimator": res.config.estimator,
        "theta": res.run.theta.tolist(),
    }


def run_learn(args: argparse.Namespace, console: Console) -> int:
    """Learn a policy from a log file; print its value against the logging policy's."""
    from stochgrad.studies.offpolicy import LogLearningConfig, log_learning

    config = LogLearningConfig(
        log=str(args.log),
        estimator=args.estimator,
        context_cols=None if args.context_cols is None else tuple(args.context_cols),
        context_prefix=args.context_prefix,
        action_col=args.action_col,
        reward_col=args.reward_col,
        propensity_col=args.propensity_col,
        behavior_prefix=args.behavior_prefix or None,
        expected_prefix=args.expected_prefix or None,
        num_actions=args.num_actions,
        reward_model=args.reward_model,
        holdout=args.holdout,
        iterations=args.iterations,
        lr=args.lr,
        folds=args.folds,
        seed=args.seed,
    )
    with _kit.output(args, console) as out:
        ckpt = out.checkpoint("offpolicy_learn_checkpoint.pt")
        with _kit.progress(console, f"{config.estimator}: Adam steps", config.iterations) as step:
            try:
                res = log_learning(
                    config,
                    checkpoint=ckpt,
                    progress=step,
                    on_resume=lambda what: out.resumed(ckpt, what),
                )
            except ImportError as exc:  # Parquet without pyarrow: read_log says what to do
                if not (exc.name or "").startswith("pyarrow"):
                    raise
                raise _kit.UserError(str(exc)) from None
        console.print(
            f"{res.rounds} rounds, {res.num_actions} actions, {len(res.context_columns)} context "
            "features"
            + ("" if res.has_behavior else " (no pi0_ columns: propensities only)")
            + ", read from",
            markup=False,
        )
        console.print(f"  {args.log}", soft_wrap=True, markup=False)
        console.print(_learn_table(res))
        run = res.run
        console.print(
            f"learned minus logging ({config.estimator}): {run.gain:+.4f} ± {run.gain_stderr:.4f}"
            f" (z = {run.gain / run.gain_stderr:+.1f}, paired over the same rounds)"
            if run.gain_stderr > 0
            else f"learned minus logging ({config.estimator}): {run.gain:+.4f}",
            markup=False,
        )
        if run.in_sample:
            console.print(
                "values on the training rounds (--holdout 0) flatter the learned policy",
                markup=False,
            )
        _kit.write_json(out.path("offpolicy_learn.json"), _learn_json(res, str(args.log)))
        _kit.write_json(out.path("offpolicy_policy.json"), _policy_json(res))
        console.print(f"{run.seconds:.1f} s", markup=False)
    return 0
