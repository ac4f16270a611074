"""Policy-gradient learning benchmark: environment steps to a return threshold, per seed.

    python benchmarks/bench_rl.py [--jobs reinforce-cartpole,trpo-cartpole,trpo-acrobot]
        [--seeds 5] [--max-steps 500000]

Each run trains until the mean return of the last 100 episodes reaches the threshold (CartPole-v1:
475, Acrobot-v1: -100) or ``--max-steps`` environment steps, and records the step count, wall
time and environment steps per second (including learning). Writes
``benchmarks/results/rl.json`` and ``rl.md``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
JOBS = {
    "reinforce-cartpole": ("CartPole-v1", "reinforce", 475.0),
    "trpo-cartpole": ("CartPole-v1", "trpo", 475.0),
    "trpo-acrobot": ("Acrobot-v1", "trpo", -100.0),
}


class _Reached(Exception):
    pass


def one_run(job: str, seed: int, max_steps: int) -> dict:
    from stochgrad.apps.rl.policy_gradient import train

    env_id, algo, threshold = JOBS[job]
    record: dict = {"job": job, "env": env_id, "algo": algo, "seed": seed, "reached_at": None}
    start = time.perf_counter()

    def on_update(trainer, stats):
        record["steps"] = trainer.env_steps
        record["mean100"] = trainer.mean_return()
        if record["mean100"] >= threshold:
            record["reached_at"] = trainer.env_steps
            raise _Reached

    try:
        train(env_id, algo, max_steps, seed, on_update=on_update)
    except _Reached:
        pass
    record["wall_s"] = time.perf_counter() - start
    record["steps_per_s"] = record["steps"] / record["wall_s"]
    return record


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", default=",".join(JOBS))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--max-steps", type=int, default=500_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--with-sb3",
        action="store_true",
        help="also run Stable-Baselines3 A2C, PPO and sb3-contrib TRPO (bench_sb3.py) on "
        "CartPole-v1 in the same process pool, interleaved with ours",
    )
    args = parser.parse_args(argv)
    jobs = [j for j in args.jobs.split(",") if j]
    unknown = [j for j in jobs if j not in JOBS]
    if unknown:
        parser.error(f"unknown jobs {unknown}; expected some of {sorted(JOBS)}")
    tasks = [(one_run, j, s) for j in jobs for s in range(args.seeds)]
    if args.with_sb3:
        import bench_sb3

        sb3 = [(bench_sb3.one_run, a, s) for a in ("a2c", "ppo", "trpo") for s in range(args.seeds)]
        # interleave, so that both sides see the same machine load over the run
        ours, tasks = tasks, []
        for i in range(max(len(ours), len(sb3))):
            tasks += ours[i : i + 1] + sb3[i : i + 1]
        jobs = jobs + [f"sb3-{a}-cartpole" for a in ("a2c", "ppo", "trpo")]
    with ProcessPoolExecutor(args.workers) as pool:
        futures = [pool.submit(fn, j, s, args.max_steps) for fn, j, s in tasks]
        runs = []
        for fut in futures:
            r = fut.result()
            if "job" not in r:  # a Stable-Baselines3 run
                r["job"] = f"sb3-{r['algo']}-cartpole"
            runs.append(r)
            print(
                f"{r['job']} seed {r['seed']}: reached {r['reached_at']} "
                f"(mean100 {r['mean100']:.1f}), {r['wall_s']:.0f} s",
                flush=True,
            )
    RESULTS.mkdir(parents=True, exist_ok=True)
    report = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": platform.processor() or platform.machine(),
        "max_steps": args.max_steps,
        "runs": runs,
    }
    (RESULTS / "rl.json").write_text(json.dumps(report, indent=2))
    lines = [
        "# Policy-gradient benchmark",
        "",
        f"`python benchmarks/bench_rl.py` on {report['date']}; {args.workers} runs in parallel on "
        "a shared 2-core machine (wall times are indicative). Threshold: mean return of the last "
        f"100 episodes (CartPole-v1 475, Acrobot-v1 -100), cap {args.max_steps:,} steps.",
        "",
        "| job | seed | steps to threshold | final mean100 | wall s | env steps/s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in runs:
        reached = f"{r['reached_at']:,}" if r["reached_at"] else "not reached"
        lines.append(
            f"| {r['job']} | {r['seed']} | {reached} | {r['mean100']:.1f} | {r['wall_s']:.0f} "
            f"| {r['steps_per_s']:,.0f} |"
        )
    for j in jobs:
        ok = sum(1 for r in runs if r["job"] == j and r["reached_at"])
        lines.append("")
        lines.append(f"- {j}: {ok} of {args.seeds} seeds reached the threshold.")
    (RESULTS / "rl.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
