r"""Benchmark: off-policy gradient estimators (bias and variance) and learner sensitivity.

Two measurements on the synthetic bandit of :mod:`stochgrad.apps.offpolicy` (OBP style, 10
actions, 5-d contexts, logging policy softmax(-3 q)):

1. Gradient estimators at a fixed softmax policy (seeded :math:`N(0, 0.5^2)` parameters), over
   ``--datasets`` logged data sets of ``--rounds`` rounds each. The truth is the closed-form
   gradient on each data set's contexts. Reported per estimator: max over the 60 parameters of
   |mean(estimate - truth)| / (its standard error over data sets), and the summed variance of
   the estimate over data sets. DR uses a reward model fitted once on an independent logged set
   (so it is independent of every data set it corrects), and the true q ("oracle").
2. The policy-gradient learners' true value against the number of Adam iterations.

Writes ``offpolicy.json`` and ``offpolicy.md`` into ``--out`` (default
``benchmarks/results``). Run: ``.venv/bin/python benchmarks/bench_offpolicy.py``
(``--quick`` for a smoke run).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from stochgrad.apps.offpolicy import (
    SyntheticBandit,
    dr_gradient,
    fit_reward_model,
    ips_gradient,
    snips_gradient,
    true_gradient,
)
from stochgrad.studies.offpolicy import LearnersConfig, learner_run


def estimator_table(rounds: int, datasets: int) -> dict:
    env = SyntheticBandit()
    theta = 0.5 * torch.randn(
        10, 6, generator=torch.Generator().manual_seed(7), dtype=torch.float64
    )
    side = env.sample(rounds, generator=np.random.default_rng(10_000))
    model = fit_reward_model(side.contexts, side.actions, side.rewards, 10)
    errors: dict[str, list[torch.Tensor]] = {k: [] for k in ("ips", "snips", "dr", "dr_oracle")}
    for k in range(datasets):
        d = env.sample(rounds, generator=np.random.default_rng(k))
        truth = true_gradient(theta, d.contexts, d.expected_rewards)
        logged = (d.contexts, d.actions, d.rewards, d.propensities)
        errors["ips"].append(ips_gradient(theta, *logged).grad - truth)
        errors["snips"].append(snips_gradient(theta, *logged).grad - truth)
        errors["dr"].append(dr_gradient(theta, *logged, model.predict(d.contexts)).grad - truth)
        errors["dr_oracle"].append(dr_gradient(theta, *logged, d.expected_rewards).grad - truth)
    out = {}
    for key, errs in errors.items():
        e = torch.stack(errs)
        se = e.std(0) / datasets**0.5
        out[key] = {
            "max_abs_z_bias": float((e.mean(0) / se).abs().max()),
            "summed_variance": float(e.var(0).sum()),
        }
    return out


def iterations_table(iterations: list[int], seeds: list[int], learners: list[str]) -> dict:
    out: dict[str, dict[str, list[float]]] = {}
    for learner in learners:
        out[learner] = {}
        for it in iterations:
            cfg = LearnersConfig(iterations=it)
            out[learner][str(it)] = [learner_run(learner, s, cfg).value for s in seeds]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    parser.add_argument("--rounds", type=int, default=10_000)
    parser.add_argument("--datasets", type=int, default=200)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    start = time.perf_counter()
    if args.quick:
        est = estimator_table(1000, 10)
        its = iterations_table([10, 30], [0], ["ips"])
    else:
        est = estimator_table(args.rounds, args.datasets)
        its = iterations_table([100, 300, 1000], [0, 1, 2], ["ips", "snips"])
    seconds = time.perf_counter() - start
    result = {
        "estimators": est,
        "iterations": its,
        "rounds": args.rounds,
        "datasets": args.datasets,
        "seconds": seconds,
        "loadavg": os.getloadavg(),
        "torch": torch.__version__,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "offpolicy.json").write_text(json.dumps(result, indent=1))
    lines = [
        "| estimator | max \\|z\\| of the bias | summed variance |",
        "|---|---|---|",
        *(
            f"| {k} | {v['max_abs_z_bias']:.2f} | {v['summed_variance']:.3g} |"
            for k, v in est.items()
        ),
        "",
        "| learner | iterations | true value per seed | mean |",
        "|---|---|---|---|",
        *(
            f"| {lrn} | {it} | {' '.join(f'{x:.4f}' for x in vals)} | {np.mean(vals):.4f} |"
            for lrn, per in its.items()
            for it, vals in per.items()
        ),
        "",
        f"{seconds:.0f} s, load average {os.getloadavg()[0]:.1f}",
    ]
    (args.out / "offpolicy.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
