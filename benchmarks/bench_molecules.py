"""De novo design benchmark: prior metrics, Celecoxib rediscovery and QED, against published values.

    python benchmarks/bench_molecules.py [--model runs/molecules/prior_weights.pt]
        [--budget 10000] [--seeds 0,1,2,3,4] [--variants 500,60:0] [--tasks celecoxib,qed]
        [--samples 10000] [--workers 2] [--runs runs/molecules/bench] [--skip-sample]
        [--results benchmarks/results]

Runs ``stochgrad molecules sample`` (MOSES metrics of the prior at ``--samples`` molecules) and
``stochgrad molecules optimize`` for Celecoxib rediscovery (Tanimoto similarity on Morgan r2
2048-bit fingerprints) and QED, each within ``--budget`` oracle calls (unique valid molecules,
PMO convention), once per seed and REINVENT variant (``SIGMA`` or ``SIGMA:PENALTY``, the
weight of REINVENT's likelihood penalty; default 5000), ``--workers`` runs at a time with one
torch thread each. It records top-1, top-10, top-100, PMO's AUC of the top-10 curve, validity,
generator samples per second and wall time per run, and their mean and standard deviation over
seeds. Published references: MOSES CharRNN (Polykovskiy et al. 2020, Table 2) and PMO REINVENT
(Gao et al. 2022, Table 3: AUC top-10 0.713, mean of 5 seeds, on celecoxib rediscovery,
sigma 500). Each run writes to its own ``--out`` folder under ``--runs`` and resumes from its
checkpoint there (``agent.pt``). Writes ``molecules.json`` and ``molecules.md`` to
``--results`` (default ``benchmarks/results``), keeping the groups of earlier calls that this
call did not rerun.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
REFERENCE = {
    "moses_charrnn": {"validity": 0.975, "unique@10k": 0.999, "novelty": 0.842, "intdiv": 0.856},
    "pmo_reinvent_celecoxib_auc_top10": 0.713,
}
TASKS = {"celecoxib": "similarity", "qed": "qed"}
FIELDS = ("calls", "top1", "top10_mean", "top100_mean", "auc_top10", "validity_last10_steps")


def _run(argv: list[str]) -> float:
    from stochgrad.cli import main

    start = time.perf_counter()
    rc = main(argv)
    if rc != 0:
        raise SystemExit(f"{' '.join(argv)} exited with {rc}")
    return time.perf_counter() - start


def _optimize(job: tuple[list[str], str]) -> dict:
    """One optimisation run (a worker process): its summary plus the wall time."""
    argv, out = job
    wall = _run(argv)
    summary = json.loads((Path(out) / "summary.json").read_text())
    summary.pop("config", None)
    return summary | {"wall_s_this_call": wall}


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def _variants(text: str) -> list[tuple[float, float | None]]:
    """``"500,60:0"`` -> ``[(500.0, None), (60.0, 0.0)]``: sigma and likelihood penalty."""
    out = []
    for item in filter(None, (v.strip() for v in text.split(","))):
        sigma, _, penalty = item.partition(":")
        out.append((float(sigma), float(penalty) if penalty else None))
    return out


def main() -> None:
    from stochgrad.parallel import map_items

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="prior (default: the shipped one)")
    parser.add_argument("--budget", type=int, default=10_000)
    parser.add_argument("--seeds", type=_ints, default=[0, 1, 2, 3, 4], help="e.g. 0,1,2")
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument(
        "--variants",
        type=_variants,
        default=[(500.0, None)],
        help="REINVENT settings SIGMA[:PENALTY], comma-separated (PMO: 500, penalty 5000)",
    )
    parser.add_argument("--tasks", default="celecoxib,qed", help="comma list of tasks")
    parser.add_argument("--workers", type=int, default=2, help="runs at a time")
    parser.add_argument("--runs", type=Path, default=Path("runs/molecules/bench"))
    parser.add_argument("--skip-sample", action="store_true", help="skip the prior's metrics")
    parser.add_argument(
        "--results", type=Path, default=RESULTS, help="folder of molecules.json and molecules.md"
    )
    args = parser.parse_args()
    tasks = [t for t in args.tasks.split(",") if t]
    unknown = set(tasks) - set(TASKS)
    if unknown:
        parser.error(f"--tasks: unknown {sorted(unknown)}; choose from {sorted(TASKS)}")
    model = ["--model", args.model] if args.model else []
    record: dict = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.processor() or platform.machine()}, 1 torch thread per run, "
        f"{args.workers} run(s) at a time",
        "budget": args.budget,
        "seeds": args.seeds,
        "reference": REFERENCE,
    }
    if not args.skip_sample:
        out = args.runs / "sample"
        argv = ["molecules", "sample", *model, "--n", str(args.samples), "--seed", "0"]
        wall = _run([*argv, "--out", str(out)])
        record["prior"] = json.loads((out / "sample_metrics.json").read_text()) | {"wall_s": wall}
    keys, jobs = [], []
    for task in tasks:
        for sigma, penalty in args.variants:
            group = f"{task}_sigma{sigma:g}" + ("" if penalty is None else f"_penalty{penalty:g}")
            for seed in args.seeds:
                out = args.runs / f"{group}_seed{seed}"
                argv = ["molecules", "optimize", *model, "--objective", TASKS[task]]
                argv += ["--budget", str(args.budget), "--sigma", str(sigma)]
                if penalty is not None:
                    argv += ["--likelihood-penalty", str(penalty)]
                argv += ["--seed", str(seed), "--out", str(out)]
                keys.append((group, task, sigma, penalty, seed))
                jobs.append((argv, str(out)))
    done = map_items(
        _optimize,
        jobs,
        num_workers=args.workers,
        callback=lambda i, s: print(f"done {keys[i]}: AUC top-10 {s['auc_top10']:.4f}", flush=True),
    )
    runs: dict = {}
    for (group, task, sigma, penalty, seed), summary in zip(keys, done, strict=True):
        penalty = 5e3 if penalty is None else penalty
        runs.setdefault(group, {"task": task, "sigma": sigma, "penalty": penalty, "seeds": {}})
        runs[group]["seeds"][str(seed)] = summary
    for group in runs.values():
        per_seed = list(group["seeds"].values())
        for field in (*FIELDS, "samples_per_second", "seconds"):
            vals = [float(s[field]) for s in per_seed]
            group[field] = {
                "mean": statistics.fmean(vals),
                "sd": statistics.stdev(vals) if len(vals) > 1 else 0.0,
                "min": min(vals),
                "max": max(vals),
            }
    args.results.mkdir(parents=True, exist_ok=True)
    previous = args.results / "molecules.json"
    if previous.exists():  # keep what earlier calls measured and this one did not rerun
        old = json.loads(previous.read_text())
        if "prior" not in record and "prior" in old:
            record["prior"] = old["prior"]
        runs = old.get("optimisation", {}) | runs
    record["optimisation"] = runs
    (args.results / "molecules.json").write_text(json.dumps(record, indent=2))
    (args.results / "molecules.md").write_text(markdown(record))
    print(markdown(record))


def markdown(r: dict) -> str:
    """The results as markdown tables."""
    lines = [f"# Molecular design benchmark ({r['date']}, {r['machine']})", ""]
    if "prior" in r:
        p, ref = r["prior"], r["reference"]["moses_charrnn"]
        lines += [
            f"## Prior: {p['n']} samples (seed {p['seed']}); novelty vs its {p['train']['n']} training SMILES",
            "",
            "| metric | this prior | MOSES CharRNN |",
            "| --- | ---: | ---: |",
            f"| validity | {p['validity']:.4f} | {ref['validity']} |",
            f"| unique@{p['unique_at']} | {p['uniqueness']:.4f} | {ref['unique@10k']} |",
            f"| novelty | {p['novelty']:.4f} | {ref['novelty']} |",
            f"| IntDiv (Morgan r2 2048) | {p['internal_diversity']:.4f} | {ref['intdiv']} |",
            f"| samples / s (batch 500) | {p['samples_per_second']:.0f} | |",
            "",
        ]
    runs = r.get("optimisation", {})
    if runs:
        lines += [
            f"## Optimisation within {r['budget']} oracle calls (unique valid molecules), "
            "REINVENT, mean ± sd over seeds",
            "",
            "| task | sigma | penalty | seeds | calls | top-1 | top-10 | top-100 | AUC top-10 | validity (last 10 steps) | wall (s) |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]

        def cell(g: dict, field: str, fmt: str = ".3f") -> str:
            return f"{g[field]['mean']:{fmt}} ± {g[field]['sd']:{fmt}}"

        for g in runs.values():
            lines.append(
                f"| {g['task']} | {g['sigma']:g} | {g['penalty']:g} | {len(g['seeds'])} | "
                f"{cell(g, 'calls', '.0f')} | {cell(g, 'top1')} | {cell(g, 'top10_mean')} | "
                f"{cell(g, 'top100_mean')} | {cell(g, 'auc_top10')} | "
                f"{cell(g, 'validity_last10_steps')} | {cell(g, 'seconds', '.0f')} |"
            )
        lines += [
            "",
            "| task | sigma | penalty | AUC top-10 by seed |",
            "| --- | ---: | ---: | --- |",
        ]
        for g in runs.values():
            by_seed = ", ".join(f"{k}: {v['auc_top10']:.4f}" for k, v in g["seeds"].items())
            lines.append(f"| {g['task']} | {g['sigma']:g} | {g['penalty']:g} | {by_seed} |")
        ref = r["reference"]
        lines += [
            "",
            f"PMO REINVENT, celecoxib rediscovery, AUC top-10: {ref['pmo_reinvent_celecoxib_auc_top10']} "
            "(mean of 5 seeds, sigma 500)",
            "",
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
