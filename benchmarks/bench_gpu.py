"""Score-function estimator with parameters on a GPU: stochgrad vs a hand-written torch surrogate.

The problem of ``bench_score.py``: :math:`\\theta = (\\mu, \\sigma) = (0.5, 1)`, :math:`f(x) =
(x - 2)^2`, x ~ Normal(mu, sigma), true gradient (-3, 2). On one CUDA device, for n = 1e5 ... 1e8:

1. ``sg.score_function(..., seed=0)``: the generator is made on the parameters' device, so the
   draws happen on the GPU;
2. ``sg.score_function(..., generator=torch.Generator().manual_seed(0))``: a CPU generator draws
   on the CPU (the same numbers as for CPU parameters) and the draws are copied to the GPU;
3. the hand-written surrogate ``(f(x).detach() * d.log_prob(x)).mean().backward()`` with
   ``d.sample`` on the GPU (the mean only: no per-sample terms, no standard error);

each timed with CUDA synchronisation, median of repeats, interleaved round by round, plus the
same stochgrad call on the CPU (one process, all threads) for scale. Writes
``benchmarks/results/gpu_score.json`` and ``gpu_score.md``. Needs a CUDA device.

Run: ``python benchmarks/bench_gpu.py [--repeats 15]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

import stochgrad as sg

RESULTS = Path(__file__).resolve().parent / "results"


def f(x):
    return (x - 2.0) ** 2


def dist_fn(th):
    return torch.distributions.Normal(th[0], th[1])


def timed(call, device: str) -> tuple[float, torch.Tensor]:
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = call()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--sizes", default="1e5,1e6,1e7,1e8")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("bench_gpu.py needs a CUDA device")
    sizes = [int(float(s)) for s in args.sizes.split(",")]
    theta = torch.tensor([0.5, 1.0], device="cuda")
    theta_cpu = theta.cpu()

    def ours_gpu(n):
        return lambda: sg.score_function(f, dist_fn, theta, num_samples=n, seed=0).grad

    def ours_cpu_gen(n):
        def call():
            gen = torch.Generator().manual_seed(0)
            return sg.score_function(f, dist_fn, theta, num_samples=n, generator=gen).grad

        return call

    def ours_cpu(n):
        return lambda: sg.score_function(f, dist_fn, theta_cpu, num_samples=n, seed=0).grad

    def hand(n):
        def call():
            th = theta.detach().clone().requires_grad_(True)
            d = dist_fn(th)
            x = d.sample((n,))
            (f(x).detach() * d.log_prob(x)).mean().backward()
            return th.grad

        return call

    impls = {"stochgrad, seed=": (ours_gpu, "cuda"), "stochgrad, CPU generator": (ours_cpu_gen, "cuda"),
             "hand-written torch": (hand, "cuda"), "stochgrad on the CPU": (ours_cpu, "cpu")}  # fmt: skip
    rows = []
    for n in sizes:
        times: dict[str, list[float]] = {k: [] for k in impls}
        grads: dict[str, list[float]] = {}
        skip = {"stochgrad on the CPU"} if n > 10_000_000 else set()
        for k, (make, dev) in impls.items():  # warm-up
            if k in skip:
                continue
            _, g = timed(make(n), dev)
            grads[k] = g.float().cpu().tolist()
        for _ in range(args.repeats):
            for k, (make, dev) in impls.items():
                if k in skip:
                    continue
                t, _ = timed(make(n), dev)
                times[k].append(t)
        med = {k: statistics.median(v) * 1e3 for k, v in times.items() if v}
        base = med["hand-written torch"]
        rows.append({"n": n, "median_ms": med, "ratio_to_hand": {k: v / base for k, v in med.items()},
                     "grad": grads})  # fmt: skip
        print(n, {k: round(v, 3) for k, v in med.items()}, flush=True)
    props = torch.cuda.get_device_properties(0)
    report = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "device": props.name,
        "torch": torch.__version__,
        "cpu_threads": torch.get_num_threads(),
        "repeats": args.repeats,
        "rows": rows,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "gpu_score.json").write_text(json.dumps(report, indent=2))
    lines = [
        f"# Score function on a GPU ({report['date']}, {props.name}, torch {torch.__version__})",
        "",
        f"Median of {args.repeats} interleaved repeats, ms (ratio to the hand-written surrogate); "
        f"the CPU column uses {report['cpu_threads']} threads of the GPU machine's CPU.",
        "",
        "| n | " + " | ".join(impls) + " |",
        "|---:|" + "---:|" * len(impls),
    ]
    for r in rows:
        cells = []
        for k in impls:
            v = r["median_ms"].get(k)
            cells.append("—" if v is None else f"{v:.3f} ({r['ratio_to_hand'][k]:.2f}x)")
        lines.append(f"| {r['n']:.0e} | " + " | ".join(cells) + " |")
    (RESULTS / "gpu_score.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
