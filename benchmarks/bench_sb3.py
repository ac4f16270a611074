"""Stable-Baselines3 A2C, PPO and sb3-contrib TRPO with RL Zoo hyperparameters, same thresholds.

    python benchmarks/bench_sb3.py [--algos a2c,ppo,trpo] [--seeds 2] [--max-steps 500000]

The reference side of ``bench_rl.py``: each run trains until the mean return of the last 100
episodes (SB3's ``ep_info_buffer``) reaches 475 on CartPole-v1, or the cap, and records the
environment steps, wall time and steps per second. Writes ``benchmarks/results/sb3.json``/``.md``.
Hyperparameters: rl-baselines3-zoo for CartPole-v1 (PPO: 8 envs, n_steps 32, batch 256,
gamma 0.98, gae_lambda 0.8, 20 epochs, lr linear from 1e-3, clip linear from 0.2,
ent_coef 0; A2C: 8 envs, ent_coef 0; TRPO: 2 envs, n_steps 512, batch 512, cg_damping 1e-3,
gae_lambda 0.98, lr 1e-3, n_critic_updates 20).
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
THRESHOLD = 475.0


def _linear(start: float):
    return lambda progress: progress * start


def make_model(algo: str, seed: int):
    from sb3_contrib import TRPO
    from stable_baselines3 import A2C, PPO
    from stable_baselines3.common.env_util import make_vec_env

    if algo == "ppo":
        env = make_vec_env("CartPole-v1", n_envs=8, seed=seed)
        return PPO(
            "MlpPolicy",
            env,
            n_steps=32,
            batch_size=256,
            gae_lambda=0.8,
            gamma=0.98,
            n_epochs=20,
            ent_coef=0.0,
            learning_rate=_linear(1e-3),
            clip_range=_linear(0.2),
            seed=seed,
            device="cpu",
        )
    if algo == "a2c":
        env = make_vec_env("CartPole-v1", n_envs=8, seed=seed)
        return A2C("MlpPolicy", env, ent_coef=0.0, seed=seed, device="cpu")
    if algo == "trpo":
        env = make_vec_env("CartPole-v1", n_envs=2, seed=seed)
        return TRPO(
            "MlpPolicy",
            env,
            n_steps=512,
            batch_size=512,
            cg_damping=1e-3,
            gae_lambda=0.98,
            learning_rate=1e-3,
            n_critic_updates=20,
            seed=seed,
            device="cpu",
        )
    raise ValueError(f"algo must be a2c, ppo or trpo, got {algo!r}")


def one_run(algo: str, seed: int, max_steps: int) -> dict:
    import numpy as np
    import torch
    from stable_baselines3.common.callbacks import BaseCallback

    torch.set_num_threads(1)
    record = {"algo": algo, "seed": seed, "reached_at": None}

    class Stop(BaseCallback):
        def _on_step(self) -> bool:
            buf = self.model.ep_info_buffer
            if len(buf) >= 100:
                mean = float(np.mean([e["r"] for e in buf]))
                record["mean100"] = mean
                if mean >= THRESHOLD:
                    record["reached_at"] = self.num_timesteps
                    return False
            return True

    model = make_model(algo, seed)
    start = time.perf_counter()
    model.learn(total_timesteps=max_steps, callback=Stop())
    record["wall_s"] = time.perf_counter() - start
    record["steps"] = int(model.num_timesteps)
    record["steps_per_s"] = record["steps"] / record["wall_s"]
    record.setdefault("mean100", float("nan"))
    return record


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algos", default="a2c,ppo,trpo")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--max-steps", type=int, default=500_000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    algos = [a for a in args.algos.split(",") if a]
    tasks = [(a, s) for a in algos for s in range(args.seeds)]
    with ProcessPoolExecutor(args.workers) as pool:
        runs = [f.result() for f in [pool.submit(one_run, a, s, args.max_steps) for a, s in tasks]]
    report = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "runs": runs}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "sb3.json").write_text(json.dumps(report, indent=2))
    lines = [
        "# Stable-Baselines3 reference (CartPole-v1, RL Zoo hyperparameters)",
        "",
        f"`python benchmarks/bench_sb3.py` on {report['date']}; {args.workers} runs in parallel "
        "on a shared 2-core machine, 1 torch thread each. Threshold: mean return of the last 100 "
        f"episodes >= 475, cap {args.max_steps:,} steps.",
        "",
        "| algo | seed | steps to threshold | final mean100 | wall s | env steps/s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in runs:
        reached = f"{r['reached_at']:,}" if r["reached_at"] else "not reached"
        lines.append(
            f"| {r['algo']} | {r['seed']} | {reached} | {r['mean100']:.1f} | "
            f"{r['wall_s']:.0f} | {r['steps_per_s']:,.0f} |"
        )
    (RESULTS / "sb3.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
