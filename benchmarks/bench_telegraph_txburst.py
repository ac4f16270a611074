"""The batched telegraph fit against a txburst-style per-gene fit, in the same run.

Simulates ``--genes`` genes (exact stationary draws) at each of ``--cells`` cell counts: random
kinetics from :func:`stochgrad.apps.telegraph.simulate_table`, plus a share
(``--boundary-share``) of near-Poisson genes, half with ``k_off`` in [0.001, 0.01] (``k_on`` in
[1, 10], burst size in [2, 20]) and half Poisson counts (mean in [1, e^4]), where the fits press
``k_off`` onto the lower bound of the box (or ``k_on`` onto its upper one). Then, each in its own
child process that spawns ``--workers`` worker processes:

- ``ours``: :func:`stochgrad.apps.telegraph.fit_counts` as ``stochgrad telegraph fit`` runs it
  (profile-likelihood intervals on, ``--chunk-size`` genes per job, process backend);
- ``ours_noci``: the same without intervals (``ci=False``);
- ``txburst``: :func:`stochgrad.apps.telegraph.reference.fit_genes_txburst` (scipy L-BFGS-B on the
  50-node Gauss-Jacobi likelihood, txburst's box and start, one job per gene) on the same
  number of worker processes;
- ``idle``: the workers import the package and return (the memory every worker starts with).

Reported: per gene, the exact log-likelihood (``log_pmf``, the one the fit maximises) at our
estimate minus that at the txburst-style estimate (worst gene, genes below -1e-3); the wall time
of each fit (timed in its child around the call, workers' start included) and ratios; the peak
resident memory of the worker processes (``resource.getrusage(RUSAGE_CHILDREN).ru_maxrss`` in
the child after its pool has shut down: the largest worker) and ratios, also above the idle
worker's. BLAS threads are limited to one per process (as torch's are in the workers), so each
worker uses one core. Writes ``benchmarks/results/telegraph_txburst.{json,md}``.

Run: ``.venv/bin/python benchmarks/bench_telegraph_txburst.py`` (defaults: 1000 genes at each of
100, 300 and 1000 cells, 2 workers).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # one core per worker process, for both fits

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from stochgrad.apps.telegraph.chunked import auto_chunk_size  # noqa: E402

RESULTS = Path(__file__).parent / "results"
RUNS = ("ours", "ours_noci", "txburst", "idle")


def _idle_job(_: int) -> int:
    import stochgrad.apps.telegraph.reference  # noqa: F401  (what a worker of either fit holds)

    return 0


def child(run: str, data: Path, out: Path, workers: int, chunk_size: int | None) -> None:
    """One fit in this process and its worker pool; timing and the workers' peak memory."""
    from stochgrad.apps import telegraph as T
    from stochgrad.apps.telegraph.reference import fit_genes_txburst
    from stochgrad.parallel import map_items

    x = np.load(data, allow_pickle=False)
    t0 = time.perf_counter()
    if run in ("ours", "ours_noci"):
        fits = T.fit_counts(
            torch.from_numpy(x),
            ci=run == "ours",
            chunk_size=chunk_size,
            backend="process",
            num_workers=workers,
        )
        params = np.stack((fits.k_on, fits.k_off, fits.k_syn), 1)
    elif run == "txburst":
        params = fit_genes_txburst(x, backend="process", num_workers=workers).params
    else:
        map_items(_idle_job, list(range(workers)), backend="process", num_workers=workers)
        params = np.zeros((0, 3))
    seconds = time.perf_counter() - t0
    np.save(out.with_suffix(".npy"), params)
    # Linux reports ru_maxrss in KiB: the largest of the (finished) worker processes
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    out.write_text(json.dumps({"seconds": seconds, "worker_peak_rss_mib": peak}))


def _tables(genes: int, cells: list[int], share: float, seed: int) -> list[tuple[int, np.ndarray]]:
    from stochgrad.apps import telegraph as T

    out = []
    for i, C in enumerate(cells):
        n_edge = int(round(share * genes))
        _, x = T.simulate_table(genes - n_edge, C, seed + i, method="exact")
        g = torch.Generator().manual_seed(10_000 + seed + i)
        half = n_edge // 2
        u = torch.rand(half, 3, generator=g, dtype=torch.float64)
        lo = torch.tensor([1.0, 0.001, 2.0], dtype=torch.float64).log()
        hi = torch.tensor([10.0, 0.01, 20.0], dtype=torch.float64).log()
        k_on, k_off, bs = (lo + u * (hi - lo)).exp().T
        near = T.sample_stationary(k_on, k_off, bs * k_off, C, generator=g)
        rate = torch.exp(torch.rand(n_edge - half, 1, generator=g, dtype=torch.float64) * 4.0)
        poisson = torch.poisson(rate.expand(-1, C).contiguous(), generator=g).long()
        x = torch.cat((x, near, poisson)).numpy()
        out.append((C, x[x.sum(1) > 0]))  # both fits refuse all-zero genes
    return out


def _exact_loglik(x: np.ndarray, params: np.ndarray) -> np.ndarray:
    from stochgrad.apps import telegraph as T

    p = torch.from_numpy(params)
    ll = [
        T.log_pmf(torch.from_numpy(x[i : i + 200]), *p[i : i + 200].T).sum(1)
        for i in range(0, len(x), 200)
    ]
    return torch.cat(ll).numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--genes", type=int, default=1000, help="genes per cell count")
    parser.add_argument("--cells", type=int, nargs="+", default=[100, 300, 1000])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--chunk-size", type=int, default=None, help="as `telegraph fit` (default: its default)"
    )
    parser.add_argument("--boundary-share", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--child", nargs=3, metavar=("RUN", "DATA", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run, data, out = args.child
        child(run, Path(data), Path(out), args.workers, args.chunk_size)
        return

    per_table, totals = [], {r: {"seconds": 0.0, "worker_peak_rss_mib": 0.0} for r in RUNS}
    diffs = []
    with tempfile.TemporaryDirectory() as tmp:
        for C, x in _tables(args.genes, args.cells, args.boundary_share, args.seed):
            data = Path(tmp) / f"counts_{C}.npy"
            np.save(data, x)
            res, params = {}, {}
            for run in RUNS:
                out = Path(tmp) / f"{run}_{C}.json"
                cmd = [sys.executable, __file__, "--workers", str(args.workers)]
                if args.chunk_size is not None:
                    cmd += ["--chunk-size", str(args.chunk_size)]
                cmd += ["--child", run, str(data), str(out)]
                subprocess.run(cmd, check=True)
                res[run] = json.loads(out.read_text())
                params[run] = np.load(out.with_suffix(".npy"))
                totals[run]["seconds"] += res[run]["seconds"]
                totals[run]["worker_peak_rss_mib"] = max(
                    totals[run]["worker_peak_rss_mib"], res[run]["worker_peak_rss_mib"]
                )
                print(f"{C} cells, {run}: {res[run]}", flush=True)
            d = _exact_loglik(x, params["ours"]) - _exact_loglik(x, params["txburst"])
            d_noci = _exact_loglik(x, params["ours_noci"]) - _exact_loglik(x, params["txburst"])
            assert np.array_equal(params["ours"], params["ours_noci"]), "ci changed the estimate"
            diffs.append(d)
            k_off = params["ours"][:, 1]
            per_table.append(
                {
                    "cells": C,
                    "genes": len(x),
                    "worst_loglik_diff": float(d.min()),
                    "genes_below_-1e-3": int((d < -1e-3).sum()),
                    "genes_above_+1e-3": int((d > 1e-3).sum()),
                    "worst_loglik_diff_noci": float(d_noci.min()),
                    "genes_k_off_on_lower_bound": int((k_off < 1.0001e-3).sum()),
                    **{f"{r}_seconds": res[r]["seconds"] for r in RUNS},
                    **{f"{r}_worker_peak_rss_mib": res[r]["worker_peak_rss_mib"] for r in RUNS},
                }
            )
    d = np.concatenate(diffs)
    t, m = (
        {r: totals[r]["seconds"] for r in RUNS},
        {r: totals[r]["worker_peak_rss_mib"] for r in RUNS},
    )
    idle = m["idle"]
    result = {
        "genes": int(len(d)),
        "cells": args.cells,
        "workers": args.workers,
        "chunk_size": args.chunk_size
        or f"default ({auto_chunk_size(args.genes, 'process', args.workers)})",
        "boundary_share": args.boundary_share,
        "seed": args.seed,
        "worst_loglik_diff": float(d.min()),
        "genes_below_-1e-3": int((d < -1e-3).sum()),
        "genes_above_+1e-3": int((d > 1e-3).sum()),
        "ours_seconds": t["ours"],
        "ours_noci_seconds": t["ours_noci"],
        "txburst_seconds": t["txburst"],
        "speedup_with_ci": t["txburst"] / t["ours"],
        "speedup_without_ci": t["txburst"] / t["ours_noci"],
        "idle_pool_seconds": t["idle"],
        "speedup_with_ci_net_of_pool_start": (t["txburst"] - t["idle"]) / (t["ours"] - t["idle"]),
        "speedup_without_ci_net_of_pool_start": (t["txburst"] - t["idle"])
        / (t["ours_noci"] - t["idle"]),
        "ours_worker_peak_rss_mib": m["ours"],
        "ours_noci_worker_peak_rss_mib": m["ours_noci"],
        "txburst_worker_peak_rss_mib": m["txburst"],
        "idle_worker_rss_mib": idle,
        "memory_ratio_with_ci": m["ours"] / m["txburst"],
        "memory_ratio_without_ci": m["ours_noci"] / m["txburst"],
        "memory_above_idle_ratio_with_ci": (m["ours"] - idle) / max(m["txburst"] - idle, 1e-9),
        "per_table": per_table,
        "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "telegraph_txburst.json").write_text(json.dumps(result, indent=2))
    md = [
        f"# Telegraph fit vs a txburst-style fit: {len(d)} genes, {args.workers} workers",
        "",
        f"Cells per gene {args.cells}; {args.boundary_share:.0%} of the genes near-Poisson "
        "(k_off in [0.001, 0.01], or Poisson counts); `ours` = `fit_counts` as `telegraph fit` "
        f"runs it (intervals on, chunks of {result['chunk_size']}); `idle` = starting the worker pool "
        "alone (spawn, imports), included in every fit's time. Log-likelihood difference = "
        "exact log-likelihood at our estimate minus at the txburst-style estimate, per gene.",
        "",
        "| quantity | value |",
        "|---|---|",
    ]
    md += [
        f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |"
        for k, v in result.items()
        if k != "per_table"
    ]
    keys = ["cells", "genes", "worst_loglik_diff", "genes_below_-1e-3", "genes_above_+1e-3"]
    keys += ["genes_k_off_on_lower_bound", "ours_seconds", "ours_noci_seconds", "txburst_seconds"]
    md += ["", "| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for row in per_table:
        md.append(
            "| "
            + " | ".join(
                f"{row[k]:.4g}" if isinstance(row[k], float) else str(row[k]) for k in keys
            )
            + " |"
        )
    (args.out / "telegraph_txburst.md").write_text("\n".join(md) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
