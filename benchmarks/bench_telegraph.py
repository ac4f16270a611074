"""Fitting telegraph kinetics: batched exact likelihood vs a per-gene txburst-style fit.

Simulates ``--genes`` x ``--cells`` counts (exact stationary draws, random kinetics), then

- stochgrad: :func:`stochgrad.apps.telegraph.fit_counts` (batched Newton on the exact
  likelihood, no confidence intervals: the baseline computes none) over ``--workers`` processes;
- baseline: per gene, scipy L-BFGS-B on the 50-node Gauss-Jacobi likelihood, bounds and start
  of the ``txburst`` script (Larsson et al. 2019;
  :func:`stochgrad.apps.telegraph.reference.fit_gene_txburst`), on a random subset
  of ``--baseline-genes`` genes in one process, extrapolated to all genes and divided by the
  number of workers (perfect parallel scaling is assumed for the baseline: favourable to it).

Also reports the maximum relative error of the pmf against mpmath (50 digits) per k_syn.
Writes ``benchmarks/results/telegraph.{json,md}``. Run:
``.venv/bin/python benchmarks/bench_telegraph.py`` (defaults: 1000 genes x 1000 cells, 2 workers).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from stochgrad.apps import telegraph as T
from stochgrad.apps.telegraph.reference import fit_gene_txburst

RESULTS = Path(__file__).parent / "results"


def txburst_fit(vals: np.ndarray) -> tuple[np.ndarray, float]:
    """One gene, as the reference script fits it (:mod:`stochgrad.apps.telegraph.reference`:
    its start, box, quadrature likelihood and L-BFGS-B)."""
    est, nll, *_ = fit_gene_txburst(vals)
    return est, nll


def pmf_accuracy() -> dict[str, float]:
    """Max relative error of the pmf vs mpmath over a grid, per k_syn."""
    import mpmath

    mpmath.mp.dps = 50
    out = {}
    grid = [0.01, 0.3, 10.0, 100.0]
    for k in (10, 100, 1000, 3000):
        worst = 0.0
        for a in grid:
            for b in grid:
                ns = sorted({0, 1, 5, int(k * a / (a + b)), k // 2, k, 2 * k})
                got = T.log_pmf(ns, a, b, float(k)).numpy()
                for n, v in zip(ns, got, strict=True):
                    am, bm, km = mpmath.mpf(a), mpmath.mpf(b), mpmath.mpf(k)
                    # Kummer's form: a positive series mpmath sums quickly at any k
                    ref = (
                        n * mpmath.log(km)
                        - mpmath.loggamma(n + 1)
                        + mpmath.loggamma(am + n)
                        - mpmath.loggamma(am)
                        + mpmath.loggamma(am + bm)
                        - mpmath.loggamma(am + bm + n)
                        - km
                        + mpmath.log(mpmath.hyp1f1(bm, am + bm + n, km))
                    )
                    worst = max(worst, abs(float(mpmath.expm1(v - ref))))
        out[str(k)] = worst
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--genes", type=int, default=1000)
    parser.add_argument("--cells", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--baseline-genes", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--chunk-size", type=int, default=None, help="default: fit_counts'")
    args = parser.parse_args()
    torch.set_num_threads(1)

    t0 = time.perf_counter()
    acc = pmf_accuracy()
    t_acc = time.perf_counter() - t0
    print("pmf max relative error vs mpmath:", acc, f"({t_acc:.1f} s)")

    kin, x = T.simulate_table(args.genes, args.cells, args.seed, method="exact")
    t0 = time.perf_counter()
    fits = T.fit_counts(
        x,
        ci=False,
        chunk_size=args.chunk_size,
        backend="process" if args.workers > 1 else "serial",
        num_workers=args.workers,
    )
    t_ours = time.perf_counter() - t0
    print(f"stochgrad: {args.genes} genes in {t_ours:.1f} s on {args.workers} workers")

    rng = np.random.default_rng(args.seed)
    subset = rng.choice(args.genes, size=min(args.baseline_genes, args.genes), replace=False)
    xs = x.numpy()
    t0 = time.perf_counter()
    base = [txburst_fit(xs[i]) for i in subset]
    t_base_subset = time.perf_counter() - t0
    t_base = t_base_subset / len(subset) * args.genes / args.workers
    print(f"baseline: {len(subset)} genes in {t_base_subset:.1f} s; extrapolated {t_base:.1f} s")

    true_bf = kin[:, 0].numpy()
    true_bs = (kin[:, 2] / kin[:, 1]).numpy()
    ok = ~fits.non_identifiable
    err_bf = np.abs(fits.burst_frequency / true_bf - 1)
    err_bs = np.abs(fits.burst_size / true_bs - 1)
    base_bf = np.array([p[0] for p, _ in base])
    base_bs = np.array([p[2] / p[1] for p, _ in base])
    # exact log-likelihood of both optima on the subset (which fit is the better maximum)
    ll_ours = fits.log_likelihood[subset]
    ll_base = np.array(
        [
            float(T.log_pmf(torch.from_numpy(xs[i]), *map(float, p)).sum())
            for i, (p, _) in zip(subset, base, strict=True)
        ]
    )
    result = {
        "genes": args.genes,
        "cells": args.cells,
        "workers": args.workers,
        "chunk_size": args.chunk_size,
        "cpu_count": os.cpu_count(),
        "pmf_max_rel_error_vs_mpmath": acc,
        "stochgrad_seconds": t_ours,
        "baseline_subset_genes": int(len(subset)),
        "baseline_subset_seconds": t_base_subset,
        "baseline_extrapolated_seconds": t_base,
        "speedup": t_base / t_ours,
        "flagged_non_identifiable": int((~ok).sum()),
        "median_rel_error_bf_identifiable": float(np.median(err_bf[ok])),
        "median_rel_error_bs_identifiable": float(np.median(err_bs[ok])),
        "baseline_median_rel_error_bf_subset": float(
            np.median(np.abs(base_bf / true_bf[subset] - 1))
        ),
        "baseline_median_rel_error_bs_subset": float(
            np.median(np.abs(base_bs / true_bs[subset] - 1))
        ),
        "subset_exact_loglik_gain_over_baseline_median": float(np.median(ll_ours - ll_base)),
        "subset_genes_where_baseline_optimum_is_better_by_1e-3": int(
            np.sum(ll_base > ll_ours + 1e-3)
        ),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "telegraph.json").write_text(json.dumps(result, indent=2))
    md = [
        f"# Telegraph fit: {args.genes} genes x {args.cells} cells, {args.workers} workers",
        "",
        "| quantity | value |",
        "|---|---|",
    ]
    md += [
        f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |"
        for k, v in result.items()
        if k != "pmf_max_rel_error_vs_mpmath"
    ]
    md += ["", "| k_syn | pmf max relative error vs mpmath |", "|---|---|"]
    md += [f"| {k} | {v:.2e} |" for k, v in acc.items()]
    (RESULTS / "telegraph.md").write_text("\n".join(md) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
