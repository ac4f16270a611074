"""Memory of a gradient estimate for a 1M-weight network: per-sample terms against batch means.

A policy network (32 -> 1000 -> 1000 -> 10, 1,044,010 float32 weights) picks one of 10 actions
for each of 16 inputs; the reward is the number of inputs whose action matches a hidden label.
The gradient of the expected reward with respect to every weight is estimated from n = 64
draws, four ways:

- ``sg.score_function(..., params=weights)``: the estimator draws; one term per sample is kept
  (``per_sample`` is ``[64, *weight.shape]``, 64 x 4 MB);
- the same with ``batches=8``: 8 batch means are kept (``[8, ...]``);
- ``sg.surrogate_loss(...).estimate(net)`` on draws of one's own: per-sample terms;
- the same with ``estimate(net, batches=8)``.

Each case runs in a fresh process, after a warm-up on a small network (so that loading code
does not count). Reported: the size of ``per_sample`` (what the estimate keeps), the peak of
the memory torch allocated during the call (from ``torch.profiler``'s memory events), the rise
of the process's peak resident memory during the call, and the time of a second call (without
the profiler).

Run: ``python docs/examples/estimator_memory.py`` (about a minute on a CPU).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch
from torch import nn

import stochgrad as sg

INPUTS, FEATURES, HIDDEN, ACTIONS, SAMPLES = 16, 32, 1000, 10, 64
CASES = ("score_function", "score_function_batches", "surrogate", "surrogate_batches")
MB = 2**20


def _network(hidden: int) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(FEATURES, hidden),
        nn.Tanh(),
        nn.Linear(hidden, hidden),
        nn.Tanh(),
        nn.Linear(hidden, ACTIONS),
    )


def estimate(case: str, hidden: int = HIDDEN, batches: int = 8) -> sg.GradientEstimate:
    """One gradient estimate of the case's kind for a network of ``hidden`` units."""
    g = torch.Generator().manual_seed(0)
    net = _network(hidden)
    inputs = torch.randn(INPUTS, FEATURES, generator=g)
    label = torch.randint(0, ACTIONS, (INPUTS,), generator=g)

    def reward(actions: torch.Tensor) -> torch.Tensor:  # [n, INPUTS] -> [n]
        return (actions == label).float().sum(-1)

    if case.startswith("score_function"):
        names = [name for name, _ in net.named_parameters()]

        def policy(*weights: torch.Tensor) -> torch.distributions.Distribution:
            logits = torch.func.functional_call(
                net, dict(zip(names, weights, strict=True)), (inputs,)
            )
            return torch.distributions.Independent(
                torch.distributions.Categorical(logits=logits), 1
            )

        weights = tuple(p.detach() for p in net.parameters())
        return sg.score_function(
            reward,
            policy,
            weights,
            num_samples=SAMPLES,
            baseline="loo",
            generator=g,
            batches=batches if case.endswith("batches") else None,
        )
    dist = torch.distributions.Independent(torch.distributions.Categorical(logits=net(inputs)), 1)
    with torch.no_grad():
        actions = torch.multinomial(
            dist.base_dist.probs, SAMPLES, replacement=True, generator=g
        ).T  # [n, INPUTS]
    s = sg.surrogate_loss(dist.log_prob(actions), reward(actions), advantage="loo")
    return s.estimate(net, batches=batches if case.endswith("batches") else SAMPLES)


def _resident_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize() / MB


def _peak_allocated(fn) -> tuple[object, float | None]:
    """Run ``fn``; return its result and the peak of torch's CPU allocations during it (MB)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        out = fn()
    try:  # the allocator's events in time order: +bytes on allocation, -bytes on release
        events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    except AttributeError:  # another torch version: no per-allocation events to read
        return out, None
    total = peak = 0
    for e in sorted(events, key=lambda e: e.start_ns()):
        total += e.nbytes()
        peak = max(peak, total)
    return out, peak / MB


def measure(case: str) -> dict:
    """Measure one case in this process (run it in a fresh one: peak resident memory)."""
    torch.set_num_threads(1)
    estimate(case, hidden=8)  # warm-up: code paths loaded, small allocations made
    before = _resident_mb()
    est, peak = _peak_allocated(lambda: estimate(case))
    rise = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - before  # KB on Linux
    start = time.perf_counter()  # timed again without the profiler, which slows every op
    estimate(case)
    seconds = time.perf_counter() - start
    kept = sum(t.numel() * t.element_size() for t in est.per_sample) / MB
    return {
        "case": case,
        "rows": int(est.per_sample[0].shape[0]),
        "weights": sum(t[0].numel() for t in est.per_sample),
        "kept_mb": kept,
        "peak_allocated_mb": peak,
        "peak_resident_rise_mb": rise,
        "seconds": seconds,
        "snr_of_mean": est.snr_of_mean(),
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--case", choices=CASES, help="measure one case here, print JSON")
    args = p.parse_args(argv)
    if args.case:
        print(json.dumps(measure(args.case)))
        return
    rows = []
    for case in CASES:
        out = subprocess.run(
            [sys.executable, __file__, "--case", case], capture_output=True, text=True, check=True
        )
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"{rows[0]['weights']:,} weights, n = {SAMPLES} samples")
    print("| case | rows kept | kept MB | peak allocated MB | peak resident rise MB | seconds |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        peak = "n/a" if r["peak_allocated_mb"] is None else f"{r['peak_allocated_mb']:.0f}"
        print(
            f"| {r['case']} | {r['rows']} | {r['kept_mb']:.0f} | {peak} | "
            f"{r['peak_resident_rise_mb']:.0f} | {r['seconds']:.2f} |"
        )


if __name__ == "__main__":
    main()
