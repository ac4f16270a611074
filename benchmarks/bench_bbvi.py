r"""Benchmark: cost and variance of the five BBVI gradient estimators (Bayesian logistic regression).

The problem is that of :mod:`stochgrad.apps.vi` (breast cancer, :math:`D = 31`, mean-field
Gaussian q). At the optimal q (computed by quadrature and L-BFGS), each estimator's ELBO
gradient step is timed: :func:`stochgrad.apps.vi.elbo_gradient` with 50 samples on a minibatch
of 32, the paper's setup. Rounds are interleaved over the estimators, so drift on a shared
machine hits all of them alike. The full-data variance per coordinate is measured at the same
q. The reference is the pathwise estimator in the same run. Each estimator is reported as a
ratio to it: time per step, median variance, and variance x time (the variance at equal wall
time).

Writes ``benchmarks/results/bbvi.json`` (all numbers and machine information) and ``bbvi.md``.
Run: ``.venv/bin/python benchmarks/bench_bbvi.py`` (``--quick`` for a smoke run).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from stochgrad.apps import vi


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30, help="timing rounds per estimator")
    parser.add_argument("--repeats", type=int, default=200, help="estimates for the variance")
    parser.add_argument("--samples", type=int, default=50)
    parser.add_argument("--quick", action="store_true", help="smoke run: few rounds and repeats")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.repeats = 3, 5
    torch.set_num_threads(1)
    X, y = vi.load_data()
    opt = vi.optimal_elbo(X, y, nodes=1024)
    mu = torch.tensor(opt.mu, dtype=X.dtype)
    ls = torch.tensor(opt.log_sigma, dtype=X.dtype)
    names = list(vi.ELBO_ESTIMATORS)
    g = torch.Generator().manual_seed(0)
    times: dict[str, list[float]] = {k: [] for k in names}
    for k in names:  # warm-up (imports, first autograd graph)
        vi.elbo_gradient(k, mu, ls, X, y, args.samples, generator=g, batch=torch.arange(32))
    for _ in range(args.rounds):
        for k in names:
            batch = torch.randperm(X.shape[0], generator=g)[:32]
            t0 = time.perf_counter()
            vi.elbo_gradient(k, mu, ls, X, y, args.samples, generator=g, batch=batch)
            times[k].append(time.perf_counter() - t0)
    rows = {}
    for i, k in enumerate(names):
        vm, vl = vi.gradient_variance(
            k, mu, ls, X, y, args.samples, args.repeats, generator=torch.Generator().manual_seed(i)
        )
        q = np.percentile(times[k], [25, 50, 75])
        rows[k] = {
            "ms_per_step_p25": 1e3 * q[0],
            "ms_per_step_median": 1e3 * q[1],
            "ms_per_step_p75": 1e3 * q[2],
            "evaluations_per_step": vi.evaluations_per_step(k, args.samples, X.shape[1]),
            "median_var_mu": float(vm.median()),
            "median_var_log_sigma": float(vl.median()),
            "var_mu": vm.tolist(),
            "var_log_sigma": vl.tolist(),
        }
    ref = rows["pathwise"]
    for r in rows.values():
        r["time_ratio"] = r["ms_per_step_median"] / ref["ms_per_step_median"]
        r["var_ratio_mu"] = float(np.median(np.array(r["var_mu"]) / np.array(ref["var_mu"])))
        r["var_ratio_log_sigma"] = float(
            np.median(np.array(r["var_log_sigma"]) / np.array(ref["var_log_sigma"]))
        )
        r["var_x_time_ratio_mu"] = r["var_ratio_mu"] * r["time_ratio"]
        r["var_x_time_ratio_log_sigma"] = r["var_ratio_log_sigma"] * r["time_ratio"]
    result = {
        "problem": "stochgrad.apps.vi at the optimal q; minibatch 32; float64; one torch thread",
        "samples": args.samples,
        "rounds": args.rounds,
        "repeats": args.repeats,
        "optimum_elbo": opt.elbo,
        "rows": rows,
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cpus": os.cpu_count(),
            "loadavg_end": os.getloadavg(),
        },
        "date_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bbvi.json").write_text(json.dumps(result, indent=1))
    lines = [
        f"# BBVI estimators at the optimal q ({args.samples} samples, minibatch 32)",
        "",
        f"Timing: {args.rounds} interleaved rounds; variance: {args.repeats} full-data "
        "estimates. Ratios are to pathwise in the same run (medians over the 31 coordinates).",
        f"Load average at the end: {', '.join(f'{v:.1f}' for v in os.getloadavg())}.",
        "",
        "| estimator | ms/step (p25-p75) | f evals/step | var ratio mu | var ratio log_sigma "
        "| var x time mu | var x time log_sigma |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for k, r in rows.items():
        lines.append(
            f"| {k} | {r['ms_per_step_median']:.2f} ({r['ms_per_step_p25']:.2f}-"
            f"{r['ms_per_step_p75']:.2f}) | {r['evaluations_per_step']} | "
            f"{r['var_ratio_mu']:.3g} | {r['var_ratio_log_sigma']:.3g} | "
            f"{r['var_x_time_ratio_mu']:.3g} | {r['var_x_time_ratio_log_sigma']:.3g} |"
        )
    (args.out / "bbvi.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"median step times (ms): {statistics.median(times['pathwise']) * 1e3:.2f} (pathwise)")


if __name__ == "__main__":
    main()
